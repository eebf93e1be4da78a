"""Corpus parsers and the speaker-independent split, on tiny look-alike trees of each corpus."""
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mser.data.corpora import LABEL_ORDER, Corpus, Record, load_corpus, split_corpus, write_lists
from mser.data.lists import read_data_list, read_label_list
from mser.errors import DataError


def write_clip(path: Path) -> None:
    """A 5 ms clip: parsers only read names, but the files are real audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(80, dtype=np.float32), 16000)


def make_ravdess_tree(root: Path, actors: int = 10) -> Path:
    for actor in range(1, actors + 1):
        for emotion in range(1, 9):
            for statement in (1, 2):
                write_clip(root / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-{statement:02d}-01-{actor:02d}.wav")
    write_clip(root / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song
    write_clip(root / "Actor_01" / "01-01-03-01-01-01-01.wav")  # sound of an audio-video file
    write_clip(root / "Actor_01" / "03-01-09-01-01-01-01.wav")  # no emotion 09
    write_clip(root / "Actor_02" / "notes.wav")
    (root / "README.txt").write_text("not audio, not counted")
    return root


def groups_of(records):
    return {record.group for record in records}


def test_ravdess_labels_groups_and_skips(tmp_path):
    corpus = load_corpus("ravdess", str(make_ravdess_tree(tmp_path)))
    assert corpus.labels == LABEL_ORDER[:8]
    assert len(corpus.records) == 10 * 8 * 2
    by_name = {os.path.basename(r.path): r for r in corpus.records}
    assert by_name["03-01-05-01-02-01-07.wav"].label == "angry"
    assert by_name["03-01-02-01-01-01-03.wav"] == Record(str(tmp_path / "Actor_03" / "03-01-02-01-01-01-03.wav"),
                                                         "calm", "actor03")
    assert sum(corpus.skipped.values()) == 4
    assert corpus.skipped["malformed name"] == 2


def test_ravdess_song_only_with_flag(tmp_path):
    corpus = load_corpus("ravdess", str(make_ravdess_tree(tmp_path)), include_song=True)
    songs = [r for r in corpus.records if os.path.basename(r.path).startswith("03-02-")]
    assert [r.label for r in songs] == ["happy"]
    assert sum(corpus.skipped.values()) == 3


def test_crema_d(tmp_path):
    codes = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
    for speaker in range(1001, 1006):
        for code in codes:
            write_clip(tmp_path / f"{speaker}_DFA_{code}_XX.wav")
    write_clip(tmp_path / "1001_DFA_BOR_XX.wav")
    write_clip(tmp_path / "1001-DFA-ANG-XX.wav")
    corpus = load_corpus("crema_d", str(tmp_path))
    assert corpus.labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    assert {(os.path.basename(r.path)[9:12], r.label) for r in corpus.records} == set(codes.items())
    assert groups_of(corpus.records) == {str(s) for s in range(1001, 1006)}
    assert sum(corpus.skipped.values()) == 2


def make_tess_tree(root: Path) -> Path:
    names = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
             "neutral": "neutral", "ps": "surprised", "sad": "sad"}
    for speaker in ("OAF", "YAF"):
        for word in ("back", "bar", "base", "bath", "bean", "beg", "bite", "boat", "bone", "book"):
            for emotion in names:
                write_clip(root / f"{speaker}_{emotion}" / f"{speaker}_{word}_{emotion}.wav")
    write_clip(root / "YAF_pleasant_surprised" / "YAF_germ_pleasant_surprised.wav")
    write_clip(root / "OAF_Fear" / "OAF_Youth_Fear.wav")
    write_clip(root / "OAF_angry" / "OAF_back.wav")
    return root


def test_tess_groups_by_word(tmp_path):
    corpus = load_corpus("tess", str(make_tess_tree(tmp_path)))
    assert corpus.group_kind == "word"
    assert corpus.labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    by_name = {os.path.basename(r.path): r for r in corpus.records}
    assert by_name["YAF_bean_ps.wav"].label == "surprised"
    assert by_name["YAF_germ_pleasant_surprised.wav"].label == "surprised"
    assert (by_name["OAF_Youth_Fear.wav"].label, by_name["OAF_Youth_Fear.wav"].group) == ("fearful", "youth")
    assert sum(corpus.skipped.values()) == 1
    split = split_corpus(corpus, 0.2, seed=3)
    assert not groups_of(split.train) & groups_of(split.test)


def test_emodb(tmp_path):
    letters = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
    for speaker in ("03", "08", "09", "10", "11"):
        for letter in letters:
            write_clip(tmp_path / f"{speaker}a01{letter}a.wav")
    write_clip(tmp_path / "03a01Xa.wav")
    write_clip(tmp_path / "3a01Wa.wav")
    corpus = load_corpus("emodb", str(tmp_path))
    assert corpus.labels == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom"]
    assert {(os.path.basename(r.path)[5], r.label) for r in corpus.records} == set(letters.items())
    assert groups_of(corpus.records) == {"03", "08", "09", "10", "11"}
    assert corpus.skipped["malformed name"] == 2


def test_demo_names(tmp_path):
    for voice in ("en-us-m3", "en-gb-f2"):
        for emotion in ("neutral", "sad", "surprised"):
            write_clip(tmp_path / voice / f"{voice}_{emotion}_00.flac")
    write_clip(tmp_path / "en-us-m3" / "en-us-m3_bored_00.flac")
    write_clip(tmp_path / "en-us-m3" / "take_two.flac")
    corpus = load_corpus("demo", str(tmp_path))
    assert corpus.labels == ["neutral", "sad", "surprised"]
    assert groups_of(corpus.records) == {"en-us-m3", "en-gb-f2"}
    assert sum(corpus.skipped.values()) == 2


def make_folder_tree(root: Path) -> Path:
    for label in ("zebra_calm", "anxious", "joy"):
        for speaker in ("spk1", "spk2", "spk3", "spk4", "spk5"):
            for take, extension in enumerate(("wav", "flac", "ogg")):
                write_clip(root / label / f"{speaker}_take{take}.{extension}")
    write_clip(root / "loose.wav")
    write_clip(root / "joy" / "nospeaker.wav")
    return root


def test_folder_without_pattern_splits_by_file(tmp_path):
    corpus = load_corpus("folder", str(make_folder_tree(tmp_path)))
    assert corpus.labels == ["anxious", "joy", "zebra_calm"]
    assert corpus.group_kind == "file"
    assert len(corpus.records) == 3 * 5 * 3 + 1
    assert corpus.skipped == Counter({"not inside a label folder": 1})


@pytest.mark.parametrize("pattern", [r"^(?P<speaker>spk\d)_", r"(spk\d)"])
def test_folder_speaker_pattern(tmp_path, pattern):
    corpus = load_corpus("folder", str(make_folder_tree(tmp_path)), speaker_pattern=pattern)
    assert groups_of(corpus.records) == {f"spk{i}" for i in range(1, 6)}
    assert corpus.skipped["--speaker_pattern does not match"] == 1
    split = split_corpus(corpus, 0.2, seed=1)
    assert not groups_of(split.train) & groups_of(split.test)


@pytest.mark.parametrize("pattern, fragment", [("(spk", "not a valid regular expression"),
                                               ("spk", "needs a group")])
def test_folder_bad_pattern(tmp_path, pattern, fragment):
    with pytest.raises(DataError, match=fragment):
        load_corpus("folder", str(make_folder_tree(tmp_path)), speaker_pattern=pattern)


def test_unusable_directories(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_corpus("ravdess", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="no audio files"):
        load_corpus("ravdess", str(tmp_path))
    write_clip(tmp_path / "hello.wav")
    with pytest.raises(DataError, match="none of the 1 audio files.*malformed name"):
        load_corpus("ravdess", str(tmp_path))


def test_single_label_or_speaker_is_refused(tmp_path):
    for speaker in ("1001", "1002"):
        write_clip(tmp_path / f"{speaker}_DFA_ANG_XX.wav")
    with pytest.raises(DataError, match="one label only"):
        load_corpus("crema_d", str(tmp_path))
    write_clip(tmp_path / "1001_DFA_SAD_XX.wav")
    (tmp_path / "1002_DFA_ANG_XX.wav").unlink()
    with pytest.raises(DataError, match="single speaker"):
        split_corpus(load_corpus("crema_d", str(tmp_path)))


def synthetic_corpus(num_speakers: int, seed: int) -> Corpus:
    """Speakers of unequal size and label mix, as in real corpora."""
    rng = np.random.default_rng(seed)
    labels = ["neutral", "happy", "sad", "angry"]
    records = [Record(f"s{speaker}_{label}_{n}.wav", label, f"s{speaker}")
               for speaker in range(num_speakers) for label in labels
               for n in range(int(rng.integers(2, 12)))]
    return Corpus("synthetic", "synthetic", records, labels, "speaker")


@pytest.mark.parametrize("test_ratio", [0.2, 0.3])
def test_split_keeps_speakers_apart_and_labels_balanced(test_ratio):
    corpus = synthetic_corpus(30, seed=7)
    split = split_corpus(corpus, test_ratio, seed=11)
    assert not groups_of(split.train) & groups_of(split.test)
    assert len(split.train) + len(split.test) == len(corpus.records)
    totals = Counter(r.label for r in corpus.records)
    in_test = Counter(r.label for r in split.test)
    for label in corpus.labels:
        assert abs(in_test[label] / totals[label] - test_ratio) < 0.03, (label, in_test, totals)


def test_split_is_seeded():
    corpus = synthetic_corpus(30, seed=7)
    first, again = split_corpus(corpus, seed=5), split_corpus(corpus, seed=5)
    assert first.test == again.test
    test_sets = {frozenset(groups_of(split_corpus(corpus, seed=s).test)) for s in range(6)}
    assert len(test_sets) > 1


def test_split_keeps_a_group_on_each_side():
    corpus = synthetic_corpus(2, seed=1)
    for ratio in (0.01, 0.99):
        split = split_corpus(corpus, ratio)
        assert len(groups_of(split.train)) == 1 and len(groups_of(split.test)) == 1
    with pytest.raises(DataError, match="test_ratio"):
        split_corpus(corpus, 1.0)


def test_written_lists_round_trip(tmp_path):
    corpus = load_corpus("ravdess", str(make_ravdess_tree(tmp_path / "ravdess")))
    split = split_corpus(corpus, 0.2, seed=2)
    train_path, test_path, label_path = write_lists(corpus, split, str(tmp_path / "lists"))
    labels = read_label_list(label_path)
    assert labels == corpus.labels
    train = read_data_list(train_path, len(labels))
    test = read_data_list(test_path, len(labels))
    assert len(train) == len(split.train) and len(test) == len(split.test)
    angry = labels.index("angry")
    assert all(label == angry for path, label, _ in train + test if os.path.basename(path)[6:8] == "05")

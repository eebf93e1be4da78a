"""Speakers: the third list column, cross-corpus test lists, the speaker-disjoint validation slice,
speaker normalisation in training, evaluation and inference."""
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import assert_one_line_error, run_script
from mser.data.lists import ListItem, read_data_list, read_label_list
from mser.errors import DataError

VOICES = ["en-a", "en-b", "en-c", "en-d", "en-e"]


def write_clip(path: Path, seconds: float = 0.05) -> None:
    """A short clip: create_data reads names only, but the files are real audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(int(16000 * seconds), dtype=np.float32), 16000)


def make_demo_tree(root: Path, emotions=("neutral", "happy", "sad"), voices=VOICES, clips: int = 2) -> Path:
    """The demo corpus naming: <voice>/<voice>_<emotion>_<nn>.flac."""
    for voice in voices:
        for emotion in emotions:
            for number in range(clips):
                write_clip(root / voice / f"{voice}_{emotion}_{number:02d}.flac")
    return root


def voice_of(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


# ---------------------------------------------------------------- the third column


def test_create_data_writes_the_speaker_column(tmp_path):
    data_dir = make_demo_tree(tmp_path / "corpus")
    result = run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir, "--list_dir", tmp_path / "lists")
    assert result.returncode == 0, result.stderr
    labels = read_label_list(str(tmp_path / "lists" / "label_list.txt"))
    lists = {name: read_data_list(str(tmp_path / "lists" / f"{name}_list.txt"), len(labels))
             for name in ("train", "test")}
    for items in lists.values():
        assert items and all(item.speaker == voice_of(item.path) for item in items)
    assert not {i.speaker for i in lists["train"]} & {i.speaker for i in lists["test"]}
    line = (tmp_path / "lists" / "train_list.txt").read_text().splitlines()[0]
    assert len(line.split("\t")) == 3


def test_tess_word_groups_are_not_speakers(tmp_path):
    for speaker in ("OAF", "YAF"):
        for word in ("back", "bar", "base", "bath", "bean"):
            for emotion in ("angry", "sad"):
                write_clip(tmp_path / "tess" / f"{speaker}_{emotion}" / f"{speaker}_{word}_{emotion}.wav")
    result = run_script("create_data.py", "--dataset", "tess", "--data_dir", tmp_path / "tess",
                        "--list_dir", tmp_path / "lists")
    assert result.returncode == 0, result.stderr
    for name in ("train_list.txt", "test_list.txt"):
        assert all(len(line.split("\t")) == 2 for line in (tmp_path / "lists" / name).read_text().splitlines())


@pytest.mark.parametrize("line, message", [
    ("{audio}\t1\t", "line 3 of .*list.txt has an empty speaker column"),
    ("{audio}\t1\tspk\tmore", "line 3 of .*list.txt must be 'path<TAB>label_index' or"),
])
def test_malformed_speaker_column_names_file_and_line(tmp_path, line, message):
    audio = tmp_path / "a.wav"
    write_clip(audio)
    path = tmp_path / "list.txt"
    path.write_text(f"{audio}\t0\tspk1\n{audio}\t1\n" + line.format(audio=audio) + "\n")
    with pytest.raises(DataError, match=message):
        read_data_list(str(path), 2)


def test_list_with_byte_order_mark_and_mixed_columns(tmp_path):
    audio = tmp_path / "a.wav"
    write_clip(audio)
    (tmp_path / "list.txt").write_bytes(f"\ufeff{audio}\t1\tspk1\r\n{audio}\t0\n".encode("utf-8"))
    (tmp_path / "labels.txt").write_bytes("\ufeffneutral\nhappy\n".encode("utf-8"))
    assert read_data_list(str(tmp_path / "list.txt"), 2) == [ListItem(str(audio), 1, "spk1"), ListItem(str(audio), 0)]
    assert read_label_list(str(tmp_path / "labels.txt")) == ["neutral", "happy"]


def test_malformed_speaker_column_through_train_is_one_line(tmp_path, demo_lists):
    from conftest import tiny_overwrites
    lines = (demo_lists / "train_list.txt").read_text().splitlines()
    path, label = lines[0].split("\t")[:2]
    (tmp_path / "train_list.txt").write_text(f"{lines[0]}\n{path}\t{label}\t\n")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--overwrites", tiny_overwrites(demo_lists, **{
                            "dataset_conf.train_list": tmp_path / "train_list.txt"}))
    assert_one_line_error(result, "line 2 of")


# ---------------------------------------------------------------- cross-corpus test lists


def test_test_only_skips_and_counts_unknown_labels(tmp_path):
    data_dir = make_demo_tree(tmp_path / "other", emotions=("neutral", "happy", "angry"), clips=3)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "label_list.txt").write_text("neutral\nsad\nhappy\n")
    result = run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir, "--list_dir", lists,
                        "--test_only", "--list_name", "other_test_list.txt")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(lists)) == ["label_list.txt", "other_test_list.txt"]
    items = read_data_list(str(lists / "other_test_list.txt"), 3)
    assert len(items) == 2 * 3 * len(VOICES)
    assert {item.label for item in items} == {0, 2}      # neutral, happy by the given label list
    assert all(item.speaker == voice_of(item.path) for item in items)
    assert f"skipped {3 * len(VOICES)} clips whose label is not in" in result.stdout
    assert f"{3 * len(VOICES)} angry" in result.stdout


def test_test_only_errors_are_one_line(tmp_path):
    data_dir = make_demo_tree(tmp_path / "other", emotions=("angry", "fearful"))
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir,
                                     "--list_dir", tmp_path, "--test_only"), "label list not found")
    (tmp_path / "labels.txt").write_text("neutral\nsad\n")
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir,
                                     "--list_dir", tmp_path, "--test_only", "--label_list", tmp_path / "labels.txt"),
                          "none of the labels")
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir,
                                     "--list_dir", tmp_path, "--list_name", "x.txt"), "--test_only")


# ---------------------------------------------------------------- validation slice


def speaker_items(speakers: int = 12, labels: int = 3, clips: int = 4, first_speaker: int = 0):
    return [ListItem(f"/s{s}_{label}_{n}.wav", label, f"s{s}") for s in range(first_speaker, speakers)
            for label in range(labels) for n in range(clips)]


def test_validation_slice_takes_whole_speakers():
    from mser.trainer import split_validation
    items = speaker_items()
    train, val = split_validation(items, 0.25, seed=3)
    assert sorted(train + val) == sorted(items)
    assert val and not {i.speaker for i in train} & {i.speaker for i in val}
    assert {i.label for i in val} == {0, 1, 2}
    assert 0.15 <= len(val) / len(items) <= 0.35
    assert split_validation(items, 0.25, seed=3) == (train, val)


def test_validation_slice_without_speakers_takes_clips():
    from mser.trainer import split_validation
    items = [ListItem(path, label) for path, label, _ in speaker_items()]
    train, val = split_validation(items, 0.25, seed=3)
    assert len(val) == 36 and {i.label for i in val} == {0, 1, 2}

"""The shipped Festival cross-synthesiser test set and its generator."""
import csv
import shutil
from collections import Counter

import pytest
import soundfile
from conftest import REPO, run_script

from mser.data.corpora import parse_demo

FESTIVAL = REPO / "dataset" / "festival"
EMOTIONS = {"neutral", "happy", "sad", "angry", "fearful", "surprised"}


def test_every_voice_has_every_emotion_and_names_parse():
    clips = sorted(FESTIVAL.glob("*/*.flac"))
    per_voice_emotion = Counter(parse_demo(str(path.relative_to(FESTIVAL)))[::-1] for path in clips)
    voices = {voice for voice, _ in per_voice_emotion}
    assert voices == {"fest-kal", "fest-ked", "fest-slt"}
    assert {emotion for _, emotion in per_voice_emotion} == EMOTIONS
    assert len(per_voice_emotion) == 6 * len(voices) and len(set(per_voice_emotion.values())) == 1
    assert all(path.parent.name == parse_demo(path.name)[1] for path in clips)


def test_clips_are_16k_mono_and_in_the_metadata():
    clips = sorted(FESTIVAL.glob("*/*.flac"))
    for path in clips:
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
    with open(FESTIVAL / "metadata.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert sorted(row["file"] for row in rows) == [str(path.relative_to(FESTIVAL)) for path in clips]


def test_sentences_are_not_the_demo_corpus_sentences():
    def sentences(corpus):
        with open(corpus / "metadata.tsv", encoding="utf-8", newline="") as f:
            return {row["sentence"] for row in csv.DictReader(f, delimiter="\t")}
    assert not sentences(FESTIVAL) & sentences(REPO / "dataset" / "demo")


@pytest.mark.skipif(shutil.which("text2wave") is None or shutil.which("espeak-ng") is None,
                    reason="festival or espeak-ng is not installed (tools/install.sh installs both)")
def test_the_generator_writes_a_tiny_set(tmp_path):
    result = run_script("tools/make_festival_set.py", "--out_dir", tmp_path / "fest", "--num_voices", "1",
                        "--clips", "1", "--workers", "1")
    assert result.returncode == 0, result.stderr
    made = sorted((tmp_path / "fest").glob("*/*.flac"))
    assert [path.name for path in made] == sorted(f"fest-kal_{emotion}_00.flac" for emotion in EMOTIONS)
    for path in made:  # the same seed gives the shipped clip
        assert path.read_bytes() == (FESTIVAL / path.relative_to(tmp_path / "fest")).read_bytes(), path.name

"""The shipped demo corpus (v2) and what its generator says about it."""
import csv
import re
import shutil
from collections import Counter

import pytest
import soundfile
from conftest import REPO, run_script

from mser.data.corpora import parse_demo

DEMO = REPO / "dataset" / "demo"
EMOTIONS = {"neutral", "happy", "sad", "angry", "fearful", "surprised"}


def metadata():
    with open(DEMO / "metadata.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_the_generator_values_ceiling_runs_on_the_shipped_corpus(demo_lists):
    result = run_script("tools/make_demo_corpus.py", "--ceiling", "dataset/demo",
                        "--test_list", demo_lists / "test_list.txt")
    assert result.returncode == 0, result.stderr
    accuracies = [float(x) for x in re.findall(r"test accuracy (\d\.\d+)", result.stdout)]
    assert len(accuracies) == 3, result.stdout
    # six classes: chance is 1/6; the acted prosody values must separate them far better
    assert all(0.5 < a <= 1.0 for a in accuracies), result.stdout


def test_every_clip_is_in_the_metadata_and_parses_as_a_demo_name():
    rows = metadata()
    files = sorted(str(path.relative_to(DEMO)) for path in DEMO.glob("*/*.flac"))
    assert sorted(row["file"] for row in rows) == files
    for row in rows:
        label, voice = parse_demo(row["file"])
        assert (label, voice) == (row["emotion"], row["voice"].replace("+", "-"))


def test_clips_are_16k_mono():
    for path in DEMO.glob("*/*.flac"):
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path


def test_many_voices_each_with_every_emotion_balanced():
    per_voice = Counter()
    per_voice_emotion = Counter()
    for row in metadata():
        per_voice[row["voice"]] += 1
        per_voice_emotion[row["voice"], row["emotion"]] += 1
    assert len(per_voice) >= 30
    assert {emotion for _, emotion in per_voice_emotion} == EMOTIONS
    assert len(per_voice_emotion) == 6 * len(per_voice)
    assert len(set(per_voice_emotion.values())) == 1


def test_sentence_and_ending_are_not_tied_to_the_emotion():
    rows = metadata()
    for emotion in EMOTIONS:
        of_emotion = [row for row in rows if row["emotion"] == emotion]
        assert {row["ending"] for row in of_emotion} == {".", "!", "?"}
        assert len({row["sentence"] for row in of_emotion}) >= 20
    first_voices = sorted({row["voice"] for row in rows})[:2]
    sentences = [{row["sentence"] for row in rows if row["voice"] == voice} for voice in first_voices]
    assert sentences[0] != sentences[1]


def test_recording_conditions_vary_per_clip():
    rows = metadata()
    assert {row["noise"] for row in rows} == {"white", "pink", "brown", "babble"}
    snr = [float(row["snr_db"]) for row in rows]
    gain = [float(row["gain_db"]) for row in rows]
    assert 5 <= min(snr) < 8 and 27 < max(snr) <= 30
    assert -10 <= min(gain) < -8 and 8 < max(gain) <= 10
    assert 0.1 < sum(float(row["rt60"]) > 0 for row in rows) / len(rows) < 0.4
    assert 0.1 < sum(row["telephone"] == "1" for row in rows) / len(rows) < 0.3
    assert any(float(row["clip_percentile"]) > 0 for row in rows)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (tools/install.sh)")
def test_the_generator_reproduces_the_shipped_clips(tmp_path):
    result = run_script("tools/make_demo_corpus.py", "--out_dir", tmp_path / "demo", "--num_voices", "1",
                        "--clips", "1", "--workers", "1")
    assert result.returncode == 0, result.stderr
    made = sorted((tmp_path / "demo").glob("*/*.flac"))
    assert len(made) == 6
    for path in made:
        assert path.read_bytes() == (DEMO / path.relative_to(tmp_path / "demo")).read_bytes(), path.name

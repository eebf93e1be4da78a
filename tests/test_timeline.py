"""The emotion timeline of a long recording: infer.py --plot on a generated file, fixed windows and
VAD segmentation, and the pieces it is drawn from (cells, runs, speech windows)."""
import json

import numpy as np
import pytest

from conftest import run_script
from mser.plot import dominant_runs, label_colours, segment_cells, uncovered
from mser.predictor import speech_windows

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
from mic_fixtures import LABELS, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> str:
    """14 s: 4 s "low", 2 s of near-silence, 4 s "high", 1 s of near-silence, 3 s "noise"."""
    rng = np.random.default_rng(41)
    quiet = lambda seconds: 0.002 * rng.standard_normal(int(seconds * 16000)).astype(np.float32)  # noqa: E731
    parts = [synthetic_clip("low", 4.0, rng), quiet(2.0), synthetic_clip("high", 4.0, rng), quiet(1.0),
             synthetic_clip("noise", 3.0, rng)]
    return write_clip(tmp_path_factory.mktemp("timeline") / "talk.wav", np.concatenate(parts))


def png_size(path) -> tuple:
    import matplotlib.image
    image = matplotlib.image.imread(str(path))
    return image.shape


@pytest.mark.parametrize("segmentation", ["fixed", "vad"])
def test_plot_of_a_long_recording(tiny_model, recording, tmp_path, segmentation):
    plot = tmp_path / f"{segmentation}.png"
    run = run_script("infer.py", "--model_path", tiny_model, "--audio_path", recording, "--json", "--plot", plot,
                     "--segmentation", segmentation, "--vad", "energy", "--window", "2", "--hop", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"wrote {plot}" in run.stderr
    height, width, _ = png_size(plot)
    assert width > 800 and height > 350
    segments = json.loads(run.stdout)["segments"]
    if segmentation == "vad":   # speech only: nothing starts or ends inside the pauses
        assert [s["label"] for s in segments] == ["low"] * 3 + ["high"] * 3 + ["noise"] * 2
        assert all(not (4.2 < s["start"] < 5.8 or 4.2 < s["end"] < 5.8) for s in segments)
        assert segments[-1]["end"] == 14.0
    else:
        assert len(segments) == 13 and segments[-1]["end"] == 14.0


def test_plot_of_a_short_clip_is_one_segment(tiny_model, tmp_path):
    clip = write_clip(tmp_path / "high.wav", synthetic_clip("high", 1.5, np.random.default_rng(42)))
    run = run_script("infer.py", "--model_path", tiny_model, "--audio_path", clip, "--plot", tmp_path / "t.png")
    assert run.returncode == 0, run.stderr
    assert png_size(tmp_path / "t.png")[1] > 800


def test_cells_split_overlaps_halfway_and_keep_gaps():
    assert segment_cells([(0, 2), (1, 3), (2, 4)]) == [(0, 1.5), (1.5, 2.5), (2.5, 4)]
    assert segment_cells([(0, 2), (5, 7)]) == [(0, 2), (5, 7)]
    cells = segment_cells([(0, 2), (1, 3), (6, 8)])
    assert cells == [(0, 1.5), (1.5, 3), (6, 8)]
    assert uncovered(cells, 10) == [(3, 6), (8, 10)]
    assert dominant_runs(cells, [1, 1, 1]) == [(0, 3, 1), (6, 8, 1)]   # a gap breaks a run


def test_colours_are_distinct_and_follow_emotion_names():
    colours = label_colours(["angry", "happy", "sad", "neutral", *LABELS])
    assert colours["angry"] == "#d62728" and colours["sad"] == "#1f77b4"
    assert len(set(colours.values())) == len(colours)


def test_speech_windows_merge_split_and_widen():
    # two close utterances that fit one 3 s window are merged; a far one stays apart
    assert speech_windows([(0.0, 1.0), (1.4, 2.5), (5.0, 6.0)], 3.0, 1.5, 0.5, 10.0) == [(0.0, 2.5), (5.0, 6.0)]
    # a 7 s stretch: windows 1.5 s apart, the last ending where the speech ends
    assert speech_windows([(1.0, 8.0)], 3.0, 1.5, 0.5, 10.0) == [(1.0, 4.0), (2.5, 5.5), (4.0, 7.0), (5.0, 8.0)]
    # a 0.2 s blip is widened to min_duration, within the recording
    assert speech_windows([(0.0, 0.2)], 3.0, 1.5, 1.0, 10.0) == [(0.0, 1.0)]

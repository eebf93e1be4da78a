"""The clipped-input warning: mser.audio.clipped_share, the ClippingWarning of MSERPredictor and the
`warning: ...` line of infer.py, on clipped speech-like clips (also turned down after clipping, and
with a DC offset) and on clean ones and the shipped corpus's test clips (which never warn)."""
import csv
import warnings

import numpy as np
import pytest
import soundfile

from conftest import REPO, run_script
from mser.audio import CLIPPED_SHARE, clipped_share, clipping_message, resample
from mser.errors import ClippingWarning

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
pytest_plugins = ["mic_fixtures"]

RATE = 16000


def voice(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """(samples,) float32 speech-like sound with a speech-like crest factor: a harmonic source over
    the whole band in 4 Hz syllables plus faint noise, peak 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(140 + 25 * np.sin(2 * np.pi * 0.8 * t)) / RATE
    sound = sum(np.sin(k * phase + k) / k for k in range(1, 46)) * (0.2 + 0.8 * np.sin(2 * np.pi * 4 * t) ** 2)
    sound += 0.005 * rng.standard_normal(t.shape[0])
    return (0.3 * sound / np.max(np.abs(sound))).astype(np.float32)


def overdriven(samples: np.ndarray, gain_db: float = 12.0) -> np.ndarray:
    """The clip scaled so that its peak lies `gain_db` above full scale, clipped at +-1."""
    return np.clip(samples / np.max(np.abs(samples)) * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def clipping_warnings(caught) -> list:
    return [str(w.message) for w in caught if issubclass(w.category, ClippingWarning)]


# ---------------------------------------------------------------- the estimate


def test_clean_speech_and_silence_are_not_clipped():
    assert clipped_share(voice()) < CLIPPED_SHARE and clipping_message(voice()) is None
    assert clipped_share(np.zeros(RATE, np.float32)) == 0.0
    assert clipped_share(np.zeros(0, np.float32)) == 0.0


def test_overdrive_is_found_at_any_level_and_offset():
    clipped = overdriven(voice())
    share = clipped_share(clipped)
    assert share >= CLIPPED_SHARE
    # what the share counts: samples in runs of three or more at +-1
    at_peak = np.abs(clipped) >= 1.0
    assert share <= at_peak.mean() + 1e-9
    # turned down after clipping, or shifted by a DC offset: the flat tops are still flat
    assert clipped_share(0.25 * clipped) == pytest.approx(share)
    assert clipped_share(clipped + 0.05) == pytest.approx(share)
    message = clipping_message(clipped, "loud.wav")
    assert message.startswith("loud.wav is clipped (") and message.endswith("expect lower accuracy")
    assert f"{share:.1%} of its samples stuck at its peak" in message


def test_single_samples_at_the_peak_are_not_flat_tops():
    samples = voice()
    samples[::400] = 1.0       # isolated spikes at full scale, never three in a row
    assert clipped_share(samples) == 0.0


def test_demo_corpus_clipping_is_found_where_its_generator_clipped():
    """The demo generator clips 57 of its 1,080 clips at the 98.5-99.7th percentile of |x| (about
    0.1-1.5 % of their samples): those have flat tops, the others none; overdriven, every clip warns."""
    with open(REPO / "dataset" / "demo" / "metadata.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    clipped = [row for row in rows if float(row["clip_percentile"]) > 0][:6]
    unclipped = [row for row in rows if float(row["clip_percentile"]) == 0][::100]
    for row in clipped + unclipped:
        samples, _ = soundfile.read(str(REPO / "dataset" / "demo" / row["file"]), dtype="float32")
        share = clipped_share(samples)
        if row in clipped:
            assert 0.0005 < share < 0.02, row["file"]
        else:
            assert share == 0.0 and clipping_message(samples) is None, row["file"]
        assert clipping_message(overdriven(samples)) is not None, row["file"]


# ---------------------------------------------------------------- MSERPredictor and infer.py


@pytest.fixture(scope="module")
def clipped_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clipping")
    soundfile.write(str(folder / "clean.wav"), voice(), RATE)
    soundfile.write(str(folder / "clipped.wav"), overdriven(voice(seed=1)), RATE)
    long_clip = np.concatenate([overdriven(voice(seed=2)) for _ in range(8)])   # 12 s, longer than a read block
    soundfile.write(str(folder / "clipped_long.wav"), long_clip, RATE)
    # recorded at 44.1 kHz and clipped there: resampling to the model's rate would round the flat tops off
    soundfile.write(str(folder / "clipped_44k.wav"), overdriven(resample(voice(seed=3), RATE, 44100)), 44100)
    return folder


def test_predictor_warns_on_clipped_input_and_still_answers(tiny_model, clipped_files):
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(tiny_model)
    with pytest.warns(ClippingWarning, match="clipped.wav is clipped"):
        label, score = predictor.predict(str(clipped_files / "clipped.wav"))
    assert label in predictor.labels and 0 <= score <= 1   # a warning, never an error
    with pytest.warns(ClippingWarning, match="the audio array is clipped"):
        predictor.predict(overdriven(voice()), sample_rate=RATE)
    with pytest.warns(ClippingWarning, match="clipped_44k.wav is clipped"):
        predictor.predict(str(clipped_files / "clipped_44k.wav"))
    assert clipped_share(resample(overdriven(resample(voice(seed=3), RATE, 44100)), 44100, RATE)) < CLIPPED_SHARE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ClippingWarning)
        segments = predictor.predict_long(str(clipped_files / "clipped_long.wav"), window=1.0)
        predictor.predict(str(clipped_files / "clean.wav"))
    assert len(segments) > 8 and len(clipping_warnings(caught)) == 1   # a recording: once; a clean clip: never


def test_infer_prints_one_warning_line_for_a_clipped_file(tiny_model, clipped_files):
    result = run_script("infer.py", "--model_path", tiny_model, "--audio_path", clipped_files / "clipped.wav")
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert line.startswith(f"warning: {clipped_files / 'clipped.wav'} is clipped (")
    clean = run_script("infer.py", "--model_path", tiny_model, "--audio_path", clipped_files / "clean.wav")
    assert clean.returncode == 0 and " is clipped (" not in clean.stderr, clean.stderr

"""The narrow-band input warning: mser.audio.effective_bandwidth, the BandwidthWarning of
MSERPredictor and the `warning: ...` line of infer.py, on telephone audio stored at 8 kHz, telephone
audio upsampled to 16 kHz, and wideband clips (which never warn)."""
import csv
import json
import warnings

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF

from conftest import REPO, run_script
from mser.audio import band_limit_message, effective_bandwidth, resample
from mser.errors import BandwidthWarning, warnings_as_lines

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
pytest_plugins = ["mic_fixtures"]

RATE = 16000


def wideband_voice(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """(samples,) float32 voice-like sound over the whole band: a gliding harmonic source (1/k
    harmonics up to the Nyquist) in 4 Hz syllables, plus white noise 40 dB down."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, int(0.95 * rate / 2 / 160)))
    voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    voice += 0.01 * rng.standard_normal(t.shape[0])
    return (0.3 * voice / np.max(np.abs(voice))).astype(np.float32)


def telephone_8k(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """The 300-3400 Hz band through an 8 kHz channel: (samples * 8000 / rate,) float32 at 8 kHz."""
    narrow = torch.from_numpy(resample(samples, rate, 8000))
    for _ in range(2):
        narrow = AF.highpass_biquad(narrow, 8000, 300.0)
        narrow = AF.lowpass_biquad(narrow, 8000, 3400.0)
    return narrow.numpy().astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """wide.wav (16 kHz, wideband), phone8k.wav (8 kHz telephone), phone16k.wav (the same
    telephone audio upsampled to 16 kHz), phone_long.wav (14 s of it, longer than a read block)."""
    folder = tmp_path_factory.mktemp("bandwidth")
    voice = wideband_voice(1.5)
    phone = telephone_8k(voice)
    soundfile.write(str(folder / "wide.wav"), voice, RATE)
    soundfile.write(str(folder / "phone8k.wav"), phone, 8000)
    soundfile.write(str(folder / "phone16k.wav"), resample(phone, 8000, RATE), RATE)
    long_phone = telephone_8k(wideband_voice(14.0, seed=1))
    soundfile.write(str(folder / "phone_long.wav"), resample(long_phone, 8000, RATE), RATE)
    return folder


def bandwidth_warnings(caught) -> list:
    return [str(w.message) for w in caught if issubclass(w.category, BandwidthWarning)]


# ---------------------------------------------------------------- the estimate


def test_wideband_voice_is_not_band_limited():
    voice = wideband_voice(2.0)
    assert effective_bandwidth(voice, RATE) > 7000
    assert band_limit_message(voice, RATE) is None
    # The same voice recorded at 44.1 kHz and resampled to the model's rate loses nothing.
    assert band_limit_message(resample(wideband_voice(2.0, 44100), 44100, RATE), RATE, native_rate=44100) is None


def test_telephone_audio_is_band_limited_at_either_rate():
    phone = telephone_8k(wideband_voice(2.0))
    upsampled = resample(phone, 8000, RATE)
    assert 3000 <= effective_bandwidth(upsampled, RATE) <= 4000         # told by the spectrum alone
    assert effective_bandwidth(upsampled, RATE, native_rate=8000) <= 4000
    message = band_limit_message(upsampled, RATE, name="call.wav")
    assert message.startswith("call.wav is band-limited to about ") and " Hz (e.g. 8 kHz telephone audio); " in message
    assert message.endswith("the model was trained on 16000 Hz audio, expect lower accuracy")


def test_wideband_content_stored_at_8k_is_limited_by_its_rate():
    at_8k = resample(wideband_voice(2.0), RATE, 8000)
    assert effective_bandwidth(resample(at_8k, 8000, RATE), RATE, native_rate=8000) == 4000
    assert "about 4000 Hz" in band_limit_message(resample(at_8k, 8000, RATE), RATE, native_rate=8000)


def test_silence_and_tiny_clips_cannot_be_told():
    assert effective_bandwidth(np.zeros(RATE, np.float32), RATE) is None
    assert effective_bandwidth(wideband_voice(0.01), RATE) is None
    assert band_limit_message(np.zeros(RATE, np.float32), RATE) is None


def test_telephone_band_is_wide_enough_for_an_8k_model():
    phone = telephone_8k(wideband_voice(2.0))
    assert band_limit_message(phone, 8000, native_rate=8000) is None


def test_demo_corpus_telephone_clips_are_flagged_and_clean_ones_are_not():
    """The shipped corpus marks its telephone clips; clipping (which spreads energy over the whole
    band) is left out here, the README reports the detector over every clip."""
    from mser.audio import load_audio_and_rate
    with open(REPO / "dataset" / "demo" / "metadata.tsv", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f, delimiter="\t") if float(row["clip_percentile"]) == 0]
    for telephone in ("1", "0"):
        for row in [row for row in rows if row["telephone"] == telephone][:4]:
            samples, native_rate = load_audio_and_rate(str(REPO / "dataset" / "demo" / row["file"]), RATE)
            flagged = band_limit_message(samples, RATE, native_rate) is not None
            assert flagged == (telephone == "1"), row["file"]


# ---------------------------------------------------------------- MSERPredictor


def test_predictor_warns_on_narrow_band_input(tiny_model, clips):
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(tiny_model)
    for name in ("phone8k.wav", "phone16k.wav"):
        with pytest.warns(BandwidthWarning, match=f"{name} is band-limited to about"):
            label, score = predictor.predict(str(clips / name))
        assert label in predictor.labels and 0 <= score <= 1    # a warning, never an error
    phone, rate = soundfile.read(str(clips / "phone8k.wav"), dtype="float32")
    with pytest.warns(BandwidthWarning, match="the audio array is band-limited to about"):
        predictor.predict(phone, sample_rate=rate)


def test_predictor_is_silent_on_wideband_input(tiny_model, clips):
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(tiny_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BandwidthWarning)
        predictor.predict(str(clips / "wide.wav"))
        predictor.predict_long(str(clips / "wide.wav"), window=1.0)
        predictor.predict(wideband_voice(1.0, 44100), sample_rate=44100)


def test_predictor_warns_once_per_input(tiny_model, clips):
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(tiny_model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BandwidthWarning)
        segments = predictor.predict_long(str(clips / "phone_long.wav"), window=1.0)
    assert len(segments) > 20 and len(bandwidth_warnings(caught)) == 1   # a recording: once, not per block
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default", BandwidthWarning)                # Python's default for warnings
        for _ in range(3):
            predictor.predict(str(clips / "phone16k.wav"))
        predictor.predict(str(clips / "phone8k.wav"))
    assert len(bandwidth_warnings(caught)) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("ignore", category=BandwidthWarning)      # what a user does to silence it
        predictor.predict(str(clips / "phone8k.wav"))
    assert not bandwidth_warnings(caught)


def test_warnings_as_lines_prints_one_line_per_warning_and_leaves_others(capsys):
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        with warnings_as_lines():
            for _ in range(2):   # every time, whatever the filter outside says
                warnings.warn("x.wav is band-limited to about 3400 Hz", BandwidthWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
    assert capsys.readouterr().err.splitlines() == ["warning: x.wav is band-limited to about 3400 Hz"] * 2
    assert [str(w.message) for w in recorded] == ["something else"]   # other warnings go where they went


# ---------------------------------------------------------------- infer.py


def warning_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


@pytest.mark.parametrize("name", ["phone8k.wav", "phone16k.wav"])
def test_infer_prints_one_warning_line_for_narrow_band_input(tiny_model, clips, name):
    result = run_script("infer.py", "--model_path", tiny_model, "--audio_path", clips / name, "--json")
    assert result.returncode == 0, result.stderr
    [line] = warning_lines(result.stderr)
    assert line.startswith(f"warning: {clips / name} is band-limited to about ")
    assert line.endswith("(e.g. 8 kHz telephone audio); the model was trained on 16000 Hz audio, "
                         "expect lower accuracy")
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"]


def test_infer_is_silent_on_wideband_and_warns_per_file_in_a_folder(tiny_model, clips):
    wide = run_script("infer.py", "--model_path", tiny_model, "--audio_path", clips / "wide.wav")
    assert wide.returncode == 0 and not warning_lines(wide.stderr), wide.stderr
    folder = run_script("infer.py", "--model_path", tiny_model, "--audio_path", clips, "--json")
    assert folder.returncode == 0, folder.stderr
    warned = sorted(line.split()[1] for line in warning_lines(folder.stderr))
    assert warned == sorted(str(clips / name) for name in ("phone16k.wav", "phone8k.wav", "phone_long.wav"))
    assert len([line for line in folder.stdout.splitlines() if line.startswith("{")]) == 4

"""preprocess_conf.band_limit_hz: every clip band-passed before its features, in training and at
inference; what lies outside the band never reaches the features; a model that hears only the
telephone band is not warned about telephone audio; a bad band is one line."""
import json

import numpy as np
import pytest
import soundfile
import torch

from conftest import assert_one_line_error, run_script, tiny_overwrites

from mser.audio import band_limit_message, resample
from mser.config import load_config
from mser.data.feature_cache import feature_setup
from mser.errors import ConfigError
from mser.factory import featurizer_from_config
from mser.features.band import BandPass, parse_band

RATE = 16000
TELEPHONE = "preprocess_conf.band_limit_hz=[300,3400]"


def tone(frequency: float, seconds: float = 1.0) -> torch.Tensor:
    return torch.sin(2 * np.pi * frequency * torch.arange(int(seconds * RATE)) / RATE)[None, :]


def faded(clip: torch.Tensor, seconds: float = 0.05) -> torch.Tensor:
    """Faded in and out, as sound starts: a tone switched on at full level is broadband at its edges."""
    ramp = torch.hann_window(2 * int(seconds * RATE), periodic=False)
    half = ramp.shape[0] // 2
    envelope = torch.ones(clip.shape[1])
    envelope[:half], envelope[-half:] = ramp[:half], ramp[half:]
    return clip * envelope


def harmonic_voice(seconds: float) -> torch.Tensor:
    """(1, samples): 150 Hz and its harmonics (1/k) over the whole band, white noise 40 dB down."""
    harmonics = sum(tone(150 * k, seconds) / k for k in range(1, 50))
    harmonics = harmonics + 0.01 * torch.randn(harmonics.shape, generator=torch.Generator().manual_seed(0))
    return faded(0.3 * harmonics / harmonics.abs().max())


def rms_gain(band: BandPass, frequency: float) -> float:
    clip = tone(frequency)
    out = band(clip, torch.tensor([clip.shape[1]]))[:, 2000:-2000]   # away from the clip's edges
    return float(out.pow(2).mean().sqrt() / clip[:, 2000:-2000].pow(2).mean().sqrt())


@pytest.mark.parametrize("low, high, passed, stopped", [
    (300, 3400, (500, 1000, 3000), (60, 150, 3800, 6000)),
    (0, 4000, (100, 1000, 3500), (4400, 7000)),        # a low-pass
    (1000, 8000, (1500, 4000, 7500), (100, 500)),      # a high-pass
])
def test_the_filter_passes_its_band_and_stops_the_rest(low, high, passed, stopped):
    band = BandPass(low, high, RATE)
    for frequency in passed:
        assert rms_gain(band, frequency) == pytest.approx(1.0, abs=0.02), frequency
    for frequency in stopped:
        assert rms_gain(band, frequency) < 10 ** (-50 / 20), frequency   # 60 dB stop band, some margin


def test_a_clip_is_filtered_the_same_alone_or_padded_in_a_batch():
    band = BandPass(300, 3400, RATE)
    clips = torch.randn(2, 24000)
    lengths = torch.tensor([24000, 15000])
    batch = band(clips, lengths)
    alone = band(clips[1:, :15000], lengths[1:])
    torch.testing.assert_close(batch[1, :15000], alone[0], atol=1e-5, rtol=0)
    assert torch.all(batch[1, 15000:] == 0)


@pytest.mark.parametrize("config", ["configs/tdnn_prosody.yml", "configs/egemaps.yml"])
def test_what_lies_outside_the_band_never_reaches_the_features(config):
    voice = harmonic_voice(1.5)
    whistle = voice + faded(0.3 * tone(6100, 1.5))            # and a whistle above the telephone band

    def change(overwrites):
        featurizer = featurizer_from_config(load_config(config, overwrites)).eval()
        with torch.no_grad():
            clean, noisy = featurizer(voice)[0], featurizer(whistle)[0]
        return float((clean - noisy).abs().mean() / clean.abs().mean())

    # measured: log-mel + prosody 0.012 -> 0.0002, eGeMAPS 0.018 -> 0.0013
    assert change(TELEPHONE) < 0.1 * change(None)


@pytest.mark.parametrize("value, fragment", [
    ("[3400,300]", "must satisfy 0 <= low < high <= 8000"),
    ("[300,9000]", "must satisfy 0 <= low < high <= 8000"),
    ("telephone", "must be null or [low, high] in Hz"),
    ("[300]", "must be null or [low, high] in Hz"),
])
def test_a_bad_band_is_one_line_through_train_py(demo_lists, tmp_path, value, fragment):
    run = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--save_model_path", tmp_path / "models",
                     "--log_dir", "", "--overwrites",
                     tiny_overwrites(demo_lists, **{"preprocess_conf.band_limit_hz": value}))
    assert_one_line_error(run, fragment)
    assert not (tmp_path / "models").exists()


def test_the_band_is_part_of_the_feature_cache_key():
    whole = feature_setup(load_config("configs/egemaps.yml"))
    assert "band_limit_hz" not in json.loads(whole)   # caches made before the option stay valid
    telephone = feature_setup(load_config("configs/egemaps.yml", TELEPHONE))   # the band as typed: text
    assert telephone != whole
    config = load_config("configs/egemaps.yml")
    config["preprocess_conf"]["band_limit_hz"] = [300, 3400]                  # as a YAML file gives it
    assert feature_setup(config) == telephone
    with pytest.raises(ConfigError):
        parse_band({"low": 300}, RATE)


def test_a_telephone_band_model_is_not_warned_about_telephone_audio():
    voice = harmonic_voice(2.0)
    call = BandPass(300, 3400, RATE)(voice, torch.tensor([voice.shape[1]]))[0].numpy()
    assert "band-limited to about" in band_limit_message(call, RATE)
    assert band_limit_message(call, RATE, model_band_hz=3400.0) is None
    narrower = BandPass(0, 1000, RATE)(voice, torch.tensor([voice.shape[1]]))[0].numpy()
    assert "trained on audio up to 3400 Hz" in band_limit_message(narrower, RATE, model_band_hz=3400.0)


def test_a_band_limited_model_trains_infers_and_exports(demo_lists, tmp_path):
    models = tmp_path / "models"
    small_ecapa = {f"model_conf.model_args.{key}": value for key, value in
                   (("channels", 32), ("embd_dim", 32), ("mfa_channels", 96), ("scale", 4), ("se_channels", 16))}
    overwrites = tiny_overwrites(demo_lists, **{"model_conf.model": "EcapaTdnn", **small_ecapa,   # exports in 15 s
                                                "model_conf.model_args.hidden_size": None,
                                                "preprocess_conf.band_limit_hz": "[300,3400]"})
    run = run_script("train.py", "--configs", "configs/ecapa_tdnn.yml", "--save_model_path", models, "--log_dir", "",
                     "--overwrites", overwrites)
    assert run.returncode == 0, run.stderr[-3000:]
    model = next(models.glob("*/best_model"))
    clip = tmp_path / "call.wav"
    first = (demo_lists / "test_list.txt").read_text().split("\t")[0]
    samples, rate = soundfile.read(first, dtype="float32")
    soundfile.write(clip, resample(samples, rate, 8000), 8000)   # a telephone-rate copy
    inferred = run_script("infer.py", "--model_path", model, "--audio_path", clip)
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    assert "band-limited" not in inferred.stderr   # the model hears 300-3400 Hz only
    exported = run_script("tools/export_onnx.py", "--model_path", model, "--audio_path", first)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "max |onnxruntime - PyTorch|" in exported.stdout

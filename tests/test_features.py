"""Featurizers: the output contract for every registered one, Kaldi parity, CustomFeatures' scaler."""
import json
import math

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from mser.errors import ConfigError, DataError
from mser.features import base, build_featurizer, list_featurizers, missing_extra

SAMPLE_RATE = 16000
# Featurizers whose pip extra is not installed here (e.g. eGeMAPS without opensmile) are skipped.
FEATURIZERS = [pytest.param(name, marks=pytest.mark.skip(reason=f'needs pip install "mser[{missing_extra(name)}]"'))
               if missing_extra(name) else name for name in list_featurizers()]
FRAME_LEVEL = [name for name in list_featurizers()
               if not missing_extra(name) and not build_featurizer(name).clip_level]


def harmonic(f0: torch.Tensor, amplitude: float = 0.1) -> torch.Tensor:
    """A voice-like tone: six decaying harmonics following f0 (samples,) in Hz."""
    phase = 2 * math.pi * torch.cumsum(f0, dim=0) / SAMPLE_RATE
    return amplitude * sum(0.6 ** k * torch.sin((k + 1) * phase) for k in range(6))


def burst(samples: int) -> torch.Tensor:
    """Silence with a single non-zero sample in the middle."""
    clip = torch.zeros(samples)
    clip[samples // 2] = 0.9
    return clip


@pytest.fixture(scope="module")
def clips():
    """Clips of assorted lengths: a pitch glide, noise, silence, a one-sample burst, short clips and
    syllable-like loudness bursts cut at a peak (so that the last frames matter)."""
    generator = torch.Generator().manual_seed(0)
    time = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    syllables = harmonic(torch.full((10000,), 200.0)) * torch.sin(math.pi * 4 * time[:10000]) ** 4
    return [harmonic(120 * 2 ** time), 0.1 * torch.randn(7013, generator=generator), torch.zeros(4000),
            burst(3000), 0.1 * torch.randn(300, generator=generator), torch.full((1,), 0.5), syllables]


def pad(clips):
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.zeros(len(clips), int(lengths.max()) + 555)  # extra padding past the longest clip
    for row, clip in enumerate(clips):
        batch[row, :len(clip)] = clip
        batch[row, len(clip):] = 0.3  # padding that is not silence must not matter either
    return batch, lengths


_cache = {}


def featurizer(name: str, **args):
    key = (name, tuple(sorted(args.items())))
    if key not in _cache:
        _cache[key] = build_featurizer(name, sample_rate=SAMPLE_RATE, **args).eval()
    return _cache[key]


@pytest.mark.parametrize("name", FEATURIZERS)
def test_output_contract(name, clips):
    module = featurizer(name)
    batch, lengths = pad(clips)
    features, frame_lengths = module(batch, lengths)
    assert features.dtype == torch.float32 and frame_lengths.dtype == torch.int64
    assert features.shape[0] == len(clips) and features.shape[2] == module.feature_dim
    assert torch.isfinite(features).all()
    assert frame_lengths.min() >= 1 and frame_lengths.max() <= features.shape[1]
    for row, count in enumerate(frame_lengths.tolist()):
        assert features[row, count:].abs().sum() == 0
    if module.clip_level:
        assert features.shape[1] == 1 and frame_lengths.tolist() == [1] * len(clips)


@pytest.mark.parametrize("name", FEATURIZERS)
def test_padding_does_not_change_a_clip(name, clips):
    module = featurizer(name)
    batch, lengths = pad(clips)
    features, frame_lengths = module(batch, lengths)
    for row, clip in enumerate(clips):
        alone, alone_lengths = module(clip[None])
        assert alone_lengths.tolist() == [frame_lengths[row].item()]
        torch.testing.assert_close(features[row, :alone.shape[1]], alone[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FEATURIZERS)
def test_cpu_chunks_match_the_whole_batch(name, clips, monkeypatch):
    module = featurizer(name)
    batch, lengths = pad(clips)
    monkeypatch.setattr(base, "CPU_CHUNK_SAMPLES", 2 ** 40)
    whole, whole_lengths = module(batch, lengths)
    monkeypatch.setattr(base, "CPU_CHUNK_SAMPLES", 2 * batch.shape[1])  # two clips at a time
    chunked, chunked_lengths = module(batch, lengths)
    assert torch.equal(whole_lengths, chunked_lengths)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FRAME_LEVEL)
def test_frame_level_lengths_and_rate(name):
    features, frame_lengths = featurizer(name)(torch.randn(2, SAMPLE_RATE), torch.tensor([SAMPLE_RATE, 8000]))
    assert 95 <= frame_lengths[0] <= 100 and 45 <= frame_lengths[1] <= 50  # 10 ms frames


@pytest.mark.parametrize("name", FRAME_LEVEL)
def test_mean_norm_centres_valid_frames_only(name, clips):
    module = featurizer(name, mean_norm=True)
    batch, lengths = pad(clips[:2])
    features, frame_lengths = module(batch, lengths)
    for row, count in enumerate(frame_lengths.tolist()):
        assert features[row, :count].mean(dim=0).abs().max() < 1e-3
        assert features[row, count:].abs().sum() == 0
    plain, _ = featurizer(name)(batch, lengths)
    assert not torch.allclose(plain[0, :10], features[0, :10])


@pytest.mark.parametrize("name", FEATURIZERS)
def test_device_placement(name):
    module = build_featurizer(name, sample_rate=SAMPLE_RATE).to("cpu")
    features, frame_lengths = module(torch.randn(2, 4000))
    assert features.device.type == "cpu" and frame_lengths.device.type == "cpu"
    module = module.to("meta")  # every buffer moves with the module: nothing is left on the CPU
    features, frame_lengths = module(torch.zeros(2, 4000, device="meta"), torch.tensor([4000, 2000], device="meta"))
    assert features.device.type == "meta" and frame_lengths.device.type == "meta"
    assert features.shape[2] == module.feature_dim


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", FEATURIZERS)
def test_cuda_matches_cpu(name, clips):
    module = featurizer(name)
    batch, lengths = pad(clips[:3])
    expected, _ = module(batch, lengths)
    features, frame_lengths = module.to("cuda")(batch.cuda(), lengths.cuda())
    module.to("cpu")
    assert features.device.type == "cuda" and frame_lengths.device.type == "cuda"
    torch.testing.assert_close(features.cpu(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", FEATURIZERS)
def test_other_sample_rate(name):
    module = build_featurizer(name, sample_rate=8000)
    features, _ = module(0.1 * torch.randn(2, 8000))
    assert features.shape[2] == module.feature_dim and torch.isfinite(features).all()


@pytest.mark.parametrize("options", [
    {}, {"snip_edges": False}, {"use_energy": True, "num_mel_bins": 40}, {"window_type": "hamming"},
    {"remove_dc_offset": False, "preemphasis_coefficient": 0.0, "window_type": "rectangular"},
    {"low_freq": 60.0, "high_freq": -400.0, "frame_length": 32.0, "frame_shift": 12.0},
])
def test_fbank_matches_kaldi(options, clips):
    module = build_featurizer("Fbank", sample_rate=SAMPLE_RATE, **options)
    kaldi_options = {key: value for key, value in options.items()}
    kaldi_options.setdefault("num_mel_bins", 80)
    # A -60 dB noise floor, as in any recording: bands of a pure synthetic tone lie at float32
    # rounding noise, where kaldi.fbank itself differs from its float64 result by 0.03.
    floor = 1e-3 * torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(2))
    long_clips = [clips[0] + floor, clips[1] + 0.02, clips[3] + floor[:3000]]  # 0.02: a DC offset
    batch, lengths = pad(long_clips)
    features, frame_lengths = module(batch, lengths)
    for row, clip in enumerate(long_clips):
        expected = kaldi.fbank(clip[None].double() * 32768, sample_frequency=SAMPLE_RATE, **kaldi_options)
        assert frame_lengths[row] == expected.shape[0]
        assert (features[row, :expected.shape[0]] - expected.float()).abs().max() < 1e-3


def test_fbank_dither_only_in_training():
    module = build_featurizer("Fbank", dither=1.0)
    waveform = 0.1 * torch.randn(1, 4000)
    assert not torch.equal(module.train()(waveform)[0], module(waveform)[0])
    assert torch.equal(module.eval()(waveform)[0], module(waveform)[0])


def test_unknown_argument_names_the_nearest_key():
    with pytest.raises(ConfigError, match="num_mel_bin.*did you mean 'num_mel_bins'"):
        build_featurizer("Fbank", num_mel_bin=40)


@pytest.mark.parametrize("name, options, message", [
    ("Fbank", {"window_type": "hann"}, "window_type"),
    ("Fbank", {"high_freq": 9000.0}, "high_freq"),
    ("MelSpectrogram", {"f_min": 9000.0}, "f_min"),
    ("MFCC", {"n_mfcc": 100, "n_mels": 40}, "n_mfcc"),
    ("CustomFeatures", {"f0_min": 20.0}, "f0_min"),
])
def test_bad_option_values(name, options, message):
    with pytest.raises(ConfigError, match=message):
        build_featurizer(name, **options)


def named(module, features: torch.Tensor, name: str) -> torch.Tensor:
    return features[:, module.feature_names.index(name)]


def test_custom_features_track_pitch_and_rate():
    module = featurizer("CustomFeatures")
    time = torch.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    steady = harmonic(torch.full_like(time, 150.0))
    glide = harmonic(120 * 2 ** (time / 2))  # one octave in two seconds: 6 semitones/s
    syllables = steady * (0.5 - 0.5 * torch.cos(2 * math.pi * 4 * time)) ** 2  # 4 loudness peaks/s
    noise = 0.1 * torch.randn(2 * SAMPLE_RATE, generator=torch.Generator().manual_seed(1))
    features = module.extract(torch.stack([steady, glide, syllables, noise]))
    assert len(module.feature_names) == module.feature_dim == features.shape[1] == 213
    assert abs(named(module, features, "f0_p50")[0] - 12 * math.log2(1.5)) < 0.05
    assert abs(named(module, features, "f0_slope")[1] - 6.0) < 0.2
    assert abs(named(module, features, "f0_range")[1] - 0.9 * 12) < 0.5
    assert named(module, features, "voiced_fraction")[:2].min() > 0.95
    assert named(module, features, "voiced_fraction")[3] < 0.1
    assert abs(named(module, features, "energy_peak_rate")[2] - 4.0) < 0.6
    assert named(module, features, "energy_peak_rate")[0] < 1.0
    assert named(module, features, "pause_fraction")[2] > 0.1 and named(module, features, "pause_fraction")[0] == 0


def test_custom_scaler_round_trip(tmp_path, clips):
    module = build_featurizer("CustomFeatures")
    batch, lengths = pad(clips[:2] + [clip * 0.5 for clip in clips[:2]])
    raw = module.extract(batch, lengths)
    assert torch.equal(module(batch, lengths)[0][:, 0], raw)  # identity until fitted
    module.fit_scaler(raw.numpy())
    scaled = module(batch, lengths)[0][:, 0]
    assert bool(module.scaler_fitted)
    assert scaled.mean(dim=0).abs().max() < 1e-3
    path = tmp_path / "lists" / "scaler.json"
    module.save_scaler(str(path))
    assert json.loads(path.read_text())["feature_names"] == module.feature_names
    loaded = build_featurizer("CustomFeatures", scaler_path=str(path))
    torch.testing.assert_close(loaded(batch, lengths)[0][:, 0], scaled)
    restored = build_featurizer("CustomFeatures")
    restored.load_state_dict(module.state_dict())  # the checkpoint path: buffers, not the JSON
    torch.testing.assert_close(restored(batch, lengths)[0][:, 0], scaled)
    restored.reset_scaler()
    assert not bool(restored.scaler_fitted) and torch.equal(restored(batch, lengths)[0][:, 0], raw)


def test_custom_scaler_errors(tmp_path):
    module = build_featurizer("CustomFeatures")
    with pytest.raises(ConfigError, match="does not exist"):
        build_featurizer("CustomFeatures", scaler_path=str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="not fitted"):
        module.save_scaler(str(tmp_path / "scaler.json"))
    with pytest.raises(DataError, match="shape"):
        module.fit_scaler(np.zeros((4, 7)))
    with pytest.raises(DataError, match="NaN"):
        module.fit_scaler(np.full((4, module.feature_dim), np.nan))
    other = build_featurizer("CustomFeatures", n_mfcc=13)
    other.fit_scaler(np.random.default_rng(0).normal(size=(5, other.feature_dim)))
    other.save_scaler(str(tmp_path / "other.json"))
    with pytest.raises(ConfigError, match="other features"):
        module.load_scaler(str(tmp_path / "other.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a scaler file"):
        module.load_scaler(str(tmp_path / "broken.json"))

"""FbankProsody: Fbank frames plus pitch, voicing and energy contours, aligned frame by frame."""
import math

import pytest
import torch

from mser.errors import ConfigError
from mser.features import build_featurizer

SAMPLE_RATE = 16000


def harmonic(f0: torch.Tensor, amplitude: float = 0.1) -> torch.Tensor:
    """A voice-like tone: six decaying harmonics following f0 (samples,) in Hz."""
    phase = 2 * math.pi * torch.cumsum(f0, dim=0) / SAMPLE_RATE
    return amplitude * sum(0.6 ** k * torch.sin((k + 1) * phase) for k in range(6))


def noise(samples: int, seed: int = 0, amplitude: float = 0.1) -> torch.Tensor:
    return amplitude * torch.randn(samples, generator=torch.Generator().manual_seed(seed))


def prosody(**args):
    return build_featurizer("FbankProsody", sample_rate=SAMPLE_RATE, **args).eval()


def channel(module, features: torch.Tensor, name: str) -> torch.Tensor:
    """One prosody channel, (batch, frames)."""
    offset = module.feature_dim - len(module.prosody_names)
    return features[:, :, offset + module.prosody_names.index(name)]


def test_channels_and_dimensions():
    assert prosody().prosody_names == ["log_f0", "voiced", "voicing", "energy", "delta_f0", "delta_energy"]
    assert prosody().feature_dim == 86
    assert prosody(pitch_norm="both", deltas=False, num_mel_bins=40).prosody_names == [
        "log_f0", "log_f0_rel", "voiced", "voicing", "energy"]
    assert prosody(pitch_norm="both", deltas=False, num_mel_bins=40).feature_dim == 45
    assert prosody(use_fbank=False).feature_dim == 6


@pytest.mark.parametrize("options", [{}, {"snip_edges": False}, {"frame_length": 50.0}, {"frame_shift": 12.5}])
def test_mel_part_is_fbank_and_frames_match(options):
    module, fbank = prosody(**options), build_featurizer("Fbank", sample_rate=SAMPLE_RATE, **options).eval()
    clips = [noise(n, seed=n) + harmonic(torch.full((n,), 180.0)) for n in (16000, 9001, 1234, 300)]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    features, frame_lengths = module(batch, lengths)
    expected, expected_lengths = fbank(batch, lengths)
    assert torch.equal(frame_lengths, expected_lengths)
    assert features.shape[:2] == expected.shape[:2]
    torch.testing.assert_close(features[:, :, :80], expected)


def test_tracks_pitch_level_and_slope():
    module = prosody()
    time = torch.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    steady = harmonic(torch.full_like(time, 150.0))
    glide = harmonic(120 * 2 ** (time / 2))  # half an octave a second: 0.05 octaves per 100 ms
    features, lengths = module(torch.stack([steady, glide, noise(len(time))]))
    voiced = channel(module, features, "voiced")
    assert voiced[0].mean() > 0.95 and voiced[1].mean() > 0.95 and voiced[2].mean() < 0.1
    log_f0 = channel(module, features, "log_f0")
    assert (log_f0[0, 5:-5] - math.log2(1.5)).abs().max() < 0.01
    middle = len(time) // 2 // module.hop
    assert abs(log_f0[1, middle] - math.log2(120 * 2 ** 0.5 / 100)) < 0.02
    assert (channel(module, features, "delta_f0")[1, 5:-5] - 0.05).abs().max() < 0.01
    assert channel(module, features, "voicing")[0, 5:-5].min() > 0.9


def test_unvoiced_frames_hold_the_clip_pitch_level():
    module = prosody()
    clip = torch.cat([torch.zeros(8000), harmonic(torch.full((8000,), 200.0)), torch.zeros(8000)])
    features, _ = module(clip[None])
    voiced = channel(module, features, "voiced")[0].bool()
    log_f0 = channel(module, features, "log_f0")[0]
    assert 45 <= int(voiced.nonzero()[0]) <= 52  # the tone starts at frame 48.75 (centres)
    assert (log_f0[~voiced] - 1.0).abs().max() < 0.01  # the median voiced pitch: 200 Hz
    assert (log_f0[voiced] - 1.0).abs().lt(0.01).float().mean() > 0.95  # an onset frame may be off
    assert channel(module, features, "delta_f0")[0, 60:90].abs().max() < 0.01


def test_pitch_and_energy_normalisation():
    time = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, high = harmonic(130 * 2 ** (time / 4)), 2.0 * harmonic(260 * 2 ** (time / 4))  # octave up, +6 dB
    batch = torch.stack([low, high])
    absolute = prosody(pitch_norm="both")
    features, _ = absolute(batch)
    shift = channel(absolute, features, "log_f0")[1] - channel(absolute, features, "log_f0")[0]
    assert (shift[5:-5] - 1.0).abs().max() < 0.02
    relative = channel(absolute, features, "log_f0_rel")
    assert (relative[1] - relative[0])[5:-5].abs().max() < 0.02
    assert relative[0].median().abs() < 0.01
    energy_shift = channel(absolute, features, "energy")[1] - channel(absolute, features, "energy")[0]
    assert (energy_shift[5:-5] - 20 * math.log10(2) / 10).abs().max() < 0.05

    normalised = prosody(pitch_norm="mean", energy_norm="max")
    features, _ = normalised(batch)
    log_f0 = channel(normalised, features, "log_f0")
    assert (log_f0[1] - log_f0[0])[5:-5].abs().max() < 0.02
    energy = channel(normalised, features, "energy")
    assert (energy[1] - energy[0])[5:-5].abs().max() < 0.05 and energy.max() <= 0.1


def test_mel_mean_norm_centres_the_mel_channels_only():
    clip = harmonic(torch.full((12000,), 170.0)) + noise(12000)
    lengths = torch.tensor([12000, 7000])
    batch = torch.stack([clip, torch.cat([clip[:7000], torch.zeros(5000)])])
    plain, frame_lengths = prosody()(batch, lengths)
    centred, _ = prosody(mel_mean_norm=True)(batch, lengths)
    for row, count in enumerate(frame_lengths.tolist()):
        assert centred[row, :count, :80].mean(dim=0).abs().max() < 1e-3
        assert centred[row, count:].abs().sum() == 0
    torch.testing.assert_close(centred[:, :, 80:], plain[:, :, 80:])
    assert not torch.allclose(centred[:, :, :80], plain[:, :, :80])


def test_prosody_only_matches_the_full_features():
    batch = torch.stack([harmonic(torch.full((9000,), 140.0)), noise(9000, seed=3)])
    full, lengths = prosody()(batch)
    alone, alone_lengths = prosody(use_fbank=False)(batch)
    assert torch.equal(lengths, alone_lengths)
    torch.testing.assert_close(alone, full[:, :, 80:])


@pytest.mark.parametrize("options, message", [
    ({"pitch_norm": "speaker"}, "pitch_norm"), ({"energy_norm": "db"}, "energy_norm"),
    ({"use_energy": True}, "energy"), ({"voicing_threshold": 1.5}, "voicing_threshold"),
    ({"f0_min": 10.0}, "f0_min"), ({"window_type": "hann"}, "window_type"),
])
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        prosody(**options)

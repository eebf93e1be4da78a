"""FbankProsody's `pitch_tracker: crepe` (mser/features/crepe.py) and tools/pitch_benchmark.py."""
import importlib.util
import json
import math
import sys

import pytest
import torch

from conftest import run_script
from mser.errors import ConfigError
from mser.features import build_featurizer

SAMPLE_RATE = 16000
needs_torchcrepe = pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None,
                                      reason='needs the torchcrepe package: pip install "mser[crepe]"')


def harmonic(f0: torch.Tensor, amplitude: float = 0.1) -> torch.Tensor:
    phase = 2 * math.pi * torch.cumsum(f0, dim=0) / SAMPLE_RATE
    return amplitude * sum(0.6 ** k * torch.sin((k + 1) * phase) for k in range(6))


@pytest.fixture(scope="module")
def crepe_prosody():
    return build_featurizer("FbankProsody", pitch_tracker="crepe", use_fbank=False, deltas=False).eval()


@needs_torchcrepe
def test_crepe_tracks_pitch_and_voicing(crepe_prosody):
    time = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    glide = harmonic(120 * 2 ** time)  # 120 -> 240 Hz in one second
    noise = 0.1 * torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
    features, frame_lengths = crepe_prosody(torch.stack([glide, noise]))
    names = crepe_prosody.prosody_names
    log_f0, voiced = features[..., names.index("log_f0")], features[..., names.index("voiced")]
    frames = int(frame_lengths[0])
    centres = (torch.arange(frames) * crepe_prosody.hop + crepe_prosody.window // 2) / SAMPLE_RATE
    expected = torch.log2(1.2 * 2 ** centres)  # octaves re 100 Hz
    inner = slice(5, frames - 5)
    assert (log_f0[0, inner] - expected[inner]).abs().median() < 0.02  # 24 cents
    assert voiced[0, inner].mean() > 0.9 and voiced[1, :frames].mean() < 0.5


@needs_torchcrepe
def test_crepe_frames_padding_and_state_match_the_autocorrelation_tracker(crepe_prosody):
    autocorr = build_featurizer("FbankProsody", use_fbank=False, deltas=False)
    clips = [harmonic(torch.full((9000,), 180.0)), harmonic(torch.full((4000,), 110.0))]
    lengths = torch.tensor([len(c) for c in clips])
    batch = torch.full((2, 9500), 0.3)  # padding that is not silence must not matter
    for row, clip in enumerate(clips):
        batch[row, :len(clip)] = clip
    features, frame_lengths = crepe_prosody(batch, lengths)
    assert torch.equal(frame_lengths, autocorr(batch, lengths)[1])
    for row, clip in enumerate(clips):
        alone, _ = crepe_prosody(clip[None])
        torch.testing.assert_close(features[row, :alone.shape[1]], alone[0], rtol=1e-4, atol=1e-4)
    assert set(crepe_prosody.state_dict()) == set(autocorr.state_dict())  # no CREPE weights in checkpoints


def test_pitch_tracker_errors(monkeypatch):
    with pytest.raises(ConfigError, match="pitch_tracker must be one of autocorr, crepe"):
        build_featurizer("FbankProsody", pitch_tracker="yin")
    monkeypatch.setitem(sys.modules, "torchcrepe", None)  # import torchcrepe now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "mser\[crepe\]"'):
        build_featurizer("FbankProsody", pitch_tracker="crepe")


@needs_torchcrepe
def test_crepe_needs_16_khz():
    with pytest.raises(ConfigError, match="sample_rate 16000"):
        build_featurizer("FbankProsody", sample_rate=8000, pitch_tracker="crepe")


def test_pitch_benchmark_prints_a_table_and_json():
    result = run_script("tools/pitch_benchmark.py", "--clips", "1", "--trackers", "autocorr", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    rows = results["rows"]
    assert {r["noise"] for r in rows} == {"clean", "white", "pink"} and results["threads"] == 1
    assert all(0 <= r["gpe"] <= 100 and 0 <= r["voicing"] <= 100 and r["clips_per_s"] > 0 for r in rows)
    assert "| noise | SNR dB | autocorr |" in result.stdout

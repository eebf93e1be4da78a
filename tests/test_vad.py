"""mser.vad: both backends find a demo clip between silent or noisy gaps and call silence and
steady noise silence; the frame-to-segment rules (merge, drop, pad) on hand-made frames."""
import numpy as np
import pytest

from conftest import REPO
from mser import vad
from mser.audio import load_audio
from mser.errors import ConfigError

RATE = 16000
CLIP = REPO / "dataset" / "demo" / "en-david" / "en-david_angry_00.flac"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """A demo clip scaled to -26 dBFS RMS."""
    clip = load_audio(str(CLIP), RATE).astype(np.float64)
    return (clip * 10 ** (-26 / 20) / np.sqrt(np.mean(clip ** 2))).astype(np.float32)


def with_gaps(speech: np.ndarray, noise_dbfs=None, gap: float = 1.5) -> np.ndarray:
    """1.5 s gap, the clip, 1.5 s gap; white noise at `noise_dbfs` throughout (or digital silence)."""
    silence = np.zeros(int(gap * RATE), dtype=np.float32)
    signal = np.concatenate([silence, speech, silence])
    if noise_dbfs is not None:
        signal += np.random.default_rng(0).standard_normal(len(signal)).astype(np.float32) * 10 ** (noise_dbfs / 20)
    return signal


BACKENDS = ["energy", pytest.param("silero", marks=pytest.mark.skipif(
    not vad.silero_available(), reason="silero-vad not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_clip_between_silent_gaps_is_one_segment(backend, speech):
    segments = vad.speech_segments(with_gaps(speech), RATE, backend)
    assert len(segments) >= 1
    start, end = segments[0][0], segments[-1][1]
    clip_end = 1.5 + len(speech) / RATE
    assert 1.5 - 0.1 <= start <= 1.5 + 0.3 and clip_end - 0.3 <= end <= clip_end + 0.1, segments


@pytest.mark.parametrize("backend", BACKENDS)
def test_windows_of_silence_noise_and_speech(backend, speech):
    assert not vad.is_speech(np.zeros(RATE * 2, dtype=np.int16), RATE, backend)
    noise = np.random.default_rng(1).standard_normal(RATE * 2).astype(np.float32) * 0.02
    assert not vad.is_speech(noise, RATE, backend)
    assert vad.is_speech(speech, RATE, backend)
    assert vad.is_speech((speech * 32767).astype(np.int16), RATE, backend)   # int16 as from a microphone


def test_silero_hears_speech_in_noise_the_energy_gate_misses(speech):
    if not vad.silero_available():
        pytest.skip("silero-vad not installed")
    noisy = with_gaps(speech, noise_dbfs=-26 - 5)[int(1.5 * RATE):-int(1.5 * RATE)]   # 5 dB SNR, speech only
    silero = vad.frame_probabilities(noisy, RATE, "silero")
    energy = vad.frame_probabilities(noisy, RATE, "energy")
    assert (silero > 0.5).mean() > (energy > 0.5).mean()


def test_other_sample_rates_are_resampled(speech):
    from mser.audio import resample
    at_8k = resample(with_gaps(speech), RATE, 8000)
    segments = vad.speech_segments(at_8k, 8000, "energy")
    assert segments and segments[0][0] == pytest.approx(1.5, abs=0.3)
    assert len(vad.frame_probabilities(at_8k, 8000, "energy")) == vad.frame_count(len(at_8k) * 2)


def test_frames_become_segments_by_the_rules():
    frame = vad.FRAME_SECONDS
    flags = np.zeros(100, dtype=bool)
    flags[10:20] = True    # 0.32 s of speech
    flags[22:30] = True    # after a 2-frame (64 ms) pause: joined to the first
    flags[50:53] = True    # 96 ms alone: too short, dropped
    flags[70:100] = True   # runs to the end: padding stops at the duration
    segments = vad.frames_to_segments(flags, duration=100 * frame, min_speech=0.25, min_silence=0.1, pad=0.03)
    assert segments == [pytest.approx((10 * frame - 0.03, 30 * frame + 0.03)),
                        pytest.approx((70 * frame - 0.03, 100 * frame))]


def test_hysteresis_keeps_a_wavering_probability_on():
    probs = np.array([0.1, 0.6, 0.4, 0.45, 0.2, 0.55])
    assert vad.speech_frames(probs, threshold=0.5).tolist() == [False, True, True, True, False, True]


def test_an_unknown_backend_is_refused():
    with pytest.raises(ConfigError, match="unknown VAD backend 'webrtc'; choose one of: silero, energy"):
        vad.load_vad("webrtc")


def test_without_silero_the_default_is_the_energy_gate(monkeypatch):
    monkeypatch.setattr(vad, "silero_available", lambda: False)
    vad.load_vad.cache_clear()
    try:
        assert vad.load_vad().name == "energy"
    finally:
        vad.load_vad.cache_clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_speech_seconds_of_a_batch_are_each_clips_own(backend, speech):
    clips = [with_gaps(speech, -60, gap=0.5), speech[: RATE // 2], np.zeros(RATE, dtype=np.float32), speech]
    alone = [sum(end - start for start, end in vad.speech_segments(clip, RATE, backend)) for clip in clips]
    assert vad.speech_seconds(clips, RATE, backend) == pytest.approx(alone, abs=1e-9)
    assert alone[2] == 0.0 and all(seconds > 0.2 for seconds in alone[:2] + alone[3:])

import io

import numpy as np
import pytest
import soundfile

from mser.audio import load_audio, normalize_db
from mser.errors import AudioError

RATE = 16000


def tone(seconds=0.5, rate=RATE, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_formats_from_path(tmp_path, fmt, subtype):
    path = tmp_path / f"clip.{fmt.lower()}"
    soundfile.write(path, tone(), RATE, format=fmt, subtype=subtype)
    samples = load_audio(str(path), RATE)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.shape[0] - RATE // 2) < 200


def test_bytes_file_object_and_array_agree(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, tone(), RATE, subtype="FLOAT")
    data = path.read_bytes()
    from_path = load_audio(str(path), RATE)
    np.testing.assert_allclose(load_audio(data, RATE), from_path)
    np.testing.assert_allclose(load_audio(io.BytesIO(data), RATE), from_path)
    np.testing.assert_allclose(load_audio(tone(), RATE, sample_rate=RATE), from_path)


def test_stereo_is_mixed_to_mono(tmp_path):
    stereo = np.stack([tone(), np.zeros_like(tone())], axis=1)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(str(path), RATE), tone() / 2, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, RATE, sample_rate=RATE), tone() / 2, atol=1e-6)


def test_resampled_to_target_rate(tmp_path):
    path = tmp_path / "clip44.wav"
    soundfile.write(path, tone(1.0, 44100), 44100)
    assert load_audio(str(path), RATE).shape[0] == RATE


def test_integer_arrays_are_scaled():
    samples = load_audio((tone() * 32767).astype(np.int16), RATE, sample_rate=RATE)
    assert np.abs(samples).max() == pytest.approx(0.3, abs=1e-3)


def test_db_normalization():
    out = normalize_db(tone(), -20.0)
    assert 20 * np.log10(np.sqrt(np.mean(out ** 2))) == pytest.approx(-20.0, abs=0.01)
    silence = np.zeros(100, np.float32)
    assert np.array_equal(normalize_db(silence), silence)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"this is not audio at all" * 20), "cannot decode"),
    (lambda p: p.write_bytes(wav_bytes()[:30]), "cannot decode"),
    (lambda p: soundfile.write(p, np.zeros(0, np.float32), RATE), "no samples"),
    (lambda p: soundfile.write(p, np.full(800, np.nan, np.float32), RATE, subtype="FLOAT"), "NaN"),
])
def test_bad_files_raise_audio_error(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message):
        load_audio(str(path), RATE)


def wav_bytes():
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(), RATE, format="WAV")
    return buffer.getvalue()


def test_other_bad_sources(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(str(tmp_path / "missing.wav"), RATE)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"", RATE)
    with pytest.raises(AudioError, match="needs its sample_rate"):
        load_audio(tone(), RATE)
    with pytest.raises(AudioError, match="shorter than min_duration"):
        load_audio(tone(0.1), RATE, sample_rate=RATE, min_duration=0.5)
    with pytest.raises(AudioError, match="1-D or 2-D"):
        load_audio(np.zeros((2, 2, 2), np.float32), RATE, sample_rate=RATE)

"""Decode, resample, mix to mono and normalise audio. Every failure is an AudioError."""
import io
import os
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from mser.errors import AudioError

AudioSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO, np.ndarray, torch.Tensor]


def describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"<array of shape {tuple(source.shape)}>"
    return f"<{type(source).__name__}>"


def decode(source: AudioSource, sample_rate: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """Return (samples, sample_rate) as float32, shape (samples,) or (samples, channels).

    `sample_rate` is required for arrays and ignored for encoded input, which carries its own.
    """
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioError("a numpy array needs its sample_rate")
        samples = source
        if samples.ndim == 2 and samples.shape[0] < samples.shape[1] and samples.shape[0] <= 8:
            samples = samples.T  # (channels, samples) -> (samples, channels)
        if samples.ndim not in (1, 2):
            raise AudioError(f"audio array must be 1-D or 2-D, got shape {samples.shape}")
        if np.issubdtype(samples.dtype, np.integer):
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
        return samples.astype(np.float32, copy=False), int(sample_rate)
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AudioError("audio bytes are empty")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise AudioError(f"audio file not found: {source}")
        if os.path.getsize(source) == 0:
            raise AudioError(f"audio file is empty: {source}")
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile reports truncated and non-audio input in many ways
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"cannot decode audio {describe(source)}: {message}") from None
    return samples, rate


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    if orig_rate == new_rate:
        return samples
    tensor = torch.from_numpy(np.ascontiguousarray(samples))
    return AF.resample(tensor, orig_rate, new_rate).numpy()


def normalize_db(samples: np.ndarray, target_db: float = -20.0) -> np.ndarray:
    """Scale to a target RMS level in dBFS; silence is left as it is."""
    rms = float(np.sqrt(np.mean(np.square(samples), dtype=np.float64)))
    if rms < 1e-8:
        return samples
    gain = 10 ** ((target_db - 20 * np.log10(rms)) / 20)
    return (samples * gain).astype(np.float32)


def load_audio(source: AudioSource, target_sample_rate: int = 16000, sample_rate: Optional[int] = None,
               min_duration: float = 0.0, use_db_normalization: bool = False,
               target_db: float = -20.0) -> np.ndarray:
    """Decode any supported source to mono float32 at `target_sample_rate`.

    Raises AudioError for empty, truncated, non-audio, non-finite or too-short input.
    """
    samples, rate = decode(source, sample_rate)
    samples = to_mono(samples)
    if samples.size == 0:
        raise AudioError(f"audio {describe(source)} holds no samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"audio {describe(source)} holds NaN or infinite samples")
    samples = resample(samples, rate, target_sample_rate)
    duration = samples.shape[0] / target_sample_rate
    if duration < min_duration:
        raise AudioError(f"audio {describe(source)} is {duration:.2f} s long, "
                         f"shorter than min_duration {min_duration} s")
    if use_db_normalization:
        samples = normalize_db(samples, target_db)
    return np.ascontiguousarray(samples, dtype=np.float32)


def audio_info(path: str) -> Tuple[float, int]:
    """(duration in seconds, sample rate) read from the header, without decoding."""
    try:
        info = soundfile.info(path)
    except Exception as e:
        raise AudioError(f"cannot read audio header of {path}: {str(e).splitlines()[0]}") from None
    return info.frames / info.samplerate, info.samplerate

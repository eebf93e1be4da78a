"""Decode, resample, mix to mono and normalise audio. Every failure is an AudioError."""
import io
import os
import warnings
from typing import BinaryIO, Callable, Optional, Tuple, Union

import numpy as np
import scipy.fft
import soundfile
import torch
import torchaudio.functional as AF

from mser.errors import AudioError, BandwidthWarning, ClippingWarning

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


def rms_dbfs(samples: np.ndarray) -> float:
    """Level of int16 or float samples in dB relative to full scale (-inf for digital silence)."""
    scale = 32768.0 if samples.dtype == np.int16 else 1.0
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64) / scale)))) if samples.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def normalize_db(samples: np.ndarray, target_db: float = -20.0) -> np.ndarray:
    """Scale to a target RMS level in dBFS; silence is left as it is."""
    rms = float(np.sqrt(np.mean(np.square(samples), dtype=np.float64)))
    if rms < 1e-8:
        return samples
    gain = 10 ** ((target_db - 20 * np.log10(rms)) / 20)
    return (samples * gain).astype(np.float32)


def load_audio(source: AudioSource, target_sample_rate: int = 16000, sample_rate: Optional[int] = None,
               min_duration: float = 0.0, use_db_normalization: bool = False,
               target_db: float = -20.0, clean: bool = False) -> np.ndarray:
    """Decode any supported source to mono float32 at `target_sample_rate`.

    clean: remove the DC offset and stretches of digital silence (remove_dc_and_digital_silence),
    as training, evaluation and single-clip prediction do; off where sample times must be kept.
    Raises AudioError for empty, truncated, non-audio, non-finite or too-short input.
    """
    return load_audio_and_rate(source, target_sample_rate, sample_rate, min_duration, use_db_normalization,
                               target_db, clean)[0]


def load_audio_and_rate(source: AudioSource, target_sample_rate: int = 16000, sample_rate: Optional[int] = None,
                        min_duration: float = 0.0, use_db_normalization: bool = False,
                        target_db: float = -20.0, clean: bool = False,
                        inspect: Optional[Callable[[np.ndarray], None]] = None) -> Tuple[np.ndarray, int]:
    """`load_audio`, and the sample rate the audio had before resampling (its file's, or `sample_rate`).
    inspect: called with the decoded mono samples at their own rate, before anything changes them
    (resampling rounds off the flat tops that tell a clipped recording, `warn_if_clipped`)."""
    samples, rate = decode(source, sample_rate)
    samples = to_mono(samples)
    if samples.size == 0:
        raise AudioError(f"audio {describe(source)} holds no samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"audio {describe(source)} holds NaN or infinite samples")
    if inspect is not None:
        inspect(samples)
    samples = resample(samples, rate, target_sample_rate)
    if clean:
        samples = remove_dc_and_digital_silence(samples, target_sample_rate)
    duration = samples.shape[0] / target_sample_rate
    if duration < min_duration:
        raise AudioError(f"audio {describe(source)} is {duration:.2f} s long, "
                         f"shorter than min_duration {min_duration} s")
    if use_db_normalization:
        samples = normalize_db(samples, target_db)
    return np.ascontiguousarray(samples, dtype=np.float32), int(rate)


# A stretch at least this long over which the signal does not move (consecutive samples within
# FLAT_STEP, a third of a 16-bit step) is digital silence: padding, a muted stream, a gap cut by a
# voice-activity gate. No microphone delivers it, since even a quiet room moves the low bits.
DIGITAL_SILENCE_SECONDS = 0.02
FLAT_STEP = 1e-5


def remove_dc_and_digital_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The clip without its DC offset and without its stretches of digital silence.

    A DC offset (a cheap sound card) and exact silence carry no emotion but move features far from
    anything heard in training: padding a clip with 0.5 s of zeros changed the answer of a trained
    model on a fifth of the clips. Real recordings keep every sample (their noise floor moves the
    low bits); a clip that is silence throughout is returned as it is.
    """
    if samples.size < 2:
        return samples
    samples = drop_digital_silence(samples, sample_rate)
    return samples - np.float32(samples.mean(dtype=np.float64))


def drop_digital_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """`samples` without every stretch of at least DIGITAL_SILENCE_SECONDS that does not move."""
    flat = np.abs(np.diff(samples)) < FLAT_STEP            # (n - 1,): sample i+1 repeats sample i
    edges = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    long_runs = (ends - starts) >= DIGITAL_SILENCE_SECONDS * sample_rate
    if not long_runs.any():
        return samples
    keep = np.ones(samples.size, dtype=bool)
    for start, end in zip(starts[long_runs], ends[long_runs]):
        keep[start:end + 1] = False
    return samples[keep] if keep.any() else samples


def audio_info(path: str) -> Tuple[float, int]:
    """(duration in seconds, sample rate) read from the header, without decoding."""
    try:
        info = soundfile.info(path)
    except Exception as e:
        raise AudioError(f"cannot read audio header of {path}: {str(e).splitlines()[0]}") from None
    return info.frames / info.samplerate, info.samplerate


# ---- bandwidth ------------------------------------------------------------------------------
# Telephone audio (300-3400 Hz through an 8 kHz channel) given to a model trained on 16 kHz audio is
# the common case: it decodes and classifies, but answers worse. Speech always carries the telephone
# band; what tells a narrow channel apart is a band above it that is empty relative to it. On the
# demo corpus (20 % telephone clips) the emptiest 4-8 kHz band of a wideband clip sits 33 dB below
# the speech band and that of a telephone clip 33-62 dB below (clipping and resampling leak some);
# 40 dB flags 96 % of the telephone clips and none of the others (README: bandwidth warning).
SPEECH_BAND_HZ = (300.0, 3400.0)
EMPTY_BAND_DB = 40.0        # a band this far below the speech band's power density counts as empty
NARROW_SHARE = 0.7          # warn below this share of the model's band: 5600 Hz for a 16 kHz model
SCAN_START_HZ, SCAN_STEP_HZ = 1000.0, 125.0
FRAME_SECONDS = 0.032
ANALYSIS_SECONDS = 30.0     # a long recording's bandwidth is told by its first 30 s


def power_spectrum(samples: np.ndarray, sample_rate: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(frequencies, mean power) of Hann-windowed 32 ms frames with half overlap, each (bins,);
    None for a clip shorter than one frame. Only the first ANALYSIS_SECONDS are read."""
    frame = int(FRAME_SECONDS * sample_rate)
    samples = np.asarray(samples, dtype=np.float32)[:int(ANALYSIS_SECONDS * sample_rate)]
    if frame < 16 or samples.shape[0] < frame:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::frame // 2]
    # scipy's FFT stays in float32 (numpy's computes in float64): 5x faster, 0.5 ms of every predict()
    power = np.square(np.abs(scipy.fft.rfft(frames * np.hanning(frame).astype(np.float32), axis=1)))
    return np.fft.rfftfreq(frame, 1.0 / sample_rate), power.mean(axis=0, dtype=np.float64)


def effective_bandwidth(samples: np.ndarray, sample_rate: int, native_rate: Optional[int] = None) -> Optional[float]:
    """The frequency in Hz below which a clip holds its sound.

    samples: (samples,) mono at `sample_rate`; native_rate: the rate the audio had before it was
    resampled to `sample_rate`, when known (half of it bounds the answer).
    The answer is the lowest frequency F (from 1 kHz up, in 125 Hz steps) such that everything above
    F has a mean power density more than EMPTY_BAND_DB below that of the speech band 300-3400 Hz;
    half of `sample_rate` when no such F exists. None when it cannot be told: silence, or a clip
    shorter than 32 ms at its own rate.
    """
    nyquist = sample_rate / 2.0
    limit = min(nyquist, native_rate / 2.0) if native_rate else nyquist
    spectrum = power_spectrum(samples, sample_rate)
    if spectrum is None:
        return limit if limit < nyquist else None
    frequencies, power = spectrum
    low, high = SPEECH_BAND_HZ[0], min(SPEECH_BAND_HZ[1], 0.85 * nyquist)
    reference = power[(frequencies >= low) & (frequencies <= high)].mean()
    if not reference > 1e-20:   # digital silence: nothing to measure
        return limit if limit < nyquist else None
    tail_mean = np.cumsum(power[::-1])[::-1] / np.arange(power.shape[0], 0, -1)
    empty = reference * 10 ** (-EMPTY_BAND_DB / 10)
    for frequency in np.arange(SCAN_START_HZ, nyquist, SCAN_STEP_HZ):
        if tail_mean[np.searchsorted(frequencies, frequency)] < empty:
            return min(float(frequency), limit)
    return limit


def band_limit_message(samples: np.ndarray, sample_rate: int, native_rate: Optional[int] = None,
                       name: str = "the audio", model_band_hz: Optional[float] = None) -> Optional[str]:
    """What to tell a user whose clip is much narrower-band than the model hears (below NARROW_SHARE
    of `model_band_hz`, by default half of `sample_rate`; lower for a model trained with
    preprocess_conf.band_limit_hz); None for a clip wide enough, silence or a clip too short to tell."""
    band = model_band_hz or sample_rate / 2
    bandwidth = effective_bandwidth(samples, sample_rate, native_rate)
    if bandwidth is None or bandwidth >= NARROW_SHARE * band:
        return None
    heard = f"{sample_rate} Hz audio" if band >= sample_rate / 2 else f"audio up to {band:.0f} Hz"
    return (f"{name} is band-limited to about {round(bandwidth, -2):.0f} Hz (e.g. 8 kHz telephone audio); "
            f"the model was trained on {heard}, expect lower accuracy")


def warn_if_band_limited(samples: np.ndarray, sample_rate: int, native_rate: Optional[int] = None,
                         name: str = "the audio", model_band_hz: Optional[float] = None) -> bool:
    """Raise a BandwidthWarning (never an error) when `band_limit_message` has something to say;
    returns whether it did. Under Python's default warning filter a message is shown once, so a
    file warns once per process however often it is classified."""
    message = band_limit_message(samples, sample_rate, native_rate, name, model_band_hz)
    if message is not None:
        warnings.warn(message, BandwidthWarning, stacklevel=3)
    return message is not None


# A clipped recording (a microphone gain set too high, an overdriven line) holds flat tops: runs of
# samples stuck at the clip's highest or lowest value. Speech almost never repeats its extreme sample
# three times in a row, so samples in such runs are counted. On the demo test list (210 clips) no
# clip as recorded has 1 % of its samples in them and every clip under 12 dB of overdrive does
# (median 6.7 %); the answers of the recommended ensemble change on about a fifth of clipped clips
# (README, Robustness). The run is looked for at the clip's own extremes, so a clipped clip turned
# down afterwards, or with its DC offset removed, still counts; resampling rounds the flat tops off,
# so the samples are looked at before it (load_audio_and_rate's `inspect`).
CLIPPED_RUN = 3             # samples in a row at an extreme make a flat top
CLIPPED_SHARE = 0.01        # warn from this share of the samples in flat tops
CLIPPED_TOLERANCE = 1e-4    # of the clip's peak-to-peak range: "at" an extreme


def clipped_share(samples: np.ndarray) -> float:
    """The share of `samples` ((samples,) mono) in runs of CLIPPED_RUN or more at the clip's highest
    or lowest value; 0 for silence or an empty clip."""
    samples = np.asarray(samples)
    if samples.size == 0:
        return 0.0
    high, low = float(samples.max()), float(samples.min())
    tolerance = CLIPPED_TOLERANCE * (high - low)
    if tolerance <= 0:
        return 0.0
    extreme = ((samples >= high - tolerance) | (samples <= low + tolerance)).astype(np.int8)
    edges = np.diff(np.concatenate([[0], extreme, [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return float(runs[runs >= CLIPPED_RUN].sum()) / samples.size


def clipping_message(samples: np.ndarray, name: str = "the audio") -> Optional[str]:
    """What to tell a user whose clip is clipped (CLIPPED_SHARE or more of it in flat tops); None otherwise."""
    share = clipped_share(samples)
    if share < CLIPPED_SHARE:
        return None
    return (f"{name} is clipped ({share:.1%} of its samples stuck at its peak, e.g. a microphone gain set too high); "
            f"expect lower accuracy")


def warn_if_clipped(samples: np.ndarray, name: str = "the audio") -> bool:
    """Raise a ClippingWarning (never an error) when `clipping_message` has something to say; returns
    whether it did (once per input under Python's default warning filter, as BandwidthWarning).
    Give it the samples at their own rate: resampled flat tops ring and may pass unnoticed."""
    message = clipping_message(samples, name)
    if message is not None:
        warnings.warn(message, ClippingWarning, stacklevel=3)
    return message is not None


def input_name(source: AudioSource) -> str:
    """How a warning names an input: the path of a file, else what kind of audio it was."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(getattr(source, "name", None), str):
        return source.name
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return "the audio array"
    return "the audio"

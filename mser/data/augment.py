"""Data augmentation: talker, room, noise, channel, level and silence on training waveforms;
SpecAugment on features.

Where each part runs
--------------------
`WaveformAugmenter` is called by AudioDataset on every training clip, after the clip has been
decoded, resampled, mixed to mono, dB-normalised (when `dataset_conf.dataset.use_dB_normalization`
is on) and randomly cropped to `max_duration`:

    samples = augmenter(samples, rng)      # float32 (samples,) -> float32 (samples',)

Normalisation comes first so that the volume augmentation is not undone by it: a clip normalised
to -20 dBFS and then given +6 dB reaches the model at -14 dBFS. Evaluation clips are never
augmented. Speed perturbation changes a clip's length (by 1 / speed) and inserted silence adds
to it, so a clip may end up a little longer than `max_duration`; the collate function pads
batches to the longest clip anyway.

Inside the augmenter the steps run in the order of WAVEFORM_SECTIONS:

    speed, pitch_shift, formant_shift,     the talker (rate, pitch, vocal tract length),
    time_shift                             and where the speech sits in the window
    reverb, noise                          the room, then what the microphone hears besides it
    lowpass, highpass, telephone, codec    the channel: microphone response, phone line, lossy codec
    volume, clipping, dc_offset            the level, an overdriven input, a converter's DC offset
    silence                                digital zeros from padding or a voice-activity gate

Noise comes before the channel because it enters at the microphone and goes through the line with
the speech; the gain comes after the noise so that it scales speech and noise together and leaves
the requested signal-to-noise ratio intact; silence comes last because every earlier step would
turn its exact zeros into small non-zero values.

`SpecAugment` runs in the training loop on the batched features, on their device, after the
featurizer and before the model; it is the identity in eval mode.

Randomness
----------
AudioDataset passes a numpy Generator seeded by (seed, epoch, clip index), so an epoch is the
same whatever the number of DataLoader workers. Called without one, the augmenter draws from its
own Generator seeded by `seed`; inside a DataLoader worker that Generator is re-seeded from
(seed, the worker's torch seed) on first use, so forked workers do not repeat each other's noise.
SpecAugment draws from torch's generator on the features' device (seeded by the trainer).

Config
------
A YAML file with the sections of AUGMENT_DEFAULTS (see configs/augmentation.yml). Every section
has its own `prob`, the chance that it is applied to a clip; a section left out of the file keeps
prob 0, so it is off. Unknown keys are errors naming the nearest valid key.
"""
import copy
import io
import math
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import scipy.fft
import scipy.signal
import soundfile
import torch
import torchaudio.functional as AF
from torch import nn

from mser.audio import load_audio
from mser.config import merge, read_yaml
from mser.errors import AudioError, ConfigError

AUGMENT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "speed": {"prob": 0.0, "speeds": [0.9, 1.0, 1.1]},
    "pitch_shift": {"prob": 0.0, "min_semitones": -2.0, "max_semitones": 3.0},
    "formant_shift": {"prob": 0.0, "min_factor": 0.9, "max_factor": 1.1},
    "time_shift": {"prob": 0.0, "max_fraction": 0.5},
    "volume": {"prob": 0.0, "min_gain_dB": -15.0, "max_gain_dB": 15.0},
    "noise": {"prob": 0.0, "noise_dir": "", "min_snr_dB": 10.0, "max_snr_dB": 30.0,
              "colors": ["white", "pink", "brown"]},
    "reverb": {"prob": 0.0, "rir_dir": "", "min_rt60": 0.2, "max_rt60": 0.8},
    "lowpass": {"prob": 0.0, "min_cutoff_hz": 2000.0, "max_cutoff_hz": 6000.0},
    "highpass": {"prob": 0.0, "min_cutoff_hz": 50.0, "max_cutoff_hz": 400.0},
    "telephone": {"prob": 0.0, "min_low_hz": 200.0, "max_low_hz": 400.0, "min_high_hz": 3000.0,
                  "max_high_hz": 3600.0, "resample_prob": 0.5, "mu_law_prob": 0.5},
    "codec": {"prob": 0.0, "formats": ["ogg", "mp3"], "min_compression": 0.0, "max_compression": 0.9},
    "clipping": {"prob": 0.0, "min_level": 0.3, "max_level": 0.9},
    "dc_offset": {"prob": 0.0, "min_offset": -0.05, "max_offset": 0.05},
    "silence": {"prob": 0.0, "min_seconds": 0.05, "max_seconds": 0.5, "positions": ["start", "end", "gap"]},
    "spec_aug": {"prob": 0.0, "freq_mask_width": 8, "num_freq_masks": 2,
                 "time_mask_width": 10, "num_time_masks": 2},
}

# The waveform sections, in the order they are applied (see the module docstring for why).
WAVEFORM_SECTIONS = ("speed", "pitch_shift", "formant_shift", "time_shift", "reverb", "noise", "lowpass", "highpass",
                     "telephone", "codec", "volume", "clipping", "dc_offset", "silence")
# Sections users look for under another name: the message says where the setting lives.
SECTION_ALIASES = {"gain": "gain in a dB range is the 'volume' section (prob, min_gain_dB, max_gain_dB)"}

# Power spectral density ~ 1 / f**exponent.
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
# Raised whenever a change makes a config draw other audio from the same seed; part of the key of
# cached augmented copies, so that copies drawn by an older mser are drawn anew.
# 2: coloured noise shaped over a fast FFT length (2026-12-01)
DRAWS_VERSION = 2
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# Synthetic rooms: energy of the direct sound relative to the reverberant tail. 0 dB is a talker
# a metre or two away in an ordinary room; the tail still dominates the sound for a high RT60.
SYNTHETIC_DIRECT_TO_REVERB_DB = 0.0
# codec.formats: name -> (libsndfile format, subtype, sample rates the encoder takes or None for any;
# a clip at another rate goes through the highest of them).
CODECS: Dict[str, Tuple[str, str, Optional[Tuple[int, ...]]]] = {
    "ogg": ("OGG", "VORBIS", None),
    "opus": ("OGG", "OPUS", (8000, 12000, 16000, 24000, 48000)),
    "mp3": ("MP3", "MPEG_LAYER_III", None),
    "gsm": ("WAV", "GSM610", (8000,)),   # GSM 06.10 full rate (13 kbit/s), the 2G mobile phone codec
}
FIXED_BITRATE_CODECS = ("gsm",)   # one bitrate: codec.*_compression does not apply
# libsndfile refuses compression_level 1.0 for MP3; 0.99 is its lowest bitrate.
MP3_MAX_COMPRESSION = 0.99
SILENCE_POSITIONS = ("start", "end", "gap")
TELEPHONE_RATE = 8000
# The 8 kHz round trip filters like a phone codec's anti-aliasing filter: flat to ~3.4 kHz, 60 dB
# down above 4.1 kHz (torchaudio's default kernel leaves images at only -24 dB).
TELEPHONE_RESAMPLING = {"lowpass_filter_width": 16, "rolloff": 0.9, "resampling_method": "sinc_interp_kaiser"}
BUTTERWORTH_Q = 1 / math.sqrt(2)
# pitch_shift resamples from a rate rounded to this step, so that the polyphase kernel stays
# small: 50 Hz at 16 kHz is a pitch resolution of 0.05 semitones, at 8 kHz 0.1.
PITCH_RATE_STEP = 50
# formant_shift: the spectral envelope is the real cepstrum below this quefrency. It must stay
# under the shortest pitch period it meets (2.5 ms at 400 Hz), or the harmonics move with the
# formants; 1.6 ms keeps voices up to ~600 Hz apart from their envelope.
ENVELOPE_QUEFRENCY_S = 0.0016
FORMANT_FACTOR_RANGE = (0.7, 1.4)


def load_augmentation_config(path: str, sample_rate: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
    """Read an augmentation YAML, merge it over AUGMENT_DEFAULTS and check every value; the noise
    and RIR folders of enabled sections must exist and hold audio files. With `sample_rate`, the
    filter cut-offs of enabled sections must lie below half of it."""
    config = augmentation_config(read_yaml(path))
    for section, key in (("noise", "noise_dir"), ("reverb", "rir_dir")):
        if config[section]["prob"] > 0 and config[section][key]:
            audio_files(config[section][key], f"{section}.{key}")
    if sample_rate is not None:
        check_cutoffs(config, sample_rate)
    return config


def waveform_sections_on(config: Dict[str, Dict[str, Any]]) -> List[str]:
    """The waveform sections of a checked augmentation config that are switched on, in the order
    they are applied."""
    return [name for name in WAVEFORM_SECTIONS if name in config and config[name]["prob"] > 0]


def augmentation_config(user: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """The same checks for a config given as a dict (sections may be partial or missing)."""
    for name, where in SECTION_ALIASES.items():
        if name in (user or {}):
            raise ConfigError(f"there is no '{name}' augmentation section: {where}")
    return validate(merge(AUGMENT_DEFAULTS, user or {}, set()))


def validate(config: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    for section, values in config.items():
        check_range(f"{section}.prob", values["prob"], 0.0, 1.0)
    check_speeds(config["speed"]["speeds"])
    check_order(config["volume"], "volume", "min_gain_dB", "max_gain_dB")
    check_order(config["noise"], "noise", "min_snr_dB", "max_snr_dB")
    check_colors(config["noise"]["colors"])
    if config["reverb"]["min_rt60"] <= 0:
        raise ConfigError(f"'reverb.min_rt60' must be more than 0 seconds, got {config['reverb']['min_rt60']!r}")
    check_order(config["reverb"], "reverb", "min_rt60", "max_rt60")
    for key in ("freq_mask_width", "num_freq_masks", "time_mask_width", "num_time_masks"):
        config["spec_aug"][key] = whole_number(f"spec_aug.{key}", config["spec_aug"][key])
    validate_talker(config)
    validate_channel(config)
    validate_level(config)
    return config


def validate_talker(config: Dict[str, Dict[str, Any]]) -> None:
    section = config["pitch_shift"]
    for key in ("min_semitones", "max_semitones"):
        check_range(f"pitch_shift.{key}", section[key], -12.0, 12.0)
    check_order(section, "pitch_shift", "min_semitones", "max_semitones")
    formants = config["formant_shift"]
    for key in ("min_factor", "max_factor"):
        check_range(f"formant_shift.{key}", formants[key], *FORMANT_FACTOR_RANGE)
    check_order(formants, "formant_shift", "min_factor", "max_factor")
    check_range("time_shift.max_fraction", config["time_shift"]["max_fraction"], 0.0, 0.5)


def validate_channel(config: Dict[str, Dict[str, Any]]) -> None:
    for name in ("lowpass", "highpass"):
        check_positive(config[name], name, "min_cutoff_hz")
        check_order(config[name], name, "min_cutoff_hz", "max_cutoff_hz")
    telephone = config["telephone"]
    check_positive(telephone, "telephone", "min_low_hz")
    check_order(telephone, "telephone", "min_low_hz", "max_low_hz")
    check_order(telephone, "telephone", "min_high_hz", "max_high_hz")
    check_order(telephone, "telephone", "max_low_hz", "min_high_hz")
    for key in ("resample_prob", "mu_law_prob"):
        check_range(f"telephone.{key}", telephone[key], 0.0, 1.0)
    codec = config["codec"]
    for key in ("min_compression", "max_compression"):
        check_range(f"codec.{key}", codec[key], 0.0, 1.0)
    check_order(codec, "codec", "min_compression", "max_compression")
    codec["formats"] = usable_codecs(codec["formats"], codec["prob"] > 0)


def validate_level(config: Dict[str, Dict[str, Any]]) -> None:
    clipping = config["clipping"]
    for key in ("min_level", "max_level"):
        if not 0.0 < clipping[key] <= 1.0:
            raise ConfigError(f"'clipping.{key}' must lie in (0, 1] (a fraction of the clip's peak), "
                              f"got {clipping[key]!r}")
    check_order(clipping, "clipping", "min_level", "max_level")
    for key in ("min_offset", "max_offset"):
        check_range(f"dc_offset.{key}", config["dc_offset"][key], -1.0, 1.0)
    check_order(config["dc_offset"], "dc_offset", "min_offset", "max_offset")
    silence = config["silence"]
    for key in ("min_seconds", "max_seconds"):
        check_range(f"silence.{key}", silence[key], 0.0, 60.0)
    check_order(silence, "silence", "min_seconds", "max_seconds")
    check_choices("silence.positions", silence["positions"], SILENCE_POSITIONS)


def check_cutoffs(config: Dict[str, Dict[str, Any]], sample_rate: int) -> None:
    """The filter cut-offs of enabled sections must lie below half the sample rate."""
    nyquist = sample_rate / 2
    for section, key in (("lowpass", "max_cutoff_hz"), ("highpass", "max_cutoff_hz"), ("telephone", "max_high_hz")):
        value = config[section][key]
        if config[section]["prob"] > 0 and value >= nyquist:
            raise ConfigError(f"'{section}.{key}' ({value}) must be below half the sample rate "
                              f"({nyquist:g} Hz for {sample_rate} Hz audio)")


def whole_number(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"'{name}' must be a whole number >= 0, got {value!r}")
    return value


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"'{name}' must lie in [{low}, {high}], got {value!r}")


def check_positive(section: Dict[str, Any], name: str, key: str) -> None:
    if section[key] <= 0:
        raise ConfigError(f"'{name}.{key}' must be more than 0 Hz, got {section[key]!r}")


def check_order(section: Dict[str, Any], name: str, low_key: str, high_key: str) -> None:
    if section[low_key] > section[high_key]:
        raise ConfigError(f"'{name}.{low_key}' ({section[low_key]}) is greater than "
                          f"'{name}.{high_key}' ({section[high_key]})")


def check_speeds(value: Any) -> None:
    numbers = isinstance(value, list) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
    if not numbers:
        raise ConfigError(f"'speed.speeds' must be a non-empty list of positive numbers, e.g. [0.9, 1.0, 1.1]; "
                          f"got {value!r}")


def check_colors(value: Any) -> None:
    check_choices("noise.colors", value, tuple(NOISE_COLORS))


def check_choices(name: str, value: Any, choices: Tuple[str, ...]) -> None:
    if not isinstance(value, list) or not value or any(not isinstance(v, str) or v not in choices for v in value):
        raise ConfigError(f"'{name}' must be a non-empty list drawn from {', '.join(choices)}; got {value!r}")


def usable_codecs(formats: Any, section_on: bool) -> List[str]:
    """The names in `formats` that this libsndfile can encode. A missing one is dropped with a
    one-line note on stdout (once per process); none left is a ConfigError when codec is on."""
    check_choices("codec.formats", formats, tuple(CODECS))
    usable = [name for name in formats if codec_available(name)]
    missing = [name for name in formats if name not in usable]
    if section_on and missing:
        if not usable:
            raise ConfigError(f"no format in 'codec.formats' ({', '.join(formats)}) can be encoded by this libsndfile "
                              f"({soundfile.__libsndfile_version__}); set codec.prob to 0")
        note_once(f"note: codec.formats {', '.join(missing)} cannot be encoded by this libsndfile "
                  f"({soundfile.__libsndfile_version__}); codec uses {', '.join(usable)}")
    return usable if usable else list(formats)


def codec_available(name: str) -> bool:
    container, subtype, _ = CODECS[name]
    return container in soundfile.available_formats() and subtype in soundfile.available_subtypes(container)


NOTES_GIVEN: set = set()


def note_once(message: str) -> None:
    if message not in NOTES_GIVEN:
        NOTES_GIVEN.add(message)
        print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Signal operations on float32 (samples,) arrays.


def unchanged(samples: np.ndarray) -> np.ndarray:
    return samples


def change_speed(samples: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """Kaldi/sox-style speed perturbation: duration / speed, pitch * speed. (S,) -> (~S / speed,)."""
    if speed == 1.0:
        return samples
    # Read the clip as if it had been recorded at sample_rate * speed, then resample it back.
    source_rate = int(round(sample_rate * speed))
    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return AF.resample(tensor, source_rate, sample_rate).numpy()


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by `gain_db` decibels, without clipping: float samples may exceed 1. (S,) -> (S,)."""
    return (samples * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `noise` (same shape as samples) scaled to the signal-to-noise ratio `snr_db` over the
    whole clip. Silent clips or silent noise leave the clip as it is. (S,) -> (S,)."""
    if not np.any(samples) or not np.any(noise):
        return samples
    signal = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float64))
    noise_tensor = torch.from_numpy(np.ascontiguousarray(noise, dtype=np.float64))
    mixed = AF.add_noise(signal, noise_tensor, torch.tensor(float(snr_db), dtype=torch.float64))
    return mixed.numpy().astype(np.float32)


def colored_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as 1 / f**k (white k=0, pink k=1, brown k=2). -> (num_samples,)."""
    # shaped over a fast FFT length and cut: a length with a large prime factor is slow to transform
    fast_length = scipy.fft.next_fast_len(num_samples, real=True)
    spectrum = scipy.fft.rfft(rng.standard_normal(fast_length))
    frequencies = np.arange(spectrum.shape[0], dtype=np.float64)
    frequencies[0] = 1.0  # keep the DC bin finite; it carries no colour
    spectrum *= frequencies ** (-NOISE_COLORS[color] / 2.0)
    noise = scipy.fft.irfft(spectrum, n=fast_length)[:num_samples]
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def synthetic_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: a direct-path impulse followed by Gaussian noise whose amplitude
    decays by 60 dB in `rt60` seconds; unit energy. -> (round(rt60 * sample_rate),)."""
    length = max(2, int(round(rt60 * sample_rate)))
    time = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * 10.0 ** (-3.0 * time / rt60)
    tail[0] = 0.0
    direct = np.sqrt(np.sum(tail ** 2) * 10.0 ** (SYNTHETIC_DIRECT_TO_REVERB_DB / 10.0))
    tail[0] = direct
    return normalize_rir(tail)


def normalize_rir(rir: np.ndarray) -> np.ndarray:
    """Drop what comes before the direct path (the strongest tap), so that reverberation does not
    delay the clip, and scale to unit energy, so that it roughly keeps the clip's level."""
    rir = rir[int(np.argmax(np.abs(rir))):]
    return (rir / (np.sqrt(np.sum(np.square(rir, dtype=np.float64))) + 1e-12)).astype(np.float32)


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a normalised RIR, keeping the clip's length. (S,), (R,) -> (S,)."""
    # scipy pads the FFT to a fast length; torchaudio's fftconvolve transforms at the full length,
    # which often has a large prime factor, and took 10-19 times as long (a 3 s clip, a 0.8 s response)
    signal = np.ascontiguousarray(samples, dtype=np.float32)
    response = np.ascontiguousarray(rir, dtype=np.float32)
    return scipy.signal.fftconvolve(signal, response)[:samples.shape[0]].astype(np.float32)


def segment(noise: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of `num_samples` from `noise`, wrapping round when the noise is shorter."""
    start = int(rng.integers(0, noise.shape[0]))
    return np.take(noise, np.arange(start, start + num_samples), mode="wrap")

def as_tensor(samples: np.ndarray, dtype=np.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=dtype))


def fit_length(samples: np.ndarray, num_samples: int) -> np.ndarray:
    """Cut or zero-pad at the end to `num_samples`. (S,) -> (num_samples,)."""
    if samples.shape[0] >= num_samples:
        return samples[:num_samples]
    return np.pad(samples, (0, num_samples - samples.shape[0]))


def shift_pitch(samples: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Raise the pitch by `semitones` (lower when negative) and keep the duration: a phase-locked
    phase-vocoder time stretch by the pitch ratio, then resampling back to the clip's length. The
    ratio is rounded so that the source rate is a multiple of PITCH_RATE_STEP Hz (resampling between
    rates with a small common divisor is fast). Clips shorter than one analysis window are
    returned as they are. (S,) -> (S,)."""
    n_fft = 2 ** math.ceil(math.log2(0.032 * sample_rate))  # ~32 ms windows
    source_rate = int(round(sample_rate * 2.0 ** (semitones / 12.0) / PITCH_RATE_STEP)) * PITCH_RATE_STEP
    if source_rate == sample_rate or samples.shape[0] <= n_fft:
        return samples
    ratio = source_rate / sample_rate
    hop = n_fft // 4
    window = torch.hann_window(n_fft)
    spectrum = torch.stft(as_tensor(samples), n_fft, hop, window=window, return_complex=True)
    stretched = phase_locked_vocoder(spectrum, 1.0 / ratio, hop)
    longer = torch.istft(stretched, n_fft, hop, window=window, length=int(round(samples.shape[0] * ratio)))
    return fit_length(AF.resample(longer, source_rate, sample_rate).numpy(), samples.shape[0])


def shift_formants(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Move the formants (the spectral envelope: the vocal tract) up by `factor` (down when < 1)
    and keep the pitch, the duration and the level: a shorter or longer vocal tract, another
    voice. Each STFT frame's log-magnitude envelope is its real cepstrum liftered below
    ENVELOPE_QUEFRENCY_S; bin k is scaled by envelope(k / factor) / envelope(k), the phase kept.
    pitch_shift moves pitch and formants together; this moves the formants alone. Clips shorter
    than one analysis window are returned as they are. (S,) -> (S,)."""
    n_fft = 2 ** math.ceil(math.log2(0.032 * sample_rate))  # ~32 ms windows
    if factor == 1.0 or samples.shape[0] <= n_fft or not np.any(samples):
        return samples
    hop = n_fft // 4
    window = torch.hann_window(n_fft, dtype=torch.float64)
    signal = as_tensor(samples, np.float64)
    spectrum = torch.stft(signal, n_fft, hop, window=window, return_complex=True)
    envelope = log_envelope(spectrum.abs(), n_fft, int(ENVELOPE_QUEFRENCY_S * sample_rate))
    source_bin = (torch.arange(spectrum.shape[0], dtype=torch.float64) / factor).clamp(max=spectrum.shape[0] - 1)
    below = source_bin.floor().long()
    above = (below + 1).clamp(max=spectrum.shape[0] - 1)
    weight = (source_bin - below)[:, None]
    warped = (1 - weight) * envelope[below] + weight * envelope[above]
    shifted = torch.istft(spectrum * torch.exp(warped - envelope), n_fft, hop, window=window,
                          length=samples.shape[0]).numpy()
    # The envelope's gain moves the level with the formants; the level is the talker's, keep it.
    scale = np.sqrt(np.mean(np.square(samples, dtype=np.float64)) / (np.mean(np.square(shifted)) + 1e-20))
    return (shifted * scale).astype(np.float32)


def log_envelope(magnitude: torch.Tensor, n_fft: int, lifter: int) -> torch.Tensor:
    """The smooth log-magnitude envelope of each frame: the real cepstrum's first `lifter`
    quefrencies (and their mirror) transformed back. (bins, frames) -> (bins, frames)."""
    floor = magnitude.amax().clamp(min=1e-12) * 1e-6   # -120 dB under the loudest bin
    cepstrum = torch.fft.irfft(torch.log(magnitude.clamp(min=floor)), n=n_fft, dim=0)
    cepstrum[lifter + 1:n_fft - lifter] = 0
    return torch.fft.rfft(cepstrum, dim=0).real


def phase_locked_vocoder(spectrum: torch.Tensor, rate: float, hop: int) -> torch.Tensor:
    """Time-stretch an STFT by `rate` (> 1 faster, < 1 slower) with identity phase locking
    (Laroche & Dolson 1999): each bin takes the phase of the spectral peak it belongs to, advanced
    at that peak's own frequency, plus the bin's analysed phase offset from the peak.

    torchaudio.functional.phase_vocoder advances every bin on its own; measured here it leaves
    speech 3-4 dB quieter and a steady tone stretched by 1/0.95 12 dB quieter (its bins drift out
    of phase with each other); with the locking both keep their level within about 1 dB.
    spectrum: complex (bins, frames) -> complex (bins, ceil((frames - 1) / rate))."""
    bins, frames = spectrum.shape
    steps = torch.arange(0, frames - 1, rate, dtype=torch.float64)
    index = steps.long()
    alpha = (steps - index).to(spectrum.real.dtype)
    first, second = spectrum[:, index], spectrum[:, index + 1]
    magnitude = (1 - alpha) * first.abs() + alpha * second.abs()
    expected = torch.linspace(0, math.pi * hop, bins, dtype=spectrum.real.dtype)[:, None]
    deviation = second.angle() - first.angle() - expected
    advance = expected + deviation - 2 * math.pi * torch.round(deviation / (2 * math.pi))
    own_phase = spectrum[:, :1].angle() + torch.cumsum(nn.functional.pad(advance[:, :-1], (1, 0)), dim=1)
    owner = nearest_peak(magnitude)
    analysed = first.angle()
    return torch.polar(magnitude, own_phase.gather(0, owner) + analysed - analysed.gather(0, owner))


def nearest_peak(magnitude: torch.Tensor) -> torch.Tensor:
    """For every bin of every frame, the index of the nearest local maximum of `magnitude` in the
    same frame. (bins, frames) -> long (bins, frames)."""
    bins = magnitude.shape[0]
    below = nn.functional.pad(magnitude, (0, 0, 1, 0), value=-1.0)[:-1]
    above = nn.functional.pad(magnitude, (0, 0, 0, 1), value=-1.0)[1:]
    peak = (magnitude >= below) & (magnitude > above)
    position = torch.arange(bins)[:, None].expand_as(magnitude)
    previous = torch.cummax(torch.where(peak, position, -2 * bins), dim=0).values
    following = torch.flip(torch.cummin(torch.flip(torch.where(peak, position, 3 * bins), [0]), dim=0).values, [0])
    return torch.where(following - position < position - previous, following, previous).clamp(0, bins - 1)


def butterworth_cascade(samples: np.ndarray, sample_rate: int, cutoff_hz: float, kind: str) -> np.ndarray:
    """Low- or high-pass (`kind` 'low'/'high'): two cascaded 2nd-order Butterworth biquads, a
    4th-order Linkwitz-Riley response: -6 dB at `cutoff_hz`, 24 dB per octave beyond it. (S,) -> (S,)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak == 0.0:
        return samples
    # torchaudio's lfilter clamps its output to [-1, 1]: filter a copy with 12 dB of headroom.
    scale = 0.25 / peak
    signal = as_tensor(samples, np.float64) * scale
    biquad = AF.lowpass_biquad if kind == "low" else AF.highpass_biquad
    for _ in range(2):
        signal = biquad(signal, sample_rate, cutoff_hz, Q=BUTTERWORTH_Q)
    return (signal / scale).numpy().astype(np.float32)


def telephone_channel(samples: np.ndarray, sample_rate: int, low_hz: float, high_hz: float,
                      resample: bool, mu_law: bool) -> np.ndarray:
    """A phone line: band-pass `low_hz`..`high_hz` (Butterworth cascades as in lowpass/highpass),
    optionally sampled at 8 kHz and back (when the clip's rate is higher) and optionally G.711
    mu-law companded (256 levels, full scale 1.0: louder samples clip, as on a real line). (S,) -> (S,)."""
    band = butterworth_cascade(samples, sample_rate, low_hz, "high")
    band = butterworth_cascade(band, sample_rate, high_hz, "low")
    line_rate = TELEPHONE_RATE if resample and sample_rate > TELEPHONE_RATE else sample_rate
    signal = as_tensor(band)
    if line_rate != sample_rate:
        signal = AF.resample(signal, sample_rate, line_rate, **TELEPHONE_RESAMPLING)
    if mu_law:
        codes = AF.mu_law_encoding(signal.clamp(-1.0, 1.0), 256)
        signal = AF.mu_law_decoding(codes, 256)
    if line_rate != sample_rate:
        signal = AF.resample(signal, line_rate, sample_rate, **TELEPHONE_RESAMPLING)
    return fit_length(signal.numpy().astype(np.float32), samples.shape[0])


def codec_round_trip(samples: np.ndarray, sample_rate: int, codec: str, compression: float) -> np.ndarray:
    """Encode with a lossy codec in memory (libsndfile through soundfile) and decode again.
    compression: libsndfile's compression_level, 0 (best quality) .. 1 (smallest). Clips louder
    than full scale are encoded scaled down and scaled back, so that the codec does not clip them;
    Opus at a rate it does not take goes through 48 kHz. The result is trimmed or zero-padded at
    the end to the input length (libsndfile already removes the encoders' start delay). GSM has one
    bitrate and ignores `compression`; it takes 8 kHz only, so it also band-limits. (S,) -> (S,)."""
    container, subtype, rates = CODECS[codec]
    if samples.shape[0] == 0:
        return samples
    if codec == "mp3":
        compression = min(compression, MP3_MAX_COMPRESSION)
    peak = float(np.max(np.abs(samples)))
    scale = 1.0 / peak if peak > 1.0 else 1.0
    signal, rate = samples * np.float32(scale), sample_rate
    if rates is not None and sample_rate not in rates:
        rate = max(rates)
        signal = AF.resample(as_tensor(signal), sample_rate, rate).numpy()
    buffer = io.BytesIO()
    level = {} if codec in FIXED_BITRATE_CODECS else {"compression_level": compression}
    soundfile.write(buffer, signal, rate, format=container, subtype=subtype, **level)
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    if rate != sample_rate:
        decoded = AF.resample(as_tensor(decoded), rate, sample_rate).numpy()
    return (fit_length(decoded, samples.shape[0]) / np.float32(scale)).astype(np.float32)


def hard_clip(samples: np.ndarray, level: float) -> np.ndarray:
    """Clip at +-level * the clip's peak (level in (0, 1]). (S,) -> (S,)."""
    threshold = np.float32(level * np.max(np.abs(samples))) if samples.size else np.float32(0)
    return np.clip(samples, -threshold, threshold) if threshold > 0 else samples


def insert_silence(samples: np.ndarray, num_zeros: int, position: int) -> np.ndarray:
    """Insert `num_zeros` exact zeros before sample `position`. (S,) -> (S + num_zeros,)."""
    return np.concatenate([samples[:position], np.zeros(num_zeros, np.float32), samples[position:]])


def audio_files(folder: str, key: str) -> List[str]:
    """The audio files under `folder`, searched recursively; ConfigError when there are none."""
    if not os.path.isdir(folder):
        raise ConfigError(f"'{key}' is '{folder}', which is not a folder")
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                   for name in names if name.lower().endswith(AUDIO_EXTENSIONS))
    if not paths:
        raise ConfigError(f"'{key}' folder '{folder}' holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return paths


class AudioFolder:
    """The audio files under a folder (searched recursively), loaded at `sample_rate` on first
    use and kept in memory after that. `prepare` turns a loaded file into what is cached."""

    def __init__(self, folder: str, key: str, sample_rate: int,
                 prepare: Callable[[np.ndarray], np.ndarray] = unchanged):
        self.paths = audio_files(folder, key)
        self.key, self.sample_rate, self.prepare = key, sample_rate, prepare
        self.cache: Dict[str, np.ndarray] = {}

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        path = self.paths[int(rng.integers(0, len(self.paths)))]
        if path not in self.cache:
            self.cache[path] = self.load(path)
        return self.cache[path]

    def load(self, path: str) -> np.ndarray:
        try:
            samples = load_audio(path, self.sample_rate)
        except AudioError as e:
            raise ConfigError(f"a file in '{self.key}' cannot be used: {e}") from None
        if not np.any(samples):
            raise ConfigError(f"a file in '{self.key}' is silent: {path}")
        return self.prepare(samples)


class WaveformAugmenter:
    """Applies the waveform sections of an augmentation config to one training clip at a time,
    in the order of WAVEFORM_SECTIONS.

    config: an augmentation config (load_augmentation_config, or a dict checked the same way);
    sections with prob 0 are skipped. Noise and RIR folders are listed here, so that a missing or
    empty folder is a ConfigError before training starts; their files are read when first drawn.
    Filter cut-offs must lie below half of `sample_rate` (a ConfigError otherwise).
    """

    def __init__(self, config: Dict[str, Dict[str, Any]], sample_rate: int, seed: int = 0):
        self.config = augmentation_config(copy.deepcopy(config))
        self.sample_rate = sample_rate
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.rng_worker: Optional[int] = None
        self.noise_files = self.folder("noise", "noise_dir")
        self.rir_files = self.folder("reverb", "rir_dir", prepare=normalize_rir)
        check_cutoffs(self.config, sample_rate)
        steps = {name: getattr(self, name) for name in WAVEFORM_SECTIONS}
        self.steps = [(name, steps[name]) for name in waveform_sections_on(self.config)]

    def folder(self, section: str, key: str, prepare: Callable = unchanged) -> Optional[AudioFolder]:
        path = self.config[section][key]
        if self.config[section]["prob"] <= 0 or not path:
            return None
        return AudioFolder(path, f"{section}.{key}", self.sample_rate, prepare)

    def __call__(self, samples: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """samples: float32 (samples,) -> float32 (samples',); the length changes only with speed
        and silence."""
        rng = rng if rng is not None else self.own_rng()
        samples = np.asarray(samples, dtype=np.float32)
        if samples.size == 0:
            return np.ascontiguousarray(samples)
        for name, step in self.steps:
            if rng.random() < self.config[name]["prob"]:
                samples = step(samples, rng)
        return np.ascontiguousarray(samples, dtype=np.float32)

    def own_rng(self) -> np.random.Generator:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self.rng_worker != worker.seed:
            # Forked workers start with copies of one Generator: give each its own stream.
            self.rng = np.random.default_rng([self.seed, worker.seed])
            self.rng_worker = worker.seed
        return self.rng

    def draw(self, rng: np.random.Generator, section: str, low_key: str, high_key: str) -> float:
        """A value drawn uniformly from [section.low_key, section.high_key]."""
        return float(rng.uniform(self.config[section][low_key], self.config[section][high_key]))

    # --- the talker

    def speed(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        speeds: List[float] = self.config["speed"]["speeds"]
        return change_speed(samples, self.sample_rate, float(speeds[int(rng.integers(0, len(speeds)))]))

    def pitch_shift(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return shift_pitch(samples, self.sample_rate, self.draw(rng, "pitch_shift", "min_semitones", "max_semitones"))

    def formant_shift(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return shift_formants(samples, self.sample_rate, self.draw(rng, "formant_shift", "min_factor", "max_factor"))

    def time_shift(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        most = int(self.config["time_shift"]["max_fraction"] * samples.shape[0])
        return np.roll(samples, int(rng.integers(-most, most + 1)))

    # --- the room and the noise

    def reverb(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.rir_files is not None:
            rir = self.rir_files.pick(rng)
        else:
            rir = synthetic_rir(self.draw(rng, "reverb", "min_rt60", "max_rt60"), self.sample_rate, rng)
        return reverberate(samples, rir)

    def noise(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        section = self.config["noise"]
        snr_db = rng.uniform(section["min_snr_dB"], section["max_snr_dB"])
        if self.noise_files is not None:
            noise = segment(self.noise_files.pick(rng), samples.shape[0], rng)
        else:
            color = section["colors"][int(rng.integers(0, len(section["colors"])))]
            noise = colored_noise(samples.shape[0], color, rng)
        return add_noise(samples, noise, snr_db)

    # --- the channel

    def lowpass(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cutoff = self.draw(rng, "lowpass", "min_cutoff_hz", "max_cutoff_hz")
        return butterworth_cascade(samples, self.sample_rate, cutoff, "low")

    def highpass(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cutoff = self.draw(rng, "highpass", "min_cutoff_hz", "max_cutoff_hz")
        return butterworth_cascade(samples, self.sample_rate, cutoff, "high")

    def telephone(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        section = self.config["telephone"]
        low_hz = self.draw(rng, "telephone", "min_low_hz", "max_low_hz")
        high_hz = self.draw(rng, "telephone", "min_high_hz", "max_high_hz")
        resample = rng.random() < section["resample_prob"]
        mu_law = rng.random() < section["mu_law_prob"]
        return telephone_channel(samples, self.sample_rate, low_hz, high_hz, resample, mu_law)

    def codec(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        formats: List[str] = self.config["codec"]["formats"]
        codec = formats[int(rng.integers(0, len(formats)))]
        compression = self.draw(rng, "codec", "min_compression", "max_compression")
        return codec_round_trip(samples, self.sample_rate, codec, compression)

    # --- the level

    def volume(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return apply_gain(samples, self.draw(rng, "volume", "min_gain_dB", "max_gain_dB"))

    def clipping(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return hard_clip(samples, self.draw(rng, "clipping", "min_level", "max_level"))

    def dc_offset(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return samples + np.float32(self.draw(rng, "dc_offset", "min_offset", "max_offset"))

    # --- digital silence

    def silence(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        section = self.config["silence"]
        num_zeros = int(round(self.draw(rng, "silence", "min_seconds", "max_seconds") * self.sample_rate))
        where = section["positions"][int(rng.integers(0, len(section["positions"])))]
        position = {"start": 0, "end": samples.shape[0]}.get(where)
        if position is None:  # a gap, strictly inside the clip when it has room for one
            position = int(rng.integers(1, samples.shape[0])) if samples.shape[0] > 1 else 0
        return insert_silence(samples, num_zeros, position)


# ---------------------------------------------------------------------------------------------
# SpecAugment on batched features.


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019) on padded features, in training mode only.

    Each clip is masked with probability `prob`: `num_freq_masks` bands of 0..`freq_mask_width`
    feature bins over all its valid frames, and `num_time_masks` spans of 0..`time_mask_width`
    frames (never more than half the clip's valid frames per span), inside its valid frames.
    Masked values are set to the clip's mean over its valid frames and all bins, a neutral value
    whether or not the featurizer subtracts the mean (then it is 0). Padding frames stay as they
    are (zero). Random draws come from torch's generator on the features' device.
    """

    def __init__(self, prob: float = 0.5, freq_mask_width: int = 8, num_freq_masks: int = 2,
                 time_mask_width: int = 10, num_time_masks: int = 2):
        super().__init__()
        self.prob = prob
        self.freq_mask_width, self.num_freq_masks = freq_mask_width, num_freq_masks
        self.time_mask_width, self.num_time_masks = time_mask_width, num_time_masks

    @classmethod
    def from_config(cls, section: Optional[Dict[str, Any]]) -> "SpecAugment":
        """Build from the `spec_aug` section of an augmentation config (checked like the file)."""
        return cls(**augmentation_config({"spec_aug": section or {}})["spec_aug"])

    def extra_repr(self) -> str:
        return (f"prob={self.prob}, freq_mask_width={self.freq_mask_width}, num_freq_masks={self.num_freq_masks}, "
                f"time_mask_width={self.time_mask_width}, num_time_masks={self.num_time_masks}")

    def forward(self, features: torch.Tensor, frame_lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, feature_dim), frame_lengths: (batch,) -> same shape as features."""
        if not self.training or features.numel() == 0:
            return features
        frame_lengths = full_frame_lengths(features, frame_lengths)
        mask = self.masks(features, frame_lengths)
        return torch.where(mask, clip_means(features, frame_lengths)[:, None, None], features)

    def masks(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Draw the masks: bool (batch, frames, feature_dim), True where a value is masked."""
        batch, frames, bins = features.shape
        device = features.device
        chosen = torch.rand(batch, device=device) < self.prob
        freq = spans(torch.full((batch,), bins, device=device), self.freq_mask_width, self.num_freq_masks, bins)
        max_time = torch.minimum(frame_lengths // 2, torch.tensor(self.time_mask_width, device=device))
        time = spans(frame_lengths, max_time, self.num_time_masks, frames)
        valid = torch.arange(frames, device=device)[None, :] < frame_lengths[:, None]
        return (time[:, :, None] | freq[:, None, :]) & valid[:, :, None] & chosen[:, None, None]


def spans(lengths: torch.Tensor, max_width, count: int, size: int) -> torch.Tensor:
    """`count` random spans per row, each of width 0..max_width lying inside 0..lengths[row].
    lengths: (batch,) long; max_width: int or (batch,) -> bool (batch, size)."""
    batch, device = lengths.shape[0], lengths.device
    if count == 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    max_width = torch.minimum(torch.as_tensor(max_width, device=device).expand(batch), lengths)[:, None]
    widths = (torch.rand(batch, count, device=device) * (max_width + 1)).long()
    starts = (torch.rand(batch, count, device=device) * (lengths[:, None] - widths + 1)).long()
    positions = torch.arange(size, device=device)[None, None, :]
    inside = (positions >= starts[:, :, None]) & (positions < (starts + widths)[:, :, None])
    return inside.any(dim=1)


def full_frame_lengths(features: torch.Tensor, frame_lengths: Optional[torch.Tensor]) -> torch.Tensor:
    if frame_lengths is None:
        return torch.full((features.shape[0],), features.shape[1], dtype=torch.long, device=features.device)
    return frame_lengths.to(device=features.device, dtype=torch.long).clamp(0, features.shape[1])


def clip_means(features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Mean of each clip over its valid frames and all bins. (batch, frames, dim) -> (batch,)."""
    valid = torch.arange(features.shape[1], device=features.device)[None, :] < frame_lengths[:, None]
    total = (features * valid[:, :, None].to(features.dtype)).sum(dim=(1, 2))
    count = (frame_lengths.clamp_min(1) * features.shape[2]).to(features.dtype)
    return total / count


def build_spec_augment(aug_config: Optional[Dict[str, Any]]) -> Optional[SpecAugment]:
    """SpecAugment from an augmentation config, or None when its `spec_aug` section is off
    (prob 0 or no masks)."""
    if not aug_config:
        return None
    module = SpecAugment.from_config(aug_config.get("spec_aug"))
    if module.prob <= 0 or (module.num_freq_masks == 0 and module.num_time_masks == 0):
        return None
    return module

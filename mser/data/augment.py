"""Data augmentation: speed, reverb, noise and volume on training waveforms; SpecAugment on features.

Where each part runs
--------------------
`WaveformAugmenter` is called by AudioDataset on every training clip, after the clip has been
decoded, resampled, mixed to mono, dB-normalised (when `dataset_conf.dataset.use_dB_normalization`
is on) and randomly cropped to `max_duration`:

    samples = augmenter(samples, rng)      # float32 (samples,) -> float32 (samples',)

Normalisation comes first so that the volume augmentation is not undone by it: a clip normalised
to -20 dBFS and then given +6 dB reaches the model at -14 dBFS. Evaluation clips are never
augmented. Speed perturbation changes a clip's length (by 1 / speed), so a clip may end up a
little longer than `max_duration`; the collate function pads batches to the longest clip anyway.

Inside the augmenter the order is speed -> reverb -> noise -> volume: speed models a different
talker, reverb the room around the talker, noise what the microphone picks up besides the
reverberant speech, and the gain comes last so that it scales speech and noise together and
leaves the requested signal-to-noise ratio intact.

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
import os
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torchaudio.functional as AF
from torch import nn

from mser.audio import load_audio
from mser.config import load_config, merge
from mser.errors import AudioError, ConfigError

AUGMENT_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "speed": {"prob": 0.0, "speeds": [0.9, 1.0, 1.1]},
    "volume": {"prob": 0.0, "min_gain_dB": -15.0, "max_gain_dB": 15.0},
    "noise": {"prob": 0.0, "noise_dir": "", "min_snr_dB": 10.0, "max_snr_dB": 30.0,
              "colors": ["white", "pink", "brown"]},
    "reverb": {"prob": 0.0, "rir_dir": "", "min_rt60": 0.2, "max_rt60": 0.8},
    "spec_aug": {"prob": 0.0, "freq_mask_width": 8, "num_freq_masks": 2,
                 "time_mask_width": 10, "num_time_masks": 2},
}

# Power spectral density ~ 1 / f**exponent.
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# Synthetic rooms: energy of the direct sound relative to the reverberant tail. 0 dB is a talker
# a metre or two away in an ordinary room; the tail still dominates the sound for a high RT60.
SYNTHETIC_DIRECT_TO_REVERB_DB = 0.0


def load_augmentation_config(path: str) -> Dict[str, Dict[str, Any]]:
    """Read an augmentation YAML, merge it over AUGMENT_DEFAULTS and check every value; the noise
    and RIR folders of enabled sections must exist and hold audio files."""
    config = validate(load_config(path, defaults=AUGMENT_DEFAULTS, open_sections=set()))
    for section, key in (("noise", "noise_dir"), ("reverb", "rir_dir")):
        if config[section]["prob"] > 0 and config[section][key]:
            audio_files(config[section][key], f"{section}.{key}")
    return config


WAVEFORM_SECTIONS = ("speed", "reverb", "noise", "volume")  # in the order they are applied


def waveform_sections_on(config: Dict[str, Dict[str, Any]]) -> List[str]:
    """The waveform sections of a checked augmentation config that are switched on, in the
    config's order."""
    return [name for name in config if name in WAVEFORM_SECTIONS and config[name]["prob"] > 0]


def augmentation_config(user: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """The same checks for a config given as a dict (sections may be partial or missing)."""
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
    return config


def whole_number(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"'{name}' must be a whole number >= 0, got {value!r}")
    return value


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"'{name}' must lie in [{low}, {high}], got {value!r}")


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
    if not isinstance(value, list) or not value or any(not isinstance(c, str) or c not in NOISE_COLORS for c in value):
        raise ConfigError(f"'noise.colors' must be a non-empty list drawn from "
                          f"{', '.join(NOISE_COLORS)}; got {value!r}")


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
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.arange(spectrum.shape[0], dtype=np.float64)
    frequencies[0] = 1.0  # keep the DC bin finite; it carries no colour
    spectrum *= frequencies ** (-NOISE_COLORS[color] / 2.0)
    noise = np.fft.irfft(spectrum, n=num_samples)
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
    signal = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    response = torch.from_numpy(np.ascontiguousarray(rir, dtype=np.float32))
    return AF.fftconvolve(signal, response)[:samples.shape[0]].numpy()


def segment(noise: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of `num_samples` from `noise`, wrapping round when the noise is shorter."""
    start = int(rng.integers(0, noise.shape[0]))
    return np.take(noise, np.arange(start, start + num_samples), mode="wrap")


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
    """Applies speed, reverb, noise and volume augmentation to one training clip at a time.

    config: an augmentation config (load_augmentation_config, or a dict checked the same way);
    sections with prob 0 are skipped. Noise and RIR folders are listed here, so that a missing or
    empty folder is a ConfigError before training starts; their files are read when first drawn.
    """

    def __init__(self, config: Dict[str, Dict[str, Any]], sample_rate: int, seed: int = 0):
        self.config = augmentation_config(copy.deepcopy(config))
        self.sample_rate = sample_rate
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.rng_worker: Optional[int] = None
        self.noise_files = self.folder("noise", "noise_dir")
        self.rir_files = self.folder("reverb", "rir_dir", prepare=normalize_rir)
        steps = {"speed": self.speed, "reverb": self.reverb, "noise": self.noise, "volume": self.volume}
        on = waveform_sections_on(self.config)
        self.steps = [(name, steps[name]) for name in WAVEFORM_SECTIONS if name in on]

    def folder(self, section: str, key: str, prepare: Callable = unchanged) -> Optional[AudioFolder]:
        path = self.config[section][key]
        if self.config[section]["prob"] <= 0 or not path:
            return None
        return AudioFolder(path, f"{section}.{key}", self.sample_rate, prepare)

    def __call__(self, samples: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """samples: float32 (samples,) -> float32 (samples',); the length changes only with speed."""
        rng = rng if rng is not None else self.own_rng()
        samples = np.asarray(samples, dtype=np.float32)
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

    def speed(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        speeds: List[float] = self.config["speed"]["speeds"]
        return change_speed(samples, self.sample_rate, float(speeds[int(rng.integers(0, len(speeds)))]))

    def volume(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        section = self.config["volume"]
        return apply_gain(samples, rng.uniform(section["min_gain_dB"], section["max_gain_dB"]))

    def noise(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        section = self.config["noise"]
        snr_db = rng.uniform(section["min_snr_dB"], section["max_snr_dB"])
        if self.noise_files is not None:
            noise = segment(self.noise_files.pick(rng), samples.shape[0], rng)
        else:
            color = section["colors"][int(rng.integers(0, len(section["colors"])))]
            noise = colored_noise(samples.shape[0], color, rng)
        return add_noise(samples, noise, snr_db)

    def reverb(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        section = self.config["reverb"]
        if self.rir_files is not None:
            rir = self.rir_files.pick(rng)
        else:
            rir = synthetic_rir(rng.uniform(section["min_rt60"], section["max_rt60"]), self.sample_rate, rng)
        return reverberate(samples, rir)


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

"""Clip-level hand-crafted features (prosody, voice, spectral shape), batched in torch.

Every descriptor is computed per 10 ms frame of a 40 ms Hann window, then summarised over each
clip's valid frames only (masks, never the padding), giving one vector per clip:

  pitch (12)      semitones re 100 Hz over voiced frames: mean, std, p5, p25, p50, p75, p95,
                  p95-p5 range, slope (st/s), mean |delta| (st/s); voiced fraction; voicing strength
  energy (8)      frame RMS in dBFS: mean, std, p5, p50, p95, range, slope (dB/s), mean |delta| (dB/s)
  rate (3)        voiced onsets per second, pause fraction, energy-envelope peaks per second
  zcr (2)         zero-crossing rate mean, std
  spectral (10)   centroid, bandwidth, rolloff (kHz), flatness, flux: mean, std each
  contrast (2*7)  spectral contrast in dB of 7 bands (below 200 Hz, then octaves to Nyquist): mean, std
  mfcc (3*20)     means, stds and stds of the first difference
  chroma (2*12)   mean, std
  mel (2*40)      log-mel band means and stds in dB
  = 213 values at 16 kHz with the defaults (`feature_names` lists them).

Pitch is a normalised autocorrelation tracker (Boersma 1993: the frame's autocorrelation divided by
the window's, a small octave cost favouring the shorter lag, parabolic peak interpolation). A frame
is voiced when its peak exceeds `voicing_threshold` and it is within 30 dB of the clip's loud level
(its 95th-percentile frame energy).
A standardisation scaler fitted on the training list (`fit_scaler`) is applied in forward.
"""
import math
from typing import List, Tuple

import torch
import torchaudio.functional as AF
from torch import nn

from mser.errors import ConfigError
from mser.features.base import in_cpu_chunks, mask_samples, register_featurizer
from mser.features.clip import ClipFeaturizer

POWER_FLOOR = 1e-10
OCTAVE_COST = 0.01              # per octave of lag, as in Praat's pitch tracker
VOICED_RANGE_DB = 30.0          # voiced frames lie within this of the loud level
PAUSE_RANGE_DB = 25.0           # frames this far below the loud level count as pause
ROLLOFF = 0.85
CHROMA_BAND = (100.0, 5000.0)   # Hz; below, 40 ms frames cannot resolve semitones
CONTRAST_LOW = 200.0            # Hz; lower edge of the first octave band (librosa's default)
CONTRAST_QUANTILE = 0.02
PITCH_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
ENERGY_QUANTILES = (0.05, 0.5, 0.95)
PEAK_SMOOTHING = 7              # frames (70 ms) of moving average before counting energy peaks
PEAK_REACH = 7                  # frames: an energy peak is the highest within +-70 ms ...
PEAK_PROMINENCE_DB = 3.0        # ... and rises this far above the lowest point there


# Statistics over valid frames. x: (batch, frames) or (batch, frames, dim); mask: (batch, frames) bool.

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = mask.to(x.dtype) if x.dim() == 2 else mask.to(x.dtype)[:, :, None]
    return (x * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    centred = x - masked_mean(x, mask).unsqueeze(1)
    return masked_mean(centred.pow(2), mask).clamp_min(0.0).sqrt()


def masked_quantiles(x: torch.Tensor, mask: torch.Tensor, quantiles: Tuple[float, ...]) -> torch.Tensor:
    """(batch, frames) -> (batch, len(quantiles)), linear interpolation; 0 where no frame is valid."""
    count = mask.sum(dim=1, keepdim=True)
    ordered = x.masked_fill(~mask, math.inf).sort(dim=1).values
    last = (count - 1).clamp_min(0)
    position = torch.tensor(quantiles, dtype=x.dtype, device=x.device)[None, :] * last.to(x.dtype)
    below = position.floor().long()
    above = torch.minimum(below + 1, last)
    fraction = position - below.to(x.dtype)
    value = ordered.gather(1, below) * (1 - fraction) + ordered.gather(1, above) * fraction
    return torch.where(count > 0, value, torch.zeros_like(value))


def masked_slope(x: torch.Tensor, mask: torch.Tensor, frame_rate: float) -> torch.Tensor:
    """Least-squares slope of x against time in seconds, (batch,); 0 with fewer than two frames."""
    times = torch.arange(x.shape[1], device=x.device, dtype=x.dtype).expand_as(x) / frame_rate
    weight = mask.to(x.dtype)
    dt = (times - masked_mean(times, mask)[:, None]) * weight
    dx = (x - masked_mean(x, mask)[:, None]) * weight
    return (dt * dx).sum(dim=1) / dt.pow(2).sum(dim=1).clamp_min(1e-12)


def neighbourhood_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Maximum of valid frames within +-PEAK_REACH of each frame. x: (batch, frames)."""
    hidden = nn.functional.pad(x.masked_fill(~mask, -math.inf), (PEAK_REACH, PEAK_REACH), value=-math.inf)
    return nn.functional.max_pool1d(hidden[:, None], 2 * PEAK_REACH + 1, 1)[:, 0]


def mean_std(x: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
    """[mean, std], each (batch, dim) (a (batch, frames) input gives (batch, 1))."""
    if x.dim() == 2:
        x = x[:, :, None]
    return [masked_mean(x, mask), masked_std(x, mask)]


def differences(x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """First differences along frames and the mask of pairs whose both frames are valid."""
    return x[:, 1:] - x[:, :-1], mask[:, 1:] & mask[:, :-1]


@register_featurizer
class CustomFeatures(ClipFeaturizer):
    """Hand-crafted clip-level features: forward -> ((batch, 1, feature_dim), ones (batch,)).

    scaler_path: a JSON scaler written by `save_scaler`, loaded at construction when given.
    """

    def __init__(self, sample_rate: int = 16000, f0_min: float = 75.0, f0_max: float = 600.0,
                 voicing_threshold: float = 0.45, n_mfcc: int = 20, n_mels: int = 40, scaler_path: str = ""):
        super().__init__(sample_rate)
        self.window = round(0.040 * sample_rate)
        self.hop = round(0.010 * sample_rate)
        self.frame_rate = sample_rate / self.hop
        self.lag_min, self.lag_max = self.lag_range(f0_min, f0_max)
        # Long enough that the circular autocorrelation equals the linear one up to lag_max + 1.
        self.fft_size = 2 ** math.ceil(math.log2(self.window + self.lag_max + 2))
        if not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"CustomFeatures: need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}")
        self.voicing_threshold = voicing_threshold
        self.contrast_bands = self.octave_bands()
        self.register_filters(n_mfcc, n_mels)
        self.feature_names = feature_names(n_mfcc, n_mels, len(self.contrast_bands))
        self.feature_dim = len(self.feature_names)
        self.init_scaler(scaler_path)

    def lag_range(self, f0_min: float, f0_max: float) -> Tuple[int, int]:
        if not 0 < f0_min < f0_max < self.sample_rate / 4:
            raise ConfigError(f"CustomFeatures: need 0 < f0_min < f0_max < {self.sample_rate / 4} Hz, "
                              f"got f0_min={f0_min}, f0_max={f0_max}")
        lag_max = math.ceil(self.sample_rate / f0_min)
        if lag_max > self.window // 2:
            raise ConfigError(f"CustomFeatures: f0_min={f0_min} Hz needs periods of {lag_max} samples; "
                              f"the 40 ms window holds two periods only above {2 * self.sample_rate / self.window} Hz")
        return max(2, math.floor(self.sample_rate / f0_max)), lag_max

    def octave_bands(self) -> List[Tuple[int, int]]:
        """FFT-bin ranges [low, high) of the spectral-contrast bands."""
        nyquist, bin_width = self.sample_rate / 2, self.sample_rate / self.fft_size
        edges = [0.0] + [CONTRAST_LOW * 2 ** k for k in range(16) if CONTRAST_LOW * 2 ** k < nyquist]
        edges.append(nyquist + bin_width)
        return [(round(low / bin_width), round(high / bin_width)) for low, high in zip(edges[:-1], edges[1:])]

    def register_filters(self, n_mfcc: int, n_mels: int) -> None:
        n_freqs = self.fft_size // 2 + 1
        # Zero-padded to the FFT size: frames are cut that long, so rfft needs no padding copy.
        window = nn.functional.pad(torch.hann_window(self.window, periodic=False), (0, self.fft_size - self.window))
        window_ac = torch.fft.irfft(torch.fft.rfft(window).abs().pow(2), n=self.fft_size)
        self.register_buffer("window_function", window, persistent=False)
        self.register_buffer("window_autocorr", window_ac[:self.lag_max + 2] / window_ac[0], persistent=False)
        self.register_buffer("frequencies", torch.linspace(0, self.sample_rate / 2, n_freqs), persistent=False)
        mel = AF.melscale_fbanks(n_freqs, 20.0, self.sample_rate / 2, n_mels, self.sample_rate)
        self.register_buffer("mel_filters", mel, persistent=False)
        self.register_buffer("dct", AF.create_dct(n_mfcc, n_mels, "ortho"), persistent=False)
        self.register_buffer("chroma_filters", chroma_filters(self.frequencies), persistent=False)

    def extract(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> torch.Tensor:
        """Raw (unscaled) features. waveforms: (batch, samples), lengths: (batch,) -> (batch, feature_dim)."""
        lengths = self.full_lengths(waveforms, lengths)
        waveforms = mask_samples(waveforms.float(), lengths)
        if waveforms.shape[1] < self.window:
            waveforms = nn.functional.pad(waveforms, (0, self.window - waveforms.shape[1]))
        return in_cpu_chunks(self.summarise, waveforms, lengths)

    def summarise(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples >= window), zero past `lengths` -> (batch, feature_dim)."""
        power = self.power_spectrum(waveforms)
        counts = (1 + (lengths - self.window).clamp_min(0) // self.hop).clamp(1, power.shape[1])
        mask = torch.arange(power.shape[1], device=power.device)[None, :] < counts[:, None]
        log_mel = 10 * torch.log10(torch.matmul(power, self.mel_filters).clamp_min(POWER_FLOOR))
        energy_db = 10 * torch.log10(self.frame_mean(waveforms.square()).clamp_min(POWER_FLOOR))
        groups = (self.prosody(power, energy_db, mask) + self.zero_crossings(waveforms, mask)
                  + self.spectral_shape(power, log_mel, mask) + self.contrast(power, mask)
                  + self.cepstrum(log_mel, mask) + self.chroma(power, mask) + mean_std(log_mel, mask))
        return torch.cat([g if g.dim() == 2 else g[:, None] for g in groups], dim=1)

    def frame_mean(self, signal: torch.Tensor, window: int = 0) -> torch.Tensor:
        """Mean of each frame, (batch, samples) -> (batch, frames); one pass, unlike unfold().mean()."""
        return nn.functional.avg_pool1d(signal[:, None], window or self.window, self.hop)[:, 0]

    def power_spectrum(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> power spectrum of the mean-removed Hann-windowed frames, (batch, frames, freqs)."""
        padded = nn.functional.pad(waveforms, (0, self.fft_size - self.window))
        frames = padded.unfold(1, self.fft_size, self.hop) * self.window_function
        frames.addcmul_(self.frame_mean(waveforms)[:, :, None], self.window_function, value=-1.0)
        spectrum = torch.fft.rfft(frames)
        return spectrum.real.square() + spectrum.imag.square()

    def pitch(self, power: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """power: (batch, frames, freqs) -> F0 in semitones re 100 Hz and peak strength, (batch, frames)."""
        autocorr = torch.fft.irfft(power, n=self.fft_size)[:, :, :self.lag_max + 2]
        normalised = autocorr / autocorr[:, :, :1].clamp_min(POWER_FLOOR) / self.window_autocorr
        lags = torch.arange(self.lag_min, self.lag_max + 1, device=power.device, dtype=power.dtype)
        score = normalised[:, :, self.lag_min:self.lag_max + 1] - OCTAVE_COST * torch.log2(lags / self.lag_min)
        best = score.argmax(dim=2, keepdim=True) + self.lag_min
        left, peak, right = (normalised.gather(2, best + shift).squeeze(2) for shift in (-1, 0, 1))
        curvature = left - 2 * peak + right
        offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp_max(-1e-12),
                             torch.zeros_like(curvature)).clamp(-0.5, 0.5)
        lag = best.squeeze(2).to(power.dtype) + offset
        return 12 * torch.log2(self.sample_rate / lag / 100.0), peak

    def prosody(self, power: torch.Tensor, energy_db: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """Pitch (12), energy (8) and rate (3) statistics, each (batch,) or (batch, n)."""
        semitones, strength = self.pitch(power)
        energy_q = masked_quantiles(energy_db, mask, ENERGY_QUANTILES)
        loud = energy_q[:, -1:]  # p95: a clip's loud level, robust to single clicks
        voiced = mask & (strength > self.voicing_threshold) & (energy_db > loud - VOICED_RANGE_DB)
        pitch_q = masked_quantiles(semitones, voiced, PITCH_QUANTILES)
        pitch_delta, voiced_pairs = differences(semitones, voiced)
        energy_delta, valid_pairs = differences(energy_db, mask)
        pitch = [masked_mean(semitones, voiced), masked_std(semitones, voiced), pitch_q,
                 pitch_q[:, -1] - pitch_q[:, 0], masked_slope(semitones, voiced, self.frame_rate),
                 masked_mean(pitch_delta.abs(), voiced_pairs) * self.frame_rate,
                 masked_mean(voiced.float(), mask), masked_mean(strength, voiced)]
        energy = [masked_mean(energy_db, mask), masked_std(energy_db, mask), energy_q,
                  energy_q[:, -1] - energy_q[:, 0], masked_slope(energy_db, mask, self.frame_rate),
                  masked_mean(energy_delta.abs(), valid_pairs) * self.frame_rate]
        return pitch + energy + self.rate(energy_db, voiced, mask, loud)

    def rate(self, energy_db: torch.Tensor, voiced: torch.Tensor, mask: torch.Tensor,
             loud: torch.Tensor) -> List[torch.Tensor]:
        """Speaking-rate proxies: voiced onsets/s, pause fraction, energy-envelope peaks/s."""
        seconds = mask.sum(dim=1).to(energy_db.dtype) / self.frame_rate
        previous = nn.functional.pad(voiced[:, :-1], (1, 0), value=False)
        onsets = (voiced & ~previous).sum(dim=1) / seconds
        pauses = masked_mean((energy_db < loud - PAUSE_RANGE_DB).float(), mask)
        envelope = self.energy_envelope(energy_db, mask)
        highest = neighbourhood_max(envelope, mask)
        lowest = -neighbourhood_max(-envelope, mask)
        peaks = mask & (envelope >= highest) & (envelope - lowest >= PEAK_PROMINENCE_DB)
        peaks = peaks & (envelope > masked_mean(energy_db, mask)[:, None])
        return [onsets, pauses, peaks.sum(dim=1) / seconds]

    @staticmethod
    def energy_envelope(energy_db: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Moving average of frame energy (batch, frames) over PEAK_SMOOTHING frames."""
        # Past its last frame a clip repeats that frame, alone (replicate padding) or in a batch
        # (the fill below), so that its envelope does not depend on the padding after it.
        last = energy_db.gather(1, (mask.sum(dim=1, keepdim=True) - 1).clamp_min(0))
        filled = torch.where(mask, energy_db, last)
        half = PEAK_SMOOTHING // 2
        padded = nn.functional.pad(filled[:, None], (half, half), mode="replicate")
        return nn.functional.avg_pool1d(padded, PEAK_SMOOTHING, 1)[:, 0]

    def zero_crossings(self, waveforms: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """Zero-crossing rate: sign changes among each frame's window - 1 sample pairs, mean and std."""
        crossings = (waveforms[:, 1:] * waveforms[:, :-1] < 0).to(waveforms.dtype)
        return mean_std(self.frame_mean(crossings, self.window - 1), mask)

    def spectral_shape(self, power: torch.Tensor, log_mel: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """Centroid, bandwidth, rolloff (kHz), flatness and flux: mean and std of each."""
        magnitude = power.sqrt()
        kilohertz = self.frequencies / 1000.0
        moments = torch.matmul(magnitude, torch.stack([torch.ones_like(kilohertz), kilohertz, kilohertz.pow(2)], 1))
        total = moments[:, :, 0].clamp_min(POWER_FLOOR)
        centroid = moments[:, :, 1] / total
        spread = (moments[:, :, 2] / total - centroid.pow(2)).clamp_min(0.0)
        # Against the unclamped total, so that a silent frame rolls off at 0 Hz, not at Nyquist.
        below = (magnitude.cumsum(dim=2) < ROLLOFF * moments[:, :, :1]).sum(dim=2)
        rolloff = kilohertz[below.clamp_max(kilohertz.shape[0] - 1)]
        floored = power + POWER_FLOOR
        flatness = floored.log().mean(dim=2).exp() / floored.mean(dim=2)
        mel_delta, pairs = differences(log_mel, mask)
        flux = mel_delta.pow(2).mean(dim=2).sqrt()
        shape = torch.stack([centroid, spread.sqrt(), rolloff, flatness], dim=2)
        return mean_std(shape, mask) + mean_std(flux, pairs)

    def contrast(self, power: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """Octave-band spectral contrast (peak over valley, dB): means and stds, (batch, bands) each."""
        bands = []
        for low, high in self.contrast_bands:
            band = power[:, :, low:high]
            count = round(CONTRAST_QUANTILE * (high - low))
            if count <= 1:  # amax / amin are many times faster than topk
                peak, valley = band.amax(dim=2), band.amin(dim=2)
            else:
                peak = band.topk(count, dim=2).values.mean(dim=2)
                valley = band.topk(count, dim=2, largest=False).values.mean(dim=2)
            bands.append(10 * torch.log10((peak + POWER_FLOOR) / (valley + POWER_FLOOR)))
        return mean_std(torch.stack(bands, dim=2), mask)

    def cepstrum(self, log_mel: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        """MFCC means, stds and stds of their first difference, (batch, n_mfcc) each."""
        mfcc = torch.matmul(log_mel, self.dct)
        delta, pairs = differences(mfcc, mask)
        return mean_std(mfcc, mask) + [masked_std(delta, pairs)]

    def chroma(self, power: torch.Tensor, mask: torch.Tensor) -> List[torch.Tensor]:
        chroma = torch.matmul(power, self.chroma_filters)
        chroma = chroma / chroma.amax(dim=2, keepdim=True).clamp_min(POWER_FLOOR)
        return mean_std(chroma, mask)


def chroma_filters(frequencies: torch.Tensor) -> torch.Tensor:
    """(freqs, 12): each FFT bin split between its two nearest pitch classes (C = 0), in CHROMA_BAND."""
    safe = frequencies.clamp_min(1.0)
    pitch_class = (12 * torch.log2(safe / 440.0) + 9) % 12
    classes = torch.arange(12, dtype=frequencies.dtype)
    distance = (pitch_class[:, None] - classes[None, :] + 6) % 12 - 6
    weights = (1 - distance.abs()).clamp_min(0.0)
    inside = (frequencies >= CHROMA_BAND[0]) & (frequencies <= CHROMA_BAND[1])
    return weights * inside[:, None].to(weights.dtype)


def feature_names(n_mfcc: int, n_mels: int, n_bands: int) -> List[str]:
    """Names of the values `CustomFeatures.extract` returns, in order."""
    pitch = ["f0_mean", "f0_std"] + [f"f0_p{round(q * 100)}" for q in PITCH_QUANTILES] + [
        "f0_range", "f0_slope", "f0_delta", "voiced_fraction", "voicing_strength"]
    energy = ["energy_mean", "energy_std"] + [f"energy_p{round(q * 100)}" for q in ENERGY_QUANTILES] + [
        "energy_range", "energy_slope", "energy_delta"]
    rate = ["voiced_onset_rate", "pause_fraction", "energy_peak_rate"]
    shape = ["centroid", "bandwidth", "rolloff", "flatness"]
    names = pitch + energy + rate + ["zcr_mean", "zcr_std"]
    names += [f"{n}_mean" for n in shape] + [f"{n}_std" for n in shape] + ["flux_mean", "flux_std"]
    names += stat_names("contrast", n_bands, ("mean", "std"))
    names += stat_names("mfcc", n_mfcc, ("mean", "std", "delta_std"))
    names += stat_names("chroma", 12, ("mean", "std")) + stat_names("mel", n_mels, ("mean", "std"))
    return names


def stat_names(prefix: str, count: int, stats: Tuple[str, ...]) -> List[str]:
    return [f"{prefix}{i}_{stat}" for stat in stats for i in range(count)]

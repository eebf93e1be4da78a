"""Kaldi-compatible log mel filterbank, computed for a whole padded batch at once."""
import math

import torch
from torch import nn
from torchaudio.compliance import kaldi

from mser.errors import ConfigError
from mser.features.base import FrameFeaturizer, register_featurizer

WINDOW_TYPES = ("povey", "hanning", "hamming", "rectangular")
# Kaldi floors log arguments at numeric_limits<float>::epsilon().
FLOAT_EPSILON = torch.finfo(torch.float32).eps


def kaldi_window(window_type: str, size: int) -> torch.Tensor:
    """The analysis window Kaldi uses, (size,) float32."""
    if window_type == "rectangular":
        return torch.ones(size)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46)
    hann = torch.hann_window(size, periodic=False)
    return hann.pow(0.85) if window_type == "povey" else hann


def reflect_indices(lengths: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Sample index for each position (batch, n) of a clip mirrored at both of its own ends.

    Kaldi's snip_edges=False mirrors with the edge sample repeated: [2 1 0 | 0 1 2 ... n-1 | n-1 n-2].
    """
    last = (lengths - 1).clamp_min(0)[:, None]
    index = torch.where(positions < 0, -positions - 1, positions)
    index = torch.where(index > last, 2 * last + 1 - index, index)
    return torch.minimum(index.clamp_min(0), last)


@register_featurizer
class Fbank(FrameFeaturizer):
    """Log mel filterbank with torchaudio.compliance.kaldi.fbank semantics, batched.

    Output: (batch, frames, num_mel_bins [+1 with use_energy]), 100 frames/s with the defaults.
    Waveforms in [-1, 1] are scaled to the int16 range first (scale_to_int16), as Kaldi expects,
    so that the epsilon floor on the log sits far below any real signal. Dither (Gaussian noise of
    that standard deviation in int16 units) is added to the signal rather than to each frame, and
    in training mode only, so that evaluation and inference are deterministic.

    `noise_floor_db` (off by default, for Kaldi compatibility): the mel energies of white noise at
    that level in dBFS are added to every frame's, a soft floor. Kaldi's own floor (log of the
    float epsilon, -15.9) lies far below anything a microphone delivers, so exact digital silence
    (padding, gaps, a muted stream) and empty bands (8 kHz telephone audio) give values no training
    clip had; with a floor near the quietest noise of real recordings they stay in range.
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 80, frame_length: float = 25.0,
                 frame_shift: float = 10.0, dither: float = 0.0, preemphasis_coefficient: float = 0.97,
                 remove_dc_offset: bool = True, window_type: str = "povey", round_to_power_of_two: bool = True,
                 snip_edges: bool = True, low_freq: float = 20.0, high_freq: float = 0.0,
                 use_energy: bool = False, energy_floor: float = 1.0, scale_to_int16: bool = True,
                 mean_norm: bool = False, noise_floor_db: float = None):
        window = int(sample_rate * frame_length * 0.001)
        hop = int(sample_rate * frame_shift * 0.001)
        check_options(window, hop, num_mel_bins, window_type, preemphasis_coefficient)
        super().__init__(sample_rate, window, hop, mean_norm)
        self.fft_size = 2 ** math.ceil(math.log2(window)) if round_to_power_of_two else window
        if self.fft_size % 2:
            raise ConfigError(f"Fbank: the FFT size {self.fft_size} must be even; "
                              "set round_to_power_of_two: true or change frame_length")
        self.dither, self.preemphasis = dither, preemphasis_coefficient
        self.remove_dc_offset, self.snip_edges = remove_dc_offset, snip_edges
        self.use_energy, self.energy_floor = use_energy, energy_floor
        self.input_scale = 32768.0 if scale_to_int16 else 1.0
        self.feature_dim = num_mel_bins + int(use_energy)
        # Zero-padded to the FFT size: frames are cut that long, so rfft needs no padding copy.
        padded_window = nn.functional.pad(kaldi_window(window_type, window), (0, self.fft_size - window))
        self.register_buffer("window_function", padded_window, persistent=False)
        self.register_buffer("mel_banks", self.kaldi_mel_banks(num_mel_bins, low_freq, high_freq),
                             persistent=False)
        self.noise_floor_db = noise_floor_db
        floor = self.white_noise_mel_energies(noise_floor_db) if noise_floor_db is not None else torch.zeros(0)
        self.register_buffer("mel_floor", floor, persistent=False)

    def kaldi_mel_banks(self, num_mel_bins: int, low_freq: float, high_freq: float) -> torch.Tensor:
        """(fft_size // 2 + 1, num_mel_bins): Kaldi's triangular filters, Nyquist bin unused."""
        try:
            banks, _ = kaldi.get_mel_banks(num_mel_bins, self.fft_size, float(self.sample_rate),
                                           low_freq, high_freq, 100.0, -500.0, 1.0)
        except AssertionError as e:
            raise ConfigError(f"Fbank: low_freq={low_freq}, high_freq={high_freq} do not fit "
                              f"sample_rate={self.sample_rate}: {e}") from None
        return nn.functional.pad(banks, (0, 1)).T.contiguous().float()

    def white_noise_mel_energies(self, level_db: float) -> torch.Tensor:
        """(num_mel_bins,): the expected mel energies of a frame of white noise at `level_db` dBFS
        (RMS re full scale 1.0) after this featurizer's preemphasis, window and int16 scaling."""
        if not -150.0 <= level_db <= 0.0:
            raise ConfigError(f"Fbank: noise_floor_db must be in [-150, 0] dBFS, got {level_db}")
        variance = 10 ** (level_db / 10) * self.input_scale ** 2
        omega = torch.linspace(0, math.pi, self.fft_size // 2 + 1, dtype=torch.float64)
        preemphasis_gain = 1 + self.preemphasis ** 2 - 2 * self.preemphasis * torch.cos(omega)
        per_bin = variance * preemphasis_gain * self.window_function.double().square().sum()
        return (per_bin @ self.mel_banks.double()).float()

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.snip_edges:
            return super().frame_lengths(lengths)
        return ((lengths + self.hop // 2) // self.hop).clamp_min(1)

    def extend(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> the samples Kaldi's frames read: the clip, or with snip_edges=False
        the clip mirrored at both of its ends, (batch, (frames - 1) * hop + window)."""
        if self.snip_edges:
            return waveforms
        num_frames = (waveforms.shape[1] + self.hop // 2) // self.hop
        span = (num_frames - 1) * self.hop + self.window
        positions = torch.arange(span, device=waveforms.device) - (self.window // 2 - self.hop // 2)
        return waveforms.gather(1, reflect_indices(lengths, positions.expand(waveforms.shape[0], span)))

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples) in [-1, 1] -> log mel energies (batch, frames, feature_dim)."""
        signal = self.extend(waveforms, lengths)
        if self.dither != 0.0 and self.training:
            signal = signal + (self.dither / self.input_scale) * torch.randn_like(signal)
        means = nn.functional.avg_pool1d(signal[:, None], self.window, self.hop)[:, 0]
        spectrum = torch.fft.rfft(self.windowed_frames(signal, means))
        power = spectrum.real.square() + spectrum.imag.square()
        mel = torch.matmul(power, self.mel_banks)
        if self.mel_floor.numel():
            mel = mel + self.mel_floor
        features = mel.clamp_min(FLOAT_EPSILON).log()
        if self.use_energy:
            features = torch.cat([self.log_energy(signal, means)[:, :, None], features], dim=2)
        return features

    def windowed_frames(self, signal: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """signal (batch, samples), frame means (batch, frames) -> frames after Kaldi's DC removal,
        preemphasis, window and int16 scaling, zero-padded to the FFT size, (batch, frames, fft_size).

        Those steps are linear, so they are rewritten as whole-signal preemphasis, one pass over
        the overlapping frames with the (scaled) window and an in-place correction for the frame
        mean: passes over the frames cost more than everything else, and this needs two, not five.
        """
        emphasised = nn.functional.pad(signal, (0, self.fft_size - self.window))
        emphasised[:, 1:signal.shape[1]] -= self.preemphasis * signal[:, :-1]
        window = self.window_function * self.input_scale  # a power of two: scaling stays exact
        frames = emphasised.unfold(1, self.fft_size, self.hop) * window
        # Kaldi's first sample in a frame has no predecessor: it is emphasised against itself.
        starts = signal[:, :frames.shape[1] * self.hop:self.hop]
        frames[:, :, 0] = (1 - self.preemphasis) * window[0] * starts
        if self.remove_dc_offset:
            frames.addcmul_(means[:, :, None], window, value=-(1 - self.preemphasis))
        return frames

    def log_energy(self, signal: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Raw log energy per frame (after DC removal, before preemphasis and window), (batch, frames)."""
        mean_square = nn.functional.avg_pool1d(signal[:, None].square(), self.window, self.hop)[:, 0]
        if self.remove_dc_offset:
            mean_square = mean_square - means.square()
        energy = mean_square * (self.window * self.input_scale ** 2)
        log_energy = energy.clamp_min(FLOAT_EPSILON).log()
        if self.energy_floor > 0.0:
            log_energy = log_energy.clamp_min(math.log(self.energy_floor))
        return log_energy


def check_options(window: int, hop: int, num_mel_bins: int, window_type: str, preemphasis: float) -> None:
    if window < 2 or hop < 1:
        raise ConfigError(f"Fbank: frame_length and frame_shift give {window} and {hop} samples; "
                          "a frame needs at least 2 samples and a shift of at least 1")
    if num_mel_bins <= 3:
        raise ConfigError(f"Fbank: num_mel_bins must be more than 3, got {num_mel_bins}")
    if window_type not in WINDOW_TYPES:
        raise ConfigError(f"Fbank: unknown window_type '{window_type}'; choose one of {', '.join(WINDOW_TYPES)}")
    if not 0.0 <= preemphasis <= 1.0:
        raise ConfigError(f"Fbank: preemphasis_coefficient must be in [0, 1], got {preemphasis}")

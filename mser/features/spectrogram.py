"""Log-compressed linear and mel spectrograms through torchaudio.transforms."""
import math
from typing import Tuple

import torch
import torchaudio

from mser.errors import ConfigError
from mser.features.base import FrameFeaturizer, register_featurizer

# Floor on power before the log: about -230 dB re full scale, far below 16-bit quantisation noise.
POWER_FLOOR = 1e-10


def stft_sizes(sample_rate: int, frame_length: float, frame_shift: float, where: str) -> Tuple[int, int, int]:
    """(n_fft, win_length, hop_length) in samples for frame length and shift in milliseconds."""
    win_length = int(sample_rate * frame_length * 0.001)
    hop_length = int(sample_rate * frame_shift * 0.001)
    if win_length < 2 or hop_length < 1:
        raise ConfigError(f"{where}: frame_length={frame_length} ms and frame_shift={frame_shift} ms give "
                          f"{win_length} and {hop_length} samples at {sample_rate} Hz; need at least 2 and 1")
    return 2 ** math.ceil(math.log2(win_length)), win_length, hop_length


def check_band(f_min: float, f_max: float, sample_rate: int, where: str) -> float:
    """The upper edge of the mel filters: f_max, or the Nyquist frequency when f_max <= 0."""
    upper = f_max if f_max > 0 else sample_rate / 2
    if not 0 <= f_min < upper <= sample_rate / 2:
        raise ConfigError(f"{where}: need 0 <= f_min < f_max <= {sample_rate / 2} Hz, "
                          f"got f_min={f_min}, f_max={f_max}")
    return upper


@register_featurizer
class MelSpectrogram(FrameFeaturizer):
    """Natural log of a power mel spectrogram: (batch, frames, n_mels), 100 frames/s by default.

    Frames are not centred (center=False), so that no frame reads past the end of its clip.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, frame_length: float = 25.0,
                 frame_shift: float = 10.0, f_min: float = 20.0, f_max: float = 0.0, mean_norm: bool = False):
        if n_mels < 1:
            raise ConfigError(f"MelSpectrogram: n_mels must be at least 1, got {n_mels}")
        n_fft, win_length, hop_length = stft_sizes(sample_rate, frame_length, frame_shift, "MelSpectrogram")
        upper = check_band(f_min, f_max, sample_rate, "MelSpectrogram")
        super().__init__(sample_rate, n_fft, hop_length, mean_norm)
        self.transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
            f_min=f_min, f_max=upper, n_mels=n_mels, center=False, power=2.0)
        self.feature_dim = n_mels

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples) -> (batch, frames, n_mels)."""
        return self.transform(waveforms).clamp_min(POWER_FLOOR).log().transpose(1, 2)


@register_featurizer
class Spectrogram(FrameFeaturizer):
    """Natural log of a power spectrogram: (batch, frames, n_fft // 2 + 1), 257 bins at 16 kHz."""

    def __init__(self, sample_rate: int = 16000, frame_length: float = 25.0, frame_shift: float = 10.0,
                 mean_norm: bool = False):
        n_fft, win_length, hop_length = stft_sizes(sample_rate, frame_length, frame_shift, "Spectrogram")
        super().__init__(sample_rate, n_fft, hop_length, mean_norm)
        self.transform = torchaudio.transforms.Spectrogram(
            n_fft=n_fft, win_length=win_length, hop_length=hop_length, center=False, power=2.0)
        self.feature_dim = n_fft // 2 + 1

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples) -> (batch, frames, n_fft // 2 + 1)."""
        return self.transform(waveforms).clamp_min(POWER_FLOOR).log().transpose(1, 2)

"""Mel-frequency cepstral coefficients through torchaudio.transforms.MFCC."""
import torch
import torchaudio

from mser.errors import ConfigError
from mser.features.base import FrameFeaturizer, register_featurizer
from mser.features.spectrogram import check_band, stft_sizes


@register_featurizer
class MFCC(FrameFeaturizer):
    """MFCC of a log mel spectrogram: (batch, frames, n_mfcc), 100 frames/s by default.

    log_mels=True takes log(mel + 1e-6) instead of dB with a top_db clamp, whose threshold would
    follow the loudest frame of each (padded) input rather than a fixed floor.
    """

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, n_mels: int = 80, frame_length: float = 25.0,
                 frame_shift: float = 10.0, f_min: float = 20.0, f_max: float = 0.0, mean_norm: bool = False):
        if not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"MFCC: need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}")
        n_fft, win_length, hop_length = stft_sizes(sample_rate, frame_length, frame_shift, "MFCC")
        upper = check_band(f_min, f_max, sample_rate, "MFCC")
        super().__init__(sample_rate, n_fft, hop_length, mean_norm)
        self.transform = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc, log_mels=True,
            melkwargs={"n_fft": n_fft, "win_length": win_length, "hop_length": hop_length,
                       "f_min": f_min, "f_max": upper, "n_mels": n_mels, "center": False})
        self.feature_dim = n_mfcc

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples) -> (batch, frames, n_mfcc)."""
        return self.transform(waveforms).transpose(1, 2)

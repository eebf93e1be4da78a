"""What every featurizer is: a torch module from padded waveforms to padded frame features."""
from typing import Tuple

import torch
from torch import nn

from mser.registry import Registry

FEATURIZERS = Registry("featurizer")
register_featurizer = FEATURIZERS.register


class Featurizer(nn.Module):
    """Base class. Subclasses set `feature_dim` and implement `forward`.

    forward(waveforms: (batch, samples) float32, lengths: (batch,) samples)
        -> features (batch, frames, feature_dim) float32, frame_lengths (batch,) int64
    Padding never leaks into a clip's frames: frames past `frame_lengths` are zero.
    The module runs on whichever device it (and its input) is on.
    """

    feature_dim: int
    # True for clip-level features (one vector per clip, returned as a one-frame sequence);
    # those go through extract_features.py's cache and a scaler fitted on the training list.
    clip_level: bool = False

    def __init__(self, sample_rate: int = 16000):
        super().__init__()
        self.sample_rate = sample_rate

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # abstract

    @staticmethod
    def full_lengths(waveforms: torch.Tensor, lengths: torch.Tensor = None) -> torch.Tensor:
        if lengths is None:
            return torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long,
                              device=waveforms.device)
        return lengths.to(device=waveforms.device, dtype=torch.long)


def mask_frames(features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Zero every frame past each clip's length. features: (batch, frames, dim)."""
    frames = torch.arange(features.shape[1], device=features.device)
    valid = frames[None, :] < frame_lengths[:, None]
    return features * valid[:, :, None].to(features.dtype)

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
    # True for features a library outside torch computes one clip at a time on the CPU (openSMILE):
    # the cache extracts them in worker processes, and they cannot be part of an exported graph.
    clip_by_clip: bool = False

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


# On the CPU a few clips at a time run several times faster than a whole batch: the frame tensors
# stay in cache, and the allocator reuses their memory instead of mapping fresh pages on each call.
CPU_CHUNK_SAMPLES = 2 ** 18


def in_cpu_chunks(compute, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """compute(waveforms, lengths) -> (batch, ...), run on slices of the batch when on the CPU."""
    clips = max(1, CPU_CHUNK_SAMPLES // max(1, waveforms.shape[1]))
    if waveforms.device.type != "cpu" or waveforms.shape[0] <= clips:
        return compute(waveforms, lengths)
    return torch.cat([compute(w, n) for w, n in zip(waveforms.split(clips), lengths.split(clips))])


def mask_samples(waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero every sample past each clip's length. waveforms: (batch, samples)."""
    samples = torch.arange(waveforms.shape[1], device=waveforms.device)
    valid = samples[None, :] < lengths[:, None]
    return waveforms * valid.to(waveforms.dtype)


def subtract_valid_mean(features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance mean normalisation over valid frames only. features: (batch, frames, dim)."""
    masked = mask_frames(features, frame_lengths)
    count = frame_lengths.clamp_min(1).to(features.dtype)[:, None, None]
    return features - masked.sum(dim=1, keepdim=True) / count


class FrameFeaturizer(Featurizer):
    """A frame-level featurizer: frames of `window` samples every `hop` samples.

    Only frames that lie wholly inside a clip are valid, so a clip's features never depend on the
    padding after it; a clip shorter than one window still gets one frame (computed over the clip
    followed by zeros), so that pooling never divides by zero. Subclasses implement `compute`.
    """

    def __init__(self, sample_rate: int, window: int, hop: int, mean_norm: bool = False):
        super().__init__(sample_rate)
        self.window, self.hop, self.mean_norm = window, hop, mean_norm

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples >= window), zero past `lengths` -> (batch, frames, feature_dim)."""
        raise NotImplementedError  # abstract

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames per clip, (batch,) int64, for clip lengths in samples."""
        return 1 + (lengths - self.window).clamp_min(0) // self.hop

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """waveforms: (batch, samples), lengths: (batch,) -> (batch, frames, feature_dim), (batch,)."""
        lengths = self.full_lengths(waveforms, lengths)
        waveforms = mask_samples(waveforms.float(), lengths)
        if waveforms.shape[1] < self.window:
            waveforms = nn.functional.pad(waveforms, (0, self.window - waveforms.shape[1]))
        features = in_cpu_chunks(self.compute, waveforms, lengths)
        frame_lengths = self.frame_lengths(lengths).clamp(1, features.shape[1])
        if self.mean_norm:
            features = subtract_valid_mean(features, frame_lengths)
        return mask_frames(features, frame_lengths), frame_lengths

"""What every model shares: input checks, frame masks, and how lengths shrink through strides.

Padding must never change a clip's result. The rule every model follows: before any layer that
mixes frames (a convolution with a kernel longer than 1 along time, a mean over time), frames past
a clip's length are zero or masked out. A convolution then sees exactly the zeros it would see as
its own padding if the clip were alone, and global statistics only count real frames.
`lengths=None` means every clip fills the batch; no mask is built, which keeps exported graphs free
of masking.
"""
from typing import Optional

import torch
from torch import nn

from mser.errors import DataError


class ModelInputError(DataError, ValueError):
    """Features a model cannot take: wrong shape, wrong feature dimension, bad lengths."""


class ClipTooShortError(ModelInputError):
    """A clip with fewer frames than the model needs."""


def frame_mask(lengths: Optional[torch.Tensor], frames: int) -> Optional[torch.Tensor]:
    """lengths: (batch,) → (batch, frames) bool, True on real frames; None stays None."""
    if lengths is None:
        return None
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def broadcast_mask(mask: torch.Tensor, ndim: int, time_dim: int) -> torch.Tensor:
    """(batch, frames) mask → a shape that broadcasts over a tensor of `ndim` dims, time at `time_dim`."""
    shape = [mask.shape[0]] + [1] * (ndim - 1)
    shape[time_dim % ndim] = mask.shape[1]
    return mask.view(shape)


def zero_padding(x: torch.Tensor, lengths: Optional[torch.Tensor], time_dim: int = -1) -> torch.Tensor:
    """Zero every frame past each clip's length. x: (batch, ..., frames, ...), time at `time_dim`."""
    if lengths is None:
        return x
    mask = frame_mask(lengths, x.shape[time_dim])
    return x.masked_fill(~broadcast_mask(mask, x.dim(), time_dim), 0.0)


def strided_lengths(lengths: Optional[torch.Tensor], kernel_size: int, stride: int = 1,
                    padding: int = 0, dilation: int = 1) -> Optional[torch.Tensor]:
    """Output lengths of a convolution or floor-mode pooling along time (the PyTorch formula)."""
    if lengths is None:
        return None
    return torch.div(lengths + 2 * padding - dilation * (kernel_size - 1) - 1, stride,
                     rounding_mode="floor") + 1


class MaskedConv1d(nn.Conv1d):
    """nn.Conv1d whose forward(x: (batch, channels, frames), lengths) zeros padding first.

    A kernel of size 1 does not mix frames, so it skips the masking.
    """

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.kernel_size[0] > 1:
            x = zero_padding(x, lengths, time_dim=-1)
        return super().forward(x)

    def output_lengths(self, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return strided_lengths(lengths, self.kernel_size[0], self.stride[0], self.padding[0],
                               self.dilation[0])


class MaskedConv2d(nn.Conv2d):
    """nn.Conv2d over (batch, channels, frames, freq) whose forward zeros padded frames first."""

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.kernel_size[0] > 1:
            x = zero_padding(x, lengths, time_dim=2)
        return super().forward(x)

    def output_lengths(self, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return strided_lengths(lengths, self.kernel_size[0], self.stride[0], self.padding[0],
                               self.dilation[0])


class SERModel(nn.Module):
    """Base class of every registered model.

    forward(features: (batch, frames, input_size), lengths: (batch,) frames or None)
        -> logits (batch, num_class)
    Subclasses implement `embedding(features, lengths) -> (batch, embd_dim)` and set `self.head`;
    `min_frames` is the shortest clip the architecture can take.
    """

    min_frames: int = 1

    def __init__(self, input_size: int, num_class: int):
        super().__init__()
        if input_size < 1 or num_class < 1:
            raise ModelInputError(f"{type(self).__name__} needs input_size >= 1 and num_class >= 1, "
                                  f"got input_size={input_size}, num_class={num_class}")
        self.input_size = input_size
        self.num_class = num_class

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        lengths = self.check_input(features, lengths)
        return self.head(self.embedding(features, lengths))

    def check_input(self, features: torch.Tensor, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Validate the input and return lengths as int64 on the features' device (or None)."""
        name = type(self).__name__
        if torch.jit.is_tracing():  # exported graphs take whole clips; shapes are symbolic there
            return None
        if features.dim() != 3 or features.shape[2] != self.input_size:
            raise ModelInputError(f"{name} expects features (batch, frames, {self.input_size}), "
                                  f"got shape {tuple(features.shape)}")
        frames = features.shape[1]
        if lengths is not None:
            lengths = lengths.to(device=features.device, dtype=torch.long)
            if lengths.shape != (features.shape[0],):
                raise ModelInputError(f"{name}: lengths must have shape ({features.shape[0]},), "
                                      f"got {tuple(lengths.shape)}")
            if int(lengths.max()) > frames:
                raise ModelInputError(f"{name}: a length of {int(lengths.max())} frames exceeds "
                                      f"the {frames} frames of the batch")
        shortest = frames if lengths is None else int(lengths.min())
        if shortest < self.min_frames:
            raise ClipTooShortError(f"{name} needs clips of at least {self.min_frames} frames, "
                                    f"got one of {shortest}; use longer audio "
                                    f"(dataset_conf.dataset.min_duration) or another model")
        return lengths

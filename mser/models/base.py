"""What every model shares: input checks, frame masks, and how lengths shrink through strides.

Padding must never change a clip's result. The rule every model follows: before any layer that
mixes frames (a convolution with a kernel longer than 1 along time, a mean over time), frames past
a clip's length are zero or masked out. A convolution then sees exactly the zeros it would see as
its own padding if the clip were alone, and global statistics only count real frames. Batch norm
over frames takes its training statistics from real frames only (`masked_batch_norm`).
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


def masked_batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor,
                      lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """norm(x), except that in training the batch statistics come from real frames only.

    x: (batch, channels, frames) or (batch, channels, frames, freq). In eval mode (running
    statistics) each frame is normalised on its own, so the layer is simply applied. Padded frames
    are normalised too, with the real frames' statistics; later layers mask them.
    """
    if lengths is None or not norm.training or isinstance(norm, nn.SyncBatchNorm):
        return norm(x)
    mask = frame_mask(lengths, x.shape[2])
    rows = x.movedim(1, -1)[mask].reshape(-1, x.shape[1]).float()  # (real frames [* freq], channels)
    if rows.shape[0] < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got {rows.shape[0]}")
    mean = rows.mean(dim=0)
    variance = rows.var(dim=0, unbiased=False)
    update_running_stats(norm, mean.detach(), variance.detach() * rows.shape[0] / (rows.shape[0] - 1))
    scale = torch.rsqrt(variance + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -mean * scale if norm.bias is None else norm.bias - mean * scale
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    # scale and shift, rather than writing rows back, keep x's memory layout and avoid a scatter
    return x * scale.to(x.dtype).view(shape) + shift.to(x.dtype).view(shape)


def update_running_stats(norm: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor,
                         unbiased_variance: torch.Tensor) -> None:
    """The running-average update nn.BatchNorm does in training (momentum None: cumulative)."""
    if not norm.track_running_stats or norm.running_mean is None:
        return
    norm.num_batches_tracked.add_(1)
    factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    norm.running_mean.mul_(1 - factor).add_(factor * mean.to(norm.running_mean.dtype))
    norm.running_var.mul_(1 - factor).add_(factor * unbiased_variance.to(norm.running_var.dtype))


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

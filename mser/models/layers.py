"""Building blocks shared by the models: length helpers, masked convolutions and batch norm, and
blocks that more than one architecture uses. Pooling over time lives in mser.models.pooling.

Padding must never change a clip's result. The rule every model follows: before any layer that
mixes frames (a convolution with a kernel longer than 1 along time, a mean over time), frames past
a clip's length are zero or masked out. A convolution then sees exactly the zeros it would see as
its own padding if the clip were alone, and global statistics only count real frames. Batch norm
over frames takes its training statistics from real frames only (`masked_batch_norm`).
`lengths=None` means every clip fills the batch; no mask is built, which keeps exported graphs free
of masking.

Tensors are (batch, channels, frames) for 1-D layers and (batch, channels, frames, freq) for 2-D
layers; `lengths` is (batch,) int64 frames, or None.
"""
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from mser.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# lengths and masks


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
    if lengths is None or fills_batch(lengths, x.shape[time_dim]):
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


def halved(size: int, times: int) -> int:
    """A size after `times` stride-2, kernel-3, padding-1 convolutions: ceil(size / 2) each time."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


def halved_lengths(lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Lengths after a stride-2 layer with 'same' padding: ceil(length / 2)."""
    return None if lengths is None else torch.div(lengths + 1, 2, rounding_mode="floor")


def fold_frequency(x: torch.Tensor) -> torch.Tensor:
    """(batch, channels, frames, freq) -> (batch, channels * freq, frames): each frame's channels
    and frequency bins as one vector (channel-major), ready for pooling over time."""
    batch, channels, frames, freq = x.shape
    return x.permute(0, 1, 3, 2).reshape(batch, channels * freq, frames)


# ---------------------------------------------------------------------------------------------
# batch norm and convolutions that respect padding


def masked_batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor,
                      lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """norm(x), except that in training the batch statistics come from real frames only.

    x: (batch, channels, frames) or (batch, channels, frames, freq). In eval mode (running
    statistics) each frame is normalised on its own, so the layer is simply applied. Padded frames
    are normalised too, with the real frames' statistics; later layers mask them.
    """
    if lengths is None or not norm.training or isinstance(norm, nn.SyncBatchNorm) or fills_batch(lengths, x.shape[2]):
        return norm(x)
    # a 0/1 weight per frame over x's own layout: gathering the real frames with a boolean index, and
    # its scatter in the backward pass, cost 17 % of an EcapaTdnn (C=512) step
    frames = broadcast_mask(frame_mask(lengths, x.shape[2]), x.dim(), 2).float()
    count = float(frames.sum()) * x[0, 0, 0].numel()   # real frames [* freq bins of a frame]
    if count < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got {int(count)}")
    out, mean, variance = MaskedBatchNorm.apply(x, norm.weight, norm.bias, frames, count, norm.eps)
    update_running_stats(norm, mean, variance * count / (count - 1))
    return out


class MaskedBatchNorm(torch.autograd.Function):
    """Batch norm's training pass with statistics over the frames where `frames` is 1 (in float32, or
    float64 for float64 input), its gradient written out: autograd through the same arithmetic made
    more intermediate tensors of x's size, and a TDNN training step on padded batches took 239
    instead of 197 ms (1 thread, 128 channels, log-mel input; 130 ms without padding).

    forward(x, weight, bias, frames, count, eps) -> (out in x's dtype, mean, biased variance);
    `frames` broadcasts over x, `count` is the number of real values per channel."""

    @staticmethod
    def forward(ctx, x, weight, bias, frames, count: float, eps: float):
        dims, shape = channel_reduction(x)
        values = x.to(torch.promote_types(x.dtype, torch.float32))
        mean = (values * frames).sum(dims) / count
        centered = values - mean.view(shape)
        variance = (centered * frames * centered).sum(dims) / count
        rstd = torch.rsqrt(variance + eps)
        scale = rstd if weight is None else rstd * weight.to(rstd.dtype)
        out = centered * scale.view(shape)
        if bias is not None:
            out += bias.to(out.dtype).view(shape)
        ctx.save_for_backward(centered, frames, rstd, scale)
        ctx.count, ctx.affine = count, (weight is not None, bias is not None)
        ctx.mark_non_differentiable(mean, variance)
        return out.to(x.dtype), mean, variance

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_mean, _grad_variance):
        centered, frames, rstd, scale = ctx.saved_tensors
        dims, shape = channel_reduction(centered)
        grad = grad_out.to(centered.dtype)
        grad_sum = grad.sum(dims)
        grad_centered = (grad * centered).sum(dims)
        # out = centered * scale + bias over every frame; the mean and variance of the real frames
        # pass on -scale * sum(grad) / count and -scale * rstd^2 * sum(grad * centered) / count * centered
        through_mean = -scale * grad_sum / ctx.count
        through_variance = -scale * rstd.square() * grad_centered / ctx.count
        grad_x = torch.addcmul(through_mean.view(shape), centered, through_variance.view(shape)).mul_(frames)
        grad_x.addcmul_(grad, scale.view(shape))
        has_weight, has_bias = ctx.affine
        return (grad_x.to(grad_out.dtype), grad_centered * rstd if has_weight else None,
                grad_sum if has_bias else None, None, None, None)


def channel_reduction(x: torch.Tensor) -> Tuple[List[int], List[int]]:
    """The axes to reduce for per-channel statistics of x (every axis but 1), and the shape that
    broadcasts a (channels,) vector over x."""
    return [0] + list(range(2, x.dim())), [1, x.shape[1]] + [1] * (x.dim() - 2)


def fills_batch(lengths: torch.Tensor, frames: int) -> bool:
    """Whether every clip fills all `frames` (no padding to leave out: nn.BatchNorm's own kernel)."""
    return bool(lengths.min() >= frames)


def update_running_stats(norm: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor,
                         unbiased_variance: torch.Tensor) -> None:
    """The running-average update nn.BatchNorm does in training (momentum None: cumulative)."""
    if not norm.track_running_stats or norm.running_mean is None:
        return
    norm.num_batches_tracked.add_(1)
    factor = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
    norm.running_mean.mul_(1 - factor).add_(factor * mean.to(norm.running_mean.dtype))
    norm.running_var.mul_(1 - factor).add_(factor * unbiased_variance.to(norm.running_var.dtype))


class MaskedConvMixin:
    """forward(x, lengths) zeros padded frames first (time at `time_dim`), unless the kernel is 1
    along time and so does not mix frames; `output_lengths` follows the convolution's stride."""

    time_dim: int

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.kernel_size[0] > 1:
            x = zero_padding(x, lengths, time_dim=self.time_dim)
        return super().forward(x)

    def output_lengths(self, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return strided_lengths(lengths, self.kernel_size[0], self.stride[0], self.padding[0],
                               self.dilation[0])


class MaskedConv1d(MaskedConvMixin, nn.Conv1d):
    """nn.Conv1d over (batch, channels, frames) whose forward(x, lengths) zeros padding first."""

    time_dim = -1


class MaskedConv2d(MaskedConvMixin, nn.Conv2d):
    """nn.Conv2d over (batch, channels, frames, freq) whose forward zeros padded frames first."""

    time_dim = 2


class ConvReluBn(nn.Module):
    """Conv1d (masked, 'same' padding) -> ReLU -> BatchNorm1d over (batch, channels, frames)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = MaskedConv1d(in_channels, out_channels, kernel_size, dilation=dilation,
                                 padding=dilation * (kernel_size - 1) // 2)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """lengths is required (None for full clips): the batch norm needs it in training."""
        return masked_batch_norm(self.norm, torch.relu(self.conv(x, lengths)), lengths)


# ---------------------------------------------------------------------------------------------
# residual blocks, gates and fusion


class ResidualBlock(nn.Module):
    """Base of the 2-D residual blocks: the shortcut is the identity, or, where the block changes
    the shape, a strided 1x1 convolution with batch norm (attributes `shortcut`, `shortcut_norm`)."""

    def add_shortcut(self, in_channels: int, out_channels: int,
                     stride: Union[int, Tuple[int, int]]) -> None:
        self.shortcut = None
        if _pair(stride) != (1, 1) or in_channels != out_channels:
            # a 1x1 kernel with this stride keeps exactly the frames a 'same' 3x3 conv's centres land on
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.shortcut_norm = nn.BatchNorm2d(out_channels)

    def residual(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """The block's input on the output's grid; lengths are those of the output."""
        if self.shortcut is None:
            return x
        return masked_batch_norm(self.shortcut_norm, self.shortcut(x), lengths)


class SqueezeExcitation(nn.Module):
    """Channel gates (Hu et al. 2018) from the mean over real frames (and all frequency bins).

    x: (batch, channels, frames) or (batch, channels, frames, freq) -> the same shape.
    """

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, bottleneck), nn.ReLU(),
                                  nn.Linear(bottleneck, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        gate = self.gate(self.squeeze(x, lengths))
        return x * gate.view(gate.shape + (1,) * (x.dim() - 2))

    @staticmethod
    def squeeze(x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """(batch, channels, frames[, freq]) -> (batch, channels), the mean over real frames."""
        if lengths is None:
            return x.mean(dim=tuple(range(2, x.dim())))
        per_frame = zero_padding(x, lengths, time_dim=2)
        if x.dim() == 4:
            per_frame = per_frame.mean(dim=3)
        return per_frame.sum(dim=2) / lengths[:, None].clamp(min=1).to(x.dtype)


class AttentionalFusion(nn.Module):
    """AFF (ERes2Net): out = x * (1 + tanh(a)) + y * (1 - tanh(a)), `a` from both inputs by 1x1
    convolutions. x, y: (batch, channels, frames, freq) of the same shape."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.conv_in = nn.Conv2d(2 * channels, hidden, 1)
        self.norm_in = nn.BatchNorm2d(hidden)
        self.conv_out = nn.Conv2d(hidden, channels, 1)
        self.norm_out = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        hidden = nn.functional.silu(masked_batch_norm(self.norm_in, self.conv_in(torch.cat([x, y], 1)), lengths))
        weight = 1.0 + torch.tanh(masked_batch_norm(self.norm_out, self.conv_out(hidden), lengths))
        return x * weight + y * (2.0 - weight)


def res2_group_width(planes: int, base_width: int, model: str) -> int:
    """Channels of one Res2 group: floor(planes * base_width / 64), the papers' '26w' notation."""
    width = planes * base_width // 64
    if width < 1:
        raise ConfigError(f"{model}: planes={planes} with base_width={base_width} leaves groups of "
                          f"{planes * base_width / 64:.2f} channels; raise channels or base_width")
    return width


class ERes2Block(ResidualBlock):
    """The ERes2Net / ERes2NetV2 bottleneck: 1x1 conv (carrying the stride) -> Res2 3x3 convs over
    `scale` groups -> 1x1 conv to expansion * planes, plus the residual, each conv followed by batch
    norm and `activation`. With `fuse`, each group is combined with the previous group's output by
    AFF (local feature fusion) rather than added to it.
    """

    def __init__(self, in_channels: int, planes: int, stride: int, fuse: bool, base_width: int,
                 scale: int, expansion: int, activation: Callable[[torch.Tensor], torch.Tensor],
                 model: str):
        super().__init__()
        width = res2_group_width(planes, base_width, model)
        out_channels = planes * expansion
        self.width, self.activation = width, activation
        self.conv_in = nn.Conv2d(in_channels, width * scale, 1, stride=stride, bias=False)
        self.norm_in = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(MaskedConv2d(width, width, 3, padding=1, bias=False) for _ in range(scale))
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        self.fusions = nn.ModuleList(AttentionalFusion(width) for _ in range(scale - 1)) if fuse else None
        self.conv_out = nn.Conv2d(width * scale, out_channels, 1, bias=False)
        self.norm_out = nn.BatchNorm2d(out_channels)
        self.add_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (batch, in_channels, frames, freq); lengths are those of the output (after the stride)."""
        out = self.activation(masked_batch_norm(self.norm_in, self.conv_in(x), lengths))
        groups = torch.split(out, self.width, dim=1)
        outputs = []
        for index, (group, conv, norm) in enumerate(zip(groups, self.convs, self.norms)):
            if index > 0:
                previous = outputs[-1]
                group = previous + group if self.fusions is None else self.fusions[index - 1](previous, group, lengths)
            outputs.append(self.activation(masked_batch_norm(norm, conv(group, lengths), lengths)))
        out = masked_batch_norm(self.norm_out, self.conv_out(torch.cat(outputs, dim=1)), lengths)
        return self.activation(out + self.residual(x, lengths))

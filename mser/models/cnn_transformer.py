"""CNN + Transformer encoder over the log-mel image (the CNN+Transformer SER recipe users bring
from Lightning/Hydra projects).

A 2-D CNN reads the (frequency, time) image: 1 -> 32 channels with a 7x7 kernel, then 64, 128, 256
and 512 with 3x3 kernels, each convolution followed by batch norm and ReLU, with max pooling between
them: (4, 1) after the first (frequency by 4, time kept), (2, 2) after the others. The remaining
frequency bins are folded into the channels and projected to the model width; sinusoidal positions
are added and a Transformer encoder (d=512, 4 heads, feed-forward 1024, 6 layers) attends over the
real frames only (padding is masked as keys). The mean over real frames is the embedding; a linear
layer gives the logits. Time shrinks by the product of the time pools (8 by default), which is the
shortest clip the model takes. Pools along frequency are clipped to the bins left, so any input
size works.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from mser.errors import ConfigError
from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import MaskedConv2d, frame_mask, masked_batch_norm, strided_lengths
from mser.models.pooling import masked_mean


class ConvPoolBlock(nn.Module):
    """Masked 'same' Conv2d -> BatchNorm -> ReLU -> max pool over (batch, channels, frames, freq).

    Floor-mode pooling windows of the first lengths // time_pool output frames hold real frames
    only, so padding never reaches them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, time_pool: int, freq_pool: int):
        super().__init__()
        self.conv = MaskedConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.time_pool = time_pool
        self.pool = nn.MaxPool2d((time_pool, freq_pool)) if time_pool * freq_pool > 1 else None

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = torch.relu(masked_batch_norm(self.norm, self.conv(x, lengths), lengths))
        if self.pool is None:
            return x, lengths
        return self.pool(x), strided_lengths(lengths, self.time_pool, self.time_pool)


def sinusoidal_positions(frames: int, dim: int, device, dtype) -> torch.Tensor:
    """The Transformer's fixed position encoding (Vaswani et al. 2017): (frames, dim)."""
    position = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * frequency
    encoding = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :dim]
    return encoding.to(dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention over (batch, frames, d_model); padded frames are never keys.

    Written out (rather than nn.MultiheadAttention, whose traced ONNX graph fixes the number of
    frames it was exported with) so that exported models take any clip length.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (batch, frames, d_model); mask: (batch, frames) bool, True on real frames, or None."""
        batch, _, d_model = x.shape
        heads = self.qkv(x).view(batch, -1, 3, self.num_heads, d_model // self.num_heads).permute(2, 0, 3, 1, 4)
        query, key, value = heads.unbind(0)  # each (batch, num_heads, frames, head_dim)
        attended = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=None if mask is None else mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0)
        return self.out(attended.transpose(1, 2).reshape(batch, -1, d_model))


class EncoderLayer(nn.Module):
    """A post-norm Transformer encoder layer (Vaswani et al. 2017): attention, then a ReLU
    feed-forward, each with dropout, a residual and layer norm. x: (batch, frames, d_model)."""

    def __init__(self, d_model: int, num_heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.attention = SelfAttention(d_model, num_heads, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(nn.Linear(d_model, feedforward), nn.ReLU(), nn.Dropout(dropout),
                                         nn.Linear(feedforward, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, mask)))
        return self.norm2(x + self.dropout(self.feedforward(x)))


@register_model
class CNNTransformer(SERModel):
    """CNN + Transformer classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: output channels of the convolutions (the first has a `first_kernel` kernel, the
    others 3x3); pools: (frequency, time) max-pool sizes after every convolution but the last;
    d_model, num_heads, feedforward, num_layers: the Transformer encoder; dropout: in the encoder
    and before the head. The defaults are the recipe's sizes (14.7M parameters at 80 bins).
    """

    def __init__(self, input_size: int, num_class: int, channels: Sequence[int] = (32, 64, 128, 256, 512),
                 first_kernel: int = 7, pools: Sequence[Sequence[int]] = ((4, 1), (2, 2), (2, 2), (2, 2)),
                 d_model: int = 512, num_heads: int = 4, feedforward: int = 1024, num_layers: int = 6,
                 dropout: float = 0.1):
        super().__init__(input_size, num_class)
        check_sizes(channels, pools, d_model, num_heads, first_kernel)
        self.blocks = nn.ModuleList()
        freq, in_channels = input_size, 1
        for index, out_channels in enumerate(channels):
            freq_pool, time_pool = pools[index] if index < len(pools) else (1, 1)
            freq_pool = min(freq_pool, freq)  # a narrow input keeps at least one bin
            self.blocks.append(ConvPoolBlock(in_channels, out_channels, first_kernel if index == 0 else 3,
                                             time_pool, freq_pool))
            freq, in_channels = freq // freq_pool, out_channels
        self.min_frames = math.prod(time for _, time in pools)
        self.project = nn.Linear(in_channels * freq, d_model)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, num_heads, feedforward, dropout)
                                     for _ in range(num_layers))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, num_class))

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, d_model), the mean over real frames."""
        x = features[:, None]
        for block in self.blocks:
            x, lengths = block(x, lengths)
        batch, channels, frames, freq = x.shape
        x = self.project(x.permute(0, 2, 1, 3).reshape(batch, frames, channels * freq))
        x = x + sinusoidal_positions(frames, x.shape[-1], x.device, x.dtype)
        mask = frame_mask(lengths, frames)
        for layer in self.encoder:
            x = layer(x, mask)
        return masked_mean(x.transpose(1, 2), lengths)


def check_sizes(channels: Sequence[int], pools: Sequence[Sequence[int]], d_model: int, num_heads: int,
                first_kernel: int) -> None:
    """One-line ConfigErrors for sizes the model cannot be built with."""
    if not channels or min(channels) < 1:
        raise ConfigError(f"CNNTransformer: channels must be a non-empty list of positive sizes, got {list(channels)}")
    if len(pools) > len(channels) - 1:
        raise ConfigError(f"CNNTransformer: {len(pools)} pools for {len(channels)} convolutions; "
                          f"pools go between convolutions, so give at most {len(channels) - 1}")
    if any(len(pool) != 2 or min(pool) < 1 for pool in pools):
        raise ConfigError(f"CNNTransformer: each pool is a (frequency, time) pair of positive sizes, "
                          f"got {[list(pool) for pool in pools]}")
    if num_heads < 1 or d_model % num_heads:
        raise ConfigError(f"CNNTransformer: d_model={d_model} must be divisible by num_heads={num_heads}")
    if first_kernel < 1 or first_kernel % 2 == 0:
        raise ConfigError(f"CNNTransformer: first_kernel must be odd (a 'same' convolution), got {first_kernel}")

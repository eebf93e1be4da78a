"""CAM++ (Wang et al., Interspeech 2023, arXiv:2303.00332).

A 2-D front-end convolution module (FCM: residual blocks that stride along frequency only), then a
densely connected TDNN (D-TDNN) whose layers are context-aware masking (CAM) layers: each local
convolution is gated by a context vector from the clip mean plus a mean over 100-frame segments.
Statistics pooling and a linear layer give the embedding.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import (MaskedConv1d, MaskedConv2d, ResidualBlock, fold_frequency, halved,
                                masked_batch_norm, zero_padding)
from mser.models.pooling import build_pooling, masked_mean


class FrequencyResBlock(ResidualBlock):
    """2-D basic residual block over (batch, channels, frames, freq), striding frequency only."""

    def __init__(self, in_channels: int, out_channels: int, freq_stride: int):
        super().__init__()
        self.conv1 = MaskedConv2d(in_channels, out_channels, 3, stride=(1, freq_stride), padding=1,
                                  bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = MaskedConv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.add_shortcut(in_channels, out_channels, (1, freq_stride))

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = torch.relu(masked_batch_norm(self.norm1, self.conv1(x, lengths), lengths))
        out = masked_batch_norm(self.norm2, self.conv2(out, lengths), lengths)
        return torch.relu(out + self.residual(x, lengths))


class FrontEndConv(nn.Module):
    """FCM: (batch, frames, freq) -> (batch, channels * ceil(freq / 8), frames)."""

    def __init__(self, input_size: int, channels: int):
        super().__init__()
        self.conv_in = MaskedConv2d(1, channels, 3, padding=1, bias=False)
        self.norm_in = nn.BatchNorm2d(channels)
        self.blocks = nn.ModuleList([
            FrequencyResBlock(channels, channels, 2), FrequencyResBlock(channels, channels, 1),
            FrequencyResBlock(channels, channels, 2), FrequencyResBlock(channels, channels, 1)])
        self.conv_out = MaskedConv2d(channels, channels, 3, stride=(1, 2), padding=1, bias=False)
        self.norm_out = nn.BatchNorm2d(channels)
        self.out_channels = channels * halved(input_size, 3)

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = torch.relu(masked_batch_norm(self.norm_in, self.conv_in(features[:, None], lengths), lengths))
        for block in self.blocks:
            x = block(x, lengths)
        return fold_frequency(torch.relu(masked_batch_norm(self.norm_out, self.conv_out(x, lengths), lengths)))


def masked_segment_mean(x: torch.Tensor, lengths: Optional[torch.Tensor], segment: int) -> torch.Tensor:
    """Mean of each `segment`-frame chunk over its real frames, spread back over the chunk.

    x: (batch, channels, frames) -> same shape. The last chunk may be partial; its mean divides by
    the frames it holds, so a clip padded in a batch gets the same value as the clip alone.
    """
    frames = x.shape[-1]
    ones = torch.ones_like(x[:, :1])
    totals = nn.functional.avg_pool1d(zero_padding(x, lengths), segment, segment, ceil_mode=True)
    counts = nn.functional.avg_pool1d(zero_padding(ones, lengths), segment, segment, ceil_mode=True)
    # both are divided by the window size, which cancels; a chunk of padding only has count 0, and
    # a floor above 0 but below 1 / segment (still a normal number in float16) keeps it at 0, not NaN
    means = totals / counts.clamp(min=0.5 / segment)
    return means.repeat_interleave(segment, dim=-1)[..., :frames]


class CAMLayer(nn.Module):
    """Local dilated convolution gated by a sigmoid of (clip mean + segment mean) context."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 segment: int = 100, reduction: int = 2):
        super().__init__()
        self.local = MaskedConv1d(in_channels, out_channels, kernel_size, dilation=dilation,
                                  padding=dilation * (kernel_size - 1) // 2, bias=False)
        self.context = nn.Sequential(
            nn.Conv1d(in_channels, in_channels // reduction, 1), nn.ReLU(),
            nn.Conv1d(in_channels // reduction, out_channels, 1), nn.Sigmoid())
        self.segment = segment

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        context = masked_mean(x, lengths, keepdim=True) + masked_segment_mean(x, lengths, self.segment)
        return self.local(x, lengths) * self.context(context)


class DenseTDNNLayer(nn.Module):
    """BN-ReLU -> k=1 bottleneck -> BN-ReLU -> CAM layer; its output is appended to its input."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: int, kernel_size: int,
                 dilation: int):
        super().__init__()
        self.norm_in = nn.BatchNorm1d(in_channels)
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
        self.norm_bottleneck = nn.BatchNorm1d(bottleneck)
        self.cam = CAMLayer(bottleneck, growth_rate, kernel_size, dilation)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        hidden = self.bottleneck(torch.relu(masked_batch_norm(self.norm_in, x, lengths)))
        hidden = torch.relu(masked_batch_norm(self.norm_bottleneck, hidden, lengths))
        return torch.cat([x, self.cam(hidden, lengths)], dim=1)


class DenseTDNNBlock(nn.Module):
    """`num_layers` dense layers, then a transition (BN-ReLU, k=1 conv) that halves the channels."""

    def __init__(self, in_channels: int, num_layers: int, growth_rate: int, bottleneck: int,
                 kernel_size: int, dilation: int):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseTDNNLayer(in_channels + i * growth_rate, growth_rate, bottleneck, kernel_size, dilation)
            for i in range(num_layers))
        grown = in_channels + num_layers * growth_rate
        self.out_channels = grown // 2
        self.transit_norm = nn.BatchNorm1d(grown)
        self.transit = nn.Conv1d(grown, self.out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, lengths)
        return self.transit(torch.relu(masked_batch_norm(self.transit_norm, x, lengths)))


@register_model
class CAMPPlus(SERModel):
    """CAM++ classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    Defaults follow the paper (≈7.2M parameters with a 512-d embedding on 80-d input); the first
    TDNN layer strides time by 2. fcm_channels, init_channels, growth_rate and embd_dim shrink it.
    """

    def __init__(self, input_size: int, num_class: int, embd_dim: int = 512, fcm_channels: int = 32,
                 init_channels: int = 128, growth_rate: int = 32, bn_size: int = 4,
                 block_layers: Sequence[int] = (12, 24, 16), pooling_type: str = "TSTP"):
        super().__init__(input_size, num_class)
        self.fcm = FrontEndConv(input_size, fcm_channels)
        self.tdnn = MaskedConv1d(self.fcm.out_channels, init_channels, 5, stride=2, padding=2, bias=False)
        self.tdnn_norm = nn.BatchNorm1d(init_channels)
        channels = init_channels
        self.blocks = nn.ModuleList()
        for num_layers, dilation in zip(block_layers, (1, 2, 2)):
            self.blocks.append(DenseTDNNBlock(channels, num_layers, growth_rate, bn_size * growth_rate,
                                              3, dilation))
            channels = self.blocks[-1].out_channels
        self.out_norm = nn.BatchNorm1d(channels)
        self.pooling = build_pooling(pooling_type, channels)
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim, bias=False)
        self.embed_norm = nn.BatchNorm1d(embd_dim, affine=False)
        self.head = nn.Linear(embd_dim, num_class)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        x = self.fcm(features, lengths)
        x = self.tdnn(x, lengths)
        lengths = self.tdnn.output_lengths(lengths)
        x = torch.relu(masked_batch_norm(self.tdnn_norm, x, lengths))
        for block in self.blocks:
            x = block(x, lengths)
        pooled = self.pooling(torch.relu(masked_batch_norm(self.out_norm, x, lengths)), lengths)
        return self.embed_norm(self.embed(pooled))

"""ResNet with squeeze-excitation over the (time, frequency) plane.

ResNet-34 basic blocks (He et al. 2016) with SE channel gates (Hu et al. 2018), thin as in speaker
recognition (base width 32, stages of 3-4-6-3 blocks striding time and frequency by 2 from the
second stage on). The last stage's channels and remaining frequency bins are flattened into one
vector per frame and pooled over time. Frequency shrinks to ceil(input_size / 8), so any input
size works, and so do short clips: time shrinks to ceil(frames / 8), never to zero.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import (MaskedConv2d, ResidualBlock, SqueezeExcitation, fold_frequency, halved,
                                masked_batch_norm)
from mser.models.pooling import build_pooling


class SEBasicBlock(ResidualBlock):
    """Two 3x3 convolutions with BN, an SE gate, and the (projected when strided) residual."""

    def __init__(self, in_channels: int, channels: int, stride: int, se_reduction: int):
        super().__init__()
        self.conv1 = MaskedConv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = MaskedConv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcitation(channels, max(channels // se_reduction, 1))
        self.add_shortcut(in_channels, channels, stride)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """x: (batch, in_channels, frames, freq) -> ((batch, channels, frames', freq'), lengths')."""
        out_lengths = self.conv1.output_lengths(lengths)
        out = torch.relu(masked_batch_norm(self.norm1, self.conv1(x, lengths), out_lengths))
        out = masked_batch_norm(self.norm2, self.conv2(out, out_lengths), out_lengths)
        out = self.se(out, out_lengths)
        return torch.relu(out + self.residual(x, out_lengths)), out_lengths


@register_model
class ResNetSE(SERModel):
    """SE-ResNet classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: width of the first stage (doubled at each of the four stages); layers: blocks a stage.
    """

    def __init__(self, input_size: int, num_class: int, channels: int = 32,
                 layers: Sequence[int] = (3, 4, 6, 3), embd_dim: int = 192, se_reduction: int = 8,
                 pooling_type: str = "ASP"):
        super().__init__(input_size, num_class)
        self.conv_in = MaskedConv2d(1, channels, 3, padding=1, bias=False)
        self.norm_in = nn.BatchNorm2d(channels)
        self.blocks = nn.ModuleList()
        in_channels = channels
        for stage, num_blocks in enumerate(layers):
            width = channels * 2 ** stage
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                self.blocks.append(SEBasicBlock(in_channels, width, stride, se_reduction))
                in_channels = width
        out_freq = halved(input_size, max(len(layers) - 1, 0))
        self.pooling = build_pooling(pooling_type, in_channels * out_freq)
        self.pool_norm = nn.BatchNorm1d(self.pooling.out_dim)
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim)
        self.embed_norm = nn.BatchNorm1d(embd_dim)
        self.head = nn.Linear(embd_dim, num_class)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        x = torch.relu(masked_batch_norm(self.norm_in, self.conv_in(features[:, None], lengths), lengths))
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.embed_norm(self.embed(self.pool_norm(self.pooling(fold_frequency(x), lengths))))

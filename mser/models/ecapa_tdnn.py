"""ECAPA-TDNN (Desplanques, Thienpondt, Demuynck, Interspeech 2020, arXiv:2005.07143).

Frame layers: a k=5 convolution, then three SE-Res2Blocks (k=3, dilations 2, 3, 4, scale 8) whose
inputs are the sum of every earlier layer's output; multi-layer feature aggregation (the three
block outputs concatenated, k=1 convolution to 1536 channels); attentive statistics pooling with global
context; a linear layer to the embedding. Every convolution is Conv1d -> ReLU -> BatchNorm.
"""
from typing import Optional

import torch
from torch import nn

from mser.errors import ConfigError
from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import ConvReluBn, SqueezeExcitation
from mser.models.pooling import build_pooling


class Res2Conv(nn.Module):
    """Res2Net's hierarchical convolution: `scale` channel groups, each fed the previous result."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise ConfigError(f"channels={channels} must be divisible by scale={scale}")
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(ConvReluBn(width, width, kernel_size, dilation)
                                   for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        outputs = [groups[0]]
        previous = None
        for group, conv in zip(groups[1:], self.convs):
            previous = conv(group if previous is None else group + previous, lengths)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SERes2Block(nn.Module):
    """k=1 conv -> Res2 dilated conv -> k=1 conv -> squeeze-excitation, plus the residual."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_channels: int):
        super().__init__()
        self.conv_in = ConvReluBn(channels, channels)
        self.res2 = Res2Conv(channels, kernel_size, dilation, scale)
        self.conv_out = ConvReluBn(channels, channels)
        self.se = SqueezeExcitation(channels, se_channels)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.conv_out(self.res2(self.conv_in(x, lengths), lengths), lengths)
        return x + self.se(out, lengths)


@register_model
class EcapaTdnn(SERModel):
    """ECAPA-TDNN classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: C of the paper (512 ≈ 6.2M parameters, 1024 ≈ 14.7M, with embd_dim=192 on 80-d input);
    mfa_channels: width of the aggregated frame features (1536 in the paper for both sizes).
    """

    def __init__(self, input_size: int, num_class: int, channels: int = 512, embd_dim: int = 192,
                 mfa_channels: int = 1536, scale: int = 8, se_channels: int = 128,
                 pooling_type: str = "ASP"):
        super().__init__(input_size, num_class)
        self.conv_in = ConvReluBn(input_size, channels, kernel_size=5)
        self.blocks = nn.ModuleList(SERes2Block(channels, 3, dilation, scale, se_channels)
                                    for dilation in (2, 3, 4))
        self.aggregate = ConvReluBn(3 * channels, mfa_channels)
        self.pooling = build_pooling(pooling_type, mfa_channels)
        self.pool_norm = nn.BatchNorm1d(self.pooling.out_dim)
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim)
        self.embed_norm = nn.BatchNorm1d(embd_dim)
        self.head = nn.Linear(embd_dim, num_class)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        # the paper feeds each block the sum of the outputs of all earlier frame layers
        block_input = self.conv_in(features.transpose(1, 2), lengths)
        block_outputs = []
        for block in self.blocks:
            block_outputs.append(block(block_input, lengths))
            block_input = block_input + block_outputs[-1]
        pooled = self.pooling(self.aggregate(torch.cat(block_outputs, dim=1), lengths), lengths)
        return self.embed_norm(self.embed(self.pool_norm(pooled)))

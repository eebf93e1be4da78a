"""Res2Net (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2019,
arXiv:1904.01169), over the (time, frequency) image of the features as macls uses it for audio.

Res2Net-50 (26w x 4s): a 7x7 stride-2 stem and a 3x3 stride-2 max pool, then four stages of
bottleneck blocks (3-4-6-3, expansion 4). Inside a block, a 1x1 convolution's output is split into
`scale` groups of `width` channels; every group but the last goes through a 3x3 convolution, each
after adding the previous group's result (hierarchical, growing receptive fields); the last group
passes as it is. A stage's first block carries the stride and does not cascade, and its last group
is average-pooled instead. The last stage's channels and frequency bins are flattened per frame and
pooled over time. Time and frequency shrink to ceil(size / 32), so short clips and any input size
work.
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from mser.errors import ConfigError
from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import (MaskedConv2d, ResidualBlock, fold_frequency, halved, masked_batch_norm,
                                res2_group_width, strided_lengths, zero_padding)
from mser.models.pooling import build_pooling


class Bottle2neck(ResidualBlock):
    """1x1 conv -> Res2 3x3 convs over `scale` groups -> 1x1 conv to planes * 4, plus the residual.

    first: the first block of a stage (carries `stride`; groups are not cascaded and the untouched
    last group is average-pooled to the new resolution).
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, base_width: int = 26,
                 scale: int = 4, first: bool = False):
        super().__init__()
        width = res2_group_width(planes, base_width, "Res2Net")
        out_channels = planes * self.expansion
        self.width, self.scale, self.first = width, scale, first
        self.conv_in = nn.Conv2d(in_channels, width * scale, 1, bias=False)
        self.norm_in = nn.BatchNorm2d(width * scale)
        branches = max(scale - 1, 1)
        self.convs = nn.ModuleList(MaskedConv2d(width, width, 3, stride=stride, padding=1, bias=False)
                                   for _ in range(branches))
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(branches))
        # count_include_pad (the default) makes the pool see zeros past the end, as a lone clip does
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if first and scale > 1 else None
        self.conv_out = nn.Conv2d(width * scale, out_channels, 1, bias=False)
        self.norm_out = nn.BatchNorm2d(out_channels)
        self.add_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """x: (batch, in_channels, frames, freq) -> ((batch, planes * 4, frames', freq'), lengths')."""
        out_lengths = self.convs[0].output_lengths(lengths)
        out = torch.relu(masked_batch_norm(self.norm_in, self.conv_in(x), lengths))
        groups = torch.split(out, self.width, dim=1)
        outputs = []
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            group = groups[index] if index == 0 or self.first else outputs[-1] + groups[index]
            outputs.append(torch.relu(masked_batch_norm(norm, conv(group, lengths), out_lengths)))
        if self.scale > 1:
            last = groups[-1]
            outputs.append(last if self.pool is None else self.pool(zero_padding(last, lengths, time_dim=2)))
        out = masked_batch_norm(self.norm_out, self.conv_out(torch.cat(outputs, dim=1)), out_lengths)
        return torch.relu(out + self.residual(x, out_lengths)), out_lengths


@register_model
class Res2Net(SERModel):
    """Res2Net classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: stem width and first-stage planes (doubled at each stage; blocks output 4x planes);
    layers: blocks a stage; base_width, scale: the paper's "26w x 4s". The defaults are Res2Net-50
    (the paper's 25.7M with its 1000-class ImageNet layer; 23.7M without it).
    """

    def __init__(self, input_size: int, num_class: int, channels: int = 64,
                 layers: Sequence[int] = (3, 4, 6, 3), base_width: int = 26, scale: int = 4,
                 embd_dim: int = 192, pooling_type: str = "ASP"):
        super().__init__(input_size, num_class)
        if scale < 1 or not layers or min(layers) < 1:
            raise ConfigError(f"Res2Net needs scale >= 1 and at least one block a stage, "
                              f"got scale={scale}, layers={list(layers)}")
        self.stem = MaskedConv2d(1, channels, 7, stride=2, padding=3, bias=False)
        self.stem_norm = nn.BatchNorm2d(channels)
        self.stem_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.blocks = nn.ModuleList()
        in_channels = channels
        for stage, num_blocks in enumerate(layers):
            planes = channels * 2 ** stage
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                self.blocks.append(Bottle2neck(in_channels, planes, stride, base_width, scale, first=index == 0))
                in_channels = planes * Bottle2neck.expansion
        out_freq = halved(input_size, 2 + len(layers) - 1)
        self.pooling = build_pooling(pooling_type, in_channels * out_freq)
        self.pool_norm = nn.BatchNorm1d(self.pooling.out_dim)
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim)
        self.embed_norm = nn.BatchNorm1d(embd_dim)
        self.head = nn.Linear(embd_dim, num_class)

    def stem_forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor]
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(batch, frames, input_size) -> (batch, channels, ceil(frames / 4), ceil(input_size / 4))."""
        lengths_after_conv = self.stem.output_lengths(lengths)
        x = masked_batch_norm(self.stem_norm, self.stem(features[:, None], lengths), lengths_after_conv)
        # after the ReLU, zeroed padding is never above a real value, so the max pool ignores it
        x = zero_padding(torch.relu(x), lengths_after_conv, time_dim=2)
        return self.stem_pool(x), strided_lengths(lengths_after_conv, 3, 2, 1)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        x, lengths = self.stem_forward(features, lengths)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.embed_norm(self.embed(self.pool_norm(self.pooling(fold_frequency(x), lengths))))

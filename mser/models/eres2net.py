"""ERes2Net (Chen et al., "An Enhanced Res2Net with Local and Global Feature Fusion for Speaker
Verification", Interspeech 2023, arXiv:2305.12838).

A thin 2-D Res2Net over (time, frequency) with two kinds of attentional feature fusion (AFF):
local fusion inside the blocks of the last two stages (each Res2 group is fused with the previous
group's output instead of added to it), and global fusion across stages (each stage's output is
downsampled and fused, bottom-up, with the next). The fused output of the last stage is pooled
over time. Time and frequency shrink to ceil(size / 8), so short clips and any input size work.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import (AttentionalFusion, ERes2Block, MaskedConv2d, fold_frequency, halved,
                                halved_lengths, masked_batch_norm)
from mser.models.pooling import build_pooling


@register_model
class ERes2Net(SERModel):
    """ERes2Net classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: width of the first stage (doubled at each of the four stages); layers: blocks a stage.
    The defaults give the 3D-Speaker reference size (6.6M parameters before the head, 80-d input).
    """

    def __init__(self, input_size: int, num_class: int, channels: int = 32,
                 layers: Sequence[int] = (3, 4, 6, 3), embd_dim: int = 192, pooling_type: str = "TSTP"):
        super().__init__(input_size, num_class)
        self.conv_in = MaskedConv2d(1, channels, 3, padding=1, bias=False)
        self.norm_in = nn.BatchNorm2d(channels)
        self.stages = nn.ModuleList()
        in_channels = channels
        for stage, num_blocks in enumerate(layers):
            planes = channels * 2 ** stage
            blocks = [ERes2Block(in_channels if index == 0 else planes * 2, planes,
                                 stride=2 if stage > 0 and index == 0 else 1, fuse=stage >= 2,
                                 base_width=32, scale=2, expansion=2, activation=torch.relu, model="ERes2Net")
                      for index in range(num_blocks)]
            self.stages.append(nn.ModuleList(blocks))
            in_channels = planes * 2
        # global fusion: stage k's (fused) output, downsampled, is fused with stage k+1's output
        self.downsamples = nn.ModuleList(
            MaskedConv2d(channels * 2 ** (stage + 1), channels * 2 ** (stage + 2), 3, stride=2, padding=1,
                         bias=False) for stage in range(len(layers) - 1))
        self.fusions = nn.ModuleList(AttentionalFusion(channels * 2 ** (stage + 2))
                                     for stage in range(len(layers) - 1))
        self.pooling = build_pooling(pooling_type, in_channels * halved(input_size, len(layers) - 1))
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim)
        self.head = nn.Linear(embd_dim, num_class)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        x = torch.relu(masked_batch_norm(self.norm_in, self.conv_in(features[:, None], lengths), lengths))
        for stage, blocks in enumerate(self.stages):
            input_lengths = lengths
            if stage > 0:
                lengths = halved_lengths(lengths)
            for block in blocks:
                x = block(x, lengths)
            if stage == 0:
                fused = x
            else:
                downsampled = self.downsamples[stage - 1](fused, input_lengths)
                fused = self.fusions[stage - 1](x, downsampled, lengths)
        return self.embed(self.pooling(fold_frequency(fused), lengths))

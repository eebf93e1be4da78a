"""ERes2NetV2 (Chen et al., "ERes2NetV2: Boosting Short-Duration Speaker Verification Performance
with Computational Efficiency", Interspeech 2024, arXiv:2406.02167; 3D-Speaker).

What changes over ERes2Net (mser/models/eres2net.py):
- wider: the first stage has 64 channels instead of 32 (the stages 64-128-256-512 planes), which
  helps short clips, and the Res2 groups are 26/64 of a block's planes instead of 32/64;
- the bottleneck expansion (block output = expansion * planes) is a parameter (2 by default; the
  paper's larger variant uses 4 with scale 4 and base width 24);
- pruned global fusion: only the third stage's output, downsampled, is fused (AFF) with the last
  stage's; ERes2Net fuses every pair of neighbouring stages;
- local fusion (AFF between Res2 groups) stays in the blocks of the last two stages, and the
  activations inside the blocks are ReLUs clipped at 20, as in the reference.
The fused output is pooled over time (statistics pooling) to the embedding. Time and frequency
shrink to ceil(size / 8), so short clips and any input size work.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from mser.errors import ConfigError
from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import (AttentionalFusion, ERes2Block, MaskedConv2d, fold_frequency, halved,
                                halved_lengths, masked_batch_norm)
from mser.models.pooling import build_pooling

ACTIVATION_CLIP = 20.0  # the reference's ReLU, a hardtanh(0, 20)


def clipped_relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, 0.0, ACTIVATION_CLIP)


@register_model
class ERes2NetV2(SERModel):
    """ERes2NetV2 classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: planes of the first stage (doubled at each stage); layers: blocks a stage (at least
    two stages: the last two are fused); base_width, scale, expansion: the blocks' Res2 group width
    (planes * base_width / 64), number of groups and output expansion. The defaults are the
    3D-Speaker reference (17.86M parameters before the head, 80-d input).
    """

    def __init__(self, input_size: int, num_class: int, channels: int = 64,
                 layers: Sequence[int] = (3, 4, 6, 3), base_width: int = 26, scale: int = 2,
                 expansion: int = 2, embd_dim: int = 192, pooling_type: str = "TSTP"):
        super().__init__(input_size, num_class)
        if len(layers) < 2 or min(layers) < 1 or scale < 1 or expansion < 1:
            raise ConfigError(f"ERes2NetV2 needs at least two stages of at least one block, scale >= 1 "
                              f"and expansion >= 1, got layers={list(layers)}, scale={scale}, "
                              f"expansion={expansion}")
        self.conv_in = MaskedConv2d(1, channels, 3, padding=1, bias=False)
        self.norm_in = nn.BatchNorm2d(channels)
        self.stages = nn.ModuleList()
        in_channels = channels
        for stage, num_blocks in enumerate(layers):
            planes = channels * 2 ** stage
            blocks = [ERes2Block(in_channels if index == 0 else planes * expansion, planes,
                                 stride=2 if stage > 0 and index == 0 else 1, fuse=stage >= len(layers) - 2,
                                 base_width=base_width, scale=scale, expansion=expansion,
                                 activation=clipped_relu, model="ERes2NetV2")
                      for index in range(num_blocks)]
            self.stages.append(nn.ModuleList(blocks))
            stage_channels, in_channels = in_channels, planes * expansion
        # global fusion, pruned to the last two stages: the one before, downsampled, meets the last
        self.downsample = MaskedConv2d(stage_channels, in_channels, 3, stride=2, padding=1, bias=False)
        self.fusion = AttentionalFusion(in_channels)
        self.pooling = build_pooling(pooling_type, in_channels * halved(input_size, len(layers) - 1))
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim)
        self.head = nn.Linear(embd_dim, num_class)

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        x = torch.relu(masked_batch_norm(self.norm_in, self.conv_in(features[:, None], lengths), lengths))
        for stage, blocks in enumerate(self.stages):
            if stage == len(self.stages) - 1:
                before_last, before_last_lengths = x, lengths
            if stage > 0:
                lengths = halved_lengths(lengths)
            for block in blocks:
                x = block(x, lengths)
        fused = self.fusion(x, self.downsample(before_last, before_last_lengths), lengths)
        return self.embed(self.pooling(fold_frequency(fused), lengths))

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
from mser.models.base import MaskedConv2d, SERModel, masked_batch_norm
from mser.models.campplus import halved
from mser.models.pooling import build_pooling


class AttentionalFusion(nn.Module):
    """AFF: out = x * (1 + tanh(a)) + y * (1 - tanh(a)), `a` from both inputs by 1x1 convolutions.

    x, y: (batch, channels, frames, freq) of the same shape.
    """

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


class ERes2Block(nn.Module):
    """1x1 conv (carrying the stride) -> Res2 3x3 convs over `scale` groups -> 1x1 conv, plus the
    residual. With `fuse`, groups are combined by AFF (local feature fusion) rather than added.
    Output channels: 2 * planes."""

    expansion = 2

    def __init__(self, in_channels: int, planes: int, stride: int, fuse: bool, base_width: int = 32,
                 scale: int = 2):
        super().__init__()
        width = planes * base_width // 64
        out_channels = planes * self.expansion
        self.width = width
        self.conv_in = nn.Conv2d(in_channels, width * scale, 1, stride=stride, bias=False)
        self.norm_in = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(MaskedConv2d(width, width, 3, padding=1, bias=False) for _ in range(scale))
        self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        self.fusions = nn.ModuleList(AttentionalFusion(width) for _ in range(scale - 1)) if fuse else None
        self.conv_out = nn.Conv2d(width * scale, out_channels, 1, bias=False)
        self.norm_out = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.shortcut_norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (batch, in_channels, frames, freq); lengths are those of the output (after the stride)."""
        out = torch.relu(masked_batch_norm(self.norm_in, self.conv_in(x), lengths))
        groups = torch.split(out, self.width, dim=1)
        outputs = []
        for index, (group, conv, norm) in enumerate(zip(groups, self.convs, self.norms)):
            if index > 0:
                previous = outputs[-1]
                group = previous + group if self.fusions is None else self.fusions[index - 1](previous, group, lengths)
            outputs.append(torch.relu(masked_batch_norm(norm, conv(group, lengths), lengths)))
        out = masked_batch_norm(self.norm_out, self.conv_out(torch.cat(outputs, dim=1)), lengths)
        if self.shortcut is not None:
            x = masked_batch_norm(self.shortcut_norm, self.shortcut(x), lengths)
        return torch.relu(out + x)


def halved_lengths(lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Lengths after a stride-2 layer with 'same' padding: ceil(length / 2)."""
    return None if lengths is None else torch.div(lengths + 1, 2, rounding_mode="floor")


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
                                 stride=2 if stage > 0 and index == 0 else 1, fuse=stage >= 2)
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
        batch, channels, frames, freq = fused.shape
        fused = fused.permute(0, 1, 3, 2).reshape(batch, channels * freq, frames)
        return self.embed(self.pooling(fused, lengths))

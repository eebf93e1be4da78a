"""PANNs CNN6 / CNN10 / CNN14 (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks
for Audio Pattern Recognition", IEEE/ACM TASLP 2020, arXiv:1912.10211).

The network takes log-mel frames, normalises each frequency bin (bn0), and runs VGG-like
convolution blocks each followed by 2x2 average pooling; the frequency axis is then averaged and
time is pooled by max + mean, followed by a fully connected embedding layer. The spectrogram
front-end and AudioSet's 527-way sigmoid output are left out: features come from the featurizer,
and the head gives `num_class` logits.

Time is pooled in floor mode (a clip padded in a batch keeps its own frames); frequency in ceil
mode, so odd or small feature sizes never shrink to zero bins.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import MaskedConv2d, masked_batch_norm, zero_padding
from mser.models.pooling import masked_max, masked_mean


class ConvBlock(nn.Module):
    """`num_convs` (conv k x k -> BN -> ReLU), then average pooling by `pool` along time and freq.

    x: (batch, in_channels, frames, freq) -> (batch, out_channels, frames // pool, ceil(freq / pool)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_convs: int, pool: int):
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size,
                         padding=kernel_size // 2, bias=False) for i in range(num_convs))
        self.norms = nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in range(num_convs))
        self.pool = pool

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """Returns the pooled tensor and the clips' lengths after pooling."""
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(masked_batch_norm(norm, conv(x, lengths), lengths))
        if self.pool == 1:
            return x, lengths
        x = nn.functional.avg_pool2d(x, (self.pool, 1))
        x = nn.functional.avg_pool2d(x, (1, self.pool), ceil_mode=True)
        return x, None if lengths is None else torch.div(lengths, self.pool, rounding_mode="floor")


class PANNs(SERModel):
    """Shared body of the three PANNs CNNs. features (batch, frames, input_size) -> (batch, num_class)."""

    def __init__(self, input_size: int, num_class: int, widths: Sequence[int], kernel_size: int,
                 num_convs: int, pools: Sequence[int], embd_dim: int, dropout: float):
        super().__init__(input_size, num_class)
        self.min_frames = 1
        for pool in pools:
            self.min_frames *= pool
        self.input_norm = nn.BatchNorm1d(input_size)
        self.blocks = nn.ModuleList()
        in_channels = 1
        for width, pool in zip(widths, pools):
            self.blocks.append(ConvBlock(in_channels, width, kernel_size, num_convs, pool))
            in_channels = width
        self.block_dropout = nn.Dropout(dropout)
        self.embed_dropout = nn.Dropout(0.5)
        self.embed = nn.Linear(in_channels, embd_dim)
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(embd_dim, num_class))

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        x = masked_batch_norm(self.input_norm, features.transpose(1, 2), lengths).transpose(1, 2)[:, None]
        x = zero_padding(x, lengths, time_dim=2)  # bn0's shift would otherwise reach the padding
        for block in self.blocks:
            x, lengths = block(x, lengths)
            x = self.block_dropout(x)
        x = x.mean(dim=3)
        pooled = masked_max(x, lengths) + masked_mean(x, lengths)
        return torch.relu(self.embed(self.embed_dropout(pooled)))


def scaled(channels: int, count: int):
    """Block widths channels, 2*channels, 4*channels, ... (`count` of them)."""
    return [channels * 2 ** i for i in range(count)]


@register_model
class PANNS_CNN6(PANNs):
    """PANNs CNN6: four blocks of one 5x5 convolution (64..512 channels). ≈4.8M parameters with
    527 classes. Needs at least 16 frames."""

    def __init__(self, input_size: int, num_class: int, channels: int = 64, embd_dim: int = 512,
                 dropout: float = 0.2):
        super().__init__(input_size, num_class, scaled(channels, 4), kernel_size=5, num_convs=1,
                         pools=(2, 2, 2, 2), embd_dim=embd_dim, dropout=dropout)


@register_model
class PANNS_CNN10(PANNs):
    """PANNs CNN10: four blocks of two 3x3 convolutions (64..512 channels). ≈5.2M parameters with
    527 classes. Needs at least 16 frames."""

    def __init__(self, input_size: int, num_class: int, channels: int = 64, embd_dim: int = 512,
                 dropout: float = 0.2):
        super().__init__(input_size, num_class, scaled(channels, 4), kernel_size=3, num_convs=2,
                         pools=(2, 2, 2, 2), embd_dim=embd_dim, dropout=dropout)


@register_model
class PANNS_CNN14(PANNs):
    """PANNs CNN14: six blocks of two 3x3 convolutions (64..2048 channels), the last unpooled.
    ≈80.8M parameters with 527 classes. Needs at least 32 frames."""

    def __init__(self, input_size: int, num_class: int, channels: int = 64, embd_dim: int = 2048,
                 dropout: float = 0.2):
        super().__init__(input_size, num_class, scaled(channels, 6), kernel_size=3, num_convs=2,
                         pools=(2, 2, 2, 2, 2, 1), embd_dim=embd_dim, dropout=dropout)

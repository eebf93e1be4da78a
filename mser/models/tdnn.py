"""TDNN x-vector network (Snyder et al., "X-vectors: robust DNN embeddings for speaker
recognition", ICASSP 2018).

Five frame layers (contexts [t-2, t+2], {t-2, t, t+2}, {t-3, t, t+3}, {t}, {t}) with ReLU and
BatchNorm, statistics pooling over real frames, and two segment layers; the first of them is the
embedding.
"""
from typing import Optional

import torch
from torch import nn

from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import ConvReluBn
from mser.models.pooling import build_pooling


@register_model
class TDNN(SERModel):
    """x-vector TDNN classifier. features (batch, frames, input_size) -> logits (batch, num_class).

    channels: width of frame layers 1-4; stats_channels: width of frame layer 5 (1500 in the paper).
    """

    def __init__(self, input_size: int, num_class: int, channels: int = 512, stats_channels: int = 1500,
                 embd_dim: int = 512, pooling_type: str = "TSTP"):
        super().__init__(input_size, num_class)
        self.frame_layers = nn.ModuleList([
            ConvReluBn(input_size, channels, kernel_size=5, dilation=1),
            ConvReluBn(channels, channels, kernel_size=3, dilation=2),
            ConvReluBn(channels, channels, kernel_size=3, dilation=3),
            ConvReluBn(channels, channels, kernel_size=1),
            ConvReluBn(channels, stats_channels, kernel_size=1)])
        self.pooling = build_pooling(pooling_type, stats_channels)
        self.embed = nn.Linear(self.pooling.out_dim, embd_dim)
        # segment6's ReLU and BatchNorm, segment7, then the output layer
        self.head = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embd_dim), nn.Linear(embd_dim, embd_dim),
                                  nn.ReLU(), nn.BatchNorm1d(embd_dim), nn.Linear(embd_dim, num_class))

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim), the x-vector (segment6's affine output)."""
        x = features.transpose(1, 2)
        for layer in self.frame_layers:
            x = layer(x, lengths)
        return self.embed(self.pooling(x, lengths))

"""Bidirectional LSTM over frames, then length-aware pooling.

The recurrent layers run on packed sequences when lengths are given, so the backward direction
starts at each clip's own last frame and padding never reaches a clip's states. A clip-level
feature vector (CustomFeatures) is a one-frame sequence: (batch, 1, feature_dim).
"""
from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mser.models import register_model
from mser.models.base import SERModel
from mser.models.layers import masked_batch_norm
from mser.models.pooling import build_pooling


@register_model
class BiLSTM(SERModel):
    """Input batch norm -> linear projection -> BiLSTM -> pooling -> embedding -> head.

    The input batch norm standardises each feature channel with statistics of the training data
    (real frames only): raw log-mel values of -15..15 saturate the LSTM's gates, and a per-clip
    normalisation would remove the clip's level, which carries emotion.

    features (batch, frames, input_size) -> logits (batch, num_class).
    """

    def __init__(self, input_size: int, num_class: int, hidden_size: int = 256, num_layers: int = 2,
                 embd_dim: int = 256, dropout: float = 0.1, pooling_type: str = "SAP", input_norm: bool = True):
        super().__init__(input_size, num_class)
        self.input_norm = nn.BatchNorm1d(input_size) if input_norm else None
        self.project = nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Dropout(dropout))
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        self.pooling = build_pooling(pooling_type, 2 * hidden_size)
        self.embed = nn.Sequential(nn.Linear(self.pooling.out_dim, embd_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embd_dim, num_class))

    def recurrent(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (batch, frames, hidden_size) -> (batch, frames, 2 * hidden_size), zeros past lengths."""
        if lengths is None:
            return self.lstm(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features: (batch, frames, input_size) -> (batch, embd_dim)."""
        if self.input_norm is not None:
            features = masked_batch_norm(self.input_norm, features.transpose(1, 2), lengths).transpose(1, 2)
        states = self.recurrent(self.project(features), lengths)
        return self.embed(self.pooling(states.transpose(1, 2), lengths))

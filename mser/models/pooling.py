"""Pooling over time, all aware of each clip's length: padded frames never count.

Every layer: forward(x: (batch, channels, frames), lengths: (batch,) or None) -> (batch, out_dim).
  TAP   temporal average pooling                                    out_dim = channels
  TSTP  temporal statistics pooling: mean and standard deviation    out_dim = 2 * channels
  SAP   self-attentive pooling (Cai et al. 2018): one weight a frame out_dim = channels
  ASP   attentive statistics pooling (Okabe et al. 2018), channel-wise attention with the
        global context of ECAPA-TDNN (Desplanques et al. 2020)      out_dim = 2 * channels
"""
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from mser.models.layers import frame_mask, masked_batch_norm
from mser.registry import Registry

VARIANCE_FLOOR = 1e-6  # keeps sqrt differentiable for constant or one-frame clips


def time_mask(x: torch.Tensor, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(batch, 1, frames) bool mask for x: (batch, channels, frames); None when lengths is None."""
    mask = frame_mask(lengths, x.shape[-1])
    return None if mask is None else mask[:, None, :]


def masked_mean(x: torch.Tensor, lengths: Optional[torch.Tensor], keepdim: bool = False) -> torch.Tensor:
    """Mean over real frames. x: (batch, channels, frames) -> (batch, channels[, 1])."""
    mask = time_mask(x, lengths)
    if mask is None:
        return x.mean(dim=-1, keepdim=keepdim)
    total = x.masked_fill(~mask, 0.0).sum(dim=-1, keepdim=keepdim)
    count = mask.sum(dim=-1, keepdim=keepdim).clamp(min=1)
    return total / count.to(x.dtype)


def masked_mean_std(x: torch.Tensor, lengths: Optional[torch.Tensor],
                    keepdim: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) standard deviation over real frames, each (batch, channels[, 1])."""
    mean = masked_mean(x, lengths, keepdim=True)
    variance = masked_mean((x - mean) ** 2, lengths, keepdim=True)
    std = variance.clamp(min=VARIANCE_FLOOR).sqrt()
    if not keepdim:
        return mean.squeeze(-1), std.squeeze(-1)
    return mean, std


def masked_max(x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """Maximum over real frames. x: (batch, channels, frames) -> (batch, channels)."""
    mask = time_mask(x, lengths)
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))
    return x.amax(dim=-1)


def masked_softmax(scores: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
    """Softmax over frames with padded frames at weight 0. scores: (batch, channels, frames)."""
    mask = time_mask(scores, lengths)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


class TAP(nn.Module):
    """Temporal average pooling: (batch, channels, frames) -> (batch, channels)."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return masked_mean(x, lengths)


class TSTP(nn.Module):
    """Temporal statistics pooling: (batch, channels, frames) -> (batch, 2 * channels) [mean; std]."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = 2 * in_dim

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.cat(masked_mean_std(x, lengths), dim=1)


class SAP(nn.Module):
    """Self-attentive pooling: a scalar weight per frame, softmax over real frames, weighted mean.

    (batch, channels, frames) -> (batch, channels)
    """

    def __init__(self, in_dim: int, attention_dim: int = 128):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(in_dim, attention_dim, kernel_size=1), nn.Tanh(),
                                       nn.Conv1d(attention_dim, 1, kernel_size=1))
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        weights = masked_softmax(self.attention(x), lengths)
        return (x * weights).sum(dim=-1)


class ASP(nn.Module):
    """Attentive statistics pooling with channel-wise attention.

    With `global_context`, the attention also sees the clip's (masked) mean and std, as in
    ECAPA-TDNN. (batch, channels, frames) -> (batch, 2 * channels) [weighted mean; weighted std].
    """

    def __init__(self, in_dim: int, attention_dim: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        context_dim = 3 * in_dim if global_context else in_dim
        self.attention_in = nn.Conv1d(context_dim, attention_dim, kernel_size=1)
        self.attention_norm = nn.BatchNorm1d(attention_dim)
        self.attention_out = nn.Conv1d(attention_dim, in_dim, kernel_size=1)
        self.out_dim = 2 * in_dim

    def attention_input(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """attention_in applied to x, with the global context [x; mean; std] (batch, 3 * channels,
        frames) when global_context is on."""
        if not self.global_context:
            return self.attention_in(x)
        # W [x; mean; std] = W_x x + (W_mean mean + W_std std): the statistics are the same in every
        # frame, so they go through the layer once per clip instead of once per frame (the
        # concatenated form spent 14 % of an EcapaTdnn (C=512) training step in this one layer)
        mean, std = masked_mean_std(x, lengths)
        weight = self.attention_in.weight.squeeze(-1)
        frame_weight, statistics_weight = weight[:, :x.shape[1]], weight[:, x.shape[1]:]
        per_clip = F.linear(torch.cat([mean, std], dim=1), statistics_weight, self.attention_in.bias)
        return F.conv1d(x, frame_weight.unsqueeze(-1)) + per_clip.unsqueeze(-1)

    def scores(self, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (batch, channels, frames) -> attention logits (batch, channels, frames)."""
        hidden = torch.relu(self.attention_input(x, lengths))
        return self.attention_out(torch.tanh(masked_batch_norm(self.attention_norm, hidden, lengths)))

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        weights = masked_softmax(self.scores(x, lengths), lengths)
        mean = (x * weights).sum(dim=-1, keepdim=True)
        variance = (weights * (x - mean) ** 2).sum(dim=-1)
        std = variance.clamp(min=VARIANCE_FLOOR).sqrt()
        return torch.cat([mean.squeeze(-1), std], dim=1)


POOLINGS = Registry("pooling_type")
for _pooling in (TAP, TSTP, SAP, ASP):
    POOLINGS.register(_pooling)


def build_pooling(pooling_type: str, in_dim: int) -> nn.Module:
    """A pooling layer by name ('TAP', 'TSTP', 'SAP', 'ASP'); its width is `.out_dim`."""
    return POOLINGS.get(pooling_type)(in_dim)

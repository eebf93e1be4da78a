"""Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) for `train_conf.mixup_alpha`.

Each training batch is blended with a shuffled copy of itself: features become
w * x + (1 - w) * x[partner], the loss w * loss(y) + (1 - w) * loss(y[partner]), with one weight w
per batch drawn from Beta(alpha, alpha). The features are mixed after speaker normalisation, so two
clips of different speakers meet on the same scale. w is folded into [0.5, 1]: each mixed clip is
mostly its own clip, and the training accuracy counts its own label.

Frame-level features of different lengths are mixed over the padded batch; the mixed clip is as
long as the longer of the two.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from mser.errors import ConfigError


@dataclass
class Mix:
    """How a batch was mixed: each clip i took (1 - weight) of clip partner[i]."""
    weight: float
    partner: torch.Tensor


def check_mixup_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < float("inf"):
        raise ConfigError(f"train_conf.mixup_alpha must be a number >= 0 (0: no mixup), got {alpha!r}")
    return float(alpha)


class Mixup:
    """Blends batches as above; `alpha` > 0 (0.2-0.4 is usual: most weights close to 1)."""

    def __init__(self, alpha: float):
        self.beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))

    def __call__(self, features: torch.Tensor,
                 frame_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Optional[Mix]]:
        """features (batch, frames, dim), frame_lengths (batch,) -> mixed features, their lengths, the Mix."""
        if features.shape[0] < 2:
            return features, frame_lengths, None
        weight = float(self.beta.sample())
        weight = max(weight, 1.0 - weight)
        partner = torch.randperm(features.shape[0]).to(features.device)
        mixed = weight * features + (1.0 - weight) * features[partner]
        return mixed, torch.maximum(frame_lengths, frame_lengths[partner]), Mix(weight, partner)


def build_mixup(alpha) -> Optional[Mixup]:
    """A Mixup for `train_conf.mixup_alpha`, or None when it is 0 (off)."""
    alpha = check_mixup_alpha(alpha)
    return Mixup(alpha) if alpha > 0 else None

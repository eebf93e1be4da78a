"""Loss registry: `build_loss(name, **loss_args)` for `train_conf.loss` and `train_conf.loss_args`.

  CrossEntropy  softmax cross entropy with optional class weights and label smoothing
  FocalLoss     focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) for
                several classes: each class's log-probability term is scaled by (1 - p)^gamma, so
                examples the model already gets right count less; gamma=0 is cross entropy.

Every loss: forward(logits: (batch, num_class), targets: (batch,) class indices) -> scalar mean.
Class weights are a list with one positive number per class (`weight`; `alpha` in the focal-loss
paper). With weights, the mean is taken as PyTorch's cross entropy takes it: the weighted sum
divided by the sum of the targets' weights.
"""
from typing import Optional, Sequence, Union

import torch
from torch import nn

from mser.errors import ConfigError
from mser.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register

Weights = Optional[Union[Sequence[float], torch.Tensor]]


def weight_tensor(weight: Weights, name: str) -> Optional[torch.Tensor]:
    """Class weights as a 1-D float tensor, or None; a ConfigError unless all are positive and finite."""
    if weight is None:
        return None
    try:
        tensor = torch.as_tensor(weight, dtype=torch.float32).detach().clone().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{name}: class weights must be a list of numbers, got {weight!r}") from None
    if tensor.dim() != 1 or len(tensor) == 0 or not torch.isfinite(tensor).all() or (tensor <= 0).any():
        raise ConfigError(f"{name}: class weights must be a non-empty list of positive numbers, "
                          f"got {tensor.tolist()}")
    return tensor


def check_label_smoothing(label_smoothing: float, name: str) -> float:
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"{name}: label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    return float(label_smoothing)


class WeightedLoss(nn.Module):
    """Holds the class weights as a buffer, so `.to(device)` moves them with the loss."""

    def __init__(self, weight: Weights, label_smoothing: float):
        super().__init__()
        name = type(self).__name__
        self.label_smoothing = check_label_smoothing(label_smoothing, name)
        self.register_buffer("weight", weight_tensor(weight, name), persistent=False)

    def check_targets(self, logits: torch.Tensor) -> None:
        if self.weight is not None and logits.shape[-1] != len(self.weight):
            raise ConfigError(f"{type(self).__name__}: {len(self.weight)} class weights for "
                              f"{logits.shape[-1]} classes; give one weight per class")


@register_loss
class CrossEntropy(WeightedLoss):
    """Cross entropy (torch.nn.functional.cross_entropy). weight: one per class; label_smoothing:
    the share of the target spread evenly over all classes."""

    def __init__(self, weight: Weights = None, label_smoothing: float = 0.0):
        super().__init__(weight, label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits: (batch, num_class); targets: (batch,) -> scalar."""
        self.check_targets(logits)
        return nn.functional.cross_entropy(logits.float(), targets, weight=self.weight,
                                           label_smoothing=self.label_smoothing)


@register_loss
class FocalLoss(WeightedLoss):
    """Focal loss for several classes.

    For one example with target distribution q (one-hot, or smoothed: (1 - s) one-hot + s / C),
    class probabilities p and class weights w:
        loss = -sum_c w_c * q_c * (1 - p_c)^gamma * log p_c
    and the batch loss is the sum over examples divided by the sum of w[target]. With one-hot
    targets this is Lin et al.'s -alpha_t (1 - p_t)^gamma log p_t; with gamma=0 it is exactly
    `CrossEntropy` with the same weight and label_smoothing.
    gamma: focusing parameter (>= 0; 2 in the paper); weight or alpha: class weights (one name only).
    """

    def __init__(self, gamma: float = 2.0, weight: Weights = None, alpha: Weights = None,
                 label_smoothing: float = 0.0):
        if weight is not None and alpha is not None:
            raise ConfigError("FocalLoss: give class weights as either weight or alpha, not both")
        super().__init__(weight if alpha is None else alpha, label_smoothing)
        if not isinstance(gamma, (int, float)) or not 0.0 <= gamma < float("inf"):
            raise ConfigError(f"FocalLoss: gamma must be a number >= 0, got {gamma!r}")
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits: (batch, num_class); targets: (batch,) -> scalar."""
        self.check_targets(logits)
        num_class = logits.shape[-1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        target_dist = nn.functional.one_hot(targets, num_class).to(log_probs.dtype)
        if self.label_smoothing:
            target_dist = target_dist * (1.0 - self.label_smoothing) + self.label_smoothing / num_class
        per_class = target_dist * log_probs
        if self.gamma:
            per_class = per_class * self.modulation(log_probs)
        class_weights = torch.ones(num_class, device=logits.device) if self.weight is None else self.weight
        per_example = -(class_weights * per_class).sum(dim=-1)
        return per_example.sum() / class_weights[targets].sum()

    def modulation(self, log_probs: torch.Tensor) -> torch.Tensor:
        """(1 - p)^gamma from log p: -expm1(log p) keeps 1 - p accurate when p is close to 1, and
        the floor keeps the gradient finite where p rounds to 1 (gamma < 1 would divide by zero)."""
        return (-torch.expm1(log_probs)).clamp(min=torch.finfo(log_probs.dtype).tiny) ** self.gamma


def build_loss(name: str, num_class: Optional[int] = None, **loss_args) -> nn.Module:
    """A registered loss by name ('CrossEntropy', 'FocalLoss') with its arguments; an unknown
    name or argument, or a bad value, is a one-line ConfigError. With `num_class`, the number of
    class weights is checked against it here rather than at the first batch."""
    loss = LOSSES.build(name, **loss_args)
    weight = getattr(loss, "weight", None)
    if num_class is not None and weight is not None and len(weight) != num_class:
        raise ConfigError(f"{name}: {len(weight)} class weights for {num_class} classes; "
                          f"give one weight per class")
    return loss


def list_losses():
    return LOSSES.names()


__all__ = ["build_loss", "list_losses", "register_loss", "CrossEntropy", "FocalLoss"]

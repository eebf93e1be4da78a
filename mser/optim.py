"""Optimizers and learning-rate schedules named in `optimizer_conf`."""
import inspect
import math
from typing import Any, Dict, Optional

import torch
from torch import nn

from mser.registry import Registry, check_kwargs

OPTIMIZERS = Registry("optimizer")
for _optimizer in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
    OPTIMIZERS.register(_optimizer)
SCHEDULERS = Registry("scheduler")


def build_optimizer(parameters, optimizer_conf: Dict[str, Any]) -> torch.optim.Optimizer:
    name = optimizer_conf["optimizer"]
    optimizer = OPTIMIZERS.get(name)
    args = dict(optimizer_conf["optimizer_args"])
    check_kwargs(optimizer, args, f"optimizer_conf.optimizer_args of {name}")
    if "fused" not in args and "foreach" in inspect.signature(optimizer).parameters:
        # torch updates parameters one tensor at a time on the CPU unless asked; the same arithmetic
        # over all tensors at once is about twice as fast (the optimizer step of a small model is
        # a fifth of its training step)
        args.setdefault("foreach", True)
    return optimizer(parameters, **args)


def build_scheduler(optimizer: torch.optim.Optimizer, optimizer_conf: Dict[str, Any],
                    steps_per_epoch: int, max_epoch: int):
    """Returns (scheduler or None, when it steps: 'step', 'epoch' or 'metric')."""
    name = optimizer_conf["scheduler"]
    if name in (None, "", "none", "None"):
        return None, "step"
    return SCHEDULERS.build(name, optimizer=optimizer, steps_per_epoch=steps_per_epoch,
                            max_epoch=max_epoch, **optimizer_conf["scheduler_args"])


@SCHEDULERS.register(name="WarmupCosine")
def warmup_cosine(optimizer, steps_per_epoch: int, max_epoch: int, warmup_steps: Optional[int] = None,
                  warmup_epochs: float = 1.0, min_lr: float = 1e-5):
    """Linear warm-up then cosine decay to `min_lr`, stepped every optimizer step.

    Small corpora give few steps per epoch, so the warm-up is counted in steps
    (`warmup_steps`, or `warmup_epochs` worth of steps)."""
    total = max(1, steps_per_epoch * max_epoch)
    warmup = int(warmup_steps if warmup_steps is not None else round(warmup_epochs * steps_per_epoch))
    warmup = min(max(warmup, 0), total - 1)
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    def factor_for(base_lr):
        floor = min(min_lr / base_lr, 1.0) if base_lr > 0 else 0.0

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor_for(lr) for lr in base_lrs]), "step"


@SCHEDULERS.register(name="StepLR")
def step_lr(optimizer, steps_per_epoch: int, max_epoch: int, step_size: int = 10, gamma: float = 0.1):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), "epoch"


@SCHEDULERS.register(name="ReduceLROnPlateau")
def plateau(optimizer, steps_per_epoch: int, max_epoch: int, factor: float = 0.5, patience: int = 3,
            min_lr: float = 1e-6):
    """Halve the learning rate when the validation score stops improving."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=factor,
                                                      patience=patience, min_lr=min_lr), "metric"


def class_weights(labels, num_class: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1, for imbalanced corpora."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_class).float()
    weights = counts.sum() / (num_class * counts.clamp(min=1))
    return weights / weights.mean()


def trainable_parameters(module: nn.Module):
    return [p for p in module.parameters() if p.requires_grad]

"""Agreement between a clip and its augmented copies (`train_conf.copy_consistency`).

With cached augmented copies (`dataset_conf.feature_cache.augmented_copies`), every training clip
has N copies: the same words and emotion heard through other talkers and channels. Cross-entropy
asks each of them to name the emotion; it does not ask them to be equally sure, so a clip can sit
just on one side of a decision boundary and its telephone copy just on the other -- the answer
flips when the channel changes. Here each clip and its copies are served in the same batch
(`CopyGroupSampler`) and the loss adds, with weight w, the Jensen-Shannon divergence of their
predicted class distributions (as AugMix does for images: Hendrycks et al., ICLR 2020).
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch.utils.data import Sampler

from mser.data.augmented_copies import source_path
from mser.data.lists import ListItem
from mser.errors import ConfigError


class CopyGroupSampler(Sampler[int]):
    """The training indices of an epoch, each clip followed by its copies; the groups in a random
    order fixed by (seed, epoch). Cut into batches, a group at a batch's end may be split (its
    members are then not compared). With several processes, each takes a contiguous share of the
    order (whole groups stay on one process), padded from the start as DistributedSampler pads, so
    every process runs as many batches as with DistributedSampler (the schedule's count)."""

    def __init__(self, items: Sequence[ListItem], seed: int, num_replicas: int = 1, rank: int = 0):
        groups: Dict[str, List[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(source_path(item.path), []).append(index)
        self.groups = list(groups.values())
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0
        self.per_rank = math.ceil(len(items) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.groups), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        indices = [index for group in order.tolist() for index in self.groups[group]]
        total = self.per_rank * self.num_replicas
        while len(indices) < total:  # pad as DistributedSampler does
            indices += indices[:total - len(indices)]
        return iter(indices[self.rank * self.per_rank:(self.rank + 1) * self.per_rank])

    def __len__(self) -> int:
        return self.per_rank


class CopyConsistency:
    """The weighted Jensen-Shannon divergence of the predictions of each clip and its copies in a batch."""

    def __init__(self, weight: float):
        self.weight = weight

    def loss(self, logits: torch.Tensor, paths: Sequence[str]) -> torch.Tensor:
        """logits (batch, num_class) of the clips at `paths` -> weight x the mean over the batch's
        groups of two or more (a clip and its copies) of their Jensen-Shannon divergence; 0 without."""
        groups = group_ids(paths, logits.device)
        sizes = torch.bincount(groups)
        compared = sizes[groups] >= 2
        if not bool(compared.any()):
            return logits.sum() * 0.0   # keeps the graph (DDP expects every step to reach the same parameters)
        probabilities = torch.softmax(logits.float(), dim=1)
        means = torch.zeros(len(sizes), logits.shape[1], device=logits.device).index_add_(0, groups, probabilities)
        means = means / sizes.clamp(min=1).unsqueeze(1)
        mixture = means[groups].clamp(min=1e-7)
        # KL(p_i || m): each clip's divergence from its group's mean prediction
        divergence = (probabilities * (probabilities.clamp(min=1e-7).log() - mixture.log())).sum(dim=1)
        per_group = torch.zeros(len(sizes), device=logits.device).index_add_(0, groups, divergence) / sizes.clamp(min=1)
        return self.weight * per_group[sizes >= 2].mean()


def group_ids(paths: Sequence[str], device) -> torch.Tensor:
    """(batch,) the index of each clip's source clip among the batch's source clips."""
    ids: Dict[str, int] = {}
    return torch.tensor([ids.setdefault(source_path(path), len(ids)) for path in paths], dtype=torch.long,
                        device=device)


def build_copy_consistency(config) -> Optional[CopyConsistency]:
    """A CopyConsistency for `train_conf.copy_consistency`, or None when it is 0 (off). Refused in
    one line without augmented copies (nothing to compare) and with mixup (which blends clips)."""
    weight = config["train_conf"].get("copy_consistency", 0.0)   # configs saved before the option lack it
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight < float("inf"):
        raise ConfigError(f"train_conf.copy_consistency must be a number >= 0 (0: off), got {weight!r}")
    if weight == 0:
        return None
    if not config["dataset_conf"]["feature_cache"].get("augmented_copies"):
        raise ConfigError("train_conf.copy_consistency compares each clip with its augmented copies: set "
                          "dataset_conf.feature_cache.augmented_copies (1 or more) and --data_augment_configs")
    if config["train_conf"]["mixup_alpha"]:
        raise ConfigError("train_conf.copy_consistency and train_conf.mixup_alpha cannot be used together: "
                          "mixup blends each clip with another, so a clip's prediction is no longer its own")
    return CopyConsistency(float(weight))

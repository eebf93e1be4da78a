"""Agreement between a clip and its augmented copies (`train_conf.copy_consistency`).

With cached augmented copies (`dataset_conf.feature_cache.augmented_copies`), every training clip
has N copies: the same words and emotion heard through other talkers and channels. Cross-entropy
asks each of them to name the emotion; it does not ask them to be equally sure, so a clip can sit
just on one side of a decision boundary and its telephone copy just on the other -- the answer
flips when the channel changes. Here every training item is served with one of its copies beside it
in the batch (`CopyPairs`), and the loss adds, with weight w, the Jensen-Shannon divergence of the
predicted class distributions of each clip and its copies (AugMix does this for images: Hendrycks
et al., ICLR 2020). A batch of B items then trains on up to 2B clips: the partners count in the
cross-entropy, the epoch's loss and accuracy too.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mser.data.augmented_copies import source_path
from mser.data.dataset import Batch, Sample, collate
from mser.errors import ConfigError

PARTNER_STREAM = 7   # the partner's draw, apart from the item's own (seed, epoch, index) stream


class CopyPairs(Dataset):
    """Training items served in pairs: each item with one other member of its group (a clip and
    its copies), drawn anew for every (seed, epoch, index), so a resumed run draws the same. Batched
    by `collate_pairs`, a batch of B items holds them and then their B partners: every batch still
    has B items in a random order (DistributedSampler works on it unchanged), and each of them meets
    one of its copies."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        groups: Dict[str, List[int]] = {}
        for index, item in enumerate(dataset.items):
            groups.setdefault(source_path(item.path), []).append(index)
        self.others = [[other for other in groups[source_path(item.path)] if other != index]
                       for index, item in enumerate(dataset.items)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[Sample, Optional[Sample]]:
        others = self.others[index]
        if not others:
            return self.dataset[index], None
        draw = np.random.default_rng([self.seed, self.epoch, index, PARTNER_STREAM])
        return self.dataset[index], self.dataset[others[int(draw.integers(len(others)))]]


def collate_pairs(pairs: Sequence[Tuple[Sample, Optional[Sample]]]) -> Batch:
    """The items, then their usable partners, as one batch (an unusable partner is left out here;
    it is counted when it comes up as an item of its own)."""
    partners = [partner for _, partner in pairs if partner is not None and partner.inputs is not None]
    return collate([item for item, _ in pairs] + partners)


class CopyConsistency:
    """The weighted Jensen-Shannon divergence of the predictions of each clip and its copies in a batch."""

    def __init__(self, weight: float):
        self.weight = weight

    def loss(self, logits: torch.Tensor, paths: Sequence[str]) -> torch.Tensor:
        """logits (batch, num_class) of the clips at `paths` -> weight x the mean over the batch's
        groups of two or more (a clip and its copies) of their Jensen-Shannon divergence; 0 without."""
        groups = group_ids(paths, logits.device)
        sizes = torch.bincount(groups)
        if not bool((sizes >= 2).any()):
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

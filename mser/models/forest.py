"""Tree ensembles over clip-level features: scikit-learn's ExtraTrees and RandomForest.

They are fitted once on all training features (`fit`) rather than trained by gradient steps: the
trainer runs one pass over the training clips (augmented copies and speaker normalisation
included) and hands their features to scikit-learn. The fitted trees are then held as tensors
(which feature and threshold each node tests, its two children, each leaf's class shares), so
that checkpoints (weights_only), the predictor, ensembles and ONNX export treat a forest as any
other model. On the demo corpus's training voices a forest on speaker-normalised eGeMAPS
functionals was as accurate as the small network and changed fewer answers under telephone lines,
clipping and peak normalisation (README, Results).

Frame-level features are averaged over each clip's frames first; clip-level features (one frame)
go to the trees as they are.
"""
import math
from typing import Optional, Union

import numpy as np
import torch

from mser.errors import ConfigError
from mser.models import register_model
from mser.models.base import SERModel
from mser.models.pooling import build_pooling

# the node arrays, saved in the checkpoint: their length comes from the fit
TREE_BUFFERS = ("feature", "threshold", "left", "right", "leaf_probabilities")


class TreeForest(SERModel):
    """A fitted forest: features (batch, frames, input_size) -> logits (batch, num_class), the log of
    the trees' averaged leaf class shares, each share lifted by `smoothing` (so that no class gets
    probability 0, which would veto it in an ensemble's geometric mean).

    Before `fit` the forest is one leaf that gives every class the same probability.
    n_trees, max_features ('sqrt', 'log2', a fraction or a count), min_samples_leaf, max_depth:
    scikit-learn's n_estimators, max_features, min_samples_leaf, max_depth.
    """

    learns_by_fitting = True
    estimator: str   # the scikit-learn class in sklearn.ensemble

    def __init__(self, input_size: int, num_class: int, n_trees: int = 500,
                 max_features: Union[str, float, int] = "sqrt", min_samples_leaf: int = 1,
                 max_depth: Optional[int] = None, smoothing: float = 0.01):
        super().__init__(input_size, num_class)
        check_forest_args(type(self).__name__, n_trees, max_features, min_samples_leaf, max_depth, smoothing)
        self.forest_args = dict(n_estimators=n_trees, max_features=max_features,
                                min_samples_leaf=min_samples_leaf, max_depth=max_depth)
        self.smoothing = float(smoothing)
        self.pooling = build_pooling("TAP", input_size)
        for name in TREE_BUFFERS + ("tree_count", "depth"):
            self.register_buffer(name, torch.zeros(()))
        self.set_trees(np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int64),
                       np.full((1, num_class), 1.0 / num_class), trees=1, depth=0)

    def set_trees(self, feature, threshold, left, right, leaf_probabilities, trees: int, depth: int) -> None:
        """Node arrays of all trees laid end to end (pack_trees), on the forest's device."""
        device = self.depth.device
        self.feature = torch.as_tensor(feature, dtype=torch.long, device=device)
        self.threshold = torch.as_tensor(threshold, dtype=torch.float64, device=device)
        self.left = torch.as_tensor(left, dtype=torch.long, device=device)
        self.right = torch.as_tensor(right, dtype=torch.long, device=device)
        self.leaf_probabilities = torch.as_tensor(leaf_probabilities, dtype=torch.float32, device=device)
        self.tree_count = torch.tensor(trees, dtype=torch.long, device=device)
        self.depth = torch.tensor(depth, dtype=torch.long, device=device)
        self.trees, self.steps = int(trees), int(depth)

    def resize_to(self, state, prefix: str = "") -> None:
        """Take the node count of saved weights, whose sizes come from their fit (load_matching_weights
        compares shapes before loading). A class count that differs stays, to be reported."""
        for name in TREE_BUFFERS:
            saved = state.get(prefix + name)
            if saved is not None and (name != "leaf_probabilities" or saved.shape[-1] == self.num_class):
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.resize_to(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.trees, self.steps = int(self.tree_count), int(self.depth)

    def clip_vectors(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """features (batch, frames, input_size) -> each clip's mean over its frames (batch, input_size)."""
        lengths = self.check_input(features, lengths)
        return self.pooling(features.float().transpose(1, 2), lengths)

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.log(self.probabilities(self.clip_vectors(features, lengths)))

    def embedding(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The averaged leaf class shares (batch, num_class): a forest has no other hidden layer."""
        return self.probabilities(self.clip_vectors(features, lengths))

    def probabilities(self, vectors: torch.Tensor) -> torch.Tensor:
        """(batch, input_size) -> smoothed class probabilities (batch, num_class). Each step moves every
        (clip, tree) pair one level down; leaves point at themselves, so `depth` steps reach them all."""
        # scikit-learn compares float32 features with float64 thresholds
        values = vectors.float().double()
        node = torch.arange(self.trees, device=vectors.device).expand(vectors.shape[0], self.trees)
        for _ in range(self.steps):
            right = values.gather(1, self.feature[node]) > self.threshold[node]
            node = torch.where(right, self.right[node], self.left[node])
        shares = self.leaf_probabilities[node].mean(dim=1)
        return (shares + self.smoothing) / (1 + self.num_class * self.smoothing)

    def fit(self, vectors: np.ndarray, labels: np.ndarray, seed: int = 0, threads: int = 1,
            balanced: bool = False) -> "TreeForest":
        """Fit on clip vectors (clips, input_size) and labels (clips,) with scikit-learn, then hold the
        trees as tensors. Classes missing from `labels` get no share in any leaf. `balanced`
        (train_conf.class_weights): each clip weighs inversely to its class's count, so that every class
        counts the same in the splits and the leaves (scikit-learn's class_weight="balanced")."""
        import sklearn.ensemble
        if len(vectors) < 2:
            raise ConfigError(f"{type(self).__name__} needs at least 2 training clips, got {len(vectors)}")
        forest = getattr(sklearn.ensemble, self.estimator)(random_state=seed, n_jobs=threads,
                                                           class_weight="balanced" if balanced else None,
                                                           **self.forest_args)
        forest.fit(np.asarray(vectors, dtype=np.float32), np.asarray(labels))
        self.set_trees(*pack_trees([tree.tree_ for tree in forest.estimators_], forest.classes_, self.num_class),
                       trees=len(forest.estimators_), depth=max(tree.tree_.max_depth for tree in forest.estimators_))
        return self


def check_forest_args(model: str, n_trees, max_features, min_samples_leaf, max_depth, smoothing) -> None:
    """A ConfigError now for what scikit-learn would refuse only after every feature is computed."""
    def counts(value, allow_none: bool = False) -> bool:
        return (value is None and allow_none) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    problems = {
        "n_trees": not counts(n_trees),
        "max_features": not (max_features in ("sqrt", "log2", None) or counts(max_features)
                             or (isinstance(max_features, float) and 0 < max_features <= 1)),
        "min_samples_leaf": not counts(min_samples_leaf),
        "max_depth": not counts(max_depth, allow_none=True),
        "smoothing": not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1),
    }
    wanted = {"n_trees": "a count of at least 1", "max_features": "sqrt, log2, null, a count or a fraction in (0, 1]",
              "min_samples_leaf": "a count of at least 1", "max_depth": "null or a count of at least 1",
              "smoothing": "a number in [0, 1)"}
    values = dict(n_trees=n_trees, max_features=max_features, min_samples_leaf=min_samples_leaf,
                  max_depth=max_depth, smoothing=smoothing)
    for name, wrong in problems.items():
        if wrong:
            raise ConfigError(f"{model}: model_args.{name} must be {wanted[name]}, got {values[name]!r}")


def pack_trees(trees, classes: np.ndarray, num_class: int):
    """scikit-learn trees -> (feature, threshold, left, right, leaf_probabilities) over all nodes, the
    roots first (root of tree t at index t), then each tree's other nodes in its own order."""
    counts = np.array([tree.node_count for tree in trees])
    starts = len(trees) + np.concatenate([[0], np.cumsum(counts - 1)[:-1]])   # where each tree's non-roots go
    total = int(counts.sum())
    feature, threshold = np.zeros(total, np.int64), np.zeros(total)
    left, right = np.zeros(total, np.int64), np.zeros(total, np.int64)
    shares = np.zeros((total, num_class))
    for t, (tree, start) in enumerate(zip(trees, starts)):
        where = np.concatenate([[t], start + np.arange(tree.node_count - 1)])   # a node's packed index
        leaf = tree.children_left == -1
        feature[where] = np.where(leaf, 0, tree.feature)
        threshold[where] = np.where(leaf, 0.0, tree.threshold)
        left[where] = np.where(leaf, where, where[np.maximum(tree.children_left, 0)])
        right[where] = np.where(leaf, where, where[np.maximum(tree.children_right, 0)])
        value = tree.value[:, 0, :]
        shares[where[:, None], classes[None, :].astype(np.int64)] = value / np.maximum(value.sum(1, keepdims=True),
                                                                                      math.ulp(1.0))
    return feature, threshold, left, right, shares


@register_model
class ExtraTrees(TreeForest):
    """Extremely randomised trees (Geurts et al. 2006): random thresholds, every clip in every tree."""
    estimator = "ExtraTreesClassifier"


@register_model
class RandomForest(TreeForest):
    """Breiman's random forest: the best threshold among random features, bootstrap samples."""
    estimator = "RandomForestClassifier"

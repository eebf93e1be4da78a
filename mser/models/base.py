"""The base class of every model and its input checks. Shared layers, masks and length helpers
(and the rule that padding never changes a clip's result) are in mser.models.layers."""
from typing import Optional

import torch
from torch import nn

from mser.errors import DataError


class ModelInputError(DataError, ValueError):
    """Features a model cannot take: wrong shape, wrong feature dimension, bad lengths."""


class ClipTooShortError(ModelInputError):
    """A clip with fewer frames than the model needs."""


class SERModel(nn.Module):
    """Base class of every registered model.

    forward(features: (batch, frames, input_size), lengths: (batch,) frames or None)
        -> logits (batch, num_class)
    Subclasses implement `embedding(features, lengths) -> (batch, embd_dim)` and set `self.head`;
    `min_frames` is the shortest clip the architecture can take. A model that `learns_by_fitting`
    (mser.models.forest) has no gradient steps: the trainer hands it all training features once,
    through `fit(vectors, labels, seed, threads)`, with `clip_vectors` making them from features.
    """

    min_frames: int = 1
    learns_by_fitting: bool = False

    def __init__(self, input_size: int, num_class: int):
        super().__init__()
        if input_size < 1 or num_class < 1:
            raise ModelInputError(f"{type(self).__name__} needs input_size >= 1 and num_class >= 1, "
                                  f"got input_size={input_size}, num_class={num_class}")
        self.input_size = input_size
        self.num_class = num_class

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        lengths = self.check_input(features, lengths)
        return self.head(self.embedding(features, lengths))

    def check_input(self, features: torch.Tensor, lengths: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Validate the input and return lengths as int64 on the features' device (or None)."""
        name = type(self).__name__
        if torch.jit.is_tracing():  # exported graphs take whole clips; shapes are symbolic there
            return None
        if features.dim() != 3 or features.shape[2] != self.input_size:
            raise ModelInputError(f"{name} expects features (batch, frames, {self.input_size}), "
                                  f"got shape {tuple(features.shape)}")
        frames = features.shape[1]
        if lengths is not None:
            lengths = lengths.to(device=features.device, dtype=torch.long)
            if lengths.shape != (features.shape[0],):
                raise ModelInputError(f"{name}: lengths must have shape ({features.shape[0]},), "
                                      f"got {tuple(lengths.shape)}")
            if int(lengths.max()) > frames:
                raise ModelInputError(f"{name}: a length of {int(lengths.max())} frames exceeds "
                                      f"the {frames} frames of the batch")
        shortest = frames if lengths is None else int(lengths.min())
        if shortest < self.min_frames:
            raise ClipTooShortError(f"{name} needs clips of at least {self.min_frames} frames, "
                                    f"got one of {shortest}; use longer audio "
                                    f"(dataset_conf.dataset.min_duration) or another model")
        return lengths

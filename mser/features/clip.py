"""Clip-level featurizers: one vector per clip, standardised by a scaler fitted on the training list.

A subclass sets `feature_names` (which fixes `feature_dim`), calls `init_scaler` at the end of its
constructor and implements `extract` (raw features). forward applies the scaler. The scaler lives
in buffers (so it travels in the checkpoint's featurizer state) and in a JSON file written beside
the data lists by extract_features.py (`save_scaler` / `load_scaler`).
"""
import json
import os
from typing import List, Tuple

import numpy as np
import torch

from mser.errors import ConfigError, DataError
from mser.features.base import Featurizer


class ClipFeaturizer(Featurizer):
    """Base of the clip-level featurizers: forward -> ((batch, 1, feature_dim), ones (batch,))."""

    clip_level = True
    feature_names: List[str]

    def init_scaler(self, scaler_path: str = "") -> None:
        """Register the identity scaler for `feature_dim` values; load `scaler_path` when given."""
        self.register_buffer("scaler_mean", torch.zeros(self.feature_dim))
        self.register_buffer("scaler_scale", torch.ones(self.feature_dim))
        self.register_buffer("scaler_fitted", torch.tensor(False))
        if scaler_path:
            self.load_scaler(scaler_path)

    def extract(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> torch.Tensor:
        """Raw features: waveforms (batch, samples), lengths (batch,) -> (batch, feature_dim)."""
        raise NotImplementedError  # abstract

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """waveforms: (batch, samples) -> standardised features (batch, 1, feature_dim), ones (batch,)."""
        features = self.standardize(self.extract(waveforms, lengths))
        return features[:, None, :], torch.ones(features.shape[0], dtype=torch.long, device=features.device)

    def standardize(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the scaler to raw features (..., feature_dim); the identity until one is fitted."""
        return (features - self.scaler_mean) / self.scaler_scale

    def fit_scaler(self, features) -> None:
        """Fit the standardisation on raw training features, (clips, feature_dim) array."""
        from sklearn.preprocessing import StandardScaler
        name = type(self).__name__
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.feature_dim or features.shape[0] == 0:
            raise DataError(f"{name} scaler needs an array of shape (clips, {self.feature_dim}), "
                            f"got {features.shape}")
        if not np.all(np.isfinite(features)):
            raise DataError(f"{name} scaler: the training features hold NaN or infinite values")
        scaler = StandardScaler().fit(features)
        self.set_scaler(scaler.mean_, scaler.scale_)

    def reset_scaler(self) -> None:
        """Back to the identity, so that forward gives raw features again (to refit the scaler)."""
        self.scaler_mean.zero_()
        self.scaler_scale.fill_(1.0)
        self.scaler_fitted.fill_(False)

    def set_scaler(self, mean, scale) -> None:
        self.scaler_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.scaler_scale.copy_(torch.as_tensor(np.asarray(scale), dtype=torch.float32))
        self.scaler_fitted.fill_(True)

    def save_scaler(self, path: str) -> None:
        """Write the fitted scaler as JSON (written to a temporary name, then renamed)."""
        if not bool(self.scaler_fitted):
            raise DataError(f"{type(self).__name__} scaler is not fitted; "
                            "call fit_scaler on the training features first")
        state = {"feature_dim": self.feature_dim, "feature_names": self.feature_names,
                 "mean": self.scaler_mean.tolist(), "scale": self.scaler_scale.tolist()}
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        temporary = f"{path}.tmp{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(temporary, path)

    def load_scaler(self, path: str) -> None:
        """Read a scaler written by `save_scaler`; ConfigError when missing, unreadable or for other features."""
        name = type(self).__name__
        if not os.path.isfile(path):
            raise ConfigError(f"{name} scaler_path {path} does not exist; fit the scaler on the "
                              "training list first (extract_features.py) or leave scaler_path empty")
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            mean, scale = state["mean"], state["scale"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{name} scaler {path} is not a scaler file: {e}") from None
        if state.get("feature_names") != self.feature_names or len(mean) != self.feature_dim \
                or len(scale) != self.feature_dim:
            raise ConfigError(f"{name} scaler {path} was fitted on other features "
                              f"({len(mean)} values); these options give {self.feature_dim}: refit it")
        self.set_scaler(mean, scale)

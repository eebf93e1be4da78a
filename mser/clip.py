"""Clip settings: how a clip is read before features are computed, built once from the config.

The dataset, the feature cache and the predictor read clips the same way; they take it from one
`ClipSettings`, not from `dataset_conf` each on its own.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from mser.audio import AudioSource, load_audio_and_rate


@dataclass(frozen=True)
class ClipSettings:
    """`dataset_conf.dataset` (and `eval_conf.max_duration`) as one object.

    sample_rate: the model's rate in Hz; min_duration: shorter clips are unusable (seconds);
    max_duration: the training window and the predictor's segment (seconds, <= 0: whole clip);
    eval_max_duration: what evaluation and the feature cache keep of a clip (seconds, <= 0: all);
    use_db_normalization, target_db: loudness normalisation of every clip.
    """
    sample_rate: int
    min_duration: float = 0.0
    max_duration: float = 0.0
    eval_max_duration: float = 0.0
    use_db_normalization: bool = False
    target_db: float = -20.0

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "ClipSettings":
        dataset_conf = config["dataset_conf"]
        clip = dataset_conf["dataset"]
        # the values as written (no casts): feature_cache hashes them into cache names
        return cls(sample_rate=clip["sample_rate"], min_duration=clip["min_duration"],
                   max_duration=clip["max_duration"], eval_max_duration=dataset_conf["eval_conf"]["max_duration"],
                   use_db_normalization=clip["use_dB_normalization"], target_db=clip["target_dB"])

    def max_seconds(self, train: bool) -> float:
        """The most a clip keeps: the training window, or the evaluation length."""
        return self.max_duration if train else self.eval_max_duration

    def max_samples(self, train: bool) -> Optional[int]:
        """`max_seconds` in samples; None when clips are kept whole."""
        seconds = self.max_seconds(train)
        return int(seconds * self.sample_rate) if seconds and seconds > 0 else None

    def load_with_rate(self, source: AudioSource, sample_rate: Optional[int] = None,
                       inspect: Optional[Callable[[np.ndarray], None]] = None) -> Tuple[np.ndarray, int]:
        """(samples (samples,) float32 at `sample_rate` of the settings, the source's own rate):
        decoded, mono, resampled, cleaned (DC offset, digital silence), checked against
        min_duration and dB-normalised as training reads it; `inspect` sees the decoded samples at
        their own rate first (mser.audio.load_audio_and_rate). Raises AudioError."""
        return load_audio_and_rate(source, self.sample_rate, sample_rate=sample_rate,
                                   min_duration=self.min_duration, use_db_normalization=self.use_db_normalization,
                                   target_db=self.target_db, clean=True, inspect=inspect)

    def load(self, source: AudioSource, sample_rate: Optional[int] = None) -> np.ndarray:
        """`load_with_rate` without the rate: (samples,) float32."""
        return self.load_with_rate(source, sample_rate)[0]

"""Featurizer registry: `build_featurizer(name, **args)`, `list_featurizers()`."""
from typing import List

from mser.features.base import FEATURIZERS, Featurizer, mask_frames, register_featurizer
from mser.features import fbank, spectrogram, mfcc, custom, prosody  # noqa: F401  (registers the featurizers)


def build_featurizer(name: str, sample_rate: int = 16000, **method_args) -> Featurizer:
    """Build a registered featurizer, e.g. build_featurizer('Fbank', num_mel_bins=80)."""
    return FEATURIZERS.build(name, supplied=("sample_rate",), sample_rate=sample_rate, **method_args)


def list_featurizers() -> List[str]:
    return FEATURIZERS.names()


__all__ = ["Featurizer", "build_featurizer", "list_featurizers", "register_featurizer", "mask_frames"]

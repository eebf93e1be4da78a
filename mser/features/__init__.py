"""Featurizer registry: `build_featurizer(name, **args)`, `list_featurizers()`."""
import importlib.util
from typing import List

from mser.features.base import FEATURIZERS, Featurizer, mask_frames, register_featurizer
from mser.features import fbank, spectrogram, mfcc, custom, prosody, opensmile  # noqa: F401  (registers the featurizers)


def build_featurizer(name: str, sample_rate: int = 16000, **method_args) -> Featurizer:
    """Build a registered featurizer, e.g. build_featurizer('Fbank', num_mel_bins=80)."""
    return FEATURIZERS.build(name, supplied=("sample_rate",), sample_rate=sample_rate, **method_args)


def list_featurizers() -> List[str]:
    return FEATURIZERS.names()


def missing_extra(name: str) -> str:
    """The pip extra a registered featurizer needs and this environment lacks ('' when none),
    e.g. 'opensmile' for eGeMAPS without the opensmile package."""
    extra = getattr(FEATURIZERS.get(name), "extra", "")
    if not extra:
        return ""
    try:
        return "" if importlib.util.find_spec(extra) is not None else extra
    except (ImportError, ValueError):
        return extra


__all__ = ["Featurizer", "build_featurizer", "list_featurizers", "missing_extra", "register_featurizer",
           "mask_frames"]

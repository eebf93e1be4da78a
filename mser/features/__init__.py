"""Featurizer registry: `build_featurizer(name, **args)`, `list_featurizers()`."""
import importlib.util
from typing import Any, Dict, List

from mser.features.base import FEATURIZERS, Featurizer, mask_frames, register_featurizer
from mser.features import fbank, spectrogram, mfcc, custom, prosody, opensmile, emotion2vec  # noqa: F401  (registers the featurizers)


def build_featurizer(name: str, sample_rate: int = 16000, **method_args) -> Featurizer:
    """Build a registered featurizer, e.g. build_featurizer('Fbank', num_mel_bins=80)."""
    return FEATURIZERS.build(name, supplied=("sample_rate",), sample_rate=sample_rate, **method_args)


def build_encoder_featurizer(source: str, sample_rate: int = 16000, **method_args) -> Featurizer:
    """A pretrained speech encoder (hub id or local folder) as a featurizer: mser.features.hf."""
    from mser.features import hf  # imports transformers only when an encoder is asked for
    return hf.build_encoder_featurizer(source, sample_rate=sample_rate, **method_args)


def uses_encoder(preprocess_conf: Dict[str, Any]) -> bool:
    """True when preprocess_conf asks for a pretrained speech encoder (use_hf_model)."""
    return bool(preprocess_conf.get("use_hf_model"))


def feature_name(preprocess_conf: Dict[str, Any]) -> str:
    """The featurizer's name in file and folder names: feature_method, or for a speech encoder
    the last part of its hub id or folder ('microsoft/wavlm-base-plus' -> 'wavlm-base-plus')."""
    if uses_encoder(preprocess_conf):
        from mser.features.hf import encoder_name
        return encoder_name(preprocess_conf["feature_method"])
    return preprocess_conf["feature_method"]


def list_featurizers(include_pretrained: bool = False) -> List[str]:
    """The registered featurizers' names. Those that need a pretrained model to be downloaded or
    named (`pretrained = True`, e.g. Emotion2Vec) only with `include_pretrained`: the others build
    from their defaults, which is what registry-wide tests and the benchmark rely on."""
    return [name for name in FEATURIZERS.names()
            if include_pretrained or not getattr(FEATURIZERS.get(name), "pretrained", False)]


def missing_extra(name: str) -> str:
    """The pip extra a registered featurizer needs and this environment lacks ('' when none),
    e.g. 'opensmile' for eGeMAPS without the opensmile package."""
    if name not in FEATURIZERS:   # a speech encoder's hub id or folder (use_hf_model)
        return "" if importlib.util.find_spec("transformers") is not None else "hf"
    extra = getattr(FEATURIZERS.get(name), "extra", "")
    if not extra:
        return ""
    try:
        return "" if importlib.util.find_spec(extra) is not None else extra
    except (ImportError, ValueError):
        return extra


__all__ = ["Featurizer", "build_encoder_featurizer", "build_featurizer", "feature_name", "list_featurizers",
           "missing_extra", "register_featurizer", "mask_frames", "uses_encoder"]

"""Model registry: `build_model(name, input_size, num_class, **model_args)`, `list_models()`."""
from typing import List

from torch import nn

from mser.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register

from mser.models import bi_lstm, ecapa_tdnn, campplus, resnet_se, panns, tdnn, eres2net  # noqa: E402,F401  (registers)
from mser.models import res2net, eres2netv2, cnn_transformer, forest  # noqa: E402,F401  (registers)


def build_model(name: str, input_size: int, num_class: int, **model_args) -> nn.Module:
    """Build a registered model. Its forward(features: (batch, frames, input_size), lengths=None)
    returns logits (batch, num_class)."""
    return MODELS.build(name, supplied=("input_size", "num_class"), input_size=input_size,
                        num_class=num_class, **model_args)


def list_models() -> List[str]:
    return MODELS.names()


__all__ = ["build_model", "list_models", "register_model"]

"""Build the featurizer and the model a config describes (shared by trainer, predictor, tools)."""
from typing import Any, Dict

from torch import nn

from mser.features import Featurizer, build_featurizer
from mser.models import build_model


def featurizer_from_config(config: Dict[str, Any]) -> Featurizer:
    preprocess = config["preprocess_conf"]
    return build_featurizer(preprocess["feature_method"],
                            sample_rate=config["dataset_conf"]["dataset"]["sample_rate"],
                            **preprocess["method_args"])


def model_from_config(config: Dict[str, Any], input_size: int, num_class: int) -> nn.Module:
    model_conf = config["model_conf"]
    return build_model(model_conf["model"], input_size=input_size, num_class=num_class,
                       **model_conf["model_args"])

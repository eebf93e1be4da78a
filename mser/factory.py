"""Build the featurizer and the model a config describes (shared by trainer, predictor, tools)."""
from typing import Any, Dict

from torch import nn

from mser.errors import ConfigError
from mser.features import Featurizer, build_encoder_featurizer, build_featurizer, uses_encoder
from mser.features.band import limit_band, parse_band
from mser.models import build_model


def refuse_derived_keys(args: Dict[str, Any], derived: Dict[str, str], section: str) -> None:
    for key, source in derived.items():
        if key in args:
            raise ConfigError(f"{section}.{key} cannot be set: it comes from {source}")


def featurizer_from_config(config: Dict[str, Any]) -> Featurizer:
    preprocess = config["preprocess_conf"]
    refuse_derived_keys(preprocess["method_args"], {"sample_rate": "dataset_conf.dataset.sample_rate"},
                        "preprocess_conf.method_args")
    build = build_encoder_featurizer if uses_encoder(preprocess) else build_featurizer
    sample_rate = config["dataset_conf"]["dataset"]["sample_rate"]
    band = parse_band(preprocess["band_limit_hz"], sample_rate)
    return limit_band(build(preprocess["feature_method"], sample_rate=sample_rate, **preprocess["method_args"]), band)


def model_from_config(config: Dict[str, Any], input_size: int, num_class: int) -> nn.Module:
    model_conf = config["model_conf"]
    refuse_derived_keys(model_conf["model_args"], {"input_size": "the featurizer's feature_dim",
                                                   "num_class": "the label list"}, "model_conf.model_args")
    return build_model(model_conf["model"], input_size=input_size, num_class=num_class,
                       **model_conf["model_args"])


def model_for_featurizer(config: Dict[str, Any], featurizer: Featurizer, num_class: int) -> nn.Module:
    """The config's model for `featurizer`'s features. A speech encoder's features get its front
    (the trainable layer mix and the encoder's identity, mser.features.hf.EncoderFront) inside the
    model, so that it trains, is saved and is checked with the model's weights."""
    front = featurizer.model_front() if hasattr(featurizer, "model_front") else None
    if front is None:
        return model_from_config(config, featurizer.feature_dim, num_class)
    return front.wrap(model_from_config(config, front.output_dim, num_class))


def load_for_inference(directory: str, config: Dict[str, Any] = None, device="cpu"):
    """Rebuild (config, labels, featurizer, model) from a checkpoint directory, in eval mode.

    The config and labels stored in the checkpoint are used unless `config` is given; the label
    count and the featurizer must match the weights, or a CheckpointError says what differs.
    """
    from mser import checkpoint
    stored_config, labels = checkpoint.load_config_and_labels(directory)
    config = config or stored_config
    check_same_setup(config, stored_config, directory)
    featurizer = featurizer_from_config(config)
    featurizer_state = checkpoint.load_featurizer_state(directory)
    if featurizer_state:
        featurizer.load_state_dict(featurizer_state)
    model = model_for_featurizer(config, featurizer, len(labels))
    load_matching_weights(model, checkpoint.load_weights(directory), directory)
    return config, labels, featurizer.to(device).eval(), model.to(device).eval()


def check_same_setup(config: Dict[str, Any], stored: Dict[str, Any], directory: str) -> None:
    from mser.errors import CheckpointError
    if uses_encoder(config["preprocess_conf"]) != uses_encoder(stored["preprocess_conf"]):
        raise CheckpointError(f"checkpoint {directory} was trained with preprocess_conf.use_hf_model="
                              f"{str(uses_encoder(stored['preprocess_conf'])).lower()}, but the config asks for "
                              f"{str(uses_encoder(config['preprocess_conf'])).lower()}")
    for section, key in (("preprocess_conf", "feature_method"), ("model_conf", "model")):
        if (section, uses_encoder(config["preprocess_conf"])) == ("preprocess_conf", True):
            continue   # a speech encoder may move: its content digest, stored with the weights, decides
        if config[section][key] != stored[section][key]:
            raise CheckpointError(f"checkpoint {directory} was trained with {section}.{key}="
                                  f"{stored[section][key]}, but the config asks for {config[section][key]}")


def load_matching_weights(model: nn.Module, state: Dict[str, Any], directory: str) -> None:
    """Load weights strictly, explaining a mismatch (another label set, another model size)."""
    from mser.errors import CheckpointError
    if hasattr(model, "check_checkpoint"):   # e.g. features of another speech encoder
        model.check_checkpoint(state, directory)
    if hasattr(model, "resize_to"):   # a fitted forest's node count comes from its fit
        model.resize_to(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                   if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        details = "; ".join(filter(None, [
            f"shapes differ: {', '.join(wrong_shape[:3])}" if wrong_shape else "",
            f"missing: {', '.join(missing[:3])}" if missing else "",
            f"unexpected: {', '.join(unexpected[:3])}" if unexpected else ""]))
        raise CheckpointError(f"weights in {directory} do not fit the model built from the config "
                              f"(another label set or model size?): {details}")
    model.load_state_dict(state)

"""Experiment configs: YAML through yaml.safe_load, defaults, --overwrites, validation.

A config is a plain nested dict. Every key a user writes is checked against DEFAULT_CONFIG: an
unknown key is an error naming the nearest valid one, and a value of the wrong type is an error
naming the expected type. The `*_args` sections are free-form here; the component that receives
them (model, featurizer, optimizer, scheduler) checks them against its own signature.
"""
import copy
import os
import re
from typing import Any, Dict, Iterable, List, Optional

import yaml

from mser.errors import ConfigError
from mser.registry import nearest



# YAML 1.1 reads '1e-5' (no dot) as a string; configs mean a number.
EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def safe_load(text_or_stream) -> Any:
    """yaml.safe_load, then '1e-5'-style strings become floats."""
    return numbers_from_exponents(yaml.safe_load(text_or_stream))


def numbers_from_exponents(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: numbers_from_exponents(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numbers_from_exponents(item) for item in value]
    if isinstance(value, str) and EXPONENT_FLOAT.match(value):
        return float(value)
    return value


DEFAULT_CONFIG: Dict[str, Any] = {
    "dataset_conf": {
        "dataset": {
            "min_duration": 0.4,        # seconds; shorter clips are skipped and counted
            "max_duration": 3.0,        # seconds; longer training clips are randomly cropped
            "sample_rate": 16000,
            "use_dB_normalization": False,
            "target_dB": -20.0,
        },
        "dataLoader": {"batch_size": 32, "drop_last": False, "num_workers": 2},
        "eval_conf": {"batch_size": 32, "max_duration": 6.0},
        "train_list": "dataset/train_list.txt",
        "test_list": "dataset/test_list.txt",
        "val_list": "",                 # empty: a seeded slice of the training list
        "val_fraction": 0.1,
        "label_list_path": "dataset/label_list.txt",
        # augmented_copies: N augmented copies of each training clip, featurised once and cached
        # (needs --data_augment_configs; mser/data/augmented_copies.py)
        # workers: processes that extract clip-level features (openSMILE, CustomFeatures) side by side
        # on the CPU; "auto" is one per core, at most 4; 0 or 1 extracts in the main process
        "feature_cache": {"enable": False, "cache_dir": "dataset/features", "float16": False, "augmented_copies": 0,
                          "workers": "auto"},
    },
    "preprocess_conf": {
        "feature_method": "Fbank",
        "method_args": {},
        "use_hf_model": False,   # true: feature_method is a Hugging Face speech encoder (mser/features/hf.py)
        # standardise features per speaker (mser/features/speaker_norm.py); prior_clips: how many
        # clips' worth of weight the training set's global statistics carry for each speaker
        "speaker_norm": {"enable": False, "prior_clips": 2.0},
        # [low, high] Hz: every clip band-passed before its features (mser/features/band.py), e.g.
        # [300, 3400] to hear what a telephone line carries; null: the whole band
        "band_limit_hz": None,
    },
    "model_conf": {"model": "EcapaTdnn", "model_args": {}},
    "optimizer_conf": {
        "optimizer": "Adam",
        "optimizer_args": {"lr": 0.001, "weight_decay": 1e-5},
        "scheduler": "WarmupCosine",
        "scheduler_args": {},
        "grad_clip": 5.0,
    },
    "train_conf": {
        "enable_amp": "auto",        # true, false, or auto: bf16 autocast where the CPU has native bf16
        "amp_dtype": "bfloat16",
        "use_compile": False,
        "label_smoothing": 0.0,
        "mixup_alpha": 0.0,          # > 0: mixup (mser/mixup.py), one Beta(alpha, alpha) weight per batch
        "speaker_adversary": 0.0,    # > 0: speaker-adversarial training (mser/speaker_adversary.py), this weight
        "copy_consistency": 0.0,     # > 0: a clip and its augmented copies pushed to agree (mser/consistency.py)
        "class_weights": False,
        "max_epoch": 30,
        "log_interval": 10,
        "seed": 1000,
        "best_metric": "unweighted_accuracy",
        "keep_last_epochs": 3,
        "keep_best": 0,              # also keep the epoch_N of the best k validation scores
        "loss": "CrossEntropy",      # or FocalLoss (mser.losses)
        "loss_args": {},             # e.g. {gamma: 2.0} for FocalLoss; label_smoothing/class_weights apply too
        "test_every_epoch": False,   # evaluate the test list after every epoch for the VisualDL curves
    },
}

# Sections whose keys belong to a component and are checked by that component.
OPEN_SECTIONS = {
    ("preprocess_conf", "method_args"),
    ("model_conf", "model_args"),
    ("optimizer_conf", "optimizer_args"),
    ("optimizer_conf", "scheduler_args"),
    ("train_conf", "loss_args"),
}


def load_config(path: Optional[str], overwrites: Optional[str] = None,
                defaults: Dict[str, Any] = DEFAULT_CONFIG, open_sections=OPEN_SECTIONS) -> Dict[str, Any]:
    """Read a YAML config, merge it over `defaults`, apply `overwrites` and validate the result.
    An error in the file names the file."""
    user = read_yaml(path) if path else {}
    try:
        config = merge(defaults, user, open_sections)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    if overwrites:
        config = apply_overwrites(config, overwrites, defaults, open_sections)
    return expand_name_files(config, resolve_config_path(path) if path else None)


# values that may be given as a text file of names, one per line ('#' starts a comment): the file is
# read when the config is loaded, so that a checkpoint's stored config holds the names themselves
NAME_FILE_KEYS = (("preprocess_conf", "method_args", "drop_functionals"),)


def expand_name_files(config: Dict[str, Any], config_path: Optional[str]) -> Dict[str, Any]:
    """Replace each NAME_FILE_KEYS value given as a file name by the names that file lists. A
    relative name is looked for beside the config file first, then in the working directory."""
    for keys in NAME_FILE_KEYS:
        node = config
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = read_name_file(node[keys[-1]], config_path, ".".join(keys))
    return config


def read_name_file(name: str, config_path: Optional[str], key: str) -> List[str]:
    candidates = [name]
    if config_path and not os.path.isabs(name):
        candidates.insert(0, os.path.join(os.path.dirname(os.path.abspath(config_path)), name))
    path = next((candidate for candidate in candidates if os.path.isfile(candidate)), None)
    if path is None:
        raise ConfigError(f"{key}: the file of names {path_tried(name)} was not found"
                          + (f" (nor beside {config_path})" if config_path else ""))
    with open(path, encoding="utf-8") as f:
        names = [line.split("#", 1)[0].strip() for line in f]
    return [name for name in names if name]


# The config the README recommends; the scripts' --configs default.
RECOMMENDED_CONFIG = "egemaps"


def shipped_configs_dir() -> str:
    """The folder of the configs that ship with mser: mser/configs in an installed wheel (the
    build copies the repository's configs/ there), the repository's configs/ in a source checkout."""
    package = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs")):
        if os.path.isdir(folder):
            return folder
    return ""


def shipped_configs() -> Dict[str, str]:
    """{name: path} of every shipped config, e.g. {'egemaps': '.../configs/egemaps.yml', ...}."""
    folder = shipped_configs_dir()
    names = sorted(os.listdir(folder)) if folder else []
    return {name[:-len(".yml")]: os.path.join(folder, name) for name in names if name.endswith(".yml")}


def resolve_config_path(path: str) -> str:
    """A config file's path: `path` itself when that file exists, else the shipped config that
    `path` names ('egemaps' or 'egemaps.yml'). A ConfigError when neither exists."""
    if os.path.isfile(path):
        return path
    name = os.path.basename(path)
    name = name[:-len(".yml")] if name.endswith(".yml") else name
    shipped = shipped_configs()
    if path in (name, name + ".yml") and name in shipped:
        return shipped[name]
    raise ConfigError(f"config file not found: {path_tried(path)}; shipped configs, usable by name "
                      f"(--configs {RECOMMENDED_CONFIG}): {', '.join(shipped) or 'none found'}")


def path_tried(path: str) -> str:
    """`path`, and for a relative path the absolute one it was looked for at, for error messages:
    'dataset/x.txt (relative to the working directory: /home/me/dataset/x.txt)'."""
    if os.path.isabs(path):
        return str(path)
    return f"{path} (relative to the working directory: {os.path.abspath(path)})"


def describe_shipped_configs() -> str:
    """The text of --list-configs: each shipped config's name and the first line of its comment,
    model configs first, then augmentation configs (for --data_augment_configs)."""
    shipped = shipped_configs()
    width = max((len(name) for name in shipped), default=0)
    augmentation = [name for name in shipped if name.startswith("augmentation")]
    lines = [f"configs (--configs NAME, e.g. --configs {RECOMMENDED_CONFIG}; the files are in "
             f"{shipped_configs_dir() or '(no folder found)'}):"]
    for name in (name for name in shipped if name not in augmentation):
        summary = first_comment_line(shipped[name])
        if name == RECOMMENDED_CONFIG and "recommended" not in summary.lower():
            summary = f"(recommended) {summary}"
        lines.append(f"  {name:<{width}}  {summary}".rstrip())
    if augmentation:
        lines.append("augmentation configs (--data_augment_configs NAME):")
        lines += [f"  {name:<{width}}  {first_comment_line(shipped[name])}".rstrip() for name in augmentation]
    return "\n".join(lines)


def first_comment_line(path: str, width: int = 90) -> str:
    """The first line of a YAML file's leading comment, shortened to `width` characters."""
    with open(path, encoding="utf-8") as f:
        first = f.readline().strip()
    text = first.lstrip("#").strip() if first.startswith("#") else ""
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def read_yaml(path: str) -> Dict[str, Any]:
    """A YAML file's mapping; `path` may be the name of a shipped config ('egemaps')."""
    path = resolve_config_path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, found {type(data).__name__}")
    return data


def merge(defaults: Dict[str, Any], user: Dict[str, Any], open_sections=OPEN_SECTIONS,
          prefix: tuple = ()) -> Dict[str, Any]:
    """Return a copy of `defaults` updated with `user`, refusing unknown keys (every one of them,
    in one error) and wrong types."""
    unknown = unknown_keys(defaults, user, open_sections, prefix)
    if len(unknown) == 1:
        key, section, key_prefix = unknown[0]
        raise ConfigError(f"unknown config key '{dotted(key_prefix + (key,))}'"
                          f"{nearest_key(key, section, key_prefix)}")
    if unknown:
        raise ConfigError(f"{len(unknown)} unknown config keys: " + ", ".join(
            f"'{dotted(key_prefix + (key,))}' ({key_hint(key, section, key_prefix)})"
            for key, section, key_prefix in unknown))
    return merge_known(defaults, user, open_sections, prefix)


def unknown_keys(defaults: Dict[str, Any], user: Dict[str, Any], open_sections, prefix: tuple) -> list:
    """[(key, the defaults' section it is not in, the section's path)] for every key of `user`
    (sections within sections included) that `defaults` does not have."""
    unknown = []
    for key, value in user.items():
        path = prefix + (key,)
        if key not in defaults:
            unknown.append((key, defaults, prefix))
        elif path not in open_sections and isinstance(defaults[key], dict) and isinstance(value, dict):
            unknown.extend(unknown_keys(defaults[key], value, open_sections, path))
    return unknown


def merge_known(defaults: Dict[str, Any], user: Dict[str, Any], open_sections, prefix: tuple) -> Dict[str, Any]:
    result = copy.deepcopy(defaults)
    for key, value in user.items():
        result[key] = checked_value(defaults[key], value, prefix + (key,), open_sections)
    return result


def checked_value(default: Any, value: Any, path: tuple, open_sections) -> Any:
    if path in open_sections:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"'{dotted(path)}' must be a mapping of arguments, got {value!r}")
        return copy.deepcopy(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"'{dotted(path)}' must be a section (a mapping), got {value!r}")
        return merge(default, value, open_sections, path)
    return checked_scalar(default, value, path)


# Keys that take true, false or the word auto; keys that take a whole number >= 0 or auto.
BOOL_OR_AUTO = {("train_conf", "enable_amp")}
COUNT_OR_AUTO = {("dataset_conf", "feature_cache", "workers")}


def checked_scalar(default: Any, value: Any, path: tuple) -> Any:
    if path in BOOL_OR_AUTO:
        if isinstance(value, bool) or value == "auto":
            return value
        raise ConfigError(f"'{dotted(path)}' must be true, false or auto, got {value!r}")
    if path in COUNT_OR_AUTO:
        if value == "auto" or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ConfigError(f"'{dotted(path)}' must be a whole number >= 0 or auto, got {value!r}")
    if default is None or value is None and isinstance(default, str):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(default, (int, float)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if isinstance(default, float) else value
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            return int(value)
        expected = "a number"
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        expected = "a string"
    else:
        return value
    raise ConfigError(f"'{dotted(path)}' must be {expected}, got {value!r}")


def parse_overwrites(text: str) -> Dict[str, Any]:
    """'a.b=1,c.d=text' -> {'a.b': 1, 'c.d': 'text'}; values are YAML scalars, never evaluated."""
    result = {}
    for item in re.split(r",(?=\s*[\w.]+\s*=)", text.strip()):
        if not item.strip():
            continue
        if "=" not in item:
            raise ConfigError(f"--overwrites item '{item}' must look like section.key=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        try:
            value = safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw  # only scalars: 'a=[1,2]' stays the text the user typed
        result[key] = value
    return result


def apply_overwrites(config: Dict[str, Any], overwrites: str, defaults: Dict[str, Any] = DEFAULT_CONFIG,
                     open_sections=OPEN_SECTIONS) -> Dict[str, Any]:
    """Apply '--overwrites' to an already merged config and re-validate each changed value."""
    config = copy.deepcopy(config)
    for key, value in parse_overwrites(overwrites).items():
        path = tuple(key.split("."))
        node, default_node = config, defaults
        for depth, part in enumerate(path[:-1]):
            prefix = path[:depth + 1]
            if prefix in open_sections:
                node = node.setdefault(part, {})
                default_node = None
                continue
            if default_node is None:
                node = node.setdefault(part, {})
                continue
            if part not in default_node or not isinstance(default_node[part], dict):
                raise ConfigError(f"unknown config key '{dotted(prefix)}' in --overwrites"
                                  f"{nearest_key(part, default_node, prefix[:-1])}")
            node, default_node = node[part], default_node[part]
        last = path[-1]
        if default_node is None:
            node[last] = value
            continue
        if last not in default_node:
            raise ConfigError(f"unknown config key '{key}' in --overwrites"
                              f"{nearest_key(last, default_node, path[:-1])}")
        node[last] = checked_value(default_node[last], value, path, open_sections)
    return config


def nearest_key(key: str, section: Dict[str, Any], prefix: tuple) -> str:
    hint = key_hint(key, section, prefix)
    return f" ({hint})" if hint.startswith("did you mean") else f"; {hint}"


def key_hint(key: str, section: Dict[str, Any], prefix: tuple) -> str:
    """"did you mean 'a.b'?" or "valid keys here: ..." for a key missing from `section`."""
    hint = nearest(key, section)
    if hint:
        match = re.search(r"'(.*)'", hint).group(1)
        return f"did you mean '{dotted(prefix + (match,))}'?"
    return f"valid keys here: {', '.join(sorted(section))}"


def dotted(path: Iterable[str]) -> str:
    return ".".join(str(p) for p in path)


def save_config(config: Dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False, allow_unicode=True)


def format_config(config: Dict[str, Any], indent: int = 0) -> str:
    """A readable, indented rendering for the log at the start of a run."""
    lines = []
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append("  " * indent + f"{key}:")
            lines.append(format_config(value, indent + 1))
        else:
            lines.append("  " * indent + f"{key}: {value}")
    return "\n".join(line for line in lines if line)

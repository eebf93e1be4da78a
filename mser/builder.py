"""Build the objects of a run from its config, apart from the loop that uses them.

`build_run` gives the model, optimizer, scheduler, loss and mixed-precision scaler of a training
run (as 3D-Speaker's train.py builds every object first, then runs a plain loop); `read_lists`
the train/validation/test clips. Nothing here starts processes or seeds random generators, so
evaluation, feature extraction and the benchmark use the same builders as training.
"""
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from mser.data.lists import ListItem, read_data_list
from mser.errors import ConfigError
from mser.factory import featurizer_from_config, model_for_featurizer
from mser.features import Featurizer
from mser.optim import build_optimizer, build_scheduler, class_weights, trainable_parameters


@dataclass
class RunObjects:
    """What a training run steps: the model (on its device), its optimizer and learning-rate
    scheduler (None, or stepped per 'step', 'epoch' or 'metric'), mixed precision and the loss.
    A model that learns by fitting (mser.models.forest) has no optimizer."""
    model: nn.Module
    optimizer: Optional[torch.optim.Optimizer]
    scheduler: Optional[Any]
    scheduler_unit: str
    amp: "Amp"
    criterion: nn.Module
    steps_per_epoch: int
    speaker_adversary: Optional[nn.Module] = None   # train_conf.speaker_adversary (mser.speaker_adversary)


def build_featurizer(config: Dict[str, Any], device="cpu") -> Featurizer:
    """The config's featurizer on `device` (training mode, as a fresh module is)."""
    return featurizer_from_config(config).to(device)


def build_run(config: Dict[str, Any], featurizer: Featurizer, labels: Sequence[str],
              train_items: Sequence[ListItem], device, world_size: int = 1,
              log: Callable[[str], None] = print) -> RunObjects:
    """Model, optimizer, scheduler, AMP and loss of a training run, in this order (the model's
    initial weights come from the global random generator). A wrong model, optimizer, scheduler
    or loss argument raises ConfigError here, before anything is computed or written."""
    from mser.speaker_adversary import build_speaker_adversary
    model = model_for_featurizer(config, featurizer, len(labels)).to(device)
    steps = steps_per_epoch(config, len(train_items), world_size)
    if getattr(model, "learns_by_fitting", False):
        check_fitting_run(config, world_size)
        return RunObjects(model, None, None, "none", Amp(config["train_conf"], torch.device(device)),
                          build_criterion(config, labels, train_items, device, log), steps)
    adversary = build_speaker_adversary(config["train_conf"]["speaker_adversary"], model,
                                        [item.speaker for item in train_items])
    parameters = trainable_parameters(model)
    if adversary is not None:
        adversary.to(device)
        parameters += trainable_parameters(adversary)
    optimizer = build_optimizer(parameters, config["optimizer_conf"])
    scheduler, unit = build_scheduler(optimizer, config["optimizer_conf"], steps, config["train_conf"]["max_epoch"])
    amp = Amp(config["train_conf"], torch.device(device))
    criterion = build_criterion(config, labels, train_items, device, log)
    return RunObjects(model, optimizer, scheduler, unit, amp, criterion, steps, adversary)


def check_fitting_run(config: Dict[str, Any], world_size: int) -> None:
    """A fitted model (scikit-learn's forests) sees every training clip once, in one process, and
    has no loss to add mixup, a speaker adversary or copy consistency to."""
    model, train_conf = config["model_conf"]["model"], config["train_conf"]
    if train_conf["max_epoch"] != 1:
        raise ConfigError(f"{model} is fitted in one pass over the training features: set train_conf.max_epoch "
                          f"to 1, got {train_conf['max_epoch']}")
    if world_size > 1:
        raise ConfigError(f"{model} is fitted in one process: run train.py without torchrun")
    for key in ("mixup_alpha", "speaker_adversary", "copy_consistency"):
        if train_conf[key]:
            raise ConfigError(f"train_conf.{key} trains by gradient steps; {model} is fitted (set it to 0)")


def steps_per_epoch(config: Dict[str, Any], num_train: int, world_size: int = 1) -> int:
    """Optimizer steps in one epoch of each of `world_size` processes."""
    loader_conf = config["dataset_conf"]["dataLoader"]
    per_rank = math.ceil(num_train / world_size)
    if loader_conf["drop_last"]:
        return max(1, per_rank // loader_conf["batch_size"])
    return max(1, math.ceil(per_rank / loader_conf["batch_size"]))


def build_criterion(config: Dict[str, Any], labels: Sequence[str], train_items: Sequence[ListItem], device,
                    log: Callable[[str], None] = print) -> nn.Module:
    """train_conf.loss with its arguments, label smoothing and (class_weights) inverse-frequency
    weights of the training items."""
    from mser.losses import build_loss
    train_conf = config["train_conf"]
    weights = None
    if train_conf["class_weights"]:
        weights = class_weights([item.label for item in train_items], len(labels)).to(device)
        log("class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(labels, weights)))
    loss_args = dict(train_conf["loss_args"])
    loss_args.setdefault("label_smoothing", train_conf["label_smoothing"])
    if weights is not None:
        loss_args.setdefault("weight", weights)
    return build_loss(train_conf["loss"], num_class=len(labels), **loss_args).to(device)


def build_spec_augment(augment_config: Optional[Dict[str, Any]], device) -> Optional[nn.Module]:
    """The SpecAugment module the augmentation config asks for, or None."""
    if augment_config is None:
        return None
    from mser.data.augment import build_spec_augment as build
    module = build(augment_config)
    return module.to(device) if module is not None else None


def read_lists(config: Dict[str, Any], num_class: int,
               log: Callable[[str], None] = print) -> Tuple[List[ListItem], List[ListItem], List[ListItem]]:
    """(train, validation, test) items; validation is never taken from the test list: it is
    dataset_conf.val_list, a seeded slice of the training list, or none (val_fraction 0)."""
    dataset_conf = config["dataset_conf"]
    train_items = read_data_list(dataset_conf["train_list"], num_class)
    test_items = read_data_list(dataset_conf["test_list"], num_class)
    if dataset_conf["val_list"]:
        val_items = read_data_list(dataset_conf["val_list"], num_class)
    elif dataset_conf["val_fraction"] == 0:
        val_items = []
        log("validation: none (dataset_conf.val_fraction 0): every training clip trains and no epoch is "
            "picked; best_model is the last epoch's model")
    else:
        train_items, val_items = split_validation(train_items, dataset_conf["val_fraction"],
                                                  config["train_conf"]["seed"])
        log(describe_validation(train_items, val_items))
    return train_items, val_items, test_items


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (avx512_bf16 or AMX on x86, Linux's flags).
    Elsewhere bf16 autocast is emulated and brings no speed."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Amp:
    """Mixed precision: float16 with a GradScaler on CUDA, bfloat16 autocast on CPU or CUDA.

    `enable_amp: auto` turns on bfloat16 autocast on a CPU with native bf16, where it was measured
    to train 1.2-1.9x faster with the same accuracy (README, Benchmark); elsewhere, GPUs included,
    it stays off unless `enable_amp: true`.
    """

    def __init__(self, train_conf: Dict[str, Any], device: torch.device):
        dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16}
        if train_conf["amp_dtype"] not in dtypes:
            raise ConfigError(f"train_conf.amp_dtype must be bfloat16 or float16, got {train_conf['amp_dtype']!r}")
        self.device_type = device.type
        self.dtype = dtypes[train_conf["amp_dtype"]]
        if train_conf["enable_amp"] == "auto":
            self.enabled = device.type == "cpu" and self.dtype == torch.bfloat16 and cpu_has_native_bf16()
        else:
            self.enabled = bool(train_conf["enable_amp"])
        if self.enabled and device.type == "cpu" and self.dtype == torch.float16:
            raise ConfigError("train_conf.amp_dtype float16 needs a GPU; use bfloat16 on the CPU")
        use_scaler = self.enabled and device.type == "cuda" and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    def autocast(self):
        return torch.autocast(device_type=self.device_type, dtype=self.dtype, enabled=self.enabled)

    def backward(self, loss):
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer):
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)

    def step(self, optimizer):
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state):
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(state)


def split_validation(items: List[ListItem], fraction: float, seed: int):
    """Hold out a seeded, label-stratified `fraction` of the training items for model selection.

    When the list names speakers, the slice takes whole speakers, so that validation scores voices
    the model never trained on, as the test list does (clips without a speaker count as speakers
    of their own). Without speakers, or with a single one, it takes clips.
    """
    if fraction <= 0:
        raise ConfigError(f"dataset_conf.val_fraction must be in [0, 1) (0: no validation), got {fraction}")
    if len({item.speaker for item in items if item.speaker}) >= 2:
        return split_validation_by_speaker(items, fraction, seed)
    return split_validation_by_clip(items, fraction, seed)


def split_validation_by_clip(items: List[ListItem], fraction: float, seed: int):
    rng = random.Random(seed)
    by_label: Dict[int, List[ListItem]] = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    train, val = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        count = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        val.extend(group[:count])
        train.extend(group[count:])
    if not val:
        raise ConfigError("the training list is too small to hold out a validation slice; "
                          "give dataset_conf.val_list")
    return train, val


def split_validation_by_speaker(items: List[ListItem], fraction: float, seed: int):
    """Whole speakers whose clips come closest to `fraction` of every label (corpora's seeded search)."""
    from mser.data.corpora import best_test_groups
    if fraction >= 1:
        raise ConfigError(f"dataset_conf.val_fraction must be below 1, got {fraction}")
    group_of = [item.speaker or f"clip:{item.path}" for item in items]
    groups = sorted(set(group_of))
    labels = sorted({item.label for item in items})
    group_index = {group: i for i, group in enumerate(groups)}
    label_index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(groups), len(labels)))
    for group, item in zip(group_of, items):
        counts[group_index[group], label_index[item.label]] += 1
    held_out = {groups[i] for i in best_test_groups(counts, fraction, seed, trials=200).tolist()}
    train = [item for group, item in zip(group_of, items) if group not in held_out]
    val = [item for group, item in zip(group_of, items) if group in held_out]
    return train, val


def describe_validation(train_items: Sequence[ListItem], val_items: Sequence[ListItem]) -> str:
    speakers = sorted({item.speaker for item in val_items if item.speaker})
    if not speakers:
        return f"validation: {len(val_items)} clips held out of the training list (the list names no speakers)"
    shown = ", ".join(speakers[:8]) + (", ..." if len(speakers) > 8 else "")
    shared = {item.speaker for item in train_items} & set(speakers)
    return (f"validation: {len(val_items)} clips of {len(speakers)} speakers ({shown}) held out of the training "
            f"list" + (f"; {len(shared)} of them also train" if shared else ", none of them in training"))


def load_augment(path: Optional[str], sample_rate: int):
    if not path:
        return None
    from mser.data.augment import load_augmentation_config
    return load_augmentation_config(path, sample_rate)



"""The on-disk checkpoint format, owned here and nowhere else.

A checkpoint is a directory:
    model.pth        the model's state_dict (weights only)
    featurizer.pth   the featurizer's state (e.g. the CustomFeatures scaler), when it has one
    speaker_norm.pth the training features' global mean and variance, when the model was trained
                     with speaker normalisation
    optimizer.pth    optimizer, scheduler and AMP-scaler state (absent in an export)
    model.state      JSON: epoch (epochs completed, from 1), metrics, step, model, featurizer
    config.yml       the full config the model was trained with
    label_list.txt   the label names, one per line, in index order
    + any extra files (e.g. the CustomFeatures scaler), copied in by name

It is written to a temporary directory and renamed into place, so a crash leaves either the old
checkpoint or the new one, never a half-written one. `Checkpointer` saves and recovers a
name -> object dict into this layout (the trainer's model, optimizer, scheduler, scaler, random
states and epoch counter); a new entry, e.g. EMA weights, becomes a key of optimizer.pth.
"""
import glob
import json
import os
import re
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional

import torch

from mser.config import save_config
from mser.data.lists import read_label_list, write_label_list
from mser.errors import CheckpointError, ConfigError, DataError

MODEL_FILE = "model.pth"
FEATURIZER_FILE = "featurizer.pth"
SPEAKER_NORM_FILE = "speaker_norm.pth"
OPTIMIZER_FILE = "optimizer.pth"
STATE_FILE = "model.state"
CONFIG_FILE = "config.yml"
LABEL_FILE = "label_list.txt"
STAGING_MARK = ".tmp-"   # `.<name>.tmp-XXXX`: a checkpoint being written or deleted
PROCESS_STARTED = time.time()


def save_checkpoint(directory: str, model_state: Dict[str, torch.Tensor], state: Dict[str, Any],
                    config: Dict[str, Any], labels: List[str],
                    training_state: Optional[Dict[str, Any]] = None,
                    featurizer_state: Optional[Dict[str, torch.Tensor]] = None,
                    extra_files: Optional[Dict[str, str]] = None,
                    speaker_norm_state: Optional[Dict[str, torch.Tensor]] = None) -> str:
    """Write a checkpoint directory atomically; returns its path."""
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(parent)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}{STAGING_MARK}", dir=parent)
    try:
        torch.save(model_state, os.path.join(staging, MODEL_FILE))
        if featurizer_state:
            torch.save(featurizer_state, os.path.join(staging, FEATURIZER_FILE))
        if speaker_norm_state:
            torch.save(speaker_norm_state, os.path.join(staging, SPEAKER_NORM_FILE))
        if training_state is not None:
            torch.save(training_state, os.path.join(staging, OPTIMIZER_FILE))
        with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
        save_config(config, os.path.join(staging, CONFIG_FILE))
        write_label_list(os.path.join(staging, LABEL_FILE), labels)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, os.path.join(staging, name))
        sync_directory(staging)
        replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def replace_directory(staging: str, directory: str) -> None:
    """Swap `staging` into `directory`. Between the two renames only `<dir>.old` exists, and
    `resolve` falls back to it, so a crash at any point leaves a complete checkpoint."""
    previous = directory + ".old"
    if os.path.isdir(previous) and not os.path.isdir(directory):
        os.rename(previous, directory)  # an earlier swap was cut short: its old copy is the checkpoint
    if os.path.isdir(previous):
        shutil.rmtree(previous)
    if os.path.isdir(directory):
        os.rename(directory, previous)
    os.rename(staging, directory)
    shutil.rmtree(previous, ignore_errors=True)


def remove_stale_staging(parent: str) -> None:
    """Delete what a killed process left half-written or half-deleted (`.<name>.tmp-*`): those
    older than this process. A live process removes its own when it fails, so it never has any."""
    for path in glob.glob(os.path.join(glob.escape(parent), f".*{STAGING_MARK}*")):
        try:
            stale = os.path.getmtime(path) < PROCESS_STARTED
        except OSError:  # removed meanwhile
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)


def sync_directory(directory: str) -> None:
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            os.fsync(f.fileno())


def resolve(directory: str) -> str:
    """The checkpoint directory to read: `directory`, or its `.old` twin after an interrupted swap."""
    if os.path.isfile(os.path.join(directory, MODEL_FILE)):
        return directory
    previous = directory.rstrip("/") + ".old"
    if os.path.isfile(os.path.join(previous, MODEL_FILE)):
        return previous
    if not os.path.exists(directory):
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    raise CheckpointError(f"{directory} is not a checkpoint directory: it has no {MODEL_FILE}")


def load_state(directory: str) -> Dict[str, Any]:
    path = os.path.join(resolve(directory), STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def load_weights(directory: str, map_location="cpu") -> Dict[str, torch.Tensor]:
    return load_tensor_file(os.path.join(resolve(directory), MODEL_FILE), map_location)


def load_featurizer_state(directory: str, map_location="cpu") -> Optional[Dict[str, torch.Tensor]]:
    path = os.path.join(resolve(directory), FEATURIZER_FILE)
    return load_tensor_file(path, map_location) if os.path.isfile(path) else None


def load_speaker_norm_state(directory: str, map_location="cpu") -> Optional[Dict[str, torch.Tensor]]:
    """The global feature statistics of a model trained with speaker normalisation, else None."""
    path = os.path.join(resolve(directory), SPEAKER_NORM_FILE)
    return load_tensor_file(path, map_location) if os.path.isfile(path) else None


def load_training_state(directory: str, map_location="cpu") -> Dict[str, Any]:
    path = os.path.join(resolve(directory), OPTIMIZER_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{directory} holds no optimizer state ({OPTIMIZER_FILE}), so it cannot "
                              f"be resumed; use --pretrained_model to start from its weights")
    return load_tensor_file(path, map_location)


def load_tensor_file(path: str, map_location) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot load {path}: {str(e).splitlines()[0]}") from None


def load_config_and_labels(directory: str):
    """(config, label names) stored in a checkpoint directory."""
    from mser.config import load_config
    directory = resolve(directory)
    try:
        config = load_config(os.path.join(directory, CONFIG_FILE))
        labels = read_label_list(os.path.join(directory, LABEL_FILE))
    except (ConfigError, DataError) as e:
        raise CheckpointError(f"checkpoint {directory} is incomplete: {e}") from None
    return config, labels


def epoch_directories(model_dir: str) -> List[str]:
    """`epoch_N` directories under a model directory, oldest first."""
    found = []
    for path in glob.glob(os.path.join(model_dir, "epoch_*")):
        match = re.fullmatch(r"epoch_(\d+)", os.path.basename(path))
        if match and os.path.isdir(path):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def prune_epochs(model_dir: str, keep: int, keep_best: int = 0) -> None:
    """Delete epoch_N checkpoints but the newest `keep` (keep <= 0 keeps them all) and the
    `keep_best` with the best validation score (model.state: val[best_metric]; the earlier epoch
    wins a tie)."""
    if keep <= 0:
        return
    epochs = epoch_directories(model_dir)
    kept = set(epochs[-keep:]) | set(best_epochs(epochs, keep_best))
    for path in epochs:
        if path not in kept:
            remove_checkpoint(path)


def best_epochs(paths: List[str], count: int) -> List[str]:
    """The `count` checkpoints of `paths` with the highest validation score, best first."""
    if count <= 0:
        return []
    scored = []
    for path in paths:
        try:
            state = load_state(path)
        except CheckpointError:
            continue
        score = state.get("val", {}).get(state.get("best_metric", ""))
        if score is not None:
            scored.append((-float(score), int(state.get("epoch", 0)), path))
    return [path for *_, path in sorted(scored)[:count]]


def remove_checkpoint(path: str) -> None:
    """Delete a checkpoint directory; renamed first, so that a kill during the deletion never
    leaves a half-deleted checkpoint under its own name."""
    parent = os.path.dirname(os.path.abspath(path))
    doomed = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}{STAGING_MARK}", dir=parent)
    os.rename(path, os.path.join(doomed, "deleted"))
    shutil.rmtree(doomed, ignore_errors=True)


def checkpoint_directories(model_dir: str) -> List[str]:
    """The checkpoints in a model folder (any sub-folder with model weights, `.old` twins too), sorted."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(os.path.join(model_dir, name) for name in os.listdir(model_dir)
                  if os.path.isfile(os.path.join(model_dir, name, MODEL_FILE)))


class Checkpointer:
    """Saves and recovers a name -> object dict, as 3D-Speaker's Checkpointer does: each object has
    `state_dict()` and `load_state_dict(state)`; adding one (e.g. EMA weights) is one entry.

    Where an entry lives in the checkpoint directory is fixed by its name, so folders written
    before the Checkpointer load unchanged: `model` -> model.pth, `featurizer` -> featurizer.pth,
    `speaker_norm` -> speaker_norm.pth (each left out when its state is empty), `counter` ->
    model.state (JSON, with the `info` given to `save`); every other entry (optimizer,
    scheduler, scaler, rng, ...) is a key of optimizer.pth, written when there is any.
    An entry that is None is skipped.
    """

    TENSOR_FILES = {"model": MODEL_FILE, "featurizer": FEATURIZER_FILE, "speaker_norm": SPEAKER_NORM_FILE}
    COUNTER = "counter"

    def __init__(self, recoverables: Optional[Dict[str, Any]] = None):
        self.recoverables: Dict[str, Any] = {}
        for name, obj in (recoverables or {}).items():
            self.add(name, obj)

    def add(self, name: str, obj: Any) -> None:
        """Save and recover `obj` under `name` (None: leave it out)."""
        if obj is not None:
            self.recoverables[name] = obj

    def training_entries(self) -> List[str]:
        return [name for name in self.recoverables if name not in self.TENSOR_FILES and name != self.COUNTER]

    def save(self, directory: str, config: Dict[str, Any], labels: List[str],
             info: Optional[Dict[str, Any]] = None) -> str:
        """Write every entry into the checkpoint `directory` atomically; returns its path."""
        states = {name: obj.state_dict() for name, obj in self.recoverables.items()}
        counter = states.get(self.COUNTER, {})
        training = {name: states[name] for name in self.training_entries()}
        return save_checkpoint(directory, states.get("model", {}), {**counter, **(info or {})}, config, labels,
                               training_state=training or None,
                               featurizer_state=states.get("featurizer") or None,
                               speaker_norm_state=states.get("speaker_norm") or None)

    def recover(self, directory: str, map_location="cpu") -> Dict[str, Any]:
        """Load every entry from `directory`; returns the raw training state (optimizer.pth), {}
        when no entry lives there. An entry with no saved state (an empty dict, as a disabled AMP
        scaler saves) keeps its own; a missing model or training file raises CheckpointError."""
        for name, file_name in self.TENSOR_FILES.items():
            if name in self.recoverables:
                path = os.path.join(resolve(directory), file_name)
                if name == "model" or os.path.isfile(path):
                    self.recoverables[name].load_state_dict(load_tensor_file(path, map_location))
        if self.COUNTER in self.recoverables:
            self.recoverables[self.COUNTER].load_state_dict(load_state(directory))
        if not self.training_entries():
            return {}
        training = load_training_state(directory, map_location)
        for name in self.training_entries():
            if training.get(name):
                self.recoverables[name].load_state_dict(training[name])
        return training

"""Ensembles: several trained models, each on its own features, deciding together.

An ensemble is a folder holding `ensemble.yml`, which names member checkpoint directories (paths
relative to the folder), how their class probabilities are combined (`combine`: "mean", the
arithmetic mean and the default, or "geometric", the normalised geometric mean, under which a class
any one member rules out stays unlikely) and, optionally, the test-time views its predictor and
eval.py run unless told otherwise (`views`, mser.views; a ViewPredictor over the ensemble). Each
member keeps its own config, featurizer, speaker normalisation and weights. Models on different
features (functionals such as eGeMAPS and ComParE, frame-level Fbank+prosody) make different
mistakes, so together they are right more often than any one of them (README, Results).

    train.py --configs configs/ensemble.yml           # trains every member, then writes the manifest
    eval.py --resume_model models/Ensemble            # scores the combined probabilities
    infer.py --model_path models/Ensemble --audio_path clip.wav
    MSERPredictor(model_path="models/Ensemble")       # an EnsemblePredictor (a ViewPredictor over
                                                      # one when the folder names views)

The members must share the label list and the sample rate, so that one decoded clip serves them
all; a member trained with dB normalisation levels its own copy of it (member_waveforms).
"""
import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import yaml

from mser.audio import normalize_db
from mser.errors import CheckpointError, ConfigError
from mser.composite import CompositePredictor
from mser.features.opensmile_runs import shared_runs
from mser.predictor import MSERPredictor

MANIFEST_FILE = "ensemble.yml"
COMBINE_RULES = ("mean", "geometric")
TINY_PROBABILITY = 1e-12   # the geometric mean's floor: a member's exact 0 does not zero a class alone
ENSEMBLE_DIR = "Ensemble"
# dataset_conf.dataset keys that decide the waveform a member sees; dB normalisation may differ, since
# the ensemble loads the audio without it and each member levels its own copy (member_waveforms)
LOADING_KEYS = ("sample_rate",)


def is_ensemble(path: Optional[str]) -> bool:
    """Whether `path` is an ensemble folder (holds ensemble.yml)."""
    return bool(path) and os.path.isfile(os.path.join(path, MANIFEST_FILE))


def write_manifest(directory: str, members: Sequence[str], combine: str = "mean", views: Sequence[str] = ()) -> str:
    """Write `directory`/ensemble.yml naming `members` (checkpoint directories), the `combine` rule
    and the test-time `views` its predictor runs by default (mser.views; none when empty), after
    checking that they exist and agree on labels and audio loading. Written atomically. Returns its path."""
    from mser.views import check_views
    if len(members) < 2:
        raise ConfigError(f"an ensemble needs at least two members, got {len(members)}")
    check_combine(combine, "combine")
    views = check_views(views)
    check_members([os.path.abspath(m) for m in members])
    os.makedirs(directory, exist_ok=True)
    relative = [os.path.relpath(os.path.abspath(m), os.path.abspath(directory)) for m in members]
    path = os.path.join(directory, MANIFEST_FILE)
    staging = path + ".tmp"
    with open(staging, "w", encoding="utf-8") as f:
        yaml.safe_dump({"members": relative, "combine": combine, **({"views": views} if views else {})}, f,
                       sort_keys=False)
    os.replace(staging, path)
    return path


def check_combine(rule: Any, where: str) -> str:
    if rule not in COMBINE_RULES:
        raise ConfigError(f"{where} must be one of {', '.join(COMBINE_RULES)}, got {rule!r}")
    return rule


def read_manifest(directory: str) -> Dict[str, Any]:
    path = os.path.join(directory, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"cannot read the ensemble manifest {path}: {e}") from None
    return manifest if isinstance(manifest, dict) else {}


def read_combine(directory: str) -> str:
    """How an ensemble folder combines its members' probabilities ("mean" when the manifest, written
    before the choice existed, does not say)."""
    rule = read_manifest(directory).get("combine", "mean")
    if rule not in COMBINE_RULES:
        raise CheckpointError(f"{os.path.join(directory, MANIFEST_FILE)}: combine must be one of "
                              f"{', '.join(COMBINE_RULES)}, got {rule!r}")
    return rule


def read_views(directory: str) -> List[str]:
    """The test-time views an ensemble folder's predictor runs unless told otherwise (mser.views;
    none when the manifest does not say)."""
    from mser.views import check_views
    views = read_manifest(directory).get("views") or []
    try:
        return check_views(views)
    except ConfigError as e:
        raise CheckpointError(f"{os.path.join(directory, MANIFEST_FILE)}: {e}") from None


def read_members(directory: str) -> List[str]:
    """The member checkpoint directories of an ensemble folder, as paths usable from here."""
    path = os.path.join(directory, MANIFEST_FILE)
    members = read_manifest(directory).get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members) or len(members) < 2:
        raise CheckpointError(f"{path} must hold 'members:', a list of at least two checkpoint directories")
    resolved = [os.path.normpath(os.path.join(directory, m)) for m in members]
    missing = [m for m in resolved if not os.path.isdir(m)]
    if missing:
        raise CheckpointError(f"ensemble {directory}: member checkpoint {missing[0]} not found")
    return resolved


def check_members(members: Sequence[str]) -> List[str]:
    """The members' shared labels; CheckpointError when labels or audio loading differ."""
    from mser import checkpoint
    first_config, labels = checkpoint.load_config_and_labels(members[0])
    first_loading = loading_settings(first_config)
    for member in members[1:]:
        config, member_labels = checkpoint.load_config_and_labels(member)
        if member_labels != labels:
            raise CheckpointError(f"ensemble members disagree on the labels: {members[0]} has {labels}, "
                                  f"{member} has {member_labels}")
        if loading_settings(config) != first_loading:
            raise CheckpointError(f"ensemble members load audio differently: {members[0]} {first_loading}, "
                                  f"{member} {loading_settings(config)}")
    return labels


def loading_settings(config: Dict[str, Any]) -> Dict[str, Any]:
    dataset = config["dataset_conf"]["dataset"]
    return {key: dataset[key] for key in LOADING_KEYS}


# ---- training ------------------------------------------------------------------------------

MEMBER_KEYS = {"configs", "data_augment_configs", "overwrites"}


def is_ensemble_config(path: Optional[str]) -> bool:
    """Whether the YAML at `path` (a file or a shipped config's name) describes an ensemble."""
    from mser.config import read_yaml, resolve_config_path
    if not path:
        return False
    try:
        resolved = resolve_config_path(path)
    except ConfigError:
        return False   # the trainer reports the missing file
    content = read_yaml(resolved)
    return isinstance(content, dict) and "ensemble" in content


ENSEMBLE_KEYS = {"members", "combine", "views", "member_checkpoint"}
# which of each member's checkpoints the ensemble folder names: the epoch its validation slice
# picked, or the last epoch (a fixed recipe; picking on a few voices is noisy, README: Results)
MEMBER_CHECKPOINTS = {"best": "best_model", "last": "last_model"}


@dataclasses.dataclass(frozen=True)
class EnsembleRecipe:
    """An ensemble YAML, read and checked once: the member specs ({configs, data_augment_configs,
    overwrites}, file names resolved against the YAML's own folder or naming shipped configs), the
    `combine` rule ("mean" when it does not say), the test-time `views` (none) and the member
    checkpoint folder ('best_model', or 'last_model' for `member_checkpoint: last`)."""

    members: List[Dict[str, Optional[str]]]
    combine: str
    views: List[str]
    member_checkpoint: str


def read_ensemble_recipe(path: str) -> EnsembleRecipe:
    """The recipe of an ensemble YAML (a file or a shipped config's name); a ConfigError naming the
    file and the key for anything it cannot use."""
    from mser.config import resolve_config_path
    from mser.views import check_views
    resolved = resolve_config_path(path)
    section = ensemble_section(resolved)
    folder = os.path.dirname(os.path.abspath(resolved))
    members = [member_spec(resolved, folder, index, member) for index, member in enumerate(section["members"])]
    combine = check_combine(section.get("combine", "mean"), f"{resolved}: ensemble.combine")
    try:
        views = check_views(section.get("views") or [])
    except ConfigError as e:
        raise ConfigError(f"{resolved}: ensemble.views: {e}") from None
    choice = section.get("member_checkpoint", "best")
    if choice not in MEMBER_CHECKPOINTS:
        raise ConfigError(f"{resolved}: ensemble.member_checkpoint must be one of "
                          f"{', '.join(MEMBER_CHECKPOINTS)}, got {choice!r}")
    return EnsembleRecipe(members, combine, views, MEMBER_CHECKPOINTS[choice])


def ensemble_section(resolved: str) -> Dict[str, Any]:
    """The checked `ensemble:` mapping of an ensemble YAML file."""
    from mser.config import read_yaml
    content = read_yaml(resolved)
    section = content["ensemble"]
    extra = sorted(set(content) - {"ensemble"}) + (sorted(set(section) - ENSEMBLE_KEYS)
                                                   if isinstance(section, dict) else [])
    members = section.get("members") if isinstance(section, dict) else None
    if extra or not isinstance(members, list) or len(members) < 2:
        raise ConfigError(f"{resolved}: an ensemble config holds only "
                          f"'ensemble: {{members: [...], combine: ..., views: [...], member_checkpoint: ...}}' "
                          f"with at least two members" + (f" (unexpected: {', '.join(extra)})" if extra else ""))
    return section


def member_spec(path: str, folder: str, index: int, member: Any) -> Dict[str, Optional[str]]:
    if not isinstance(member, dict) or "configs" not in member or set(member) - MEMBER_KEYS:
        raise ConfigError(f"{path}: member {index + 1} must be a mapping with 'configs' and optionally "
                          f"'data_augment_configs' and 'overwrites', got {member!r}")
    spec = {key: (None if member.get(key) is None else str(member.get(key))) for key in sorted(MEMBER_KEYS)}
    for key in ("configs", "data_augment_configs"):
        if spec[key] and not os.path.isabs(spec[key]) and os.path.isfile(os.path.join(folder, spec[key])):
            spec[key] = os.path.join(folder, spec[key])
    return spec


def train(config_path: str, save_model_path: str = "models/", log_dir: str = "log/", use_gpu: bool = True,
          overwrites: Optional[str] = None, data_augment_configs: Optional[str] = None,
          overwrite: bool = False) -> str:
    """Train every member of an ensemble config in turn into <save_model_path>/Ensemble/<Model>_<Feature>/
    and write the manifest there. `overwrites` apply to every member (after the member's own);
    `data_augment_configs` to members that name none. Running the same command again after a kill
    skips the members that finished and resumes the one that did not; `overwrite` retrains all.
    Returns the ensemble folder."""
    from mser.trainer import MSERTrainer
    recipe = read_ensemble_recipe(config_path)
    specs = recipe.members
    directory = os.path.join(save_model_path, ENSEMBLE_DIR)

    def member_trainer(spec):
        return MSERTrainer(configs=spec["configs"], use_gpu=use_gpu,
                           overwrites=joined_overwrites(spec["overwrites"], overwrites),
                           data_augment_configs=spec["data_augment_configs"] or data_augment_configs)

    trainers = [member_trainer(spec) for spec in specs]   # every member's config is checked first
    names = [trainer.model_name for trainer in trainers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{config_path}: ensemble members must differ in model or features, got {', '.join(names)}")
    with shared_runs(trainer.featurizer for trainer in trainers) as paired:
        if paired:
            trainers[0].log(f"openSMILE runs shared: {', '.join(key[0] for key in sorted(paired, key=str))} "
                            f"functionals and contours come from one run over each clip")
        for number, spec in enumerate(specs, 1):
            train_member(member_trainer(spec), number, len(specs), directory, log_dir, overwrite)
    if trainers[0].context.is_main:
        write_manifest(directory, [os.path.join(directory, name, recipe.member_checkpoint) for name in names],
                       recipe.combine, recipe.views)
        trainers[0].log(f"ensemble of {len(names)} models written to {directory} "
                        f"(eval.py --resume_model {directory})")
    return directory


def train_member(trainer, number: int, count: int, directory: str, log_dir: str, overwrite: bool) -> None:
    """Train member `number` of `count` (built just before: seeded as a run of its config alone
    would be) into directory/<Model>_<Feature>, resuming it or skipping it when it finished."""
    member_dir = os.path.join(directory, trainer.model_name)
    resume = None if overwrite else resume_point(member_dir, trainer.config["train_conf"]["max_epoch"])
    if resume == "done":
        trainer.log(f"ensemble member {number}/{count}: {trainer.model_name} already trained "
                    f"({member_dir}; --overwrite trains it again)")
        return
    trainer.log(f"ensemble member {number}/{count}: {trainer.model_name}"
                + (f", resuming from {resume}" if resume else ""))
    # the test list is scored once, for the ensemble and each member, by eval.py
    trainer.train(save_model_path=directory, log_dir=log_dir, overwrite=overwrite, resume_model=resume, test=False)


def resume_point(member_dir: str, max_epoch: int) -> Optional[str]:
    """How an earlier run of a member left its folder: "done" (all epochs and a best model), the
    checkpoint to resume (an interrupted epoch first), or None (nothing there: train afresh)."""
    from mser import checkpoint
    from mser.trainer import INTERRUPTED
    last = os.path.join(member_dir, "last_model")
    interrupted = os.path.join(member_dir, INTERRUPTED)
    if os.path.isdir(interrupted):
        return interrupted
    if not os.path.isdir(last):
        return None
    if checkpoint.load_state(last)["epoch"] >= max_epoch and os.path.isdir(os.path.join(member_dir, "best_model")):
        return "done"
    return last


def joined_overwrites(*parts: Optional[str]) -> Optional[str]:
    text = ",".join(part for part in parts if part)
    return text or None


# ---- evaluation ----------------------------------------------------------------------------

def member_probabilities(member: str, list_path: Optional[str], use_gpu: bool):
    """(true labels, (clips, classes) probabilities, each row's speaker, the list used) of one member
    on a list, evaluated as eval.py evaluates a single checkpoint (speaker statistics from the list)."""
    import torch

    from mser.executor import Executor
    executor = Executor.from_config(member_config(member), use_gpu=use_gpu)
    list_path = list_path or executor.config["dataset_conf"]["test_list"]
    y_true, logits, speakers = executor.predict_checkpoint(member, list_path)
    return y_true.numpy(), torch.softmax(logits.float(), dim=1).numpy(), speakers, list_path


def member_config(member: str) -> Dict[str, Any]:
    from mser import checkpoint
    config, _ = checkpoint.load_config_and_labels(member)
    config["dataset_conf"]["label_list_path"] = os.path.join(checkpoint.resolve(member), checkpoint.LABEL_FILE)
    return config


def evaluate(directory: str, list_path: Optional[str] = None, use_gpu: bool = True,
             output_dir: Optional[str] = None) -> Dict[str, Any]:
    """eval.py for an ensemble folder: the metrics of the members' combined probabilities on
    `list_path` (default: the first member's test list). Writes metrics.json and the confusion
    matrix into `output_dir` when given; the metrics also carry each member's unweighted accuracy."""
    from mser.metrics import add_speaker_balanced, compute_metrics, write_evaluation
    members, combine = read_members(directory), read_combine(directory)
    labels = check_members(members)
    y_true, parts, member_scores = None, [], {}
    for member in members:
        y, probs, speakers, list_path = member_probabilities(member, list_path, use_gpu)
        if y_true is not None and (len(y) != len(y_true) or (y != y_true).any()):
            raise CheckpointError(f"ensemble member {member} could not use the same clips of {list_path} "
                                  f"as the others (the lines starting 'skipping' say which)")
        y_true = y
        parts.append(probs)
        member_scores[member] = compute_metrics(y.tolist(), probs.argmax(1).tolist(), labels)["unweighted_accuracy"]
    combined = combine_probabilities(parts, combine)
    metrics = compute_metrics(y_true.tolist(), combined.argmax(1).tolist(), labels)
    add_speaker_balanced(metrics, y_true, combined, speakers)
    metrics["members"], metrics["combine"] = member_scores, combine
    if output_dir:
        write_evaluation(metrics, labels, output_dir)
    return metrics


# ---- prediction ----------------------------------------------------------------------------

def combine_probabilities(parts: Sequence[np.ndarray], rule: str = "mean") -> np.ndarray:
    """The members' (clips, classes) probabilities combined by `rule` (COMBINE_RULES): their mean, or
    their geometric mean renormalised over the classes."""
    stacked = np.stack(parts).astype(np.float64)
    if rule == "geometric":
        combined = np.exp(np.log(np.maximum(stacked, TINY_PROBABILITY)).mean(axis=0))
        return (combined / combined.sum(axis=-1, keepdims=True)).astype(np.float32)
    return stacked.mean(axis=0).astype(np.float32)



# what each member keeps for itself; every other attribute of a predictor is shared
MEMBER_OWN = ("featurizer", "model", "speaker_norm", "onnx", "labels", "threshold")


class EnsemblePredictor(CompositePredictor):
    """MSERPredictor over an ensemble folder: every call runs each member and combines their class
    probabilities (the folder's `combine` rule). `MSERPredictor(model_path=<ensemble folder>)`
    returns one. Members keep their own speaker statistics (`speaker=`, per recording in
    predict_long; "whole" or "running" as for one model, each member over its own features).
    `embed` concatenates the members' embeddings. configs/overwrites are refused: each member runs
    on its stored config."""

    def __init__(self, model_path: str, configs: Optional[str] = None, use_gpu: bool = False,
                 threshold: float = 0.0, overwrites: Optional[str] = None, backend: str = "torch",
                 precision: str = "float32", *, views=None):
        from mser.views import refuse_views
        refuse_views(views)   # reached only when this class is built directly
        if configs or overwrites:
            raise ConfigError(f"{model_path} is an ensemble: its members run on their stored configs "
                              f"(--configs/--overwrites apply to a single checkpoint)")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must be a probability between 0 and 1, got {threshold}")
        paths = read_members(model_path)
        self.labels, self.combine = check_members(paths), read_combine(model_path)
        self.members = [MSERPredictor(path, use_gpu=use_gpu, backend=backend, precision=precision) for path in paths]
        self.parts = self.members
        # loading and windowing settings are the first member's (check_members: the same rate for all);
        # dB normalisation is each member's own (member_waveforms)
        self.__dict__.update({name: value for name, value in vars(self.members[0]).items()
                              if name not in MEMBER_OWN})
        self.clip = dataclasses.replace(self.members[0].clip, use_db_normalization=False)
        self.threshold = threshold
        self.featurizer = self.model = self.speaker_norm = self.onnx = None
        self.min_duration = max(member.min_duration for member in self.members)
        self.model_band_hz = max(member.model_band_hz for member in self.members)
        self.batch_size = min(member.batch_size for member in self.members)
        self.backend = "+".join(sorted({member.backend for member in self.members}))
        self.backend_note = ""

    def normalises_speakers(self) -> bool:
        return any(member.normalises_speakers() for member in self.members)

    def shared_work(self):
        """Members that analyse clips with one openSMILE set at two levels share each clip's run."""
        return shared_runs(member.featurizer for member in self.members)

    def part_waveforms(self, index: int, waveforms: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        return member_waveforms(self.members[index], waveforms)

    def combine_parts(self, probabilities: Sequence[np.ndarray]) -> np.ndarray:
        return combine_probabilities(probabilities, self.combine)

    def embeddings(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        with self.shared_work():
            return np.concatenate([member.embeddings(member_waveforms(member, waveforms))
                                   for member in self.members], axis=1)


def member_waveforms(member: MSERPredictor, waveforms: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    """Loaded clips (without dB normalisation) as `member` reads them: levelled to its target_dB
    when it was trained with dB normalisation."""
    if not member.clip.use_db_normalization:
        return waveforms
    return [normalize_db(samples, member.clip.target_db) for samples in waveforms]

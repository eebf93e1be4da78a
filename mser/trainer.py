"""MSERTrainer: trains any registered model on any featurizer from one YAML config.

The objects of a run are built by `mser.builder`, one epoch and evaluation run in
`mser.executor.Executor`; this module adds the epochs, checkpoints, resume and torchrun.
"""
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from mser import checkpoint, distributed
from mser.builder import (Amp, RunObjects, build_run, cpu_has_native_bf16, describe_validation,  # noqa: F401
                          load_augment, split_validation, steps_per_epoch)
from mser.config import format_config, load_config
from mser.data.augmented_copies import AugmentedCopies
from mser.data.lists import ListItem
from mser.errors import ConfigError
from mser.executor import (EpochStats, Executor, TrainState, capture_rng, deferred_interrupt,  # noqa: F401
                           evaluation_mode, preserved_rng, restore_rng, seed_everything)
from mser.factory import load_matching_weights
from mser.metrics import confusion_matrix_figure, format_report

BEST_METRICS = ("unweighted_accuracy", "accuracy", "macro_f1")
# Saved by Ctrl-C: the weights part-way through an epoch, apart from the complete epochs' checkpoints.
INTERRUPTED = "interrupted_model"
# The checkpoints of one run in a model directory (besides epoch_N).
RUN_CHECKPOINTS = ("last_model", "best_model", INTERRUPTED)


class MSERTrainer(Executor):
    """Train, validate, save and evaluate: the epochs, checkpoints and data-parallel processes
    around an `Executor` (which builds, runs one epoch and evaluates).

    >>> trainer = MSERTrainer(configs="configs/ecapa_tdnn.yml", use_gpu=False)
    >>> trainer.train(save_model_path="models/")
    >>> metrics = trainer.evaluate(resume_model="models/EcapaTdnn_Fbank/best_model")

    Evaluation alone needs no trainer: `Executor.from_config(...)` starts no process group and
    seeds nothing.
    """

    def __init__(self, configs, use_gpu: bool = True, overwrites: Optional[str] = None,
                 data_augment_configs: Optional[str] = None):
        config = load_config(configs, overwrites) if not isinstance(configs, dict) else configs
        context = distributed.setup(use_gpu)
        train_conf = config["train_conf"]
        if train_conf["best_metric"] not in BEST_METRICS:
            raise ConfigError(f"train_conf.best_metric must be one of {', '.join(BEST_METRICS)}, "
                              f"got {train_conf['best_metric']!r}")
        seed_everything(train_conf["seed"] + context.rank)   # before the featurizer and model draw from it
        super().__init__(config, context, data_augment_configs)
        self.pending_rng: Optional[Dict[str, Any]] = None   # a resumed run's random state, set before its first batch

    # ----------------------------------------------------------------- training

    def train(self, save_model_path: str = "models/", log_dir: str = "log/",
              resume_model: Optional[str] = None, pretrained_model: Optional[str] = None,
              overwrite: bool = False, test: bool = True) -> Dict[str, Any]:
        """Train for `train_conf.max_epoch` epochs; returns the best validation metrics and the
        test metrics of the best model. With `test` False the test list is neither featurised nor
        scored (an ensemble's members: eval.py scores the ensemble and each member).

        A fresh run (no `resume_model`) into a folder holding another run's checkpoints is refused,
        unless `overwrite`, which deletes them first. Ctrl-C saves `interrupted_model` (the weights
        part-way through an epoch, with the batches done) and re-raises KeyboardInterrupt."""
        train_items, val_items, test_items = self.read_lists()
        test_items = test_items if test else []
        copies = self.augmented_copies(train_items) if self.uses_cache else None
        # a wrong model or optimizer argument fails now, before any features are computed or folder made;
        # the schedule counts the steps of an epoch with its augmented copies
        run = build_run(self.config, self.featurizer, self.labels, with_copies(train_items, copies), self.device,
                        self.context.world_size, self.log)
        if not val_items and run.scheduler_unit == "metric":
            raise ConfigError(f"optimizer_conf.scheduler {self.config['optimizer_conf']['scheduler']} follows the "
                              f"validation score; give a validation slice (dataset_conf.val_fraction > 0 or val_list)")
        self.model, self.speaker_adversary = run.model, run.speaker_adversary
        if self.speaker_adversary is not None:
            self.log(f"speaker adversary: weight {self.speaker_adversary.weight:g} over "
                     f"{len(self.speaker_adversary.speakers)} training speakers and sessions")
        if self.copy_consistency is not None:
            self.log(f"copy consistency: weight {self.copy_consistency.weight:g}; each training item is batched "
                     f"beside one of its clip's {copies.copies} augmented copies (or the clip) and their "
                     f"predictions pushed to agree; an epoch's clips count both")
        self.model_dir = os.path.join(save_model_path, self.model_name)
        self.prepare_model_dir(resumed=bool(resume_model), overwrite=overwrite)
        train_items = self.prepare_training_data(train_items, copies, test=test)
        self.log_setup(run, train_items, val_items, test_items)
        if resume_model:
            self.resume(resume_model, run.optimizer, run.scheduler, run.amp)
        elif pretrained_model:
            self.load_pretrained(pretrained_model)
        train_model = self.wrap_for_training(run.model)
        writer = self.log_writer(log_dir)
        self.spec_augment = self.build_spec_augment()
        train_dataset = self.dataset(train_items, train=True)
        try:
            self.run_epochs(run, train_model, train_dataset, val_items, test_items, writer)
        except KeyboardInterrupt:
            self.save_on_interrupt(run.optimizer, run.scheduler, run.amp)
            raise
        finally:
            if writer is not None:
                writer.close()
        distributed.barrier(self.context)
        result = self.final_test(test_items) if self.context.is_main and test else {}
        distributed.cleanup(self.context)
        return result

    def run_epochs(self, run: RunObjects, train_model: nn.Module, train_dataset, val_items, test_items,
                   writer) -> None:
        """The epochs left, each trained then validated and saved (`end_of_epoch`)."""
        self.rng_snapshot = capture_rng(self.device)
        if self.pending_rng is not None:  # the resumed run's random streams, as they were at its save
            restore_rng(self.pending_rng, self.device)
            self.rng_snapshot, self.pending_rng = self.pending_rng, None
        step_scheduler = run.scheduler if run.scheduler_unit == "step" else None
        for epoch in range(self.state.epoch + 1, self.config["train_conf"]["max_epoch"] + 1):
            if run.optimizer is None:   # a model that learns by fitting (build_run)
                stats = self.fit_epoch(epoch, run.model, train_dataset, run.criterion)
            else:
                stats = self.train_epoch(epoch, train_model, train_dataset, run.criterion, run.optimizer,
                                         step_scheduler, run.amp, writer)
            self.end_of_epoch(epoch, stats, val_items, test_items, run.criterion, run.optimizer,
                              run.scheduler, run.scheduler_unit, run.amp, writer)

    def prepare_training_data(self, train_items: Sequence[ListItem], copies: Optional[AugmentedCopies] = None,
                              test: bool = True) -> List[ListItem]:
        """Feature caches (when used) and the speaker statistics of the training list; returns the
        training items, augmented `copies` included."""
        if self.uses_cache:
            self.prepare_caches(copies=copies, test=test)
            self.note_cache_and_augmentation()
            train_items = with_copies(train_items, copies)
        self.fit_speaker_norm(train_items)
        return list(train_items)

    def log_setup(self, run: RunObjects, train_items, val_items, test_items) -> None:
        tested = f"{len(test_items)} test clips" if test_items else "the test list left to eval.py"
        self.log(f"{len(train_items)} training, {len(val_items)} validation clips, {tested}; "
                 f"{len(self.labels)} labels: {', '.join(self.labels)}")
        self.log(format_config(self.config))
        self.log(self.context.describe())
        amp = run.amp
        self.log(f"mixed precision: {str(amp.dtype).replace('torch.', '')} autocast on {self.device.type}"
                 if amp.enabled else "mixed precision: off (float32)")
        self.print_summary(run.model)

    def prepare_model_dir(self, resumed: bool, overwrite: bool) -> None:
        """Refuse a fresh run into a folder that holds another run's checkpoints (its epoch_N would
        survive beside this run's, its best_model be overwritten), or delete them with `overwrite`;
        then make the folder, so that an unwritable save path fails before any features are computed."""
        if not self.context.is_main:
            return
        existing = checkpoint.checkpoint_directories(self.model_dir)
        if existing and not resumed:
            if not overwrite:
                names = ", ".join(os.path.basename(path) for path in existing[:4])
                names += ", ..." if len(existing) > 4 else ""
                raise ConfigError(f"{self.model_dir} already holds the checkpoints of a run ({names}): continue it "
                                  f"with --resume_model {os.path.join(self.model_dir, 'last_model')}, train into "
                                  f"another --save_model_path, or pass --overwrite to delete them")
            for path in existing:
                checkpoint.remove_checkpoint(path)
            self.log(f"--overwrite: deleted {len(existing)} checkpoints of an earlier run in {self.model_dir}")
        os.makedirs(self.model_dir, exist_ok=True)

    def steps_per_epoch(self, num_train: int) -> int:
        return steps_per_epoch(self.config, num_train, self.context.world_size)

    def wrap_for_training(self, model: nn.Module) -> nn.Module:
        wrapped = model
        if self.config["train_conf"]["use_compile"]:
            wrapped = torch.compile(wrapped)
        if self.context.distributed:
            device_ids = [self.context.local_rank] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=device_ids)
        return wrapped

    def end_of_epoch(self, epoch, stats: EpochStats, val_items, test_items, criterion, optimizer,
                     scheduler, scheduler_unit, amp, writer) -> Optional[Dict[str, Any]]:
        val_metrics = None
        if self.context.is_main:
            val_metrics = self.evaluate_items(val_items, criterion) if val_items else None
            step = f"lr {optimizer.param_groups[0]['lr']:.2e}" if optimizer is not None else "fitted"
            validation = validation_summary(val_metrics) if val_items else "no validation"
            self.log(f"epoch {epoch}/{self.config['train_conf']['max_epoch']} | loss {stats.loss:.4f} "
                     f"acc {stats.accuracy:.4f} | {validation} | {step} | "
                     f"{stats.clips / max(stats.seconds, 1e-9):.1f} clips/s, {stats.seconds:.1f} s"
                     + (f" | {stats.skipped} clips skipped" if stats.skipped else ""))
            if writer is not None:
                self.write_scalars(writer, epoch, stats, val_metrics, test_items, criterion)
        score = self.broadcast_score(val_metrics)
        rng_states = distributed.gather_objects(capture_rng(self.device), self.context)
        with deferred_interrupt():  # the epoch counts as done once its checkpoints are all written
            if scheduler is not None and scheduler_unit == "epoch":
                scheduler.step()
            elif scheduler is not None and scheduler_unit == "metric":
                scheduler.step(score)
            self.state.epoch, self.state.batches_done = epoch, 0
            if self.context.is_main:
                self.save_epoch(epoch, score, val_metrics, optimizer, scheduler, amp, rng_states,
                                picked=bool(val_items))
        distributed.barrier(self.context)
        return val_metrics

    def broadcast_score(self, val_metrics) -> float:
        local = val_metrics[self.config["train_conf"]["best_metric"]] if val_metrics else 0.0
        return distributed.sum_across_ranks([local], self.context)[0]

    def write_scalars(self, writer, epoch, stats: EpochStats, val_metrics, test_items, criterion) -> None:
        writer.add_scalar("Train/Loss", stats.loss, epoch)
        writer.add_scalar("Train/Accuracy", stats.accuracy, epoch)
        splits = [("Val", val_metrics)] if val_metrics is not None else []
        # opt-in: it costs time, and draws nothing from training
        if self.config["train_conf"]["test_every_epoch"] and test_items:
            splits.append(("Test", self.evaluate_items(test_items, criterion)))
        for split, metrics in splits:
            writer.add_scalar(f"{split}/Loss", metrics["loss"], epoch)
            writer.add_scalar(f"{split}/Accuracy", metrics["accuracy"], epoch)
            writer.add_scalar(f"{split}/UA", metrics["unweighted_accuracy"], epoch)
            writer.add_scalar(f"{split}/MacroF1", metrics["macro_f1"], epoch)
        if val_metrics is not None:
            figure = confusion_matrix_figure(val_metrics["confusion_matrix"], self.labels, f"validation, epoch {epoch}")
            writer.add_image("Val/ConfusionMatrix", figure_to_array(figure), epoch)

    # ----------------------------------------------------------------- checkpoints

    def checkpoint_info(self, metrics: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """What model.state records beside the epoch counter: validation metrics, model, features."""
        summary = {k: metrics[k] for k in ("loss", "accuracy", "unweighted_accuracy", "macro_f1")} if metrics else {}
        if metrics and "speaker_balanced" in metrics:
            summary["speaker_balanced_unweighted_accuracy"] = metrics["speaker_balanced"]["unweighted_accuracy"]
        return {"best_metric": self.config["train_conf"]["best_metric"],
                "val": summary, "model": self.config["model_conf"]["model"],
                "feature_method": self.config["preprocess_conf"]["feature_method"],
                "num_class": len(self.labels), "mser_version": mser_version()}

    def checkpointer(self, optimizer=None, scheduler=None, amp: "Amp" = None,
                     rng_states: Optional[List[Dict[str, Any]]] = None) -> checkpoint.Checkpointer:
        """What a checkpoint holds, by name: the model (its weights checked on load), the featurizer's
        fitted state, the speaker statistics, the epoch counter and, with `optimizer`, everything a
        resume needs (optimizer, scheduler, AMP scaler, each process's random state). Adding an
        object (e.g. EMA weights) is one entry."""
        entries = {"model": CheckedWeights(self.model),
                   "featurizer": self.featurizer if self.featurizer.clip_level else None,
                   "speaker_norm": self.speaker_norm,
                   "counter": self.state}
        if optimizer is not None:
            entries.update(optimizer=optimizer, scheduler=scheduler if scheduler is not None else NoState(),
                           scaler=amp if amp is not None else NoState(),
                           rng=RandomStates(rng_states or [capture_rng(self.device)], self.context.rank),
                           speaker_adversary=self.speaker_adversary)
        return checkpoint.Checkpointer(entries)

    def save(self, name: str, metrics, optimizer=None, scheduler=None, amp: "Amp" = None,
             rng_states: Optional[List[Dict[str, Any]]] = None) -> str:
        """A checkpoint of `checkpointer`'s objects under the model folder."""
        return self.checkpointer(optimizer, scheduler, amp, rng_states).save(
            os.path.join(self.model_dir, name), self.config, self.labels, self.checkpoint_info(metrics))

    def save_epoch(self, epoch: int, score: float, val_metrics, optimizer, scheduler, amp, rng_states,
                   picked: bool = True) -> None:
        """epoch_N, then best_model when the score improved (every epoch when nothing is `picked`:
        no validation), then last_model: the resume point is written last, so a kill between two
        saves leaves last_model at the epoch before, whose recorded best is saved, and a resume from
        it redoes the epoch."""
        improved = score > self.state.best_score or not picked
        if improved:
            self.state.best_score, self.state.best_epoch = score, epoch
        self.save(f"epoch_{epoch}", val_metrics, optimizer, scheduler, amp, rng_states)
        if improved:
            self.save("best_model", val_metrics, optimizer, scheduler, amp, rng_states)
            self.log((f"best model so far (val {self.config['train_conf']['best_metric']} {score:.4f})" if picked
                      else f"epoch {epoch}'s model (no validation)")
                     + f" saved to {os.path.join(self.model_dir, 'best_model')}")
        self.save("last_model", val_metrics, optimizer, scheduler, amp, rng_states)
        interrupted = os.path.join(self.model_dir, INTERRUPTED)
        if os.path.isdir(interrupted):  # superseded by this complete epoch
            checkpoint.remove_checkpoint(interrupted)
        train_conf = self.config["train_conf"]
        checkpoint.prune_epochs(self.model_dir, train_conf["keep_last_epochs"], keep_best=train_conf["keep_best"])

    def save_on_interrupt(self, optimizer, scheduler, amp) -> None:
        """Ctrl-C: the weights part-way through an epoch go to interrupted_model, with the batches
        of the epoch done; last_model keeps the last complete epoch."""
        if not self.context.is_main or self.model is None or not hasattr(self, "model_dir"):
            return
        path = self.save(INTERRUPTED, None, optimizer, scheduler, amp, [self.rng_snapshot or capture_rng(self.device)])
        self.log(f"interrupted: saved {path} after {self.state.epoch} complete epochs and {self.state.batches_done} "
                 f"batches of epoch {self.state.epoch + 1}; continue with --resume_model {path}")

    def resume(self, directory: str, optimizer, scheduler, amp: "Amp") -> None:
        """Continue exactly where a checkpoint left off: weights, optimizer, schedule, epoch, best,
        random state; from an interrupted checkpoint, at the batch after the last one it did."""
        checkpoint.load_state(directory)
        self.check_compatible(directory)
        entries = self.checkpointer(optimizer, scheduler, amp)
        # the featurizer and speaker statistics come from the training list, as in a fresh run
        for name in ("featurizer", "speaker_norm"):
            entries.recoverables.pop(name, None)
        entries.recoverables["model"].directory = directory
        training = entries.recover(directory, self.device)
        self.pending_rng = saved_rng_of_rank(training, self.context.rank)
        self.resume_batches, self.state.batches_done = self.state.batches_done, 0
        part = f" and {self.resume_batches} batches of epoch {self.state.epoch + 1}" if self.resume_batches else ""
        self.log(f"resumed from {directory}: {self.state.epoch} epochs done{part}, step {self.state.step}, "
                 f"best val score {self.state.best_score:.4f} at epoch {self.state.best_epoch}")

    def load_pretrained(self, directory: str) -> None:
        """Load every weight whose name and shape match; report what was skipped."""
        weights = checkpoint.load_weights(directory, self.device)
        own = self.model.state_dict()
        matching = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(weights) - set(matching))
        missing = sorted(set(own) - set(matching))
        self.model.load_state_dict(matching, strict=False)
        self.log(f"loaded {len(matching)} tensors from {directory}; skipped {len(skipped)} that do not fit"
                 + (f" ({', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''})" if skipped else "")
                 + (f"; {len(missing)} left at their initial values" if missing else ""))

    def final_test(self, test_items: Sequence[ListItem]) -> Dict[str, Any]:
        """Test the best model; after a resume whose best epoch was saved elsewhere, the last one."""
        best_dir = os.path.join(self.model_dir, "best_model")
        which = f"best model (epoch {self.state.best_epoch})"
        if os.path.isdir(best_dir):
            load_matching_weights(self.model, checkpoint.load_weights(best_dir, self.device), best_dir)
        else:
            which = f"last model (epoch {self.state.epoch}; no best_model in {self.model_dir})"
        test_metrics = self.evaluate_items(test_items)
        self.log(f"test set, {which}:\n{format_report(test_metrics)}")
        return {"best_epoch": self.state.best_epoch, "best_val_score": self.state.best_score,
                "test": test_metrics}

    def print_summary(self, model: nn.Module) -> None:
        if not self.context.is_main:
            return
        import torchinfo
        samples = int(self.clip.max_duration * self.clip.sample_rate)
        with torch.no_grad(), preserved_rng(self.device), evaluation_mode(self.featurizer):
            features, _ = self.featurizer(torch.zeros(1, samples, device=self.device))
            self.log(str(torchinfo.summary(model, input_data=[features], verbose=0, depth=2, device=self.device)))

    def log_writer(self, log_dir: str):
        if not self.context.is_main or not log_dir:
            return None
        from visualdl import LogWriter
        return LogWriter(logdir=os.path.join(log_dir, self.model_name))


def with_copies(train_items: Sequence[ListItem], copies: Optional[AugmentedCopies]) -> List[ListItem]:
    """The training items and, when there are any, their augmented copies' items."""
    return [*train_items, *(copies.items if copies is not None else [])]


def validation_summary(metrics: Dict[str, Any]) -> str:
    return (f"val loss {metrics['loss']:.4f} acc {metrics['accuracy']:.4f} UA {metrics['unweighted_accuracy']:.4f} "
            f"F1 {metrics['macro_f1']:.4f}")


def figure_to_array(figure) -> np.ndarray:
    import matplotlib.pyplot as plt
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(figure)
    return image


def saved_rng_of_rank(training_state: Dict[str, Any], rank: int) -> Optional[Dict[str, Any]]:
    """This process's random state in a checkpoint's training state (None when it holds none:
    a run with more processes than the saved one keeps its seeded state)."""
    states = training_state.get("rng")
    if states:
        return states[rank] if rank < len(states) else None
    if "torch_rng" in training_state:  # checkpoints made before per-process states
        return {"torch": training_state["torch_rng"]}
    return None


class CheckedWeights:
    """The checkpointer's `model` entry: loading explains weights that do not fit (load_matching_weights)."""

    def __init__(self, model: nn.Module, directory: str = "checkpoint"):
        self.model, self.directory = model, directory

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        load_matching_weights(self.model, state, self.directory)


class NoState:
    """An entry that saves as {} (no scheduler): the on-disk format keeps the key."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class RandomStates:
    """The checkpointer's `rng` entry: every process's random state when saved; this process's
    (`recovered`, None when the saved run had fewer processes) when loaded."""

    def __init__(self, states: List[Dict[str, Any]], rank: int):
        self.states, self.rank, self.recovered = states, rank, None

    def state_dict(self) -> List[Dict[str, Any]]:
        return list(self.states)

    def load_state_dict(self, states: List[Dict[str, Any]]) -> None:
        self.recovered = states[self.rank] if self.rank < len(states) else None


def mser_version() -> str:
    from mser import __version__
    return __version__


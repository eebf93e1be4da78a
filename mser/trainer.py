"""MSERTrainer: trains any registered model on any featurizer from one YAML config."""
import contextlib
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from mser import checkpoint, distributed
from mser.clip import ClipSettings
from mser.config import format_config, load_config
from mser.data import feature_cache
from mser.data.dataset import AudioDataset, collate, worker_init
from mser.data.lists import ListItem, has_speakers, read_data_list, read_label_list
from mser.errors import CheckpointError, ConfigError, DataError
from mser.factory import check_same_setup, featurizer_from_config, load_matching_weights, model_for_featurizer
from mser.features import feature_name
from mser.features.speaker_norm import SpeakerNormalizer, SpeakerStats, valid_frames
from mser.metrics import compute_metrics, confusion_matrix_figure, format_report, write_evaluation
from mser.optim import build_optimizer, build_scheduler, class_weights, trainable_parameters

BEST_METRICS = ("unweighted_accuracy", "accuracy", "macro_f1")
# Saved by Ctrl-C: the weights part-way through an epoch, apart from the complete epochs' checkpoints.
INTERRUPTED = "interrupted_model"
# The checkpoints of one run in a model directory (besides epoch_N).
RUN_CHECKPOINTS = ("last_model", "best_model", INTERRUPTED)


@dataclass
class TrainState:
    epoch: int = 0                 # epochs completed
    step: int = 0                  # optimizer steps taken
    best_score: float = -math.inf
    best_epoch: int = 0
    batches_done: int = 0          # batches of epoch `epoch + 1` done (only an interrupted checkpoint has any)


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    clips: int
    skipped: int
    seconds: float


class MSERTrainer:
    """Train, validate, save and evaluate.

    >>> trainer = MSERTrainer(configs="configs/ecapa_tdnn.yml", use_gpu=False)
    >>> trainer.train(save_model_path="models/")
    >>> metrics = trainer.evaluate(resume_model="models/EcapaTdnn_Fbank/best_model")
    """

    def __init__(self, configs, use_gpu: bool = True, overwrites: Optional[str] = None,
                 data_augment_configs: Optional[str] = None):
        self.config = load_config(configs, overwrites) if not isinstance(configs, dict) else configs
        self.context = distributed.setup(use_gpu)
        self.device = self.context.device
        train_conf = self.config["train_conf"]
        if train_conf["best_metric"] not in BEST_METRICS:
            raise ConfigError(f"train_conf.best_metric must be one of {', '.join(BEST_METRICS)}, "
                              f"got {train_conf['best_metric']!r}")
        seed_everything(train_conf["seed"] + self.context.rank)
        self.labels = read_label_list(self.config["dataset_conf"]["label_list_path"])
        self.clip = ClipSettings.from_config(self.config)
        self.featurizer = featurizer_from_config(self.config).to(self.device)
        self.augment_config = load_augment(data_augment_configs, self.clip.sample_rate)
        self.model: Optional[nn.Module] = None
        self.caches: Optional[List[Dict[str, Any]]] = None
        self.state = TrainState()
        self.seen_bad_clips = set()
        self.speaker_norm = self.build_speaker_norm()
        self.speaker_tables: Dict[int, Dict[str, SpeakerStats]] = {}   # per list, by hash of its clips
        self.pending_rng: Optional[Dict[str, Any]] = None   # a resumed run's random state, set before its first batch
        self.rng_snapshot: Optional[Dict[str, Any]] = None  # random state after the last finished step
        self.resume_batches = 0   # batches of the first epoch an interrupted run had done

    # ----------------------------------------------------------------- set-up

    @property
    def model_name(self) -> str:
        return f"{self.config['model_conf']['model']}_{feature_name(self.config['preprocess_conf'])}"

    def log(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(message)

    def build_model(self) -> nn.Module:
        self.model = model_for_featurizer(self.config, self.featurizer, len(self.labels))
        return self.model.to(self.device)

    @property
    def uses_cache(self) -> bool:
        """Clip-level features always come from the cache; others when the config asks."""
        return self.featurizer.clip_level or self.config["dataset_conf"]["feature_cache"]["enable"]

    def prepare_caches(self, rebuild: bool = False) -> List[Dict[str, Any]]:
        dataset_conf = self.config["dataset_conf"]
        num_class = len(self.labels)
        other = [(path, read_data_list(path, num_class))
                 for path in (dataset_conf["val_list"], dataset_conf["test_list"]) if path]
        train_items = read_data_list(dataset_conf["train_list"], num_class)
        if not self.context.is_main:  # rank 0 builds what is missing; the others then read it
            distributed.barrier(self.context)
        self.caches = feature_cache.prepare_caches(
            self.config, self.featurizer, dataset_conf["train_list"], train_items, other, device=self.device,
            rebuild=rebuild and self.context.is_main, log=self.log)
        if self.context.is_main:
            distributed.barrier(self.context)
        return self.caches

    def waveform_augmentation(self) -> List[str]:
        """The augmentation sections that change the waveform and are switched on."""
        if self.augment_config is None:
            return []
        from mser.data.augment import waveform_sections_on
        return waveform_sections_on(self.augment_config)

    def training_reads_audio(self) -> bool:
        """Waveform augmentation needs the audio: with it, training clips are decoded and their
        features computed in every batch even when a feature cache serves validation and test.
        Clip-level features are the exception: they always come from the cache."""
        return bool(self.waveform_augmentation()) and not self.featurizer.clip_level

    def note_cache_and_augmentation(self) -> None:
        sections = ", ".join(self.waveform_augmentation())
        if self.training_reads_audio():
            self.log(f"note: {sections} augmentation needs the audio, so training clips are decoded in every "
                     f"epoch; validation and test read the feature cache")
        elif sections:
            method = self.config["preprocess_conf"]["feature_method"]
            self.log(f"note: {method} features are clip-level and always cached, so {sections} augmentation "
                     f"is not applied (spec_aug still is)")

    def max_frames(self, seconds: float) -> Optional[int]:
        if not hasattr(self.featurizer, "frame_lengths"):
            return None
        samples = int(seconds * self.clip.sample_rate)
        return int(self.featurizer.frame_lengths(torch.tensor([samples]))[0])

    def dataset(self, items: Sequence[ListItem], train: bool):
        if self.caches is not None and not (train and self.training_reads_audio()):
            return feature_cache.CachedFeatureDataset(items, self.caches, self.max_frames(self.clip.max_duration),
                                                      train=train, seed=self.config["train_conf"]["seed"])
        augmenter = None
        if train and self.augment_config is not None:
            from mser.data.augment import WaveformAugmenter
            augmenter = WaveformAugmenter(self.augment_config, self.clip.sample_rate,
                                          self.config["train_conf"]["seed"])
        return AudioDataset(items, self.clip, train=train, augmenter=augmenter, seed=self.config["train_conf"]["seed"])

    def loader(self, dataset, train: bool, epoch: int = 0) -> DataLoader:
        dataset_conf = self.config["dataset_conf"]
        loader_conf = dataset_conf["dataLoader"]
        batch_size = loader_conf["batch_size"] if train else dataset_conf["eval_conf"]["batch_size"]
        sampler = None
        # the loader's own generator (shuffling, worker seeds): making it never draws from the global one
        generator = torch.Generator().manual_seed(self.config["train_conf"]["seed"] + epoch)
        if train and self.context.distributed:
            sampler = DistributedSampler(dataset, num_replicas=self.context.world_size,
                                         rank=self.context.rank, shuffle=True,
                                         seed=self.config["train_conf"]["seed"])
            sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        workers = loader_conf["num_workers"]
        return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                          sampler=sampler, generator=generator, collate_fn=collate,
                          num_workers=workers, worker_init_fn=worker_init if workers else None,
                          drop_last=train and loader_conf["drop_last"],
                          pin_memory=self.device.type == "cuda")

    def read_lists(self):
        """(train, validation, test) items; validation is never taken from the test list."""
        dataset_conf = self.config["dataset_conf"]
        num_class = len(self.labels)
        train_items = read_data_list(dataset_conf["train_list"], num_class)
        test_items = read_data_list(dataset_conf["test_list"], num_class)
        if dataset_conf["val_list"]:
            val_items = read_data_list(dataset_conf["val_list"], num_class)
        else:
            train_items, val_items = split_validation(train_items, dataset_conf["val_fraction"],
                                                      self.config["train_conf"]["seed"])
            self.log(describe_validation(train_items, val_items))
        return train_items, val_items, test_items

    # ----------------------------------------------------------------- training

    def train(self, save_model_path: str = "models/", log_dir: str = "log/",
              resume_model: Optional[str] = None, pretrained_model: Optional[str] = None,
              overwrite: bool = False) -> Dict[str, Any]:
        """Train for `train_conf.max_epoch` epochs; returns the best validation metrics and the
        test metrics of the best model.

        A fresh run (no `resume_model`) into a folder holding another run's checkpoints is refused,
        unless `overwrite`, which deletes them first. Ctrl-C saves `interrupted_model` (the weights
        part-way through an epoch, with the batches done) and re-raises KeyboardInterrupt."""
        train_items, val_items, test_items = self.read_lists()
        # a wrong model or optimizer argument fails now, before any features are computed or folder made
        model = self.build_model()
        train_conf = self.config["train_conf"]
        steps_per_epoch = self.steps_per_epoch(len(train_items))
        optimizer = build_optimizer(trainable_parameters(model), self.config["optimizer_conf"])
        scheduler, scheduler_unit = build_scheduler(optimizer, self.config["optimizer_conf"],
                                                    steps_per_epoch, train_conf["max_epoch"])
        amp = Amp(train_conf, self.device)
        criterion = self.criterion(train_items)   # an unknown loss or argument fails here too
        self.model_dir = os.path.join(save_model_path, self.model_name)
        self.prepare_model_dir(resumed=bool(resume_model), overwrite=overwrite)
        if self.uses_cache:
            self.prepare_caches()
            self.note_cache_and_augmentation()
        self.fit_speaker_norm(train_items)
        self.log(f"{len(train_items)} training, {len(val_items)} validation, {len(test_items)} test clips; "
                 f"{len(self.labels)} labels: {', '.join(self.labels)}")
        self.log(format_config(self.config))
        self.log(self.context.describe())
        self.log(f"mixed precision: {str(amp.dtype).replace('torch.', '')} autocast on {self.device.type}"
                 if amp.enabled else "mixed precision: off (float32)")
        self.print_summary(model)
        if resume_model:
            self.resume(resume_model, optimizer, scheduler, amp)
        elif pretrained_model:
            self.load_pretrained(pretrained_model)
        train_model = self.wrap_for_training(model)
        writer = self.log_writer(log_dir)
        self.spec_augment = self.build_spec_augment()
        train_dataset = self.dataset(train_items, train=True)
        self.rng_snapshot = capture_rng(self.device)
        try:
            if self.pending_rng is not None:  # the resumed run's random streams, as they were at its save
                restore_rng(self.pending_rng, self.device)
                self.rng_snapshot, self.pending_rng = self.pending_rng, None
            for epoch in range(self.state.epoch + 1, train_conf["max_epoch"] + 1):
                stats = self.train_epoch(epoch, train_model, train_dataset, criterion, optimizer,
                                         scheduler if scheduler_unit == "step" else None, amp, writer)
                self.end_of_epoch(epoch, stats, val_items, test_items, criterion, optimizer,
                                                scheduler, scheduler_unit, amp, writer)
        except KeyboardInterrupt:
            self.save_on_interrupt(optimizer, scheduler, amp)
            raise
        finally:
            if writer is not None:
                writer.close()
        distributed.barrier(self.context)
        result = self.final_test(test_items) if self.context.is_main else {}
        distributed.cleanup(self.context)
        return result

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
        batch_size = self.config["dataset_conf"]["dataLoader"]["batch_size"]
        per_rank = math.ceil(num_train / self.context.world_size)
        if self.config["dataset_conf"]["dataLoader"]["drop_last"]:
            return max(1, per_rank // batch_size)
        return max(1, math.ceil(per_rank / batch_size))

    def wrap_for_training(self, model: nn.Module) -> nn.Module:
        wrapped = model
        if self.config["train_conf"]["use_compile"]:
            wrapped = torch.compile(wrapped)
        if self.context.distributed:
            device_ids = [self.context.local_rank] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=device_ids)
        return wrapped

    def criterion(self, train_items: Sequence[ListItem]) -> nn.Module:
        weights = None
        if self.config["train_conf"]["class_weights"]:
            weights = class_weights([item.label for item in train_items], len(self.labels)).to(self.device)
            self.log("class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(self.labels, weights)))
        from mser.losses import build_loss
        train_conf = self.config["train_conf"]
        loss_args = dict(train_conf["loss_args"])
        loss_args.setdefault("label_smoothing", train_conf["label_smoothing"])
        if weights is not None:
            loss_args.setdefault("weight", weights)
        return build_loss(train_conf["loss"], num_class=len(self.labels), **loss_args).to(self.device)

    def build_spec_augment(self) -> Optional[nn.Module]:
        if self.augment_config is None:
            return None
        from mser.data.augment import build_spec_augment
        module = build_spec_augment(self.augment_config)
        return module.to(self.device) if module is not None else None

    def features(self, batch, speaker_table: Optional[Dict[str, SpeakerStats]] = None) -> tuple:
        """(features (batch, frames, dim), frame_lengths) on the device, from audio or the cache;
        with speaker normalisation on, standardised by the statistics of each clip's speaker in
        `speaker_table` (the table of the batch's list; None: the training list's)."""
        features, frame_lengths = self.raw_features(batch)
        if self.speaker_norm is None:
            return features, frame_lengths
        return self.speaker_norm.normalize(features, frame_lengths, batch.speakers, speaker_table), frame_lengths

    def raw_features(self, batch) -> tuple:
        """Features before speaker normalisation, as `features` returns them."""
        inputs = batch.inputs.to(self.device, non_blocking=True)
        lengths = batch.lengths.to(self.device, non_blocking=True)
        if batch.is_features:
            return inputs, lengths
        with torch.no_grad():
            return self.featurizer(inputs, lengths)

    # ----------------------------------------------------------------- speaker normalisation

    def build_speaker_norm(self) -> Optional[SpeakerNormalizer]:
        conf = self.config["preprocess_conf"]["speaker_norm"]
        if not conf["enable"]:
            return None
        return SpeakerNormalizer(self.featurizer.feature_dim, conf["prior_clips"]).to(self.device)

    def clip_features(self, items: Sequence[ListItem], desc: str):
        """(speaker, valid frames (frames, dim)) of every usable clip of a list: one pass without
        augmentation, from the feature cache when there is one, else from the audio in batches."""
        loader = self.loader(self.dataset(items, train=False), train=False)
        with preserved_rng(self.device), evaluation_mode(self.featurizer):
            for batch in tqdm(loader, desc=desc, leave=False, disable=not self.context.is_main,
                              dynamic_ncols=True):
                self.note_skipped(batch.skipped)
                if len(batch) == 0:
                    continue
                features, frame_lengths = self.raw_features(batch)
                yield from zip(batch.speakers, valid_frames(features, frame_lengths))

    def fit_speaker_norm(self, train_items: Sequence[ListItem]) -> None:
        """Global statistics and the training speakers' statistics, from the training list's
        features (unsupervised: labels are not used)."""
        if self.speaker_norm is None:
            return
        started = time.time()
        table = self.speaker_norm.fit(self.clip_features(train_items, "speaker statistics"))
        self.speaker_tables[list_key(train_items)] = table
        prior = self.speaker_norm.prior_clips
        self.log(f"speaker normalisation: statistics of {len(table)} training speakers and the global ones "
                 f"(clips without a speaker) in {time.time() - started:.1f} s; prior_clips {prior:g}")

    def speaker_table(self, items: Sequence[ListItem]) -> Optional[Dict[str, SpeakerStats]]:
        """The statistics of the speakers of a list, computed once per list (unsupervised)."""
        if self.speaker_norm is None:
            return None
        key = list_key(items)
        if key not in self.speaker_tables:
            self.speaker_tables[key] = (self.speaker_norm.speaker_table(self.clip_features(items, "speaker statistics"))
                                        if has_speakers(items) else {})
        return self.speaker_tables[key]

    def train_epoch(self, epoch: int, model: nn.Module, dataset, criterion: nn.Module,
                    optimizer, step_scheduler, amp: "Amp", writer) -> EpochStats:
        """One epoch; after an interrupted run's resume, only the batches it had not done.

        All processes take the same decision about each batch (they skip it together), so that
        each runs the same optimizer steps and none waits forever in the gradient all-reduce."""
        model.train()
        self.featurizer.train()
        speaker_table = self.speaker_table(dataset.items)
        loader = self.loader(dataset, train=True, epoch=epoch)
        already_done, self.resume_batches = self.resume_batches, 0
        self.state.batches_done = already_done
        if already_done:
            self.log(f"epoch {epoch}: continuing after batch {already_done} of {len(loader)}, where the "
                     f"interrupted run stopped (loss and accuracy below are of the remaining batches)")
        log_interval = max(1, self.config["train_conf"]["log_interval"])
        loss_sum, correct, clips, skipped = 0.0, 0, 0, 0
        started = time.time()
        progress = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not self.context.is_main,
                        dynamic_ncols=True, initial=already_done)
        # batch norm cannot take its training statistics from one clip (e.g. a list of 32k + 1 clips)
        smallest = 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
        batches = iter(progress)
        for _ in range(already_done):  # the order of an epoch's batches is fixed by (seed, epoch)
            next(batches, None)
        for batch in batches:
            skipped += self.note_skipped(batch.skipped)
            if not distributed.all_agree(len(batch) >= smallest, self.context):
                skipped += self.note_skipped([(path, self.unusable_batch_reason(len(batch), smallest))
                                              for path in batch.paths])
                with deferred_interrupt():
                    self.finish_batch()
                continue
            features, frame_lengths = self.features(batch, speaker_table)
            if self.spec_augment is not None:
                features = self.spec_augment(features, frame_lengths)
            labels = batch.labels.to(self.device, non_blocking=True)
            loss, logits = self.compute_gradients(model, features, frame_lengths, labels, criterion, optimizer, amp)
            with deferred_interrupt():  # Ctrl-C never leaves a half-made step behind
                amp.step(optimizer)
                if step_scheduler is not None:
                    step_scheduler.step()
                self.state.step += 1
                self.finish_batch()
            loss_sum += loss * len(batch)
            correct += int((logits.argmax(dim=1) == labels).sum())
            clips += len(batch)
            if self.state.step % log_interval == 0:
                progress.set_postfix(loss=f"{loss_sum / clips:.4f}", acc=f"{correct / clips:.3f}",
                                     lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                if writer is not None:
                    writer.add_scalar("Train/lr", optimizer.param_groups[0]["lr"], self.state.step)
        loss_sum, correct, clips, skipped = distributed.sum_across_ranks(
            [loss_sum, correct, clips, skipped], self.context)
        return EpochStats(loss=loss_sum / max(clips, 1), accuracy=correct / max(clips, 1), clips=int(clips),
                          skipped=int(skipped), seconds=time.time() - started)

    def finish_batch(self) -> None:
        """Count a batch as done; its random state is where a resume after Ctrl-C starts."""
        self.state.batches_done += 1
        self.rng_snapshot = capture_rng(self.device)

    @staticmethod
    def unusable_batch_reason(size: int, smallest: int) -> str:
        if 0 < size < smallest:
            return "the only usable clip of its batch; batch norm needs two"
        return "its batch was dropped because another process could not use its own batch of this step"

    def train_step(self, model, features, frame_lengths, labels, criterion, optimizer, amp: "Amp"):
        """One optimizer step; returns (loss, logits (batch, num_class))."""
        loss, logits = self.compute_gradients(model, features, frame_lengths, labels, criterion, optimizer, amp)
        amp.step(optimizer)
        return loss, logits

    def compute_gradients(self, model, features, frame_lengths, labels, criterion, optimizer, amp: "Amp"):
        """Forward, backward and gradient clipping; the optimizer step is the caller's."""
        with amp.autocast():
            logits = model(features, frame_lengths)
            loss = criterion(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.state.step}; "
                                     f"lower optimizer_conf.optimizer_args.lr or enable grad_clip")
        optimizer.zero_grad(set_to_none=True)
        amp.backward(loss)
        clip = self.config["optimizer_conf"]["grad_clip"]
        amp.unscale(optimizer)
        if clip and clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        return float(loss.detach()), logits.detach()

    def note_skipped(self, skipped) -> int:
        for path, reason in skipped:
            if path not in self.seen_bad_clips:
                self.seen_bad_clips.add(path)
                tqdm.write(f"skipping {path}: {reason}")
        return len(skipped)

    def end_of_epoch(self, epoch, stats: EpochStats, val_items, test_items, criterion, optimizer,
                     scheduler, scheduler_unit, amp, writer) -> Optional[Dict[str, Any]]:
        val_metrics = None
        if self.context.is_main:
            val_metrics = self.evaluate_items(val_items, criterion)
            lr = optimizer.param_groups[0]["lr"]
            self.log(f"epoch {epoch}/{self.config['train_conf']['max_epoch']} | loss {stats.loss:.4f} "
                     f"acc {stats.accuracy:.4f} | val loss {val_metrics['loss']:.4f} "
                     f"acc {val_metrics['accuracy']:.4f} UA {val_metrics['unweighted_accuracy']:.4f} "
                     f"F1 {val_metrics['macro_f1']:.4f} | lr {lr:.2e} | "
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
                self.save_epoch(epoch, score, val_metrics, optimizer, scheduler, amp, rng_states)
        distributed.barrier(self.context)
        return val_metrics

    def broadcast_score(self, val_metrics) -> float:
        local = val_metrics[self.config["train_conf"]["best_metric"]] if val_metrics else 0.0
        return distributed.sum_across_ranks([local], self.context)[0]

    def write_scalars(self, writer, epoch, stats: EpochStats, val_metrics, test_items, criterion) -> None:
        writer.add_scalar("Train/Loss", stats.loss, epoch)
        writer.add_scalar("Train/Accuracy", stats.accuracy, epoch)
        splits = [("Val", val_metrics)]
        if self.config["train_conf"]["test_every_epoch"]:  # opt-in: it costs time, and draws nothing from training
            splits.append(("Test", self.evaluate_items(test_items, criterion)))
        for split, metrics in splits:
            writer.add_scalar(f"{split}/Loss", metrics["loss"], epoch)
            writer.add_scalar(f"{split}/Accuracy", metrics["accuracy"], epoch)
            writer.add_scalar(f"{split}/UA", metrics["unweighted_accuracy"], epoch)
            writer.add_scalar(f"{split}/MacroF1", metrics["macro_f1"], epoch)
        figure = confusion_matrix_figure(val_metrics["confusion_matrix"], self.labels, f"validation, epoch {epoch}")
        writer.add_image("Val/ConfusionMatrix", figure_to_array(figure), epoch)

    # ----------------------------------------------------------------- checkpoints

    def checkpoint_state(self, metrics: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        summary = {k: metrics[k] for k in ("loss", "accuracy", "unweighted_accuracy", "macro_f1")} if metrics else {}
        return {**asdict(self.state), "best_metric": self.config["train_conf"]["best_metric"],
                "val": summary, "model": self.config["model_conf"]["model"],
                "feature_method": self.config["preprocess_conf"]["feature_method"],
                "num_class": len(self.labels), "mser_version": mser_version()}

    def save(self, name: str, metrics, optimizer=None, scheduler=None, amp: "Amp" = None,
             rng_states: Optional[List[Dict[str, Any]]] = None) -> str:
        """A checkpoint of the model (and, with `optimizer`, of everything a resume needs:
        optimizer, scheduler, AMP scaler, each process's random state) under the model folder."""
        training_state = None
        if optimizer is not None:
            training_state = {"optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict() if scheduler is not None else {},
                              "scaler": amp.state_dict() if amp is not None else {},
                              "rng": rng_states or [capture_rng(self.device)]}
        return checkpoint.save_checkpoint(
            os.path.join(self.model_dir, name), self.model.state_dict(), self.checkpoint_state(metrics),
            self.config, self.labels, training_state=training_state,
            featurizer_state=self.featurizer.state_dict() if self.featurizer.clip_level else None,
            speaker_norm_state=self.speaker_norm.state_dict() if self.speaker_norm is not None else None)

    def save_epoch(self, epoch: int, score: float, val_metrics, optimizer, scheduler, amp, rng_states) -> None:
        """epoch_N, then best_model when the score improved, then last_model: the resume point is
        written last, so a kill between two saves leaves last_model at the epoch before, whose
        recorded best is saved, and a resume from it redoes the epoch."""
        improved = score > self.state.best_score
        if improved:
            self.state.best_score, self.state.best_epoch = score, epoch
        self.save(f"epoch_{epoch}", val_metrics, optimizer, scheduler, amp, rng_states)
        if improved:
            self.save("best_model", val_metrics, optimizer, scheduler, amp, rng_states)
            self.log(f"best model so far (val {self.config['train_conf']['best_metric']} {score:.4f}) "
                     f"saved to {os.path.join(self.model_dir, 'best_model')}")
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
        state = checkpoint.load_state(directory)
        self.check_compatible(directory)
        load_matching_weights(self.model, checkpoint.load_weights(directory, self.device), directory)
        training = checkpoint.load_training_state(directory, self.device)
        optimizer.load_state_dict(training["optimizer"])
        if scheduler is not None and training.get("scheduler"):
            scheduler.load_state_dict(training["scheduler"])
        if training.get("scaler"):
            amp.load_state_dict(training["scaler"])
        self.pending_rng = saved_rng_of_rank(training, self.context.rank)
        self.state = TrainState(epoch=state["epoch"], step=state.get("step", 0),
                                best_score=state.get("best_score", -math.inf),
                                best_epoch=state.get("best_epoch", 0))
        self.resume_batches = state.get("batches_done", 0)
        part = f" and {self.resume_batches} batches of epoch {self.state.epoch + 1}" if self.resume_batches else ""
        self.log(f"resumed from {directory}: {self.state.epoch} epochs done{part}, step {self.state.step}, "
                 f"best val score {self.state.best_score:.4f} at epoch {self.state.best_epoch}")

    def check_compatible(self, directory: str) -> None:
        stored_config, stored_labels = checkpoint.load_config_and_labels(directory)
        if stored_labels != self.labels:
            raise CheckpointError(f"checkpoint {directory} was trained on labels {', '.join(stored_labels)}, "
                                  f"but the label list has {', '.join(self.labels)}")
        check_same_setup(self.config, stored_config, directory)
        self.check_same_features(directory, stored_config)
        trained_with = stored_config["preprocess_conf"]["speaker_norm"]["enable"]
        if trained_with != (self.speaker_norm is not None):
            raise CheckpointError(f"checkpoint {directory} was trained with preprocess_conf.speaker_norm.enable="
                                  f"{str(trained_with).lower()}, but the config asks for "
                                  f"{str(not trained_with).lower()}")

    def load_speaker_norm(self, directory: str) -> None:
        """The global statistics a checkpoint was trained with (speaker statistics come from the list)."""
        if self.speaker_norm is None:
            return
        state = checkpoint.load_speaker_norm_state(directory, self.device)
        if state is None:
            raise CheckpointError(f"checkpoint {directory} has no {checkpoint.SPEAKER_NORM_FILE}, although its "
                                  f"config enables preprocess_conf.speaker_norm")
        self.speaker_norm.load_state_dict(state)

    def check_same_features(self, directory: str, stored_config: Dict[str, Any]) -> None:
        """Refuse featurizer arguments that change the feature size; say when others differ."""
        stored_args = stored_config["preprocess_conf"]["method_args"]
        own_args = self.config["preprocess_conf"]["method_args"]
        differing = ", ".join(f"{key}={stored_args.get(key, 'default')} in the checkpoint, "
                              f"{own_args.get(key, 'default')} in the config"
                              for key in sorted(set(stored_args) | set(own_args))
                              if stored_args.get(key) != own_args.get(key))
        if not differing:
            return
        stored_dim = featurizer_from_config(stored_config).feature_dim
        if stored_dim != self.featurizer.feature_dim:
            raise CheckpointError(f"checkpoint {directory} was trained on {stored_dim}-dim features, the config "
                                  f"gives {self.featurizer.feature_dim}: preprocess_conf.method_args {differing}")
        self.log(f"warning: preprocess_conf.method_args differ from checkpoint {directory}: {differing}")

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

    # ----------------------------------------------------------------- evaluation

    @torch.inference_mode()
    def predict_items(self, items: Sequence[ListItem], model: Optional[nn.Module] = None):
        """(true labels (clips,), logits (clips, num_class)) over a list, model and featurizer in
        eval mode; the random streams of training are left as they were."""
        model = model or self.model
        with preserved_rng(self.device), evaluation_mode(model, self.featurizer):
            speaker_table = self.speaker_table(items)
            dataset = self.dataset(items, train=False)
            y_true, logits_all = [], []
            for batch in tqdm(self.loader(dataset, train=False), desc="evaluating", leave=False,
                              disable=not self.context.is_main, dynamic_ncols=True):
                self.note_skipped(batch.skipped)
                if len(batch) == 0:
                    continue
                features, frame_lengths = self.features(batch, speaker_table)
                logits_all.append(model(features, frame_lengths).float().cpu())
                y_true.append(batch.labels)
        if not logits_all:
            return torch.empty(0, dtype=torch.long), torch.empty(0, len(self.labels))
        return torch.cat(y_true), torch.cat(logits_all)

    def evaluate_items(self, items: Sequence[ListItem], criterion: Optional[nn.Module] = None) -> Dict[str, Any]:
        y_true, logits = self.predict_items(items)
        if len(y_true) == 0:
            raise DataError(f"none of the {len(items)} clips to evaluate could be used; "
                            f"the lines starting 'skipping' say why")
        metrics = compute_metrics(y_true.tolist(), logits.argmax(dim=1).tolist(), self.labels)
        loss_fn = criterion or nn.CrossEntropyLoss()
        metrics["loss"] = float(loss_fn(logits.to(self.device), y_true.to(self.device))) if len(y_true) else 0.0
        return metrics

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

    def evaluate(self, resume_model: Optional[str] = None, list_path: Optional[str] = None,
                 output_dir: Optional[str] = None) -> Dict[str, Any]:
        """Evaluate a checkpoint (or the current model) on the test list (or `list_path`).
        Writes metrics.json and confusion_matrix.png into `output_dir` when given."""
        items = self.prepare_evaluation(resume_model, list_path)
        metrics = self.evaluate_items(items)
        if output_dir:
            write_evaluation(metrics, self.labels, output_dir)
        return metrics

    def predict_checkpoint(self, resume_model: Optional[str] = None, list_path: Optional[str] = None):
        """(true labels (clips,), logits (clips, num_class)) of a checkpoint (or the current model)
        on the test list (or `list_path`), prepared as `evaluate` prepares it."""
        return self.predict_items(self.prepare_evaluation(resume_model, list_path))

    def prepare_evaluation(self, resume_model: Optional[str], list_path: Optional[str]) -> List[ListItem]:
        """Load the checkpoint's weights, featurizer state and speaker statistics; the list's items."""
        if self.model is None:
            self.build_model()
        if resume_model:
            self.check_compatible(resume_model)
            load_matching_weights(self.model, checkpoint.load_weights(resume_model, self.device), resume_model)
            featurizer_state = checkpoint.load_featurizer_state(resume_model, self.device)
            if featurizer_state:
                self.featurizer.load_state_dict(featurizer_state)
            self.load_speaker_norm(resume_model)
        list_path = list_path or self.config["dataset_conf"]["test_list"]
        items = read_data_list(list_path, len(self.labels))
        self.caches = self.eval_cache(list_path, items)
        if self.speaker_norm is not None:
            table = self.speaker_table(items)
            self.log(f"speaker normalisation: statistics of {len(table)} speakers of {list_path}"
                     + ("" if table else " (the list names none: the training set's global statistics)"))
        return items

    def eval_cache(self, list_path: str, items: Sequence[ListItem]) -> Optional[List[Dict[str, Any]]]:
        """The list's cache when the config enables caching and one exists; else features from audio."""
        path = feature_cache.cache_path(self.config, list_path, items)
        if not self.config["dataset_conf"]["feature_cache"]["enable"] or not os.path.isfile(path):
            return None
        return [feature_cache.load_cache(path, feature_cache.fingerprint(self.config, items))]

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
        raise ConfigError("dataset_conf.val_fraction must be > 0 when dataset_conf.val_list is empty")
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


def list_key(items: Sequence[ListItem]) -> int:
    return hash(tuple((item.path, item.speaker) for item in items))


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


def figure_to_array(figure) -> np.ndarray:
    import matplotlib.pyplot as plt
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(figure)
    return image


def capture_rng(device: torch.device) -> Dict[str, Any]:
    """This process's random state (torch CPU and CUDA, numpy, Python), as tensors and numbers
    that torch.load(weights_only=True) reads back."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Dict[str, Any], device: torch.device) -> None:
    """Set the random state `capture_rng` took (the parts it holds)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "python" in state:
        python = state["python"]
        random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    if "numpy" in state:
        numpy_state = state["numpy"]
        np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                             numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def saved_rng_of_rank(training_state: Dict[str, Any], rank: int) -> Optional[Dict[str, Any]]:
    """This process's random state in a checkpoint's training state (None when it holds none:
    a run with more processes than the saved one keeps its seeded state)."""
    states = training_state.get("rng")
    if states:
        return states[rank] if rank < len(states) else None
    if "torch_rng" in training_state:  # checkpoints made before per-process states
        return {"torch": training_state["torch_rng"]}
    return None


@contextlib.contextmanager
def preserved_rng(device: torch.device):
    """Run a block (evaluation, statistics) without moving the random streams training draws from."""
    state = capture_rng(device)
    try:
        yield
    finally:
        restore_rng(state, device)


@contextlib.contextmanager
def evaluation_mode(*modules: nn.Module):
    """Modules in eval mode for a block (no dropout, no dither), then back in their own mode."""
    modes = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


@contextlib.contextmanager
def deferred_interrupt():
    """Hold Ctrl-C until the block is done, so that an optimizer step or a set of saves is never cut
    in half; the KeyboardInterrupt comes right after it. (Main thread only: elsewhere, as is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def mser_version() -> str:
    from mser import __version__
    return __version__

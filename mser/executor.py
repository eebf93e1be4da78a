"""The executor: a model run over data lists, one epoch of training or one pass of evaluation."""
import contextlib
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from mser import checkpoint, distributed
from mser.builder import Amp, build_criterion, build_featurizer, build_spec_augment, load_augment, read_lists
from mser.clip import ClipSettings
from mser.consistency import CopyPairs, build_copy_consistency, collate_pairs
from mser.config import load_config
from mser.data import feature_cache
from mser.data.augmented_copies import AugmentedCopies, build_copies
from mser.data.dataset import AudioDataset, FeaturizingCollate, collate, worker_init
from mser.data.lists import ListItem, has_speakers, read_data_list, read_label_list
from mser.errors import CheckpointError, DataError
from mser.factory import check_same_setup, featurizer_from_config, load_matching_weights, model_for_featurizer
from mser.features import feature_name
from mser.features.speaker_norm import SpeakerNormalizer, SpeakerStats, valid_frames
from mser.metrics import add_speaker_balanced, compute_metrics, write_evaluation
from mser.mixup import Mix, build_mixup
from mser.speaker_adversary import SpeakerAdversary
from mser.threads import threads_beside_workers, torch_threads


@dataclass
class TrainState:
    epoch: int = 0                 # epochs completed
    step: int = 0                  # optimizer steps taken
    best_score: float = -math.inf
    best_epoch: int = 0
    batches_done: int = 0          # batches of epoch `epoch + 1` done (only an interrupted checkpoint has any)

    def state_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """From model.state (JSON; checkpoints of older versions lack the later fields)."""
        self.epoch, self.step = state["epoch"], state.get("step", 0)
        self.best_score, self.best_epoch = state.get("best_score", -math.inf), state.get("best_epoch", 0)
        self.batches_done = state.get("batches_done", 0)


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    clips: int
    skipped: int
    seconds: float


class Executor:
    """Runs a model over data lists: one training epoch (`train_epoch`), evaluation and prediction
    over a list (`evaluate`, `predict_checkpoint`), feature caches (`prepare_caches`) -- built from
    a config without starting a training run (as WeSpeaker's executor runs an epoch on objects
    built beforehand). `MSERTrainer` adds the epochs, checkpoints and data-parallel processes.

    Overridable hooks: `compute_forward` (features -> logits), `compute_objectives` (logits ->
    loss), `compute_gradients` (forward, backward, clipping of one batch).

    >>> executor = Executor.from_config("configs/ecapa_tdnn.yml", use_gpu=False)
    >>> metrics = executor.evaluate(resume_model="models/EcapaTdnn_Fbank/best_model")
    """

    def __init__(self, config: Dict[str, Any], context: Optional[distributed.Context] = None,
                 data_augment_configs: Optional[str] = None):
        self.config = config
        self.context = context or distributed.local_context(use_gpu=False)
        self.device = self.context.device
        self.labels = read_label_list(self.config["dataset_conf"]["label_list_path"])
        self.clip = ClipSettings.from_config(self.config)
        self.featurizer = build_featurizer(self.config, self.device)
        self.augment_config = load_augment(data_augment_configs, self.clip.sample_rate)
        self.model: Optional[nn.Module] = None
        self.caches: Optional[List[Dict[str, Any]]] = None
        self.state = TrainState()
        self.seen_bad_clips = set()
        self.speaker_norm = self.build_speaker_norm()
        self.speaker_tables: Dict[int, Dict[str, SpeakerStats]] = {}   # per list, by hash of its clips
        self.spec_augment: Optional[nn.Module] = None
        self.mixup = build_mixup(self.config["train_conf"]["mixup_alpha"])
        self.copy_consistency = build_copy_consistency(self.config)
        self.speaker_adversary: Optional[SpeakerAdversary] = None   # set by a training run that asks for one
        self.rng_snapshot: Optional[Dict[str, Any]] = None  # random state after the last finished step
        self.resume_batches = 0   # batches of the first epoch an interrupted run had done

    @classmethod
    def from_config(cls, configs, use_gpu: bool = True, overwrites: Optional[str] = None,
                    data_augment_configs: Optional[str] = None) -> "Executor":
        """An executor for a config file or dict, in this one process (no process group, no seeding)."""
        config = load_config(configs, overwrites) if not isinstance(configs, dict) else configs
        return Executor(config, distributed.local_context(use_gpu), data_augment_configs)

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
        """Clip-level features always come from the cache; others when the config asks for the
        cache or for augmented copies (which live in it)."""
        cache = self.config["dataset_conf"]["feature_cache"]
        return self.featurizer.clip_level or cache["enable"] or bool(cache["augmented_copies"])

    def augmented_copies(self, train_items: Sequence[ListItem]) -> Optional[AugmentedCopies]:
        """The cached augmented copies of the training clips the config asks for, or None."""
        return build_copies(self.config, train_items, self.augment_config, self.clip)

    def prepare_caches(self, rebuild: bool = False, copies: Optional[AugmentedCopies] = None,
                       test: bool = True) -> List[Dict[str, Any]]:
        """The feature caches of the training list, the validation list and (with `test`) the test list."""
        dataset_conf = self.config["dataset_conf"]
        num_class = len(self.labels)
        other = [(path, read_data_list(path, num_class))
                 for path in (dataset_conf["val_list"], dataset_conf["test_list"] if test else "") if path]
        train_items = read_data_list(dataset_conf["train_list"], num_class)
        if not self.context.is_main:  # rank 0 builds what is missing; the others then read it
            distributed.barrier(self.context)
        self.caches = feature_cache.prepare_caches(
            self.config, self.featurizer, dataset_conf["train_list"], train_items, other, device=self.device,
            rebuild=rebuild and self.context.is_main, log=self.log, copies=copies)
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
        Clip-level features and augmented copies are the exceptions: they always come from the cache."""
        copies = self.config["dataset_conf"]["feature_cache"]["augmented_copies"]
        return bool(self.waveform_augmentation()) and not self.featurizer.clip_level and not copies

    def note_cache_and_augmentation(self) -> None:
        sections = ", ".join(self.waveform_augmentation())
        copies = self.config["dataset_conf"]["feature_cache"]["augmented_copies"]
        if self.training_reads_audio():
            self.log(f"note: {sections} augmentation needs the audio, so training clips are decoded in every "
                     f"epoch; validation and test read the feature cache")
        elif sections and copies:
            self.log(f"note: {sections} augmentation made {copies} cached copies of each training clip, "
                     f"one simulated session per speaker and copy (feature_cache.augmented_copies)")
        elif sections:
            method = self.config["preprocess_conf"]["feature_method"]
            self.log(f"note: {method} features are clip-level and always cached, so {sections} augmentation "
                     f"is not applied (spec_aug still is); set dataset_conf.feature_cache.augmented_copies "
                     f"to train on cached augmented copies")

    def max_frames(self, seconds: float) -> Optional[int]:
        if not hasattr(self.featurizer, "frame_lengths"):
            return None
        samples = int(seconds * self.clip.sample_rate)
        return int(self.featurizer.frame_lengths(torch.tensor([samples]))[0])

    def dataset(self, items: Sequence[ListItem], train: bool):
        if self.caches is not None and not (train and self.training_reads_audio()):
            return self.cached_dataset(items, train)
        augmenter = None
        if train and self.augment_config is not None:
            from mser.data.augment import WaveformAugmenter
            augmenter = WaveformAugmenter(self.augment_config, self.clip.sample_rate,
                                          self.config["train_conf"]["seed"])
        return AudioDataset(items, self.clip, train=train, augmenter=augmenter, seed=self.config["train_conf"]["seed"])

    def cached_dataset(self, items: Sequence[ListItem], train: bool) -> "feature_cache.CachedFeatureDataset":
        """The clips' features read from the prepared caches (prepare_caches)."""
        return feature_cache.CachedFeatureDataset(items, self.caches, self.max_frames(self.clip.max_duration),
                                                  train=train, seed=self.config["train_conf"]["seed"])

    def loader(self, dataset, train: bool, epoch: int = 0) -> DataLoader:
        dataset_conf = self.config["dataset_conf"]
        loader_conf = dataset_conf["dataLoader"]
        batch_size = loader_conf["batch_size"] if train else dataset_conf["eval_conf"]["batch_size"]
        sampler = None
        # the loader's own generator (shuffling, worker seeds): making it never draws from the global one
        generator = torch.Generator().manual_seed(self.config["train_conf"]["seed"] + epoch)
        dataset.set_epoch(epoch)
        collate_fn = collate
        if train and self.copy_consistency is not None:   # each item beside one of its copies
            dataset, collate_fn = CopyPairs(dataset, self.config["train_conf"]["seed"]), collate_pairs
            dataset.set_epoch(epoch)
        if train and self.context.distributed:
            sampler = DistributedSampler(dataset, num_replicas=self.context.world_size,
                                         rank=self.context.rank, shuffle=True,
                                         seed=self.config["train_conf"]["seed"])
            sampler.set_epoch(epoch)
        workers = loader_conf["num_workers"]
        if self.featurizes_in_workers(dataset, train, workers) and collate_fn is collate:
            collate_fn = FeaturizingCollate(self.featurizer)
        return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                          sampler=sampler, generator=generator, collate_fn=collate_fn,
                          num_workers=workers, worker_init_fn=worker_init if workers else None,
                          drop_last=train and loader_conf["drop_last"],
                          pin_memory=self.device.type == "cuda")

    def featurizes_in_workers(self, dataset, train: bool, workers: int) -> bool:
        """Whether the loader workers that augment training clips on the CPU also compute their features."""
        augmenting = isinstance(dataset, AudioDataset) and dataset.augmenter is not None
        return train and augmenting and workers > 0 and self.device.type == "cpu"

    def read_lists(self):
        """(train, validation, test) items; validation is never taken from the test list."""
        return read_lists(self.config, len(self.labels), self.log)

    def criterion(self, train_items: Sequence[ListItem]) -> nn.Module:
        return build_criterion(self.config, self.labels, train_items, self.device, self.log)

    def build_spec_augment(self) -> Optional[nn.Module]:
        return build_spec_augment(self.augment_config, self.device)

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
        started = time.time()
        progress = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not self.context.is_main,
                        dynamic_ncols=True, initial=already_done)
        # batch norm cannot take its training statistics from one clip (e.g. a list of 32k + 1 clips)
        smallest = 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
        batches = iter(progress)
        for _ in range(already_done):  # the order of an epoch's batches is fixed by (seed, epoch)
            next(batches, None)
        # workers that augment clips are busy: leave them their cores (decoding alone is light)
        augmenting = isinstance(dataset, AudioDataset) and dataset.augmenter is not None
        busy_workers = loader.num_workers if augmenting else 0
        try:
            with torch_threads(threads_beside_workers(self.device, busy_workers)):
                stats = self.train_batches(batches, model, speaker_table, criterion, optimizer, step_scheduler,
                                           amp, writer, progress, smallest)
        except BaseException:
            progress.close()   # before Ctrl-C's messages, so the bar does not redraw after them
            raise
        loss_sum, correct, clips, skipped = distributed.sum_across_ranks(list(stats), self.context)
        return EpochStats(loss=loss_sum / max(clips, 1), accuracy=correct / max(clips, 1), clips=int(clips),
                          skipped=int(skipped), seconds=time.time() - started)

    def fit_epoch(self, epoch: int, model: nn.Module, dataset, criterion: nn.Module) -> EpochStats:
        """A model that learns by fitting (mser.models.forest): the features of one pass over the
        training clips, as a network's epoch would batch them (augmented copies, augmentation and
        speaker normalisation included), then one `fit`. Loss and accuracy are on those clips."""
        model.eval()
        self.featurizer.train()
        speaker_table = self.speaker_table(dataset.items)
        started, vectors, labels, skipped = time.time(), [], [], 0
        loader = self.loader(dataset, train=True, epoch=epoch)
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"epoch {epoch}: features", leave=False, dynamic_ncols=True):
                skipped += self.note_skipped(batch.skipped)
                if len(batch) == 0:
                    continue
                features, frame_lengths = self.features(batch, speaker_table)
                if self.spec_augment is not None:
                    features = self.spec_augment(features, frame_lengths)
                vectors.append(model.clip_vectors(features, frame_lengths).float().cpu())
                labels.append(batch.labels.cpu())
            if not vectors:
                raise DataError("no usable training clip to fit the model on")
            vectors, labels = torch.cat(vectors), torch.cat(labels)
            model.fit(vectors.numpy(), labels.numpy(), seed=self.config["train_conf"]["seed"],
                      threads=torch.get_num_threads(), balanced=bool(self.config["train_conf"]["class_weights"]))
            logits, labels = model(vectors[:, None, :].to(self.device)).float(), labels.to(self.device)
            loss = float(criterion(logits, labels))
        return EpochStats(loss=loss, accuracy=float((logits.argmax(1) == labels).float().mean()), clips=len(labels),
                          skipped=skipped, seconds=time.time() - started)

    def train_batches(self, batches, model, speaker_table, criterion, optimizer, step_scheduler, amp, writer,
                      progress, smallest: int) -> Tuple[float, int, int, int]:
        """The optimizer steps of an epoch's batches; (loss sum, correct, clips, skipped)."""
        loss_sum, correct, clips, skipped = 0.0, 0, 0, 0
        log_interval = max(1, self.config["train_conf"]["log_interval"])
        for batch in batches:
            skipped += self.note_skipped(batch.skipped)
            if not distributed.all_agree(len(batch) >= smallest, self.context):
                skipped += self.skip_batch(batch, smallest)
                continue
            loss, batch_correct = self.train_batch(batch, model, speaker_table, criterion, optimizer,
                                                   step_scheduler, amp)
            loss_sum, correct, clips = loss_sum + loss * len(batch), correct + batch_correct, clips + len(batch)
            if self.state.step % log_interval == 0:
                lr = optimizer.param_groups[0]["lr"]
                progress.set_postfix(loss=f"{loss_sum / clips:.4f}", acc=f"{correct / clips:.3f}", lr=f"{lr:.2e}")
                if writer is not None:
                    writer.add_scalar("Train/lr", lr, self.state.step)
        return loss_sum, correct, clips, skipped

    def train_batch(self, batch, model: nn.Module, speaker_table, criterion: nn.Module, optimizer,
                    step_scheduler, amp: "Amp") -> Tuple[float, int]:
        """One optimizer step on a batch; (its mean loss, how many clips it got right)."""
        features, frame_lengths = self.features(batch, speaker_table)
        if self.spec_augment is not None:
            features = self.spec_augment(features, frame_lengths)
        labels = batch.labels.to(self.device, non_blocking=True)
        mix = None
        if self.mixup is not None:
            features, frame_lengths, mix = self.mixup(features, frame_lengths)
        loss, logits = self.compute_gradients(model, features, frame_lengths, labels, criterion, optimizer, amp, mix,
                                              batch.speakers, batch.paths)
        with deferred_interrupt():  # Ctrl-C never leaves a half-made step behind
            amp.step(optimizer)
            if step_scheduler is not None:
                step_scheduler.step()
            self.state.step += 1
            self.finish_batch()
        return loss, int((logits.argmax(dim=1) == labels).sum())

    def skip_batch(self, batch, smallest: int) -> int:
        """A batch some process cannot use: every process skips its own; the clips skipped."""
        skipped = self.note_skipped([(path, self.unusable_batch_reason(len(batch), smallest))
                                     for path in batch.paths])
        with deferred_interrupt():
            self.finish_batch()
        return skipped

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

    def compute_forward(self, model: nn.Module, features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Hook: features (batch, frames, feature_dim), frame_lengths (batch,) -> logits (batch, num_class)."""
        return model(features, frame_lengths)

    def compute_objectives(self, logits: torch.Tensor, labels: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
        """Hook: the training loss of logits (batch, num_class) against labels (batch,), a scalar."""
        return criterion(logits.float(), labels)

    def compute_gradients(self, model, features, frame_lengths, labels, criterion, optimizer, amp: "Amp",
                          mix: Optional[Mix] = None, speakers: Optional[Sequence[str]] = None,
                          paths: Optional[Sequence[str]] = None):
        """Forward, backward and gradient clipping; the optimizer step is the caller's. With `mix`
        (mixup), the loss is the mix's blend of the losses against both clips' labels. With a
        speaker adversary, its loss on the clips' `speakers` is added (mser.speaker_adversary);
        with copy consistency, the disagreement of the clips at `paths` and their copies (mser.consistency)."""
        with amp.autocast():
            logits = self.compute_forward(model, features, frame_lengths)
            loss = self.compute_objectives(logits, labels, criterion)
            if mix is not None:
                partner_loss = self.compute_objectives(logits, labels[mix.partner], criterion)
                loss = mix.weight * loss + (1.0 - mix.weight) * partner_loss
            if self.speaker_adversary is not None:
                targets = self.speaker_adversary.targets(speakers or [], logits.device)
                loss = loss + self.speaker_adversary.loss(self.speaker_adversary.tap.take(), targets)
            if self.copy_consistency is not None:
                loss = loss + self.copy_consistency.loss(logits, paths or [])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {self.state.step}; "
                                     f"lower optimizer_conf.optimizer_args.lr or enable grad_clip")
        optimizer.zero_grad(set_to_none=True)
        amp.backward(loss)
        clip = self.config["optimizer_conf"]["grad_clip"]
        amp.unscale(optimizer)
        if self.speaker_adversary is not None:   # not inside DistributedDataParallel: averaged here
            distributed.average_gradients(self.speaker_adversary, self.context)
        if clip and clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        return float(loss.detach()), logits.detach()

    def note_skipped(self, skipped) -> int:
        for path, reason in skipped:
            if path not in self.seen_bad_clips:
                self.seen_bad_clips.add(path)
                tqdm.write(f"skipping {path}: {reason}")
        return len(skipped)

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

    # ----------------------------------------------------------------- evaluation

    @torch.inference_mode()
    def predict_items(self, items: Sequence[ListItem], model: Optional[nn.Module] = None):
        """(true labels (clips,), logits (clips, num_class), speakers) over the list's usable clips,
        model and featurizer in eval mode; the random streams of training are left as they were.
        `speakers` names each row's speaker ("" where the list does not say)."""
        model = model or self.model
        with preserved_rng(self.device), evaluation_mode(model, self.featurizer):
            speaker_table = self.speaker_table(items)
            dataset = self.dataset(items, train=False)
            y_true, logits_all, speakers = [], [], []
            for batch in tqdm(self.loader(dataset, train=False), desc="evaluating", leave=False,
                              disable=not self.context.is_main, dynamic_ncols=True):
                self.note_skipped(batch.skipped)
                if len(batch) == 0:
                    continue
                features, frame_lengths = self.features(batch, speaker_table)
                logits_all.append(self.compute_forward(model, features, frame_lengths).float().cpu())
                y_true.append(batch.labels)
                speakers.extend(batch.speakers)
        if not logits_all:
            return torch.empty(0, dtype=torch.long), torch.empty(0, len(self.labels)), []
        return torch.cat(y_true), torch.cat(logits_all), speakers

    def evaluate_items(self, items: Sequence[ListItem], criterion: Optional[nn.Module] = None) -> Dict[str, Any]:
        y_true, logits, speakers = self.predict_items(items)
        if len(y_true) == 0:
            raise DataError(f"none of the {len(items)} clips to evaluate could be used; "
                            f"the lines starting 'skipping' say why")
        metrics = compute_metrics(y_true.tolist(), logits.argmax(dim=1).tolist(), self.labels)
        add_speaker_balanced(metrics, y_true.numpy(), torch.softmax(logits.float(), dim=1).numpy(), speakers)
        loss_fn = criterion or nn.CrossEntropyLoss()
        metrics["loss"] = float(loss_fn(logits.to(self.device), y_true.to(self.device))) if len(y_true) else 0.0
        return metrics

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
        """(true labels (clips,), logits (clips, num_class), speakers) of a checkpoint (or the current
        model) on the test list (or `list_path`), prepared as `evaluate` prepares it."""
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


def list_key(items: Sequence[ListItem]) -> int:
    return hash(tuple((item.path, item.speaker) for item in items))


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



"""The list-file dataset: raw waveforms out, features are computed later, in batches, on the device."""
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mser.clip import ClipSettings
from mser.data.lists import ListItem
from mser.errors import AudioError


class Sample(NamedTuple):
    """One dataset item: `inputs` is a waveform (samples,) or features (frames, feature_dim), None
    when the clip is unusable, with the `reason`; `speaker` is "" when the list does not name one."""
    inputs: Optional[torch.Tensor]
    label: int
    path: str
    reason: str
    speaker: str = ""


class ListDataset(Dataset):
    """A dataset over the clips of a data list. Its random choices come from a generator seeded by
    (seed, epoch, clip index), so a run is reproducible whatever the number of DataLoader workers."""

    def __init__(self, items: Sequence[ListItem], train: bool, seed: int):
        self.items, self.train, self.seed, self.epoch = list(items), train, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def crop(self, array, max_length: Optional[int], rng: np.random.Generator):
        """At most `max_length` entries along the first axis: a random window in training, the
        start in evaluation."""
        if not max_length or array.shape[0] <= max_length:
            return array
        start = int(rng.integers(0, array.shape[0] - max_length + 1)) if self.train else 0
        return array[start:start + max_length]


class AudioDataset(ListDataset):
    """Decodes, resamples, crops and (in training) augments the clips of a data list.

    Training crops a random `clip.max_duration` window; evaluation keeps the first
    `clip.eval_max_duration` seconds. An unusable clip is returned as None with the reason, for
    the trainer to count.
    """

    def __init__(self, items: Sequence[ListItem], clip: ClipSettings, train: bool = False,
                 augmenter: Optional[Callable] = None, seed: int = 0):
        super().__init__(items, train, seed)
        self.clip = clip
        self.max_samples = clip.max_samples(train)
        self.augmenter = augmenter

    def __getitem__(self, index: int) -> Sample:
        path, label, speaker = self.items[index]
        try:
            samples = self.clip.load(path)
        except AudioError as e:
            return Sample(None, label, path, str(e), speaker)
        rng = self.rng(index)
        samples = self.crop(samples, self.max_samples, rng)
        if self.train and self.augmenter is not None:
            samples = self.augmenter(samples, rng)
            if not np.all(np.isfinite(samples)):
                return Sample(None, label, path, "augmentation produced non-finite samples", speaker)
        return Sample(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), label, path, "", speaker)


class Batch:
    """A padded batch: `inputs` are waveforms (batch, samples) or, from a feature cache, features
    (batch, frames, feature_dim); `lengths` (batch,) count samples or frames; `labels` (batch,);
    `speakers` name each clip's speaker ("" when the list does not say); `skipped` has the
    (path, reason) of every clip dropped from this batch."""

    def __init__(self, inputs: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                 paths: List[str], skipped: List[Tuple[str, str]], speakers: Optional[List[str]] = None):
        self.inputs, self.lengths, self.labels = inputs, lengths, labels
        self.paths, self.skipped = paths, skipped
        self.speakers = speakers if speakers is not None else [""] * len(paths)

    @property
    def is_features(self) -> bool:
        return self.inputs.dim() == 3

    def __len__(self) -> int:
        return self.labels.shape[0]

    def pin_memory(self) -> "Batch":
        self.inputs, self.lengths, self.labels = (t.pin_memory() for t in (self.inputs, self.lengths, self.labels))
        return self


def pad_batch(tensors: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-pad along the first axis with zeros: (samples,) or (frames, dim) tensors ->
    (batch, longest[, dim]) and lengths (batch,)."""
    if not tensors:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(list(tensors), batch_first=True), lengths


def collate(samples: Sequence[Sample]) -> Batch:
    usable = [s for s in samples if s.inputs is not None]
    skipped = [(s.path, s.reason) for s in samples if s.inputs is None]
    inputs, lengths = pad_batch([s.inputs for s in usable])
    labels = torch.tensor([s.label for s in usable], dtype=torch.long)
    return Batch(inputs, lengths, labels, [s.path for s in usable], skipped, [s.speaker for s in usable])


class FeaturizingCollate:
    """`collate`, then the batch's features (batch, frames, dim) from `featurizer`: a loader worker
    that augments clips on the CPU also featurizes them, so that the main process only runs the
    model (a TDNN epoch on augmented audio on 2 cores: 9.8 -> 8.0 s, the same losses; README, Data
    augmentation)."""

    def __init__(self, featurizer: torch.nn.Module):
        self.featurizer = featurizer

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        batch = collate(samples)
        if len(batch):
            with torch.no_grad():
                batch.inputs, batch.lengths = self.featurizer(batch.inputs, batch.lengths)
        return batch


def worker_init(worker_id: int) -> None:
    # Each worker decodes on one thread; the main process owns the cores for the model.
    torch.set_num_threads(1)

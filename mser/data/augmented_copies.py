"""Augmented copies: waveform augmentation for features that are computed once and cached.

Clip-level features (eGeMAPS, ComParE, CustomFeatures) are always cached, and cached frame features
are read instead of audio, so augmentation that changes the waveform cannot run in each batch.
With `dataset_conf.feature_cache.augmented_copies: N` and a waveform augmentation config
(`--data_augment_configs`), every training clip gets N augmented copies whose features are
computed once, cached beside the clean ones, and trained on as extra clips.

Copy k of a speaker's clips is one simulated recording session: its clips draw their augmentation
from the same random stream (seeded by the run's seed, k and the speaker), so the first random
choices -- talker changes (speed, pitch), room, whether noise is added -- are shared by the whole
session, as one telephone call or one microphone shares them. Each copy gets its own speaker name
(`<speaker>#copy<k>`), so speaker normalisation standardises it with the statistics of its own
session, as it does at inference. A clip is cleaned and loaded again after augmentation (DC offset,
digital silence, dB normalisation), as the predictor reads what it is given.
"""
import json
import os
import re
import zlib
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mser.clip import ClipSettings
from mser.data.lists import ListItem
from mser.errors import AudioError, ConfigError

COPY_MARK = "#copy"
COPY_PATH = re.compile(re.escape(COPY_MARK) + r"\d+$")


class AugmentedCopies:
    """The virtual items of N augmented copies of a training list and how to read them.

    augment_config: a checked augmentation config (load_augmentation_config); copies: N >= 1;
    seed: the run's seed (the same seed and config give the same copies)."""

    def __init__(self, items: Sequence[ListItem], copies: int, augment_config: Dict[str, Dict[str, Any]],
                 clip: ClipSettings, seed: int):
        from mser.data.augment import WaveformAugmenter, waveform_sections_on
        if copies < 1:
            raise ConfigError(f"dataset_conf.feature_cache.augmented_copies must be 1 or more here, got {copies}")
        if not waveform_sections_on(augment_config):
            raise ConfigError("dataset_conf.feature_cache.augmented_copies needs waveform augmentation: "
                              "give --data_augment_configs a config with a waveform section switched on")
        self.copies, self.clip, self.seed = copies, clip, seed
        self.augment_config = augment_config
        self.augmenter = WaveformAugmenter(augment_config, clip.sample_rate, seed)
        self.sources: Dict[str, tuple] = {}
        self.items: List[ListItem] = []
        for copy in range(1, copies + 1):
            for path, label, speaker in items:
                virtual = f"{path}{COPY_MARK}{copy}"
                self.sources[virtual] = (path, copy, speaker)
                self.items.append(ListItem(virtual, label, f"{speaker}{COPY_MARK}{copy}" if speaker else ""))

    def description(self) -> str:
        """What shapes the copies besides the clips themselves, as canonical JSON (for the cache key)."""
        from mser.data import augment
        return json.dumps({"copies": self.copies, "seed": self.seed, "augmentation": self.augment_config,
                           "draws": augment.DRAWS_VERSION}, sort_keys=True, default=str)

    def session_rng(self, path: str, copy: int, speaker: str) -> np.random.Generator:
        """The random stream of one clip: shared by a speaker's clips in one copy (a session)."""
        who = speaker or path   # without a speaker, every clip is its own session
        return np.random.default_rng([self.seed, copy, zlib.crc32(who.encode("utf-8"))])

    def load(self, virtual_path: str) -> np.ndarray:
        """The augmented samples of one copy, read as training reads a clip. Raises AudioError."""
        path, copy, speaker = self.sources[virtual_path]
        samples = self.augmenter(self.clip.load(path), self.session_rng(path, copy, speaker))
        if not np.all(np.isfinite(samples)):
            raise AudioError(f"augmentation of {path} produced non-finite samples")
        return self.clip.load(samples, sample_rate=self.clip.sample_rate)


def build_copies(config: Dict[str, Any], items: Sequence[ListItem], augment_config: Optional[Dict[str, Any]],
                 clip: ClipSettings) -> Optional[AugmentedCopies]:
    """The augmented copies the config asks for, or None (augmented_copies 0)."""
    copies = config["dataset_conf"]["feature_cache"].get("augmented_copies", 0) or 0
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 0:
        raise ConfigError(f"dataset_conf.feature_cache.augmented_copies must be a whole number >= 0, got {copies!r}")
    if copies == 0:
        return None
    if augment_config is None:
        raise ConfigError(f"dataset_conf.feature_cache.augmented_copies is {copies} but no augmentation config "
                          f"was given: add --data_augment_configs (e.g. configs/augmentation_channel.yml)")
    return AugmentedCopies(items, copies, augment_config, clip, config["train_conf"]["seed"])


def copies_cache_name(list_path: str) -> str:
    """The name the copies' cache takes in place of the list's, e.g. train_list_copies."""
    return os.path.splitext(os.path.basename(list_path))[0] + "_copies"


def source_path(path: str) -> str:
    """The clip a copy's virtual path was made from (`<path>#copy<k>` -> `<path>`); other paths as given."""
    return COPY_PATH.sub("", path)

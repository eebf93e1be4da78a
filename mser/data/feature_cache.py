"""Features computed once by extract_features.py and read back by training and evaluation.

One file per data list and feature setup: `<cache_dir>/<Feature>_<setup hash>_<list name>_<list hash>.pt`,
a torch file of plain tensors and strings (loaded with weights_only=True) holding each clip's
features `(frames, feature_dim)` by path, and a fingerprint of everything that shaped them:
featurizer and its arguments, sample rate, dB normalisation, the clip length limit (the setup) and
the list's contents. The setup hash keeps the caches of other feature settings apart, the list
hash (of the list's absolute path and contents) those of other lists: two `test_list.txt` in
different folders, or a list edited since, get caches of their own side by side. A cache whose
fingerprint differs from the current config and list is refused with a clear error.
"""
import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from mser.clip import ClipSettings
from mser.data.augmented_copies import AugmentedCopies, copies_cache_name
from mser.data.dataset import ListDataset, Sample, pad_batch
from mser.data.lists import ListItem
from mser.errors import AudioError, ConfigError, DataError
from mser.features import feature_name, uses_encoder
from mser.features.band import parse_band
from mser.features.base import Featurizer
from mser.threads import torch_threads, usable_cores


# What load_audio(clean=True) removes before features are computed; caches made without it get
# another name and are rebuilt.
AUDIO_CLEANING = "dc_offset+digital_silence"
MAX_AUTO_WORKERS = 4   # feature_cache.workers "auto": processes beyond this gain little on one list
EXTRACTION_BATCH_SIZE = 16


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def list_identity(list_path: str, items: Sequence[ListItem]) -> str:
    """Which list, with which contents: its absolute path and the hash of its clips and labels."""
    return f"{os.path.abspath(list_path)}\n{fingerprint_items(items)}"


def cache_path(config: Dict[str, Any], list_path: str, items: Sequence[ListItem]) -> str:
    """The cache file of a list's features: named by the feature setup and by the list itself."""
    cache = config["dataset_conf"]["feature_cache"]
    name = os.path.splitext(os.path.basename(list_path))[0]
    setup_hash, list_hash = short_hash(feature_setup(config)), short_hash(list_identity(list_path, items))
    return os.path.join(cache["cache_dir"],
                        f"{feature_name(config['preprocess_conf'])}_{setup_hash}_{name}_{list_hash}.pt")


def scaler_path(config: Dict[str, Any], train_list: str, train_items: Sequence[ListItem]) -> str:
    """Where a clip-level featurizer's scaler is kept: beside the label list, named by the feature
    setup and the training list it was fitted on, so that other settings or splits fit their own."""
    list_dir = os.path.dirname(os.path.abspath(config["dataset_conf"]["label_list_path"]))
    made_from = short_hash(feature_setup(config) + "\n" + list_identity(train_list, train_items))
    return os.path.join(list_dir, f"{feature_name(config['preprocess_conf'])}_scaler_{made_from}.json")


def feature_setup(config: Dict[str, Any]) -> str:
    """Everything in the config that shapes the cached features, as canonical JSON."""
    clip = ClipSettings.from_config(config)
    setup = {"feature_method": config["preprocess_conf"]["feature_method"],
             "method_args": config["preprocess_conf"]["method_args"],
             "sample_rate": clip.sample_rate, "use_dB_normalization": clip.use_db_normalization,
             "target_dB": clip.target_db, "max_duration": clip.eval_max_duration,
             "float16": config["dataset_conf"]["feature_cache"]["float16"],
             "audio_cleaning": AUDIO_CLEANING}
    band = parse_band(config["preprocess_conf"]["band_limit_hz"], clip.sample_rate)
    if band is not None:   # (absent otherwise: older caches stay valid); as parsed: [300,3400] typed or in YAML
        setup["band_limit_hz"] = band
    if uses_encoder(config["preprocess_conf"]):   # the encoder's content, wherever it lives
        from mser.features.hf import source_digest
        setup["encoder_digest"] = source_digest(config["preprocess_conf"]["feature_method"],
                                                config["preprocess_conf"]["method_args"].get("revision"))
        del setup["feature_method"]
    return json.dumps(setup, sort_keys=True, default=str)


def fingerprint_items(items: Sequence[ListItem]) -> str:
    # speakers are left out: they do not shape the features, and caches made before lists had them stay valid
    return hashlib.sha256("".join(f"{item.path}\t{item.label}\n" for item in items).encode()).hexdigest()


def fingerprint(config: Dict[str, Any], items: Sequence[ListItem]) -> Dict[str, str]:
    return {"setup": feature_setup(config), "items": fingerprint_items(items)}


FeatureFunction = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def compute_features(featurizer: Featurizer, items: Sequence[ListItem], config: Dict[str, Any],
                     batch_size: int = EXTRACTION_BATCH_SIZE, device="cpu", desc: str = "extracting",
                     features_of: Optional[FeatureFunction] = None,
                     load: Optional[Callable[[str], Any]] = None) -> Dict[str, Any]:
    """Features of every usable clip (the first eval_conf.max_duration seconds) and the skipped ones.

    features_of(waveforms (batch, samples), lengths (batch,)) -> ((batch, frames, dim), (batch,))
    replaces the featurizer's forward when given; load(path) -> samples replaces reading the clip
    (augmented copies). Clip-level featurizers on the CPU extract in `feature_cache.workers`
    processes side by side (extraction_workers), each on one torch thread, as the main process
    extracts them too: the features are the same with any number of workers."""
    features_of = features_of or featurizer
    was_training = featurizer.training
    featurizer.eval()  # no dither or other training-only randomness in what is cached
    try:
        batches = FeatureBatches(features_of, items, config, batch_size, device, load)
        workers = extraction_workers(config, featurizer, device, len(batches))
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers,
                                             multiprocessing_context="fork" if workers else None)
        features, skipped = {}, {}
        # one torch thread, as in a worker: torch's sums (the copies' pitch shifts, resampling,
        # filters) round by the number of threads, and openSMILE's voicing decisions can turn on
        # such a rounding; so the features are the same in one process or in workers, on any machine
        with torch_threads(1 if clip_by_clip_on_cpu(featurizer, device) else None):
            for batch_features, batch_skipped in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
                features.update(batch_features)
                skipped.update(batch_skipped)
        return {"features": features, "skipped": skipped}
    finally:
        featurizer.train(was_training)


def extraction_workers(config: Dict[str, Any], featurizer: Featurizer, device, batches: int) -> int:
    """How many processes extract features beside the main one: `feature_cache.workers` (a whole
    number, or "auto": one per CPU core this process may use, at most MAX_AUTO_WORKERS). Only
    clip-level featurizers (openSMILE, CustomFeatures: one clip at a time, single-threaded) and
    openSMILE's contours on the CPU use them, only where processes can be forked, and only for
    lists of at least two batches per worker (starting a process costs more than a few clips);
    torch's frame featurizers already run batched over torch's threads."""
    value = config["dataset_conf"]["feature_cache"].get("workers", "auto")
    if value == "auto":
        value = min(usable_cores(), MAX_AUTO_WORKERS)
    elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"dataset_conf.feature_cache.workers must be 'auto' or a whole number >= 0, got {value!r}")
    forkable = "fork" in torch.multiprocessing.get_all_start_methods()
    if value <= 1 or batches < 2 * value or not clip_by_clip_on_cpu(featurizer, device) or not forkable:
        return 0
    return value


def clip_by_clip_on_cpu(featurizer: Featurizer, device) -> bool:
    """A clip-level featurizer, or one computed clip by clip outside torch (openSMILE's contours),
    running on the CPU: the extraction that takes worker processes and one torch thread each."""
    return (featurizer.clip_level or featurizer.clip_by_clip) and torch.device(device).type == "cpu"


class FeatureBatches(torch.utils.data.Dataset):
    """Batch b of a list's features: ({path: (frames, dim)}, {path: why it was skipped}). Read by a
    DataLoader, in the main process or in forked workers (each batch is computed whole in one)."""

    def __init__(self, features_of: FeatureFunction, items: Sequence[ListItem], config: Dict[str, Any],
                 batch_size: int, device, load: Optional[Callable[[str], Any]] = None):
        clip = ClipSettings.from_config(config)
        self.features_of, self.items, self.batch_size, self.device = features_of, items, batch_size, device
        self.load = load or clip.load
        self.max_samples = clip.max_samples(train=False)

    def __len__(self) -> int:
        return (len(self.items) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
        paths, waveforms, skipped = [], [], {}
        for path, *_ in self.items[index * self.batch_size:(index + 1) * self.batch_size]:
            try:
                samples = self.load(path)
            except AudioError as e:
                skipped[path] = str(e)
                continue
            paths.append(path)
            waveforms.append(torch.from_numpy(samples[:self.max_samples]))
        if not waveforms:
            return {}, skipped
        padded, lengths = pad_batch(waveforms)
        with torch.inference_mode():
            batch, frame_lengths = self.features_of(padded.to(self.device), lengths.to(self.device))
        features = {path: row[:frames].clone()
                    for path, row, frames in zip(paths, batch.cpu(), frame_lengths.cpu().tolist())}
        return features, skipped


def save_cache(path: str, computed: Dict[str, Any], stamp: Dict[str, str], float16: bool) -> None:
    features = {p: (f.half() if float16 else f.float()) for p, f in computed["features"].items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    torch.save({"fingerprint": stamp, "features": features, "skipped": computed["skipped"]}, partial)
    os.replace(partial, path)


def load_cache(path: str, stamp: Dict[str, str]) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise DataError(f"feature cache {path} not found: run extract_features.py with this config")
    cache = torch.load(path, map_location="cpu", weights_only=True)
    if cache.get("fingerprint") != stamp:
        differs = "the data list" if cache.get("fingerprint", {}).get("setup") == stamp["setup"] else \
            "the featurizer settings"
        raise DataError(f"feature cache {path} is stale ({differs} changed since it was made): "
                        f"run extract_features.py again")
    return cache


class CachedFeatureDataset(ListDataset):
    """Serves cached features (computed from the evaluation-length clip); training crops a random
    window of `max_frames` frames."""

    def __init__(self, items: Sequence[ListItem], caches: List[Dict[str, Any]], max_frames: Optional[int],
                 train: bool, seed: int = 0):
        super().__init__(items, train, seed)
        self.features, self.skipped = {}, {}
        for cache in caches:
            self.features.update(cache["features"])
            self.skipped.update(cache["skipped"])
        self.max_frames = max_frames

    def __getitem__(self, index: int) -> Sample:
        path, label, speaker = self.items[index]
        if path not in self.features:
            return Sample(None, label, path, self.skipped.get(path, "not in the feature cache"), speaker)
        features = self.features[path].float()
        if self.train:
            features = self.crop(features, self.max_frames, self.rng(index))
        return Sample(features, label, path, "", speaker)


def prepare_caches(config: Dict[str, Any], featurizer: Featurizer, train_list: str,
                   train_items: Sequence[ListItem], other_lists: Sequence[tuple], device="cpu",
                   rebuild: bool = False, log=print, copies: Optional[AugmentedCopies] = None
                   ) -> List[Dict[str, Any]]:
    """Load the caches of the training list and of `other_lists` [(path, items)], building the
    missing ones (all of them with `rebuild`). A clip-level featurizer's scaler is fitted on the
    training list only, saved beside the lists, and loaded into `featurizer`; the training clips'
    features are then extracted once, for the scaler and the cache together. `copies`: the
    augmented copies of the training clips, cached on their own after the others."""
    float16 = config["dataset_conf"]["feature_cache"]["float16"]
    computed_train = None
    if featurizer.clip_level:
        computed_train = prepare_scaler(config, featurizer, train_list, train_items, device, rebuild, log)
        rebuild = rebuild or computed_train is not None
    caches = []
    for list_path, items in [(train_list, train_items), *other_lists]:
        path, stamp = cache_path(config, list_path, items), fingerprint(config, items)
        if rebuild or not os.path.isfile(path):
            computed = computed_train if list_path == train_list and computed_train is not None else \
                compute_features(featurizer, items, config, device=device,
                                 desc=f"features of {os.path.basename(list_path)}")
            save_cache(path, computed, stamp, float16)
            log(f"cached features of {len(computed['features'])} clips from {list_path} in {path}"
                + (f" ({len(computed['skipped'])} unusable clips skipped)" if computed["skipped"] else ""))
        caches.append(load_cache(path, stamp))
    if copies is not None:
        caches.append(prepare_copies_cache(config, featurizer, train_list, copies, device, rebuild, log))
    return caches


def prepare_copies_cache(config: Dict[str, Any], featurizer: Featurizer, train_list: str, copies: AugmentedCopies,
                         device, rebuild: bool, log) -> Dict[str, Any]:
    """The cache of the augmented copies: keyed by the feature setup, the augmentation (config,
    number of copies, seed) and the training list, so that each of these makes its own."""
    setup = feature_setup(config) + "\n" + copies.description()
    made_from = short_hash(setup + "\n" + list_identity(train_list, copies.items))
    cache = config["dataset_conf"]["feature_cache"]
    path = os.path.join(cache["cache_dir"], f"{feature_name(config['preprocess_conf'])}_{short_hash(setup)}_"
                                            f"{copies_cache_name(train_list)}_{made_from}.pt")
    stamp = {"setup": setup, "items": fingerprint_items(copies.items)}
    if rebuild or not os.path.isfile(path):
        computed = compute_features(featurizer, copies.items, config, device=device, load=copies.load,
                                    desc=f"features of {copies.copies} augmented copies")
        save_cache(path, computed, stamp, cache["float16"])
        log(f"cached features of {len(computed['features'])} augmented copies of the training clips in {path}"
            + (f" ({len(computed['skipped'])} unusable copies skipped)" if computed["skipped"] else ""))
    return load_cache(path, stamp)


def prepare_scaler(config, featurizer, train_list, train_items, device, rebuild: bool,
                   log) -> Optional[Dict[str, Any]]:
    """Load the scaler, or fit it on the training list. Returns None when it was loaded, else the
    training list's standardised features (as compute_features gives them): the caches must be
    rebuilt, and the training cache needs no second extraction."""
    path = scaler_path(config, train_list, train_items)
    if os.path.isfile(path) and not rebuild:
        featurizer.load_scaler(path)
        return None
    featurizer.reset_scaler()
    raw = compute_features(featurizer, train_items, config, device=device, desc="fitting the scaler",
                           features_of=marked_raw_features(featurizer))
    featurizer.reset_scaler()
    if not raw["features"]:
        raise DataError(f"no usable clip in {train_list} to fit the {type(featurizer).__name__} scaler on")
    marked = torch.cat(list(raw["features"].values()))
    # what forward gives with the identity scaler: the values extract could not compute are 0
    featurizer.fit_scaler(torch.where(torch.isnan(marked), 0.0, marked).numpy())
    featurizer.save_scaler(path)
    log(f"fitted the {type(featurizer).__name__} scaler on {len(raw['features'])} training clips: {path}")
    standardised = {clip: standardize_marked(featurizer, row) for clip, row in raw["features"].items()}
    return {"features": standardised, "skipped": raw["skipped"]}


def marked_raw_features(featurizer) -> FeatureFunction:
    """A clip-level featurizer's raw features as one-frame sequences, ((batch, 1, dim), (batch,)).

    extract fills the values it cannot compute with the scaler's mean; a NaN mean marks them, so
    that the fit (which sees 0 there, as forward with the identity scaler gives) and the cache
    (the fitted mean there, as forward with the fitted scaler gives) can each fill them."""
    def features_of(waveforms: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        featurizer.scaler_mean.fill_(float("nan"))
        try:
            raw = featurizer.extract(waveforms, lengths)
        finally:
            featurizer.scaler_mean.zero_()
        return raw[:, None, :], torch.ones(raw.shape[0], dtype=torch.long, device=raw.device)
    return features_of


def standardize_marked(featurizer, marked: torch.Tensor) -> torch.Tensor:
    """Raw features with NaN marks (frames, dim) -> what forward gives with the fitted scaler."""
    mean = featurizer.scaler_mean
    marked = marked.to(mean.device)
    return featurizer.standardize(torch.where(torch.isnan(marked), mean.expand_as(marked), marked)).cpu()

"""A clip-level featurizer's training clips are extracted once: for the scaler and the cache together,
with the same cache (and scaler) as fitting first and extracting the list again gives."""
import json
import re

import pytest
import torch

from conftest import tiny_overwrites

from mser.config import load_config
from mser.data import feature_cache
from mser.data.feature_cache import compute_features, prepare_caches, scaler_path
from mser.data.lists import read_data_list
from mser.features import build_featurizer
from mser.features.clip import ClipFeaturizer


class CountingFeatures(ClipFeaturizer):
    """Four statistics of each clip; counts the clips it analyses. Like openSMILE, a value it cannot
    compute (the last one, for clips of an odd number of samples) is filled with the scaler's mean."""

    feature_names = ["mean", "std", "peak", "log_level"]

    def __init__(self, sample_rate: int = 16000):
        super().__init__(sample_rate)
        self.feature_dim = len(self.feature_names)
        self.init_scaler()
        self.clips_extracted = 0

    def extract(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> torch.Tensor:
        lengths = self.full_lengths(waveforms, lengths)
        self.clips_extracted += waveforms.shape[0]
        rows = []
        for clip, length in zip(waveforms, lengths.tolist()):
            valid = clip[:length]
            log_level = valid.abs().mean().log() if length % 2 == 0 else torch.tensor(float("nan"))
            rows.append(torch.stack([valid.mean(), valid.std(), valid.abs().max(), log_level]))
        raw = torch.stack(rows)
        return torch.where(torch.isfinite(raw), raw, self.scaler_mean.expand_as(raw))


def small_lists(demo_lists, tmp_path, clips: int):
    """A copy of the demo lists cut to `clips` training and test clips (the scaler lands beside them)."""
    list_dir = tmp_path / "lists"
    list_dir.mkdir()
    (list_dir / "label_list.txt").write_text((demo_lists / "label_list.txt").read_text())
    for name in ("train_list.txt", "test_list.txt"):
        lines = (demo_lists / name).read_text().splitlines(True)
        (list_dir / name).write_text("".join(lines[:clips]))
    return list_dir


def config_for(list_dir, cache_dir, feature_method: str):
    return load_config("configs/custom_features.yml", tiny_overwrites(list_dir, **{
        "preprocess_conf.feature_method": feature_method, "preprocess_conf.method_args": "null",
        "dataset_conf.feature_cache.cache_dir": cache_dir, "dataset_conf.feature_cache.float16": "false",
        "dataset_conf.eval_conf.max_duration": 30,
        # one process: CountingFeatures counts the clips it extracts in the process that extracts them
        "dataset_conf.feature_cache.workers": 0}))


def previous_result(featurizer, items, config):
    """What prepare_caches built before: fit the scaler on one extraction, then extract again."""
    featurizer.reset_scaler()
    raw = compute_features(featurizer, items, config)
    featurizer.fit_scaler(torch.cat(list(raw["features"].values())).numpy())
    return compute_features(featurizer, items, config)


def build_both(featurizer, config, list_dir, rebuild: bool = False):
    train_list, test_list = str(list_dir / "train_list.txt"), str(list_dir / "test_list.txt")
    num_class = len((list_dir / "label_list.txt").read_text().splitlines())
    train_items, test_items = read_data_list(train_list, num_class), read_data_list(test_list, num_class)
    caches = prepare_caches(config, featurizer, train_list, train_items, [(test_list, test_items)],
                            rebuild=rebuild, log=lambda message: None)
    return caches, train_items, test_items


def assert_same_features(cache, expected):
    assert cache["features"].keys() == expected["features"].keys()
    assert cache["skipped"] == expected["skipped"]
    for path, features in expected["features"].items():
        assert torch.equal(cache["features"][path], features), path


def test_training_clips_are_extracted_once_with_the_previous_cache(demo_lists, tmp_path):
    list_dir = small_lists(demo_lists, tmp_path, clips=24)
    config = config_for(list_dir, tmp_path / "cache", "CountingFeatures")
    featurizer = CountingFeatures()
    (train_cache, test_cache), train_items, test_items = build_both(featurizer, config, list_dir)
    assert featurizer.clips_extracted == len(train_items) + len(test_items)  # was 2 x train + test
    fitted = json.loads(open(scaler_path(config, str(list_dir / "train_list.txt"), train_items)).read())

    reference = CountingFeatures()
    expected_train = previous_result(reference, train_items, config)
    assert fitted["mean"] == reference.scaler_mean.tolist() and fitted["scale"] == reference.scaler_scale.tolist()
    assert_same_features(train_cache, expected_train)
    assert_same_features(test_cache, compute_features(reference, test_items, config))
    # the clips whose last value could not be computed hold the training average there, as from audio
    filled = [features[0, 3].item() for path, features in train_cache["features"].items()]
    assert 0.0 in filled and any(value != 0.0 for value in filled)

    # later runs read the scaler and caches back without extracting anything
    again = CountingFeatures()
    (train_again, _), _, _ = build_both(again, config, list_dir)
    assert again.clips_extracted == 0
    assert_same_features(train_again, expected_train)


def test_rebuild_extracts_each_clip_once(demo_lists, tmp_path):
    list_dir = small_lists(demo_lists, tmp_path, clips=12)
    config = config_for(list_dir, tmp_path / "cache", "CountingFeatures")
    build_both(CountingFeatures(), config, list_dir)
    featurizer = CountingFeatures()
    _, train_items, test_items = build_both(featurizer, config, list_dir, rebuild=True)
    assert featurizer.clips_extracted == len(train_items) + len(test_items)


def test_a_failed_extraction_leaves_the_identity_scaler(demo_lists, tmp_path, monkeypatch):
    list_dir = small_lists(demo_lists, tmp_path, clips=4)
    config = config_for(list_dir, tmp_path / "cache", "CountingFeatures")
    featurizer = CountingFeatures()

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")
    monkeypatch.setattr(featurizer, "extract", broken)
    with pytest.raises(RuntimeError):
        build_both(featurizer, config, list_dir)
    assert torch.equal(featurizer.scaler_mean, torch.zeros(4)) and not bool(featurizer.scaler_fitted)


def test_egemaps_is_extracted_once_per_training_clip(demo_lists, tmp_path):
    pytest.importorskip("opensmile", reason='needs the opensmile package: pip install "mser[opensmile]"')
    list_dir = small_lists(demo_lists, tmp_path, clips=8)
    config = config_for(list_dir, tmp_path / "cache", "eGeMAPS")
    featurizer = build_featurizer("eGeMAPS")
    analysed = []
    functionals = featurizer.functionals
    featurizer.functionals = lambda clip, *speech: analysed.append(len(clip)) or functionals(clip, *speech)
    (train_cache, _), train_items, test_items = build_both(featurizer, config, list_dir)
    assert len(analysed) == len(train_items) + len(test_items)
    assert_same_features(train_cache, previous_result(build_featurizer("eGeMAPS"), train_items, config))
    assert re.search(r"_train_list_[0-9a-f]{8}\.pt$", feature_cache.cache_path(config, str(list_dir / "train_list.txt"),
                                                                               train_items))


def test_clip_features_extracted_in_worker_processes_are_the_ones_one_process_extracts(demo_lists, tmp_path):
    list_dir = small_lists(demo_lists, tmp_path, clips=64)   # 4 batches of 16: two for each of 2 workers
    config = config_for(list_dir, tmp_path / "cache", "CountingFeatures")
    items = read_data_list(str(list_dir / "train_list.txt"), 6)
    items.append(items[0]._replace(path=str(tmp_path / "missing.wav")))
    in_one = CountingFeatures()
    expected = compute_features(in_one, items, config)
    assert in_one.clips_extracted == len(items) - 1 and len(expected["skipped"]) == 1
    config["dataset_conf"]["feature_cache"]["workers"] = 2
    in_workers = CountingFeatures()
    computed = compute_features(in_workers, items, config)
    assert list(computed["features"]) == list(expected["features"])
    assert_same_features(computed, expected)   # to the bit: one torch thread in the workers and in one process
    assert in_workers.clips_extracted == 0   # every clip was extracted in a worker process
    few = CountingFeatures()
    compute_features(few, items[:48], config)
    assert few.clips_extracted == 48   # three batches, fewer than two per worker: extracted in this process


def test_opensmile_contours_are_extracted_in_worker_processes_too(demo_lists, tmp_path):
    pytest.importorskip("opensmile", reason='needs the opensmile package: pip install "mser[opensmile]"')
    list_dir = small_lists(demo_lists, tmp_path, clips=64)
    config = config_for(list_dir, tmp_path / "cache", "eGeMAPS_LLD")
    items = read_data_list(str(list_dir / "train_list.txt"), 6)
    featurizer = build_featurizer("eGeMAPS_LLD")
    analysed = []   # clips analysed in this process (a forked worker appends to its own copy)
    contours = featurizer.contours
    featurizer.contours = lambda clip: analysed.append(len(clip)) or contours(clip)
    expected = compute_features(featurizer, items, config)
    assert len(analysed) == len(items)
    config["dataset_conf"]["feature_cache"]["workers"] = 2
    computed = compute_features(featurizer, items, config)
    assert len(analysed) == len(items)   # nothing more in this process: the workers analysed every clip
    assert list(computed["features"]) == list(expected["features"])
    assert_same_features(computed, expected)


@pytest.mark.parametrize("value", ["many", -1, 1.5, True])
def test_a_bad_number_of_extraction_workers_is_one_config_error(demo_lists, tmp_path, value):
    from mser.errors import ConfigError
    list_dir = small_lists(demo_lists, tmp_path, clips=4)
    config = config_for(list_dir, tmp_path / "cache", "CountingFeatures")
    config["dataset_conf"]["feature_cache"]["workers"] = value
    items = read_data_list(str(list_dir / "train_list.txt"), 6)
    with pytest.raises(ConfigError, match="feature_cache.workers must be 'auto' or a whole number") as error:
        compute_features(CountingFeatures(), items, config)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="'dataset_conf.feature_cache.workers' must be a whole number >= 0 or auto"):
        load_config("configs/egemaps.yml", f"dataset_conf.feature_cache.workers={value}")

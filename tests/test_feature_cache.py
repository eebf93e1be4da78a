"""extract_features.py and the feature cache: same features as from audio, stale caches refused."""
import re
import shutil

import torch

from conftest import assert_one_line_error, run_script, tiny_overwrites

from mser.config import load_config
from mser.data.dataset import collate
from mser.trainer import MSERTrainer


def cache_overwrites(list_dir, cache_dir, **extra):
    return tiny_overwrites(list_dir, **{"dataset_conf.feature_cache.enable": "true",
                                        "dataset_conf.feature_cache.cache_dir": cache_dir, **extra})


def test_cached_features_equal_features_from_audio(demo_lists, tmp_path):
    config = load_config("configs/bi_lstm.yml", cache_overwrites(demo_lists, tmp_path / "cache"))
    trainer = MSERTrainer(config, use_gpu=False)
    _, _, test_items = trainer.read_lists()
    items = test_items[:6]

    from_audio = collate([trainer.dataset(items, train=False)[i] for i in range(len(items))])
    expected, expected_lengths = trainer.features(from_audio)
    trainer.prepare_caches()
    from_cache = collate([trainer.dataset(items, train=False)[i] for i in range(len(items))])
    assert from_cache.is_features
    cached, cached_lengths = trainer.features(from_cache)
    assert torch.equal(cached_lengths, expected_lengths)
    torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-5)


def test_extract_then_train_from_cache_and_refuse_stale(demo_lists, tmp_path):
    cache = tmp_path / "cache"
    extracted = run_script("extract_features.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                           "--overwrites", cache_overwrites(demo_lists, cache))
    assert extracted.returncode == 0, extracted.stderr[-2000:]
    first_files = sorted(p.name for p in cache.iterdir())
    assert len(first_files) == 2 and all(re.fullmatch(r"Fbank_[0-9a-f]{8}_t(rain|est)_list_[0-9a-f]{8}\.pt", name)
                                         for name in first_files), first_files

    trained = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                         "--save_model_path", tmp_path / "models", "--log_dir", "",
                         "--overwrites", cache_overwrites(demo_lists, cache))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "cached features of" not in trained.stdout  # read, not rebuilt
    assert "epoch 1/1" in trained.stdout

    # other feature settings (another config) get caches of their own beside the first ones
    other = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                       "--save_model_path", tmp_path / "models_32", "--log_dir", "",
                       "--overwrites", cache_overwrites(demo_lists, cache, **{
                           "preprocess_conf.method_args.num_mel_bins": 32}))
    assert other.returncode == 0, other.stderr[-2000:]
    assert "cached features of" in other.stdout
    assert set(first_files) < {p.name for p in cache.iterdir()} and len(list(cache.iterdir())) == 4

    # a cache whose contents no longer match the file name is refused
    victim = next(p for p in cache.iterdir() if p.name in first_files and "_test_list_" in p.name)
    shutil.copyfile(next(p for p in cache.iterdir() if p.name in first_files and p != victim), victim)
    stale = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                       "--save_model_path", tmp_path / "models", "--overwrite", "--log_dir", "",
                       "--overwrites", cache_overwrites(demo_lists, cache))
    assert_one_line_error(stale, "is stale (the data list changed")

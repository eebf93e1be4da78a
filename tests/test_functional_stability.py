"""tools/functional_stability.py: the stability score on known data, and the script on the demo lists."""
import importlib.util
import json

import numpy as np
import pytest

from conftest import REPO, run_script
from mser.config import load_config


def stability_tool():
    path = REPO / "tools" / "functional_stability.py"
    spec = importlib.util.spec_from_file_location("mser_functional_stability", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_session_wide_shift_is_stable_and_scrambled_values_are_not():
    rng = np.random.default_rng(0)
    speakers = np.repeat(["a", "b", "c"], 40)
    clean = rng.normal(size=(120, 3)) + np.repeat([[0.0, 5.0, 1.0], [2.0, -1.0, 0.0], [4.0, 0.0, 3.0]], 40, axis=0)
    copy = clean.copy()
    copy[:, 0] = 3 * clean[:, 0] + np.repeat([7.0, -2.0, 0.5], 40)   # a session's gain and offset: stable
    copy[:, 1] = rng.normal(size=120)                                # scrambled by the channel
    copy[:, 2] = 5.0                                                 # flattened: says nothing
    scores = stability_tool().stability(clean, speakers, [copy], [[f"{s}#copy1" for s in speakers]])
    assert scores[0] == pytest.approx(1.0) and abs(scores[1]) < 0.25 and scores[2] == 0.0


def test_the_script_scores_every_functional_and_lists_the_unstable_ones(demo_lists, tmp_path):
    overwrites = {"dataset_conf.train_list": demo_lists / "train_list.txt",
                  "dataset_conf.test_list": demo_lists / "test_list.txt",
                  "dataset_conf.label_list_path": demo_lists / "label_list.txt",
                  "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                  "dataset_conf.feature_cache.augmented_copies": 1}
    result = run_script("tools/functional_stability.py", "--configs", "configs/egemaps.yml",
                        "--overwrites", ",".join(f"{key}={value}" for key, value in overwrites.items()),
                        "--threshold", "0.6", "--json", tmp_path / "stability.json",
                        "--write", tmp_path / "unstable.txt")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scores = json.loads((tmp_path / "stability.json").read_text())
    assert len(scores) == 91 and all(-1.0 <= value <= 1.0 for value in scores.values())   # 88 + level + 2 durations
    assert scores["duration_log_s"] > 0.9   # no channel moves a clip's duration
    listed = result.stdout.split("drop_functionals: [")[1].split("]")[0]
    names = [name for name in listed.split(", ") if name]
    assert names == sorted(name for name, value in scores.items()
                           if value < 0.6 and name not in ("level_dBFS", "duration_log_s", "speech_duration_log_s"))
    assert list((tmp_path / "cache").glob("eGeMAPS_*_train_list_copies_*.pt"))
    written = (tmp_path / "unstable.txt").read_text().splitlines()
    assert written[0].startswith(f"# {len(names)} names: stability below 0.6") and written[1:] == names
    listed_file = tmp_path / "unstable.txt"
    config = load_config("configs/egemaps.yml", f"preprocess_conf.method_args.drop_functionals={listed_file}")
    assert config["preprocess_conf"]["method_args"]["drop_functionals"] == names   # what a checkpoint stores


def test_a_frame_level_featurizer_is_one_line_error(demo_lists):
    result = run_script("tools/functional_stability.py", "--configs", "configs/tdnn_prosody.yml", "--overwrites",
                        f"dataset_conf.label_list_path={demo_lists / 'label_list.txt'}")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: configs/tdnn_prosody.yml: FbankProsody is not a clip-level featurizer"

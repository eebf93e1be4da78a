"""Forests fitted by scikit-learn and held as tensors (mser.models.forest): the same probabilities
as scikit-learn's, checkpoints of any node count, and configs/egemaps_forest.yml through train.py,
eval.py and infer.py. The generic model tests (shapes, padding, ONNX) run on fitted forests too."""
import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from conftest import REPO, assert_one_line_error, run_script, tiny_overwrites
from mser.errors import CheckpointError, ConfigError
from mser.factory import load_matching_weights
from mser.models import build_model

ESTIMATORS = {"ExtraTrees": ExtraTreesClassifier, "RandomForest": RandomForestClassifier}


def toy_data(clips: int = 240, dims: int = 9, seed: int = 0):
    """Vectors whose classes 0-3 depend on two dimensions, with noise."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((clips, dims)).astype(np.float32)
    labels = (vectors[:, 0] > 0).astype(int) + 2 * (vectors[:, 1] + 0.3 * rng.standard_normal(clips) > 0.2)
    return vectors, labels


def forest_probabilities(model, vectors: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(vectors)[:, None, :]).exp().numpy()


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_probabilities_are_scikit_learns(name, balanced):
    vectors, labels = toy_data()
    model = build_model(name, input_size=9, num_class=4, n_trees=20, smoothing=0.0)
    model.fit(vectors, labels, seed=7, balanced=balanced)
    reference = ESTIMATORS[name](n_estimators=20, random_state=7, class_weight="balanced" if balanced else None)
    reference.fit(vectors, labels)
    unseen = toy_data(seed=1)[0]
    np.testing.assert_allclose(forest_probabilities(model, unseen), reference.predict_proba(unseen), atol=1e-6)
    assert model.steps == max(tree.tree_.max_depth for tree in reference.estimators_)


def test_a_class_missing_from_training_gets_only_the_smoothing():
    vectors, labels = toy_data()
    keep = labels != 2
    model = build_model("ExtraTrees", input_size=9, num_class=4, n_trees=10, smoothing=0.01)
    probabilities = forest_probabilities(model.fit(vectors[keep], labels[keep]), toy_data(seed=1)[0])
    np.testing.assert_allclose(probabilities[:, 2], 0.01 / 1.04, rtol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_an_unfitted_forest_gives_every_class_the_same_probability():
    model = build_model("RandomForest", input_size=5, num_class=3)
    np.testing.assert_allclose(forest_probabilities(model, np.ones((2, 5), np.float32)), 1 / 3, rtol=1e-6)


def test_frame_features_are_averaged_over_each_clips_own_frames():
    vectors, labels = toy_data()
    model = build_model("ExtraTrees", input_size=9, num_class=4, n_trees=10).fit(vectors, labels)
    frames = torch.from_numpy(vectors[:2])[:, None, :].repeat(1, 6, 1)
    frames[1, 3:] = 100.0   # padding past the second clip's 3 frames
    with torch.no_grad():
        padded = model(frames, torch.tensor([6, 3]))
        alone = model(torch.from_numpy(vectors[:2])[:, None, :])
    torch.testing.assert_close(padded, alone)


def test_weights_of_any_node_count_load_into_a_fresh_forest():
    vectors, labels = toy_data()
    fitted = build_model("ExtraTrees", input_size=9, num_class=4, n_trees=12).fit(vectors, labels, seed=3)
    fresh = build_model("ExtraTrees", input_size=9, num_class=4, n_trees=12)
    load_matching_weights(fresh, fitted.state_dict(), "saved")
    unseen = toy_data(seed=2)[0]
    np.testing.assert_array_equal(forest_probabilities(fresh, unseen), forest_probabilities(fitted, unseen))
    other_labels = build_model("ExtraTrees", input_size=9, num_class=5)
    with pytest.raises(CheckpointError, match="another label set"):
        load_matching_weights(other_labels, fitted.state_dict(), "saved")


# ---------------------------------------------------------------- through the scripts

@pytest.fixture(scope="module")
def lists(demo_lists, tmp_path_factory):
    """The demo lists in a folder of this module's own: a clip-level featurizer's scaler is written
    beside the label list, and the other modules' eGeMAPS runs must fit theirs themselves."""
    folder = tmp_path_factory.mktemp("forest_lists")
    for name in ("train_list.txt", "test_list.txt", "label_list.txt"):
        shutil.copy(demo_lists / name, folder / name)
    return folder


def forest_overwrites(lists, **extra) -> str:
    """configs/egemaps_forest.yml on the small demo slice, 50 trees, its own features and model."""
    return tiny_overwrites(lists, **{"model_conf.model": None,
                                     "model_conf.model_args.hidden_size": None,
                                     "preprocess_conf.feature_method": None,
                                     "preprocess_conf.method_args.num_mel_bins": None,
                                     "model_conf.model_args.n_trees": 50, **extra})


@pytest.fixture(scope="module")
def forest_model(lists, tmp_path_factory):
    pytest.importorskip("opensmile", reason='needs the opensmile package: pip install "mser[opensmile]"')
    work = tmp_path_factory.mktemp("forest")
    result = run_script("train.py", "--configs", "configs/egemaps_forest.yml", "--use_gpu", "false",
                        "--log_dir", "", "--save_model_path", work / "models",
                        "--overwrites", forest_overwrites(lists))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "models" / "ExtraTrees_eGeMAPS" / "best_model", result


def test_egemaps_forest_trains_evaluates_and_infers(forest_model, lists, tmp_path):
    model_dir, trained = forest_model
    assert "| fitted |" in trained.stdout and "test set, best model (epoch 1)" in trained.stdout
    evaluated = run_script("eval.py", "--resume_model", model_dir, "--use_gpu", "false",
                           "--test_list", lists / "test_list.txt", "--output_dir", tmp_path / "eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    # the same model scores the same clips the same way in train.py's test and in eval.py
    assert trained.stdout.split("test set, best model (epoch 1):")[1].split("\n")[1] in evaluated.stdout
    clip = (lists / "test_list.txt").read_text().split("\t")[0]
    inferred = run_script("infer.py", "--model_path", model_dir, "--audio_path", clip, "--use_gpu", "false")
    assert inferred.returncode == 0 and f"{clip}: " in inferred.stdout, inferred.stderr[-3000:]


@pytest.mark.parametrize("change, message", [
    ({"train_conf.max_epoch": 3}, "fitted in one pass over the training features: set train_conf.max_epoch to 1"),
    ({"train_conf.mixup_alpha": 0.2}, "train_conf.mixup_alpha trains by gradient steps"),
])
def test_gradient_settings_are_refused_for_a_forest_in_one_line(lists, tmp_path, change, message):
    result = run_script("train.py", "--configs", "configs/egemaps_forest.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", forest_overwrites(lists, **change))
    assert_one_line_error(result, message)
    assert not (tmp_path / "models").exists()


def test_a_forest_is_an_ensemble_member_like_any_model(lists, tmp_path):
    pytest.importorskip("opensmile", reason='needs the opensmile package: pip install "mser[opensmile]"')
    config = tmp_path / "ensemble.yml"
    config.write_text(yaml.safe_dump({"ensemble": {"combine": "geometric", "members": [
        {"configs": str(REPO / "configs" / "egemaps_forest.yml"), "overwrites": "model_conf.model_args.n_trees=30"},
        {"configs": str(REPO / "configs" / "bi_lstm.yml"),
         "overwrites": "model_conf.model_args.hidden_size=16,preprocess_conf.feature_method=Fbank,"
                       "preprocess_conf.method_args.num_mel_bins=40"}]}}))
    common = ",".join(part for part in tiny_overwrites(lists).split(",")
                      if not part.startswith(("model_conf.", "preprocess_conf.")))
    trained = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                         "--save_model_path", tmp_path / "models", "--overwrites", common)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    evaluated = run_script("eval.py", "--resume_model", tmp_path / "models" / "Ensemble", "--use_gpu", "false",
                           "--test_list", lists / "test_list.txt", "--output_dir", tmp_path / "eval", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    members = sorted(path.split("/Ensemble/")[1] for path in metrics["members"])
    assert members == ["BiLSTM_Fbank/best_model", "ExtraTrees_eGeMAPS/best_model"]


@pytest.mark.parametrize("args, fragment", [
    ({"n_trees": 0}, "model_args.n_trees must be a count of at least 1, got 0"),
    ({"max_features": "half"}, "model_args.max_features must be sqrt, log2, null, a count or a fraction"),
    ({"max_features": 1.5}, "model_args.max_features must be"),
    ({"min_samples_leaf": 0.5}, "model_args.min_samples_leaf must be a count"),
    ({"max_depth": 0}, "model_args.max_depth must be null or a count"),
    ({"smoothing": 1.0}, "model_args.smoothing must be a number in [0, 1)"),
])
def test_bad_forest_arguments_are_config_errors_before_any_fit(args, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        build_model("ExtraTrees", input_size=4, num_class=2, **args)


def test_a_finished_forest_resumes_without_fitting_again(forest_model, lists, tmp_path):
    model_dir, trained = forest_model
    models = tmp_path / "models"
    shutil.copytree(model_dir.parent.parent, models)
    resumed = run_script("train.py", "--configs", "configs/egemaps_forest.yml", "--use_gpu", "false", "--log_dir", "",
                         "--save_model_path", models, "--resume_model", models / "ExtraTrees_eGeMAPS" / "last_model",
                         "--overwrites", forest_overwrites(lists))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 epochs done" in resumed.stdout and "| fitted |" not in resumed.stdout
    # the resumed run's test line is the fitted model's
    assert trained.stdout.split("test set, best model (epoch 1):")[1].split("\n")[1] in resumed.stdout

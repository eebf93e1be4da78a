"""Runs of train.py (main, in this process) on a tiny generated corpus: logging and the test list
never change training, re-runs into a used folder, schedulers, keep_best, evaluation in eval mode,
feature caches of lists with one file name, random-state round trips (issue 13)."""
import json
import random
import re

import numpy as np
import pytest
import torch

from mser import checkpoint
from mser.cli.eval import main as eval_main
from mser.cli.train import main as train_main
from mser.config import load_config
from mser.data.lists import read_data_list
from mser.trainer import MSERTrainer, capture_rng, restore_rng
from trainer_corpus import make_corpus, tiny_run_overwrites, train_argv

MODEL_DIR = "BiLSTM_Fbank"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tiny_corpus"))


def weights(directory) -> dict:
    return checkpoint.load_weights(str(directory))


def same_weights(a, b) -> bool:
    first, second = weights(a), weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def state(directory) -> dict:
    return json.loads((directory / checkpoint.STATE_FILE).read_text())


def run_main(main, capsys, argv):
    """(exit code, stdout, stderr); 0 when main returns."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str) -> str:
    # in-process runs share stderr with the progress bars, whose cursor moves can precede a line
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", stderr)
    lines = [line for line in plain.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---------------------------------------------------------------- logging and the test list

def test_logging_and_test_labels_never_change_training(corpus, tmp_path):
    plain, logged, relabelled = tmp_path / "plain", tmp_path / "logged", tmp_path / "relabelled"
    train_main(train_argv(corpus, plain))
    train_main(train_argv(corpus, logged, log_dir=tmp_path / "log", **{"train_conf.test_every_epoch": True}))
    # the same test clips with other labels: the test set must not steer the run in any way
    lines = (corpus / "test_list.txt").read_text().splitlines()
    shifted = [f"{line.split(chr(9))[0]}\t{(int(line.split(chr(9))[1]) + 1) % 3}" for line in lines]
    (tmp_path / "shifted_test_list.txt").write_text("\n".join(shifted) + "\n")
    train_main(train_argv(corpus, relabelled, log_dir=tmp_path / "log2", **{
        "train_conf.test_every_epoch": True, "dataset_conf.test_list": tmp_path / "shifted_test_list.txt"}))
    assert any((tmp_path / "log").rglob("*"))  # VisualDL wrote its records
    for run in (logged, relabelled):
        assert same_weights(run / MODEL_DIR / "last_model", plain / MODEL_DIR / "last_model")
        best_epoch = state(run / MODEL_DIR / "last_model")["best_epoch"]
        assert best_epoch == state(plain / MODEL_DIR / "last_model")["best_epoch"]


# ---------------------------------------------------------------- re-runs into a used folder

def test_a_fresh_run_into_a_used_folder_is_refused_or_overwritten(corpus, tmp_path, capsys):
    train_main(train_argv(corpus, tmp_path, **{"train_conf.max_epoch": 2}))
    before = {path.name: path.stat().st_mtime_ns for path in (tmp_path / MODEL_DIR).iterdir()}
    code, _, stderr = run_main(train_main, capsys, train_argv(corpus, tmp_path, **{"train_conf.max_epoch": 1}))
    assert code == 2
    line = one_error_line(stderr)
    assert all(option in line for option in ("--resume_model", "--save_model_path", "--overwrite")), line
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / MODEL_DIR).iterdir()} == before

    code, stdout, _ = run_main(train_main, capsys, train_argv(corpus, tmp_path, "--overwrite",
                                                              **{"train_conf.max_epoch": 1}))
    assert code == 0 and "--overwrite: deleted" in stdout
    assert sorted(path.name for path in (tmp_path / MODEL_DIR).iterdir()) == ["best_model", "epoch_1", "last_model"]
    assert state(tmp_path / MODEL_DIR / "best_model")["epoch"] == 1


@pytest.mark.parametrize("overwrite, fragment", [
    ("model_conf.model=BiLSTMM", "unknown model"),
    ("optimizer_conf.optimizer_args.lrr=0.1", "lrr"),
])
def test_bad_input_leaves_no_model_folder(corpus, tmp_path, capsys, overwrite, fragment):
    argv = train_argv(corpus, tmp_path / "models")
    argv[-1] += "," + overwrite
    code, _, stderr = run_main(train_main, capsys, argv)
    assert code == 2 and fragment in one_error_line(stderr)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


# ---------------------------------------------------------------- schedulers and keep_best

def train_with_scheduler(corpus, save_path, name: str, args: dict, **overwrites) -> None:
    config = load_config("configs/bi_lstm.yml", tiny_run_overwrites(corpus, **overwrites))
    config["optimizer_conf"].update(scheduler=name, scheduler_args=args)
    MSERTrainer(config, use_gpu=False).train(save_model_path=str(save_path), log_dir="")


def test_step_lr_halves_every_epoch(corpus, tmp_path):
    train_with_scheduler(corpus, tmp_path, "StepLR", {"step_size": 1, "gamma": 0.5},
                         **{"optimizer_conf.optimizer_args.lr": 0.01})
    training = checkpoint.load_training_state(str(tmp_path / MODEL_DIR / "last_model"))
    assert training["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.25)
    assert training["scheduler"]["last_epoch"] == 2


def test_reduce_lr_on_plateau_follows_the_validation_score(corpus, tmp_path):
    train_with_scheduler(corpus, tmp_path, "ReduceLROnPlateau", {"patience": 0, "factor": 0.5},
                         **{"train_conf.max_epoch": 3})
    last = tmp_path / MODEL_DIR / "last_model"
    scheduler = checkpoint.load_training_state(str(last))["scheduler"]
    assert scheduler["best"] == pytest.approx(state(last)["best_score"])  # it saw the validation scores
    lr = checkpoint.load_training_state(str(last))["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.001 * 0.5 ** (3 - state(last)["best_epoch"]))  # halved after each flat epoch


def fake_epoch(directory, epoch: int, score: float) -> None:
    checkpoint.save_checkpoint(str(directory / f"epoch_{epoch}"), {}, {
        "epoch": epoch, "best_metric": "unweighted_accuracy", "val": {"unweighted_accuracy": score}},
        {"a": 1}, ["x", "y"])


def test_keep_best_keeps_the_best_epochs_besides_the_newest(tmp_path):
    for epoch, score in enumerate([0.5, 0.9, 0.6, 0.9, 0.7, 0.4], start=1):
        fake_epoch(tmp_path, epoch, score)
    checkpoint.prune_epochs(str(tmp_path), keep=1, keep_best=3)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch_2", "epoch_4", "epoch_5", "epoch_6"]


def test_keep_best_through_train_py(corpus, tmp_path):
    train_main(train_argv(corpus, tmp_path, **{"train_conf.max_epoch": 3, "train_conf.keep_last_epochs": 1,
                                               "train_conf.keep_best": 1}))
    model_dir = tmp_path / MODEL_DIR
    best = state(model_dir / "last_model")["best_epoch"]
    expected = {"best_model", "last_model", "epoch_3", f"epoch_{best}"}
    assert {path.name for path in model_dir.iterdir()} == expected


# ---------------------------------------------------------------- eval mode, caches, lists

def test_validation_and_caches_run_the_featurizer_in_eval_mode(corpus, tmp_path):
    overwrites = tiny_run_overwrites(corpus, **{"preprocess_conf.method_args.dither": 1.0,
                                                "dataset_conf.feature_cache.enable": True,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache"})
    trainer = MSERTrainer(load_config("configs/bi_lstm.yml", overwrites), use_gpu=False)
    trainer.build_model()
    _, _, test_items = trainer.read_lists()
    first, second = trainer.predict_items(test_items)[1], trainer.predict_items(test_items)[1]
    assert torch.equal(first, second) and trainer.featurizer.training  # dither only in training
    caches = trainer.prepare_caches()
    assert all(torch.equal(a, b) for a, b in zip(caches[1]["features"].values(),
                                                 trainer.prepare_caches(rebuild=True)[1]["features"].values()))


def test_two_test_lists_with_one_file_name_evaluate_side_by_side(corpus, tmp_path, capsys):
    other = make_corpus(tmp_path / "other_corpus", clips_per_label=1, test_per_label=3, seed=7)
    cache = tmp_path / "cache"
    cached = {"dataset_conf.feature_cache.enable": True, "dataset_conf.feature_cache.cache_dir": cache}
    train_main(train_argv(corpus, tmp_path / "models", **{**cached, "train_conf.max_epoch": 1}))
    checkpoint_dir = tmp_path / "models" / MODEL_DIR / "best_model"
    from mser.cli.extract_features import main as extract_main
    extract_main(["--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                  "--overwrites", tiny_run_overwrites(other, **cached)])
    assert len(list(cache.glob("Fbank_*_test_list_*.pt"))) == 2
    results = []
    for list_dir in (corpus, other):
        code, stdout, stderr = run_main(eval_main, capsys, [
            "--resume_model", str(checkpoint_dir), "--use_gpu", "false", "--json",
            "--output_dir", str(tmp_path / "eval"),
            "--test_list", str(list_dir / "test_list.txt"),
            "--overwrites", ",".join(f"{k}={v}" for k, v in cached.items())])
        assert code == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [r["num_samples"] for r in results] == [6, 9]


def test_a_list_saved_with_a_byte_order_mark_loads(corpus, tmp_path):
    text = (corpus / "train_list.txt").read_text()
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_data_list(str(tmp_path / "bom.txt"), 3) == read_data_list(str(corpus / "train_list.txt"), 3)


def test_random_state_survives_a_weights_only_round_trip(tmp_path):
    device = torch.device("cpu")
    torch.save({"rng": [capture_rng(device)]}, tmp_path / "state.pth")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(torch.load(tmp_path / "state.pth", weights_only=True)["rng"][0], device)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]

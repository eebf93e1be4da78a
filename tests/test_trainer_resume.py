"""Kills and Ctrl-C at any moment of a run, through train.py's main in this process: the run
resumes to the very weights of an uninterrupted one (CPU, bit-exact), and the checkpoints on disk
never claim a best model whose weights were not saved (issue 13, faults 3 and 5)."""
import json

import pytest
import torch

from mser import checkpoint
from mser.cli.train import main as train_main
from mser.trainer import MSERTrainer
from trainer_corpus import make_corpus, train_argv

MODEL_DIR = "BiLSTM_Fbank"


class Killed(BaseException):
    """What SIGKILL does to the process at that moment: nothing after it runs."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tiny_corpus"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted 2-epoch run: its model folder."""
    save = tmp_path_factory.mktemp("reference")
    train_main(train_argv(corpus, save))
    return save / MODEL_DIR


def weights(directory) -> dict:
    return checkpoint.load_weights(str(directory))


def assert_same_weights(directory, expected_directory) -> None:
    got, expected = weights(directory), weights(expected_directory)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[name], expected[name]) for name in got), f"{directory} differs from {expected_directory}"


def state(directory) -> dict:
    return json.loads((directory / checkpoint.STATE_FILE).read_text())


def kill_after_saves(monkeypatch, count: int) -> None:
    real = checkpoint.save_checkpoint
    done = []

    def save_then_maybe_die(*args, **kwargs):
        path = real(*args, **kwargs)
        done.append(path)
        if len(done) == count:
            raise Killed()
        return path
    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_maybe_die)


def stop_at_step(monkeypatch, step: int, error: BaseException) -> None:
    real = MSERTrainer.compute_gradients
    calls = []

    def maybe_stop(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise error
        return real(self, *args, **kwargs)
    monkeypatch.setattr(MSERTrainer, "compute_gradients", maybe_stop)


def assert_recorded_best_is_saved(model_dir) -> None:
    """The best epoch last_model records is the one whose weights best_model holds."""
    if not (model_dir / "last_model").is_dir():
        return
    recorded = state(model_dir / "last_model")["best_epoch"]
    assert (model_dir / "best_model").is_dir(), "last_model records a best epoch, but best_model is missing"
    assert state(model_dir / "best_model")["epoch"] == recorded


def resume_to_the_end(corpus, save, model_dir) -> None:
    if (model_dir / "last_model").is_dir():
        train_main(train_argv(corpus, save, "--resume_model", model_dir / "last_model"))
    else:  # killed before the first complete epoch was saved: start again
        train_main(train_argv(corpus, save, "--overwrite"))


# 2 epochs of 5 steps; each epoch saves epoch_N, best_model when the score improved, last_model
@pytest.mark.parametrize("kill", [("save", 1), ("save", 2), ("save", 3), ("save", 4), ("step", 3), ("step", 8)])
def test_a_kill_at_any_moment_resumes_to_the_uninterrupted_weights(corpus, reference, tmp_path, monkeypatch, kill):
    what, count = kill
    with monkeypatch.context() as patch:
        if what == "save":
            kill_after_saves(patch, count)
        else:
            stop_at_step(patch, count, Killed())
        with pytest.raises(Killed):
            train_main(train_argv(corpus, tmp_path))
    model_dir = tmp_path / MODEL_DIR
    assert_recorded_best_is_saved(model_dir)

    resume_to_the_end(corpus, tmp_path, model_dir)
    assert state(model_dir / "last_model")["epoch"] == 2
    assert_same_weights(model_dir / "last_model", reference / "last_model")
    assert_same_weights(model_dir / "best_model", reference / "best_model")
    assert state(model_dir / "best_model")["epoch"] == state(reference / "best_model")["epoch"]
    assert_recorded_best_is_saved(model_dir)


def test_best_model_is_saved_before_last_model(corpus, tmp_path, monkeypatch):
    real, order = checkpoint.save_checkpoint, []

    def save(directory, *args, **kwargs):
        order.append(directory.rsplit("/", 1)[-1])
        return real(directory, *args, **kwargs)
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    train_main(train_argv(corpus, tmp_path, **{"train_conf.max_epoch": 1}))
    assert order == ["epoch_1", "best_model", "last_model"]


@pytest.mark.parametrize("step", [3, 7])
def test_ctrl_c_saves_an_interrupted_checkpoint_that_resumes_exactly(corpus, reference, tmp_path, monkeypatch,
                                                                     capsys, step):
    with monkeypatch.context() as patch:
        stop_at_step(patch, step, KeyboardInterrupt())
        with pytest.raises(SystemExit) as exit_info:
            train_main(train_argv(corpus, tmp_path))
    assert exit_info.value.code == 130
    output = capsys.readouterr()
    model_dir = tmp_path / MODEL_DIR
    interrupted = model_dir / "interrupted_model"
    saved = state(interrupted)
    steps_per_epoch = 5
    done_epochs, done_batches = divmod(step - 1, steps_per_epoch)
    assert (saved["epoch"], saved["batches_done"], saved["step"]) == (done_epochs, done_batches, step - 1)
    assert f"after {done_epochs} complete epochs and {done_batches} batches of epoch {done_epochs + 1}" in output.out
    assert f"continue with --resume_model {interrupted}" in output.out
    assert output.err.rstrip().endswith("interrupted") and "Traceback" not in output.err
    if done_epochs:  # last_model still holds the last complete epoch, not the interrupted weights
        assert state(model_dir / "last_model")["epoch"] == done_epochs
        assert_same_weights(model_dir / "last_model", reference / "epoch_1")

    train_main(train_argv(corpus, tmp_path, "--resume_model", interrupted))
    assert f"continuing after batch {done_batches}" in capsys.readouterr().out or done_batches == 0
    assert_same_weights(model_dir / "last_model", reference / "last_model")
    assert not interrupted.exists()  # a complete epoch supersedes it


def test_ctrl_c_during_validation_resumes_at_the_validation(corpus, reference, tmp_path, monkeypatch):
    real, calls = MSERTrainer.evaluate_items, []

    def interrupt_second_validation(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(MSERTrainer, "evaluate_items", interrupt_second_validation)
        with pytest.raises(SystemExit):
            train_main(train_argv(corpus, tmp_path))
    interrupted = tmp_path / MODEL_DIR / "interrupted_model"
    assert (state(interrupted)["epoch"], state(interrupted)["batches_done"]) == (1, 6)  # 21 clips in batches of 4
    train_main(train_argv(corpus, tmp_path, "--resume_model", interrupted))
    assert_same_weights(tmp_path / MODEL_DIR / "last_model", reference / "last_model")
    assert_same_weights(tmp_path / MODEL_DIR / "best_model", reference / "best_model")

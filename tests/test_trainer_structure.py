"""The trainer's structure (issue 13): objects built apart from the loop (mser.builder), an
executor that evaluates without a trainer (no process group, no reseeding), a checkpointer of
named objects whose folders stay readable, and clip settings as one object.

tests/data/checkpoint_v0 is epoch 1 of the tiny run below, written by the trainer before the
Checkpointer (commit 9c0eb42): model.pth, optimizer.pth, model.state, speaker_norm.pth."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from mser import checkpoint
from mser.builder import build_run
from mser.cli.train import main as train_main
from mser.clip import ClipSettings
from mser.config import load_config
from mser.executor import Executor, TrainState
from mser.factory import load_for_inference
from mser.optim import build_optimizer
from mser.trainer import MSERTrainer
from trainer_corpus import make_corpus, tiny_run_overwrites, train_argv

OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint_v0"
MODEL_DIR = "BiLSTM_Fbank"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tiny_corpus"))


def config_of(corpus, **extra):
    return load_config("configs/bi_lstm.yml", tiny_run_overwrites(corpus, **extra))


def test_a_checkpoint_of_the_earlier_format_resumes_to_the_uninterrupted_weights(corpus, tmp_path):
    train_main(train_argv(corpus, tmp_path / "reference"))
    train_main(train_argv(corpus, tmp_path / "resumed", "--resume_model", OLD_CHECKPOINT))
    expected = checkpoint.load_weights(str(tmp_path / "reference" / MODEL_DIR / "last_model"))
    got = checkpoint.load_weights(str(tmp_path / "resumed" / MODEL_DIR / "last_model"))
    assert got.keys() == expected.keys()
    # Not bit-equal: the checkpoint's first epoch ran on an earlier batch norm, whose sums were taken
    # in another order (differences of 1e-8 to 2e-6). The attention's last bias is the exception: a
    # constant added before a softmax over time changes nothing, so its gradient is rounding noise,
    # which Adam turns into steps of up to lr (measured: 8.6e-5).
    for key in got:
        atol = 1e-3 if key == "pooling.attention.2.bias" else 1e-5
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=atol, msg=key)
    state = json.loads((tmp_path / "resumed" / MODEL_DIR / "last_model" / checkpoint.STATE_FILE).read_text())
    assert state["epoch"] == 2


def test_the_executor_evaluates_like_the_trainer_without_reseeding(corpus):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    executor = Executor.from_config(config_of(corpus), use_gpu=False)
    assert torch.equal(torch.get_rng_state(), before) and executor.context.world_size == 1
    metrics = executor.evaluate(resume_model=str(OLD_CHECKPOINT))
    assert metrics == MSERTrainer(config_of(corpus), use_gpu=False).evaluate(resume_model=str(OLD_CHECKPOINT))


def test_build_run_gives_the_objects_of_a_run(corpus):
    config = config_of(corpus)
    config["optimizer_conf"].update(scheduler="StepLR", scheduler_args={})
    executor = Executor.from_config(config, use_gpu=False)
    train_items = executor.read_lists()[0]
    run = build_run(executor.config, executor.featurizer, executor.labels, train_items, executor.device)
    assert run.scheduler_unit == "epoch" and run.steps_per_epoch == -(-len(train_items) // 4)
    features = torch.randn(2, 30, executor.featurizer.feature_dim)
    logits = executor.compute_forward(run.model, features, torch.tensor([30, 20]))
    assert logits.shape == (2, 3)
    assert run.criterion(logits, torch.tensor([0, 2])).ndim == 0


class Ema:
    """A stand-in for EMA weights: any object with state_dict/load_state_dict."""

    def __init__(self, value: float):
        self.shadow = {"weight": torch.full((3,), value)}

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, state):
        self.shadow = {k: v.clone() for k, v in state.items()}


def test_the_checkpointer_saves_and_recovers_named_objects(tmp_path):
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    saver = checkpoint.Checkpointer({"model": model, "optimizer": optimizer, "ema": Ema(2.0)})
    directory = saver.save(str(tmp_path / "ckpt"), {"dataset_conf": {}}, ["a", "b", "c"], {"epoch": 3})
    assert sorted(p.name for p in Path(directory).iterdir()) == sorted(
        [checkpoint.MODEL_FILE, checkpoint.OPTIMIZER_FILE, checkpoint.STATE_FILE, checkpoint.CONFIG_FILE,
         checkpoint.LABEL_FILE])
    assert set(checkpoint.load_training_state(directory)) == {"optimizer", "ema"}

    other, ema = torch.nn.Linear(4, 3), Ema(0.0)
    other_optimizer = torch.optim.SGD(other.parameters(), lr=0.1)
    checkpoint.Checkpointer({"model": other, "optimizer": other_optimizer, "ema": ema}).recover(directory)
    assert torch.equal(other.weight, model.weight) and other_optimizer.param_groups[0]["lr"] == 0.5
    assert torch.equal(ema.shadow["weight"], torch.full((3,), 2.0))


def test_an_old_checkpoint_folder_loads_through_the_checkpointer(tmp_path):
    shutil.copytree(OLD_CHECKPOINT, tmp_path / "old")
    directory = str(tmp_path / "old")
    config, labels, featurizer, model = load_for_inference(directory)
    optimizer = build_optimizer(model.parameters(), config["optimizer_conf"])
    counter = TrainState()
    saved = checkpoint.Checkpointer({"model": model, "optimizer": optimizer, "counter": counter}).recover(directory)
    assert set(saved) == {"optimizer", "scheduler", "scaler", "rng"} and labels == ["low", "mid", "high"]
    assert (counter.epoch, counter.step, counter.best_epoch) == (1, 5, 1)
    assert optimizer.state_dict()["state"], "the optimizer's moments were loaded"


def test_clip_settings_come_from_the_config_once(corpus):
    clip = ClipSettings.from_config(config_of(corpus))
    assert (clip.sample_rate, clip.max_duration, clip.eval_max_duration) == (16000, 0.5, 0.6)
    assert clip.max_samples(train=True) == 8000 and clip.max_samples(train=False) == 9600
    samples = clip.load(str(next((corpus / "audio").iterdir())))
    assert samples.dtype.name == "float32" and samples.ndim == 1


@pytest.mark.parametrize("name, args", [("AdamW", {"lr": 1e-2, "weight_decay": 1e-2}),
                                        ("SGD", {"lr": 1e-2, "momentum": 0.9})])
def test_optimizers_update_all_tensors_at_once_with_the_same_arithmetic(name, args):
    import torch
    conf = {"optimizer": name, "optimizer_args": args}

    def trained(optimizer_conf):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
        optimizer = build_optimizer(model.parameters(), optimizer_conf)
        for step in range(5):
            optimizer.zero_grad()
            model(torch.randn(8, 6, generator=torch.Generator().manual_seed(step))).square().mean().backward()
            optimizer.step()
        return optimizer, [p.detach().clone() for p in model.parameters()]

    optimizer, weights = trained(conf)
    assert optimizer.param_groups[0]["foreach"] is True
    _, loop_weights = trained({**conf, "optimizer_args": {**args, "foreach": False}})
    assert all(torch.equal(a, b) for a, b in zip(weights, loop_weights))
    fused, _ = trained({**conf, "optimizer_args": {**args, "fused": True}})   # the user's choice stays
    assert fused.param_groups[0]["fused"] is True and not fused.param_groups[0]["foreach"]

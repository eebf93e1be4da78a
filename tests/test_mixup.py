"""train_conf.mixup_alpha: the blend of features and losses, and training with it through train.py."""
import pytest
import torch

from conftest import assert_one_line_error, run_script, tiny_overwrites
from mser.errors import ConfigError
from mser.mixup import Mix, Mixup, build_mixup


def test_mixup_blends_each_clip_with_its_partner():
    torch.manual_seed(0)
    features = torch.randn(6, 5, 3)
    lengths = torch.tensor([5, 2, 4, 1, 3, 5])
    mixed, mixed_lengths, mix = Mixup(0.4)(features, lengths)
    assert 0.5 <= mix.weight <= 1.0
    assert sorted(mix.partner.tolist()) == list(range(6))
    expected = mix.weight * features + (1 - mix.weight) * features[mix.partner]
    assert torch.allclose(mixed, expected)
    assert mixed_lengths.tolist() == [max(a, b) for a, b in zip(lengths.tolist(), lengths[mix.partner].tolist())]


def test_one_clip_is_left_alone():
    features, lengths = torch.randn(1, 4, 2), torch.tensor([4])
    mixed, mixed_lengths, mix = Mixup(0.4)(features, lengths)
    assert mix is None and mixed is features and mixed_lengths is lengths


@pytest.mark.parametrize("alpha", [-0.1, "0.2", True, float("inf")])
def test_bad_alpha_is_refused(alpha):
    with pytest.raises(ConfigError, match="mixup_alpha"):
        build_mixup(alpha)


def test_zero_alpha_is_off():
    assert build_mixup(0) is None


def test_loss_is_the_blend_of_both_labels_losses():
    from mser.executor import Executor
    from mser.config import DEFAULT_CONFIG

    class Identity(torch.nn.Module):
        def forward(self, features, lengths):
            return features[:, 0, :]

    class NoAmp:
        def autocast(self):
            import contextlib
            return contextlib.nullcontext()

        def backward(self, loss):
            pass

        def unscale(self, optimizer):
            pass

    executor = Executor.__new__(Executor)
    executor.config = {"optimizer_conf": {"grad_clip": 0}, "train_conf": dict(DEFAULT_CONFIG["train_conf"])}
    executor.speaker_adversary = executor.copy_consistency = None   # as __init__ leaves them, both off
    logits = torch.randn(4, 1, 3)
    labels = torch.tensor([0, 1, 2, 1])
    mix = Mix(0.7, torch.tensor([2, 0, 3, 1]))
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    loss, _ = executor.compute_gradients(Identity(), logits, torch.ones(4), labels, criterion, optimizer, NoAmp(),
                                         mix)
    expected = 0.7 * criterion(logits[:, 0], labels) + 0.3 * criterion(logits[:, 0], labels[mix.partner])
    assert loss == pytest.approx(float(expected), rel=1e-6)


def test_mixup_trains_through_train_py(demo_lists, tmp_path):
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.mixup_alpha": 0.4}))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "models" / "BiLSTM_Fbank" / "best_model" / "model.pth").is_file()


def test_bad_mixup_alpha_is_one_line_through_train_py(demo_lists, tmp_path):
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.mixup_alpha": -1}))
    assert_one_line_error(result, "mixup_alpha")

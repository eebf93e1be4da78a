"""Losses against their definitions: FocalLoss at gamma=0 is cross entropy, and hand-computed
values for gamma, class weights and label smoothing; bad names and arguments are one-line errors."""
import math

import pytest
import torch

from mser.errors import ConfigError
from mser.losses import build_loss, list_losses

# two classes with probabilities 1/4 and 3/4
LOGITS = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
TARGETS = torch.tensor([1, 0])


def focal_term(p: float, gamma: float) -> float:
    """-(1 - p)^gamma log p: one class's focal term, written out."""
    return -((1 - p) ** gamma) * math.log(p)


def random_batch(seed: int = 0, batch: int = 16, num_class: int = 5):
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(batch, num_class, generator=generator)
    return logits, torch.randint(0, num_class, (batch,), generator=generator)


def test_both_losses_are_registered():
    assert list_losses() == ["CrossEntropy", "FocalLoss"]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weight", [None, [0.5, 2.0, 1.0, 3.0, 0.7]])
def test_focal_loss_with_gamma_zero_is_cross_entropy(weight, label_smoothing):
    logits, targets = random_batch()
    expected = torch.nn.functional.cross_entropy(
        logits, targets, weight=None if weight is None else torch.tensor(weight), label_smoothing=label_smoothing)
    focal = build_loss("FocalLoss", gamma=0.0, weight=weight, label_smoothing=label_smoothing)
    cross_entropy = build_loss("CrossEntropy", weight=weight, label_smoothing=label_smoothing)
    assert torch.allclose(focal(logits, targets), expected, atol=1e-6)
    assert torch.allclose(cross_entropy(logits, targets), expected, atol=1e-6)


def test_focal_loss_hand_computed_values():
    loss = build_loss("FocalLoss", gamma=2.0)
    # example 1: target probability 3/4; example 2: 1/4
    expected = (focal_term(0.75, 2) + focal_term(0.25, 2)) / 2
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx((0.0625 * -math.log(0.75) + 0.5625 * -math.log(0.25)) / 2)


def test_focal_loss_class_weights_divide_by_the_targets_weights():
    weight = [2.0, 1.0]
    expected = (1.0 * focal_term(0.75, 2) + 2.0 * focal_term(0.25, 2)) / (1.0 + 2.0)
    assert build_loss("FocalLoss", weight=weight)(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)
    # alpha is the paper's name for the same weights
    assert build_loss("FocalLoss", alpha=weight)(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_label_smoothing_spreads_the_target():
    # smoothing 0.2 over 2 classes: target distribution (0.1, 0.9) for target 1
    loss = build_loss("FocalLoss", gamma=2.0, label_smoothing=0.2)
    expected = 0.1 * focal_term(0.25, 2) + 0.9 * focal_term(0.75, 2)
    assert loss(LOGITS[:1], TARGETS[:1]).item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_down_weights_easy_examples():
    """An example at p_t = 0.9 counts (1 - 0.9)^2 = 1/100 of its cross entropy."""
    logits = torch.tensor([[0.0, math.log(9.0)]])
    targets = torch.tensor([1])
    ratio = build_loss("FocalLoss", gamma=2.0)(logits, targets) / build_loss("CrossEntropy")(logits, targets)
    assert ratio.item() == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_loss_gradient_is_finite_when_a_probability_rounds_to_one(gamma):
    logits = torch.tensor([[200.0, 0.0, -5.0], [0.0, 1.0, 2.0]], requires_grad=True)
    loss = build_loss("FocalLoss", gamma=gamma)(logits, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["CrossEntropy", "FocalLoss"])
def test_losses_take_half_precision_logits_and_move_their_weights(name):
    logits, targets = random_batch(num_class=3)
    loss = build_loss(name, weight=[1.0, 2.0, 3.0]).to("cpu")
    value = loss(logits.bfloat16(), targets)
    assert value.dtype == torch.float32
    assert torch.allclose(value, loss(logits.bfloat16().float(), targets))
    assert "weight" not in loss.state_dict()  # the weights come from the config, not a checkpoint


@pytest.mark.parametrize("name, args, message", [
    ("Focal", {}, "unknown loss 'Focal' \\(did you mean 'FocalLoss'\\?\\)"),
    ("FocalLoss", {"gama": 2}, "unknown key 'gama' .*did you mean 'gamma'"),
    ("CrossEntropy", {"gamma": 2}, "unknown key 'gamma'"),
    ("FocalLoss", {"gamma": -1}, "gamma must be a number >= 0"),
    ("FocalLoss", {"gamma": "two"}, "gamma must be a number >= 0"),
    ("CrossEntropy", {"label_smoothing": 1.0}, "label_smoothing must be a number in \\[0, 1\\)"),
    ("FocalLoss", {"weight": [1.0, -2.0]}, "positive numbers"),
    ("FocalLoss", {"weight": ["a", "b"]}, "list of numbers"),
    ("FocalLoss", {"weight": [1.0, 2.0], "alpha": [1.0, 2.0]}, "either weight or alpha"),
    ("CrossEntropy", {"weight": [1.0, 2.0], "num_class": 3}, "2 class weights for 3 classes"),
])
def test_bad_loss_config_is_one_line_error(name, args, message):
    with pytest.raises(ConfigError, match=message) as error:
        build_loss(name, **args)
    assert "\n" not in str(error.value)


def test_weights_for_the_wrong_number_of_classes_fail_at_the_first_batch_too():
    logits, targets = random_batch(num_class=4)
    with pytest.raises(ConfigError, match="3 class weights for 4 classes"):
        build_loss("FocalLoss", weight=[1.0, 1.0, 1.0])(logits, targets)

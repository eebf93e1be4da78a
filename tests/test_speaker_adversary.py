"""Speaker-adversarial training (train_conf.speaker_adversary, mser.speaker_adversary)."""
import json

import pytest
import torch
from torch import nn

from conftest import assert_one_line_error, run_script, tiny_overwrites

from mser.errors import ConfigError
from mser.speaker_adversary import IGNORED, SpeakerAdversary, build_speaker_adversary


def test_each_term_moves_only_its_own_side():
    """The adversary's cross entropy trains the adversary alone; the confusion term the embedding alone."""
    adversary = SpeakerAdversary(8, ["a", "b", "c"], weight=0.0)
    embedding = torch.randn(6, 8, requires_grad=True)
    adversary.loss(embedding, adversary.targets(["a", "b", "c"] * 2, "cpu")).backward()
    assert embedding.grad is None or torch.count_nonzero(embedding.grad) == 0   # weight 0: no confusion term
    assert all(torch.count_nonzero(p.grad) > 0 for p in adversary.parameters() if p.dim() == 2)
    adversary = SpeakerAdversary(8, ["a", "b", "c"], weight=1.0)
    embedding = torch.randn(6, 8, requires_grad=True)
    targets = adversary.targets(["a", "b", "c"] * 2, "cpu")
    logits = adversary.classifier(embedding.detach())
    adversary_loss = torch.nn.functional.cross_entropy(logits, targets)
    adversary_grads = torch.autograd.grad(adversary_loss, list(adversary.parameters()))
    adversary.loss(embedding, targets).backward()
    for parameter, expected in zip(adversary.parameters(), adversary_grads):
        torch.testing.assert_close(parameter.grad, expected)   # nothing from the confusion term
    assert torch.count_nonzero(embedding.grad) > 0


def encoder_and_head():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8)), nn.Linear(8, 2)


def speaker_probe_accuracy(encoder: nn.Module, features: torch.Tensor, speakers: torch.Tensor) -> float:
    """How well a fresh linear classifier names the speaker from the frozen encoder's output."""
    with torch.no_grad():
        embedding = encoder(features)
    probe = nn.Linear(embedding.shape[1], int(speakers.max()) + 1)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(probe(embedding), speakers).backward()
        optimizer.step()
    return float((probe(embedding).argmax(1) == speakers).float().mean())


def train(weight: float, features, emotions, speakers, names):
    """An encoder and head trained on the emotions, with an adversary of `weight` (0: none)."""
    torch.manual_seed(0)
    encoder, head = encoder_and_head()
    adversary = SpeakerAdversary(8, names, weight)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters(), *adversary.parameters()], lr=0.01)
    for _ in range(400):
        optimizer.zero_grad()
        embedding = encoder(features)
        loss = nn.functional.cross_entropy(head(embedding), emotions)
        if weight:
            loss = loss + adversary.loss(embedding, adversary.targets([names[s] for s in speakers], "cpu"))
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        emotion_accuracy = float((head(encoder(features)).argmax(1) == emotions).float().mean())
    return encoder, emotion_accuracy


def test_the_adversary_hides_the_speaker_and_keeps_the_emotion():
    """Features where two dimensions carry the emotion and two the speaker (4 speakers): with the
    adversary, a probe names the speaker from the embedding far less often, the emotion is kept."""
    generator = torch.Generator().manual_seed(3)
    clips = 400
    emotions = torch.randint(0, 2, (clips,), generator=generator)
    speakers = torch.randint(0, 4, (clips,), generator=generator)
    features = torch.randn(clips, 4, generator=generator) * 0.3
    features[:, 0] += 2.0 * emotions - 1.0
    features[:, 1] += 1.0 * emotions
    features[:, 2] += torch.tensor([-1.5, -0.5, 0.5, 1.5])[speakers]
    features[:, 3] += torch.tensor([1.0, -1.0, 1.0, -1.0])[speakers]
    names = ["a", "b", "c", "d"]
    plain, plain_emotion = train(0.0, features, emotions, speakers, names)
    adversarial, adversarial_emotion = train(1.0, features, emotions, speakers, names)
    assert plain_emotion > 0.95 and adversarial_emotion > 0.95
    assert speaker_probe_accuracy(plain, features, speakers) > 0.8
    assert speaker_probe_accuracy(adversarial, features, speakers) < 0.55   # chance 0.25


def test_clips_without_a_speaker_take_no_part():
    adversary = SpeakerAdversary(8, ["a", "b"], 1.0)
    targets = adversary.targets(["b", "", "stranger"], "cpu")
    assert targets.tolist() == [1, IGNORED, IGNORED]
    embedding = torch.randn(3, 8, requires_grad=True)
    loss = adversary.loss(embedding, adversary.targets(["", "", ""], "cpu"))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(embedding.grad) == 0


@pytest.mark.parametrize("weight", [-0.1, "strong", True, float("inf")])
def test_a_bad_weight_is_refused(weight):
    with pytest.raises(ConfigError, match="speaker_adversary must be a number >= 0"):
        build_speaker_adversary(weight, nn.Module(), ["a", "b"])


def test_off_by_default_and_refused_without_speakers():
    model = nn.Module()
    model.head = nn.Linear(8, 2)
    assert build_speaker_adversary(0.0, model, ["a", "b"]) is None
    with pytest.raises(ConfigError, match="needs the speakers of the training clips"):
        build_speaker_adversary(0.5, model, ["", "a", "a"])
    assert build_speaker_adversary(0.5, model, ["a", "b", ""]).speakers == ["a", "b"]


def test_train_py_trains_and_resumes_with_the_adversary(demo_lists, tmp_path):
    def train(epochs: int, *resume):
        overwrites = tiny_overwrites(demo_lists, **{"train_conf.speaker_adversary": 0.5,
                                                    "train_conf.max_epoch": epochs})
        return run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                          "--save_model_path", tmp_path / "models", "--overwrites", overwrites, *resume)

    first = train(1)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "speaker adversary: weight 0.5 over" in first.stdout + first.stderr
    last_model = tmp_path / "models" / "BiLSTM_Fbank" / "last_model"
    training = torch.load(last_model / "optimizer.pth", weights_only=True)
    assert set(training["speaker_adversary"]) >= {"classifier.0.weight", "classifier.2.weight"}
    weights = torch.load(last_model / "model.pth", weights_only=True)
    assert not any("classifier" in name or "adversary" in name for name in weights)   # inference never sees it
    resumed = train(2, "--resume_model", last_model)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert json.loads((last_model / "model.state").read_text())["epoch"] == 2


def test_train_py_without_speakers_says_so_in_one_line(demo_lists, tmp_path):
    two_columns = tmp_path / "train_list.txt"
    two_columns.write_text("".join("\t".join(line.split("\t")[:2]) + "\n"
                                   for line in (demo_lists / "train_list.txt").read_text().splitlines()))
    overwrites = tiny_overwrites(demo_lists, **{"train_conf.speaker_adversary": 0.5,
                                                "dataset_conf.train_list": two_columns})
    run = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                     "--save_model_path", tmp_path / "models", "--overwrites", overwrites)
    assert_one_line_error(run, "needs the speakers of the training clips")

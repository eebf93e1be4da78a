"""Copy consistency (train_conf.copy_consistency, mser.consistency): a clip and its augmented copies
in one batch, the divergence of their predictions added to the loss."""
import pytest
import torch
import yaml

from conftest import assert_one_line_error, run_script, tiny_overwrites, torchrun_train

from mser.config import load_config
from mser.consistency import CopyConsistency, CopyPairs, build_copy_consistency, collate_pairs
from mser.data.augmented_copies import source_path
from mser.data.dataset import Sample
from mser.data.lists import ListItem
from mser.errors import ConfigError
from mser.trainer import MSERTrainer


def clips_and_copies(clips: int, copies: int):
    """Items as training sees them: the clips, then copy 1 of every clip, then copy 2, ..."""
    originals = [ListItem(f"dir/clip{i}.wav", i % 3, f"s{i % 2}") for i in range(clips)]
    return originals + [ListItem(f"{item.path}#copy{k}", item.label, f"{item.speaker}#copy{k}")
                        for k in range(1, copies + 1) for item in originals]


def test_source_path_of_copies_and_clips():
    assert source_path("a/b.wav#copy2") == "a/b.wav"
    assert source_path("a/b.wav#copy12") == "a/b.wav"
    assert source_path("a/b.wav") == "a/b.wav"
    assert source_path("a/#copy/b.wav") == "a/#copy/b.wav"   # only the suffix a copy's virtual path ends with


class Served:
    """A dataset stand-in: serves each item's path, records the epoch it was set to."""

    def __init__(self, items):
        self.items, self.epoch = items, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        return Sample(torch.zeros(1, 2), item.label, item.path, "", item.speaker)


def test_each_item_is_served_with_another_member_of_its_group_drawn_per_seed_and_epoch():
    items = clips_and_copies(5, 2)
    pairs = CopyPairs(Served(items), seed=3)
    pairs.set_epoch(1)
    assert pairs.dataset.epoch == 1 and len(pairs) == 15
    drawn = [pairs[i] for i in range(15)]
    for index, (item, partner) in enumerate(drawn):
        assert item.path == items[index].path
        assert partner.path != item.path and source_path(partner.path) == source_path(item.path)
    assert [pairs[i][1].path for i in range(15)] == [p.path for _, p in drawn]   # a resume draws the same
    pairs.set_epoch(2)
    assert [pairs[i][1].path for i in range(15)] != [p.path for _, p in drawn]
    alone = CopyPairs(Served([ListItem("x.wav", 0, "s")]), seed=3)
    assert alone[0][1] is None


def test_a_batch_holds_its_items_then_their_usable_partners():
    own = [Sample(torch.ones(2, 3), 0, "a", "", "s"), Sample(torch.ones(3, 3), 1, "b", "", "s")]
    partners = [Sample(torch.ones(2, 3), 0, "a#copy1", "", "s#copy1"), Sample(None, 1, "b#copy2", "bad", "s#copy2")]
    batch = collate_pairs(list(zip(own, partners)))
    assert batch.paths == ["a", "b", "a#copy1"] and batch.labels.tolist() == [0, 1, 0]
    assert batch.skipped == []   # counted when the broken copy comes up as an item of its own
    assert batch.speakers == ["s", "s", "s#copy1"]


def test_the_loss_is_the_weighted_jensen_shannon_divergence_of_each_group():
    consistency = CopyConsistency(2.0)
    agreeing = torch.tensor([[1.0, 2.0, 0.5]]).repeat(3, 1)
    assert float(consistency.loss(agreeing, ["a", "a#copy1", "a#copy2"])) == pytest.approx(0.0, abs=1e-7)

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -1.0]], requires_grad=True)
    loss = consistency.loss(logits, ["a", "a#copy1", "b"])
    p, q = torch.softmax(logits[0].detach(), 0), torch.softmax(logits[1].detach(), 0)
    mean = (p + q) / 2
    js = ((p * (p / mean).log()).sum() + (q * (q / mean).log()).sum()) / 2
    assert float(loss.detach()) == pytest.approx(2.0 * float(js), rel=1e-5)
    loss.backward()
    assert logits.grad[:2].abs().sum() > 0
    assert torch.equal(logits.grad[2], torch.zeros(2))   # a clip without its copies in the batch: no pull

    alone = torch.randn(2, 3, requires_grad=True)
    nothing = consistency.loss(alone, ["a", "b"])
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


@pytest.mark.parametrize("extra, fragment", [
    ({"train_conf.copy_consistency": 1.0}, "augmented_copies"),
    ({"train_conf.copy_consistency": 1.0, "dataset_conf.feature_cache.augmented_copies": 1,
      "train_conf.mixup_alpha": 0.2}, "mixup_alpha"),
    ({"train_conf.copy_consistency": -1}, "must be a number >= 0"),
    ({"train_conf.copy_consistency": "yes"}, "must be a number"),
])
def test_settings_without_copies_with_mixup_or_bad_weights_are_refused(extra, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_copy_consistency(load_config("configs/egemaps.yml", ",".join(f"{k}={v}" for k, v in extra.items())))


def gain_config(tmp_path):
    path = tmp_path / "gain.yml"
    path.write_text(yaml.safe_dump({"volume": {"prob": 1.0, "min_gain_dB": -10, "max_gain_dB": 10}}))
    return path


def test_training_sees_clips_with_their_copies_and_adds_the_term(demo_lists, tmp_path, monkeypatch):
    import mser.consistency
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.augmented_copies": 2,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                                                "train_conf.copy_consistency": 1.0})
    trainer = MSERTrainer(load_config("configs/bi_lstm.yml", overwrites), use_gpu=False,
                          data_augment_configs=str(gain_config(tmp_path)))
    terms = []
    real_loss = mser.consistency.CopyConsistency.loss

    def recording_loss(self, logits, paths):
        terms.append((list(paths), float(real_loss(self, logits, paths).detach())))
        return real_loss(self, logits, paths)
    monkeypatch.setattr(mser.consistency.CopyConsistency, "loss", recording_loss)
    trainer.train(save_model_path=str(tmp_path / "models"), log_dir="")
    assert terms and all(value >= 0 for _, value in terms)
    assert any(value > 0 for _, value in terms)
    for paths, _ in terms:   # the batch's items, then one partner of each: another member of its group
        half = len(paths) // 2
        assert len(paths) == 2 * half
        assert [source_path(path) for path in paths[half:]] == [source_path(path) for path in paths[:half]]
        assert all(partner != item for item, partner in zip(paths[:half], paths[half:]))


def test_train_py_trains_with_copy_consistency_and_refuses_it_without_copies(demo_lists, tmp_path):
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.augmented_copies": 1,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                                                "train_conf.copy_consistency": 3})
    trained = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                         "--save_model_path", tmp_path / "models", "--data_augment_configs", gain_config(tmp_path),
                         "--overwrites", overwrites)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "copy consistency" in trained.stdout
    refused = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                         "--save_model_path", tmp_path / "refused",
                         "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.copy_consistency": 1}))
    assert_one_line_error(refused, "augmented_copies")


def test_torchrun_trains_with_copy_consistency(demo_lists, tmp_path):
    """Two processes: each takes its DistributedSampler share of the pairs and the run finishes."""
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.augmented_copies": 1,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                                                "train_conf.copy_consistency": 1})
    output = torchrun_train("--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                            "--save_model_path", tmp_path / "models", "--data_augment_configs", gain_config(tmp_path),
                            "--overwrites", overwrites)
    assert "data-parallel: 2 processes" in output and "copy consistency: weight 1" in output
    assert (tmp_path / "models" / "BiLSTM_Fbank" / "last_model" / "model.pth").is_file()

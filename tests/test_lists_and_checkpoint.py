import json
import os

import pytest
import torch

from mser import checkpoint
from mser.config import load_config
from mser.data.lists import read_data_list, read_label_list, write_data_list, write_label_list
from mser.errors import CheckpointError, DataError
from mser.metrics import compute_metrics, format_report, plot_confusion_matrix


def test_list_round_trip(tmp_path):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")
    write_data_list(str(tmp_path / "train.txt"), [(str(audio), 1), (str(audio), 0)])
    write_label_list(str(tmp_path / "labels.txt"), ["neutral", "happy"])
    assert read_label_list(str(tmp_path / "labels.txt")) == ["neutral", "happy"]
    assert read_data_list(str(tmp_path / "train.txt"), 2) == [(str(audio), 1, ""), (str(audio), 0, "")]


@pytest.mark.parametrize("line, message", [
    ("{audio}\t7", r"label 7 on line 2 of .*train.txt is out of range: the label list has 2 labels"),
    ("{audio}\tx", r"label 'x' on line 2 of .*train.txt is not an integer"),
    ("{audio} 1", r"line 2 of .*train.txt must be 'path<TAB>label_index'"),
    ("{audio}\t1\tspk\textra", r"line 2 of .*train.txt must be 'path<TAB>label_index' or"),
    ("{audio}\t1\t ", r"line 2 of .*train.txt has an empty speaker column"),
    ("{missing}\t1", r"audio file .*missing.wav on line 2 of .*train.txt does not exist"),
])
def test_bad_list_lines_name_file_and_line(tmp_path, line, message):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")
    path = tmp_path / "train.txt"
    path.write_text(f"{audio}\t0\n" + line.format(audio=audio, missing=tmp_path / "missing.wav") + "\n")
    with pytest.raises(DataError, match=message):
        read_data_list(str(path), 2)


def test_missing_and_bad_label_lists(tmp_path):
    with pytest.raises(DataError, match="run create_data.py first"):
        read_label_list(str(tmp_path / "nope.txt"))
    (tmp_path / "labels.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match="repeats a"):
        read_label_list(str(tmp_path / "labels.txt"))


def save_example(directory, **kwargs):
    return checkpoint.save_checkpoint(str(directory), {"w": torch.ones(2)}, {"epoch": 3}, load_config(None),
                                      ["a", "b"], training_state={"optimizer": {"lr": 0.1}}, **kwargs)


def test_checkpoint_round_trip(tmp_path):
    directory = save_example(tmp_path / "epoch_3")
    assert sorted(os.listdir(directory)) == sorted(["model.pth", "optimizer.pth", "model.state",
                                                    "config.yml", "label_list.txt"])
    assert torch.equal(checkpoint.load_weights(directory)["w"], torch.ones(2))
    assert checkpoint.load_state(directory)["epoch"] == 3
    assert checkpoint.load_training_state(directory) == {"optimizer": {"lr": 0.1}}
    config, labels = checkpoint.load_config_and_labels(directory)
    assert labels == ["a", "b"] and config == load_config(None)


def test_checkpoint_overwrite_leaves_no_temporaries(tmp_path):
    save_example(tmp_path / "last_model")
    save_example(tmp_path / "last_model")
    assert sorted(os.listdir(tmp_path)) == ["last_model"]


def test_interrupted_swap_falls_back_to_old(tmp_path):
    directory = save_example(tmp_path / "last_model")
    os.rename(directory, directory + ".old")  # as if killed between the two renames
    assert checkpoint.resolve(directory) == directory + ".old"
    assert checkpoint.load_state(directory)["epoch"] == 3


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    directory = save_example(tmp_path / "last_model")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError):
        save_example(tmp_path / "last_model")
    monkeypatch.undo()
    assert checkpoint.load_state(directory)["epoch"] == 3
    assert sorted(os.listdir(tmp_path)) == ["last_model"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load_weights(str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        checkpoint.load_state(str(tmp_path / "empty"))
    directory = save_example(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot load"):
        checkpoint.load_weights(directory)


def test_pickled_objects_are_refused(tmp_path):
    directory = save_example(tmp_path / "ckpt")
    torch.save({"w": object()}, os.path.join(directory, "model.pth"))
    with pytest.raises(CheckpointError, match="cannot load"):
        checkpoint.load_weights(directory)


def test_prune_epochs(tmp_path):
    for epoch in (1, 2, 3, 10):
        (tmp_path / f"epoch_{epoch}").mkdir()
    checkpoint.prune_epochs(str(tmp_path), keep=2)
    assert sorted(os.listdir(tmp_path)) == ["epoch_10", "epoch_3"]


def test_metrics_values_and_figure(tmp_path):
    metrics = compute_metrics([0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1], ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["unweighted_accuracy"] == pytest.approx((1.0 + 0.5) / 2)  # class c absent: not averaged
    assert metrics["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert metrics["confusion_matrix"] == [[4, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert json.loads(json.dumps(metrics)) == metrics
    assert "unweighted accuracy 0.7500" in format_report(metrics)
    path = plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], str(tmp_path / "cm.png"))
    assert os.path.getsize(path) > 1000

"""train.py under torchrun with two CPU processes (gloo) when a batch cannot be used on one of
them: all processes skip that step together and the run finishes (issue 13, fault 1: it hung in
the gradient all-reduce). A hang fails the test at its time limit instead of blocking the suite."""
import json

import numpy as np
import soundfile
import torch

from conftest import torchrun_train
from trainer_corpus import SAMPLE_RATE, make_corpus, train_argv

LIMIT_SECONDS = 420


def add_empty_clips(list_dir, count: int) -> None:
    """Clips without a single sample, among the training clips."""
    lines = (list_dir / "train_list.txt").read_text().splitlines()
    for index in range(count):
        path = list_dir / "audio" / f"empty_{index}.wav"
        soundfile.write(str(path), np.zeros(0, dtype=np.float32), SAMPLE_RATE)
        lines.insert(3 + 7 * index, f"{path}\t{index % 3}")
    (list_dir / "train_list.txt").write_text("\n".join(lines) + "\n")


def test_torchrun_with_an_empty_clip_and_batches_of_two_finishes(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    add_empty_clips(corpus, 3)
    save = tmp_path / "models"
    argv = train_argv(corpus, save, **{"dataset_conf.dataLoader.batch_size": 2, "train_conf.max_epoch": 1,
                                       "dataset_conf.feature_cache.enable": False})
    output = torchrun_train(*argv, timeout=LIMIT_SECONDS)
    assert "another process could not use its own batch" in output  # one rank could, the other could not
    assert "data-parallel: 2 processes, gloo backend" in output
    state = json.loads((save / "BiLSTM_Fbank" / "last_model" / "model.state").read_text())
    assert state["epoch"] == 1 and state["step"] >= 1
    training = torch.load(save / "BiLSTM_Fbank" / "last_model" / "optimizer.pth", weights_only=True)
    assert len(training["rng"]) == 2  # each process's random state

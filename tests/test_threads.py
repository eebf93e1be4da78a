"""mser.threads: torch's thread count for a block, and what the trainer leaves to loader workers."""
import pytest
import torch

from mser import threads
from mser.threads import threads_beside_workers, torch_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_threads_sets_the_count_inside_the_block_and_puts_it_back_even_after_an_error(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2
    with torch_threads(None):
        assert torch.get_num_threads() == 2
    with torch_threads(0):   # never fewer than one
        assert torch.get_num_threads() == 1


@pytest.mark.parametrize("cores, workers, expected", [
    (2, 1, 1),     # the development machine: one worker decodes, one thread trains
    (2, 2, 1),     # at least one
    (8, 2, 2),     # never more than torch used before (2 here)
    (2, 0, None),  # no workers: nothing to leave room for
])
def test_threads_beside_workers_leaves_each_worker_a_core(monkeypatch, two_threads, cores, workers, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    assert threads_beside_workers(torch.device("cpu"), workers) == expected


def test_threads_beside_workers_leaves_a_gpu_run_alone(two_threads):
    assert threads_beside_workers(torch.device("cuda"), 2) is None


def test_an_epoch_from_augmented_audio_trains_on_the_cores_the_workers_leave(monkeypatch, two_threads, demo_lists,
                                                                              tmp_path):
    from conftest import tiny_overwrites
    from mser.config import load_config
    from mser.executor import Executor
    from mser.trainer import MSERTrainer
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    seen = []
    original = Executor.train_batch

    def recording(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Executor, "train_batch", recording)
    config = load_config("configs/bi_lstm.yml", tiny_overwrites(demo_lists, **{
        "dataset_conf.dataLoader.num_workers": 1}))
    augment = tmp_path / "augment.yml"
    augment.write_text("volume:\n  prob: 0.5\n")
    MSERTrainer(config, use_gpu=False, data_augment_configs=str(augment)).train(
        save_model_path=str(tmp_path / "augmented"), log_dir="")
    assert seen and set(seen) == {1}   # the worker augments: this process trains on the other core
    assert torch.get_num_threads() == 2
    seen.clear()
    MSERTrainer(config, use_gpu=False).train(save_model_path=str(tmp_path / "plain"), log_dir="")
    assert seen and set(seen) == {2}   # a worker that only decodes is light: both threads train


def test_workers_that_augment_on_the_cpu_also_compute_the_features(monkeypatch, demo_lists, tmp_path):
    """The batches of an epoch from augmented audio with a loader worker arrive as features; the
    training from them is the one the main process would compute (same losses)."""
    from conftest import tiny_overwrites
    from mser.config import load_config
    from mser.executor import Executor
    from mser.trainer import MSERTrainer
    arrived_as_features, losses = [], []
    original = Executor.train_batch

    def recording(self, batch, *args, **kwargs):
        arrived_as_features.append(batch.is_features)
        loss, correct = original(self, batch, *args, **kwargs)
        losses.append(loss)
        return loss, correct

    monkeypatch.setattr(Executor, "train_batch", recording)
    augment = tmp_path / "augment.yml"
    augment.write_text("volume:\n  prob: 0.5\nnoise:\n  prob: 0.5\n")
    runs = {}
    for workers in (1, 0):
        config = load_config("configs/bi_lstm.yml", tiny_overwrites(demo_lists, **{
            "dataset_conf.dataLoader.num_workers": workers}))
        arrived_as_features.clear()
        losses.clear()
        MSERTrainer(config, use_gpu=False, data_augment_configs=str(augment)).train(
            save_model_path=str(tmp_path / f"workers{workers}"), log_dir="")
        runs[workers] = (set(arrived_as_features), list(losses))
    assert runs[1][0] == {True} and runs[0][0] == {False}
    assert runs[1][1] == pytest.approx(runs[0][1], rel=1e-4)

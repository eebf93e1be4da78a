"""train.py → eval.py through the real scripts, on a slice of the shipped demo corpus."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import PYTHON, REPO, assert_one_line_error, run_script, tiny_overwrites

MODEL_DIR = "BiLSTM_Fbank"


@pytest.fixture(scope="module")
def trained(demo_lists, tmp_path_factory):
    """Two epochs of a tiny BiLSTM: the checkpoints every test here reads."""
    work = tmp_path_factory.mktemp("train")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                        "--save_model_path", work / "models", "--log_dir", work / "log",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.max_epoch": 2,
                                                                       "train_conf.keep_last_epochs": 3}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, result


def test_training_writes_checkpoints_and_logs(trained):
    work, result = trained
    model_dir = work / "models" / MODEL_DIR
    assert {"epoch_1", "epoch_2", "last_model", "best_model"} <= set(os.listdir(model_dir))
    for name in ("model.pth", "optimizer.pth", "model.state", "config.yml", "label_list.txt"):
        assert (model_dir / "last_model" / name).is_file()
    state = json.loads((model_dir / "last_model" / "model.state").read_text())
    assert state["epoch"] == 2 and state["model"] == "BiLSTM"
    assert set(state["val"]) == {"loss", "accuracy", "unweighted_accuracy", "macro_f1"}
    assert "epoch 2/2" in result.stdout and "clips/s" in result.stdout
    assert "test set, best model" in result.stdout
    assert any(files for _, _, files in os.walk(work / "log"))  # VisualDL wrote its records
    assert not [name for name in os.listdir(model_dir) if ".tmp-" in name or name.endswith(".old")]


def test_eval_prints_metrics_and_writes_files(trained, demo_lists):
    work, _ = trained
    output = work / "eval"
    result = run_script("eval.py", "--resume_model", work / "models" / MODEL_DIR / "best_model",
                        "--use_gpu", "false", "--output_dir", output, "--json",
                        "--overwrites", f"dataset_conf.test_list={demo_lists / 'test_list.txt'}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"accuracy", "unweighted_accuracy", "macro_f1", "per_class", "labels", "confusion_matrix",
            "num_samples"} <= set(metrics)
    test_clips = len((demo_lists / "test_list.txt").read_text().splitlines())
    assert metrics["num_samples"] == test_clips
    assert sum(map(sum, metrics["confusion_matrix"])) == test_clips
    assert "unweighted accuracy" in result.stdout and "precision" in result.stdout
    assert json.loads((output / "metrics.json").read_text()) == metrics
    assert (output / "confusion_matrix.png").stat().st_size > 5000


def test_resume_continues_at_next_epoch(trained, demo_lists):
    work, _ = trained
    models = work / "resume_models"
    shutil.copytree(work / "models" / MODEL_DIR / "epoch_1", models / MODEL_DIR / "epoch_1")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                        "--save_model_path", models, "--log_dir", "",
                        "--resume_model", models / MODEL_DIR / "epoch_1",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.max_epoch": 2,
                                                                       "train_conf.keep_last_epochs": 3}))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout and "1 epochs done" in result.stdout
    assert "epoch 1/2" not in result.stdout and "epoch 2/2" in result.stdout
    state = json.loads((models / MODEL_DIR / "last_model" / "model.state").read_text())
    assert state["epoch"] == 2


def test_pretrained_for_another_label_set_skips_head(trained, demo_lists, tmp_path):
    work, _ = trained
    labels = (demo_lists / "label_list.txt").read_text().splitlines()
    (tmp_path / "labels.txt").write_text("\n".join(labels[:3]) + "\n")
    for name in ("train_list.txt", "test_list.txt"):
        lines = [line for line in (demo_lists / name).read_text().splitlines() if int(line.split("\t")[1]) < 3]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                        "--save_model_path", tmp_path / "models", "--log_dir", "",
                        "--pretrained_model", work / "models" / MODEL_DIR / "best_model",
                        "--overwrites", tiny_overwrites(tmp_path, **{
                            "dataset_conf.label_list_path": tmp_path / "labels.txt"}))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stdout and "that do not fit" in result.stdout

    refused = run_script("eval.py", "--resume_model", work / "models" / MODEL_DIR / "best_model",
                         "--use_gpu", "false", "--output_dir", tmp_path / "eval",
                         "--overwrites", f"dataset_conf.label_list_path={tmp_path / 'labels.txt'}")
    assert refused.returncode == 2, refused.stderr


def test_torchrun_two_processes_on_cpu(demo_lists, tmp_path):
    """Also with a speaker adversary, whose gradients the trainer averages over the processes itself."""
    torchrun = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    result = subprocess.run(
        [*torchrun, str(REPO / "train.py"), "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
         "--save_model_path", str(tmp_path / "models"), "--log_dir", "",
         "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.speaker_adversary": 0.3})],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "speaker adversary: weight 0.3" in result.stdout + result.stderr
    model_dir = tmp_path / "models" / MODEL_DIR
    assert sorted(os.listdir(model_dir)) == ["best_model", "epoch_1", "last_model"]
    assert result.stdout.count("epoch 1/1") == 1  # only rank 0 logs


@pytest.mark.parametrize("config, extra, fragment", [
    ("configs/missing.yml", "", "config file not found"),
    ("configs/bi_lstm.yml", "train_conf.max_epochs=2", "did you mean 'train_conf.max_epoch'"),
    ("configs/bi_lstm.yml", "model_conf.model=EcapaTdn", "unknown model 'EcapaTdn'"),
    ("configs/bi_lstm.yml", "model_conf.model_args.hidden=3", "unknown key 'hidden'"),
    ("configs/bi_lstm.yml", "dataset_conf.train_list=/nonexistent.txt", "data list not found"),
])
def test_train_bad_input_is_one_line(config, extra, fragment, demo_lists, tmp_path):
    overwrites = tiny_overwrites(demo_lists) + ("," + extra if extra else "")
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", overwrites)
    assert_one_line_error(result, fragment)


def test_eval_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(run_script("eval.py", "--resume_model", tmp_path / "nothing", "--output_dir",
                                     tmp_path / "eval"), "not found")


def test_eval_refuses_a_label_list_named_by_configs_that_differs(trained, demo_lists, tmp_path):
    """A label list given through --configs is checked like one through --overwrites (issue 16)."""
    import yaml
    work, _ = trained
    config = yaml.safe_load((REPO / "configs" / "bi_lstm.yml").read_text())
    (tmp_path / "labels.txt").write_text("calm\nexcited\n")
    config["dataset_conf"]["label_list_path"] = str(tmp_path / "labels.txt")
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    result = run_script("eval.py", "--resume_model", work / "models" / MODEL_DIR / "best_model", "--use_gpu", "false",
                        "--configs", tmp_path / "config.yml", "--output_dir", tmp_path / "eval")
    assert_one_line_error(result, "but the label list")
    assert not (tmp_path / "eval").exists()

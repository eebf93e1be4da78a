"""dataset_conf.val_fraction 0: no validation slice, every training clip trains, best_model is the
last epoch's model; a scheduler that follows the validation score is refused in one line."""
import json

from conftest import assert_one_line_error, run_script, tiny_overwrites


def test_val_fraction_zero_trains_on_every_clip_and_keeps_the_last_epoch(demo_lists, tmp_path):
    models = tmp_path / "models"
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir",
                        tmp_path / "log", "--save_model_path", models,
                        "--overwrites", tiny_overwrites(demo_lists, **{"dataset_conf.val_fraction": 0,
                                                                       "train_conf.max_epoch": 2}))
    assert result.returncode == 0, result.stderr[-3000:]
    train_clips = len((demo_lists / "train_list.txt").read_text().splitlines())
    assert f"{train_clips} training, 0 validation" in result.stdout
    assert "validation: none" in result.stdout and "no validation |" in result.stdout
    best = json.loads((models / "BiLSTM_Fbank" / "best_model" / "model.state").read_text())
    assert best["epoch"] == 2 and best["val"] == {}
    scored = run_script("eval.py", "--resume_model", models / "BiLSTM_Fbank" / "best_model", "--use_gpu", "false",
                        "--json", "--output_dir", tmp_path / "eval", "--test_list", demo_lists / "test_list.txt")
    assert scored.returncode == 0, scored.stderr[-3000:]


def test_a_plateau_scheduler_without_validation_is_one_line(demo_lists, tmp_path):
    import yaml
    from conftest import REPO
    config = yaml.safe_load((REPO / "configs" / "bi_lstm.yml").read_text())
    config["optimizer_conf"].update(scheduler="ReduceLROnPlateau", scheduler_args={})
    (tmp_path / "plateau.yml").write_text(yaml.safe_dump(config))
    result = run_script("train.py", "--configs", tmp_path / "plateau.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"dataset_conf.val_fraction": 0}))
    assert_one_line_error(result, "follows the validation score")
    assert not (tmp_path / "models").exists()


def test_a_negative_val_fraction_is_one_line(demo_lists, tmp_path):
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"dataset_conf.val_fraction": -0.1}))
    assert_one_line_error(result, "val_fraction must be in [0, 1)")

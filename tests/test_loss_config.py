"""train_conf.loss / loss_args through train.py: FocalLoss trains, a bad loss is one line."""
from conftest import assert_one_line_error, run_script, tiny_overwrites


def test_focal_loss_trains(demo_lists, tmp_path):
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.loss": "FocalLoss",
                                                                       "train_conf.loss_args.gamma": 2.0,
                                                                       "train_conf.class_weights": True}))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "models" / "BiLSTM_Fbank" / "best_model" / "model.pth").is_file()
    assert "class weights:" in result.stdout


def test_unknown_loss_is_one_line_and_makes_no_folder(demo_lists, tmp_path):
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.loss": "FocalLos"}))
    assert_one_line_error(result, "FocalLos")
    assert not (tmp_path / "models").exists()


def test_bad_loss_argument_is_one_line(demo_lists, tmp_path):
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"train_conf.loss": "FocalLoss",
                                                                       "train_conf.loss_args.gama": 2.0}))
    assert_one_line_error(result, "gama")

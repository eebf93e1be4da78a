import pytest

from mser.config import DEFAULT_CONFIG, apply_overwrites, load_config, parse_overwrites
from mser.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return str(path)


def test_defaults_when_no_file():
    config = load_config(None)
    assert config == DEFAULT_CONFIG
    assert config is not DEFAULT_CONFIG


def test_user_values_merge_over_defaults(tmp_path):
    config = load_config(write(tmp_path, "train_conf:\n  max_epoch: 7\nmodel_conf:\n  model_args: {channels: 64}\n"))
    assert config["train_conf"]["max_epoch"] == 7
    assert config["train_conf"]["log_interval"] == DEFAULT_CONFIG["train_conf"]["log_interval"]
    assert config["model_conf"]["model_args"] == {"channels": 64}


def test_unknown_key_names_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"train_conf\.max_epochs.*did you mean 'train_conf\.max_epoch'"):
        load_config(write(tmp_path, "train_conf:\n  max_epochs: 7\n"))


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'trian_conf'.*train_conf"):
        load_config(write(tmp_path, "trian_conf:\n  max_epoch: 7\n"))


@pytest.mark.parametrize("text, message", [
    ("train_conf:\n  max_epoch: ten\n", "must be a number"),
    ("train_conf:\n  enable_amp: 1\n", "must be true, false or auto"),
    ("train_conf:\n  use_compile: 1\n", "must be true or false"),
    ("dataset_conf:\n  dataset: 5\n", "must be a section"),
    ("model_conf:\n  model_args: [1, 2]\n", "mapping of arguments"),
])
def test_wrong_types(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ("auto", "auto")])
def test_enable_amp_takes_true_false_or_auto(tmp_path, value, expected):
    config = load_config(write(tmp_path, f"train_conf:\n  enable_amp: {value}\n"))
    assert config["train_conf"]["enable_amp"] == expected


@pytest.mark.parametrize("enable_amp, native_bf16, device, expected", [
    ("auto", True, "cpu", True),
    ("auto", False, "cpu", False),
    ("auto", True, "cuda", False),   # on a GPU, mixed precision is opted into with true
    (True, False, "cpu", True),
    (False, True, "cpu", False),
])
def test_amp_auto_is_bf16_on_a_cpu_with_native_bf16_only(monkeypatch, enable_amp, native_bf16, device, expected):
    import torch

    from mser import builder
    monkeypatch.setattr(builder, "cpu_has_native_bf16", lambda: native_bf16)
    amp = builder.Amp({"enable_amp": enable_amp, "amp_dtype": "bfloat16"}, torch.device(device))
    assert amp.enabled is expected and amp.dtype == torch.bfloat16
    assert not amp.scaler.is_enabled()  # bf16 needs no gradient scaling


def test_int_promoted_to_float(tmp_path):
    config = load_config(write(tmp_path, "dataset_conf:\n  dataset:\n    max_duration: 3\n"))
    assert isinstance(config["dataset_conf"]["dataset"]["max_duration"], float)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yml"))
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(write(tmp_path, "train_conf:\n  max_epoch: [1,\n"))
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_parsed_safely(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "train_conf: !!python/object/apply:os.system ['echo hi']\n"))


def test_parse_overwrites_scalars():
    parsed = parse_overwrites("a.b=1, c.d=text,e=true,f=null,g=1e-3,h=0.5,i=[1,2]")
    assert parsed == {"a.b": 1, "c.d": "text", "e": True, "f": None, "g": 1e-3, "h": 0.5, "i": "[1,2]"}


def test_parse_overwrites_never_evaluates():
    assert parse_overwrites("a=__import__('os').system('x')") == {"a": "__import__('os').system('x')"}


def test_apply_overwrites():
    config = load_config(None, "train_conf.max_epoch=3,dataset_conf.dataLoader.batch_size=4,"
                               "model_conf.model_args.channels=32,model_conf.model=BiLSTM")
    assert config["train_conf"]["max_epoch"] == 3
    assert config["dataset_conf"]["dataLoader"]["batch_size"] == 4
    assert config["model_conf"]["model_args"]["channels"] == 32
    assert config["model_conf"]["model"] == "BiLSTM"


@pytest.mark.parametrize("text, message", [
    ("train_conf.max_epoc=3", "did you mean 'train_conf.max_epoch'"),
    ("train_conf.max_epoch=abc", "must be a number"),
    ("nonsense", "must look like section.key=value"),
    ("dataset_conf.dataset.sample_rate.x=1", "unknown config key"),
])
def test_bad_overwrites(text, message):
    with pytest.raises(ConfigError, match=message):
        apply_overwrites(load_config(None), text)


def test_every_unknown_key_in_one_error_naming_the_file(tmp_path):
    path = write(tmp_path, "train_conf:\n  max_epochs: 7\ndataset_conf:\n  dataLoader:\n    batchsize: 8\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: 2 unknown config keys: ") and "\n" not in message
    assert "'train_conf.max_epochs' (did you mean 'train_conf.max_epoch'?)" in message
    assert "'dataset_conf.dataLoader.batchsize' (did you mean 'dataset_conf.dataLoader.batch_size'?)" in message


def test_a_wrong_value_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path, "train_conf:\n  max_epoch: ten\n")
    with pytest.raises(ConfigError, match=f"^{path}: 'train_conf.max_epoch' must be a number"):
        load_config(path)


def test_train_reports_every_misspelt_key_of_its_config(tmp_path):
    from conftest import assert_one_line_error, run_script
    path = write(tmp_path, "train_conf:\n  max_epochs: 7\nmodel_conf:\n  modell: TDNN\n")
    result = run_script("train.py", "--configs", path, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models")
    assert_one_line_error(result, f"{path}: 2 unknown config keys: 'train_conf.max_epochs'")
    assert "'model_conf.modell' (did you mean 'model_conf.model'?)" in result.stderr


# ---------------------------------------------------------------- shipped configs by name, paths explained


def test_a_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch):
    from conftest import REPO
    from mser.config import shipped_configs
    expected = load_config(str(REPO / "configs" / "tdnn_prosody.yml"))
    monkeypatch.chdir(tmp_path)   # no configs/ here
    assert load_config("tdnn_prosody") == expected
    assert load_config("tdnn_prosody.yml") == expected
    assert set(shipped_configs()) == {path.stem for path in (REPO / "configs").glob("*.yml")}


def test_a_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "egemaps").write_text("train_conf:\n  max_epoch: 3\n")
    assert load_config("egemaps")["train_conf"]["max_epoch"] == 3


def test_a_missing_config_says_where_it_was_looked_for_and_what_ships(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_config("configs/egemaps.yml")   # a relative path stays a path, even outside the repository
    message = str(error.value)
    assert message.startswith(f"config file not found: configs/egemaps.yml (relative to the working directory: "
                              f"{tmp_path / 'configs' / 'egemaps.yml'}); shipped configs, usable by name "
                              f"(--configs egemaps): ")
    assert "bi_lstm" in message and "tdnn_prosody" in message
    with pytest.raises(ConfigError, match="config file not found: egemap .*shipped configs"):
        load_config("egemap")


def test_a_relative_list_that_is_missing_is_explained(tmp_path, monkeypatch):
    from mser.data.lists import read_data_list, read_label_list
    from mser.errors import DataError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        read_data_list("dataset/test_list.txt", 2)
    assert str(error.value) == (f"data list not found: dataset/test_list.txt (relative to the working directory: "
                                f"{tmp_path / 'dataset' / 'test_list.txt'}); run create_data.py first")
    with pytest.raises(DataError, match=f"label list not found: {tmp_path / 'labels.txt'}; run"):
        read_label_list(str(tmp_path / "labels.txt"))   # an absolute path is shown as it is
    (tmp_path / "list.txt").write_text("clips/a.wav\t0\n")
    with pytest.raises(DataError, match=r"audio file clips/a.wav \(relative to the working directory: "
                                        rf"{tmp_path / 'clips' / 'a.wav'}\) on line 1 of list.txt does not exist"):
        read_data_list("list.txt", 2)


def test_list_configs_text_names_each_config_and_the_recommended_one():
    from conftest import REPO
    from mser.config import RECOMMENDED_CONFIG, describe_shipped_configs
    lines = describe_shipped_configs().splitlines()
    entries = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(entries) == {path.stem for path in (REPO / "configs").glob("*.yml")}
    assert "recommended" in entries[RECOMMENDED_CONFIG].lower()
    assert lines.index("augmentation configs (--data_augment_configs NAME):") > max(
        lines.index(line) for name, line in entries.items() if not name.startswith("augmentation"))


def test_the_recommended_config_is_the_one_the_readme_recommends():
    import re

    from conftest import REPO
    from mser.config import RECOMMENDED_CONFIG
    readme = (REPO / "README.md").read_text()
    # The scripts' default is the recommended single model; the README names it as both.
    recommended = set(re.findall(
        r"configs/(\w+)\.yml`?,? \(?the (?:recommended single model|default of the scripts)", readme))
    assert recommended == {RECOMMENDED_CONFIG}


def test_a_list_of_names_can_be_a_file_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "dropped.txt").write_text("# two names\nmfcc1_sma3_stddevNorm   # the first\n\n"
                                          "F3bandwidth_sma3nz_amean\n")
    path = write(tmp_path, "preprocess_conf:\n  feature_method: eGeMAPS\n"
                           "  method_args: {drop_functionals: dropped.txt}\n")
    monkeypatch.chdir(tmp_path.parent)   # found beside the config, not in the working directory
    config = load_config(path)
    assert config["preprocess_conf"]["method_args"]["drop_functionals"] == ["mfcc1_sma3_stddevNorm",
                                                                            "F3bandwidth_sma3nz_amean"]
    assert load_config(path, "preprocess_conf.method_args.drop_functionals=null")[
        "preprocess_conf"]["method_args"]["drop_functionals"] is None
    with pytest.raises(ConfigError, match=r"drop_functionals: the file of names missing.txt \(relative to the "
                                          r"working directory: .*\) was not found \(nor beside "):
        load_config(path, "preprocess_conf.method_args.drop_functionals=missing.txt")

"""Augmented copies (feature_cache.augmented_copies): cached waveform augmentation for features
that are computed once, one simulated session per speaker and copy."""
import numpy as np
import pytest
import yaml

from conftest import REPO, assert_one_line_error, run_script, tiny_overwrites

from mser.clip import ClipSettings
from mser.config import load_config
from mser.data.augment import load_augmentation_config
from mser.data.augmented_copies import AugmentedCopies, build_copies
from mser.data.lists import ListItem
from mser.errors import ConfigError
from mser.trainer import MSERTrainer

CLIPS = [ListItem(str(REPO / "dataset/demo/en-david/en-david_sad_01.flac"), 2, "en-david"),
         ListItem(str(REPO / "dataset/demo/en-david/en-david_angry_00.flac"), 3, "en-david"),
         ListItem(str(REPO / "dataset/demo/en-m7/en-m7_sad_00.flac"), 2, "en-m7")]


def gain_only(tmp_path):
    path = tmp_path / "gain.yml"
    path.write_text(yaml.safe_dump({"volume": {"prob": 1.0, "min_gain_dB": -10, "max_gain_dB": 10}}))
    return load_augmentation_config(str(path), 16000)


def gain_of(copies: AugmentedCopies, virtual: str, original: ListItem) -> float:
    clean = copies.clip.load(original.path)
    augmented = copies.load(virtual)
    assert augmented.shape == clean.shape
    return float(np.dot(augmented, clean) / np.dot(clean, clean))


def test_each_copy_is_a_session_of_its_speaker(tmp_path):
    copies = AugmentedCopies(CLIPS, 2, gain_only(tmp_path), ClipSettings(16000), seed=7)
    assert [item.speaker for item in copies.items] == ["en-david#copy1", "en-david#copy1", "en-m7#copy1",
                                                       "en-david#copy2", "en-david#copy2", "en-m7#copy2"]
    assert [item.label for item in copies.items] == [2, 3, 2] * 2
    gains = [gain_of(copies, item.path, CLIPS[i % 3]) for i, item in enumerate(copies.items)]
    # one speaker's clips share the session's gain; other copies and other speakers draw their own
    assert gains[0] == pytest.approx(gains[1], rel=1e-4)
    assert gains[3] == pytest.approx(gains[4], rel=1e-4)
    assert abs(gains[0] - gains[3]) > 1e-3 and abs(gains[0] - gains[2]) > 1e-3
    assert all(10 ** (-10 / 20) - 1e-4 <= gain <= 10 ** (10 / 20) + 1e-4 for gain in gains)
    # the same seed makes the same copies; another seed others
    again = AugmentedCopies(CLIPS, 2, gain_only(tmp_path), ClipSettings(16000), seed=7)
    np.testing.assert_array_equal(again.load(copies.items[0].path), copies.load(copies.items[0].path))
    other = AugmentedCopies(CLIPS, 2, gain_only(tmp_path), ClipSettings(16000), seed=8)
    assert gain_of(other, other.items[0].path, CLIPS[0]) != pytest.approx(gains[0], rel=1e-4)


def test_the_copies_key_changes_with_the_augmentation_codes_draws(tmp_path, monkeypatch):
    from mser.data import augment
    copies = AugmentedCopies(CLIPS, 2, gain_only(tmp_path), ClipSettings(16000), seed=7)
    before = copies.description()
    assert before == AugmentedCopies(CLIPS, 2, gain_only(tmp_path), ClipSettings(16000), seed=7).description()
    monkeypatch.setattr(augment, "DRAWS_VERSION", augment.DRAWS_VERSION + 1)
    assert copies.description() != before   # copies cached by an older mser are drawn anew


def test_copies_need_waveform_augmentation_and_a_whole_number(tmp_path):
    config = load_config("configs/egemaps.yml", "dataset_conf.feature_cache.augmented_copies=2")
    with pytest.raises(ConfigError, match="--data_augment_configs"):
        build_copies(config, CLIPS, None, ClipSettings(16000))
    spec_only = tmp_path / "spec.yml"
    spec_only.write_text(yaml.safe_dump({"spec_aug": {"prob": 1.0}}))
    with pytest.raises(ConfigError, match="waveform"):
        build_copies(config, CLIPS, load_augmentation_config(str(spec_only), 16000), ClipSettings(16000))
    config["dataset_conf"]["feature_cache"]["augmented_copies"] = -1
    with pytest.raises(ConfigError, match="whole number"):
        build_copies(config, CLIPS, gain_only(tmp_path), ClipSettings(16000))
    config["dataset_conf"]["feature_cache"]["augmented_copies"] = 0
    assert build_copies(config, CLIPS, gain_only(tmp_path), ClipSettings(16000)) is None


def test_speaker_normalisation_sees_each_copy_as_its_own_speaker(demo_lists, tmp_path):
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.augmented_copies": 1,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                                                "preprocess_conf.speaker_norm.enable": "true"})
    config = load_config("configs/bi_lstm.yml", overwrites)
    augmentation = tmp_path / "gain.yml"
    augmentation.write_text(yaml.safe_dump({"volume": {"prob": 1.0, "min_gain_dB": -10, "max_gain_dB": 10}}))
    trainer = MSERTrainer(config, use_gpu=False, data_augment_configs=str(augmentation))
    train_items, _, _ = trainer.read_lists()
    expanded = trainer.prepare_training_data(train_items, trainer.augmented_copies(train_items))
    assert len(expanded) == 2 * len(train_items)
    speakers = {item.speaker for item in train_items}
    assert set(trainer.speaker_norm.speakers) == speakers | {f"{speaker}#copy1" for speaker in speakers}
    assert not trainer.training_reads_audio()   # the copies come from the cache
    assert trainer.dataset(expanded, train=True)[len(train_items)].inputs is not None


def test_the_learning_rate_schedule_spans_the_epochs_with_their_copies(demo_lists, tmp_path, monkeypatch):
    """WarmupCosine reaches its floor at the last step of the last epoch, copies counted: before,
    a run with 2 copies decayed to min_lr in the first third of its epochs."""
    import mser.trainer
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.augmented_copies": 2,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                                                "dataset_conf.val_fraction": 0, "train_conf.max_epoch": 2,
                                                "optimizer_conf.scheduler": "WarmupCosine",
                                                "optimizer_conf.scheduler_args.warmup_epochs": 0})
    config = load_config("configs/bi_lstm.yml", overwrites)
    gain_only(tmp_path)
    trainer = MSERTrainer(config, use_gpu=False, data_augment_configs=str(tmp_path / "gain.yml"))
    built, learning_rates = [], []
    build_run, finish_batch = mser.trainer.build_run, trainer.finish_batch

    def recording_build_run(*args, **kwargs):
        built.append(build_run(*args, **kwargs))
        return built[-1]

    def recording_finish_batch():   # after the step: the rate of the next one
        learning_rates.append(built[0].optimizer.param_groups[0]["lr"])
        finish_batch()

    monkeypatch.setattr(mser.trainer, "build_run", recording_build_run)
    monkeypatch.setattr(trainer, "finish_batch", recording_finish_batch)
    trainer.train(save_model_path=str(tmp_path / "models"), log_dir="")
    clips = len(trainer.read_lists()[0])
    assert built[0].steps_per_epoch == -(-3 * clips // 16)   # the clips and their 2 copies, batches of 16
    assert len(learning_rates) == 2 * built[0].steps_per_epoch
    lr, min_lr = config["optimizer_conf"]["optimizer_args"]["lr"], config["optimizer_conf"]["scheduler_args"]["min_lr"]
    halfway = learning_rates[len(learning_rates) // 2 - 1]
    assert min_lr < 0.4 * lr < halfway < 0.6 * lr    # cosine: half-way down at half of the steps
    assert learning_rates[-1] == pytest.approx(min_lr, rel=0.05)


def test_train_py_caches_copies_and_keys_them_by_the_augmentation(demo_lists, tmp_path):
    cache = tmp_path / "cache"
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.augmented_copies": 1,
                                                "dataset_conf.feature_cache.cache_dir": cache})

    def train(augmentation: dict, name: str):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(augmentation))
        return run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                          "--save_model_path", tmp_path / name, "--data_augment_configs", path,
                          "--overwrites", overwrites)

    clips = len((demo_lists / "train_list.txt").read_text().splitlines())
    first = train({"volume": {"prob": 1.0, "min_gain_dB": -6, "max_gain_dB": 6}}, "gain")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "augmented copies of the training clips" in first.stdout
    trained_on = int(first.stdout.split(" training, ")[0].split()[-1])
    validation = int(first.stdout.split(" training, ")[1].split()[0])
    assert trained_on == 2 * (clips - validation)
    copies_caches = lambda: sorted(p.name for p in cache.iterdir() if "_copies_" in p.name)  # noqa: E731
    assert len(copies_caches()) == 1

    other = train({"noise": {"prob": 1.0, "min_snr_dB": 10, "max_snr_dB": 20}}, "noise")
    assert other.returncode == 0, other.stderr[-2000:]
    assert len(copies_caches()) == 2   # another augmentation, another cache beside the first

    missing = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                         "--save_model_path", tmp_path / "none", "--overwrites", overwrites)
    assert_one_line_error(missing, "augmented_copies")

"""A tiny generated corpus and train.py arguments for the trainer tests: a few short clips of three
separable tone classes, written into a temporary folder, and overrides for a run of seconds."""
import numpy as np
import soundfile

SAMPLE_RATE = 16000
LABELS = ["low", "mid", "high"]
FREQUENCIES = [220.0, 660.0, 1980.0]


def write_clip(path, frequency: float, seconds: float, rng: np.random.Generator) -> None:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clip = 0.3 * np.sin(2 * np.pi * frequency * t * rng.uniform(0.95, 1.05)) + 0.02 * rng.standard_normal(len(t))
    soundfile.write(str(path), clip.astype(np.float32), SAMPLE_RATE)


def make_corpus(folder, clips_per_label: int = 8, test_per_label: int = 2, seconds: float = 0.6, seed: int = 0):
    """train_list.txt, test_list.txt, label_list.txt and the clips under `folder`; returns `folder`."""
    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    lines = {"train": [], "test": []}
    for label, frequency in enumerate(FREQUENCIES):
        for index in range(clips_per_label + test_per_label):
            path = folder / "audio" / f"{LABELS[label]}_{index}.wav"
            write_clip(path, frequency, seconds, rng)
            split = "test" if index >= clips_per_label else "train"
            lines[split].append(f"{path}\t{label}\n")
    for split, split_lines in lines.items():
        (folder / f"{split}_list.txt").write_text("".join(split_lines))
    (folder / "label_list.txt").write_text("".join(f"{name}\n" for name in LABELS))
    return folder


def tiny_run_overwrites(list_dir, **extra) -> str:
    """--overwrites for a run of a few seconds on the tiny corpus (2 epochs of 5 steps)."""
    values = {
        "dataset_conf.train_list": list_dir / "train_list.txt",
        "dataset_conf.test_list": list_dir / "test_list.txt",
        "dataset_conf.label_list_path": list_dir / "label_list.txt",
        "dataset_conf.dataset.max_duration": 0.5,
        "dataset_conf.dataset.min_duration": 0.1,
        "dataset_conf.eval_conf.max_duration": 0.6,
        "dataset_conf.dataLoader.batch_size": 4,
        "dataset_conf.dataLoader.num_workers": 0,
        "dataset_conf.val_fraction": 0.15,
        "dataset_conf.feature_cache.enable": False,
        "train_conf.max_epoch": 2,
        "train_conf.enable_amp": False,
        "train_conf.keep_last_epochs": 5,
        "model_conf.model": "BiLSTM",
        "model_conf.model_args.hidden_size": 8,
        "model_conf.model_args.embd_dim": 16,
        "preprocess_conf.feature_method": "Fbank",
        "preprocess_conf.method_args.num_mel_bins": 20,
        "optimizer_conf.scheduler_args.warmup_steps": 2,
    }
    values.update(extra)
    return ",".join(f"{key}={value}" for key, value in values.items())


def train_argv(list_dir, save_path, *args, log_dir="", **overwrites) -> list:
    return ["--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", str(log_dir),
            "--save_model_path", str(save_path), *map(str, args),
            "--overwrites", tiny_run_overwrites(list_dir, **overwrites)]

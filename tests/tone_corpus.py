"""A tiny two-class corpus of tones for tests of pretrained-encoder featurizers."""
import numpy as np
import soundfile

SAMPLE_RATE = 16000


def write_tone_corpus(root, train_clips: int, test_clips: int) -> dict:
    """`train_clips` and `test_clips` clips of 1 s, a low hum or a high whistle with noise, alternating;
    returns {'train', 'test', 'labels'}: the paths of the lists written under `root`."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    lists = {"train_list.txt": [], "test_list.txt": []}
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for index in range(train_clips + test_clips):
        label = index % 2
        tone = 0.3 * np.sin(2 * np.pi * (150 if label == 0 else 2400) * t) + 0.02 * rng.standard_normal(SAMPLE_RATE)
        path = root / "audio" / f"clip{index}.wav"
        soundfile.write(path, tone.astype(np.float32), SAMPLE_RATE)
        lists["train_list.txt" if index < train_clips else "test_list.txt"].append(f"{path}\t{label}\n")
    for name, lines in lists.items():
        (root / name).write_text("".join(lines))
    (root / "label_list.txt").write_text("hum\nwhistle\n")
    return {"train": root / "train_list.txt", "test": root / "test_list.txt", "labels": root / "label_list.txt"}


def tone_overwrites(corpus: dict, **extra) -> str:
    """--overwrites for one quick epoch on a tone corpus (small batches, 1 s clips, a 16-unit
    BiLSTM head); `extra` adds or replaces keys."""
    values = {"dataset_conf.train_list": corpus["train"], "dataset_conf.test_list": corpus["test"],
              "dataset_conf.label_list_path": corpus["labels"], "dataset_conf.dataset.max_duration": 1.0,
              "dataset_conf.eval_conf.max_duration": 1.0, "dataset_conf.dataLoader.batch_size": 8,
              "dataset_conf.dataLoader.num_workers": 0, "dataset_conf.eval_conf.batch_size": 8,
              "train_conf.max_epoch": 1, "model_conf.model_args.hidden_size": 16,
              "optimizer_conf.scheduler_args.warmup_steps": 0, **extra}
    return ",".join(f"{key}={value}" for key, value in values.items())

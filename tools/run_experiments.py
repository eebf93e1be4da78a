"""Rerun the demo-corpus experiments behind the README's accuracy tables, one training at a time.

    python create_data.py --dataset demo                    # dataset/{train,test,label}_list.txt
    python tools/run_experiments.py --list                  # the experiments and what they change
    python tools/run_experiments.py configs recommended     # groups or single experiments
    python tools/run_experiments.py --table                 # markdown table of what has run

Every experiment is `train.py` (timed: wall clock, CPU seconds of the process and its workers,
the 1-minute load average sampled during the run) followed by `eval.py --json` on the test list.
One JSON line per run is appended to `<out_dir>/results.jsonl`; checkpoints, logs, evaluation
figures and feature caches stay under `<out_dir>/<name>/`.

Two kinds of runs:
  full  train on dataset/train_list.txt (8 voices); the best epoch is picked on the config's
        seeded 10% validation slice of that list; reported on the test list (2 unseen voices).
  cv    for choosing settings: voice-wise cross-validation on the training list only. Each of
        the 4 folds trains on 6 training voices and validates on the other two (one male, one
        female espeak variant), so the validation score is itself speaker-independent; a fold's
        best epoch is picked on its held-out voices, and the mean over folds is the score. The
        test list is not touched.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CV_FOLDS = (("en-029-m2", "en-gb-x-gbclan-f1"), ("en-gb-m1", "en-us-nyc-f5"),
            ("en-gb-x-rp-m5", "en-gb-f3"), ("en-us-m3", "en-gb-scotland-f4"))
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")

# name: (config, changes, augmentation config or None, kind, groups, what it tests)
EXPERIMENTS: Dict[str, tuple] = {}


def experiment(name: str, config: str, changes: Optional[dict] = None, augment=None,
               kind: str = "full", groups=(), note: str = "") -> None:
    """`changes` is merged into the YAML config; a key ending in '!' replaces its section whole.
    `augment`: an augmentation YAML path, or a dict written to the run's own augmentation.yml."""
    EXPERIMENTS[name] = (config, changes or {}, augment, kind, tuple(groups), note)


def merged(base: dict, changes: dict) -> dict:
    """`base` (a config) with `changes` applied: sections merge key by key, except that a key
    ending in '!' replaces its section whole."""
    result = dict(base)
    for key, value in changes.items():
        if key.endswith("!"):
            result[key[:-1]] = value
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def compose(first: dict, then: dict) -> dict:
    """One set of changes that does `first`, then `then` (both may hold '!' keys)."""
    result = dict(first)
    for key, value in then.items():
        plain = key.rstrip("!")
        if key.endswith("!"):
            result.pop(plain, None)
            result[key] = value
        elif plain + "!" in result and isinstance(value, dict):
            result[plain + "!"] = merged(result[plain + "!"], value)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = compose(result[key], value)
        else:
            result[key] = value
    return result


# --- every shipped config, as shipped (README table per config)
for _name in ("bi_lstm", "ecapa_tdnn", "campplus", "resnet_se", "panns", "custom_features", "tdnn_prosody"):
    experiment(_name, f"configs/{_name}.yml", groups=("configs",), note="the shipped config")

# --- features and normalisation: voice-wise cross-validation, all with the same model, schedule
# and seed (pinned here, so later edits of the shipped configs do not change these experiments)
PROSODY = "configs/tdnn_prosody.yml"
ABLATION_BASE = {
    "model_conf!": {"model": "TDNN", "model_args": {"channels": 128, "stats_channels": 384, "embd_dim": 128,
                                                    "pooling_type": "TSTP"}},
    "optimizer_conf!": {"optimizer": "AdamW", "optimizer_args": {"lr": 0.001, "weight_decay": 1e-4},
                        "scheduler": "WarmupCosine", "scheduler_args": {"warmup_steps": 50, "min_lr": 1e-5},
                        "grad_clip": 5.0},
    "train_conf": {"max_epoch": 30, "enable_amp": False, "label_smoothing": 0.1, "seed": 1000},
    "dataset_conf": {"dataset": {"use_dB_normalization": False}, "dataLoader": {"batch_size": 32}},
}


def features(method: str = "FbankProsody", db: bool = False, **method_args) -> dict:
    changes = compose(ABLATION_BASE, {"preprocess_conf": {"feature_method": method, "method_args!": method_args}})
    if db:
        changes = compose(changes, {"dataset_conf": {"dataset": {"use_dB_normalization": True}}})
    return changes


def prosody_args(**args) -> dict:
    return features(num_mel_bins=80, **args)


def prosody_only(**args) -> dict:
    return features(num_mel_bins=80, use_fbank=False, **args)


experiment("feat_fbank", PROSODY, features("Fbank", num_mel_bins=80),
           kind="cv", groups=("features",), note="80 log-mel only")
experiment("feat_fbank_meannorm", PROSODY, features("Fbank", num_mel_bins=80, mean_norm=True),
           kind="cv", groups=("features",), note="80 log-mel, per-clip mean normalisation")
experiment("feat_fbank_db", PROSODY, features("Fbank", db=True, num_mel_bins=80),
           kind="cv", groups=("features",), note="80 log-mel, clips dB-normalised to -20 dBFS")
experiment("feat_prosody", PROSODY, prosody_args(), kind="cv", groups=("features",),
           note="80 log-mel + log-F0, voicing, energy and their deltas (FbankProsody)")
experiment("feat_prosody_pitchboth", PROSODY, prosody_args(pitch_norm="both"),
           kind="cv", groups=("features",), note="FbankProsody + log-F0 relative to the clip's median")
experiment("feat_prosody_pitchmean", PROSODY, prosody_args(pitch_norm="mean"),
           kind="cv", groups=("features",), note="FbankProsody, log-F0 relative to the clip's median only")
experiment("feat_prosody_melnorm", PROSODY, prosody_args(mel_mean_norm=True),
           kind="cv", groups=("features",), note="FbankProsody, log-mel mean-normalised, prosody absolute")
experiment("feat_prosody_energymax", PROSODY, prosody_args(mel_mean_norm=True, energy_norm="max"),
           kind="cv", groups=("features",), note="as melnorm, energy re the clip's loud level")
experiment("feat_prosody_only", PROSODY, prosody_only(),
           kind="cv", groups=("features",), note="the 6 prosody channels alone, no log-mel")

# --- around the prosody-only features
experiment("po_pitchboth", PROSODY, prosody_only(pitch_norm="both"), kind="cv", groups=("prosody_cv",),
           note="prosody only + log-F0 relative to the clip's median")
experiment("po_pitchmean", PROSODY, prosody_only(pitch_norm="mean"), kind="cv", groups=("prosody_cv",),
           note="prosody only, log-F0 relative to the clip's median (no absolute pitch)")
experiment("po_energymax", PROSODY, prosody_only(energy_norm="max"), kind="cv", groups=("prosody_cv",),
           note="prosody only, energy relative to the clip's loud level (no loudness)")
experiment("po_mel20norm", PROSODY, features(num_mel_bins=20, mel_mean_norm=True), kind="cv",
           groups=("prosody_cv",), note="prosody + 20 mean-normalised log-mel bins (spectral tilt)")
experiment("po_epochs60", PROSODY, compose(prosody_only(), {"train_conf": {"max_epoch": 60}}), kind="cv",
           groups=("prosody_cv",), note="prosody only, 60 epochs")
experiment("po_bilstm", PROSODY, compose(prosody_only(), {"model_conf!": {
    "model": "BiLSTM", "model_args": {"hidden_size": 64, "num_layers": 1, "embd_dim": 64, "pooling_type": "SAP"}}}),
           kind="cv", groups=("prosody_cv",), note="prosody only, BiLSTM 64 units instead of the TDNN")

experiment("po_small", PROSODY, compose(prosody_only(), {"model_conf": {"model_args": {
    "channels": 64, "stats_channels": 192, "embd_dim": 64}}}), kind="cv", groups=("prosody_cv",),
           note="prosody only, TDNN at half width (64 channels)")
experiment("po_wd", PROSODY, compose(prosody_only(), {"optimizer_conf": {"optimizer_args": {"weight_decay": 0.05}}}),
           kind="cv", groups=("prosody_cv",), note="prosody only, AdamW weight decay 0.05 instead of 1e-4")
experiment("po_timemask", PROSODY, prosody_only(), augment={"spec_aug": {
    "prob": 0.5, "freq_mask_width": 0, "num_freq_masks": 0, "time_mask_width": 20, "num_time_masks": 2}},
           kind="cv", groups=("prosody_cv",), note="prosody only, SpecAugment time masks only (2 x up to 20 frames)")

# --- augmentation, voice-wise cross-validation. Waveform augmentation needs features computed from
# the audio in every batch, so those runs switch the feature cache off (SpecAugment runs on
# features and works either way).
NO_CACHE = {"dataset_conf": {"feature_cache": {"enable": False}}}
SPEED = {"speed": {"prob": 0.5, "speeds": [0.9, 1.0, 1.1]}}
SPEC_AUG = {"spec_aug": {"prob": 0.5, "freq_mask_width": 8, "num_freq_masks": 2,
                         "time_mask_width": 10, "num_time_masks": 2}}
experiment("aug_cv_default", PROSODY, compose(prosody_args(), NO_CACHE), augment="configs/augmentation.yml",
           kind="cv", groups=("augment_cv",), note="FbankProsody, configs/augmentation.yml as first shipped")
experiment("aug_cv_speed", PROSODY, compose(prosody_args(), NO_CACHE), augment=SPEED, kind="cv",
           groups=("augment_cv",), note="FbankProsody, speed perturbation only (0.9/1.0/1.1, prob 0.5)")
experiment("aug_cv_specaug", PROSODY, prosody_args(), augment=SPEC_AUG, kind="cv", groups=("augment_cv",),
           note="FbankProsody, SpecAugment only")
experiment("po_speed", PROSODY, compose(prosody_only(), NO_CACHE), augment=SPEED, kind="cv",
           groups=("prosody_cv",), note="prosody only, speed perturbation (0.9/1.0/1.1, prob 0.5)")

# --- bfloat16 autocast on the CPU against float32, recommended config (full runs)
experiment("amp_bf16", PROSODY, {"train_conf": {"enable_amp": True, "amp_dtype": "bfloat16"}}, groups=("amp",),
           note="train_conf.enable_amp: true (bf16 autocast)")
experiment("amp_fp32", PROSODY, {"train_conf": {"enable_amp": False}}, groups=("amp",), note="float32")

# --- augmentation with and without, recommended config (full runs)
experiment("aug_none", PROSODY, groups=("augment",), note="no augmentation")
experiment("aug_default", PROSODY, NO_CACHE, augment="configs/augmentation.yml", groups=("augment",),
           note="configs/augmentation.yml as shipped")
experiment("aug_speed", PROSODY, NO_CACHE, augment=SPEED, groups=("augment",),
           note="speed perturbation only (0.9/1.0/1.1, prob 0.5)")
experiment("aug_specaug", PROSODY, augment=SPEC_AUG, groups=("augment",), note="SpecAugment only")

# --- the recommended config with other seeds: how much one run's score varies
for _seed in (1001, 1002):
    experiment(f"seed_{_seed}", PROSODY, {"train_conf": {"seed": _seed}}, groups=("seeds",),
               note=f"the recommended config, seed {_seed}")


def fold_lists(out_dir: str, fold: int) -> Dict[str, str]:
    """Split dataset/train_list.txt by voice: CV_FOLDS[fold] for validation, the rest for training."""
    with open(os.path.join(REPO, "dataset", "train_list.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    voice = lambda line: os.path.basename(os.path.dirname(line.split("\t")[0]))  # noqa: E731
    held_out = CV_FOLDS[fold]
    missing = [v for v in held_out if not any(voice(line) == v for line in lines)]
    if missing:
        raise SystemExit(f"voices {', '.join(missing)} are not in dataset/train_list.txt: "
                         "run create_data.py --dataset demo first")
    paths = {"train": os.path.join(out_dir, f"cv{fold}_train_list.txt"),
             "val": os.path.join(out_dir, f"cv{fold}_val_list.txt")}
    os.makedirs(out_dir, exist_ok=True)
    for split, keep in (("train", lambda v: v not in held_out), ("val", lambda v: v in held_out)):
        with open(paths[split], "w", encoding="utf-8") as f:
            f.writelines(f"{line}\n" for line in lines if keep(voice(line)))
    return paths


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every `interval` seconds until stopped."""

    def __init__(self, interval: float = 10.0):
        super().__init__(daemon=True)
        self.interval, self.samples, self.done = interval, [os.getloadavg()[0]], threading.Event()

    def run(self):
        while not self.done.wait(self.interval):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> List[float]:
        self.done.set()
        self.join()
        self.samples.append(os.getloadavg()[0])
        return self.samples


def run_one(name: str, out_dir: str, python: str, environment: Dict[str, str], fold: Optional[int] = None) -> dict:
    """Train (and for full runs evaluate) one experiment, or one fold of a cv experiment."""
    config, changes, augment, kind, _, note = EXPERIMENTS[name]
    label = name if fold is None else f"{name}/fold{fold}"
    run_dir = os.path.join(out_dir, label)
    os.makedirs(run_dir, exist_ok=True)
    dataset_changes = {"feature_cache": {"cache_dir": os.path.join(run_dir, "features")}}
    if fold is not None:
        lists = fold_lists(out_dir, fold)
        dataset_changes.update(train_list=lists["train"], val_list=lists["val"])
    with open(os.path.join(REPO, config), encoding="utf-8") as f:
        run_config = merged(merged(yaml.safe_load(f), changes), {"dataset_conf": dataset_changes})
    config_path = os.path.join(run_dir, "config.yml")
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(run_config, f, sort_keys=False)
    command = [python, "train.py", "--configs", config_path, "--use_gpu", "false", "--save_model_path", run_dir,
               "--log_dir", ""]
    if isinstance(augment, dict):
        augment_path = os.path.join(run_dir, "augmentation.yml")
        with open(augment_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(augment, f, sort_keys=False)
        command += ["--data_augment_configs", augment_path]
    elif augment:
        command += ["--data_augment_configs", augment]
    print(f"[{label}] {' '.join(command)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler = LoadSampler()
    sampler.start()
    started = time.time()
    with open(os.path.join(run_dir, "train.log"), "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=environment)
    wall = time.time() - started
    loads = sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"[{label}] train.py failed ({result.returncode}); see {run_dir}/train.log")
    model_dirs = [d for d in os.listdir(run_dir) if os.path.isdir(os.path.join(run_dir, d, "best_model"))]
    best = os.path.join(run_dir, model_dirs[0], "best_model")
    with open(os.path.join(best, "model.state"), encoding="utf-8") as f:
        state = json.load(f)
    row = {"name": name, "fold": fold, "config": config, "changes": changes, "augment": augment, "kind": kind,
           "note": note, "best_epoch": state["epoch"], "val": state.get("val", {}),
           "train_wall_s": round(wall, 1),
           "train_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
           "env": {k: environment[k] for k in THREAD_VARIABLES if k in environment},
           "load_mean": round(sum(loads) / len(loads), 2), "load_max": round(max(loads), 2),
           "epoch_seconds": epoch_seconds(os.path.join(run_dir, "train.log")),
           "checkpoint": best, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    summary = f"val UA {row['val'].get('unweighted_accuracy', float('nan')):.3f}"
    if kind == "full":
        evaluation = subprocess.run([python, "eval.py", "--resume_model", best, "--use_gpu", "false", "--json",
                                     "--output_dir", os.path.join(run_dir, "eval")],
                                    cwd=REPO, capture_output=True, text=True)
        if evaluation.returncode != 0:
            raise SystemExit(f"[{label}] eval.py failed: {evaluation.stderr}")
        metrics = json.loads(evaluation.stdout.strip().splitlines()[-1])
        row.update(test_accuracy=metrics["accuracy"], test_ua=metrics["unweighted_accuracy"],
                   test_macro_f1=metrics["macro_f1"], confusion_matrix=os.path.join(run_dir, "eval",
                                                                                     "confusion_matrix.png"))
        summary += (f" | test acc {row['test_accuracy']:.3f} UA {row['test_ua']:.3f} "
                    f"F1 {row['test_macro_f1']:.3f}")
    with open(os.path.join(out_dir, "results.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(f"[{label}] {summary} | best epoch {row['best_epoch']} | {wall:.0f} s wall, "
          f"{row['train_cpu_s']:.0f} CPU s, load {row['load_mean']}", flush=True)
    return row


def epoch_seconds(log_path: str) -> List[float]:
    """The seconds of every training epoch, as the trainer logged them."""
    seconds = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("epoch ") and " clips/s, " in line:
                seconds.append(float(line.rsplit(" clips/s, ", 1)[1].split(" s", 1)[0]))
    return seconds


def cache_benchmark(config: str, out_dir: str, epochs: int = 2) -> dict:
    """Seconds of a training epoch (the trainer's own train_epoch) with features from the cache
    against features computed from the audio in every batch, same model, lists and batches."""
    import torch
    from torch import nn
    from mser.trainer import Amp, MSERTrainer
    cache_dir = os.path.join(out_dir, "cache_benchmark")
    trainer = MSERTrainer(configs=os.path.join(REPO, config), use_gpu=False,
                          overwrites=f"dataset_conf.feature_cache.cache_dir={cache_dir}")
    train_items, _, _ = trainer.read_lists()
    started = time.time()
    trainer.prepare_caches()
    build_seconds = time.time() - started
    model = trainer.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    amp, criterion = Amp(trainer.config["train_conf"], trainer.device), nn.CrossEntropyLoss()
    trainer.spec_augment = None
    caches, seconds = trainer.caches, {"cache": [], "audio": []}
    for epoch in range(1, epochs + 1):
        for source in ("cache", "audio"):
            trainer.caches = caches if source == "cache" else None
            dataset = trainer.dataset(train_items, train=True)
            stats = trainer.train_epoch(epoch, model, dataset, criterion, optimizer, None, amp, None)
            seconds[source].append(round(stats.seconds, 2))
    result = {"config": config, "clips": len(train_items), "cache_build_s": round(build_seconds, 1),
              "epoch_s_cache": seconds["cache"], "epoch_s_audio": seconds["audio"],
              "speedup": round(min(seconds["audio"]) / min(seconds["cache"]), 1),
              "load": os.getloadavg()[0], "env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}
    print(json.dumps(result))
    return result


def table(out_dir: str) -> str:
    """Markdown tables of results.jsonl: full runs one row each (the latest run of a name), cv
    experiments one row each with the mean and the per-fold validation UA."""
    path = os.path.join(out_dir, "results.jsonl")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")] if os.path.isfile(path) else []
    full = {r["name"]: r for r in rows if r["kind"] == "full"}
    folds: Dict[str, Dict[int, dict]] = {}
    for r in rows:
        if r["kind"] == "cv":
            folds.setdefault(r["name"], {})[r["fold"]] = r
    lines = ["| run | test acc | test UA | test macro-F1 | best epoch | val UA (slice) | train wall | CPU s | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in full.values():
        lines.append(f"| {r['name']} | {r['test_accuracy']:.3f} | {r['test_ua']:.3f} | {r['test_macro_f1']:.3f} | "
                     f"{r['best_epoch']} | {r['val'].get('unweighted_accuracy', float('nan')):.3f} | "
                     f"{r['train_wall_s'] / 60:.1f} min | {r['train_cpu_s']:.0f} | {r['load_mean']:.1f} |")
    lines += ["", "| cv experiment | mean val UA | per fold | best epochs | wall per fold | what |",
              "|---|---|---|---|---|---|"]
    for name, by_fold in folds.items():
        ordered = [by_fold[k] for k in sorted(by_fold)]
        uas = [r["val"].get("unweighted_accuracy", float("nan")) for r in ordered]
        lines.append(f"| {name} | {sum(uas) / len(uas):.3f} | {' '.join(f'{u:.3f}' for u in uas)} | "
                     f"{' '.join(str(r['best_epoch']) for r in ordered)} | "
                     f"{sum(r['train_wall_s'] for r in ordered) / len(ordered) / 60:.1f} min | {ordered[0]['note']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="experiments or groups to run, in order")
    parser.add_argument("--out_dir", default="output/experiments", help="where runs and results.jsonl go")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs train.py and eval.py")
    parser.add_argument("--folds", type=int, nargs="*", default=list(range(len(CV_FOLDS))),
                        help="which cv folds to run (0-3)")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for train.py (0: leave the environment's setting)")
    parser.add_argument("--omp_wait_policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", ""],
                        help="OMP_WAIT_POLICY for train.py; PASSIVE stops idle OpenMP threads from "
                             "spinning, several times faster on a CPU shared with other jobs ('' leaves it)")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--table", action="store_true", help="print the results table and exit")
    parser.add_argument("--cache_benchmark", metavar="CONFIG", default=None,
                        help="time training epochs from the feature cache against features from audio "
                             "(e.g. configs/custom_features.yml) and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (config, changes, augment, kind, groups, note) in EXPERIMENTS.items():
            augment_text = json.dumps(augment) if isinstance(augment, dict) else augment
            print(f"{name:24s} {kind:8s} {','.join(groups):9s} {config} {json.dumps(changes)} "
                  f"{'--data_augment_configs ' + augment_text if augment else ''}  # {note}")
        return
    if args.table:
        print(table(args.out_dir))
        return
    if args.cache_benchmark:
        os.environ.update({k: v for k, v in (("OMP_NUM_THREADS", str(args.threads) if args.threads else ""),
                                              ("OMP_WAIT_POLICY", args.omp_wait_policy)) if v})
        cache_benchmark(args.cache_benchmark, os.path.abspath(args.out_dir))
        return
    selected = []
    for name in args.names:
        matches = [n for n, spec in EXPERIMENTS.items() if n == name or name in spec[4]]
        if not matches:
            parser.error(f"unknown experiment or group '{name}'; see --list")
        selected += [n for n in matches if n not in selected]
    if not selected:
        parser.error("name experiments or groups to run (see --list), or use --table")
    environment = dict(os.environ)
    if args.threads:
        environment["OMP_NUM_THREADS"] = str(args.threads)
    if args.omp_wait_policy:
        environment["OMP_WAIT_POLICY"] = args.omp_wait_policy
    for name in selected:
        if EXPERIMENTS[name][3] == "cv":
            for fold in args.folds:
                run_one(name, os.path.abspath(args.out_dir), args.python, environment, fold)
        else:
            run_one(name, os.path.abspath(args.out_dir), args.python, environment)


if __name__ == "__main__":
    main()

"""Measure mser on this machine: featurizers, training (data pipeline against the model alone),
inference, memory, the hardware's matmul peak, and bfloat16.

Sections (--sections, all but peers by default):
  hardware  fp32 and bf16 matmul GFLOP/s (2048 x 2048); per model the fwd+bwd GFLOP of one clip
            and the share of the fp32 peak its training step reaches on precomputed features
  features  clips/s and real-time factor of every featurizer whose optional extra is installed
            (--featurizers), 3 s clips in batches of 32; --quick leaves out the openSMILE sets
  train     per model: end-to-end training clips/s through MSERTrainer.train_epoch on generated 3 s
            WAV files, from audio (AudioDataset, DataLoader workers, collate, featurizer, model,
            optimizer: the path waveform augmentation needs) and from the feature cache
            (extract_features.py); the same training step on features computed beforehand; the
            ratios (pipeline efficiency), and where the rest goes (featurizer alone, DataLoader alone);
            with --data_augment_configs the epochs from audio augment every clip, as train.py does
            (loader workers that augment on the CPU also compute the features)
  extract   clip-level featurizers (openSMILE eGeMAPS and ComParE, CustomFeatures; the --featurizers
            choice): clips/s of mser.data.feature_cache.compute_features, what extract_features.py
            and train.py run to build a cache, on --extract_clips 3 s clips with
            feature_cache.workers 0 (one process) against auto (one worker process per core, at most
            4), and whether both gave the same features
  infer     per model: ms per 3 s clip at batch 1 under torch.inference_mode (featurizer + model),
            fp32 and bf16 autocast, and the real-time factor (the best of --runs calls)
  bf16      EcapaTdnn training with train_conf.enable_amp (bf16 autocast) against fp32, end to end
            and model only; inference fp32 / bf16 / ONNX Runtime; channels-last for a 2-D model
  memory    peak RSS of one train.py epoch and of MSERPredictor.predict_long on a 10-minute file,
            each in a process of its own (RUSAGE_CHILDREN of a wrapper process per task)
  vad       mser.vad backends on demo clips (each at -26 dBFS) with gaps of 0.3-3.5 s of digital
            silence or white/pink/brown noise at 20/10/5/0 dB SNR: frame-level precision, recall
            and F1 of speech_segments() against "inside a clip", and on 1.5 s windows (hop 0.5 s)
            the share of speech-free windows is_speech() calls speech and of windows with >= 0.5 s
            of speech it calls silence (80 clips; --quick 20)
  peers     (only with --peers or when named) upstream macls beside ours in one run, on the same 3 s
            clips, torch, torchaudio and threads: the same EcapaTdnn (C=512, 1536, 192-d, ASP on 80-bin
            kaldi Fbank, 6 classes) trained for --batches batches per round and then loaded as a
            predictor; predict(path) in ms (ours with the torch backend, in float32 and, where the CPU
            has native bf16, with precision bfloat16 (bf16 autocast), and with the onnx backend in
            float32 and int8 (precision int8: convolutions quantised, calibrated on the training
            clips); MAClsPredictor)
            in --peers_rounds alternating rounds of 4 calls (a different one first each round), and
            training clips/s (ours through the trainer's train_epoch in fp32 and, where the CPU has it,
            bf16 autocast; theirs through MAClsTrainer's own epoch loop) in up to 3 alternating rounds;
            medians; and the model call alone (ours in inference mode, theirs as their predict makes
            it, autograd on) in as many alternating rounds. macls runs in tools/peers/macls_worker.py
            under the Python of a virtual environment of its own (--peers_venv, default
            ~/.cache/mser-bench/peers; never ours), made on first use: `python -m venv`, a file
            zz_mser_bench_shared.pth in its site-packages naming our site-packages, so they come
            after its own on sys.path (our torch, torchaudio, numpy,
            librosa, ...: no second torch is downloaded, nothing is installed into ours), then
            `pip install --no-deps` of macls==1.0.6 and of the requirements ours lacks (loguru,
            yeaudio, av, kaldi-native-fbank), and of mser==0.0.11 (upstream mser: it only has BiLSTM,
            so it is reported, not compared). When macls cannot be installed or run, the section says
            why in one line and the other sections still run

The 3 s clips are demo-corpus speech joined end to end. Timings on a shared machine vary with its
load; the load average is printed with the results. There, torch's OpenMP threads spin-wait for
each other while another process holds a core, which slows every parallel op down several times:
run with OMP_WAIT_POLICY=PASSIVE (recorded in the results) to measure what the code can do.

    .venv/bin/python tools/benchmark.py --quick
    .venv/bin/python tools/benchmark.py --models EcapaTdnn,CAMPPlus --sections train,infer --json
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/benchmark.py --sections peers --batches 2 --json
    .venv/bin/python tools/benchmark.py --models EcapaTdnn --sections train \
        --overwrites "model_conf.model_args.channels=512,model_conf.model_args.mfa_channels=1536"

Every model is benchmarked with the model and featurizer arguments of its shipped config.
"""
import argparse
import datetime
import glob
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import soundfile
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mser.audio import load_audio  # noqa: E402
from mser.clip import ClipSettings  # noqa: E402
from mser.config import apply_overwrites, load_config, save_config  # noqa: E402
from mser.data.lists import write_data_list, write_label_list  # noqa: E402
from mser.factory import featurizer_from_config  # noqa: E402
from mser.features import build_featurizer, list_featurizers, missing_extra  # noqa: E402
from mser.models import list_models  # noqa: E402

SAMPLE_RATE = 16000
CLIP_SECONDS = 3.0
LABELS = ["neutral", "happy", "sad", "angry", "fearful", "surprised"]
SECTIONS = ("hardware", "features", "extract", "train", "infer", "bf16", "memory", "vad", "files", "peers")
DEFAULT_SECTIONS = tuple(name for name in SECTIONS if name != "peers")   # peers installs from PyPI: asked for
QUICK_MODELS = ("BiLSTM", "EcapaTdnn")
# openSMILE analyses one clip at a time on the CPU, 8-23 clips/s against ~1300 for Fbank: the two sets
# took 10 s of a --quick run (3 batches of 32 clips each) on 2 busy cores; its contours (eGeMAPS_LLD) likewise
SLOW_FEATURIZERS = ("eGeMAPS", "ComParE", "eGeMAPS_LLD")
BF16_MODEL = "EcapaTdnn"
LONG_FILE_SECONDS = 600.0
FILES_CLIPS = 1000        # the files section: infer.py --audio_list on this many different 3 s clips
FILES_ONE_BY_ONE = 50     # ... against predict() on the first of them, one call per file
PEER_WORKER = os.path.join(REPO, "tools", "peers", "macls_worker.py")
DEFAULT_PEERS_VENV = os.path.join(os.path.expanduser("~"), ".cache", "mser-bench", "peers")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help="comma-separated sections to run (peers only when named, or with --peers)")
    parser.add_argument("--models", default=None,
                        help="comma-separated models (default: every registered one; --quick: "
                             + ",".join(QUICK_MODELS) + ")")
    parser.add_argument("--featurizers", default=None,
                        help="comma-separated featurizers for the features section (default: every registered "
                             "one whose optional extra is installed; --quick leaves out "
                             + ",".join(SLOW_FEATURIZERS) + ")")
    parser.add_argument("--batch_size", type=int, default=32, help="training and featurizer batch size")
    parser.add_argument("--extract_clips", type=int, default=96, help="clips the extract section caches")
    parser.add_argument("--batches", type=int, default=4, help="training batches timed per model")
    parser.add_argument("--runs", type=int, default=10, help="timed repetitions for inference and featurizers")
    parser.add_argument("--repeats", type=int, default=2,
                        help="training measurements per model, alternating pipeline and model only; the best "
                             "of each is kept (a busy machine slows some of them down)")
    parser.add_argument("--overwrites", default=None,
                        help="config overrides for every benchmarked model, "
                             "e.g. \"model_conf.model_args.channels=512\"")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="DataLoader workers for the training pipeline (default: the model's config)")
    parser.add_argument("--data_augment_configs", default=None,
                        help="waveform augmentation for the train section's epochs from audio (as train.py's "
                             "option; the model-only and featurizer figures stay unaugmented)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--use_gpu", type=lambda s: s.lower() in ("1", "true", "yes"), default=False,
                        help="benchmark on the GPU when there is one")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced set in under two minutes: the quick models, 1 batch, 2 runs, "
                             "memory of BiLSTM training only")
    parser.add_argument("--peers", action="store_true",
                        help="add the peers section: upstream macls side by side with ours (installs macls from "
                             "PyPI into --peers_venv on first use)")
    parser.add_argument("--peers_venv", default=DEFAULT_PEERS_VENV,
                        help="the peers' own virtual environment (made and filled on first use; never ours)")
    parser.add_argument("--peers_python", default=None,
                        help="an interpreter that already has macls (no virtual environment is made or filled)")
    parser.add_argument("--peers_rounds", type=int, default=10,
                        help="alternating predictor rounds (4 calls each) and training rounds (1 epoch of "
                             "--batches batches each, at most 3) per library")
    parser.add_argument("--peers_worker", default=PEER_WORKER, help=argparse.SUPPRESS)   # tests: a fake peer
    parser.add_argument("--json", action="store_true", help="print all results as one JSON object on the last line")
    parser.add_argument("--work_dir", default=None, help="where clips and checkpoints go (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.peers and "peers" not in args.sections:
        args.sections.append("peers")
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.models:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    else:
        args.models = list(QUICK_MODELS) if args.quick else list_models()
    missing = sorted(set(args.models) - set(list_models()))
    if missing:
        parser.error(f"unknown model(s) {', '.join(missing)}; registered: {', '.join(list_models())}")
    args.featurizers, args.featurizers_skipped = choose_featurizers(parser, args.featurizers, args.quick)
    if args.quick:
        args.batches, args.runs, args.repeats = 1, min(args.runs, 2), 1
    return args


def choose_featurizers(parser: argparse.ArgumentParser, requested: Optional[str], quick: bool):
    """The featurizers to time and {name: why not} for those left out: a missing optional extra
    (e.g. opensmile) or, by default under --quick, slowness."""
    if requested:
        names = [name.strip() for name in requested.split(",") if name.strip()]
        unknown = sorted(set(names) - set(list_featurizers()))
        if unknown:
            parser.error(f"unknown featurizer(s) {', '.join(unknown)}; registered: {', '.join(list_featurizers())}")
    else:
        names = list_featurizers()
    skipped = {name: f'needs pip install "mser[{missing_extra(name)}]"' for name in names if missing_extra(name)}
    if quick and not requested:
        skipped.update({name: "slow, left out of --quick (name it in --featurizers)"
                        for name in names if name in SLOW_FEATURIZERS and name not in skipped})
    return [name for name in names if name not in skipped], skipped


# ---------------------------------------------------------------- timing helpers

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call takes, waiting for the device to finish."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def best_seconds(function: Callable[[], Any], device: torch.device, runs: int, warmup: int = 2) -> float:
    """The fastest of `runs` calls: other load on the machine only ever slows a call down."""
    for _ in range(warmup):
        function()
    return min(timed(function, device) for _ in range(max(1, runs)))


def load_average() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------- inputs

def demo_speech() -> np.ndarray:
    """The shipped demo corpus joined into one long signal (noise if it is missing)."""
    paths = sorted(glob.glob(os.path.join(REPO, "dataset", "demo", "**", "*.flac"), recursive=True))[:80]
    if not paths:
        return np.random.default_rng(0).standard_normal(SAMPLE_RATE * 120).astype(np.float32) * 0.1
    return np.concatenate([load_audio(path, SAMPLE_RATE) for path in paths])


def write_clips(directory: str, count: int, speech: np.ndarray) -> List[str]:
    """`count` different 3 s 16-bit WAV files cut from `speech`."""
    os.makedirs(directory, exist_ok=True)
    size = int(CLIP_SECONDS * SAMPLE_RATE)
    paths = []
    for index in range(count):
        start = (index * size * 7 // 5) % (len(speech) - size)
        path = os.path.join(directory, f"clip_{index:03d}.wav")
        soundfile.write(path, speech[start:start + size], SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def write_long_file(path: str, speech: np.ndarray, seconds: float) -> str:
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(speech)))
    soundfile.write(path, np.tile(speech, repeats)[:int(seconds * SAMPLE_RATE)], SAMPLE_RATE, subtype="PCM_16")
    return path


class Workspace:
    """Generated clips and the data lists that point at them."""

    def __init__(self, directory: str, clips: int):
        self.directory = directory
        self.speech = demo_speech()
        self.paths = write_clips(os.path.join(directory, "clips"), clips, self.speech)
        self.label_list = os.path.join(directory, "label_list.txt")
        write_label_list(self.label_list, LABELS)
        self.waveforms = [torch.from_numpy(load_audio(path, SAMPLE_RATE)) for path in self.paths]

    def items(self, count: int):
        return [(self.paths[i % len(self.paths)], i % len(LABELS)) for i in range(count)]

    def write_list(self, name: str, count: int) -> str:
        path = os.path.join(self.directory, name)
        write_data_list(path, self.items(count))
        return path

    def batch(self, size: int) -> torch.Tensor:
        """(size, 3 s of samples) real speech."""
        return torch.stack([self.waveforms[i % len(self.waveforms)] for i in range(size)])


# ---------------------------------------------------------------- configs and models

def config_file_for(model: str) -> str:
    """The shipped config that trains `model`, else one of its family, else ecapa_tdnn.yml."""
    found = {}
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.yml"))):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        name = (data.get("model_conf") or {}).get("model")
        feature = (data.get("preprocess_conf") or {}).get("feature_method")
        if name and feature != "CustomFeatures":
            found.setdefault(name, path)
    if model in found:
        return found[model]
    family = [path for name, path in found.items() if name.split("_")[0] == model.split("_")[0]]
    return family[0] if family else os.path.join(REPO, "configs", "ecapa_tdnn.yml")


def benchmark_config(model: str, workspace: Workspace, batch_size: int, train_clips: int,
                     enable_amp: bool = False, num_workers: Optional[int] = None,
                     overwrites: Optional[str] = None) -> Dict[str, Any]:
    config = load_config(config_file_for(model))
    if config["model_conf"]["model"] != model:
        config["model_conf"] = {"model": model, "model_args": {}}  # the model's own defaults
    if overwrites:
        config = apply_overwrites(config, overwrites)
    dataset_conf = config["dataset_conf"]
    dataset_conf["train_list"] = workspace.write_list("train_list.txt", train_clips)
    dataset_conf["test_list"] = dataset_conf["val_list"] = workspace.write_list("test_list.txt", 8)
    dataset_conf["label_list_path"] = workspace.label_list
    dataset_conf["feature_cache"]["cache_dir"] = os.path.join(workspace.directory, f"features_{model}")
    dataset_conf["dataset"]["max_duration"] = CLIP_SECONDS
    dataset_conf["dataLoader"]["batch_size"] = batch_size
    if num_workers is not None:
        dataset_conf["dataLoader"]["num_workers"] = num_workers
    config["train_conf"]["enable_amp"] = enable_amp
    return config


def describe_model(config: Dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in config["model_conf"]["model_args"].items())
    method = config["preprocess_conf"]
    feature_args = ", ".join(f"{k}={v}" for k, v in method["method_args"].items())
    return (f"{config['model_conf']['model']}({args or 'defaults'}) on "
            f"{method['feature_method']}({feature_args or 'defaults'})")


def fwd_bwd_gflop(model: nn.Module, features: torch.Tensor) -> float:
    """GFLOP of one training step (forward + backward) per clip. features: (batch >= 2, frames, dim).

    FlopCounterMode does not see recurrent layers on the CPU; those are added analytically
    (backward of a recurrent layer ~ twice its forward)."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    from model_table import rnn_macs
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(features).float().logsumexp(dim=1).sum().backward()
    model.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    per_module = counter.get_flop_counts()
    for name, module in model.named_modules():
        key = f"{type(model).__name__}.{name}"
        if isinstance(module, nn.RNNBase) and not sum(per_module.get(key, {}).values()):
            flops += 3 * 2 * rnn_macs(module, features.shape[1]) * features.shape[0]
    return flops / features.shape[0] / 1e9


# ---------------------------------------------------------------- sections

def matmul_gflops(dtype: torch.dtype, device: torch.device, size: int = 2048, runs: int = 5) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = min(timed(lambda: a @ b, device) for _ in range(runs + 1))
    return 2 * size ** 3 / best / 1e9


def hardware_peak(device: torch.device, quick: bool) -> Dict[str, float]:
    runs = 3 if quick else 8
    return {"fp32_gflops": round(matmul_gflops(torch.float32, device, runs=runs), 1),
            "bf16_gflops": round(matmul_gflops(torch.bfloat16, device, runs=runs), 1)}


def featurizer_rows(workspace: Workspace, device: torch.device, batch_size: int, runs: int,
                    names: Sequence[str]) -> List[Dict]:
    waveforms = workspace.batch(batch_size).to(device)
    lengths = torch.full((batch_size,), waveforms.shape[1], dtype=torch.long, device=device)
    rows = []
    for name in names:
        featurizer = build_featurizer(name, sample_rate=SAMPLE_RATE).to(device).eval()
        with torch.inference_mode():
            seconds = best_seconds(lambda f=featurizer: f(waveforms, lengths), device, runs, warmup=1)
        rows.append({"featurizer": name, "feature_dim": featurizer.feature_dim,
                     "clips_per_s": round(batch_size / seconds, 1),
                     "real_time_factor": round(seconds / (batch_size * CLIP_SECONDS), 5)})
    return rows


def extraction_rows(workspace: Workspace, names: Sequence[str], clips: int) -> List[Dict]:
    """Cache building (compute_features) for each clip-level featurizer in `names`: one process
    against feature_cache.workers auto, and whether the two gave the same features."""
    from mser.data.feature_cache import EXTRACTION_BATCH_SIZE, compute_features, extraction_workers
    from mser.data.lists import ListItem
    items = [ListItem(path, label) for path, label in workspace.items(clips)]
    items = [item._replace(path=f"{item.path}#{i}") for i, item in enumerate(items)]   # every clip its own entry
    rows = []
    for name in names:
        featurizer = build_featurizer(name, sample_rate=SAMPLE_RATE)
        if not featurizer.clip_level:
            continue
        config = load_config("configs/custom_features.yml", f"preprocess_conf.feature_method={name}")
        clip = ClipSettings.from_config(config)
        load = lambda path, clip=clip: clip.load(path.rsplit("#", 1)[0])   # noqa: E731
        timings, computed = {}, {}
        for workers in (0, "auto"):
            config["dataset_conf"]["feature_cache"]["workers"] = workers
            started = time.perf_counter()
            computed[workers] = compute_features(featurizer, items, config, load=load)["features"]
            timings[workers] = time.perf_counter() - started
        one, parallel = computed[0], computed["auto"]
        batches = -(-len(items) // EXTRACTION_BATCH_SIZE)   # compute_features' batches
        rows.append({"featurizer": name, "clips": len(items),
                     "workers": extraction_workers(config, featurizer, "cpu", batches),
                     "one_process_clips_per_s": round(len(items) / timings[0], 1),
                     "workers_clips_per_s": round(len(items) / timings["auto"], 1),
                     "speedup": round(timings[0] / timings["auto"], 2),
                     "same_features": one.keys() == parallel.keys() and all(torch.equal(one[k], parallel[k])
                                                                             for k in one)})
    return rows


class TrainingRig:
    """An executor, model, optimizer and AMP for one config, built as MSERTrainer.train builds them
    (mser.builder.build_run), without a trainer: no process group, no reseeding."""

    def __init__(self, config: Dict[str, Any], use_gpu: bool, data_augment_configs: Optional[str] = None):
        from mser.builder import build_run
        from mser.data.dataset import AudioDataset
        from mser.executor import Executor
        self.config = config
        self.trainer = Executor.from_config(config, use_gpu=use_gpu, data_augment_configs=data_augment_configs)
        self.device = self.trainer.device
        self.items = self.trainer.read_lists()[0]
        run = build_run(config, self.trainer.featurizer, self.trainer.labels, self.items, self.device,
                        log=self.trainer.log)
        self.model, self.optimizer, self.amp, self.criterion = run.model, run.optimizer, run.amp, run.criterion
        self.trainer.model = self.model
        self.dataset = self.trainer.dataset(self.items, train=True)
        # the clips as recorded, for the figures that time one part of the pipeline on waveforms
        self.unaugmented = AudioDataset(self.items, self.trainer.clip, train=True, seed=config["train_conf"]["seed"])
        self.warmed_up = False

    def feature_batches(self) -> List[tuple]:
        """(waveforms, lengths, features, frame_lengths, labels) for each batch of one epoch."""
        batches = []
        for batch in self.trainer.loader(self.unaugmented, train=True, epoch=0):
            features, frame_lengths = self.trainer.features(batch)
            batches.append((batch.inputs.to(self.device), batch.lengths.to(self.device), features,
                            frame_lengths, batch.labels.to(self.device)))
        return batches

    def step(self, features, frame_lengths, labels) -> None:
        self.trainer.train_step(self.model, features, frame_lengths, labels, self.criterion,
                                self.optimizer, self.amp)

    def model_only_clips_per_s(self, batches: Sequence[tuple]) -> float:
        self.model.train()
        if not self.warmed_up:
            self.step(*batches[0][2:])  # allocator, oneDNN primitives
            self.warmed_up = True
        seconds = sum(timed(lambda b=b: self.step(*b[2:]), self.device) for b in batches)
        return sum(len(b[4]) for b in batches) / seconds

    def pipeline_clips_per_s(self) -> Dict[str, float]:
        """One real training epoch (DataLoader workers started for it, as in train.py)."""
        stats = self.trainer.train_epoch(1, self.model, self.dataset, self.criterion, self.optimizer,
                                         None, self.amp, None)
        return {"clips_per_s": stats.clips / stats.seconds, "seconds": stats.seconds}

    def cached_pipeline_clips_per_s(self) -> float:
        """One training epoch reading the feature cache, which is computed first (not timed)."""
        self.trainer.prepare_caches(rebuild=True)
        # not trainer.dataset: with waveform augmentation, it would read the audio again
        dataset = self.trainer.cached_dataset(self.items, train=True)
        self.trainer.caches = None  # back to audio for the other measurements
        stats = self.trainer.train_epoch(1, self.model, dataset, self.criterion, self.optimizer, None, self.amp, None)
        return stats.clips / stats.seconds

    def featurizer_clips_per_s(self, batches: Sequence[tuple]) -> float:
        featurizer = self.trainer.featurizer
        with torch.no_grad():
            seconds = sum(timed(lambda b=b: featurizer(b[0], b[1]), self.device) for b in batches)
        return sum(len(b[4]) for b in batches) / seconds

    def loader_clips_per_s(self) -> float:
        """Decoding and collating alone, worker start-up included."""
        start = time.perf_counter()
        clips = sum(len(batch) for batch in self.trainer.loader(self.unaugmented, train=True, epoch=2))
        return clips / (time.perf_counter() - start)


def training_row(model: str, workspace: Workspace, args, peak: Optional[Dict[str, float]],
                 enable_amp: bool = False) -> Dict[str, Any]:
    config = benchmark_config(model, workspace, args.batch_size, args.batch_size * args.batches, enable_amp,
                              args.num_workers, args.overwrites)
    rig = TrainingRig(config, args.use_gpu, args.data_augment_configs)
    batches = rig.feature_batches()
    model_only, pipeline, cached = 0.0, {"clips_per_s": 0.0}, 0.0
    for _ in range(max(1, args.repeats)):
        model_only = max(model_only, rig.model_only_clips_per_s(batches))
        pipeline = max(pipeline, rig.pipeline_clips_per_s(), key=lambda p: p["clips_per_s"])
        if not rig.trainer.featurizer.clip_level:  # clip-level features always come from the cache
            cached = max(cached, rig.cached_pipeline_clips_per_s())
    featurizer = rig.featurizer_clips_per_s(batches)
    loader = rig.loader_clips_per_s()
    gflop = fwd_bwd_gflop(rig.model, batches[0][2][:2].float())
    row = {"model": model, "setup": describe_model(config), "amp": "bf16" if enable_amp else "fp32",
           "num_workers": config["dataset_conf"]["dataLoader"]["num_workers"],
           "augmentation": args.data_augment_configs or "none",
           "pipeline_clips_per_s": round(pipeline["clips_per_s"], 2),
           "model_only_clips_per_s": round(model_only, 2),
           "pipeline_efficiency": round(pipeline["clips_per_s"] / model_only, 3),
           "cached_clips_per_s": round(cached, 2), "cached_efficiency": round(cached / model_only, 3),
           "featurizer_clips_per_s": round(featurizer, 1), "loader_clips_per_s": round(loader, 1),
           "fwd_bwd_gflop_per_clip": round(gflop, 2)}
    if peak:
        reference = peak["bf16_gflops"] if enable_amp else peak["fp32_gflops"]
        row["fraction_of_peak"] = round(model_only * gflop / reference, 3)
    return row


def inference_setup(model: str, workspace: Workspace, device: torch.device, overwrites: Optional[str] = None):
    from mser.factory import model_from_config
    config = benchmark_config(model, workspace, 1, 8, overwrites=overwrites)
    featurizer = featurizer_from_config(config).to(device).eval()
    network = model_from_config(config, featurizer.feature_dim, len(LABELS)).to(device).eval()
    waveform = workspace.batch(1).to(device)
    lengths = torch.tensor([waveform.shape[1]], device=device)
    return featurizer, network, waveform, lengths


def inference_row(model: str, workspace: Workspace, device: torch.device, runs: int,
                  overwrites: Optional[str] = None) -> Dict[str, Any]:
    featurizer, network, waveform, lengths = inference_setup(model, workspace, device, overwrites)

    def predict(bf16: bool):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            network(*featurizer(waveform, lengths))

    fp32 = best_seconds(lambda: predict(False), device, runs)
    bf16 = best_seconds(lambda: predict(True), device, runs)
    return {"model": model, "ms_per_clip": round(fp32 * 1000, 2), "real_time_factor": round(fp32 / CLIP_SECONDS, 4),
            "bf16_ms_per_clip": round(bf16 * 1000, 2), "bf16_speedup": round(fp32 / bf16, 2)}


def onnx_ms(network: nn.Module, features: torch.Tensor, runs: int) -> Optional[float]:
    """Model-only ms per clip in ONNX Runtime (CPU), or None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    buffer = io.BytesIO()
    torch.onnx.export(network, (features,), buffer, dynamo=False, opset_version=17,
                      input_names=["features"], output_names=["logits"])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    inputs = {"features": features.numpy()}
    return best_seconds(lambda: session.run(None, inputs), torch.device("cpu"), runs) * 1000


def model_only_inference_ms(network: nn.Module, features: torch.Tensor, device: torch.device, runs: int,
                            bf16: bool = False) -> float:
    def run():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            network(features)
    return best_seconds(run, device, runs) * 1000


def bf16_section(workspace: Workspace, args, peak, device: torch.device) -> Dict[str, Any]:
    """EcapaTdnn training and inference in bf16 against fp32; ONNX Runtime; channels-last."""
    result: Dict[str, Any] = {"model": BF16_MODEL}
    rows = [training_row(BF16_MODEL, workspace, args, peak, enable_amp=amp) for amp in (False, True)]
    result["train"] = rows
    result["train_speedup_end_to_end"] = round(rows[1]["pipeline_clips_per_s"] / rows[0]["pipeline_clips_per_s"], 2)
    result["train_speedup_model_only"] = round(rows[1]["model_only_clips_per_s"] / rows[0]["model_only_clips_per_s"], 2)
    featurizer, network, waveform, lengths = inference_setup(BF16_MODEL, workspace, device, args.overwrites)
    with torch.no_grad():  # not inference_mode: the ONNX export traces the model with these
        features = featurizer(waveform, lengths)[0]
    fp32 = model_only_inference_ms(network, features, device, args.runs)
    bf16 = model_only_inference_ms(network, features, device, args.runs, bf16=True)
    result["infer_model_only_ms"] = {"fp32": round(fp32, 2), "bf16": round(bf16, 2)}
    if device.type == "cpu":
        runtime = onnx_ms(network, features, args.runs)
        if runtime is not None:
            result["infer_model_only_ms"]["onnxruntime_fp32"] = round(runtime, 2)
    result["channels_last"] = channels_last_row(workspace, device, args.runs)
    return result


def channels_last_row(workspace: Workspace, device: torch.device, runs: int) -> Optional[Dict[str, Any]]:
    """Inference of a 2-D convolutional model with channels-last weights against the default layout."""
    model = "ResNetSE" if "ResNetSE" in list_models() else None
    if model is None:
        return None
    featurizer, network, waveform, lengths = inference_setup(model, workspace, device)
    with torch.no_grad():  # not inference_mode: the ONNX export traces the model with these
        features = featurizer(waveform, lengths)[0]
    default = model_only_inference_ms(network, features, device, runs)
    network = network.to(memory_format=torch.channels_last)
    channels_last = model_only_inference_ms(network, features, device, runs)
    return {"model": model, "default_ms": round(default, 2), "channels_last_ms": round(channels_last, 2)}


# ---------------------------------------------------------------- memory

RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "with open(sys.argv[1], 'w') as log:\n"
               "    code = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n")


def peak_rss(command: List[str], log_path: str) -> Dict[str, Any]:
    """Run `command` under a fresh wrapper process; the wrapper's RUSAGE_CHILDREN is this task alone
    (ru_maxrss: the largest process of the task, e.g. the trainer rather than a DataLoader worker)."""
    start = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", RSS_WRAPPER, log_path, *command], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    kilobytes, code = int(output[0]), int(output[1])
    result = {"peak_rss_mb": round(kilobytes / 1024, 1), "seconds": round(time.perf_counter() - start, 1)}
    if code != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            result["error"] = f"exit {code}: " + " | ".join(f.read().strip().splitlines()[-3:])
    return result


def memory_section(workspace: Workspace, args) -> Dict[str, Any]:
    model = "BiLSTM" if args.quick else ("EcapaTdnn" if "EcapaTdnn" in args.models else args.models[0])
    clips = args.batch_size * (1 if args.quick else 4)
    config = benchmark_config(model, workspace, args.batch_size, clips, overwrites=args.overwrites)
    config["train_conf"]["max_epoch"] = 1
    config["dataset_conf"]["feature_cache"]["cache_dir"] = os.path.join(workspace.directory, "memory_features")
    config_path = os.path.join(workspace.directory, "memory_config.yml")
    save_config(config, config_path)
    save_path = os.path.join(workspace.directory, "memory_models")
    python = sys.executable
    result: Dict[str, Any] = {"import_baseline": peak_rss(
        [python, "-c", "import torch, mser.trainer"], os.path.join(workspace.directory, "import.log"))}
    train = peak_rss([python, os.path.join(REPO, "train.py"), "--configs", config_path, "--log_dir", "",
                      "--use_gpu", str(args.use_gpu).lower(), "--save_model_path", save_path],
                     os.path.join(workspace.directory, "train.log"))
    result["train_epoch"] = {"model": model, "clips": clips, **train}
    checkpoint_dir = os.path.join(save_path, f"{model}_{config['preprocess_conf']['feature_method']}", "best_model")
    try:
        from mser.predictor import MSERPredictor  # noqa: F401  (present in this version?)
    except ImportError:
        result["predict_long"] = {"note": "mser.predictor.MSERPredictor is not available; training only"}
        return result
    if "error" in train or args.quick:
        result["predict_long"] = {"note": "skipped: " + ("training failed" if "error" in train else "--quick")}
        return result
    long_file = write_long_file(os.path.join(workspace.directory, "long.wav"), workspace.speech, LONG_FILE_SECONDS)
    script = ("import sys\nfrom mser.predictor import MSERPredictor\n"
              "segments = MSERPredictor(sys.argv[1], use_gpu=sys.argv[3] == 'true').predict_long(sys.argv[2])\n"
              "print(len(segments))\n")
    predict = peak_rss([python, "-c", script, checkpoint_dir, long_file, str(args.use_gpu).lower()],
                       os.path.join(workspace.directory, "predict_long.log"))
    result["predict_long"] = {"model": model, "audio_seconds": LONG_FILE_SECONDS, **predict}
    return result


# ---------------------------------------------------------------- many files (infer.py --audio_list)

def untrained_checkpoint(model: str, workspace: Workspace, args) -> str:
    """A checkpoint directory of `model` as its config sizes it, with initial weights (throughput
    does not depend on what the weights learnt) and no speaker normalisation."""
    from mser.factory import model_from_config
    config = benchmark_config(model, workspace, args.batch_size, args.batch_size, overwrites=args.overwrites)
    config["preprocess_conf"]["speaker_norm"]["enable"] = False
    network = model_from_config(config, featurizer_from_config(config).feature_dim, len(LABELS))
    return save_mser_checkpoint(config, network, os.path.join(workspace.directory, f"files_{model}"))


def timed_infer_list(checkpoint: str, list_path: str, output: str, use_gpu: bool) -> float:
    """Seconds of one `infer.py --audio_list` process, start-up included."""
    started = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(REPO, "infer.py"), "--model_path", checkpoint, "--audio_list",
                    list_path, "--output", output, "--use_gpu", str(use_gpu).lower()],
                   cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def files_section(workspace: Workspace, args) -> Dict[str, Any]:
    """infer.py --audio_list on FILES_CLIPS different 3 s clips (batched, results to JSON lines),
    against the same script on one clip (its start-up) and predict() called once per file."""
    from mser.predictor import MSERPredictor
    model = "BiLSTM" if args.quick else ("EcapaTdnn" if "EcapaTdnn" in args.models else args.models[0])
    clips = 64 if args.quick else FILES_CLIPS
    checkpoint = untrained_checkpoint(model, workspace, args)
    paths = write_clips(os.path.join(workspace.directory, "files"), clips, workspace.speech)
    lists = {}
    for name, chosen in (("all", paths), ("one", paths[:1])):
        lists[name] = os.path.join(workspace.directory, f"files_{name}.txt")
        with open(lists[name], "w", encoding="utf-8") as f:
            f.write("\n".join(chosen) + "\n")
    output = os.path.join(workspace.directory, "files_results.jsonl")
    start_up = timed_infer_list(checkpoint, lists["one"], output, args.use_gpu)
    seconds = timed_infer_list(checkpoint, lists["all"], output, args.use_gpu)
    with open(output, encoding="utf-8") as f:
        written = sum(1 for line in f if line.strip())
    predictor = MSERPredictor(checkpoint, use_gpu=args.use_gpu)
    calls = timed_predictions(predictor, paths[:FILES_ONE_BY_ONE // (2 if args.quick else 1)])
    per_call_ms = median(calls[3:])   # after 3 warm-up calls
    return {"model": describe_model(load_config(os.path.join(checkpoint, "config.yml"))), "clips": clips,
            "results_written": written, "script_seconds": round(seconds, 1), "start_up_seconds": round(start_up, 1),
            "clips_per_s": round(clips / seconds, 1),
            "clips_per_s_after_start_up": round(clips / (seconds - start_up), 1) if seconds > start_up else None,
            "predict_one_by_one_ms": round(per_call_ms, 1),
            "predict_one_by_one_clips_per_s": round(1000 / per_call_ms, 1)}


# ---------------------------------------------------------------- output

# ---------------------------------------------------------------- voice activity detection

VAD_SNRS = (None, 20, 10, 5, 0)        # None: digital silence between the clips
VAD_NOISES = ("white", "pink", "brown")
SPEECH_DBFS = -26.0                    # every clip is scaled to this RMS level before mixing


def coloured_noise(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,) float64 of unit RMS: white, pink (1/f power) or brown (1/f^2) noise."""
    spectrum = np.fft.rfft(rng.standard_normal(size))
    frequencies = np.maximum(np.fft.rfftfreq(size, 1 / SAMPLE_RATE), 20.0)
    spectrum *= {"white": 1.0, "pink": frequencies ** -0.5, "brown": 1.0 / frequencies}[kind]
    noise = np.fft.irfft(spectrum, size)
    return noise / np.sqrt(np.mean(noise ** 2))


def vad_test_stream(clips: int, seed: int = 0):
    """Demo-corpus clips (each at -26 dBFS) with gaps of 0.3-3.5 s between them. Returns the clean
    signal (samples,) float64 and the (frames,) bool reference: True inside a clip."""
    from mser import vad
    rng = np.random.default_rng(seed)
    paths = sorted(glob.glob(os.path.join(REPO, "dataset", "demo", "**", "*.flac"), recursive=True))
    parts, spans, position = [], [], 0
    for path in rng.choice(paths, size=min(clips, len(paths)), replace=False):
        gap = np.zeros(int(rng.uniform(0.3, 3.5) * SAMPLE_RATE))
        clip = load_audio(str(path), SAMPLE_RATE).astype(np.float64)
        clip *= 10 ** (SPEECH_DBFS / 20) / np.sqrt(np.mean(clip ** 2))
        spans.append((position + len(gap), position + len(gap) + len(clip)))
        parts += [gap, clip]
        position += len(gap) + len(clip)
    parts.append(np.zeros(SAMPLE_RATE))
    signal = np.concatenate(parts)
    reference = np.zeros(vad.frame_count(len(signal)), dtype=bool)
    centres = (np.arange(len(reference)) + 0.5) * vad.FRAME_SAMPLES
    for start, end in spans:
        reference |= (centres >= start) & (centres < end)
    return signal, reference


def segments_to_frames(segments, frames: int) -> np.ndarray:
    from mser import vad
    flags = np.zeros(frames, dtype=bool)
    centres = (np.arange(frames) + 0.5) * vad.FRAME_SECONDS
    for start, end in segments:
        flags |= (centres >= start) & (centres < end)
    return flags


def window_errors(detector, mixed: np.ndarray, reference: np.ndarray, window: float = 1.5, hop: float = 0.5):
    """is_speech() on stream windows: the share of windows without speech it calls speech, and of
    windows with at least 0.5 s of speech it calls silence."""
    from mser import vad
    size, step, per_frame = int(window * SAMPLE_RATE), int(hop * SAMPLE_RATE), vad.FRAME_SAMPLES
    false_alarms, silent, misses, speaking = 0, 0, 0, 0
    for start in range(0, len(mixed) - size, step):
        speech_seconds = reference[start // per_frame:(start + size) // per_frame].sum() * vad.FRAME_SECONDS
        if speech_seconds == 0 or speech_seconds >= 0.5:
            said = vad.is_speech(mixed[start:start + size].astype(np.float32), SAMPLE_RATE, detector)
            silent, false_alarms = silent + (speech_seconds == 0), false_alarms + (speech_seconds == 0 and said)
            speaking, misses = speaking + (speech_seconds > 0), misses + (speech_seconds > 0 and not said)
    return false_alarms / max(silent, 1), misses / max(speaking, 1)


def vad_row(detector, signal: np.ndarray, reference: np.ndarray, noise: str, snr, rng) -> Dict[str, Any]:
    from mser import vad
    mixed = signal.copy()
    if snr is not None:
        mixed += coloured_noise(noise, len(signal), rng) * 10 ** ((SPEECH_DBFS - snr) / 20)
    started = time.perf_counter()
    segments = vad.speech_segments(mixed.astype(np.float32), SAMPLE_RATE, detector)
    seconds = time.perf_counter() - started
    found = segments_to_frames(segments, len(reference))
    hits = int((found & reference).sum())
    precision, recall = hits / max(int(found.sum()), 1), hits / max(int(reference.sum()), 1)
    window_false_alarm, window_miss = window_errors(detector, mixed, reference)
    return {"backend": detector.name, "noise": noise if snr is not None else "none",
            "snr_db": "clean" if snr is None else snr, "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-9), 3),
            "window_false_alarm": round(window_false_alarm, 3), "window_miss": round(window_miss, 3),
            "real_time_factor": round(seconds / (len(signal) / SAMPLE_RATE), 4)}


def vad_section(clips: int) -> List[Dict[str, Any]]:
    """Frame-level precision/recall of speech_segments() and window-level errors of is_speech()
    for each installed backend, on `clips` demo clips with silent or noisy gaps at several SNRs."""
    from mser import vad
    signal, reference = vad_test_stream(clips)
    detectors = [vad.load_vad("energy")] + ([vad.load_vad("silero")] if vad.silero_available() else [])
    rows = []
    for detector in detectors:
        rng = np.random.default_rng(1)   # the same noise for every backend
        for noise in VAD_NOISES:
            for snr in VAD_SNRS:
                if snr is None and noise != VAD_NOISES[0]:
                    continue
                rows.append(vad_row(detector, signal, reference, noise, snr, rng))
    return rows


# ---------------------------------------------------------------- peers

# The release the worker drives (it calls MAClsTrainer's own epoch loop, a private method).
PEER_PACKAGES = ("macls==1.0.6",)
PEER_OPTIONAL = ("mser==0.0.11",)   # upstream mser: installed to report what it offers; it has no EcapaTdnn
# Requirements of macls and yeaudio (its audio loader) that our environment does not provide; the rest
# (numpy, scipy, librosa, soundfile, torchinfo, visualdl, ...) come from ours through the .pth file.
PEER_DEPENDENCIES = ("loguru", "yeaudio", "av", "kaldi-native-fbank")
PEER_PROBE = "import macls.predict, macls.trainer, torch; print(torch.__file__)"
PEER_MODULE_PACKAGES = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow", "cv2": "opencv-python"}
PEER_SHARED_PTH = "zz_mser_bench_shared.pth"   # sorts last: the peer's own packages come first
PEER_MARKER = "mser-bench-peers.json"
# The paper-sized EcapaTdnn macls ships (ecapa_tdnn.yml: C=512, 1536, 192-d embedding, ASP on 80-bin
# Fbank) in ours; speaker normalisation off, as macls has none
PEER_OVERWRITES = ("model_conf.model_args.channels=512,model_conf.model_args.mfa_channels=1536,"
                   "model_conf.model_args.embd_dim=192,model_conf.model_args.pooling_type=ASP,"
                   "preprocess_conf.speaker_norm.enable=false")
PEER_CALLS_PER_ROUND = 4
PEER_TRAIN_ROUNDS = 3


class PeerUnavailable(Exception):
    """The peer could not be installed or run; the message is one line."""


def shared_site_packages() -> str:
    """Our environment's site-packages: the folder our torch is imported from."""
    return os.path.dirname(os.path.dirname(torch.__file__))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def peer_pip(python: str, packages: Sequence[str]) -> Optional[str]:
    """pip install --no-deps into the peer environment; None, or pip's last line when it failed."""
    result = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *packages],
                            capture_output=True, text=True, timeout=900)
    return None if result.returncode == 0 else last_line(result.stderr)


def peer_missing_module(python: str) -> Optional[str]:
    """The module the peer's import stops at, None when macls imports with our torch."""
    result = subprocess.run([python, "-c", PEER_PROBE], capture_output=True, text=True, timeout=300,
                            cwd=tempfile.gettempdir())
    if result.returncode == 0:
        if not os.path.realpath(result.stdout.strip()).startswith(os.path.realpath(shared_site_packages())):
            raise PeerUnavailable(f"the peer environment imports another torch ({result.stdout.strip()})")
        return None
    message = last_line(result.stderr)
    if message.startswith("ModuleNotFoundError: No module named "):
        return message.split("'")[1].split(".")[0]
    raise PeerUnavailable(f"macls does not import in {python}: {message}")


def ensure_peer_venv(venv: str) -> str:
    """The Python of `venv`, a virtual environment of its own where upstream macls imports; made on
    first use: `python -m venv` (the interpreter ours is made from), a .pth file that appends our
    site-packages to its sys.path after its own (torch, torchaudio, numpy, ... are ours: no second
    torch is downloaded, nothing is installed into ours), then `pip install --no-deps` of macls and
    of the few requirements ours lacks, and of any further module the import of macls asks for."""
    python = os.path.join(venv, "bin", "python")
    wanted = {"packages": [*PEER_PACKAGES, *PEER_DEPENDENCIES], "shared": shared_site_packages()}
    marker = os.path.join(venv, PEER_MARKER)
    if os.path.exists(marker) and os.path.exists(python):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == wanted:
                return python
    if not os.path.exists(python):
        made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
        if made.returncode != 0:
            raise PeerUnavailable(f"could not make a virtual environment in {venv}: {last_line(made.stderr)}")
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site_packages, PEER_SHARED_PTH), "w", encoding="utf-8") as f:
        f.write(shared_site_packages() + "\n")
    failed = peer_pip(python, wanted["packages"])
    if failed:
        raise PeerUnavailable(f"pip could not install {' '.join(PEER_PACKAGES)} into {venv}: {failed}")
    peer_pip(python, PEER_OPTIONAL)   # optional: the worker reports whether it is there
    for _ in range(8):
        module = peer_missing_module(python)
        if module is None:
            break
        failed = peer_pip(python, [PEER_MODULE_PACKAGES.get(module, module)])
        if failed:
            raise PeerUnavailable(f"macls needs the module {module}, which pip could not install: {failed}")
    else:
        raise PeerUnavailable("macls still misses modules after 8 installs; see "
                              f"{python} -c '{PEER_PROBE}'")
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(wanted, f)
    return python


class PeerProcess:
    """The peer worker (tools/peers/macls_worker.py) under the peer's Python: one JSON command per
    line in, one JSON answer per line out; its log (what macls prints) goes to `log_path`."""

    def __init__(self, python: str, worker: str, log_path: str, threads: int, cwd: str):
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        environment.update(OMP_NUM_THREADS=str(threads), PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
        self.log_path = log_path
        self.log = open(log_path, "w", encoding="utf-8")
        try:
            self.process = subprocess.Popen([python, worker], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self.log, text=True, cwd=cwd, env=environment)
        except OSError as e:
            self.log.close()
            raise PeerUnavailable(f"could not start {python}: {e.strerror or e}") from e

    def ask(self, command: str, **fields) -> Dict[str, Any]:
        try:
            self.process.stdin.write(json.dumps({"cmd": command, **fields}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.log.flush()
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                raise PeerUnavailable(f"the peer process ended during {command} (exit {self.process.poll()}): "
                                      f"{last_line(f.read())}")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise PeerUnavailable(answer["error"])
        return answer

    def close(self) -> None:
        try:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.log.close()


def median(values: Sequence[float]) -> float:
    return float(np.median(values))


def rotated(items: Sequence, by: int) -> list:
    """`items` starting at `by`: each round puts another contestant first."""
    by %= len(items)
    return list(items[by:]) + list(items[:by])


def save_mser_checkpoint(config: Dict[str, Any], network: nn.Module, directory: str) -> str:
    """`network`, built from `config`, as a checkpoint directory MSERPredictor loads."""
    from mser.checkpoint import save_checkpoint
    state = {"model": config["model_conf"]["model"], "num_class": len(LABELS),
             "feature_method": config["preprocess_conf"]["feature_method"]}
    return save_checkpoint(directory, network.state_dict(), state, config, LABELS)


def mser_predictors(checkpoint: str) -> Dict[str, Any]:
    """{"torch": MSERPredictor, "torch bf16": one with bf16 autocast (only where the CPU has native
    bf16), "onnx" and "onnx int8": MSERPredictor or the one-line reason it fell back}. The int8 graph
    is calibrated on the checkpoint's training list (the benchmark's clips)."""
    import warnings

    from mser.predictor import MSERPredictor
    predictors: Dict[str, Any] = {"torch": MSERPredictor(checkpoint)}
    bf16 = MSERPredictor(checkpoint, precision="auto")
    if bf16.precision == "bfloat16":
        predictors["torch bf16"] = bf16
    for name, precision in (("onnx", "float32"), ("onnx int8", "int8")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            onnx = MSERPredictor(checkpoint, backend="onnx", precision=precision)
        predictors[name] = (onnx if onnx.backend == "onnx"
                            else last_line(str(caught[-1].message) if caught else ""))
    return predictors


def timed_predictions(predictor, paths: Sequence[str]) -> List[float]:
    milliseconds = []
    for path in paths:
        started = time.perf_counter()
        predictor.predict(path)
        milliseconds.append((time.perf_counter() - started) * 1000)
    return milliseconds


def timed_model_calls(predictor, paths: Sequence[str]) -> List[float]:
    """ms of our model call alone, as MSERPredictor's torch backend makes it (inference mode), on
    the features of each clip (computed first, not timed)."""
    milliseconds = []
    for path in paths:
        waveform = torch.from_numpy(predictor.load(path))[None].to(predictor.device)
        with torch.inference_mode():
            features, frame_lengths = predictor.featurizer(waveform, torch.tensor([waveform.shape[1]],
                                                                                  device=predictor.device))
            started = time.perf_counter()
            predictor.model(features, frame_lengths)
            milliseconds.append((time.perf_counter() - started) * 1000)
    return milliseconds


def peer_training(peer: PeerProcess, rigs: Dict[str, "TrainingRig"], rounds: int) -> Dict[str, List[float]]:
    """Clips/s of one epoch per round and contestant, the contestants in turn (a different one first
    each round), after one untimed step each."""
    peer.ask("warmup")
    for rig in rigs.values():
        rig.step(*rig.feature_batches()[0][2:])

    def ours(rig):
        return rig.pipeline_clips_per_s()["clips_per_s"]

    def theirs():
        answer = peer.ask("train_epoch")
        return answer["clips"] / answer["seconds"]

    contestants = {**{name: (lambda rig=rig: ours(rig)) for name, rig in rigs.items()}, "macls": theirs}
    speeds: Dict[str, List[float]] = {name: [] for name in contestants}
    for index in range(rounds):
        for name in rotated(list(contestants), index):
            speeds[name].append(contestants[name]())
    return speeds


def peer_latency(peer: PeerProcess, predictors: Dict[str, Any], paths: Sequence[str],
                 rounds: int, model_only: bool = False) -> Dict[str, List[List[float]]]:
    """ms of predict(path) (or of its model call alone) on 3 s clips: per contestant, a list of
    PEER_CALLS_PER_ROUND calls per round, the contestants in turn on the same clips, after 3 untimed
    calls each."""
    if model_only:
        contestants = {"mser torch": lambda clips: timed_model_calls(predictors["torch"], clips),
                       "macls": lambda clips: peer.ask("model", paths=list(clips))["ms"]}
    else:
        contestants = {f"mser {name}": (lambda clips, p=p: timed_predictions(p, clips))
                       for name, p in predictors.items()}
        contestants["macls"] = lambda clips: peer.ask("predict", paths=list(clips))["ms"]
    for predict in contestants.values():
        predict(paths[:3])
    rounds_ms: Dict[str, List[List[float]]] = {name: [] for name in contestants}
    for index in range(rounds):
        start = (index * PEER_CALLS_PER_ROUND) % max(1, len(paths) - PEER_CALLS_PER_ROUND)
        clips = paths[start:start + PEER_CALLS_PER_ROUND]
        for name in rotated(list(contestants), index):
            rounds_ms[name].append(contestants[name](clips))
    return rounds_ms


def peer_rows(latency: Dict[str, List[List[float]]], model_latency: Dict[str, List[List[float]]],
              speeds: Dict[str, List[float]], setups: Dict[str, str],
              parameters: Dict[str, int]) -> List[Dict[str, Any]]:
    """One row per contestant: median predict ms (all calls), the round medians, median model-only
    ms, median clips/s."""
    reference = median([ms for one_round in latency["macls"] for ms in one_round])
    rows = []
    for name in [*latency, *(name for name in speeds if name not in latency)]:
        row: Dict[str, Any] = {"library": name, "setup": setups[name], "parameters": parameters[name]}
        if name in latency:
            calls = [ms for one_round in latency[name] for ms in one_round]
            row.update(predict_ms=round(median(calls), 1), predict_vs_macls=round(median(calls) / reference, 2),
                       predict_round_medians_ms=[round(median(r), 1) for r in latency[name]])
        if name in model_latency:
            row["model_ms"] = round(median([ms for one_round in model_latency[name] for ms in one_round]), 1)
            row["model_round_medians_ms"] = [round(median(r), 1) for r in model_latency[name]]
        training = speeds.get(name)
        if training:
            row.update(train_clips_per_s=round(median(training), 2),
                       train_round_clips_per_s=[round(value, 2) for value in training])
        rows.append(row)
    return rows


def compare_with_peer(peer: PeerProcess, workspace: Workspace, args) -> Dict[str, Any]:
    """The same EcapaTdnn (C=512 on 80-bin Fbank, 6 classes) trained and then run as a predictor in
    ours and in macls, on the same 3 s clips with the same torch and threads."""
    import mser
    load_before = load_average()
    clips = args.batch_size * args.batches
    overwrites = PEER_OVERWRITES + (f",{args.overwrites}" if args.overwrites else "")
    rigs: Dict[str, TrainingRig] = {}
    for name, amp in (("mser torch", False), ("mser torch bf16", "auto")):
        config = benchmark_config("EcapaTdnn", workspace, args.batch_size, clips, amp, args.num_workers, overwrites)
        rig = TrainingRig(config, args.use_gpu)
        if not amp or rig.amp.enabled:   # "auto": bf16 only where the CPU has it natively
            rigs[name] = rig
    config = rigs["mser torch"].config
    info = peer.ask("setup", train_list=config["dataset_conf"]["train_list"],
                    test_list=config["dataset_conf"]["test_list"], label_list=workspace.label_list,
                    batch_size=args.batch_size, num_workers=config["dataset_conf"]["dataLoader"]["num_workers"],
                    threads=torch.get_num_threads(), use_gpu=args.use_gpu)
    speeds = peer_training(peer, rigs, min(args.peers_rounds, PEER_TRAIN_ROUNDS))
    ours = rigs["mser torch"]
    checkpoint = save_mser_checkpoint(ours.config, ours.model, os.path.join(workspace.directory, "peers_mser",
                                                                            "best_model"))
    peer.ask("predictor", model_dir=os.path.join(workspace.directory, "peers_macls"))
    predictors = mser_predictors(checkpoint)
    onnx_notes = {name: predictors.pop(name) for name in ("onnx", "onnx int8") if isinstance(predictors[name], str)}
    latency = peer_latency(peer, predictors, workspace.paths, args.peers_rounds)
    model_latency = peer_latency(peer, predictors, workspace.paths, args.peers_rounds, model_only=True)
    ours_parameters = sum(p.numel() for p in rigs["mser torch"].model.parameters())
    setups = {name: describe_model(rig.config) + f", {rig.config['optimizer_conf']['optimizer']}, "
              f"{'bf16 autocast' if rig.amp.enabled else 'fp32'}" for name, rig in rigs.items()}
    setups.update({"mser onnx": describe_model(config) + ", ONNX Runtime",
                   "mser onnx int8": describe_model(config) + ", ONNX Runtime, convolutions in int8 "
                                                            "(static, 32 calibration clips)",
                   "macls": info["setup"]})
    parameters = {name: ours_parameters for name in setups}
    parameters["macls"] = info["parameters"]
    result = {"rows": peer_rows(latency, model_latency, speeds, setups, parameters),
              "versions": {"mser": mser.__version__, "torch": torch.__version__, "peer": info["versions"]},
              "upstream_mser": info["upstream_mser"], "threads": torch.get_num_threads(),
              "train_clips_per_epoch": clips, "predict_calls_per_round": PEER_CALLS_PER_ROUND,
              "rounds": {"predict": args.peers_rounds, "train": min(args.peers_rounds, PEER_TRAIN_ROUNDS)},
              "macls_trainer": "MAClsTrainer's own epoch loop (_MAClsTrainer__train_epoch: their dataset, "
                               "collate, featurizer per clip in the loader, Adam, fp32), VisualDL writer stubbed"}
    if "onnx" in onnx_notes:
        result["onnx_note"] = onnx_notes["onnx"]
    if "onnx int8" in onnx_notes:
        result["onnx_int8_note"] = onnx_notes["onnx int8"]
    result.update(load_before=load_before, load_after=load_average())
    return result


def peers_section(workspace: Workspace, args) -> Dict[str, Any]:
    """Upstream macls beside ours in one run ({"error": one line} when it cannot be installed or run)."""
    try:
        python = args.peers_python or ensure_peer_venv(args.peers_venv)
        peer = PeerProcess(python, args.peers_worker, os.path.join(workspace.directory, "peer.log"),
                           torch.get_num_threads(), workspace.directory)
    except (PeerUnavailable, subprocess.SubprocessError, OSError) as e:
        return {"error": last_line(str(e))}
    try:
        return compare_with_peer(peer, workspace, args)
    except PeerUnavailable as e:
        return {"error": last_line(str(e))}
    finally:
        peer.close()


def table(title: str, rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return ""
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) for i, column in enumerate(columns)]
    lines = [f"\n## {title}", "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def print_results(results: Dict[str, Any]) -> None:
    meta = results["meta"]
    print(f"mser benchmark {meta['date']} | {meta['cpu']} | {meta['device']} | torch {meta['torch']} "
          f"{meta['threads']} threads, OMP_WAIT_POLICY {meta['omp_wait_policy']} | "
          f"load average {meta['load_before']} -> {meta['load_after']}")
    if "hardware" in results:
        print(f"\nmatmul 2048x2048: fp32 {results['hardware']['fp32_gflops']} GFLOP/s, "
              f"bf16 {results['hardware']['bf16_gflops']} GFLOP/s")
    print(table("featurizers (3 s clips, batch 32)", results.get("features", []),
                ["featurizer", "feature_dim", "clips_per_s", "real_time_factor"]))
    for name, reason in meta.get("featurizers_skipped", {}).items():
        print(f"{name}: not timed, {reason}")
    print(table("cache building: clip-level features, one process against feature_cache.workers auto",
                results.get("extract", []), ["featurizer", "clips", "workers", "one_process_clips_per_s",
                                             "workers_clips_per_s", "speedup", "same_features"]))
    print(table("training (3 s clips)", results.get("train", []),
                ["model", "pipeline_clips_per_s", "model_only_clips_per_s", "pipeline_efficiency",
                 "cached_clips_per_s", "cached_efficiency", "featurizer_clips_per_s", "loader_clips_per_s",
                 "fwd_bwd_gflop_per_clip", "fraction_of_peak"]))
    print(table("inference (3 s clip, batch 1)", results.get("infer", []),
                ["model", "ms_per_clip", "real_time_factor", "bf16_ms_per_clip", "bf16_speedup"]))
    if "bf16" in results:
        bf16 = results["bf16"]
        print(table(f"bf16 autocast, {bf16['model']} training", bf16["train"],
                    ["amp", "pipeline_clips_per_s", "model_only_clips_per_s", "pipeline_efficiency",
                     "fraction_of_peak"]))
        print(f"speed-up end to end {bf16['train_speedup_end_to_end']}x, model only "
              f"{bf16['train_speedup_model_only']}x; inference model only (ms/clip): {bf16['infer_model_only_ms']}; "
              f"channels-last: {bf16['channels_last']}")
    print(table("voice activity detection (demo clips at -26 dBFS, gaps of 0.3-3.5 s)", results.get("vad", []),
                ["backend", "noise", "snr_db", "precision", "recall", "f1", "window_false_alarm", "window_miss",
                 "real_time_factor"]))
    print_peers(results.get("peers"), meta)
    if "files" in results:
        files = results["files"]
        print(f"\n## many files: infer.py --audio_list on {files['clips']} different 3 s clips ({files['model']})\n"
              f"{files['clips_per_s']} clips/s ({files['script_seconds']} s, {files['start_up_seconds']} s of it "
              f"start-up: {files['clips_per_s_after_start_up']} clips/s after it; {files['results_written']} results "
              f"written); predict() one file at a time: {files['predict_one_by_one_ms']} ms "
              f"({files['predict_one_by_one_clips_per_s']} clips/s)")
    if "memory" in results:
        print("\n## peak RSS")
        for task, values in results["memory"].items():
            print(f"{task}: {values}")
    if results.get("train"):
        print("\nsetups: " + "; ".join(row["setup"] for row in results["train"]))
        augmentation = ", ".join(sorted({row["augmentation"] for row in results["train"]}))
        workers = ", ".join(sorted({str(row["num_workers"]) for row in results["train"]}))
        print(f"training from audio with augmentation: {augmentation}; loader workers: {workers}")


def print_peers(peers: Optional[Dict[str, Any]], meta: Dict[str, Any]) -> None:
    if not peers:
        return
    if "error" in peers:
        print(f"\npeers: not measured: {peers['error']}")
        return
    seconds = meta.get("section_seconds", {}).get("peers")
    print(table(f"peers: the same EcapaTdnn in one run ({peers['threads']} threads, medians of "
                f"{peers['rounds']['predict']} alternating predictor rounds x {peers['predict_calls_per_round']} calls "
                f"and {peers['rounds']['train']} training rounds x {peers['train_clips_per_epoch']} clips; "
                f"load average {peers['load_before']} -> {peers['load_after']})", peers["rows"],
                ["library", "predict_ms", "predict_vs_macls", "predict_round_medians_ms", "model_ms",
                 "train_clips_per_s", "train_round_clips_per_s", "parameters"]))
    print("setups: " + "; ".join(f"{row['library']}: {row['setup']}" for row in peers["rows"]))
    print(f"versions: {peers['versions']}; macls training: {peers['macls_trainer']}"
          + (f"; section {seconds} s" if seconds else ""))
    upstream = peers["upstream_mser"]
    offers = "" if "error" in upstream else f"{upstream['version']}, models {', '.join(upstream['models'])}"
    print("upstream mser: " + (f"not usable ({upstream['error']})" if "error" in upstream else
                               f"{offers}: no EcapaTdnn to compare"))
    if peers.get("onnx_note"):
        print(f"mser onnx: not measured: {peers['onnx_note']}")
    if peers.get("onnx_int8_note"):
        print(f"mser onnx int8: not measured: {peers['onnx_int8_note']}")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def run(args) -> Dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.use_gpu and torch.cuda.is_available() else "cpu")
    results: Dict[str, Any] = {"meta": {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_name(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load_before": load_average(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "command": " ".join(["tools/benchmark.py", *sys.argv[1:]])}}
    args.use_gpu = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="mser-benchmark-", dir=args.work_dir) as directory:
        workspace = Workspace(directory, clips=32)
        peak = None
        sections = {
            "hardware": lambda: hardware_peak(device, args.quick),
            "features": lambda: featurizer_rows(workspace, device, args.batch_size, args.runs, args.featurizers),
            "extract": lambda: extraction_rows(workspace, args.featurizers, args.extract_clips),
            "train": lambda: [training_row(model, workspace, args, peak) for model in args.models],
            "infer": lambda: [inference_row(model, workspace, device, args.runs, args.overwrites)
                              for model in args.models],
            "bf16": lambda: bf16_section(workspace, args, peak, device),
            "memory": lambda: memory_section(workspace, args),
            "vad": lambda: vad_section(20 if args.quick else 80),
            "files": lambda: files_section(workspace, args),
            "peers": lambda: peers_section(workspace, args),
        }
        results["meta"]["section_seconds"] = {}
        if "features" in args.sections or "extract" in args.sections:
            results["meta"]["featurizers_skipped"] = args.featurizers_skipped
        for name in SECTIONS:
            if name in args.sections:
                started = time.perf_counter()
                results[name] = sections[name]()
                seconds = results["meta"]["section_seconds"][name] = round(time.perf_counter() - started, 1)
                print(f"{name}: {seconds} s, load average {load_average()}", file=sys.stderr, flush=True)
                if name == "hardware":
                    peak = results[name]
    results["meta"]["load_after"] = load_average()
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    results = run(args)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    print_results(results)
    print(f"\nfinished in {results['meta']['seconds']} s")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()

"""infer_record.py: record from a microphone, predict the emotion, repeat (needs pyaudio)."""
import argparse
import itertools
from typing import List, Optional

import numpy as np

from mser import mic
from mser.cli.common import HelpFormatter, add_use_gpu_argument, exits_cleanly
from mser.cli.record_audio import add_device_arguments, print_devices, record_clip
from mser.errors import ConfigError, warnings_as_lines

SILENCE_DBFS = -60.0   # below this level a recording is reported as silence, not classified
SESSION = "microphone session"   # the speaker whose running statistics a session keeps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Live emotion recognition: record --record_seconds from a microphone, print the "
                    "predicted label and its probability, and repeat until Ctrl-C or --max_loops.",
        formatter_class=HelpFormatter)
    parser.add_argument("--model_path", default=None,
                        help="checkpoint directory, e.g. models/EcapaTdnn_Fbank/best_model "
                             "(required unless --list_devices)")
    parser.add_argument("--configs", default=None, help="YAML config replacing the one stored in the checkpoint")
    add_device_arguments(parser)
    parser.add_argument("--record_seconds", type=float, default=3.0,
                        help="length of each recording in seconds (default: 3)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="top probability below which the loop says it is unsure (default: 0.5)")
    parser.add_argument("--max_loops", type=int, default=0,
                        help="stop after this many recordings (default: 0, run until Ctrl-C)")
    add_use_gpu_argument(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.model_path is None and not args.list_devices:
        raise ConfigError("--model_path is required: the checkpoint directory to predict with")
    if args.record_seconds <= 0:
        raise ConfigError(f"--record_seconds must be positive, got {args.record_seconds}")
    if args.max_loops < 0:
        raise ConfigError(f"--max_loops must be 0 (no limit) or more, got {args.max_loops}")


def describe_prediction(predictor, samples: np.ndarray, threshold: float, speaker: Optional[str] = None) -> str:
    """One line for one recording: the label and probability, 'unsure' or 'silence'. With a model
    trained with speaker normalisation, recordings of one `speaker` share running statistics
    (silence is left out of them)."""
    level = mic.rms_dbfs(samples)
    if level < SILENCE_DBFS:
        return f"silence ({level:.0f} dBFS)"
    probs = predictor.probabilities([predictor.load(samples, predictor.sample_rate)], speaker)[0]
    ranked = list(predictor.ranked(probs, 2).items())
    label, score = ranked[0]
    if score < threshold:
        runner_up = f", then {ranked[1][0]} {ranked[1][1]:.3f}" if len(ranked) > 1 else ""
        return f"unsure: {label} {score:.3f}{runner_up} (below threshold {threshold:g})"
    return f"{label} {score:.3f}"


def run_loop(predictor, pa, device: mic.InputDevice, args: argparse.Namespace) -> None:
    loops = itertools.count(1) if args.max_loops == 0 else range(1, args.max_loops + 1)
    for loop in loops:
        samples = record_clip(pa, device, args.record_seconds, predictor.sample_rate)
        print(f"[{loop}] {describe_prediction(predictor, samples, args.threshold, SESSION)}", flush=True)


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> int:
    # e.g. a BandwidthWarning for a narrow-band microphone: one `warning: ...` line on stderr per recording
    with warnings_as_lines():
        return listen(argv)


def listen(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    mic.import_pyaudio()   # say what to install before spending time on the model
    if args.list_devices:
        with mic.open_pyaudio() as pa:
            print_devices(pa)
        return 0
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(args.model_path, configs=args.configs, use_gpu=args.use_gpu)
    with mic.open_pyaudio() as pa:
        device = mic.choose_input_device(pa, args.device)
        print(f"listening on {device.describe()}: {args.record_seconds:g} s per prediction, "
              f"Ctrl-C to stop", flush=True)
        if predictor.speaker_norm is not None:
            print("speaker normalisation: the session is one speaker; each recording is normalised with "
                  "the statistics of the session so far", flush=True)
        try:
            run_loop(predictor, pa, device, args)
        except KeyboardInterrupt:
            print("stopped", flush=True)
    return 0

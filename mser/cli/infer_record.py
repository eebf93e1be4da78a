"""infer_record.py: live emotion recognition from a microphone stream (needs pyaudio).

The microphone is read continuously (PortAudio callback into a queue) and cut into windows of
--record_seconds every --hop_seconds, so no speech falls between two predictions. A voice
activity gate (mser.vad) says "silence" for a window without speech instead of guessing.
"""
import argparse
import statistics
import time
from typing import List, Optional

import numpy as np

from mser import mic, vad
from mser.cli.common import (HelpFormatter, add_list_configs_argument, add_use_gpu_argument, add_views_argument,
                             exits_cleanly)
from mser.cli.record_audio import add_device_arguments, print_devices
from mser.errors import ConfigError, warnings_as_lines
from mser.features.windows import fixed_length_windows

SILENCE_DBFS = -60.0   # below this level a window is silence without asking the VAD
SESSION = "microphone session"   # the speaker whose running statistics a session keeps
CHUNK_SECONDS = 0.064            # PortAudio callback size: the finest step of the window clock


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Live emotion recognition: read a microphone continuously, and every --hop_seconds "
                    "print the label and probability of the last --record_seconds (or 'silence' when the "
                    "voice activity gate hears no speech), until Ctrl-C or --max_loops windows.",
        formatter_class=HelpFormatter)
    parser.add_argument("--model_path", default=None,
                        help="checkpoint directory, e.g. models/EcapaTdnn_Fbank/best_model "
                             "(required unless --list_devices)")
    parser.add_argument("--configs", default=None,
                        help="YAML config replacing the checkpoint's own: a file or a shipped config's name")
    add_device_arguments(parser)
    parser.add_argument("--record_seconds", type=float, default=3.0,
                        help="length of each window in seconds (default: 3)")
    parser.add_argument("--hop_seconds", type=float, default=None,
                        help="seconds from one window's start to the next, at most --record_seconds "
                             "(default: a third of --record_seconds; windows overlap, nothing is skipped)")
    parser.add_argument("--vad", choices=["auto", *vad.BACKENDS, "none"], default="auto",
                        help="voice activity gate: silero (pip install 'mser[vad]'), energy (level above "
                             "the noise floor; fails in noise), none, or auto: silero when installed")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="top probability below which the loop says it is unsure (default: 0.5)")
    parser.add_argument("--max_loops", type=int, default=0,
                        help="stop after this many windows (default: 0, run until Ctrl-C)")
    parser.add_argument("--verbose", action="store_true",
                        help="print each window's position in the stream and the latency from its last "
                             "sample to its label")
    add_views_argument(parser)
    add_use_gpu_argument(parser)
    add_list_configs_argument(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.model_path is None and not args.list_devices:
        raise ConfigError("--model_path is required: the checkpoint directory to predict with")
    if args.record_seconds <= 0:
        raise ConfigError(f"--record_seconds must be positive, got {args.record_seconds}")
    if args.hop_seconds is None:
        args.hop_seconds = args.record_seconds / 3
    if not 0 < args.hop_seconds <= args.record_seconds:
        raise ConfigError(f"--hop_seconds must be positive and at most --record_seconds "
                          f"({args.record_seconds:g}), got {args.hop_seconds:g}: a longer hop would skip audio")
    if args.max_loops < 0:
        raise ConfigError(f"--max_loops must be 0 (no limit) or more, got {args.max_loops}")


def describe_prediction(predictor, samples: np.ndarray, threshold: float, speaker: Optional[str] = None,
                        detector=None, sample_rate: Optional[int] = None) -> str:
    """One line for one window: the label and probability, 'unsure' or 'silence'. `detector`: a
    mser.vad detector, or None for the level check alone. With a model trained with speaker
    normalisation, windows of one `speaker` share running statistics (silence is left out)."""
    rate = sample_rate or predictor.sample_rate
    level = mic.rms_dbfs(samples)
    if level < SILENCE_DBFS:
        return f"silence ({level:.0f} dBFS)"
    if detector is not None and not vad.is_speech(samples, rate, detector):
        return f"silence (no speech, {level:.0f} dBFS)"
    with fixed_length_windows():   # a window lasts as long as any other: its duration tells nothing
        probs = predictor.probabilities([predictor.load(samples, rate)], speaker)[0]
    ranked = list(predictor.ranked(probs, 2).items())
    label, score = ranked[0]
    if score < threshold:
        runner_up = f", then {ranked[1][0]} {ranked[1][1]:.3f}" if len(ranked) > 1 else ""
        return f"unsure: {label} {score:.3f}{runner_up} (below threshold {threshold:g})"
    return f"{label} {score:.3f}"


def load_detector(name: str):
    if name == "none":
        return None
    return vad.load_vad(None if name == "auto" else name)


def run_stream(predictor, stream: mic.MicrophoneStream, detector, args: argparse.Namespace,
               latencies: List[float]) -> None:
    """Predict every window until --max_loops, appending each window's latency in seconds."""
    rate = stream.sample_rate
    slicer = mic.WindowSlicer(int(round(args.record_seconds * rate)), int(round(args.hop_seconds * rate)))
    for chunk, arrived in stream.chunks():
        for first, window in slicer.push(chunk):
            line = describe_prediction(predictor, window, args.threshold, SESSION, detector, rate)
            latency = time.monotonic() - arrived   # from the chunk that completed the window
            latencies.append(latency)
            where = (f"  ({first / rate:.2f}-{(first + len(window)) / rate:.2f} s, latency {latency * 1000:.0f} ms)"
                     if args.verbose else "")
            print(f"[{len(latencies)}] {line}{where}", flush=True)
            if len(latencies) == args.max_loops:
                return


def summary(stream: mic.MicrophoneStream, latencies: List[float], seconds: float) -> str:
    median = f"median latency {statistics.median(latencies) * 1000:.0f} ms, " if latencies else ""
    lost = f", {stream.overflows} input overflows" if stream.overflows else ""
    return (f"{len(latencies)} windows, {median}{stream.samples_read} samples read "
            f"({stream.samples_read / stream.sample_rate:.2f} s of audio in {seconds:.2f} s){lost}")


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> int:
    # e.g. a BandwidthWarning for a narrow-band microphone: one `warning: ...` line on stderr per window
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
    predictor = MSERPredictor(args.model_path, configs=args.configs, use_gpu=args.use_gpu, views=args.views)
    detector = load_detector(args.vad)
    with mic.open_pyaudio() as pa:
        device = mic.choose_input_device(pa, args.device)
        rate = mic.supported_rate(pa, device, predictor.sample_rate)
        gate = f"voice activity gate {detector.name}" if detector else "no voice activity gate"
        print(f"listening on {device.describe()}: {args.record_seconds:g} s windows every "
              f"{args.hop_seconds:g} s, {gate}, Ctrl-C to stop", flush=True)
        if predictor.normalises_speakers():
            print("speaker normalisation: the session is one speaker; each window is normalised with "
                  "the statistics of the session so far", flush=True)
        started, latencies = time.monotonic(), []
        with mic.python_stderr_only(), mic.MicrophoneStream(pa, device, rate,
                                                            chunk=int(CHUNK_SECONDS * rate)) as stream:
            try:
                run_stream(predictor, stream, detector, args, latencies)
            except KeyboardInterrupt:
                print("stopped", flush=True)
            if args.verbose or args.max_loops:
                print(summary(stream, latencies, time.monotonic() - started), flush=True)
    return 0

"""infer.py: emotion labels for an audio file, a long recording, or a folder of files."""
import argparse
import json
import os
import sys
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TextIO

import numpy as np

from mser.audio import audio_info
from mser.cli.common import HelpFormatter, add_use_gpu_argument, exits_cleanly
from mser.errors import AudioError, MSERError, warnings_as_lines

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Predict the emotion of audio files. A file longer than the model's window "
                    "(dataset_conf.eval_conf.max_duration) is also split into segments, each with "
                    "its own label and start/end times.",
        formatter_class=HelpFormatter)
    parser.add_argument("--model_path", required=True,
                        help="checkpoint directory, e.g. models/EcapaTdnn_Fbank/best_model")
    parser.add_argument("--audio_path", required=True,
                        help="an audio file, or a folder whose audio files (searched recursively) are all classified")
    parser.add_argument("--configs", default=None, help="YAML config replacing the one stored in the checkpoint")
    parser.add_argument("--overwrites", default=None, help="override config values, e.g. \"a.b=1,c.d=x\"")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file: audio_path, label, score, scores, segments")
    parser.add_argument("--window", type=float, default=None,
                        help="segment length in seconds for long files (default: dataset_conf.dataset.max_duration)")
    parser.add_argument("--hop", type=float, default=None,
                        help="step between segments in seconds (default: window / 2)")
    parser.add_argument("--smoothing", type=int, default=0,
                        help="average each segment's probabilities with this many neighbours on each side "
                             "(default: 0, none)")
    parser.add_argument("--top_k", type=int, default=3, help="how many of the most likely labels to show (default: 3)")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="top probability below which the label is 'unknown' (default: 0, never)")
    parser.add_argument("--speaker", default=None,
                        help="the clips are all this speaker's: with a model trained with speaker normalisation, "
                             "each is normalised with the running statistics of the speaker's clips so far "
                             "(in the order given), which is more accurate than the global statistics used "
                             "without it")
    add_use_gpu_argument(parser)
    return parser


def audio_files(path: str) -> List[str]:
    """[path] for a file; the audio files under a folder, sorted."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise AudioError(f"audio path not found: {path}")
    found = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                   if name.lower().endswith(AUDIO_EXTENSIONS))
    if not found:
        raise AudioError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {path}")
    return found


class FileClassifier:
    """Turns files into result dicts: whole-clip results for clips up to the model's window,
    segments plus a duration-weighted overall result for longer recordings."""

    def __init__(self, predictor, args: argparse.Namespace):
        self.predictor, self.args = predictor, args

    def classify(self, paths: Sequence[str]) -> List[dict]:
        """One result per path, in order; a file that fails gets {'audio_path', 'error'}."""
        results: Dict[str, dict] = {}
        short_paths, waveforms = [], []
        for path in paths:
            try:
                duration, _ = audio_info(path)
                if duration > self.predictor.window:
                    results[path] = self.long_result(path, duration)
                else:
                    waveforms.append(self.predictor.load(path))
                    short_paths.append(path)
            except MSERError as e:
                results[path] = {"audio_path": path, "error": str(e)}
        if waveforms:
            all_probs = self.predictor.batched_probabilities(waveforms, getattr(self.args, "speaker", None))
            for path, waveform, probs in zip(short_paths, waveforms, all_probs):
                results[path] = self.result(path, len(waveform) / self.predictor.sample_rate, probs, [])
        return [results[path] for path in paths]

    def long_result(self, path: str, duration: float) -> dict:
        args = self.args
        segments = self.predictor.segment_probabilities(path, args.window, args.hop, args.smoothing)
        weights = np.array([end - start for start, end, _ in segments])
        overall = np.average(np.stack([probs for _, _, probs in segments]), axis=0, weights=weights)
        listed = [{"start": round(start, 3), "end": round(end, 3),
                   **dict(zip(("label", "score"), self.predictor.decide(probs)))}
                  for start, end, probs in segments]
        return self.result(path, duration, overall, listed)

    def result(self, path: str, duration: float, probs: np.ndarray, segments: List[dict]) -> dict:
        label, score = self.predictor.decide(probs)
        return {"audio_path": path, "duration": round(duration, 3), "label": label, "score": score,
                "scores": self.predictor.ranked(probs, self.args.top_k), "segments": segments}


def format_result(result: dict) -> str:
    """`path: label score  [top-k]`, then one indented line per segment."""
    top = ", ".join(f"{label} {score:.3f}" for label, score in result["scores"].items())
    span = f" over {result['duration']:.1f} s" if result["segments"] else ""
    lines = [f"{result['audio_path']}: {result['label']} {result['score']:.3f}{span}  [{top}]"]
    lines += [f"  {s['start']:7.2f} - {s['end']:7.2f} s  {s['label']} {s['score']:.3f}" for s in result["segments"]]
    return "\n".join(lines)


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def check_args(args: argparse.Namespace) -> None:
    from mser.errors import ConfigError
    if args.top_k < 1:
        raise ConfigError(f"--top_k must be at least 1, got {args.top_k}")
    for name in ("window", "hop"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be a positive number of seconds, got {value}")


def report(results: List[dict], as_json: bool, write: Callable[[str, TextIO], None]) -> int:
    """Print results; returns how many failed (reported on stderr, or in their JSON line)."""
    for result in results:
        if as_json:
            write(json.dumps(result), sys.stdout)
        elif "error" in result:
            write(f"skipped {result['audio_path']}: {result['error']}", sys.stderr)
        else:
            write(format_result(result), sys.stdout)
    return sum("error" in result for result in results)


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> int:
    with warnings_as_lines():   # e.g. a BandwidthWarning: one `warning: ...` line on stderr per input
        return classify_inputs(argv)


def classify_inputs(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    paths = audio_files(args.audio_path)
    from tqdm import tqdm
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(args.model_path, configs=args.configs, use_gpu=args.use_gpu,
                              threshold=args.threshold, overwrites=args.overwrites)
    classifier = FileClassifier(predictor, args)
    if len(paths) == 1 and os.path.isfile(args.audio_path):
        result = classifier.classify(paths)[0]
        if "error" in result:
            raise AudioError(result["error"])
        print(json.dumps(result) if args.json else format_result(result))
        return 0
    return classify_folder(classifier, paths, args, tqdm)


def classify_folder(classifier: FileClassifier, paths: List[str], args: argparse.Namespace, tqdm) -> int:
    failed = 0
    with tqdm(total=len(paths), unit="file", file=sys.stderr, dynamic_ncols=True) as progress:
        for chunk in chunks(paths, classifier.predictor.batch_size):
            failed += report(classifier.classify(chunk), args.json, progress.write)
            progress.update(len(chunk))
    if failed == len(paths):
        raise AudioError(f"none of the {len(paths)} audio files in {args.audio_path} could be classified")
    if failed:
        print(f"skipped {failed} of {len(paths)} files", file=sys.stderr)
    return 0

"""infer.py: emotion labels for an audio file, a long recording, a folder or a list of files."""
import argparse
import csv
import io
import json
import os
import sys
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from mser.audio import audio_info
from mser.cli.common import (HelpFormatter, add_list_configs_argument, add_use_gpu_argument, add_views_argument,
                             exits_cleanly)
from mser.errors import AudioError, ConfigError, DataError, MSERError, warnings_as_lines

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}

Entry = Tuple[str, str]   # (id, audio path); the id is the path unless a wav.scp names it
Answer = Tuple[str, float, np.ndarray, List[dict]]   # (path, duration in s, probabilities, listed segments)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Predict the emotion of audio files. A file longer than the model's window "
                    "(dataset_conf.eval_conf.max_duration) is also split into segments, each with "
                    "its own label and start/end times.",
        formatter_class=HelpFormatter)
    parser.add_argument("--model_path", required=True,
                        help="checkpoint directory, e.g. models/EcapaTdnn_Fbank/best_model")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--audio_path",
                        help="an audio file, or a folder whose audio files (searched recursively) are all classified")
    inputs.add_argument("--audio_list",
                        help="a text file of audio paths, one per line, or Kaldi wav.scp lines 'id path'; "
                             "classified in batches with a progress bar; unreadable files are reported and "
                             "counted, not fatal")
    parser.add_argument("--output", default=None,
                        help="write the results to this file instead of stdout: .jsonl (one JSON object per "
                             "file, as --json prints) or .csv (id, path, duration, label, score, error and one "
                             "probability column per label)")
    parser.add_argument("--configs", default=None,
                        help="YAML config replacing the checkpoint's own: a file or a shipped config's name")
    parser.add_argument("--overwrites", default=None, help="override config values, e.g. \"a.b=1,c.d=x\"")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per file: audio_path, label, score, scores, segments")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch, or onnx: ONNX Runtime on the graph exported into the checkpoint folder "
                             "(exported on first use and whenever the weights change; falls back to torch "
                             "with a warning when the model cannot be exported)")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "int8", "auto"), default="float32",
                        help="float32 (default); bfloat16: bf16 autocast on the torch backend (about 1.4x faster "
                             "on a CPU with native bf16); int8: with --backend onnx, the graph's convolutions "
                             "quantised with 32 clips of the training list (about 2x faster); auto: bfloat16 "
                             "on the torch backend where the CPU has it. "
                             "Reduced precision can change the label of a clip near a tie")
    parser.add_argument("--embeddings", default=None,
                        help="also save the model's utterance embeddings to this .npy file: one row per "
                             "input file in the order of the results, NaN rows for files that failed")
    parser.add_argument("--plot", default=None,
                        help="draw the emotion probabilities over time of one --audio_path recording to this "
                             "PNG, with the dominant label and the segments marked")
    parser.add_argument("--segmentation", choices=("fixed", "vad"), default="fixed",
                        help="how long files are cut: fixed windows every --hop seconds, or vad: the speech "
                             "found by voice activity detection, merged and split to the window length "
                             "(silence gets no label)")
    parser.add_argument("--vad", choices=("silero", "energy"), default=None,
                        help="the voice activity detector of --segmentation vad: silero (a network that tells "
                             "speech from noise; pip install 'mser[vad]') or energy (level above the noise floor) "
                             "(default: silero when installed, else energy)")
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
                             "each is normalised with the statistics of the speaker's clips (see --statistics), "
                             "which is more accurate than the global statistics used without it")
    parser.add_argument("--statistics", choices=("whole", "running"), default="whole",
                        help="with a model trained with speaker normalisation, how the statistics of a --speaker's "
                             "clips, or of the windows of a long recording, are used: whole (default): all of them "
                             "are read and featurised first, then each is normalised with the statistics of them "
                             "all, as eval.py does (a --speaker's clips are then held in memory together); "
                             "running: each with the statistics of those before it and itself, in the order "
                             "given, as a live stream must be (infer_record.py); less accurate for the first ones")
    parser.add_argument("--balance_speaker", action="store_true",
                        help="with --speaker and whole statistics: share the speaker's clips out evenly over the "
                             "emotions (each class's probabilities rescaled until every class carries the same "
                             "total; README, Speaker normalisation). Only for a set of clips that does cover "
                             "the emotions about evenly, such as one actor's recordings of an acted corpus; "
                             "needs at least 2 files per emotion (a file longer than --window counts as one, "
                             "with its segments' average)")
    add_views_argument(parser)
    add_use_gpu_argument(parser)
    add_list_configs_argument(parser)
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


def read_audio_list(list_path: str) -> List[Entry]:
    """(id, path) for each line of a list: a path (the id is the path), or a Kaldi wav.scp line
    'id path'. A line that is itself an existing file is a path, even with spaces in it; blank lines
    and lines starting with '#' are skipped. Relative paths are relative to the working directory."""
    if not os.path.isfile(list_path):
        raise DataError(f"audio list not found: {list_path}")
    entries = []
    with open(list_path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(maxsplit=1)
            if os.path.isfile(line) or len(fields) == 1:
                entries.append((line, line))
            else:
                entries.append((fields[0], fields[1].strip()))
    if not entries:
        raise DataError(f"audio list {list_path} names no audio files")
    return entries


class FileClassifier:
    """Turns files into result dicts: whole-clip results for clips up to the model's window,
    segments plus a duration-weighted overall result for longer recordings. With `keep_embeddings`,
    `embeddings` collects each file's utterance embedding (None for a file that failed); with
    `keep_segments`, `segments` keeps each long file's (start, end, probabilities) for a plot."""

    def __init__(self, predictor, args: argparse.Namespace, keep_embeddings: bool = False,
                 keep_segments: bool = False):
        self.predictor, self.args = predictor, args
        self.keep_embeddings, self.keep_segments = keep_embeddings, keep_segments
        self.embeddings: List[Optional[np.ndarray]] = []
        self.segments: Dict[str, list] = {}

    def classify(self, entries: Sequence[Entry]) -> List[dict]:
        """One result per entry, in order; a file that fails gets {'audio_path', 'error'}."""
        results: Dict[int, dict] = {}
        answers: Dict[int, Answer] = {}
        embeddings: Dict[int, np.ndarray] = {}
        short_rows, waveforms = [], []
        for row, (_, path) in enumerate(entries):
            try:
                if not os.path.isfile(path):
                    raise AudioError(f"audio file not found: {path}")
                duration, _ = audio_info(path)
                if duration > self.predictor.window:
                    answers[row] = (path, duration, *self.long_probabilities(path))
                    if self.keep_embeddings:
                        embeddings[row] = self.predictor.embed(path)
                else:
                    waveforms.append(self.predictor.load(path))
                    short_rows.append(row)
            except MSERError as e:
                results[row] = {"audio_path": path, "error": str(e)}
        if waveforms:
            all_probs = self.predictor.batched_probabilities(waveforms, self.args.speaker, self.args.statistics)
            for row, waveform, probs in zip(short_rows, waveforms, all_probs):
                answers[row] = (entries[row][1], len(waveform) / self.predictor.sample_rate, probs, [])
                if self.keep_segments:
                    self.segments[entries[row][1]] = [(0.0, answers[row][1], probs)]
            if self.keep_embeddings:
                embeddings.update(zip(short_rows, self.predictor.batched_embeddings(waveforms)))
        if self.args.balance_speaker and answers:
            answers = self.balanced(answers)
        results.update((row, self.result(*answer)) for row, answer in answers.items())
        self.embeddings.extend(embeddings.get(row) for row in range(len(entries)))
        return [with_id(results[row], entry_id) for row, (entry_id, _) in enumerate(entries)]

    def balanced(self, answers: Dict[int, Answer]) -> Dict[int, Answer]:
        """The answers with the files' probabilities balanced over the emotions (--balance_speaker)."""
        from mser.speaker_balance import MIN_CLIPS_PER_CLASS, balance_speaker, clips_needed
        needed = clips_needed(len(self.predictor.labels))
        if len(answers) < needed:
            print(f"--balance_speaker: {len(answers)} files of {self.args.speaker} are too few to balance "
                  f"(at least {needed}: {MIN_CLIPS_PER_CLASS} per emotion); their answers are not balanced",
                  file=sys.stderr)
            return answers
        rows = sorted(answers)
        balanced = balance_speaker(np.stack([answers[row][2] for row in rows])).astype(np.float32)
        return {row: (answers[row][0], answers[row][1], probs, answers[row][3]) for row, probs in zip(rows, balanced)}

    def long_probabilities(self, path: str) -> Tuple[np.ndarray, List[dict]]:
        """A long file's probabilities (its segments' average, weighted by their durations) and its
        listed segments."""
        args = self.args
        segments = self.predictor.segment_probabilities(path, args.window, args.hop, args.smoothing,
                                                        segmentation=args.segmentation, vad=args.vad,
                                                        statistics=args.statistics)
        if self.keep_segments:
            self.segments[path] = segments
        weights = np.array([end - start for start, end, _ in segments])
        overall = np.average(np.stack([probs for _, _, probs in segments]), axis=0, weights=weights)
        listed = [{"start": round(start, 3), "end": round(end, 3),
                   **dict(zip(("label", "score"), self.predictor.decide(probs)))}
                  for start, end, probs in segments]
        return overall, listed

    def result(self, path: str, duration: float, probs: np.ndarray, segments: List[dict]) -> dict:
        label, score = self.predictor.decide(probs)
        return {"audio_path": path, "duration": round(duration, 3), "label": label, "score": score,
                "scores": self.predictor.ranked(probs, self.args.top_k), "segments": segments}


def with_id(result: dict, entry_id: str) -> dict:
    """The result with an 'id' first when a wav.scp gave the file a name other than its path."""
    return {"id": entry_id, **result} if entry_id != result["audio_path"] else result


def format_result(result: dict) -> str:
    """`path: label score  [top-k]`, then one indented line per segment."""
    top = ", ".join(f"{label} {score:.3f}" for label, score in result["scores"].items())
    span = f" over {result['duration']:.1f} s" if result["segments"] else ""
    name = f"{result['id']} ({result['audio_path']})" if "id" in result else result["audio_path"]
    lines = [f"{name}: {result['label']} {result['score']:.3f}{span}  [{top}]"]
    lines += [f"  {s['start']:7.2f} - {s['end']:7.2f} s  {s['label']} {s['score']:.3f}" for s in result["segments"]]
    return "\n".join(lines)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def check_args(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise ConfigError(f"--top_k must be at least 1, got {args.top_k}")
    for name in ("window", "hop"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be a positive number of seconds, got {value}")
    if args.output and os.path.splitext(args.output)[1].lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {args.output}: the name must end in .jsonl or .csv")
    if args.embeddings and not args.embeddings.endswith(".npy"):
        raise ConfigError(f"--embeddings {args.embeddings}: the name must end in .npy")
    if args.balance_speaker and (args.speaker is None or args.statistics != "whole"):
        raise ConfigError("--balance_speaker shares one speaker's clips out over the emotions: give --speaker, "
                          "with --statistics whole (the default)")
    if args.plot and not (args.audio_path and os.path.isfile(args.audio_path)):
        raise ConfigError("--plot draws one recording: give --audio_path a single audio file")
    for option in ("output", "embeddings", "plot"):
        target = getattr(args, option)
        if target and not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            raise ConfigError(f"--{option} {target}: folder {os.path.dirname(os.path.abspath(target))} not found")


def output_format(args: argparse.Namespace) -> Optional[str]:
    """"jsonl" or "csv" for an --output file, else None."""
    return OUTPUT_FORMATS[os.path.splitext(args.output)[1].lower()] if args.output else None


class ResultWriter:
    """Where results go: stdout as text or JSON lines, or an --output file (.jsonl or .csv),
    written as results arrive so that a long run's results so far are kept."""

    def __init__(self, args: argparse.Namespace, labels: Sequence[str], write: Callable[[str, TextIO], None]):
        self.as_json, self.write, self.labels = args.json, write, list(labels)
        self.file, self.csv = None, None
        if args.output:
            self.file = open(args.output, "w", encoding="utf-8", newline="")
            if output_format(args) == "csv":
                self.csv = csv.writer(self.file)
                self.csv.writerow(["id", "audio_path", "duration", "label", "score", "error",
                                   *(f"p_{label}" for label in self.labels)])

    def add(self, result: dict) -> None:
        if "error" in result:
            self.write(f"skipped {result['audio_path']}: {result['error']}", sys.stderr)
        if self.csv is not None:
            self.csv.writerow(self.csv_row(result))
        elif self.file is not None:
            self.file.write(json.dumps(result) + "\n")
        elif self.as_json:
            self.write(json.dumps(result), sys.stdout)
        elif "error" not in result:
            self.write(format_result(result), sys.stdout)
        if self.file is not None:
            self.file.flush()

    def csv_row(self, result: dict) -> list:
        if "error" in result:
            return [result.get("id", result["audio_path"]), result["audio_path"], "", "", "", result["error"],
                    *([""] * len(self.labels))]
        scores = result["scores"]   # every label's: a CSV output asks the classifier for all
        return [result.get("id", result["audio_path"]), result["audio_path"], result["duration"], result["label"],
                f"{result['score']:.6f}", "", *(f"{scores[label]:.6f}" for label in self.labels)]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> int:
    with warnings_as_lines():   # e.g. a BandwidthWarning: one `warning: ...` line on stderr per input
        return classify_inputs(argv)


def classify_inputs(argv: Optional[List[str]]) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    entries = read_audio_list(args.audio_list) if args.audio_list else [(p, p) for p in audio_files(args.audio_path)]
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(args.model_path, configs=args.configs, use_gpu=args.use_gpu,
                              threshold=args.threshold, overwrites=args.overwrites, backend=args.backend,
                              precision=args.precision, views=args.views)
    if predictor.backend_note:
        print(predictor.backend_note, file=sys.stderr)
    if output_format(args) == "csv":
        args.top_k = None   # a probability column for every label
    classifier = FileClassifier(predictor, args, keep_embeddings=bool(args.embeddings), keep_segments=bool(args.plot))
    if args.audio_path and os.path.isfile(args.audio_path) and not args.output:
        classify_one(classifier, entries, args)
    else:
        classify_many(classifier, entries, args)
    if args.embeddings:
        save_embeddings(args.embeddings, classifier.embeddings)
    if args.plot:
        draw_timeline(args.plot, classifier, entries[0][1], predictor)
    return 0


def classify_one(classifier: FileClassifier, entries: List[Entry], args: argparse.Namespace) -> None:
    result = classifier.classify(entries)[0]
    if "error" in result:
        raise AudioError(result["error"])
    print(json.dumps(result) if args.json else format_result(result))


def classify_many(classifier: FileClassifier, entries: List[Entry], args: argparse.Namespace) -> None:
    """Batches with a progress bar on stderr; failed files are reported and counted."""
    from tqdm import tqdm
    source = args.audio_list or args.audio_path
    failed = 0
    with tqdm(total=len(entries), unit="file", file=sys.stderr, dynamic_ncols=True) as progress:
        writer = ResultWriter(args, classifier.predictor.labels, progress.write)
        try:
            for chunk in chunks(entries, chunk_size(classifier.predictor, args, len(entries))):
                for result in classifier.classify(chunk):
                    writer.add(result)
                    failed += "error" in result
                progress.update(len(chunk))
        finally:
            writer.close()
    if failed == len(entries):
        raise AudioError(f"none of the {len(entries)} audio files in {source} could be classified")
    if failed:
        print(f"skipped {failed} of {len(entries)} files", file=sys.stderr)
    if args.output:
        print(f"wrote {len(entries) - failed} results to {args.output}", file=sys.stderr)


def chunk_size(predictor, args: argparse.Namespace, total: int) -> int:
    """How many files are read and classified together: a --speaker's whole list under whole
    statistics (every clip is in them before the first answer), else 4 batches (runs of similar lengths)."""
    return max(total, 1) if args.speaker is not None and args.statistics == "whole" else 4 * predictor.batch_size


def save_embeddings(path: str, embeddings: List[Optional[np.ndarray]]) -> None:
    """(files, embd_dim) float32, NaN rows for the files that failed; written atomically."""
    from mser.export import write_atomically
    found = [vector for vector in embeddings if vector is not None]
    if not found:
        raise AudioError("no embeddings to save: no file could be read")
    matrix = np.full((len(embeddings), found[0].shape[0]), np.nan, dtype=np.float32)
    for row, vector in enumerate(embeddings):
        if vector is not None:
            matrix[row] = vector
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    write_atomically(path, buffer.getvalue())
    print(f"wrote {path}: {matrix.shape[0]} x {matrix.shape[1]} embeddings", file=sys.stderr)


def draw_timeline(path: str, classifier: FileClassifier, audio_path: str, predictor) -> None:
    from mser.plot import plot_timeline
    segments = classifier.segments.get(audio_path)
    if not segments:
        raise AudioError(f"nothing to plot: {audio_path} could not be classified")
    plot_timeline(path, segments, predictor.labels, title=os.path.basename(audio_path),
                  duration=audio_info(audio_path)[0])
    print(f"wrote {path}", file=sys.stderr)

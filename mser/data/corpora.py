"""Corpus parsers and the speaker-independent train/test split behind create_data.py.

A parser reads a data directory and turns each audio file (.wav, .flac, .ogg, .mp3) into a
Record: its path, its emotion label and its group, the unit that is never divided between train
and test. Files whose names do not follow the corpus's scheme are skipped and counted.

    demo     <voice>/<voice>_<emotion>_<nn>.flac (tools/make_demo_corpus.py); group = voice
    ravdess  Actor_XX/03-01-05-01-02-01-12.wav: modality-channel-emotion-intensity-statement-
             repetition-actor; audio-only (03) speech (01), song (02) with include_song;
             emotion 01 neutral 02 calm 03 happy 04 sad 05 angry 06 fearful 07 disgust
             08 surprised; group = actor
    crema_d  1001_DFA_ANG_XX.wav: speaker_sentence_emotion_intensity, emotion ANG DIS FEA HAP NEU
             SAD; group = speaker
    tess     OAF_angry/OAF_back_angry.wav: OAF|YAF_word_emotion, emotion angry disgust fear happy
             neutral ps (or pleasant_surprise[d]) sad. TESS has two speakers only, so the group is
             the spoken word: test words are unseen, test speakers are not
    emodb    03a01Fa.wav: speaker (2 digits), text (3), emotion letter W anger, L boredom,
             E disgust, A fear, F happiness, T sadness, N neutral, version; group = speaker
    folder   root/<label>/**/*.wav|flac|ogg|mp3; group = the named group 'speaker' (or the first
             group) of speaker_pattern searched in the file name, or the file itself without one

Two more read a table instead of file names, for general audio classification (any labels):

    urbansound8k  metadata/UrbanSound8K.csv (slice_file_name, fold, classID, class) and
             audio/fold1..10/; the split is the corpus's own: one fold (--test_fold, default 10) is
             test, the other folds train, never mixed (slices of one recording share a fold);
             labels in classID order
    csv      a Kaggle-style table (--csv_path) with a `file` and a `label` column and an optional
             `speaker` column; files relative to --data_dir (default: the table's folder); split by
             speaker when there is a speaker column, else by file; labels sorted by name

The lists carry a third column, the speaker, when a corpus's groups are speakers (voices,
actors): every corpus above but tess, and folder with --speaker_pattern.

The emotion corpora share label names (fear -> fearful, ANG -> angry, pleasant surprise ->
surprised, ...) ordered by LABEL_ORDER, keeping the labels present; the others keep their own
labels: `folder` its folder names, sorted, `csv` its label column, sorted, `urbansound8k` its
classes in classID order. Paths are data_dir joined with the path below it, so a relative data_dir
gives paths relative to the working directory that create_data.py ran in.
"""
import csv
import functools
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mser.data.lists import ListItem, read_label_list, write_data_list, write_label_list
from mser.errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
LABEL_ORDER = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised", "boredom"]

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral",
                    "SAD": "sad"}
TESS_EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
                 "neutral": "neutral", "ps": "surprised", "pleasant_surprise": "surprised",
                 "pleasant_surprised": "surprised", "sad": "sad"}
EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad",
                  "N": "neutral"}

MALFORMED = "malformed name"


class SkipFile(Exception):
    """A file that does not belong in the lists; the message is the reason, counted in the summary."""


@dataclass(frozen=True)
class Record:
    path: str
    label: str
    group: str


@dataclass
class Corpus:
    name: str
    data_dir: str
    records: List[Record]
    labels: List[str]
    group_kind: str  # what a group is: speaker, word or file
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: Dict[str, str] = field(default_factory=dict)


@dataclass
class Split:
    train: List[Record]
    test: List[Record]
    seed: int
    test_ratio: float
    how: str = ""   # a split the corpus defines itself (e.g. 'test fold 10'); "" for the seeded search


def stem(relative_path: str) -> str:
    return os.path.splitext(os.path.basename(relative_path))[0]


def parse_demo(relative_path: str) -> Tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9-]+)_([a-z]+)_(\d+)", stem(relative_path))
    if not match or match.group(2) not in LABEL_ORDER:
        raise SkipFile(MALFORMED)
    return match.group(2), match.group(1)


def parse_ravdess(relative_path: str, include_song: bool = False) -> Tuple[str, str]:
    match = re.fullmatch(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)", stem(relative_path))
    if not match or match.group(3) not in RAVDESS_EMOTIONS or match.group(2) not in ("01", "02"):
        raise SkipFile(MALFORMED)
    if match.group(1) != "03":
        raise SkipFile("not audio-only (modality 01/02 is a video file's sound)")
    if match.group(2) == "02" and not include_song:
        raise SkipFile("song (pass --include_song to keep)")
    return RAVDESS_EMOTIONS[match.group(3)], f"actor{match.group(7)}"


def parse_crema_d(relative_path: str) -> Tuple[str, str]:
    match = re.fullmatch(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})", stem(relative_path))
    if not match or match.group(3) not in CREMA_D_EMOTIONS:
        raise SkipFile(MALFORMED)
    return CREMA_D_EMOTIONS[match.group(3)], match.group(1)


def parse_tess(relative_path: str) -> Tuple[str, str]:
    emotions = "|".join(sorted(TESS_EMOTIONS, key=len, reverse=True))
    match = re.fullmatch(rf"(OAF|YAF)_([a-z]+)_({emotions})", stem(relative_path), flags=re.IGNORECASE)
    if not match:
        raise SkipFile(MALFORMED)
    return TESS_EMOTIONS[match.group(3).lower()], match.group(2).lower()


def parse_emodb(relative_path: str) -> Tuple[str, str]:
    match = re.fullmatch(r"(\d\d)([ab]\d\d)([A-Z])([a-z])", stem(relative_path))
    if not match or match.group(3) not in EMODB_EMOTIONS:
        raise SkipFile(MALFORMED)
    return EMODB_EMOTIONS[match.group(3)], match.group(1)


def parse_folder(relative_path: str, speaker_regex: Optional[re.Pattern] = None) -> Tuple[str, str]:
    parts = relative_path.split(os.sep)
    if len(parts) < 2:
        raise SkipFile("not inside a label folder")
    if speaker_regex is None:
        return parts[0], relative_path
    match = speaker_regex.search(os.path.basename(relative_path))
    if not match:
        raise SkipFile("--speaker_pattern does not match")
    speaker = match.group("speaker") if "speaker" in speaker_regex.groupindex else match.group(1)
    if not speaker:
        raise SkipFile("--speaker_pattern matched an empty speaker")
    return parts[0], speaker


PARSERS: Dict[str, Callable[..., Tuple[str, str]]] = {
    "demo": parse_demo, "ravdess": parse_ravdess, "crema_d": parse_crema_d, "tess": parse_tess,
    "emodb": parse_emodb, "folder": parse_folder,
}
GROUP_KINDS = {"demo": "speaker", "ravdess": "speaker", "crema_d": "speaker", "tess": "word",
               "emodb": "speaker"}


def compile_speaker_pattern(pattern: str) -> re.Pattern:
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise DataError(f"--speaker_pattern {pattern!r} is not a valid regular expression: {e}") from None
    if regex.groups == 0:
        raise DataError(f"--speaker_pattern {pattern!r} needs a group that captures the speaker, "
                        r"e.g. '^(?P<speaker>\d+)_'")
    return regex


def audio_files(data_dir: str) -> List[str]:
    """Audio files below data_dir, as sorted paths relative to it."""
    found = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(AUDIO_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, name), data_dir))
    return found


# ---- corpora described by a table -------------------------------------------------------------

URBANSOUND8K_TABLE = os.path.join("metadata", "UrbanSound8K.csv")
URBANSOUND8K_COLUMNS = ("slice_file_name", "fold", "classID", "class")
CSV_COLUMNS = ("file", "label")
TABLE_CORPORA = ("urbansound8k", "csv")
DATASETS = (*PARSERS, *TABLE_CORPORA)


def read_table(path: str, required: Sequence[str], what: str) -> List[Dict[str, str]]:
    """Rows of a CSV file as {column: value}, columns matched without regard to case or spaces."""
    if not os.path.isfile(path):
        raise DataError(f"{what} {path} not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {name.strip().lower(): name for name in reader.fieldnames or []}
            missing = [name for name in required if name.lower() not in columns]
            if missing:
                raise DataError(f"{path} has no {' or '.join(repr(m) for m in missing)} column "
                                f"(its columns: {', '.join(reader.fieldnames or []) or 'none'}); {what} needs "
                                f"{', '.join(required)}")
            return [{key: (row.get(name) or "").strip() for key, name in columns.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} is not a readable CSV file: {e}") from None


def add_record(corpus: Corpus, path: str, label: str, group: str, shown: str) -> None:
    if not os.path.isfile(path):
        corpus.skipped["listed but missing"] += 1
        corpus.skipped_examples.setdefault("listed but missing", shown)
    elif not path.lower().endswith(AUDIO_EXTENSIONS):
        corpus.skipped["not an audio file"] += 1
        corpus.skipped_examples.setdefault("not an audio file", shown)
    else:
        corpus.records.append(Record(path, label, group))


def load_urbansound8k(data_dir: str) -> Corpus:
    """UrbanSound8K: metadata/UrbanSound8K.csv and audio/foldN/; group = fold, labels in classID order."""
    rows = read_table(os.path.join(data_dir, URBANSOUND8K_TABLE), URBANSOUND8K_COLUMNS,
                      "the UrbanSound8K metadata table")
    corpus = Corpus("urbansound8k", data_dir, [], [], "fold")
    class_ids = {}
    for line, row in enumerate(rows, start=2):
        fold, class_id, name = row["fold"], row["classid"], row["class"]
        if not (fold.isdigit() and class_id.isdigit() and name and row["slice_file_name"]):
            raise DataError(f"{os.path.join(data_dir, URBANSOUND8K_TABLE)} line {line}: fold and classID must be "
                            f"numbers and slice_file_name and class filled in, got {row['slice_file_name']!r}, "
                            f"fold {fold!r}, classID {class_id!r}, class {name!r}")
        if class_ids.setdefault(name, int(class_id)) != int(class_id):
            raise DataError(f"{os.path.join(data_dir, URBANSOUND8K_TABLE)} line {line}: class {name} has classID "
                            f"{class_id} here and {class_ids[name]} before")
        relative = os.path.join("audio", f"fold{int(fold)}", row["slice_file_name"])
        add_record(corpus, os.path.join(data_dir, relative), name, f"fold{int(fold)}", relative)
    corpus.labels = sorted({record.label for record in corpus.records}, key=class_ids.get)
    return corpus


def load_csv_table(csv_path: str, data_dir: Optional[str] = None) -> Corpus:
    """A `file,label[,speaker]` table; group = speaker when the table has that column, else the file."""
    rows = read_table(csv_path, CSV_COLUMNS, "the --csv_path table")
    root = data_dir if data_dir is not None else os.path.dirname(csv_path)
    has_speaker = bool(rows) and "speaker" in rows[0]
    corpus = Corpus("csv", root, [], [], "speaker" if has_speaker else "file")
    for line, row in enumerate(rows, start=2):
        if not row["file"] or not row["label"]:
            raise DataError(f"{csv_path} line {line}: empty file or label")
        if has_speaker and not row["speaker"]:
            raise DataError(f"{csv_path} line {line}: empty speaker (the table has a speaker column)")
        path = row["file"] if os.path.isabs(row["file"]) else os.path.join(root, row["file"])
        add_record(corpus, path, row["label"], row["speaker"] if has_speaker else row["file"], row["file"])
    corpus.labels = sorted({record.label for record in corpus.records})
    return corpus


def load_table_corpus(name: str, data_dir: Optional[str], csv_path: Optional[str], min_labels: int) -> Corpus:
    if name == "urbansound8k":
        if not os.path.isdir(data_dir):
            raise DataError(f"data directory not found: {data_dir} (--data_dir must point at the UrbanSound8K "
                            f"folder holding metadata/ and audio/)")
        corpus = load_urbansound8k(data_dir)
    else:
        if not csv_path:
            raise DataError("--dataset csv needs --csv_path: a table with file and label columns")
        corpus = load_csv_table(csv_path, data_dir)
    num_rows = len(corpus.records) + sum(corpus.skipped.values())
    if not num_rows:
        raise DataError(f"the {name} table lists no clips")
    check_usable(corpus, num_rows, min_labels)
    return corpus


def split_by_fold(corpus: Corpus, test_fold: int) -> Split:
    """The corpus's own folds: `test_fold` is test, every other fold train; no fold is divided."""
    folds = sorted({int(record.group[len("fold"):]) for record in corpus.records})
    if test_fold not in folds:
        raise DataError(f"--test_fold {test_fold}: {corpus.data_dir} has no clips in fold {test_fold} "
                        f"(folds: {', '.join(map(str, folds))})")
    if len(folds) < 2:
        raise DataError(f"{corpus.data_dir} has clips in fold {test_fold} only: nothing is left to train on")
    test_group = f"fold{test_fold}"
    train = [record for record in corpus.records if record.group != test_group]
    test = [record for record in corpus.records if record.group == test_group]
    return Split(train, test, 0, len(test) / len(corpus.records),
                 how=f"test fold {test_fold}, train folds {', '.join(str(f) for f in folds if f != test_fold)}")


def make_parser(name: str, speaker_pattern: Optional[str], include_song: bool) -> Callable[[str], Tuple[str, str]]:
    if name not in PARSERS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if speaker_pattern and name != "folder":
        raise DataError(f"--speaker_pattern applies to --dataset folder only; {name} names its speakers itself")
    if name == "folder":
        regex = compile_speaker_pattern(speaker_pattern) if speaker_pattern else None
        return functools.partial(parse_folder, speaker_regex=regex)
    if name == "ravdess":
        return functools.partial(parse_ravdess, include_song=include_song)
    return PARSERS[name]


def load_corpus(name: str, data_dir: Optional[str], speaker_pattern: Optional[str] = None,
                include_song: bool = False, min_labels: int = 2, csv_path: Optional[str] = None) -> Corpus:
    """Parse every audio file under data_dir with the parser of corpus `name` (or read the table of
    urbansound8k / csv); a corpus to train on needs `min_labels` labels (a test-only corpus may
    have one)."""
    if name in TABLE_CORPORA:
        if speaker_pattern:
            raise DataError(f"--speaker_pattern applies to --dataset folder only, not {name}")
        return load_table_corpus(name, data_dir, csv_path, min_labels)
    parse = make_parser(name, speaker_pattern, include_song)
    if not os.path.isdir(data_dir):
        raise DataError(f"data directory not found: {data_dir} (--data_dir must point at the {name} corpus)")
    files = audio_files(data_dir)
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {data_dir}")
    corpus = Corpus(name, data_dir, [], [], group_kind_of(name, speaker_pattern))
    for relative_path in files:
        try:
            label, group = parse(relative_path)
        except SkipFile as skip:
            corpus.skipped[str(skip)] += 1
            corpus.skipped_examples.setdefault(str(skip), relative_path)
            continue
        corpus.records.append(Record(os.path.join(data_dir, relative_path), label, group))
    check_usable(corpus, len(files), min_labels)
    corpus.labels = ordered_labels(name, {record.label for record in corpus.records})
    return corpus


def group_kind_of(name: str, speaker_pattern: Optional[str]) -> str:
    if name == "folder":
        return "speaker" if speaker_pattern else "file"
    return GROUP_KINDS[name]


def check_usable(corpus: Corpus, num_files: int, min_labels: int = 2) -> None:
    if not corpus.records:
        reasons = ", ".join(f"{reason} (e.g. {corpus.skipped_examples[reason]})" for reason in corpus.skipped)
        raise DataError(f"none of the {num_files} audio files under {corpus.data_dir} can be used "
                        f"as --dataset {corpus.name}: {reasons}")
    labels = {record.label for record in corpus.records}
    if len(labels) < min_labels:
        raise DataError(f"{corpus.data_dir} holds one label only ({labels.pop()}) for --dataset {corpus.name}; "
                        "a classifier needs at least two")


def ordered_labels(name: str, present: set) -> List[str]:
    if name == "folder":
        return sorted(present)
    return [label for label in LABEL_ORDER if label in present]


def split_corpus(corpus: Corpus, test_ratio: float = 0.2, seed: int = 1000, trials: int = 200) -> Split:
    """Put whole groups into test, about test_ratio of every label, at least one group on each side.

    Seeded random search: each trial shuffles the groups and takes the prefix whose label counts
    come closest to test_ratio of each label (relative error, so rare labels count as much as
    common ones); the best trial wins.
    """
    if not 0.0 < test_ratio < 1.0:
        raise DataError(f"--test_ratio must be between 0 and 1, got {test_ratio}")
    groups = sorted({record.group for record in corpus.records})
    if len(groups) < 2:
        raise DataError(f"{corpus.data_dir} has a single {corpus.group_kind} ({groups[0]}); a "
                        f"{corpus.group_kind}-independent split needs at least two")
    counts = group_label_counts(corpus, groups)
    test_groups = set(best_test_groups(counts, test_ratio, seed, trials).tolist())
    test_names = {groups[i] for i in test_groups}
    train = [record for record in corpus.records if record.group not in test_names]
    test = [record for record in corpus.records if record.group in test_names]
    return Split(train, test, seed, test_ratio)


def group_label_counts(corpus: Corpus, groups: Sequence[str]) -> np.ndarray:
    """(groups, labels) matrix of clip counts."""
    group_index = {group: i for i, group in enumerate(groups)}
    label_index = {label: i for i, label in enumerate(corpus.labels)}
    counts = np.zeros((len(groups), len(corpus.labels)))
    for record in corpus.records:
        counts[group_index[record.group], label_index[record.label]] += 1
    return counts


def best_test_groups(counts: np.ndarray, test_ratio: float, seed: int, trials: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    totals = counts.sum(axis=0)
    target = test_ratio * totals
    best_cost, best_groups = np.inf, None
    for _ in range(trials):
        order = rng.permutation(len(counts))
        # Prefixes of 1 .. n-1 groups: both sides always keep at least one group.
        cumulative = np.cumsum(counts[order], axis=0)[:-1]
        costs = np.square((cumulative - target) / np.maximum(totals, 1)).sum(axis=1)
        size = int(np.argmin(costs)) + 1
        if costs[size - 1] < best_cost:
            best_cost, best_groups = costs[size - 1], order[:size]
    return best_groups


def speaker_of(corpus: Corpus, record: Record) -> str:
    """The speaker column of a record: its group when groups are speakers, else ""."""
    return record.group if corpus.group_kind == "speaker" else ""


def list_items(corpus: Corpus, records: Sequence[Record], labels: Sequence[str]) -> List[ListItem]:
    index = {label: i for i, label in enumerate(labels)}
    return [ListItem(record.path, index[record.label], speaker_of(corpus, record)) for record in records]


def write_lists(corpus: Corpus, split: Split, list_dir: str) -> List[str]:
    """Write train_list.txt, test_list.txt (path<TAB>label_index[<TAB>speaker]) and label_list.txt;
    return their paths. The speaker column is written when the corpus's groups are speakers."""
    paths = [os.path.join(list_dir, name) for name in ("train_list.txt", "test_list.txt", "label_list.txt")]
    write_data_list(paths[0], list_items(corpus, split.train, corpus.labels))
    write_data_list(paths[1], list_items(corpus, split.test, corpus.labels))
    write_label_list(paths[2], corpus.labels)
    return paths


@dataclass
class CrossCorpusList:
    path: str
    label_list: str
    labels: List[str]         # the label list's names, in index order
    records: List[Record]
    missing_labels: Counter   # clips per label that the label list does not have


def write_test_only_list(corpus: Corpus, label_list: str, path: str) -> CrossCorpusList:
    """Write every clip of the corpus whose label is in `label_list` (another corpus's labels,
    for cross-corpus evaluation) to `path`, indexed by that label list; count the others."""
    if not os.path.isfile(label_list):
        raise DataError(f"label list not found: {label_list}; --test_only indexes the clips by the label "
                        f"list of the training corpus (give it with --label_list)")
    labels = read_label_list(label_list)
    kept = [record for record in corpus.records if record.label in labels]
    missing = Counter(record.label for record in corpus.records if record.label not in labels)
    if not kept:
        raise DataError(f"none of the labels of {corpus.data_dir} ({', '.join(corpus.labels)}) is in "
                        f"{label_list} ({', '.join(labels)})")
    write_data_list(path, list_items(corpus, kept, labels))
    return CrossCorpusList(path, label_list, labels, kept, missing)


def format_test_only_summary(corpus: Corpus, written: CrossCorpusList) -> str:
    """Clip and speaker counts per label of a test-only list, and what was left out."""
    kind = corpus.group_kind
    lines = [f"{corpus.name}: {len(corpus.records)} clips under {corpus.data_dir}, "
             f"{len({r.group for r in corpus.records})} {plural(kind)}",
             f"test only, labels indexed by {written.label_list}: {len(written.records)} clips, "
             f"{len({r.group for r in written.records})} {plural(kind)}"]
    counts = Counter(r.label for r in written.records)
    lines += [f"  {label:<12} {counts[label]:>6}" for label in written.labels]
    if written.missing_labels:
        lines.append(f"skipped {sum(written.missing_labels.values())} clips whose label is not in "
                     f"{written.label_list}: " + ", ".join(f"{count} {label}" for label, count
                                                         in sorted(written.missing_labels.items())))
    lines.append(format_skipped(corpus))
    return "\n".join(lines)


def format_summary(corpus: Corpus, split: Split) -> str:
    """Per-split clip, label and group counts, and what was skipped."""
    kind = corpus.group_kind
    lines = [f"{corpus.name}: {len(corpus.records)} clips under {corpus.data_dir}, {len(corpus.labels)} labels, "
             f"{len({r.group for r in corpus.records})} {plural(kind)}"]
    if corpus.name == "tess":
        lines.append("tess has two speakers only: split by spoken word, so test words are unseen "
                     "but test speakers are heard in training")
    lines.append(f"split by {kind}: {split.how}:" if split.how else
                 f"split by {kind} (seed {split.seed}, test_ratio {split.test_ratio}):")
    for name, records in (("train", split.train), ("test", split.test)):
        lines.append(f"  {name:<5} {len(records):>6} clips, {len({r.group for r in records}):>5} {plural(kind)}")
    test_groups = sorted({r.group for r in split.test})
    if len(test_groups) <= 12:
        lines.append(f"  test {plural(kind)}: {', '.join(test_groups)}")
    lines.append(f"  {'label':<12} {'train':>6} {'test':>6}")
    train_counts = Counter(r.label for r in split.train)
    test_counts = Counter(r.label for r in split.test)
    for label in corpus.labels:
        lines.append(f"  {label:<12} {train_counts[label]:>6} {test_counts[label]:>6}")
    lines.append(format_skipped(corpus))
    return "\n".join(lines)


def format_skipped(corpus: Corpus) -> str:
    total = sum(corpus.skipped.values())
    if not total:
        return "skipped 0 files"
    reasons = ", ".join(f"{count} {reason} (e.g. {corpus.skipped_examples[reason]})"
                        for reason, count in corpus.skipped.most_common())
    return f"skipped {total} files: {reasons}"


def plural(kind: str) -> str:
    return kind + "s"

"""The list-file contracts: data lists and one-name-per-line label lists.

A data list holds one clip per line: `path<TAB>label_index`, with an optional third column
`<TAB>speaker` when the corpus says who speaks (create_data.py writes it; two-column lists still
load). Files saved with a UTF-8 byte-order mark load too.
"""
import os
from typing import List, NamedTuple, Sequence

from mser.config import path_tried
from mser.errors import DataError

LINE_FORMAT = "'path<TAB>label_index' or 'path<TAB>label_index<TAB>speaker'"


class ListItem(NamedTuple):
    """One clip of a data list; `speaker` is "" when the list does not say who speaks."""
    path: str
    label: int
    speaker: str = ""


def read_label_list(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise DataError(f"label list not found: {path_tried(path)}; run create_data.py first")
    with open(path, encoding="utf-8-sig") as f:
        labels = [line.strip() for line in f if line.strip()]
    if not labels:
        raise DataError(f"label list {path} is empty")
    duplicates = sorted({name for name in labels if labels.count(name) > 1})
    if duplicates:
        raise DataError(f"label list {path} repeats {', '.join(duplicates)}")
    return labels


def read_data_list(path: str, num_class: int, check_files: bool = True) -> List[ListItem]:
    """Read and check a data list; a bad line is reported with the file and line number."""
    if not os.path.isfile(path):
        raise DataError(f"data list not found: {path_tried(path)}; run create_data.py first")
    items = []
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is dropped, not read as a path
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            items.append(parse_line(line, path, number, num_class, check_files))
    if not items:
        raise DataError(f"data list {path} has no entries")
    return items


def parse_line(line: str, path: str, number: int, num_class: int, check_files: bool) -> ListItem:
    parts = line.split("\t")
    if len(parts) not in (2, 3):
        raise DataError(f"line {number} of {path} must be {LINE_FORMAT}, got {line!r}")
    audio_path, label_text = parts[0].strip(), parts[1].strip()
    speaker = parts[2].strip() if len(parts) == 3 else ""
    if len(parts) == 3 and not speaker:
        raise DataError(f"line {number} of {path} has an empty speaker column: write the speaker "
                        f"after the second tab, or drop the tab")
    try:
        label = int(label_text)
    except ValueError:
        raise DataError(f"label {label_text!r} on line {number} of {path} is not an integer") from None
    if not 0 <= label < num_class:
        raise DataError(f"label {label} on line {number} of {path} is out of range: "
                        f"the label list has {num_class} labels")
    if check_files and not os.path.isfile(audio_path):
        raise DataError(f"audio file {path_tried(audio_path)} on line {number} of {path} does not exist")
    return ListItem(audio_path, label, speaker)


def format_item(item: Sequence) -> str:
    """One list line (without newline) from a ListItem or a plain (path, label[, speaker]) tuple."""
    audio_path, label, *rest = item
    speaker = rest[0] if rest else ""
    if "\t" in speaker or "\n" in speaker:
        raise DataError(f"speaker {speaker!r} of {audio_path} holds a tab or newline")
    return f"{audio_path}\t{label}\t{speaker}" if speaker else f"{audio_path}\t{label}"


def write_data_list(path: str, items: Sequence[Sequence]) -> None:
    """Write items as list lines; the speaker column only for items that have a speaker."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(format_item(item) + "\n" for item in items))


def has_speakers(items: Sequence[ListItem]) -> bool:
    """Whether any clip of the list names its speaker."""
    return any(item.speaker for item in items)


def write_label_list(path: str, labels: Sequence[str]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in labels))

"""The list-file contracts: `path<TAB>label_index` data lists and one-name-per-line label lists."""
import os
from typing import List, Sequence, Tuple

from mser.errors import DataError

ListItem = Tuple[str, int]


def read_label_list(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise DataError(f"label list not found: {path} (run create_data.py first)")
    with open(path, encoding="utf-8") as f:
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
        raise DataError(f"data list not found: {path} (run create_data.py first)")
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            items.append(parse_line(line, path, number, num_class, check_files))
    if not items:
        raise DataError(f"data list {path} has no entries")
    return items


def parse_line(line: str, path: str, number: int, num_class: int, check_files: bool) -> ListItem:
    parts = line.split("\t")
    if len(parts) != 2:
        raise DataError(f"line {number} of {path} must be 'path<TAB>label_index', got {line!r}")
    audio_path, label_text = parts[0].strip(), parts[1].strip()
    try:
        label = int(label_text)
    except ValueError:
        raise DataError(f"label {label_text!r} on line {number} of {path} is not an integer") from None
    if not 0 <= label < num_class:
        raise DataError(f"label {label} on line {number} of {path} is out of range: "
                        f"the label list has {num_class} labels")
    if check_files and not os.path.isfile(audio_path):
        raise DataError(f"audio file {audio_path} on line {number} of {path} does not exist")
    return audio_path, label


def write_data_list(path: str, items: Sequence[ListItem]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for audio_path, label in items:
            f.write(f"{audio_path}\t{label}\n")


def write_label_list(path: str, labels: Sequence[str]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in labels))

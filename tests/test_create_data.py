"""create_data.py as a user runs it: lists written, speakers kept apart, one-line errors."""
import os
from collections import Counter

from conftest import REPO, assert_one_line_error, run_script
from test_corpora import make_ravdess_tree

from mser.data.lists import read_data_list, read_label_list


def read_lists(list_dir):
    labels = read_label_list(os.path.join(list_dir, "label_list.txt"))
    train = read_data_list(os.path.join(list_dir, "train_list.txt"), len(labels), check_files=False)
    test = read_data_list(os.path.join(list_dir, "test_list.txt"), len(labels), check_files=False)
    return labels, train, test


def ravdess_actor(path):
    return os.path.basename(path).split(".")[0].split("-")[6]


def test_ravdess_relative_paths_and_summary(tmp_path):
    make_ravdess_tree(tmp_path / "ravdess")
    result = run_script("create_data.py", "--dataset", "ravdess", "--data_dir", "ravdess",
                        "--list_dir", "lists", "--seed", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    labels, train, test = read_lists(tmp_path / "lists")
    assert labels == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert len(train) + len(test) == 160
    assert all(path.startswith("ravdess" + os.sep) and os.path.isfile(tmp_path / path) for path, *_ in train + test)
    assert not {ravdess_actor(p) for p, *_ in train} & {ravdess_actor(p) for p, *_ in test}
    assert len({ravdess_actor(p) for p, *_ in test}) == 2
    assert "skipped 4 files" in result.stdout and "train    128 clips,     8 speakers" in result.stdout


def test_same_seed_same_lists(tmp_path):
    data_dir = make_ravdess_tree(tmp_path / "ravdess")
    outputs = []
    for run, seed in enumerate((9, 9, 10)):
        list_dir = tmp_path / f"lists{run}"
        result = run_script("create_data.py", "--dataset", "ravdess", "--data_dir", data_dir,
                            "--list_dir", list_dir, "--seed", seed)
        assert result.returncode == 0, result.stderr
        outputs.append((list_dir / "test_list.txt").read_text())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_missing_data_dir_is_one_line_error(tmp_path):
    result = run_script("create_data.py", "--dataset", "ravdess", "--data_dir", tmp_path / "nowhere",
                        "--list_dir", tmp_path)
    assert_one_line_error(result, "data directory not found")
    assert not (tmp_path / "train_list.txt").exists()


def test_other_bad_input_is_one_line_error(tmp_path):
    assert_one_line_error(run_script("create_data.py", "--dataset", "emodb"), "--data_dir is required")
    make_ravdess_tree(tmp_path / "ravdess")
    assert_one_line_error(run_script("create_data.py", "--dataset", "ravdess", "--data_dir", tmp_path / "ravdess",
                                     "--list_dir", tmp_path, "--test_ratio", "1.5"), "--test_ratio")
    assert_one_line_error(run_script("create_data.py", "--dataset", "folder", "--data_dir", tmp_path / "ravdess",
                                     "--list_dir", tmp_path, "--speaker_pattern", "(oops"), "--speaker_pattern")


def test_help_explains_every_option():
    result = run_script("create_data.py", "--help")
    assert result.returncode == 0
    for option in ("--dataset", "--data_dir", "--list_dir", "--seed", "--test_ratio", "--speaker_pattern",
                   "--include_song"):
        assert option in result.stdout


def test_shipped_demo_corpus(tmp_path):
    result = run_script("create_data.py", "--list_dir", tmp_path, cwd=REPO)
    assert result.returncode == 0, result.stderr
    labels, train, test = read_lists(tmp_path)
    assert labels == ["neutral", "happy", "sad", "angry", "fearful", "surprised"]
    assert all(os.path.isfile(REPO / path) for path, *_ in train + test)

    def voice(path):
        return os.path.basename(path).split("_")[0]
    train_voices, test_voices = {voice(p) for p, *_ in train}, {voice(p) for p, *_ in test}
    assert len(train_voices) + len(test_voices) >= 30 and not train_voices & test_voices
    assert 0.1 <= len(test_voices) / (len(train_voices) + len(test_voices)) <= 0.3  # about 20 % of the voices
    per_label = Counter(label for _, label, _ in test)
    assert len(per_label) == 6 and len(set(per_label.values())) == 1
    assert all(speaker == voice(path) for path, _, speaker in train + test)

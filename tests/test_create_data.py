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


# ---- corpora described by a table: urbansound8k, csv --------------------------------------------

URBAN_CLASSES = ["air_conditioner", "car_horn", "children_playing"]


def make_urbansound8k(root, folds=(1, 2, 3, 10)):
    """Two clips per class and fold (three classes), one listed file missing."""
    from test_corpora import write_clip
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for fold in folds:
        for class_id, name in enumerate(URBAN_CLASSES):
            for part in range(2):
                file_name = f"{100 + fold}-{class_id}-0-{part}.wav"
                write_clip(root / "audio" / f"fold{fold}" / file_name)
                rows.append(f"{file_name},{100 + fold},0,4,1,{fold},{class_id},{name}")
    rows.append("999-1-0-0.wav,999,0,4,1,2,1,car_horn")   # listed, not on disk
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(rows) + "\n")
    return root


def fold_of(path):
    return os.path.basename(os.path.dirname(path))


def test_urbansound8k_tests_on_one_fold_and_never_mixes_folds(tmp_path):
    data_dir = make_urbansound8k(tmp_path / "UrbanSound8K")
    result = run_script("create_data.py", "--dataset", "urbansound8k", "--data_dir", data_dir, "--list_dir",
                        tmp_path / "lists")
    assert result.returncode == 0, result.stderr
    labels, train, test = read_lists(tmp_path / "lists")
    assert labels == URBAN_CLASSES   # classID order, not the emotion vocabulary
    assert {fold_of(p) for p, *_ in test} == {"fold10"} and len(test) == 6
    assert {fold_of(p) for p, *_ in train} == {"fold1", "fold2", "fold3"} and len(train) == 18
    assert all(speaker == "" for *_, speaker in train + test)
    assert all(label == int(os.path.basename(p).split("-")[1]) for p, label, _ in train + test)   # classID
    assert "test fold 10, train folds 1, 2, 3" in result.stdout
    assert "skipped 1 files: 1 listed but missing (e.g. audio/fold2/999-1-0-0.wav)" in result.stdout

    result = run_script("create_data.py", "--dataset", "urbansound8k", "--data_dir", data_dir, "--list_dir",
                        tmp_path / "lists2", "--test_fold", "2")
    assert result.returncode == 0, result.stderr
    _, train, test = read_lists(tmp_path / "lists2")
    assert {fold_of(p) for p, *_ in test} == {"fold2"}
    assert "fold2" not in {fold_of(p) for p, *_ in train}


def test_urbansound8k_bad_input_is_one_line_error(tmp_path):
    data_dir = make_urbansound8k(tmp_path / "UrbanSound8K")
    common = ("--dataset", "urbansound8k", "--data_dir", data_dir, "--list_dir", tmp_path / "lists")
    assert_one_line_error(run_script("create_data.py", *common, "--test_fold", "7"),
                          "--test_fold 7: ")
    table = data_dir / "metadata" / "UrbanSound8K.csv"
    table.write_text(table.read_text().replace("classID,class", "classID,category", 1))
    assert_one_line_error(run_script("create_data.py", *common), "has no 'class' column")
    assert_one_line_error(run_script("create_data.py", "--dataset", "urbansound8k", "--data_dir", tmp_path,
                                     "--list_dir", tmp_path / "lists"),
                          os.path.join("metadata", "UrbanSound8K.csv") + " not found")
    assert_one_line_error(run_script("create_data.py", "--dataset", "ravdess", "--data_dir", data_dir,
                                     "--test_fold", "3"), "--test_fold applies to --dataset urbansound8k only")
    assert not (tmp_path / "lists").exists()


def make_csv_corpus(root, speakers=True):
    """Kaggle style: clips/<n>.wav and train.csv with file,label[,speaker]; labels are not emotions."""
    from test_corpora import write_clip
    rows = ["file,label,speaker" if speakers else "file,label"]
    for index in range(24):
        write_clip(root / "clips" / f"{index}.wav")
        label = ("dog", "cat", "bird")[index % 3]
        rows.append(f"clips/{index}.wav,{label},s{index % 6}" if speakers else f"clips/{index}.wav,{label}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv"


def test_csv_table_with_and_without_speakers(tmp_path):
    table = make_csv_corpus(tmp_path / "kaggle")
    result = run_script("create_data.py", "--dataset", "csv", "--csv_path", table, "--list_dir", tmp_path / "lists")
    assert result.returncode == 0, result.stderr
    labels, train, test = read_lists(tmp_path / "lists")
    assert labels == ["bird", "cat", "dog"]
    assert len(train) + len(test) == 24 and test
    assert all(os.path.isfile(p) for p, *_ in train + test)
    assert not {s for *_, s in train} & {s for *_, s in test} and all(s for *_, s in train + test)

    plain = make_csv_corpus(tmp_path / "plain", speakers=False)
    result = run_script("create_data.py", "--dataset", "csv", "--csv_path", plain, "--data_dir", tmp_path / "plain",
                        "--list_dir", tmp_path / "lists2")
    assert result.returncode == 0, result.stderr
    _, train, test = read_lists(tmp_path / "lists2")
    assert len(train) + len(test) == 24 and all(s == "" for *_, s in train + test)
    assert not {p for p, *_ in train} & {p for p, *_ in test}


def test_csv_without_expected_columns_is_one_line_error(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("fname,tag\na.wav,dog\n")
    result = run_script("create_data.py", "--dataset", "csv", "--csv_path", table, "--list_dir", tmp_path / "lists")
    assert_one_line_error(result, "has no 'file' or 'label' column (its columns: fname, tag)")
    assert_one_line_error(run_script("create_data.py", "--dataset", "csv", "--list_dir", tmp_path / "lists"),
                          "--dataset csv needs --csv_path")
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--csv_path", table),
                          "--csv_path applies to --dataset csv only")
    assert not (tmp_path / "lists").exists()

"""tools/run_experiments.py, the accuracy protocol: every experiment it lists is well formed, the
shipped recommended config is one of them, and its tables read an empty or a written results file."""
import json

from conftest import run_script


def test_every_experiment_is_listed_with_its_kind():
    result = run_script("tools/run_experiments.py", "--list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
            if line.strip() and not line.startswith("cv fold")}   # (the folds' voices follow the list)
    assert rows["ensemble_geometric_level"] == "ensemble" and "configs/ensemble.yml" in result.stdout
    assert rows["cv_ens_egemaps_dbnorm_copies+prosody_chanaug+compare_dbnorm"] == "cv_ensemble"
    assert {kind for kind in rows.values()} <= {"full", "cv", "ensemble", "cv_ensemble", "baseline", "cv_baseline"}


def test_the_tables_read_what_was_recorded(tmp_path):
    empty = run_script("tools/run_experiments.py", "--table", "--out_dir", tmp_path)
    assert empty.returncode == 0 and "| run | seeds |" in empty.stdout
    runs = [{"name": "egemaps", "kind": "full", "seed": seed, "test_ua": ua, "cross_ua": ua - 0.1,
             "best_epoch": 3, "train_wall_s": 60.0, "load_mean": 1.0} for seed, ua in ((1000, 0.5), (1001, 0.7))]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(run) + "\n" for run in runs))
    table = run_script("tools/run_experiments.py", "--table", "--out_dir", tmp_path)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("| egemaps |"))
    assert "| 0.600 ± 0.141 | 0.500 ± 0.141 |" in row   # mean and sample sd over the two seeds


def test_a_share_of_the_training_voices_is_drawn_per_fold_without_validation_voices(tmp_path, monkeypatch):
    tool = load_tool()
    listed = tmp_path / "train_list.txt"
    listed.write_text("".join(f"clips/v{v}_{i}.wav\t{i % 2}\tv{v}\n" for v in range(8) for i in range(3)))
    monkeypatch.setattr(tool, "TRAIN_LIST", str(listed))

    def voices(path):
        return {line.split("\t")[2] for line in open(path).read().splitlines()}
    full = tool.fold_lists(str(tmp_path / "out"), 0, 4)
    half = tool.fold_lists(str(tmp_path / "out"), 0, 4, train_voices=0.5)
    assert len(voices(full["train"])) == 6 and len(voices(half["train"])) == 3
    assert voices(half["train"]) < voices(full["train"]) and not voices(half["train"]) & voices(half["val"])
    assert half["val"] == full["val"] and half["train"] != full["train"]
    again = tool.fold_lists(str(tmp_path / "again"), 0, 4, train_voices=0.5)
    assert voices(again["train"]) == voices(half["train"])             # seeded: the same voices every run
    assert tool.TRAIN_VOICES["cv_egemaps_spknorm_level_voices50"] == 0.5


def test_class_shares_keep_fewer_of_each_training_voices_clips_of_an_emotion(tmp_path, monkeypatch):
    tool = load_tool()
    listed, labels = tmp_path / "train_list.txt", tmp_path / "label_list.txt"
    labels.write_text("calm\nangry\n")
    listed.write_text("".join(f"clips/v{v}_{i}.wav\t{i % 2}\tv{v}\n" for v in range(8) for i in range(10)))
    monkeypatch.setattr(tool, "TRAIN_LIST", str(listed))
    monkeypatch.setattr(tool, "LABEL_LIST", str(labels))

    def counts(path):
        rows = [line.split("\t") for line in open(path).read().splitlines()]
        return {(voice, label): sum(1 for r in rows if r[2] == voice and r[1] == label) for _, label, voice in rows}
    full = tool.fold_lists(str(tmp_path / "out"), 0, 4)
    fewer = tool.fold_lists(str(tmp_path / "out"), 0, 4, class_shares={"angry": 0.4})
    assert fewer["val"] == full["val"] and fewer["train"] != full["train"]
    kept = counts(fewer["train"])
    assert {n for (_, label), n in kept.items() if label == "1"} == {2}      # 2 of each voice's 5 angry clips
    assert {n for (_, label), n in kept.items() if label == "0"} == {5}      # every calm clip
    assert {voice for voice, _ in kept} == {voice for voice, _ in counts(full["train"])}
    assert open(fewer["train"]).read() == open(tool.fold_lists(str(tmp_path / "again"), 0, 4,
                                                               class_shares={"angry": 0.4})["train"]).read()
    assert tool.CLASS_SHARES["cv_egemaps_imbalanced_weighted"] == tool.IMBALANCED


def load_tool():
    import importlib.util
    from conftest import REPO
    spec = importlib.util.spec_from_file_location("run_experiments", REPO / "tools" / "run_experiments.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_a_cv_fold_picks_its_epoch_on_training_voices_unless_told_otherwise(demo_lists, tmp_path, monkeypatch):
    """inner (default): the fold's voices never pick the epoch, eval.py scores the best and the last
    model on them; fold: the old protocol, the fold's voices pick it; last: an ensemble of the fold
    runs' last-epoch models. The table puts each score in its own column."""
    import os
    import sys
    import yaml
    tool = load_tool()
    monkeypatch.setattr(tool, "TRAIN_LIST", str(demo_lists / "train_list.txt"))
    tiny = {"dataset_conf": {"train_list": str(demo_lists / "train_list.txt"),
                             "test_list": str(demo_lists / "test_list.txt"),
                             "label_list_path": str(demo_lists / "label_list.txt"),
                             "dataset": {"max_duration": 1.5}, "eval_conf": {"max_duration": 2.0},
                             "dataLoader": {"batch_size": 16, "num_workers": 0}, "val_fraction": 0.2},
            "preprocess_conf": {"feature_method": "Fbank", "method_args": {"num_mel_bins": 40}},
            "model_conf": {"model": "BiLSTM", "model_args": {"hidden_size": 32}},
            "train_conf": {"max_epoch": 2}}
    tool.experiment("tiny_cv", "configs/bi_lstm.yml", tiny, kind="cv")
    tool.experiment("tiny_cv_ens", "", {"members": ("tiny_cv", "tiny_cv")}, kind="cv_ensemble")
    out = tmp_path / "out"
    environment = dict(os.environ)
    inner = tool.run_one("tiny_cv", str(out), sys.executable, environment, fold=0, num_folds=4)
    lists = tool.fold_lists(str(out), 0, 4)
    config = yaml.safe_load((out / "tiny_cv" / "fold0_inner" / "config.yml").read_text())
    assert config["dataset_conf"]["val_list"] == "" and config["dataset_conf"]["train_list"] == lists["train"]
    assert inner["selection"] == "inner"
    assert {"val", "last_val", "inner_val"} <= set(inner)
    assert 0.0 <= inner["val"]["unweighted_accuracy"] <= 1.0 and "unweighted_accuracy" in inner["last_val"]
    fold = tool.run_one("tiny_cv", str(out), sys.executable, environment, fold=0, num_folds=4, selection="fold")
    config = yaml.safe_load((out / "tiny_cv" / "fold0" / "config.yml").read_text())
    assert config["dataset_conf"]["val_list"] == lists["val"] and fold["selection"] == "fold"
    last = tool.run_ensemble("tiny_cv_ens", str(out), sys.executable, fold=0, num_folds=4, selection="last")
    manifest = yaml.safe_load((out / "tiny_cv_ens" / "fold0_last" / "Ensemble" / "ensemble.yml").read_text())
    assert all(member.endswith("last_model") for member in manifest["members"]) and last["selection"] == "last"
    rows = tool.table(str(out)).splitlines()
    header = next(line for line in rows if line.startswith("| cv experiment"))
    single = next(line for line in rows if line.startswith("| tiny_cv |"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in single.split("|")]))
    honest = "mean val UA, epoch picked on training voices (honest)"
    assert cells[honest] == f"{inner['val']['unweighted_accuracy']:.3f}"
    assert cells["epoch picked on the scored voices (optimistic)"] == f"{fold['val']['unweighted_accuracy']:.3f}"
    assert cells["last epoch, all training voices (honest)"] == f"{fold['last_val']['unweighted_accuracy']:.3f}"
    assert cells["last epoch, same runs (honest)"] == f"{inner['last_val']['unweighted_accuracy']:.3f}"
    ensemble = next(line for line in rows if line.startswith("| tiny_cv_ens |"))
    assert f"| {last['val']['unweighted_accuracy']:.3f} |" in ensemble


def test_last_selection_is_refused_for_a_cv_run():
    result = run_script("tools/run_experiments.py", "cv_egemaps_spknorm_level", "--cv_selection", "last",
                        "--out_dir", "/nonexistent")
    assert result.returncode == 2 and "cv ensembles" in result.stderr


def test_lists_from_another_folder_feed_every_run_and_score(demo_lists, tmp_path):
    """--lists DIR: a full run trains on DIR's train list and is scored on DIR's test list (another
    draw of the corpus, a user's own corpus); a folder without the lists is one error line."""
    import yaml
    tool = load_tool()
    tiny = {"dataset_conf": {"dataset": {"max_duration": 1.5}, "eval_conf": {"max_duration": 2.0},
                             "dataLoader": {"batch_size": 16, "num_workers": 0}, "val_fraction": 0.2},
            "preprocess_conf": {"feature_method": "Fbank", "method_args": {"num_mel_bins": 40}},
            "model_conf": {"model": "BiLSTM", "model_args": {"hidden_size": 32}},
            "train_conf": {"max_epoch": 1}}
    tool.experiment("tiny_full", "configs/bi_lstm.yml", tiny)
    out = tmp_path / "out"
    tool.main(["tiny_full", "--lists", str(demo_lists), "--seeds", "1000", "--out_dir", str(out)])
    config = yaml.safe_load((out / "tiny_full" / "seed1000" / "config.yml").read_text())
    assert config["dataset_conf"]["train_list"] == str(demo_lists / "train_list.txt")
    assert config["dataset_conf"]["label_list_path"] == str(demo_lists / "label_list.txt")
    row = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= row["test_ua"] <= 1.0 and "cross_ua" not in row     # no Festival list in that folder
    result = run_script("tools/run_experiments.py", "egemaps", "--lists", tmp_path / "empty", "--out_dir", out)
    assert result.returncode == 2 and "--lists" in result.stderr and "train_list.txt" in result.stderr

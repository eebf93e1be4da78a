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
    import importlib.util
    from conftest import REPO
    spec = importlib.util.spec_from_file_location("run_experiments", REPO / "tools" / "run_experiments.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
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

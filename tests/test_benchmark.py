"""tools/benchmark.py runs and keeps its --json contract (a reduced --quick set; numbers are not checked)."""
import importlib.util
import json

import pytest

from conftest import PYTHON, REPO, run_script, pypi_reachable
from mser.features import list_featurizers, missing_extra


def load_benchmark():
    spec = importlib.util.spec_from_file_location("mser_benchmark_tool", REPO / "tools" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_prints_tables_and_one_json_object():
    result = run_script("tools/benchmark.py", "--quick", "--sections", "hardware,features,train,infer",
                        "--batch_size", "4", "--models", "BiLSTM", "--runs", "1", "--json",
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results["meta"]["threads"] == 1 and len(results["meta"]["load_before"]) == 3
    assert results["hardware"]["fp32_gflops"] > 0 and results["hardware"]["bf16_gflops"] > 0
    slow = load_benchmark().SLOW_FEATURIZERS
    assert [row["featurizer"] for row in results["features"]] == \
        [name for name in list_featurizers() if name not in slow and not missing_extra(name)]
    assert set(results["meta"]["featurizers_skipped"]) == {
        name for name in list_featurizers() if name in slow or missing_extra(name)}
    assert all(row["clips_per_s"] > 0 and row["real_time_factor"] > 0 for row in results["features"])
    (train,) = results["train"]
    assert train["model"] == "BiLSTM" and train["pipeline_clips_per_s"] > 0 and train["model_only_clips_per_s"] > 0
    efficiency = train["pipeline_clips_per_s"] / train["model_only_clips_per_s"]
    assert train["pipeline_efficiency"] == pytest.approx(efficiency, rel=0.05)
    (infer,) = results["infer"]
    assert infer["model"] == "BiLSTM" and infer["ms_per_clip"] > 0 and infer["bf16_ms_per_clip"] > 0
    assert all(f"## {title}" in result.stdout for title in ("featurizers", "training", "inference"))


def test_train_section_with_augmentation_times_epochs_from_augmented_audio_in_a_worker(tmp_path):
    augment = tmp_path / "augment.yml"
    augment.write_text("noise:\n  prob: 1.0\nreverb:\n  prob: 1.0\n")
    result = run_script("tools/benchmark.py", "--quick", "--sections", "train", "--batch_size", "4",
                        "--models", "BiLSTM", "--num_workers", "1", "--data_augment_configs", str(augment), "--json",
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (train,) = json.loads(result.stdout.strip().splitlines()[-1])["train"]
    assert train["augmentation"] == str(augment) and train["num_workers"] == 1
    assert train["pipeline_clips_per_s"] > 0 and train["cached_clips_per_s"] > 0 and train["featurizer_clips_per_s"] > 0
    assert f"training from audio with augmentation: {augment}; loader workers: 1" in result.stdout


def test_extract_section_times_cache_building_in_one_process_and_in_workers():
    result = run_script("tools/benchmark.py", "--sections", "extract", "--featurizers", "CustomFeatures,Fbank",
                        "--extract_clips", "24", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(result.stdout.strip().splitlines()[-1])["extract"]   # Fbank is not clip-level: left out
    assert row["featurizer"] == "CustomFeatures" and row["clips"] == 24 and row["same_features"] is True
    assert row["one_process_clips_per_s"] > 0 and row["workers_clips_per_s"] > 0 and row["workers"] >= 0
    assert row["speedup"] == pytest.approx(row["workers_clips_per_s"] / row["one_process_clips_per_s"], rel=0.05)
    assert "## cache building" in result.stdout


def test_files_section_runs_infer_py_on_a_list_of_different_clips():
    result = run_script("tools/benchmark.py", "--quick", "--sections", "files", "--json",
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    files = json.loads(result.stdout.strip().splitlines()[-1])["files"]
    assert files["clips"] == files["results_written"] == 64
    assert files["start_up_seconds"] > 0 and files["script_seconds"] > 0   # 64 clips may take no longer than 1
    assert files["clips_per_s"] == pytest.approx(64 / files["script_seconds"], rel=0.05)
    assert files["predict_one_by_one_ms"] > 0 and "## many files: infer.py --audio_list" in result.stdout


def test_featurizers_whose_extra_is_missing_are_skipped(monkeypatch):
    benchmark = load_benchmark()
    monkeypatch.setattr(benchmark, "missing_extra", lambda name: "opensmile" if name == "eGeMAPS" else "")
    args = benchmark.parse_args(["--sections", "features"])
    assert "eGeMAPS" not in args.featurizers and "ComParE" in args.featurizers
    assert set(args.featurizers) | {"eGeMAPS"} == set(list_featurizers())
    assert args.featurizers_skipped == {"eGeMAPS": 'needs pip install "mser[opensmile]"'}
    named = benchmark.parse_args(["--quick", "--featurizers", "ComParE,eGeMAPS,Fbank"])
    assert named.featurizers == ["ComParE", "Fbank"] and list(named.featurizers_skipped) == ["eGeMAPS"]


def test_quick_leaves_out_the_slow_featurizers_unless_named():
    benchmark = load_benchmark()
    quick = benchmark.parse_args(["--quick"])
    assert not set(benchmark.SLOW_FEATURIZERS) & set(quick.featurizers) and "Fbank" in quick.featurizers
    assert set(benchmark.SLOW_FEATURIZERS) <= set(quick.featurizers_skipped)
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--featurizers", "Fbank,NoSuchFeatures"])


def test_vad_section_scores_every_backend_on_every_condition():
    benchmark = load_benchmark()
    rows = benchmark.vad_section(clips=3)
    backends = {row["backend"] for row in rows}
    assert "energy" in backends
    per_backend = 1 + len(benchmark.VAD_NOISES) * (len(benchmark.VAD_SNRS) - 1)
    assert len(rows) == per_backend * len(backends)
    for row in rows:
        assert all(0 <= row[key] <= 1 for key in ("precision", "recall", "f1", "window_false_alarm", "window_miss"))


FAKE_PEER = '''
import json, sys
log = open("{log}", "a")
for line in sys.stdin:
    command = json.loads(line)
    log.write(line)
    log.flush()
    name = command["cmd"]
    if name == "quit":
        break
    answer = {{"ok": True}}
    if name == "setup":
        answer.update(versions={{"macls": "fake"}}, upstream_mser={{"error": "ModuleNotFoundError: mser"}},
                      parameters=123, threads=command["threads"], setup="FakeTdnn on Fbank")
    elif name == "train_epoch":
        answer.update(clips=8, seconds=2.0)
    elif name in ("predict", "model"):
        answer.update(ms=[100.0] * len(command["paths"]))
    print(json.dumps(answer), flush=True)
'''

SMALL_ECAPA = "model_conf.model_args.channels=16,model_conf.model_args.mfa_channels=48,model_conf.model_args.embd_dim=8"


def run_with_fake_peer(tmp_path):
    log = tmp_path / "peer_commands.jsonl"
    worker = tmp_path / "fake_peer.py"
    worker.write_text(FAKE_PEER.format(log=log))
    result = run_script("tools/benchmark.py", "--sections", "peers", "--peers_python", PYTHON, "--peers_worker",
                        worker, "--batch_size", "2", "--batches", "1", "--peers_rounds", "2", "--overwrites",
                        SMALL_ECAPA, "--work_dir", tmp_path, "--json", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    return json.loads(result.stdout.strip().splitlines()[-1]), commands, result.stdout


def test_peers_section_alternates_ours_and_the_peer_and_reports_medians(tmp_path):
    """The peers plumbing with a fake peer worker (no PyPI, no macls): what it is asked, in which order,
    and how its answers land in the table and the JSON."""
    results, commands, stdout = run_with_fake_peer(tmp_path)
    names = [command["cmd"] for command in commands]
    assert names[:2] == ["setup", "warmup"] and names[-1] == "quit"
    assert names.count("train_epoch") == 2 and names.index("predictor") > names.index("train_epoch")
    setup = commands[0]
    assert setup["threads"] == 1 and setup["batch_size"] == 2 and setup["use_gpu"] is False
    predicted = [command["paths"] for command in commands if command["cmd"] == "predict"]
    assert len(predicted) == 1 + 2 and all(len(paths) == 4 for paths in predicted[1:])   # warm-up, 2 rounds
    assert names.count("model") == 1 + 2 and names.index("model") > names.index("predict")
    peers = results["peers"]
    rows = {row["library"]: row for row in peers["rows"]}
    assert set(rows) >= {"mser torch", "macls"}
    assert set(rows) <= {"mser torch", "mser onnx", "mser onnx int8", "mser torch bf16", "macls"}
    assert rows["macls"]["predict_ms"] == 100.0 and rows["macls"]["predict_vs_macls"] == 1.0
    assert rows["macls"]["train_clips_per_s"] == 4.0 and rows["macls"]["train_round_clips_per_s"] == [4.0, 4.0]
    assert rows["macls"]["parameters"] == 123 and rows["macls"]["setup"] == "FakeTdnn on Fbank"
    ours = rows["mser torch"]
    assert ours["predict_ms"] > 0 and len(ours["predict_round_medians_ms"]) == 2 and ours["train_clips_per_s"] > 0
    assert ours["model_ms"] > 0 and len(ours["model_round_medians_ms"]) == 2 and rows["macls"]["model_ms"] == 100.0
    assert "model_ms" not in rows.get("mser onnx", {}) and "model_ms" not in rows.get("mser onnx int8", {})
    if "mser onnx int8" in rows:
        assert rows["mser onnx int8"]["predict_ms"] > 0 and "int8" in rows["mser onnx int8"]["setup"]
    assert ours["predict_vs_macls"] == pytest.approx(ours["predict_ms"] / 100.0, abs=0.01)
    assert "channels=16" in ours["setup"] and ours["parameters"] > 0
    assert len(peers["load_before"]) == 3 and peers["threads"] == 1 and "error" in peers["upstream_mser"]
    assert "## peers" in stdout and "upstream mser: not usable" in stdout


def test_a_peer_that_fails_is_one_line_and_the_rest_still_runs(tmp_path):
    result = run_script("tools/benchmark.py", "--quick", "--sections", "hardware", "--peers", "--peers_python",
                        tmp_path / "no-such-python", "--work_dir", tmp_path, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results["hardware"]["fp32_gflops"] > 0
    assert results["peers"] == {"error": results["peers"]["error"]} and "could not start" in results["peers"]["error"]
    assert f"peers: not measured: {results['peers']['error']}" in result.stdout


def test_peers_is_left_out_unless_asked_for(tmp_path):
    benchmark = load_benchmark()
    assert "peers" not in benchmark.parse_args([]).sections
    assert benchmark.parse_args(["--sections", "infer", "--peers"]).sections == ["infer", "peers"]
    assert benchmark.parse_args(["--sections", "peers"]).sections == ["peers"]


@pytest.mark.network
def test_peer_environment_installs_macls_beside_our_torch(tmp_path):
    """The real peer environment: macls from PyPI with --no-deps, our torch through the .pth file.
    Needs PyPI: skipped offline."""
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable (macls is installed from it)")
    benchmark = load_benchmark()
    python = benchmark.ensure_peer_venv(str(tmp_path / "peers"))
    assert benchmark.peer_missing_module(python) is None   # macls imports, with our torch (checked inside)
    assert benchmark.ensure_peer_venv(str(tmp_path / "peers")) == python   # the second time: nothing to do

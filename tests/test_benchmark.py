"""tools/benchmark.py runs and keeps its --json contract (a reduced --quick set; numbers are not checked)."""
import importlib.util
import json

import pytest

from conftest import REPO, run_script
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

"""tools/benchmark.py runs and keeps its --json contract (a reduced --quick set; numbers are not checked)."""
import json

import pytest

from conftest import run_script
from mser.features import list_featurizers


def test_quick_benchmark_prints_tables_and_one_json_object():
    result = run_script("tools/benchmark.py", "--quick", "--sections", "hardware,features,train,infer",
                        "--batch_size", "4", "--models", "BiLSTM", "--runs", "1", "--json",
                        env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results["meta"]["threads"] == 1 and len(results["meta"]["load_before"]) == 3
    assert results["hardware"]["fp32_gflops"] > 0 and results["hardware"]["bf16_gflops"] > 0
    assert [row["featurizer"] for row in results["features"]] == list_featurizers()
    assert all(row["clips_per_s"] > 0 and row["real_time_factor"] > 0 for row in results["features"])
    (train,) = results["train"]
    assert train["model"] == "BiLSTM" and train["pipeline_clips_per_s"] > 0 and train["model_only_clips_per_s"] > 0
    efficiency = train["pipeline_clips_per_s"] / train["model_only_clips_per_s"]
    assert train["pipeline_efficiency"] == pytest.approx(efficiency, rel=0.05)
    (infer,) = results["infer"]
    assert infer["model"] == "BiLSTM" and infer["ms_per_clip"] > 0 and infer["bf16_ms_per_clip"] > 0
    assert all(f"## {title}" in result.stdout for title in ("featurizers", "training", "inference"))

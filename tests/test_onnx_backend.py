"""MSERPredictor(backend="onnx") and infer.py --backend onnx: exported into the checkpoint folder on
first use, reused while the weights stay the same, exported again when they change, the same labels
as the torch backend, and a fallback to torch with one warning line when a model does not export."""
import json
import shutil

import pytest
import torch

from conftest import run_script
from mser.cli.infer import main
from mser.errors import MSERError

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
from mic_fixtures import LABELS, private_copy, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]
onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e .[onnx])")


@pytest.fixture(scope="module")
def own_model(tiny_model, tmp_path_factory) -> str:
    """A copy of the tiny checkpoint, so that the exports land in this module's folder only."""
    return private_copy(tiny_model, tmp_path_factory, "onnx_backend")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two clips of each class (1.2 and 1.7 s: batches of unequal lengths) and a 5 s recording."""
    import numpy as np
    folder = tmp_path_factory.mktemp("onnx_clips")
    rng = np.random.default_rng(31)
    for label in LABELS:
        for seconds in (1.2, 1.7):
            write_clip(folder / f"{label}_{seconds}.wav", synthetic_clip(label, seconds, rng))
    write_clip(folder / "long.wav", np.concatenate([synthetic_clip("low", 2.5, rng), synthetic_clip("high", 2.5, rng)]))
    return folder


def results(run) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    return {r["audio_path"]: r for r in map(json.loads, run.stdout.splitlines())}


def test_onnx_backend_gives_the_torch_labels_and_reuses_its_export(own_model, clips):
    torch_run = run_script("infer.py", "--model_path", own_model, "--audio_path", clips, "--json", "--hop", "1.0")
    onnx_run = run_script("infer.py", "--model_path", own_model, "--audio_path", clips, "--json", "--hop", "1.0",
                          "--backend", "onnx")
    assert "onnx backend: " in onnx_run.stderr and f"wrote {own_model}/model.onnx" in onnx_run.stderr
    expected, got = results(torch_run), results(onnx_run)
    assert sorted(got) == sorted(expected) and len(got) == 7
    for path, result in expected.items():
        assert got[path]["label"] == result["label"], path
        assert got[path]["score"] == pytest.approx(result["score"], abs=1e-4)
        assert [s["label"] for s in got[path]["segments"]] == [s["label"] for s in result["segments"]]
    again = run_script("infer.py", "--model_path", own_model, "--audio_path", clips / "low_1.2.wav",
                       "--backend", "onnx")
    assert again.returncode == 0 and "exported" not in again.stderr, again.stderr   # the same weights: reused
    assert again.stdout.split()[1] == expected[str(clips / "low_1.2.wav")]["label"]


def test_changed_weights_are_exported_again(own_model, clips, tmp_path):
    from mser.predictor import MSERPredictor
    model = tmp_path / "changed"
    shutil.copytree(own_model, model)
    assert (model / "model.onnx").is_file()   # the export of the test above, now stale
    weights = torch.load(model / "model.pth", weights_only=True)
    weights = {name: value * 1.5 if value.is_floating_point() else value for name, value in weights.items()}
    torch.save(weights, model / "model.pth")
    onnx = MSERPredictor(str(model), backend="onnx")
    assert onnx.backend == "onnx" and "exported from other weights" in onnx.backend_note
    reference = MSERPredictor(str(model))
    for clip in sorted(clips.glob("*_1.7.wav")):
        expected = reference.predict_scores(str(clip))
        got = onnx.predict_scores(str(clip))
        assert max(abs(got[label] - score) for label, score in expected.items()) < 1e-4
    assert "model.onnx" in MSERPredictor(str(model), backend="onnx").backend_note   # reused from now on


def test_a_model_that_does_not_export_falls_back_to_torch(own_model, clips, tmp_path, monkeypatch, capsys):
    import mser.export
    model = tmp_path / "no_export"
    shutil.copytree(own_model, model, ignore=shutil.ignore_patterns("model.onnx"))

    def refuse(*args, **kwargs):
        raise mser.export.ExportError("no ONNX exporter could export this model: features: UnsupportedOp")
    monkeypatch.setattr(mser.export, "try_exporters", refuse)
    assert main(["--model_path", str(model), "--audio_path", str(clips / "noise_1.2.wav"), "--backend", "onnx"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split()[1] == "noise"
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: the onnx backend is not available"), warnings
    assert "UnsupportedOp" in warnings[0] and "using the torch backend" in warnings[0]
    assert not (model / "model.onnx").exists()


def test_an_unknown_backend_is_refused(own_model):
    from mser.predictor import MSERPredictor
    with pytest.raises(MSERError, match="backend must be one of torch, onnx"):
        MSERPredictor(own_model, backend="tensorrt")

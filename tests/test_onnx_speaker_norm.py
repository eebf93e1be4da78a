"""ONNX export of a model trained with speaker normalisation: the graph standardises features with
the training set's global statistics (waveform graph and features-only graph), says so in its
metadata, and gives what MSERPredictor.predict gives for a clip without a speaker."""
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, run_script, tiny_overwrites
from mser.export import MAX_DIFFERENCE, export_onnx, features_of, has_onnxscript

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
pytest_plugins = ["mic_fixtures"]
pytestmark = pytest.mark.filterwarnings("ignore::mser.errors.BandwidthWarning")   # a fifth are telephone clips

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e .[onnx])")


@pytest.fixture(scope="module")
def normalised_tdnn(demo_lists, tmp_path_factory) -> str:
    """One epoch of a tiny TDNN over log-mel features, trained through train.py with
    preprocess_conf.speaker_norm.enable=true (a model that exports from waveforms)."""
    work = tmp_path_factory.mktemp("onnx_speaker_norm")
    config = yaml.safe_load((REPO / "configs" / "tdnn_prosody.yml").read_text())
    config["preprocess_conf"] = {"feature_method": "Fbank", "method_args": {"num_mel_bins": 40},
                                 "speaker_norm": {"enable": True}}
    config["model_conf"]["model_args"] = {"channels": 32, "stats_channels": 64, "embd_dim": 32}
    (work / "tdnn.yml").write_text(yaml.safe_dump(config))
    items = (item.split("=", 1) for item in tiny_overwrites(demo_lists).split(","))
    overwrites = ",".join(f"{key}={value}" for key, value in items   # the lists, lengths, one epoch
                          if not key.startswith(("model_conf.", "preprocess_conf.")))
    result = run_script("train.py", "--configs", work / "tdnn.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", work / "models", "--overwrites", overwrites)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "speaker normalisation: statistics of" in result.stdout
    return str(work / "models" / "TDNN_Fbank" / "best_model")


def demo_clips(demo_lists, count: int = 4) -> list:
    """The first clips of the demo test list."""
    return [line.split("\t")[0] for line in (demo_lists / "test_list.txt").read_text().splitlines()[:count]]


def onnx_probabilities(session, input_name: str, predictor, waveform: np.ndarray) -> np.ndarray:
    """(num_class,) probabilities of one loaded clip from the graph."""
    inputs = waveform[None, :] if input_name == "waveforms" else features_of(predictor, waveform[None, :])
    return session.run(["probabilities"], {input_name: inputs})[0][0]


def assert_matches_predictor(path: str, demo_lists, model_dir: str, input_name: str) -> None:
    """The graph's metadata, and its probabilities against MSERPredictor.predict (no speaker)."""
    from mser.predictor import MSERPredictor
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["speaker_norm"] == "global" and meta["input"] == input_name
    predictor = MSERPredictor(model_dir)
    for clip in demo_clips(demo_lists):
        expected = predictor.predict_scores(clip)
        probabilities = onnx_probabilities(session, input_name, predictor, predictor.load(clip))
        got = dict(zip(meta["labels"].split(","), probabilities.tolist()))
        assert max(abs(got[label] - score) for label, score in expected.items()) < MAX_DIFFERENCE, clip
        assert max(got, key=got.get) == predictor.predict(clip)[0]


def test_waveform_graph_applies_global_statistics(normalised_tdnn, demo_lists, tmp_path):
    if not has_onnxscript():
        pytest.skip("the waveform graph needs onnxscript (pip install -e .[onnx])")
    output = tmp_path / "model.onnx"
    run = run_script("tools/export_onnx.py", "--model_path", normalised_tdnn, "--audio_path",
                     demo_clips(demo_lists)[0], "--output", output)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "metadata speaker_norm=global" in run.stdout
    assert_matches_predictor(str(output), demo_lists, normalised_tdnn, "waveforms")


def test_features_graph_applies_global_statistics(normalised_tdnn, demo_lists, tmp_path, monkeypatch):
    import mser.export
    monkeypatch.setattr(mser.export, "has_onnxscript", lambda: False)   # the tracing exporter: features in
    result = export_onnx(normalised_tdnn, demo_clips(demo_lists)[0], str(tmp_path / "features.onnx"),
                         log=lambda line: None)
    assert result["input"] == "features" and result["speaker_norm"] == "global"
    assert_matches_predictor(result["path"], demo_lists, normalised_tdnn, "features")


def test_graph_without_the_statistics_would_differ(normalised_tdnn, demo_lists):
    """What the export used to do (the model straight on the featurizer's output) disagrees with the
    predictor: the tests above would catch a graph that leaves the normalisation out."""
    from mser.export import FeatureClassifier
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(normalised_tdnn)
    waveform = predictor.load(demo_clips(demo_lists)[0])
    with torch.inference_mode():
        _, unnormalised = FeatureClassifier(predictor.model).eval()(torch.from_numpy(features_of(predictor,
                                                                                                 waveform[None])))
    assert np.max(np.abs(unnormalised.numpy()[0] - predictor.probabilities([waveform])[0])) > MAX_DIFFERENCE


def test_model_without_speaker_norm_says_none(tiny_model, tmp_path, monkeypatch):
    import mser.export
    from mic_fixtures import synthetic_clip, write_clip
    clip = write_clip(tmp_path / "low.wav", synthetic_clip("low", 1.5, np.random.default_rng(3)))
    monkeypatch.setattr(mser.export, "has_onnxscript", lambda: False)
    result = export_onnx(tiny_model, str(clip), str(tmp_path / "tiny.onnx"), log=lambda line: None)
    assert result["speaker_norm"] == "none"
    session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["speaker_norm"] == "none"

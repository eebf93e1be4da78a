"""Test-time views (mser.views): the predictor, eval.py, infer.py and tools/robustness.py with --views."""
import json
import warnings

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_script
from mser.errors import BandwidthWarning, ConfigError
from mser.views import VIEWS


def band_energy(samples: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_the_telephone_view_passes_the_telephone_band_only():
    t = np.arange(16001) / 16000   # an odd length: the view keeps it
    tones = (0.2 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)
             + 0.2 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    viewed = VIEWS.get("telephone")(tones, 16000)
    assert viewed.shape == tones.shape and viewed.dtype == np.float32
    kept = band_energy(viewed, 16000, 900, 1100) / band_energy(tones, 16000, 900, 1100)
    assert 0.8 < kept < 1.2
    assert band_energy(viewed, 16000, 5900, 6100) < 1e-3 * band_energy(tones, 16000, 5900, 6100)
    assert band_energy(viewed, 16000, 90, 110) < 0.05 * band_energy(tones, 16000, 90, 110)


@pytest.mark.parametrize("name", VIEWS.names())
@pytest.mark.parametrize("num_samples", [12345, 400])
def test_every_view_keeps_the_length_and_stays_finite_on_silence(name, num_samples):
    rng = np.random.default_rng(1)
    clip = (0.3 * rng.standard_normal(num_samples)).astype(np.float32)
    for samples in (clip, np.zeros(num_samples, np.float32)):
        viewed = VIEWS.get(name)(samples, 16000)
        assert viewed.shape == samples.shape and viewed.dtype == np.float32
        assert np.isfinite(viewed).all() and np.abs(viewed).max() <= 1.5


def test_the_gsm_view_is_a_narrow_band_copy_of_the_same_length():
    t = np.arange(16001) / 16000
    tones = (0.2 * np.sin(2 * np.pi * 700 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    viewed = VIEWS.get("gsm")(tones, 16000)
    assert viewed.shape == tones.shape and viewed.dtype == np.float32
    assert band_energy(viewed, 16000, 600, 800) > 0.3 * band_energy(tones, 16000, 600, 800)
    assert band_energy(viewed, 16000, 5900, 6100) < 1e-3 * band_energy(tones, 16000, 5900, 6100)


def test_the_overdrive_view_does_not_depend_on_the_input_gain():
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    overdrive = VIEWS.get("overdrive")
    viewed = overdrive(clip, 16000)
    assert viewed.dtype == np.float32 and np.abs(viewed).max() == 1.0
    assert np.mean(np.abs(viewed) == 1.0) > 0.01                  # the loudest samples are clipped
    np.testing.assert_allclose(overdrive(clip * 0.05, 16000), viewed, atol=1e-5)
    np.testing.assert_allclose(overdrive(clip * 3.0, 16000), viewed, atol=1e-5)
    assert not overdrive(np.zeros(800, np.float32), 16000).any()   # digital silence stays silence


def test_view_names_are_checked():
    from mser.views import check_views
    assert check_views("telephone, pitch_up") == ["telephone", "pitch_up"]
    assert check_views("") == []
    with pytest.raises(ConfigError, match="did you mean 'telephone'"):
        check_views(["telefone"])
    with pytest.raises(ConfigError, match="repeat"):
        check_views("telephone,telephone")


def speaker_clips(list_path, count=6):
    rows = [line.split("\t") for line in list_path.read_text().splitlines()]
    paths = [row[0] for row in rows if row[2] == rows[0][2]][:count]
    return [path if path.startswith("/") else str(REPO / path) for path in paths]


@pytest.mark.parametrize("statistics", ["whole", "running"])
def test_views_average_the_clip_and_its_telephone_copy_each_with_its_own_statistics(
        statistics, normalised_model, demo_lists):
    from mser import MSERPredictor
    from mser.views import ViewPredictor, telephone
    model, _ = normalised_model
    predictor = MSERPredictor(str(model), use_gpu=False, views=["telephone"])
    assert isinstance(predictor, ViewPredictor) and predictor.views == ["telephone"]
    as_recorded, by_phone = (MSERPredictor(str(model), use_gpu=False) for _ in range(2))
    with warnings.catch_warnings():   # the demo corpus has telephone-band clips
        warnings.simplefilter("ignore", BandwidthWarning)
        waveforms = [as_recorded.load(path) for path in speaker_clips(demo_lists / "test_list.txt")]
    together = predictor.batched_probabilities(waveforms, "visitor", statistics)
    expected = (as_recorded.batched_probabilities(waveforms, "visitor", statistics)
                + by_phone.batched_probabilities([telephone(w, 16000) for w in waveforms], "visitor", statistics)) / 2
    np.testing.assert_allclose(together, expected, rtol=0, atol=1e-5)
    # the telephone views joined a statistics table of their own
    assert [part.speaker_norm.speakers["visitor"].clips for part in predictor.parts] == [len(waveforms)] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BandwidthWarning)
        alone = predictor.predict_scores(waveforms[0], sample_rate=16000)
        embedding = predictor.embed(waveforms[0], sample_rate=16000)
    expected_alone = (as_recorded.probabilities([waveforms[0]]) + by_phone.probabilities(
        [telephone(waveforms[0], 16000)])) / 2
    assert [alone[label] for label in predictor.labels] == pytest.approx(expected_alone[0].tolist(), abs=1e-5)
    assert embedding.shape == as_recorded.embeddings([waveforms[0]])[0].shape
    recording = np.concatenate(waveforms)   # one session per view, each window heard through each view
    segments = predictor.segment_probabilities(recording, 1.0, 0.5, sample_rate=16000, statistics=statistics)
    plain = as_recorded.segment_probabilities(recording, 1.0, 0.5, sample_rate=16000, statistics=statistics)
    assert [(start, end) for start, end, _ in segments] == [(start, end) for start, end, _ in plain]
    np.testing.assert_allclose(np.stack([p for _, _, p in segments]).sum(axis=1), 1.0, atol=1e-5)


def test_eval_with_views_scores_the_predictors_probabilities(normalised_model, demo_lists, tmp_path):
    from mser import MSERPredictor
    model, _ = normalised_model
    test_list = demo_lists / "test_list.txt"
    result = run_script("eval.py", "--resume_model", model, "--use_gpu", "false", "--json", "--views", "telephone",
                        "--output_dir", tmp_path, "--test_list", test_list)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["views"] == ["as_recorded", "telephone"]
    assert "test-time views as_recorded, telephone" in result.stdout
    predictor = MSERPredictor(str(model), use_gpu=False, views="telephone")
    rows = [line.split("\t") for line in test_list.read_text().splitlines()]
    predicted, truth = [], []
    for speaker in dict.fromkeys(row[2] for row in rows):
        mine = [row for row in rows if row[2] == speaker]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BandwidthWarning)
            waveforms = [predictor.load(row[0] if row[0].startswith("/") else str(REPO / row[0])) for row in mine]
        predicted.extend(predictor.batched_probabilities(waveforms, speaker, "whole").argmax(1).tolist())
        truth.extend(int(row[1]) for row in mine)
    assert metrics["num_samples"] == len(rows)
    assert metrics["accuracy"] == pytest.approx(np.mean(np.array(predicted) == np.array(truth)), abs=1e-9)
    assert (tmp_path / "metrics.json").is_file()


def test_infer_with_views_and_its_errors(normalised_model, demo_lists):
    model, _ = normalised_model
    clip = speaker_clips(demo_lists / "test_list.txt", 1)[0]
    result = run_script("infer.py", "--model_path", model, "--audio_path", clip, "--use_gpu", "false", "--json",
                        "--views", "telephone,pitch_down")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"]
    unknown = run_script("infer.py", "--model_path", model, "--audio_path", clip, "--use_gpu", "false",
                         "--views", "telefone")
    assert_one_line_error(unknown, "unknown test-time view 'telefone' (did you mean 'telephone'?)")
    with_configs = run_script("eval.py", "--resume_model", model, "--use_gpu", "false", "--views", "telephone",
                              "--configs", "configs/bi_lstm.yml", "--output_dir", "")
    assert_one_line_error(with_configs, "test-time views evaluate a checkpoint with its stored config")


def test_robustness_tool_runs_the_predictor_with_views(normalised_model, demo_lists, tmp_path):
    model, _ = normalised_model
    rows = (demo_lists / "test_list.txt").read_text().splitlines()[:8]
    (tmp_path / "list.txt").write_text("".join(f"{row}\n" for row in rows))
    result = run_script("tools/robustness.py", "--model_path", model, "--test_list", tmp_path / "list.txt",
                        "--conditions", "clean,telephone_8k,gsm_8k", "--views", "telephone",
                        "--json", tmp_path / "out.json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert sorted(report) == ["clean", "gsm_8k", "telephone_8k"]
    assert all(values["num_samples"] == 8 for values in report.values())


def test_a_live_window_with_views_joins_the_sessions_statistics_of_every_view(normalised_model, demo_lists):
    from mser import MSERPredictor
    from mser.cli.infer_record import describe_prediction
    predictor = MSERPredictor(str(normalised_model[0]), use_gpu=False, views="telephone")
    assert predictor.normalises_speakers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BandwidthWarning)
        window = predictor.load(speaker_clips(demo_lists / "test_list.txt", 1)[0])
        line = describe_prediction(predictor, window, 0.0, "microphone session")
    assert line.split()[0] in predictor.labels
    assert [part.speaker_norm.speakers["microphone session"].clips for part in predictor.parts] == [1, 1]

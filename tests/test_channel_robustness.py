"""Features that stay in range on digital silence and empty bands, and tools/robustness.py."""
import json

import numpy as np
import pytest
import torch

from conftest import REPO, run_script
from mser.errors import ConfigError
from mser.features import build_featurizer

pytest.register_assert_rewrite("mic_fixtures")
from mic_fixtures import LABELS, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]


def test_the_noise_floor_equals_the_mel_energies_of_white_noise_at_that_level():
    fbank = build_featurizer("Fbank", num_mel_bins=40, noise_floor_db=-60.0)
    plain = build_featurizer("Fbank", num_mel_bins=40)
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 20) * 10 ** (-60 / 20)).float()
    measured = plain(noise[None])[0][0].exp().mean(dim=0)   # mean mel energy per bin over 2,000 frames
    ratio = measured / fbank.mel_floor
    assert torch.all((ratio > 0.9) & (ratio < 1.1)), ratio


def test_digital_silence_stays_at_the_floor_instead_of_the_epsilon():
    fbank = build_featurizer("Fbank", num_mel_bins=40, noise_floor_db=-75.0)
    silence, _ = fbank(torch.zeros(1, 8000))
    assert torch.allclose(silence[0], fbank.mel_floor.log().expand_as(silence[0]), atol=1e-4)
    assert silence.min() > -3.0   # Kaldi's epsilon floor gives -15.9 in every bin
    kaldi_floor, _ = build_featurizer("Fbank", num_mel_bins=40)(torch.zeros(1, 8000))
    assert torch.allclose(kaldi_floor, torch.full_like(kaldi_floor, float(np.log(np.finfo(np.float32).eps))))


def test_the_prosody_energy_channel_has_the_same_floor():
    prosody = build_featurizer("FbankProsody", num_mel_bins=40, noise_floor_db=-75.0)
    features, _ = prosody(torch.zeros(1, 8000))
    energy = features[0, :, 40 + prosody.prosody_names.index("energy")]
    assert torch.allclose(energy, torch.full_like(energy, -7.5), atol=0.01)   # bels re full scale
    loud = torch.sin(torch.arange(8000) * 2 * np.pi * 200 / 16000)[None] * 0.5
    loud_energy = prosody(loud)[0][0, :, 40 + prosody.prosody_names.index("energy")]
    assert torch.all(loud_energy > -1.0)   # a -9 dBFS tone is far above the floor: unchanged


@pytest.mark.parametrize("level", [5.0, -200.0])
def test_a_noise_floor_out_of_range_is_refused(level):
    with pytest.raises(ConfigError, match="noise_floor_db"):
        build_featurizer("Fbank", noise_floor_db=level)


def test_robustness_tool_reports_every_condition(tiny_model, tmp_path):
    rng = np.random.default_rng(5)
    lines = []
    for index in range(9):
        label = index % len(LABELS)
        path = write_clip(tmp_path / f"clip{index}.wav", synthetic_clip(LABELS[label], 1.5, rng))
        lines.append(f"{path}\t{label}\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    result = run_script("tools/robustness.py", "--model_path", tiny_model, "--test_list", tmp_path / "list.txt",
                        "--json", tmp_path / "out.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert {"clean", "silence_pad", "telephone_8k", "mp3", "ogg", "clipping", "dc_offset"} <= set(report)
    assert report["clean"]["flip_rate"] == 0.0
    for values in report.values():
        assert 0.0 <= values["unweighted_accuracy"] <= 1.0 and 0.0 <= values["flip_rate"] <= 1.0
        assert values["num_samples"] == 9


def test_robustness_tool_refuses_an_unknown_condition(tiny_model, tmp_path):
    result = run_script("tools/robustness.py", "--model_path", tiny_model, "--conditions", "clean,underwater")
    assert result.returncode == 2 and "unknown condition" in result.stderr


def test_dc_offset_and_digital_silence_are_removed_and_real_noise_is_kept():
    from mser.audio import remove_dc_and_digital_silence
    rng = np.random.default_rng(3)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    silence = np.zeros(8000, np.float32)
    padded = np.concatenate([silence, speech[:8000], silence, speech[8000:], silence]) + np.float32(0.05)
    cleaned = remove_dc_and_digital_silence(padded, 16000)
    assert cleaned.size == speech.size
    assert np.allclose(cleaned, speech - speech.mean(), atol=1e-6)
    quiet_noise = np.round(3e-4 * rng.standard_normal(16000) * 32768) / 32768   # -70 dBFS, 16-bit
    assert remove_dc_and_digital_silence(quiet_noise.astype(np.float32), 16000).size == 16000
    all_silence = np.zeros(4000, np.float32)
    assert remove_dc_and_digital_silence(all_silence, 16000).size == 4000


def test_padding_with_digital_silence_or_a_dc_offset_does_not_change_a_prediction(tiny_model):
    from mser import MSERPredictor
    predictor = MSERPredictor(model_path=tiny_model, use_gpu=False)
    rng = np.random.default_rng(11)
    for label in LABELS:
        clip = synthetic_clip(label, 1.2, rng)
        padded = np.concatenate([np.zeros(8000, np.float32), clip, np.zeros(4000, np.float32)])
        clean = predictor.predict_scores(clip, sample_rate=16000)
        for changed in (padded, clip + np.float32(0.05)):
            scores = predictor.predict_scores(changed, sample_rate=16000)
            assert all(abs(scores[name] - clean[name]) < 1e-3 for name in clean), (label, scores, clean)


def robustness_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location("robustness", REPO / "tools" / "robustness.py")
    robustness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(robustness)
    return robustness


def test_the_faint_noise_condition_is_50_dB_down_and_the_same_every_run():
    clip = synthetic_clip(LABELS[0], 1.5, np.random.default_rng(1)).astype(np.float32)
    noisy, rate = robustness_tool().CONDITIONS["noise_50dB"](clip)
    again, _ = robustness_tool().CONDITIONS["noise_50dB"](clip)
    np.testing.assert_array_equal(noisy, again)
    def power(samples):
        return np.mean(np.square(samples, dtype=np.float64))

    ratio_db = 10 * np.log10(power(noisy - clip) / power(clip))
    assert rate == 16000 and ratio_db == pytest.approx(-50.0, abs=0.5)


def test_each_session_hears_its_speakers_clips_in_a_seeded_order():
    robustness = robustness_tool()
    speakers = ["a"] * 12 + ["b"] * 12
    shuffled = robustness.session_orders(speakers, seed=0)
    assert sorted(shuffled) == ["a", "b"]
    assert sorted(shuffled["a"]) == list(range(12)) and sorted(shuffled["b"]) == list(range(12, 24))
    assert shuffled["a"] != list(range(12))               # not the list's (emotion-sorted) order
    assert robustness.session_orders(speakers, seed=0) == shuffled
    assert robustness.session_orders(speakers, seed=-1) == {"a": list(range(12)), "b": list(range(12, 24))}

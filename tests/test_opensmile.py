"""openSMILE featurizers (eGeMAPS, ComParE, eGeMAPS_LLD): sizes, padding, non-finite values, the scaler, train.py."""
import json
import math
import sys

import numpy as np
import pytest
import torch

from conftest import run_script
from mser.errors import ConfigError
from conftest import REPO
from mser.audio import load_audio
from mser.features import build_featurizer
from mser.features.windows import fixed_length_windows
from mser.vad import silero_available

pytest.importorskip("opensmile", reason='needs the opensmile package: pip install "mser[opensmile]"')

SAMPLE_RATE = 16000
DEMO_CLIP = REPO / "dataset" / "demo" / "en-david" / "en-david_angry_00.flac"


def voice(seconds: float, f0: float = 140.0, seed: int = 0) -> torch.Tensor:
    """A vowel-like tone with a little noise and a loudness contour."""
    time = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * math.pi * f0 * (time + 0.02 * torch.sin(2 * math.pi * 3 * time))
    tone = sum(0.6 ** k * torch.sin((k + 1) * phase) for k in range(6))
    noise = 0.01 * torch.randn(len(time), generator=torch.Generator().manual_seed(seed))
    return 0.1 * tone * (0.6 + 0.4 * torch.sin(2 * math.pi * 2 * time)) + noise


@pytest.fixture(scope="module")
def egemaps():
    return build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE).eval()


def padded(clips, fill: float = 0.3):
    lengths = torch.tensor([len(clip) for clip in clips])
    batch = torch.full((len(clips), int(lengths.max()) + 800), fill)  # padding that is not silence
    for row, clip in enumerate(clips):
        batch[row, :len(clip)] = clip
    return batch, lengths


@pytest.mark.parametrize("name, size", [("eGeMAPS", 88), ("ComParE", 6373)])
def test_feature_sets_have_their_standard_sizes(name, size):
    module = build_featurizer(name, sample_rate=SAMPLE_RATE)
    assert module.clip_level and module.feature_dim == len(module.feature_names) == size
    features, frame_lengths = module(voice(0.5)[None])
    assert features.shape == (1, 1, size) and frame_lengths.tolist() == [1]
    assert features.dtype == torch.float32 and torch.isfinite(features).all()


def test_egemaps_names_its_pitch_and_loudness(egemaps):
    assert "F0semitoneFrom27.5Hz_sma3nz_amean" in egemaps.feature_names
    assert "loudness_sma3_amean" in egemaps.feature_names
    features = egemaps.extract(torch.stack([voice(1.0, 120.0), voice(1.0, 240.0)]))
    f0 = features[:, egemaps.feature_names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert abs((f0[1] - f0[0]).item() - 12.0) < 1.0  # one octave higher: 12 semitones


def test_padding_never_changes_a_clip(egemaps):
    clips = [voice(1.0), voice(0.4, 200.0, seed=1), voice(0.03, seed=2)]  # the last is shorter than 60 ms
    batch, lengths = padded(clips)
    features, _ = egemaps(batch, lengths)
    for row, clip in enumerate(clips):
        alone, _ = egemaps(clip[None])
        torch.testing.assert_close(features[row], alone[0], rtol=0, atol=0)
    assert torch.isfinite(features).all()


def test_non_finite_values_become_the_training_mean(egemaps, monkeypatch):
    module = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE)
    clips = torch.stack([voice(0.5, seed=seed) for seed in range(4)])
    module.fit_scaler(module.extract(clips).numpy())
    original = type(module).functionals

    def with_a_nan(self, clip, speech_seconds=None):
        values = original(self, clip, speech_seconds)
        values[3] = np.nan
        return values

    monkeypatch.setattr(type(module), "functionals", with_a_nan)
    features, _ = module(clips)
    assert torch.isfinite(features).all() and torch.equal(features[:, 0, 3], torch.zeros(4))


def test_scaler_fit_save_load_round_trip(egemaps, tmp_path):
    module = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE)
    batch, lengths = padded([voice(0.6, f0, seed) for seed, f0 in enumerate((110.0, 150.0, 190.0, 230.0))])
    raw = module.extract(batch, lengths)
    assert torch.equal(module(batch, lengths)[0][:, 0], raw)  # the identity until fitted
    module.fit_scaler(raw.numpy())
    scaled = module(batch, lengths)[0][:, 0]
    assert scaled.mean(dim=0).abs().max() < 1e-3
    path = tmp_path / "lists" / "eGeMAPS_scaler.json"
    module.save_scaler(str(path))
    assert json.loads(path.read_text())["feature_names"] == module.feature_names
    loaded = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, scaler_path=str(path))
    torch.testing.assert_close(loaded(batch, lengths)[0][:, 0], scaled)
    restored = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE)
    restored.load_state_dict(module.state_dict())  # the checkpoint path: buffers, not the JSON
    torch.testing.assert_close(restored(batch, lengths)[0][:, 0], scaled)
    with pytest.raises(ConfigError, match="other features"):
        build_featurizer("ComParE", sample_rate=SAMPLE_RATE, scaler_path=str(path))


def test_levelled_analysis_keeps_the_level_as_the_last_value():
    levelled = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, analysis_dBFS=-20, append_level=True)
    assert levelled.feature_dim == 89 and levelled.feature_names[-1] == "level_dBFS"
    clip = voice(1.0)
    loud, quiet = levelled.extract(torch.stack([clip, 0.1 * clip]))
    assert loud[-1].item() == pytest.approx(10 * math.log10(clip.double().square().mean().item()), abs=1e-4)
    assert (loud[-1] - quiet[-1]).item() == pytest.approx(20.0, abs=1e-3)   # 0.1 x is 20 dB down
    torch.testing.assert_close(loud[:-1], quiet[:-1], rtol=1e-3, atol=1e-3)   # openSMILE heard both at -20 dBFS
    plain = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE).extract(torch.stack([clip, 0.1 * clip]))
    assert (plain[0] - plain[1]).abs().max() > 1.0   # without levelling the functionals move with the level
    silence = levelled.extract(torch.zeros(1, SAMPLE_RATE))
    assert silence[0, -1].item() == -100.0


def test_the_trackers_pitch_level_comes_last_and_changes_nothing_else():
    both = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, analysis_dBFS=-20, append_level=True,
                            append_pitch_level=True)
    assert both.feature_dim == 90 and both.feature_names[-2:] == ["level_dBFS", "pitch_level_st"]
    assert "pitch_tracker" not in "".join(both.state_dict())   # the tracker's buffers are not saved
    clips = [voice(1.0, f0=140.0), voice(1.0, f0=220.0, seed=1)]
    values = both.extract(torch.stack(clips))
    for row, f0 in zip(values, (140.0, 220.0)):
        assert row[-1].item() == pytest.approx(12 * math.log2(f0 / 27.5), abs=1.0)   # semitones re 27.5 Hz
    without = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, analysis_dBFS=-20, append_level=True)
    torch.testing.assert_close(values[:, :-1], without.extract(torch.stack(clips)))
    silence = both.extract(torch.zeros(1, SAMPLE_RATE))   # no voiced frame: the scaler's mean (0 unfitted)
    assert silence[0, -1].item() == 0.0 and torch.isfinite(silence).all()


def test_the_clips_log_duration_comes_last_and_changes_nothing_else():
    timed = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, analysis_dBFS=-20, append_level=True,
                             append_pitch_level=True, append_duration=True)
    assert timed.feature_dim == 91 and timed.feature_names[-3:] == ["level_dBFS", "pitch_level_st", "duration_log_s"]
    clips = torch.stack([voice(1.5), torch.cat([voice(0.75, seed=1), torch.zeros(SAMPLE_RATE * 3 // 4)])])
    lengths = torch.tensor([clips.shape[1], SAMPLE_RATE * 3 // 4])   # the second clip: 0.75 s valid
    values = timed.extract(clips, lengths)
    assert values[:, -1].tolist() == pytest.approx([math.log(1.5), math.log(0.75)], abs=1e-6)
    untimed = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, analysis_dBFS=-20, append_level=True,
                               append_pitch_level=True)
    torch.testing.assert_close(values[:, :-1], untimed.extract(clips, lengths))
    # shorter than openSMILE's longest window: padded for openSMILE, timed as it came
    brief = timed.extract(voice(0.03)[None])
    assert brief[0, -1].item() == pytest.approx(math.log(0.03), abs=1e-3) and torch.isfinite(brief).all()



@pytest.mark.skipif(not silero_available(), reason="silero-vad not installed")
def test_the_speech_duration_leaves_out_the_pauses_around_the_words():
    timed = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, append_duration=True, append_speech_duration=True)
    assert timed.feature_dim == 90 and timed.feature_names[-2:] == ["duration_log_s", "speech_duration_log_s"]
    speech = torch.from_numpy(load_audio(str(DEMO_CLIP), SAMPLE_RATE))
    quiet = 0.001 * torch.randn(SAMPLE_RATE, generator=torch.Generator().manual_seed(3))   # 1 s of room noise
    noise = 0.05 * torch.randn(2 * SAMPLE_RATE, generator=torch.Generator().manual_seed(4))
    clips = [speech, torch.cat([quiet, speech, quiet]), noise]
    values = timed.extract(*padded(clips))
    assert values[1, -2].item() == pytest.approx(math.log(len(speech) / SAMPLE_RATE + 2), abs=1e-4)
    assert values[1, -1].item() == pytest.approx(values[0, -1].item(), abs=0.1)   # the pauses do not count
    assert values[1, -1] < values[1, -2] - 0.5
    assert values[2, -1].item() == pytest.approx(math.log(2.0), abs=1e-4)   # no speech found: the clip's duration
    untimed = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, append_duration=True)
    torch.testing.assert_close(values[:, :-1], untimed.extract(*padded(clips)))
    with fixed_length_windows():   # windows cut from a stream: the scaler's mean (0 unfitted), as for the duration
        assert timed.extract(speech[None])[0, -2:].tolist() == [0.0, 0.0]


def test_the_speech_duration_without_silero_is_a_config_error(monkeypatch):
    monkeypatch.setattr("mser.vad.silero_available", lambda: False)
    with pytest.raises(ConfigError, match=r'eGeMAPS: append_speech_duration needs Silero VAD: pip install "mser\[vad'):
        build_featurizer("eGeMAPS", append_speech_duration=True)


def test_dropped_functionals_leave_the_others_as_they_were():
    dropped = ["mfcc1_sma3_stddevNorm", "F3bandwidth_sma3nz_amean"]
    full = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, append_level=True)
    fewer = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, append_level=True, drop_functionals=dropped)
    assert fewer.feature_dim == len(fewer.feature_names) == 87 and fewer.feature_names[-1] == "level_dBFS"
    assert not set(dropped) & set(fewer.feature_names)
    kept = [full.feature_names.index(name) for name in fewer.feature_names]
    clips = torch.stack([voice(0.8), voice(0.8, f0=190.0, seed=2)])
    torch.testing.assert_close(fewer.extract(clips), full.extract(clips)[:, kept])
    # null (what --overwrites ...drop_functionals=null gives) drops none
    assert build_featurizer("eGeMAPS", drop_functionals=None).feature_names == build_featurizer("eGeMAPS").feature_names


@pytest.mark.parametrize("drop, message", [
    (["mfcc1_sma3_stddevnorm"], r"drop_functionals names 'mfcc1_sma3_stddevnorm', which is not one of its 88"),
    ("mfcc1_sma3_stddevNorm", r"drop_functionals must be a list of functional names"),
])
def test_a_functional_it_cannot_drop_is_a_config_error(drop, message):
    with pytest.raises(ConfigError, match=rf"eGeMAPS: {message}"):
        build_featurizer("eGeMAPS", drop_functionals=drop)


def test_dropping_every_functional_is_a_config_error(egemaps):
    with pytest.raises(ConfigError, match="leaves none of its functionals"):
        build_featurizer("eGeMAPS", drop_functionals=list(egemaps.feature_names))

def test_contours_fill_pauses_and_keep_the_level():
    contours = build_featurizer("eGeMAPS_LLD", sample_rate=SAMPLE_RATE, analysis_dBFS=-20, append_level=True).eval()
    names = contours.feature_names
    assert contours.feature_dim == 27 and names[-2:] == ["voiced", "level_dBFS"] and names[10].startswith("F0")
    clip = torch.cat([voice(0.6), torch.zeros(SAMPLE_RATE // 2), voice(0.6, f0=180.0, seed=1)])
    features, frames = contours(torch.stack([clip, 0.1 * clip]))
    assert frames.tolist() == [166, 166]   # 1.7 s: one frame every 10 ms, the last ending 50 ms before the end
    loud, quiet = features
    voiced = loud[:, names.index("voiced")] == 1.0
    assert 0.4 < voiced.float().mean() < 0.9 and not voiced[70:100].any()   # the pause (0.6-1.1 s) is unvoiced
    voiced_only = [i for i, name in enumerate(names) if name.endswith("nz")]
    assert len(voiced_only) == 15
    median = loud[voiced][:, voiced_only].median(dim=0).values
    for column, value in zip(voiced_only, median):   # the pause holds the voiced frames' median, not 0 or -201
        assert torch.allclose(loud[~voiced, column], loud[~voiced, column][0]) and loud[~voiced, column][0] != 0
        assert abs(loud[~voiced, column][0] - value) <= (loud[voiced, column].max() - loud[voiced, column].min())
    assert 12 * math.log2(140 / 27.5) - 1 < median[0] < 12 * math.log2(180 / 27.5) + 1   # F0 in semitones
    level = loud[:, -1]
    assert torch.all(level == level[0]) and (level[0] - quiet[0, -1]).item() == pytest.approx(20.0, abs=1e-3)
    torch.testing.assert_close(loud[:, :-1], quiet[:, :-1], rtol=1e-3, atol=1e-3)   # both heard at -20 dBFS
    silence, _ = contours(torch.zeros(1, SAMPLE_RATE))
    assert torch.isfinite(silence).all() and silence[0, :, voiced_only].abs().sum() == 0
    assert silence[0, 0, -1].item() == -100.0


@pytest.mark.parametrize("name", ["eGeMAPS", "eGeMAPS_LLD"])
def test_analysis_level_out_of_range_is_a_config_error(name):
    with pytest.raises(ConfigError, match=rf"{name}: analysis_dBFS must lie in \[-80, 0\] dBFS, got 6"):
        build_featurizer(name, analysis_dBFS=6)


def test_missing_package_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile now raises ImportError
    with pytest.raises(ConfigError, match=r'eGeMAPS needs the opensmile package: pip install "mser\[opensmile\]"'):
        build_featurizer("eGeMAPS")


def train_on_the_demo_lists(demo_lists, tmp_path, config: str, changes: dict, *arguments) -> str:
    """train.py on the demo lists with a cache in tmp_path and a few changes; its standard output."""
    overwrites = {"dataset_conf.train_list": demo_lists / "train_list.txt",
                  "dataset_conf.test_list": demo_lists / "test_list.txt",
                  "dataset_conf.label_list_path": demo_lists / "label_list.txt",
                  "dataset_conf.eval_conf.max_duration": 2.0,
                  "dataset_conf.feature_cache.cache_dir": tmp_path / "cache",
                  "train_conf.max_epoch": 2, **changes}
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", *arguments,
                        "--save_model_path", tmp_path / "models", "--log_dir", "",
                        "--overwrites", ",".join(f"{key}={value}" for key, value in overwrites.items()))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "test set, best model" in result.stdout
    return result.stdout


def assert_infers_a_label(demo_lists, model) -> None:
    clip = (demo_lists / "test_list.txt").read_text().splitlines()[0].split("\t")[0]
    inferred = run_script("infer.py", "--model_path", model, "--audio_path", clip, "--json")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    labels = (demo_lists / "label_list.txt").read_text().split()
    assert json.loads(inferred.stdout.strip().splitlines()[-1])["label"] in labels


@pytest.mark.parametrize("method_args", [{}, {"analysis_dBFS": "null", "append_level": "false"},   # level kept, not
                                         {"append_pitch_level": "true"}, {"append_duration": "false"},
                                         {"drop_functionals": "null"},   # the default drops 28 (egemaps.yml)
                                         {"append_speech_duration": "false"}])
def test_train_and_infer_with_the_egemaps_config(demo_lists, tmp_path, method_args):
    changes = {f"preprocess_conf.method_args.{key}": value for key, value in method_args.items()}
    output = train_on_the_demo_lists(demo_lists, tmp_path, "configs/egemaps.yml",
                                     {**changes, "model_conf.model_args.hidden_size": 32})
    assert "fitted the eGeMAPS scaler" in output
    assert list((tmp_path / "cache").glob("eGeMAPS_*_train_list_*.pt"))
    assert_infers_a_label(demo_lists, tmp_path / "models" / "BiLSTM_eGeMAPS" / "best_model")


def test_train_and_infer_with_the_contour_config(demo_lists, tmp_path):
    small = {"model_conf.model_args.channels": 16, "model_conf.model_args.stats_channels": 32,
             "model_conf.model_args.embd_dim": 16, "dataset_conf.feature_cache.augmented_copies": 1}
    output = train_on_the_demo_lists(demo_lists, tmp_path, "configs/egemaps_lld.yml", small,
                                     "--data_augment_configs", "configs/augmentation_copies.yml")
    assert "1 cached copies" in output
    assert list((tmp_path / "cache").glob("eGeMAPS_LLD_*_train_list_*.pt"))
    model = tmp_path / "models" / "TDNN_eGeMAPS_LLD" / "best_model"
    assert_infers_a_label(demo_lists, model)
    # openSMILE stays outside the graph: the model is exported from features on, at the first try
    exported = run_script("tools/export_onnx.py", "--model_path", model, "--output", tmp_path / "model.onnx")
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    assert "could not export" not in exported.stdout + exported.stderr and (tmp_path / "model.onnx").is_file()

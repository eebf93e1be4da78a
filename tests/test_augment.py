"""Waveform augmentation and SpecAugment do what the config asks, and nothing else."""
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mser.data.augment import (
    SpecAugment,
    WaveformAugmenter,
    augmentation_config,
    build_spec_augment,
    colored_noise,
    load_augmentation_config,
    reverberate,
    synthetic_rir,
)
from mser.errors import ConfigError

RATE = 16000
SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "augmentation.yml"


def speech_like(seconds=1.0, seed=0):
    """A 220 Hz tone with harmonics under a slow envelope: stands in for voiced speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in (1, 2, 3))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    noise = np.random.default_rng(seed).standard_normal(t.shape[0]) * 0.01
    return (0.2 * tone * envelope + noise).astype(np.float32)


def only(section, seed=0, **values):
    """An augmenter that always applies one section, with the given values."""
    return WaveformAugmenter({section: {"prob": 1.0, **values}}, RATE, seed=seed)


def snr_db(clean, mixed):
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((mixed - clean).astype(np.float64) ** 2))


def dominant_frequency(samples):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    return np.argmax(spectrum) * RATE / samples.shape[0]


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_changes_duration_and_pitch(speed):
    t = np.arange(RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = only("speed", speeds=[speed])(tone)
    assert abs(out.shape[0] - RATE / speed) <= 2
    assert dominant_frequency(out) == pytest.approx(440 * speed, abs=2)


@pytest.mark.parametrize("gain", [-12.5, 0.0, 7.0])
def test_volume_gain_is_exact_in_db(gain):
    clip = speech_like()
    out = only("volume", min_gain_dB=gain, max_gain_dB=gain)(clip)
    measured = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2) / np.mean(clip.astype(np.float64) ** 2)))
    assert measured == pytest.approx(gain, abs=1e-4)


def test_volume_gain_stays_in_range_and_is_not_clipped():
    clip = np.full(1000, 0.9, dtype=np.float32)
    gains = [20 * np.log10(only("volume", seed=s, min_gain_dB=6, max_gain_dB=12)(clip)[0] / 0.9) for s in range(20)]
    assert 6 - 1e-4 <= min(gains) and max(gains) <= 12 + 1e-4 and max(gains) - min(gains) > 1
    assert np.max(only("volume", min_gain_dB=6, max_gain_dB=6)(clip)) > 1.7


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_generated_noise_has_requested_snr(color):
    clip = speech_like()
    out = only("noise", min_snr_dB=12, max_snr_dB=12, colors=[color])(clip)
    assert out.shape == clip.shape and np.all(np.isfinite(out))
    assert snr_db(clip, out) == pytest.approx(12, abs=0.5)


def test_noise_colours_tilt_the_spectrum():
    def low_to_high(color):
        power = np.abs(np.fft.rfft(colored_noise(RATE, color, np.random.default_rng(1)))) ** 2
        return np.sum(power[50:500]) / np.sum(power[4000:7000])  # 50-500 Hz against 4-7 kHz
    white, pink, brown = (low_to_high(c) for c in ("white", "pink", "brown"))
    assert white < 0.5 and pink > 2 * white and brown > 10 * pink


def test_noise_of_a_length_with_a_large_prime_factor_keeps_its_length_and_colour():
    length = 16001   # prime: shaped over a fast FFT length and cut
    noises = {c: colored_noise(length, c, np.random.default_rng(2)) for c in ("white", "pink", "brown")}
    assert all(n.shape == (length,) and n.dtype == np.float32 and np.isfinite(n).all() for n in noises.values())
    assert all(np.std(n) == pytest.approx(1.0, rel=0.05) for n in noises.values())
    low_to_high = {c: np.sum(np.abs(np.fft.rfft(n)[50:500]) ** 2) / np.sum(np.abs(np.fft.rfft(n)[4000:7000]) ** 2)
                   for c, n in noises.items()}
    assert low_to_high["pink"] > 2 * low_to_high["white"] and low_to_high["brown"] > 10 * low_to_high["pink"]


def test_reverberation_is_the_convolution_with_the_response_cut_to_the_clip():
    clip = speech_like(seconds=0.37)
    rir = synthetic_rir(0.3, RATE, np.random.default_rng(3))
    out = reverberate(clip, rir)
    assert out.shape == clip.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, np.convolve(clip.astype(np.float64), rir)[:clip.shape[0]], atol=1e-5)


def write_noise_folder(folder, rate=8000):
    """Two 1 kHz-tone noise files at 8 kHz (one shorter than the clip), in a sub-folder."""
    (folder / "sub").mkdir(parents=True)
    for name, seconds in (("a.wav", 0.3), ("sub/b.flac", 2.0)):
        t = np.arange(int(seconds * rate)) / rate
        soundfile.write(folder / name, 0.5 * np.sin(2 * np.pi * 1000 * t), rate)


def test_noise_from_folder_has_requested_snr(tmp_path):
    write_noise_folder(tmp_path / "noise")
    clip = speech_like()
    augmenter = only("noise", noise_dir=str(tmp_path / "noise"), min_snr_dB=5, max_snr_dB=5)
    for seed in range(8):
        out = augmenter(clip, np.random.default_rng(seed))
        assert snr_db(clip, out) == pytest.approx(5, abs=0.5)
        assert dominant_frequency(out - clip) == pytest.approx(1000, abs=3)
    assert len(augmenter.noise_files.cache) == 2  # both files were drawn, read once, kept


def test_noise_and_rir_folders_must_exist_and_hold_audio(tmp_path):
    with pytest.raises(ConfigError, match="noise.noise_dir.*not a folder"):
        only("noise", noise_dir=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    with pytest.raises(ConfigError, match="reverb.rir_dir.*holds no audio"):
        only("reverb", rir_dir=str(tmp_path / "empty"))
    path = tmp_path / "aug.yml"
    path.write_text(f"reverb:\n  prob: 0.2\n  rir_dir: {tmp_path / 'empty'}\n")
    with pytest.raises(ConfigError, match="reverb.rir_dir.*holds no audio"):
        load_augmentation_config(str(path))


def burst_then_silence():
    clip = np.zeros(RATE, dtype=np.float32)
    clip[:RATE // 4] = np.random.default_rng(2).standard_normal(RATE // 4) * 0.1
    return clip


def test_reverb_adds_a_decaying_tail():
    clip = burst_then_silence()
    out = only("reverb", min_rt60=0.5, max_rt60=0.5)(clip)
    assert out.shape == clip.shape and np.all(np.isfinite(out))
    tail = out[RATE // 4:].astype(np.float64) ** 2
    early, late = tail[:1600].mean(), tail[4800:6400].mean()  # 0-100 ms and 300-400 ms after the burst
    # -60 dB in 0.5 s is -36 dB over 0.3 s; the tail is well above silence and decaying at that rate.
    assert early > 1e-3 * np.mean(clip[:RATE // 4] ** 2)
    assert 10 * np.log10(early / late) == pytest.approx(36, abs=6)


@pytest.mark.parametrize("rt60", [0.3, 0.7])
def test_synthetic_rir_has_requested_rt60(rt60):
    rir = synthetic_rir(rt60, RATE, np.random.default_rng(3)).astype(np.float64)
    assert np.sum(rir ** 2) == pytest.approx(1.0, rel=1e-4) and np.argmax(np.abs(rir)) == 0
    assert rir[0] ** 2 == pytest.approx(0.5, rel=1e-3)  # direct path as strong as the tail: 0 dB
    decay = 10 * np.log10(np.cumsum((rir ** 2)[::-1])[::-1])  # Schroeder backward integration
    decay -= decay[0]
    t = np.arange(rir.shape[0]) / RATE
    fit = (decay <= -5) & (decay >= -25)  # T20, extrapolated to 60 dB
    slope = np.polyfit(t[fit], decay[fit], 1)[0]
    assert -60 / slope == pytest.approx(rt60, rel=0.1)


def test_reverb_from_folder_aligns_and_normalises_the_rir(tmp_path):
    rir = np.zeros(400)
    rir[30], rir[130] = 1.0, 0.5  # 30 samples of pre-delay, then the direct path and one echo
    (tmp_path / "rirs").mkdir()
    soundfile.write(tmp_path / "rirs" / "room.wav", rir, RATE, subtype="FLOAT")
    clip = speech_like(0.2)
    out = only("reverb", rir_dir=str(tmp_path / "rirs"))(clip)
    expected = clip.astype(np.float64).copy()
    expected[100:] += 0.5 * clip[:-100]
    np.testing.assert_allclose(out, expected / np.sqrt(1.25), atol=1e-5)


def test_same_seed_same_output_and_workers_get_their_own_streams():
    config = load_augmentation_config(str(SHIPPED))
    clip = speech_like()
    first = WaveformAugmenter(config, RATE, seed=5)
    again = WaveformAugmenter(config, RATE, seed=5)
    outputs = [first(clip) for _ in range(4)]
    for out in outputs:
        np.testing.assert_array_equal(out, again(clip))
    other = WaveformAugmenter(config, RATE, seed=6)
    assert any(out.shape != other(clip).shape or not np.array_equal(out, other(clip)) for out in outputs)
    np.testing.assert_array_equal(first(clip, np.random.default_rng(9)), again(clip, np.random.default_rng(9)))


class NoisyClips(torch.utils.data.Dataset):
    def __init__(self, augmenter):
        self.augmenter = augmenter

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return torch.from_numpy(self.augmenter(np.full(800, 0.1, dtype=np.float32)))


def test_dataloader_workers_do_not_repeat_each_other():
    augmenter = only("noise", min_snr_dB=10, max_snr_dB=10)
    loader = torch.utils.data.DataLoader(NoisyClips(augmenter), batch_size=1, num_workers=2,
                                         multiprocessing_context="fork")
    first, second = list(loader)
    assert not torch.equal(first, second)


def test_shipped_config_gives_finite_float32():
    config = load_augmentation_config(str(SHIPPED))
    augmenter = WaveformAugmenter(config, RATE, seed=0)
    for seed in range(6):
        out = augmenter(speech_like(0.5, seed), np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
    assert isinstance(build_spec_augment(config), SpecAugment)


def test_unknown_keys_and_bad_values_are_config_errors(tmp_path):
    path = tmp_path / "aug.yml"
    path.write_text("noise:\n  prob: 0.5\n  min_snr_db: 5\n")
    with pytest.raises(ConfigError, match="unknown config key 'noise.min_snr_db'.*'noise.min_snr_dB'"):
        load_augmentation_config(str(path))
    path.write_text("reverbb:\n  prob: 0.5\n")
    with pytest.raises(ConfigError, match="did you mean 'reverb'"):
        load_augmentation_config(str(path))
    bad = [({"speed": {"speeds": 1.1}}, "speed.speeds"), ({"volume": {"min_gain_dB": 5, "max_gain_dB": 1}},
           "volume.min_gain_dB"), ({"noise": {"colors": ["blue"]}}, "noise.colors"),
           ({"spec_aug": {"prob": 1.5}}, "spec_aug.prob"), ({"spec_aug": {"num_time_masks": 1.5}}, "num_time_masks")]
    for user, name in bad:
        with pytest.raises(ConfigError, match=name):
            augmentation_config(user)


def test_sections_left_out_are_off():
    assert WaveformAugmenter({}, RATE).steps == []
    assert build_spec_augment(augmentation_config({})) is None
    assert build_spec_augment(augmentation_config({"spec_aug": {"prob": 1, "num_freq_masks": 0,
                                                                "num_time_masks": 0}})) is None


def padded_features(lengths=(50, 30, 7), bins=20):
    features = torch.randn(len(lengths), max(lengths), bins) + 3.0
    frame_lengths = torch.tensor(lengths)
    for row, length in enumerate(lengths):
        features[row, length:] = 0
    return features, frame_lengths


def test_spec_augment_sets_masked_bins_to_the_clip_mean_inside_valid_frames():
    features, frame_lengths = padded_features()
    module = SpecAugment(prob=1.0, freq_mask_width=4, num_freq_masks=2, time_mask_width=6, num_time_masks=2)
    torch.manual_seed(0)
    mask = module.masks(features, frame_lengths)
    torch.manual_seed(0)
    out = module(features, frame_lengths)
    for row, length in enumerate(frame_lengths.tolist()):
        clip_mean = features[row, :length].mean()
        assert mask[row, length:].sum() == 0 and torch.equal(out[row, length:], features[row, length:])
        assert torch.allclose(out[row][mask[row]], clip_mean.expand(int(mask[row].sum())), atol=1e-5)
        assert torch.equal(out[row][~mask[row]], features[row][~mask[row]])
    assert mask.any()


def test_spec_augment_masks_are_whole_bands_and_spans_within_their_widths():
    torch.manual_seed(1)
    features, frame_lengths = padded_features()
    freq_only = SpecAugment(prob=1.0, freq_mask_width=4, num_freq_masks=2, num_time_masks=0)
    time_only = SpecAugment(prob=1.0, num_freq_masks=0, time_mask_width=6, num_time_masks=2)
    for _ in range(20):
        bands = freq_only.masks(features, frame_lengths)
        spans = time_only.masks(features, frame_lengths)
        for row, length in enumerate(frame_lengths.tolist()):
            masked_bins = bands[row, 0]
            assert torch.equal(bands[row, :length], masked_bins.expand(length, -1))  # all valid frames
            assert int(masked_bins.sum()) <= 8
            masked_frames = spans[row, :, 0]
            assert torch.equal(spans[row], masked_frames[:, None].expand(-1, 20))  # all bins
            assert int(masked_frames.sum()) <= 2 * min(6, length // 2)
            assert not masked_frames[length:].any()


def test_spec_augment_probability_eval_mode_and_determinism():
    features, frame_lengths = padded_features(lengths=[40] * 64)
    module = SpecAugment(prob=0.5, freq_mask_width=4, num_freq_masks=1, time_mask_width=6, num_time_masks=1)
    torch.manual_seed(2)
    masked_clips = int(module.masks(features, frame_lengths).flatten(1).any(dim=1).sum())
    assert 16 <= masked_clips <= 48
    torch.manual_seed(3)
    first = module(features, frame_lengths)
    torch.manual_seed(3)
    assert torch.equal(first, module(features, frame_lengths)) and not torch.equal(first, features)
    assert module.eval()(features, frame_lengths) is features


def test_spec_augment_from_config_section():
    module = SpecAugment.from_config({"prob": 0.3, "time_mask_width": 5})
    assert (module.prob, module.time_mask_width, module.freq_mask_width) == (0.3, 5, 8)
    with pytest.raises(ConfigError, match="spec_aug.time_mask_widht"):
        SpecAugment.from_config({"time_mask_widht": 5})


# ---------------------------------------------------------------- through train.py

def cached_tiny_run(list_dir, cache_dir) -> str:
    from conftest import tiny_overwrites
    return tiny_overwrites(list_dir, **{"dataset_conf.feature_cache.enable": True,
                                        "dataset_conf.feature_cache.cache_dir": cache_dir})


def test_waveform_augmentation_reads_training_audio_while_the_cache_serves_evaluation(demo_lists, tmp_path):
    from mser.data.dataset import AudioDataset
    from mser.data.feature_cache import CachedFeatureDataset
    from mser.trainer import MSERTrainer
    trainer = MSERTrainer(configs="configs/bi_lstm.yml", use_gpu=False, data_augment_configs=str(SHIPPED),
                          overwrites=cached_tiny_run(demo_lists, tmp_path / "cache"))
    train_items, _, test_items = trainer.read_lists()
    trainer.prepare_caches()
    training = trainer.dataset(train_items, train=True)
    assert isinstance(training, AudioDataset) and training.augmenter is not None
    assert isinstance(trainer.dataset(test_items, train=False), CachedFeatureDataset)


def test_train_py_with_every_augmentation_on(demo_lists, tmp_path):
    from conftest import run_script
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                        "--save_model_path", tmp_path / "models", "--log_dir", "",
                        "--data_augment_configs", SHIPPED,
                        "--overwrites", cached_tiny_run(demo_lists, tmp_path / "cache"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sections = ("speed, pitch_shift, formant_shift, time_shift, reverb, noise, lowpass, highpass, telephone, codec, "
                "volume, clipping, dc_offset, silence")
    assert f"note: {sections} augmentation needs the audio" in result.stdout
    assert "test set, best model" in result.stdout
    assert (tmp_path / "models" / "BiLSTM_Fbank" / "best_model" / "model.pth").is_file()

"""Talker, channel, level and silence augmentation sections, each against its definition."""
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import scipy.linalg
import scipy.signal
import torchaudio.functional as AF

from mser.data import augment
from mser.data.augment import (
    AUGMENT_DEFAULTS,
    CODECS,
    WAVEFORM_SECTIONS,
    WaveformAugmenter,
    augmentation_config,
    codec_round_trip,
    load_augmentation_config,
    telephone_channel,
    waveform_sections_on,
)
from mser.errors import ConfigError

RATE = 16000
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CHANNEL = CONFIGS / "augmentation_channel.yml"
NEW_SECTIONS = ("pitch_shift", "formant_shift", "time_shift", "lowpass", "highpass", "telephone", "codec", "clipping",
                "dc_offset", "silence")


def only(section, rate=RATE, seed=0, **values):
    """An augmenter that always applies one section, with the given values."""
    return WaveformAugmenter({section: {"prob": 1.0, **values}}, rate, seed=seed)


def sine(frequency, seconds=1.0, amplitude=0.3, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def white_noise(seconds=2.0, rate=RATE, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def speech_like(seconds=1.0, seed=0):
    """A 220 Hz tone with harmonics under a slow envelope, plus a little noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in (1, 2, 3, 4, 5))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    noise = np.random.default_rng(seed).standard_normal(t.shape[0]) * 0.01
    return (0.2 * tone * envelope + noise).astype(np.float32)


def peak_frequency(samples, rate=RATE):
    """The strongest frequency, refined by parabolic interpolation between FFT bins."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / samples.shape[0]


def gain_db(before, after):
    """Steady-state level change of a tone, ignoring the filters' first 0.1 s."""
    skip = RATE // 10
    return 10 * np.log10(np.mean(after[skip:].astype(np.float64) ** 2) / np.mean(before[skip:].astype(np.float64) ** 2))


def snr_db(clean, degraded):
    """Signal-to-error ratio of `degraded` against `clean`, in dB."""
    clean = clean.astype(np.float64)
    return 10 * np.log10(np.sum(clean ** 2) / np.sum((degraded.astype(np.float64) - clean) ** 2))


def band_gain_db(before, after, low_hz, high_hz, rate=RATE):
    """Power ratio of two signals inside a frequency band (Welch-free: one long FFT)."""
    frequencies = np.fft.rfftfreq(before.shape[0], 1 / rate)
    band = (frequencies >= low_hz) & (frequencies < high_hz)
    power = lambda x: np.sum(np.abs(np.fft.rfft(x.astype(np.float64)))[band] ** 2)  # noqa: E731
    return 10 * np.log10(power(after) / power(before))


# ---------------------------------------------------------------- defaults, order

def test_new_sections_are_off_by_default_and_applied_in_the_documented_order():
    for name in NEW_SECTIONS:
        assert AUGMENT_DEFAULTS[name]["prob"] == 0.0
    assert WaveformAugmenter({}, RATE).steps == []
    everything = {name: {"prob": 0.5} for name in WAVEFORM_SECTIONS}
    names = [name for name, _ in WaveformAugmenter(everything, RATE).steps]
    assert names == list(WAVEFORM_SECTIONS) == waveform_sections_on(augmentation_config(everything))
    order = WAVEFORM_SECTIONS.index
    assert order("speed") < order("pitch_shift") < order("reverb") < order("noise") < order("telephone")
    assert order("noise") < order("codec") < order("volume") < order("clipping") < order("silence")
    assert WAVEFORM_SECTIONS[-1] == "silence"


def test_the_shipped_files_list_sections_in_the_order_they_run():
    for path in (CONFIGS / "augmentation.yml", CHANNEL):
        text = path.read_text()
        positions = [text.index(f"\n{name}:") for name in WAVEFORM_SECTIONS if f"\n{name}:" in text]
        assert positions == sorted(positions), path.name


def test_channel_config_holds_only_channel_sections():
    config = load_augmentation_config(str(CHANNEL))
    assert set(waveform_sections_on(config)) == {"reverb", "noise", "telephone", "codec", "volume", "silence"}
    assert config["spec_aug"]["prob"] == 0
    augmenter = WaveformAugmenter(config, RATE, seed=0)
    for seed in range(8):
        out = augmenter(speech_like(0.5, seed), np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))


# ---------------------------------------------------------------- the talker

@pytest.mark.parametrize("semitones", [-2.0, -0.5, 1.0, 3.0])
def test_pitch_shift_moves_f0_by_the_semitones_and_keeps_duration(semitones):
    tone = sine(300, seconds=1.0)
    out = only("pitch_shift", min_semitones=semitones, max_semitones=semitones)(tone)
    assert out.shape == tone.shape
    # The source rate is rounded to 50 Hz: at most 25/16000 = 0.16 % off, 0.03 semitones.
    assert peak_frequency(out) == pytest.approx(300 * 2 ** (semitones / 12), rel=0.003)
    assert gain_db(tone, out) == pytest.approx(0, abs=1.0)


def test_pitch_shift_of_a_harmonic_voice_keeps_its_harmonics_in_step_and_its_level():
    clip = speech_like(1.0)
    out = only("pitch_shift", min_semitones=2, max_semitones=2)(clip)
    # Phase locking: a vocoder whose bins drift apart loses level (torchaudio's: 3-4 dB on speech).
    assert 10 * np.log10(np.mean(out.astype(np.float64) ** 2) / np.mean(clip.astype(np.float64) ** 2)) > -1.0
    f0 = float(AF.detect_pitch_frequency(torch.from_numpy(out)[None], RATE)[0].median())
    assert f0 == pytest.approx(220 * 2 ** (2 / 12), rel=0.02)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.shape[0])))
    second = int(round(2 * 220 * 2 ** (2 / 12)))  # 1 s clip: bins are 1 Hz apart
    assert spectrum[second - 3:second + 4].max() > 20 * np.median(spectrum[second - 60:second + 60])


def test_pitch_shift_draws_semitones_inside_the_range():
    tone = sine(300, seconds=1.0)
    augmenter = only("pitch_shift", min_semitones=-2, max_semitones=3)
    shifts = [12 * np.log2(peak_frequency(augmenter(tone, np.random.default_rng(s))) / 300) for s in range(12)]
    assert -2.05 <= min(shifts) and max(shifts) <= 3.05 and max(shifts) - min(shifts) > 1.5


def vowel(f0=150.0, formants=(700.0, 1200.0, 2500.0), seconds=1.0):
    """A pulse train at `f0` through one resonator per formant (80 Hz bandwidth)."""
    pulses = np.zeros(int(seconds * RATE))
    pulses[::int(RATE / f0)] = 1.0
    for frequency in formants:
        radius = np.exp(-np.pi * 80 / RATE)
        resonator = [1, -2 * radius * np.cos(2 * np.pi * frequency / RATE), radius ** 2]
        pulses = scipy.signal.lfilter([1 - radius], resonator, pulses)
    return (0.3 * pulses / np.abs(pulses).max()).astype(np.float32)


def lpc_formants(samples, order=10):
    """Formant frequencies of a steady vowel: the angles of its LPC poles (bandwidth < 400 Hz)."""
    frame = samples.astype(np.float64) * np.hamming(samples.shape[0])
    autocorrelation = np.correlate(frame, frame, "full")[frame.shape[0] - 1:frame.shape[0] + order]
    coefficients = scipy.linalg.solve_toeplitz(autocorrelation[:order], -autocorrelation[1:order + 1])
    poles = np.roots(np.r_[1.0, coefficients])
    poles = poles[np.imag(poles) > 0]
    frequencies = np.angle(poles) * RATE / (2 * np.pi)
    bandwidths = -np.log(np.abs(poles)) * RATE / np.pi
    return np.sort(frequencies[(bandwidths < 400) & (frequencies > 200)])


@pytest.mark.parametrize("factor", [0.9, 1.12])
def test_formant_shift_moves_the_formants_and_keeps_pitch_length_and_level(factor):
    clip = vowel()
    out = only("formant_shift", min_factor=factor, max_factor=factor)(clip)
    assert out.shape == clip.shape and out.dtype == np.float32
    before, after = lpc_formants(clip[4000:12000]), lpc_formants(out[4000:12000])
    assert before.shape == after.shape == (3,)
    moved = np.log(after / before) / np.log(factor)   # 1: moved by the factor
    # The cepstral envelope is smooth, so the first formant, a few harmonics up, moves less.
    assert np.all(moved > 0.3) and np.all(moved < 1.3)
    assert 0.7 < moved[-1] < 1.2
    f0 = [float(AF.detect_pitch_frequency(torch.from_numpy(x)[None], RATE)[0].median()) for x in (clip, out)]
    assert f0[1] == pytest.approx(f0[0], rel=0.01)
    assert gain_db(clip, out) == pytest.approx(0, abs=0.1)


def test_formant_shift_by_one_and_on_silence_or_short_clips_changes_nothing():
    clip = vowel()
    np.testing.assert_array_equal(only("formant_shift", min_factor=1.0, max_factor=1.0)(clip), clip)
    augmenter = only("formant_shift", min_factor=1.1, max_factor=1.1)
    for unchanged in (np.zeros(RATE, np.float32), clip[:300]):
        np.testing.assert_array_equal(augmenter(unchanged), unchanged)


def test_time_shift_is_a_circular_roll_of_at_most_the_fraction():
    clip = np.random.default_rng(4).standard_normal(1000).astype(np.float32)
    augmenter = only("time_shift", max_fraction=0.25)
    rolls = []
    for seed in range(30):
        out = augmenter(clip, np.random.default_rng(seed))
        roll = int(np.argmax(out == clip[0]))  # clip[0] lands at index `roll` (mod 1000)
        np.testing.assert_array_equal(out, np.roll(clip, roll))
        rolls.append(roll if roll <= 500 else roll - 1000)
    assert max(abs(r) for r in rolls) <= 250 and min(rolls) < 0 < max(rolls)
    np.testing.assert_array_equal(only("time_shift", max_fraction=0.0)(clip), clip)


# ---------------------------------------------------------------- the channel

@pytest.mark.parametrize("kind, cutoff", [("lowpass", 1000.0), ("highpass", 400.0)])
def test_filters_are_minus_6_db_at_the_cutoff_and_24_db_per_octave(kind, cutoff):
    augmenter = only(kind, min_cutoff_hz=cutoff, max_cutoff_hz=cutoff)
    passband, beyond = (cutoff / 4, cutoff * 2) if kind == "lowpass" else (cutoff * 4, cutoff / 2)
    assert gain_db(sine(passband), augmenter(sine(passband))) == pytest.approx(0, abs=0.3)
    assert gain_db(sine(cutoff), augmenter(sine(cutoff))) == pytest.approx(-6.0, abs=0.5)
    # One octave into the stop band: two 2nd-order Butterworth sections, 2 * 10*log10(1 + 2**4) = -24.6 dB
    # for the analogue filter; the bilinear transform only adds attenuation towards Nyquist.
    assert -28.0 < gain_db(sine(beyond), augmenter(sine(beyond))) < -24.0


def test_filters_do_not_clip_loud_clips_and_draw_cutoffs_in_range():
    loud = sine(200, amplitude=3.0)
    out = only("lowpass", min_cutoff_hz=4000, max_cutoff_hz=4000)(loud)
    assert np.max(np.abs(out)) == pytest.approx(3.0, rel=0.02)
    noise = white_noise()
    augmenter = only("lowpass", min_cutoff_hz=1000, max_cutoff_hz=3000)
    for seed in range(6):
        out = augmenter(noise, np.random.default_rng(seed))
        assert band_gain_db(noise, out, 100, 900) == pytest.approx(0, abs=1.0)  # below every cut-off
        assert band_gain_db(noise, out, 6000, 7900) < -25  # over an octave above every cut-off


def test_cutoffs_must_lie_below_half_the_sample_rate(tmp_path):
    path = tmp_path / "aug.yml"
    path.write_text("highpass:\n  prob: 0.1\n  max_cutoff_hz: 4000\n")
    with pytest.raises(ConfigError, match=r"'highpass.max_cutoff_hz' \(4000.0\) must be below half the sample rate"):
        load_augmentation_config(str(path), sample_rate=8000)
    load_augmentation_config(str(path), sample_rate=16000)
    with pytest.raises(ConfigError, match=r"'lowpass.max_cutoff_hz' \(6000.0\) must be below half the sample rate"):
        WaveformAugmenter({"lowpass": {"prob": 0.1}}, 8000)
    with pytest.raises(ConfigError, match="telephone.max_high_hz"):
        WaveformAugmenter({"telephone": {"prob": 0.1, "max_high_hz": 3600}}, 6000)
    WaveformAugmenter({"lowpass": {"prob": 0.0}}, 8000)  # an off section is not checked
    WaveformAugmenter({"telephone": {"prob": 0.1}}, 8000)  # 3600 Hz fits in 8 kHz audio


@pytest.mark.parametrize("resample", [False, True])
def test_telephone_passes_300_to_3400_hz_and_cuts_the_rest(resample):
    noise = white_noise()
    out = telephone_channel(noise, RATE, 300.0, 3400.0, resample=resample, mu_law=False)
    assert out.shape == noise.shape
    assert band_gain_db(noise, out, 700, 2500) == pytest.approx(0, abs=1.0)
    assert band_gain_db(noise, out, 20, 100) < -30
    assert band_gain_db(noise, out, 6000, 8000) < (-60 if resample else -25)
    if resample:  # the 8 kHz line carries nothing above its 4 kHz Nyquist frequency
        assert band_gain_db(noise, out, 4100, 8000) < -55


def test_telephone_mu_law_leaves_only_the_256_g711_levels():
    clip = speech_like(0.5)
    out = telephone_channel(clip, RATE, 300.0, 3400.0, resample=False, mu_law=True)
    levels = AF.mu_law_decoding(torch.arange(256), 256).numpy()
    assert set(np.unique(out).tolist()) <= set(levels.tolist())
    band_only = telephone_channel(clip, RATE, 300.0, 3400.0, resample=False, mu_law=False)
    assert 25 < snr_db(band_only, out) < 45  # 8-bit companding: ~38 dB SNR over a wide range of levels
    loud = telephone_channel(sine(1000, amplitude=2.0), RATE, 300.0, 3400.0, resample=False, mu_law=True)
    assert np.max(np.abs(loud)) <= 1.0  # a real line clips at full scale


def test_telephone_section_draws_its_band_edges_inside_the_ranges():
    noise = white_noise()
    augmenter = only("telephone", min_low_hz=300, max_low_hz=400, min_high_hz=3000, max_high_hz=3400,
                     resample_prob=0.0, mu_law_prob=0.0)
    for seed in range(5):
        out = augmenter(noise, np.random.default_rng(seed))
        assert band_gain_db(noise, out, 800, 2000) == pytest.approx(0, abs=1.0)
        assert band_gain_db(noise, out, 20, 120) < -25 and band_gain_db(noise, out, 6500, 8000) < -25


def codec_names():
    return [name for name in CODECS if augment.codec_available(name)]


def lag(reference, signal):
    """How many samples `signal` lags `reference`, by cross-correlation."""
    correlation = np.fft.irfft(np.fft.rfft(signal, 2 * len(signal)) * np.conj(np.fft.rfft(reference, 2 * len(signal))))
    best = int(np.argmax(correlation))
    return best if best < len(signal) else best - 2 * len(signal)


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
@pytest.mark.parametrize("codec", codec_names())
def test_codec_round_trip_keeps_length_and_alignment_and_loses_detail(codec, rate):
    t = np.arange(rate) / rate
    clip = (0.2 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    clip[rate // 3] += 0.8  # a click, to pin the alignment down
    out = codec_round_trip(clip, rate, codec, 0.3)
    assert out.shape == clip.shape and out.dtype == np.float32
    assert lag(clip, out) == 0
    assert not np.array_equal(out, clip)
    assert snr_db(clip, out) > 3


@pytest.mark.parametrize("codec", [name for name in ("ogg", "mp3") if name in codec_names()])
def test_codec_compression_level_trades_quality(codec):
    clip = speech_like(1.0)
    snr = {level: snr_db(clip, codec_round_trip(clip, RATE, codec, level)) for level in (0.0, 0.9)}
    assert snr[0.0] > snr[0.9] + 3


def test_codec_section_draws_formats_and_never_clips_a_loud_clip():
    clip = speech_like(0.5) * np.float32(8.0)  # peak ~ 3
    augmenter = only("codec", formats=codec_names(), min_compression=0.0, max_compression=0.2)
    for seed in range(4):
        out = augmenter(clip, np.random.default_rng(seed))
        assert out.shape == clip.shape and np.max(np.abs(out)) > 2.0
    assert only("codec", formats=["mp3"], min_compression=1.0, max_compression=1.0)(clip).shape == clip.shape


def test_a_codec_this_libsndfile_lacks_is_dropped_with_one_note(monkeypatch, capsys):
    formats = {name: text for name, text in soundfile.available_formats().items() if name != "MP3"}
    monkeypatch.setattr(soundfile, "available_formats", lambda: formats)
    monkeypatch.setattr(augment, "NOTES_GIVEN", set())
    for _ in range(2):
        config = augmentation_config({"codec": {"prob": 0.5, "formats": ["ogg", "mp3"]}})
        assert config["codec"]["formats"] == ["ogg"]
    notes = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(notes) == 1 and notes[0].startswith("note: codec.formats mp3 cannot be encoded")
    augmentation_config({"codec": {"prob": 0.0, "formats": ["mp3"]}})  # off: no note, no error
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="no format in 'codec.formats' \\(mp3\\)"):
        augmentation_config({"codec": {"prob": 0.5, "formats": ["mp3"]}})


# ---------------------------------------------------------------- the level

def test_clipping_cuts_at_the_drawn_fraction_of_the_peak():
    tone = sine(200, amplitude=0.5)
    out = only("clipping", min_level=0.6, max_level=0.6)(tone)
    assert np.max(out) == pytest.approx(0.3) and np.min(out) == pytest.approx(-0.3)
    inside = np.abs(tone) < 0.3
    np.testing.assert_array_equal(out[inside], tone[inside])
    assert np.mean(~inside) > 0.3  # a sine spends ~41 % of its time above 0.6 of its peak
    augmenter = only("clipping", min_level=0.3, max_level=0.9)
    levels = [np.max(augmenter(tone, np.random.default_rng(s))) / 0.5 for s in range(12)]
    assert 0.3 - 1e-6 <= min(levels) and max(levels) <= 0.9 + 1e-6 and max(levels) - min(levels) > 0.2


def test_dc_offset_adds_the_drawn_constant():
    clip = speech_like()
    out = only("dc_offset", min_offset=0.04, max_offset=0.04)(clip)
    np.testing.assert_allclose(out - clip, 0.04, atol=1e-6)
    augmenter = only("dc_offset", min_offset=-0.05, max_offset=0.05)
    offsets = [float(np.mean(augmenter(clip, np.random.default_rng(s)) - clip)) for s in range(12)]
    assert -0.05 - 1e-6 <= min(offsets) < 0 < max(offsets) <= 0.05 + 1e-6


# ---------------------------------------------------------------- silence

@pytest.mark.parametrize("where", ["start", "end", "gap"])
def test_silence_inserts_a_run_of_exact_zeros(where):
    clip = speech_like() + np.float32(0.5)  # no zeros of its own
    augmenter = only("silence", min_seconds=0.25, max_seconds=0.25, positions=[where])
    for seed in range(4):
        out = augmenter(clip, np.random.default_rng(seed))
        assert out.shape[0] == clip.shape[0] + 4000
        zeros = np.flatnonzero(out == 0)
        assert zeros.shape[0] == 4000 and zeros[-1] - zeros[0] == 3999  # one run, exactly zero
        start = int(zeros[0])
        np.testing.assert_array_equal(np.concatenate([out[:start], out[start + 4000:]]), clip)
        assert {"start": start == 0, "end": start == clip.shape[0], "gap": 0 < start < clip.shape[0]}[where]


def test_silence_lengths_stay_in_range_and_stay_zero_after_every_other_step():
    config = {name: {"prob": 1.0} for name in WAVEFORM_SECTIONS}
    config["silence"].update(min_seconds=0.1, max_seconds=0.3)
    config["codec"]["formats"] = codec_names()[:1]
    augmenter = WaveformAugmenter(config, RATE, seed=0)
    for seed in range(3):
        clip = speech_like(1.0, seed)
        out = augmenter(clip, np.random.default_rng(seed))
        zeros = np.flatnonzero(out == 0)
        assert 1600 <= zeros.shape[0] <= 4800 and np.all(np.isfinite(out))


# ---------------------------------------------------------------- config errors

@pytest.mark.parametrize("user, fragment", [
    ({"pitch_shift": {"min_semitones": 4, "max_semitones": 2}}, "'pitch_shift.min_semitones' (4.0) is greater"),
    ({"pitch_shift": {"max_semitones": 13}}, "'pitch_shift.max_semitones' must lie in [-12.0, 12.0]"),
    ({"formant_shift": {"min_factor": 1.2, "max_factor": 1.1}}, "'formant_shift.min_factor' (1.2) is greater"),
    ({"formant_shift": {"max_factor": 2.0}}, "'formant_shift.max_factor' must lie in [0.7, 1.4]"),
    ({"time_shift": {"max_fraction": 0.7}}, "'time_shift.max_fraction' must lie in [0.0, 0.5]"),
    ({"lowpass": {"min_cutoff_hz": 0}}, "'lowpass.min_cutoff_hz' must be more than 0 Hz"),
    ({"highpass": {"min_cutoff_hz": 500, "max_cutoff_hz": 100}}, "'highpass.min_cutoff_hz' (500.0) is greater"),
    ({"telephone": {"max_low_hz": 3500, "min_high_hz": 3000}}, "'telephone.max_low_hz' (3500.0) is greater"),
    ({"telephone": {"mu_law_prob": 2}}, "'telephone.mu_law_prob' must lie in [0.0, 1.0]"),
    ({"codec": {"formats": ["aac"]}}, "'codec.formats' must be a non-empty list drawn from ogg, opus, mp3"),
    ({"codec": {"max_compression": 1.5}}, "'codec.max_compression' must lie in [0.0, 1.0]"),
    ({"clipping": {"min_level": 0}}, "'clipping.min_level' must lie in (0, 1]"),
    ({"dc_offset": {"min_offset": 0.1, "max_offset": 0.0}}, "'dc_offset.min_offset' (0.1) is greater"),
    ({"silence": {"positions": ["middle"]}}, "'silence.positions' must be a non-empty list drawn from start, end, gap"),
    ({"silence": {"min_seconds": -1}}, "'silence.min_seconds' must lie in [0.0, 60.0]"),
    ({"gain": {"prob": 0.5}}, "there is no 'gain' augmentation section: gain in a dB range is the 'volume' section"),
])
def test_bad_ranges_are_one_line_config_errors(user, fragment):
    with pytest.raises(ConfigError) as error:
        augmentation_config(user)
    assert fragment in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------- through train.py

def train(demo_lists, tmp_path, augment_path):
    """A tiny train.py run; the feature cache serves evaluation, so the log names the waveform sections."""
    from conftest import run_script, tiny_overwrites
    overwrites = tiny_overwrites(demo_lists, **{"dataset_conf.feature_cache.enable": True,
                                                "dataset_conf.feature_cache.cache_dir": tmp_path / "cache"})
    return run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
                      "--save_model_path", tmp_path / "models", "--log_dir", "",
                      "--data_augment_configs", augment_path, "--overwrites", overwrites)


@pytest.mark.parametrize("text, fragment", [
    ("pitch_shift:\n  prob: 0.5\n  min_semitones: 4\n  max_semitones: 2\n", "'pitch_shift.min_semitones' (4.0)"),
    ("gain:\n  prob: 0.5\n  min_gain_dB: -6\n", "the 'volume' section"),
    ("lowpass:\n  prob: 0.5\n  max_cutoff_hz: 9000\n", "'lowpass.max_cutoff_hz' (9000.0) must be below half"),
])
def test_train_py_refuses_bad_augmentation_in_one_line(demo_lists, tmp_path, text, fragment):
    from conftest import assert_one_line_error
    path = tmp_path / "aug.yml"
    path.write_text(text)
    assert_one_line_error(train(demo_lists, tmp_path, path), fragment)


def test_train_py_with_the_channel_augmentation(demo_lists, tmp_path):
    result = train(demo_lists, tmp_path, CHANNEL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "note: reverb, noise, telephone, codec, volume, silence augmentation needs the audio" in result.stdout
    assert "test set, best model" in result.stdout
    assert (tmp_path / "models" / "BiLSTM_Fbank" / "best_model" / "model.pth").is_file()


@pytest.mark.skipif("gsm" not in codec_names(), reason="this libsndfile cannot encode GSM 06.10")
def test_the_gsm_codec_is_a_narrow_band_line_with_one_bitrate():
    t = np.arange(RATE) / RATE
    tones = (0.2 * np.sin(2 * np.pi * 500 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    out = codec_round_trip(tones, RATE, "gsm", 0.0)
    assert band_gain_db(tones, out, 5500, 6500) < -25          # GSM runs at 8 kHz: nothing above 4 kHz
    assert band_gain_db(tones, out, 400, 600) > -6
    np.testing.assert_array_equal(out, codec_round_trip(tones, RATE, "gsm", 0.9))   # compression does not apply

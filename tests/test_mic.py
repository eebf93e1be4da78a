"""record_audio.py and infer_record.py against a real PulseAudio server (null sink loopback), and
their messages without pyaudio or without an input device."""
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile

from conftest import PYTHON, REPO, assert_one_line_error, default_sigint, run_script
from mser import vad
from mser.cli.infer_record import describe_prediction
from mser.mic import WindowSlicer

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
from mic_fixtures import RATE, LoopedClip, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]


@pytest.fixture(scope="module")
def high_clip(tmp_path_factory):
    """A 1.5 s "high" clip at 22.05 kHz (the sink resamples it, as it would a real voice)."""
    rng = np.random.default_rng(31)
    return write_clip(tmp_path_factory.mktemp("mic") / "high.wav", synthetic_clip("high", 1.5, rng, 22050), 22050)


def rms(path: str) -> float:
    samples, _ = soundfile.read(path, dtype="int16")
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_mser_imports_without_pyaudio():
    code = ("import sys; sys.modules['pyaudio'] = None\n"
            "import mser, mser.mic, mser.predictor, mser.cli.record_audio, mser.cli.infer_record\n"
            "print('imported')")
    result = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "imported", result.stderr


@pytest.mark.parametrize("script", ["record_audio", "infer_record"])
def test_without_pyaudio_the_message_says_what_to_install(script, tiny_model, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyaudio", None)   # what `import pyaudio` sees when it is absent
    module = __import__(f"mser.cli.{script}", fromlist=["main"])
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--model_path", tiny_model] if script == "infer_record" else [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyaudio is not installed" in err
    assert "portaudio19-dev" in err and "pip install 'mser[mic]'" in err


def test_without_an_input_device_the_message_says_so(tmp_path):
    pytest.importorskip("pyaudio", reason="pyaudio not installed")
    env = {"PULSE_RUNTIME_PATH": str(tmp_path)}  # no PulseAudio server is reachable there
    result = run_script("record_audio.py", "--record_seconds", "1", "--output", tmp_path / "x.wav", env=env)
    if result.returncode == 0:
        pytest.skip("this machine has an input device without PulseAudio (a sound card)")
    assert_one_line_error(result, "no audio input device found; PortAudio sees: ")


def test_list_devices_shows_the_default_input(pulse_loopback):
    result = run_script("record_audio.py", "--list_devices")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(": '" in line and "input channels" in line for line in lines)
    assert sum(line.endswith("(default)") for line in lines) == 1


def test_a_device_that_does_not_exist_is_refused_before_opening(pulse_loopback):
    result = run_script("record_audio.py", "--device", "99", "--record_seconds", "1")
    assert_one_line_error(result, "--device 99 is not an input device; input devices: ")


def test_record_audio_captures_what_plays_into_the_sink(pulse_loopback, high_clip, tmp_path):
    output = tmp_path / "recorded.wav"
    with LoopedClip(pulse_loopback, high_clip):
        result = run_script("record_audio.py", "--record_seconds", "2", "--output", output)
    assert result.returncode == 0, result.stderr
    assert f"saved {output}: 2.00 s, 16000 Hz" in result.stdout
    info = soundfile.info(str(output))
    assert (info.samplerate, info.frames, info.channels) == (16000, 32000, 1)
    assert rms(str(output)) > 100   # the clip, not the digital zeros of an idle sink


def test_record_audio_hears_silence_when_nothing_plays(pulse_loopback, tmp_path):
    output = tmp_path / "silence.wav"
    result = run_script("record_audio.py", "--record_seconds", "1", "--sample_rate", "8000", "--output", output)
    assert result.returncode == 0, result.stderr
    assert soundfile.info(str(output)).samplerate == 8000
    assert rms(str(output)) < 1


def test_infer_record_labels_the_clip_once(pulse_loopback, tiny_model, high_clip):
    with LoopedClip(pulse_loopback, high_clip):
        result = run_script("infer_record.py", "--model_path", tiny_model, "--max_loops", "1",
                            "--record_seconds", "1.5", "--threshold", "0.5", "--vad", "none")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("listening on ") and len(lines) == 3
    assert lines[1].startswith("[1] high "), lines[1]
    assert lines[2].startswith("1 windows, median latency ")


def test_infer_record_stops_cleanly_on_ctrl_c(pulse_loopback, tiny_model):
    process = subprocess.Popen([PYTHON, str(REPO / "infer_record.py"), "--model_path", tiny_model,
                                "--record_seconds", "0.5"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               preexec_fn=default_sigint)
    watchdog = threading.Timer(60, process.kill)   # readline() has no timeout of its own
    watchdog.start()
    try:
        lines = [process.stdout.readline() for _ in range(2)]   # "listening on ..." and "[1] silence ..."
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
    assert lines[0].startswith("listening on ") and lines[1].startswith("[1] silence")
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == "stopped"


def test_unsure_below_the_threshold_and_silence(tiny_model):
    from mser.predictor import MSERPredictor
    predictor = MSERPredictor(tiny_model)
    rng = np.random.default_rng(32)
    mixed = synthetic_clip("low", 1.5, rng) + synthetic_clip("noise", 1.5, rng)
    samples = (mixed / np.max(np.abs(mixed)) * 16000).astype(np.int16)
    label, score = predictor.predict(samples, RATE)
    assert describe_prediction(predictor, samples, threshold=score - 1e-3) == f"{label} {score:.3f}"
    unsure = describe_prediction(predictor, samples, threshold=score + 1e-3)
    assert unsure.startswith(f"unsure: {label} {score:.3f}, then ") and "below threshold" in unsure
    assert describe_prediction(predictor, np.zeros(RATE, dtype=np.int16), 0.5).startswith("silence")


@pytest.fixture(scope="module")
def speech_with_gaps(tmp_path_factory):
    """Two demo clips (~3.4 s of speech) then 3 s of white noise at -50 dBFS: loud enough that the
    VAD, not the digital-silence check, must call the gap silence."""
    from mser.audio import load_audio
    clips = [load_audio(str(REPO / "dataset" / "demo" / "en-david" / f"en-david_happy_0{i}.flac"), RATE)
             for i in (0, 1)]
    speech = np.concatenate(clips)
    speech = speech * 10 ** (-20 / 20) / np.sqrt(np.mean(speech ** 2))
    gap = np.random.default_rng(5).standard_normal(3 * RATE) * 10 ** (-50 / 20)
    return write_clip(tmp_path_factory.mktemp("mic") / "gaps.wav", np.concatenate([speech, gap]).astype(np.float32))


BACKENDS = ["energy", pytest.param("silero", marks=pytest.mark.skipif(
    not vad.silero_available(), reason="silero-vad not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_stream_says_silence_on_the_gaps_and_labels_the_speech(pulse_loopback, tiny_model, speech_with_gaps,
                                                                   backend):
    windows, window, hop = 16, 1.0, 0.5
    with LoopedClip(pulse_loopback, speech_with_gaps):
        result = run_script("infer_record.py", "--model_path", tiny_model, "--max_loops", str(windows),
                            "--record_seconds", str(window), "--hop_seconds", str(hop), "--vad", backend,
                            "--verbose")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"voice activity gate {backend}" in lines[0]
    window_lines = [line for line in lines if line.startswith("[")]
    assert len(window_lines) == windows
    gaps = [line for line in window_lines if " silence (no speech" in line]
    labelled = [line for line in window_lines if " silence" not in line]
    assert len(gaps) >= 2 and len(labelled) >= 2, result.stdout   # a 4.4 s period holds both
    # consecutive windows start one hop apart: the stream is cut without holes
    for index, line in enumerate(window_lines):
        assert f"({index * hop:.2f}-{index * hop + window:.2f} s, latency " in line, line
    summary = lines[-1]
    assert summary.startswith(f"{windows} windows, median latency ") and "overflow" not in summary
    samples_read = int(summary.split(" samples read")[0].rsplit(" ", 1)[1])
    assert samples_read >= (window + (windows - 1) * hop) * RATE


def test_a_device_that_disappears_mid_stream_ends_with_one_line(tiny_model, tmp_path):
    """A private server of this test's own, killed while the script listens to it."""
    from mic_fixtures import SINK, require_tools
    require_tools()
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    started = subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1", "-n",
                              f"--load=module-null-sink sink_name={SINK}", "--load=module-native-protocol-unix"],
                             env=env, capture_output=True)
    if started.returncode or subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], env=env).returncode:
        pytest.skip("a second PulseAudio server could not start")
    process = subprocess.Popen([PYTHON, str(REPO / "infer_record.py"), "--model_path", tiny_model,
                                "--record_seconds", "0.5", "--vad", "energy"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    try:
        lines = [process.stdout.readline() for _ in range(2)]   # "listening on ..." and the first window
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True)
        out, err = process.communicate(timeout=60)
    finally:
        watchdog.cancel()
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True)
    assert lines[0].startswith("listening on ") and lines[1].startswith("[1] ")
    assert process.returncode == 2
    assert err.count("\n") == 1 and err.startswith("error: the input device ") and "stopped delivering audio" in err


def test_windows_cover_the_stream_without_holes():
    rng = np.random.default_rng(3)
    stream = rng.integers(-1000, 1000, 50_000).astype(np.int16)
    slicer, windows, position = WindowSlicer(window=4000, hop=1500), [], 0
    while position < len(stream):
        size = int(rng.integers(1, 3000))
        windows += slicer.push(stream[position:position + size])
        position += size
    assert [first for first, _ in windows] == list(range(0, len(stream) - 4000 + 1, 1500))
    for first, window in windows:
        assert np.array_equal(window, stream[first:first + 4000])


def test_a_hop_longer_than_the_window_is_refused(tiny_model):
    result = run_script("infer_record.py", "--model_path", tiny_model, "--record_seconds", "1", "--hop_seconds", "2")
    assert_one_line_error(result, "--hop_seconds must be positive and at most --record_seconds (1)")

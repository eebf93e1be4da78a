"""Fixtures of the inference and microphone tests, loaded with `pytest_plugins = ["mic_fixtures"]`
(so that session fixtures run once however many modules use them):

- `tiny_model`: a checkpoint directory of a small EcapaTdnn trained in a few seconds on three
  separable synthetic classes ("low" tones, "high" tones, "noise"), so predictions are known;
- `pulse_loopback`: a real PulseAudio server with a null sink whose monitor is the default input
  (see shared/mic-loopback.md): microphone code is tested against it, not against a mock.
"""
import os
import shutil
import subprocess
import tempfile
import time
from typing import Iterator

import numpy as np
import pytest
import soundfile
import torch

SINK = "vsink"
LABELS = ["low", "high", "noise"]
RATE = 16000
TINY_OVERWRITES = ",".join([
    "model_conf.model=EcapaTdnn", "model_conf.model_args.channels=32", "model_conf.model_args.embd_dim=32",
    "model_conf.model_args.mfa_channels=96", "model_conf.model_args.scale=4", "model_conf.model_args.se_channels=16",
    "preprocess_conf.feature_method=Fbank", "preprocess_conf.method_args.num_mel_bins=40",
    "dataset_conf.dataset.max_duration=1.0", "dataset_conf.dataset.min_duration=0.4",
    "dataset_conf.eval_conf.max_duration=2.0", "dataset_conf.eval_conf.batch_size=8"])


def synthetic_clip(label: str, seconds: float, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """(samples,) float32: harmonic tones around 120-250 Hz ("low") or 1.2-2.4 kHz ("high"), or
    white noise ("noise"), at a random level."""
    t = np.arange(int(seconds * rate)) / rate
    if label == "noise":
        clip = rng.standard_normal(t.shape[0])
    else:
        f0 = rng.uniform(120, 250) if label == "low" else rng.uniform(1200, 2400)
        clip = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in (1, 2, 3))
        clip = clip + 0.05 * rng.standard_normal(t.shape[0])
    clip = clip / np.max(np.abs(clip)) * rng.uniform(0.1, 0.6)
    return clip.astype(np.float32)


def train_tiny_model(directory: str, steps: int = 60) -> str:
    """Train the tiny config on 45 one-second synthetic clips; save it as a checkpoint directory."""
    from mser.checkpoint import save_checkpoint
    from mser.config import load_config
    from mser.factory import featurizer_from_config, model_from_config
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = load_config(None, overwrites=TINY_OVERWRITES)
    featurizer = featurizer_from_config(config)
    model = model_from_config(config, featurizer.feature_dim, len(LABELS))
    labels = torch.tensor([i for i in range(len(LABELS)) for _ in range(15)])
    waveforms = torch.from_numpy(np.stack([synthetic_clip(LABELS[i], 1.0, rng) for i in labels.tolist()]))
    with torch.no_grad():
        features, frame_lengths = featurizer(waveforms)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(features, frame_lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(directory, model.state_dict(), {"epoch": 1, "loss": loss.item()}, config, LABELS)


def private_copy(checkpoint: str, tmp_path_factory, name: str) -> str:
    """A copy of a checkpoint in a folder of its own, so that what a test module writes beside it
    (ONNX exports) lands there only."""
    target = tmp_path_factory.mktemp(name) / "best_model"
    shutil.copytree(checkpoint, target)
    return str(target)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a checkpoint directory that tells "low", "high" and "noise" clips apart."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread, and 2x so on a busy machine
    try:
        return train_tiny_model(str(tmp_path_factory.mktemp("tiny_model") / "best_model"))
    finally:
        torch.set_num_threads(threads)


def write_clip(path, samples: np.ndarray, rate: int = RATE) -> str:
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return str(path)


def require_tools() -> None:
    for tool in ("pulseaudio", "pactl", "paplay", "pacat"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install pulseaudio pulseaudio-utils)")
    pytest.importorskip("pyaudio", reason="pyaudio not installed (apt-get install portaudio19-dev; "
                                          "pip install 'mser[mic]')")


def start_server(log: str) -> None:
    started = subprocess.run(["pulseaudio", "--start", "--exit-idle-time=-1", "-n", "--log-target=file:" + log,
                              f"--load=module-null-sink sink_name={SINK}", "--load=module-native-protocol-unix"],
                             capture_output=True)
    # A failed --load leaves a server with no sink: setting its monitor as the source shows it.
    if started.returncode or subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"],
                                            capture_output=True).returncode:
        text = open(log).read() if os.path.exists(log) else started.stderr.decode(errors="replace")
        pytest.skip(f"the PulseAudio loopback server could not start: {text.strip()[-300:]}")


@pytest.fixture(scope="session")
def pulse_loopback() -> Iterator[str]:
    """A private PulseAudio server (PULSE_RUNTIME_PATH, so a developer's own server is left alone),
    kept in real time by a silent stream; yields the sink name to play clips into."""
    require_tools()
    runtime, patch = tempfile.mkdtemp(prefix="pulse-test-"), pytest.MonkeyPatch()
    patch.setenv("PULSE_RUNTIME_PATH", runtime)  # followed by every client and child process
    keep_alive = None
    try:
        start_server(os.path.join(runtime, "server.log"))
        keep_alive = subprocess.Popen(["pacat", "-p", "-d", SINK, "--latency-msec=20", "/dev/zero"])
        time.sleep(2)  # the null sink renders its first 2 s block before running in real time
        yield SINK
    finally:
        if keep_alive:
            keep_alive.terminate()
            keep_alive.wait()
        subprocess.run(["pulseaudio", "--kill"], capture_output=True)
        shutil.rmtree(runtime, ignore_errors=True)
        patch.undo()


class LoopedClip:
    """Plays a clip into the sink over and over until stopped (a script under test opens its
    stream at an unknown moment, so one play could be missed)."""

    def __init__(self, sink: str, path: str):
        self.process = subprocess.Popen(["bash", "-c", f'while :; do paplay -d "{sink}" "{path}"; done'],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)  # the loop and its current paplay, which share a session
        self.process.wait()

    def __enter__(self) -> "LoopedClip":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

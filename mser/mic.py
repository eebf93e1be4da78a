"""Microphone capture through pyaudio (optional: `pip install "mser[mic]"`).

pyaudio is imported, and PyAudio() created, only when a function here is called: `import mser`
works without it, and PortAudio lists devices once at init, so an instance made at import time
would miss an audio server started later.
"""
import contextlib
import os
import queue
import sys
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np
import soundfile

from mser.audio import rms_dbfs  # noqa: F401  (mic.rms_dbfs: the level the recorders print)
from mser.errors import MSERError

INSTALL_HINT = ("apt-get install portaudio19-dev (Debian/Ubuntu; brew install portaudio on macOS), "
                "then pip install 'mser[mic]'")


class MicrophoneError(MSERError):
    """No pyaudio, no input device, a bad --device index, or a stream that fails."""


@dataclass
class InputDevice:
    index: int
    name: str
    channels: int
    default_sample_rate: int
    is_default: bool

    def describe(self) -> str:
        mark = " (default)" if self.is_default else ""
        return f"{self.index}: '{self.name}', {self.channels} input channels, {self.default_sample_rate} Hz{mark}"


def import_pyaudio():
    """The pyaudio module, or a MicrophoneError that says how to install it."""
    try:
        import pyaudio
    except ModuleNotFoundError:
        raise MicrophoneError(f"pyaudio is not installed; for microphone input: {INSTALL_HINT}") from None
    except ImportError as e:  # installed, but its PortAudio library is missing or broken
        raise MicrophoneError(f"pyaudio cannot be loaded ({e}); {INSTALL_HINT}") from None
    return pyaudio


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: PortAudio's ALSA and JACK probing prints ~80 harmless
    lines from C code, which Python's sys.stderr cannot catch."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


@contextlib.contextmanager
def python_stderr_only() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while sys.stderr keeps writing to the real stderr: when
    a device vanishes mid-stream PortAudio's C code prints three "Expression ... failed" lines
    there, before the one-line error this module raises."""
    sys.stderr.flush()
    python_stderr, saved = sys.stderr, os.dup(2)
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


@contextlib.contextmanager
def open_pyaudio():
    """A PyAudio instance, terminated on exit."""
    pyaudio = import_pyaudio()
    with quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        yield pa
    finally:
        pa.terminate()


def default_input_index(pa) -> Optional[int]:
    try:
        return int(pa.get_default_input_device_info()["index"])
    except OSError:  # "No Default Input Device Available"
        return None


def list_input_devices(pa) -> List[InputDevice]:
    """Every device that can record, in PortAudio's order."""
    default = default_input_index(pa)
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if info["maxInputChannels"] > 0:
            devices.append(InputDevice(index, info["name"], int(info["maxInputChannels"]),
                                       int(info["defaultSampleRate"]), index == default))
    return devices


def all_device_names(pa) -> str:
    names = [f"{i}: '{pa.get_device_info_by_index(i)['name']}' (output only)"
             for i in range(pa.get_device_count())]
    return ", ".join(names) if names else "none"


def choose_input_device(pa, index: Optional[int] = None) -> InputDevice:
    """The device to record from: `index`, or the default input. Checked before any stream is
    opened, because pa.open() with an index out of range segfaults."""
    devices = list_input_devices(pa)
    if not devices:
        raise MicrophoneError(f"no audio input device found; PortAudio sees: {all_device_names(pa)}. "
                              f"Connect a microphone or start an audio server (PulseAudio/PipeWire)")
    if index is None:
        default = [d for d in devices if d.is_default]
        return default[0] if default else devices[0]
    for device in devices:
        if device.index == index:
            return device
    available = "; ".join(d.describe() for d in devices)
    raise MicrophoneError(f"--device {index} is not an input device; input devices: {available}")


def supported_rate(pa, device: InputDevice, sample_rate: int) -> int:
    """`sample_rate` when the device takes it, else the device's own rate (resampled later)."""
    try:
        pa.is_format_supported(sample_rate, input_device=device.index, input_channels=1,
                               input_format=import_pyaudio().paInt16)
        return sample_rate
    except ValueError:
        return device.default_sample_rate


def record(pa, device: InputDevice, seconds: float, sample_rate: int, chunk: int = 1024) -> np.ndarray:
    """Record mono int16 audio. Returns (samples,) int16 at `sample_rate`, exactly `seconds` long."""
    pyaudio = import_pyaudio()
    total = int(round(seconds * sample_rate))
    try:
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=sample_rate, input=True,
                         input_device_index=device.index, frames_per_buffer=chunk)
    except OSError as e:
        raise MicrophoneError(f"cannot open input device {device.describe()}: {e}") from None
    try:
        return read_frames(stream, total, chunk)
    finally:
        stream.stop_stream()
        stream.close()


def read_frames(stream, total: int, chunk: int) -> np.ndarray:
    parts, remaining = [], total
    while remaining > 0:
        count = min(chunk, remaining)
        # An overflow only means we were slow; losing a few samples beats aborting the recording.
        data = stream.read(count, exception_on_overflow=False)
        parts.append(np.frombuffer(data, dtype=np.int16))
        remaining -= count
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
    """Write (samples,) int16 as a 16-bit PCM WAV, creating the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    soundfile.write(path, samples, sample_rate, subtype="PCM_16")


class WindowSlicer:
    """Cuts a stream, pushed in chunks of any size, into windows of `window` samples starting
    every `hop` samples (hop <= window), so every sample lands in at least one window."""

    def __init__(self, window: int, hop: int):
        if not 0 < hop <= window:
            raise ValueError(f"need 0 < hop <= window, got hop {hop}, window {window}")
        self.window, self.hop = window, hop
        self.buffer = np.zeros(0, dtype=np.int16)
        self.buffer_start = 0          # stream index of buffer[0]
        self.next_end = window         # stream index one past the next window's last sample

    def push(self, chunk: np.ndarray) -> List[Tuple[int, np.ndarray]]:
        """Add (samples,) and return the windows it completes: [(first sample index, (window,))]."""
        self.buffer = np.concatenate([self.buffer, chunk])
        windows = []
        while self.buffer_start + len(self.buffer) >= self.next_end:
            first = self.next_end - self.window
            offset = first - self.buffer_start
            windows.append((first, self.buffer[offset:offset + self.window].copy()))
            self.next_end += self.hop
        unneeded = self.next_end - self.window - self.buffer_start   # before the next window starts
        if unneeded > 0:
            self.buffer = self.buffer[unneeded:]
            self.buffer_start += unneeded
        return windows


class MicrophoneStream:
    """A continuous capture: PortAudio calls back with each chunk on its own thread and the chunks
    wait in a queue, so nothing is lost while the caller is busy predicting. `chunks()` yields
    ((samples,) int16, arrival time from time.monotonic()) and raises MicrophoneError when the
    device stops delivering (unplugged, audio server gone) for `stall_seconds`."""

    def __init__(self, pa, device: InputDevice, sample_rate: int, chunk: int = 1024, stall_seconds: float = 3.0):
        self.pa, self.device, self.sample_rate, self.chunk = pa, device, sample_rate, chunk
        self.stall_seconds = stall_seconds
        self.queue: "queue.Queue[Tuple[bytes, float]]" = queue.Queue()
        self.samples_read = 0
        self.overflows = 0             # chunks PortAudio flagged: input arrived faster than it was taken
        self.stream = None

    def callback(self, data, frame_count, time_info, status):
        if status:
            self.overflows += 1
        self.queue.put((data, time.monotonic()))
        return None, import_pyaudio().paContinue

    def __enter__(self) -> "MicrophoneStream":
        pyaudio = import_pyaudio()
        try:
            self.stream = self.pa.open(format=pyaudio.paInt16, channels=1, rate=self.sample_rate, input=True,
                                       input_device_index=self.device.index, frames_per_buffer=self.chunk,
                                       stream_callback=self.callback)
        except OSError as e:
            raise MicrophoneError(f"cannot open input device {self.device.describe()}: {e}") from None
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):   # a device that is gone cannot be stopped cleanly
            self.stream.stop_stream()
            self.stream.close()

    def input_latency(self) -> float:
        """Seconds PortAudio reports between the microphone and our callback."""
        return float(self.stream.get_input_latency())

    def chunks(self) -> Iterator[Tuple[np.ndarray, float]]:
        waited = 0.0
        while True:
            try:
                data, arrived = self.queue.get(timeout=0.25)
            except queue.Empty:
                waited += 0.25
                if waited >= self.stall_seconds or not self.stream.is_active():
                    raise MicrophoneError(f"the input device {self.device.name!r} stopped delivering audio "
                                          f"(unplugged, or the audio server went away) after "
                                          f"{self.samples_read / self.sample_rate:.1f} s") from None
                continue
            waited = 0.0
            samples = np.frombuffer(data, dtype=np.int16)
            self.samples_read += len(samples)
            yield samples, arrived

"""Voice activity detection: which parts of a recording are speech.

One interface, two backends:

- "silero": the Silero VAD network (`pip install "mser[vad]"`; the model file ships inside the
  package, nothing is downloaded). Tells speech from noise by its spectral shape.
- "energy": frame level above an adaptive noise floor (no dependency). Exact on clean input and
  digital silence, blind to loud noise.

Both score 32 ms frames (512 samples at 16 kHz) with a speech probability in [0, 1]; the same
hysteresis and minimum durations turn those into segments:

    segments = speech_segments(samples, 16000)            # [(start_s, end_s), ...]
    if not is_speech(window, 16000): print("silence")
"""
import functools
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from mser.audio import resample
from mser.errors import ConfigError

VAD_RATE = 16000
FRAME_SAMPLES = 512                       # Silero's window at 16 kHz; the energy gate uses the same
FRAME_SECONDS = FRAME_SAMPLES / VAD_RATE  # 0.032 s
BACKENDS = ("silero", "energy")
DEFAULT_BACKEND = "silero"                # chosen by tools/vad_benchmark.py, see README
SILERO_HINT = "pip install \"mser[vad]\" (silero-vad; its model ships inside the package)"

Segment = Tuple[float, float]


def as_float_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(samples,) int16 or float at any rate -> (samples,) float32 in [-1, 1] at 16 kHz."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    return resample(samples, sample_rate, VAD_RATE) if sample_rate != VAD_RATE else samples


def frame_count(num_samples: int) -> int:
    """Frames covering `num_samples` at 16 kHz (the last one zero-padded)."""
    return -(-num_samples // FRAME_SAMPLES)


class EnergyVAD:
    """Speech where a frame's level is `margin_db` above a noise floor that follows the quietest
    frames: it drops at once to a quieter frame and rises by `rise_db_per_s` otherwise, so a
    noise that gets louder is followed within seconds, and a pause in speech is not needed at once.
    The floor starts at the 10th percentile of the input's frame levels, so each call (one stream
    window, one file) stands alone."""
    name = "energy"

    def __init__(self, margin_db: float = 9.0, rise_db_per_s: float = 3.0, slope_db: float = 1.5,
                 silence_dbfs: float = -70.0):
        self.margin_db, self.slope_db, self.silence_dbfs = margin_db, slope_db, silence_dbfs
        self.rise_per_frame = rise_db_per_s * FRAME_SECONDS

    def frame_levels(self, samples: np.ndarray) -> np.ndarray:
        """(samples,) float32 at 16 kHz -> (frames,) level in dBFS, at least `silence_dbfs` - 20."""
        padded = np.zeros(frame_count(len(samples)) * FRAME_SAMPLES, dtype=np.float64)
        padded[:len(samples)] = samples
        frames = padded.reshape(-1, FRAME_SAMPLES)
        frames = frames - frames.mean(axis=1, keepdims=True)  # a DC offset is not speech
        power = np.mean(np.square(frames), axis=1)
        return np.maximum(10 * np.log10(np.maximum(power, 1e-20)), self.silence_dbfs - 20)

    def noise_floor(self, levels: np.ndarray) -> np.ndarray:
        """(frames,) dBFS -> (frames,) the floor each frame is compared with."""
        floor = float(np.percentile(levels, 10)) if levels.size else 0.0
        floors = np.empty_like(levels)
        for index, level in enumerate(levels):
            floor = min(level, floor + self.rise_per_frame)
            floors[index] = floor
        return floors

    def frame_probabilities(self, samples: np.ndarray) -> np.ndarray:
        """(samples,) float32 at 16 kHz -> (frames,) speech probability."""
        levels = self.frame_levels(samples)
        above = levels - self.noise_floor(levels) - self.margin_db
        probs = 1.0 / (1.0 + np.exp(-np.clip(above / self.slope_db, -50, 50)))
        return np.where(levels > self.silence_dbfs, probs, 0.0)

    def batch_frame_probabilities(self, clips: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Several clips, each (samples,) float32 at 16 kHz -> its (frames,) probabilities."""
        return [self.frame_probabilities(clip) for clip in clips]


class SileroVAD:
    """The Silero VAD network from the silero-vad package: its ONNX file under ONNX Runtime when
    that is installed (0.7 ms per frame on one core), else its TorchScript file on one torch
    thread (with torch's default threads on a busy 2-core machine, OpenMP spin-waiting made a
    frame take 44 ms instead of 1). Each call starts from a fresh recurrent state, so a call is
    one recording or one stream window."""
    name = "silero"

    def __init__(self):
        import importlib.util

        import torch
        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise ConfigError(f"the silero VAD needs the silero-vad package: {SILERO_HINT}; "
                              f"or use the energy VAD") from None
        finally:
            torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread for everyone
        self.torch = torch
        self.uses_onnx = importlib.util.find_spec("onnxruntime") is not None
        with warnings.catch_warnings():   # the package's own deprecation notices, nothing for a user to do
            warnings.simplefilter("ignore")
            self.model = load_silero_vad(onnx=self.uses_onnx)

    def frame_probabilities(self, samples: np.ndarray) -> np.ndarray:
        """(samples,) float32 at 16 kHz -> (frames,) speech probability."""
        return self.batch_frame_probabilities([samples])[0]

    def batch_frame_probabilities(self, clips: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Several clips at once, each (samples,) float32 at 16 kHz -> its (frames,) probabilities.
        One pass over the batch, zero-padded at the end: the network runs forward in time, so a
        clip's frames are what it gets alone, for a fraction of the calls."""
        frames = [frame_count(len(clip)) for clip in clips]
        if max(frames, default=0) == 0:
            return [np.zeros(0) for _ in clips]
        audio = self.torch.zeros(len(clips), max(frames) * FRAME_SAMPLES)
        for row, clip in enumerate(clips):
            audio[row, :len(clip)] = self.torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))
        if self.uses_onnx:
            probs = self.model.audio_forward(audio, VAD_RATE)
        else:
            from mser.threads import torch_threads
            with torch_threads(1), self.torch.inference_mode():
                probs = self.model.audio_forward(audio, VAD_RATE)
        return [probs[row, :count].double().numpy() for row, count in enumerate(frames)]


VAD = Union[EnergyVAD, SileroVAD]


def silero_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("silero_vad") is not None


@functools.lru_cache(maxsize=None)
def load_vad(backend: Optional[str] = None) -> VAD:
    """A detector: "silero", "energy", or None for the default (silero when installed, else energy).
    Cached: the Silero model loads once per process."""
    if backend is None:
        backend = DEFAULT_BACKEND if silero_available() else "energy"
    if backend == "silero":
        return SileroVAD()
    if backend == "energy":
        return EnergyVAD()
    raise ConfigError(f"unknown VAD backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


def resolve(vad: Union[VAD, str, None]) -> VAD:
    return load_vad(vad) if vad is None or isinstance(vad, str) else vad


def frame_probabilities(samples: np.ndarray, sample_rate: int, vad: Union[VAD, str, None] = None) -> np.ndarray:
    """(samples,) int16 or float at `sample_rate` -> (frames,) speech probability per 32 ms frame."""
    return resolve(vad).frame_probabilities(as_float_16k(samples, sample_rate))


def speech_frames(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(frames,) probability -> (frames,) bool, with hysteresis: speech starts above `threshold`
    and ends below `threshold` - 0.15, so a probability hovering at the threshold does not flicker."""
    low = threshold - 0.15
    speaking, flags = False, np.zeros(len(probs), dtype=bool)
    for index, prob in enumerate(probs):
        speaking = prob >= threshold if not speaking else prob >= low
        flags[index] = speaking
    return flags


def runs(flags: np.ndarray) -> List[Tuple[int, int]]:
    """(frames,) bool -> [(first, end)] frame ranges of consecutive True, end exclusive."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def frames_to_segments(flags: np.ndarray, duration: float, min_speech: float = 0.25,
                       min_silence: float = 0.1, pad: float = 0.03) -> List[Segment]:
    """(frames,) bool -> [(start_s, end_s)]: pauses shorter than `min_silence` joined, speech
    shorter than `min_speech` dropped, `pad` seconds added on both sides, clipped to `duration`."""
    merged: List[List[int]] = []
    for first, end in runs(flags):
        if merged and (first - merged[-1][1]) * FRAME_SECONDS < min_silence:
            merged[-1][1] = end
        else:
            merged.append([first, end])
    segments: List[Segment] = []
    for first, end in merged:
        if (end - first) * FRAME_SECONDS < min_speech:
            continue
        start, stop = max(0.0, first * FRAME_SECONDS - pad), min(duration, end * FRAME_SECONDS + pad)
        if segments and start <= segments[-1][1]:
            segments[-1] = (segments[-1][0], stop)
        else:
            segments.append((start, stop))
    return segments


def speech_segments(samples: np.ndarray, sample_rate: int, vad: Union[VAD, str, None] = None,
                    threshold: float = 0.5, min_speech: float = 0.25, min_silence: float = 0.1,
                    pad: float = 0.03) -> List[Segment]:
    """Where the speech is: (samples,) int16 or float at `sample_rate` -> [(start_s, end_s)],
    in order, not overlapping. `vad`: a detector from load_vad(), a backend name, or None."""
    return batch_speech_segments([samples], sample_rate, vad, threshold, min_speech, min_silence, pad)[0]


def batch_speech_segments(clips: Sequence[np.ndarray], sample_rate: int, vad: Union[VAD, str, None] = None,
                          threshold: float = 0.5, min_speech: float = 0.25, min_silence: float = 0.1,
                          pad: float = 0.03) -> List[List[Segment]]:
    """speech_segments() of several clips, the detector scoring them in one batch."""
    audio = [as_float_16k(clip, sample_rate) for clip in clips]
    probs = resolve(vad).batch_frame_probabilities(audio)
    return [frames_to_segments(speech_frames(clip_probs, threshold), len(clip) / VAD_RATE,
                               min_speech, min_silence, pad) for clip, clip_probs in zip(audio, probs)]


def speech_seconds(clips: Sequence[np.ndarray], sample_rate: int, vad: Union[VAD, str, None] = None) -> List[float]:
    """How many seconds of speech_segments() each clip holds (0.0 for none), scored in one batch."""
    return [sum(end - start for start, end in segments) for segments in batch_speech_segments(clips, sample_rate, vad)]


def is_speech(samples: np.ndarray, sample_rate: int, vad: Union[VAD, str, None] = None,
              threshold: float = 0.5, min_speech: float = 0.25) -> bool:
    """Whether a window (e.g. 3 s from a microphone) holds at least `min_speech` seconds of speech."""
    segments = speech_segments(samples, sample_rate, vad, threshold, min_speech=min_speech, pad=0.0)
    return sum(end - start for start, end in segments) >= min_speech

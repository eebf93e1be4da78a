"""Pitch trackers in noise: our autocorrelation tracker against torchcrepe and PESTO.

Tracked signals, 3 s at 16 kHz, with a known F0 every 10 ms:
  synthetic  harmonic "vowels" (random F0 85-320 Hz, glides of up to +-4 semitones, 5.5 Hz
             vibrato, two formant-like resonances), separated by silence or breath noise; the F0
             and the voicing are known exactly (frames near a segment edge are not scored)
  espeak     espeak-ng sentences from several voices, pitches and rates; the reference F0 and
             voicing are measured on the clean signal with librosa's pYIN (a tracker that is not
             in the comparison), so they are a reference, not the truth
Each clip is scored clean and with white or pink noise at 5, 10, 20 and 30 dB SNR (the speech
power is measured over its active part: frames within 30 dB of the loudest).

Metrics, pooled over the clips of a source (frames on a common 10 ms grid, centred at i * 10 ms):
  GPE %        reference-voiced frames whose tracked F0 is more than 20 % off, whatever the
               tracker's own voicing decision (1 - raw pitch accuracy at 20 %)
  cents        median |error| in cents over the reference-voiced frames
  voicing %    frames whose voiced/unvoiced decision matches the reference
  clips/s      3 s clips per second on the CPU, torch on one thread (batched where the tracker
               takes batches), clean clips, best of two passes

Trackers and their voicing decisions:
  autocorr     FbankProsody's PitchTracker (40 ms normalised autocorrelation, Boersma 1993), voiced
               when the peak exceeds 0.45 and the frame is within 30 dB of the clip's loud level
  prosody-crepe  FbankProsody's `pitch_tracker: crepe` (CREPE tiny, batched, weighted-mean
               decoding, no Viterbi), with the same voicing rule on CREPE's pitch probability
  crepe-tiny   torchcrepe 'tiny' / 'full' (weights in the package), Viterbi decoding, voiced when
  crepe-full   the periodicity (3-frame median) is at least 0.21, as torchcrepe's README does
  pesto        PESTO 'mir-1k_g7' (weights in the package), voiced when its confidence >= 0.5

Usage: python tools/pitch_benchmark.py [--trackers autocorr,crepe-tiny,pesto] [--clips 8] [--json]
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mser.audio import load_audio  # noqa: E402
from mser.features.prosody import build_tracker  # noqa: E402

SAMPLE_RATE = 16000
HOP = 160                  # 10 ms
CLIP_SAMPLES = 3 * SAMPLE_RATE
FRAMES = CLIP_SAMPLES // HOP + 1
F0_RANGE = (60.0, 600.0)
SNRS = (30, 20, 10, 5)
COLOURS = ("white", "pink")
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "I never thought we would see each other again after all these years.",
    "Please put the books back on the shelf before you leave tonight.",
    "Nobody told me the meeting had been moved to Thursday morning.",
    "We walked along the beach until the sun went down behind the hills.",
    "Could you tell me where the nearest train station is, please?",
    "She opened the letter slowly and read it twice without a word.",
    "They are building a new bridge across the valley next summer.",
]
VOICES = ["en-us", "en-gb", "en+f3", "en-us+f2", "en+m3", "en-gb-scotland+f4", "en-029", "en+f5"]


@dataclass
class Clip:
    source: str
    audio: np.ndarray      # (CLIP_SAMPLES,) float32
    f0: np.ndarray         # (FRAMES,) Hz, reference; nan where unvoiced
    voiced: np.ndarray     # (FRAMES,) bool
    scored: np.ndarray     # (FRAMES,) bool: frames whose voicing is scored
    active: np.ndarray     # (CLIP_SAMPLES,) bool: the samples that set the speech power


def frame_centres() -> np.ndarray:
    return np.arange(FRAMES) * HOP


# ----------------------------------------------------------------------------- signals

def synthetic_clip(rng: np.random.Generator) -> Clip:
    """Harmonic vowels with glides and vibrato between silent or breathy gaps; F0 known exactly."""
    f0 = np.zeros(CLIP_SAMPLES)
    envelope = np.zeros(CLIP_SAMPLES)
    audio = np.zeros(CLIP_SAMPLES)
    position = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    while True:
        length = int(rng.uniform(0.25, 0.7) * SAMPLE_RATE)
        if position + length > CLIP_SAMPLES - int(0.05 * SAMPLE_RATE):
            break
        segment = slice(position, position + length)
        time_s = np.arange(length) / SAMPLE_RATE
        base = math.exp(rng.uniform(math.log(85.0), math.log(320.0)))
        glide = rng.uniform(-4.0, 4.0) * time_s / time_s[-1]
        vibrato = 0.5 * np.sin(2 * math.pi * 5.5 * time_s + rng.uniform(0, 2 * math.pi))
        f0[segment] = base * 2 ** ((glide + vibrato) / 12)
        ramp = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.03 * SAMPLE_RATE))
        envelope[segment] = ramp * rng.uniform(0.3, 1.0)
        audio[segment] = vowel(f0[segment], rng) * envelope[segment]
        gap = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
        if rng.random() < 0.5:  # breath noise in the gap: unvoiced, but not silent
            end = min(CLIP_SAMPLES, position + length + gap)
            audio[position + length:end] += 0.01 * rng.standard_normal(end - position - length)
        position += length + gap
    audio = (0.3 * audio / max(1e-9, np.abs(audio).max())).astype(np.float32)
    return Clip("synthetic", audio, *synthetic_truth(f0, envelope), active=envelope > 0)


def vowel(f0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Harmonics of f0 (samples,) up to 7 kHz with 1/k fall-off and two formant-like peaks."""
    phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = [(rng.uniform(350, 850), 120.0), (rng.uniform(900, 2300), 200.0)]
    signal = np.zeros_like(f0)
    for k in range(1, int(7000 / f0.max()) + 1):
        frequency = k * f0
        gain = 1.0 / k + sum(3.0 / k * np.exp(-((frequency - centre) / width) ** 2) for centre, width in formants)
        signal += gain * np.sin(k * phase)
    return signal


def synthetic_truth(f0: np.ndarray, envelope: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: F0 at the centre, voiced when the envelope is on across +-10 ms, scored when it
    is on across +-10 ms or off across +-20 ms."""
    centres = frame_centres()
    on = envelope > 0

    def across(mask: np.ndarray, reach: int) -> np.ndarray:
        padded = np.pad(mask, reach, constant_values=False)
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1)
        return windows[np.minimum(centres, len(mask) - 1)].all(axis=1)

    voiced = across(on, SAMPLE_RATE // 100)
    silent = across(~on, SAMPLE_RATE // 50)
    reference = np.where(voiced, f0[np.minimum(centres, CLIP_SAMPLES - 1)], np.nan)
    return reference, voiced, voiced | silent


def espeak_clip(index: int, rng: np.random.Generator, work_dir: str) -> Clip:
    """An espeak-ng sentence, 3 s; reference F0 and voicing from pYIN on the clean signal."""
    path = os.path.join(work_dir, f"espeak_{index}.wav")
    voice, sentence = VOICES[index % len(VOICES)], SENTENCES[index % len(SENTENCES)]
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(int(rng.uniform(25, 75))),
                    "-s", str(int(rng.uniform(140, 190))), "-w", path, sentence], check=True)
    audio = load_audio(path, SAMPLE_RATE)[:CLIP_SAMPLES]
    audio = np.pad(audio, (0, CLIP_SAMPLES - len(audio))).astype(np.float32)
    audio = 0.3 * audio / max(1e-9, np.abs(audio).max())
    f0, voiced = pyin_reference(audio)
    return Clip("espeak", audio, f0, voiced, np.ones(FRAMES, dtype=bool), active_samples(audio))


def pyin_reference(audio: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    import librosa
    f0, voiced, _ = librosa.pyin(audio, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=SAMPLE_RATE,
                                 frame_length=1024, hop_length=HOP, center=True)
    f0, voiced = f0[:FRAMES], voiced[:FRAMES]
    return np.where(voiced, f0, np.nan), voiced


def active_samples(audio: np.ndarray) -> np.ndarray:
    """Samples of 20 ms frames within 30 dB of the loudest frame."""
    frame = SAMPLE_RATE // 50
    usable = len(audio) // frame * frame
    level = 10 * np.log10(np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1) + 1e-12)
    loud = np.repeat(level > level.max() - 30, frame)
    return np.pad(loud, (0, len(audio) - usable))


def noise(colour: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance white or pink (1/f power) noise."""
    white = rng.standard_normal(samples)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    frequencies = np.fft.rfftfreq(samples)
    spectrum[1:] /= np.sqrt(frequencies[1:])
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n=samples)
    return pink / pink.std()


def noisy(clip: Clip, colour: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(clip.audio[clip.active].astype(np.float64) ** 2))
    scale = math.sqrt(power / 10 ** (snr_db / 10))
    return (clip.audio + scale * noise(colour, len(clip.audio), rng)).astype(np.float32)


# ----------------------------------------------------------------------------- trackers
# Each takes (clips, samples) float32 and returns F0 in Hz and a voiced mask, (clips, FRAMES),
# on frames centred at i * HOP.

def prosody_tracker(name: str, voicing_threshold: float = 0.45) -> Callable:
    """FbankProsody's tracker `name` (autocorr or crepe) with FbankProsody's voicing rule."""
    tracker = build_tracker(name, SAMPLE_RATE, *F0_RANGE, voicing_threshold=voicing_threshold, hop=HOP)

    def track(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        waveforms = torch.from_numpy(batch)
        needed = (FRAMES - 1) * HOP + tracker.window
        left = tracker.window // 2  # frame i then starts at i * HOP - window / 2: centred at i * HOP
        waveforms = torch.nn.functional.pad(waveforms, (left, needed - left - waveforms.shape[1]))
        with torch.inference_mode():
            log_f0, strength, level_db = tracker(waveforms)
        loud = torch.quantile(level_db, 0.95, dim=1, keepdim=True)
        voiced = (strength > tracker.voicing_threshold) & (level_db > loud - 30.0)
        return (100.0 * 2 ** log_f0).numpy(), voiced.numpy()
    return track


def crepe_tracker(model: str) -> Callable:
    import torchcrepe

    def track(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        f0s, voiced = [], []
        for clip in batch:
            with torch.inference_mode():
                f0, periodicity = torchcrepe.predict(torch.from_numpy(clip)[None], SAMPLE_RATE, HOP, *F0_RANGE,
                                                     model=model, return_periodicity=True, batch_size=512,
                                                     device="cpu", pad=True)
            periodicity = torchcrepe.filter.median(periodicity, 3)
            f0s.append(f0[0, :FRAMES].numpy())
            voiced.append(periodicity[0, :FRAMES].numpy() >= 0.21)
        return np.stack(f0s), np.stack(voiced)
    return track


def pesto_tracker() -> Callable:
    import pesto
    model = pesto.load_model("mir-1k_g7", step_size=1000.0 * HOP / SAMPLE_RATE, sampling_rate=SAMPLE_RATE).eval()

    def track(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            f0, confidence, _ = model(torch.from_numpy(batch), sr=SAMPLE_RATE, convert_to_freq=True,
                                      return_activations=False)
        f0, confidence = f0[:, :FRAMES].numpy(), confidence[:, :FRAMES].numpy()
        missing = FRAMES - f0.shape[1]
        if missing > 0:
            f0 = np.pad(f0, ((0, 0), (0, missing)), mode="edge")
            confidence = np.pad(confidence, ((0, 0), (0, missing)))
        return f0, confidence >= 0.5
    return track


TRACKERS = {"autocorr": lambda: prosody_tracker("autocorr"), "prosody-crepe": lambda: prosody_tracker("crepe"),
            "crepe-tiny": lambda: crepe_tracker("tiny"),
            "crepe-full": lambda: crepe_tracker("full"), "pesto": pesto_tracker}


# ----------------------------------------------------------------------------- scoring

def score(clips: List[Clip], f0: np.ndarray, voiced: np.ndarray) -> Dict[str, float]:
    reference = np.stack([c.f0 for c in clips])
    reference_voiced = np.stack([c.voiced for c in clips])
    scored = np.stack([c.scored for c in clips])
    estimate = np.where(np.isfinite(f0) & (f0 > 0), f0, np.nan)[reference_voiced]
    truth = reference[reference_voiced]
    with np.errstate(invalid="ignore"):
        gross = ~(np.abs(estimate / truth - 1.0) <= 0.2)
        cents = np.abs(1200 * np.log2(estimate / truth))
    return {"gpe": 100 * float(gross.mean()), "cents": float(np.nanmedian(np.where(np.isnan(cents), 1e4, cents))),
            "voicing": 100 * float((voiced == reference_voiced)[scored].mean())}


def speed(track: Callable, clips: List[Clip]) -> float:
    batch = np.stack([c.audio for c in clips])
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        track(batch)
        seconds.append(time.perf_counter() - start)
    return len(clips) / min(seconds)


def conditions() -> List[Tuple[str, float]]:
    return [("clean", None)] + [(colour, snr) for colour in COLOURS for snr in SNRS]


def run(trackers: List[str], clips_per_source: int, seed: int) -> Dict:
    rng = np.random.default_rng(seed)
    work_dir = tempfile.mkdtemp(prefix="pitch_benchmark_")
    try:
        sources = {"synthetic": [synthetic_clip(rng) for _ in range(clips_per_source)]}
        if shutil.which("espeak-ng") and importlib.util.find_spec("librosa"):  # pYIN reference
            sources["espeak"] = [espeak_clip(i, rng, work_dir) for i in range(clips_per_source)]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    noisy_batches = {}
    for source, clips in sources.items():
        for colour, snr in conditions():
            noise_rng = np.random.default_rng([seed, len(noisy_batches)])
            noisy_batches[source, colour, snr] = np.stack(
                [c.audio if colour == "clean" else noisy(c, colour, snr, noise_rng) for c in clips])
    rows = []
    for name in trackers:
        track = TRACKERS[name]()
        clips_per_s = speed(track, sources["synthetic"])
        for (source, colour, snr), batch in noisy_batches.items():
            f0, voiced = track(batch)
            rows.append({"tracker": name, "source": source, "noise": colour, "snr_db": snr,
                         **score(sources[source], f0, voiced), "clips_per_s": clips_per_s})
        print(f"done: {name} ({clips_per_s:.2f} clips/s)", file=sys.stderr)
    return {"rows": rows, "threads": torch.get_num_threads(), "clips_per_source": clips_per_source,
            "sources": list(sources)}


def print_table(results: Dict) -> None:
    rows = results["rows"]
    trackers = list(dict.fromkeys(r["tracker"] for r in rows))
    print(f"clips per source: {results['clips_per_source']}, torch threads: {results['threads']}")
    print("speed (3 s clips/s, CPU): " + ", ".join(
        f"{t} {next(r['clips_per_s'] for r in rows if r['tracker'] == t):.2f}" for t in trackers))
    for source in results["sources"]:
        print(f"\n## {source}: GPE % / median cents / voicing accuracy %")
        print("| noise | SNR dB | " + " | ".join(trackers) + " |")
        print("|---|---:|" + "---:|" * len(trackers))
        for colour, snr in conditions():
            cells = []
            for tracker in trackers:
                (row,) = [r for r in rows if (r["tracker"], r["source"], r["noise"], r["snr_db"])
                          == (tracker, source, colour, snr)]
                cells.append(f"{row['gpe']:.1f} / {row['cents']:.0f} / {row['voicing']:.1f}")
            print(f"| {colour} | {'-' if snr is None else snr} | " + " | ".join(cells) + " |")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--trackers", default="autocorr,prosody-crepe,crepe-tiny,pesto",
                        help=f"comma-separated, from {', '.join(TRACKERS)}")
    parser.add_argument("--clips", type=int, default=8, help="clips per source (synthetic, espeak)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    trackers = [t.strip() for t in args.trackers.split(",") if t.strip()]
    unknown = [t for t in trackers if t not in TRACKERS]
    if unknown or not trackers:
        sys.exit(f"error: unknown tracker {', '.join(unknown) or '(none)'}; choose from {', '.join(TRACKERS)}")
    torch.set_num_threads(args.threads)
    results = run(trackers, args.clips, args.seed)
    print_table(results)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Generate the demo corpus (v2): acted emotions spoken by 36 espeak-ng voices, 16 kHz mono FLAC.

Why it looks like this. The first demo corpus was too easy: every emotion had its own sentence
ending (espeak-ng turns `!` and `?` into a fixed intonation), every voice read the same sentences in
every emotion, there were 10 voices, mild noise and a +-4 dB level spread; models tuned on it failed
on other corpora. This one removes those shortcuts and adds the variety a model meets elsewhere:

- 36 voices: 9 espeak-ng English accents x 4 variants, 18 male and 18 female (`VOICES`).
- Each clip draws its sentence from a pool of 48 neutral-content sentences and its ending (`.`,
  `!`, `?`) at random, independently of the emotion, so neither the words nor the intonation of
  the ending tell the emotion, and voices read different sentences.
- Each voice has its own habits, drawn once: pitch offset (sd 18 % of the SSML pitch), rate (sd
  10 %), pitch range (sd about 20 %) and loudness (sd 3 dB). A voice's habit can be larger than the
  difference between two emotions, as in real speakers.
- Each emotion is an SSML `<prosody pitch rate range volume>` profile taken from the acoustic
  literature on vocal emotion (Scherer 2003; Juslin & Laukka 2003), drawn per clip with spreads
  wide enough that the profiles overlap: a logistic regression on the generator's own drawn values
  (`--ceiling`) tells the emotions of unseen voices apart at about 0.85, not near 1.

      neutral    the voice's habits
      happy      higher pitch, wider range, a little faster and louder
      sad        lower pitch, narrow range, slow, quiet
      angry      higher pitch, wide range, fast, loud
      fearful    high pitch, fast, narrowish range, each word at its own jittered pitch
      surprised  very high pitch, very wide range

- Recording conditions drawn per clip: noise (white, pink, brown or babble of other espeak-ng
  talkers) at 5-30 dB SNR; a heard level spread of +-10 dB on top of the emotion's and the voice's
  loudness; room reverberation on a quarter of the clips (synthetic exponentially decaying impulse
  response, RT60 0.2-0.8 s); a telephone channel on a fifth (300-3400 Hz band-pass through 8 kHz);
  mild clipping on a few; 0.05-0.3 s of leading and trailing silence.

Layout (written under --out_dir, dataset/demo by default):

    <voice>/<voice>_<emotion>_<nn>.flac
        voice    the espeak-ng voice with '+' written as '-', e.g. en-us-f2 is `-v en-us+f2`
        emotion  neutral | happy | sad | angry | fearful | surprised
        nn       two-digit clip number within (voice, emotion)
    metadata.tsv  one row per clip: file, voice, emotion, sentence, ending, the drawn prosody values
                  (SSML, voice habit included), the voice's habits, the heard level and the
                  recording conditions

The output is reproducible: every clip has its own random generator seeded from
(--seed, voice, emotion, clip), so the worker count does not change a single sample.

    python tools/make_demo_corpus.py --out_dir dataset/demo --seed 2024 --overwrite
    python tools/make_demo_corpus.py --report dataset/demo   # per-emotion duration, RMS, pitch
    python tools/make_demo_corpus.py --ceiling dataset/demo  # accuracy from the generator's own values
"""
import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile

SAMPLE_RATE = 16000
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "surprised")

# 9 accents x (2 male + 2 female) variants; en+m7 and en-us+f2 are the README's examples.
VOICES = [
    "en+m7", "en+david", "en+f3", "en+Annie",
    "en-us+m3", "en-us+Andy", "en-us+f2", "en-us+belinda",
    "en-gb+m1", "en-gb+rob", "en-gb+f4", "en-gb+linda",
    "en-gb-scotland+m4", "en-gb-scotland+john", "en-gb-scotland+f1", "en-gb-scotland+Andrea",
    "en-gb-x-rp+m5", "en-gb-x-rp+paul", "en-gb-x-rp+f5", "en-gb-x-rp+steph",
    "en-gb-x-gbclan+m6", "en-gb-x-gbclan+klatt", "en-gb-x-gbclan+aunty", "en-gb-x-gbclan+anika",
    "en-gb-x-gbcwmd+m2", "en-gb-x-gbcwmd+Alex", "en-gb-x-gbcwmd+Alicia", "en-gb-x-gbcwmd+steph2",
    "en-029+m8", "en-029+klatt2", "en-029+grandma", "en-029+steph3",
    "en-us-nyc+quincy", "en-us-nyc+klatt3", "en-us-nyc+f1", "en-us-nyc+Annie",
]

SENTENCES = [
    "Kids are talking by the door", "Dogs are sitting by the door", "The train leaves at seven tonight",
    "I put the box on the table", "We will meet again tomorrow", "She opened the window this morning",
    "The keys are in the kitchen", "He is coming home on Friday", "It is going to rain later",
    "They painted the fence green", "My phone is on the chair", "The store closes at nine",
    "Our bus was late again", "The letter came this afternoon", "The meeting moved to Thursday",
    "There is milk in the fridge", "He parked the car outside", "The lights are still on upstairs",
    "She called her sister last night", "The garden needs more water", "We bought a new lamp",
    "The report is due on Monday", "Your coat is on the hook", "The plane landed an hour ago",
    "I saw him at the station", "They moved to a bigger flat", "The soup is on the stove",
    "He fixed the old bicycle", "The children went to the park", "We need more paper for the printer",
    "The museum opens at ten", "She wrote the number on a card", "The river is high this week",
    "My brother lives near the coast", "The doctor will see you now", "They sold the house in June",
    "The cat is sleeping on the sofa", "I left the bag in the car", "The road is closed for repairs",
    "We had fish for dinner", "The clock in the hall stopped", "He read the whole book in a day",
    "The radio was playing all morning", "She found the ticket in her pocket",
    "The shop on the corner is new", "The film starts at eight", "They are painting the kitchen",
    "I will send the photos later",
]
ENDINGS = (".", "!", "?")

# Talkers for babble noise: other variants than the corpus voices, reading their own sentences.
BABBLE_TALKERS = ["en+m2", "en-us+f4", "en-gb+m6", "en+f5", "en-gb-x-rp+m3", "en-us+f1"]
BABBLE_TEXT = ("The weather report said it would be cloudy for most of the day. Someone left a "
               "message about the delivery and the time it would arrive. We talked about the plans "
               "for the weekend and what to bring along.")
NOISE_COLOURS = ("white", "pink", "brown", "babble")


@dataclass(frozen=True)
class Profile:
    """Means and spreads of the SSML prosody values; pitch and volume are % change, rate and
    range % of the voice's default; word_jitter is the spread of a per-word pitch offset (%)."""
    pitch: Tuple[float, float]
    rate: Tuple[float, float]
    range: Tuple[float, float]
    volume: Tuple[float, float]
    word_jitter: Tuple[float, float] = (3.0, 2.0)


# espeak-ng compresses pitch: +50% moves the mean F0 by about +27%, +100% by about +60%.
PROFILES: Dict[str, Profile] = {
    "neutral": Profile(pitch=(0, 9), rate=(100, 6), range=(100, 18), volume=(0, 12)),
    "happy": Profile(pitch=(45, 11), rate=(110, 6), range=(180, 28), volume=(25, 15)),
    "sad": Profile(pitch=(-30, 9), rate=(74, 6), range=(45, 14), volume=(-40, 10)),
    "angry": Profile(pitch=(35, 11), rate=(128, 7), range=(160, 28), volume=(100, 25)),
    "fearful": Profile(pitch=(65, 11), rate=(127, 7), range=(65, 18), volume=(5, 15), word_jitter=(12, 4)),
    "surprised": Profile(pitch=(100, 14), rate=(100, 7), range=(250, 40), volume=(30, 15)),
}

# Bounds that keep espeak-ng in a range where it still sounds like speech.
LIMITS = {"pitch": (-60, 160), "rate": (50, 180), "range": (10, 350), "volume": (-70, 160)}
# espeak-ng clips its own output above about +40% volume, so every clip is synthesised at this
# fraction of its intended amplitude and scaled back afterwards.
VOLUME_HEADROOM = 0.4
# Speech scale before the recording gain: VOLUME_HEADROOM undone, then -20 dB, which leaves
# headroom for the loudest clips (+10 dB gain on a loud angry voice) and keeps the noise floor low
# enough in 16-bit samples for FLAC to stay small.
LEVEL = 0.1 / VOLUME_HEADROOM
REVERB_SHARE, TELEPHONE_SHARE, CLIPPING_SHARE = 0.25, 0.2, 0.05


@dataclass(frozen=True)
class ClipJob:
    voice_index: int
    emotion: str
    clip: int
    seed: int
    out_dir: str


@dataclass(frozen=True)
class VoiceHabit:
    """A speaker's habits, fixed for the whole corpus."""
    pitch: float      # SSML pitch offset, % points
    rate: float       # factor on the SSML rate
    range: float      # factor on the SSML range
    level_db: float   # loudness offset, dB


@dataclass(frozen=True)
class Condition:
    """How one clip was recorded."""
    gain_db: float
    noise: str
    snr_db: float
    rt60: float       # 0: no reverberation
    telephone: bool
    clip_percentile: float  # 0: no clipping; else the |sample| percentile the clip is cut at
    lead: float
    tail: float


def voice_id(voice: str) -> str:
    return voice.replace("+", "-")


def clip_name(job: ClipJob) -> str:
    voice = voice_id(VOICES[job.voice_index])
    return f"{voice}/{voice}_{job.emotion}_{job.clip:02d}.flac"


def voice_habit(seed: int, voice_index: int) -> VoiceHabit:
    rng = np.random.default_rng([seed, voice_index, 999])
    return VoiceHabit(pitch=float(rng.normal(0, 18)), rate=float(rng.normal(1.0, 0.10)),
                      range=float(np.exp(rng.normal(0, 0.2))), level_db=float(rng.normal(0, 3)))


def clip_rng(job: ClipJob) -> np.random.Generator:
    return np.random.default_rng([job.seed, job.voice_index, EMOTIONS.index(job.emotion), job.clip])


def draw_prosody(rng: np.random.Generator, profile: Profile, habit: VoiceHabit) -> Dict[str, float]:
    values = {name: rng.normal(*getattr(profile, name)) for name in LIMITS}
    values["pitch"] += habit.pitch
    values["rate"] *= habit.rate
    values["range"] *= habit.range
    values = {name: float(np.clip(value, *LIMITS[name])) for name, value in values.items()}
    values["jitter"] = float(max(rng.normal(*profile.word_jitter), 0.0))
    return values


def draw_condition(rng: np.random.Generator) -> Condition:
    reverb, telephone, clipped = rng.random(3) < (REVERB_SHARE, TELEPHONE_SHARE, CLIPPING_SHARE)
    return Condition(gain_db=float(rng.uniform(-10, 10)), noise=str(rng.choice(NOISE_COLOURS)),
                     snr_db=float(rng.uniform(5, 30)), rt60=float(rng.uniform(0.2, 0.8)) if reverb else 0.0,
                     telephone=bool(telephone), clip_percentile=float(rng.uniform(98.5, 99.7)) if clipped else 0.0,
                     lead=float(rng.uniform(0.05, 0.3)), tail=float(rng.uniform(0.05, 0.3)))


def heard_level_db(volume: float, habit: VoiceHabit, condition: Condition) -> float:
    """The clip's loudness relative to a neutral voice at 0 dB gain: emotion, habit and recording."""
    return 20 * np.log10(1 + volume / 100) + habit.level_db + condition.gain_db


def draw_clip(job: ClipJob) -> Tuple[np.random.Generator, Dict[str, object], Condition]:
    """Every random choice of a clip except the noise samples, in a fixed order: the generator
    (to draw the rest), the metadata row without the duration, the recording condition."""
    rng = clip_rng(job)
    habit = voice_habit(job.seed, job.voice_index)
    sentence = SENTENCES[int(rng.integers(len(SENTENCES)))]
    ending = ENDINGS[int(rng.integers(len(ENDINGS)))]
    prosody = draw_prosody(rng, PROFILES[job.emotion], habit)
    condition = draw_condition(rng)
    row = {"file": clip_name(job), "voice": VOICES[job.voice_index], "emotion": job.emotion,
           "sentence": sentence, "ending": ending, **{k: round(v, 1) for k, v in prosody.items()},
           "voice_pitch": round(habit.pitch, 1), "voice_rate": round(habit.rate, 3),
           "voice_range": round(habit.range, 3), "voice_level_db": round(habit.level_db, 1),
           "level_db": round(heard_level_db(prosody["volume"], habit, condition), 1),
           "gain_db": round(condition.gain_db, 1), "noise": condition.noise,
           "snr_db": round(condition.snr_db, 1), "rt60": round(condition.rt60, 2),
           "telephone": int(condition.telephone), "clip_percentile": round(condition.clip_percentile, 2)}
    return rng, row, condition


def build_ssml(sentence: str, ending: str, prosody: Dict[str, float], rng: np.random.Generator) -> str:
    # Nested prosody: each word at its own pitch, an unsteady voice (strongest in fear).
    words = [f'<prosody pitch="{rng.normal(0, prosody["jitter"]):+.0f}%">{word}</prosody>'
             for word in sentence.split()]
    espeak_volume = (1 + prosody["volume"] / 100) * VOLUME_HEADROOM * 100 - 100
    return (f'<speak><prosody pitch="{prosody["pitch"]:+.0f}%" rate="{prosody["rate"]:.0f}%" '
            f'range="{prosody["range"]:.0f}%" volume="{espeak_volume:+.0f}%">{" ".join(words)}{ending}'
            f'</prosody></speak>')


def speak(voice: str, text: str, ssml: bool = True) -> np.ndarray:
    """Synthesise text (SSML unless ssml=False) with espeak-ng; mono float32 at SAMPLE_RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = os.path.join(tmp, "clip.wav")
        # -w, not --stdout: the streamed WAV header carries no valid length.
        subprocess.run(["espeak-ng", "-v", voice, *(["-m"] if ssml else []), "-w", wav_path, text],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples, rate = soundfile.read(wav_path, dtype="float32")
    return resample(samples, rate, SAMPLE_RATE)


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF
    torch.set_num_threads(1)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), orig_rate, new_rate).numpy()


def trim_silence(samples: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Cut espeak-ng's own leading and trailing silence (about 0.35 s at the end)."""
    loud = np.nonzero(np.abs(samples) > 0.01 * np.abs(samples).max())[0]
    pad = int(margin * SAMPLE_RATE)
    return samples[max(loud[0] - pad, 0):loud[-1] + pad]


def coloured_noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum 1/f**exponent (0 white, 1 pink, 2 brown) above 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.maximum(np.fft.rfftfreq(length, 1 / SAMPLE_RATE), 20.0)
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=length)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


@functools.lru_cache(maxsize=1)
def babble_talkers() -> Tuple[np.ndarray, ...]:
    """Each babble talker reading BABBLE_TEXT twice over; the same in every process."""
    return tuple(np.tile(trim_silence(speak(voice, BABBLE_TEXT, ssml=False)), 2) for voice in BABBLE_TALKERS)


def babble_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Unit-RMS mix of 4 talkers, each from a random point of its recording."""
    mix = np.zeros(length, np.float64)
    talkers = babble_talkers()
    for index in rng.choice(len(talkers), size=4, replace=False):
        talker = talkers[index]
        start = int(rng.integers(0, talker.size - 1))
        mix += np.resize(np.roll(talker, -start), length)
    return mix / (np.sqrt(np.mean(mix ** 2)) + 1e-12)


def make_noise(rng: np.random.Generator, colour: str, length: int) -> np.ndarray:
    if colour == "babble":
        return babble_noise(rng, length)
    return coloured_noise(rng, length, {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour])


def reverberate(rng: np.random.Generator, speech: np.ndarray, rt60: float) -> np.ndarray:
    """Convolve with a synthetic room response: a direct path, then exponentially decaying noise
    (60 dB down after rt60 seconds); the clip keeps its length plus a tail cut at 0.3 s."""
    from scipy.signal import fftconvolve
    length = int(rt60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    response = rng.standard_normal(length) * 10 ** (-3 * t / rt60) * 0.3
    response[0] = 1.0
    wet = fftconvolve(speech, response)[:speech.size + int(0.3 * SAMPLE_RATE)]
    return (wet / (np.sqrt(np.sum(response ** 2)))).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """300-3400 Hz band through an 8 kHz channel and back to SAMPLE_RATE."""
    import torch
    import torchaudio.functional as AF
    narrow = torch.from_numpy(resample(audio, SAMPLE_RATE, 8000))
    for _ in range(2):  # two biquads each side: about 24 dB/octave
        narrow = AF.highpass_biquad(narrow, 8000, 300.0)
        narrow = AF.lowpass_biquad(narrow, 8000, 3400.0)
    return resample(narrow.numpy(), 8000, SAMPLE_RATE)[:audio.size]


def record(rng: np.random.Generator, speech: np.ndarray, condition: Condition, level: float) -> np.ndarray:
    """Apply a recording condition to dry speech (float32, SAMPLE_RATE): room, silence, noise,
    channel, gain and clipping. `level` scales the speech before the gain (amplitude factor)."""
    active_rms = float(np.sqrt(np.mean(speech ** 2)))
    if condition.rt60:
        speech = reverberate(rng, speech, condition.rt60)
    lead, tail = int(condition.lead * SAMPLE_RATE), int(condition.tail * SAMPLE_RATE)
    speech = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    noise = make_noise(rng, condition.noise, speech.size) * active_rms * 10 ** (-condition.snr_db / 20)
    audio = speech + noise
    if condition.telephone:
        audio = telephone(audio.astype(np.float32))
    audio = audio * level * 10 ** (condition.gain_db / 20)
    limit = 1.0
    if condition.clip_percentile:
        limit = min(float(np.percentile(np.abs(audio), condition.clip_percentile)), 1.0)
    return np.clip(audio, -limit, limit).astype(np.float32)


def render_clip(job: ClipJob) -> Dict[str, object]:
    """Synthesise one clip, apply its recording condition, write it; return its metadata row."""
    rng, row, condition = draw_clip(job)
    prosody = {name: float(row[name]) for name in ("pitch", "rate", "range", "volume", "jitter")}
    speech = trim_silence(speak(str(row["voice"]), build_ssml(str(row["sentence"]), str(row["ending"]), prosody, rng)))
    habit = voice_habit(job.seed, job.voice_index)
    audio = record(rng, speech, condition, LEVEL * 10 ** (habit.level_db / 20))
    path = os.path.join(job.out_dir, clip_name(job))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return {**row, "duration": round(audio.size / SAMPLE_RATE, 3)}


def make_jobs(args: argparse.Namespace) -> List[ClipJob]:
    return [ClipJob(v, emotion, clip, args.seed, args.out_dir)
            for v in range(args.num_voices) for emotion in EMOTIONS for clip in range(args.clips)]


def write_metadata(path: str, rows: Sequence[Dict[str, object]]) -> None:
    columns = list(rows[0])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(columns) + "\n")
        for row in sorted(rows, key=lambda r: str(r["file"])):
            f.write("\t".join(str(row[c]) for c in columns) + "\n")


def generate(args: argparse.Namespace) -> None:
    if shutil.which("espeak-ng") is None:
        sys.exit("error: espeak-ng is not installed (apt-get install espeak-ng)")
    render_corpus(render_clip, make_jobs(args), args, chunksize=8)


def render_corpus(render: Callable[[object], Dict[str, object]], jobs: Sequence[object],
                  args: argparse.Namespace, chunksize: int) -> None:
    """Render every job in `args.workers` processes into an empty (or --overwrite) `args.out_dir`
    and write metadata.tsv from the rows `render` returns. Shared with make_festival_set.py."""
    if os.path.isdir(args.out_dir) and args.overwrite:
        shutil.rmtree(args.out_dir)
    elif os.path.isdir(args.out_dir) and os.listdir(args.out_dir):
        sys.exit(f"error: {args.out_dir} is not empty; pass --overwrite to replace it")
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(render, jobs, chunksize=chunksize))
    write_metadata(os.path.join(args.out_dir, "metadata.tsv"), rows)
    print(f"wrote {len(rows)} clips to {args.out_dir} in {time.time() - start:.1f} s")


def add_generator_arguments(parser: argparse.ArgumentParser, out_dir: str, num_voices: int, voices_help: str,
                            clips: int, what: str) -> None:
    """The options both corpus generators take; `what` names what they write ("corpus", "set")."""
    parser.add_argument("--out_dir", default=out_dir, help=f"where the {what} is written")
    parser.add_argument("--seed", type=int, default=2024, help="seed of every random draw")
    parser.add_argument("--num_voices", type=int, default=num_voices, help=voices_help)
    parser.add_argument("--clips", type=int, default=clips, help="clips per (voice, emotion)")
    parser.add_argument("--workers", type=int, default=2, help="parallel synthesis processes")
    parser.add_argument("--overwrite", action="store_true", help="delete --out_dir first if it exists")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help=f"do not generate; print per-emotion duration, RMS and pitch of the {what} in DIR")


def check_generator_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, num_voices: int) -> None:
    if not 1 <= args.num_voices <= num_voices:
        parser.error(f"--num_voices must be between 1 and {num_voices}")
    if not 1 <= args.clips <= 99:
        parser.error("--clips must be between 1 and 99")
    if args.workers < 1:
        parser.error("--workers must be at least 1")


def clip_measures(path: str) -> Tuple[float, float, float, float]:
    """(duration s, RMS dBFS, median pitch Hz, pitch range in semitones) of one clip.

    Pitch is read on the loud frames only (within 20 dB of the loudest): on the pauses and the
    noise the detector returns octave errors. The range is the 10-90 percentile spread.
    """
    import torch
    import torchaudio.functional as AF
    samples, rate = soundfile.read(path, dtype="float32")
    rms_db = 20 * np.log10(np.sqrt(np.mean(samples ** 2)) + 1e-12)
    # 30 ms frames: the default 10 ms is shorter than a 60 Hz period and halves female voices.
    frame = int(0.03 * rate)
    pitch = AF.detect_pitch_frequency(torch.from_numpy(samples), rate, frame_time=0.03, win_length=5,
                                      freq_low=60, freq_high=450).numpy()
    energy = np.array([np.sqrt(np.mean(samples[i * frame:(i + 1) * frame] ** 2)) for i in range(pitch.size)])
    voiced = pitch[(pitch > 60) & (pitch < 440) & (energy > 0.1 * energy.max())]
    if voiced.size < 2:
        return samples.size / rate, float(rms_db), float("nan"), float("nan")
    semitones = 12 * np.log2(voiced)
    spread = float(np.percentile(semitones, 90) - np.percentile(semitones, 10))
    return samples.size / rate, float(rms_db), float(np.median(voiced)), spread


def report(corpus_dir: str) -> None:
    """Print mean duration, RMS and pitch per emotion, and mean pitch per voice: a listening proxy."""
    by_emotion: Dict[str, List[Tuple[float, float, float, float]]] = {}
    by_voice: Dict[str, List[float]] = {}
    for voice in sorted(os.listdir(corpus_dir)):
        voice_dir = os.path.join(corpus_dir, voice)
        if not os.path.isdir(voice_dir):
            continue
        for name in sorted(os.listdir(voice_dir)):
            measures = clip_measures(os.path.join(voice_dir, name))
            by_emotion.setdefault(name.split("_")[1], []).append(measures)
            by_voice.setdefault(voice, []).append(measures[2])
    print(f"{'emotion':<10} {'clips':>5} {'dur s':>6} {'RMS dB':>7} {'pitch Hz':>9} {'(sd)':>6} "
          f"{'in-clip range st':>16}")
    for emotion, rows in by_emotion.items():
        values = np.array(rows)
        print(f"{emotion:<10} {len(rows):>5} {values[:, 0].mean():>6.2f} {values[:, 1].mean():>7.1f} "
              f"{np.nanmean(values[:, 2]):>9.1f} {np.nanstd(values[:, 2]):>6.1f} {np.nanmean(values[:, 3]):>16.2f}")
    for voice, pitches in by_voice.items():
        print(f"{voice:<24} median pitch over all clips {np.nanmedian(pitches):6.1f} Hz")


CEILING_SETS = (("pitch", "rate", "range"), ("pitch", "rate", "range", "level_db"),
                ("pitch", "rate", "range", "level_db", "jitter"))


def ceiling_accuracies(rows: Sequence[Dict[str, object]], test_voices: Sequence[str]) -> List[float]:
    """Test accuracy of a logistic regression on each of CEILING_SETS of the metadata values,
    fitted on the clips of the voices not in test_voices (voice ids, '+' written as '-')."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test = np.array([str(row["file"]).split("/")[0] in set(test_voices) for row in rows])
    y = np.array([row["emotion"] for row in rows])
    accuracies = []
    for names in CEILING_SETS:
        x = np.array([[float(row[name]) for name in names] for row in rows])
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=10, max_iter=5000))
        accuracies.append(float((classifier.fit(x[~test], y[~test]).predict(x[test]) == y[test]).mean()))
    return accuracies


def ceiling(corpus_dir: str, test_list: str) -> None:
    """How well the emotions can be told apart from the values that generated them, on the voice
    split of `test_list`: a logistic regression fitted on the training voices' clips, scored on
    the test voices' clips. The values include each voice's habits, as a listener hears them; the
    sentence and its ending are drawn independently of the emotion, so they are left out. A model
    that hears the audio has to estimate these values through noise and channel, so this is a
    ceiling rather than a target."""
    with open(os.path.join(corpus_dir, "metadata.tsv"), encoding="utf-8") as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    rows = [dict(zip(header, row)) for row in rows]
    with open(test_list, encoding="utf-8") as f:
        test_voices = {os.path.basename(os.path.dirname(line.split("\t")[0])) for line in f if line.strip()}
    test_clips = sum(row["file"].split("/")[0] in test_voices for row in rows)
    print(f"test voices: {', '.join(sorted(test_voices))} ({test_clips} clips)")
    for names, accuracy in zip(CEILING_SETS, ceiling_accuracies(rows, sorted(test_voices))):
        print(f"{' + '.join(names):<45} test accuracy {accuracy:.3f}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_generator_arguments(parser, "dataset/demo", len(VOICES),
                            f"how many of the {len(VOICES)} built-in voices to use", clips=5, what="corpus")
    parser.add_argument("--ceiling", metavar="DIR", default=None,
                        help="do not generate; print how well the generator's own prosody values (SSML pitch, "
                             "rate, range, heard level, word jitter) separate the emotions of the corpus "
                             "in DIR on the voice split of --test_list")
    parser.add_argument("--test_list", default="dataset/test_list.txt", help="test list for --ceiling")
    args = parser.parse_args(argv)
    check_generator_arguments(parser, args, len(VOICES))
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.report:
        report(args.report)
    elif args.ceiling:
        ceiling(args.ceiling, args.test_list)
    else:
        generate(args)


if __name__ == "__main__":
    main()

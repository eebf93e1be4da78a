"""Generate the demo corpus: acted emotions spoken by espeak-ng, 16 kHz mono FLAC.

Each clip is one short sentence read by one espeak-ng voice inside an SSML
`<prosody pitch rate range volume>` element. Every emotion has a prosody profile taken from the
acoustic literature on vocal emotion (Scherer 2003; Juslin & Laukka 2003):

    neutral    the voice's defaults
    happy      higher pitch, much wider range, a little faster, a little louder, exclamation
    sad        lower pitch, narrow range, slow, quiet
    angry      high pitch, wide range, fast, loud, exclamation
    fearful    high pitch, fast, narrow range, each word at its own jittered pitch
    surprised  very high pitch, very wide range, question (rising) intonation

Each prosody parameter is drawn per clip around the profile (normal, clipped), each voice gets
its own seeded pitch and rate baseline, and the recording gain varies by a few dB, so the classes
overlap and no single constant separates them. Pink noise is added at a random SNR (15-30 dB).

Layout (written under --out_dir, dataset/demo by default):

    <voice>/<voice>_<emotion>_<nn>.flac
        voice    the espeak-ng voice with '+' written as '-', e.g. en-us-m3 is `-v en-us+m3`
        emotion  neutral | happy | sad | angry | fearful | surprised
        nn       two-digit clip number: sentence index * takes + take
    metadata.tsv  one row per clip: file, voice, emotion, sentence, the drawn prosody values,
                  gain and SNR

The output is reproducible: every clip has its own random generator seeded from
(--seed, voice, emotion, sentence, take), so the worker count does not change a single sample.

    python tools/make_demo_corpus.py --out_dir dataset/demo --seed 2024
    python tools/make_demo_corpus.py --report dataset/demo   # per-emotion duration, RMS, pitch
    python tools/make_demo_corpus.py --ceiling dataset/demo  # accuracy from the generator's own values
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile

SAMPLE_RATE = 16000

VOICES = [
    "en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f3", "en+m7",
    "en-gb-scotland+f4", "en-029+m2", "en-us-nyc+f5", "en-gb-x-rp+m5", "en-gb-x-gbclan+f1",
]

SENTENCES = [
    "Kids are talking by the door",
    "Dogs are sitting by the door",
    "The train leaves at seven tonight",
    "I put the box on the table",
    "We will meet again tomorrow",
    "She opened the window this morning",
    "The keys are in the kitchen",
    "He is coming home on Friday",
    "It is going to rain later",
    "They painted the fence green",
    "My phone is on the chair",
    "The store closes at nine",
    "Our bus was late again",
    "The letter came this afternoon",
]


@dataclass(frozen=True)
class Profile:
    """Means and spreads of the SSML prosody values; pitch and volume are % change, rate and
    range % of the voice's default."""
    pitch: Tuple[float, float]
    rate: Tuple[float, float]
    range: Tuple[float, float]
    volume: Tuple[float, float]
    ending: str = "."
    word_jitter: float = 0.0  # spread of a per-word pitch offset, in % points


# espeak-ng compresses pitch: +50% moves the mean F0 by about +27%, +100% by about +60%.
PROFILES: Dict[str, Profile] = {
    "neutral": Profile(pitch=(0, 12), rate=(100, 8), range=(100, 20), volume=(0, 12)),
    "happy": Profile(pitch=(55, 15), rate=(110, 8), range=(185, 35), volume=(30, 15), ending="!"),
    "sad": Profile(pitch=(-30, 12), rate=(75, 7), range=(45, 15), volume=(-40, 10)),
    "angry": Profile(pitch=(45, 15), rate=(125, 9), range=(165, 30), volume=(100, 25), ending="!"),
    "fearful": Profile(pitch=(70, 15), rate=(128, 9), range=(70, 20), volume=(10, 15), word_jitter=15),
    "surprised": Profile(pitch=(100, 18), rate=(100, 9), range=(240, 40), volume=(35, 15), ending="?"),
}

# Bounds that keep espeak-ng in a range where it still sounds like speech.
LIMITS = {"pitch": (-60, 160), "rate": (50, 180), "range": (10, 350), "volume": (-70, 160)}
# espeak-ng clips its own output above about +40% volume, so every clip is synthesised at this
# fraction of its intended amplitude and scaled back afterwards.
VOLUME_HEADROOM = 0.4
# Speech scale before noise is added: VOLUME_HEADROOM undone, then -14 dB, which leaves headroom
# for the loudest clips and a noise floor low enough for FLAC to stay small (about 33 KB a clip).
LEVEL = 0.2 / VOLUME_HEADROOM


@dataclass(frozen=True)
class ClipJob:
    voice_index: int
    emotion: str
    sentence_index: int
    take: int
    takes: int
    seed: int
    out_dir: str


def voice_id(voice: str) -> str:
    return voice.replace("+", "-")


def clip_name(job: ClipJob) -> str:
    number = job.sentence_index * job.takes + job.take
    voice = voice_id(VOICES[job.voice_index])
    return f"{voice}/{voice}_{job.emotion}_{number:02d}.flac"


def voice_baseline(seed: int, voice_index: int) -> Tuple[float, float]:
    """A speaker's habitual pitch offset (%) and speaking rate factor, fixed for the whole corpus."""
    rng = np.random.default_rng([seed, voice_index, 999])
    return float(rng.normal(0, 10)), float(rng.normal(1.0, 0.07))


def draw_prosody(rng: np.random.Generator, profile: Profile, baseline: Tuple[float, float]) -> Dict[str, float]:
    pitch_offset, rate_factor = baseline
    values = {name: rng.normal(*getattr(profile, name)) for name in LIMITS}
    values["pitch"] += pitch_offset
    values["rate"] *= rate_factor
    return {name: float(np.clip(value, *LIMITS[name])) for name, value in values.items()}


def build_ssml(sentence: str, prosody: Dict[str, float], profile: Profile, rng: np.random.Generator) -> str:
    words = sentence.split()
    if profile.word_jitter:
        # Nested prosody: each word at its own pitch, an unsteady voice as in fear.
        words = [f'<prosody pitch="{rng.normal(0, profile.word_jitter):+.0f}%">{word}</prosody>'
                 for word in words]
    text = " ".join(words) + profile.ending
    espeak_volume = (1 + prosody["volume"] / 100) * VOLUME_HEADROOM * 100 - 100
    return (f'<speak><prosody pitch="{prosody["pitch"]:+.0f}%" rate="{prosody["rate"]:.0f}%" '
            f'range="{prosody["range"]:.0f}%" volume="{espeak_volume:+.0f}%">{text}</prosody></speak>')


def speak(voice: str, ssml: str) -> np.ndarray:
    """Synthesise SSML with espeak-ng and return mono float32 at SAMPLE_RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = os.path.join(tmp, "clip.wav")
        # -w, not --stdout: the streamed WAV header carries no valid length.
        subprocess.run(["espeak-ng", "-v", voice, "-m", "-w", wav_path, ssml], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples, rate = soundfile.read(wav_path, dtype="float32")
    return resample(samples, rate, SAMPLE_RATE)


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF
    torch.set_num_threads(1)
    return AF.resample(torch.from_numpy(samples), orig_rate, new_rate).numpy()


def trim_silence(samples: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Cut espeak-ng's own leading and trailing silence (about 0.35 s at the end)."""
    loud = np.nonzero(np.abs(samples) > 0.01 * np.abs(samples).max())[0]
    pad = int(margin * SAMPLE_RATE)
    return samples[max(loud[0] - pad, 0):loud[-1] + pad]


def pink_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=length)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def render_clip(job: ClipJob) -> Dict[str, object]:
    """Synthesise, pad, scale and add noise to one clip; write it and return its metadata row."""
    rng = np.random.default_rng([job.seed, job.voice_index, list(PROFILES).index(job.emotion),
                                 job.sentence_index, job.take])
    profile = PROFILES[job.emotion]
    prosody = draw_prosody(rng, profile, voice_baseline(job.seed, job.voice_index))
    speech = trim_silence(speak(VOICES[job.voice_index],
                                build_ssml(SENTENCES[job.sentence_index], prosody, profile, rng)))
    lead, tail = (int(rng.uniform(0.05, 0.2) * SAMPLE_RATE) for _ in range(2))
    speech = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    gain_db = float(rng.uniform(-4, 4))
    speech = speech * LEVEL * 10 ** (gain_db / 20)
    snr_db = float(rng.uniform(15, 30))
    speech_rms = float(np.sqrt(np.mean(speech ** 2)))
    noise = pink_noise(rng, speech.size) * speech_rms * 10 ** (-snr_db / 20)
    audio = np.clip(speech + noise, -1.0, 1.0).astype(np.float32)
    path = os.path.join(job.out_dir, clip_name(job))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return {"file": clip_name(job), "voice": VOICES[job.voice_index], "emotion": job.emotion,
            "sentence": SENTENCES[job.sentence_index], **{k: round(v, 1) for k, v in prosody.items()},
            "gain_db": round(gain_db, 1), "snr_db": round(snr_db, 1),
            "duration": round(audio.size / SAMPLE_RATE, 3)}


def make_jobs(args: argparse.Namespace) -> List[ClipJob]:
    return [ClipJob(v, emotion, s, take, args.takes, args.seed, args.out_dir)
            for v in range(args.num_voices) for emotion in PROFILES
            for s in range(args.num_sentences) for take in range(args.takes)]


def write_metadata(path: str, rows: Sequence[Dict[str, object]]) -> None:
    columns = list(rows[0])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(columns) + "\n")
        for row in sorted(rows, key=lambda r: str(r["file"])):
            f.write("\t".join(str(row[c]) for c in columns) + "\n")


def generate(args: argparse.Namespace) -> None:
    if shutil.which("espeak-ng") is None:
        sys.exit("error: espeak-ng is not installed (apt-get install espeak-ng)")
    if os.path.isdir(args.out_dir) and args.overwrite:
        shutil.rmtree(args.out_dir)
    elif os.path.isdir(args.out_dir) and os.listdir(args.out_dir):
        sys.exit(f"error: {args.out_dir} is not empty; pass --overwrite to replace it")
    start = time.time()
    jobs = make_jobs(args)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(render_clip, jobs, chunksize=8))
    write_metadata(os.path.join(args.out_dir, "metadata.tsv"), rows)
    print(f"wrote {len(rows)} clips to {args.out_dir} in {time.time() - start:.1f} s")


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
        print(f"{voice:<20} median pitch over all clips {np.nanmedian(pitches):6.1f} Hz")


def ceiling(corpus_dir: str, test_list: str) -> None:
    """How well the emotions can be told apart from the values that generated them, on the voice
    split of `test_list`: a logistic regression fitted on the training voices' clips, scored on
    the test voices' clips. A model that hears the audio has to estimate these values (and does
    not know a voice's own pitch), so this is a ceiling rather than a target."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with open(os.path.join(corpus_dir, "metadata.tsv"), encoding="utf-8") as f:
        header, *rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    rows = [dict(zip(header, row)) for row in rows]
    with open(test_list, encoding="utf-8") as f:
        test_voices = {os.path.basename(os.path.dirname(line.split("\t")[0])) for line in f if line.strip()}
    endings = sorted({p.ending for p in PROFILES.values()})

    def values(row: Dict[str, str], names: Sequence[str]) -> List[float]:
        level_db = 20 * np.log10(1 + float(row["volume"]) / 100) + float(row["gain_db"])  # what is heard
        known = {name: float(row[name]) for name in ("pitch", "rate", "range")}
        known["level_dB"] = level_db
        out = [known[name] for name in names if name in known]
        if "ending" in names:
            out += [float(PROFILES[row["emotion"]].ending == e) for e in endings]
        return out

    is_test = [row["file"].split("/")[0] in test_voices for row in rows]
    print(f"test voices: {', '.join(sorted(test_voices))} ({sum(is_test)} clips)")
    for names in (("pitch", "rate", "range"), ("pitch", "rate", "range", "level_dB"),
                  ("pitch", "rate", "range", "level_dB", "ending")):
        x = np.array([values(row, names) for row in rows])
        y = np.array([row["emotion"] for row in rows])
        train, test = ~np.array(is_test), np.array(is_test)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=10, max_iter=5000))
        accuracy = float((classifier.fit(x[train], y[train]).predict(x[test]) == y[test]).mean())
        print(f"{' + '.join(names):<45} test accuracy {accuracy:.3f}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out_dir", default="dataset/demo", help="where the corpus is written")
    parser.add_argument("--seed", type=int, default=2024, help="seed of every random draw")
    parser.add_argument("--num_voices", type=int, default=len(VOICES),
                        help=f"how many of the {len(VOICES)} built-in voices to use")
    parser.add_argument("--num_sentences", type=int, default=12,
                        help=f"how many of the {len(SENTENCES)} built-in sentences each voice reads per emotion")
    parser.add_argument("--takes", type=int, default=1,
                        help="clips per (voice, emotion, sentence), each with fresh prosody draws")
    parser.add_argument("--workers", type=int, default=2, help="parallel synthesis processes")
    parser.add_argument("--overwrite", action="store_true", help="delete --out_dir first if it exists")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="do not generate; print per-emotion duration, RMS and pitch of the corpus in DIR")
    parser.add_argument("--ceiling", metavar="DIR", default=None,
                        help="do not generate; print how well the generator's own prosody values (SSML pitch, "
                             "rate, range, heard level, sentence ending) separate the emotions of the corpus "
                             "in DIR on the voice split of --test_list")
    parser.add_argument("--test_list", default="dataset/test_list.txt", help="test list for --ceiling")
    args = parser.parse_args(argv)
    if not 1 <= args.num_voices <= len(VOICES):
        parser.error(f"--num_voices must be between 1 and {len(VOICES)}")
    if not 1 <= args.num_sentences <= len(SENTENCES):
        parser.error(f"--num_sentences must be between 1 and {len(SENTENCES)}")
    if args.takes < 1 or args.workers < 1:
        parser.error("--takes and --workers must be at least 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        report(args.report)
    elif args.ceiling:
        ceiling(args.ceiling, args.test_list)
    else:
        generate(args)


if __name__ == "__main__":
    main()

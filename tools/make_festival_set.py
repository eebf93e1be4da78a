"""Generate the Festival cross-synthesiser test set: the demo corpus's six emotions spoken by another
synthesiser, its own sentences and voices; 16 kHz mono FLAC. Test only: it plays the role of a
cross-corpus evaluation (train on one corpus, test on another), which real users run.

Voices (Debian packages festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts):

    fest-kal  kal_diphone            US male, diphone
    fest-ked  ked_diphone            US male, diphone
    fest-slt  cmu_us_slt_arctic_hts  US female, HTS (statistical parametric)

Each emotion is a profile of F0 change, F0 range change, speaking rate and loudness with the same
direction as the demo corpus's espeak-ng profiles (Scherer 2003; Juslin & Laukka 2003), drawn per
clip. How each value reaches the audio (checked by measuring F0, duration and level of the output):

- pitch and range: SABLE `<PITCH BASE= RANGE=>` (text2wave -mode sable) on the diphone voices. The
  HTS voice ignores SABLE pitch and rate, so its pitch is changed afterwards by resampling (which
  also shifts the formants a little) and its range is left as the voice makes it.
- rate: Festival's Duration_Stretch on the diphone voices (SABLE `<RATE SPEED=>` moved their
  duration by only 10 % for a 40 % change); the HTS engine's own speed option (-r) on the HTS
  voice, which also makes up for the duration change of the pitch resampling.
- loudness: a gain on the synthesised speech (SABLE `<VOLUME LEVEL=>` moved the level by only
  2 dB for a doubling of the amplitude).

Sentence and ending ('.', '!', '?') are drawn per clip independently of the emotion, and each clip
gets a recording condition drawn like the demo corpus's (tools/make_demo_corpus.py: noise colour
and SNR, +-10 dB level, reverberation, telephone band, clipping), recorded in metadata.tsv.
Layout: `<voice>/<voice>_<emotion>_<nn>.flac` and metadata.tsv, as in the demo corpus. Every clip
has its own random generator seeded from (--seed, voice, emotion, clip): the output is reproducible.

    python tools/make_festival_set.py --out_dir dataset/festival --seed 2024 --overwrite
    python tools/make_festival_set.py --report dataset/festival   # per-emotion duration, RMS, pitch
"""
import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_demo_corpus as demo  # noqa: E402  (recording conditions, resampling, report)

SAMPLE_RATE = demo.SAMPLE_RATE
EMOTIONS = demo.EMOTIONS
HTS_VOICE = "cmu_us_slt_arctic_hts"
VOICES = {"fest-kal": "kal_diphone", "fest-ked": "ked_diphone", "fest-slt": HTS_VOICE}

SENTENCES = [
    "The garden gate was left open all night", "A parcel is waiting at the front desk",
    "The bakery sells bread until noon", "Her office is on the third floor",
    "The concert was moved to the main hall", "We walked along the beach after lunch",
    "The printer on the left is out of ink", "His sister teaches music at the school",
    "The ferry crosses the bay every hour", "A new bridge is being built downtown",
    "The library books are due next week", "They planted two apple trees in the yard",
    "The elevator stops at every floor", "My uncle drives a blue truck",
    "The tea has been in the pot for an hour", "The mail arrives before ten",
    "Our neighbours are away for the summer", "The towels are in the top drawer",
    "The lecture lasts about an hour", "Somebody moved the chairs into the hall",
    "The oven takes ten minutes to warm up", "A storm is expected over the weekend",
    "The painting hangs above the fireplace", "The second bus goes to the airport",
]


@dataclass(frozen=True)
class Profile:
    """Mean and spread of each value: F0 and range as % change, rate as a factor on the speaking
    rate, volume as % change of the amplitude."""
    pitch: Tuple[float, float]
    range: Tuple[float, float]
    rate: Tuple[float, float]
    volume: Tuple[float, float]


PROFILES: Dict[str, Profile] = {
    "neutral": Profile(pitch=(0, 6), range=(0, 15), rate=(1.0, 0.06), volume=(0, 12)),
    "happy": Profile(pitch=(25, 7), range=(70, 20), rate=(1.08, 0.06), volume=(25, 15)),
    "sad": Profile(pitch=(-15, 5), range=(-50, 12), rate=(0.78, 0.05), volume=(-40, 10)),
    "angry": Profile(pitch=(20, 7), range=(55, 20), rate=(1.25, 0.07), volume=(100, 25)),
    "fearful": Profile(pitch=(35, 7), range=(-30, 15), rate=(1.24, 0.07), volume=(5, 15)),
    "surprised": Profile(pitch=(50, 9), range=(120, 30), rate=(1.0, 0.06), volume=(30, 15)),
}
LIMITS = {"pitch": (-40, 90), "range": (-80, 250), "rate": (0.6, 1.6), "volume": (-70, 160)}
# Dry speech is scaled so that each voice's neutral reference sentence has this active RMS before
# the emotion's volume and the recording gain: the loudness of the demo corpus's neutral speech.
REFERENCE_RMS = 0.011
SABLE_HEADER = ('<?xml version="1.0"?>\n<!DOCTYPE SABLE PUBLIC "-//SABLE//DTD SABLE speech mark up//EN" '
                '"Sable.v0_2.dtd" []>\n')


@dataclass(frozen=True)
class ClipJob:
    voice: str      # id in VOICES
    emotion: str
    clip: int
    seed: int
    out_dir: str


def clip_name(job: ClipJob) -> str:
    return f"{job.voice}/{job.voice}_{job.emotion}_{job.clip:02d}.flac"


def voice_habit(seed: int, voice: str) -> Tuple[float, float]:
    """A voice's habitual F0 change (%) and rate factor, fixed for the whole set."""
    rng = np.random.default_rng([seed, list(VOICES).index(voice), 999])
    return float(rng.normal(0, 8)), float(rng.normal(1.0, 0.06))


def draw_clip(job: ClipJob) -> Tuple[np.random.Generator, Dict[str, object], demo.Condition]:
    """Every random choice of a clip but the noise samples: generator, metadata row, condition."""
    rng = np.random.default_rng([job.seed, list(VOICES).index(job.voice), EMOTIONS.index(job.emotion), job.clip])
    sentence = SENTENCES[int(rng.integers(len(SENTENCES)))]
    ending = demo.ENDINGS[int(rng.integers(len(demo.ENDINGS)))]
    profile = PROFILES[job.emotion]
    values = {name: float(rng.normal(*getattr(profile, name))) for name in LIMITS}
    habit_pitch, habit_rate = voice_habit(job.seed, job.voice)
    values["pitch"] += habit_pitch
    values["rate"] *= habit_rate
    values = {name: float(np.clip(value, *LIMITS[name])) for name, value in values.items()}
    condition = demo.draw_condition(rng)
    level_db = 20 * np.log10(1 + values["volume"] / 100) + condition.gain_db
    row = {"file": clip_name(job), "voice": VOICES[job.voice], "emotion": job.emotion,
           "sentence": sentence, "ending": ending, "pitch": round(values["pitch"], 1),
           "range": round(values["range"], 1), "rate": round(values["rate"], 3),
           "volume": round(values["volume"], 1), "level_db": round(level_db, 1),
           "gain_db": round(condition.gain_db, 1), "noise": condition.noise,
           "snr_db": round(condition.snr_db, 1), "rt60": round(condition.rt60, 2),
           "telephone": int(condition.telephone), "clip_percentile": round(condition.clip_percentile, 2)}
    return rng, row, condition


def sable(text: str, pitch: float, pitch_range: float) -> str:
    """A SABLE document spoken by the voice `voice_mserclip` (defined by synthesise)."""
    return (f'{SABLE_HEADER}<SABLE><SPEAKER NAME="mserclip"><PITCH BASE="{pitch:+.0f}%" '
            f'RANGE="{pitch_range:+.0f}%">{text}</PITCH></SPEAKER></SABLE>\n')


def synthesise(festival_voice: str, text: str, pitch: float, pitch_range: float, rate: float,
               volume: float) -> np.ndarray:
    """Speak text with Festival at the given F0 change (%), range change (%), rate factor and
    volume change (%, applied as a gain); mono float32 at SAMPLE_RATE."""
    shift = 1.0
    if festival_voice == HTS_VOICE:
        # Ignores SABLE pitch and rate: synthesise at rate/shift, then resample by shift, which
        # raises F0 by `shift` and brings the duration to 1/rate.
        shift = 1 + pitch / 100
        setup = f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {rate / shift:.3f}))))'
    else:
        setup = f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})"
    with tempfile.TemporaryDirectory() as tmp:
        sable_path, wav_path = os.path.join(tmp, "clip.sable"), os.path.join(tmp, "clip.wav")
        with open(sable_path, "w", encoding="utf-8") as f:
            f.write(sable(text, pitch if shift == 1.0 else 0.0, pitch_range))
        # SABLE mode starts from its default voice and a voice resets the rate, so the rate is set
        # inside a voice of our own, which the document's SPEAKER selects.
        voice = f"(define (voice_mserclip) (voice_{festival_voice}) {setup})"
        subprocess.run(["text2wave", "-mode", "sable", "-eval", voice, sable_path, "-o", wav_path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples, rate_hz = soundfile.read(wav_path, dtype="float32")
    # Read at rate_hz * shift: played faster by `shift`, so F0 rises by it.
    return demo.resample(samples, int(round(rate_hz * shift)), SAMPLE_RATE) * (1 + volume / 100)


@functools.lru_cache(maxsize=None)
def voice_scale(festival_voice: str) -> float:
    """Amplitude factor that brings the voice's neutral reference sentence to REFERENCE_RMS."""
    speech = demo.trim_silence(synthesise(festival_voice, SENTENCES[0], 0.0, 0.0, 1.0, 0.0))
    return REFERENCE_RMS / float(np.sqrt(np.mean(speech ** 2)))


def render_clip(job: ClipJob) -> Dict[str, object]:
    """Synthesise one clip, apply its recording condition, write it; return its metadata row."""
    rng, row, condition = draw_clip(job)
    festival_voice = VOICES[job.voice]
    speech = synthesise(festival_voice, f'{row["sentence"]}{row["ending"]}', float(row["pitch"]),
                        float(row["range"]), float(row["rate"]), float(row["volume"]))
    speech = demo.trim_silence(speech) * voice_scale(festival_voice)
    audio = demo.record(rng, speech.astype(np.float32), condition, level=1.0)
    path = os.path.join(job.out_dir, clip_name(job))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return {**row, "duration": round(audio.size / SAMPLE_RATE, 3)}


def make_jobs(args: argparse.Namespace) -> List[ClipJob]:
    return [ClipJob(voice, emotion, clip, args.seed, args.out_dir)
            for voice in list(VOICES)[:args.num_voices] for emotion in EMOTIONS for clip in range(args.clips)]


def generate(args: argparse.Namespace) -> None:
    for tool in ("text2wave", "espeak-ng"):  # espeak-ng: the babble noise
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed (bash tools/install.sh installs festival and its voices)")
    demo.render_corpus(render_clip, make_jobs(args), args, chunksize=4)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_generator_arguments(parser, "dataset/festival", len(VOICES),
                                 f"how many of the {len(VOICES)} voices to use ({', '.join(VOICES)})",
                                 clips=10, what="set")
    args = parser.parse_args(argv)
    demo.check_generator_arguments(parser, args, len(VOICES))
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.report:
        demo.report(args.report)
    else:
        generate(args)


if __name__ == "__main__":
    main()

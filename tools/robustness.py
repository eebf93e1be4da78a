"""How a trained model holds up under the recording conditions users meet on day one.

Every clip of a test list is classified clean and then under each condition below; for each
condition the script reports unweighted accuracy (UA) and how often the answer differs from the
same clip's clean answer (the flip rate). Nothing is trained; the checkpoint is used as it is.

    python tools/robustness.py --model_path models/TDNN_FbankProsody/best_model \
        --test_list dataset/test_list.txt [--conditions clean,silence_pad,...] [--json out.json]

A model trained with speaker normalisation hears each speaker of the list (third column) as a
user's session would: that speaker's clips in list order, each normalised with the running
statistics of the speaker's clips so far (`MSERPredictor.predict_batch(..., speaker=...)`), all
under the same condition; `--no_speakers` uses the global statistics for every clip instead. A
session hears its speaker's clips in a seeded random order (`--session_seed`, -1 for list order):
lists are sorted by emotion, and a session that first hears only one emotion starts its running
statistics from that emotion alone. `--statistics whole` instead normalises every clip with the
statistics of all of its speaker's clips under the condition, as eval.py and infer.py do for files.
`--views telephone` runs the predictor with test-time views (mser.views; an ensemble folder's own by
default, `--views none` for none).

Conditions (each applied to the 16 kHz clip as decoded from the list):
  clean          the clip as it is
  silence_pad    0.5 s of exact digital silence before and after (padding, a muted stream)
  silence_gaps   two 0.3 s gaps of exact digital silence inside the clip
  telephone_8k   300-3400 Hz band-pass, resampled to 8 kHz and given to the model at 8 kHz
                 (it resamples back), G.711 mu-law companding (mser.views.telephone_band, the same
                 line the "telephone" view passes a clip through)
  gsm_8k         resampled to 8 kHz and through the GSM 06.10 full-rate codec of mobile phones
                 (libsndfile), no band-pass: another line than telephone_8k's
  rate_44k       resampled to 44.1 kHz and given at that rate (should change nothing)
  mp3            MP3 round trip (libsndfile's LAME encoder, default quality)
  ogg            Ogg Vorbis round trip (libsndfile, default quality)
  clipping       12 dB of overdrive: scaled so the peak is 4x full scale, then clipped at +-1
  peak_normalised  scaled so its peak is just under full scale, nothing clipped: what `clipping`
                 does to the clip's level without the distortion
  hot_mic_12dB   12 dB more gain for every clip, clipped at +-1: a microphone set too hot for the
                 whole session (loud clips clip more than quiet ones, as in a real session)
  dc_offset      a constant +0.05 added (a cheap sound card)
  level_-10dB    10 dB quieter
  level_+10dB    10 dB louder (clipped at +-1 where it exceeds full scale)
  noise_50dB     white noise 50 dB below the clip's RMS level (seeded per clip): inaudible, so the
                 answers it changes are those on a decision boundary, a floor for every condition
"""
import argparse
import io
import json
import os
import sys
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mser.audio import load_audio  # noqa: E402
from mser.data.lists import read_data_list  # noqa: E402
from mser.metrics import compute_metrics  # noqa: E402
from mser.views import TELEPHONE_RATE, telephone_band  # noqa: E402

SAMPLE_RATE = 16000
# A condition maps (samples at 16 kHz) to what the predictor is given: an array with its rate,
# or encoded bytes (rate None: the file carries it).
Condition = Callable[[np.ndarray], Tuple[object, int]]


def silence_pad(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    pad = np.zeros(int(0.5 * SAMPLE_RATE), np.float32)
    return np.concatenate([pad, samples, pad]), SAMPLE_RATE


def silence_gaps(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    gap = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    third = samples.size // 3
    return np.concatenate([samples[:third], gap, samples[third:2 * third], gap, samples[2 * third:]]), SAMPLE_RATE


def telephone_8k(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    return telephone_band(samples, SAMPLE_RATE), TELEPHONE_RATE


def resampled_to(rate: int) -> Condition:
    def condition(samples: np.ndarray) -> Tuple[np.ndarray, int]:
        return AF.resample(torch.from_numpy(samples), SAMPLE_RATE, rate).numpy(), rate
    return condition


def codec(file_format: str, subtype: Optional[str] = None, rate: int = SAMPLE_RATE) -> Condition:
    """A round trip through a libsndfile codec, the clip resampled to `rate` first."""
    def condition(samples: np.ndarray) -> Tuple[bytes, None]:
        if rate != SAMPLE_RATE:
            samples = AF.resample(torch.from_numpy(samples), SAMPLE_RATE, rate).numpy()
        buffer = io.BytesIO()
        soundfile.write(buffer, np.clip(samples, -1, 1), rate, format=file_format, subtype=subtype)
        return buffer.getvalue(), None
    return condition


def clipping(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    peak = float(np.abs(samples).max()) or 1.0
    return np.clip(samples * (4.0 / peak), -1.0, 1.0).astype(np.float32), SAMPLE_RATE


def peak_normalised(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    peak = float(np.abs(samples).max()) or 1.0
    return (samples * (0.99 / peak)).astype(np.float32), SAMPLE_RATE


def hot_microphone(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    return np.clip(samples * 4.0, -1.0, 1.0).astype(np.float32), SAMPLE_RATE


def dc_offset(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    return (samples + 0.05).astype(np.float32), SAMPLE_RATE


def level(gain_db: float) -> Condition:
    def condition(samples: np.ndarray) -> Tuple[np.ndarray, int]:
        return np.clip(samples * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32), SAMPLE_RATE
    return condition


def faint_noise(samples: np.ndarray) -> Tuple[np.ndarray, int]:
    rng = np.random.default_rng(samples.size)   # the same noise for a clip in every run
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    noise = rng.standard_normal(samples.size) * rms * 10 ** (-50 / 20)
    return (samples + noise).astype(np.float32), SAMPLE_RATE


CONDITIONS: Dict[str, Condition] = {
    "clean": lambda samples: (samples, SAMPLE_RATE),
    "silence_pad": silence_pad,
    "silence_gaps": silence_gaps,
    "telephone_8k": telephone_8k,
    "gsm_8k": codec("WAV", "GSM610", TELEPHONE_RATE),
    "rate_44k": resampled_to(44100),
    "mp3": codec("MP3"),
    "ogg": codec("OGG"),
    "clipping": clipping,
    "peak_normalised": peak_normalised,
    "hot_mic_12dB": hot_microphone,
    "dc_offset": dc_offset,
    "level_-10dB": level(-10.0),
    "level_+10dB": level(10.0),
    "noise_50dB": faint_noise,
}


def session_orders(speakers: Sequence[str], seed: int = 0) -> Dict[str, List[int]]:
    """Each speaker's rows in the order its session hears them: a seeded shuffle, because lists
    are sorted by emotion and a session that hears all of one emotion first starts its running
    statistics from that emotion alone (seed < 0: list order)."""
    rng = np.random.default_rng(seed) if seed >= 0 else None
    orders = {}
    for speaker in dict.fromkeys(speakers):
        rows = [i for i, s in enumerate(speakers) if s == speaker]
        orders[speaker] = [rows[i] for i in rng.permutation(len(rows))] if rng is not None else rows
    return orders


def predict_condition(predictor, clips: Sequence[np.ndarray], speakers: Sequence[str],
                      condition: Condition, seed: int = 0, statistics: str = "running") -> List[int]:
    """Predicted label index of every clip under one condition, one speaker's clips at a time in
    the order of `session_orders` (every clip on its own when `speakers` are empty strings), with
    running or whole-session speaker statistics (MSERPredictor.predict_batch)."""
    changed = [condition(samples) for samples in clips]
    rates = {rate for _, rate in changed}
    if len(rates) != 1:
        raise ValueError("a condition must give every clip the same sample rate")
    rate = rates.pop()
    predictor.reset_speakers()
    predicted = [0] * len(clips)
    for speaker, rows in session_orders(speakers, seed).items():
        labels = predictor.predict_batch([changed[i][0] for i in rows], sample_rate=rate, speaker=speaker or None,
                                         statistics=statistics)
        for row, (label, _) in zip(rows, labels):
            predicted[row] = predictor.labels.index(label)
    return predicted


def evaluate(model_path: str, test_list: str, names: Sequence[str], use_gpu: bool = False,
             by_speaker: bool = True, seed: int = 0, statistics: str = "running",
             views=None) -> Dict[str, dict]:
    """{condition: {unweighted_accuracy, accuracy, flip_rate, num_samples}} on `test_list`; `views`:
    the predictor's test-time views (mser.views)."""
    from mser import MSERPredictor
    from mser.errors import BandwidthWarning, ClippingWarning
    warnings.filterwarnings("ignore", category=BandwidthWarning)  # telephone_8k is narrow on purpose
    warnings.filterwarnings("ignore", category=ClippingWarning)   # and clipping, hot_mic_12dB clipped
    predictor = MSERPredictor(model_path=model_path, use_gpu=use_gpu, views=views)
    items = read_data_list(test_list, len(predictor.labels))   # a checkpoint's or an ensemble's labels
    clips = [load_audio(item[0], SAMPLE_RATE) for item in items]
    truth = [item[1] for item in items]
    speakers = [item.speaker if by_speaker else "" for item in items]
    results, clean = {}, None
    for name in ["clean"] + [n for n in names if n != "clean"]:
        predicted = predict_condition(predictor, clips, speakers, CONDITIONS[name], seed, statistics)
        clean = predicted if name == "clean" else clean
        metrics = compute_metrics(truth, predicted, predictor.labels)
        results[name] = {"unweighted_accuracy": metrics["unweighted_accuracy"], "accuracy": metrics["accuracy"],
                         "flip_rate": float(np.mean(np.array(predicted) != np.array(clean))),
                         "num_samples": len(items)}
        print(f"{name:<14} UA {results[name]['unweighted_accuracy']:.3f}  "
              f"acc {results[name]['accuracy']:.3f}  answer changed on {results[name]['flip_rate']:.1%}",
              flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_path", required=True, help="checkpoint directory")
    parser.add_argument("--test_list", default="dataset/test_list.txt", help="clips to classify")
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help="comma-separated conditions (clean is always included)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--use_gpu", action="store_true", help="run the model on the GPU")
    parser.add_argument("--no_speakers", action="store_true",
                        help="ignore the list's speakers: every clip normalised with the global statistics")
    parser.add_argument("--session_seed", type=int, default=0,
                        help="seed of the order in which each speaker's session hears its clips (-1: list order)")
    parser.add_argument("--statistics", choices=("running", "whole"), default="running",
                        help="speaker statistics: running (a live session, as infer_record.py) or whole "
                             "(all of a speaker's clips first, as eval.py and infer.py on files)")
    parser.add_argument("--views", default=None,
                        help="test-time views of the predictor, comma-separated (mser.views), e.g. telephone, or "
                             "none (default: the model folder's own)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(CONDITIONS)}")
    report(lambda: evaluate(args.model_path, args.test_list, names, args.use_gpu, not args.no_speakers,
                            args.session_seed, args.statistics, args.views), args.json)


def report(evaluation: Callable[[], dict], json_path: Optional[str]) -> None:
    """Run a tool's evaluation: bad input (an MSERError) is one error line and exit code 1; the
    results also go to `json_path` when given."""
    from mser.errors import MSERError
    try:
        results = evaluation()
    except MSERError as e:
        sys.exit(f"error: {e}")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

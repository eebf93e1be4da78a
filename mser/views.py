"""Test-time views: a clip is classified as recorded and as transformed copies of it (views), each
with its own speaker statistics, and the views' class probabilities are averaged.

The same speech heard over another channel can get another answer (README, Robustness: a telephone
line changes about a fifth of the recommended ensemble's answers). With the "telephone" view, the
answer on a wideband clip also hears the clip as a telephone line would pass it, and the answer on a
telephone recording barely changes (its telephone view is nearly itself), so the two answers move
closer by construction. Each view costs one more model run. For the ensembles it costs no accuracy
in cross-validation, and configs/ensemble_large.yml and ensemble.yml name it (the folder's `views`,
mser.ensemble); a single eGeMAPS model loses accuracy with it, with or without telephone audio in
its training (README, Results). Off otherwise.

    MSERPredictor("models/BiLSTM_eGeMAPS/best_model", views=["telephone"])   # a ViewPredictor
    MSERPredictor("models/Ensemble", views="none")                          # the folder's views off
    infer.py --model_path models/Ensemble --audio_path clip.wav --views telephone
    eval.py --resume_model models/Ensemble --views none

Views (the registry VIEWS; each maps loaded samples at the model's rate to samples at that rate):
  telephone   300-3400 Hz at 8 kHz with G.711 mu-law companding, as a landline passes speech
  gsm         8 kHz through the GSM 06.10 full-rate codec, as a mobile line passes speech
  overdrive   scaled so that its peak is twice full scale, then clipped at +-1 (6 dB of overdrive):
              the same samples whatever the input's gain, as long as the input is not clipped
  pitch_down  one semitone lower, duration kept (another talker, roughly)
  pitch_up    one semitone higher
Beside telephone, gsm and overdrive moved the flips under a mobile line and under clipping by up to
two points in cross-validation, for one more model run each (README, Robustness): not in the
shipped ensemble configs.
"""
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torchaudio.functional as AF

from mser.audio import normalize_db
from mser.composite import CompositePredictor
from mser.errors import ConfigError
from mser.predictor import MSERPredictor
from mser.registry import Registry

VIEWS = Registry("test-time view")
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
AS_RECORDED = "as_recorded"


def telephone_band(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """What a landline passes of a clip: resampled to 8 kHz, 300-3400 Hz (two biquads on each side,
    24 dB/octave edges) and G.711 mu-law companding. (S,) at `sample_rate` -> (S',) at 8 kHz."""
    narrow = AF.resample(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
                         sample_rate, TELEPHONE_RATE)
    for _ in range(2):
        narrow = AF.highpass_biquad(narrow, TELEPHONE_RATE, TELEPHONE_BAND_HZ[0])
        narrow = AF.lowpass_biquad(narrow, TELEPHONE_RATE, TELEPHONE_BAND_HZ[1])
    return AF.mu_law_decoding(AF.mu_law_encoding(narrow.clamp(-1, 1), 256), 256).numpy().astype(np.float32)


@VIEWS.register
def telephone(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The clip through a telephone line (telephone_band), back at `sample_rate`, as long as it was."""
    from mser.data.augment import fit_length
    narrow = torch.from_numpy(telephone_band(samples, sample_rate))
    return fit_length(AF.resample(narrow, TELEPHONE_RATE, sample_rate).numpy().astype(np.float32), samples.shape[0])


@VIEWS.register
def gsm(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The clip through GSM 06.10 at 8 kHz (the codec augmentation's round trip), back at
    `sample_rate`, as long as it was."""
    from mser.data.augment import codec_round_trip
    return codec_round_trip(np.ascontiguousarray(samples, dtype=np.float32), sample_rate, "gsm", 0.0)


@VIEWS.register
def overdrive(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Peak at twice full scale, clipped at +-1. Silence stays silence."""
    peak = float(np.abs(samples).max(initial=0.0))
    if peak == 0.0:
        return samples.astype(np.float32)
    return np.clip(samples * (2.0 / peak), -1.0, 1.0).astype(np.float32)


@VIEWS.register
def pitch_down(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    from mser.data.augment import shift_pitch
    return shift_pitch(samples, sample_rate, -1.0).astype(np.float32)


@VIEWS.register
def pitch_up(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    from mser.data.augment import shift_pitch
    return shift_pitch(samples, sample_rate, 1.0).astype(np.float32)


def check_views(views: Any) -> List[str]:
    """The view names of `views` (a list, or one comma-separated string; "none" or empty: no view),
    checked against VIEWS; ConfigError for an unknown or repeated name."""
    if views is None:
        return []
    names = [name.strip() for name in views.split(",") if name.strip()] if isinstance(views, str) else list(views)
    if names == ["none"]:
        return []
    if not all(isinstance(name, str) for name in names):
        raise ConfigError(f"views must be view names, got {views!r}")
    for name in names:
        VIEWS.get(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"views must not repeat a name, got {', '.join(names)}")
    return names


def refuse_views(views: Any) -> None:
    """ConfigError when a predictor class that runs no views is built directly with some: views are
    built by MSERPredictor(model_path, views=[...]), which returns a ViewPredictor."""
    if check_views(views):
        raise ConfigError("test-time views are built by MSERPredictor(model_path, views=[...])")


def resolve_views(model_path: Optional[str], views: Any) -> List[str]:
    """The views a predictor of `model_path` runs: `views` when given (check_views; "none" for
    none), else the folder's own: an ensemble folder's `views` (mser.ensemble.read_views), none for
    a checkpoint."""
    if views is not None:
        return check_views(views)
    from mser.ensemble import is_ensemble, read_views
    return read_views(model_path) if is_ensemble(model_path) else []


class ViewPredictor(CompositePredictor):
    """MSERPredictor that classifies every clip as recorded and under each of `views` (check_views),
    and averages the probabilities. Each view runs the model (or every member of an ensemble) on its
    own copy of the checkpoint, so it keeps its own speaker statistics: a speaker's telephone views
    are standardised with the statistics of that speaker's telephone views. `embed` gives the
    embeddings of the clip as recorded. Built by `MSERPredictor(..., views=[...])`, or by
    `MSERPredictor(<ensemble folder>)` when the folder names views (resolve_views)."""

    def __init__(self, model_path: str, configs: Optional[str] = None, use_gpu: bool = False,
                 threshold: float = 0.0, overwrites: Optional[str] = None, backend: str = "torch",
                 precision: str = "float32", *, views: Any = None):
        self.views = resolve_views(model_path, views)
        if not self.views:
            raise ConfigError("a ViewPredictor needs at least one view, e.g. views=['telephone']")

        def load_copy():   # views=[]: the copy itself runs without views
            return MSERPredictor(model_path, configs=configs, use_gpu=use_gpu, threshold=threshold,
                                 overwrites=overwrites, backend=backend, precision=precision, views=[])

        self.parts = [load_copy() for _ in range(len(self.views) + 1)]   # as recorded first
        self.__dict__.update({name: value for name, value in vars(self.parts[0]).items()
                              if name not in ("members", "views", "parts")})
        self.featurizer = self.model = self.speaker_norm = self.onnx = None
        self.transforms = [unchanged] + [VIEWS.get(name) for name in self.views]

    def normalises_speakers(self) -> bool:
        return self.parts[0].normalises_speakers()

    def part_waveforms(self, index: int, waveforms: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Loaded clips as view `index` hears them (0: as recorded), levelled again where the
        checkpoint reads its input at a fixed level (an ensemble's members level their own copy)."""
        part, transform = self.parts[index], self.transforms[index]
        viewed = [transform(samples, self.sample_rate) for samples in waveforms]
        if part.clip.use_db_normalization and index > 0:
            viewed = [normalize_db(samples, part.clip.target_db) for samples in viewed]
        return viewed

    def combine_parts(self, probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """The views' probabilities averaged."""
        return np.mean(np.stack(probabilities).astype(np.float64), axis=0).astype(np.float32)

    def embeddings(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return self.parts[0].embeddings(waveforms)


def unchanged(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    return samples


# ---- evaluation ----------------------------------------------------------------------------

def evaluate(model_path: str, views: Any, list_path: Optional[str] = None, use_gpu: bool = True,
             output_dir: Optional[str] = None) -> Dict[str, Any]:
    """eval.py with test-time views (resolve_views): the metrics of a checkpoint or ensemble folder
    on `list_path` (default: the test list of the checkpoint's config, or of an ensemble's first
    member), every clip through the predictor, as infer.py hears files: each speaker of the list
    (third column) as one session with whole statistics, clips without a speaker with the global
    ones. Unusable clips are skipped and counted."""
    from mser.metrics import add_speaker_balanced, compute_metrics, write_evaluation
    predictor = MSERPredictor(model_path, use_gpu=use_gpu, views=views)
    list_path = list_path or default_test_list(predictor)
    y_true, probabilities, speakers = view_probabilities(predictor, list_path)
    metrics = compute_metrics(y_true.tolist(), probabilities.argmax(1).tolist(), predictor.labels)
    add_speaker_balanced(metrics, y_true, probabilities, speakers)
    metrics["views"] = [AS_RECORDED] + predictor.views
    if output_dir:
        write_evaluation(metrics, predictor.labels, output_dir)
    return metrics


def default_test_list(predictor: ViewPredictor) -> str:
    return predictor.config["dataset_conf"]["test_list"]   # an ensemble's: its first member's


def view_probabilities(predictor: ViewPredictor, list_path: str):
    """(true labels (clips,), probabilities (clips, classes), speakers) of the usable clips of a list,
    grouped by speaker in the order speakers first appear. One speaker's audio is held at a time."""
    from tqdm import tqdm

    from mser.data.lists import read_data_list
    from mser.errors import AudioError
    items = read_data_list(list_path, len(predictor.labels))
    by_speaker: Dict[str, List[tuple]] = {}
    for path, label, speaker in items:
        by_speaker.setdefault(speaker or "", []).append((path, label))
    labels, parts, speakers, skipped = [], [], [], 0
    progress = tqdm(total=len(items), desc="evaluating", leave=False)
    for speaker, clips in by_speaker.items():
        usable, waveforms = load_usable(predictor, clips, progress)
        skipped += len(clips) - len(usable)
        if usable:
            parts.append(predictor.batched_probabilities(waveforms, speaker or None, "whole"))
            labels.extend(usable)
            speakers.extend([speaker or None] * len(usable))
    progress.close()
    if skipped:
        print(f"{skipped} of {len(items)} clips of {list_path} skipped (unusable)")
    if not labels:
        raise AudioError(f"no usable clip in {list_path}")
    return np.array(labels), np.concatenate(parts), speakers


def load_usable(predictor: ViewPredictor, clips: Sequence[tuple], progress) -> tuple:
    """([label], [samples]) of the (path, label) clips that load; each one that does not is said once."""
    from tqdm import tqdm

    from mser.errors import AudioError, BandwidthWarning, ClippingWarning
    labels, waveforms = [], []
    with warnings.catch_warnings():   # a list's narrow-band or clipped clips are data, as in eval.py without views
        warnings.simplefilter("ignore", BandwidthWarning)
        warnings.simplefilter("ignore", ClippingWarning)
        for path, label in clips:
            try:
                waveforms.append(predictor.load(path))
                labels.append(label)
            except AudioError as e:
                tqdm.write(f"skipping {path}: {e}")
            progress.update(1)
    return labels, waveforms

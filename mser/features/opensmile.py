"""openSMILE functionals, the field-standard paralinguistic feature sets, as clip-level featurizers,
and the contours they summarise as a frame-level one.

  eGeMAPS   eGeMAPSv02 functionals, 88 values: the extended Geneva Minimalistic Acoustic Parameter
            Set (Eyben et al. 2016, IEEE Trans. Affective Computing 7(2)), the common baseline of
            emotion and paralinguistics papers: pitch, jitter, shimmer, loudness, HNR, formants,
            spectral slope, MFCC 1-4, rate of loudness peaks and voiced segment lengths.
  ComParE   ComParE_2016 functionals, 6373 values: the brute-force set of the Interspeech
            Computational Paralinguistics Challenges (Schuller et al. 2016).
  eGeMAPS_LLD  eGeMAPSv02's 25 low-level descriptors every 10 ms (+ a voiced channel), for a
            frame-level model (OpenSmileContours below; no scaler: speaker normalisation or the
            model's own normalisation scales them).

Computed by audEERING's `opensmile` package (pip install "mser[opensmile]"; it ships the
binaries) on each clip's valid samples only, so the padding of a batch never changes a clip's
features. Like CustomFeatures they are cached by extract_features.py and standardised by a scaler
fitted on the training list (mser.features.clip.ClipFeaturizer).

The level of the input. openSMILE's voicing decisions use absolute energy thresholds, so its
functionals move with the recording level; `analysis_dBFS: -20` levels each clip's copy that openSMILE
analyses to that RMS. Levelling also removes how loud the clip was, an arousal cue once the speaker's
own level is subtracted (speaker normalisation); `append_level: true` keeps it as one more value, the
clip's RMS level in dBFS as it came in (`level_dBFS`, floored at LEVEL_FLOOR_DBFS). Levelling in the
dataset (`use_dB_normalization`) instead would hide that level from the featurizer.

A second opinion on pitch. openSMILE's F0 (subharmonic summation) errs in noise, and its percentiles
with it; `append_pitch_level: true` adds the clip's pitch level from our autocorrelation tracker
(FbankProsody's: the median F0 over voiced frames, in semitones re 27.5 Hz like eGeMAPS' F0 values;
`pitch_level_st`, after `level_dBFS` when both are on). On the demo corpus's training voices it adds
to eGeMAPS' own pitch values what the generator's per-clip pitch was (README, Features).

How long the clip is. Relative to the speaker's other clips (speaker normalisation), a clip's duration
tells how fast it was spoken when the sentences are alike, a cue none of eGeMAPS' values carries (its
rate measures count loudness peaks and voiced segments, which noise blurs). `append_duration: true`
adds the natural log of the clip's duration in seconds (`duration_log_s`, last), as the featurizer
receives it: after the digital silence that loading removes, so padding a file with zeros leaves it.
The fixed windows of a stream (a live microphone, a long recording cut into windows) have no duration
of their own: there the value is the training average (mser.features.windows).
`append_speech_duration: true` adds how long the speech in the clip lasts (`speech_duration_log_s`,
the natural log of the seconds Silero VAD marks as speech, pauses under 0.1 s included; the clip's
duration when it finds none): the silence a recording leaves before and after the words, which varies
from take to take, does not count, so it says more about how fast the words were spoken (README,
Features). Windows of a stream get the training average, as for the clip's duration.

When an ensemble trains a functionals and a contours member of one feature set that analyse clips
the same way, each clip is analysed once for both (mser.features.opensmile_runs).

Two cases where openSMILE gives no number are handled here:
  - a clip shorter than 60 ms (openSMILE's longest analysis window) makes openSMILE return NaN for
    every value, so such a clip is padded with silence to 60 ms first;
  - any other non-finite value is replaced by the scaler's mean (the training average, 0 after
    standardisation; 0 before a scaler is fitted), so that one odd value cannot poison a batch.
"""
import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mser.audio import normalize_db, rms_dbfs
from mser.errors import ConfigError
from mser.features.base import FrameFeaturizer, register_featurizer
from mser.features.clip import ClipFeaturizer
from mser.features.opensmile_runs import CONTOURS, FUNCTIONALS, analyse
from mser.features.prosody import F0_MAX_HZ, F0_MIN_HZ, VOICING_THRESHOLD, PitchTracker, pitch_level
from mser.features.windows import durations_known

INSTALL_HINT = 'pip install "mser[opensmile]"'
MIN_SECONDS = 0.060  # shorter segments come back from openSMILE as NaN in every value
# the values the options append after the functionals, in this order (not functionals: never dropped)
APPENDED_VALUES = ("level_dBFS", "pitch_level_st", "duration_log_s", "speech_duration_log_s")
LEVEL_FLOOR_DBFS = -100.0   # the level of digital silence (16-bit audio's quietest step is -96 dBFS)
SEMITONES_27_5_HZ = 12 * math.log2(100 / 27.5)   # 100 Hz in semitones re 27.5 Hz (eGeMAPS' F0 unit)


def checked_analysis_level(featurizer: str, analysis_dBFS: Optional[float]) -> Optional[float]:
    if analysis_dBFS is not None and not -80.0 <= float(analysis_dBFS) <= 0.0:
        raise ConfigError(f"{featurizer}: analysis_dBFS must lie in [-80, 0] dBFS, got {analysis_dBFS!r}")
    return None if analysis_dBFS is None else float(analysis_dBFS)


def analysis_copy(clip: np.ndarray, analysis_dBFS: Optional[float], min_samples: int) -> Tuple[np.ndarray, float]:
    """The copy of a clip that openSMILE analyses (levelled to `analysis_dBFS` when given, padded
    with silence to `min_samples`) and the clip's own RMS level in dBFS (floored at LEVEL_FLOOR_DBFS)."""
    level = max(LEVEL_FLOOR_DBFS, rms_dbfs(clip))
    if analysis_dBFS is not None:
        clip = normalize_db(clip, analysis_dBFS)
    if clip.shape[0] < min_samples:
        clip = np.pad(clip, (0, min_samples - clip.shape[0]))
    return np.ascontiguousarray(clip, dtype=np.float32), level


def import_opensmile(featurizer: str):
    try:
        import opensmile
    except ImportError:
        raise ConfigError(f"featurizer {featurizer} needs the opensmile package: {INSTALL_HINT}") from None
    return opensmile


class OpenSmileFunctionals(ClipFeaturizer):
    """openSMILE functionals of `feature_set`: forward -> ((batch, 1, feature_dim), ones (batch,)).

    scaler_path: a JSON scaler written by `save_scaler`, loaded at construction when given.
    analysis_dBFS: level each clip to this RMS (dBFS) before openSMILE analyses it (None: as it is).
    append_level: add the clip's RMS level in dBFS, before any levelling, as one more value.
    append_pitch_level: add the clip's pitch level from our autocorrelation tracker (semitones re
    27.5 Hz; the scaler's mean for a clip without voiced frames).
    append_duration: add the natural log of the clip's duration in seconds (the scaler's mean for the
    windows of a stream, whose duration is the window's).
    append_speech_duration: add the natural log of the seconds of speech Silero VAD finds in the clip,
    last (as the duration for a stream's windows; silero-vad, which `pip install "mser[opensmile]"` brings).
    drop_functionals: names of the set's functionals to leave out (tools/functional_stability.py
    finds those that channels move most; a name the set does not have is a ConfigError; None, as
    `--overwrites preprocess_conf.method_args.drop_functionals=null` gives it, leaves none out).
    """

    feature_set: str       # an opensmile.FeatureSet member name
    extra = "opensmile"    # the pip extra (and module) this featurizer needs
    clip_by_clip = True
    smile_level = FUNCTIONALS

    def __init__(self, sample_rate: int = 16000, scaler_path: str = "", analysis_dBFS: Optional[float] = None,
                 append_level: bool = False, append_pitch_level: bool = False, append_duration: bool = False,
                 append_speech_duration: bool = False, drop_functionals: Sequence[str] = ()):
        super().__init__(sample_rate)
        opensmile = import_opensmile(type(self).__name__)
        self.analysis_dBFS = checked_analysis_level(type(self).__name__, analysis_dBFS)
        self.append_level = bool(append_level)
        self.append_duration = bool(append_duration)
        self.append_speech_duration = bool(append_speech_duration)
        if self.append_speech_duration:
            check_silero(type(self).__name__)
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.feature_set],
                                     feature_level=opensmile.FeatureLevel.Functionals)
        # FbankProsody's default tracker, 10 ms hop
        self.pitch_tracker = (PitchTracker(sample_rate, F0_MIN_HZ, F0_MAX_HZ, VOICING_THRESHOLD, sample_rate // 100)
                              if append_pitch_level else None)
        self.kept = kept_functionals(type(self).__name__, list(self.smile.feature_names), drop_functionals)
        self.feature_names: List[str] = ([self.smile.feature_names[i] for i in self.kept]
                                         + ["level_dBFS"] * self.append_level
                                         + ["pitch_level_st"] * bool(append_pitch_level)
                                         + ["duration_log_s"] * self.append_duration
                                         + ["speech_duration_log_s"] * bool(append_speech_duration))
        self.feature_dim = len(self.feature_names)
        self.min_samples = math.ceil(MIN_SECONDS * sample_rate)
        self.init_scaler(scaler_path)

    def extract(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> torch.Tensor:
        """Raw functionals. waveforms: (batch, samples), lengths: (batch,) -> (batch, feature_dim)."""
        if waveforms.device.type == "meta":  # shape inference: there are no samples to analyse
            return torch.zeros(waveforms.shape[0], self.feature_dim, device=waveforms.device)
        lengths = self.full_lengths(waveforms, lengths).tolist()
        clips = waveforms.detach().float().cpu().numpy()
        clips = [clip[:length] for clip, length in zip(clips, lengths)]
        speech = self.speech_seconds(clips)
        rows = [self.functionals(clip, seconds) for clip, seconds in zip(clips, speech)]
        raw = torch.from_numpy(np.stack(rows)).to(waveforms.device)
        return torch.where(torch.isfinite(raw), raw, self.scaler_mean.expand_as(raw))

    def speech_seconds(self, clips: List[np.ndarray]) -> List[Optional[float]]:
        """Seconds of speech in each clip for append_speech_duration (None when it is off, or when
        Silero VAD finds none: then the clip's duration stands in)."""
        if not (self.append_speech_duration and durations_known()):
            return [None] * len(clips)
        from mser.vad import load_vad, speech_seconds
        return [seconds or None for seconds in speech_seconds(clips, self.sample_rate, load_vad("silero"))]

    def functionals(self, clip: np.ndarray, speech_seconds: Optional[float] = None) -> np.ndarray:
        """One clip's valid samples (samples,) and the seconds of speech in it -> (feature_dim,)
        float32, possibly non-finite."""
        seconds = max(clip.shape[0], 1) / self.sample_rate
        clip, level = analysis_copy(clip, self.analysis_dBFS, self.min_samples)
        values = np.asarray(analyse(self, clip), dtype=np.float32).reshape(-1)[self.kept]
        if self.append_level:
            values = np.append(values, np.float32(level))
        if self.pitch_tracker is not None:
            samples = torch.from_numpy(clip)
            with torch.no_grad():
                octaves = pitch_level(self.pitch_tracker, samples)
            values = np.append(values, np.float32(12 * octaves + SEMITONES_27_5_HZ))
        if self.append_duration:   # NaN: the scaler's mean (extract)
            values = np.append(values, np.float32(math.log(seconds) if durations_known() else math.nan))
        if self.append_speech_duration:
            speech = speech_seconds or seconds
            values = np.append(values, np.float32(math.log(speech) if durations_known() else math.nan))
        return values.reshape(self.feature_dim)


def check_silero(featurizer: str) -> None:
    """append_speech_duration measures with Silero VAD only: the energy detector's durations differ,
    and a model must never hear another measure than it was trained on."""
    from mser.vad import SILERO_HINT, silero_available
    if not silero_available():
        raise ConfigError(f"{featurizer}: append_speech_duration needs Silero VAD: {SILERO_HINT}")


def kept_functionals(featurizer: str, names: List[str], drop: Any) -> np.ndarray:
    """The indices of the functionals `names` that `drop` (a list of names; None drops none) leaves;
    a ConfigError for a name the set does not have, so that a misspelt name cannot silently keep one."""
    drop = [] if drop is None else drop
    if isinstance(drop, str) or not isinstance(drop, (list, tuple)):
        raise ConfigError(f"{featurizer}: drop_functionals must be a list of functional names, got {drop!r}")
    known, dropped = set(names), set(drop)
    unknown = [name for name in drop if name not in known]
    if unknown:
        raise ConfigError(f"{featurizer}: drop_functionals names {unknown[0]!r}, which is not one of its "
                          f"{len(names)} functionals (e.g. {names[0]!r})")
    kept = [index for index, name in enumerate(names) if name not in dropped]
    if not kept:
        raise ConfigError(f"{featurizer}: drop_functionals leaves none of its functionals")
    return np.array(kept, dtype=np.int64)


@register_featurizer
class eGeMAPS(OpenSmileFunctionals):  # the name every paper uses
    """eGeMAPSv02 functionals (88 values), the standard paralinguistic baseline."""

    feature_set = "eGeMAPSv02"


@register_featurizer
class ComParE(OpenSmileFunctionals):
    """ComParE_2016 functionals (6373 values)."""

    feature_set = "ComParE_2016"


class OpenSmileContours(FrameFeaturizer):
    """openSMILE low-level descriptors of `feature_set`, every 10 ms:
    forward -> ((batch, frames, feature_dim), frame_lengths (batch,)).

    openSMILE's frames: one every 10 ms from the start, the last one ending within the clip's last
    `WINDOW_SECONDS`; a clip shorter than MIN_SECONDS is padded with silence to it first (2 frames).
    Descriptors defined on voiced frames only (names ending in `nz`: pitch, jitter, shimmer, HNR,
    formants; openSMILE writes 0, or -201 for the formant amplitudes, elsewhere) hold the clip's
    median over its voiced frames on unvoiced ones (0 when nothing is voiced), so that a pause is not
    an outlier, and a `voiced` channel (1.0 / 0.0) says where they were measured.
    analysis_dBFS, append_level: as for the functionals (append_level: a constant channel).
    """

    feature_set: str
    extra = "opensmile"
    clip_by_clip = True
    smile_level = CONTOURS
    WINDOW_SECONDS = 0.050   # openSMILE's frames of these sets end up to 50 ms before a clip's end

    def __init__(self, sample_rate: int = 16000, analysis_dBFS: Optional[float] = None,
                 append_level: bool = False, mean_norm: bool = False):
        super().__init__(sample_rate, round(self.WINDOW_SECONDS * sample_rate), sample_rate // 100, mean_norm)
        opensmile = import_opensmile(type(self).__name__)
        self.analysis_dBFS = checked_analysis_level(type(self).__name__, analysis_dBFS)
        self.append_level = bool(append_level)
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.feature_set],
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        descriptors = list(self.smile.feature_names)
        self.voiced_only = np.array([name.endswith("nz") for name in descriptors])
        self.pitch_index = next(i for i, name in enumerate(descriptors) if name.startswith("F0"))
        self.feature_names: List[str] = descriptors + ["voiced"] + ["level_dBFS"] * self.append_level
        self.feature_dim = len(self.feature_names)
        self.min_samples = math.ceil(MIN_SECONDS * sample_rate)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return 1 + (lengths.clamp_min(self.min_samples) - self.window) // self.hop

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames = int(self.frame_lengths(torch.tensor([waveforms.shape[1]]))[0])
        features = torch.zeros(waveforms.shape[0], frames, self.feature_dim, device=waveforms.device)
        if waveforms.device.type == "meta":  # shape inference: there are no samples to analyse
            return features
        clips = waveforms.detach().float().cpu().numpy()
        for row, (clip, length) in enumerate(zip(clips, lengths.tolist())):
            contours = torch.from_numpy(self.contours(clip[:length]))[:frames]
            features[row, :contours.shape[0]] = contours.to(waveforms.device)
        return features

    def contours(self, clip: np.ndarray) -> np.ndarray:
        """One clip's valid samples (samples,) -> (frames, feature_dim) float32, all finite."""
        clip, level = analysis_copy(clip, self.analysis_dBFS, self.min_samples)
        values = np.asarray(analyse(self, clip), dtype=np.float32)[0].T
        values = np.where(np.isfinite(values), values, np.float32(0.0))
        voiced = values[:, self.pitch_index] > 0
        if voiced.any():
            values[np.ix_(~voiced, self.voiced_only)] = np.median(values[voiced][:, self.voiced_only], axis=0)
        else:
            values[:, self.voiced_only] = 0.0
        columns = [values, voiced[:, None].astype(np.float32)]
        if self.append_level:
            columns.append(np.full((values.shape[0], 1), level, dtype=np.float32))
        return np.concatenate(columns, axis=1)


@register_featurizer
class eGeMAPS_LLD(OpenSmileContours):
    """eGeMAPSv02's 25 low-level descriptors every 10 ms (+ voiced), for frame-level models."""

    feature_set = "eGeMAPSv02"

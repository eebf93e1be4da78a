"""openSMILE functionals, the field-standard paralinguistic feature sets, as clip-level featurizers.

  eGeMAPS   eGeMAPSv02 functionals, 88 values: the extended Geneva Minimalistic Acoustic Parameter
            Set (Eyben et al. 2016, IEEE Trans. Affective Computing 7(2)), the common baseline of
            emotion and paralinguistics papers: pitch, jitter, shimmer, loudness, HNR, formants,
            spectral slope, MFCC 1-4, rate of loudness peaks and voiced segment lengths.
  ComParE   ComParE_2016 functionals, 6373 values: the brute-force set of the Interspeech
            Computational Paralinguistics Challenges (Schuller et al. 2016).

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

Two cases where openSMILE gives no number are handled here:
  - a clip shorter than 60 ms (openSMILE's longest analysis window) makes openSMILE return NaN for
    every value, so such a clip is padded with silence to 60 ms first;
  - any other non-finite value is replaced by the scaler's mean (the training average, 0 after
    standardisation; 0 before a scaler is fitted), so that one odd value cannot poison a batch.
"""
import math
from typing import List, Optional

import numpy as np
import torch

from mser.audio import normalize_db, rms_dbfs
from mser.errors import ConfigError
from mser.features.base import register_featurizer
from mser.features.clip import ClipFeaturizer
from mser.features.prosody import F0_MAX_HZ, F0_MIN_HZ, VOICING_THRESHOLD, PitchTracker, pitch_level

INSTALL_HINT = 'pip install "mser[opensmile]"'
MIN_SECONDS = 0.060  # shorter segments come back from openSMILE as NaN in every value
LEVEL_FLOOR_DBFS = -100.0   # the level of digital silence (16-bit audio's quietest step is -96 dBFS)
SEMITONES_27_5_HZ = 12 * math.log2(100 / 27.5)   # 100 Hz in semitones re 27.5 Hz (eGeMAPS' F0 unit)


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
    27.5 Hz; the scaler's mean for a clip without voiced frames), last.
    """

    feature_set: str       # an opensmile.FeatureSet member name
    extra = "opensmile"    # the pip extra (and module) this featurizer needs

    def __init__(self, sample_rate: int = 16000, scaler_path: str = "", analysis_dBFS: Optional[float] = None,
                 append_level: bool = False, append_pitch_level: bool = False):
        super().__init__(sample_rate)
        opensmile = import_opensmile(type(self).__name__)
        if analysis_dBFS is not None and not -80.0 <= float(analysis_dBFS) <= 0.0:
            raise ConfigError(f"{type(self).__name__}: analysis_dBFS must lie in [-80, 0] dBFS, got {analysis_dBFS!r}")
        self.analysis_dBFS = None if analysis_dBFS is None else float(analysis_dBFS)
        self.append_level = bool(append_level)
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.feature_set],
                                     feature_level=opensmile.FeatureLevel.Functionals)
        # FbankProsody's default tracker, 10 ms hop
        self.pitch_tracker = (PitchTracker(sample_rate, F0_MIN_HZ, F0_MAX_HZ, VOICING_THRESHOLD, sample_rate // 100)
                              if append_pitch_level else None)
        self.feature_names: List[str] = (list(self.smile.feature_names) + ["level_dBFS"] * self.append_level
                                         + ["pitch_level_st"] * bool(append_pitch_level))
        self.feature_dim = len(self.feature_names)
        self.min_samples = math.ceil(MIN_SECONDS * sample_rate)
        self.init_scaler(scaler_path)

    def extract(self, waveforms: torch.Tensor, lengths: torch.Tensor = None) -> torch.Tensor:
        """Raw functionals. waveforms: (batch, samples), lengths: (batch,) -> (batch, feature_dim)."""
        if waveforms.device.type == "meta":  # shape inference: there are no samples to analyse
            return torch.zeros(waveforms.shape[0], self.feature_dim, device=waveforms.device)
        lengths = self.full_lengths(waveforms, lengths).tolist()
        clips = waveforms.detach().float().cpu().numpy()
        rows = [self.functionals(clip[:length]) for clip, length in zip(clips, lengths)]
        raw = torch.from_numpy(np.stack(rows)).to(waveforms.device)
        return torch.where(torch.isfinite(raw), raw, self.scaler_mean.expand_as(raw))

    def functionals(self, clip: np.ndarray) -> np.ndarray:
        """One clip's valid samples (samples,) -> (feature_dim,) float32, possibly non-finite."""
        level = max(LEVEL_FLOOR_DBFS, rms_dbfs(clip))
        if self.analysis_dBFS is not None:
            clip = normalize_db(clip, self.analysis_dBFS)
        if clip.shape[0] < self.min_samples:
            clip = np.pad(clip, (0, self.min_samples - clip.shape[0]))
        values = np.asarray(self.smile(np.ascontiguousarray(clip, dtype=np.float32), self.sample_rate),
                            dtype=np.float32).reshape(-1)
        if self.append_level:
            values = np.append(values, np.float32(level))
        if self.pitch_tracker is not None:
            samples = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))
            with torch.no_grad():
                octaves = pitch_level(self.pitch_tracker, samples)
            values = np.append(values, np.float32(12 * octaves + SEMITONES_27_5_HZ))
        return values.reshape(self.feature_dim)


@register_featurizer
class eGeMAPS(OpenSmileFunctionals):  # the name every paper uses
    """eGeMAPSv02 functionals (88 values), the standard paralinguistic baseline."""

    feature_set = "eGeMAPSv02"


@register_featurizer
class ComParE(OpenSmileFunctionals):
    """ComParE_2016 functionals (6373 values)."""

    feature_set = "ComParE_2016"

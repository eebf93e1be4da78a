"""Log-mel filterbank frames with per-frame prosody contours appended: pitch, voicing, loudness.

Emotion lives largely in prosody: pitch level and range, loudness and speaking rate. A network can
learn those from log-mel frames, but it has to find the harmonics first; this featurizer hands it
the contours directly. Every 10 ms Fbank frame gets these extra values (in this order):

  log_f0        F0 in octaves re 100 Hz (1.0 = 200 Hz) on voiced frames; on unvoiced frames the
                clip's pitch level (median over its voiced frames), so the contour has no jumps to 0
  log_f0_rel    (pitch_norm: both) log_f0 minus the clip's pitch level: the contour
                relative to the speaker's own level in this clip
  voiced        1.0 on voiced frames, else 0.0
  voicing       strength of the autocorrelation peak (about 0 for noise, 1 for a clean periodic
                frame) on frames within 30 dB of the clip's loud level, else 0.0
  energy        frame RMS level in bels re full scale (dBFS / 10: -3.0 is -30 dBFS)
  delta_f0      (deltas) slope of log_f0 in octaves per 100 ms, between voiced frames only
  delta_energy  (deltas) slope of energy in bels per 100 ms

Pitch comes from CustomFeatures' batched normalised-autocorrelation tracker (40 ms Hann windows,
Boersma 1993), on windows centred on the Fbank frames, so the two streams stay aligned frame by
frame. A frame is voiced when its autocorrelation peak exceeds `voicing_threshold` and its level is
within 30 dB of the clip's loud level (the 95th percentile of its frame levels).
`pitch_tracker: crepe` takes F0 and voicing strength from the CREPE network instead
(mser/features/crepe.py, pip install "mser[crepe]"): 2-4 times fewer gross errors in noise, about
300 times slower on a CPU (tools/pitch_benchmark.py); for a GPU or with the feature cache.

Normalisation, each per clip over its valid frames only (the padding never counts):
  mean_norm        every output channel centred (as for every frame featurizer)
  mel_mean_norm    the log-mel channels only: removes recording level and spectral tilt, while
                   the prosody channels keep what `pitch_norm` / `energy_norm` leave in them
  pitch_norm       'none': absolute log_f0; 'mean': log_f0 minus the clip's pitch level
                   (the median over voiced frames): the speaker's level is gone, and with it
                   the emotion's shift of level;
                   'both': the absolute and the relative channel
  energy_norm      'none': absolute level (loudness is an emotion cue when recordings are
                   comparable); 'max': level relative to the clip's loud level (p95)
`use_fbank: false` gives the prosody channels alone (for ablations and tiny models).
"""
import math
from typing import List

import torch
from torch import nn

from mser.errors import ConfigError
from mser.features.base import FrameFeaturizer, mask_frames, register_featurizer, subtract_valid_mean
from mser.features.custom import POWER_FLOOR, VOICED_RANGE_DB, CustomFeatures, masked_quantiles
from mser.features.fbank import Fbank

PITCH_NORMS = ("none", "mean", "both")
ENERGY_NORMS = ("none", "max")
LOUD_QUANTILE = 0.95
DELTA_SPAN = 0.1  # seconds: deltas are expressed per 100 ms
PITCH_TRACKERS = ("autocorr", "crepe")
# the default tracker's search range (Hz) and voicing decision (autocorrelation peak strength)
F0_MIN_HZ, F0_MAX_HZ, VOICING_THRESHOLD = 60.0, 600.0, 0.45


@register_featurizer
class FbankProsody(FrameFeaturizer):
    """Kaldi Fbank frames (optionally) followed by pitch, voicing and energy contours.

    Output: (batch, frames, num_mel_bins * use_fbank + number of prosody channels), with the
    frames and frame lengths of Fbank with the same arguments. `fbank_args` are passed to Fbank
    (frame_length, frame_shift, window_type, snip_edges, low_freq, ...).
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 80, use_fbank: bool = True,
                 mean_norm: bool = False, mel_mean_norm: bool = False, pitch_norm: str = "none",
                 energy_norm: str = "none", deltas: bool = True, f0_min: float = F0_MIN_HZ,
                 f0_max: float = F0_MAX_HZ, voicing_threshold: float = VOICING_THRESHOLD,
                 pitch_tracker: str = "autocorr", **fbank_args):
        if pitch_norm not in PITCH_NORMS:
            raise ConfigError(f"FbankProsody: pitch_norm must be one of {', '.join(PITCH_NORMS)}, got {pitch_norm!r}")
        if energy_norm not in ENERGY_NORMS:
            raise ConfigError(f"FbankProsody: energy_norm must be one of {', '.join(ENERGY_NORMS)}, "
                              f"got {energy_norm!r}")
        if "mean_norm" in fbank_args or "use_energy" in fbank_args:
            raise ConfigError("FbankProsody: use mean_norm / mel_mean_norm; the energy channel is always there")
        fbank = Fbank(sample_rate, num_mel_bins=num_mel_bins, **fbank_args)
        super().__init__(sample_rate, fbank.window, fbank.hop, mean_norm)
        self.fbank = fbank
        self.use_fbank, self.mel_mean_norm = bool(use_fbank), bool(mel_mean_norm)
        self.pitch_norm, self.energy_norm, self.deltas = pitch_norm, energy_norm, bool(deltas)
        self.tracker = build_tracker(pitch_tracker, sample_rate, f0_min, f0_max, voicing_threshold, fbank.hop)
        # Pitch windows centred on the Fbank frames: Fbank frame i starts at i * hop (snip_edges)
        # or i * hop - (window // 2 - hop // 2) (Kaldi's snip_edges=False).
        first_start = 0 if fbank.snip_edges else -(fbank.window // 2 - fbank.hop // 2)
        self.left_pad = self.tracker.window // 2 - (first_start + fbank.window // 2)
        self.prosody_names = self.channel_names()
        self.feature_dim = num_mel_bins * self.use_fbank + len(self.prosody_names)

    def channel_names(self) -> List[str]:
        names = ["log_f0"] + (["log_f0_rel"] if self.pitch_norm == "both" else [])
        names += ["voiced", "voicing", "energy"]
        return names + (["delta_f0", "delta_energy"] if self.deltas else [])

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.fbank.frame_lengths(lengths)

    def num_frames(self, samples: int) -> int:
        """Fbank's frame count for a padded batch of `samples` (>= window) samples."""
        if self.fbank.snip_edges:
            return 1 + (samples - self.window) // self.hop
        return max(1, (samples + self.hop // 2) // self.hop)

    def compute(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waveforms: (batch, samples >= window), zero past `lengths` -> (batch, frames, feature_dim)."""
        frames = self.num_frames(waveforms.shape[1])
        counts = self.frame_lengths(lengths).clamp(1, frames)
        mask = torch.arange(frames, device=waveforms.device)[None, :] < counts[:, None]
        prosody = self.prosody(waveforms, mask)
        if not self.use_fbank:
            return prosody
        mel = self.fbank.compute(waveforms, lengths)
        if self.mel_mean_norm:
            mel = subtract_valid_mean(mel, counts)
        return torch.cat([mel, prosody], dim=2)

    def prosody(self, waveforms: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, samples), valid-frame mask (batch, frames) -> (batch, frames, prosody channels)."""
        frames = mask.shape[1]
        needed = (frames - 1) * self.hop + self.tracker.window
        # The pitch windows' centres sit on the Fbank frames' centres: pad (or skip) the start.
        left, start = max(self.left_pad, 0), max(-self.left_pad, 0)
        right = max(0, start + needed - left - waveforms.shape[1])
        padded = nn.functional.pad(waveforms, (left, right))[:, start:start + needed]
        log_f0, strength, level_db = self.tracker(padded)
        if self.fbank.noise_floor_db is not None:  # the same soft floor as the log-mel bins
            level_db = add_levels_db(level_db, self.fbank.noise_floor_db)

        loud, audible, voiced = voiced_frames(strength, level_db, mask, self.tracker.voicing_threshold)
        level_f0 = masked_quantiles(log_f0, voiced, (0.5,))   # the clip's pitch level (pitch_level)
        filled = torch.where(voiced, log_f0, level_f0)
        relative = filled - level_f0
        energy = (level_db - loud if self.energy_norm == "max" else level_db) / 10.0

        channels = [relative if self.pitch_norm == "mean" else filled]
        if self.pitch_norm == "both":
            channels.append(relative)
        voicing = torch.where(audible, strength.clamp(0.0, 1.0), torch.zeros_like(strength))
        channels += [voiced.to(log_f0.dtype), voicing, energy]
        if self.deltas:
            scale = DELTA_SPAN * self.sample_rate / self.hop
            channels += [central_difference(filled, voiced) * scale, central_difference(energy, mask) * scale]
        return mask_frames(torch.stack(channels, dim=2), mask.sum(dim=1))


def voiced_frames(strength: torch.Tensor, level_db: torch.Tensor, mask: torch.Tensor, voicing_threshold: float):
    """(loud level (batch, 1), audible frames, voiced frames), each mask (batch, frames): a frame is
    audible within VOICED_RANGE_DB of the clip's loud level (its LOUD_QUANTILE frame level), and
    voiced when also periodic enough (autocorrelation peak above `voicing_threshold`)."""
    loud = masked_quantiles(level_db, mask, (LOUD_QUANTILE,))
    audible = mask & (level_db > loud - VOICED_RANGE_DB)
    return loud, audible, audible & (strength > voicing_threshold)


def pitch_level(tracker: nn.Module, clip: torch.Tensor) -> float:
    """One clip's pitch level (samples,) -> the median log F0 in octaves re 100 Hz over its voiced
    frames, as FbankProsody fills unvoiced frames with: robust to a tracker's octave errors on single
    frames. NaN for a clip without a voiced frame or shorter than the tracker's window."""
    if clip.shape[0] < tracker.window:
        return math.nan
    log_f0, strength, level_db = tracker(clip[None])
    every_frame = torch.ones_like(strength, dtype=torch.bool)
    _, _, voiced = voiced_frames(strength, level_db, every_frame, tracker.voicing_threshold)
    if not voiced.any():
        return math.nan
    return float(masked_quantiles(log_f0, voiced, (0.5,))[0, 0])


def add_levels_db(level_db: torch.Tensor, floor_db: float) -> torch.Tensor:
    """The level in dB of the sum of two uncorrelated signals at `level_db` and `floor_db`."""
    to_nepers = math.log(10) / 10
    floor = torch.full_like(level_db, floor_db * to_nepers)
    return torch.logaddexp(level_db * to_nepers, floor) / to_nepers


def central_difference(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-frame slope (x[t+1] - x[t-1]) / 2 where both neighbours are valid, a one-sided difference
    where only one is, else 0. x, mask: (batch, frames)."""
    padded = nn.functional.pad(x, (1, 1))
    valid = nn.functional.pad(mask, (1, 1), value=False)
    before, after = valid[:, :-2] & mask, valid[:, 2:] & mask
    forward = torch.where(after, padded[:, 2:] - x, torch.zeros_like(x))
    backward = torch.where(before, x - padded[:, :-2], torch.zeros_like(x))
    both = before & after
    return torch.where(both, 0.5 * (forward + backward), forward + backward)


class PitchTracker(nn.Module):
    """CustomFeatures' autocorrelation pitch tracker on 40 ms windows every `hop` samples.

    forward(waveforms (batch, samples)) -> log F0 in octaves re 100 Hz, autocorrelation peak
    strength and frame level in dBFS, each (batch, frames) with frames = 1 + (samples - window) // hop.
    """

    def __init__(self, sample_rate: int, f0_min: float, f0_max: float, voicing_threshold: float, hop: int):
        super().__init__()
        if not 0.0 < voicing_threshold < 1.0:
            raise ConfigError(f"FbankProsody: voicing_threshold must be in (0, 1), got {voicing_threshold}")
        custom = CustomFeatures(sample_rate, f0_min=f0_min, f0_max=f0_max, voicing_threshold=voicing_threshold)
        custom.hop = hop
        # Only the tracker's buffers are kept (the scaler and the spectral filters are not needed).
        self.window, self.hop, self.voicing_threshold = custom.window, hop, voicing_threshold
        self.sample_rate, self.lag_min, self.lag_max, self.fft_size = (
            sample_rate, custom.lag_min, custom.lag_max, custom.fft_size)
        self.register_buffer("window_function", custom.window_function, persistent=False)
        self.register_buffer("window_autocorr", custom.window_autocorr, persistent=False)

    # CustomFeatures' methods read exactly these attributes, so they run on this module unchanged.
    power_spectrum = CustomFeatures.power_spectrum
    frame_mean = CustomFeatures.frame_mean
    _semitone_pitch = CustomFeatures.pitch

    def forward(self, waveforms: torch.Tensor):
        power = self.power_spectrum(waveforms)
        semitones, strength = self._semitone_pitch(power)
        level_db = 10 * torch.log10(self.frame_mean(waveforms.square()).clamp_min(POWER_FLOOR))
        return semitones / 12.0, strength, level_db


def build_tracker(name: str, sample_rate: int, f0_min: float, f0_max: float, voicing_threshold: float,
                  hop: int) -> nn.Module:
    """The pitch tracker `pitch_tracker` names; every one has PitchTracker's forward and frames."""
    if name not in PITCH_TRACKERS:
        raise ConfigError(f"FbankProsody: pitch_tracker must be one of {', '.join(PITCH_TRACKERS)}, got {name!r}")
    autocorr = PitchTracker(sample_rate, f0_min, f0_max, voicing_threshold, hop)
    if name == "crepe":
        from mser.features.crepe import CrepeTracker
        return CrepeTracker(autocorr, f0_min, f0_max)
    return autocorr

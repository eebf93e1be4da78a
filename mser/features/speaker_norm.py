"""Speaker normalisation: every feature frame of a clip standardised with its speaker's statistics.

Per-speaker standardisation removes much of what makes voices differ (pitch range, vocal tract,
level, channel) and leaves more of what an emotion changes; it is a classic, well-measured gain for
speaker-independent emotion recognition (Sethu, Ambikairajah & Epps 2007; Busso, Mariooryad, Metallinou
& Narayanan 2011, iterative feature normalisation).

The statistics are unsupervised: the mean and standard deviation per feature dimension over all
valid frames of all of a speaker's clips in one list, never the labels. Training speakers come from
the training list, validation speakers from theirs, test speakers from the test list, and at
inference a speaker's (or a session's) clips: all of them when the whole session is known before
the first answer (files: MSERPredictor.predict_batch, predict_long), the clips so far in a live
stream (running statistics). A speaker heard in few clips gets statistics shrunk towards the
training set's global ones: with n clips and k = prior_clips,

    mean = (n * mean_speaker + k * mean_global) / (n + k)
    var  = (n * var_speaker  + k * var_global)  / (n + k)

so one clip already normalises (half its own statistics, half the global ones at k = n = 1), and a
clip without a speaker uses the global statistics alone. Clip-level features (one frame per clip)
work the same way: the frames of a speaker are then its clips.
"""
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from mser.errors import ConfigError, DataError

# A speaker's variance is floored at this share of the global variance, so that a dimension that
# barely moves for one speaker (e.g. one short clip) is not blown up into noise.
VARIANCE_FLOOR = 1e-4
TINY = 1e-10


class SpeakerStats:
    """Running sums over the valid frames of one speaker's clips (float64, on the CPU)."""

    def __init__(self, feature_dim: int):
        self.clips, self.frames = 0, 0
        self.sum = torch.zeros(feature_dim, dtype=torch.float64)
        self.sum_sq = torch.zeros(feature_dim, dtype=torch.float64)
        # SpeakerNormalizer.statistics of these sums, with what else they were computed from
        self.memo: Optional[Tuple[tuple, Tuple[torch.Tensor, torch.Tensor]]] = None

    def add(self, frames: torch.Tensor) -> None:
        """Count one clip. frames: (num_frames, feature_dim), its valid frames only."""
        if frames.shape[0] == 0:
            return
        frames = frames.detach().float()
        self.memo = None
        self.sum += frames.sum(dim=0).double().cpu()
        self.sum_sq += frames.square().sum(dim=0).double().cpu()
        self.frames += frames.shape[0]
        self.clips += 1

    def add_batch(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> None:
        """Count every clip of a padded batch. features: (batch, frames, feature_dim);
        frame_lengths: (batch,) valid frames per clip."""
        for frames in valid_frames(features, frame_lengths):
            self.add(frames)

    def mean_var(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance), each (feature_dim,) float64; the variance is that of the frames (1/N)."""
        mean = self.sum / max(self.frames, 1)
        return mean, (self.sum_sq / max(self.frames, 1) - mean.square()).clamp_min(0.0)


class SpeakerNormalizer(nn.Module):
    """Global statistics of the training features (buffers `mean`, `var`, saved with a checkpoint)
    and a table of per-speaker running statistics (`speakers`, not saved: each list, recording or
    session brings its own).

    feature_dim: size of the last axis of the features
    prior_clips: k, how many clips' worth of weight the global statistics carry (0: none)
    """

    def __init__(self, feature_dim: int, prior_clips: float = 2.0):
        super().__init__()
        if prior_clips < 0:
            raise ConfigError(f"preprocess_conf.speaker_norm.prior_clips must be 0 or more, got {prior_clips}")
        self.feature_dim, self.prior_clips = feature_dim, float(prior_clips)
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("var", torch.ones(feature_dim))
        self.speakers: Dict[str, SpeakerStats] = {}

    # ---- statistics --------------------------------------------------------------------------

    def fit(self, clips: Iterable[Tuple[str, torch.Tensor]]) -> Dict[str, SpeakerStats]:
        """Global statistics from every clip of the training list, and that list's speaker table
        (kept as `speakers`, and returned). clips: (speaker or "", (frames, feature_dim)) pairs."""
        everyone = SpeakerStats(self.feature_dim)
        self.speakers = {}
        for speaker, frames in clips:
            everyone.add(frames)
            if speaker:
                self.speakers.setdefault(speaker, SpeakerStats(self.feature_dim)).add(frames)
        if not everyone.frames:
            raise DataError("no usable clip to fit the speaker normalisation statistics on")
        mean, var = everyone.mean_var()
        self.mean.copy_(mean.float())
        self.var.copy_(var.float())
        return self.speakers

    def speaker_table(self, clips: Iterable[Tuple[str, torch.Tensor]]) -> Dict[str, SpeakerStats]:
        """Statistics of the speakers of another list (validation, test); the global ones stay."""
        table: Dict[str, SpeakerStats] = {}
        for speaker, frames in clips:
            if speaker:
                table.setdefault(speaker, SpeakerStats(self.feature_dim)).add(frames)
        return table

    def update(self, speaker: str, frames: torch.Tensor) -> SpeakerStats:
        """Add one clip's valid frames (frames, feature_dim) to `speaker`'s running statistics."""
        stats = self.speakers.setdefault(speaker, SpeakerStats(self.feature_dim))
        stats.add(frames)
        return stats

    def reset_speakers(self) -> None:
        """Forget every speaker's running statistics (the global ones stay)."""
        self.speakers = {}

    def statistics(self, stats: Optional[SpeakerStats] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each (feature_dim,) on the buffers' device: a speaker's statistics shrunk
        towards the global ones, or the global ones alone when `stats` is None or empty."""
        if stats is None or self.mean.is_inference() or self.var.is_inference():
            # (buffers made under torch.inference_mode count no in-place changes: nothing is kept)
            return self.shrunk_statistics(stats)
        # Kept with the speaker's sums until they or the global statistics change: training asks
        # for the same speakers' statistics in every batch (6,373 dimensions for ComParE).
        inputs = (self.prior_clips, self.mean.device, self.mean.data_ptr(), self.mean._version,
                  self.var.data_ptr(), self.var._version)
        if stats.memo is None or stats.memo[0] != inputs:
            stats.memo = (inputs, self.shrunk_statistics(stats))
        return stats.memo[1]

    def shrunk_statistics(self, stats: Optional[SpeakerStats]) -> Tuple[torch.Tensor, torch.Tensor]:
        global_mean, global_var = self.mean.double().cpu(), self.var.double().cpu()
        n, k = (stats.clips if stats is not None else 0), self.prior_clips
        if n == 0:
            mean, var = global_mean, global_var
        else:
            speaker_mean, speaker_var = stats.mean_var()
            mean = (n * speaker_mean + k * global_mean) / (n + k)
            var = (n * speaker_var + k * global_var) / (n + k)
        floor = VARIANCE_FLOOR * global_var + TINY
        std = torch.maximum(var, floor).sqrt()
        return mean.float().to(self.mean.device), std.float().to(self.mean.device)

    # ---- normalising -------------------------------------------------------------------------

    def normalize(self, features: torch.Tensor, frame_lengths: torch.Tensor, speakers: Sequence[str],
                  table: Optional[Mapping[str, SpeakerStats]] = None) -> torch.Tensor:
        """Standardise each clip with its speaker's statistics from `table` (default: `speakers`);
        a clip whose speaker is "" or not in the table gets the global statistics.

        features: (batch, frames, feature_dim); frame_lengths: (batch,) valid frames per clip;
        speakers: one name per clip. Returns (batch, frames, feature_dim), padding frames zero.
        """
        table = self.speakers if table is None else table
        cache: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        for speaker in speakers:
            if speaker not in cache:
                cache[speaker] = self.statistics(table.get(speaker) if speaker else None)
        means = torch.stack([cache[speaker][0] for speaker in speakers]).to(features.device)
        stds = torch.stack([cache[speaker][1] for speaker in speakers]).to(features.device)
        return self.standardize(features, frame_lengths, means, stds)

    def normalize_running(self, features: torch.Tensor, frame_lengths: torch.Tensor,
                          stats: SpeakerStats) -> torch.Tensor:
        """Clips of one speaker (or one recording, one session) in the order they were heard: each
        is added to `stats`, then standardised with the statistics so far, itself included.
        Shapes as in `normalize`."""
        means, stds = [], []
        for row in range(features.shape[0]):
            stats.add(features[row, :int(frame_lengths[row])])
            mean, std = self.statistics(stats)
            means.append(mean)
            stds.append(std)
        return self.standardize(features, frame_lengths, torch.stack(means).to(features.device),
                                torch.stack(stds).to(features.device))

    def normalize_session(self, features: torch.Tensor, frame_lengths: torch.Tensor,
                          stats: SpeakerStats) -> torch.Tensor:
        """Standardise every clip with the same statistics: `stats` as they are now, shrunk towards
        the global ones. Whole-session normalisation adds every clip of the session to `stats`
        (SpeakerStats.add_batch) before normalising any. Shapes as in `normalize`."""
        mean, std = self.statistics(stats)
        batch = features.shape[0]
        return self.standardize(features, frame_lengths, mean.expand(batch, -1).to(features.device),
                                std.expand(batch, -1).to(features.device))

    @staticmethod
    def standardize(features: torch.Tensor, frame_lengths: torch.Tensor, means: torch.Tensor,
                    stds: torch.Tensor) -> torch.Tensor:
        """(features - mean) / std per clip; means, stds: (batch, feature_dim)."""
        frames = torch.arange(features.shape[1], device=features.device)
        valid = (frames[None, :] < frame_lengths.to(features.device)[:, None]).unsqueeze(-1)
        normalized = (features.float() - means[:, None, :]) / stds[:, None, :]
        return torch.where(valid, normalized, torch.zeros((), device=features.device)).to(features.dtype)


def valid_frames(features: torch.Tensor, frame_lengths: torch.Tensor) -> Iterable[torch.Tensor]:
    """Each clip's valid frames (frames_i, feature_dim) of a padded (batch, frames, feature_dim)."""
    for row, length in zip(features, frame_lengths.tolist()):
        yield row[:int(length)]

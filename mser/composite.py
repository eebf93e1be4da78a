"""Predictors whose every answer combines several predictors: an ensemble's members
(mser.ensemble.EnsemblePredictor) and a model's test-time views (mser.views.ViewPredictor).

Each part is a whole MSERPredictor that hears its own version of the clips (`part_waveforms`: a
member levels its copy, a view passes it through a telephone line) and keeps its own speaker
statistics, so `speaker=`, `predict_long` and whole or running statistics work as for one model;
`combine_parts` turns the parts' (clips, classes) probabilities into one answer.
"""
import abc
import contextlib
from typing import Any, List, Optional, Sequence

import numpy as np

from mser.predictor import MSERPredictor


class CompositePredictor(MSERPredictor, metaclass=abc.ABCMeta):
    """The shared plumbing; a subclass sets `self.parts` and defines `combine_parts`."""

    parts: List[MSERPredictor]

    def part_waveforms(self, index: int, waveforms: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        """Loaded clips as part `index` hears them (default: as they are)."""
        return waveforms

    def shared_work(self):
        """A context within which the parts may share work on the same clips (default: none)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def combine_parts(self, probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """The parts' (clips, num_class) probabilities -> (clips, num_class)."""

    def reset_speakers(self) -> None:
        for part in self.parts:
            part.reset_speakers()

    def speaker_stats(self, speaker: Optional[str]):
        """One running-statistics object per part (None for no speaker)."""
        if speaker is None:
            return None
        return [part.speaker_stats(speaker) for part in self.parts]

    def new_session(self):
        return [part.new_session() for part in self.parts]

    def session_probabilities(self, waveforms: Sequence[np.ndarray], stats) -> np.ndarray:
        with self.shared_work():
            return self.combine_parts([part.session_probabilities(self.part_waveforms(i, waveforms),
                                                                  None if stats is None else stats[i])
                                       for i, part in enumerate(self.parts)])

    def whole_session(self, stats) -> "CompositeSession":
        """One whole-statistics session per part, each with its own statistics (`stats[i]`)."""
        return CompositeSession(self, [part.whole_session(None if stats is None else stats[i])
                                       for i, part in enumerate(self.parts)])


class CompositeSession:
    """A whole-statistics session per part (mser.predictor.WholeSession, or a composite's own): each
    batch joins every part's session as that part hears it; the probabilities are combined at the end."""

    def __init__(self, predictor: CompositePredictor, sessions: Sequence[Any]):
        self.predictor, self.sessions = predictor, list(sessions)

    def add(self, waveforms: Sequence[np.ndarray]) -> None:
        """One batch of loaded clips, (samples,) float32 each."""
        with self.predictor.shared_work():
            for index, session in enumerate(self.sessions):
                session.add(self.predictor.part_waveforms(index, waveforms))

    def probabilities(self) -> np.ndarray:
        """(clips added, num_class) float32: the parts' probabilities combined."""
        return self.predictor.combine_parts([session.probabilities() for session in self.sessions])

"""Decisions balanced per speaker: each speaker's clips shared out evenly over the emotions.

Acted corpora (RAVDESS, CREMA-D, TESS, EmoDB, our demo corpus) have every speaker perform every
emotion about equally often. A model that hears a new voice as a little higher or tenser than its
training voices tends to give all of that voice's clips one emotion too many; speaker normalisation
of the features removes part of that, this removes what is left at the output. The class
probabilities of one speaker's clips, a (clips, classes) matrix, are rescaled per class, and each
row renormalised, until every class carries the same total (Sinkhorn-Knopp iteration; the
per-class scales are the same for all of the speaker's clips, so the ranking of clips within a class
never changes). Like the prior correction of Saerens, Latinne & Decaestecker (2002) with the
speaker's prior taken as uniform rather than estimated.

The assumption is the list's, not the model's: use it only where every speaker's clips do cover the
emotions about evenly (an evaluation list of an acted corpus), never for a live session or a
recording that is mostly one emotion. Speakers with fewer than MIN_CLIPS_PER_CLASS clips per
class, and clips without a speaker, keep their probabilities.
"""
from typing import Dict, Optional, Sequence

import numpy as np

MIN_CLIPS_PER_CLASS = 2
MAX_ITERATIONS = 1000
TOLERANCE = 1e-6    # largest relative gap between a class's total and its target
FLOOR = 1e-12       # a class no clip gives any probability still gets a share


def clips_needed(num_classes: int) -> int:
    """How many clips a speaker needs to be balanced."""
    return MIN_CLIPS_PER_CLASS * num_classes


def balance_speaker(probabilities: np.ndarray) -> np.ndarray:
    """(clips, classes) probabilities of one speaker -> the same shape, rows summing to 1 and every
    column summing to clips / classes."""
    balanced = np.asarray(probabilities, dtype=np.float64) + FLOOR
    balanced /= balanced.sum(axis=1, keepdims=True)
    target = balanced.shape[0] / balanced.shape[1]
    for _ in range(MAX_ITERATIONS):
        balanced *= target / balanced.sum(axis=0, keepdims=True)
        balanced /= balanced.sum(axis=1, keepdims=True)
        if np.abs(balanced.sum(axis=0) / target - 1.0).max() < TOLERANCE:
            break
    return balanced


def speaker_rows(speakers: Sequence[Optional[str]]) -> Dict[str, np.ndarray]:
    """{speaker: row indices} of the clips that name one."""
    rows: Dict[str, list] = {}
    for row, speaker in enumerate(speakers):
        if speaker:
            rows.setdefault(speaker, []).append(row)
    return {speaker: np.asarray(indices) for speaker, indices in rows.items()}


def balance_per_speaker(probabilities: np.ndarray, speakers: Sequence[Optional[str]]) -> np.ndarray:
    """(clips, classes) probabilities with every speaker of enough clips balanced (module doc);
    the other rows as they were. `speakers` names each row's speaker ("" or None: unknown)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(speakers) != probabilities.shape[0]:
        raise ValueError(f"{len(speakers)} speakers for {probabilities.shape[0]} rows of probabilities")
    balanced = probabilities.copy()
    for rows in speaker_rows(speakers).values():
        if len(rows) >= clips_needed(probabilities.shape[1]):
            balanced[rows] = balance_speaker(probabilities[rows])
    return balanced


def balanced_speaker_count(speakers: Sequence[Optional[str]], num_classes: int) -> int:
    """How many speakers have enough clips to be balanced."""
    return sum(len(rows) >= clips_needed(num_classes) for rows in speaker_rows(speakers).values())

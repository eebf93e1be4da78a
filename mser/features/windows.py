"""Whether the clips a featurizer sees have durations of their own.

A clip's duration, relative to the speaker's other clips, tells how fast it was spoken (the eGeMAPS
featurizer's `append_duration`). The windows that a stream is cut into, a live microphone's or a long
recording's fixed windows, all last as long as the window does: their duration says nothing about the
speech, and against the durations of the training clips it would read as slow or fast speech
throughout. Inside `fixed_length_windows()` a featurizer gives such a value as unknown instead, which
the clip-level featurizers replace by the training average (a neutral value after standardisation).

The state is per thread, like the shared openSMILE runs (mser.features.opensmile_runs): a predictor
classifies a stream in the thread that reads it.
"""
import contextlib
import threading
from typing import Iterator

_STATE = threading.local()


@contextlib.contextmanager
def fixed_length_windows() -> Iterator[None]:
    """Featurize the clips of this block as windows cut from a stream (durations unknown)."""
    previous = getattr(_STATE, "windows", False)
    _STATE.windows = True
    try:
        yield
    finally:
        _STATE.windows = previous


def durations_known() -> bool:
    """False inside fixed_length_windows() in this thread."""
    return not getattr(_STATE, "windows", False)

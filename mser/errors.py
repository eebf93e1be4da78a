"""One exception family, so that scripts can turn any of them into a one-line message, and one
warning family for input that works but is likely to give worse answers."""
import contextlib
import sys
import warnings
from typing import Iterator, Optional, TextIO


class MSERError(Exception):
    """Base class: every error a user can cause by what they pass in (config, audio, lists, paths)."""


class ConfigError(MSERError):
    """A config file or an --overwrites value that cannot be used."""


class AudioError(MSERError):
    """Audio that cannot be decoded or is unusable (empty, truncated, non-finite, too short)."""


class DataError(MSERError):
    """A data list, label list or corpus folder that cannot be used."""


class CheckpointError(MSERError):
    """A checkpoint directory that is missing, incomplete or made for another setup."""


class MSERWarning(UserWarning):
    """Base class of mser's warnings: input that works but is likely to give worse answers."""


class BandwidthWarning(MSERWarning):
    """The input is narrower-band than the audio the model was trained on (e.g. 8 kHz telephone
    audio given to a 16 kHz model). Silence it with
    `warnings.filterwarnings("ignore", category=mser.errors.BandwidthWarning)`."""


class ClippingWarning(MSERWarning):
    """The input is clipped: a share of its samples is stuck at its peak (mser.audio.clipping_message),
    e.g. a recording with the microphone gain set too high. Silence it with
    `warnings.filterwarnings("ignore", category=mser.errors.ClippingWarning)`."""


@contextlib.contextmanager
def warnings_as_lines(stream: Optional[TextIO] = None) -> Iterator[None]:
    """Inside the block, every MSERWarning is printed as one `warning: <message>` line on `stream`
    (default: stderr), each time it is raised; other warnings are left as they are. For scripts."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, MSERWarning):
            from tqdm import tqdm   # tqdm.write keeps a progress bar on the same stream intact
            tqdm.write(f"warning: {message}", file=stream or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        previous = warnings.showwarning
        warnings.simplefilter("always", MSERWarning)
        warnings.showwarning = show
        yield

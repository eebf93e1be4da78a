"""One exception family, so that scripts can turn any of them into a one-line message."""


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

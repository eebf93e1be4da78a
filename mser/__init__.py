"""mser: speech emotion recognition — train, evaluate and run models from a YAML config.

    from mser import MSERTrainer, MSERPredictor, build_model, list_models, build_featurizer
"""
__version__ = "0.1.0"

# Names are imported on first use, so that `import mser` is quick and needs neither pyaudio nor
# the model zoo until they are asked for.
_EXPORTS = {
    "MSERTrainer": "mser.trainer",
    "MSERPredictor": "mser.predictor",
    "build_model": "mser.models",
    "list_models": "mser.models",
    "build_featurizer": "mser.features",
    "list_featurizers": "mser.features",
    "load_config": "mser.config",
    "load_audio": "mser.audio",
    "MSERError": "mser.errors",
    "AudioError": "mser.errors",
    "ConfigError": "mser.errors",
    "DataError": "mser.errors",
    "CheckpointError": "mser.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mser' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

"""One openSMILE run for both levels of a feature set, shared by two featurizers.

openSMILE computes a set's functionals from its low-level descriptors, so one run over a clip can
hand out both. When an ensemble has a functionals member (eGeMAPS) and a contours member
(eGeMAPS_LLD) that analyse the same clips the same way (feature set, sample rate, analysis level),
its training (mser.ensemble.train) and its predictor (EnsemblePredictor.shared_work) open
`shared_runs`: the first member's runs keep the other level of each clip, and the second member
takes it instead of running openSMILE again: the values are the same to the bit
(tests/test_opensmile_runs.py). The kept level goes to files in a temporary folder rather than
memory, because feature extraction runs in forked worker processes; each file is read once and
removed, and the folder goes when the context ends. A clip is matched by a digest of the samples
openSMILE analyses, so a clip that differs in any sample is analysed again. The sharing belongs to
the thread that opened the context (and the worker processes it forks), so predictors used from
several threads at once do not meet each other's runs.
"""
import contextlib
import hashlib
import os
import tempfile
import threading
from typing import Iterable, Iterator, Optional, Set, Tuple

import numpy as np

FUNCTIONALS, CONTOURS = "func", "lld"   # openSMILE's sink level names (opensmile.FeatureLevel values)
OTHER_LEVEL = {FUNCTIONALS: CONTOURS, CONTOURS: FUNCTIONALS}
AnalysisKey = Tuple[str, int, Optional[float]]   # feature set, sample rate, analysis level (dBFS)


def analysis_key(featurizer) -> Optional[AnalysisKey]:
    """What two featurizers must share to share a run; None for a featurizer that is not openSMILE's."""
    if getattr(featurizer, "smile_level", None) is None:
        return None
    return featurizer.feature_set, featurizer.sample_rate, featurizer.analysis_dBFS


def run_levels(smile, clip: np.ndarray, sample_rate: int) -> Optional[dict]:
    """Both levels of one openSMILE run over a mono float32 clip, each shaped as `smile(clip,
    sample_rate)` returns it, (1, features, frames); None when a level came back empty."""
    from opensmile.core.config import config as smile_paths

    options = smile._options()   # the package's own options, then its two-sink output in place of one
    options.pop("sinkLevel", None)
    root = smile.default_config_root
    options.update(sink=os.path.join(root, smile_paths.EXTERNAL_OUTPUT_MULTI_CONFIG),
                   sinkLevelLLD=CONTOURS, sinkLevelFunc=FUNCTIONALS,
                   source=os.path.join(root, smile_paths.EXTERNAL_INPUT_CONFIG), sampleRate=sample_rate, nBits=16)
    collected = {FUNCTIONALS: [], CONTOURS: []}
    engine = smile._smile(options=options)
    try:
        for level, sink in ((FUNCTIONALS, "extsinkfunc"), (CONTOURS, "extsinklld")):
            engine.external_sink_set_callback_ex(sink, smile._sink_callback(collected[level], [], []))
        pcm = clip.astype(np.float32, copy=True)
        pcm *= 32768   # as the package converts a signal: scaled in float32, truncated to 16 bits
        engine.external_audio_source_write_data(smile_paths.EXTERNAL_SOURCE_COMPONENT, bytes(pcm.astype(np.int16)))
        engine.external_audio_source_set_eoi(smile_paths.EXTERNAL_SOURCE_COMPONENT)
        engine.run()
    finally:
        engine.free()
    if not all(collected.values()):
        return None
    return {level: np.vstack(rows).T[None] for level, rows in collected.items()}


class SharedRuns:
    """The kept levels of the runs made for the featurizers whose analysis keys are in `keys`."""

    def __init__(self, keys: Set[AnalysisKey], folder: str):
        self.keys, self.folder = keys, folder

    def analyse(self, featurizer, clip: np.ndarray) -> np.ndarray:
        """The featurizer's level of `clip` as featurizer.smile gives it: a kept one when the other
        featurizer's run left it, else from a run of both levels whose other level is kept."""
        level = featurizer.smile_level
        digest = hashlib.blake2b(repr(analysis_key(featurizer)).encode() + clip.tobytes(), digest_size=20).hexdigest()
        kept = os.path.join(self.folder, f"{digest}.{level}.npy")
        try:
            values = np.load(kept)
        except FileNotFoundError:   # not kept, or a worker took it first for an identical clip
            values = None
        if values is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(kept)
            return values
        levels = run_levels(featurizer.smile, clip, featurizer.sample_rate)
        if levels is None:
            return featurizer.smile(clip, featurizer.sample_rate)
        other = OTHER_LEVEL[level]
        keep = os.path.join(self.folder, f"{digest}.{other}.npy")
        partial = f"{keep}.{os.getpid()}.partial"   # workers with identical clips never write one file
        with open(partial, "wb") as f:
            np.save(f, levels[other])
        os.replace(partial, keep)   # a reader sees a whole file or none
        return levels[level]


_state = threading.local()   # .shared: this thread's SharedRuns while a shared_runs context is open


def active() -> Optional[SharedRuns]:
    """The shared runs of this thread's open `shared_runs` context, or None."""
    return getattr(_state, "shared", None)


def analyse(featurizer, clip: np.ndarray) -> np.ndarray:
    """featurizer.smile(clip, rate), through a shared run when `shared_runs` pairs the featurizer."""
    shared = active()
    if shared is None or analysis_key(featurizer) not in shared.keys:
        return featurizer.smile(clip, featurizer.sample_rate)
    return shared.analyse(featurizer, clip)


def paired_keys(featurizers: Iterable) -> Set[AnalysisKey]:
    """The analysis keys that both a functionals and a contours featurizer among `featurizers` have."""
    levels = {}
    for featurizer in featurizers:
        key = analysis_key(featurizer)
        if key is not None:
            levels.setdefault(key, set()).add(featurizer.smile_level)
    return {key for key, found in levels.items() if found == {FUNCTIONALS, CONTOURS}}


@contextlib.contextmanager
def shared_runs(featurizers: Iterable) -> Iterator[Set[AnalysisKey]]:
    """Within the context, featurizers built with the paired analysis keys of `featurizers` share
    their openSMILE runs (see the module's docstring). Yields the paired keys (empty: nothing shared)."""
    keys, outer = paired_keys(featurizers), active()
    if not keys or outer is not None:   # nothing to pair, or an outer context shares already
        yield keys & outer.keys if outer is not None else set()
        return
    with tempfile.TemporaryDirectory(prefix="mser-opensmile-") as folder:
        _state.shared = SharedRuns(keys, folder)
        try:
            yield keys
        finally:
            _state.shared = None

"""Which functionals of a clip-level featurizer a recording channel moves most, for `drop_functionals`.

A functional that the training augmentation (other rooms, noise, telephone lines, codecs, clipping,
pitch-shifted talkers) scrambles from clip to clip tells a model more about the channel than about
the speech. This script builds the augmented copies a config trains on (the same cache train.py
uses: `dataset_conf.feature_cache.augmented_copies` and `--data_augment_configs`) and scores each
functional by its **stability**: the correlation, over the training clips, between its value in a
clip and in that clip's augmented copy, both standardised per speaker and session (as speaker
normalisation does, without its shrinkage towards the global statistics, which barely moves a speaker
with tens of clips; a copy of a speaker's clips is one simulated session, so what a
session shifts as a whole, such as a pitch shift or a line's constant tilt, does not count). It
uses no labels: only the training clips and the augmentation (2 copies of each when the config
asks for none).

    python tools/functional_stability.py --configs configs/egemaps.yml \
        --data_augment_configs configs/augmentation_copies.yml --threshold 0.6

prints every functional with its stability, lowest first, and the `drop_functionals` list of those
below the threshold, ready for the config's `preprocess_conf.method_args`; `--write FILE` writes
them one per line, for `drop_functionals: FILE` (a long list such as ComParE's; the config loader
reads the file, so a checkpoint's config holds the names). Values the featurizer appends itself
(level, pitch level, duration) are scored but never listed.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mser.config import load_config  # noqa: E402
from mser.errors import ConfigError, MSERError  # noqa: E402
from mser.features.opensmile import APPENDED_VALUES  # noqa: E402


def standardised_per_group(values: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Each column standardised within each group (speaker or speaker session); a group of one clip,
    or a column constant within a group, becomes 0 there."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    groups = np.asarray(groups)
    for group in np.unique(groups):
        rows = groups == group
        centred = values[rows] - values[rows].mean(axis=0)
        spread = values[rows].std(axis=0)
        out[rows] = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    return out


def stability(originals: np.ndarray, speakers: Sequence[str], copies: Sequence[np.ndarray],
              copy_sessions: Sequence[Sequence[str]]) -> np.ndarray:
    """(features,) mean over the copies of the per-feature correlation between the clips'
    standardised values and their copy's; 0 for a feature constant in either."""
    clean = standardised_per_group(originals, speakers)
    scores = []
    for values, sessions in zip(copies, copy_sessions):
        copy = standardised_per_group(values, sessions)
        norms = np.sqrt((clean ** 2).sum(axis=0) * (copy ** 2).sum(axis=0))
        products = (clean * copy).sum(axis=0)
        scores.append(np.divide(products, norms, out=np.zeros_like(products), where=norms > 0))
    return np.mean(scores, axis=0)


def cached_values(executor, copies) -> Dict[str, np.ndarray]:
    """The training clips' and their copies' standardised features, keyed by clip (copies: path#copyk)."""
    caches = executor.prepare_caches(copies=copies, test=False)
    values: Dict[str, np.ndarray] = {}
    for cache in (caches[0], caches[-1]):
        values.update({clip: row.float().numpy().reshape(-1) for clip, row in cache["features"].items()})
    return values


def measure(configs: str, data_augment_configs: str, overwrites: str = None) -> List[tuple]:
    """[(feature name, stability)] of every value the config's featurizer gives, lowest first."""
    from mser.data.augmented_copies import COPY_MARK
    from mser.data.lists import read_data_list
    from mser.executor import Executor
    config = load_config(configs, overwrites)
    (config["preprocess_conf"].get("method_args") or {}).pop("drop_functionals", None)   # score them all
    cache = config["dataset_conf"]["feature_cache"]
    cache["augmented_copies"] = cache["augmented_copies"] or 2
    executor = Executor(config, data_augment_configs=data_augment_configs)
    if not executor.featurizer.clip_level:
        raise ConfigError(f"{configs}: {config['preprocess_conf']['feature_method']} is not a clip-level featurizer")
    items = read_data_list(config["dataset_conf"]["train_list"], len(executor.labels))
    copies = executor.augmented_copies(items)
    values = cached_values(executor, copies)
    sessions = {item.path: item.speaker for item in copies.items}
    count = cache["augmented_copies"]
    kept = [item for item in items if item.path in values
            and all(f"{item.path}{COPY_MARK}{k}" in values for k in range(1, count + 1))]
    copy_paths = [[f"{item.path}{COPY_MARK}{k}" for item in kept] for k in range(1, count + 1)]
    scores = stability(np.stack([values[item.path] for item in kept]), [item.speaker for item in kept],
                       [np.stack([values[path] for path in paths]) for paths in copy_paths],
                       [[sessions[path] for path in paths] for paths in copy_paths])
    return sorted(zip(executor.featurizer.feature_names, scores.tolist()), key=lambda pair: pair[1])


def write_names(path: str, names: Sequence[str], what: str) -> None:
    """`names` one per line under a comment saying what they are (atomically)."""
    staging = path + ".tmp"
    with open(staging, "w", encoding="utf-8") as f:
        f.write(f"# {len(names)} names: {what} (tools/functional_stability.py)\n")
        f.writelines(f"{name}\n" for name in names)
    os.replace(staging, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="configs/egemaps.yml", help="a config of a clip-level featurizer")
    parser.add_argument("--data_augment_configs", default="configs/augmentation_copies.yml",
                        help="the augmentation its copies are made with")
    parser.add_argument("--overwrites", default=None, help="config overwrites, as for train.py")
    parser.add_argument("--threshold", type=float, default=0.6,
                        help="list the functionals whose stability is below this (default 0.6)")
    parser.add_argument("--json", default=None, help="also write {name: stability} to this file")
    parser.add_argument("--write", default=None,
                        help="also write the listed names to this text file, one per line, for "
                             "method_args.drop_functionals: FILE (a long list, such as ComParE's)")
    args = parser.parse_args(argv)
    try:
        scored = measure(args.configs, args.data_augment_configs, args.overwrites)
    except MSERError as e:
        raise SystemExit(f"error: {e}") from None
    for name, score in scored:
        print(f"{score:+.3f}  {name}")
    dropped = [name for name, score in scored if score < args.threshold and name not in APPENDED_VALUES]
    print(f"\n{len(dropped)} of {len(scored)} values below {args.threshold}:")
    print("drop_functionals: [" + ", ".join(sorted(dropped)) + "]")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(scored), f, indent=1)
    if args.write:
        write_names(args.write, sorted(dropped), f"stability below {args.threshold} under the augmentation of "
                                                 f"{args.data_augment_configs}, for the functionals of {args.configs}")


if __name__ == "__main__":
    main()

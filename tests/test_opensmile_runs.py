"""One openSMILE run shared by a functionals and a contours featurizer (mser.features.opensmile_runs):
the same values to the bit as each featurizer's own run, in either order, and through train.py on
an ensemble whose members analyse the same augmented copies."""
import contextlib
import os

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, run_script, tiny_overwrites
from mser.features import build_featurizer
from mser.features import opensmile_runs
from mser.features.opensmile_runs import paired_keys, run_levels, shared_runs

pytest.importorskip("opensmile", reason='needs the opensmile package: pip install "mser[opensmile]"')

SAMPLE_RATE = 16000


def voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A vowel-like tone with a pitch glide, a loudness contour and a little noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * f0 * (time + 0.05 * time ** 2)
    tone = sum(0.6 ** k * np.sin((k + 1) * phase) for k in range(6))
    return (0.1 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * time)) + 0.01 * rng.standard_normal(time.size)
            ).astype(np.float32)


def features(featurizer, clip: np.ndarray) -> torch.Tensor:
    waveform = torch.from_numpy(clip)[None]
    with torch.inference_mode():
        return featurizer(waveform, torch.tensor([clip.size]))[0]


@pytest.fixture(scope="module")
def pair():
    """eGeMAPS functionals and contours, both analysing at -20 dBFS."""
    args = {"sample_rate": SAMPLE_RATE, "analysis_dBFS": -20, "append_level": True}
    return build_featurizer("eGeMAPS", **args).eval(), build_featurizer("eGeMAPS_LLD", **args).eval()


def test_one_run_gives_both_levels_as_two_runs_do():
    import opensmile
    sets = opensmile.FeatureSet.eGeMAPSv02
    functionals = opensmile.Smile(feature_set=sets, feature_level=opensmile.FeatureLevel.Functionals)
    contours = opensmile.Smile(feature_set=sets, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    for seed, seconds in enumerate((0.3, 1.2)):
        clip = voice(seconds, 120 + 40 * seed, seed)
        levels = run_levels(functionals, clip, SAMPLE_RATE)
        assert np.array_equal(levels["func"], functionals(clip, SAMPLE_RATE), equal_nan=True)
        assert np.array_equal(levels["lld"], contours(clip, SAMPLE_RATE), equal_nan=True)


@pytest.mark.parametrize("first", [0, 1], ids=["functionals first", "contours first"])
def test_paired_featurizers_share_one_run_per_clip(pair, first, monkeypatch):
    clips = [voice(0.8, 130, 1), voice(1.1, 210, 2)]
    own = [[features(featurizer, clip) for clip in clips] for featurizer in pair]
    opener, follower = pair[first], pair[1 - first]
    other = voice(0.8, 131, 1)   # a clip the opener never analyses
    others_own = features(follower, other)
    with shared_runs(pair) as paired:
        assert paired == {("eGeMAPSv02", SAMPLE_RATE, -20.0)}
        folder = opensmile_runs.active().folder
        for clip, expected in zip(clips, own[first]):
            assert torch.equal(features(opener, clip), expected)
        assert len(os.listdir(folder)) == len(clips)   # the other level of each clip, kept
        with monkeypatch.context() as patch:   # the follower must not run openSMILE at all
            patch.setattr(follower, "smile", None)
            for clip, expected in zip(clips, own[1 - first]):
                assert torch.equal(features(follower, clip), expected)
        assert os.listdir(folder) == []   # each kept level is read once
        assert torch.equal(features(follower, other), others_own)   # analysed, its other level kept
        assert len(os.listdir(folder)) == 1
    with shared_runs(pair):   # a clip met twice (a list with a repeated file): the second is analysed again
        folder = opensmile_runs.active().folder
        features(opener, clips[0])
        assert [torch.equal(features(follower, clips[0]), own[1 - first][0]) for _ in range(2)] == [True, True]
        assert len(os.listdir(folder)) == 1   # the second run's other level, kept
    assert opensmile_runs.active() is None and not os.path.exists(folder)


def test_forked_extraction_workers_share_and_other_threads_do_not(pair, demo_lists):
    """Feature extraction runs in forked worker processes: what the functionals' workers keep, the
    contours' workers take; a thread beside the context's own neither keeps nor takes."""
    import threading

    from mser.config import load_config
    from mser.data.feature_cache import compute_features
    from mser.data.lists import read_data_list
    config = load_config(str(REPO / "configs" / "egemaps.yml"), "dataset_conf.feature_cache.workers=2")
    items = read_data_list(str(demo_lists / "test_list.txt"), 6)[:64]
    functionals, contours = pair
    alone = compute_features(contours, items, config)["features"]
    with shared_runs(pair):
        folder = opensmile_runs.active().folder
        compute_features(functionals, items, config)
        assert len(os.listdir(folder)) == len(items)
        seen = []
        beside = threading.Thread(target=lambda: seen.append(opensmile_runs.active()))
        beside.start()
        beside.join()
        assert seen == [None]
        shared = compute_features(contours, items, config)["features"]
        assert os.listdir(folder) == []
    assert shared.keys() == alone.keys() and all(torch.equal(shared[p], alone[p]) for p in alone)


def test_featurizers_that_analyse_differently_are_not_paired():
    functionals = build_featurizer("eGeMAPS", sample_rate=SAMPLE_RATE, analysis_dBFS=-20)
    contours = build_featurizer("eGeMAPS_LLD", sample_rate=SAMPLE_RATE)   # as recorded
    compare = build_featurizer("ComParE", sample_rate=SAMPLE_RATE, analysis_dBFS=-20)
    fbank = build_featurizer("Fbank", sample_rate=SAMPLE_RATE)
    assert paired_keys([functionals, contours, compare, fbank]) == set()
    with shared_runs([functionals, contours]) as paired:
        assert paired == set() and opensmile_runs.active() is None


CONTOUR_MODEL = ("model_conf.model_args.channels=16,model_conf.model_args.stats_channels=32,"
                 "model_conf.model_args.embd_dim=16")
AUGMENTATION = str(REPO / "configs" / "augmentation_copies.yml")
TINY = {"dataset_conf.feature_cache.augmented_copies": 1, "model_conf.model": None,
        "model_conf.model_args.hidden_size": None, "preprocess_conf.feature_method": None,
        "preprocess_conf.method_args.num_mel_bins": None}


@pytest.fixture(scope="module")
def shared_ensemble(demo_lists, tmp_path_factory):
    """train.py on an ensemble of an eGeMAPS and an eGeMAPS_LLD member, each with an augmented copy
    of every clip: (work folder, train.py's output)."""
    work = tmp_path_factory.mktemp("shared_runs")
    # a label list of its own: the eGeMAPS scaler is kept beside it, not beside the session's lists
    (work / "label_list.txt").write_text((demo_lists / "label_list.txt").read_text())
    config = work / "ensemble.yml"
    config.write_text(yaml.safe_dump({"ensemble": {"members": [
        {"configs": str(REPO / "configs" / "egemaps.yml"), "overwrites": "model_conf.model_args.hidden_size=16"},
        {"configs": str(REPO / "configs" / "egemaps_lld.yml"), "overwrites": CONTOUR_MODEL}]}}))
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", work / "models", "--data_augment_configs", AUGMENTATION,
                        "--overwrites", tiny_overwrites(demo_lists, **TINY, **{
                            "dataset_conf.feature_cache.cache_dir": work / "shared",
                            "dataset_conf.label_list_path": work / "label_list.txt"}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, result.stdout


def test_an_ensemble_caches_what_its_members_would_alone(shared_ensemble, demo_lists, tmp_path):
    """The contour member's caches (clips and copies) are those the contour config alone makes."""
    work, output = shared_ensemble
    assert "openSMILE runs shared: eGeMAPSv02" in output
    alone = run_script("train.py", "--configs", REPO / "configs" / "egemaps_lld.yml", "--use_gpu", "false",
                       "--log_dir", "", "--save_model_path", tmp_path / "alone", "--data_augment_configs",
                       AUGMENTATION, "--overwrites", tiny_overwrites(demo_lists, **TINY, **{
                           "dataset_conf.feature_cache.cache_dir": tmp_path / "alone_cache"}) + "," + CONTOUR_MODEL)
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    caches = sorted(path.name for path in (work / "shared").glob("eGeMAPS_LLD_*.pt"))
    assert any("_copies_" in name for name in caches) and len(caches) >= 2
    for name in caches:
        mine = torch.load(work / "shared" / name, weights_only=True)["features"]
        theirs = torch.load(tmp_path / "alone_cache" / name, weights_only=True)["features"]
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[clip], theirs[clip]) for clip in mine)


@pytest.mark.parametrize("statistics", ["whole", "running"])
def test_the_ensemble_predictor_runs_opensmile_once_per_clip(shared_ensemble, demo_lists, statistics, monkeypatch):
    from mser.ensemble import EnsemblePredictor
    from mser.predictor import MSERPredictor
    work, _ = shared_ensemble
    paths = [line.split("\t")[0] for line in (demo_lists / "test_list.txt").read_text().splitlines()[:4]]
    predictor = MSERPredictor(model_path=str(work / "models" / "Ensemble"), use_gpu=False)
    assert isinstance(predictor, EnsemblePredictor)
    shared = predictor.predict_batch(paths, speaker="one", statistics=statistics)
    with monkeypatch.context() as patch:
        patch.setattr(EnsemblePredictor, "shared_work", lambda self: contextlib.nullcontext())
        predictor.reset_speakers()
        assert predictor.predict_batch(paths, speaker="one", statistics=statistics) == shared
    contours = next(m for m in predictor.members if m.featurizer.smile_level == "lld").featurizer
    monkeypatch.setattr(contours, "smile", None)   # the contour member must take the kept level
    predictor.reset_speakers()
    assert predictor.predict_batch(paths, speaker="one", statistics=statistics) == shared

"""Every shipped config loads, validates and builds its featurizer and model."""
from pathlib import Path

import pytest
import torch

from mser.config import load_config
from mser.factory import featurizer_from_config, model_from_config
from mser.features import missing_extra

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yml")
                 if not p.name.startswith(("augmentation", "ensemble")))


def test_there_is_a_config_per_model_family():
    names = {p.stem for p in CONFIGS}
    assert {"bi_lstm", "ecapa_tdnn", "campplus", "resnet_se", "panns"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_featurizer_and_model(path):
    config = load_config(str(path))
    if config["preprocess_conf"]["use_hf_model"]:
        pytest.skip("a speech encoder from the hub (none here): tests/test_hf_features.py builds tiny ones")
    if config["preprocess_conf"]["feature_method"] == "Emotion2Vec":
        pytest.skip("emotion2vec from the hub (none here): tests/test_emotion2vec.py builds tiny ones")
    extra = missing_extra(config["preprocess_conf"]["feature_method"])
    if extra:
        pytest.skip(f'needs pip install "mser[{extra}]"')
    featurizer = featurizer_from_config(config)
    model = model_from_config(config, featurizer.feature_dim, num_class=6).eval()
    with torch.no_grad():
        features, frame_lengths = featurizer(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000]))
        logits = model(features, frame_lengths)
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()

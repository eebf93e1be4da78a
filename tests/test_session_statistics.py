"""Whole-session speaker statistics (issue 12): every clip of a session normalised with the
statistics of all of them, against running statistics (each clip with those so far). Unit tests on
the normaliser; the trained-model and script checks are in test_speakers.py and test_ensemble.py,
which already train the models they need."""
import numpy as np
import pytest
import torch

from mser.errors import ConfigError
from mser.features.speaker_norm import SpeakerNormalizer, SpeakerStats


def padded_session(seed: int = 0, lengths=(7, 12, 4, 9)):
    """A padded batch of one speaker's clips: ((clips, frames, 3), (clips,)), padding zero."""
    rng = np.random.default_rng(seed)
    features = torch.zeros(len(lengths), max(lengths), 3)
    for row, length in enumerate(lengths):
        features[row, :length] = torch.tensor(rng.normal(4.0, 2.0, size=(length, 3)), dtype=torch.float32)
    return features, torch.tensor(lengths)


@pytest.fixture
def normalizer():
    normalizer = SpeakerNormalizer(feature_dim=3, prior_clips=2)
    normalizer.fit([("", torch.tensor(np.random.default_rng(9).normal(size=(50, 3)), dtype=torch.float32))])
    return normalizer


def test_whole_session_equals_the_statistics_of_all_the_clips(normalizer):
    features, lengths = padded_session()
    session = SpeakerStats(3)
    session.add_batch(features, lengths)
    assert session.clips == 4 and session.frames == int(lengths.sum())
    table = normalizer.speaker_table([("me", features[row, :int(length)]) for row, length in enumerate(lengths)])
    expected = normalizer.normalize(features, lengths, ["me"] * 4, table)
    assert torch.equal(normalizer.normalize_session(features, lengths, session), expected)


def test_whole_session_adds_to_a_speakers_statistics_so_far(normalizer):
    earlier, earlier_lengths = padded_session(seed=1, lengths=(5, 8))
    features, lengths = padded_session(seed=2)
    session = SpeakerStats(3)
    session.add_batch(earlier, earlier_lengths)
    session.add_batch(features, lengths)
    clips = [earlier[row, :int(n)] for row, n in enumerate(earlier_lengths)]
    clips += [features[row, :int(n)] for row, n in enumerate(lengths)]
    table = normalizer.speaker_table([("me", frames) for frames in clips])
    mean, std = normalizer.statistics(table["me"])
    out = normalizer.normalize_session(features, lengths, session)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[row, :length], (features[row, :length] - mean) / std, rtol=0, atol=1e-6)
        assert torch.all(out[row, length:] == 0)


def test_running_statistics_normalise_each_clip_with_those_so_far(normalizer):
    features, lengths = padded_session()
    out = normalizer.normalize_running(features, lengths, SpeakerStats(3))
    so_far = SpeakerStats(3)
    for row, length in enumerate(lengths.tolist()):
        so_far.add(features[row, :length])
        mean, std = normalizer.statistics(so_far)
        torch.testing.assert_close(out[row, :length], (features[row, :length] - mean) / std, rtol=0, atol=1e-6)
    whole = SpeakerStats(3)
    whole.add_batch(features, lengths)
    assert torch.equal(out[-1], normalizer.normalize_session(features, lengths, whole)[-1])   # the last clip agrees


def test_a_bad_statistics_value_is_a_config_error():
    from mser.predictor import check_statistics
    check_statistics("whole")
    check_statistics("running")
    with pytest.raises(ConfigError, match="statistics must be one of whole, running, got 'all'"):
        check_statistics("all")

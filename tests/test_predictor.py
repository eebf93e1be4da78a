"""MSERPredictor on every input type, batches, scores, the threshold, and long recordings."""
import io

import numpy as np
import pytest
import soundfile
import torch

from mser.audio import load_audio
from mser.errors import AudioError, CheckpointError, ConfigError
from mser.predictor import UNKNOWN, MSERPredictor, moving_average, read_blocks

# mic_fixtures is loaded as a plugin (its session fixtures then run once for every module that
# uses them); marked for assert rewriting before this import so that pytest does not warn.
pytest.register_assert_rewrite("mic_fixtures")
from mic_fixtures import LABELS, RATE, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return MSERPredictor(tiny_model)


@pytest.fixture(scope="module")
def low_clip(tmp_path_factory):
    """A 1.5 s "low" clip as a WAV file at 16 kHz."""
    rng = np.random.default_rng(11)
    return write_clip(tmp_path_factory.mktemp("clips") / "low.wav", synthetic_clip("low", 1.5, rng))


@pytest.fixture(scope="module")
def three_part_recording(tmp_path_factory):
    """30 s at 44.1 kHz: 10 s of "low", then 10 s of "high", then 10 s of "noise"."""
    rng = np.random.default_rng(12)
    samples = np.concatenate([synthetic_clip(label, 10.0, rng, rate=44100) for label in LABELS])
    return write_clip(tmp_path_factory.mktemp("long") / "three_parts.wav", samples, 44100)


def test_the_checkpoint_alone_gives_config_labels_and_window(predictor):
    assert predictor.labels == LABELS
    assert predictor.sample_rate == RATE
    assert predictor.window == 2.0            # dataset_conf.eval_conf.max_duration
    assert predictor.segment_duration == 1.0  # dataset_conf.dataset.max_duration
    assert not predictor.model.training and not predictor.featurizer.training


@pytest.mark.parametrize("kind", ["path", "bytes", "file object", "ndarray", "stereo int16 at 8 kHz", "tensor"])
def test_predict_accepts_every_input_type(predictor, low_clip, kind):
    samples, rate = soundfile.read(low_clip, dtype="float32")
    stereo = (np.stack([samples[::2], samples[::2]], axis=1) * 32767).astype(np.int16)
    sources = {
        "path": (low_clip, None),
        "bytes": (open(low_clip, "rb").read(), None),
        "file object": (open(low_clip, "rb"), None),
        "ndarray": (samples, rate),
        "stereo int16 at 8 kHz": (stereo, 8000),
        "tensor": (torch.from_numpy(samples), rate),
    }
    audio, sample_rate = sources[kind]
    label, score = predictor.predict(audio, sample_rate=sample_rate)
    assert label == "low"
    assert 0.5 < score <= 1.0


def test_an_array_without_its_sample_rate_is_refused(predictor):
    with pytest.raises(AudioError, match="sample_rate"):
        predictor.predict(np.zeros(RATE, dtype=np.float32))


@pytest.mark.parametrize("method", ["predict", "predict_long"])
def test_a_clip_shorter_than_min_duration_is_refused(predictor, method):
    short = synthetic_clip("low", 0.3, np.random.default_rng(0))
    with pytest.raises(AudioError, match="min_duration"):
        getattr(predictor, method)(short, sample_rate=RATE)


def test_corrupt_audio_and_a_missing_checkpoint_raise_clear_errors(predictor, tmp_path):
    with pytest.raises(AudioError, match="cannot decode"):
        predictor.predict(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(CheckpointError, match="not found"):
        MSERPredictor(str(tmp_path / "missing"))


def test_predict_batch_matches_one_at_a_time(predictor):
    """Padding a batch must not change any clip's result: lengths mask it out."""
    rng = np.random.default_rng(3)
    clips = [synthetic_clip(label, seconds, rng) for label, seconds in
             [("low", 0.6), ("high", 1.9), ("noise", 1.1), ("high", 0.8), ("low", 1.4)]]
    batched = predictor.predict_batch(clips, sample_rate=RATE)
    single = [predictor.predict(clip, sample_rate=RATE) for clip in clips]
    assert [label for label, _ in batched] == ["low", "high", "noise", "high", "low"]
    for (label_b, score_b), (label_s, score_s) in zip(batched, single):
        assert label_b == label_s and score_b == pytest.approx(score_s, abs=1e-5)
    assert predictor.predict_batch([]) == []


def test_predict_scores_are_ranked_probabilities(predictor, low_clip):
    scores = predictor.predict_scores(low_clip)
    assert list(scores)[0] == "low" and set(scores) == set(LABELS)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert list(predictor.predict_scores(low_clip, top_k=2)) == list(scores)[:2]


def test_threshold_turns_a_weak_top_label_into_unknown(tiny_model):
    predictor = MSERPredictor(tiny_model, threshold=0.6)
    assert predictor.decide(np.array([0.5, 0.3, 0.2])) == (UNKNOWN, 0.5)
    assert predictor.decide(np.array([0.1, 0.7, 0.2])) == ("high", pytest.approx(0.7))
    with pytest.raises(ConfigError, match="threshold"):
        MSERPredictor(tiny_model, threshold=1.5)


def test_long_recording_segments_follow_the_changes(predictor, three_part_recording):
    segments = predictor.predict_long(three_part_recording, window=2.0, hop=1.0)
    assert [(start, end) for start, end, _, _ in segments] == [(float(s), float(s + 2)) for s in range(29)]
    for start, end, label, score in segments:
        inside = [name for i, name in enumerate(LABELS) if 10 * i <= start and end <= 10 * (i + 1)]
        if inside:  # segments across a change may go either way
            assert label == inside[0], (start, end, label, score)
            assert score > 0.5


def test_long_recording_from_bytes_and_arrays_matches_the_file(predictor, three_part_recording):
    from_path = predictor.predict_long(three_part_recording, window=2.0, hop=1.0)
    samples, rate = soundfile.read(three_part_recording, dtype="float32")
    for audio, sample_rate in [(open(three_part_recording, "rb").read(), None), (samples, rate)]:
        other = predictor.predict_long(audio, window=2.0, hop=1.0, sample_rate=sample_rate)
        assert [s[:3] for s in other] == [s[:3] for s in from_path]
        assert np.allclose([s[3] for s in other], [s[3] for s in from_path], atol=1e-4)


def test_the_last_segment_covers_the_tail(predictor):
    rng = np.random.default_rng(4)
    clip = synthetic_clip("noise", 5.3, rng)
    times = [(start, round(end, 3)) for start, end, _, _ in predictor.predict_long(clip, 2.0, 1.0, sample_rate=RATE)]
    assert times == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (4.0, 5.3)]
    # Shorter than a window but long enough: one segment, the whole clip.
    assert [s[:2] for s in predictor.predict_long(clip[:RATE], 2.0, 1.0, sample_rate=RATE)] == [(0.0, 1.0)]


def test_smoothing_averages_neighbouring_segments(predictor, three_part_recording):
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert np.allclose(moving_average(probs, 1), [[0.5, 0.5], [2 / 3, 1 / 3], [2 / 3, 1 / 3], [1.0, 0.0]])
    assert moving_average(probs, 0) is probs
    raw = predictor.segment_probabilities(three_part_recording, 2.0, 1.0)
    smooth = predictor.segment_probabilities(three_part_recording, 2.0, 1.0, smoothing=2)
    assert len(raw) == len(smooth)
    assert np.allclose(smooth[5][2], np.mean([p for _, _, p in raw[3:8]], axis=0), atol=1e-6)


@pytest.mark.parametrize("file_rate", [8000, 16000, 22050, 44100])
def test_block_wise_reading_equals_decoding_the_whole_file(tmp_path, file_rate):
    """Resampling block by block must not leave clicks at the block edges."""
    rng = np.random.default_rng(5)
    path = write_clip(tmp_path / "clip.wav", synthetic_clip("high", 2.3, rng, rate=file_rate), file_rate)
    blocks = list(read_blocks(path, RATE, block_seconds=0.3))
    assert len(blocks) >= 7
    whole = load_audio(path, RATE)
    joined = np.concatenate(blocks)
    assert joined.shape == whole.shape
    assert np.max(np.abs(joined - whole)) < 1e-4


def test_file_objects_are_read_in_blocks_too(predictor, low_clip):
    with open(low_clip, "rb") as f:
        blocks = list(read_blocks(io.BytesIO(f.read()), RATE, block_seconds=0.5))
    assert [len(b) for b in blocks] == [8000, 8000, 8000]


def test_embed_gives_the_utterance_embedding(predictor, low_clip):
    vector = predictor.embed(low_clip)
    assert vector.shape == (32,) and vector.dtype == np.float32 and np.all(np.isfinite(vector))   # embd_dim=32
    rng = np.random.default_rng(8)
    clips = [synthetic_clip("high", 1.3, rng), synthetic_clip("low", 0.7, rng)]
    batch = predictor.embed_batch([low_clip, *clips], sample_rate=RATE)
    assert batch.shape == (3, 32)
    assert np.allclose(batch[0], vector, atol=1e-5)   # padding in a batch changes nothing
    assert np.allclose(batch[2], predictor.embed(clips[1], sample_rate=RATE), atol=1e-5)
    with torch.inference_mode():   # the head on the embedding gives the predictor's probabilities
        probs = torch.softmax(predictor.model.head(torch.from_numpy(vector)[None]), dim=-1)[0].numpy()
    assert np.allclose(probs, predictor.probabilities([predictor.load(low_clip)])[0], atol=1e-5)


@pytest.mark.parametrize("route", ["configs", "overwrites"])
def test_a_label_list_named_by_the_config_must_match_the_checkpoint(tiny_model, tmp_path, route):
    import yaml
    config = yaml.safe_load(open(f"{tiny_model}/config.yml"))
    for name, labels in (("same", LABELS), ("other", ["high", "low", "noise"])):
        (tmp_path / f"{name}.txt").write_text("".join(f"{label}\n" for label in labels))
        config["dataset_conf"]["label_list_path"] = str(tmp_path / f"{name}.txt")
        (tmp_path / f"{name}.yml").write_text(yaml.safe_dump(config))

    def load(name: str) -> MSERPredictor:
        if route == "configs":
            return MSERPredictor(tiny_model, configs=str(tmp_path / f"{name}.yml"))
        return MSERPredictor(tiny_model, overwrites=f"dataset_conf.label_list_path={tmp_path / name}.txt")
    assert load("same").labels == LABELS
    with pytest.raises(CheckpointError, match="trained on labels low, high, noise, but the label list .* has high, "
                                              "low, noise"):
        load("other")

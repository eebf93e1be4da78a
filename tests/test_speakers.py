"""Speakers: the third list column, cross-corpus test lists, the speaker-disjoint validation slice,
speaker normalisation in training, evaluation and inference."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import REPO, assert_one_line_error, run_script
from mser.data.lists import ListItem, read_data_list, read_label_list
from mser.errors import ConfigError, DataError

VOICES = ["en-a", "en-b", "en-c", "en-d", "en-e"]


def write_clip(path: Path, seconds: float = 0.05) -> None:
    """A short clip: create_data reads names only, but the files are real audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(int(16000 * seconds), dtype=np.float32), 16000)


def make_demo_tree(root: Path, emotions=("neutral", "happy", "sad"), voices=VOICES, clips: int = 2) -> Path:
    """The demo corpus naming: <voice>/<voice>_<emotion>_<nn>.flac."""
    for voice in voices:
        for emotion in emotions:
            for number in range(clips):
                write_clip(root / voice / f"{voice}_{emotion}_{number:02d}.flac")
    return root


def voice_of(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


# ---------------------------------------------------------------- the third column


def test_create_data_writes_the_speaker_column(tmp_path):
    data_dir = make_demo_tree(tmp_path / "corpus")
    result = run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir, "--list_dir", tmp_path / "lists")
    assert result.returncode == 0, result.stderr
    labels = read_label_list(str(tmp_path / "lists" / "label_list.txt"))
    lists = {name: read_data_list(str(tmp_path / "lists" / f"{name}_list.txt"), len(labels))
             for name in ("train", "test")}
    for items in lists.values():
        assert items and all(item.speaker == voice_of(item.path) for item in items)
    assert not {i.speaker for i in lists["train"]} & {i.speaker for i in lists["test"]}
    line = (tmp_path / "lists" / "train_list.txt").read_text().splitlines()[0]
    assert len(line.split("\t")) == 3


def test_tess_word_groups_are_not_speakers(tmp_path):
    for speaker in ("OAF", "YAF"):
        for word in ("back", "bar", "base", "bath", "bean"):
            for emotion in ("angry", "sad"):
                write_clip(tmp_path / "tess" / f"{speaker}_{emotion}" / f"{speaker}_{word}_{emotion}.wav")
    result = run_script("create_data.py", "--dataset", "tess", "--data_dir", tmp_path / "tess",
                        "--list_dir", tmp_path / "lists")
    assert result.returncode == 0, result.stderr
    for name in ("train_list.txt", "test_list.txt"):
        assert all(len(line.split("\t")) == 2 for line in (tmp_path / "lists" / name).read_text().splitlines())


@pytest.mark.parametrize("line, message", [
    ("{audio}\t1\t", "line 3 of .*list.txt has an empty speaker column"),
    ("{audio}\t1\tspk\tmore", "line 3 of .*list.txt must be 'path<TAB>label_index' or"),
])
def test_malformed_speaker_column_names_file_and_line(tmp_path, line, message):
    audio = tmp_path / "a.wav"
    write_clip(audio)
    path = tmp_path / "list.txt"
    path.write_text(f"{audio}\t0\tspk1\n{audio}\t1\n" + line.format(audio=audio) + "\n")
    with pytest.raises(DataError, match=message):
        read_data_list(str(path), 2)


def test_list_with_byte_order_mark_and_mixed_columns(tmp_path):
    audio = tmp_path / "a.wav"
    write_clip(audio)
    (tmp_path / "list.txt").write_bytes(f"\ufeff{audio}\t1\tspk1\r\n{audio}\t0\n".encode("utf-8"))
    (tmp_path / "labels.txt").write_bytes("\ufeffneutral\nhappy\n".encode("utf-8"))
    assert read_data_list(str(tmp_path / "list.txt"), 2) == [ListItem(str(audio), 1, "spk1"), ListItem(str(audio), 0)]
    assert read_label_list(str(tmp_path / "labels.txt")) == ["neutral", "happy"]


def test_malformed_speaker_column_through_train_is_one_line(tmp_path, demo_lists):
    from conftest import tiny_overwrites
    lines = (demo_lists / "train_list.txt").read_text().splitlines()
    path, label = lines[0].split("\t")[:2]
    (tmp_path / "train_list.txt").write_text(f"{lines[0]}\n{path}\t{label}\t\n")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", tiny_overwrites(demo_lists, **{
                            "dataset_conf.train_list": tmp_path / "train_list.txt"}))
    assert_one_line_error(result, "line 2 of")


# ---------------------------------------------------------------- cross-corpus test lists


def test_test_only_skips_and_counts_unknown_labels(tmp_path):
    data_dir = make_demo_tree(tmp_path / "other", emotions=("neutral", "happy", "angry"), clips=3)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "label_list.txt").write_text("neutral\nsad\nhappy\n")
    result = run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir, "--list_dir", lists,
                        "--test_only", "--list_name", "other_test_list.txt")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(lists)) == ["label_list.txt", "other_test_list.txt"]
    items = read_data_list(str(lists / "other_test_list.txt"), 3)
    assert len(items) == 2 * 3 * len(VOICES)
    assert {item.label for item in items} == {0, 2}      # neutral, happy by the given label list
    assert all(item.speaker == voice_of(item.path) for item in items)
    assert f"skipped {3 * len(VOICES)} clips whose label is not in" in result.stdout
    assert f"{3 * len(VOICES)} angry" in result.stdout


def test_test_only_errors_are_one_line(tmp_path):
    data_dir = make_demo_tree(tmp_path / "other", emotions=("angry", "fearful"))
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir,
                                     "--list_dir", tmp_path, "--test_only"), "label list not found")
    (tmp_path / "labels.txt").write_text("neutral\nsad\n")
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir,
                                     "--list_dir", tmp_path, "--test_only", "--label_list", tmp_path / "labels.txt"),
                          "none of the labels")
    assert_one_line_error(run_script("create_data.py", "--dataset", "demo", "--data_dir", data_dir,
                                     "--list_dir", tmp_path, "--list_name", "x.txt"), "--test_only")


# ---------------------------------------------------------------- validation slice


def speaker_items(speakers: int = 12, labels: int = 3, clips: int = 4, first_speaker: int = 0):
    return [ListItem(f"/s{s}_{label}_{n}.wav", label, f"s{s}") for s in range(first_speaker, speakers)
            for label in range(labels) for n in range(clips)]


def test_validation_slice_takes_whole_speakers():
    from mser.trainer import split_validation
    items = speaker_items()
    train, val = split_validation(items, 0.25, seed=3)
    assert sorted(train + val) == sorted(items)
    assert val and not {i.speaker for i in train} & {i.speaker for i in val}
    assert {i.label for i in val} == {0, 1, 2}
    assert 0.15 <= len(val) / len(items) <= 0.35
    assert split_validation(items, 0.25, seed=3) == (train, val)


def test_validation_slice_without_speakers_takes_clips():
    from mser.trainer import split_validation
    items = [ListItem(path, label) for path, label, _ in speaker_items()]
    train, val = split_validation(items, 0.25, seed=3)
    assert len(val) == 36 and {i.label for i in val} == {0, 1, 2}


# ---------------------------------------------------------------- speaker normalisation


def speaker_clips(rng, speakers=("a", "b"), clips=3, frames=50, dim=4):
    """(speaker, (frames, dim)) clips; each speaker has its own offset and scale."""
    import torch
    out = []
    for index, speaker in enumerate(speakers):
        for _ in range(clips):
            values = rng.normal(3.0 * index, 1.0 + index, size=(frames, dim))
            out.append((speaker, torch.tensor(values, dtype=torch.float32)))
    return out


def normalize_one(normalizer, frames, speaker, table=None):
    import torch
    return normalizer.normalize(frames[None], torch.tensor([frames.shape[0]]), [speaker], table)[0]


def test_speaker_frames_standardised_without_prior():
    import torch
    from mser.features.speaker_norm import SpeakerNormalizer
    clips = speaker_clips(np.random.default_rng(0))
    normalizer = SpeakerNormalizer(feature_dim=4, prior_clips=0)
    normalizer.fit(clips)
    for speaker in ("a", "b"):
        frames = torch.cat([normalize_one(normalizer, f, speaker) for s, f in clips if s == speaker])
        torch.testing.assert_close(frames.mean(dim=0), torch.zeros(4), atol=1e-4, rtol=0)
        torch.testing.assert_close(frames.std(dim=0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    everything = torch.cat([f for _, f in clips])
    torch.testing.assert_close(normalizer.mean, everything.mean(dim=0), atol=1e-4, rtol=0)


def test_one_clip_is_shrunk_towards_global_and_no_speaker_uses_global():
    import torch
    from mser.features.speaker_norm import SpeakerNormalizer, SpeakerStats
    normalizer = SpeakerNormalizer(feature_dim=4, prior_clips=2)
    normalizer.fit(speaker_clips(np.random.default_rng(1)))
    clip = torch.tensor(np.random.default_rng(2).normal(10.0, 2.0, size=(40, 4)), dtype=torch.float32)
    table = normalizer.speaker_table([("new", clip)])
    stats = table["new"]
    assert stats.clips == 1
    mean, std = normalizer.statistics(stats)
    own_mean, own_var = stats.mean_var()
    torch.testing.assert_close(mean.double(), (own_mean + 2 * normalizer.mean.double()) / 3, atol=1e-5, rtol=0)
    torch.testing.assert_close(std.double() ** 2, (own_var + 2 * normalizer.var.double()) / 3, atol=1e-4, rtol=1e-5)
    expected = (clip - mean) / std
    torch.testing.assert_close(normalize_one(normalizer, clip, "new", table), expected)
    global_mean, global_std = normalizer.statistics(None)
    for speaker in ("", "never-heard"):
        torch.testing.assert_close(normalize_one(normalizer, clip, speaker, table), (clip - global_mean) / global_std)
    assert SpeakerStats(4).clips == 0


def test_padding_stays_zero_and_running_statistics_include_the_clip():
    import torch
    from mser.features.speaker_norm import SpeakerNormalizer, SpeakerStats
    normalizer = SpeakerNormalizer(feature_dim=3, prior_clips=0)
    normalizer.fit([("", torch.randn(30, 3))])
    features = torch.randn(2, 10, 3) + 5
    lengths = torch.tensor([10, 6])
    session = SpeakerStats(3)
    out = normalizer.normalize_running(features, lengths, session)
    assert session.clips == 2 and session.frames == 16
    assert torch.all(out[1, 6:] == 0)
    torch.testing.assert_close(out[0].mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)  # first clip: itself only


def test_kept_speaker_statistics_follow_new_clips_and_new_global_statistics():
    import torch
    from mser.features.speaker_norm import SpeakerNormalizer
    clips = speaker_clips(np.random.default_rng(3))
    normalizer = SpeakerNormalizer(feature_dim=4, prior_clips=2)
    table = normalizer.fit(clips)

    def fresh(stats_clips, global_clips):   # a normalizer that never kept anything
        other = SpeakerNormalizer(feature_dim=4, prior_clips=2)
        other.fit(global_clips)
        return other.statistics(other.speaker_table(stats_clips)["a"])

    a_clips = [c for c in clips if c[0] == "a"]
    first = normalizer.statistics(table["a"])
    assert normalizer.statistics(table["a"]) is first   # asked again: kept
    louder = ("a", torch.full((50, 4), 20.0))
    table["a"].add(louder[1])
    for got, want in zip(normalizer.statistics(table["a"]), fresh(a_clips + [louder], clips)):
        torch.testing.assert_close(got, want)
    others = speaker_clips(np.random.default_rng(4), speakers=("c",))
    normalizer.load_state_dict(SpeakerNormalizer(4, 2).state_dict() | {"mean": torch.full((4,), 7.0)})
    assert float(normalizer.statistics(table["a"])[0][0]) != float(first[0][0])
    normalizer.fit(others)   # new global statistics: the kept ones of table["a"] are stale
    want = SpeakerNormalizer(feature_dim=4, prior_clips=2)
    want.fit(others)
    for got, expected in zip(normalizer.statistics(table["a"]), want.statistics(table["a"])):
        torch.testing.assert_close(got, expected)
    normalizer.prior_clips = 0
    torch.testing.assert_close(normalizer.statistics(table["a"])[0], table["a"].mean_var()[0].float())


def test_speaker_statistics_of_a_normalizer_made_under_inference_mode():
    import torch
    from mser.features.speaker_norm import SpeakerNormalizer
    clips = speaker_clips(np.random.default_rng(5))
    reference = SpeakerNormalizer(feature_dim=4, prior_clips=2)
    table = reference.fit(clips)
    with torch.inference_mode():   # e.g. a predictor built inside the caller's inference_mode
        normalizer = SpeakerNormalizer(feature_dim=4, prior_clips=2)
        normalizer.load_state_dict(reference.state_dict())
        for got, want in zip(normalizer.statistics(table["a"]), reference.statistics(table["a"])):
            torch.testing.assert_close(got, want)


def test_speaker_norm_config_keys():
    from mser.config import load_config
    from mser.errors import ConfigError
    config = load_config(None, "preprocess_conf.speaker_norm.enable=true,preprocess_conf.speaker_norm.prior_clips=3")
    assert config["preprocess_conf"]["speaker_norm"] == {"enable": True, "prior_clips": 3.0}
    with pytest.raises(ConfigError, match="did you mean 'preprocess_conf.speaker_norm.prior_clips'"):
        load_config(None, "preprocess_conf.speaker_norm.prior_clip=3")


# ---------------------------------------------------------------- through the real scripts


def two_column_lists(demo_lists, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train_list.txt", "test_list.txt"):
        lines = (demo_lists / name).read_text().splitlines()
        assert all(len(line.split("\t")) == 3 for line in lines)   # create_data wrote the speakers
        (folder / name).write_text("".join("\t".join(line.split("\t")[:2]) + "\n" for line in lines))
    (folder / "label_list.txt").write_text((demo_lists / "label_list.txt").read_text())
    return folder


def test_two_column_lists_still_train(demo_lists, tmp_path):
    from conftest import tiny_overwrites
    lists = two_column_lists(demo_lists, tmp_path / "lists")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", tiny_overwrites(lists))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "the list names no speakers" in result.stdout and "test set, best model" in result.stdout


def test_training_with_speaker_norm_saves_global_statistics(normalised_model):
    import torch
    from mser import checkpoint
    model_dir, result = normalised_model
    assert "speaker normalisation: statistics of" in result.stdout
    assert "none of them in training" in result.stdout       # the validation slice is speaker-disjoint
    state = checkpoint.load_speaker_norm_state(str(model_dir))
    assert set(state) == {"mean", "var"} and state["mean"].shape == (40,)
    assert torch.all(state["var"] > 0)


def test_eval_normalises_by_the_speakers_of_its_list(normalised_model, demo_lists, tmp_path):
    import json
    model_dir, _ = normalised_model
    by_speaker = run_script("eval.py", "--resume_model", model_dir, "--use_gpu", "false", "--json",
                            "--output_dir", tmp_path / "eval", "--test_list", demo_lists / "test_list.txt")
    assert by_speaker.returncode == 0, by_speaker.stderr[-3000:]
    test_speakers = {line.split("\t")[2] for line in (demo_lists / "test_list.txt").read_text().splitlines()}
    assert f"statistics of {len(test_speakers)} speakers" in by_speaker.stdout
    metrics = json.loads(by_speaker.stdout.strip().splitlines()[-1])
    assert metrics["num_samples"] == len((demo_lists / "test_list.txt").read_text().splitlines())

    lists = two_column_lists(demo_lists, tmp_path / "lists")
    globally = run_script("eval.py", "--resume_model", model_dir, "--use_gpu", "false",
                          "--output_dir", tmp_path / "eval2", "--test_list", lists / "test_list.txt")
    assert globally.returncode == 0, globally.stderr[-3000:]
    assert "the list names none" in globally.stdout

    refused = run_script("eval.py", "--resume_model", model_dir, "--use_gpu", "false", "--output_dir", tmp_path / "e3",
                         "--overwrites", "preprocess_conf.speaker_norm.enable=false")
    assert_one_line_error(refused, "speaker_norm.enable=true")


def test_infer_and_predictor_use_running_statistics(normalised_model, demo_lists, tmp_path):
    import json
    from mser.predictor import MSERPredictor
    model_dir, _ = normalised_model
    clips = [line.split("\t")[0] for line in (demo_lists / "test_list.txt").read_text().splitlines()[:3]]
    recording = np.concatenate([soundfile.read(path, dtype="float32")[0] for path in clips])
    soundfile.write(str(tmp_path / "long.wav"), recording, 16000)
    result = run_script("infer.py", "--model_path", model_dir, "--audio_path", tmp_path / "long.wav", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(json.loads(result.stdout.strip().splitlines()[-1])["segments"]) >= 2

    predictor = MSERPredictor(str(model_dir))
    assert predictor.speaker_norm is not None
    alone = predictor.predict_scores(clips[0])
    assert predictor.predict_scores(clips[0]) == alone and not predictor.speaker_norm.speakers
    for path in clips:
        predictor.predict(path, speaker="visitor")
    assert predictor.speaker_norm.speakers["visitor"].clips == len(clips)
    predictor.reset_speakers()
    assert not predictor.speaker_norm.speakers
    segments = predictor.predict_long(str(tmp_path / "long.wav"), window=1.0, hop=0.5)
    assert len(segments) >= 4 and not predictor.speaker_norm.speakers   # a recording keeps its own statistics


def test_infer_speaker_option_matches_the_predictor_with_that_speaker(normalised_model, demo_lists, tmp_path):
    import json
    from mser.predictor import MSERPredictor
    model_dir, _ = normalised_model
    clips = [line.split("\t")[0] for line in (demo_lists / "test_list.txt").read_text().splitlines()[:4]]
    folder = tmp_path / "one_speaker"
    folder.mkdir()
    for index, path in enumerate(clips):
        shutil.copy(path, folder / f"{index}.flac")
    result = run_script("infer.py", "--model_path", model_dir, "--audio_path", folder, "--json",
                        "--speaker", "visitor")
    assert result.returncode == 0, result.stderr[-3000:]
    from_cli = [json.loads(line)["scores"] for line in result.stdout.strip().splitlines()]
    predictor = MSERPredictor(str(model_dir))
    expected = predictor.predict_batch(sorted(str(p) for p in folder.iterdir()), speaker="visitor")
    assert [max(scores, key=scores.get) for scores in from_cli] == [label for label, _ in expected]


# ---------------------------------------------------------------- whole-session statistics


def one_speaker_clips(demo_lists, count: int = 6):
    """`count` clips of the first test speaker, in a shuffled order (the list is sorted by emotion)."""
    rows = [line.split("\t") for line in (demo_lists / "test_list.txt").read_text().splitlines()]
    paths = [row[0] for row in rows if row[2] == rows[0][2]]
    return [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[:count]]


def clip_features(predictor, waveform: np.ndarray):
    """One clip alone through the featurizer: its valid frames (frames, feature_dim)."""
    import torch
    with torch.inference_mode():
        features, lengths = predictor.featurizer(torch.from_numpy(waveform)[None], torch.tensor([len(waveform)]))
    return features[0, :int(lengths[0])]


def normalised_probabilities(predictor, frames, stats) -> np.ndarray:
    """(num_class,) of one clip's frames standardised with SpeakerNormalizer.statistics(stats)."""
    import torch
    mean, std = predictor.speaker_norm.statistics(stats)
    with torch.inference_mode():
        logits = predictor.model(((frames - mean) / std)[None], torch.tensor([frames.shape[0]]))
    return torch.softmax(logits, dim=-1)[0].numpy()


def test_whole_statistics_are_those_of_all_the_speakers_clips(normalised_model, demo_lists):
    from mser.predictor import MSERPredictor
    model_dir, _ = normalised_model
    predictor = MSERPredictor(str(model_dir))
    paths = one_speaker_clips(demo_lists)
    waveforms = [predictor.load(path) for path in paths]
    predictor.predict(paths[0], speaker="visitor")        # heard earlier: part of the statistics so far
    whole = predictor.batched_probabilities(waveforms[1:], speaker="visitor", statistics="whole")
    assert predictor.speaker_norm.speakers["visitor"].clips == len(paths)
    frames = [clip_features(predictor, waveform) for waveform in waveforms]
    table = predictor.speaker_norm.speaker_table([("visitor", f) for f in frames])   # as eval.py builds it
    expected = np.stack([normalised_probabilities(predictor, f, table["visitor"]) for f in frames[1:]])
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-5)
    predictor.reset_speakers()
    labels = predictor.predict_batch(paths, speaker="visitor")     # "whole" is predict_batch's default
    assert [label for label, _ in labels] == [predictor.labels[int(np.argmax(
        normalised_probabilities(predictor, f, table["visitor"])))] for f in frames]


def test_running_statistics_are_successive_calls(normalised_model, demo_lists):
    from mser.predictor import MSERPredictor
    model_dir, _ = normalised_model
    paths = one_speaker_clips(demo_lists)
    batch = MSERPredictor(str(model_dir)).predict_batch(paths, speaker="visitor", statistics="running")
    one_by_one = MSERPredictor(str(model_dir))
    for path, (label, score) in zip(paths, batch):
        scores = one_by_one.predict_scores(path, speaker="visitor")
        assert label == next(iter(scores)) and score == pytest.approx(scores[label], abs=1e-5)


def test_predict_long_whole_statistics_are_those_of_all_its_windows(normalised_model, demo_lists, tmp_path):
    from mser.features.speaker_norm import SpeakerStats
    from mser.predictor import MSERPredictor
    model_dir, _ = normalised_model
    predictor = MSERPredictor(str(model_dir))
    recording = np.concatenate([predictor.load(path) for path in one_speaker_clips(demo_lists, 3)])
    windows = [w for _, _, w in predictor.segments(recording, 1.0, 0.5, sample_rate=16000)]
    frames = [clip_features(predictor, window) for window in windows]
    whole, so_far = SpeakerStats(predictor.speaker_norm.feature_dim), SpeakerStats(predictor.speaker_norm.feature_dim)
    for f in frames:
        whole.add(f)
    running = []
    for f in frames:
        so_far.add(f)
        running.append(normalised_probabilities(predictor, f, so_far))
    for statistics, expected in (("whole", [normalised_probabilities(predictor, f, whole) for f in frames]),
                                 ("running", running)):
        segments = predictor.segment_probabilities(recording, 1.0, 0.5, sample_rate=16000, statistics=statistics)
        np.testing.assert_allclose(np.stack([p for _, _, p in segments]), np.stack(expected), rtol=0, atol=1e-5)
    assert not predictor.speaker_norm.speakers      # a recording keeps its own statistics
    with pytest.raises(ConfigError, match="statistics must be one of whole, running"):
        predictor.predict_long(recording, sample_rate=16000, statistics="all")
    with pytest.raises(ConfigError, match="statistics must be one of whole, running"):
        predictor.predict_batch([], statistics="Whole")


@pytest.mark.parametrize("statistics", ["whole", "running"])
def test_infer_statistics_option(statistics, normalised_model, demo_lists, tmp_path):
    import json
    from mser.predictor import MSERPredictor
    model_dir, _ = normalised_model
    paths = [path for path in one_speaker_clips(demo_lists, 100) if soundfile.info(path).duration < 1.9][:5]
    assert len(paths) == 5   # clips, not long recordings (the model's window: eval_conf.max_duration 2 s)
    folder = tmp_path / "one_speaker"
    folder.mkdir()
    for index, path in enumerate(paths):
        shutil.copy(path, folder / f"{index}.flac")
    recording = np.concatenate([soundfile.read(path, dtype="float32")[0] for path in paths[:3]])
    soundfile.write(str(folder / "long.wav"), recording, 16000)
    result = run_script("infer.py", "--model_path", model_dir, "--audio_path", folder, "--json", "--top_k", "6",
                        "--speaker", "visitor", "--statistics", statistics, "--window", "1.0", "--hop", "0.5",
                        "--overwrites", "dataset_conf.eval_conf.batch_size=1")   # files read 4 at a time
    assert result.returncode == 0, result.stderr[-3000:]
    from_cli = {Path(r["audio_path"]).name: r for r in map(json.loads, result.stdout.strip().splitlines())}
    predictor = MSERPredictor(str(model_dir))
    clips = [str(folder / f"{index}.flac") for index in range(len(paths))]
    expected = predictor.batched_probabilities([predictor.load(c) for c in clips], "visitor", statistics)
    for clip, probs in zip(clips, expected):
        scores = from_cli[Path(clip).name]["scores"]
        np.testing.assert_allclose([scores[label] for label in predictor.labels], probs, rtol=0, atol=1e-5)
    segments = predictor.predict_long(str(folder / "long.wav"), window=1.0, hop=0.5, statistics=statistics)
    assert [s["label"] for s in from_cli["long.wav"]["segments"]] == [label for _, _, label, _ in segments]


def test_infer_refuses_an_unknown_statistics_value(normalised_model, demo_lists):
    model_dir, _ = normalised_model
    clip = one_speaker_clips(demo_lists, 1)[0]
    result = run_script("infer.py", "--model_path", model_dir, "--audio_path", clip, "--statistics", "all")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --statistics: invalid choice: 'all' (choose from" in result.stderr.splitlines()[-1]


def test_robustness_tool_with_whole_statistics_does_not_depend_on_the_session_order(normalised_model, demo_lists,
                                                                                   tmp_path):
    import json
    model_dir, _ = normalised_model
    reports = {}
    for statistics, seeds in (("whole", (0, 1)), ("running", (0,))):
        for seed in seeds:
            out = tmp_path / f"{statistics}{seed}.json"
            result = run_script("tools/robustness.py", "--model_path", model_dir, "--test_list",
                                demo_lists / "test_list.txt", "--conditions", "level_-10dB", "--statistics", statistics,
                                "--session_seed", seed, "--json", out)
            assert result.returncode == 0, result.stderr[-3000:]
            reports[statistics, seed] = json.loads(out.read_text())
    assert reports["whole", 0] == reports["whole", 1]   # every clip sees all of its speaker's clips
    assert set(reports["running", 0]) == {"clean", "level_-10dB"}


def test_speaker_mix_tool_scores_each_speakers_drawn_mix(normalised_model, demo_lists, tmp_path):
    """tools/speaker_mix.py keeps a Dirichlet share of each speaker's emotions (seeded) and scores the
    kept clips with their own statistics, with all of the speaker's clips' and with none."""
    import json
    import sys
    sys.path.insert(0, str(REPO / "tools"))
    from speaker_mix import mixed_rows
    truth = [0, 1, 2] * 4 + [0, 1, 2] * 4
    speakers = ["a"] * 12 + ["b"] * 12
    rows = mixed_rows(truth, speakers, 3, 0.3, np.random.default_rng(0))
    assert rows == mixed_rows(truth, speakers, 3, 0.3, np.random.default_rng(0))     # seeded
    for speaker in ("a", "b"):
        kept = [truth[r] for r in rows if speakers[r] == speaker]
        assert len(kept) >= 2 and max(kept.count(c) for c in range(3)) == 4      # the top emotion keeps every clip
    model_dir, _ = normalised_model
    out = tmp_path / "mix.json"
    result = run_script("tools/speaker_mix.py", "--model_path", model_dir, "--test_list", demo_lists / "test_list.txt",
                        "--alpha", "0.5", "--draws", "2", "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["draws"]) == 2 and report["alpha"] == 0.5
    for entry in report["draws"]:
        assert 0 < entry["num_samples"] <= len((demo_lists / "test_list.txt").read_text().splitlines())
        keys = ("own_mix_ua", "even_mix_ua", "no_speaker_ua", "answers_changed")
        assert all(0.0 <= entry[key] <= 1.0 for key in keys)
    assert "mean of 2 draws (alpha 0.5): UA own mix" in result.stdout
    refused = run_script("tools/speaker_mix.py", "--model_path", model_dir, "--alpha", "0")
    assert refused.returncode == 2 and "--alpha must be above 0" in refused.stderr

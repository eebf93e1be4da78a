"""Decisions balanced per speaker (mser.speaker_balance) and eval.py's report of them."""
import json

import numpy as np
import pytest

from conftest import run_script
from mser.speaker_balance import MIN_CLIPS_PER_CLASS, balance_per_speaker, balance_speaker


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def biased_speaker(rng, clips_per_class: int = 4, classes: int = 3, bias_class: int = 0) -> tuple:
    """Probabilities of one speaker whose clips all lean towards `bias_class`: each clip's true
    class is its highest logit once the speaker's bias is taken away."""
    truth = np.repeat(np.arange(classes), clips_per_class)
    logits = 1.5 * np.eye(classes)[truth] + 0.2 * rng.standard_normal((truth.size, classes))
    logits[:, bias_class] += 3.0
    return softmax(logits), truth


def test_balanced_rows_are_probabilities_and_classes_share_equally():
    rng = np.random.default_rng(0)
    probabilities, _ = biased_speaker(rng)
    balanced = balance_speaker(probabilities)
    assert balanced.shape == probabilities.shape
    np.testing.assert_allclose(balanced.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(balanced.sum(axis=0), probabilities.shape[0] / probabilities.shape[1], rtol=1e-5)


def test_balancing_removes_a_speakers_bias_and_keeps_the_order_within_a_class():
    rng = np.random.default_rng(1)
    probabilities, truth = biased_speaker(rng)
    assert (probabilities.argmax(axis=1) == 0).all()          # every clip heard as the biased class
    balanced = balance_speaker(probabilities)
    assert (balanced.argmax(axis=1) == truth).all()
    for column in range(probabilities.shape[1]):              # one scale per class: ranks unchanged
        ratio = probabilities[:, column] / probabilities[:, 0]
        balanced_ratio = balanced[:, column] / balanced[:, 0]
        np.testing.assert_allclose(balanced_ratio / ratio, (balanced_ratio / ratio)[0], rtol=1e-6)


def test_each_speaker_is_balanced_on_its_own_and_few_or_unknown_clips_are_left_alone():
    rng = np.random.default_rng(2)
    first, truth_first = biased_speaker(rng, bias_class=0)
    second, truth_second = biased_speaker(rng, bias_class=2)
    few, _ = biased_speaker(rng, clips_per_class=1)            # 3 clips: under MIN_CLIPS_PER_CLASS * 3
    unknown, _ = biased_speaker(rng, clips_per_class=2)
    probabilities = np.concatenate([first, second, few, unknown])
    speakers = ["a"] * len(first) + ["b"] * len(second) + ["c"] * len(few) + [""] * len(unknown)
    balanced = balance_per_speaker(probabilities, speakers)
    np.testing.assert_allclose(balanced[:len(first)], balance_speaker(first))
    np.testing.assert_allclose(balanced[len(first):len(first) + len(second)], balance_speaker(second))
    assert (balanced[:len(first)].argmax(1) == truth_first).all()
    assert (balanced[len(first):len(first) + len(second)].argmax(1) == truth_second).all()
    rest = len(first) + len(second)
    np.testing.assert_array_equal(balanced[rest:], probabilities[rest:])
    assert len(few) < MIN_CLIPS_PER_CLASS * probabilities.shape[1]


def test_a_class_no_clip_gives_any_probability_still_gets_a_share():
    probabilities = np.array([[0.9, 0.1, 0.0]] * 3 + [[0.2, 0.8, 0.0]] * 3)
    balanced = balance_speaker(probabilities)
    assert np.isfinite(balanced).all()
    np.testing.assert_allclose(balanced.sum(axis=0), 2.0, rtol=1e-4)


def test_speakers_must_match_the_rows():
    with pytest.raises(ValueError, match="2 speakers for 3 rows"):
        balance_per_speaker(np.full((3, 2), 0.5), ["a", "b"])


@pytest.fixture(scope="module")
def balanced_model(normalised_model, demo_lists, tmp_path_factory):
    """The tiny speaker-normalised BiLSTM and a test list giving each speaker enough clips."""
    # the fixture's test list has 7-8 clips per speaker; listed twice, every speaker has at least 12
    lines = (demo_lists / "test_list.txt").read_text().splitlines()
    test_list = tmp_path_factory.mktemp("speaker_balance") / "test_twice.txt"
    test_list.write_text("".join(f"{line}\n" for line in lines + lines))
    return normalised_model[0], test_list


def test_eval_reports_decisions_balanced_per_speaker(balanced_model, tmp_path):
    from mser.executor import Executor
    from mser.metrics import compute_metrics
    from mser.cli.eval import evaluation_config, parse_args
    model_dir, test_list = balanced_model
    result = run_script("eval.py", "--resume_model", model_dir, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path, "--test_list", test_list)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    lines = test_list.read_text().splitlines()
    speakers = {line.split("\t")[2] for line in lines}
    assert metrics["speaker_balanced"]["speakers"] == len(speakers)
    assert "decisions balanced per speaker" in result.stdout

    # the same numbers from the probabilities eval.py decides on, balanced here
    args = parse_args(["--resume_model", str(model_dir), "--use_gpu", "false", "--test_list", str(test_list)])
    executor = Executor.from_config(evaluation_config(args), use_gpu=False)
    y_true, logits, row_speakers = executor.predict_checkpoint(str(model_dir), str(test_list))
    probabilities = np.exp(logits.numpy() - logits.numpy().max(1, keepdims=True))
    balanced = balance_per_speaker(probabilities / probabilities.sum(1, keepdims=True), row_speakers)
    expected = compute_metrics(y_true.tolist(), balanced.argmax(1).tolist(), metrics["labels"])
    assert metrics["speaker_balanced"]["unweighted_accuracy"] == pytest.approx(expected["unweighted_accuracy"])
    assert metrics["speaker_balanced"]["confusion_matrix"] == expected["confusion_matrix"]
    assert metrics["unweighted_accuracy"] == pytest.approx(
        compute_metrics(y_true.tolist(), logits.argmax(1).tolist(), metrics["labels"])["unweighted_accuracy"])


def test_eval_without_enough_clips_per_speaker_reports_plain_decisions_only(balanced_model, demo_lists, tmp_path):
    model_dir, _ = balanced_model
    result = run_script("eval.py", "--resume_model", model_dir, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path, "--test_list", demo_lists / "test_list.txt")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speaker_balanced" not in json.loads(result.stdout.strip().splitlines()[-1])
    assert "decisions balanced per speaker" not in result.stdout


def read_probabilities(path) -> tuple:
    import csv
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = [key[2:] for key in rows[0] if key.startswith("p_")]
    probabilities = np.array([[float(row[f"p_{label}"]) for label in labels] for row in rows])
    return [row["audio_path"] for row in rows], probabilities


def test_infer_balances_one_speakers_clips(balanced_model, demo_lists, tmp_path):
    from pathlib import Path
    model_dir, _ = balanced_model
    first = (demo_lists / "test_list.txt").read_text().splitlines()[0].split("\t")
    folder, speaker = Path(first[0]).parent, first[2]       # all of one test voice's clips
    common = ["--model_path", model_dir, "--use_gpu", "false", "--audio_path", folder, "--speaker", speaker]
    plain = run_script("infer.py", *common, "--output", tmp_path / "plain.csv")
    balanced = run_script("infer.py", *common, "--balance_speaker", "--output", tmp_path / "balanced.csv")
    assert plain.returncode == 0 and balanced.returncode == 0, plain.stderr[-2000:] + balanced.stderr[-2000:]
    paths, plain_probabilities = read_probabilities(tmp_path / "plain.csv")
    balanced_paths, balanced_probabilities = read_probabilities(tmp_path / "balanced.csv")
    assert balanced_paths == paths and len(paths) >= 12
    np.testing.assert_allclose(balanced_probabilities, balance_speaker(plain_probabilities), atol=1e-4)
    np.testing.assert_allclose(balanced_probabilities.sum(axis=0), len(paths) / balanced_probabilities.shape[1],
                               rtol=1e-3)


def test_infer_balance_needs_a_speaker_and_enough_clips(balanced_model, demo_lists, tmp_path):
    from conftest import assert_one_line_error
    model_dir, _ = balanced_model
    clip = (demo_lists / "test_list.txt").read_text().splitlines()[0].split("\t")[0]
    refused = run_script("infer.py", "--model_path", model_dir, "--use_gpu", "false", "--audio_path", clip,
                         "--balance_speaker")
    assert_one_line_error(refused, "--balance_speaker shares one speaker's clips")
    few = run_script("infer.py", "--model_path", model_dir, "--use_gpu", "false", "--audio_path", clip,
                     "--speaker", "x", "--balance_speaker", "--json")
    assert few.returncode == 0, few.stderr[-2000:]
    assert "too few to balance" in few.stderr

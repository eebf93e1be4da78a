"""Ensembles through the real scripts: train.py on an ensemble config, eval.py and infer.py on the
ensemble folder, MSERPredictor on it, and the one-line errors of a bad manifest or config."""
import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import REPO, assert_one_line_error, run_script, tiny_overwrites

MEMBERS = ("BiLSTM_Fbank", "TDNN_FbankProsody")


def common_overwrites(list_dir) -> str:
    """tiny_overwrites without the model and feature choices, which the members make."""
    keep = [part for part in tiny_overwrites(list_dir).split(",")
            if not part.startswith(("model_conf.", "preprocess_conf."))]
    return ",".join(keep)


def write_ensemble_config(path, members) -> None:
    path.write_text(yaml.safe_dump({"ensemble": {"members": members}}))


@pytest.fixture(scope="module")
def ensemble(demo_lists, tmp_path_factory):
    work = tmp_path_factory.mktemp("ensemble")
    config = work / "ensemble.yml"
    write_ensemble_config(config, [
        {"configs": str(REPO / "configs" / "bi_lstm.yml"),
         "overwrites": "model_conf.model_args.hidden_size=32,preprocess_conf.feature_method=Fbank,"
                       "preprocess_conf.method_args.num_mel_bins=40,preprocess_conf.speaker_norm.enable=true"},
        {"configs": str(REPO / "configs" / "tdnn_prosody.yml"),
         "overwrites": "model_conf.model_args.channels=32,model_conf.model_args.stats_channels=64,"
                       "model_conf.model_args.embd_dim=32"}])
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", work / "models", "--overwrites", common_overwrites(demo_lists))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "models" / "Ensemble", result


def test_train_writes_members_and_manifest(ensemble):
    directory, result = ensemble
    manifest = yaml.safe_load((directory / "ensemble.yml").read_text())
    assert manifest["members"] == [f"{name}/best_model" for name in MEMBERS]
    assert manifest["combine"] == "mean"                 # the config names no rule: the default
    for name in MEMBERS:
        assert (directory / name / "best_model" / "model.pth").is_file()
    assert "ensemble member 2/2" in result.stdout and "ensemble of 2 models" in result.stdout
    # the members leave the test list to eval.py, which scores the ensemble and each member once
    assert "test set, best model" not in result.stdout
    assert result.stdout.count("the test list left to eval.py") == 2


def test_eval_scores_the_averaged_probabilities(ensemble, demo_lists, tmp_path):
    directory, _ = ensemble
    result = run_script("eval.py", "--resume_model", directory, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path, "--test_list", demo_lists / "test_list.txt")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["num_samples"] == len((demo_lists / "test_list.txt").read_text().splitlines())
    assert sorted(metrics["members"]) == sorted(str(directory / name / "best_model") for name in MEMBERS)
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_predictor_averages_its_members(ensemble, demo_lists):
    from mser import MSERPredictor
    from mser.ensemble import EnsemblePredictor
    directory, _ = ensemble
    clip = (demo_lists / "test_list.txt").read_text().splitlines()[0].split("\t")[0]
    clip = clip if clip.startswith("/") else str(REPO / clip)
    predictor = MSERPredictor(model_path=str(directory), use_gpu=False)
    assert isinstance(predictor, EnsemblePredictor)
    members = [MSERPredictor(model_path=str(directory / name / "best_model"), use_gpu=False) for name in MEMBERS]
    scores = predictor.predict_scores(clip)
    member_scores = [member.predict_scores(clip) for member in members]
    for label, probability in scores.items():
        assert probability == pytest.approx(np.mean([s[label] for s in member_scores]), abs=1e-5)
    label, score = predictor.predict(clip)
    assert label == next(iter(scores)) and score == pytest.approx(scores[label], abs=1e-6)
    segments = predictor.predict_long(clip, window=1.0, hop=0.5)
    assert segments and all(segment[2] in predictor.labels for segment in segments)
    assert predictor.embed(clip).shape == (sum(m.embed(clip).shape[0] for m in members),)


def test_infer_script_on_an_ensemble(ensemble, demo_lists):
    directory, _ = ensemble
    clip = (demo_lists / "test_list.txt").read_text().splitlines()[0].split("\t")[0]
    result = run_script("infer.py", "--model_path", directory, "--audio_path", clip, "--use_gpu", "false",
                        "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"]


def test_a_missing_member_is_one_line(ensemble, tmp_path):
    directory, _ = ensemble
    copy = tmp_path / "Ensemble"
    shutil.copytree(directory, copy)
    shutil.rmtree(copy / MEMBERS[1])
    result = run_script("eval.py", "--resume_model", copy, "--use_gpu", "false", "--output_dir", tmp_path / "out")
    assert_one_line_error(result, "member checkpoint")


def test_members_with_other_labels_are_refused(ensemble, tmp_path):
    from mser.ensemble import write_manifest
    from mser.errors import CheckpointError
    directory, _ = ensemble
    other = tmp_path / "other"
    shutil.copytree(directory / MEMBERS[1] / "best_model", other)
    (other / "label_list.txt").write_text("calm\nexcited\n")
    with pytest.raises(CheckpointError, match="disagree on the labels"):
        write_manifest(str(tmp_path / "Ensemble"), [str(directory / MEMBERS[0] / "best_model"), str(other)])


@pytest.mark.parametrize("members, fragment", [
    ([{"configs": "bi_lstm.yml"}], "at least two members"),
    ([{"configs": "bi_lstm.yml"}, {"configs": "bi_lstm.yml", "epochs": 3}], "member 2 must be a mapping"),
    ([{"configs": "bi_lstm.yml"}, {"configs": "bi_lstm.yml"}], "must differ in model or features"),
])
def test_bad_ensemble_configs_are_one_line(members, fragment, tmp_path, demo_lists):
    config = tmp_path / "ensemble.yml"
    write_ensemble_config(config, members)
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", common_overwrites(demo_lists))
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "models").exists()


def test_extract_features_points_an_ensemble_config_to_train_py(tmp_path):
    result = run_script("extract_features.py", "--configs", "ensemble_large", "--use_gpu", "false",
                        "--overwrites", f"dataset_conf.feature_cache.cache_dir={tmp_path / 'cache'}")
    assert_one_line_error(result, "is an ensemble config: train.py --configs ensemble_large")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name, size", [("ensemble", 3), ("ensemble_large", 4)])
def test_shipped_ensemble_config_names_loadable_members(name, size):
    from mser.config import load_config
    from mser.ensemble import is_ensemble_config, read_ensemble_recipe
    from mser.features import build_featurizer
    assert is_ensemble_config(name) and not is_ensemble_config("egemaps")
    specs = read_ensemble_recipe(str(REPO / "configs" / f"{name}.yml")).members
    assert len(specs) == size
    for spec in specs:
        config = load_config(spec["configs"], spec["overwrites"])
        assert config["preprocess_conf"]["speaker_norm"]["enable"]
        assert spec["data_augment_configs"] is None or spec["data_augment_configs"].endswith(".yml")
        # method_args is an open section: a featurizer argument the member's overwrites misspell fails here
        build_featurizer(config["preprocess_conf"]["feature_method"], config["dataset_conf"]["dataset"]["sample_rate"],
                         **config["preprocess_conf"]["method_args"])


def test_a_second_run_skips_finished_members_and_resumes_the_rest(ensemble, demo_lists, tmp_path):
    directory, _ = ensemble
    copy = tmp_path / "models" / "Ensemble"
    shutil.copytree(directory, copy)
    (copy / "ensemble.yml").unlink()   # as if killed before the end: one more epoch asked of each member
    config = directory.parent.parent / "ensemble.yml"
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models",
                        "--overwrites", common_overwrites(demo_lists) + ",train_conf.max_epoch=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BiLSTM_Fbank, resuming from" in result.stdout and "TDNN_FbankProsody, resuming from" in result.stdout
    assert (copy / "ensemble.yml").is_file()
    assert json.loads((copy / MEMBERS[1] / "last_model" / "model.state").read_text())["epoch"] == 2
    again = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                       "--save_model_path", tmp_path / "models",
                       "--overwrites", common_overwrites(demo_lists) + ",train_conf.max_epoch=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already trained") == 2


@pytest.mark.parametrize("statistics", ["whole", "running"])
def test_sessions_average_members_each_with_its_own_statistics(statistics, ensemble, demo_lists):
    from mser import MSERPredictor
    directory, _ = ensemble
    rows = [line.split("\t") for line in (demo_lists / "test_list.txt").read_text().splitlines()]
    paths = [row[0] for row in rows if row[2] == rows[0][2]][:5]
    predictor = MSERPredictor(model_path=str(directory), use_gpu=False)
    members = [MSERPredictor(model_path=str(directory / name / "best_model"), use_gpu=False) for name in MEMBERS]
    waveforms = [predictor.load(path) for path in paths]
    together = predictor.batched_probabilities(waveforms, "visitor", statistics)
    apart = [member.batched_probabilities(waveforms, "visitor", statistics) for member in members]
    np.testing.assert_allclose(together, np.mean(apart, axis=0), rtol=0, atol=1e-5)
    assert predictor.members[0].speaker_norm.speakers["visitor"].clips == len(paths)   # BiLSTM_Fbank normalises
    recording = np.concatenate(waveforms)
    segments = predictor.segment_probabilities(recording, 1.0, 0.5, sample_rate=16000, statistics=statistics)
    member_segments = [member.segment_probabilities(recording, 1.0, 0.5, sample_rate=16000, statistics=statistics)
                       for member in members]
    np.testing.assert_allclose(np.stack([p for _, _, p in segments]),
                               np.mean([[p for _, _, p in s] for s in member_segments], axis=0), rtol=0, atol=1e-5)


def test_members_may_differ_in_db_normalisation(ensemble, demo_lists, tmp_path):
    from mser import MSERPredictor
    directory, _ = ensemble
    copy = tmp_path / "Ensemble"
    shutil.copytree(directory, copy)
    config_path = copy / MEMBERS[1] / "best_model" / "config.yml"
    config = yaml.safe_load(config_path.read_text())
    config["dataset_conf"]["dataset"].update(use_dB_normalization=True, target_dB=-30)
    config_path.write_text(yaml.safe_dump(config))
    clip = (demo_lists / "test_list.txt").read_text().splitlines()[0].split("\t")[0]
    clip = clip if clip.startswith("/") else str(REPO / clip)
    predictor = MSERPredictor(model_path=str(copy), use_gpu=False)
    members = [MSERPredictor(model_path=str(copy / name / "best_model"), use_gpu=False) for name in MEMBERS]
    assert [m.clip.use_db_normalization for m in members] == [False, True]
    quiet = predictor.load(clip) * np.float32(0.1)   # each member levels its own copy of the clip
    scores = predictor.predict_scores(quiet, sample_rate=16000)
    member_scores = [member.predict_scores(quiet, sample_rate=16000) for member in members]
    for label, probability in scores.items():
        assert probability == pytest.approx(np.mean([s[label] for s in member_scores]), abs=1e-5)
    segments = predictor.segment_probabilities(quiet, 1.0, 0.5, sample_rate=16000)
    member_segments = [member.segment_probabilities(quiet, 1.0, 0.5, sample_rate=16000) for member in members]
    np.testing.assert_allclose(np.stack([p for _, _, p in segments]),
                               np.mean([[p for _, _, p in s] for s in member_segments], axis=0), rtol=0, atol=1e-5)


def test_eval_balances_the_averaged_probabilities_per_speaker(ensemble, demo_lists, tmp_path):
    directory, _ = ensemble
    lines = (demo_lists / "test_list.txt").read_text().splitlines()
    test_list = tmp_path / "test_twice.txt"      # every speaker then has enough clips to balance
    test_list.write_text("".join(f"{line}\n" for line in lines + lines))
    result = run_script("eval.py", "--resume_model", directory, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path / "eval", "--test_list", test_list)
    assert result.returncode == 0, result.stderr[-3000:]
    balanced = json.loads(result.stdout.strip().splitlines()[-1])["speaker_balanced"]
    assert balanced["speakers"] == len({line.split("\t")[2] for line in lines})
    assert sum(map(sum, balanced["confusion_matrix"])) == 2 * len(lines)


def test_geometric_combination_keeps_a_class_any_member_rules_out_unlikely():
    from mser.ensemble import combine_probabilities
    first = np.array([[0.50, 0.50, 0.00], [0.2, 0.3, 0.5]])
    second = np.array([[0.05, 0.45, 0.50], [0.2, 0.3, 0.5]])
    mean = combine_probabilities([first, second], "mean")
    geometric = combine_probabilities([first, second], "geometric")
    np.testing.assert_allclose(mean, (first + second) / 2, atol=1e-7)
    assert mean[0].argmax() == 1 and geometric[0].argmax() == 1
    assert geometric[0, 2] < 1e-5 < mean[0, 2]                   # one member's 0 outweighs the other's 0.5
    expected = np.sqrt(first[0, :2] * second[0, :2]) / np.sqrt(first[0, :2] * second[0, :2]).sum()
    np.testing.assert_allclose(geometric[0, :2], expected, rtol=1e-5)
    np.testing.assert_allclose(geometric[1], first[1], rtol=1e-6)  # members that agree: their answer
    np.testing.assert_allclose(geometric.sum(axis=1), 1.0, atol=1e-6)


def test_a_geometric_manifest_is_used_by_eval_and_the_predictor(ensemble, demo_lists, tmp_path):
    from mser import MSERPredictor
    from mser.ensemble import combine_probabilities, member_probabilities, read_combine, write_manifest
    directory, _ = ensemble
    assert read_combine(str(directory)) == "mean"
    members = [str(directory / name / "best_model") for name in MEMBERS]
    geometric = tmp_path / "Geometric"
    write_manifest(str(geometric), members, combine="geometric")
    assert yaml.safe_load((geometric / "ensemble.yml").read_text())["combine"] == "geometric"

    test_list = demo_lists / "test_list.txt"
    result = run_script("eval.py", "--resume_model", geometric, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path / "eval", "--test_list", test_list)
    assert result.returncode == 0, result.stderr[-3000:]
    parts = [member_probabilities(member, str(test_list), False) for member in members]
    combined = combine_probabilities([part[1] for part in parts], "geometric")
    expected = (combined.argmax(1) == parts[0][0]).mean()
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] == pytest.approx(expected) and metrics["combine"] == "geometric"
    assert "ensemble of 2 members, their probabilities combined by their geometric mean" in result.stdout

    clip = test_list.read_text().splitlines()[0].split("\t")[0]
    clip = clip if clip.startswith("/") else str(REPO / clip)
    scores = MSERPredictor(model_path=str(geometric), use_gpu=False).predict_scores(clip)
    member_scores = [MSERPredictor(model_path=m, use_gpu=False).predict_scores(clip) for m in members]
    labels = list(member_scores[0])
    expected = combine_probabilities([np.array([[s[label] for label in labels]]) for s in member_scores],
                                     "geometric")[0]
    for label, probability in zip(labels, expected):
        assert scores[label] == pytest.approx(probability, abs=1e-5)


def test_the_combine_rule_of_a_config_and_a_manifest_is_checked(ensemble, tmp_path, demo_lists):
    from mser.ensemble import read_combine, read_ensemble_recipe
    config = tmp_path / "ensemble.yml"
    config.write_text(yaml.safe_dump({"ensemble": {"members": [{"configs": "bi_lstm.yml"},
                                                               {"configs": "tdnn_prosody.yml"}],
                                                   "combine": "median"}}))
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", common_overwrites(demo_lists))
    assert_one_line_error(result, "ensemble.combine must be one of mean, geometric")
    assert read_ensemble_recipe("ensemble").combine == "geometric"      # the shipped config, as cross-validated
    directory, _ = ensemble
    copy = tmp_path / "Ensemble"
    shutil.copytree(directory, copy)
    manifest = yaml.safe_load((copy / "ensemble.yml").read_text())
    (copy / "ensemble.yml").write_text(yaml.safe_dump({**manifest, "combine": "max"}))
    result = run_script("eval.py", "--resume_model", copy, "--use_gpu", "false", "--output_dir", tmp_path / "out")
    assert_one_line_error(result, "combine must be one of mean, geometric, got 'max'")
    with pytest.raises(Exception, match="got 'max'"):
        read_combine(str(copy))


def test_views_of_an_ensemble_average_the_ensembles_answers(ensemble, demo_lists):
    from mser import MSERPredictor
    from mser.views import telephone
    directory, _ = ensemble
    rows = [line.split("\t") for line in (demo_lists / "test_list.txt").read_text().splitlines()]
    paths = [row[0] for row in rows if row[2] == rows[0][2]][:4]
    predictor = MSERPredictor(model_path=str(directory), use_gpu=False, views=["telephone"])
    as_recorded, by_phone = (MSERPredictor(model_path=str(directory), use_gpu=False) for _ in range(2))
    waveforms = [as_recorded.load(path) for path in paths]
    together = predictor.batched_probabilities(waveforms, "visitor", "whole")
    expected = (as_recorded.batched_probabilities(waveforms, "visitor", "whole")
                + by_phone.batched_probabilities([telephone(w, 16000) for w in waveforms], "visitor", "whole")) / 2
    np.testing.assert_allclose(together, expected, rtol=0, atol=1e-5)


def test_a_folder_that_names_views_runs_them_unless_told_otherwise(ensemble, demo_lists, tmp_path):
    from mser import MSERPredictor
    from mser.ensemble import EnsemblePredictor, read_views, write_manifest
    from mser.views import ViewPredictor
    directory, _ = ensemble
    assert read_views(str(directory)) == []
    viewed = tmp_path / "Viewed"
    write_manifest(str(viewed), [str(directory / name / "best_model") for name in MEMBERS], "mean", ["telephone"])
    assert yaml.safe_load((viewed / "ensemble.yml").read_text())["views"] == ["telephone"]
    predictor = MSERPredictor(model_path=str(viewed), use_gpu=False)
    assert isinstance(predictor, ViewPredictor) and predictor.views == ["telephone"]
    assert isinstance(predictor.parts[0], EnsemblePredictor) and len(predictor.parts) == 2
    assert type(MSERPredictor(model_path=str(viewed), use_gpu=False, views="none")) is EnsemblePredictor
    test_list = demo_lists / "test_list.txt"
    result = run_script("eval.py", "--resume_model", viewed, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path / "eval", "--test_list", test_list)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["views"] == ["as_recorded", "telephone"]
    plain = run_script("eval.py", "--resume_model", viewed, "--use_gpu", "false", "--json", "--views", "none",
                       "--output_dir", tmp_path / "plain", "--test_list", test_list)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "views" not in json.loads(plain.stdout.strip().splitlines()[-1]) and "ensemble member" in plain.stdout


def test_the_views_of_a_config_and_a_manifest_are_checked(ensemble, tmp_path, demo_lists):
    config = tmp_path / "ensemble.yml"
    config.write_text(yaml.safe_dump({"ensemble": {"members": [{"configs": "bi_lstm.yml"},
                                                               {"configs": "tdnn_prosody.yml"}],
                                                   "views": ["telefone"]}}))
    result = run_script("train.py", "--configs", config, "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", common_overwrites(demo_lists))
    assert_one_line_error(result, "ensemble.views: unknown test-time view 'telefone' (did you mean 'telephone'?)")
    from mser.ensemble import read_ensemble_recipe
    assert read_ensemble_recipe("ensemble").views == ["telephone"]      # the shipped config, as cross-validated
    directory, _ = ensemble
    copy = tmp_path / "Ensemble"
    shutil.copytree(directory, copy)
    manifest = yaml.safe_load((copy / "ensemble.yml").read_text())
    (copy / "ensemble.yml").write_text(yaml.safe_dump({**manifest, "views": ["underwater"]}))
    result = run_script("infer.py", "--model_path", copy, "--audio_path", REPO / "dataset" / "demo", "--use_gpu",
                        "false")
    assert_one_line_error(result, "unknown test-time view 'underwater'")


def test_member_checkpoint_last_names_the_members_last_epochs(ensemble, demo_lists, tmp_path):
    from mser.ensemble import read_ensemble_recipe
    directory, _ = ensemble
    copy = tmp_path / "models" / "Ensemble"
    shutil.copytree(directory, copy)
    config = yaml.safe_load((directory.parent.parent / "ensemble.yml").read_text())
    config["ensemble"]["member_checkpoint"] = "last"
    (tmp_path / "last.yml").write_text(yaml.safe_dump(config))
    result = run_script("train.py", "--configs", tmp_path / "last.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", common_overwrites(demo_lists))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("already trained") == 2          # nothing retrained: only the manifest changes
    assert yaml.safe_load((copy / "ensemble.yml").read_text())["members"] == [f"{n}/last_model" for n in MEMBERS]
    scored = run_script("eval.py", "--resume_model", copy, "--use_gpu", "false", "--json",
                        "--output_dir", tmp_path / "out", "--test_list", demo_lists / "test_list.txt")
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert sorted(json.loads(scored.stdout.strip().splitlines()[-1])["members"]) == sorted(
        str(copy / name / "last_model") for name in MEMBERS)
    assert read_ensemble_recipe(str(directory.parent.parent / "ensemble.yml")).member_checkpoint == "best_model"
    config["ensemble"]["member_checkpoint"] = "final"
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(config))
    bad = run_script("train.py", "--configs", tmp_path / "bad.yml", "--use_gpu", "false", "--log_dir", "",
                     "--save_model_path", tmp_path / "other", "--overwrites", common_overwrites(demo_lists))
    assert_one_line_error(bad, "ensemble.member_checkpoint must be one of best, last, got 'final'")

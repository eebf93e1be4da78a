"""infer.py as a user runs it: one file, a long recording, a folder, --json, and its errors."""
import json
import sys

import numpy as np
import pytest
import soundfile

from conftest import REPO, assert_one_line_error, run_script
from mser.cli.infer import main
from mser.export import features_of, has_onnxscript
from mser.predictor import MSERPredictor

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
from mic_fixtures import LABELS, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]
sys.path.insert(0, str(REPO / "tools"))   # tools/export_onnx.py, imported by a test below


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """A folder with a clip of each class, a 6 s recording (3 s "low" then 3 s "noise") in a
    subfolder, a corrupt WAV and a clip too short to classify."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(21)
    for label in LABELS:
        write_clip(folder / f"{label}.wav", synthetic_clip(label, 1.5, rng))
    (folder / "talks").mkdir()
    recording = np.concatenate([synthetic_clip("low", 3.0, rng), synthetic_clip("noise", 3.0, rng)])
    write_clip(folder / "talks" / "low_then_noise.wav", recording)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt not really audio")
    write_clip(folder / "short.wav", synthetic_clip("low", 0.2, rng))
    (folder / "notes.txt").write_text("not audio, not listed")
    return folder


def json_lines(stdout: str) -> list:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_json_for_a_clip_and_a_long_recording(tiny_model, audio_dir):
    clip = run_script("infer.py", "--model_path", tiny_model, "--audio_path", audio_dir / "high.wav", "--json")
    assert clip.returncode == 0, clip.stderr
    [result] = json_lines(clip.stdout)
    assert result["audio_path"] == str(audio_dir / "high.wav")
    assert result["label"] == "high" and result["score"] == result["scores"]["high"] > 0.5
    assert list(result["scores"])[0] == "high" and len(result["scores"]) == 3
    assert result["segments"] == [] and result["duration"] == 1.5

    long = run_script("infer.py", "--model_path", tiny_model, "--audio_path",
                      audio_dir / "talks" / "low_then_noise.wav", "--json", "--top_k", "2", "--hop", "1.0")
    assert long.returncode == 0, long.stderr
    [result] = json_lines(long.stdout)
    segments = result["segments"]
    assert [(s["start"], s["end"]) for s in segments] == [(float(i), i + 1.0) for i in range(6)]
    assert [s["label"] for s in segments] == ["low"] * 3 + ["noise"] * 3
    assert len(result["scores"]) == 2 and result["duration"] == 6.0


def test_a_folder_is_classified_and_bad_files_are_skipped(tiny_model, audio_dir):
    run = run_script("infer.py", "--model_path", tiny_model, "--audio_path", audio_dir, "--json")
    assert run.returncode == 0, run.stderr
    results = {r["audio_path"].replace(str(audio_dir) + "/", ""): r for r in json_lines(run.stdout)}
    assert sorted(results) == ["corrupt.wav", "high.wav", "low.wav", "noise.wav", "short.wav",
                               "talks/low_then_noise.wav"]
    for label in LABELS:
        assert results[f"{label}.wav"]["label"] == label
    assert "cannot" in results["corrupt.wav"]["error"]
    assert "min_duration" in results["short.wav"]["error"]
    assert results["talks/low_then_noise.wav"]["segments"]
    assert "skipped 2 of 6 files" in run.stderr and "6/6" in run.stderr  # the tqdm bar ends full


def test_text_output_shows_top_k_and_segment_times(tiny_model, audio_dir, capsys):
    main(["--model_path", tiny_model, "--audio_path", str(audio_dir / "talks" / "low_then_noise.wav"),
          "--window", "1.5", "--hop", "1.5"])
    first, *segments = capsys.readouterr().out.splitlines()
    assert first.startswith(f"{audio_dir / 'talks' / 'low_then_noise.wav'}: ") and "over 6.0 s" in first
    assert first.count(" 0.") + first.count(" 1.0") >= 4   # the label's score and three ranked scores
    parsed = [line.split() for line in segments]            # start - end s label score
    assert [(p[0], p[2], p[4]) for p in parsed] == [("0.00", "1.50", "low"), ("1.50", "3.00", "low"),
                                                     ("3.00", "4.50", "noise"), ("4.50", "6.00", "noise")]


def test_threshold_reports_unknown(tiny_model, audio_dir, capsys):
    rng = np.random.default_rng(22)
    mixed = synthetic_clip("low", 1.5, rng) + synthetic_clip("high", 1.5, rng) + synthetic_clip("noise", 1.5, rng)
    path = write_clip(audio_dir.parent / "mixed.wav", mixed / np.max(np.abs(mixed)) * 0.5)
    main(["--model_path", tiny_model, "--audio_path", path, "--json"])
    score = json.loads(capsys.readouterr().out)["score"]
    main(["--model_path", tiny_model, "--audio_path", path, "--json", "--threshold", str(min(1.0, score + 1e-3))])
    unsure = json.loads(capsys.readouterr().out)
    assert unsure["label"] == "unknown" and unsure["score"] == pytest.approx(score)


@pytest.mark.parametrize("case, fragment", [
    ("missing audio", "audio path not found"),
    ("corrupt audio", "cannot read audio header"),
    ("missing checkpoint", "checkpoint directory not found"),
    ("not a checkpoint", "is not a checkpoint directory"),
    ("bad top_k", "--top_k must be at least 1"),
    ("folder without audio", "no audio files"),
])
def test_errors_are_one_line_and_exit_2(tiny_model, audio_dir, tmp_path, capsys, case, fragment):
    args = {
        "missing audio": [tiny_model, audio_dir / "nope.wav"],
        "corrupt audio": [tiny_model, audio_dir / "corrupt.wav"],
        "missing checkpoint": [tmp_path / "no_model", audio_dir / "low.wav"],
        "not a checkpoint": [audio_dir, audio_dir / "low.wav"],
        "bad top_k": [tiny_model, audio_dir / "low.wav", "--top_k", "0"],
        "folder without audio": [tiny_model, tmp_path],
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        main(["--model_path", str(args[0]), "--audio_path", *map(str, args[1:])])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and fragment in captured.err


def test_a_checkpoint_with_broken_weights(tiny_model, tmp_path, audio_dir, capsys):
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "model.pth").write_bytes(b"not a torch file")
    for name in ("config.yml", "label_list.txt"):
        (broken / name).write_bytes(open(f"{tiny_model}/{name}", "rb").read())
    with pytest.raises(SystemExit) as exit_info:
        main(["--model_path", str(broken), "--audio_path", str(audio_dir / "low.wav")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "cannot load" in err


def test_onnx_export_matches_pytorch_and_runs_without_mser(tiny_model, audio_dir, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e .[onnx])")
    output = tmp_path / "tiny.onnx"
    run = run_script("tools/export_onnx.py", "--model_path", tiny_model, "--audio_path", audio_dir / "low.wav",
                     "--output", output)
    assert run.returncode == 0, run.stderr
    assert f"wrote {output}: " in run.stdout
    difference = float(run.stdout.split("on probabilities = ")[1].split()[0])
    assert difference < 1e-4
    # What the README shows: onnxruntime, numpy and soundfile only.
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels, input_name = meta["labels"].split(","), meta["input"]
    assert labels == LABELS and meta["sample_rate"] == "16000"
    # With onnxscript (the [onnx] extra) featurizer and model export as one graph from waveforms;
    # without it, the model alone is exported and takes mser's features.
    assert input_name == ("waveforms" if has_onnxscript() else "features"), run.stderr[-500:]
    predictor = MSERPredictor(tiny_model)
    for label in LABELS:
        samples, _ = soundfile.read(str(audio_dir / f"{label}.wav"), dtype="float32")
        inputs = samples[None, :] if input_name == "waveforms" else features_of(predictor, samples[None, :])
        probabilities = session.run(["probabilities"], {input_name: inputs})[0][0]
        assert labels[int(np.argmax(probabilities))] == label


def test_onnx_export_errors_are_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    from export_onnx import main as export_main
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVE")
    monkeypatch.chdir(tmp_path)   # where the checkpoint's relative test list does not exist
    for args, fragment in [([], "pass --audio_path"), (["--audio_path", str(corrupt)], "cannot decode")]:
        with pytest.raises(SystemExit) as exit_info:
            export_main(["--model_path", tiny_model, *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1
        assert err.startswith("error: ") and fragment in err


def write_wav_scp(audio_dir, tmp_path):
    """Kaldi wav.scp lines for three good clips, the corrupt one and a missing one, plus a plain list."""
    names = {"utt_low": "low.wav", "utt_high": "high.wav", "utt_noise": "noise.wav", "utt_bad": "corrupt.wav",
             "utt_gone": "gone.wav"}
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{utt} {audio_dir / name}\n" for utt, name in names.items()))
    return scp, names


def test_audio_list_from_wav_scp_to_csv_with_embeddings(tiny_model, audio_dir, tmp_path):
    scp, names = write_wav_scp(audio_dir, tmp_path)
    run = run_script("infer.py", "--model_path", tiny_model, "--audio_list", scp, "--output", tmp_path / "out.csv",
                     "--embeddings", tmp_path / "emb.npy")
    assert run.returncode == 0, run.stderr
    assert "skipped 2 of 5 files" in run.stderr and "5/5" in run.stderr and run.stdout == ""
    assert f"wrote 3 results to {tmp_path / 'out.csv'}" in run.stderr
    import csv
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [row["id"] for row in rows] == list(names)
    for row in rows[:3]:
        assert row["label"] == row["id"][4:] and row["error"] == ""
        assert sum(float(row[f"p_{label}"]) for label in LABELS) == pytest.approx(1.0, abs=1e-4)
    assert "cannot" in rows[3]["error"] and "not found" in rows[4]["error"]
    embeddings = np.load(tmp_path / "emb.npy")
    assert embeddings.shape == (5, 32)
    assert np.all(np.isfinite(embeddings[:3])) and np.all(np.isnan(embeddings[3:]))
    predictor = MSERPredictor(tiny_model)
    assert np.allclose(embeddings[0], predictor.embed(str(audio_dir / "low.wav")), atol=1e-4)


def test_audio_list_of_paths_to_json_lines(tiny_model, audio_dir, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# clips\n{audio_dir / 'high.wav'}\n\n{audio_dir / 'talks' / 'low_then_noise.wav'}\n")
    run = run_script("infer.py", "--model_path", tiny_model, "--audio_list", listing, "--output",
                     tmp_path / "out.jsonl", "--hop", "1.0")
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["audio_path"] for r in results] == [str(audio_dir / "high.wav"),
                                                 str(audio_dir / "talks" / "low_then_noise.wav")]
    assert "id" not in results[0] and results[0]["label"] == "high"
    assert [s["label"] for s in results[1]["segments"]] == ["low"] * 3 + ["noise"] * 3


@pytest.mark.parametrize("args, fragment", [
    (["--audio_list", "missing.txt"], "audio list not found"),
    (["--audio_path", "x.wav", "--output", "out.txt"], "must end in .jsonl or .csv"),
    (["--audio_path", "x.wav", "--embeddings", "out.txt"], "must end in .npy"),
    (["--audio_list", "missing.txt", "--plot", "t.png"], "--plot draws one recording"),
])
def test_list_output_and_plot_options_are_checked(tiny_model, args, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model_path", tiny_model, *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and fragment in err


def test_a_label_list_in_configs_is_refused_like_one_in_overwrites(tiny_model, audio_dir, tmp_path):
    import yaml
    (tmp_path / "labels.txt").write_text("noise\nhigh\nlow\n")
    config = yaml.safe_load(open(f"{tiny_model}/config.yml"))
    config["dataset_conf"]["label_list_path"] = str(tmp_path / "labels.txt")
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    for option, value in (("--configs", tmp_path / "config.yml"),
                          ("--overwrites", f"dataset_conf.label_list_path={tmp_path / 'labels.txt'}")):
        run = run_script("infer.py", "--model_path", tiny_model, "--audio_path", audio_dir / "low.wav", option, value)
        assert_one_line_error(run, "was trained on labels low, high, noise, but the label list")

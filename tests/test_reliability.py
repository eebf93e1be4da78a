"""Bad input, faults and interruptions: unusable clips, bad list lines, wrong checkpoints, unusable
paths, SIGKILL and Ctrl-C, through the real scripts on a slice of the demo corpus."""
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile

from conftest import PYTHON, REPO, default_sigint, run_script, tiny_overwrites
from mser import checkpoint
from mser.cli.train import main as train_main
from mser.errors import CheckpointError

MODEL_DIR = "BiLSTM_Fbank"
# Each training subprocess uses one torch thread: on a busy machine, several threads per process
# mostly wait for each other, and these tests check behaviour, not speed.
ENV = {"OMP_NUM_THREADS": "1"}


def overwrites_for(list_dir, save_path, **overwrites) -> str:
    """tiny_overwrites, with any feature cache kept beside the checkpoints (never in the repository)."""
    cache_dir = {"dataset_conf.feature_cache.cache_dir": save_path.parent / f"{save_path.name}_features"}
    return tiny_overwrites(list_dir, **{**cache_dir, **overwrites})


def train_args(list_dir, save_path, *args, **overwrites) -> list:
    return ["--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "", "--save_model_path", save_path,
            *args, "--overwrites", overwrites_for(list_dir, save_path, **overwrites)]


def train(list_dir, save_path, *args, **overwrites) -> subprocess.CompletedProcess:
    """train.py in a subprocess, as a user runs it."""
    return run_script("train.py", *train_args(list_dir, save_path, *args, **overwrites), env=ENV)


def assert_error_exit(code: int, stderr: str, fragment: str) -> None:
    """Exit code 2, no traceback, and the last line of stderr a single `error: ...` that says
    `fragment` (progress bars may come before it)."""
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.count("error: ") == 1, stderr
    last = stderr.strip().split("\n")[-1].split("\r")[-1].strip()
    assert last.startswith("error: ") and fragment in last, last


def run_main(main, capsys, *argv):
    """(exit code, stdout, stderr) of a script's main() run in this process."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def list_lines(path) -> list:
    return path.read_text().splitlines()


# ---------------------------------------------------------------- unusable clips in training

@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory):
    """One clip for each way a listed file can be unusable."""
    folder = tmp_path_factory.mktemp("bad_clips")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio" * 4)
    soundfile.write(folder / "short.wav", np.full(1600, 0.1, dtype=np.float32), 16000)  # 0.1 s
    samples = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    samples[500] = np.nan
    soundfile.write(folder / "nan.wav", samples, 16000, subtype="FLOAT")
    return {"is empty": folder / "empty.wav", "cannot decode": folder / "garbage.wav",
            "shorter than min_duration": folder / "short.wav", "NaN or infinite": folder / "nan.wav"}


def train_with_bad_clips(demo_lists, bad_clips, work, feature_cache: bool) -> subprocess.CompletedProcess:
    """Two epochs of a tiny BiLSTM on the demo slice plus the unusable clips; validation on the
    test list, so that every unusable clip is a training clip."""
    lines = list_lines(demo_lists / "train_list.txt") + [f"{path}\t0" for path in bad_clips.values()]
    (work / "train_list.txt").write_text("\n".join(lines) + "\n")
    for name in ("test_list.txt", "label_list.txt"):
        shutil.copy(demo_lists / name, work / name)
    result = train(work, work / "models", **{"train_conf.max_epoch": 2, "dataset_conf.val_list": work / "test_list.txt",
                                             "dataset_conf.feature_cache.enable": feature_cache})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def bad_clip_run(demo_lists, bad_clips, tmp_path_factory):
    """The training run from audio (its checkpoints serve the tests of the other scripts)."""
    work = tmp_path_factory.mktemp("bad_clip_run")
    return work, train_with_bad_clips(demo_lists, bad_clips, work, feature_cache=False)


def assert_skipped_once_and_counted(result, bad_clips) -> None:
    for reason, path in bad_clips.items():
        logged = [line for line in result.stdout.splitlines() if line.startswith(f"skipping {path}: ")]
        assert len(logged) == 1 and reason in logged[0], result.stdout
    summaries = [line for line in result.stdout.splitlines() if line.startswith("epoch ") and " | " in line]
    assert len(summaries) == 2, result.stdout
    assert all(line.endswith(f"| {len(bad_clips)} clips skipped") for line in summaries), summaries


def test_unusable_clips_are_skipped_logged_once_and_counted(bad_clip_run, bad_clips):
    assert_skipped_once_and_counted(bad_clip_run[1], bad_clips)


def test_unusable_clips_are_skipped_from_the_feature_cache_too(demo_lists, bad_clips, tmp_path):
    result = train_with_bad_clips(demo_lists, bad_clips, tmp_path, feature_cache=True)
    assert f"({len(bad_clips)} unusable clips skipped)" in result.stdout  # when the cache was built
    assert_skipped_once_and_counted(result, bad_clips)


def test_a_batch_left_with_one_clip_is_skipped_when_the_model_has_batch_norm(demo_lists, tmp_path):
    """17 clips in batches of 16: the last batch holds one clip, which batch norm cannot train on."""
    (tmp_path / "train_list.txt").write_text("\n".join(list_lines(demo_lists / "train_list.txt")[:17]) + "\n")
    for name in ("test_list.txt", "label_list.txt"):
        shutil.copy(demo_lists / name, tmp_path / name)
    overwrites = overwrites_for(tmp_path, tmp_path / "models", **{
        "dataset_conf.val_list": tmp_path / "test_list.txt", "model_conf.model": "EcapaTdnn",
        "model_conf.model_args.channels": 16, "model_conf.model_args.mfa_channels": 48,
        "model_conf.model_args.se_channels": 8, "model_conf.model_args.embd_dim": 16})
    overwrites = ",".join(item for item in overwrites.split(",")
                          if not item.startswith("model_conf.model_args.hidden_size="))
    result = run_script("train.py", "--configs", "configs/ecapa_tdnn.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", tmp_path / "models", "--overwrites", overwrites, env=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "the only usable clip of its batch; batch norm needs two" in result.stdout
    assert "| 1 clips skipped" in result.stdout


# ---------------------------------------------------------------- bad list lines

@pytest.mark.parametrize("bad_line, fragment", [
    ("/nowhere/clip.wav\t0", "audio file /nowhere/clip.wav on line 3 of {list} does not exist"),
    ("{audio} 0", "line 3 of {list} must be 'path<TAB>label_index'"),
    ("{audio}\t9", "label 9 on line 3 of {list} is out of range: the label list has 6 labels"),
    ("{audio}\tangry", "label 'angry' on line 3 of {list} is not an integer"),
])
def test_a_bad_list_line_is_reported_with_file_and_line_before_training(demo_lists, tmp_path, capsys, bad_line,
                                                                        fragment):
    lines = list_lines(demo_lists / "train_list.txt")
    audio = lines[0].split("\t")[0]
    train_list = tmp_path / "train_list.txt"
    train_list.write_text("\n".join(lines[:2] + [bad_line.format(audio=audio)] + lines[2:]) + "\n")
    for name in ("test_list.txt", "label_list.txt"):
        shutil.copy(demo_lists / name, tmp_path / name)
    code, _, stderr = run_main(train_main, capsys, *train_args(tmp_path, tmp_path / "models"))
    assert_error_exit(code, stderr, fragment.format(list=train_list))
    assert not (tmp_path / "models" / MODEL_DIR).exists()  # nothing was trained


# ---------------------------------------------------------------- bad input to the other scripts

def test_eval_refuses_a_checkpoint_of_another_featurizer(bad_clip_run):
    work, _ = bad_clip_run
    result = run_script("eval.py", "--resume_model", work / "models" / MODEL_DIR / "best_model", "--use_gpu", "false",
                        "--output_dir", work / "eval", "--overwrites", "preprocess_conf.feature_method=MFCC", env=ENV)
    assert_error_exit(result.returncode, result.stderr, "trained with preprocess_conf.feature_method=Fbank, "
                                                        "but the config asks for MFCC")


@pytest.mark.parametrize("case, fragment", [
    ("other feature size", "trained on 40-dim features, the config gives 64: preprocess_conf.method_args "
                           "num_mel_bins=40 in the checkpoint, 64 in the config"),
    ("other labels", "was trained on labels neutral, happy, sad, angry, fearful, surprised, but the label "
                     "list has neutral, happy, sad"),
    ("every clip unusable", "none of the 4 clips to evaluate could be used"),
    ("output under a file", "Not a directory"),
    ("missing list", "data list not found"),
    ("corrupt weights", "cannot load"),
])
def test_eval_bad_input_is_one_line(bad_clip_run, bad_clips, tmp_path, capsys, case, fragment):
    from mser.cli.eval import main
    work, _ = bad_clip_run
    model = work / "models" / MODEL_DIR / "best_model"
    (tmp_path / "three_labels.txt").write_text("neutral\nhappy\nsad\n")
    (tmp_path / "unusable.txt").write_text("".join(f"{path}\t0\n" for path in bad_clips.values()))
    (tmp_path / "a_file").write_text("")
    if case == "corrupt weights":
        shutil.copytree(model, tmp_path / "broken")
        (tmp_path / "broken" / "model.pth").write_bytes(b"not a torch file")
    args = {
        "other feature size": ["--overwrites", "preprocess_conf.method_args.num_mel_bins=64"],
        "other labels": ["--overwrites", f"dataset_conf.label_list_path={tmp_path / 'three_labels.txt'}"],
        "every clip unusable": ["--test_list", tmp_path / "unusable.txt"],
        "output under a file": ["--output_dir", tmp_path / "a_file" / "eval"],
        "missing list": ["--test_list", tmp_path / "nowhere.txt"],
        "corrupt weights": ["--resume_model", tmp_path / "broken"],
    }[case]
    code, _, stderr = run_main(main, capsys, "--resume_model", model, "--use_gpu", "false", "--output_dir",
                               tmp_path / "eval", "--test_list", work / "test_list.txt", *args)
    assert_error_exit(code, stderr, fragment)


def test_predictor_refuses_a_checkpoint_of_another_featurizer(bad_clip_run):
    from mser.predictor import MSERPredictor
    model = bad_clip_run[0] / "models" / MODEL_DIR / "best_model"
    with pytest.raises(CheckpointError, match="trained with preprocess_conf.feature_method=Fbank, but the config "
                                              "asks for MFCC"):
        MSERPredictor(str(model), overwrites="preprocess_conf.feature_method=MFCC")
    with pytest.raises(CheckpointError, match=r"shapes differ: \S+ \((32, )?40,?\) vs \((32, )?64,?\)"):
        MSERPredictor(str(model), overwrites="preprocess_conf.method_args.num_mel_bins=64")


@pytest.mark.parametrize("script, fragment", [
    ("infer: NaN samples", "holds NaN or infinite samples"),
    ("infer: too short", "shorter than min_duration 0.4 s"),
    ("create_data: list_dir is a file", "File exists"),
    ("extract_features: cache_dir under a file", "Not a directory"),
])
def test_other_scripts_bad_input_is_one_line(bad_clip_run, bad_clips, tmp_path, capsys, script, fragment):
    from mser.cli import create_data, extract_features, infer
    work, _ = bad_clip_run
    model = work / "models" / MODEL_DIR / "best_model"
    (tmp_path / "a_file").write_text("")
    main, args = {
        "infer: NaN samples": (infer.main, ["--model_path", model, "--audio_path", bad_clips["NaN or infinite"]]),
        "infer: too short": (infer.main, ["--model_path", model, "--audio_path",
                                          bad_clips["shorter than min_duration"]]),
        "create_data: list_dir is a file": (create_data.main, ["--list_dir", tmp_path / "a_file"]),
        "extract_features: cache_dir under a file": (extract_features.main, [
            "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--overwrites",
            overwrites_for(work, tmp_path / "a_file" / "models")]),
    }[script]
    code, _, stderr = run_main(main, capsys, *args)
    assert_error_exit(code, stderr, fragment)


def test_train_refuses_an_unwritable_save_path_before_training(demo_lists, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    code, stdout, stderr = run_main(train_main, capsys, *train_args(demo_lists, tmp_path / "a_file"))
    assert_error_exit(code, stderr, "Not a directory")
    assert "epoch 1/1" not in stdout


# ---------------------------------------------------------------- kills and Ctrl-C

def start_training(list_dir, save_path, log_path, **overwrites) -> subprocess.Popen:
    """train.py in its own process group (so that a signal can reach it as Ctrl-C would)."""
    command = [PYTHON, str(REPO / "train.py"), "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
               "--log_dir", "", "--save_model_path", str(save_path),
               "--overwrites", overwrites_for(list_dir, save_path, **overwrites)]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=default_sigint,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **ENV})


def wait_for_epoch(model_dir, epoch: int, process: subprocess.Popen, log_path, limit: float = 600) -> None:
    """Until last_model holds `epoch` epochs: epoch_N, best_model and last_model are then all
    saved, and the next epoch has begun. last_model is the last of the three to be written."""
    state_file = model_dir / "last_model" / checkpoint.STATE_FILE
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if state_file.is_file() and json.loads(state_file.read_text())["epoch"] >= epoch:
            return
        assert process.poll() is None, open(log_path).read()[-3000:]
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no checkpoint of epoch {epoch} appeared: " + open(log_path).read()[-3000:])


def assert_complete_checkpoints(model_dir) -> None:
    """Every directory loads, and nothing half-written or half-deleted is left."""
    names = os.listdir(model_dir)
    assert not [name for name in names if checkpoint.STAGING_MARK in name or name.endswith(".old")], names
    for name in names:
        assert checkpoint.load_weights(str(model_dir / name)) and checkpoint.load_state(str(model_dir / name))
        checkpoint.load_training_state(str(model_dir / name))


# Long runs (20 epochs) from audio, so that the signal lands inside an epoch; the resumed run is
# told to stop one epoch after the checkpoint it starts from.
INTERRUPTED_RUN = {"train_conf.max_epoch": 20, "dataset_conf.feature_cache.enable": False}


def resume_for_one_epoch(list_dir, model_dir, done: int, source: str = "last_model",
                         **overwrites) -> subprocess.CompletedProcess:
    result = train(list_dir, model_dir.parent, "--resume_model", model_dir / source,
                   **{**INTERRUPTED_RUN, **overwrites, "train_conf.max_epoch": done + 1})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{done} epochs done" in result.stdout
    assert f"epoch {done}/" not in result.stdout and f"epoch {done + 1}/{done + 1}" in result.stdout
    assert checkpoint.load_state(str(model_dir / "last_model"))["epoch"] == done + 1
    return result


def test_killed_mid_epoch_resumes_from_last_model_and_finishes(demo_lists, tmp_path):
    model_dir = tmp_path / "models" / MODEL_DIR
    log = tmp_path / "killed.log"
    process = start_training(demo_lists, tmp_path / "models", log, **INTERRUPTED_RUN)
    wait_for_epoch(model_dir, 1, process, log)
    time.sleep(0.2)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    done = checkpoint.load_state(str(model_dir / "last_model"))["epoch"]
    assert done >= 1
    # what a kill in the middle of a save leaves: a staging directory with part of a checkpoint
    stale = model_dir / ".last_model.tmp-killed"
    stale.mkdir()
    (stale / "model.pth").write_bytes(b"\x80\x02 half a file")

    resume_for_one_epoch(demo_lists, model_dir, done)
    assert_complete_checkpoints(model_dir)


def test_ctrl_c_saves_an_interrupted_model_and_exits_130_then_resumes(demo_lists, tmp_path):
    model_dir = tmp_path / "models" / MODEL_DIR
    log = tmp_path / "interrupted.log"
    workers = {"dataset_conf.dataLoader.num_workers": 2}
    process = start_training(demo_lists, tmp_path / "models", log, **INTERRUPTED_RUN, **workers)
    wait_for_epoch(model_dir, 1, process, log)
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the trainer and its DataLoader workers
    assert process.wait(timeout=300) == 130
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert output.rstrip().split("\n")[-1].split("\r")[-1] == "interrupted", output[-3000:]
    saved = [line for line in output.splitlines() if line.startswith("interrupted: saved ")]
    assert len(saved) == 1 and f"continue with --resume_model {model_dir / 'interrupted_model'}" in saved[0], output
    interrupted = checkpoint.load_state(str(model_dir / "interrupted_model"))
    done = interrupted["epoch"]
    assert done >= 1 and f"after {done} complete epochs and {interrupted['batches_done']} batches" in saved[0]
    # the complete epochs' checkpoints are left as they were: last_model is not the interrupted state
    assert checkpoint.load_state(str(model_dir / "last_model"))["epoch"] == done
    assert_complete_checkpoints(model_dir)

    resume_for_one_epoch(demo_lists, model_dir, done, "interrupted_model", **workers)
    assert not (model_dir / "interrupted_model").exists()


def test_a_save_after_a_crash_repairs_the_model_directory(tmp_path):
    """A crash between the two renames of a swap leaves only `<dir>.old`; one during a save or a
    prune leaves `.<name>.tmp-*`. The next save restores the one and removes the other, but leaves
    the staging directory of a writer that is still running alone."""
    def save(name, epoch):
        return checkpoint.save_checkpoint(str(tmp_path / name), {}, {"epoch": epoch}, {"a": 1}, ["x", "y"])

    save("last_model", 1)
    os.rename(tmp_path / "last_model", tmp_path / "last_model.old")
    leftovers = [tmp_path / ".last_model.tmp-dead", tmp_path / ".epoch_1.tmp-dead"]
    for path in leftovers:
        path.mkdir()
        (path / "model.pth").write_bytes(b"partial")
        os.utime(path, (checkpoint.PROCESS_STARTED - 60,) * 2)
    live = tmp_path / ".best_model.tmp-live"
    live.mkdir()
    assert checkpoint.load_state(str(tmp_path / "last_model"))["epoch"] == 1  # read from .old

    save("epoch_2", 2)
    assert not any(path.exists() for path in leftovers) and live.is_dir()
    save("last_model", 2)
    assert sorted(os.listdir(tmp_path)) == [".best_model.tmp-live", "epoch_2", "last_model"]
    assert checkpoint.load_state(str(tmp_path / "last_model"))["epoch"] == 2

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def default_sigint() -> None:
    """preexec_fn for a child that a test stops with SIGINT: a process started in the background by
    a non-interactive shell (as CI runners may start pytest) inherits SIGINT ignored; a program run
    from a terminal has the default, which is what the tests mean to check."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_script(script: str, *args: str, cwd=REPO, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
    """Run one of the root scripts the way a user does; returns the finished process."""
    command = [PYTHON, str(REPO / script), *map(str, args)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_train(*args: str, timeout: int = 420) -> str:
    """train.py under torchrun with two CPU processes; asserts it exits 0 and returns its output. A hang
    fails at `timeout` (the process group killed) instead of blocking the suite."""
    command = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               str(REPO / "train.py"), *map(str, args)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError("torchrun hung: " + output[-3000:]) from None
    assert process.returncode == 0, output[-3000:]
    return output


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str = "") -> None:
    """Exit code 2, a single `error: ...` line on stderr, and no traceback."""
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def demo_lists(tmp_path_factory):
    """Lists for a small, speaker-independent slice of the shipped demo corpus."""
    list_dir = tmp_path_factory.mktemp("demo_lists")
    result = run_script("create_data.py", "--dataset", "demo", "--list_dir", list_dir)
    assert result.returncode == 0, result.stderr
    for name, keep_every in (("train_list.txt", 6), ("test_list.txt", 4)):
        lines = (list_dir / name).read_text().splitlines()
        (list_dir / name).write_text("".join(f"{line}\n" for line in lines[::keep_every]))
    return list_dir


@pytest.fixture(scope="session")
def normalised_model(demo_lists, tmp_path_factory):
    """One epoch of a tiny BiLSTM trained with speaker normalisation: (best_model dir, train.py's result)."""
    work = tmp_path_factory.mktemp("speaker_norm")
    result = run_script("train.py", "--configs", "configs/bi_lstm.yml", "--use_gpu", "false", "--log_dir", "",
                        "--save_model_path", work / "models",
                        "--overwrites", tiny_overwrites(demo_lists, **{"preprocess_conf.speaker_norm.enable": "true"}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "models" / "BiLSTM_Fbank" / "best_model", result


def tiny_overwrites(list_dir, **extra) -> str:
    """--overwrites for a fast run: short clips, a small model, one epoch; `extra` adds or replaces
    values (None: leave a default out)."""
    values = {
        "dataset_conf.train_list": list_dir / "train_list.txt",
        "dataset_conf.test_list": list_dir / "test_list.txt",
        "dataset_conf.label_list_path": list_dir / "label_list.txt",
        "dataset_conf.dataset.max_duration": 1.5,
        "dataset_conf.eval_conf.max_duration": 2.0,
        "dataset_conf.dataLoader.batch_size": 16,
        "dataset_conf.dataLoader.num_workers": 0,
        "train_conf.max_epoch": 1,
        "model_conf.model": "BiLSTM",
        "model_conf.model_args.hidden_size": 32,
        "preprocess_conf.feature_method": "Fbank",
        "preprocess_conf.method_args.num_mel_bins": 40,
        "dataset_conf.feature_cache.enable": False,
        # clip-level features (eGeMAPS, ComParE, CustomFeatures) are cached even so: beside the lists
        "dataset_conf.feature_cache.cache_dir": list_dir / "features",
    }
    values.update(extra)   # None drops a default
    return ",".join(f"{key}={value}" for key, value in values.items() if value is not None)


def pypi_reachable() -> bool:
    """Whether PyPI answers (tests that install from it run only then, or in CI)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True

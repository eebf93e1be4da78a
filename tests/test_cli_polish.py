"""The scripts' manners: a closed stdout ends them quietly, --help shows each default once, --use_gpu
means the same everywhere, a narrow-band microphone is one warning line, torchrun runs say what they
run on."""
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO, run_script, tiny_overwrites

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
from mic_fixtures import LABELS, LoopedClip, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]

SCRIPTS = ["train.py", "eval.py", "infer.py", "infer_record.py", "record_audio.py", "create_data.py",
           "extract_features.py"]
GPU_SCRIPTS = ["train.py", "eval.py", "infer.py", "infer_record.py", "extract_features.py"]


def run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run a root script whose stdout is a pipe nobody reads any more (`... | head -1` once head is gone)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([PYTHON, *map(str, args)], cwd=REPO, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write_end)


def assert_quiet(result: subprocess.CompletedProcess, returncodes=(141,)) -> None:
    assert result.returncode in returncodes, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert "Exception ignored" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("polish_audio")
    rng = np.random.default_rng(5)
    for index in range(6):
        write_clip(folder / f"clip{index}.wav", synthetic_clip(LABELS[index % 3], 1.0, rng))
    return folder


# ---------------------------------------------------------------- a closed stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_into_a_closed_pipe_exits_quietly(script):
    # argparse drops what it cannot write (and exits 0) when the pipe breaks in its own write
    assert_quiet(run_into_closed_pipe(REPO / script, "--help"), returncodes=(0, 141))


def test_infer_into_a_closed_pipe_exits_quietly(tiny_model, audio_dir):
    assert_quiet(run_into_closed_pipe(REPO / "infer.py", "--model_path", tiny_model, "--audio_path", audio_dir,
                                      "--json"))


def test_infer_piped_into_head(tiny_model, audio_dir):
    command = f'"{PYTHON}" infer.py --model_path "{tiny_model}" --audio_path "{audio_dir}" --json | head -1'
    result = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


def test_user_errors_still_exit_2_with_one_line():
    result = run_script("infer.py", "--model_path", "/nonexistent/model", "--audio_path", "x.wav")
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr


# ---------------------------------------------------------------- --help and --use_gpu


def option_entries(help_text: str) -> list:
    """Each option's block of `--help` (its first line starts with '  -'), whitespace collapsed."""
    options = help_text[help_text.index("options:"):] if "options:" in help_text else help_text
    blocks = re.split(r"\n(?=  -)", options)
    return [" ".join(block.split()) for block in blocks[1:]]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once(script):
    result = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    entries = option_entries(result.stdout)
    assert len(entries) >= 3, result.stdout
    for entry in entries:
        assert entry.count("default:") <= 1, entry
        assert "(default: None)" not in entry and "(default: False)" not in entry, entry


@pytest.mark.parametrize("script", GPU_SCRIPTS)
def test_use_gpu_defaults_to_true_everywhere(script):
    result = run_script(script, "--help")
    [entry] = [entry for entry in option_entries(result.stdout) if entry.startswith("--use_gpu")]
    assert entry.endswith("on the GPU when there is one, on the CPU otherwise; false: always on the CPU "
                          "(default: true)"), entry


def test_use_gpu_parses_to_true_when_left_out():
    from mser.cli import eval as eval_cli
    from mser.cli import extract_features, infer, infer_record, train
    assert train.parse_args([]).use_gpu is True
    assert eval_cli.parse_args(["--resume_model", "m"]).use_gpu is True
    assert extract_features.parse_args([]).use_gpu is True
    assert infer.build_parser().parse_args(["--model_path", "m", "--audio_path", "a"]).use_gpu is True
    assert infer_record.build_parser().parse_args([]).use_gpu is True
    assert infer.build_parser().parse_args(["--model_path", "m", "--audio_path", "a",
                                            "--use_gpu", "false"]).use_gpu is False


def test_infer_with_the_default_use_gpu_runs_anywhere(tiny_model, audio_dir):
    result = run_script("infer.py", "--model_path", tiny_model, "--audio_path", audio_dir / "clip0.wav")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


# ---------------------------------------------------------------- infer_record.py and a narrow-band microphone


def test_infer_record_prints_one_warning_line_for_a_narrow_band_microphone(pulse_loopback, tiny_model, tmp_path):
    # a clip stored at 8 kHz holds nothing above 4 kHz: half the band of the 16 kHz model
    narrow = write_clip(tmp_path / "narrow.wav", synthetic_clip("low", 4.0, np.random.default_rng(3), 8000), 8000)
    with LoopedClip(pulse_loopback, narrow):
        # --vad none: a synthetic tone is no speech to the silero gate, which would answer "silence"
        result = run_script("infer_record.py", "--model_path", tiny_model, "--max_loops", "1",
                            "--record_seconds", "1.5", "--threshold", "0", "--vad", "none")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "band-limited" in lines[0], \
        result.stderr + result.stdout
    assert result.stdout.splitlines()[1].startswith("[1] ") and "silence" not in result.stdout, result.stdout


# ---------------------------------------------------------------- torchrun


def test_torchrun_says_how_many_processes_and_which_backend(demo_lists, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "label_list.txt").write_text((demo_lists / "label_list.txt").read_text())
    for name, clips in (("train_list.txt", 24), ("test_list.txt", 8)):
        (lists / name).write_text("".join((demo_lists / name).read_text().splitlines(True)[:clips]))
    torchrun = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29547"]
    result = subprocess.run(
        [*torchrun, str(REPO / "train.py"), "--configs", "configs/bi_lstm.yml", "--use_gpu", "false",
         "--save_model_path", str(tmp_path / "models"), "--log_dir", "",
         "--overwrites", tiny_overwrites(lists, **{"dataset_conf.dataLoader.batch_size": 4})],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("data-parallel: 2 processes, gloo backend, on cpu") == 1, result.stdout[-3000:]


def test_a_single_process_says_so(demo_lists, tmp_path):
    from mser.trainer import MSERTrainer
    trainer = MSERTrainer(configs="configs/bi_lstm.yml", use_gpu=False, overwrites=tiny_overwrites(demo_lists))
    assert trainer.context.describe() == "one process on cpu"


# ---------------------------------------------------------------- shipped configs by name, no output before the inputs


@pytest.mark.parametrize("script", ["train.py", "eval.py", "extract_features.py", "infer.py", "infer_record.py"])
def test_list_configs(script, tmp_path):
    # from another folder, and before a required option (eval.py --resume_model, infer.py --model_path) is asked for
    result = run_script(script, "--list-configs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert listed == {path.stem for path in (REPO / "configs").glob("*.yml")}


@pytest.mark.parametrize("script", ["train.py", "extract_features.py"])
def test_help_names_the_recommended_config(script):
    from mser.config import RECOMMENDED_CONFIG
    result = run_script(script, "--help")
    [entry] = [entry for entry in option_entries(result.stdout) if entry.startswith("--configs")]
    assert entry.endswith(f"'{RECOMMENDED_CONFIG}', the recommended one; default: {RECOMMENDED_CONFIG}"), entry
    assert "ecapa_tdnn" not in result.stdout


def test_scripts_default_to_the_recommended_config():
    from mser.cli import extract_features, train
    from mser.config import RECOMMENDED_CONFIG
    assert train.parse_args([]).configs == extract_features.parse_args([]).configs == RECOMMENDED_CONFIG


def test_eval_leaves_no_output_folder_when_its_inputs_are_wrong(tmp_path):
    result = run_script("eval.py", "--resume_model", tmp_path / "nothing", cwd=tmp_path)   # default output/eval
    assert result.returncode == 2 and "checkpoint directory not found" in result.stderr, result.stderr
    assert not (tmp_path / "output").exists()


def test_check_output_folder_creates_nothing(tmp_path):
    from mser.cli.common import check_output_folder
    check_output_folder(str(tmp_path / "a" / "b"))
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="Not a directory"):
        check_output_folder(str(tmp_path / "file" / "eval"))


def test_a_torchaudio_built_for_another_torch_is_one_line(capsys):
    # what torchaudio from PyPI (a CUDA build) raises on import next to a CPU-only torch
    from mser.cli.common import exits_cleanly

    @exits_cleanly
    def main(argv=None):
        try:
            raise OSError("libc10_cuda.so: cannot open shared object file: No such file or directory")
        except OSError as cause:
            raise OSError("Could not load this library: /venv/site-packages/torchaudio/lib/_torchaudio.so") from cause

    with pytest.raises(SystemExit) as exit_info:
        main([])
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: torchaudio cannot load its library with torch ") and \
        "(libc10_cuda.so: cannot open shared object file" in stderr and \
        stderr.rstrip().endswith("pip install torch torchaudio --index-url https://download.pytorch.org/whl/cpu")

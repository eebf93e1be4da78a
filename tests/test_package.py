"""The package imports cleanly, without pyaudio, and exposes its public API."""
import subprocess
import sys

from conftest import REPO


def test_import_without_pyaudio():
    # A meta-path finder that refuses pyaudio, as on a machine where it is not installed.
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'pyaudio': raise ImportError('no pyaudio')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import mser\n"
            "from mser import MSERTrainer, MSERPredictor, build_model, list_models, build_featurizer\n"
            "assert 'pyaudio' not in sys.modules\n"
            "print(mser.__version__, len(list_models()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].count(".") == 2


def test_public_api_names():
    import mser
    for name in mser.__all__:
        assert getattr(mser, name) is not None


def test_root_scripts_are_thin_and_have_help():
    for script in ("create_data.py", "train.py", "eval.py", "infer.py", "record_audio.py", "infer_record.py",
                   "extract_features.py"):
        code = [line for line in (REPO / script).read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        assert len(code) <= 6, script
        result = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                                cwd=REPO)
        assert result.returncode == 0 and "usage:" in result.stdout, script + result.stderr

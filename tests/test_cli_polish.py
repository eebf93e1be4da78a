"""The scripts' manners: a narrow-band microphone is one warning line."""
import numpy as np

from conftest import run_script

import pytest

pytest.register_assert_rewrite("mic_fixtures")  # see test_predictor.py
from mic_fixtures import LoopedClip, synthetic_clip, write_clip  # noqa: E402

pytest_plugins = ["mic_fixtures"]


def test_infer_record_prints_one_warning_line_for_a_narrow_band_microphone(pulse_loopback, tiny_model, tmp_path):
    # a clip stored at 8 kHz holds nothing above 4 kHz: half the band of the 16 kHz model
    narrow = write_clip(tmp_path / "narrow.wav", synthetic_clip("low", 4.0, np.random.default_rng(3), 8000), 8000)
    with LoopedClip(pulse_loopback, narrow):
        result = run_script("infer_record.py", "--model_path", tiny_model, "--max_loops", "1",
                            "--record_seconds", "1.5", "--threshold", "0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "band-limited" in lines[0], result.stderr
    assert result.stdout.splitlines()[1].startswith("[1] "), result.stdout

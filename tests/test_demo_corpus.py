"""The shipped demo corpus and what its generator says about it."""
import re

from conftest import run_script


def test_the_generator_values_ceiling_runs_on_the_shipped_corpus(demo_lists):
    result = run_script("tools/make_demo_corpus.py", "--ceiling", "dataset/demo",
                        "--test_list", demo_lists / "test_list.txt")
    assert result.returncode == 0, result.stderr
    accuracies = [float(x) for x in re.findall(r"test accuracy (\d\.\d+)", result.stdout)]
    assert len(accuracies) == 3, result.stdout
    # six classes: chance is 1/6; the acted prosody values must separate them far better
    assert all(0.5 < a <= 1.0 for a in accuracies), result.stdout
    assert accuracies[-1] >= accuracies[0], result.stdout  # loudness and the sentence ending add information

"""Smoke tests of benchmarks/eventprop_alignment.py and eventprop_explore.py (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_benchmark


def test_cosine_and_errors():
    module = load_benchmark("eventprop_alignment")
    assert module.cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert module.cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="`--pairs` must be a positive int; got 0"):
        module.main(["--pairs", "0"])
    with pytest.raises(ValueError, match="`--sigma` must be positive"):
        module.main(["--sigma", "-1"])


@pytest.mark.slow
def test_tiny_run_reports_the_three_cosines(tmp_path):
    module = load_benchmark("eventprop_alignment")
    out = tmp_path / "alignment.json"
    report = module.main(["--pairs", "40", "--chunk", "20", "--samples", "4", "--output", str(out)])
    assert out.exists()
    for name in ("cos_eventprop_smoothed", "cos_surrogate_smoothed", "cos_eventprop_surrogate"):
        assert -1.0 <= report[name] <= 1.0
    assert report["norms"]["eventprop"] > 0 and report["settings"]["pairs"] == 40


def test_explore_errors_name_the_option():
    module = load_benchmark("eventprop_explore")
    with pytest.raises(ValueError, match="`--dt` must be positive; got 0.0"):
        module.main(["--dt", "0"])


@pytest.mark.slow
def test_explore_one_epoch_of_the_eventprop_recipe_learns():
    module = load_benchmark("eventprop_explore")
    (row,) = module.main(["--decoder", "mean", "--epochs", "1"])
    # chance is 1/3; one epoch of the mean-decoder recipe reached 84 % (seed 0)
    assert row["test_accuracy"] > 0.6 and 0.0 <= row["silent_hidden"] <= 1.0

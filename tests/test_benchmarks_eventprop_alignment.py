"""Smoke test of benchmarks/eventprop_alignment.py at a tiny size (cosines not asserted)."""

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

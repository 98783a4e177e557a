"""Smoke test of benchmarks/sweep_chips.py at a tiny size (speeds are not asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_chips.py"
TINY = "--chips 3 --test-size 4 --hidden 4 --train-size 20 --epochs 1 --repeats 1".split()


def _module():
    spec = importlib.util.spec_from_file_location("benchmark_sweep_chips", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_sweep_chips_benchmark_smoke(tmp_path):
    module = _module()
    output, checkpoint = tmp_path / "sweep.json", tmp_path / "network.npz"
    # chunks of 2 chips: the last chunk is padded
    argv = [*TINY, "--chunk-size", "2", "--checkpoint", str(checkpoint), "--output", str(output)]
    report = module.main(argv)
    assert json.loads(output.read_text()) == report
    assert checkpoint.exists() and report["training"]["source"] == "trained in the numerics"
    assert report["workload"]["chips"] == 3 and report["workload"]["chunk_size"] == 2
    results = report["results"]
    assert {"vmap", "loop", "sweep"} <= set(results)
    for name in ("vmap", "loop", "sweep"):
        for field in ("first_call_s", "median_s", "chips_per_second"):
            assert math.isfinite(results[name][field]) and results[name][field] > 0
        assert math.isfinite(results[name]["cpu_median_s"]) and results[name]["cpu_median_s"] >= 0
    # one vmap call, a loop and bj.sweep give the same accuracies (same chips, same keys)
    assert report["accuracy"]["max_difference_between_cases"] <= 1e-6
    assert 0.0 <= report["accuracy"]["min"] <= report["accuracy"]["max"] <= 1.0
    assert report["jax"] and report["device"]

    # a second run loads the network the first one wrote instead of training; all chips in
    # one vmapped call
    again = module.main([*TINY, "--checkpoint", str(checkpoint), "--cases", "vmap"])
    assert again["training"]["source"] == str(checkpoint)
    assert set(again["results"]) == {"vmap"} and again["workload"]["chunk_size"] == 3
    assert np.isclose(again["accuracy"]["mean"], report["accuracy"]["mean"])

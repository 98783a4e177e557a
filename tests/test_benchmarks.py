"""Smoke test of benchmarks/train_step.py at a tiny size: it runs, and reports timings.

Speeds are not asserted (they depend on the machine and its load); only that every
implementation that ran reports positive, finite compile times and medians.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
TIMINGS = (
    "compile_forward_s",
    "compile_train_step_s",
    "forward_median_ms",
    "train_step_median_ms",
)


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_train_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_train_step_benchmark_smoke(tmp_path):
    benchmark = _load_benchmark()
    output = tmp_path / "train_step.json"
    argv = "--inputs 20 --hidden 8 --outputs 3 --time 10 --batch 2 --repeats 2".split()
    # The benchmark is user code with optax loops: JAX's default promotion, as it runs.
    with jax.numpy_dtype_promotion("standard"):
        report = benchmark.main([*argv, "--output", str(output)])

    assert output.exists()
    names = [result["name"] for result in report["results"]]
    assert names == ["bss2jax", "handwritten_scan", "bss2jax_all_parameters", "spyx", "jaxsnn"]
    for result in report["results"]:
        if "skipped" in result:
            assert result["name"] in ("spyx", "jaxsnn")
            assert isinstance(result["skipped"], str) and result["skipped"]
            continue
        for field in TIMINGS:
            value = result[field]
            assert math.isfinite(value) and value > 0, (result["name"], field, value)
        assert math.isfinite(result["initial_loss"]), result["name"]


def test_missing_peers_are_skipped_not_fatal(monkeypatch):
    benchmark = _load_benchmark()
    # A None entry makes importing that module raise ImportError; cover already-imported
    # submodules too, which `from package.sub import name` would otherwise find directly.
    for module in list(sys.modules):
        if module.split(".")[0] in ("spyx", "jaxsnn", "flax"):
            monkeypatch.setitem(sys.modules, module, None)
    for package in ("spyx", "jaxsnn", "flax"):
        monkeypatch.setitem(sys.modules, package, None)
    weights = (jnp.zeros((4, 3)), jnp.zeros((2, 4)))
    for reason in (benchmark.make_spyx(weights), benchmark.make_jaxsnn(weights, 5)):
        assert isinstance(reason, str) and reason.startswith("not importable")

"""Smoke test of `benchmarks/scaling.py` at tiny size (two device counts, both cases)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "scaling.py"


@pytest.mark.slow
def test_scaling_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--devices", "1,2", "--chips", "4", "--test-size", "4", "--batch-size", "4"]
    argv += ["--hidden", "4", "--repeats", "1", "--chunk-size", "1"]
    report = module.main([*argv, "--output", str(tmp_path / "scaling.json")])
    assert [run["devices"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert "cpu" in run["device"].lower() or run["platform"] != "cpu"
        assert run["train"]["samples_per_second"] > 0
        assert run["sweep"]["samples_per_second"] > 0
    assert report["runs"][0]["sweep"]["speedup_over_1_device"] == 1.0
    assert (tmp_path / "scaling.json").exists()

"""Smoke test of benchmarks/mismatch_ablation.py on a tiny `bss2jax train` run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bss2jax._cli import main as cli

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mismatch_ablation.py"
TINY = ["--train-size", "40", "--test-size", "20", "--hidden", "6", "--batch-size", "20"]


def _module():
    spec = importlib.util.spec_from_file_location("benchmark_mismatch_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_mismatch_ablation_smoke(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--epochs", "1", "--pretrain-epochs", "1", "--random-chip-epochs", "0"]
    args += [*TINY, "--transfer", "0", "--output", str(run), "--no-progress", "--no-plots"]
    assert cli(args) == 0
    module = _module()
    output = tmp_path / "ablation.json"
    report = module.main(["--run", str(run), "--donors", "1,2", "--output", str(output)])
    assert json.loads(output.read_text()) == report
    assert report["chip_seed"] == 0 and report["donor_seeds"] == [1, 2]
    assert report["test_size"] == 20
    accuracy = report["accuracy"]
    assert 0.0 <= accuracy["trained_chip"] <= 1.0 and len(accuracy["donors"]) == 2
    assert 0.0 <= accuracy["nominal_chip"] <= 1.0 and report["phase"] == "main"
    fields = set(report["swap_one_field"])
    assert {"threshold", "tau_mem", "synapse_gain", "cadc_offset"} <= fields
    for group in ("swap_one_field", "swap_circuits"):
        for entry in report[group].values():
            assert len(entry["accuracy"]) == 2
            mean = sum(entry["accuracy"]) / 2
            assert entry["drop"] == pytest.approx(accuracy["trained_chip"] - mean, abs=1e-6)
    assert set(report["swap_circuits"]) == {"hidden", "readout"}
    pretrained = module.main(["--run", str(run), "--phase", "pretrain", "--donors", "1"])
    assert pretrained["phase"] == "pretrain" and len(pretrained["accuracy"]["donors"]) == 1
    with pytest.raises(ValueError, match="`--donors` must name chip seeds other than"):
        module.main(["--run", str(run), "--donors", "0,1"])

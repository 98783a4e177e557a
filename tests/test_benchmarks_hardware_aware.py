"""Smoke test of benchmarks/hardware_aware.py at a tiny size (accuracies are not asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_benchmark

TINY = "--classes 3 --channels 6 --steps 10 --hidden 6 --train 20 --test 10 --batch-size 10"
TINY += " --numerics-epochs 1 --chip-epochs 1"


def _module():
    return load_benchmark("hardware_aware")


def test_spike_patterns_share_a_base_and_keep_their_noise_rates():
    # no noise: every sample is its class's frozen pattern; classes differ only where a
    # fraction `distinct` of the pattern was redrawn
    module = _module()
    args = module._parser().parse_args(
        "--classes 4 --steps 30 --channels 20 --rate 0.2 --distinct 0.25 --jitter 0 "
        "--dropout 0 --background 0 --train 200 --test 10".split()
    )
    (inputs, labels), _ = module.spike_patterns(args, seed=0)
    assert inputs.shape == (200, 30, 20) and set(np.unique(inputs)) <= {0.0, 1.0}
    patterns = [inputs[labels == c][0] for c in range(4)]
    for c in range(4):
        assert (inputs[labels == c] == patterns[c]).all()
    # a cell of two patterns differs where at least one was redrawn (1 - (1 - d)**2) and the
    # two values disagree (2 r (1 - r)): 0.4375 * 0.32 = 0.14, over 600 cells +- 0.014
    differ = np.mean(patterns[0] != patterns[1])
    assert abs(differ - 0.14) < 0.05


@pytest.mark.slow  # a minute or more: kept out of the 15-minute default suite
@pytest.mark.filterwarnings(
    "ignore:.*will be clipped to ±63 on the chip"
)  # the plain arm trains without clipping
def test_hardware_aware_benchmark_smoke(tmp_path):
    output = tmp_path / "report.json"
    report = _module().main([*TINY.split(), "--output", str(output)])
    assert json.loads(output.read_text()) == report
    assert set(report["arms"]) == {"schedule", "plain"} and report["other_chip_seeds"] == [
        1,
        2,
        3,
        4,
        5,
    ]
    for arm in report["arms"].values():
        assert len(arm["others"]) == 5 and 0 <= arm["target"] <= 100
        np.testing.assert_allclose(arm["drop"], arm["target"] - np.mean(arm["others"]), atol=1e-9)

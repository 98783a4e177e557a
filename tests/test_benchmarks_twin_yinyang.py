"""benchmarks/twin_yinyang.py: its recipe is `bss2jax train`'s, its probe covers the network."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from helpers import load_benchmark

import bss2jax as bj
from bss2jax import yinyang
from bss2jax._probe import probe_networks


def _module():
    return load_benchmark("twin_yinyang")


def test_phases_are_the_recipe_defaults_and_resize_only_what_is_asked():
    module = _module()
    pretraining, main = module.recipe_configs(module.parse([]))
    assert pretraining == yinyang.CHIP_PRETRAINING
    assert main == yinyang.CHIP_FINE_TUNING
    small = module.parse(["--epochs", "2", "--pretrain-epochs", "3", "--train-size", "100"])
    pretraining, main = module.recipe_configs(small)
    assert (pretraining.epochs, main.epochs) == (3, 2)
    assert pretraining.train_size == main.train_size == 100
    assert main.lr == yinyang.CHIP_FINE_TUNING.lr


def test_the_chip_phase_anchors_the_chip_it_is_given():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(7))
    train, evaluate = _module().chip_phase_backends(chip, yinyang.CHIP_FINE_TUNING)
    assert train.anchor is chip and evaluate.chip is chip
    assert train.anchor_probability == yinyang.CHIP_FINE_TUNING.anchor_probability
    assert train.chips_per_call == yinyang.CHIP_FINE_TUNING.chips_per_call


def test_the_default_probe_covers_every_synapse_of_the_yinyang_network():
    # the twin is only fitted where it was probed; elsewhere it stays nominal
    assert _module().parse([]).neurons is None  # the default: bj.probe_plan(network)
    network = yinyang.yin_yang_network(yinyang.YinYangConfig(), key=jax.random.key(0))
    plan = bj.probe_plan(network)
    circuits, rows = _module().network_synapses(network)
    probed = bj.place(probe_networks(plan["neurons"])[0][0]).populations[0].circuits.ravel()
    assert len(set(circuits.tolist())) == 123 and set(circuits.tolist()) <= set(probed.tolist())
    # rows 2 i and 2 i + 1 of every signed input i < 25 (hidden) and < 120 (readout)
    assert circuits.size == 120 * 50 + 3 * 240 and rows.max() < 2 * plan["inputs"] == 240


@pytest.mark.slow  # about a minute: kept out of the 15-minute default suite
def test_twin_yinyang_benchmark_smoke(tmp_path):
    output = tmp_path / "report.json"
    report = _module().main(["--smoke", "--output-dir", str(tmp_path), "--output", str(output)])
    assert json.loads(output.read_text()) == report
    assert report["backend_runs"] == 6 + 2 * 15 and report["inputs"] == 120
    (run,) = report["runs"]
    accuracies = run["accuracy_on_hidden"]
    assert set(accuracies) == {"pretrained", "twin", "hidden", "nominal"}
    assert all(0 <= a <= 1 for a in accuracies.values())
    np.testing.assert_allclose(
        run["twin_minus_hidden_points"], 100 * (accuracies["twin"] - accuracies["hidden"])
    )
    for network, row in run["accuracy_matrix"].items():
        assert set(row) == {"twin", "hidden", "nominal"}
        assert row["hidden"] == accuracies[network]
    assert report["chip_errors_on_network_circuits"]["nominal"]["effective_gain_log_rms"] > 0
    assert (tmp_path / "seed0" / "pretrain").is_dir()


def test_twin_quality_is_exact_for_the_truth_and_sqrt2_spreads_for_nominal():
    module = _module()
    hidden = bj.ChipInstance.random(jax.random.PRNGKey(20261207))
    network = yinyang.yin_yang_network(yinyang.YinYangConfig(), key=jax.random.key(0))
    used = module.network_synapses(network)
    exact = module.twin_quality(bj.canonical_chip(hidden), hidden, used)
    assert exact["effective_gain_log_rms"] < 1e-5
    assert all(v["within_bar"] == 1.0 for k, v in exact.items() if isinstance(v, dict))
    # nominal: each effective gain is off by the per-circuit and the per-synapse factor,
    # both log-normal with log-std 0.05 (`MismatchProfile()`): sqrt(2) * 0.05 = 0.071
    nominal = module.twin_quality(bj.ChipInstance.nominal(), hidden, used)
    assert abs(nominal["effective_gain_log_rms"] - 0.0707) < 0.005

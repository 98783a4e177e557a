"""The twin's synapse-row probe (`probe_chip(inputs=k)`, `probe_plan`) and its fit of the
per-row `synapse_gain` (`bss2jax._twin_rows`).

The first slow test fits rows to traces the twin's own predictor made on a hidden chip (so
the fit must recover the hidden rows up to the predictor's resolution); the second runs the
whole protocol on a noisy chip model and checks the effective gains of the probed rows
against the hidden chip's truth.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj
from bss2jax import _probe, _twin_rows

QUIET = bj.ChipConfig.noiseless()
HIDDEN_SEED = 1729


def effective(chip: bj.ChipInstance, circuits, rows) -> np.ndarray:
    """`synaptic_gain * synapse_gain[circuit, row]`, float `(len(circuits), len(rows))`."""
    rows = np.asarray(rows)
    gain = np.where(
        rows[None] % 2 == 0,
        np.asarray(chip.synaptic_gain_exc)[circuits, None],
        np.asarray(chip.synaptic_gain_inh)[circuits, None],
    )
    return gain * np.asarray(chip.synapse_gain)[np.ix_(circuits, rows)]


def test_row_schedule_and_plan():
    x, groups = _probe.row_schedule(5, 2, 18)
    assert x.shape == (3, 5 + 2 * 18 + 1, 1, 5)
    assert groups.tolist() == [[0, 1], [2, 3], [4, -1]]
    # one event per input, in its group's slot: step 5 + 18 * slot
    events = np.argwhere(np.asarray(x[..., 0, :]) > 0)
    assert events.tolist() == [[0, 5, 0], [0, 23, 1], [1, 5, 2], [1, 23, 3], [2, 5, 4]]
    probe = bj.RowProbe((), x, groups, jnp.zeros(()))
    assert probe.rows(0).tolist() == [[0, 2], [4, 6], [8, -1]]
    assert probe.rows(1).tolist() == [[1, 3], [5, 7], [9, -1]]
    # hxtorch's Yin-Yang network: 120 hidden on circuits 0-59 and 256-315 (25 inputs),
    # 3 readout on 60, 316, 61 (120 inputs): probe neurons 0-122 cover them
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    net = bj.Sequential(
        [bj.Synapse(25, 120, key=k1), bj.LIF(120), bj.Synapse(120, 3, key=k2), bj.LI(3)]
    )
    assert bj.probe_plan(net) == {"neurons": 123, "inputs": 120}
    chip = bj.ChipModel(bj.ChipInstance.nominal(), QUIET)
    for bad, rule in (
        (dict(inputs=129), "`inputs` must be an int in \\[0, 128\\]"),
        (dict(inputs=-1), "`inputs` must be an int in \\[0, 128\\]"),
        (dict(inputs=4, inputs_per_run=0), "`inputs_per_run` must be an int in \\[1, 128\\]"),
        (dict(inputs=2.0), "`inputs` must be an int"),
    ):
        with pytest.raises(ValueError, match=rule):
            bj.probe_chip(chip, 2, **bad)


@pytest.mark.slow  # about 10 s on 2 cores, mostly compiling the derivatives
def test_fit_rows_recovers_the_rows_from_the_predicted_traces():
    """Row-probe traces made by the twin's own predictor (`dithered_trace`, noiseless) on
    a hidden chip in canonical form; the fit starts from that chip with every row factor
    1 (the gains of rows 0 and 1 kept) and must find the hidden rows' effective gains."""
    n, inputs, per_run, tau = 3, 4, 4, 6e-6
    truth = bj.canonical_chip(bj.ChipInstance.random(jax.random.PRNGKey(HIDDEN_SEED)))
    x, groups = _probe.row_schedule(inputs, per_run, 18)
    networks = _probe.row_networks(n, inputs, tau, tau)
    traces = jnp.stack(
        [jnp.stack([_twin_rows.dithered_trace(truth, QUIET, net, x[0], 1e-6)]) for net in networks]
    )
    circuits = bj.place(networks[0]).populations[0].circuits[:, 0]
    data = bj.ProbeData(
        (), (), None, None, jnp.asarray(circuits), 1e-6, 4, bj.RowProbe(networks, x, groups, traces)
    )
    start = eqx.tree_at(lambda c: c.synapse_gain, truth, jnp.ones_like(truth.synapse_gain))
    fitted, rms = _twin_rows.fit_rows(start, data, QUIET)
    # LSB; not 0: the dithered trace moves in steps of 1/8 LSB (`DITHER`)
    assert rms.shape == (2, 1) and float(rms.max()) < 0.05
    probed = np.arange(2 * inputs)
    error = effective(fitted, circuits, probed) / effective(truth, circuits, probed) - 1
    assert np.abs(error).max() < 1e-2, error  # the 1/8-LSB steps again
    nominal = effective(start, circuits, probed) / effective(truth, circuits, probed) - 1
    assert np.abs(nominal).max() > 0.03  # the rows do differ: the test can fail
    # canonical form: rows 0 and 1 are 1; unprobed rows keep their effective gain
    assert np.allclose(np.asarray(fitted.synapse_gain)[circuits, :2], 1.0)
    rest = np.arange(2 * inputs, 256)
    assert np.allclose(effective(fitted, circuits, rest), effective(start, circuits, rest))
    others = np.setdiff1d(np.arange(512), circuits)
    assert np.array_equal(
        np.asarray(fitted.synapse_gain)[others], np.asarray(start.synapse_gain)[others]
    )


@pytest.mark.slow
def test_twin_fits_the_probed_rows_on_a_noisy_chip():
    """The whole protocol on a noisy calibrated chip (all noise of `ChipConfig()`), 8
    neurons, 8 signed inputs (16 rows) at 6 us, 40 repetitions: the probed rows' effective
    gains (relative to the hidden chip's) within 5 % for >= 90 % of (neuron, row) pairs,
    log-RMS <= 0.035 and below half the nominal chip's; 6 + 4 runs."""
    config = bj.ChipConfig()
    hidden = bj.ChipInstance.random(jax.random.PRNGKey(HIDDEN_SEED))
    fit = bj.identify(
        bj.ChipModel(hidden, config),
        8,
        config=config,
        tau_mem=6e-6,
        tau_syn=6e-6,
        inputs=8,
        inputs_per_run=4,
    )
    assert fit.data.runs == 6 + 4 and fit.row_rms.shape == (2, 2)
    assert float(fit.row_rms.max()) < 0.3  # LSB: the noise of a 40-entry mean
    circuits, rows = np.asarray(fit.data.circuits), np.arange(16)
    truth = effective(hidden, circuits, rows)
    error = np.log(effective(fit.chip, circuits, rows) / truth)
    nominal = np.log(effective(bj.ChipInstance.nominal(), circuits, rows) / truth)
    rms, nominal_rms = np.sqrt(np.mean(error**2)), np.sqrt(np.mean(nominal**2))
    assert np.mean(np.abs(np.expm1(error)) <= 0.05) >= 0.9, error
    assert rms <= 0.035 and rms < nominal_rms / 2, (rms, nominal_rms)

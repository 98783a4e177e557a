"""The chip model's synaptic input circuits, joined circuits and membrane noise (issue 12).

Derivations: docs/reference/chip-model.md. Each circuit has an excitatory and an inhibitory
input, each a synaptic line and an OTA that saturates on its own as `I_sat tanh(I / I_sat)`,
`I_sat = ChipConfig.saturation * i_synin_gm / 500`; a neuron of `c` joined circuits has one
membrane of capacitance `C + (c - 1) * joined_capacitance` (0 by default, as hxtorch sets
the other circuits') and `c` circuits' inputs; the membrane noise std scales as
`1 / sqrt(C)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj
from bss2jax._chip._config import SYNAPTIC_SATURATION

DT = 1e-6
QUIET = bj.ChipConfig.noiseless()
LINEAR = QUIET.replace(saturation=None)
NOMINAL = bj.ChipInstance.nominal()
LEAK = 80.0


WIDTH = 40  # every `_li` network has 40 inputs (one compiled shape per neuron setting)


def _li(weights, *, capacitance=63.0, tau=6e-6, dac=1000.0, gm=500.0):
    """One LI neuron (no threshold, so no spikes) behind `weights` (the first inputs of
    `WIDTH`; the others weigh 0)."""
    weights = jnp.zeros((1, WIDTH)).at[0, : len(weights)].set(jnp.asarray(weights))
    return bj.Sequential(
        [
            bj.Synapse(WIDTH, 1, weight=weights),
            bj.LI(
                1,
                leak=LEAK,
                tau_mem=tau,
                tau_syn=tau,
                # an array: traced, so other capacitances reuse the compiled run
                membrane_capacitance=bj.Mixed(10e-6, jnp.asarray(capacitance, jnp.float32)),
                synapse_dac_bias=dac,
                i_synin_gm=gm,
            ),
        ]
    )


def _membrane(network, inputs, config: bj.ChipConfig = QUIET):
    """The true (sub-stepped) membrane `(substeps * time,)` of neuron 0, batch entry 0."""
    raw = bj.ChipModel(NOMINAL, config).record(network, inputs, dt=DT, key=None)[0]
    return np.asarray(raw.membrane[:, 0, 0], np.float64)


def _pulse(width=WIDTH, time=40, step=5):
    """All `width` inputs spike once, together, at `step`."""
    return jnp.zeros((time, 1, width)).at[step].set(1.0)


def test_default_saturation_is_the_ota_bias_current_in_lsb():
    # docs/reference/chip-model.md §2: I_sat = i_synin_gm / 1023 * 1 uA (CapMem full
    # scale) over one LSB of current, C(63) * V_LSB / 10 us = 2.2 pF * 4.5 mV / 10 us.
    bias = 500 / 1023 * 1e-6
    lsb_current = 2.2e-12 * 4.5e-3 / 10e-6
    assert SYNAPTIC_SATURATION == pytest.approx(bias / lsb_current, rel=0.01)
    assert QUIET.saturation == SYNAPTIC_SATURATION


def test_excitation_and_inhibition_saturate_separately():
    # The membrane is linear in J = f(I_e) - f(I_i), so with separate saturation the
    # response to excitation plus inhibition is exactly the sum of the two responses,
    # even where the excitation is deep in saturation. A saturation of the net current
    # f(I_e - I_i) would let the saturated excitation swallow most of the inhibition.
    # i_synin_gm 200: I_sat = 196 LSB, and 20 rows at 63 (563 LSB of linear current)
    # saturate while the membrane stays inside the CADC's reliable range.
    exc, inh = 20, 3
    network = _li([63.0] * exc + [-63.0] * inh, gm=200.0)
    pulse = _pulse()
    both = _membrane(network, pulse)
    only_exc = _membrane(network, pulse.at[:, :, exc:].set(0.0))
    only_inh = _membrane(network, pulse.at[:, :, :exc].set(0.0))
    single = _membrane(network, pulse.at[:, :, 1:].set(0.0))
    # the excitation alone is strongly saturated: well below 20 single-row responses
    assert only_exc.max() - LEAK < 0.6 * exc * (single.max() - LEAK)
    assert only_inh.min() < LEAK - 10.0  # the inhibition is a real signal
    np.testing.assert_allclose(both - LEAK, (only_exc - LEAK) + (only_inh - LEAK), atol=1e-3)
    # the inhibition takes its full effect off the saturated excitation's peak
    assert only_exc.max() - both.max() > 0.5 * (LEAK - only_inh.min())


def test_linear_regime_matches_the_sum_of_single_psps():
    # Small summed input: tanh(x) = x (1 - x^2 / 3 + ...), so the n-input response differs
    # from the sum of the single-input responses by at most x_max^2 / 3 of it, with
    # x_max = (linear current of all n inputs) / I_sat.
    # (i_synin_gm 200 as above: I_sat = 196 LSB, 11.3 LSB of current per weight 63.)
    weights = [10.0, 20.0, 15.0, 5.0]
    n = len(weights)
    network = _li(weights, gm=200.0)
    together = _membrane(network, _pulse()) - LEAK
    singles = sum(
        _membrane(network, _pulse() * (jnp.arange(WIDTH) == k).astype(jnp.float32)[None, None])
        - LEAK
        for k in range(n)
    )
    efficacy = QUIET.weight_efficacy * 1000 / 600 * 200 / 500  # LSB of current per weight
    limit = SYNAPTIC_SATURATION * 200 / 500
    x_max = efficacy * sum(weights) / limit
    peak = singles.max()
    assert peak > 3.0
    deviation = np.abs(together - singles).max()
    assert deviation <= x_max**2 / 3 * peak + 1e-3
    assert deviation > 0.1 * x_max**2 / 3 * peak  # the saturation's (small) share shows


@pytest.mark.parametrize(
    ("gm", "capacitance", "dac"),
    [(100.0, 63.0, 1000.0), pytest.param(120.0, 45.0, 300.0, marks=pytest.mark.slow)],
)
def test_saturation_level_scales_as_derived(gm, capacitance, dac):
    # A drive far beyond saturation (every input row at 63, every step) holds the
    # membrane at leak + tau_mem / C * I_sat, I_sat = saturation * gm / 500, C = 10 us *
    # capacitance / 63: the plateau is proportional to i_synin_gm, inversely to the
    # capacitance, and independent of the synapse DAC bias (which only sets how many
    # events reach it).
    tau, rows, time = 6e-6, WIDTH, 80
    inputs = jnp.ones((time, 1, rows))
    trace = _membrane(_li([63.0] * rows, capacitance=capacitance, dac=dac, gm=gm, tau=tau), inputs)
    plateau = trace[-QUIET.substeps * 10 :].mean() - LEAK
    limit = SYNAPTIC_SATURATION * gm / 500
    expected = tau / (10e-6 * capacitance / 63) * limit
    # the linear current, one event per step decaying by exp(-dt / tau) in between, stays
    # >= 5 I_sat: tanh is within 2e-4 of 1
    per_step = QUIET.weight_efficacy * dac / 600 * gm / 500 * 63 * rows
    lowest = per_step / (1 - math.exp(-DT / tau)) * math.exp(-DT / tau)
    assert lowest / limit > 5
    assert plateau == pytest.approx(expected, rel=5e-3)


@pytest.mark.slow
def test_events_to_saturate_scale_inversely_with_the_dac_bias():
    # The linear current per event is kappa * w * dac / 600 * gm / 500 and I_sat does not
    # depend on the DAC bias: n rows at DAC d saturate exactly as n * d / d' rows at d'.
    # 10 rows at DAC 1000 carry the same current as 20 rows at DAC 500.
    a = _membrane(_li([63.0] * 10, dac=1000.0), _pulse())
    b = _membrane(_li([63.0] * 20, dac=500.0), _pulse())
    np.testing.assert_allclose(a, b, rtol=1e-5)


def _joined(inputs_on, *, fan_in, capacitance=63.0, gm=200.0):
    """One LI neuron with `fan_in` signed inputs (so `ceil(fan_in / 128)` circuits), each
    weight 63 on the inputs `inputs_on`, 0 elsewhere."""
    weights = jnp.zeros((1, fan_in)).at[0, jnp.asarray(inputs_on)].set(63.0)
    return bj.Sequential(
        [
            bj.Synapse(fan_in, 1, weight=weights),
            bj.LI(
                1,
                leak=LEAK,
                tau_mem=6e-6,
                tau_syn=6e-6,
                membrane_capacitance=bj.Mixed(10e-6, jnp.asarray(capacitance, jnp.float32)),
                synapse_dac_bias=1000.0,
                i_synin_gm=gm,
            ),
        ]
    )


def test_joined_circuits_share_one_membrane_and_add_their_inputs():
    # c joined circuits: one membrane of capacitance C + (c - 1) * joined_capacitance,
    # each circuit with its own synaptic inputs whose currents add. A single input's
    # current is the same on any circuit, so its PSP scales exactly as 1 / C_total.
    # hxtorch's SingleCompartmentNeuron sets the other circuits' capacitance to 0 (the
    # default): the PSP is the one-circuit PSP, wherever the input enters.
    assert bj.circuits_per_neuron(128) == 1 and bj.circuits_per_neuron(256) == 2
    one = _membrane(_joined([0], fan_in=128), _pulse(128)) - LEAK
    two_first = _membrane(_joined([0], fan_in=256), _pulse(256)) - LEAK
    two_second = _membrane(_joined([200], fan_in=256), _pulse(256)) - LEAK
    assert one.max() > 5.0
    np.testing.assert_allclose(two_first, one, atol=1e-4)
    np.testing.assert_allclose(two_second, two_first, atol=1e-4)
    # with the other circuit's capacitor joined in (setting 63 each) the PSP halves ...
    both = QUIET.replace(joined_capacitance=63.0)
    np.testing.assert_allclose(
        _membrane(_joined([200], fan_in=256), _pulse(256), both) - LEAK, one / 2, atol=1e-4
    )
    # ... which is that of one circuit of twice the capacitance setting (2 x 30 vs 60)
    double = _membrane(_joined([0], fan_in=128, capacitance=60.0), _pulse(128)) - LEAK
    half = _membrane(_joined([0], fan_in=128, capacitance=30.0), _pulse(128)) - LEAK
    np.testing.assert_allclose(double, half / 2, atol=1e-4)


def test_each_joined_circuit_saturates_on_its_own():
    # 20 rows on one circuit saturate its OTA (i_synin_gm 200: I_sat = 196 LSB, 563 LSB
    # of linear current); 10 + 10 rows on two circuits each stay further from it, so the
    # split input drives the shared membrane harder. Without saturation both are the same.
    first, second = list(range(20)), list(range(10)) + list(range(128, 138))
    pulse = _pulse(256)
    one_circuit = _membrane(_joined(first, fan_in=256), pulse) - LEAK
    split = _membrane(_joined(second, fan_in=256), pulse) - LEAK
    single = _membrane(_joined([0], fan_in=256), pulse) - LEAK
    assert split.max() < 20 * single.max()  # both saturate, ...
    assert split.max() > 1.3 * one_circuit.max()  # ... each circuit on its own


@pytest.mark.parametrize(
    ("capacitance", "fan_in"),
    [(63.0, 1), (16.0, 1), pytest.param(63.0, 256, marks=pytest.mark.slow)],
)
def test_membrane_noise_scales_as_inverse_sqrt_capacitance(capacitance, fan_in):
    # The OU noise's stationary std is membrane_noise * sqrt(63 / C_total); the initial
    # state is drawn from the stationary law, so every sample of the membrane has it.
    # 4 neurons x 4000 runs at one time point: 16000 draws, the std's relative standard
    # error 1 / sqrt(2 * 16000) = 0.6 %; the tolerance is 4 %.
    # The two-circuit case joins both capacitors (joined_capacitance = capacitance).
    sigma, neurons, batch = 2.0, 4, 4000
    config = QUIET.replace(membrane_noise=sigma)
    if fan_in > 128:
        config = config.replace(joined_capacitance=capacitance)
    network = bj.Sequential(
        [
            bj.Synapse(fan_in, neurons, weight=jnp.zeros((neurons, fan_in))),
            bj.LI(
                neurons,
                leak=LEAK,
                membrane_capacitance=bj.Mixed(10e-6, jnp.asarray(capacitance, jnp.float32)),
            ),
        ]
    )
    inputs = jnp.zeros((3, batch, fan_in))
    raw = bj.ChipModel(NOMINAL, config).record(network, inputs, dt=DT, key=jax.random.PRNGKey(0))
    samples = np.asarray(raw[0].membrane[15], np.float64)  # one sub-step, (batch, neurons)
    total = capacitance * bj.circuits_per_neuron(fan_in)
    expected = sigma * math.sqrt(63.0 / total)
    assert samples.std() == pytest.approx(expected, rel=0.04)
    assert samples.mean() == pytest.approx(LEAK, abs=4 * expected / math.sqrt(samples.size))


def test_five_rows_at_the_yin_yang_calibration_stay_nearly_linear():
    # hxtorch repeats each Yin-Yang input 5 times. At its calibration (capacitance 63, DAC
    # bias 1000, i_synin_gm 500, tau 6 us) one event of weight 63 adds 0.67 * 63 * 1000 /
    # 600 = 70.4 LSB of current, 5 of them x = 352 / 490 = 0.72 of I_sat: the current is
    # tanh(x) / x = 0.856 of the linear one at the jump and closer to it as it decays, so
    # the peak is between 0.856 and 1 of 5 single PSPs (measured 0.934; the old net-current
    # tanh with I_sat 150 gave 0.65).
    network = _li([63.0] * 5)
    together = _membrane(network, _pulse()).max() - LEAK
    first = (jnp.arange(WIDTH) == 0).astype(jnp.float32)[None, None]
    single = _membrane(network, _pulse() * first).max() - LEAK
    # the single PSP as without saturation: for tau_mem = tau_syn = tau a current jump J0
    # gives v - leak = J0 t / C exp(-t / tau), peak J0 tau / (C e) = 70.4 * 0.6 / e = 15.5
    # (the saturation takes < 1 % off it: tanh(0.14) / 0.14 = 0.993 at the jump)
    jump = QUIET.weight_efficacy * 63 * 1000 / 600
    assert single == pytest.approx(jump * 6e-6 / 10e-6 / math.e, rel=0.01)
    x = 5 * jump / SYNAPTIC_SATURATION
    assert math.tanh(x) / x * 5 * single <= together <= 5 * single


@pytest.mark.slow
def test_hxtorch_yin_yang_network_fires_at_its_published_calibration():
    # hxtorch's Yin-Yang network (5 inputs x 5 repetitions -> 120 LIF -> 3 LI) at its
    # published calibration (capacitance 63, DAC bias 1000, i_synin_gm 500, tau 6 us,
    # leak/reset 80, threshold 150) and weight scale 64, from its initial weights, on a
    # calibrated random chip: the hidden layer fires (on 200 samples, 20 spikes per
    # sample, 76 % of the 27 it gives without any saturation; docs/reference/chip-model.md).
    # Under the earlier net-current tanh with I_sat = 150 it gave no spike at all.
    from bss2jax.yinyang import YinYangConfig, YinYangLoss, yin_yang_network
    from bss2jax.yinyang._recipe import clip_weights

    config = YinYangConfig(
        capacitance=63.0,
        synapse_dac_bias=1000.0,
        weight_scale=64.0,
        output_weight_scale=64.0,
        hidden_trace_scale=1 / 50,
        readout_trace_scale=1 / 50,
    )
    network = clip_weights(yin_yang_network(config, key=jax.random.PRNGKey(0)))  # as hxtorch
    samples = bj.data.yin_yang(60, seed=1)
    spikes = YinYangLoss.from_config(config).inputs(jnp.asarray(samples.coordinates, jnp.float32))
    chip = bj.ChipInstance.random(jax.random.PRNGKey(5))
    hidden, _ = bj.run(network, spikes, backend=bj.ChipModel(chip), key=jax.random.PRNGKey(2))
    spikes_per_sample = float(hidden.spikes.sum()) / 60
    active = float((hidden.spikes.sum(0) > 0).mean())  # (sample, neuron) pairs that fire
    assert spikes_per_sample > 8.0 and active > 0.08

"""`align_network`: `align` per population at its fan-in, written into the network."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import bss2jax as bj

# cheap probes: one noiseless run per measurement, one weight per sweep
QUICK = dict(
    repetitions=1,
    time=80,
    saturating_weight=(63.0,),
    hardware_weights=(63.0,),
    model_weights=(1.0,),
)


def _network(key):
    k1, k2 = jax.random.split(key)
    return bj.Sequential(
        [
            bj.Synapse(200, 4, key=k1),
            bj.LIF.model_space(4),
            bj.Synapse(4, 2, key=k2),
            bj.LI.model_space(2),
        ]
    )


def _backend():
    # a response two steps late: the measured cadc_time_shift is +2 (test_align); joined
    # circuits that add their capacitance, so fan-in 200 (two circuits) has smaller PSPs
    config = bj.ChipConfig.noiseless(synaptic_delay=2e-6, joined_capacitance=63.0)
    return bj.ChipModel(bj.ChipInstance.nominal(), config)


def test_every_population_is_aligned_at_its_fan_in_and_written_in():
    backend, network = _backend(), _network(jax.random.PRNGKey(0))
    aligned, alignments = bj.align_network(backend, network, **QUICK)
    hidden = bj.align(backend, network.layers[1], fan_in=200, **QUICK)
    readout = bj.align(
        backend, network.layers[3], fan_in=4, trace_scale=float(hidden.trace_scale), **QUICK
    )
    for index, expected in ((0, hidden), (1, readout)):
        got = alignments[index]
        for name in ("trace_offset", "trace_scale", "weight_scale", "baseline"):
            np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-6)
        neuron = aligned.population(index)
        np.testing.assert_allclose(neuron.trace_scale, expected.trace_scale, rtol=1e-6)
        np.testing.assert_allclose(neuron.trace_offset, expected.trace_offset, rtol=1e-6)
        assert neuron.cadc_time_shift == 2
        scale = aligned.synapse(index).transform.scale
        np.testing.assert_allclose(scale, expected.weight_scale, rtol=1e-6)
    # fan-in 200 joins two circuits, fan-in 4 one: the probes saw different membranes
    assert float(hidden.backend_slope) < 0.8 * float(readout.backend_slope)
    # the readout does not fire: it takes the hidden layer's trace scale
    assert float(alignments[1].trace_scale) == pytest.approx(float(hidden.trace_scale))
    # the model weights, and so the numerics, are untouched
    for index in range(2):
        assert np.array_equal(aligned.synapse(index).weight, network.synapse(index).weight)


def test_per_neuron_scales_act_on_rows_and_time_shift_can_be_kept():
    backend, network = _backend(), _network(jax.random.PRNGKey(1))
    aligned, alignments = bj.align_network(
        backend, network, per_neuron=True, time_shift=False, trace_scale={1: 0.02}, **QUICK
    )
    assert aligned.synapse(0).transform.scale.shape == (4, 1)
    assert aligned.population(0).trace_scale.shape == (4,)
    assert aligned.population(1).cadc_time_shift == 0
    np.testing.assert_allclose(alignments[1].trace_scale, 0.02)


def test_bad_networks_are_named_errors():
    backend = _backend()
    key = jax.random.PRNGKey(0)
    only_li = bj.Sequential([bj.Synapse(3, 2, key=key), bj.LI.model_space(2)])
    with pytest.raises(ValueError, match="does not fire.*trace_scale"):
        bj.align_network(backend, only_li, **QUICK)
    with pytest.raises(ValueError, match="`trace_scale` names populations \\[7\\]"):
        bj.align_network(backend, only_li, trace_scale={7: 0.1}, **QUICK)
    custom = bj.Sequential(
        [bj.Synapse(3, 2, key=key, transform=bj.ExponentialClamp()), bj.LIF.model_space(2)]
    )
    with pytest.raises(ValueError, match="synapse 0 .*linear_saturating"):
        bj.align_network(backend, custom)
    with pytest.raises(TypeError, match="`network` must be a bss2jax network"):
        bj.align_network(backend, [custom])

"""Neuron populations: hxtorch's defaults, parameter handling, validation, pytree-ness."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_NEURON_TYPES, model_space_neuron, tree_allclose

import bss2jax as bj


def test_hxtorch_defaults():
    lif = bj.LIF(4)
    for name, expected in [
        ("leak", 80.0),
        ("reset", 80.0),
        ("threshold", 125.0),
        ("tau_mem", 10e-6),
        ("tau_syn", 10e-6),
        ("refractory_time", 1e-6),
        ("trace_scale", 1.0),
        ("trace_offset", 0.0),
    ]:
        np.testing.assert_allclose(bj.model_value(getattr(lif, name)), expected, rtol=1e-6)
    # Capacitance: model 10e-6 (so tau_mem = c reduces to the old LIF), chip 63 LSB.
    np.testing.assert_allclose(bj.model_value(lif.membrane_capacitance), 10e-6, rtol=1e-6)
    np.testing.assert_allclose(bj.hardware_value(lif.membrane_capacitance), 63.0)
    assert isinstance(lif.surrogate, bj.SuperSpike) and lif.surrogate.alpha == 50.0
    assert lif.cadc_time_shift == 0 and not lif.shift_cadc_to_first
    assert lif.interpolation == "linear" and lif.integrator == "euler"
    assert lif.enable_spike_recording and lif.enable_cadc_recording
    assert not lif.enable_madc_recording
    assert (lif.leaky, lif.fire, lif.exponential, lif.adaptation) == (True, True, False, False)

    adex = bj.AdEx(4)
    assert (adex.leaky, adex.fire, adex.exponential) == (True, True, True)
    assert adex.subthreshold_adaptation and adex.spike_triggered_adaptation
    for name, expected in [
        ("exponential_slope", 50e-3),
        ("exponential_threshold", 110.0),
        ("subthreshold_adaptation_strength", 1.0),
        ("spike_triggered_adaptation_increment", 1.0),
        ("tau_adap", 100e-6),
    ]:
        np.testing.assert_allclose(bj.model_value(getattr(adex, name)), expected, rtol=1e-6)

    li = bj.LI(4)
    assert not li.fire and not li.enable_spike_recording
    np.testing.assert_allclose(bj.model_value(li.leak), 80.0)


@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_flags_match_integrator(cls):
    neuron = cls(3)
    flags = neuron.cuba_flags()
    assert flags.fire == neuron.fire and flags.leaky == neuron.leaky
    assert flags.exact is False
    assert cls(3, integrator="exact").cuba_flags().exact is True
    params = neuron.cuba_params()
    assert set(params._fields) <= set(type(neuron).__dataclass_fields__)


@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_parameters_are_trainable_leaves(cls):
    neuron = cls(3)
    leaves = jax.tree_util.tree_leaves(eqx.filter(neuron, eqx.is_inexact_array))
    # Every physical parameter is an array leaf; sizes and flags are static.
    assert len(leaves) >= 10
    assert all(jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in leaves)
    static = jax.tree_util.tree_structure(neuron)
    assert jax.tree_util.tree_structure(cls(3)) == static


@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_per_neuron_parameters_equal_separate_runs(cls, getkey):
    # A population with per-neuron tau_mem behaves as separate populations of one neuron.
    taus = jnp.array([5e-6, 10e-6, 20e-6])
    weight = jax.random.uniform(getkey(), (3, 4), minval=0.0, maxval=1.5)
    inputs = (jax.random.uniform(getkey(), (30, 2, 4)) < 0.3).astype(jnp.float32)
    together = bj.Sequential(
        [bj.Synapse(4, 3, weight=weight), model_space_neuron(cls, 3, tau_mem=taus)]
    )
    (obs,) = bj.run(together, inputs)
    for n in range(3):
        alone = bj.Sequential(
            [
                bj.Synapse(4, 1, weight=weight[n : n + 1]),
                model_space_neuron(cls, 1, tau_mem=float(taus[n])),
            ]
        )
        (single,) = bj.run(alone, inputs)
        sliced = jax.tree_util.tree_map(lambda a, n=n: a[:, :, n : n + 1], obs)
        assert tree_allclose(sliced, single)


@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_bad_parameters_raise_named_errors(cls):
    with pytest.raises(ValueError, match="`size`"):
        cls(0)
    with pytest.raises(ValueError, match="`tau_mem`"):
        cls(3, tau_mem=-1e-6)
    with pytest.raises(ValueError, match="`tau_syn`.*shape"):
        cls(3, tau_syn=jnp.ones(4) * 1e-5)
    with pytest.raises(ValueError, match="`integrator`"):
        cls(3, integrator="rk4")
    with pytest.raises(ValueError, match="`interpolation`"):
        cls(3, interpolation="cubic")
    with pytest.raises(ValueError, match="`record_neuron_id`"):
        cls(3, record_neuron_id=3)
    with pytest.raises(ValueError, match="`cadc_time_shift`"):
        cls(3, cadc_time_shift=1.5)
    # a misspelt keyword is refused, not swallowed (hxtorch's `**extra_params` drops it)
    with pytest.raises(TypeError, match="'enable_cadc_recordin'"):
        cls(3, enable_cadc_recordin=False)


@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_readout_keywords_and_their_defaults(cls):
    # the shared readout keywords (`Readout`) act on every type alike: hxtorch's defaults,
    # and a value given is the value stored
    plain = cls(3)
    assert (plain.i_synin_gm, plain.synapse_dac_bias, plain.record_neuron_id) == (500.0, 600.0, 0)
    assert plain.enable_cadc_recording and not plain.enable_madc_recording
    given = cls(3, trace_scale=0.5, integrator="exact", i_synin_gm=400.0, record_neuron_id=2)
    assert (given.integrator, given.i_synin_gm, given.record_neuron_id) == ("exact", 400.0, 2)
    np.testing.assert_allclose(bj.model_value(given.trace_scale), 0.5)


def test_bad_refractory_and_surrogate():
    with pytest.raises(ValueError, match="`refractory_time`"):
        bj.LIF(2, refractory_time=-1e-6)
    with pytest.raises(TypeError, match="`surrogate`"):
        bj.LIF(2, surrogate=lambda x: x > 0)


def test_mixed_uses_model_value_in_numerics():
    # Model threshold 1, chip threshold 125: the numerics spike at 1.
    lif = bj.LIF(1, leak=0.0, reset=0.0, threshold=bj.Mixed(1.0, 125.0))
    net = bj.Sequential([bj.Synapse(1, 1, weight=jnp.array([[20.0]])), lif])
    # One input at step 0: i[t] = 20 * 0.9^t (tau_syn = 10 dt). v[1] = dt/c * i[0] = 2 > 1:
    # spike, reset to 0; step 2 is refractory (1 us); v[3] = 0 + 0.1 * i[2] = 1.62 > 1:
    # spike. With the chip threshold (125) nothing would fire.
    (obs,) = bj.run(net, jnp.zeros((4, 1, 1)).at[0].set(1.0))
    np.testing.assert_array_equal(obs.spikes[:, 0, 0], [0.0, 1.0, 0.0, 1.0])
    assert bj.hardware_value(lif.threshold) == 125.0


def test_frozen_parameters_get_zero_gradient():
    li = bj.LI(2, leak=0.0, tau_mem=bj.Frozen(10e-6), tau_syn=5e-6)
    net = bj.Sequential([bj.Synapse(1, 2, weight=jnp.array([[1.0], [2.0]])), li])
    inputs = jnp.zeros((10, 1, 1)).at[1].set(1.0)

    def loss(n):
        return jnp.sum(bj.run(n, inputs)[0].membrane_cadc)

    grads = jax.grad(loss)(net)
    assert np.all(np.asarray(grads.layers[1].tau_mem.value) == 0.0)
    assert np.all(np.asarray(grads.layers[1].tau_syn) != 0.0)
    # Freezing does not change the forward values.
    free = eqx.tree_at(lambda n: n.layers[1].tau_mem, net, jnp.asarray(10e-6))
    assert tree_allclose(bj.run(net, inputs), bj.run(free, inputs))


@pytest.mark.parametrize("cls", [bj.LIF, bj.LI])
def test_model_space_preset(cls):
    # Model units 0 (leak, reset) and 1 (threshold), hxtorch's chip values as the chip side,
    # and a readout that maps the chip values back onto the model values.
    neuron = cls.model_space(3)
    names = ["leak"] + ["reset", "threshold"] * neuron.fire
    models = {"leak": 0.0, "reset": 0.0, "threshold": 1.0}
    chips = {"leak": 80.0, "reset": 80.0, "threshold": 125.0}
    for name in names:
        value = getattr(neuron, name)
        assert isinstance(value, bj.Mixed)
        np.testing.assert_allclose(bj.model_value(value), models[name])
        np.testing.assert_allclose(bj.hardware_value(value), chips[name])
        trace = jnp.full((1, 1, 3), chips[name])
        np.testing.assert_allclose(bj.cadc_to_model(trace, neuron), models[name], atol=1e-6)
    assert neuron.integrator == "exact"
    # Every keyword of the constructor overrides the preset's; hxtorch's defaults stay put.
    tuned = cls.model_space(3, tau_mem=6e-6, integrator="euler")
    np.testing.assert_allclose(tuned.tau_mem, 6e-6)
    assert tuned.integrator == "euler"
    np.testing.assert_allclose(bj.model_value(cls(3).leak), 80.0)
    with pytest.raises(TypeError):
        cls.model_space(3, leek=1.0)


def test_model_space_lif_threshold_is_one_model_unit():
    # The free membrane's steady state under a constant drive, measured on the preset's LI
    # (same dynamics, no threshold), is u; the preset's LIF fires iff u exceeds 1.
    steps, dt = 300, 1e-6
    drive = jnp.ones((steps, 1, 1))
    unit = bj.Sequential([bj.Synapse(1, 1, weight=jnp.ones((1, 1))), bj.LI.model_space(1)])
    (free,) = bj.run(unit, drive, dt=dt)
    steady = float(free.membrane_cadc[-1, 0, 0])  # per unit weight
    for level, fires in ((1.2, True), (0.8, False)):
        weight = jnp.full((1, 1), level / steady)
        net = bj.Sequential([bj.Synapse(1, 1, weight=weight), bj.LIF.model_space(1)])
        (obs,) = bj.run(net, drive, dt=dt)
        assert bool(jnp.any(obs.spikes > 0)) == fires


def test_replace_static_copies_and_checks_the_field():
    from bss2jax._misc import replace_static

    lif = bj.LIF(3)
    shifted = replace_static(lif, cadc_time_shift=-1, interpolation="nearest")
    assert (shifted.cadc_time_shift, shifted.interpolation) == (-1, "nearest")
    assert (lif.cadc_time_shift, lif.interpolation) == (0, "linear")  # the original is kept
    assert shifted.threshold is lif.threshold  # leaves shared, as eqx.tree_at shares them
    with pytest.raises(ValueError, match="not static fields of LIF"):
        replace_static(lif, threshold=1.0)

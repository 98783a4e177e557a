"""Defaults that work for a newcomer: the model-space presets, the fluctuation-driven
initialisation, `fit`'s diagnostics, and a fresh network that learns (issue 15)."""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bss2jax as bj
import bss2jax.data as bd

IN, CLASSES, STEPS = 20, 4, 30


def _task(key, samples):
    """Poisson inputs: class c raises the rate of input block c (5 channels) from 2 % to
    22 % per step. Inputs `(samples, time, in)`, labels `(samples,)`."""
    k_label, k_spikes = jax.random.split(key)
    labels = jax.random.randint(k_label, (samples,), 0, CLASSES)
    block = jnp.arange(IN)[None, :] // (IN // CLASSES)
    rates = 0.02 + 0.2 * (block == labels[:, None]).astype(float)
    spikes = jax.random.uniform(k_spikes, (samples, STEPS, IN)) < rates[:, None, :]
    return spikes.astype(float), labels


def _loss(network, batch, *, key, backend):
    inputs, labels = batch
    _, readout = bj.run(network, jnp.swapaxes(inputs, 0, 1), backend=backend, key=key)
    scores = bd.max_over_time(readout.membrane_cadc)
    return bj.cross_entropy(scores, labels), {"accuracy": bj.accuracy(scores, labels)}


def _fresh(key, hidden=32, **lif):
    k1, k2 = jax.random.split(key)
    return bj.Sequential(
        [
            bj.Synapse(IN, hidden, key=k1),
            bj.LIF.model_space(hidden, **lif),
            bj.Synapse(hidden, CLASSES, key=k2),
            bj.LI.model_space(CLASSES),
        ]
    )


def _free_membrane(network, inputs):
    """The first population's membrane with its threshold removed (no spikes, no reset)."""
    free = eqx.tree_at(lambda n: n.layers[1].threshold, network, jnp.inf)
    return bj.run(free, inputs)[0].membrane_cadc


@pytest.mark.parametrize("xi, mean", [(1.0, 0.0), (2.0, 0.4)])
def test_init_hits_the_target_membrane_moments(getkey, xi, mean):
    # Rossbroich et al.'s targets, measured on the free membrane over (time, batch, neuron):
    # mean = leak + mean * span, E[(U - mean)^2] = ((1 - mean) * span / xi)^2 (span = 1).
    # Monte-Carlo error of the weights over N = 512 neurons: the mean's standard deviation
    # is at most target / sqrt(N) (as sum_j E[F_j]^2 <= sum_j E[F_j^2]); the second moment's
    # relative one about sqrt(2 / 20 / N) ~ 1.4 % (20 inputs per neuron).
    inputs = jnp.swapaxes(_task(getkey(), 64)[0], 0, 1)
    network = bj.init_fluctuation_driven(
        _fresh(getkey(), hidden=512), inputs, key=getkey(), xi=xi, mean=mean
    )
    membrane = _free_membrane(network, inputs)
    target = (1.0 - mean) / xi
    np.testing.assert_allclose(float(jnp.mean(membrane)), mean, atol=4 * target / 512**0.5)
    np.testing.assert_allclose(float(jnp.mean((membrane - mean) ** 2)), target**2, rtol=0.1)


@pytest.mark.slow
def test_init_follows_the_units_of_the_network(getkey):
    # The same draw in hxtorch's units (leak 80, threshold 125: a span of 45) gives 45 times
    # the weights of the model-space network (the free membrane is linear in the weights).
    inputs = jnp.swapaxes(_task(getkey(), 16)[0], 0, 1)
    key, init_key = getkey(), getkey()
    model = bj.init_fluctuation_driven(_fresh(key), inputs, key=init_key)
    chip = _fresh(key, leak=80.0, reset=80.0, threshold=125.0)
    chip = bj.init_fluctuation_driven(chip, inputs, key=init_key)
    np.testing.assert_allclose(chip.layers[0].weight, 45.0 * model.layers[0].weight, rtol=1e-4)
    # the readout's weights follow its own target (readout_std), the same in both
    np.testing.assert_allclose(chip.layers[2].weight.std(), model.layers[2].weight.std(), rtol=0.5)


def test_init_honours_a_mask_row_by_row(getkey):
    # Identical inputs on every channel give every channel the same unit response F(t), so
    # row i with k_i connections gets sigma_w = 1 / sqrt(k_i * E[F^2]) (xi = 1, span 1).
    inputs = (jax.random.uniform(getkey(), (STEPS, 8, 1)) < 0.3).astype(float)
    unit = bj.Sequential([bj.Synapse(1, 1, weight=jnp.ones((1, 1))), bj.LI.model_space(1)])
    second = float(jnp.mean(bj.run(unit, inputs)[0].membrane_cadc ** 2))
    connections = jnp.array([5.0, 20.0])
    mask = jnp.arange(IN, dtype=float)[None, :] < connections[:, None]
    network = bj.Sequential([bj.Synapse(IN, 2, key=getkey(), mask=mask), bj.LIF.model_space(2)])
    key = getkey()
    drawn = bj.init_fluctuation_driven(network, jnp.tile(inputs, (1, 1, IN)), key=key)
    noise = jax.random.normal(jax.random.split(key, 1)[0], (2, IN))  # the draw's own noise
    sigma_w = 1.0 / jnp.sqrt(connections * second)
    np.testing.assert_allclose(drawn.layers[0].weight, sigma_w[:, None] * noise, rtol=1e-4)
    assert drawn.layers[0].mask is not None and drawn.layers[1] is network.layers[1]


def test_init_refuses_what_it_cannot_scale(getkey):
    network = _fresh(getkey())
    silent = jnp.zeros((STEPS, 4, IN))
    with pytest.raises(ValueError, match="no input"):
        bj.init_fluctuation_driven(network, silent, key=getkey())
    inputs = jnp.ones((STEPS, 4, IN))
    for name, value in (("xi", 0.0), ("mean", 1.0), ("readout_std", -1.0)):
        with pytest.raises(ValueError, match=f"`{name}`"):
            bj.init_fluctuation_driven(network, inputs, key=getkey(), **{name: value})
    with pytest.raises(ValueError, match="in_features = 20"):
        bj.init_fluctuation_driven(network, jnp.ones((STEPS, 4, 3)), key=getkey())
    with pytest.raises(TypeError, match="Sequential"):
        bj.init_fluctuation_driven({"w": 1.0}, inputs, key=getkey())


def test_firing_rates_of_a_neuron_at_its_refractory_limit():
    # Driven far above threshold with refractory_time = dt, the neuron fires every second
    # step from step 1: 15 spikes in 30 steps, rate 0.5 per step = 0.5 MHz, at the limit.
    network = bj.Sequential(
        [bj.Synapse(1, 1, weight=jnp.full((1, 1), 100.0)), bj.LIF.model_space(1)]
    )

    def loss(net, batch, *, key, backend):
        return jnp.sum(bj.run(net, batch, backend=backend, key=key)[0].spikes)

    (entry,) = bj.firing_rates(
        network, loss, jnp.ones((STEPS, 2, 1)), key=jax.random.key(0)
    ).values()
    from bss2jax._train._diagnostics import _probe_loss

    compiled = _probe_loss._cached._cache_size()
    again = bj.firing_rates(network, loss, jnp.ones((STEPS, 2, 1)), key=jax.random.key(1))
    assert again[0] == entry  # counted afresh, not added to the first call's counts
    assert _probe_loss._cached._cache_size() == compiled  # the probe compiled once
    assert entry["rate"] == 0.5 and entry["silent"] == 0.0
    np.testing.assert_allclose(entry["rate_hz"], 0.5e6)
    np.testing.assert_allclose(entry["saturation"], 1.0)
    assert "LIF, 1 neurons" in entry["label"]
    from bss2jax._train._diagnostics import check_firing

    with pytest.warns(bj.TrainingWarning, match="fires at 100% of the largest rate"):
        check_firing({0: entry})
    with pytest.warns(bj.TrainingWarning, match="never spiked"):
        check_firing({0: {**entry, "rate": 0.0, "rate_hz": 0.0, "saturation": 0.0}})
    # a loss that runs no network reports nothing
    assert (
        bj.firing_rates({"w": jnp.ones(())}, lambda p, b, **_: p["w"], 0.0, key=jax.random.key(0))
        == {}
    )


def test_fit_names_a_dead_population_and_a_still_loss(getkey):
    # hxtorch's defaults (threshold 125 in the model) with torch's initial weights: silent,
    # and the loss sits at ln(4) with a zero gradient.
    k1, k2 = jax.random.split(getkey())
    dead = bj.Sequential(
        [bj.Synapse(IN, 8, key=k1), bj.LIF(8), bj.Synapse(8, CLASSES, key=k2), bj.LI(CLASSES)]
    )
    train = _task(getkey(), 40)
    with pytest.warns(bj.TrainingWarning) as caught:
        bj.fit(
            dead,
            _loss,
            optax.adam(1e-2),
            train,
            epochs=1,
            batch_size=20,
            key=getkey(),
            progress=False,
        )
    messages = [str(w.message) for w in caught]
    assert any("population 0 (LIF, 8 neurons) never spiked" in m for m in messages)
    assert any("ln(4)" in m and "did not move" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bj.fit(
            dead,
            _loss,
            optax.adam(1e-2),
            train,
            epochs=1,
            batch_size=20,
            key=getkey(),
            progress=False,
            diagnose=False,
        )


def test_loss_check_only_flags_a_still_loss():
    from bss2jax._train._diagnostics import check_loss_moves

    assert check_loss_moves(1.0, 0.99) is None
    with pytest.warns(bj.TrainingWarning, match="did not move") as caught:
        check_loss_moves(0.5, 0.5)
    assert "ln(" not in str(caught[0].message)  # e^0.5 is no number of classes
    with pytest.warns(bj.TrainingWarning, match=r"ln\(10\)"):
        check_loss_moves(math.log(10), math.log(10))


def test_a_fresh_network_with_defaults_fires_and_learns(getkey):
    # Done-when of issue 15: defaults, the initialisation and `fit`, no constant copied.
    # Any TrainingWarning (a silent or saturated population, a still loss) fails the test
    # (pytest's filterwarnings = error).
    train = _task(getkey(), 200)
    network = _fresh(getkey())
    sample = jnp.swapaxes(train[0][:50], 0, 1)
    network = bj.init_fluctuation_driven(network, sample, key=getkey())
    (hidden, readout) = bj.run(network, sample)
    assert 0.005 < float(jnp.mean(hidden.spikes)) < 0.2  # it fires, below saturation
    result = bj.fit(
        network,
        _loss,
        optax.adam(1e-2),
        train,
        epochs=3,
        batch_size=20,
        key=getkey(),
        progress=False,
    )
    losses = [record["train_loss"] for record in result.history]
    assert losses[0] < math.log(CLASSES)  # learning within the first epoch already
    assert losses[-1] < 0.6 * losses[0], losses
    assert result.history[-1]["train_accuracy"] > 0.6

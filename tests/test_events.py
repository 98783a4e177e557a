"""The event-driven input projection (`bss2jax.kernels.projection`) against the dense
product: values and weight gradients, every path of the wrapper's choice."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bss2jax.kernels import projection
from helpers import tree_allclose


def _spikes(seed, shape, density):
    return (np.random.default_rng(seed).random(shape) < density).astype(np.float64)


def _dense_value_and_grad(x, weight, cotangent):
    def f(w):
        return jnp.sum(projection.project(jnp.asarray(x), w, method="dense") * cotangent)

    return jax.value_and_grad(f)(weight)


def test_events_round_trip():
    x = _spikes(0, (6, 4, 30), 0.1)
    events = projection.from_numpy(x)
    assert events.shape == x.shape
    assert events.capacity % 8 == 0
    assert np.array_equal(np.asarray(events.to_dense(jnp.float32)), x)
    inside = projection.from_dense(jnp.asarray(x), events.capacity)
    assert np.array_equal(np.asarray(inside.indices), np.asarray(events.indices))
    # The transposed table lists, for every input, the flat rows where it fires.
    table = np.asarray(events.by_input)
    rows = x.reshape(-1, 30)
    for j in range(30):
        listed = table[j][table[j] < rows.shape[0]]
        assert np.array_equal(listed, np.nonzero(rows[:, j])[0])


def test_from_numpy_checks():
    with pytest.raises(ValueError, match="0/1"):
        projection.from_numpy(np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="capacity"):
        projection.from_numpy(np.ones((2, 20)), capacity=8)


@pytest.mark.parametrize("by_input", [True, False])
@pytest.mark.parametrize("jit", [False, True])
def test_events_equal_dense(x64, getkey, by_input, jit):
    x = _spikes(1, (9, 5, 40), 0.08)
    weight = jax.random.normal(getkey(), (7, 40), jnp.float64)
    cotangent = jax.random.normal(getkey(), (9, 5, 7), jnp.float64)
    expected = _dense_value_and_grad(x, weight, cotangent)
    events = projection.from_numpy(x, by_input=by_input)

    def f(w, events):
        return jnp.sum(projection.project(events, w, method="events") * cotangent)

    grad = jax.value_and_grad(f)
    got = (jax.jit(grad) if jit else grad)(weight, events)
    assert tree_allclose(got, expected)


@pytest.mark.parametrize("capacity", [3, 16])  # 3: rows overflow, the dense fallback runs
def test_dense_inputs_compacted_in_jit(x64, getkey, capacity):
    x = jnp.asarray(_spikes(2, (8, 3, 40), 0.1))
    weight = jax.random.normal(getkey(), (6, 40), jnp.float64)
    cotangent = jax.random.normal(getkey(), (8, 3, 6), jnp.float64)

    def f(w, x, method):
        return jnp.sum(projection.project(x, w, method=method, capacity=capacity) * cotangent)

    grad = jax.jit(jax.value_and_grad(f, argnums=(0, 1)), static_argnums=2)
    assert tree_allclose(grad(weight, x, "events"), grad(weight, x, "dense"))


def test_float32_close_to_dense(getkey):
    x = _spikes(3, (20, 8, 100), 0.05)
    weight = jax.random.normal(getkey(), (16, 100))
    events = projection.from_numpy(x)
    dense = projection.project(jnp.asarray(x, jnp.float32), weight, method="dense")
    got = projection.project(events, weight)
    assert got.dtype == jnp.float32
    assert tree_allclose(got, dense, rtol=1e-5, atol=1e-5)


def test_choice():
    sparse = projection.from_numpy(_spikes(4, (4, 2, 64), 0.05))
    busy = projection.from_numpy(_spikes(4, (4, 2, 64), 0.6))
    assert projection.uses_events(sparse)
    assert not projection.uses_events(busy)
    assert projection.uses_events(busy, "events")
    assert not projection.uses_events(sparse, "dense")
    assert not projection.uses_events(jnp.zeros((4, 2, 64)))
    assert projection.uses_events(jnp.zeros((4, 2, 64)), "events")
    with pytest.raises(ValueError, match="method"):
        projection.uses_events(sparse, "sparse")


def test_no_events(x64):
    x = np.zeros((3, 2, 10))
    weight = jnp.ones((4, 10), jnp.float64)
    out = projection.project(projection.from_numpy(x), weight, method="events")
    assert np.array_equal(np.asarray(out), np.zeros((3, 2, 4)))


def test_run_with_events(x64, getkey):
    import equinox as eqx

    import bss2jax as bj

    lif = bj.LIF(8, leak=0.0, reset=0.0, threshold=1.0, tau_mem=6e-6, tau_syn=6e-6)
    li = bj.LI(3, leak=0.0, tau_mem=6e-6, tau_syn=6e-6)
    net = bj.Sequential([bj.Synapse(40, 8, key=getkey()), lif, bj.Synapse(8, 3, key=getkey()), li])
    net = eqx.tree_at(lambda n: n.layers[0].weight, net, 6 * net.layers[0].weight)
    x = _spikes(5, (16, 3, 40), 0.1)

    def loss(net, inputs, **options):
        hidden, readout = bj.run(net, inputs, **options)
        return jnp.sum(readout.membrane_cadc**2) + jnp.sum(hidden.spikes)

    expected = eqx.filter_value_and_grad(loss)(net, jnp.asarray(x))
    assert expected[0] > 0
    events = projection.from_numpy(x)
    for options in ({}, {"integrator": "lean"}):  # lean: events projected per segment
        got = eqx.filter_value_and_grad(loss)(net, events, **options)
        assert tree_allclose(got, expected, rtol=1e-9, atol=1e-9)

"""Losses, regularisers and metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import bss2jax as bj
from bss2jax import accuracy, cross_entropy, firing_regulariser, mse, weight_regulariser


def test_cross_entropy_against_numpy():
    scores = jax.random.normal(jax.random.key(0), (5, 3))
    labels = jnp.array([0, 2, 1, 1, 0])
    s = np.asarray(scores, float)
    log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    expected = -log_p[np.arange(5), np.asarray(labels)].mean()
    np.testing.assert_allclose(cross_entropy(scores, labels), expected, rtol=1e-6)
    confident = jax.nn.one_hot(labels, 3) * 100.0
    assert float(cross_entropy(confident, labels)) < 1e-6


def test_cross_entropy_gradient(x64):
    scores = jax.random.normal(jax.random.key(1), (4, 3), dtype=jnp.float64)
    labels = jnp.array([0, 1, 2, 1])
    check_grads(lambda s: cross_entropy(s, labels), (scores,), order=1, modes=["rev"])
    grad = jax.grad(cross_entropy)(scores, labels)
    expected = (jax.nn.softmax(scores) - jax.nn.one_hot(labels, 3)) / 4
    np.testing.assert_allclose(grad, expected, rtol=1e-10)


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="`scores` must have shape \\(batch, classes\\)"):
        cross_entropy(jnp.zeros(3), jnp.zeros(3, int))
    with pytest.raises(ValueError, match="`labels` must have shape \\(batch,\\) = \\(2,\\)"):
        cross_entropy(jnp.zeros((2, 3)), jnp.zeros(3, int))
    with pytest.raises(ValueError, match="integer class indices"):
        cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2))


def test_accuracy():
    scores = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    assert float(accuracy(scores, jnp.array([1, 1, 0]))) == pytest.approx(2 / 3)
    assert float(accuracy(scores, jnp.array([0, 0, 1]))) == pytest.approx(1 / 3)


def test_mse():
    a = jnp.arange(6.0).reshape(1, 2, 3)
    assert float(mse(a, a + 2.0)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="must have the shape of `trace`"):
        mse(a, a[0])


def test_firing_regulariser_values():
    spikes = jnp.zeros((10, 2, 3)).at[:4, 0, 0].set(1.0).at[:1, 1, 1].set(1.0)
    # counts [[4, 0, 0], [0, 1, 0]]
    assert float(firing_regulariser(spikes)) == pytest.approx((16 + 1) / 6)
    assert float(firing_regulariser(spikes, upper=2.0)) == pytest.approx(4 / 6)
    assert float(firing_regulariser(spikes, upper=5.0)) == 0.0
    # mean counts per neuron: [2, 0.5, 0]; lower 1 penalises 0.5 and 0
    with_lower = firing_regulariser(spikes, upper=5.0, lower=1.0)
    assert float(with_lower) == pytest.approx((0.25 + 1.0) / 3)
    with pytest.raises(ValueError, match="`upper` must be non-negative"):
        firing_regulariser(spikes, upper=-1.0)


def test_firing_regulariser_gradient_pushes_counts_down():
    spikes = jnp.ones((5, 1, 2))
    grad = jax.grad(firing_regulariser)(spikes)
    assert np.all(np.asarray(grad) > 0)


def test_weight_regulariser():
    net = bj.Sequential(
        [
            bj.Synapse(2, 2, weight=jnp.array([[1.0, -1.0], [2.0, 0.0]])),
            bj.LIF(2),
            bj.Synapse(2, 1, weight=jnp.array([[3.0, 1.0]])),
            bj.LI(1),
        ]
    )
    assert float(weight_regulariser(net)) == pytest.approx(6 / 4 + 10 / 2)
    assert float(weight_regulariser(net, power=1.0)) == pytest.approx(4 / 4 + 4 / 2)
    grads = jax.grad(weight_regulariser)(net)
    np.testing.assert_allclose(grads.layers[2].weight, [[3.0, 1.0]])
    with pytest.raises(TypeError, match="`network` must be a bj.Sequential"):
        weight_regulariser({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="`power` must be positive"):
        weight_regulariser(net, power=0.0)

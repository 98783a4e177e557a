"""`bj.sweep` equals a Python loop over the same grid, in one compiled call per chunk size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj


def _network(tau_mem, scale):
    weight = jnp.full((4, 3), 1.0) * scale
    return bj.Sequential(
        [
            bj.Synapse(3, 4, weight=weight),
            bj.LIF(4, leak=0.0, reset=0.0, threshold=1.0, tau_mem=tau_mem, tau_syn=5e-6),
        ]
    )


INPUTS = (jax.random.uniform(jax.random.PRNGKey(1), (40, 2, 3)) < 0.3).astype(jnp.float32)


def spike_count(tau_mem, scale):
    return bj.run(_network(tau_mem, scale), INPUTS)[0].spikes.sum()


@pytest.mark.parametrize("chunk_size", [None, 4, 1])
def test_product_grid_matches_loop(chunk_size):
    taus = jnp.array([3e-6, 6e-6])
    scales = jnp.array([0.5, 1.0, 2.0])
    result = bj.sweep(spike_count, {"tau_mem": taus, "scale": scales}, chunk_size=chunk_size)
    assert result.values.shape == (2, 3)
    expected = np.array([[spike_count(t, s) for s in scales] for t in taus])
    np.testing.assert_array_equal(np.asarray(result.values), expected)
    # More weight never gives fewer spikes here (non-negative weights, one layer).
    assert np.all(np.diff(expected, axis=1) >= 0) and expected.max() > 0
    np.testing.assert_array_equal(np.asarray(result.sel(tau_mem=1)), expected[1])


def test_zipped_axes_and_key_axis():
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    scales = jnp.linspace(0.5, 2.0, 5)

    def noisy(key, scale):
        return scale + jax.random.normal(key)

    result = bj.sweep(noisy, {"key": keys, "scale": scales}, product=False, chunk_size=2)
    expected = np.array([noisy(k, s) for k, s in zip(keys, scales, strict=True)])
    np.testing.assert_allclose(np.asarray(result.values), expected, rtol=1e-6)
    assert float(result.sel(key=3)) == pytest.approx(expected[3], rel=1e-6)


def test_pytree_axis_of_networks():
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[_network(5e-6, s) for s in (0.5, 1.0, 2.0)])
    result = bj.sweep(lambda net: bj.run(net, INPUTS)[0].spikes.sum(), {"net": stacked})
    expected = [spike_count(5e-6, s) for s in (0.5, 1.0, 2.0)]
    np.testing.assert_array_equal(np.asarray(result.values), np.asarray(expected))


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one axis"):
        bj.sweep(spike_count, {})
    with pytest.raises(ValueError, match="one length"):
        bj.sweep(spike_count, {"tau_mem": jnp.ones(2), "scale": jnp.ones(3)}, product=False)
    with pytest.raises(ValueError, match="chunk_size"):
        bj.sweep(spike_count, {"tau_mem": jnp.ones(2), "scale": jnp.ones(2)}, chunk_size=0)
    with pytest.raises(ValueError, match="same leading length"):
        bj.sweep(lambda a: a, {"a": (jnp.ones(2), jnp.ones(3))})


def test_repeated_sweep_compiles_once():
    import equinox as eqx

    @eqx.debug.assert_max_traces(max_traces=1)
    def double(a):
        return 2 * a

    for _ in range(3):
        result = bj.sweep(double, {"a": jnp.arange(4.0)})
    np.testing.assert_array_equal(np.asarray(result.values), 2 * np.arange(4.0))


def test_weight_scale_can_be_swept():
    def hardware_sum(scale):
        synapse = bj.Synapse(2, 1, weight=jnp.array([[0.5, -0.25]]))
        synapse = bj.Synapse(2, 1, weight=synapse.weight, transform=bj.linear_saturating(scale))
        return synapse.hardware_weight().sum()

    result = bj.sweep(hardware_sum, {"scale": jnp.array([10.0, 40.0])})
    # round(5) + round(-2.5) = 5 - 3 = 2; round(20) + round(-10) = 10 (half away from zero).
    np.testing.assert_array_equal(np.asarray(result.values), [2.0, 10.0])

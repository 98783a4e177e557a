"""Irregular samples and spike events onto the dense grid (hxtorch's `to_dense`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax.hardware as bjh

DT = 1e-6


def test_grid_length():
    # hxtorch: ceil(runtime / dt) + 1 grid points at k * dt.
    assert bjh.grid_length(10e-6, DT) == 11
    assert bjh.grid_length(10.5e-6, DT) == 12
    assert bjh.grid_length(3 * 0.1e-6, 0.1e-6) == 4  # no off-by-one from 2.9999999... steps


def test_spikes_binned_by_round_and_duplicates_collapse():
    # t / dt = 0.4 -> bin 0; 0.6 -> 1; 1.49 -> 1 (same neuron: collapses with the 0.6 one);
    # 1.51 -> 2; 2.2 -> 2 (other neuron); 3.7 -> 4 (batch 1).
    times = jnp.array([0.4, 0.6, 1.49, 1.51, 2.2, 3.7]) * DT
    neurons = jnp.array([0, 0, 0, 0, 1, 1])
    batch = jnp.array([0, 0, 0, 0, 0, 1])
    dense = bjh.spikes_to_dense(times, neurons, batch, dt=DT, shape=(5, 2, 2))
    expected = np.zeros((5, 2, 2), np.float32)
    expected[0, 0, 0] = expected[1, 0, 0] = expected[2, 0, 0] = 1.0
    expected[2, 0, 1] = 1.0
    expected[4, 1, 1] = 1.0
    assert dense.dtype == jnp.float32
    np.testing.assert_array_equal(dense, expected)
    assert float(dense.max()) == 1.0  # several spikes in one bin give one 1


def test_spikes_off_grid_and_padding_are_ignored():
    # Bins -1 (t = -0.6 dt) and 5 (t = 5.2 dt) lie off a 5-step grid; the third event is
    # padding (valid False). Only the last event (bin 3) remains.
    times = jnp.array([-0.6, 5.2, 2.0, 3.1]) * DT
    zeros = jnp.zeros(4, jnp.int32)
    valid = jnp.array([True, True, False, True])
    dense = bjh.spikes_to_dense(times, zeros, zeros, dt=DT, shape=(5, 1, 1), valid=valid)
    np.testing.assert_array_equal(dense[:, 0, 0], [0, 0, 0, 1, 0])


def test_samples_linear_with_edge_hold():
    # Samples (0.5 us, 10) and (2.5 us, 30): grid 0 holds the first value; 1 us and 2 us
    # are 1/4 and 3/4 of the way: 15 and 25; after the last sample, 30 is held.
    times = jnp.array([0.5, 2.5]) * DT
    values = jnp.array([10.0, 30.0])
    dense = bjh.samples_to_dense(times, values, dt=DT, length=5)
    np.testing.assert_allclose(dense, [10.0, 15.0, 25.0, 30.0, 30.0], rtol=1e-6)


def test_samples_nearest_with_edge_hold():
    # Nearest sample: 0 -> 0.5 (10); 1 -> 0.5 is nearer than 2.5 (10); 2 -> 2.5 (30);
    # 3 and 4 hold 30. With a third sample at 3.8 us (50): grid 3 is 0.5 from 2.5 and 0.8
    # from 3.8 (30); grid 4 is nearest to 3.8 (50).
    times = jnp.array([0.5, 2.5]) * DT
    values = jnp.array([10.0, 30.0])
    dense = bjh.samples_to_dense(times, values, dt=DT, length=5, interpolation="nearest")
    np.testing.assert_array_equal(dense, [10.0, 10.0, 30.0, 30.0, 30.0])
    dense = bjh.samples_to_dense(
        jnp.array([0.5, 2.5, 3.8]) * DT, jnp.array([10.0, 30.0, 50.0]), dt=DT, length=5,
        interpolation="nearest",
    )  # fmt: skip
    np.testing.assert_array_equal(dense, [10.0, 10.0, 30.0, 30.0, 50.0])


def test_cadc_many_channels_time_first(getkey):
    # (batch, neurons, samples) -> (length, batch, neurons), each channel on its own times.
    times = jnp.sort(jax.random.uniform(getkey(), (2, 3, 6), maxval=8e-6), axis=-1)
    values = jax.random.normal(getkey(), (2, 3, 6))
    dense = bjh.cadc_to_dense(times, values, dt=DT, length=9)
    assert dense.shape == (9, 2, 3)
    dense_np, times_np, values_np = (np.asarray(a) for a in (dense, times, values))
    for b in range(2):
        for n in range(3):
            expected = np.interp(np.arange(9) * DT, times_np[b, n], values_np[b, n])
            np.testing.assert_allclose(dense_np[:, b, n], expected, rtol=1e-5, atol=1e-5)
    madc = bjh.madc_to_dense(times[:, 0], values[:, 0], dt=DT, length=9)
    np.testing.assert_array_equal(madc, dense[:, :, 0])


def test_jit_and_vmap(getkey):
    times = jnp.sort(jax.random.uniform(getkey(), (4, 6), maxval=8e-6), axis=-1)
    values = jax.random.normal(getkey(), (4, 6))

    def f(t, v):
        return bjh.samples_to_dense(t, v, dt=DT, length=9)

    np.testing.assert_allclose(jax.jit(f)(times, values), f(times, values), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(f, out_axes=1)(times, values), f(times, values),
                               rtol=1e-6)  # fmt: skip


def test_bad_arguments():
    with pytest.raises(ValueError, match="`interpolation`"):
        bjh.samples_to_dense(jnp.zeros(2), jnp.zeros(2), dt=DT, length=3, interpolation="nn")
    with pytest.raises(ValueError, match="`times` and `values`"):
        bjh.samples_to_dense(jnp.zeros(2), jnp.zeros(3), dt=DT, length=3)

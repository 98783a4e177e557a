"""The chip model's faster pieces (issue 14) against what they replace, bit for bit, and the
statistics of the membrane noise they draw.

Each replacement computes the same float operations as the code it replaced (noise: JAX's
Threefry unrolled; circuits and window extremes: elementwise instead of reductions; CADC
onto the grid: the interpolation found once per batch entry), so the tests demand equality,
not closeness. `benchmarks/chip_speedup.py` checks the whole `observe` against the baseline
commit the same way.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._chip._events import drop_events
from bss2jax._chip._grid import shared_cadc_to_dense
from bss2jax._chip._noise import normal
from bss2jax._chip._readout import _window_extremes
from bss2jax._chip._setup import Layout, sum_circuits


@pytest.mark.parametrize("shape", [(1,), (3, 4), (10, 7, 33)])
def test_normal_is_jax_random_normal_bit_for_bit(shape):
    keys = [jax.random.PRNGKey(0), jax.random.PRNGKey(2**31 + 5), jax.random.key(9)]
    for key in keys:
        expected = np.asarray(jax.random.normal(key, shape))
        assert np.array_equal(np.asarray(normal(key, shape)), expected)
        jitted = jax.jit(normal, static_argnums=1)(key, shape)
        assert np.array_equal(np.asarray(jitted), expected)
    split = jax.random.split(jax.random.PRNGKey(1), 3)
    mapped = jax.vmap(lambda k: normal(k, shape))(split)
    assert np.array_equal(mapped, jax.vmap(lambda k: jax.random.normal(k, shape))(split))


def test_normal_falls_back_for_other_key_implementations():
    key = jax.random.key(3, impl="rbg")
    assert np.array_equal(normal(key, (5,)), jax.random.normal(key, (5,)))


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_shared_cadc_to_dense_equals_the_public_conversion(interpolation):
    rng = np.random.default_rng(0)
    batch, neurons, count, length, dt = 3, 5, 9, 14, 1e-6
    times = np.sort(rng.uniform(-1e-6, 12e-6, (batch, count)), axis=1).astype(np.float32)
    times[1, 3] = times[1, 4]  # two samples at one time: jnp.interp's dx = 0 branch
    values = jnp.asarray(rng.integers(0, 256, (batch, neurons, count)), jnp.float32)
    times = jnp.asarray(times)

    # both jitted, as in the chip model: XLA compiles the arithmetic alike in both (eager
    # op-by-op evaluation can round a fused expression differently)
    @jax.jit
    def expected_of(times, values):
        broadcast = jnp.broadcast_to(times[:, None], values.shape)
        return bjh.cadc_to_dense(
            broadcast, values, dt=dt, length=length, interpolation=interpolation
        )

    expected = expected_of(times, values)
    result = jax.jit(shared_cadc_to_dense, static_argnums=(2, 3, 4))(
        times, values, dt, length, interpolation
    )
    assert result.shape == (length, batch, neurons)
    assert np.array_equal(np.asarray(result), np.asarray(expected))


@pytest.mark.parametrize("widths", [(1, 1), (2, 1), (3, 2)])
def test_sum_circuits_equals_the_reduction(widths):
    sizes = (4, 3)
    neurons, circuits, first_n, first_c = {}, {}, 0, 0
    for key, (size, width) in enumerate(zip(sizes, widths, strict=True)):
        neurons[key] = slice(first_n, first_n + size)
        circuits[key] = slice(first_c, first_c + size * width)
        first_n, first_c = first_n + size, first_c + size * width
    layout = Layout((0, 1), neurons, circuits, dict(enumerate(widths)), first_n, first_c)
    current = jax.random.normal(jax.random.PRNGKey(0), (6, first_c))
    expected = jnp.concatenate(
        [current[:, circuits[k]].reshape(6, sizes[k], widths[k]).sum(-1) for k in (0, 1)], 1
    )
    assert np.array_equal(np.asarray(sum_circuits(layout, current)), np.asarray(expected))


def test_window_extremes_equal_the_reduction():
    rng = np.random.default_rng(1)
    times = rng.uniform(0, 1e-5, (4 * 10, 3, 6)).astype(np.float32)
    times[rng.random(times.shape) < 0.8] = np.inf
    windows = times.reshape(4, 10, 3, 6)
    latest = np.where(np.isfinite(windows), windows, -np.inf).max(1)
    expected = np.concatenate([windows.min(1), np.where(np.isfinite(latest), latest, np.inf)])
    assert np.array_equal(np.asarray(_window_extremes(jnp.asarray(times), 4)), expected)


def test_drop_events_without_possible_drops_returns_the_inputs():
    x = (jax.random.uniform(jax.random.PRNGKey(0), (5, 2, 8)) < 0.9).astype(jnp.float32)
    buses = np.arange(8)[None] % 4 == np.arange(4)[:, None]  # 2 channels per bus
    kept, dropped = drop_events(x, buses, 2)
    assert kept is x and np.array_equal(dropped, np.zeros(2, np.int32))
    kept, dropped = drop_events(x, buses, 1)  # one too few: the ranking drops events
    assert int(dropped.sum()) > 0 and float(kept.sum()) == float(x.sum()) - int(dropped.sum())


def test_membrane_noise_has_the_ou_statistics():
    # A free membrane (no input, no firing) is the OU process the sub-step draws build:
    # stationary std membrane_noise * sqrt(63 / C), one-sub-step correlation
    # exp(-h / tau_mem), mean at the leak. Checks the draws' statistics, not their bits.
    lif = bj.LIF(16, leak=bj.Mixed(0.0, 100.0), threshold=bj.Mixed(1.0, 220.0))
    net = bj.Sequential([bj.Synapse(1, 16, weight=jnp.zeros((16, 1))), lif])
    config = bj.ChipConfig(membrane_noise=2.0, cadc_noise=0.0, cadc_jitter=0.0, madc_noise=0.0)
    backend = bj.ChipModel(bj.ChipInstance.nominal(), config)
    x = jnp.zeros((100, 8, 1))
    raw = backend.record(net, x, dt=1e-6, key=jax.random.PRNGKey(0))[0]
    v = np.asarray(raw.membrane)[:, :, :].reshape(1001, -1)  # (sub-steps + 1, 128 traces)
    capacitance = float(bj.hardware_value(lif.membrane_capacitance))
    sigma = 2.0 * math.sqrt(63.0 / capacitance)
    tau = float(bj.hardware_value(lif.tau_mem))
    deviation = v - 100.0
    assert abs(deviation.mean()) < 0.1 * sigma  # 128 traces x ~10 correlation times
    assert np.std(deviation) == pytest.approx(sigma, rel=0.05)
    lag = np.mean(deviation[1:] * deviation[:-1]) / np.mean(deviation**2)
    assert lag == pytest.approx(math.exp(-1e-7 / tau), abs=0.01)

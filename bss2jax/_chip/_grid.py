"""The chip model's readout onto the grid: a `Recording` from the raw readout.

The conversion is bss2jax's `_dense` code, the same that converts a real recording:
`spikes_to_dense` (`round(t / dt)`), `cadc_to_dense` and `madc_to_dense` (linear or
nearest interpolation with the neuron's `interpolation`, holding the edges).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._dense import cadc_to_dense, madc_to_dense, spikes_to_dense
from .._recording import PopulationRecording, Recording


def to_recording(network, raw: dict, windows: dict, time: int, dt: float, *, through) -> Recording:
    """Raw readout → `Recording` on the grid, with bss2jax's `_dense` conversions."""
    populations = {}
    for key in network.population_keys():
        neuron = network.population(key)
        entry, window = raw[key], windows[key]
        spikes = membrane = madc = None
        if neuron.fire and neuron.enable_spike_recording:
            times = entry.spike_events
            _, b, n = times.shape
            valid = jnp.isfinite(times) & (jnp.round(times / dt) < time)
            neuron_index = jnp.broadcast_to(jnp.arange(n), times.shape)
            batch_index = jnp.broadcast_to(jnp.arange(b)[:, None], times.shape)
            spikes = spikes_to_dense(
                jnp.where(valid, times, 0.0).reshape(-1),
                neuron_index.reshape(-1),
                batch_index.reshape(-1),
                dt=dt,
                shape=(time, b, n),
                valid=valid.reshape(-1),
            )
            if through and window is not None:
                spikes = spikes + (window - lax.stop_gradient(window))
        if neuron.enable_cadc_recording:
            membrane = shared_cadc_to_dense(
                entry.cadc_time, entry.cadc_value, dt, time, neuron.interpolation
            )
        if neuron.enable_madc_recording:
            madc = madc_to_dense(
                entry.madc_time,
                entry.madc_value,
                dt=dt,
                length=time,
                interpolation=neuron.interpolation,
            )
        populations[key] = PopulationRecording(
            spikes=spikes,
            membrane_cadc=membrane,
            membrane_madc=madc,
            madc_time=entry.madc_time,
            madc_value=entry.madc_value,
            differentiable=through,
        )
    return Recording(populations)


def shared_cadc_to_dense(times, values, dt: float, length: int, interpolation: str):
    """`cadc_to_dense` for sample times shared by a batch entry's neurons, bit for bit.

    `times` float `(batch, count)` (s, non-decreasing), `values` `(batch, neurons,
    count)` → `(length, batch, neurons)`. The chip model's CADC samples all neurons of a
    batch entry at once, so where each grid point falls among the samples (`jnp.interp`'s
    `searchsorted` and weights, or the nearest sample) is found once per batch entry, not
    once per neuron; the arithmetic is `jnp.interp`'s (and `_dense._interp_nearest`'s),
    term for term, so the result equals `cadc_to_dense` on the broadcast times.
    """
    count = times.shape[-1]
    if count < 2 or interpolation not in ("linear", "nearest"):
        shared = jnp.broadcast_to(times[:, None, :], values.shape)
        return cadc_to_dense(shared, values, dt=dt, length=length, interpolation=interpolation)
    values = values.astype(jnp.result_type(values.dtype, jnp.float32))
    grid = (jnp.arange(length, dtype=times.dtype) * dt)[None]  # (1, length)
    side = "right" if interpolation == "linear" else "left"
    found = jax.vmap(lambda t: jnp.searchsorted(t, grid[0], side=side))(times)  # (batch, length)

    def take(index):  # the samples at `index` (batch, length) → (batch, neurons, length)
        # a product with one-hot rows, exact (one term v, the rest 0 * v = 0), where a
        # gather let XLA recompute the CADC values (and their noise draws) per read
        one_hot = (index[:, :, None] == jnp.arange(count)[None, None]).astype(values.dtype)
        return jnp.einsum("bnc,blc->bnl", values, one_hot)

    def at(index):
        return jnp.take_along_axis(times, index, axis=1)

    if interpolation == "nearest":
        right = jnp.clip(found, 0, count - 1)
        left = jnp.clip(right - 1, 0, count - 1)
        take_left = jnp.abs(grid - at(left)) <= jnp.abs(at(right) - grid)
        dense = jnp.where(take_left[:, None], take(left), take(right))
    else:  # jnp.interp, with x = grid, xp = times, fp = values
        upper = jnp.clip(found, 1, count - 1)
        lower = upper - 1
        below = take(lower)
        dx = at(upper) - at(lower)
        delta = grid - at(lower)
        flat = jnp.abs(dx) <= np.spacing(np.finfo(times.dtype).eps)
        step = (delta / jnp.where(flat, 1, dx))[:, None]
        dense = jnp.where(flat[:, None], below, below + step * (take(upper) - below))
        dense = jnp.where((grid < times[:, :1])[:, None], values[..., :1], dense)
        dense = jnp.where((grid > times[:, -1:])[:, None], values[..., -1:], dense)
    return jnp.moveaxis(dense, -1, 0)

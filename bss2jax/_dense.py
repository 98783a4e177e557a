"""Irregular samples and spike events onto the dense time grid (hxtorch's `to_dense`).

The one conversion that every backend uses, for a real recording and for the chip model
alike: spikes are binned by `round(t / dt)` (at most one per bin); CADC and MADC samples
are interpolated linearly (or taken from the nearest sample) at the grid times `k * dt`,
holding the first value before the first sample and the last value after the last one.
All functions are pure `jnp` and work under `jit` and `vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def grid_length(runtime: float, dt: float) -> int:
    """hxtorch's grid length for a run of `runtime` seconds: `ceil(runtime / dt) + 1`."""
    import math

    return int(math.ceil(runtime / dt - 1e-9)) + 1


def spike_bins(times: ArrayLike, dt: float) -> jax.Array:
    """Bin index of each spike time (seconds): `round(t / dt)` as int32."""
    return jnp.round(jnp.asarray(times) / dt).astype(jnp.int32)


def spikes_to_dense(
    times: ArrayLike,
    neurons: ArrayLike,
    batch: ArrayLike,
    *,
    dt: float,
    shape: tuple[int, int, int],
    valid: ArrayLike | None = None,
) -> jax.Array:
    """Spike events to a dense float array of 0/1.

    **Arguments:**
    - `times`: float `(events,)`, seconds. `neurons`, `batch`: int `(events,)` indices.
    - `shape`: `(time, batch, neurons)` of the result.
    - `valid`: optional bool `(events,)`; False marks padding entries, which are ignored.

    **Returns:** float32 `(time, batch, neurons)`; several spikes in one bin give one 1.
    Events must lie on the grid (`0 <= round(t / dt) < time`); validate before (the
    `Hardware` backend does), as entries off the grid are ignored here.
    """
    bins = spike_bins(times, dt)
    # A negative bin would wrap around to the end (Python indexing): move it off the grid.
    bins = jnp.where(bins < 0, shape[0], bins)
    ones = jnp.ones(bins.shape, jnp.float32)
    if valid is not None:
        ones = jnp.where(valid, ones, 0.0)
    dense = jnp.zeros(shape, jnp.float32)
    return dense.at[bins, batch, neurons].max(ones, mode="drop")


def _interp_linear(grid, times, values):
    return jnp.interp(grid, times, values)


def _interp_nearest(grid, times, values):
    count = times.shape[-1]
    right = jnp.clip(jnp.searchsorted(times, grid, side="left"), 0, count - 1)
    left = jnp.clip(right - 1, 0, count - 1)
    take_left = jnp.abs(grid - times[left]) <= jnp.abs(times[right] - grid)
    return jnp.where(take_left, values[left], values[right])


def samples_to_dense(
    times: jax.Array,
    values: jax.Array,
    *,
    dt: float,
    length: int,
    interpolation: str = "linear",
) -> jax.Array:
    """Irregular samples of many channels onto the grid `k * dt`, `k < length`.

    **Arguments:**
    - `times`: float `(..., samples)`, seconds, non-decreasing along the last axis. Pad a
      shorter channel by repeating its last sample (time and value).
    - `values`: float `(..., samples)`, ADC units.
    - `interpolation`: "linear" (hxtorch's default) or "nearest" (hxtorch's "nn").

    **Returns:** float `(length, ...)`: time first, then the leading axes of `times`.
    Before the first sample the first value is held, after the last the last value.
    """
    if interpolation == "linear":
        interp = _interp_linear
    elif interpolation == "nearest":
        interp = _interp_nearest
    else:
        raise ValueError(f"`interpolation` must be 'linear' or 'nearest'; got {interpolation!r}.")
    times = jnp.asarray(times)
    values = jnp.asarray(values)
    if times.shape != values.shape:
        raise ValueError(
            f"`times` and `values` must have the same shape; got {times.shape} and {values.shape}."
        )
    dtype = jnp.result_type(values.dtype, jnp.float32)
    grid = jnp.arange(length, dtype=times.dtype) * dt
    flat_times = times.reshape(-1, times.shape[-1])
    flat_values = values.reshape(-1, values.shape[-1]).astype(dtype)
    dense = jax.vmap(interp, in_axes=(None, 0, 0))(grid, flat_times, flat_values)
    return jnp.moveaxis(dense.reshape(*times.shape[:-1], length), -1, 0)


def cadc_to_dense(times, values, *, dt: float, length: int, interpolation: str = "linear"):
    """CADC samples `(batch, neurons, samples)` to the grid `(length, batch, neurons)`."""
    return samples_to_dense(times, values, dt=dt, length=length, interpolation=interpolation)


def madc_to_dense(times, values, *, dt: float, length: int, interpolation: str = "linear"):
    """MADC samples `(batch, samples)` of the watched neuron to the grid `(length, batch)`."""
    return samples_to_dense(times, values, dt=dt, length=length, interpolation=interpolation)

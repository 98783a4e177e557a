"""The chip model's readout: raw samples and spike times, and their way onto the grid.

The grid conversion is bss2jax's `_dense` code, the same that converts a real recording:
`spikes_to_dense` (`round(t / dt)`), `cadc_to_dense` and `madc_to_dense` (linear or
nearest interpolation with the neuron's `interpolation`, holding the edges).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._dense import cadc_to_dense, madc_to_dense, spikes_to_dense
from .._recording import PopulationRecording, Recording
from .._transforms import round_straight_through
from ._config import CADC_RELIABLE, ChipConfig


class RawPopulationRecording(eqx.Module):
    """The chip model's raw readout of one population, before it is put on the grid.

    - `spike_times`: float `(substeps_total, batch, neurons)`, the FPGA time stamp (s) of
      the spike emitted in each internal sub-step, `inf` where none.
    - `cadc_time`: float `(batch, samples)` seconds; `cadc_value`: float `(batch, neurons,
      samples)`, integers in [0, 255] (CADC LSB). None without CADC recording.
    - `madc_time`, `madc_value`: float `(batch, samples)`: seconds and integers in
      [0, 1023]; None without MADC recording.
    - `membrane`: float `(substeps_total + 1, batch, neurons)`, the model's true membrane
      (LSB) at `s * h` (not observable on a chip; for tests and plots).

    ```python
    raw = bj.ChipModel(chip).record(net, x, dt=1e-6, key=key)
    samples = raw[0].cadc_value        # what a chip's CADC returns, before to-dense
    ```
    """

    spike_times: jax.Array | None
    cadc_time: jax.Array | None
    cadc_value: jax.Array | None
    madc_time: jax.Array | None
    madc_value: jax.Array | None
    membrane: jax.Array


def user_stacklevel() -> int:
    """The `stacklevel` of the first frame outside bss2jax, JAX and equinox (the user's)."""
    import os
    import sys

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skip = (package,) + tuple(
        os.path.dirname(os.path.abspath(module.__file__)) for module in (jax, eqx)
    )
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def _warn_cadc_range(ranges: dict) -> None:
    """Warn where CADC reads (population key → (min, max)) leave calix's reliable range."""
    low, high = CADC_RELIABLE
    for key, (smallest, largest) in ranges.items():
        if isinstance(smallest, jax.core.Tracer) or isinstance(largest, jax.core.Tracer):
            continue
        smallest, largest = float(smallest), float(largest)
        if smallest < low or largest > high:
            warnings.warn(
                f"population {key!r}: CADC reads span [{smallest:.0f}, {largest:.0f}] "
                f"LSB, beyond the reliable range [{low:.0f}, {high:.0f}] (calix); readings "
                "there are non-linear on a chip.",
                stacklevel=user_stacklevel(),
            )


def _cadc_count(time: int, dt: float, config: ChipConfig) -> int:
    return int(math.ceil((time - 1) * dt / config.cadc_sample_period - 1e-9)) + 1


def _madc_count(time: int, dt: float, config: ChipConfig) -> int:
    return int(math.floor((time - 1) * dt / config.madc_sample_period + 1e-9)) + 1


def _sample(membrane, sample_time, h):
    """Linear interpolation of the sub-step trajectory `(steps + 1, batch, n)` at
    `sample_time` `(batch, samples)`; returns `(batch, samples, n)`."""
    steps = membrane.shape[0] - 1
    position = sample_time / h
    lower = jnp.clip(jnp.floor(position), 0, max(steps - 1, 0)).astype(jnp.int32)
    fraction = (position - lower)[..., None]
    batch = jnp.arange(membrane.shape[1])[:, None]
    upper = jnp.minimum(lower + 1, steps)
    return membrane[lower, batch] * (1 - fraction) + membrane[upper, batch] * fraction


def _window_extremes(spike_times, time):
    """Earliest and latest spike time of each of `time` grid windows: `(2 * time, batch, n)`
    from `spike_times` `(time * substeps, batch, n)`.

    Spikes emitted in window `k` are time-stamped within `[k dt, (k + 1) dt) + latency`,
    which `round(t / dt)` maps to two neighbouring bins (three only if the window holds
    three spikes, i.e. a refractory time below dt / 2, and the latency straddles a half
    step). Binning the earliest and the latest of each window therefore gives the same
    dense spikes as binning all of them, with `substeps / 2` times fewer events.
    """
    steps, batch, n = spike_times.shape
    windows = spike_times.reshape(time, steps // time, batch, n)
    earliest = windows.min(1)
    latest = jnp.where(jnp.isfinite(windows), windows, -jnp.inf).max(1)
    latest = jnp.where(jnp.isfinite(latest), latest, jnp.inf)
    return jnp.concatenate([earliest, latest])


class _Readout(NamedTuple):
    """What `observe` puts on the grid, per population; `spike_events` `(2 * time, batch,
    n)` are the earliest and latest spike time of each grid window (`inf`: none)."""

    spike_events: jax.Array | None
    cadc_time: jax.Array | None
    cadc_value: jax.Array | None
    madc_time: jax.Array | None
    madc_value: jax.Array | None


def _densify(network, raw: dict, windows: dict, time: int, dt: float, *, through) -> Recording:
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
            value = entry.cadc_value
            sample_time = jnp.broadcast_to(entry.cadc_time[:, None, :], value.shape)
            membrane = cadc_to_dense(
                sample_time, value, dt=dt, length=time, interpolation=neuron.interpolation
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


def _cadc_times(batch, count, end, config: ChipConfig, draws, dtype):
    """Sample times `(batch, count)` (s): `j * period` plus uniform jitter, within
    `[0, end]`; shared by all neurons of a batch entry."""
    cadc_time = jnp.arange(count, dtype=dtype) * config.cadc_sample_period
    cadc_time = jnp.broadcast_to(cadc_time, (batch, count))
    if config.cadc_jitter:
        # uniform in (-1, 1) from a standard normal: erf(z / sqrt(2))
        uniform = jax.scipy.special.erf(draws["jitter"].reshape(batch, count) / math.sqrt(2))
        cadc_time = cadc_time + config.cadc_jitter * uniform
    return jnp.clip(cadc_time, 0.0, end)


def _cadc_values(sampled, config: ChipConfig, gain, offset, draws):
    """CADC reads of the membrane `sampled` `(batch, count, neurons)` (LSB) at the sample
    times: `clip(round(gain * v + offset + noise), 0, 255)` with straight-through rounding;
    `gain`, `offset` `(neurons,)` of each neuron's channel. Returns `(batch, neurons, count)`.
    """
    reading = gain * sampled + offset
    if config.cadc_noise:
        reading = reading + config.cadc_noise * draws["read"].reshape(reading.shape)
    reading = jnp.clip(round_straight_through(reading), 0.0, 255.0)
    return jnp.moveaxis(reading, 1, 2)


def _cadc_slots(dt: float, config: ChipConfig) -> int:
    """The most CADC samples that can fall into one grid window of length `dt`."""
    spacing = config.cadc_sample_period - 2 * config.cadc_jitter
    return int(math.floor(dt / spacing + 1e-9)) + 1


def _cadc_windows(cadc_time, time, substeps, h, slots):
    """Which samples fall into each grid window, for sampling inside the time scan.

    **Returns:** `index` int `(time, batch, slots)` (sample numbers, `count` where unused),
    and `local` float `(time, batch, slots)`: each sample's position in sub-steps from its
    window's start, in `[0, substeps]`.
    """
    batch, count = cadc_time.shape
    position = cadc_time / h
    window = jnp.clip(jnp.floor(position / substeps), 0, time - 1).astype(jnp.int32)
    first = jax.vmap(lambda w: jnp.searchsorted(w, jnp.arange(time), side="left"))(window)
    index = first[..., None] + jnp.arange(slots)  # (batch, time, slots)
    safe = jnp.minimum(index, count - 1)
    rows = jnp.arange(batch)[:, None, None]
    valid = (index < count) & (window[rows, safe] == jnp.arange(time)[None, :, None])
    local = position[rows, safe] - jnp.arange(time)[None, :, None] * substeps
    local = jnp.clip(local, 0.0, float(substeps))
    index = jnp.where(valid, index, count)
    return jnp.moveaxis(index, 1, 0), jnp.moveaxis(local, 1, 0)


def _sample_window(start, trajectory, local):
    """Interpolate one window's trajectory: `start` `(batch, n)` at the window's start,
    `trajectory` `(substeps, batch, n)` after each sub-step, at positions `local`
    `(batch, slots)` → `(batch, slots, n)`."""
    points = jnp.concatenate([start[None], trajectory])
    return _sample(points, local, 1.0)


def _gather_samples(per_window, index, count):
    """Samples found per window `(time, batch, slots, n)` → `(batch, count, n)`."""
    _, batch, _, n = per_window.shape
    values = jnp.moveaxis(per_window, 0, 1).reshape(batch, -1, n)
    index = jnp.moveaxis(index, 0, 1).reshape(batch, -1)
    rows = jnp.arange(batch)[:, None]
    out = jnp.zeros((batch, count, n), per_window.dtype)
    return out.at[rows, index].set(values, mode="drop")


def _read_madc(trace, h, count, config: ChipConfig, noise):
    """MADC samples of one neuron's membrane `trace` `(steps + 1, batch)` every
    `madc_sample_period`: `clip(round(offset + gain * v + noise), 0, 1023)`.

    **Returns:** `madc_time` and `madc_value`, each `(batch, count)`.
    """
    batch = trace.shape[1]
    madc_time = jnp.arange(count, dtype=trace.dtype) * config.madc_sample_period
    madc_time = jnp.broadcast_to(madc_time, (batch, count))
    value = _sample(trace[:, :, None], madc_time, h)[..., 0]
    value = config.madc_offset + config.madc_gain * value
    if noise is not None:
        value = value + config.madc_noise * noise
    return madc_time, jnp.clip(round_straight_through(value), 0.0, 1023.0)

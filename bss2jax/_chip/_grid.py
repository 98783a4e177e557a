"""The chip model's readout onto the grid: a `Recording` from the raw readout.

The conversion is bss2jax's `_dense` code, the same that converts a real recording:
`spikes_to_dense` (`round(t / dt)`), `cadc_to_dense` and `madc_to_dense` (linear or
nearest interpolation with the neuron's `interpolation`, holding the edges).
"""

from __future__ import annotations

import jax.numpy as jnp
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

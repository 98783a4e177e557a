"""The chip model's readout: CADC and MADC samples and spike times in chip units.

`plan_readout` fixes the sample times and draws the readout noise before the dynamics run;
`reduce_window` keeps what `observe` needs of each grid window inside the time scan;
`read_windows` (for `observe`) and `read_trajectory` (for `record`, the whole sub-step
trajectory) turn the scan's outputs into per-population readouts. `_grid.to_recording`
puts them on the grid.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .._constants import CADC_RANGE, MADC_RANGE
from .._transforms import round_straight_through
from ._config import CADC_RELIABLE, ChipConfig
from ._noise import normal


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
    import types

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skip = (package,) + tuple(
        os.path.dirname(os.path.abspath(str(module.__file__))) for module in (jax, eqx)
    )
    level = 1
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def warn_cadc_range(ranges: dict) -> None:
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


def cadc_sample_count(time: int, dt: float, config: ChipConfig) -> int:
    return int(math.ceil((time - 1) * dt / config.cadc_sample_period - 1e-9)) + 1


def madc_sample_count(time: int, dt: float, config: ChipConfig) -> int:
    return int(math.floor((time - 1) * dt / config.madc_sample_period + 1e-9)) + 1


def _sample(membrane, sample_time, h):
    """Linear interpolation of the sub-step trajectory `(steps + 1, batch, n)` at
    `sample_time` `(batch, samples)`; returns `(batch, samples, n)`."""
    steps = membrane.shape[0] - 1
    position = sample_time / h
    lower = jnp.clip(jnp.floor(position), 0, max(steps - 1, 0)).astype(jnp.int32)
    fraction = (position - lower.astype(position.dtype))[..., None]
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
    finite = jnp.where(jnp.isfinite(windows), windows, -jnp.inf)
    # elementwise over the sub-steps, not a reduction: XLA fuses it (its CPU reduction
    # over the short sub-step axis was a slow kernel); min and max are exact either way
    earliest, latest = windows[:, 0], finite[:, 0]
    for s in range(1, steps // time):
        earliest = jnp.minimum(earliest, windows[:, s])
        latest = jnp.maximum(latest, finite[:, s])
    latest = jnp.where(jnp.isfinite(latest), latest, jnp.inf)
    return jnp.concatenate([earliest, latest])


class WindowedReadout(NamedTuple):
    """What `observe` puts on the grid, per population; `spike_events` `(2 * time, batch,
    n)` are the earliest and latest spike time of each grid window (`inf`: none)."""

    spike_events: jax.Array | None
    cadc_time: jax.Array | None
    cadc_value: jax.Array | None
    madc_time: jax.Array | None
    madc_value: jax.Array | None


def _cadc_times(batch, count, end, config: ChipConfig, jitter, dtype):
    """Sample times `(batch, count)` (s): `j * period` plus uniform jitter, within
    `[0, end]`; shared by all neurons of a batch entry. `jitter`: float
    `(batch * count,)` standard normal draws (unused without `cadc_jitter`)."""
    cadc_time = jnp.arange(count, dtype=dtype) * config.cadc_sample_period
    cadc_time = jnp.broadcast_to(cadc_time, (batch, count))
    if config.cadc_jitter:
        # uniform in (-1, 1) from a standard normal: erf(z / sqrt(2))
        uniform = jax.scipy.special.erf(jitter.reshape(batch, count) / math.sqrt(2))
        cadc_time = cadc_time + config.cadc_jitter * uniform
    return jnp.clip(cadc_time, 0.0, end)


def _cadc_values(sampled, config: ChipConfig, gain, offset, read_noise):
    """CADC reads of the membrane `sampled` `(batch, count, neurons)` (LSB) at the sample
    times: `clip(round(gain * v + offset + noise), 0, 255)` with straight-through rounding;
    `gain`, `offset` `(1, neurons)` of each neuron's channel; `read_noise` standard normal
    draws, `batch * count * neurons` of them. Returns `(batch, neurons, count)`.
    """
    reading = gain[:, None] * sampled + offset[:, None]
    if config.cadc_noise:
        reading = reading + config.cadc_noise * read_noise.reshape(reading.shape)
    reading = jnp.clip(round_straight_through(reading), *CADC_RANGE)
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
    index = first[..., None] + jnp.arange(slots)[None, None]  # (batch, time, slots)
    safe = jnp.minimum(index, count - 1)
    rows = jnp.arange(batch)[:, None, None]
    valid = (index < count) & (window[rows, safe] == jnp.arange(time)[None, :, None])
    starts = jnp.arange(time, dtype=position.dtype)[None, :, None] * substeps
    local = position[rows, safe] - starts
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
    return madc_time, jnp.clip(round_straight_through(value), *MADC_RANGE)


class NoiseDraws(NamedTuple):
    """Standard normal draws, flat float32, for the noise outside the sub-step scan (each
    empty where the config draws none): one random call site instead of four.

    - `membrane`: `(batch * neurons,)`, the initial membrane noise.
    - `cadc_jitter`: `(batch * cadc samples,)`; `cadc_read`: `(batch * cadc samples *
      neurons,)`; `madc_read`: `(MADC populations * batch * madc samples,)`.
    """

    membrane: jax.Array
    cadc_jitter: jax.Array
    cadc_read: jax.Array
    madc_read: jax.Array


class ReadoutPlan(NamedTuple):
    """What the readout needs, fixed before the dynamics run (`plan_readout`).

    - `config`; `dt` the grid step and `substep_time` `h` (s); `time`, `batch` sizes.
    - `cadc_count`, `madc_count`: samples per neuron.
    - `cadc_read_time`: float `(batch, cadc_count)`, when each sample reads the membrane
      (s); `cadc_time`: its time stamp, `cadc_read_time - config.cadc_time_offset` (s).
    - `cadc_index`, `cadc_local`: `(time, batch, slots)` (see `_cadc_windows`) when the
      CADC is sampled inside the scan, else None.
    - `madc_keys`: the keys of the MADC-recorded populations; `madc_neurons`: the index of
      each one's recorded neuron in the neuron vector.
    - `noise`: the `NoiseDraws`.
    """

    config: ChipConfig
    dt: float
    substep_time: float
    time: int
    batch: int
    cadc_count: int
    madc_count: int
    cadc_time: jax.Array
    cadc_read_time: jax.Array
    cadc_index: jax.Array | None
    cadc_local: jax.Array | None
    madc_keys: tuple
    madc_neurons: tuple
    noise: NoiseDraws


def plan_readout(network, layout, config: ChipConfig, key, *, time, batch, dt, windowed):
    """The `ReadoutPlan` of `network` (laid out by `layout`, a `Layout`) for `time` grid
    steps `dt` (s) and `batch` entries; its noise is drawn from `key`. With `windowed`,
    the CADC is sampled inside the time scan (`reduce_window`)."""
    count, madc_count = cadc_sample_count(time, dt, config), madc_sample_count(time, dt, config)
    madc_keys = tuple(k for k in layout.keys if network.population(k).enable_madc_recording)
    sizes = (
        batch * layout.neuron_count if config.membrane_noise else 0,
        batch * count if config.cadc_jitter else 0,
        batch * count * layout.neuron_count if config.cadc_noise else 0,
        batch * madc_count * len(madc_keys) if config.madc_noise else 0,
    )
    pool = normal(key, (sum(sizes),))  # = jax.random.normal's draws (_noise)
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    noise = NoiseDraws(*(pool[end - size : end] for size, end in zip(sizes, ends, strict=True)))
    substep_time = dt / config.substeps
    read_time = _cadc_times(batch, count, time * dt, config, noise.cadc_jitter, jnp.float32)
    # a sample that reads the membrane at t is stamped t - cadc_time_offset
    cadc_time = read_time - config.cadc_time_offset
    cadc_index = cadc_local = None
    if windowed:
        slots = _cadc_slots(dt, config)
        windows = _cadc_windows(read_time, time, config.substeps, substep_time, slots)
        cadc_index, cadc_local = windows
    madc_neurons = tuple(
        layout.neurons[k].start + network.population(k).record_neuron_id for k in madc_keys
    )
    return ReadoutPlan(
        config=config,
        dt=dt,
        substep_time=substep_time,
        time=time,
        batch=batch,
        cadc_count=count,
        madc_count=madc_count,
        cadc_time=cadc_time,
        cadc_read_time=read_time,
        cadc_index=cadc_index,
        cadc_local=cadc_local,
        madc_keys=madc_keys,
        madc_neurons=madc_neurons,
        noise=noise,
    )


class WindowSummary(NamedTuple):
    """What the scan keeps of one grid window (`reduce_window`).

    `cadc_samples` `(batch, slots, neurons)` (LSB), `spike_extremes` `(2, batch, neurons)`
    (s, see `_window_extremes`), `surrogate_spikes` `(batch, neurons)` summed over the
    window (None unless `gradient="through"`), `madc_membrane` `(substeps, batch, MADC
    populations)` (LSB; None without MADC recording).
    """

    cadc_samples: jax.Array
    spike_extremes: jax.Array
    surrogate_spikes: jax.Array | None
    madc_membrane: jax.Array | None


def reduce_window(plan: ReadoutPlan, start, outputs, local) -> WindowSummary:
    """Reduce one grid window inside the scan: `start` `(batch, neurons)` the membrane at
    the window's start, `outputs` the window's `SubstepOutput`s, `local` this window's
    `cadc_local` `(batch, slots)`."""
    membrane = outputs.membrane
    madc = None
    if plan.madc_neurons:
        madc = membrane[:, :, jnp.asarray(plan.madc_neurons, jnp.int32)]
    return WindowSummary(
        _sample_window(start, membrane, local),
        _window_extremes(outputs.spike_time, 1),
        None if outputs.spikes is None else outputs.spikes.sum(0),
        madc,
    )


def _populations(plan: ReadoutPlan, network, layout, cadc_value, madc_trace, make):
    """Per population key, `make(key, fire, cadc_time=..., cadc_value=..., madc_time=...,
    madc_value=...)`: the CADC and MADC reads of the population (None where not recorded);
    `madc_trace(key)` is the recorded neuron's membrane `(steps + 1, batch)` (LSB)."""
    readout = {}
    for key in layout.keys:
        neuron, neurons = network.population(key), layout.neurons[key]
        madc_time = madc_value = None
        if neuron.enable_madc_recording:
            noise = None
            if plan.config.madc_noise:
                noise = plan.noise.madc_read.reshape(len(plan.madc_keys), plan.batch, -1)
                noise = noise[plan.madc_keys.index(key)]
            madc_time, madc_value = _read_madc(
                madc_trace(key), plan.substep_time, plan.madc_count, plan.config, noise
            )
        cadc = neuron.enable_cadc_recording
        readout[key] = make(
            key,
            neuron.fire,
            cadc_time=plan.cadc_time if cadc else None,
            cadc_value=cadc_value[:, neurons] if cadc else None,
            madc_time=madc_time,
            madc_value=madc_value,
        )
    return readout


def read_windows(plan: ReadoutPlan, network, layout, summaries: WindowSummary, neurons, initial):
    """The readout from the stacked `WindowSummary`s (`(time, ...)` each).

    `neurons`: the `NeuronParameters` as rows `(1, neurons)` (CADC channels); `initial`:
    float `(batch, neurons)`
    the membrane at time 0. **Returns:** population key → `WindowedReadout`, and population
    key → the surrogate spikes per grid window `(time, batch, n)` (None unless through).
    """
    time, batch, n = plan.time, plan.batch, layout.neuron_count
    sampled = _gather_samples(summaries.cadc_samples, plan.cadc_index, plan.cadc_count)
    cadc_value = _cadc_values(
        sampled, plan.config, neurons.cadc_gain, neurons.cadc_offset, plan.noise.cadc_read
    )
    extremes = summaries.spike_extremes.reshape(2 * time, batch, n)
    madc = summaries.madc_membrane
    if plan.madc_neurons:
        assert madc is not None  # recorded whenever MADC neurons are planned
        madc = madc.reshape(time * plan.config.substeps, batch, len(plan.madc_neurons))
        madc = jnp.concatenate([initial[:, jnp.asarray(plan.madc_neurons)][None], madc])

    def make(key, fire, **entries):
        spikes = extremes[:, :, layout.neurons[key]] if fire else None
        return WindowedReadout(spike_events=spikes, **entries)

    def madc_trace(key):
        return madc[:, :, plan.madc_keys.index(key)]

    readout = _populations(plan, network, layout, cadc_value, madc_trace, make)
    window = summaries.surrogate_spikes
    windows = {k: None if window is None else window[:, :, layout.neurons[k]] for k in layout.keys}
    return readout, windows


def read_trajectory(plan: ReadoutPlan, network, layout, outputs, neurons, initial):
    """The raw readout from the whole sub-step trajectory (`SubstepOutput`s of shape
    `(time, substeps, batch, neurons)`); arguments as `read_windows`.

    **Returns:** population key → `RawPopulationRecording`, and the surrogate spikes per
    grid window as `read_windows`.
    """
    time, batch, n = plan.time, plan.batch, layout.neuron_count
    total = time * plan.config.substeps
    trajectory = outputs.membrane.reshape(total, batch, n)
    times = outputs.spike_time.reshape(total, batch, n)
    membrane = jnp.concatenate([initial[None], trajectory])  # (total + 1, batch, neurons)
    sampled = _sample(membrane, plan.cadc_read_time, plan.substep_time)  # (batch, count, n)
    cadc_value = _cadc_values(
        sampled, plan.config, neurons.cadc_gain, neurons.cadc_offset, plan.noise.cadc_read
    )

    def make(key, fire, **entries):
        population = layout.neurons[key]
        spike_times = times[:, :, population] if fire else None
        return RawPopulationRecording(
            spike_times=spike_times, membrane=membrane[:, :, population], **entries
        )

    def madc_trace(key):
        index = layout.neurons[key].start + network.population(key).record_neuron_id
        return membrane[:, :, index]

    readout = _populations(plan, network, layout, cadc_value, madc_trace, make)
    windows = {k: None for k in layout.keys}
    if outputs.spikes is not None:
        window = outputs.spikes.reshape(time, plan.config.substeps, batch, n).sum(1)
        windows = {k: window[:, :, layout.neurons[k]] for k in layout.keys}
    return readout, windows

"""`ChipModel`: a JIT-compiled model of the BrainScaleS-2 chip as a backend.

The dynamics run in chip units (CADC LSB) on an internal sub-step `h = dt / substeps`
(reference/bss2-chip.md §7). Per sub-step, for every logical neuron (a group of `c`
neuron circuits) and every circuit:

```python
I_e += arriving excitatory events (|w_hw| * kappa * g_syn_e[circuit] * g_dac[circuit, row])
I_i += arriving inhibitory events (the sign of w_hw picks the row type)
J    = sum over the neuron's circuits of  I_sat * tanh((I_e a_e - I_i a_i) / I_sat)
v_inf = leak + tau_mem / C * (J + AdEx terms)                  # C = 10 us * capacitance / 63
v    = v_inf + (v - v_inf) * exp(-h / tau_mem) + sigma * sqrt(1 - exp(-2 h / tau_mem)) * xi
I_e *= exp(-h / tau_syn_e);  I_i *= exp(-h / tau_syn_i)
if refractory: v = reset;  elif v > threshold: spike at the crossing, v = reset
v    = clip(v, 0, 255)
```

`a_e, a_i = tau_syn / h * (1 - exp(-h / tau_syn))` average the decaying current over the
sub-step. Input events of grid step `k` arrive at `k * dt + synaptic_delay`; on-chip spikes
arrive one sub-step after they are emitted. Spike times are the interpolated crossing,
rounded up to the 8 ns FPGA clock, plus the output latency (80 ns). The CADC samples every
neuron at jittered times (~1.7 us) with per-channel offset and gain, read noise, rounding
and the 8-bit range; the MADC samples one neuron every ~34 ns at 10 bits. Both go onto the
grid through `cadc_to_dense` / `madc_to_dense`, the code that converts real recordings;
spikes through `spikes_to_dense` (`round(t / dt)`).
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._chip._config import ChipConfig
from .._chip._instance import ChipInstance
from .._chip._placement import place
from .._chip._readout import (
    RawPopulationRecording,
    _cadc_count,
    _cadc_slots,
    _cadc_times,
    _cadc_values,
    _cadc_windows,
    _densify,
    _gather_samples,
    _madc_count,
    _read_madc,
    _Readout,
    _sample,
    _sample_window,
    _warn_cadc_range,
    _window_extremes,
)
from .._chip._setup import _check_network, _circuit_weights, _neuron_arrays
from .._constants import MAX_RUNTIME
from .._network import INPUT, AbstractNetwork
from ._base import AbstractBackend


class ChipModel(AbstractBackend):
    """The BrainScaleS-2 chip model (reference/bss2-chip.md §7) as a backend.

    **Arguments:**
    - `chip`: a `ChipInstance` (the chip's mismatch; `ChipInstance.nominal()` for none).
    - `config`: a `ChipConfig` (default settings when None).
    - `gradient`: "inject" (default, as on hardware: the chip model's observations are the
      forward values, the gradient is the numerics') or "through" (differentiate the chip
      model itself: straight-through rounding of weights and ADC values, the neuron's
      surrogate on `trace_scale * (v - threshold)` for its spikes).
    - `partition`: split a network that needs more than 512 neuron circuits into
      sequential runs (see `place`) instead of raising `PlacementError`.

    `run` calls `observe`, which needs a `key` when the config draws noise. The model is
    pure and jit-able; `jax.vmap` over keys or over stacked `ChipInstance`s works.

    Semantics, per internal sub-step `h = dt / substeps`, for every logical neuron (`c`
    joined circuits; potentials in CADC LSB, the chip values of the neuron's parameters
    plus the chip's mismatch):
    ```python
    I_e[circuit] += sum of arriving events |w_hw| * kappa * g_syn_e * g_dac[row]  (w_hw > 0)
    I_i[circuit] += the same for w_hw < 0                  # the sign picks the row type
    J     = sum over circuits of I_sat * tanh((a_e I_e - a_i I_i) / I_sat)
    v_inf = leak + tau_mem / C * J                          # C = 10 us * capacitance / 63
    v     = v_inf + (v - v_inf) exp(-h / tau_mem) + OU noise (stationary std sigma)
    I_e  *= exp(-h / tau_syn_e);  I_i *= exp(-h / tau_syn_i)
    if refractory: v = reset   elif v > threshold: spike, v = reset, refractory
    v     = clip(v, 0, 255)
    ```
    where `a = tau_syn / h * (1 - exp(-h / tau_syn))` averages the current over the step
    and AdEx terms enter `v_inf` as in the numerics. Input events of step `k` arrive at
    `k * dt + synaptic_delay`, so with the default delay 0 the membrane first moves at
    step `k + 1`, hxtorch's one-`dt` delay; on-chip spikes arrive one sub-step after they
    are emitted. A spike's time stamp is the interpolated crossing rounded up to the 8 ns
    clock plus the latency. Differences from the numerics that remain on the nominal,
    noiseless chip: exact instead of explicit-Euler integration (~5 % of a PSP at
    `dt / tau = 0.1`), the input saturation, CADC sampling and rounding.

    ```python
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))
    out = bj.run(net, x, backend=bj.ChipModel(chip), key=jax.random.PRNGKey(1))
    ```
    """

    chip: ChipInstance
    config: ChipConfig = eqx.field(static=True)
    gradient: str = eqx.field(static=True)
    partition: bool = eqx.field(static=True)

    def __init__(
        self,
        chip: ChipInstance,
        config: ChipConfig | None = None,
        *,
        gradient: Literal["inject", "through"] = "inject",
        partition: bool = False,
    ):
        if not isinstance(chip, ChipInstance):
            raise TypeError(
                "`chip` must be a bj.ChipInstance (e.g. bj.ChipInstance.random(key)); "
                f"got {type(chip).__name__}."
            )
        config = ChipConfig() if config is None else config
        if not isinstance(config, ChipConfig):
            raise TypeError(f"`config` must be a bj.ChipConfig; got {config!r}.")
        if gradient not in ("inject", "through"):
            raise ValueError(f"`gradient` must be 'inject' or 'through'; got {gradient!r}.")
        self.chip = chip
        self.config = config
        self.gradient = gradient
        self.partition = bool(partition)

    def observe(self, network, inputs, *, dt, key):
        """Emulate `network` on `inputs` and return the `Recording` on the grid `dt`.

        **Arguments:** `network`; `inputs` float `(time, batch, in)` spikes 0/1; `dt` grid
        step (s, Python float); `key` PRNG key (required when the config is noisy).

        **Returns:** a `Recording`: per population spikes `(time, batch, neurons)`, CADC
        membrane `(time, batch, neurons)` in CADC LSB before post-processing, and for the
        MADC-recorded population `membrane_madc` `(time, batch)` and the raw MADC samples.
        With `gradient="through"` the entries are marked `differentiable`.
        """
        return self._emulate(network, inputs, dt=dt, key=key, densify=True)[1]

    def record(
        self, network: AbstractNetwork, inputs: jax.Array, *, dt: float, key: jax.Array | None
    ) -> dict:
        """The raw readout: population key → `RawPopulationRecording` (chip units).

        This is what a hardware client returns before bss2jax puts it on the grid.

        ```python
        raw = backend.record(net, x, dt=1e-6, key=key)
        raw[0].cadc_value   # (batch, neurons, samples), integers in [0, 255]
        ```
        """
        return self._emulate(network, inputs, dt=dt, key=key, densify=False)[0]

    def _emulate(self, network, inputs, *, dt, key, densify):
        if not isinstance(network, AbstractNetwork):
            raise TypeError(f"`network` must be a bj.Sequential or bj.Network; got {network!r}.")
        dt = float(dt)
        if not dt > 0:
            raise ValueError(f"`dt` must be a positive float in seconds; got {dt!r}.")
        inputs = jnp.asarray(inputs)
        if inputs.ndim != 3 or inputs.shape[-1] != network.input_size:
            raise ValueError(
                "`inputs` must have shape (time, batch, in_features) with in_features = "
                f"{network.input_size}; got {inputs.shape}."
            )
        if not jnp.issubdtype(inputs.dtype, jnp.floating):
            inputs = inputs.astype(jnp.float32)
        if key is None:
            if self.config.noisy:
                raise ValueError(
                    "`key` is required: the chip model draws membrane noise, CADC jitter and "
                    "read noise (pass key=jax.random.PRNGKey(...), or use "
                    "ChipConfig.noiseless())."
                )
            key = jax.random.PRNGKey(0)
        time = inputs.shape[0]
        if time * dt > MAX_RUNTIME:
            raise ValueError(
                f"the run lasts {time} steps x {dt} s = {time * dt} s, longer than the chip's "
                f"timer allows ({MAX_RUNTIME:.3f} s: 2^32 cycles at 125 MHz)."
            )
        placement = place(network, partition=self.partition)
        _check_network(network, placement, self.config, time, dt)
        model = self
        if self.gradient == "inject":
            model, network, inputs = _stop_gradient((self, network, inputs))
        raw, recording, ranges = _emulate_jit(model, network, inputs, key, dt, densify)
        _warn_cadc_range(ranges)
        return raw, recording


def _stop_gradient(tree):
    return jax.tree.map(lambda x: lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


def _record(model: ChipModel, network, inputs, key, dt: float, lean: bool = False):
    """Emulate; returns `(readout, windows)`.

    With `lean=False`, `readout` is population key → `RawPopulationRecording` (the whole
    sub-step trajectory and every sub-step's spike time). With `lean=True` (for
    `observe`), the CADC and MADC are sampled and the spikes reduced to each grid window's
    extremes inside the time scan, so memory grows with `time * batch * neurons` only
    (not times `substeps`): population key → `_Readout`. `windows`: per population the
    surrogate spikes summed per grid window (`gradient="through"`), else None.
    """
    config, chip = model.config, model.chip
    through = model.gradient == "through"
    placement = place(network, partition=model.partition)
    keys = network.population_keys()
    time, batch, _ = inputs.shape
    m = config.substeps
    h = dt / m
    dtype = jnp.float32
    inputs = inputs.astype(dtype)

    # Layout of the concatenated neuron and circuit vectors.
    neuron_slices, circuit_slices, widths = {}, {}, {}
    n0 = c0 = 0
    for k in keys:
        pp = placement.populations[k]
        neuron_slices[k] = slice(n0, n0 + pp.size)
        circuit_slices[k] = slice(c0, c0 + pp.size * pp.circuits_per_neuron)
        widths[k] = pp.circuits_per_neuron
        n0 += pp.size
        c0 += pp.size * pp.circuits_per_neuron
    n_neurons, n_circuits = n0, c0

    def flag(fn):
        return np.concatenate(
            [np.full(network.population(k).size, bool(fn(network.population(k)))) for k in keys]
        )

    fire = flag(lambda p: p.fire)
    leaky = flag(lambda p: p.leaky)
    exponential = flag(lambda p: p.exponential)
    sub_adapt = flag(lambda p: p.subthreshold_adaptation)
    spike_adapt = flag(lambda p: p.spike_triggered_adaptation)
    any_adapt = bool(np.any(sub_adapt | spike_adapt))

    nv, cv = _neuron_arrays(network, placement, chip, config, h)
    decay_mem = jnp.exp(-h / nv["tau_mem"])
    decay_exc = jnp.exp(-h / cv["tau_exc"])
    decay_inh = jnp.exp(-h / cv["tau_inh"])
    average_exc = cv["tau_exc"] / h * (1 - decay_exc)
    average_inh = cv["tau_inh"] / h * (1 - decay_inh)
    decay_adapt = jnp.exp(-h / nv["tau_adap"])
    decay_reset = math.exp(-h / config.reset_time_constant) if config.reset_time_constant else 0.0
    noise_scale = config.membrane_noise * jnp.sqrt(1 - decay_mem**2)
    refractory_steps = nv["refractory"].astype(jnp.int32)
    threshold = jnp.where(fire, nv["threshold"], jnp.inf)
    finite_threshold = lax.stop_gradient(jnp.where(fire, nv["threshold"], 0.0))
    low, high = config.potential_range

    # Weights onto circuits: external inputs (hoisted) and on-chip projections.
    ext_exc = jnp.zeros((network.input_size, n_circuits), dtype)
    ext_inh = jnp.zeros((network.input_size, n_circuits), dtype)
    internal = []
    for k in keys:
        weights = _circuit_weights(network, k, placement.populations[k], chip, config)
        cs = circuit_slices[k]
        for index, (exc, inh) in weights.items():
            source = network.edges()[index][0]
            if source == INPUT:
                ext_exc = ext_exc.at[:, cs].add(exc)
                ext_inh = ext_inh.at[:, cs].add(inh)
            else:
                internal.append((neuron_slices[source], cs, exc, inh))
    ext = jnp.concatenate([ext_exc, ext_inh], axis=1)
    drive_ext = (inputs.reshape(time * batch, -1) @ ext).reshape(time, batch, 2 * n_circuits)
    delay_steps = int(round(config.synaptic_delay / h))
    shift, offset = divmod(delay_steps, m)
    if shift:
        drive_ext = jnp.concatenate(
            [jnp.zeros((shift, batch, 2 * n_circuits), dtype), drive_ext[:-shift]]
        )[:time]

    def sum_circuits(current):  # (batch, circuits) -> (batch, neurons)
        if all(w == 1 for w in widths.values()):
            return current
        parts = []
        for k in keys:
            part = current[:, circuit_slices[k]]
            parts.append(part.reshape(batch, -1, widths[k]).sum(-1))
        return jnp.concatenate(parts, axis=1)

    surrogates = [network.population(k).surrogate for k in keys]

    def spike_function(x):
        if not through:
            return (x > 0).astype(dtype)
        parts = [surrogates[i](x[:, neuron_slices[k]]).astype(dtype) for i, k in enumerate(keys)]
        return jnp.concatenate(parts, axis=1)

    # Few random call sites (each compiles a threefry): the sub-step noise inside the scan,
    # and one draw for everything else (initial state, CADC jitter and reads, MADC reads).
    key_noise, key_once = jax.random.split(key)
    count = _cadc_count(time, dt, config)
    madc_count = _madc_count(time, dt, config)
    madc_keys = [k for k in keys if network.population(k).enable_madc_recording]
    sizes = {
        "init": batch * n_neurons if config.membrane_noise else 0,
        "jitter": batch * count if config.cadc_jitter else 0,
        "read": batch * count * n_neurons if config.cadc_noise else 0,
        "madc": batch * madc_count * len(madc_keys) if config.madc_noise else 0,
    }
    pool = jax.random.normal(key_once, (sum(sizes.values()),), dtype)
    draws, start = {}, 0
    for name, size in sizes.items():
        draws[name] = pool[start : start + size]
        start += size
    v0 = jnp.where(leaky, nv["leak"], nv["reset"])
    v0 = jnp.broadcast_to(v0, (batch, n_neurons)).astype(dtype)
    if config.membrane_noise:
        v0 = v0 + config.membrane_noise * draws["init"].reshape(v0.shape)
    v0 = jnp.clip(v0, low, high)
    zeros_c = jnp.zeros((batch, n_circuits), dtype)
    zeros_n = jnp.zeros((batch, n_neurons), dtype)
    state0 = (v0, zeros_c, zeros_c, jnp.zeros((batch, n_neurons), jnp.int32), zeros_n, zeros_n)

    def substep(state, xs):
        v, i_exc, i_inh, refractory, z_prev, adapt = state
        xi, t_start = xs
        for source, target, w_exc, w_inh in internal:
            z = z_prev[:, source]
            i_exc = i_exc.at[:, target].add(z @ w_exc)
            i_inh = i_inh.at[:, target].add(z @ w_inh)
        net = i_exc * average_exc - i_inh * average_inh
        if config.saturation is not None:
            net = config.saturation * jnp.tanh(net / config.saturation)
        drive = sum_circuits(net)
        if any_adapt:
            drive = drive - adapt
        push = nv["gain"] * drive  # LSB: where the input alone would hold the membrane
        if np.any(exponential):
            exponent = jnp.minimum((v - nv["exp_threshold"]) / nv["slope"], 20.0)
            push = push + jnp.where(exponential, nv["slope"] * jnp.exp(exponent), 0.0)
        v_inf = nv["leak"] + push
        v_leaky = v_inf + (v - v_inf) * decay_mem
        if np.all(leaky):
            v_new = v_leaky
        else:
            v_new = jnp.where(leaky, v_leaky, v + h / nv["tau_mem"] * push)
        if config.membrane_noise:
            v_new = v_new + noise_scale * xi
        i_exc = i_exc * decay_exc
        i_inh = i_inh * decay_inh
        resting = refractory > 0
        if config.reset_time_constant is None:
            v_new = jnp.where(resting, nv["reset"], v_new)
        else:  # the reset conductance pulls the membrane down while refractory
            relaxed = nv["reset"] + (v - nv["reset"]) * decay_reset
            v_new = jnp.where(resting, relaxed, v_new)
        x = jnp.where(resting | ~fire, -jnp.inf, v_new - threshold)
        z = spike_function(nv["trace_scale"] * jnp.where(jnp.isinf(x), -1e3, x))
        crossed = x > 0
        before, after = lax.stop_gradient(v), lax.stop_gradient(v_new)
        rise = jnp.where(after > before, after - before, 1.0)
        fraction = jnp.clip((finite_threshold - before) / rise, 0.0, 1.0)
        stamp = jnp.ceil((t_start + fraction * h) / config.clock_period - 1e-6)
        stamp = stamp * config.clock_period + config.spike_latency
        spike_time = jnp.where(crossed, stamp, jnp.inf)
        if config.reset_time_constant is None:
            z_stop = lax.stop_gradient(z)
            v_new = (1 - z_stop) * v_new + z_stop * nv["reset"]
        refractory = jnp.where(crossed, refractory_steps, jnp.maximum(refractory - 1, 0))
        if any_adapt:
            adapt = adapt * decay_adapt
            adapt = adapt + jnp.where(
                sub_adapt, (1 - decay_adapt) * nv["adapt_a"] * (v_new - nv["leak"]), 0.0
            )
            adapt = adapt + jnp.where(spike_adapt, nv["adapt_b"] * z, 0.0)
        v_new = jnp.clip(v_new, low, high)
        new_state = (v_new, i_exc, i_inh, refractory, z, adapt)
        return new_state, (v_new, z if through else None, spike_time)

    noise_keys = jax.random.split(key_noise, time)
    cadc_time = _cadc_times(batch, count, time * dt, config, draws, dtype)
    madc_index = [
        neuron_slices[k].start + network.population(k).record_neuron_id for k in madc_keys
    ]
    if lean:
        slots = _cadc_slots(dt, config)
        cadc_index, cadc_local = _cadc_windows(cadc_time, time, m, h, slots)
    else:
        cadc_index = cadc_local = jnp.zeros((time, 0), dtype)

    def deliver(state, drive_k):  # the input events of one grid step arrive
        v, i_exc, i_inh, *rest = state
        return (v, i_exc + drive_k[:, :n_circuits], i_inh + drive_k[:, n_circuits:], *rest)

    def grid_step(state, xs):
        drive_k, noise_key, k, local = xs
        if config.membrane_noise:
            xi = jax.random.normal(noise_key, (m, batch, n_neurons), dtype)
        else:
            xi = jnp.zeros((m, 1, 1), dtype)
        t_start = k * dt + jnp.arange(m, dtype=dtype) * h
        start = state[0]
        if offset == 0:
            state, ys = lax.scan(substep, deliver(state, drive_k), (xi, t_start))
        else:
            state, early = lax.scan(substep, state, (xi[:offset], t_start[:offset]))
            state, late = lax.scan(
                substep, deliver(state, drive_k), (xi[offset:], t_start[offset:])
            )
            ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), early, late)
        if not lean:
            return state, ys
        trajectory, z, times = ys
        return state, (
            _sample_window(start, trajectory, local),  # CADC samples in this window
            _window_extremes(times, 1),
            None if z is None else z.sum(0),
            trajectory[:, :, jnp.asarray(madc_index, jnp.int32)] if madc_index else None,
        )

    steps = jnp.arange(time, dtype=dtype)
    xs = (drive_ext, noise_keys, steps, cadc_local)
    _, outputs = lax.scan(grid_step, state0, xs)
    total = time * m

    def madc_reading(k, trace):  # trace (total + 1, batch)
        noise = None
        if config.madc_noise:
            noise = draws["madc"].reshape(len(madc_keys), batch, madc_count)
            noise = noise[madc_keys.index(k)]
        return _read_madc(trace, h, madc_count, config, noise)

    gain, cadc_offset = nv["cadc_gain"], nv["cadc_offset"]
    windows = {k: None for k in keys}
    readout = {}
    if lean:
        samples, extremes, window, madc_trajectory = outputs
        sampled = _gather_samples(samples, cadc_index, count)
        cadc_value = _cadc_values(sampled, config, gain, cadc_offset, draws)
        extremes = extremes.reshape(2 * time, batch, n_neurons)
        if madc_index:
            madc_trajectory = madc_trajectory.reshape(total, batch, len(madc_index))
            madc_trajectory = jnp.concatenate(
                [v0[:, jnp.asarray(madc_index)][None], madc_trajectory]
            )
        if through:
            windows = {k: window[:, :, neuron_slices[k]] for k in keys}
        for k in keys:
            neuron, ns = network.population(k), neuron_slices[k]
            madc_time = madc_value = None
            if neuron.enable_madc_recording:
                trace = madc_trajectory[:, :, madc_keys.index(k)]
                madc_time, madc_value = madc_reading(k, trace)
            cadc = neuron.enable_cadc_recording
            readout[k] = _Readout(
                spike_events=extremes[:, :, ns] if neuron.fire else None,
                cadc_time=cadc_time if cadc else None,
                cadc_value=cadc_value[:, ns] if cadc else None,
                madc_time=madc_time,
                madc_value=madc_value,
            )
        return readout, windows

    trajectory, flags, times = outputs
    trajectory = trajectory.reshape(total, batch, n_neurons)
    times = times.reshape(total, batch, n_neurons)
    membrane = jnp.concatenate([v0[None], trajectory])  # (total + 1, batch, neurons)
    sampled = _sample(membrane, cadc_time, h)  # (batch, count, neurons)
    cadc_value = _cadc_values(sampled, config, gain, cadc_offset, draws)
    for k in keys:
        neuron, ns = network.population(k), neuron_slices[k]
        madc_time = madc_value = None
        if neuron.enable_madc_recording:
            index = ns.start + neuron.record_neuron_id
            madc_time, madc_value = madc_reading(k, membrane[:, :, index])
        cadc = neuron.enable_cadc_recording
        readout[k] = RawPopulationRecording(
            spike_times=times[:, :, ns] if neuron.fire else None,
            cadc_time=cadc_time if cadc else None,
            cadc_value=cadc_value[:, ns] if cadc else None,
            madc_time=madc_time,
            madc_value=madc_value,
            membrane=membrane[:, :, ns],
        )
    if through:
        window = flags.reshape(time, m, batch, n_neurons).sum(1)
        windows = {k: window[:, :, neuron_slices[k]] for k in keys}
    return readout, windows


@eqx.filter_jit
def _emulate_jit(model, network, inputs, key, dt, densify):
    readout, windows = _record(model, network, inputs, key, dt, lean=densify)
    ranges = {
        k: (r.cadc_value.min(), r.cadc_value.max())
        for k, r in readout.items()
        if r.cadc_value is not None and r.cadc_value.size
    }
    if not densify:
        return readout, None, ranges
    time = inputs.shape[0]
    through = model.gradient == "through"
    return None, _densify(network, readout, windows, time, dt, through=through), ranges

"""`align`: the intro tutorial's manual alignment of numerics and chip, as one call.

hxtorch users measure three numbers by hand before training on the chip (the intro
tutorial, and `hxtorch.spiking.utils.dynamic_range`):

1. the CADC baseline with no input (→ `trace_offset`);
2. the threshold under strong input, relative to the baseline (→ `trace_scale =
   (model threshold - model leak) / measured span`), as the tutorial measures it: the
   maximum of each run's trace, averaged over the runs (the maximum of the run-averaged
   trace would read the span 10-20 % low under noise: the runs' spikes do not line up).
   Beyond the tutorial, two things keep the CADC's sparse samples (one per ~1.7 us) from
   reading it low: the trace is read with nearest-neighbour interpolation (the grid then
   holds the samples themselves; linear interpolation cuts the peaks between them), and
   the drive is swept over several weights, taking per neuron the largest reading among
   the weights at which it fired in every run (a slower approach to the threshold leaves
   the samples closer to it; at weight 63 alone the span reads 3-10 % low);
3. the weight scale: single-input PSPs swept over weights on the backend and in the
   numerics, each fitted linearly (least squares through the origin) → `weight_scale =
   numerics slope / (backend slope * trace_scale)`, the `linear_saturating` scale;
4. (beyond the tutorial, which sets `cadc_time_shift=-1` by eye) the `cadc_time_shift`
   that lines up the rising PSPs in time: it undoes the chip's time offset against the
   numerics (`ChipConfig.cadc_time_offset` in the chip model).

The probe takes as many neuron circuits per neuron as the population will in use
(`fan_in`): joined circuits share one membrane, so their PSPs differ from one circuit's.

`align` does the four on any backend (a chip model, hardware; for `Numeric()`, which
observes nothing, it returns the identity: offset 0, scales 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ._backend import AbstractBackend, Numeric
from ._chip._placement import circuits_per_neuron, neurons_per_run
from ._misc import replace_static
from ._network import Sequential
from ._neurons import AbstractNeuron
from ._parameters import model_value
from ._run import run
from ._synapse import Synapse
from ._transforms import LinearSaturating
from ._typing import user_facing

DEFAULT_HARDWARE_WEIGHTS = (-63.0, -42.0, -21.0, 21.0, 42.0, 63.0)
DEFAULT_MODEL_WEIGHTS = (-1.0, -2.0 / 3.0, -1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)
DEFAULT_SATURATING_WEIGHTS = (63.0, 42.0, 28.0, 21.0, 14.0)


class Alignment(eqx.Module):
    """What `align` measured; scalars, or `(neurons,)` arrays with `per_neuron=True`.

    - `trace_offset`: CADC LSB subtracted from measured traces (the neuron's
      `trace_offset`): the baseline minus the model leak over `trace_scale`.
    - `trace_scale`: model units per CADC LSB (the neuron's `trace_scale`).
    - `weight_scale`: chip weight units per model weight unit (the `linear_saturating`
      scale).
    - `baseline` (LSB), `threshold_span` (LSB above the baseline), `backend_slope` (LSB of
      PSP per chip weight unit) and `model_slope` (model units of PSP per model weight):
      the raw measurements, for reports.
    - `cadc_time_shift`: int, the neuron's `cadc_time_shift` (steps) under which the
      backend's single-input PSP lines up best with the numerics' (a static setting: pass
      it when building the neuron; `neuron()` does not change it). From the time at
      which each PSP first reaches half its peak.

    Plug it into a network with `neuron(...)` and `transform()`:

    ```python
    a = bj.align(bj.ChipModel(chip), lif, key=key)
    lif = a.neuron(lif)
    syn = bj.Synapse(1, 1, key=key, transform=a.transform())
    ```
    """

    trace_offset: jax.Array
    trace_scale: jax.Array
    weight_scale: jax.Array
    baseline: jax.Array
    threshold_span: jax.Array
    backend_slope: jax.Array
    model_slope: jax.Array
    cadc_time_shift: jax.Array

    def neuron(self, neuron: AbstractNeuron) -> AbstractNeuron:
        """`neuron` with this `trace_offset` and `trace_scale`."""
        return eqx.tree_at(
            lambda n: (n.trace_offset, n.trace_scale),
            neuron,
            (jnp.asarray(self.trace_offset, float), jnp.asarray(self.trace_scale, float)),
        )

    def transform(self) -> LinearSaturating:
        """`linear_saturating(weight_scale)`; per-neuron scales act on the weight rows."""
        scale = jnp.asarray(self.weight_scale, float)
        return LinearSaturating(scale[:, None] if scale.ndim else scale)


@user_facing
def align(
    backend: AbstractBackend,
    neuron: AbstractNeuron,
    *,
    key: jax.Array | None = None,
    dt: float = 1e-6,
    time: int = 150,
    repetitions: int = 10,
    input_step: int = 10,
    saturating_weight: float | Sequence[float] = DEFAULT_SATURATING_WEIGHTS,
    hardware_weights: Sequence[float] = DEFAULT_HARDWARE_WEIGHTS,
    model_weights: Sequence[float] = DEFAULT_MODEL_WEIGHTS,
    trace_scale: float | None = None,
    per_neuron: bool = False,
    fan_in: int = 1,
) -> Alignment:
    """Measure `trace_offset`, `trace_scale` and `weight_scale` for `neuron` on `backend`.

    **Arguments:**
    - `backend`: any backend (`ChipModel`, hardware, `Numeric`).
    - `neuron`: the population to align, with its model and chip parameters (e.g. leak
      `Mixed(0, 80)`, threshold `Mixed(1, 125)`); each neuron gets one input channel.
      Its `trace_offset`/`trace_scale` are ignored (set to 0 and 1 while measuring); its
      `cadc_time_shift` and `shift_cadc_to_first` apply as they will in use.
    - `key`: PRNG key for noisy backends. `dt`: grid step (s). `time`: steps per run
      (150: step 2 needs many spike cycles). `repetitions`: runs per measurement.
    - `input_step`: the step of the single input spike for the PSPs.
    - `saturating_weight`: chip weight(s) of step 2's input, one event every step.
    - `hardware_weights`: chip weights of the backend's PSP sweep (non-zero, |w| <= 63).
    - `model_weights`: model weights of the numerics' PSP sweep (non-zero).
    - `trace_scale`: skip step 2 and use this (needed for a neuron that does not fire).
    - `per_neuron`: one value per neuron instead of the mean over neurons.
    - `fan_in`: signed inputs per neuron of the population in its network; the probe
      takes `circuits_per_neuron(fan_in)` circuits per neuron, as the network will (its
      input arrives on the first input channel, the others stay silent).

    **Returns:** an `Alignment`.

    Semantics (per neuron; "trace" is the CADC trace as `run` returns it with offset 0
    and scale 1, averaged over `repetitions`):
    ```python
    baseline = mean(trace(no input))
    span     = max over w in saturating_weight where the neuron fired in every run of
               mean over runs(max over time(run's trace(input w every step))) - baseline
    scale    = (model threshold - model leak) / span
    offset   = baseline - model leak / scale
    psp(w)   = signed extreme of trace(one spike of weight w) - baseline
    weight_scale = lstsq(model_weights, psp_numerics) / (lstsq(hw_weights, psp_backend) * scale)
    ```

    ```python
    lif = bj.LIF(1, leak=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0))
    alignment = bj.align(bj.ChipModel(bj.ChipInstance.random(key)), lif, key=key)
    ```
    """
    _check_arguments(backend, neuron, time, repetitions, input_step, fan_in)
    hardware_weights = _weights(hardware_weights, "hardware_weights", 63.0)
    model_weights = _weights(model_weights, "model_weights", None)
    saturating_weight = _check_drive(neuron, saturating_weight, trace_scale)
    if isinstance(backend, Numeric):
        return _identity(neuron, per_neuron)
    if key is None:
        key = jax.random.PRNGKey(0)
    probe = eqx.tree_at(
        lambda n: (n.trace_offset, n.trace_scale), neuron, (jnp.zeros(()), jnp.ones(()))
    )
    keys = jax.random.split(key, 2 + len(hardware_weights))
    drive = (time, repetitions, saturating_weight, fan_in)
    baseline, span, scale = _trace_alignment(backend, neuron, probe, drive, trace_scale, keys, dt)
    leak_model = jnp.broadcast_to(model_value(neuron.leak), (neuron.size,))
    sweep = (time, repetitions, input_step, hardware_weights, model_weights, fan_in)
    backend_slope, model_slope, time_shift = _psp_alignment(
        backend, neuron, probe, baseline, sweep, keys[2:], dt, per_neuron
    )
    weight_scale = model_slope / (backend_slope * scale)
    offset = baseline - leak_model / scale
    values = (offset, scale, weight_scale, baseline, span, backend_slope, model_slope)
    if not per_neuron:
        values = tuple(v.mean() for v in values)
    return Alignment(*values, cadc_time_shift=time_shift + neuron.cadc_time_shift)


def _check_arguments(backend, neuron, time, repetitions, input_step, fan_in) -> None:
    """Check `align`'s backend, neuron, sizes (steps) and `fan_in` (the probe's circuits
    must fit one run: `neuron.size * circuits_per_neuron(fan_in) <= 512`)."""
    if not isinstance(backend, AbstractBackend):
        raise TypeError(f"`backend` must be a bss2jax backend; got {backend!r}.")
    if not isinstance(neuron, AbstractNeuron):
        raise TypeError(f"`neuron` must be a neuron population (LIF, LI, AdEx); got {neuron!r}.")
    for name, value in (("time", time), ("repetitions", repetitions), ("fan_in", fan_in)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    if neuron.size > neurons_per_run(fan_in):
        raise ValueError(
            f"`fan_in` = {fan_in} joins {circuits_per_neuron(fan_in)} circuits per neuron, so "
            f"one run holds at most {neurons_per_run(fan_in)} neurons (512 circuits); `neuron` "
            f"has {neuron.size}."
        )
    if isinstance(input_step, bool) or not isinstance(input_step, int):
        raise ValueError(f"`input_step` must be an int; got {input_step!r}.")
    if not 0 <= input_step < time - 1:
        raise ValueError(
            f"`input_step` must lie in [0, time - 1) = [0, {time - 1}); got {input_step}."
        )


def _check_drive(neuron, saturating_weight, trace_scale) -> tuple[float, ...]:
    """Check that step 2 of `align` can run: chip weights in range and a neuron that
    fires (unless `trace_scale` is given). Returns the weights as a tuple."""
    weights = saturating_weight
    if isinstance(weights, int | float):
        weights = (weights,)
    weights = tuple(weights)
    if not weights or not all(
        isinstance(w, int | float) and not isinstance(w, bool) and 0 < w <= 63 for w in weights
    ):
        raise ValueError(
            "`saturating_weight` must be a chip weight in (0, 63] or a non-empty sequence of "
            f"them; got {saturating_weight!r}."
        )
    if trace_scale is None and not neuron.fire:
        raise ValueError(
            f"`neuron` ({type(neuron).__name__}) does not fire, so its threshold cannot be "
            "measured; pass `trace_scale` (e.g. from aligning a LIF with the same settings)."
        )
    return tuple(float(w) for w in weights)


def _identity(neuron, per_neuron) -> Alignment:
    """`align` on `Numeric()`: nothing is observed, the numerics' traces are already in
    model units (offset 0, scales 1, raw measurements NaN)."""
    shape = (neuron.size,) if per_neuron else ()
    zero, one, nan = jnp.zeros(shape), jnp.ones(shape), jnp.full(shape, jnp.nan)
    shift = jnp.asarray(neuron.cadc_time_shift)
    if per_neuron:
        shift = jnp.broadcast_to(shift, shape)
    return Alignment(zero, one, one, zero, nan, nan, nan, cadc_time_shift=shift)


def _trace_alignment(backend, neuron, probe, drive, trace_scale, keys, dt):
    """Steps 1 and 2 of `align`: the baseline (LSB) with no input (`keys[0]`), and the
    threshold span (LSB) under saturating input (`keys[1]`) with the `trace_scale` it gives
    (or the given `trace_scale`, span NaN). `drive` is `(time, repetitions,
    saturating_weights, fan_in)`. Returns `(baseline, span, scale)`, each `(neurons,)`."""
    time, repetitions, saturating_weights, fan_in = drive
    size = neuron.size
    silence = _channels(jnp.zeros((time, repetitions, 1)), fan_in)
    baseline = _measure(probe, 0.0, silence, backend, keys[0], dt).mean(0)
    if trace_scale is None:
        leak_model = jnp.broadcast_to(model_value(neuron.leak), (size,))
        saturating = _channels(jnp.ones((time, repetitions, 1)), fan_in)
        maxima = _threshold_reading(backend, probe, saturating_weights, saturating, keys[1], dt)
        span = maxima - baseline
        model_span = jnp.broadcast_to(model_value(neuron.threshold), (size,)) - leak_model
        return baseline, span, model_span / span
    span = jnp.full((size,), jnp.nan)
    return baseline, span, jnp.broadcast_to(jnp.asarray(trace_scale, float), (size,))


def _psp_alignment(backend, neuron, probe, baseline, sweep, keys, dt, per_neuron):
    """Steps 3 and 4 of `align`: single-input PSPs swept over the chip weights on `backend`
    (one key each) and over the model weights in the numerics. `sweep` is `(time,
    repetitions, input_step, hardware_weights, model_weights, fan_in)`. Returns `(backend_slope,
    model_slope, time_shift)`: each sweep's least-squares slope, `(neurons,)`, and the
    `cadc_time_shift` (steps) that lines up the largest PSPs."""
    time, repetitions, input_step, hardware_weights, model_weights, fan_in = sweep
    leak_model = jnp.broadcast_to(model_value(neuron.leak), (neuron.size,))
    single = jnp.zeros((time, repetitions, 1)).at[input_step].set(1.0)
    traces_backend = jnp.stack(
        [
            _measure(probe, w, _channels(single, fan_in), backend, k, dt) - baseline[None]
            for w, k in zip(hardware_weights, keys, strict=True)
        ]
    )
    traces_model = jnp.stack(
        [
            _measure(neuron, w, single[:, :1], Numeric(), None, dt) - leak_model[None]
            for w in model_weights
        ]
    )
    psp_backend = jax.vmap(_extreme, in_axes=(0, None))(traces_backend, input_step)
    psp_model = jax.vmap(_extreme, in_axes=(0, None))(traces_model, input_step)
    time_shift = _time_shift(
        traces_backend[jnp.argmax(jnp.abs(jnp.asarray(hardware_weights)))],
        traces_model[jnp.argmax(jnp.abs(jnp.asarray(model_weights)))],
        input_step,
        per_neuron,
    )
    backend_slope = _slope(jnp.asarray(hardware_weights), psp_backend)
    model_slope = _slope(jnp.asarray(model_weights), psp_model)
    return backend_slope, model_slope, time_shift


def _measure(population, weight, inputs, backend, key, dt):
    """The mean CADC trace `(time, neurons)` of `population` driven through the first of
    `inputs.shape[-1]` input channels with chip or model weight `weight` (all neurons
    alike)."""
    network = _probe(population, weight, inputs.shape[-1])
    return _mean_trace(backend, network, inputs, key, dt)


def _probe(population, weight, fan_in):
    """`Sequential([Synapse(fan_in, n), population])`, weight `weight` from the first input
    channel and 0 from the others: the population at `circuits_per_neuron(fan_in)`."""
    size = population.size
    synapse = Synapse(fan_in, size, weight=jnp.zeros((size, fan_in)).at[:, 0].set(weight))
    return Sequential([synapse, population])


def _channels(inputs, fan_in):
    """`inputs` `(time, batch, 1)` padded with silent channels to `(time, batch, fan_in)`."""
    time, batch, _ = inputs.shape
    return jnp.concatenate([inputs, jnp.zeros((time, batch, fan_in - 1))], axis=-1)


def _weights(values, name, limit):
    values = tuple(float(v) for v in values)
    if not values or any(v == 0 for v in values):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of non-zero weights; got {values}."
        )
    if limit is not None and any(abs(v) > limit for v in values):
        raise ValueError(f"`{name}` must lie within ±{limit:g} (chip weights); got {values}.")
    return values


@eqx.filter_jit
def _mean_trace(backend, network, inputs, key, dt):
    (out,) = run(network, inputs, backend=backend, dt=dt, key=key)
    return out.membrane_cadc.mean(1)  # (time, neurons), averaged over repetitions


def _threshold_reading(backend, probe, weights, inputs, key, dt):
    """Step 2's reading of the threshold (LSB, `(neurons,)`): per drive weight, each run's
    maximum of the trace read with nearest-neighbour interpolation, averaged over the
    runs; per neuron the largest over the weights at which it fired in every run."""
    nearest = replace_static(probe, interpolation="nearest")
    best = jnp.full((probe.size,), -jnp.inf)
    for weight, k in zip(weights, jax.random.split(key, len(weights)), strict=True):
        network = _probe(nearest, weight, inputs.shape[-1])
        maxima, fired = _run_maxima(backend, network, inputs, k, dt)
        best = jnp.where(fired, jnp.maximum(best, maxima), best)
    silent = [int(i) for i in jnp.flatnonzero(~jnp.isfinite(best))]
    if silent:
        raise ValueError(
            f"neurons {silent} did not fire in every run at any `saturating_weight` "
            f"{weights}, so their threshold was not reached; raise the weights or `time`."
        )
    return best


@eqx.filter_jit
def _run_maxima(backend, network, inputs, key, dt):
    """Each run's maximum of the trace, averaged over the runs, and whether the neuron
    fired in every run: `(neurons,)` each."""
    (out,) = run(network, inputs, backend=backend, dt=dt, key=key)
    fired = (out.spikes.sum(0) > 0).all(0)
    return out.membrane_cadc.max(0).mean(0), fired


def _time_shift(backend, model, start, per_neuron):
    """The shift (steps) that moves the backend's PSP `(time, n)` onto the model's.

    Compares the times at which each PSP, normalised to its peak, first reaches half of
    it (linearly interpolated): the rising edge, which mismatch of the time constants
    barely moves. A positive shift means the backend responds later.
    """
    delay = _half_rise(backend, start) - _half_rise(model, start)
    if not per_neuron:
        delay = delay.mean()
    return jnp.round(delay).astype(jnp.int32)


def _half_rise(trace, start):
    window = trace[start:] / _extreme(trace, start)[None]
    index = jnp.argmax(window >= 0.5, axis=0)  # first step at or above half the peak
    below = jnp.take_along_axis(window, jnp.maximum(index - 1, 0)[None], axis=0)[0]
    above = jnp.take_along_axis(window, index[None], axis=0)[0]
    fraction = jnp.where(above > below, (0.5 - below) / (above - below), 1.0)
    return (start + index - 1).astype(fraction.dtype) + jnp.clip(fraction, 0.0, 1.0)


def _extreme(trace, start):
    """The signed value of largest magnitude after `start`, per neuron: `(neurons,)`."""
    window = trace[start:]
    index = jnp.argmax(jnp.abs(window), axis=0)
    return jnp.take_along_axis(window, index[None], axis=0)[0]


def _slope(weights, amplitudes):
    """Least-squares slope through the origin of `amplitudes (k, n)` over `weights (k,)`."""
    return (weights[:, None] * amplitudes).sum(0) / (weights**2).sum()

"""Reference CUBA AdEx integrator: one `lax.scan` over time, hxtorch's step exactly.

The step follows hxtorch.spiking's generated `cuba_aelif_integration` code (explicit Euler,
one `dt` of synaptic delay, reset without gradient, refractory counter) or, with
`CubaFlags(exact=True)`, the exact exponential decay of a constant input over one step.
Every array here is `(batch, neurons)` inside the step and `(time, batch, neurons)` outside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import DTypeLike
from jaxtyping import Array, ArrayLike, Float

SpikeFunction = Callable[[Array], Array]
PerNeuron = Float[ArrayLike, ""] | Float[ArrayLike, "#neurons"]
"""A scalar or a per-neuron array `(neurons,)`."""


class CubaParams(NamedTuple):
    """Model-space parameters of one population; each broadcasts to `(neurons,)`.

    Potentials are in model units, times in seconds of hardware time. `membrane_capacitance`
    is hxtorch's model capacitance: the leak conductance is `membrane_capacitance / tau_mem`
    and a synaptic current moves the membrane by `dt / membrane_capacitance` per step.
    """

    leak: PerNeuron
    reset: PerNeuron
    threshold: PerNeuron
    tau_mem: PerNeuron
    tau_syn: PerNeuron
    membrane_capacitance: PerNeuron
    refractory_time: PerNeuron
    exponential_slope: PerNeuron
    exponential_threshold: PerNeuron
    subthreshold_adaptation_strength: PerNeuron
    spike_triggered_adaptation_increment: PerNeuron
    tau_adap: PerNeuron


class CubaFlags(NamedTuple):
    """Which terms of the AdEx equations are integrated (static, hashable)."""

    leaky: bool = True
    fire: bool = True
    refractory: bool = True
    exponential: bool = False
    subthreshold_adaptation: bool = False
    spike_triggered_adaptation: bool = False
    exact: bool = False

    @property
    def adaptation(self) -> bool:
        return self.subthreshold_adaptation or self.spike_triggered_adaptation


class CubaState(NamedTuple):
    """Carry of the scan, each `(batch, neurons)`; `refractory` counts steps left.

    `adaptation` is None without adaptation, `refractory` None for neurons that don't fire.
    """

    membrane: Float[Array, "batch neurons"]
    current: Float[Array, "batch neurons"]
    adaptation: Float[Array, "batch neurons"] | None
    refractory: Float[Array, "batch neurons"] | None


class HardwareStep(NamedTuple):
    """Observed values in model units, or None: `(batch, neurons)` for one step,
    `(time, batch, neurons)` for `integrate`."""

    membrane: Float[Array, "*time batch neurons"] | None = None
    spikes: Float[Array, "*time batch neurons"] | None = None
    adaptation: Float[Array, "*time batch neurons"] | None = None


class StepOutput(NamedTuple):
    """What one step emits, `(batch, neurons)` (stacked to `(time, batch, neurons)` by
    `integrate`); `spikes`/`adaptation` None when absent."""

    spikes: Float[Array, "*time batch neurons"] | None
    membrane: Float[Array, "*time batch neurons"]
    current: Float[Array, "*time batch neurons"]
    adaptation: Float[Array, "*time batch neurons"] | None


@jax.custom_jvp
def inject(value: jax.Array, observed: jax.Array) -> jax.Array:
    """Return `observed` in the forward pass; pass the tangent of `value` through.

    hxtorch's `Unterjubel`: forward values are exactly the observation (bit for bit), and
    the derivative is the identity with respect to `value` and zero for `observed`.
    """
    del value
    return observed


@inject.defjvp
def _inject_jvp(primals, tangents):
    value, observed = primals
    value_dot, _ = tangents
    return observed, jnp.broadcast_to(value_dot, observed.shape).astype(observed.dtype)


class CubaCoefficients(NamedTuple):
    """Per-step constants derived once from `CubaParams`, `dt` and the flags.

    Each is a scalar or `(1, neurons)`, to broadcast against `(batch, neurons)`.
    """

    leak: PerNeuron
    reset: PerNeuron
    threshold: PerNeuron
    input_gain: PerNeuron  # dt / c
    leak_rate: PerNeuron  # dt / tau_mem (Euler) or exp(-dt / tau_mem) (exact)
    conductance: PerNeuron  # g_l = c / tau_mem
    current_keep: PerNeuron  # 1 - dt / tau_syn, or exp(-dt / tau_syn)
    exponential_slope: PerNeuron
    exponential_threshold: PerNeuron
    adaptation_keep: PerNeuron  # 1 - dt / tau_adap, or exp(-dt / tau_adap)
    adaptation_gain: PerNeuron  # a * dt / tau_adap, or a * (1 - exp(-dt / tau_adap))
    adaptation_increment: PerNeuron  # b
    refractory_steps: PerNeuron  # refractory_time / dt (not rounded, as in hxtorch)


def coefficients(
    params: CubaParams, flags: CubaFlags, dt: float, dtype: DTypeLike | None = None
) -> CubaCoefficients:
    """Constants of the step, computed outside the time loop (in the dtype of `params`, then
    cast to `dtype` if given)."""
    p = params
    if flags.exact:
        leak_rate = jnp.exp(-dt / p.tau_mem)
        current_keep = jnp.exp(-dt / p.tau_syn)
        adaptation_keep = jnp.exp(-dt / p.tau_adap)
        adaptation_gain = p.subthreshold_adaptation_strength * (1 - adaptation_keep)
    else:
        leak_rate = dt / p.tau_mem
        current_keep = 1 - dt / p.tau_syn
        adaptation_keep = 1 - dt / p.tau_adap
        adaptation_gain = p.subthreshold_adaptation_strength * (dt / p.tau_adap)
    values = CubaCoefficients(
        leak=p.leak,
        reset=p.reset,
        threshold=p.threshold,
        input_gain=dt / p.membrane_capacitance,
        leak_rate=leak_rate,
        conductance=p.membrane_capacitance / p.tau_mem,
        current_keep=current_keep,
        exponential_slope=p.exponential_slope,
        exponential_threshold=p.exponential_threshold,
        adaptation_keep=adaptation_keep,
        adaptation_gain=adaptation_gain,
        adaptation_increment=p.spike_triggered_adaptation_increment,
        refractory_steps=p.refractory_time / dt,
    )
    if dtype is not None:
        values = CubaCoefficients(*(jnp.asarray(v, dtype) for v in values))
    return CubaCoefficients(*(_against_batch(v) for v in values))


def _against_batch(value: PerNeuron) -> Float[Array, ""] | Float[Array, "1 neurons"]:
    """A per-neuron `(neurons,)` as `(1, neurons)`, explicitly what NumPy's rank promotion
    does against `(batch, neurons)`; a scalar stays a scalar."""
    value = jnp.asarray(value)
    return value[None] if value.ndim == 1 else value


def init_state(
    params: CubaParams, flags: CubaFlags, shape: tuple[int, int], dtype: DTypeLike
) -> CubaState:
    """hxtorch's initial state, each `shape = (batch, neurons)`.

    `i = w = r = 0`; `v = leak` if the neuron is leaky or adapts below threshold, else 0.
    The adaptation and the refractory counter are None where the flags leave them out.
    """
    zeros = jnp.zeros(shape, dtype)
    if flags.leaky or flags.subthreshold_adaptation:
        membrane = zeros + _against_batch(jnp.asarray(params.leak, dtype))
    else:
        membrane = zeros
    adaptation = zeros if flags.adaptation else None
    refractory = zeros if flags.fire and flags.refractory else None
    return CubaState(membrane, zeros, adaptation, refractory)


def step(
    params: CubaParams,
    flags: CubaFlags,
    state: CubaState,
    synaptic_input: Float[Array, "batch neurons"],
    hardware: HardwareStep = HardwareStep(),
    *,
    dt: float,
    spike_fn: SpikeFunction,
) -> tuple[CubaState, StepOutput]:
    """One step of hxtorch's CUBA AdEx update.

    ```python
    g_l = c / tau_mem
    dv  = dt / c * (i + g_l * (leak - v) + g_l * slope * exp((v - v_exp) / slope) - w)
    i   = i * (1 - dt / tau_syn) + synaptic_input        # the dt of synaptic delay
    v   = v + dv                                          # or inject(v + dv, v_hw)
    z   = spike_fn(v - threshold)                         # or inject(z, z_hw)
    w   = w * (1 - dt / tau_adap) + dt / tau_adap * a * (v - leak) + b * z
    v   = (1 - sg(z)) * v + sg(z) * reset                 # only without a measured v
    refractory clamp of v to reset and of z to 0 while r > 0, then
    r   = (1 - z) * relu(r - [r > 0]) + z * refractory_time / dt
    ```
    Terms are present as `flags` say. With `flags.exact` the leak, the synaptic current and
    the adaptation decay exactly over the step (`exp(-dt / tau)`) for the input held fixed.
    The Euler update is evaluated as `v + dt/c * (i + ...) + dt/tau_mem * (leak - v)`, equal
    to hxtorch's expression up to floating-point rounding.
    """
    values = coefficients(params, flags, dt, state.membrane.dtype)
    return step_with(values, flags, state, synaptic_input, hardware, spike_fn=spike_fn)


def step_with(
    k: CubaCoefficients,
    flags: CubaFlags,
    state: CubaState,
    synaptic_input: Float[Array, "batch neurons"],
    hardware: HardwareStep = HardwareStep(),
    *,
    spike_fn: SpikeFunction,
) -> tuple[CubaState, StepOutput]:
    """`step` with its constants precomputed by `coefficients` (the scan body)."""
    v, i, w, r = state
    dtype = v.dtype

    drive = i
    if flags.exponential:
        # the exponent capped at 20 (as the chip model's): beyond it the drive (>= 4.8e8
        # slopes) fires the neuron within the step either way, and float32 stays finite
        # (uncapped, a membrane 4.4 slopes past exp(88) overflowed to inf, then NaN)
        distance = jnp.minimum((v - k.exponential_threshold) / k.exponential_slope, 20.0)
        drive = drive + k.conductance * k.exponential_slope * jnp.exp(distance)
    if flags.adaptation:
        drive = drive - w
    if flags.exact and flags.leaky:
        v_inf = k.leak + drive / k.conductance
        v_new = v_inf + (v - v_inf) * k.leak_rate
    elif flags.leaky:
        v_new = v + k.input_gain * drive + k.leak_rate * (k.leak - v)
    else:
        v_new = v + k.input_gain * drive

    i = i * k.current_keep + synaptic_input
    v = v_new if hardware.membrane is None else inject(v_new, hardware.membrane)

    z = None
    if flags.fire:
        z = spike_fn(v - k.threshold).astype(dtype)
        if hardware.spikes is not None:
            z = inject(z, hardware.spikes)

    if flags.adaptation:
        w = w * k.adaptation_keep
        if flags.subthreshold_adaptation:
            w = w + k.adaptation_gain * (v - k.leak)
        if flags.spike_triggered_adaptation:
            w = w + k.adaptation_increment * z
        if hardware.adaptation is not None:
            w = inject(w, hardware.adaptation)

    if flags.fire and hardware.membrane is None:
        # `where` on the spike (equal to `(1 - sg(z)) * v + sg(z) * reset` for z in {0, 1},
        # value and gradient) keeps a boolean residual instead of a float `(batch, neurons)`.
        fired = lax.stop_gradient(z) > 0
        v = jnp.where(fired, k.reset, v)

    if flags.fire and flags.refractory:
        # Masks by `where` (equal to hxtorch's `(1 - m) * x + m * y` for m in {0, 1}, value
        # and gradient) keep a boolean residual for the backward pass instead of a float.
        in_refractory = r > 0
        v = jnp.where(in_refractory, k.reset, v)
        if hardware.membrane is not None:
            v = inject(v, hardware.membrane)
        z = jnp.where(in_refractory, 0.0, z).astype(dtype)
        if hardware.spikes is not None:
            z = inject(z, hardware.spikes)
        # The counter only feeds the comparison `r > 0`, which has no derivative: computing
        # it from the spike value alone leaves its zero gradient out of the backward pass.
        z_value = lax.stop_gradient(z)
        r = (1 - z_value) * jax.nn.relu(r - in_refractory.astype(dtype)) + z_value * (
            k.refractory_steps
        )

    output = StepOutput(z, v, i, w if flags.adaptation else None)
    return CubaState(v, i, w, r), output


def integrate(
    params: CubaParams,
    flags: CubaFlags,
    synaptic_input: Float[Array, "time batch neurons"],
    hardware: HardwareStep = HardwareStep(),
    *,
    dt: float,
    spike_fn: SpikeFunction,
    state: CubaState | None = None,
) -> StepOutput:
    """Integrate one population over time with `lax.scan`.

    **Arguments:**
    - `synaptic_input`: float array `(time, batch, neurons)`, the graded spikes `x^t` that
      reach the synaptic current at step `t` (already multiplied by the weights).
    - `hardware`: observations `(time, batch, neurons)` in model units to inject, or None.
    - `dt`: the step in seconds. `spike_fn`: maps `v - threshold` to 0/1 spikes with a
      surrogate derivative.

    **Returns:** a `StepOutput` whose arrays are `(time, batch, neurons)`.

    Semantics, as a plain loop: `for t in range(T): state, out[t] = step(..., x[t], hw[t])`.
    """
    if state is None:
        state = init_state(params, flags, synaptic_input.shape[1:], synaptic_input.dtype)

    values = coefficients(params, flags, dt, synaptic_input.dtype)

    def body(carry, xs):
        x, hw = xs
        return step_with(values, flags, carry, x, hw, spike_fn=spike_fn)

    _, outputs = lax.scan(body, state, (synaptic_input, hardware))
    return outputs

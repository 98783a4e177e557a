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

SpikeFunction = Callable[[jax.Array], jax.Array]


class CubaParams(NamedTuple):
    """Model-space parameters of one population; each broadcasts to `(neurons,)`.

    Potentials are in model units, times in seconds of hardware time. `membrane_capacitance`
    is hxtorch's model capacitance: the leak conductance is `membrane_capacitance / tau_mem`
    and a synaptic current moves the membrane by `dt / membrane_capacitance` per step.
    """

    leak: jax.Array
    reset: jax.Array
    threshold: jax.Array
    tau_mem: jax.Array
    tau_syn: jax.Array
    membrane_capacitance: jax.Array
    refractory_time: jax.Array
    exponential_slope: jax.Array
    exponential_threshold: jax.Array
    subthreshold_adaptation_strength: jax.Array
    spike_triggered_adaptation_increment: jax.Array
    tau_adap: jax.Array


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
    """Carry of the scan, each `(batch, neurons)`; `refractory` counts steps left."""

    membrane: jax.Array
    current: jax.Array
    adaptation: jax.Array
    refractory: jax.Array


class HardwareStep(NamedTuple):
    """Observed values of one step in model units, `(batch, neurons)` or None."""

    membrane: jax.Array | None = None
    spikes: jax.Array | None = None
    adaptation: jax.Array | None = None


class StepOutput(NamedTuple):
    """What one step emits, `(batch, neurons)`; `spikes`/`adaptation` None when absent."""

    spikes: jax.Array | None
    membrane: jax.Array
    current: jax.Array
    adaptation: jax.Array | None


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


def init_state(params: CubaParams, flags: CubaFlags, shape: tuple[int, int], dtype) -> CubaState:
    """hxtorch's initial state, each `shape = (batch, neurons)`.

    `i = w = r = 0`; `v = leak` if the neuron is leaky or adapts below threshold, else 0.
    """
    zeros = jnp.zeros(shape, dtype)
    if flags.leaky or flags.subthreshold_adaptation:
        membrane = zeros + params.leak
    else:
        membrane = zeros
    return CubaState(membrane, zeros, zeros, zeros)


def step(
    params: CubaParams,
    flags: CubaFlags,
    state: CubaState,
    synaptic_input: jax.Array,
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
    """
    p = params
    v, i, w, r = state
    dtype = v.dtype
    g_l = p.membrane_capacitance / p.tau_mem

    drive = i
    if flags.exponential:
        drive = drive + g_l * p.exponential_slope * jnp.exp(
            (v - p.exponential_threshold) / p.exponential_slope
        )
    if flags.adaptation:
        drive = drive - w
    if flags.exact and flags.leaky:
        decay = jnp.exp(-dt / p.tau_mem)
        v_inf = p.leak + drive / g_l
        v_new = v_inf + (v - v_inf) * decay
    else:
        if flags.leaky:
            drive = drive + g_l * (p.leak - v)
        v_new = v + dt / p.membrane_capacitance * drive

    if flags.exact:
        i = i * jnp.exp(-dt / p.tau_syn) + synaptic_input
    else:
        i = i * (1 - dt / p.tau_syn) + synaptic_input

    v = v_new if hardware.membrane is None else inject(v_new, hardware.membrane)

    z = None
    if flags.fire:
        z = spike_fn(v - p.threshold).astype(dtype)
        if hardware.spikes is not None:
            z = inject(z, hardware.spikes)

    if flags.adaptation:
        if flags.exact:
            keep = jnp.exp(-dt / p.tau_adap)
        else:
            keep = 1 - dt / p.tau_adap
        w = w * keep
        if flags.subthreshold_adaptation:
            gain = (1 - keep) if flags.exact else dt / p.tau_adap
            w = w + gain * p.subthreshold_adaptation_strength * (v - p.leak)
        if flags.spike_triggered_adaptation:
            w = w + p.spike_triggered_adaptation_increment * z
        if hardware.adaptation is not None:
            w = inject(w, hardware.adaptation)

    if flags.fire and hardware.membrane is None:
        z_stop = lax.stop_gradient(z)
        v = (1 - z_stop) * v + z_stop * p.reset

    if flags.fire and flags.refractory:
        in_refractory = (r > 0).astype(dtype)
        v = (1 - in_refractory) * v + in_refractory * p.reset
        if hardware.membrane is not None:
            v = inject(v, hardware.membrane)
        z = (1 - in_refractory) * z
        if hardware.spikes is not None:
            z = inject(z, hardware.spikes)
        r = (1 - z) * jax.nn.relu(r - in_refractory) + z * (p.refractory_time / dt)

    output = StepOutput(z, v, i, w if flags.adaptation else None)
    return CubaState(v, i, w, r), output


def integrate(
    params: CubaParams,
    flags: CubaFlags,
    synaptic_input: jax.Array,
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

    def body(carry, xs):
        x, hw = xs
        return step(params, flags, carry, x, hw, dt=dt, spike_fn=spike_fn)

    _, outputs = lax.scan(body, state, (synaptic_input, hardware))
    return outputs

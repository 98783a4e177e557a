"""Memory-lean CUBA integrator: checkpoints of the state every `segment` steps.

The reference scan (`reference.integrate`) keeps, for the backward pass, a handful of
`(batch, neurons)` arrays of every time step (membrane, current, the surrogate's input,
the refractory masks), so a train step's memory grows as `time x batch x neurons x ~6`
floats. Here the scan runs over segments of `segment` steps, each a `jax.checkpoint`
(remat) of the reference step: the forward keeps only the state at the start of every
segment and the segment's inputs; the backward recomputes one segment at a time from its
checkpoint and differentiates it, so the extra memory is `time / segment` states plus one
segment's residuals (`segment` = sqrt(time) by default). The cost is one more forward
pass of the scan.

The synaptic input may also be computed per segment (`project`): with event inputs and a
weight, the `(time, batch, neurons)` input current is then never materialised, neither
forward nor as a cotangent; only the compact events are kept.

Values and gradients are those of `reference.integrate` (the same step function, the
same order of operations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .reference import (
    CubaFlags,
    CubaParams,
    CubaState,
    HardwareStep,
    SpikeFunction,
    StepOutput,
    coefficients,
    init_state,
    step_with,
)

# `integrate_auto` takes the lean integrator when time x batch x neurons exceeds this
# (2**24 elements: about 400 MiB of float32 residuals in the reference scan).
LEAN_THRESHOLD = 2**24

METHODS = ("auto", "reference", "lean")


def default_segment(time: int) -> int:
    """The divisor of `time` closest to sqrt(time) (so no tail segment), unless that is
    under half of sqrt(time); then round(sqrt(time))."""
    root = math.sqrt(time)
    best = min((d for d in range(1, time + 1) if time % d == 0), key=lambda d: abs(d - root))
    return best if best >= root / 2 else max(1, round(root))


def integrate(
    params: CubaParams,
    flags: CubaFlags,
    synaptic_input: Any,
    hardware: HardwareStep = HardwareStep(),
    *,
    dt: float,
    spike_fn: SpikeFunction,
    state: CubaState | None = None,
    segment: int | None = None,
    project: Callable[[Any], jax.Array] | None = None,
    keep: Callable[[StepOutput], Any] | None = None,
) -> Any:
    """`reference.integrate` with the backward pass recomputing segments of the scan.

    **Arguments:** as `reference.integrate`, and
    - `synaptic_input`: float array `(time, batch, neurons)`; or, with `project`, any
      pytree of arrays with a leading time axis (for example event indices
      `(time, batch, capacity)`).
    - `project`: maps a time slice of `synaptic_input` (leading axis `segment` steps) to
      the float input current `(segment, batch, neurons)`; differentiable in whatever it
      closes over (the weight). None: `synaptic_input` is the current itself.
    - `segment`: steps between checkpoints (static); default `default_segment(time)`.
    - `keep`: maps a segment's `StepOutput` (arrays `(segment, batch, neurons)`) to what
      is kept of it, a pytree with a leading time axis, for example the spikes projected
      onto the next population (`lambda out: out.spikes @ w.T`): computed segment by
      segment, so the `(time, batch, neurons)` outputs are never materialised, neither
      forward nor as a cotangent; differentiable in what it closes over. None: all.

    **Returns:** a `StepOutput` of `(time, batch, neurons)` arrays, equal to the
    reference's; with `keep`, what it returns for every step, concatenated over time.

    Semantics: `for t in range(time): state, out[t] = step(..., x[t], hw[t])`, with
    `x = project(synaptic_input)` computed segment by segment.
    """
    leaves = jax.tree_util.tree_leaves(synaptic_input)
    if not leaves:
        raise ValueError("`synaptic_input` must hold at least one array.")
    time = leaves[0].shape[0]
    segment = default_segment(time) if segment is None else int(segment)
    if not 1 <= segment:
        raise ValueError(f"`segment` must be a positive int; got {segment}.")
    segment = min(segment, time)
    to_current = (lambda x: x) if project is None else project
    first = jax.eval_shape(to_current, jax.tree_util.tree_map(lambda a: a[:1], synaptic_input))
    dtype = first.dtype
    if state is None:
        state = init_state(params, flags, first.shape[1:], dtype)
    values = coefficients(params, flags, dt, dtype)

    def run_segment(carry, xs):
        inputs, observed = xs
        current = to_current(inputs)

        def body(c, x):
            return step_with(values, flags, c, x[0], x[1], spike_fn=spike_fn)

        carry, outputs = lax.scan(body, carry, (current, observed))
        return carry, outputs if keep is None else keep(outputs)

    run_segment = jax.checkpoint(run_segment, prevent_cse=False)
    xs = (synaptic_input, hardware)
    count, rest = divmod(time, segment)

    def head(a):
        return a[: count * segment].reshape(count, segment, *a.shape[1:])

    state, outputs = lax.scan(run_segment, state, jax.tree_util.tree_map(head, xs))
    outputs = jax.tree_util.tree_map(lambda a: a.reshape(count * segment, *a.shape[2:]), outputs)
    if rest:
        tail = jax.tree_util.tree_map(lambda a: a[count * segment :], xs)
        _, last = run_segment(state, tail)
        outputs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), outputs, last)
    return outputs


def uses_lean(shape: tuple[int, ...], method: str = "auto") -> bool:
    """Whether `integrate_auto` takes the lean integrator for an input of `shape`
    `(time, batch, neurons)` (trace time)."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    if method != "auto":
        return method == "lean"
    return math.prod(shape) > LEAN_THRESHOLD


def integrate_auto(
    params: CubaParams,
    flags: CubaFlags,
    synaptic_input: jax.Array,
    hardware: HardwareStep = HardwareStep(),
    *,
    dt: float,
    spike_fn: SpikeFunction,
    state: CubaState | None = None,
    method: str = "auto",
    segment: int | None = None,
) -> StepOutput:
    """The reference integrator, or the lean one when `time x batch x neurons` exceeds
    `LEAN_THRESHOLD` (`method="auto"`); `method="reference"` or `"lean"` forces either.

    ```python
    out = integrate_auto(params, flags, x, dt=1e-6, spike_fn=spike_fn, method="lean")
    ```
    """
    from .reference import integrate as reference_integrate

    if uses_lean(jnp.shape(synaptic_input), method):
        return integrate(
            params,
            flags,
            synaptic_input,
            hardware,
            dt=dt,
            spike_fn=spike_fn,
            state=state,
            segment=segment,
        )
    return reference_integrate(
        params, flags, synaptic_input, hardware, dt=dt, spike_fn=spike_fn, state=state
    )

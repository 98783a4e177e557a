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
from jaxtyping import Array, Float

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
) -> StepOutput:
    """`reference.integrate` with the backward pass recomputing segments of the scan.

    **Arguments:** as `reference.integrate`, and
    - `synaptic_input`: float array `(time, batch, neurons)`; or, with `project`, any
      pytree of arrays with a leading time axis (for example event indices
      `(time, batch, capacity)`).
    - `project`: maps a time slice of `synaptic_input` (leading axis `segment` steps) to
      the float input current `(segment, batch, neurons)`; differentiable in whatever it
      closes over (the weight). None: `synaptic_input` is the current itself.
    - `segment`: steps between checkpoints (static); default `default_segment(time)`.

    **Returns:** a `StepOutput` of `(time, batch, neurons)` arrays, equal to the
    reference's.

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

        return lax.scan(body, carry, (current, observed))

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


@jax.custom_vjp
def project_spikes(
    spikes: Float[Array, "time batch neurons"], weight: Float[Array, "out_features neurons"]
) -> Float[Array, "time batch out_features"]:
    """`spikes @ weight.T` (the projection of a population's spikes onto the next one),
    keeping the spikes for the weight gradient as booleans: `time x batch x neurons` bytes
    instead of 4x that in float32 (the lean scan's largest residual at large `time`).

    `spikes` must be 0/1 (a firing population's output): any non-zero value counts as
    1 in the weight gradient. Value and gradients equal the plain product's, the weight
    gradient summed over `time` in blocks of `default_segment(time)` steps (so no float copy
    of the spikes is made at once; equal up to the order of the float sums).
    """
    return spikes @ weight.T


def _project_spikes_fwd(spikes, weight):
    return spikes @ weight.T, (spikes != 0, weight, jnp.zeros((), spikes.dtype))


def _project_spikes_bwd(residual, cotangent):
    fired, weight, like = residual
    time = fired.shape[0]
    block = default_segment(time)
    count = time // block

    def add_block(total, xs):
        z, g = xs
        z = z.reshape(-1, z.shape[-1]).astype(g.dtype)
        return total + g.reshape(-1, g.shape[-1]).T @ z, None

    def blocks(a):
        return a[: count * block].reshape(count, block, *a.shape[1:])

    start = jnp.zeros(weight.shape, cotangent.dtype)
    total, _ = lax.scan(add_block, start, (blocks(fired), blocks(cotangent)))
    if count * block < time:
        total, _ = add_block(total, (fired[count * block :], cotangent[count * block :]))
    spikes_cotangent = cotangent @ weight.astype(cotangent.dtype)
    return spikes_cotangent.astype(like.dtype), total.astype(weight.dtype)


project_spikes.defvjp(_project_spikes_fwd, _project_spikes_bwd)


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

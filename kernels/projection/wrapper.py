"""`project`: the input projection, dense or event-driven, with the event path's VJP.

The choice (`method="auto"`) is made at trace time, since under `jit` the density of the
inputs is not known before they arrive:

- `Events` inputs take the event path when their static `capacity` (slots per row, set
  from the largest count of the batch by `from_numpy`) is at most `EVENT_FRACTION` of
  `in_features`, and are made dense otherwise. The capacity is the density bound the
  compiled program is built for, so it is what the rule reads.
- Dense inputs take the dense product: compacting them inside `jit` (`from_dense`) costs
  more on a CPU than the product it replaces (see `benchmarks/README.md`). With
  `method="events"` they are compacted anyway, to `capacity` slots per row, and a
  `lax.cond` takes the dense product at run time when a row has more active inputs.

`method="dense"` or `"events"` forces either. Both paths give the dense product's value
and gradients up to the order of the floating-point sums.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from . import events as _events, reference as _reference
from .events import Events

# Event path when capacity <= EVENT_FRACTION * in_features. Measured on the 2-core box
# (benchmarks/projection.py, 700 -> 256, T 100, B 32; table in benchmarks/README.md): the
# event path takes 0.58-0.63x the dense time (forward; with the weight gradient) at capacity
# 0.25 of in_features, 0.79-0.92x at 0.37 and 0.96-1.13x at 0.47 (under load; an earlier
# run put break-even just above one half). 0.4 sits at about the break-even.
EVENT_FRACTION = 0.4

METHODS = ("auto", "dense", "events")


def uses_events(inputs, method: str = "auto") -> bool:
    """Whether `project(inputs, ..., method=method)` takes the event path (trace time)."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    if method == "dense":
        return False
    if method == "events":
        return True
    if isinstance(inputs, Events):
        return inputs.capacity <= EVENT_FRACTION * inputs.in_features
    return False


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _project_events(in_features: int, indices, by_input, weight):
    return _events.project(indices, weight)


def _project_events_fwd(in_features, indices, by_input, weight):
    return _events.project(indices, weight), (indices, by_input)


def _project_events_bwd(in_features, residual, cotangent):
    indices, by_input = residual
    weight_cotangent = _events.weight_gradient(indices, cotangent, in_features, by_input)
    return None, None, weight_cotangent


_project_events.defvjp(_project_events_fwd, _project_events_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _project_compacted(capacity: int, inputs, weight):
    return _project_compacted_fwd(capacity, inputs, weight)[0]


def _project_compacted_fwd(capacity, inputs, weight):
    fits = _events.counts(inputs).max(initial=0) <= capacity
    indices = _events.from_dense(inputs, capacity).indices
    value = lax.cond(
        fits,
        lambda: _events.project(indices, weight),
        lambda: _reference.project(inputs, weight),
    )
    return value, (fits, indices, inputs, weight)


def _project_compacted_bwd(capacity, residual, cotangent):
    fits, indices, inputs, weight = residual
    in_features = weight.shape[-1]
    weight_cotangent = lax.cond(
        fits,
        lambda: _events.weight_gradient(indices, cotangent, in_features),
        lambda: cotangent.T @ inputs,
    )
    return (cotangent @ weight).astype(inputs.dtype), weight_cotangent


_project_compacted.defvjp(_project_compacted_fwd, _project_compacted_bwd)


def project(
    inputs: Float[Array, "*rows in_features"] | Events,
    weight: Float[Array, "out_features in_features"],
    *,
    method: str = "auto",
    capacity: int | None = None,
    dtype=None,
) -> Float[Array, "*rows out_features"]:
    """The input projection `inputs @ weight.T`, dense or from the active inputs only.

    **Arguments:**
    - `inputs`: float array `(..., in_features)`, spikes as 0/1, or `Events` of that shape.
    - `weight`: float array `(out_features, in_features)` in model units; differentiable.
    - `method`: `"auto"` (the module's rule), `"dense"` or `"events"`.
    - `capacity`: for dense inputs with `method="events"`, the slots per row of the
      compaction (static; default a quarter of `in_features`, rounded up to 8). Rows
      with more active inputs make the whole call take the dense product (`lax.cond`).
    - `dtype`: the result's dtype; default that of dense `inputs`, else of `weight`.

    **Returns:** float array `(..., out_features)`.

    Gradients: with respect to `weight` on every path; with respect to dense `inputs` as
    well (`cotangent @ weight`, removed by XLA where unused). `Events` are integers and
    have no gradient.
    """
    is_events = isinstance(inputs, Events)
    if not is_events:
        inputs = jnp.asarray(inputs)
    if dtype is None:
        dtype = weight.dtype if is_events else inputs.dtype
    if inputs.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"`inputs` must have in_features = {weight.shape[-1]} (the weight's second "
            f"axis); got shape {inputs.shape}."
        )
    weight = weight.astype(dtype)
    rows = inputs.shape[:-1]
    if not uses_events(inputs, method):
        dense = inputs.to_dense(dtype) if is_events else inputs
        return _reference.project(dense, weight)
    if is_events:
        indices = inputs.indices.reshape(-1, inputs.capacity)
        out = _project_events(inputs.in_features, indices, inputs.by_input, weight)
    else:
        in_features = inputs.shape[-1]
        if capacity is None:
            capacity = _events.round_capacity(in_features / 4)
        capacity = min(int(capacity), in_features)
        flat = inputs.reshape(-1, in_features)
        out = _project_compacted(capacity, flat, weight)
    return out.reshape(*rows, weight.shape[0])

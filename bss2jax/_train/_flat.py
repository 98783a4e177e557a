"""The train step partitioned once and jitted over the network's array leaves.

`TrainStep.__call__` takes and returns a whole network, so every call flattens and
rebuilds it (equinox modules flatten in Python: about 1.5 ms per call for the Yin-Yang
network, half a step's work). A `FlatStep` splits the network and the backend once into
their array leaves and the rest (kept as a static argument of one `jax.jit`), and steps
on the leaves: per call, JAX flattens a list of arrays in C++. The maths is
`TrainStep`'s, bit for bit. The same program also says whether the step stayed finite
(`fit`'s non-finite policy, no second dispatch) and, with `skip_nonfinite`, keeps the
state from before a non-finite step. `scan` runs several batches in one call.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._sharding import replicate, shard_batch
from ._step import _call_loss, _spec


class _Static:
    """A hashable holder of what one compiled step fixes (loss, optimiser, the network's
    and the backend's structure and non-array parts): flattened to its treedef and leaves
    (as `eqx.filter_jit` hashes its static arguments), hashed once, so a call does not hash
    the network again."""

    def __init__(self, value: tuple):
        leaves, tree = jax.tree_util.tree_flatten(value)
        self.value, self.key = value, (tree, tuple(leaves))
        try:
            self._hash = hash(self.key)
        except TypeError as error:
            raise TypeError(
                "the loss, optimiser, `trainable`, `constrain`, and the network's and the "
                "backend's non-array leaves must be hashable (arrays belong in the network "
                f"or the batch): {error}"
            ) from None

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, _Static) and (self is other or self.key == other.key)


class StepOutput(NamedTuple):
    """What a `FlatStep` call returns: the network's new `leaves` (list of arrays), the new
    `opt_state`, `metrics` (dict of scalars: `"loss"` and what the loss reports) and `finite`
    (bool scalar: the metrics are finite and no parameter or optimiser value turned NaN or
    inf). With `scan`, `metrics` and `finite` gain a leading batch axis."""

    leaves: list
    opt_state: Any
    metrics: dict
    finite: jax.Array


def _stays_finite(before, after, metrics) -> jax.Array:
    """True when the metrics are finite and no inexact array of `after` holds a NaN or inf
    where `before` (the same structure) held a finite value (a network may hold infinities
    on purpose, e.g. an infinite refractory time)."""
    old = jax.tree_util.tree_leaves(eqx.filter(before, eqx.is_inexact_array))
    new = jax.tree_util.tree_leaves(eqx.filter(after, eqx.is_inexact_array))
    checks = [jnp.all(jnp.isfinite(jnp.asarray(value))) for value in metrics.values()]
    checks += [jnp.all(jnp.isfinite(b) | ~jnp.isfinite(a)) for a, b in zip(old, new, strict=True)]
    return jnp.all(jnp.stack(checks or [jnp.asarray(True)]))


def _one_step(static: _Static, leaves, opt_state, batch, key, backend_leaves):
    loss, optimiser, trainable, constrain, skip, tree, rest, backend_tree, backend_rest = (
        static.value
    )
    network = eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), rest)
    backend = eqx.combine(jax.tree_util.tree_unflatten(backend_tree, backend_leaves), backend_rest)
    params, frozen = eqx.partition(network, _spec(network, trainable))

    def objective(p):
        return _call_loss(loss, eqx.combine(p, frozen), batch, key, backend)

    (value, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
    with jax.numpy_dtype_promotion("standard"):  # as in `_train_step`: optax promotes
        updates, new_state = optimiser.update(grads, opt_state, params)
    new_network = eqx.combine(optax.apply_updates(params, updates), frozen)
    if constrain is not None:
        new_network = constrain(new_network)
    new_leaves = jax.tree_util.tree_leaves(eqx.filter(new_network, eqx.is_array))
    metrics = {"loss": value, **metrics}
    finite = _stays_finite((leaves, opt_state), (new_leaves, new_state), metrics)
    if skip:
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        new_leaves = jax.tree_util.tree_map(keep, new_leaves, list(leaves))
        new_state = jax.tree_util.tree_map(keep, new_state, opt_state)
    return StepOutput(new_leaves, new_state, metrics, finite)


_step = jax.jit(_one_step, static_argnums=0)


def _scan_steps(static: _Static, leaves, opt_state, batches, keys, backend_leaves):
    def body(carry, batch_and_key):
        batch, key = batch_and_key
        out = _one_step(static, *carry, batch, key, backend_leaves)
        return (out.leaves, out.opt_state), (out.metrics, out.finite)

    (leaves, opt_state), (metrics, finite) = jax.lax.scan(
        body, (leaves, opt_state), (batches, keys)
    )
    return StepOutput(leaves, opt_state, metrics, finite)


_scan = jax.jit(_scan_steps, static_argnums=0)


class FlatStep:
    """A `TrainStep` fixed to one network structure and one backend: built by
    `TrainStep.flatten(network, backend=...)`.

    - `leaves`: the network's array leaves (a list), the state to step on.
    - `step(leaves, opt_state, batch, *, key) -> StepOutput(leaves, opt_state, metrics,
      finite)`: one train step, the same maths as `TrainStep` bit for bit.
    - `scan(leaves, opt_state, batches, *, keys)`: `len(keys)` steps in one call, `batches`
      stacked on a new leading axis; metrics and `finite` come back stacked.
    - `network(leaves)`: the network those leaves stand for.

    With the step's `mesh`, `step` splits each batch over it and keeps the rest replicated,
    as `TrainStep` does (`scan` takes no mesh).

    With `skip_nonfinite`, a step that is not finite returns the leaves and optimiser state
    from before it (`finite` says so). The network's non-array parts must not change
    between steps (a `constrain` that changes them is not supported here).
    """

    def __init__(self, train_step, network, backend, skip_nonfinite: bool = False):
        dynamic, rest = eqx.partition(network, eqx.is_array)
        self.leaves, tree = jax.tree_util.tree_flatten(dynamic)
        backend_dynamic, backend_rest = eqx.partition(backend, eqx.is_array)
        self.backend_leaves, backend_tree = jax.tree_util.tree_flatten(backend_dynamic)
        self._tree, self._rest, self.mesh = tree, rest, train_step.mesh
        if self.mesh is not None:
            self.leaves, self.backend_leaves = replicate(
                (self.leaves, self.backend_leaves), self.mesh
            )
        self._static = _Static(
            (
                train_step.loss,
                train_step.optimiser,
                train_step.trainable,
                train_step.constrain,
                bool(skip_nonfinite),
                tree,
                rest,
                backend_tree,
                backend_rest,
            )
        )

    def step(self, leaves, opt_state, batch, *, key) -> StepOutput:
        if self.mesh is not None:  # as `TrainStep.__call__`: batch split, the rest replicated
            batch = shard_batch(batch, self.mesh)
            key = replicate(key, self.mesh)
        return _step(self._static, leaves, opt_state, batch, key, self.backend_leaves)

    def scan(self, leaves, opt_state, batches, *, keys) -> StepOutput:
        if self.mesh is not None:
            raise ValueError("`FlatStep.scan` takes no mesh; step one batch at a time.")
        return _scan(self._static, leaves, opt_state, batches, keys, self.backend_leaves)

    def network(self, leaves):
        return eqx.combine(jax.tree_util.tree_unflatten(self._tree, leaves), self._rest)

"""The train step: a pure jitted loss, gradient and optax update.

A *loss* is a function `loss(network, batch, *, key, backend)` that returns a scalar or a
pair `(scalar, metrics)` with `metrics` a dict of scalars (e.g. `{"accuracy": ...}`). The
backend is an argument, not a constant of the loss, so one compiled step serves every chip
instance of the same shape, and a trained network can be evaluated on another backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._backend import AbstractBackend, Numeric
from .._network import AbstractNetwork, trainable_filter
from .._sharding import check_mesh, replicate, shard_batch
from .._typing import user_facing


def _spec(network, trainable):
    if trainable is None:
        if isinstance(network, AbstractNetwork):
            return trainable_filter(network)
        return jax.tree_util.tree_map(eqx.is_inexact_array, network)
    if callable(trainable):
        return trainable(network)
    return trainable


def _call_loss(loss, network, batch, key, backend):
    out = loss(network, batch, key=key, backend=backend)
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise ValueError(
                "a loss must return a scalar or a pair (scalar, dict of metrics); got a tuple "
                f"of length {len(out)}."
            )
        value, metrics = out
    else:
        value, metrics = out, {}
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(f"a loss must return a scalar; got shape {value.shape}.")
    return value, dict(metrics)


@eqx.filter_jit
def _train_step(loss, optimiser, trainable, constrain, network, opt_state, batch, key, backend):
    params, static = eqx.partition(network, _spec(network, trainable))

    def objective(p):
        return _call_loss(loss, eqx.combine(p, static), batch, key, backend)

    (value, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
    # optax promotes implicitly (adam's bias correction: `1 - decay**count`, a Python float
    # and an int32 count); like equinox's own layers, its update runs under standard
    # promotion, also when the caller (e.g. the tests) sets jax_numpy_dtype_promotion=strict.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimiser.update(grads, opt_state, params)
    network = eqx.combine(optax.apply_updates(params, updates), static)
    if constrain is not None:
        network = constrain(network)
    return network, opt_state, {"loss": value, **metrics}


@eqx.filter_jit
def _evaluate_batch(loss, network, batch, key, backend):
    value, metrics = _call_loss(loss, network, batch, key, backend)
    return {"loss": value, **metrics}


class TrainStep:
    """A pure, jitted training step built from a loss and an optax optimiser.

    Built by `make_train_step`. `init(network)` gives the optimiser state;
    `step(network, opt_state, batch, key=key, backend=backend)` returns
    `(network, opt_state, metrics)` with `metrics` a dict of scalars (`"loss"` and what the
    loss reports). Only the leaves selected by `trainable` change; the rest (bool masks,
    neuron parameters, chip-space values) pass through untouched (equinox's filtering).
    """

    def __init__(self, loss, optimiser, trainable=None, constrain=None, mesh=None):
        if not callable(loss):
            raise TypeError(f"`loss` must be callable; got {loss!r}.")
        if not isinstance(optimiser, optax.GradientTransformation):
            raise TypeError(
                f"`optimiser` must be an optax.GradientTransformation; got {optimiser!r}."
            )
        if constrain is not None and not callable(constrain):
            raise TypeError(f"`constrain` must be callable or None; got {constrain!r}.")
        self.loss = loss
        self.optimiser = optimiser
        self.trainable = trainable
        self.constrain = constrain
        self.mesh = check_mesh(mesh)

    def init(self, network):
        """The optimiser state for the trainable leaves of `network` (replicated over the
        mesh, if there is one)."""
        params, _ = eqx.partition(network, _spec(network, self.trainable))
        opt_state = self.optimiser.init(params)
        return opt_state if self.mesh is None else replicate(opt_state, self.mesh)

    @user_facing
    def __call__(self, network, opt_state, batch, *, key, backend: AbstractBackend = Numeric()):
        if not isinstance(backend, AbstractBackend):
            raise TypeError(f"`backend` must be a bss2jax backend; got {backend!r}.")
        if self.mesh is not None:
            batch = shard_batch(batch, self.mesh)
            network, opt_state, key, backend = replicate(
                (network, opt_state, key, backend), self.mesh
            )
        return _train_step(
            self.loss,
            self.optimiser,
            self.trainable,
            self.constrain,
            network,
            opt_state,
            batch,
            key,
            backend,
        )

    def flatten(self, network, *, backend: AbstractBackend = Numeric(), skip_nonfinite=False):
        """This step fixed to `network`'s structure and `backend`: a `FlatStep` that steps
        on the network's array leaves, without flattening and rebuilding the network on
        every call (what a training loop wants; `fit` uses it)."""
        from ._flat import FlatStep

        if not isinstance(backend, AbstractBackend):
            raise TypeError(f"`backend` must be a bss2jax backend; got {backend!r}.")
        return FlatStep(self, network, backend, skip_nonfinite)


@user_facing
def make_train_step(
    loss: Callable,
    optimiser: optax.GradientTransformation,
    *,
    trainable: Any = None,
    constrain: Callable | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TrainStep:
    """Build a pure, jitted train step: loss, gradient, optax update, optional constraint.

    **Arguments:**
    - `loss`: `loss(network, batch, *, key, backend) -> scalar | (scalar, dict)`; `batch`
      is any pytree of arrays, `key` a PRNG key, `backend` a bss2jax backend.
    - `optimiser`: an `optax.GradientTransformation` (e.g. `optax.adam(1e-3)`).
    - `trainable`: which leaves train: None (the synapse weights, `bj.trainable_filter`;
      every inexact array for a pytree that is not a network), a function
      `network -> bool pytree`, or a bool pytree shaped like the network.
    - `constrain`: optional `network -> network` applied after each update (e.g. clip the
      weights into the chip's range, as hxtorch's Yin-Yang example does).
    - `mesh`: a `jax.sharding.Mesh` (e.g. `bj.batch_mesh()`) for data parallelism: every
      array of the batch is split on its first (sample) axis over the mesh's devices, which
      must divide it; network, optimiser state, key and backend are replicated. XLA splits
      the computation and reduces the gradients; the result is the single-device one up to
      the order of float sums, whatever the number of devices (every random draw is made
      on the global batch). None: one device.

    **Returns:** a `TrainStep` with `init(network) -> opt_state` and
    `step(network, opt_state, batch, *, key, backend=Numeric()) -> (network, opt_state,
    metrics)`. The step is compiled once per shape and backend structure.

    ```python
    step = bj.make_train_step(loss, optax.adam(1e-3))
    opt_state = step.init(net)
    net, opt_state, metrics = step(net, opt_state, (x, y), key=jax.random.key(0))
    ```
    """
    return TrainStep(loss, optimiser, trainable, constrain, mesh)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

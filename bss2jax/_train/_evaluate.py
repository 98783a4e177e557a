"""Evaluation of a trained network on any backend, averaged over samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import AbstractBackend, Numeric
from .._misc import positive_int as _positive_int
from .._sharding import check_mesh, replicate, shard_batch
from ._step import _evaluate_batch


def _length(data) -> int:
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("`data` must hold at least one array (sample axis first); got none.")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "every array in `data` must have the same leading (sample) axis; got leading "
            f"sizes {sorted(sizes)}."
        )
    return sizes.pop()


def _take(data, index):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[index]), data)


def evaluate(
    network,
    loss: Callable,
    data,
    *,
    backend: AbstractBackend = Numeric(),
    key: jax.Array,
    batch_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
    """The loss's metrics on `data`, averaged over samples, with `network` run on `backend`.

    **Arguments:**
    - `network`, `loss`: as for `make_train_step`.
    - `data`: pytree of arrays with the sample axis first (e.g. a `bd.YinYang`).
    - `backend`: where to run it (another chip instance, hardware, ideal numerics).
    - `key`: PRNG key for the backend's noise; `batch_size`: samples per call (all if None).
    - `mesh`: a `jax.sharding.Mesh`: each call's samples are split over its devices (a
      call whose size they do not divide runs replicated); None: one device.

    **Returns:** dict metric name → Python float (`"loss"` and what the loss reports).

    ```python
    metrics = bj.evaluate(net, loss, test, backend=bj.Numeric(), key=jax.random.key(1))
    metrics["accuracy"]
    ```
    """
    size = _length(data)
    batch_size = size if batch_size is None else _positive_int(batch_size, "batch_size")
    mesh = check_mesh(mesh)
    if mesh is not None:
        network, backend = replicate((network, backend), mesh)
    totals: dict[str, float] = {}
    for number, start in enumerate(range(0, size, batch_size)):
        index = np.arange(start, min(start + batch_size, size))
        batch, batch_key = _take(data, index), jax.random.fold_in(key, number)
        if mesh is not None:
            split = len(index) % mesh.size == 0
            batch = shard_batch(batch, mesh) if split else replicate(batch, mesh)
            batch_key = replicate(batch_key, mesh)
        metrics = _evaluate_batch(loss, network, batch, batch_key, backend)
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(index)
    return {name: value / size for name, value in totals.items()}


def evaluate_backends(
    network,
    loss: Callable,
    data,
    backends: Sequence[AbstractBackend],
    *,
    key: jax.Array,
    batch_size: int | None = None,
) -> list[dict[str, float]]:
    """`evaluate` on each of several backends: transfer of a trained network between chips.

    Backends of the same type and shapes (e.g. `ChipModel`s of different chip instances)
    share one compiled function. Each gets the same `key`.

    ```python
    results = bj.evaluate_backends(net, loss, test, [chip_a, chip_b], key=key)
    [r["accuracy"] for r in results]
    ```
    """
    return [
        evaluate(network, loss, data, backend=backend, key=key, batch_size=batch_size)
        for backend in backends
    ]


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

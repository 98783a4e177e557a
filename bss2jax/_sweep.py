"""Sweeps: one function over a grid of parameters, keys and chip instances, with `vmap`.

The pure-pytree design makes a sweep one compiled call: the grid's points are gathered into
a batch, `vmap`-ed through the function and jitted once. A grid larger than memory runs in
chunks of a fixed size (the last chunk is padded, so there is still one compilation).
With a `Mesh`, the points are split over its devices (`jax.shard_map`), and the chunks are
per device.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from ._sharding import batch_sharding, check_mesh, replicate


class SweepResult(eqx.Module):
    """The values of a sweep, labelled by their grid coordinates.

    - `values`: the function's output pytree; each leaf has the grid shape in front
      (`(len(axis_0), len(axis_1), ...)` for a product grid, `(points,)` for a zipped one).
    - `names`: the axis names, in order. `coords`: name → the axis values (pytrees with a
      leading axis, e.g. a stacked `ChipInstance` or an array of keys).
    """

    values: Any
    names: tuple = eqx.field(static=True)
    coords: dict
    product: bool = eqx.field(static=True)

    def sel(self, **indices: int):
        """The values at integer positions along some axes (the others stay).

        ```python
        result.sel(tau_mem=0)          # all weight scales at the first tau_mem
        ```
        """
        unknown = set(indices) - set(self.names)
        if unknown:
            raise ValueError(f"`sel` takes axis names {self.names}; got {sorted(unknown)}.")
        if not self.product:
            if len(indices) != 1:
                raise ValueError("a zipped sweep has one axis of points: select one index.")
            (index,) = indices.values()
            return jax.tree.map(lambda x: x[index], self.values)
        where = tuple(indices.get(name, slice(None)) for name in self.names)
        return jax.tree.map(lambda x: x[where], self.values)


def _axis_length(name, values) -> int:
    leaves = jax.tree.leaves(values)
    if not leaves:
        raise ValueError(f"axis {name!r} has no array leaves.")
    shapes = [np.shape(leaf) for leaf in leaves]
    lengths = {shape[0] for shape in shapes if shape}
    if len(lengths) != 1 or not all(shapes):
        raise ValueError(
            f"axis {name!r}: every leaf must have the same leading length (the axis); got "
            f"shapes {shapes}."
        )
    (length,) = lengths
    if length == 0:
        raise ValueError(f"axis {name!r} is empty.")
    return length


@functools.lru_cache(maxsize=64)
def _evaluator(fn, names, mesh=None):
    """The jitted, vmapped evaluation of `fn`; cached, so a repeated sweep compiles once.
    With a mesh, each device vmaps over its own block of points (`jax.shard_map`)."""

    def evaluate(columns, axes):
        def one(row):
            point = {
                name: jax.tree.map(lambda a, i=row[k]: a[i], axes[name])
                for k, name in enumerate(names)
            }
            return fn(**point)

        return jax.vmap(one)(columns)

    if mesh is not None:
        blocks = P(mesh.axis_names)
        evaluate = jax.shard_map(
            evaluate, mesh=mesh, in_specs=(blocks, P()), out_specs=blocks, check_vma=False
        )
    return jax.jit(evaluate)


def _evaluate_chunks(evaluate, index, axes, per_call: int, mesh):
    """`evaluate` on the rows of `index`, `per_call` at a time (the last call padded with
    the last point: same shapes, no recompilation), joined along the points."""
    chunks = []
    for start in range(0, index.shape[0], per_call):
        rows = index[start : start + per_call]
        valid = rows.shape[0]
        if valid < per_call:
            rows = np.concatenate([rows, np.repeat(rows[-1:], per_call - valid, axis=0)])
        rows = jnp.asarray(rows) if mesh is None else jax.device_put(rows, batch_sharding(mesh))
        out = evaluate(rows, axes)
        chunks.append(jax.tree.map(lambda x, n=valid: x[:n], out))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *chunks)


def sweep(
    fn: Callable[..., Any],
    axes: Mapping[str, Any],
    *,
    product: bool = True,
    chunk_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> SweepResult:
    """Evaluate `fn(**point)` at every point of a grid, vmapped and jitted once.

    **Arguments:**
    - `fn`: a pure function of keyword arguments named like the axes; its output is any
      pytree of arrays.
    - `axes`: name → values along that axis: an array `(n, ...)`, or a pytree whose leaves
      share the leading length `n` (a stacked `ChipInstance`, `jax.random.split(key, n)`).
    - `product`: True for the outer product of the axes (a grid of shape `(n_0, n_1, ...)`),
      False to zip axes of equal length (`(n,)` points).
    - `chunk_size`: evaluate at most this many points per call and device (default: all
      at once). Bigger is not always faster: on a CPU a chunk whose state outgrows the
      core's cache is slower per point (README, "Scaling out": how to choose it).
    - `mesh`: a `jax.sharding.Mesh` (e.g. `bj.batch_mesh()`): the points are split over
      its devices, `chunk_size` per device and call; the values equal the unsharded ones.

    **Returns:** a `SweepResult`.

    ```python
    def spikes(tau_mem, scale):
        net = make_net(tau_mem, scale)
        return bj.run(net, x)[0].spikes.sum()

    result = bj.sweep(spikes, {"tau_mem": jnp.array([5e-6, 1e-5]), "scale": jnp.arange(3.0)})
    result.values.shape   # (2, 3)
    ```
    """
    if not axes:
        raise ValueError("`axes` must name at least one axis; got none.")
    names = tuple(axes)
    lengths = [_axis_length(name, axes[name]) for name in names]
    if product:
        shape = tuple(lengths)
        index = np.array(list(itertools.product(*(range(n) for n in lengths))), np.int32)
    else:
        if len(set(lengths)) != 1:
            raise ValueError(
                f"`product=False` zips the axes, so they need one length; got "
                f"{dict(zip(names, lengths, strict=True))}."
            )
        shape = (lengths[0],)
        index = np.repeat(np.arange(lengths[0], dtype=np.int32)[:, None], len(names), axis=1)
    mesh = check_mesh(mesh)
    devices = 1 if mesh is None else mesh.size
    per_device = -(-index.shape[0] // devices)
    if chunk_size is None:
        chunk_size = per_device
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int; got {chunk_size!r}.")

    try:
        evaluate = _evaluator(fn, names, mesh)
    except TypeError:  # an unhashable callable (e.g. a module with array fields): no cache
        evaluate = _evaluator.__wrapped__(fn, names, mesh)
    axes = {name: jax.tree.map(jnp.asarray, axes[name]) for name in names}
    if mesh is not None:
        axes = replicate(axes, mesh)
    per_call = devices * min(chunk_size, per_device)
    values = _evaluate_chunks(evaluate, index, axes, per_call, mesh)
    values = jax.tree.map(lambda x: x.reshape(shape + x.shape[1:]), values)
    return SweepResult(values=values, names=names, coords=dict(axes), product=product)

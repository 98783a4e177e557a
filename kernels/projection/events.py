"""Event kernels of the input projection: gather the weight rows of active inputs only.

Inputs to a spiking network are events: binary and mostly zero (5 % of 700 inputs active
per step in the benchmark workload). `Events` holds them as the indices of the active
inputs of every row (a row is one time step of one sample), padded to a fixed `capacity`
with the value `in_features`. The projection then costs `rows x capacity x out_features`
additions instead of the dense `rows x in_features x out_features` multiply-adds:

```python
current[n] = sum(weight.T[j] for j in indices[n] if j < in_features)   # forward
weight_grad.T[j] += cotangent[n]  for every active j of row n           # weight gradient
```

Both loop over the capacity slots (`lax.fori_loop`, up to the largest count of any row)
and touch one `(rows, out_features)` slab per slot, so nothing of size
`rows x capacity x out_features` is ever materialised (XLA's CPU gather of the whole slab
at once is 40x slower than the dense product). The weight gradient is a scatter-add of the
cotangent rows into the weight rows of the active inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import typing

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["indices", "by_input"],
    meta_fields=["in_features"],
)
@dataclasses.dataclass(frozen=True)
@typing.no_type_check  # a pytree: JAX rebuilds it with non-array leaves (avals, ArgInfo)
class Events:
    """Binary input spikes as the indices of the active inputs of every row.

    **Fields:**
    - `indices`: int32 array `(..., capacity)`, usually `(time, batch, capacity)`: the
      active inputs of each row in ascending order, then padding equal to `in_features`.
    - `by_input`: int32 array `(in_features, capacity_in)` or None: for each input, the
      flat numbers of the rows (row-major over the leading axes) where it is active,
      padded with the number of rows. With it the weight gradient is a gather as well;
      without, a scatter-add (slower on a CPU). `from_numpy` fills it.
    - `in_features`: the number of inputs (static).

    Build one with `from_dense` (inside or outside `jit`) or `from_numpy` (on the host,
    in a data pipeline: exact capacity, cheapest). `to_dense` gives the 0/1 spikes back.

    ```python
    events = from_numpy(np.array([[0, 1, 0, 1], [0, 0, 0, 0]], np.float32))
    assert events.indices[:, :2].tolist() == [[1, 3], [4, 4]]
    ```
    """

    indices: Int[Array, "*rows capacity"]
    by_input: Int[Array, "in_features capacity_in"] | None
    in_features: int

    @property
    def capacity(self) -> int:
        return self.indices.shape[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the dense spikes, `(..., in_features)`."""
        return (*self.indices.shape[:-1], self.in_features)

    def to_dense(self, dtype=jnp.float32) -> Float[Array, "*rows in_features"]:
        """The 0/1 spikes `(..., in_features)` of `dtype`."""
        rows = self.indices.reshape(-1, self.capacity)
        dense = jnp.zeros((rows.shape[0], self.in_features + 1), dtype)
        dense = dense.at[jnp.arange(rows.shape[0])[:, None], rows].set(1)
        return dense[:, : self.in_features].reshape(self.shape)


def round_capacity(count: int, multiple: int = 8) -> int:
    """`count` rounded up to a multiple of `multiple` (at least `multiple`): few shapes, few
    recompilations across batches."""
    return max(multiple, -(-int(count) // multiple) * multiple)


def from_numpy(inputs, capacity: int | None = None, *, by_input: bool = True) -> Events:
    """`Events` from 0/1 spikes `(..., in_features)` on the host (numpy, outside `jit`).

    **Arguments:**
    - `inputs`: array-like `(..., in_features)` of 0/1 values (any non-zero counts as a
      spike; values other than 0 and 1 raise `ValueError`).
    - `capacity`: slots per row; default the largest count of any row rounded up to a
      multiple of 8. A row with more active inputs raises `ValueError`.
    - `by_input`: also build `Events.by_input` (the transposed table, for the weight
      gradient), with capacity the largest count of any input rounded up to 8.
    """
    x = np.asarray(inputs)
    if x.ndim < 1:
        raise ValueError(f"`inputs` must have shape (..., in_features); got {x.shape}.")
    active = x != 0
    if not np.all(x[active] == 1):
        raise ValueError("`inputs` must be 0/1 spikes for an event projection.")
    in_features = x.shape[-1]
    flat = active.reshape(-1, in_features)
    counts = flat.sum(axis=-1)
    largest = int(counts.max()) if counts.size else 0
    if capacity is None:
        capacity = round_capacity(largest)
    if largest > capacity:
        raise ValueError(f"a row has {largest} active inputs, more than `capacity` = {capacity}.")
    rows, columns = np.nonzero(flat)
    start = np.cumsum(counts) - counts
    slots = np.arange(rows.size) - start[rows]
    indices = np.full((flat.shape[0], capacity), in_features, np.int32)
    indices[rows, slots] = columns
    table = None
    if by_input:
        per_input = np.bincount(columns, minlength=in_features)
        order = np.argsort(columns, kind="stable")  # rows ascending within each input
        start = np.cumsum(per_input) - per_input
        slots = np.arange(rows.size) - start[columns[order]]
        table = np.full((in_features, round_capacity(int(per_input.max(initial=0)))), flat.shape[0])
        table[columns[order], slots] = rows[order]
        table = jnp.asarray(table.astype(np.int32))
    indices = jnp.asarray(indices.reshape(*x.shape[:-1], capacity))
    return Events(indices, table, in_features)


def counts(inputs: Float[Array, "*rows in_features"]) -> Int[Array, "*rows"]:
    """The number of active (non-zero) inputs of every row."""
    return (inputs != 0).sum(axis=-1, dtype=jnp.int32)


def from_dense(inputs: Float[Array, "*rows in_features"], capacity: int) -> Events:
    """`Events` from 0/1 spikes inside `jit` (a `top_k` per row).

    Rows with more than `capacity` active inputs keep the first `capacity` of them: check
    `counts(inputs).max() <= capacity` (the wrapper falls back to the dense product then).
    On a CPU this compaction costs more than the dense product it replaces; build events on
    the host (`from_numpy`) where the inputs are data.
    """
    in_features = inputs.shape[-1]
    capacity = min(int(capacity), in_features)
    position = jnp.arange(in_features, dtype=jnp.int32)
    # Largest keys first: active inputs in ascending order, then the inactive ones.
    keys = jnp.where(inputs != 0, in_features - position, -1)
    top, _ = lax.top_k(keys, capacity)
    indices = jnp.where(top > 0, in_features - top, in_features).astype(jnp.int32)
    return Events(indices, None, in_features)


CHUNK = 16  # slots gathered per loop iteration, fused by XLA into one pass


def _used_chunks(indices: jax.Array, fill: int, chunk: int) -> jax.Array:
    """Chunks of `chunk` slots in use by any row: padding sits at the end of every row, so
    a chunk is in use when its first slot is (reads one slot in `chunk`)."""
    if indices.shape[0] == 0:
        return jnp.zeros((), jnp.int32)
    return (indices[:, ::chunk] < fill).sum(axis=-1, dtype=jnp.int32).max()


def gather_sum(
    indices: Int[Array, "rows capacity"],
    table: Float[Array, "entries features"],
    *,
    chunk: int = CHUNK,
    pad_table: bool = True,
) -> Float[Array, "rows features"]:
    """`out[n] = sum(table[j] for j in indices[n] if j < entries)`, summed in slot order.

    Loops over chunks of `chunk` slots, read in place; in a chunk the gathers and sums fuse
    into one pass over the output, which stays in cache (one gather of every slot at once,
    or one slot per iteration, is 3-10x slower on a CPU: benchmarks/README.md). The first
    chunk is the loop's start (no zero-filled buffer). Padding reads a zero row appended to
    `table` (`pad_table`, cheap for a small table such as the weight) or a zero filled in
    by the gather itself (no copy of a large table such as the cotangent).
    """
    rows, capacity = indices.shape
    entries, features = table.shape
    padded = -(-capacity // chunk) * chunk
    if padded != capacity:
        indices = jnp.pad(indices, ((0, 0), (0, padded - capacity)), constant_values=entries)
    if pad_table:
        table = jnp.concatenate([table, jnp.zeros((1, features), table.dtype)])

    def gather(columns):
        if pad_table:
            return table.at[columns].get(mode="promise_in_bounds")
        return table.at[columns].get(mode="fill", fill_value=0)

    def part(index, total):
        columns = lax.dynamic_slice_in_dim(indices, index * chunk, chunk, axis=1)
        for slot in range(chunk):
            row = gather(columns[:, slot])
            total = row if total is None else total + row
        return total

    if padded == 0:
        return jnp.zeros((rows, features), table.dtype)
    return lax.fori_loop(1, _used_chunks(indices, entries, chunk), part, part(0, None))


def project(
    indices: Int[Array, "rows capacity"], weight: Float[Array, "out_features in_features"]
) -> Float[Array, "rows out_features"]:
    """`dense(indices) @ weight.T` by gathering the weight rows of the active inputs.

    `indices` are flattened rows with padding `in_features`; the result has the dtype of
    `weight`. Not differentiable by itself (the wrapper owns the VJP).
    """
    return gather_sum(indices, weight.T)


def weight_gradient(
    indices: Int[Array, "rows capacity"],
    cotangent: Float[Array, "rows out_features"],
    in_features: int,
    by_input: Int[Array, "in_features capacity_in"] | None = None,
) -> Float[Array, "out_features in_features"]:
    """`cotangent.T @ dense(indices)`: a gather over `by_input` where given, else a
    scatter-add of the cotangent rows into the weight rows of the active inputs."""
    if by_input is not None:
        return gather_sum(by_input, cotangent, pad_table=False).T
    out_features = cotangent.shape[-1]
    slots = indices.T

    def body(slot, total):
        column = lax.dynamic_index_in_dim(slots, slot, keepdims=False)
        return total.at[column].add(cotangent, mode="promise_in_bounds")

    used = (indices < in_features).sum(axis=-1, dtype=jnp.int32).max(initial=0)
    start = jnp.zeros((in_features + 1, out_features), cotangent.dtype)
    total = lax.fori_loop(0, used, body, start)
    return total[:in_features].T

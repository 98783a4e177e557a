"""Scale-out on JAX's own machinery: a `Mesh` over the batch (or sweep) axis.

Data-parallel training is GSPMD: the batch goes onto the devices with a
`NamedSharding(mesh, P(axes))` on its sample axis, the network, optimiser state, key and
backend are replicated (`P()`), and the one jitted train step runs on the global arrays.
XLA partitions the computation and reduces the gradients across devices; the semantics
are those of the single-device program, so every random draw (the chip model's membrane
noise, CADC jitter, read noise, `RandomChips`' chips) is the same whatever the number of
devices: keys are split on the global batch, never per device. Results differ from one
device only by the order of floating-point sums (the gradient all-reduce).

Sweeps and `Hardware` with several clients use `jax.shard_map`: there each device runs
its own block (its sweep points; its slice of the batch on its own chip).

Several hosts: call `jax.distributed.initialize(...)` in every process before anything
else touches JAX, then build the mesh over `jax.devices()` (all processes' devices);
every process runs the same program on the same data and keys (see the README's
"Scaling out").
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._errors import BackendError


def batch_mesh(devices=None, *, axis: str = "batch") -> Mesh:
    """A one-dimensional `jax.sharding.Mesh` over `devices` for data parallelism.

    **Arguments:**
    - `devices`: a sequence of devices, or an int (the first that many of
      `jax.devices()`), or None for all devices of all processes.
    - `axis`: the mesh's axis name.

    **Returns:** `Mesh(devices, (axis,))`.

    ```python
    mesh = bj.batch_mesh()   # all devices (4 with --xla_force_host_platform_device_count=4)
    step = bj.make_train_step(loss, optax.adam(1e-3), mesh=mesh)
    ```
    """
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices` must be between 1 and the {len(available)} devices available; "
                f"got {devices}."
            )
        devices = available[:devices]
    devices = list(devices)
    if not devices:
        raise ValueError("`devices` must name at least one device; got none.")
    return Mesh(np.asarray(devices, dtype=object), (axis,))


def check_mesh(mesh) -> Mesh | None:
    """`mesh` itself when it is None or a `jax.sharding.Mesh`; else a named `TypeError`."""
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(
            f"`mesh` must be a jax.sharding.Mesh (e.g. bj.batch_mesh()) or None; got {mesh!r}."
        )
    return mesh


def _put(x, sharding):
    """`x` as a global array with `sharding`; from host data in every process when the
    sharding spans several processes (each process holds the same `x`)."""
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    if sharding.is_fully_addressable or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _put_leaf(x, sharding):
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return _put(x, sharding)
    return x


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array leaf of `tree` replicated over `mesh` (`NamedSharding(mesh, P())`);
    other leaves (Python numbers, functions, static fields) pass through. PRNG keys stay
    keys. With several processes, each must pass the same values.

    ```python
    network = bj.replicate(network, bj.batch_mesh())
    ```
    """
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: _put_leaf(x, sharding), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of an array whose first axis is the sample axis: split over every
    axis of `mesh` (`P(mesh.axis_names)`), the other axes whole."""
    return NamedSharding(mesh, P(mesh.axis_names))


def shard_batch(batch: Any, mesh: Mesh, *, what: str = "batch") -> Any:
    """Every array leaf of `batch` (sample axis first) split over the devices of `mesh`.

    **Arguments:**
    - `batch`: a pytree of arrays with the same leading (sample) length `n`.
    - `mesh`: a `jax.sharding.Mesh`; `n` must be a multiple of `mesh.size`.

    **Returns:** the same pytree, each leaf a global `jax.Array` sharded on its first axis.

    ```python
    x, y = bj.shard_batch((x, y), bj.batch_mesh())
    ```
    """
    sharding = batch_sharding(mesh)
    for leaf in jax.tree.leaves(batch):
        size = np.shape(leaf)[0] if np.ndim(leaf) else None
        if size is None or size % mesh.size:
            raise ValueError(
                f"the {what} is split over the {mesh.size} devices of the mesh, so its sample "
                f"axis (the first) must be a multiple of {mesh.size}; got an array of shape "
                f"{np.shape(leaf)}."
            )
    return jax.tree.map(lambda x: _put_leaf(x, sharding), batch)


def sharded_callback(host, links, spec, shapes, args, mesh: Mesh):
    """`Hardware` with several clients: each device's slice of the batch through its own
    client, all at once (one `pure_callback` per device inside `jax.shard_map`).

    Device `d` of the mesh calls `host(links[d % len(links)], local_spec, *local_args)`,
    where the inputs (`args[-2]`, `(time, batch, in)`) are split on the batch axis and the
    rest (neuron settings, weights, seed) are whole. The padded raw arrays (batch first)
    come back split the same way, so `_to_recording` sees the whole batch.
    """
    axes = mesh.axis_names
    if spec.batch % mesh.size:
        raise BackendError(
            f"Hardware with {len(links)} clients over a mesh of {mesh.size} devices splits "
            f"the batch over the devices, so the batch size must be a multiple of "
            f"{mesh.size}; got {spec.batch}."
        )
    local = spec._replace(batch=spec.batch // mesh.size)
    local_shapes = [
        jax.ShapeDtypeStruct((s.shape[0] // mesh.size, *s.shape[1:]), s.dtype) for s in shapes
    ]

    def on_host(index, *local_args):
        return host(links[int(index) % len(links)], local, *local_args)

    def body(*local_args):
        index = jax.lax.axis_index(axes)
        return jax.pure_callback(on_host, local_shapes, index, *local_args)

    in_specs = tuple(P(None, axes) if i == len(args) - 2 else P() for i in range(len(args)))
    out_specs = [P(axes)] * len(shapes)
    run = jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
    return run(*args)

"""Checkpoints: the array leaves of a pytree and JSON metadata in one `.npz` file.

Loading never unpickles anything (`allow_pickle=False`). Files are written to a temporary
file and moved into place with `os.replace`, so a run killed at any moment leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._misc import atomic_write

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = "bss2jax-checkpoint"
_VERSION = 1
_METADATA_KEY = "__metadata__"


def _describe(leaf) -> str:
    return f"{tuple(np.shape(leaf))} {np.asarray(leaf).dtype}"


def save_checkpoint(path, tree, metadata: Mapping | None = None) -> None:
    """Save the arrays of a pytree and JSON metadata to one `.npz` file, atomically.

    Only array leaves are stored (in flattening order); the structure and every other leaf
    come from a template at load time, so the file holds no code and loads without pickle.

    **Arguments:**
    - `path`: file to write (its folder is created).
    - `tree`: a pytree, e.g. `(network, opt_state)`.
    - `metadata`: JSON-serialisable dict stored alongside.

    ```python
    bj.save_checkpoint("out/checkpoint.npz", (net, opt_state), {"epoch": 3})
    ```
    """
    arrays, _ = eqx.partition(tree, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    for leaf in leaves:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise ValueError(
                "`tree` holds a typed PRNG key array; store `jax.random.key_data(key)` instead."
            )
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "structure": str(treedef),
        "leaves": [_describe(leaf) for leaf in leaves],
        "metadata": dict(metadata or {}),
    }
    payload = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    payload[_METADATA_KEY] = np.array(json.dumps(header))
    atomic_write(Path(path), lambda f: np.savez(f, **payload))


def load_checkpoint(path, like) -> tuple[Any, dict]:
    """Load a checkpoint written by `save_checkpoint` into the structure of `like`.

    **Arguments:**
    - `path`: the `.npz` file.
    - `like`: a pytree of the same structure, shapes and dtypes (e.g. a freshly built
      `(network, opt_state)`); its non-array leaves are kept.

    **Returns:** `(tree, metadata)`.

    Raises `ValueError` naming the first mismatch when the file does not fit `like` (a
    different network size, optimiser or configuration).

    ```python
    (net, opt_state), meta = bj.load_checkpoint("out/checkpoint.npz", (net, opt_state))
    ```
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as file:
        if _METADATA_KEY not in file.files:
            raise ValueError(f"{path} is not a bss2jax checkpoint (no {_METADATA_KEY!r} entry).")
        header = json.loads(str(file[_METADATA_KEY]))
        if header.get("format") != _FORMAT or header.get("version") != _VERSION:
            raise ValueError(
                f"{path} has format {header.get('format')!r} version {header.get('version')!r}; "
                f"expected {_FORMAT!r} version {_VERSION}."
            )
        stored = [file[f"leaf_{i:05d}"] for i in range(len(header["leaves"]))]
    arrays, static = eqx.partition(like, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    if len(leaves) != len(stored) or str(treedef) != header["structure"]:
        raise ValueError(
            f"checkpoint {path} does not fit the given structure: it holds {len(stored)} "
            f"arrays, the structure {len(leaves)}; build the network and optimiser with the "
            "settings of the run that wrote it, or use another output folder."
        )
    for i, (leaf, value) in enumerate(zip(leaves, stored, strict=True)):
        if np.shape(leaf) != value.shape or np.asarray(leaf).dtype != value.dtype:
            raise ValueError(
                f"checkpoint {path}: array {i} is {_describe(value)}; the structure expects "
                f"{_describe(leaf)}."
            )
    restored = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) for v in stored])
    return eqx.combine(restored, static), header["metadata"]


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------

"""Checkpoints: the array leaves of a pytree and JSON metadata in one `.npz` file.

Loading never unpickles anything (`allow_pickle=False`). Files are written to a temporary
file and moved into place with `os.replace`, so a run killed at any moment leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import CheckpointError
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
    payload: dict[str, Any] = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`metadata` must be JSON-serialisable; {error}.") from None
    payload[_METADATA_KEY] = np.array(text)
    atomic_write(Path(path), lambda f: np.savez(f, **payload))


def load_checkpoint(path, like) -> tuple[Any, dict]:
    """Load a checkpoint written by `save_checkpoint` into the structure of `like`.

    **Arguments:**
    - `path`: the `.npz` file.
    - `like`: a pytree of the same structure, shapes and dtypes (e.g. a freshly built
      `(network, opt_state)`); its non-array leaves are kept.

    **Returns:** `(tree, metadata)`.

    Raises `CheckpointError` (a `ValueError`) naming the file and the first problem when
    it cannot be read (corrupt, truncated, not a checkpoint), does not fit `like` (a
    different network size, optimiser or configuration) or holds NaN values.

    ```python
    (net, opt_state), meta = bj.load_checkpoint("out/checkpoint.npz", (net, opt_state))
    ```
    """
    path = Path(path)
    header, stored = _read(path)
    arrays, static = eqx.partition(like, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    if len(leaves) != len(stored) or str(treedef) != header["structure"]:
        raise CheckpointError(
            f"checkpoint {path} does not fit the given structure: it holds {len(stored)} "
            f"arrays, the structure {len(leaves)}; build the network and optimiser with the "
            "settings of the run that wrote it, or use another output folder."
        )
    for i, (leaf, value) in enumerate(zip(leaves, stored, strict=True)):
        if np.shape(leaf) != value.shape or np.asarray(leaf).dtype != value.dtype:
            raise CheckpointError(
                f"checkpoint {path}: array {i} is {_describe(value)}; the structure expects "
                f"{_describe(leaf)}."
            )
        if value.dtype.kind in "fc" and np.isnan(value).any():
            raise CheckpointError(
                f"checkpoint {path}: array {i} ({_describe(value)}) holds NaN values; the "
                "file is damaged or was written after training diverged."
            )
    restored = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) for v in stored])
    return eqx.combine(restored, static), header["metadata"]


def _read(path: Path) -> tuple[dict, list]:
    """The header and the stored arrays of checkpoint `path`; `CheckpointError` naming the
    file when it cannot be read as one."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as file:
            if _METADATA_KEY not in file.files:
                raise CheckpointError(
                    f"{path} is not a bss2jax checkpoint (no {_METADATA_KEY!r} entry)."
                )
            header = json.loads(str(file[_METADATA_KEY]))
            if not isinstance(header, dict) or not isinstance(header.get("metadata", {}), dict):
                raise CheckpointError(f"checkpoint {path}: its header is not a JSON object.")
            if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                raise CheckpointError(
                    f"{path} has format {header.get('format')!r} version "
                    f"{header.get('version')!r}; expected {_FORMAT!r} version {_VERSION}."
                )
            count = len(header["leaves"])
            stored = [file[f"leaf_{i:05d}"] for i in range(count)]
            _ = header["structure"], header["metadata"]
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(error).__name__}: {error}; the file is "
            "damaged or not a bss2jax checkpoint (delete it or use another output folder)."
        ) from None
    return header, stored


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------

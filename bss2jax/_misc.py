"""Small helpers shared across bss2jax: atomic file writes, argument checks."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a file through `write(file)` into a temporary file beside `path`, then
    `os.replace` it into place: a reader sees the old file or the new one, never half of one.
    The folder is created; the temporary file is removed when `write` raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_json(path, value: Any) -> None:
    """Write `value` as indented JSON to `path` atomically (temporary file + `os.replace`)."""
    text = json.dumps(value, indent=2, sort_keys=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text), mode="w")


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return int(value)


def check_dt(dt, name: str = "dt") -> float:
    """`dt` as a Python float: positive, finite, static (not traced); else a named error."""
    if isinstance(dt, jax.core.Tracer):
        raise TypeError(f"`{name}` must be a Python float (static), not a traced value.")
    if isinstance(dt, bool):
        raise TypeError(f"`{name}` must be a positive float in seconds; got {dt!r}.")
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a positive float in seconds; got {dt!r}.") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive finite float in seconds; got {dt!r}.")
    return value


def split_batch(trace: jax.Array, groups: int) -> jax.Array:
    """`(time, batch, ...)` → `(groups, time, batch / groups, ...)`, consecutive samples per
    group (for `jax.vmap` over the groups); `groups` must divide `batch`."""
    time, batch = trace.shape[:2]
    grouped = trace.reshape(time, groups, batch // groups, *trace.shape[2:])
    return jnp.moveaxis(grouped, 1, 0)


def join_batch(traces: jax.Array) -> jax.Array:
    """The inverse of `split_batch`: `(groups, time, b, ...)` → `(time, groups * b, ...)`."""
    traces = jnp.moveaxis(traces, 0, 1)
    return traces.reshape(traces.shape[0], -1, *traces.shape[3:])

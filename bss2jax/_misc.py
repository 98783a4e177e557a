"""Small helpers shared across bss2jax: atomic file writes, argument checks."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import OutputFolderError

_M = TypeVar("_M", bound=eqx.Module)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write a file through `write(file)` into a temporary file beside `path`, then
    `os.replace` it into place: a reader sees the old file or the new one, never half of one.
    The folder is created; the temporary file is removed when `write` raises."""
    path = Path(path)
    check_writable_folder(path.parent, f"the folder of {path.name!r}")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 → what `open` would give
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON's `null`), so that
    the JSON written is standard (no `NaN` or `Infinity` tokens)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_json(path, value: Any) -> None:
    """Write `value` as indented, standard JSON to `path` atomically (temporary file +
    `os.replace`); non-finite floats are written as `null`."""
    text = json.dumps(json_safe(value), indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text), mode="w")


def check_writable_folder(folder, name: str) -> Path:
    """Create `folder` (and its parents) if needed and check that a file can be written in
    it, by writing and removing one; else `OutputFolderError` naming `name` and the cause."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".bss2jax-write-check.", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputFolderError(
            f"`{name}` must be a folder that can be created and written; got {str(folder)!r} "
            f"({type(error).__name__}: {error.strerror or error})."
        ) from None
    return folder


def epoch_line(record: dict, label: str = "epoch", epochs: int | None = None) -> str:
    """One line of a `fit` history record for `--no-progress` output: `label epoch[/epochs],
    train loss L accuracy A %, test loss ..., S s` (a split's part where it has a loss)."""
    parts = [f"{label} {record['epoch']}" + ("" if epochs is None else f"/{epochs}")]
    for split in ("train", "test"):
        if f"{split}_loss" in record:
            accuracy = 100 * record.get(f"{split}_accuracy", float("nan"))
            parts.append(f"{split} loss {record[f'{split}_loss']:.4f} accuracy {accuracy:.2f} %")
    parts.append(f"{record['seconds']:.1f} s")
    return ", ".join(parts)


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return int(value)


def check_dt(dt, name: str = "dt") -> float:
    """`dt` as a Python float: positive, finite, static (not traced); else a named error."""
    if isinstance(dt, jax.core.Tracer):
        raise TypeError(f"`{name}` must be a Python float (static), not a traced value.")
    if isinstance(dt, (bool, str, bytes)):  # float("1e-6") would pass: not a number
        raise TypeError(f"`{name}` must be a positive float in seconds; got {dt!r}.")
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a positive float in seconds; got {dt!r}.") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive finite float in seconds; got {dt!r}.")
    return value


def replace_static(module: _M, **changes: Any) -> _M:
    """A shallow copy of the equinox `module` with the static fields in `changes` replaced
    (e.g. a neuron's `cadc_time_shift`). `eqx.tree_at` reaches pytree leaves only, and
    `dataclasses.replace` would call a constructor whose arguments are not its fields."""
    static = {f.name for f in dataclasses.fields(module) if f.metadata.get("static", False)}
    unknown = sorted(set(changes) - static)
    if unknown:
        raise ValueError(f"{unknown} are not static fields of {type(module).__name__}.")
    copied = copy.copy(module)
    for name, value in changes.items():
        object.__setattr__(copied, name, value)  # a frozen dataclass: its own setattr refuses
    return copied


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


def check_inputs(network: Any, inputs, float_dtype) -> tuple[Any, jax.Array]:
    """`(network, inputs)`: `inputs` as a float array of shape `(time, batch,
    network.input_size)` holding spikes as 0/1, else a named error; for traced inputs the
    check rides on `network`'s arrays (see `check_spikes`). Integer, bool and floats
    narrower than 32 bits are cast to `float_dtype`."""
    inputs = jnp.asarray(inputs)
    if jnp.iscomplexobj(inputs):
        raise TypeError(f"`inputs` must be real spikes as 0/1; got dtype {inputs.dtype}.")
    if inputs.ndim != 3 or inputs.shape[-1] != network.input_size:
        raise ValueError(
            "`inputs` must have shape (time, batch, in_features) with in_features = "
            f"{network.input_size}; got {inputs.shape}."
        )
    if inputs.shape[0] == 0 or inputs.shape[1] == 0:
        raise ValueError(
            f"`inputs` must hold at least one time step and one sample; got shape {inputs.shape}."
        )
    if not jnp.issubdtype(inputs.dtype, jnp.floating) or inputs.dtype.itemsize < 4:
        inputs = inputs.astype(float_dtype)
    return check_spikes(inputs, "inputs", carrier=network), inputs


_ON_ERROR = ["default"]  # how a run-time check under `jit` fails: see `traced_checks`


def traced_checks(mode: str) -> str:
    """Set how bss2jax's run-time checks of traced values fail; returns the previous mode.
    It applies to programs traced after the call (a traced program keeps its mode).

    - `"default"`: as equinox's `EQX_ON_ERROR` says (`"raise"` unless set): the check's
      named error. Such a check is a host callback, and JAX's persistent compilation cache
      does not store a program that holds one.
    - `"nan"`: the checked value becomes NaN, which `fit` stops on (`NonFiniteError`) and
      any loss shows; no host callback, so the program can be stored. The command line
      uses it when its compilation cache is on.
    """
    if mode not in ("default", "nan"):
        raise ValueError(f"`mode` must be 'default' or 'nan'; got {mode!r}.")
    previous, _ON_ERROR[0] = _ON_ERROR[0], mode
    return previous


def error_if(x, pred, message: str):
    """`eqx.error_if(x, pred, message)` under the mode set by `traced_checks`."""
    return eqx.error_if(x, pred, message, on_error=_ON_ERROR[0])


def warn_if(pred, message: Callable[..., str | None], *values) -> None:
    """The run-time counterpart of a warning about traced values (under `jit`, `vmap` or
    `grad`): where `pred` holds, `message(*values)` (on the host, as NumPy arrays, batched
    under `vmap`) gives the warning's text, or None for none. A warning needs a host
    callback, so in `traced_checks("nan")` mode (the CLI's compilation cache) this adds
    nothing and warns nothing: what it would report must also be reported in the results
    (e.g. `Recording.clipped_weights`)."""
    if _ON_ERROR[0] == "nan":
        return

    def host(*arrays):
        text = message(*(np.asarray(a) for a in arrays))
        if text:
            warnings.warn(text, UserWarning, stacklevel=2)

    # `unvmap_any`: one unbatched predicate, so that `cond` stays a branch under `vmap`
    # (a batched one turns it into a select that would call the host every time).
    jax.lax.cond(
        eqx.internal.unvmap_any(pred),
        lambda: jax.debug.callback(host, *values),
        lambda: None,
    )


def _not_bitwise_spikes(spikes: jax.Array) -> jax.Array:
    """Entries other than +-0 and 1, compared as integers (XLA's float compare treats a
    subnormal as 0 on CPU, and simplifies float-derived integer tests back into it)."""
    width = 8 * spikes.dtype.itemsize
    bits = jax.lax.bitcast_convert_type(spikes, f"uint{width}")
    one = jax.lax.bitcast_convert_type(jnp.ones((), spikes.dtype), f"uint{width}")
    magnitude = bits & jnp.asarray((1 << (width - 1)) - 1, bits.dtype)
    return (magnitude != 0) & (bits != one)


def check_spikes(spikes: jax.Array, name: str, carrier: Any = None) -> Any:
    """`carrier` (default `spikes`) unchanged when every entry of `spikes` is 0 or 1; else
    `ValueError` naming `name`, the count and an example (a concrete array), or, for a
    traced one, `carrier` carrying `eqx.error_if`.

    The carrier matters for speed: `error_if` returns its argument through a `lax.cond`,
    which copies it in every call, so `run` threads the check onto the network's
    parameters rather than onto the `(time, batch, inputs)` spikes (on workload A that
    copy made the train step 1.35x the hand-written scan; `benchmarks/train_step.py`)."""
    carrier = spikes if carrier is None else carrier
    if isinstance(spikes, jax.core.Tracer):
        bad = (spikes != 0) & (spikes != 1)
        if jnp.issubdtype(spikes.dtype, jnp.floating):  # XLA compares a subnormal as 0
            bad = _not_bitwise_spikes(spikes)
        return error_if(carrier, jnp.any(bad), f"`{name}` must hold spikes as 0/1.")
    values = np.asarray(spikes)  # on the host: no op staged into an enclosing trace
    bad = (values != 0) & (values != 1)
    count = int(bad.sum())
    if count:
        example = values[bad].flat[0]
        raise ValueError(
            f"`{name}` must hold spikes as 0/1; got {count} other entries (e.g. {example})."
        )
    return carrier


def _argument(convert, rule: str, accept) -> Callable[[str], Any]:
    """An argparse `type=`: `convert(text)` that passes `accept`, else `ArgumentTypeError`
    (argparse then prints `error: argument --flag: ...` and exits with status 2)."""
    import argparse

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}; got {text!r}")
        return value

    parse.__name__ = rule
    return parse


positive_int_argument = _argument(int, "a positive int", lambda v: v >= 1)
nonnegative_int_argument = _argument(int, "a non-negative int", lambda v: v >= 0)
positive_float_argument = _argument(
    float, "a positive finite number", lambda v: math.isfinite(v) and v > 0
)
nonnegative_float_argument = _argument(
    float, "a non-negative finite number", lambda v: math.isfinite(v) and v >= 0
)
probability_argument = _argument(float, "a probability in [0, 1]", lambda v: 0 <= v <= 1)

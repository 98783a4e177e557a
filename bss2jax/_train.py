"""Training: a pure jitted train step, a resumable `fit` loop, evaluation on any backend.

A *loss* is a function `loss(network, batch, *, key, backend)` that returns a scalar or a
pair `(scalar, metrics)` with `metrics` a dict of scalars (e.g. `{"accuracy": ...}`). The
backend is an argument, not a constant of the loss, so one compiled step serves every chip
instance of the same shape, and a trained network can be evaluated on another backend.

Checkpoints are one `.npz` file holding the array leaves of `(network, optimiser state)`
and a JSON string with the metadata (progress, history, configuration); loading never
unpickles anything (`allow_pickle=False`). They are written to a temporary file and moved
into place with `os.replace`, so a run killed at any moment leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._backend import AbstractBackend, Numeric
from ._network import AbstractNetwork, trainable_filter

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.json"
_FORMAT = "bss2jax-checkpoint"
_VERSION = 1
_METADATA_KEY = "__metadata__"


# --------------------------------------------------------------------------------------------
# The train step
# --------------------------------------------------------------------------------------------


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

    def __init__(self, loss, optimiser, trainable=None, constrain=None):
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

    def init(self, network):
        """The optimiser state for the trainable leaves of `network`."""
        params, _ = eqx.partition(network, _spec(network, self.trainable))
        return self.optimiser.init(params)

    def __call__(self, network, opt_state, batch, *, key, backend: AbstractBackend = Numeric()):
        if not isinstance(backend, AbstractBackend):
            raise TypeError(f"`backend` must be a bss2jax backend; got {backend!r}.")
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


def make_train_step(
    loss: Callable,
    optimiser: optax.GradientTransformation,
    *,
    trainable: Any = None,
    constrain: Callable | None = None,
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

    **Returns:** a `TrainStep` with `init(network) -> opt_state` and
    `step(network, opt_state, batch, *, key, backend=Numeric()) -> (network, opt_state,
    metrics)`. The step is compiled once per shape and backend structure.

    ```python
    step = bj.make_train_step(loss, optax.adam(1e-3))
    opt_state = step.init(net)
    net, opt_state, metrics = step(net, opt_state, (x, y), key=jax.random.key(0))
    ```
    """
    return TrainStep(loss, optimiser, trainable, constrain)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


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
) -> dict[str, float]:
    """The loss's metrics on `data`, averaged over samples, with `network` run on `backend`.

    **Arguments:**
    - `network`, `loss`: as for `make_train_step`.
    - `data`: pytree of arrays with the sample axis first (e.g. a `bd.YinYang`).
    - `backend`: where to run it (another chip instance, hardware, ideal numerics).
    - `key`: PRNG key for the backend's noise; `batch_size`: samples per call (all if None).

    **Returns:** dict metric name → Python float (`"loss"` and what the loss reports).

    ```python
    metrics = bj.evaluate(net, loss, test, backend=bj.Numeric(), key=jax.random.key(1))
    metrics["accuracy"]
    ```
    """
    size = _length(data)
    batch_size = size if batch_size is None else _positive_int(batch_size, "batch_size")
    totals: dict[str, float] = {}
    for number, start in enumerate(range(0, size, batch_size)):
        index = np.arange(start, min(start + batch_size, size))
        metrics = _evaluate_batch(
            loss, network, _take(data, index), jax.random.fold_in(key, number), backend
        )
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


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
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
    _atomic_write(Path(path), lambda f: f.write(text), mode="w")


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
    _atomic_write(Path(path), lambda f: np.savez(f, **payload))


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


class FitResult(NamedTuple):
    """What `fit` returns: the trained `network`, the `opt_state`, the per-epoch `history`
    (a list of dicts of floats) and `resumed_step` (the step a checkpoint resumed from, or
    None for a fresh start)."""

    network: Any
    opt_state: Any
    history: list
    resumed_step: int | None


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return int(value)


def _json_normalise(value):
    return json.loads(json.dumps(value))


def fit(
    network,
    loss: Callable,
    optimiser: optax.GradientTransformation,
    train,
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    test=None,
    backend: AbstractBackend = Numeric(),
    eval_backend: AbstractBackend | None = None,
    eval_loss: Callable | None = None,
    trainable: Any = None,
    constrain: Callable | None = None,
    output: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    config: Mapping | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    epoch_callback: Callable[[dict], None] | None = None,
    eval_batch_size: int | None = None,
) -> FitResult:
    """Train `network` for `epochs` passes over `train`; evaluate on `test`; checkpoint.

    Semantics, as a plain loop (`n = len(train) // batch_size`; the last partial batch of
    each shuffled epoch is dropped so that one compiled step serves all):
    ```python
    for epoch in range(epochs):
        order = permutation(fold_in(fold_in(key, epoch), 0), len(train))
        for b in range(n):
            batch = train[order[b * batch_size:(b + 1) * batch_size]]
            step_key = fold_in(fold_in(fold_in(key, epoch), 1), b)
            network, opt_state, metrics = step(network, opt_state, batch, step_key, backend)
        history.append(mean train metrics + evaluate(network, test, eval_backend))
    ```
    Every key derives from `key`, so a run resumed from a checkpoint continues exactly as
    the uninterrupted run would have.

    **Arguments:**
    - `network`, `loss`, `optimiser`, `trainable`, `constrain`: as for `make_train_step`.
    - `train`, `test`: pytrees of arrays with the sample axis first (e.g. `bd.YinYang`).
    - `epochs`, `batch_size`: ints. `key`: PRNG key (shuffling, backend noise).
    - `backend`: what runs the network in training; `eval_backend`: for the test split
      (default `backend`). `eval_loss`: the loss for the test split (default `loss`; e.g.
      the same loss without the training noise).
    - `output`: folder for `checkpoint.npz` and `metrics.json`; None keeps nothing on disk.
      If it holds a checkpoint of the same `config`, training resumes from it.
    - `checkpoint_every`: steps between checkpoints (default: once per epoch); a checkpoint
      is also written at the end of every epoch. A killed run loses at most this many steps.
    - `config`: JSON-serialisable dict that identifies the run; resuming from a checkpoint
      written with a different `config` raises `ValueError`.
    - `progress`: show a tqdm bar per epoch and a summary line after it.
    - `callback(info)`: called after each step with `{"epoch", "batch", "step", "metrics"}`;
      `epoch_callback(record)`: called with each epoch's history record (after it is saved).
    - `eval_batch_size`: samples per evaluation call (all of `test` if None).

    **Returns:** a `FitResult(network, opt_state, history, resumed_step)`.

    ```python
    result = bj.fit(net, loss, optax.adam(1e-3), train, test=test, epochs=5,
                    batch_size=50, key=jax.random.key(0), output="runs/yinyang")
    result.history[-1]["test_accuracy"]
    ```
    """
    from tqdm import tqdm

    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    size = _length(train)
    batches = size // batch_size
    if batches == 0:
        raise ValueError(
            f"`batch_size` must not exceed the number of training samples ({size}); "
            f"got {batch_size}."
        )
    every = (
        batches if checkpoint_every is None else _positive_int(checkpoint_every, "checkpoint_every")
    )
    if test is not None:
        _length(test)
    eval_backend = backend if eval_backend is None else eval_backend
    config = _json_normalise(dict(config or {}))
    step = make_train_step(loss, optimiser, trainable=trainable, constrain=constrain)
    opt_state = step.init(network)

    output = None if output is None else Path(output)
    checkpoint = None if output is None else output / CHECKPOINT_NAME
    history: list[dict] = []
    start_epoch, start_batch, sums, resumed = 0, 0, {}, None
    if output is not None and output.is_dir():
        for stale in output.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # left by a killed write
            stale.unlink()
    if checkpoint is not None and checkpoint.exists():
        (network, opt_state), meta = load_checkpoint(checkpoint, (network, opt_state))
        if meta.get("config") != config:
            changed = sorted(
                k
                for k in set(config) | set(meta.get("config", {}))
                if config.get(k) != meta.get("config", {}).get(k)
            )
            raise ValueError(
                f"the checkpoint in {output} was written with a different configuration "
                f"(differs in {changed}); use another output folder or delete it."
            )
        if meta["batch_size"] != batch_size:
            raise ValueError(
                f"the checkpoint in {output} used `batch_size` {meta['batch_size']}; got "
                f"{batch_size}."
            )
        start_epoch, start_batch = meta["epoch"], meta["batch"]
        sums, history = meta["sums"], meta["history"]
        resumed = start_epoch * batches + start_batch
        if progress:
            tqdm.write(
                f"resuming from {checkpoint}: epoch {start_epoch + 1}, batch {start_batch} "
                f"(step {resumed})"
            )

    def save(epoch, batch):
        if checkpoint is None:
            return
        meta = {
            "epoch": epoch,
            "batch": batch,
            "step": epoch * batches + batch,
            "batch_size": batch_size,
            "sums": sums,
            "history": history,
            "config": config,
        }
        save_checkpoint(checkpoint, (network, opt_state), meta)

    for epoch in range(start_epoch, epochs):
        epoch_key = jax.random.fold_in(key, epoch)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), size))
        step_keys = jax.random.fold_in(epoch_key, 1)
        first = start_batch if epoch == start_epoch else 0
        if first == 0:
            sums = {}
        started = time.perf_counter()
        bar = tqdm(
            total=batches,
            initial=first,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not progress,
            dynamic_ncols=True,
            leave=True,
        )
        with bar:
            for batch in range(first, batches):
                index = order[batch * batch_size : (batch + 1) * batch_size]
                network, opt_state, metrics = step(
                    network,
                    opt_state,
                    _take(train, index),
                    key=jax.random.fold_in(step_keys, batch),
                    backend=backend,
                )
                values = {name: float(value) for name, value in metrics.items()}
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + value
                bar.update(1)
                bar.set_postfix({n: f"{v:.3f}" for n, v in values.items()}, refresh=False)
                done = batch + 1
                if done < batches and (epoch * batches + done) % every == 0:
                    save(epoch, done)
                if callback is not None:
                    callback(
                        {
                            "epoch": epoch,
                            "batch": batch,
                            "step": epoch * batches + batch,
                            "metrics": values,
                        }
                    )
        record = {"epoch": epoch + 1, "step": (epoch + 1) * batches}
        record.update({f"train_{n}": v / batches for n, v in sums.items()})
        if test is not None:
            tested = evaluate(
                network,
                loss if eval_loss is None else eval_loss,
                test,
                backend=eval_backend,
                key=jax.random.fold_in(epoch_key, 2),
                batch_size=eval_batch_size,
            )
            record.update({f"test_{n}": v for n, v in tested.items()})
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        sums = {}
        save(epoch + 1, 0)
        if output is not None:
            write_json(output / METRICS_NAME, {"config": config, "history": history})
        if progress:
            summary = ", ".join(
                f"{n} {v:.4f}" for n, v in record.items() if n not in ("epoch", "step")
            )
            tqdm.write(f"epoch {epoch + 1}/{epochs}: {summary}")
        if epoch_callback is not None:
            epoch_callback(dict(record))
    return FitResult(network, opt_state, history, resumed)

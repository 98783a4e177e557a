"""`fit`: a resumable training loop with a progress bar, metrics and checkpoints."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._backend import AbstractBackend, Numeric
from .._errors import CheckpointError, NonFiniteError
from .._misc import check_writable_folder, positive_int as _positive_int, write_json
from .._typing import user_facing
from ._checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ._diagnostics import diagnose_first_epoch
from ._evaluate import _length, _take, evaluate
from ._step import make_train_step

METRICS_NAME = "metrics.json"


class FitResult(NamedTuple):
    """What `fit` returns: the trained `network`, the `opt_state`, the per-epoch `history`
    (a list of dicts of floats) and `resumed_step` (the step a checkpoint resumed from, or
    None for a fresh start)."""

    network: Any
    opt_state: Any
    history: list
    resumed_step: int | None


def _json_normalise(value):
    return json.loads(json.dumps(value))


@user_facing
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
    mesh: jax.sharding.Mesh | None = None,
    on_nonfinite: str = "raise",
    diagnose: bool = True,
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
    Every key derives from `key`: a resumed run continues exactly as the uninterrupted one.

    **Arguments:**
    - `network`, `loss`, `optimiser`, `trainable`, `constrain`: as for `make_train_step`.
    - `train`, `test`: pytrees of arrays with the sample axis first (e.g. `bd.YinYang`).
    - `epochs`, `batch_size`: ints. `key`: PRNG key (shuffling, backend noise).
    - `backend`: what runs the network in training (on the chip, inject mode learns worse from
      scratch than numerics then chip fine-tuning, or `gradient="through"`: `help(bj.ChipModel)`);
      `eval_backend`: for the test split (default `backend`); `eval_loss`: its loss (`loss`).
    - `output`: folder for `checkpoint.npz` and `metrics.json`; None keeps nothing on disk.
      If it holds a checkpoint of the same `config`, training resumes from it.
    - `checkpoint_every`: steps between checkpoints (default: once per epoch); a checkpoint
      is also written at the end of every epoch. A killed run loses at most this many steps.
    - `config`: JSON dict naming the run; a checkpoint of another `config` raises `ValueError`.
    - `progress`: a tqdm bar per epoch and a summary line. `callback(info)`: called after
      each step with `{"epoch", "batch", "step", "metrics"}`; `epoch_callback(record)`:
      with each epoch's history record (after it is saved).
    - `eval_batch_size`: samples per evaluation call (all of `test` if None). `mesh`: a
      `jax.sharding.Mesh`: data parallelism as for `make_train_step`. With several
      processes, each calls `fit` alike; only process 0 writes to `output`.
    - `on_nonfinite`: a step giving a NaN or inf (loss, metric, parameter, optimiser state):
      `"raise"` stops with `bj.NonFiniteError` before it reaches a checkpoint; `"skip"`
      drops the step (state kept, metrics left out, counted in the record's `skipped_steps`).
    - `diagnose`: after the first epoch, print the firing (`bj.firing_rates`); warn
      (`bj.TrainingWarning`) on a silent or saturated population or a loss that did not move.

    **Returns:** a `FitResult(network, opt_state, history, resumed_step)`.

    ```python
    result = bj.fit(net, loss, optax.adam(1e-3), train, test=test, epochs=5,
                    batch_size=50, key=jax.random.key(0), output="runs/yinyang")
    result.history[-1]["test_accuracy"]
    ```
    """
    sizes = _check_sizes(train, test, epochs, batch_size, checkpoint_every)
    settings, output = _json_normalise(dict(config or {})), _check_output(output, on_nonfinite)
    step = make_train_step(loss, optimiser, trainable=trainable, constrain=constrain, mesh=mesh)
    train = jax.tree_util.tree_map(np.asarray, train)  # on the host once: batches gather there
    loop = _Loop(step, train, *sizes, backend, output, settings, progress, on_nonfinite, diagnose)
    tested = _test_metrics(test, loss, eval_loss, backend, eval_backend, eval_batch_size, mesh)
    return _train(loop, network, key, tested, callback, epoch_callback)


def _test_metrics(test, loss, eval_loss, backend, eval_backend, batch_size, mesh):
    """`evaluate` on `test` as a function of `(network, key)`; None without a test split."""
    if test is None:
        return None
    return functools.partial(
        evaluate,
        loss=loss if eval_loss is None else eval_loss,
        data=test,
        backend=backend if eval_backend is None else eval_backend,
        batch_size=batch_size,
        mesh=mesh,
    )


def _check_output(output, on_nonfinite: str) -> Path | None:
    """Check `on_nonfinite`, and that `output` (if given) can be created and written, before
    any training is done; return `output` as a `Path`."""
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"`on_nonfinite` must be 'raise' or 'skip'; got {on_nonfinite!r}.")
    if output is None:
        return None
    if jax.process_index() == 0:
        check_writable_folder(output, "output")
    return Path(output)


def _check_sizes(train, test, epochs, batch_size, checkpoint_every) -> tuple[int, int, int, int]:
    """Check `fit`'s sizes: positive ints, at least one batch in `train`, a valid `test` (if
    given). Returns `(epochs, batch_size, size, every)` with `size` the number of training
    samples and `every` the steps between checkpoints."""
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
    return epochs, batch_size, size, every


def _train(loop, network, key, test_metrics, callback, epoch_callback) -> FitResult:
    """`fit`'s loop over epochs, from a fresh start or a checkpoint in `loop.output`;
    `test_metrics(network, key=...)` evaluates on the test split (None: no test split)."""
    state = _resume(loop, network, loop.step.init(network))
    network, opt_state, history = state.network, state.opt_state, state.history
    sums, batches = state.sums, loop.batches
    fresh = loop.diagnose and state.epoch == 0 and state.batch == 0
    initial = network if fresh else None  # kept for the diagnosis after the first epoch
    for epoch in range(state.epoch, loop.epochs):
        epoch_key = jax.random.fold_in(key, epoch)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), loop.size))
        first = state.batch if epoch == state.epoch else 0
        if first == 0:
            sums = {}
        started = time.perf_counter()
        network, opt_state = _train_epoch(
            loop, network, opt_state, epoch, epoch_key, order, first, sums, history, callback
        )
        record = {"epoch": epoch + 1, "step": (epoch + 1) * batches}
        skipped = int(sums.pop(_SKIPPED, 0))
        record.update({f"train_{n}": v / max(batches - skipped, 1) for n, v in sums.items()})
        if loop.on_nonfinite == "skip":
            record["skipped_steps"] = skipped
        if test_metrics is not None:
            tested = test_metrics(network, key=jax.random.fold_in(epoch_key, 2))
            record.update({f"test_{n}": v for n, v in tested.items()})
        record["seconds"] = time.perf_counter() - started
        sums = {}
        _end_epoch(loop, network, opt_state, history, record)
        if initial is not None and epoch == 0:
            batch = _take(loop.train, order[: loop.batch_size])
            diagnosis_key = jax.random.fold_in(epoch_key, 3)
            diagnose_first_epoch(
                loop.step.loss, initial, network, batch, diagnosis_key, loop.backend, loop.progress
            )
        if epoch_callback is not None:
            epoch_callback(dict(record))
    return FitResult(network, opt_state, history, state.resumed)


class _Loop(NamedTuple):
    """The settings of one `fit` call that stay fixed while it trains."""

    step: Any  # `make_train_step(...)`: `step(network, opt_state, batch, *, key, backend)`
    train: Any
    epochs: int
    batch_size: int
    size: int  # training samples
    every: int  # steps between checkpoints
    backend: AbstractBackend
    output: Path | None
    config: dict
    progress: bool
    on_nonfinite: str  # "raise" or "skip"
    diagnose: bool  # firing rates and a still-loss check after the first epoch

    @property
    def batches(self) -> int:
        """Steps per epoch: the last partial batch is dropped."""
        return self.size // self.batch_size

    @property
    def checkpoint(self) -> Path | None:
        return None if self.output is None else self.output / CHECKPOINT_NAME

    def save(self, network, opt_state, epoch: int, batch: int, sums: dict, history: list):
        """Write the checkpoint of the state before `batch` of (0-based) `epoch`, if any
        (from process 0 only, when several processes train together)."""
        if self.checkpoint is None or jax.process_index() != 0:
            return
        meta = {
            "epoch": epoch,
            "batch": batch,
            "step": epoch * self.batches + batch,
            "batch_size": self.batch_size,
            "sums": sums,
            "history": history,
            "config": self.config,
        }
        save_checkpoint(self.checkpoint, (network, opt_state), meta)


class _Start(NamedTuple):
    """Where `fit` starts: a fresh state or the one a checkpoint holds."""

    network: Any
    opt_state: Any
    epoch: int  # 0-based
    batch: int  # the first batch of `epoch` still to train
    sums: dict  # the train metrics summed over `epoch`'s batches before `batch`
    history: list
    resumed: int | None  # the step resumed from, or None for a fresh start


def _resume(loop: _Loop, network, opt_state) -> _Start:
    """Remove temporary files a killed write left in `loop.output`; resume from its
    checkpoint if there is one (after checking that it belongs to the same run)."""
    from tqdm import tqdm

    output, checkpoint = loop.output, loop.checkpoint
    if output is not None and output.is_dir():
        for stale in output.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # left by a killed write
            stale.unlink()
    if checkpoint is None or not checkpoint.exists():
        return _Start(network, opt_state, 0, 0, {}, [], None)
    (network, opt_state), meta = load_checkpoint(checkpoint, (network, opt_state))
    _check_counters(checkpoint, meta, loop)
    config = loop.config
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
    if meta["batch_size"] != loop.batch_size:
        raise ValueError(
            f"the checkpoint in {output} used `batch_size` {meta['batch_size']}; got "
            f"{loop.batch_size}."
        )
    epoch, batch = meta["epoch"], meta["batch"]
    resumed = epoch * loop.batches + batch
    if meta["history"] and jax.process_index() == 0:  # a kill may have come before it
        write_json(checkpoint.parent / METRICS_NAME, {"config": config, "history": meta["history"]})
    if loop.progress:
        tqdm.write(f"resuming from {checkpoint}: epoch {epoch + 1}, batch {batch} (step {resumed})")
    return _Start(network, opt_state, epoch, batch, meta["sums"], meta["history"], resumed)


def _train_epoch(
    loop: _Loop, network, opt_state, epoch, epoch_key, order, first, sums, history, callback
):
    """Train batches `first, ..., loop.batches - 1` of `epoch` in the shuffled `order`,
    adding each step's metrics to `sums` (in place), with a progress bar, the checkpoints
    due within the epoch and `callback` after each step; return `(network, opt_state)`.

    The steps run on the network's array leaves (`TrainStep.flatten`) and are
    dispatched ahead: the host reads their metrics (and the non-finite flags) only where it
    needs them (a checkpoint, a callback, the bar's figures once a second, the epoch's end),
    always before anything is written."""
    from tqdm import tqdm

    batches, batch_size = loop.batches, loop.batch_size
    keys = list(_fold_in_range(jax.random.fold_in(epoch_key, 1), batches))
    steps = _Steps(loop, network, epoch, sums)
    bar = tqdm(
        total=batches,
        initial=first,
        desc=f"epoch {epoch + 1}/{loop.epochs}",
        disable=not loop.progress,
        dynamic_ncols=True,
        leave=True,
    )
    shown = time.perf_counter()
    with bar:
        for batch in range(first, batches):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            opt_state = steps.step(opt_state, _take(loop.train, index), keys[batch], batch)
            bar.update(1)
            done = batch + 1
            due = done < batches and (epoch * batches + done) % loop.every == 0
            show = loop.progress and time.perf_counter() - shown >= 1.0
            if due or show or callback is not None or done == batches:
                values = steps.settle()
                bar.set_postfix({n: f"{v:.3f}" for n, v in values.items()}, refresh=False)
                shown = time.perf_counter()
            if due:
                loop.save(steps.network(), opt_state, epoch, done, sums, history)
            if callback is not None:
                step = epoch * batches + batch
                callback({"epoch": epoch, "batch": batch, "step": step, "metrics": values})
    return steps.network(), opt_state


@functools.partial(jax.jit, static_argnums=1)
def _fold_in_range(key, n: int):
    """`[fold_in(key, 0), ..., fold_in(key, n - 1)]` as one array, in one call: the same
    keys as one `fold_in` per step (about 0.2 ms each on CPU, 9 % of a Yin-Yang step)."""
    return jax.vmap(functools.partial(jax.random.fold_in, key))(jnp.arange(n))


_SKIPPED = "__skipped_steps__"  # key in an epoch's `sums`: steps skipped as non-finite


class _Steps:
    """The train steps of one epoch on the network's leaves, and the steps whose metrics
    the host has not read yet (`pending`)."""

    def __init__(self, loop: _Loop, network, epoch: int, sums: dict):
        skip = loop.on_nonfinite == "skip"
        self.flat = loop.step.flatten(network, backend=loop.backend, skip_nonfinite=skip)
        self.leaves, self.loop, self.epoch, self.sums = self.flat.leaves, loop, epoch, sums
        self.pending: list = []

    def step(self, opt_state, batch, key, index: int):
        out = self.flat.step(self.leaves, opt_state, batch, key=key)
        self.leaves = out.leaves
        self.pending.append((index, out.metrics, out.finite))
        return out.opt_state

    def network(self):
        return self.flat.network(self.leaves)

    def settle(self) -> dict:
        """Read the pending steps' metrics, in order, into the epoch's sums; a non-finite
        step raises `NonFiniteError` (or is counted as skipped, with `on_nonfinite="skip"`).
        Returns the last step's metrics as floats ({} if it was skipped)."""
        pending, self.pending = jax.device_get(self.pending), []
        values: dict = {}
        for index, metrics, finite in pending:
            values = {name: float(value) for name, value in metrics.items()}
            if not finite:
                self._nonfinite(index, values)
                values = {}
            for name, value in values.items():
                self.sums[name] = self.sums.get(name, 0.0) + value
        return values

    def _nonfinite(self, index: int, values: dict) -> None:
        if self.loop.on_nonfinite == "skip":
            self.sums[_SKIPPED] = self.sums.get(_SKIPPED, 0) + 1
            return
        raise NonFiniteError(
            f"training step {self.epoch * self.loop.batches + index} (epoch {self.epoch + 1}, "
            f"batch {index}) gave a non-finite value (metrics {values}, or a NaN/inf in the "
            "updated network or optimiser state); the last checkpoint is kept. Lower the "
            "learning rate, check the data, or pass `on_nonfinite='skip'`."
        )


def _check_counters(checkpoint: Path, meta: dict, loop: _Loop) -> None:
    """Refuse a checkpoint whose counters cannot belong to this run."""
    epoch, batch, history = meta.get("epoch"), meta.get("batch"), meta.get("history")
    valid = (
        type(epoch) is int
        and type(batch) is int
        and 0 <= epoch
        and 0 <= batch < loop.batches
        and isinstance(history, list)
        and len(history) == epoch
        and isinstance(meta.get("sums"), dict)
        and type(meta.get("batch_size")) is int
        and meta.get("step") == epoch * loop.batches + batch
    )
    if not valid:
        raise CheckpointError(
            f"checkpoint {checkpoint}: its counters do not fit this run (epoch {epoch!r}, "
            f"batch {batch!r} of {loop.batches} per epoch, step {meta.get('step')!r}, "
            f"{len(history) if isinstance(history, list) else history!r} history records); "
            "the file is damaged or from another run: delete it or use another output folder."
        )


def _end_epoch(loop: _Loop, network, opt_state, history: list, record: dict) -> None:
    """Append the epoch's `record` to `history` (in place), write the checkpoint and
    `metrics.json`, and print the summary line."""
    from tqdm import tqdm

    history.append(record)
    epoch = record["epoch"]  # 1-based
    loop.save(network, opt_state, epoch, 0, {}, history)
    if loop.output is not None and jax.process_index() == 0:
        write_json(loop.output / METRICS_NAME, {"config": loop.config, "history": history})
    if loop.progress:
        summary = ", ".join(f"{n} {v:.4f}" for n, v in record.items() if n not in ("epoch", "step"))
        tqdm.write(f"epoch {epoch}/{loop.epochs}: {summary}")

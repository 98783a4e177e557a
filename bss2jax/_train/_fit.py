"""`fit`: a resumable training loop with a progress bar, metrics and checkpoints."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from .._backend import AbstractBackend, Numeric
from .._misc import positive_int as _positive_int, write_json
from ._checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
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

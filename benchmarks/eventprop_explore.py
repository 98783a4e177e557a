"""EventProp Yin-Yang variants (the exploration behind the `--gradient eventprop` recipe).

A plain training loop on `bss2jax train`'s network and data (the same `YinYangConfig`
otherwise, Adam with an exponential decay per epoch, `clip_weights` after every step, the
synapse weights trained), with the knobs the recipe was chosen from:

- `--decoder max|mean` (scale `--scale`, default 10 for max, 20 for mean);
- `--dt`: the grid step (the steps scaled to keep 38 us);
- `--clip`: clip the gradient's global norm (0: off);
- `--revive W`: add `W * mean_n[silent_n * relu(1 - max_{t,b} V_n)^2]`, for every hidden
  neuron silent over the batch, on its membrane (model units, threshold 1): EventProp's
  gradient of it is the exact adjoint below threshold;
- `--gradient eventprop|inject` (inject: the surrogate);
- `--save PATH`: write the trained network (`eqx.tree_serialise_leaves`), e.g. for
  `eventprop_alignment.py --network PATH`.

Every epoch prints the test accuracy and loss, the median and largest gradient norm, and
the fraction of hidden neurons silent on the whole test set. Its seeds are its own (the
network from `fold_in(key(seed), 0)` as in `bss2jax train`, the shuffling not).

    python benchmarks/eventprop_explore.py --decoder max --epochs 20
    python benchmarks/eventprop_explore.py --decoder mean --epochs 20
    python benchmarks/eventprop_explore.py --decoder max --dt 2.5e-7 --epochs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import machine  # noqa: E402

import bss2jax as bj  # noqa: E402
from bss2jax import data as bd  # noqa: E402
from bss2jax._run import run  # noqa: E402
from bss2jax._train._losses import accuracy, cross_entropy  # noqa: E402
from bss2jax.yinyang import YinYangConfig, YinYangLoss, clip_weights, yin_yang_network  # noqa: E402
from bss2jax.yinyang._command import make_backend  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gradient", choices=("eventprop", "inject"), default="eventprop")
    p.add_argument("--decoder", choices=("max", "mean"), default="max")
    p.add_argument("--scale", type=float, default=None)
    p.add_argument("--dt", type=float, default=1e-6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--decay", type=float, default=0.95)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--revive", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the trained network (equinox leaves)")
    return p


def make_loss(config: YinYangConfig, revive: float):
    recipe = YinYangLoss.from_config(config, training=False)  # its encoding and decoding

    def loss(network, batch, key, backend):
        coordinates, labels = batch
        x = recipe.inputs(coordinates)
        hidden, readout = run(network, x, backend=backend, dt=config.dt, key=key)
        scores = recipe.decode(readout.membrane_cadc)
        value = cross_entropy(scores, labels)
        silent = jax.lax.stop_gradient(hidden.spikes.sum(axis=(0, 1)) == 0)
        if revive:
            gap = jax.nn.relu(1.0 - hidden.membrane_cadc.max(axis=(0, 1)))
            value = value + revive * jnp.mean(jnp.where(silent, gap**2, 0.0))
        return value, {"accuracy": accuracy(scores, labels), "silent": jnp.mean(silent)}

    return loss


def main(argv=None) -> list[dict]:
    a = parser().parse_args(argv)
    for name in ("dt", "lr", "decay", "epochs", "batch"):
        if not getattr(a, name) > 0:
            raise ValueError(f"`--{name}` must be positive; got {getattr(a, name)}.")
    base = YinYangConfig()
    scale = a.scale if a.scale is not None else {"max": 10.0, "mean": 20.0}[a.decoder]
    steps = int(round(base.steps * base.dt / a.dt))
    config = dataclasses.replace(base, dt=a.dt, steps=steps, decoder=a.decoder)
    config = dataclasses.replace(config, readout_scale=scale, batch_size=a.batch)
    train, test = bd.yin_yang_splits(config.train_size, config.test_size)
    key = jax.random.key(a.seed)
    network = yin_yang_network(config, key=jax.random.fold_in(key, 0))
    loss = make_loss(config, a.revive)
    train_backend = make_backend("numeric", gradient=a.gradient)
    batches = config.train_size // a.batch
    adam = optax.adam(optax.exponential_decay(a.lr, batches, a.decay))
    optimiser = optax.chain(optax.clip_by_global_norm(a.clip), adam) if a.clip else adam
    spec = bj.trainable_filter(network)
    params, static = eqx.partition(network, spec)
    state = optimiser.init(params)

    @jax.jit
    def step(params, state, x, y, k):
        def value(p):
            return loss(eqx.combine(p, static), (x, y), k, train_backend)

        (v, _), g = jax.value_and_grad(value, has_aux=True)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax promotes (as `bj.fit` does)
            updates, state = optimiser.update(g, state, params)
            new = clip_weights(eqx.combine(optax.apply_updates(params, updates), static))
            norm = optax.tree.norm(g)
        return eqx.partition(new, spec)[0], state, v, norm

    @jax.jit
    def evaluate(params):
        batch = (jnp.asarray(test[0]), jnp.asarray(test[1]))
        plain = make_loss(config, 0.0)  # the cross-entropy alone
        return plain(eqx.combine(params, static), batch, jax.random.key(0), make_backend("numeric"))

    x_all, y_all = jnp.asarray(train[0]), jnp.asarray(train[1])
    print(machine(), vars(a), flush=True)
    history, started = [], time.perf_counter()
    for epoch in range(a.epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 100 + epoch), 5000))
        norms = []
        for b in range(batches):
            idx = order[b * a.batch : (b + 1) * a.batch]
            k = jax.random.fold_in(key, epoch * batches + b)
            params, state, _, norm = step(params, state, x_all[idx], y_all[idx], k)
            norms.append(float(norm))
        value, aux = evaluate(params)
        row = {
            "epoch": epoch + 1,
            "test_loss": float(value),
            "test_accuracy": float(aux["accuracy"]),
            "silent_hidden": float(aux["silent"]),
            "grad_norm_median": float(np.median(norms)),
            "grad_norm_max": float(np.max(norms)),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        print(row, flush=True)
    if a.save:
        eqx.tree_serialise_leaves(a.save, eqx.combine(params, static))
    return history


if __name__ == "__main__":
    main()

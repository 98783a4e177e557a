"""The cost of `bj.make_train_step` and `bj.fit` over a plain `jax.jit` of the same step.

Workload: the Yin-Yang recipe's numerics phase (`bss2jax.yinyang`: 5 -> 120 LIF -> 3 LI, 38
steps, batch 50, Adam), one train step per call. Three ways, interleaved round by round
(this box is shared; absolute times drift, ratios hold):

- `plain`: the network partitioned once by hand into trainable arrays and the rest, and
  `jax.jit` of `(params, opt_state, batch, key) -> (params, opt_state, loss)`: the
  yardstick, as a JAX user would write it (no checks, no metrics on the host);
- `step`: `bj.make_train_step(loss, adam)(network, opt_state, batch, key=key)`;
- `flat`: `step.flatten(network)` once, then `flat.step(leaves, opt_state, batch, key=key)`
  (what `fit` runs inside);
- `scan`: `flat.scan` over all the round's batches stacked, in one call;
- `fit`: one epoch of `bj.fit` (no output, no progress bar, no first-epoch diagnosis), its
  wall time per step (shuffling, batch gathering, the non-finite check, the metrics on
  the host included).

Compile time is measured apart (the first call of each); steady state is the median over
rounds of the mean per step, after `block_until_ready`.

    python benchmarks/fit_overhead.py --rounds 7 --batches 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).parent))
from _report import cpu_model, emit  # noqa: E402

import bss2jax as bj  # noqa: E402
from bss2jax import data as bd, yinyang  # noqa: E402


def setup(batches: int):
    config = yinyang.YinYangConfig()
    network = yinyang.yin_yang_network(config, key=jax.random.key(0))
    loss = yinyang.YinYangLoss.from_config(config)
    samples = bd.yin_yang(batches * config.batch_size, seed=1)
    train = bd.YinYang(jnp.asarray(samples.coordinates, jnp.float32), jnp.asarray(samples.labels))
    return config, network, loss, train


def plain_step(network, loss, optimiser):
    """The yardstick: partitioned once, `jax.jit` over the arrays."""
    params, static = eqx.partition(network, bj.trainable_filter(network))

    @jax.jit
    def step(params, opt_state, batch, key):
        def objective(p):
            value, _ = loss(eqx.combine(p, static), batch, key=key, backend=bj.Numeric())
            return value

        value, grads = jax.value_and_grad(objective)(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimiser.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step, params, optimiser.init(params)


def batch_of(train, index, size):
    return jax.tree_util.tree_map(lambda a: a[index * size : (index + 1) * size], train)


def time_plain(step, params, opt_state, train, batches, size):
    start = time.perf_counter()
    for b in range(batches):
        params, opt_state, value = step(
            params, opt_state, batch_of(train, b, size), jax.random.key(b)
        )
    jax.block_until_ready((params, opt_state, value))
    return (time.perf_counter() - start) / batches


def time_step(step, network, opt_state, train, batches, size):
    start = time.perf_counter()
    for b in range(batches):
        network, opt_state, metrics = step(
            network, opt_state, batch_of(train, b, size), key=jax.random.key(b)
        )
    jax.block_until_ready((network, opt_state, metrics))
    return (time.perf_counter() - start) / batches


def time_flat(flat, opt_state, train, batches, size):
    leaves = flat.leaves
    start = time.perf_counter()
    for b in range(batches):
        out = flat.step(leaves, opt_state, batch_of(train, b, size), key=jax.random.key(b))
        leaves, opt_state = out.leaves, out.opt_state
    jax.block_until_ready((leaves, opt_state, out.metrics))
    return (time.perf_counter() - start) / batches


def time_scan(flat, opt_state, train, batches, size):
    stacked = jax.tree_util.tree_map(lambda a: a.reshape(batches, size, *a.shape[1:]), train)
    keys = jax.vmap(jax.random.key)(jnp.arange(batches))
    start = time.perf_counter()
    out = flat.scan(flat.leaves, opt_state, stacked, keys=keys)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / batches


def time_fit(network, loss, optimiser, train, batches, size):
    start = time.perf_counter()
    result = bj.fit(
        network,
        loss,
        optimiser,
        train,
        epochs=1,
        batch_size=size,
        key=jax.random.key(0),
        progress=False,
        diagnose=False,  # a one-off per call (one batch's firing rates), not per step
    )
    jax.block_until_ready(result.network)
    return (time.perf_counter() - start) / batches


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=40, help="steps per round")
    parser.add_argument("--output", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    config, network, loss, train = setup(args.batches)
    size = config.batch_size
    optimiser = optax.adam(config.lr)
    plain, params, plain_state = plain_step(network, loss, optimiser)
    step = bj.make_train_step(loss, optimiser)
    state = step.init(network)
    flat = step.flatten(network)
    runners = {
        "plain": lambda: time_plain(plain, params, plain_state, train, args.batches, size),
        "step": lambda: time_step(step, network, state, train, args.batches, size),
        "flat": lambda: time_flat(flat, state, train, args.batches, size),
        "scan": lambda: time_scan(flat, state, train, args.batches, size),
        "fit": lambda: time_fit(network, loss, optimiser, train, args.batches, size),
    }
    compile_s = {}
    for name, runner in runners.items():  # first call: compile (and one round)
        start = time.perf_counter()
        runner()
        compile_s[name] = time.perf_counter() - start
    per_step: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, runner in runners.items():
            per_step[name].append(runner())
    medians = {name: statistics.median(values) for name, values in per_step.items()}
    report = {
        "benchmark": "fit_overhead",
        "jax": jax.__version__,
        "cpu": cpu_model(),
        "device": str(jax.devices()[0]),
        "rounds": args.rounds,
        "batches_per_round": args.batches,
        "batch_size": size,
        "first_round_s": compile_s,
        "median_ms_per_step": {k: 1e3 * v for k, v in medians.items()},
        "ratio_to_plain": {k: v / medians["plain"] for k, v in medians.items()},
    }
    return emit(report, args.output)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()

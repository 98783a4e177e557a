"""A trained Yin-Yang network on many chip instances: one vmap call against a Python loop.

Workload (issue 6): hxtorch's Yin-Yang network (25 inputs -> 120 LIF -> 3 LI, 38 steps of
1 us, tau = 6 us), built by `bss2jax.yinyang` at the recipe's calibration (capacitance 63,
DAC bias 1000, its weight and trace scales), trained in the numerics with weight noise (or
loaded from the checkpoint this script wrote before), evaluated on `--chips` random calibrated chip
instances (`ChipModel`, all noise on, each chip with its own noise key) over `--test-size`
test samples. Three ways, in the same process, on the same chips and keys:

- `vmap`: `jax.jit(jax.vmap(accuracy))` over the stacked `ChipInstance`s, one call (or,
  with `--chunk-size`, one call per chunk of that many chips, compiled once);
- `loop`: `jax.jit(accuracy)` compiled once (the chip is an argument), called per chip in
  a Python loop (the instances are unstacked into a list before timing);
- `sweep`: `bj.sweep(accuracy, {"chip": ..., "key": ...}, product=False,
  chunk_size=--chunk-size)`, end to end as a user calls it (it compiles inside the call).

The first call of each is timed apart (compilation plus one run; for the loop, the first
chip alone is compiled and timed before the first whole loop); the steady state is the
median of `--repeats` further calls, each `block_until_ready` (wall time, and the process's
CPU time, which other jobs on a shared machine disturb less). The JSON has the JAX version,
the device, the per-chip accuracies' summary and the largest difference between the ways.

    python benchmarks/sweep_chips.py                        # full size (64 chips)
    python benchmarks/sweep_chips.py --chips 2 --test-size 4 --hidden 4 --train-size 20 \
        --epochs 1 --repeats 1                              # smoke size
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import bss2jax as bj
import bss2jax.data as bd
from bss2jax import yinyang

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import cpu_model, emit  # noqa: E402

CONFIG = yinyang.YinYangConfig()  # `bss2jax train`'s network, encoding and calibration
DT, STEPS, REPETITIONS = CONFIG.dt, CONFIG.steps, CONFIG.repetitions
ENCODING = dict(
    steps=STEPS, t_early=CONFIG.t_early, t_late=CONFIG.t_late, t_bias=CONFIG.t_bias, dt=DT
)


def make_network(hidden: int, key) -> bj.Sequential:
    """hxtorch's Yin-Yang network as `bss2jax train` builds it (`yinyang.yin_yang_network`:
    its calibration, weight and trace scales), with `hidden` LIF neurons."""
    return yinyang.yin_yang_network(dataclasses.replace(CONFIG, hidden=hidden), key=key)


def scores(network, coordinates, *, key, backend):
    spikes = jnp.tile(bd.encode_coordinates(coordinates, **ENCODING), (1, 1, REPETITIONS))
    _, readout = bj.run(network, spikes, backend=backend, dt=DT, key=key)
    return CONFIG.readout_scale * bd.max_over_time(readout.membrane_cadc)


def _perturb(network, key, weight_noise=0.05, gain_noise=0.1):
    def noisy(weight, key):
        k_weight, k_gain = jax.random.split(key)
        factor = 1 + weight_noise * jax.random.normal(k_weight, weight.shape)
        return weight * factor * (1 + gain_noise * jax.random.normal(k_gain, (len(weight), 1)))

    k0, k2 = jax.random.split(key)
    return eqx.tree_at(
        lambda n: (n.layers[0].weight, n.layers[2].weight),
        network,
        (noisy(network.layers[0].weight, k0), noisy(network.layers[2].weight, k2)),
    )


def _train_loss(network, batch, *, key, backend):
    k_noise, k_run = jax.random.split(key)
    s = scores(_perturb(network, k_noise), batch.coordinates, key=k_run, backend=backend)
    return bj.cross_entropy(s, batch.labels), {"accuracy": bj.accuracy(s, batch.labels)}


def trained_network(args) -> tuple[bj.Sequential, dict]:
    """Load the network from `--checkpoint` if it fits, else train it in the numerics."""
    network = make_network(args.hidden, jax.random.PRNGKey(args.seed))
    config = {  # a checkpoint of another calibration is retrained, not loaded
        "weight_scale": CONFIG.weight_scale,
        "capacitance": CONFIG.capacitance,
        "synapse_dac_bias": CONFIG.synapse_dac_bias,
        "hidden": args.hidden,
        "train_size": args.train_size,
        "epochs": args.epochs,
        "seed": args.seed,
    }
    path = Path(args.checkpoint) if args.checkpoint else None
    if path is not None and path.exists():
        try:
            network, meta = bj.load_checkpoint(path, network)
        except ValueError:
            meta = None
        if meta is not None and meta.get("config") == config:
            return network, {"source": str(path), **meta}
        network = make_network(args.hidden, jax.random.PRNGKey(args.seed))
    train, _ = bd.yin_yang_splits(args.train_size, 10, train_seed=42, test_seed=41)
    started = time.perf_counter()
    result = bj.fit(
        network,
        _train_loss,
        optax.adam(optax.exponential_decay(3e-3, max(args.train_size // 50, 1), 0.97)),
        train,
        epochs=args.epochs,
        batch_size=min(50, args.train_size),
        key=jax.random.PRNGKey(args.seed + 1),
        constrain=yinyang.clip_weights,  # |w| <= 63 / weight scale
        progress=False,
    )
    meta = {
        "config": config,
        "train_seconds": time.perf_counter() - started,
        "train_accuracy": result.history[-1]["train_accuracy"],
    }
    if path is not None:
        bj.save_checkpoint(path, result.network, meta)
    return result.network, {"source": "trained in the numerics", **meta}


def _time(fn, repeats):
    """First call, then `repeats` timed calls: wall seconds, and the process's CPU seconds
    (all threads; less sensitive than wall time to other jobs on a shared machine)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    median = statistics.median(times) if times else float("nan")
    cpu_median = statistics.median(cpu) if cpu else float("nan")
    return out, first, median, times, cpu_median


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=64, help="chip instances")
    parser.add_argument("--test-size", type=int, default=200, help="test samples per chip")
    parser.add_argument("--hidden", type=int, default=120, help="hidden LIF neurons")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (numerics)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="chips per vmapped call for vmap and sweep (default: all chips in one call)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="network checkpoint: loaded when it exists and fits, else written after training",
    )
    parser.add_argument(
        "--cases", default="vmap,loop,sweep", help="comma-separated: vmap, loop, sweep"
    )
    parser.add_argument("--output", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - {"vmap", "loop", "sweep"}
    if unknown:
        parser.error(f"unknown --cases {sorted(unknown)}")
    for name in ("chips", "test_size", "hidden", "train_size", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive int")
    if args.chunk_size is not None and args.chunk_size < 1:
        parser.error("--chunk-size must be a positive int")
    chunk = min(args.chunk_size or args.chips, args.chips)

    network, training = trained_network(args)
    _, test = bd.yin_yang_splits(10, args.test_size, train_seed=42, test_seed=41)
    coordinates, labels = jnp.asarray(test.coordinates), jnp.asarray(test.labels)
    chips = jax.vmap(bj.ChipInstance.random)(
        jax.random.split(jax.random.PRNGKey(1000 + args.seed), args.chips)
    )
    keys = jax.random.split(jax.random.PRNGKey(2000 + args.seed), args.chips)
    jax.block_until_ready((chips, keys))

    def accuracy(chip, key):
        s = scores(network, coordinates, key=key, backend=bj.ChipModel(chip))
        return bj.accuracy(s, labels)

    results, accuracies = {}, {}
    if "vmap" in cases:
        batched = jax.jit(jax.vmap(accuracy))
        # chunks of `chunk` chips; the last one padded with its final chip (one compilation)
        index = np.arange(-(-args.chips // chunk) * chunk).clip(max=args.chips - 1)
        pieces = [
            (
                jax.tree.map(lambda x, i=i: x[index[i : i + chunk]], chips),
                keys[index[i : i + chunk]],
            )
            for i in range(0, args.chips, chunk)
        ]
        jax.block_until_ready(pieces)

        def vmapped():
            return jnp.concatenate([batched(c, k) for c, k in pieces])[: args.chips]

        out, first, median, times, cpu = _time(vmapped, args.repeats)
        accuracies["vmap"] = np.asarray(out)
        results["vmap"] = {
            "first_call_s": first,
            "median_s": median,
            "times_s": times,
            "cpu_median_s": cpu,
        }
    if "loop" in cases:
        single = jax.jit(accuracy)
        # the same instances, unstacked before timing: the loop times only the calls
        chip_list = [jax.tree.map(lambda x, i=i: x[i], chips) for i in range(args.chips)]
        key_list = list(keys)
        jax.block_until_ready((chip_list, key_list))

        def loop():
            return jnp.stack([single(c, k) for c, k in zip(chip_list, key_list, strict=True)])

        # compile apart: the first chip alone, then whole loops
        start = time.perf_counter()
        jax.block_until_ready(single(chip_list[0], key_list[0]))
        compile_s = time.perf_counter() - start
        out, first, median, times, cpu = _time(loop, args.repeats)
        accuracies["loop"] = np.asarray(out)
        results["loop"] = {
            "first_chip_s": compile_s,
            "first_call_s": first,
            "median_s": median,
            "times_s": times,
            "cpu_median_s": cpu,
        }
    if "sweep" in cases:

        def swept():
            return bj.sweep(
                accuracy, {"chip": chips, "key": keys}, product=False, chunk_size=chunk
            ).values

        out, first, median, times, cpu = _time(swept, args.repeats)
        accuracies["sweep"] = np.asarray(out)
        results["sweep"] = {
            "first_call_s": first,
            "median_s": median,
            "times_s": times,
            "cpu_median_s": cpu,
        }
    for result in results.values():
        result["chips_per_second"] = args.chips / result["median_s"]
        result["samples_per_second"] = args.chips * args.test_size / result["median_s"]
    if "vmap" in results and "loop" in results:
        results["speedup_vmap_over_loop"] = (
            results["loop"]["median_s"] / results["vmap"]["median_s"]
        )
    reference = next(iter(accuracies.values()))
    report = {
        "benchmark": "sweep_chips",
        "workload": {
            "chips": args.chips,
            "chunk_size": chunk,
            "test_size": args.test_size,
            "network": f"{5 * REPETITIONS} -> {args.hidden} LIF -> 3 LI",
            "steps": STEPS,
            "dt": DT,
            "backend": "ChipModel, calibrated random chips, default config (noise on)",
        },
        "training": training,
        "accuracy": {
            "mean": float(reference.mean()),
            "std": float(reference.std()),
            "min": float(reference.min()),
            "max": float(reference.max()),
            "max_difference_between_cases": max(
                float(np.abs(a - reference).max()) for a in accuracies.values()
            ),
        },
        "results": results,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "cpu": cpu_model(),
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

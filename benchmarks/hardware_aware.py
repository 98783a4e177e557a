"""The generic hardware-aware schedule against plain chip fine-tuning, on a task that is not
Yin-Yang: which keeps its accuracy on chips it was not trained on.

The task: `--classes` frozen Poisson spike patterns over `--channels` channels and
`--steps` time steps (rate `--rate` per step), all but a fraction `--distinct` of each
shared with the others (a common base pattern); each sample is its class's pattern with every
spike jittered by up to `--jitter` steps, dropped with probability `--dropout` and
background spikes added at `--background` per step and channel (numpy, seeded). The network
is `bss2jax fit`'s default (`--hidden` `LIF.model_space` -> `LI.model_space` readout,
`init_fluctuation_driven`, `align_network` on the target chip). Two arms start from the
same initial network and the same epochs and learning rates:

- **schedule**: `bj.fit_hardware_aware` (numerics with training noise and weight clipping,
  then `RandomChips` anchored on the target chip, 5 chips per step);
- **plain**: the numerics without noise or clipping, then fine-tuning with the target chip
  alone in the loop (`bj.ChipModel(target)`).

Each is evaluated on the test split on the target chip (`--chip-seed`) and on 5 other chips
(the next 5 seeds): accuracy on the target, mean on the others, and the drop between them.

    python benchmarks/hardware_aware.py --output hardware_aware.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

import bss2jax as bj
from bss2jax._cli._fit_data import SpikeLoss, default_network

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import emit, machine  # noqa: E402


def spike_patterns(args, seed: int):
    """`(train, test)`: `(inputs (samples, steps, channels) float32 0/1, labels int32)`."""
    rng = np.random.default_rng(seed)
    shape = (args.steps, args.channels)
    base = rng.random(shape) < args.rate  # shared by all classes but for a fraction `distinct`
    own = rng.random((args.classes, *shape)) < args.rate
    patterns = np.where(rng.random((args.classes, *shape)) < args.distinct, own, base)

    def draw(samples: int):
        labels = rng.integers(0, args.classes, samples)
        inputs = np.zeros((samples, args.steps, args.channels), bool)
        for index, label in enumerate(labels):
            step, channel = np.nonzero(patterns[label])
            keep = rng.random(step.size) >= args.dropout
            shift = rng.integers(-args.jitter, args.jitter + 1, step.size)
            step = np.clip(step + shift, 0, args.steps - 1)
            inputs[index, step[keep], channel[keep]] = True
        inputs |= rng.random(inputs.shape) < args.background
        return inputs.astype(np.float32), labels.astype(np.int32)

    return draw(args.train), draw(args.test)


def initial_network(args, train, target, key):
    network = default_network(args.channels, args.hidden, args.classes, key=key)
    sample = np.swapaxes(train[0][:64], 0, 1)
    network = bj.init_fluctuation_driven(network, sample, key=jax.random.fold_in(key, 1))
    network, _ = bj.align_network(bj.ChipModel(target), network, key=jax.random.fold_in(key, 2))
    return network


def schedule_arm(args, network, loss, train, test, target, key):
    result = bj.fit_hardware_aware(
        network,
        loss,
        train,
        test=test,
        chip=target,
        batch_size=args.batch_size,
        key=key,
        numerics_epochs=args.numerics_epochs,
        chip_epochs=args.chip_epochs,
        numerics_optimiser=optax.adam(args.lr),
        chip_optimiser=optax.adam(args.chip_lr),
        chips_per_call=5,
        anchor_probability=0.3,
        progress=False,
        diagnose=False,
    )
    return result.results["numerics"].network, result.network


def plain_arm(args, network, loss, train, test, target, key):
    common = dict(batch_size=args.batch_size, test=test, progress=False, diagnose=False)
    pre = bj.fit(
        network,
        loss,
        optax.adam(args.lr),
        train,
        epochs=args.numerics_epochs,
        key=jax.random.fold_in(key, 0),
        **common,
    )
    tuned = bj.fit(
        pre.network,
        loss,
        optax.adam(args.chip_lr),
        train,
        epochs=args.chip_epochs,
        key=jax.random.fold_in(key, 1),
        backend=bj.ChipModel(target),
        **common,
    )
    return pre.network, tuned.network


def evaluate_arm(network, loss, test, chips, key) -> dict:
    backends = [bj.Numeric(), *(bj.ChipModel(chip) for chip in chips)]
    results = bj.evaluate_backends(network, loss, test, backends, key=key)
    accuracies = [100 * r["accuracy"] for r in results]
    others = accuracies[2:]
    return {
        "numerics": accuracies[0],
        "target": accuracies[1],
        "others": others,
        "others_mean": float(np.mean(others)),
        "drop": accuracies[1] - float(np.mean(others)),
    }


def main(argv=None) -> dict:
    args = _parser().parse_args(argv)
    train, test = spike_patterns(args, args.seed)
    seeds = [args.chip_seed + 1 + i for i in range(5)]
    chips = [bj.ChipInstance.random(jax.random.PRNGKey(s)) for s in [args.chip_seed, *seeds]]
    key = jax.random.key(args.seed)
    loss = SpikeLoss(1e-6)
    network = initial_network(args, train, chips[0], jax.random.fold_in(key, 0))
    report: dict = {
        "benchmark": "hardware_aware",
        "settings": vars(args),
        "target_chip_seed": args.chip_seed,
        "other_chip_seeds": seeds,
        **machine(),
        "arms": {},
    }
    for name, arm in (("schedule", schedule_arm), ("plain", plain_arm)):
        started = time.perf_counter()
        numerics, trained = arm(
            args, network, loss, train, test, chips[0], jax.random.fold_in(key, 1)
        )
        seconds = time.perf_counter() - started
        figures = evaluate_arm(trained, loss, test, chips, jax.random.fold_in(key, 2))
        figures["seconds_training"] = seconds
        figures["after_numerics"] = evaluate_arm(
            numerics, loss, test, chips, jax.random.fold_in(key, 2)
        )
        report["arms"][name] = figures
        print(f"{name}: {figures}", file=sys.stderr, flush=True)
    schedule, plain = report["arms"]["schedule"], report["arms"]["plain"]
    report["bar_met"] = bool(schedule["drop"] <= 1.0 < plain["drop"])
    return emit(report, args.output)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default in (
        ("--classes", int, 10),
        ("--channels", int, 40),
        ("--steps", int, 40),
        ("--rate", float, 0.05),
        ("--distinct", float, 0.25),
        ("--jitter", int, 2),
        ("--dropout", float, 0.4),
        ("--background", float, 0.02),
        ("--hidden", int, 48),
        ("--train", int, 1000),
        ("--test", int, 1000),
        ("--batch-size", int, 50),
        ("--numerics-epochs", int, 20),
        ("--chip-epochs", int, 5),
        ("--lr", float, 5e-3),
        ("--chip-lr", float, 3e-4),
        ("--chip-seed", int, 0),
        ("--seed", int, 0),
    ):
        parser.add_argument(flag, type=kind, default=default)
    parser.add_argument("--output", help="JSON file to write (atomically)")
    return parser


if __name__ == "__main__":
    main()

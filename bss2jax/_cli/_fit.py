"""`bss2jax fit --data my.npz`: the hardware-aware schedule on a user's own spike data.

The `.npz` file holds `inputs` (samples, time, channels) of 0/1 spikes and integer
`labels` (samples,) in `[0, classes)`, optionally `test_inputs` / `test_labels` of the same
kind; it is read with `allow_pickle=False`. The command builds a default network
(`LIF.model_space` hidden layer, `LI.model_space` readout), draws its weights with
`init_fluctuation_driven`, aligns it on the target chip (`align_network`), trains it with
`fit_hardware_aware` and evaluates it on the target chip and on `--transfer` other chips.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._misc import (
    epoch_line,
    nonnegative_float_argument,
    nonnegative_int_argument,
    positive_float_argument,
    positive_int_argument,
    probability_argument,
)
from ._fit_data import SpikeLoss, default_network, load_data, save_network

NETWORK_NAME = "network.npz"

# `bss2jax fit`'s options in the order `--help` lists them: (flag, `add_argument` keywords).
OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--data",
        dict(required=True, help="the .npz file: inputs, labels[, test_inputs, test_labels]"),
    ),
    (
        "--output",
        dict(default=None, help="output folder (default runs/fit-<data>-chip<N>-seed<N>)"),
    ),
    ("--hidden", dict(type=positive_int_argument, default=128, help="LIF neurons (default 128)")),
    (
        "--epochs",
        dict(
            type=nonnegative_int_argument,
            default=30,
            help="epochs of numerics with training noise (default 30)",
        ),
    ),
    (
        "--chip-epochs",
        dict(
            type=nonnegative_int_argument,
            default=5,
            help="epochs with the chip model in the loop (default 5)",
        ),
    ),
    (
        "--batch-size",
        dict(type=positive_int_argument, default=50, help="samples per step (default 50)"),
    ),
    (
        "--lr",
        dict(
            type=positive_float_argument,
            default=5e-3,
            help="Adam's step size, numerics (default 5e-3)",
        ),
    ),
    (
        "--chip-lr",
        dict(
            type=positive_float_argument,
            default=3e-4,
            help="Adam's step size, chip phase (default 3e-4)",
        ),
    ),
    (
        "--noise",
        dict(
            type=nonnegative_float_argument,
            default=1.0,
            help="factor on the training noise (default 1: weights 5 %%, gains 7 %%, "
            "neurons 2 %%; 0: none)",
        ),
    ),
    (
        "--draws",
        dict(
            type=positive_int_argument,
            default=5,
            help="draws of the training noise per batch; divides --batch-size (default 5)",
        ),
    ),
    (
        "--chips-per-call",
        dict(
            type=positive_int_argument,
            default=5,
            help="chips per step in the chip phase; divides --batch-size (default 5)",
        ),
    ),
    (
        "--anchor-probability",
        dict(
            type=probability_argument,
            default=0.3,
            help="chance that a group runs on the target chip (default 0.3)",
        ),
    ),
    (
        "--gradient",
        dict(
            choices=("inject", "through"),
            default="inject",
            help="the chip model's gradient (default inject)",
        ),
    ),
    (
        "--dt",
        dict(
            type=positive_float_argument,
            default=1e-6,
            help="seconds per time step of the data (default 1e-6)",
        ),
    ),
    (
        "--chip-seed",
        dict(
            type=nonnegative_int_argument,
            default=0,
            help="the target chip: ChipInstance.random(PRNGKey(N)) (default 0)",
        ),
    ),
    (
        "--transfer",
        dict(
            type=nonnegative_int_argument,
            default=5,
            help="other chips evaluated: seeds chip-seed+1, ... (default 5)",
        ),
    ),
    (
        "--seed",
        dict(
            type=nonnegative_int_argument,
            default=0,
            help="weights, shuffling and noise (default 0)",
        ),
    ),
    (
        "--no-progress",
        dict(action="store_true", help="one line per epoch instead of progress bars"),
    ),
)


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, options in OPTIONS:
        parser.add_argument(flag, **options)


def check_fit(args: argparse.Namespace) -> None:
    """Options that are wrong together, and the data file (read once, kept in `args`)."""
    for flag, value in (("--draws", args.draws), ("--chips-per-call", args.chips_per_call)):
        if args.batch_size % value:
            raise ValueError(f"{flag} ({value}) must divide --batch-size ({args.batch_size})")
    if 0.07 * args.noise >= 1:  # the largest spread, the per-neuron gains', must stay < 1
        raise ValueError(f"--noise must be below {1 / 0.07:.2f}; got {args.noise:g}")
    if not args.epochs and not args.chip_epochs:
        raise ValueError("--epochs and --chip-epochs are both 0: nothing to train")
    data = load_data(args.data)
    samples = len(data["inputs"])
    if args.batch_size > samples:
        raise ValueError(
            f"--batch-size must not exceed the training samples ({samples}); got {args.batch_size}"
        )
    args.loaded = data


def _prepare(args, data):
    """The command's network, initialised and aligned on the target chip; the target."""
    import jax
    import numpy as np

    from .._align_network import align_network
    from .._backend import ChipModel
    from .._chip._instance import ChipInstance
    from .._init import init_fluctuation_driven

    key = jax.random.key(args.seed)
    channels, classes = data["inputs"].shape[2], int(data["labels"].max()) + 1
    network = default_network(channels, args.hidden, classes, key=jax.random.fold_in(key, 0))
    sample = np.swapaxes(data["inputs"][:64], 0, 1)
    network = init_fluctuation_driven(network, sample, key=jax.random.fold_in(key, 1), dt=args.dt)
    chip = ChipInstance.random(jax.random.PRNGKey(args.chip_seed))
    backend = ChipModel(chip, gradient=args.gradient)
    network, _ = align_network(backend, network, key=jax.random.fold_in(key, 2), dt=args.dt)
    return network, chip, classes


def fit_command(args) -> int:
    """`bss2jax fit`: the hardware-aware schedule on the data of `--data`; writes
    `metrics.json` and `network.npz` (and each phase's checkpoints) to `--output`."""
    import jax

    from .._misc import write_json
    from .._train._hardware_aware import hardware_aware
    from .._train._schedule import fit_hardware_aware

    data = args.loaded
    output = Path(args.output or _default_output(args))
    train = (data["inputs"], data["labels"])
    test = (data["test_inputs"], data["test_labels"]) if "test_inputs" in data else None
    started = time.perf_counter()
    network, chip, classes = _prepare(args, data)
    settings = _settings(args, data, classes)
    print(_plan(args, settings, output), flush=True)
    loss = SpikeLoss(args.dt)
    noise = args.noise
    result = fit_hardware_aware(
        network,
        loss,
        train,
        test=test,
        chip=chip,
        batch_size=args.batch_size,
        key=jax.random.fold_in(jax.random.key(args.seed), 3),
        numerics_epochs=args.epochs,
        chip_epochs=args.chip_epochs,
        numerics_optimiser=_adam(args.lr),
        chip_optimiser=_adam(args.chip_lr),
        numerics_loss=hardware_aware(
            loss,
            weight_noise=0.05 * noise,
            gain_noise=0.07 * noise,
            neuron_noise=0.02 * noise,
            draws=args.draws,
        ),
        chips_per_call=args.chips_per_call,
        anchor_probability=args.anchor_probability,
        gradient=args.gradient,
        output=output,
        config=settings,
        progress=not args.no_progress,
        epoch_callback=_print_epoch if args.no_progress else None,
        diagnose=False,  # its host callback keeps JAX's persistent cache from storing a step
    )
    final = _evaluate(args, result.network, loss, test or train, "test" if test else "train")
    final["seconds"] = time.perf_counter() - started
    save_network(output / NETWORK_NAME, result.network, settings)
    metrics = {"config": settings, "histories": result.histories, "final": final}
    write_json(output / "metrics.json", metrics)
    _report(final, output)
    return 0


def _adam(lr: float):
    import optax

    return optax.adam(lr)


def _settings(args, data, classes: int) -> dict:
    """The run's configuration (in `metrics.json`, the checkpoints and `network.npz`)."""
    names = [
        flag[2:].replace("-", "_")
        for flag, _ in OPTIONS
        if flag not in ("--output", "--no-progress")
    ]
    settings = {name: getattr(args, name) for name in names}
    settings["data"] = str(Path(args.data).resolve())
    samples, steps, channels = data["inputs"].shape
    test = len(data["test_inputs"]) if "test_inputs" in data else 0
    return settings | dict(
        samples=samples, test_samples=test, steps=steps, channels=channels, classes=classes
    )


def _default_output(args) -> str:
    return str(Path("runs") / f"fit-{Path(args.data).stem}-chip{args.chip_seed}-seed{args.seed}")


def _plan(args, settings: dict, output: Path) -> str:
    return (
        f"bss2jax fit: {settings['samples']} train / {settings['test_samples'] or 'no'} test "
        f"samples of {settings['steps']} steps, {settings['channels']} channels -> "
        f"{args.hidden} LIF -> {settings['classes']} LI; {args.epochs} epochs of numerics with "
        f"training noise, then {args.chip_epochs} with the chip model in the loop "
        f"({args.chips_per_call} chips per step, target chip {args.chip_seed} with probability "
        f"{args.anchor_probability:g}); batches of {args.batch_size}; output {output}"
    )


def _evaluate(args, network, loss, data, split: str) -> dict:
    """Accuracy on the target chip, on `--transfer` other chips and in the numerics."""
    import jax

    from .._backend import ChipModel, Numeric
    from .._chip._instance import ChipInstance
    from .._train._evaluate import evaluate_backends

    seeds = [args.chip_seed + 1 + i for i in range(args.transfer)]
    chips = [ChipInstance.random(jax.random.PRNGKey(s)) for s in [args.chip_seed, *seeds]]
    backends = [Numeric(), *(ChipModel(c, gradient=args.gradient) for c in chips)]
    key = jax.random.fold_in(jax.random.key(args.seed), 4)
    results = evaluate_backends(network, loss, data, backends, key=key, batch_size=args.batch_size)
    accuracies = [r["accuracy"] for r in results]
    final: dict[str, Any] = {
        "evaluated_on": split,
        "numerics_accuracy": accuracies[0],
        "target_chip_seed": args.chip_seed,
        "target_accuracy": accuracies[1],
        "other_chip_seeds": seeds,
        "other_accuracies": accuracies[2:],
    }
    if seeds:
        final["other_mean_accuracy"] = float(np.mean(accuracies[2:]))
        final["drop"] = accuracies[1] - final["other_mean_accuracy"]
    return final


def _report(final: dict, output: Path) -> None:
    split = final["evaluated_on"]
    print(
        f"{split} accuracy on the target chip {final['target_chip_seed']}: "
        f"{100 * final['target_accuracy']:.2f} %"
    )
    if final["other_chip_seeds"]:
        listed = ", ".join(f"{100 * a:.2f}" for a in final["other_accuracies"])
        print(
            f"on {len(final['other_chip_seeds'])} other chips: {listed} % (mean "
            f"{100 * final['other_mean_accuracy']:.2f} %, drop {100 * final['drop']:.2f} points)"
        )
    print(f"wrote {output / 'metrics.json'}, {output / NETWORK_NAME}")


def _print_epoch(record: dict) -> None:
    print(epoch_line(record), flush=True)

"""`bss2jax train`: the main job, hxtorch's Yin-Yang example with the chip in the loop.

The recipe (network, loss, phases, plots) lives in `bss2jax.yinyang`; this module holds
the command line: its options, the phases it runs, checkpoints, metrics and the report.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import data as bd
from . import (
    CHIP_FINE_TUNING,
    CHIP_FINE_TUNING_THROUGH,
    CHIP_PRETRAINING,
    CHIP_RANDOM,
    YinYangConfig,
    YinYangLoss,
    clip_weights,
    optimiser,
    plot_curves,
    plot_decision_map,
    readout_weights,
    yin_yang_network,
)

BACKENDS = ("numeric", "chip")
GRADIENTS = ("inject", "through")


def add_train_arguments(parser) -> None:
    """The options of `bss2jax train` (defaults: the main job)."""
    default = YinYangConfig()
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help=f"what runs the network in training (default {DEFAULT_BACKEND})",
    )
    parser.add_argument(
        "--gradient",
        choices=GRADIENTS,
        default="inject",
        help="chip model gradient: inject (chip forward, numerics backward) or through",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"epochs on the backend (default {default.epochs} numeric, "
        f"{CHIP_FINE_TUNING.epochs} chip)",
    )
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=CHIP_PRETRAINING.epochs,
        help="chip backend: epochs of numerics first, with training noise standing for a "
        f"chip's mismatch (default {CHIP_PRETRAINING.epochs})",
    )
    parser.add_argument(
        "--pretrain-noise",
        type=float,
        default=1.0,
        help="chip backend: factor on that training noise (default 1: weights 5 %%, "
        "per-neuron gains 7 %%, leaks and thresholds 0.02, time constants 2 %%; 0: none)",
    )
    parser.add_argument(
        "--pretrain-noise-draws",
        type=int,
        default=CHIP_PRETRAINING.noise_draws,
        help="chip backend: draws of that noise per batch, each for an equal part of it "
        f"(default {CHIP_PRETRAINING.noise_draws}; the batch size must be a multiple)",
    )
    parser.add_argument(
        "--random-chip-epochs",
        type=int,
        default=0,
        help="chip backend: then epochs on the chip model with new random chip instances "
        f"({CHIP_RANDOM.chips_per_call} per batch), gradient through (default 0: skipped)",
    )
    parser.add_argument(
        "--anchor-probability",
        type=float,
        default=None,
        help="chip backend, last phase: chance that a batch runs on the chip trained on "
        "rather than on a random chip (default "
        f"{CHIP_FINE_TUNING.anchor_probability}, {CHIP_FINE_TUNING_THROUGH.anchor_probability} "
        "with --gradient through; 1 trains on that chip alone)",
    )
    parser.add_argument(
        "--chips-per-call",
        type=int,
        default=None,
        help="chip backend, last phase: chips per batch, each running an equal share of it "
        f"(default {CHIP_FINE_TUNING.chips_per_call}; the batch size must be a multiple)",
    )
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam's learning rate on the backend (default {default.lr} numeric, "
        f"{CHIP_FINE_TUNING.lr} chip, {CHIP_FINE_TUNING_THROUGH.lr} chip through)",
    )
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        help=f"learning-rate factor per epoch (default {default.lr_decay} numeric, "
        f"{CHIP_FINE_TUNING.lr_decay} chip)",
    )
    parser.add_argument(
        "--weight-noise",
        type=float,
        default=None,
        help="relative weight noise in training on the backend (default 0)",
    )
    parser.add_argument(
        "--gain-noise",
        type=float,
        default=None,
        help="relative per-neuron gain noise in training on the backend (default 0)",
    )
    parser.add_argument(
        "--neuron-noise",
        type=float,
        default=None,
        help="per-neuron noise on thresholds, leaks (model units; chip values alike) and "
        "time constants (relative) in training on the backend (default 0)",
    )
    parser.add_argument(
        "--trainable",
        choices=("all", "readout"),
        default=None,
        help="weights trained in the last phase: all, or the readout's only (default all; "
        "readout keeps the hidden layer of the earlier phases)",
    )
    parser.add_argument("--train-size", type=int, default=default.train_size)
    parser.add_argument("--test-size", type=int, default=default.test_size)
    parser.add_argument("--hidden", type=int, default=default.hidden, help="hidden LIF neurons")
    parser.add_argument("--seed", type=int, default=0, help="weights, shuffling and noise")
    parser.add_argument("--chip-seed", type=int, default=0, help="the chip instance trained on")
    parser.add_argument(
        "--transfer",
        type=int,
        default=5,
        help="evaluate the trained network on this many other chip instances (chip backend)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="folder for metrics.json, checkpoint.npz and plots; rerunning with the same "
        "folder resumes (default runs/yinyang-<backend>[-<gradient>-chip<chip seed>]-seed<seed>)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=None, help="steps between checkpoints (1 epoch)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")


def train_configs(args) -> tuple[YinYangConfig | None, YinYangConfig | None, YinYangConfig]:
    """The phases `bss2jax train args` runs: (numerics or None, random chips or None, main)."""
    chip = args.backend == "chip"
    main = YinYangConfig()
    if chip:
        main = CHIP_FINE_TUNING_THROUGH if args.gradient == "through" else CHIP_FINE_TUNING
    common = dict(
        batch_size=args.batch_size,
        train_size=args.train_size,
        test_size=args.test_size,
        hidden=args.hidden,
    )
    changes = {
        name: getattr(args, name)
        for name in (
            "epochs",
            "lr",
            "lr_decay",
            "weight_noise",
            "gain_noise",
            "neuron_noise",
            "trainable",
            "anchor_probability",
            "chips_per_call",
        )
        if getattr(args, name, None) is not None
    }
    main = dataclasses.replace(main, **common, **changes)
    pretraining = random_chips = None
    noise = getattr(args, "pretrain_noise", 1.0)
    if not noise >= 0:
        raise ValueError(f"`--pretrain-noise` must be a non-negative float; got {noise}.")
    draws = getattr(args, "pretrain_noise_draws", CHIP_PRETRAINING.noise_draws)
    if chip and args.pretrain_epochs:
        if draws < 1 or args.batch_size % draws:
            raise ValueError(
                "`--pretrain-noise-draws` must be a positive int that divides the batch size "
                f"({args.batch_size}); got {draws}."
            )
        pretraining = dataclasses.replace(
            CHIP_PRETRAINING,
            **common,
            epochs=args.pretrain_epochs,
            noise_draws=draws,
            **{
                name: noise * getattr(CHIP_PRETRAINING, name)
                for name in ("weight_noise", "gain_noise", "neuron_noise")
            },
        )
    random_epochs = getattr(args, "random_chip_epochs", 0)
    if chip and random_epochs:
        random_chips = dataclasses.replace(CHIP_RANDOM, **common, epochs=random_epochs)
    phase_flags = {"pretrain": "--pretrain-epochs", "random": "--random-chip-epochs"}
    for phase, config in (("pretrain", pretraining), ("random", random_chips), ("main", main)):
        if config is None:
            continue
        for name in ("epochs", "batch_size", "train_size", "test_size", "hidden"):
            value = getattr(config, name)
            if value < 1:
                flag = phase_flags.get(phase) if name == "epochs" else None
                flag = flag or f"--{name.replace('_', '-')}"
                raise ValueError(f"`{flag}` must be a positive int; got {value}.")
    for config in (random_chips, main if chip else None):
        if config is None:
            continue
        if config.chips_per_call < 1:
            raise ValueError(
                f"`--chips-per-call` must be a positive int; got {config.chips_per_call}."
            )
        if config.batch_size % config.chips_per_call:
            raise ValueError(
                f"`--batch-size` must be a multiple of the chips per batch "
                f"({config.chips_per_call}); got {config.batch_size}."
            )
    if not 0.0 <= main.anchor_probability <= 1.0:
        raise ValueError(
            f"`--anchor-probability` must lie in [0, 1]; got {main.anchor_probability}."
        )
    if main.batch_size > main.train_size:
        raise ValueError(
            f"`--batch-size` must not exceed `--train-size` ({main.train_size}); got "
            f"{main.batch_size}."
        )
    for flag, value in (
        ("--pretrain-epochs", args.pretrain_epochs),
        ("--random-chip-epochs", random_epochs),
    ):
        if value < 0:
            raise ValueError(f"`{flag}` must be >= 0; got {value}.")
    return pretraining, random_chips, main


DEFAULT_BACKEND = "chip"


def make_backend(name: str, *, gradient: str = "inject", chip_seed: int = 0):
    """The backend called `name` ("numeric" or "chip": a seeded chip instance)."""
    from .._backend import Numeric

    if name == "numeric":
        return Numeric()
    if name == "chip":
        from .._backend import ChipModel
        from .._chip._instance import ChipInstance

        chip = ChipInstance.random(jax.random.PRNGKey(chip_seed))
        return ChipModel(chip, gradient=gradient)
    raise ValueError(f"`backend` must be one of {BACKENDS}; got {name!r}.")


def _default_output(args) -> str:
    name = f"yinyang-{args.backend}"
    if args.backend == "chip":
        name += f"-{args.gradient}-chip{args.chip_seed}"
    return str(Path("runs") / f"{name}-seed{args.seed}")


def _run_config(config: YinYangConfig, args, phase: str) -> dict:
    values = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    values |= {"phase": phase, "backend": args.backend, "seed": args.seed}
    if args.backend == "chip" and phase == "main":
        values |= {"gradient": args.gradient, "chip_seed": args.chip_seed}
    if phase == "random":
        values |= {"gradient": "through", "chip_seed": args.chip_seed}
    if phase != "main" or args.backend != "chip":
        values.pop("anchor_probability")
        if phase != "random":
            values.pop("chips_per_call")
    return values


def _fit_phase(
    network, config, args, *, backend, output, key, phase, train, test, eval_backend=None
):
    from .._train import fit

    batches = config.train_size // config.batch_size
    return fit(
        network,
        YinYangLoss.from_config(config),
        optimiser(config, batches),
        train,
        test=test,
        epochs=config.epochs,
        batch_size=config.batch_size,
        key=key,
        backend=backend,
        eval_backend=eval_backend,
        eval_loss=YinYangLoss.from_config(config, training=False),
        trainable=readout_weights if config.trainable == "readout" else None,
        constrain=clip_weights,
        output=output,
        checkpoint_every=args.checkpoint_every,
        config=_run_config(config, args, phase),
        progress=not args.no_progress,
        epoch_callback=None if not args.no_progress else _print_epoch(config.epochs, phase),
    )


def train_command(args) -> int:
    """`bss2jax train`: train the Yin-Yang network; print, save metrics, checkpoint, plots.

    With the chip backend the job has up to three phases: `--pretrain-epochs` of numerics
    with mismatch-like training noise (checkpointed in `<output>/pretrain`), optionally
    `--random-chip-epochs` on new random chips per batch (`<output>/random-chips`), then
    `--epochs` with the chip in the loop (`<output>`).
    A rerun with the same output folder resumes whichever phase was interrupted.
    """
    from .._backend import Numeric, RandomChips
    from .._misc import write_json
    from .._train import evaluate_backends

    if args.transfer < 0:
        raise ValueError(f"`--transfer` must be a non-negative int; got {args.transfer}.")
    pretraining, random_chips, config = train_configs(args)
    backend = make_backend(args.backend, gradient=args.gradient, chip_seed=args.chip_seed)
    train_backend = backend
    if args.backend == "chip" and config.anchor_probability < 1:
        train_backend = RandomChips(
            gradient=args.gradient,
            anchor=backend.chip,
            anchor_probability=config.anchor_probability,
            chips_per_call=config.chips_per_call,
        )
    output = Path(args.output or _default_output(args))
    train, test = bd.yin_yang_splits(config.train_size, config.test_size)
    key = jax.random.key(args.seed)
    network = yin_yang_network(config, key=jax.random.fold_in(key, 0))
    where = args.backend + (
        f" ({args.gradient} mode, chip {args.chip_seed})" if args.backend == "chip" else ""
    )
    plan = f"{config.epochs} epochs on {where}"
    if args.backend == "chip" and config.anchor_probability < 1:
        parts = config.chips_per_call
        plan += (
            f", each of {parts} parts of a batch" if parts > 1 else ", each batch"
        ) + f" on it with probability {config.anchor_probability:g}, else on a random chip"
    if random_chips is not None:
        plan = f"{random_chips.epochs} epochs on random chips (through), then " + plan
    if pretraining is not None:
        plan = f"{pretraining.epochs} epochs of numerics with mismatch noise, then " + plan
    print(
        f"bss2jax train: Yin-Yang {config.train_size} train / {config.test_size} test, "
        f"{5 * config.repetitions} inputs -> {config.hidden} LIF -> 3 LI; {plan}; "
        f"batches of {config.batch_size}; output {output}",
        flush=True,
    )
    # phase, its config, training backend, folder, key index, metrics name, plot label
    earlier = [
        ("pretrain", pretraining, Numeric(), "pretrain", 4, "pretrain", "numerics"),
        (
            "random",
            random_chips,
            None
            if random_chips is None
            else RandomChips(gradient="through", chips_per_call=random_chips.chips_per_call),
            "random-chips",
            5,
            "random_chips",
            "random chips",
        ),
    ]
    started = time.perf_counter()
    resumed, histories, metrics = [], [], {}
    for phase, phase_config, phase_backend, folder, index, name, label in earlier:
        if phase_config is None:
            continue
        result = _fit_phase(
            network,
            phase_config,
            args,
            backend=phase_backend,
            eval_backend=None if phase == "pretrain" else backend,
            output=output / folder,
            key=jax.random.fold_in(key, index),
            phase=phase,
            train=train,
            test=test,
        )
        network = result.network
        resumed.append(result.resumed_step)
        histories.append((label, result.history))
        metrics[f"{name}_config"] = _run_config(phase_config, args, phase) | {
            "epochs": phase_config.epochs
        }
        metrics[f"{name}_history"] = result.history
    result = _fit_phase(
        network,
        config,
        args,
        backend=train_backend,
        eval_backend=backend,
        output=output,
        key=jax.random.fold_in(key, 1),
        phase="main",
        train=train,
        test=test,
    )
    resumed.append(result.resumed_step)
    seconds = time.perf_counter() - started
    eval_loss = YinYangLoss.from_config(config, training=False)
    final = result.history[-1]
    summary: dict[str, Any] = {
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "train_accuracy": final["train_accuracy"],
        "seconds": seconds,
        "resumed_step": next((r for r in reversed(resumed) if r is not None), None),
    }
    if args.backend == "chip" and args.transfer:
        seeds = [args.chip_seed + 1 + i for i in range(args.transfer)]
        others = [make_backend("chip", gradient=args.gradient, chip_seed=s) for s in seeds]
        transfer = evaluate_backends(
            result.network, eval_loss, test, others, key=jax.random.fold_in(key, 2)
        )
        accuracies = [r["accuracy"] for r in transfer]
        summary["transfer_chip_seeds"] = seeds
        summary["transfer_accuracy"] = accuracies
        summary["transfer_mean_drop"] = final["test_accuracy"] - float(np.mean(accuracies))
    metrics = {
        "config": _run_config(config, args, "main") | {"epochs": config.epochs},
        "history": result.history,
        "final": summary,
        **metrics,
    }
    write_json(output / "metrics.json", metrics)
    if not args.no_plots:
        plot_curves(result.history, output / "curves.png", histories, args.backend)
        plot_decision_map(
            result.network,
            eval_loss,
            test,
            output / "decision_map.png",
            backend=backend,
            key=jax.random.fold_in(key, 3),
        )
    if summary["resumed_step"] is not None:
        print(f"(resumed from the checkpoint at step {summary['resumed_step']})")
    print(f"final test accuracy: {100 * final['test_accuracy']:.2f} % ({seconds:.1f} s)")
    if "transfer_accuracy" in summary:
        listed = ", ".join(f"{100 * a:.2f}" for a in summary["transfer_accuracy"])
        print(
            f"on {args.transfer} other chip instances: {listed} % "
            f"(mean drop {100 * summary['transfer_mean_drop']:.2f} points)"
        )
    print(
        f"wrote {output / 'metrics.json'}, {output / 'checkpoint.npz'}"
        + ("" if args.no_plots else ", curves.png, decision_map.png")
    )
    return 0


def _print_epoch(epochs: int, phase: str = "main"):
    def report(record: dict) -> None:
        label = {"pretrain": "numerics epoch", "random": "random-chip epoch"}.get(phase, "epoch")
        parts = [f"{label} {record['epoch']}/{epochs}"]
        for split in ("train", "test"):
            if f"{split}_loss" in record:
                parts.append(
                    f"{split} loss {record[f'{split}_loss']:.4f} accuracy "
                    f"{100 * record.get(f'{split}_accuracy', float('nan')):.2f} %"
                )
        parts.append(f"{record['seconds']:.1f} s")
        print(", ".join(parts), flush=True)

    return report

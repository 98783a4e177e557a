"""`bss2jax train`: the main job, hxtorch's Yin-Yang example with the chip in the loop.

The recipe (network, loss, phases, plots) lives in `bss2jax.yinyang`, the options in
`_options`; this module runs the command: its phases (each a `Phase`, all run by
`run_phases`, the runner of `bj.fit_hardware_aware` too), checkpoints, metrics, the report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np

from .. import data as bd
from .._misc import epoch_line
from ._config import YinYangConfig
from ._options import (
    BACKENDS,
    add_train_arguments as add_train_arguments,  # the CLI's entry
    train_configs,
)
from ._plots import plot_curves, plot_decision_map
from ._recipe import YinYangLoss, clip_weights, optimiser, readout_weights, yin_yang_network


def make_backend(
    name: str,
    *,
    gradient: Literal["inject", "through", "eventprop"] = "inject",
    chip_seed: int = 0,
):
    """The backend called `name` ("numeric" or "chip": a seeded chip instance); with
    `gradient="eventprop"` the chip model injects and the backend carries EventProp
    (`bj.WithGradient`)."""
    from .._backend import Numeric

    if name == "numeric":
        return with_gradient(Numeric(), gradient)
    if name == "chip":
        from .._backend import ChipModel
        from .._chip._instance import ChipInstance

        chip = ChipInstance.random(jax.random.PRNGKey(chip_seed))
        mode: Literal["inject", "through"] = "through" if gradient == "through" else "inject"
        return with_gradient(ChipModel(chip, gradient=mode), gradient)
    raise ValueError(f"`backend` must be one of {BACKENDS}; got {name!r}.")


def with_gradient(backend, gradient: str):
    """`backend` as it is, or wrapped in `bj.WithGradient(backend, bj.EventProp())` for
    `gradient="eventprop"`."""
    if gradient != "eventprop":
        return backend
    from .._eventprop import EventProp, WithGradient

    return WithGradient(backend, EventProp())


def _unwrapped(backend):
    from .._eventprop import WithGradient

    return backend.backend if isinstance(backend, WithGradient) else backend


def _default_output(args) -> str:
    name = f"yinyang-{args.backend}"
    if args.backend == "chip":
        name += f"-{args.gradient}-chip{args.chip_seed}"
    elif args.gradient == "eventprop":
        name += "-eventprop"
    return str(Path("runs") / f"{name}-seed{args.seed}")


def _run_config(config: YinYangConfig, args, phase: str) -> dict:
    values = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    values |= {"phase": phase, "backend": args.backend, "seed": args.seed}
    if args.backend == "chip" and phase == "main":
        values |= {"gradient": args.gradient, "chip_seed": args.chip_seed}
    elif args.gradient == "eventprop" and phase != "random":
        values |= {"gradient": "eventprop"}
    if phase == "random":
        values |= {"gradient": "through", "chip_seed": args.chip_seed}
    if phase != "main" or args.backend != "chip":
        values.pop("anchor_probability")
        if phase != "random":
            values.pop("chips_per_call")
    return values


def _phase(config, args, *, name, backend, output, key, eval_backend=None):
    """The `bj.Phase` (a `bj.fit` call of `run_phases`) that trains `config` as phase `name`
    ("pretrain", "random" or "main") on `backend`."""
    from .._train._schedule import Phase

    batches = config.train_size // config.batch_size
    options = dict(
        eval_loss=YinYangLoss.from_config(config, training=False),
        trainable=readout_weights if config.trainable == "readout" else None,
        config=_run_config(config, args, name),
        epoch_callback=None if not args.no_progress else _print_epoch(config.epochs, name),
    )
    loss = YinYangLoss.from_config(config)
    optimiser_ = optimiser(config, batches)
    return Phase(name, config.epochs, loss, optimiser_, backend, eval_backend, key, output, options)


def _run(network, phases, args, data, batch_size: int):
    """`run_phases` with what every phase of the job shares; `data` is `(train, test)`."""
    from .._train._schedule import run_phases

    train, test = data
    return run_phases(
        network,
        train,
        phases,
        test=test,
        batch_size=batch_size,
        constrain=clip_weights,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        # the recipe's network fires (its loss keeps the rates in a band), and the first-epoch
        # diagnosis holds a host callback, which JAX's persistent cache cannot store
        diagnose=False,
    )


def train_command(args) -> int:
    """`bss2jax train`: train the Yin-Yang network; print, save metrics, checkpoint, plots.

    With the chip backend the job has up to three phases: `--pretrain-epochs` of numerics
    with mismatch-like training noise (checkpointed in `<output>/pretrain`), optionally
    `--random-chip-epochs` on new random chips per batch (`<output>/random-chips`), then
    `--epochs` with the chip in the loop (`<output>`).
    A rerun with the same output folder resumes whichever phase was interrupted.
    """
    from .._misc import write_json

    if args.transfer < 0:
        raise ValueError(f"`--transfer` must be a non-negative int; got {args.transfer}.")
    pretraining, random_chips, config = train_configs(args)
    backend, train_backend = _backends(args, config)
    output = Path(args.output or _default_output(args))
    train, test = bd.yin_yang_splits(config.train_size, config.test_size)
    key = jax.random.key(args.seed)
    network = yin_yang_network(config, key=jax.random.fold_in(key, 0))
    _announce(args, pretraining, random_chips, config, output)
    started = time.perf_counter()
    phases = _earlier_phases(args, pretraining, random_chips, backend, output, key)
    main = _phase(
        config,
        args,
        name="main",
        backend=train_backend,
        eval_backend=backend,
        output=output,
        key=jax.random.fold_in(key, 1),
    )
    ran = _run(network, [*phases, main], args, (train, test), config.batch_size)
    result = ran.results["main"]
    resumed = [r.resumed_step for r in ran.results.values()]
    histories, metrics = _earlier_metrics(ran, phases)
    seconds = time.perf_counter() - started
    eval_loss = YinYangLoss.from_config(config, training=False)
    summary = _summary(args, result, resumed, seconds, eval_loss, test, key)
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
    _report(args, summary, output)
    return 0


def _backends(args, config: YinYangConfig):
    """`(backend, train_backend)` of the last phase: the backend trained on (and evaluated
    on), and what runs the training batches (random chips around it where it is anchored
    with a probability below 1)."""
    from .._backend import RandomChips

    backend = make_backend(args.backend, gradient=args.gradient, chip_seed=args.chip_seed)
    train_backend = backend
    if args.backend == "chip" and config.anchor_probability < 1:
        mode: Literal["inject", "through"] = "through" if args.gradient == "through" else "inject"
        random_chips = RandomChips(
            gradient=mode,
            anchor=_unwrapped(backend).chip,
            anchor_probability=config.anchor_probability,
            chips_per_call=config.chips_per_call,
        )
        train_backend = with_gradient(random_chips, args.gradient)
    return backend, train_backend


def _announce(args, pretraining, random_chips, config: YinYangConfig, output: Path) -> None:
    """Print the job's plan: data, network, phases, batch size and output folder."""
    where = args.backend + (
        f" ({args.gradient} mode, chip {args.chip_seed})"
        if args.backend == "chip"
        else " (EventProp)"
        if args.gradient == "eventprop"
        else ""
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


def _earlier_phases(args, pretraining, random_chips, backend, output, key) -> list:
    """The phases before the last one (those not None): numerics with training noise, then
    random chips; each with its folder under `output` and its key from `key`."""
    from .._backend import Numeric, RandomChips

    phases = []
    if pretraining is not None:
        numerics = with_gradient(Numeric(), args.gradient)
        phases.append(
            _phase(
                pretraining,
                args,
                name="pretrain",
                backend=numerics,
                output=output / "pretrain",
                key=jax.random.fold_in(key, 4),
            )
        )
    if random_chips is not None:
        chips = RandomChips(gradient="through", chips_per_call=random_chips.chips_per_call)
        phases.append(
            _phase(
                random_chips,
                args,
                name="random",
                backend=chips,
                eval_backend=backend,
                output=output / "random-chips",
                key=jax.random.fold_in(key, 5),
            )
        )
    return phases


# phase name: (metrics.json name, plot label)
_EARLIER = {"pretrain": ("pretrain", "numerics"), "random": ("random_chips", "random chips")}


def _earlier_metrics(ran, phases) -> tuple[list, dict]:
    """`(plot label, history)` per earlier phase and their entries of `metrics.json`."""
    histories, metrics = [], {}
    for phase in phases:
        name, label = _EARLIER[phase.name]
        history = ran.histories[phase.name]
        histories.append((label, history))
        metrics[f"{name}_config"] = dict(phase.options["config"]) | {"epochs": phase.epochs}
        metrics[f"{name}_history"] = history
    return histories, metrics


def _summary(args, result, resumed, seconds, eval_loss, test, key) -> dict[str, Any]:
    """`metrics.json`'s "final": the last epoch's figures, the wall time, the step resumed
    from (the latest phase's) and, on the chip backend, the accuracy on other chips."""
    from .._train import evaluate_backends

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
    return summary


def _report(args, summary: dict, output: Path) -> None:
    """Print the job's result: resumption, final accuracy, transfer, files written."""
    if summary["resumed_step"] is not None:
        print(f"(resumed from the checkpoint at step {summary['resumed_step']})")
    seconds = summary["seconds"]
    print(f"final test accuracy: {100 * summary['test_accuracy']:.2f} % ({seconds:.1f} s)")
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


def _print_epoch(epochs: int, phase: str = "main"):
    label = {"pretrain": "numerics epoch", "random": "random-chip epoch"}.get(phase, "epoch")

    def report(record: dict) -> None:
        print(epoch_line(record, label, epochs), flush=True)

    return report

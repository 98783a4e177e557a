"""The digital twin's use (issue 12): train the Yin-Yang recipe on a twin, deploy on the chip.

A hidden chip (`ChipInstance.random(PRNGKey(--hidden-seed))`, calibrated profile, a seed
the recipe never uses: it trains on chip 0 and checks transfer on chips 1-5) is probed
through the chip-model backend at the Yin-Yang operating point (`--tau`, 6 us) on the
circuits the Yin-Yang network occupies and the synapse rows it uses (`bj.probe_plan`:
`bj.place` puts its 120 + 3 neurons on circuits 0-61 and 256-316, 123 probe neurons;
their 25 and 120 signed inputs take rows 0-239, so `--inputs` 120), and its twin is
fitted (`bj.fit_twin`). `--inputs 0` is the probe without the synapse-row runs.

Then the recipe of `bss2jax train` (chip backend, inject mode, defaults) runs from one
network: its numerics phase with training noise once (checkpointed in
`<output-dir>/seed<S>/pretrain` and reused by a rerun), then its chip phase three times,
identical (same keys, batches, random chips, optimiser) except for the chip in the loop
(`RandomChips(anchor=chip, anchor_probability=0.5, chips_per_call=5)`, evaluated on it):

- (a) the twin; (b) the hidden chip itself; (c) the nominal chip `ChipInstance.nominal()`.

All three networks (and the pretrained one) are evaluated on the hidden chip, on the same
test set with the same key; and, to see whether the twin predicts the hidden chip, each
network on each of the three chips (`accuracy_matrix[network][chip]`). Reported: the
accuracies, the differences a - b and a - c, the probing runs and wall times, the twin's
fit RMS on the probe traces, JAX version and CPU model.

    python benchmarks/twin_yinyang.py --output twin_yinyang.json          # the bar
    python benchmarks/twin_yinyang.py --smoke                             # seconds-scale check
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

import bss2jax as bj
from bss2jax import data as bd, yinyang
from bss2jax._train import evaluate_backends, fit
from bss2jax.yinyang._options import add_train_arguments, train_configs

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import emit, machine  # noqa: E402
from twin import field_errors, probe_and_fit  # noqa: E402


def twin_quality(chip: bj.ChipInstance, hidden: bj.ChipInstance, used) -> dict:
    """`chip` against the hidden one on the network's circuits: each field's error
    (`twin.field_errors`, against the identifiable form), and the RMS log-error of the
    effective gain `synaptic_gain * synapse_gain[circuit, row]` over the `(circuit, row)`
    pairs the network uses (`used`: `network_synapses`), and the share within 5 %."""
    circuits, rows = used
    errors = field_errors(chip, bj.canonical_chip(hidden), np.unique(circuits))

    def effective(c: bj.ChipInstance) -> np.ndarray:
        gains = np.where(
            rows % 2 == 0,
            np.asarray(c.synaptic_gain_exc)[circuits],
            np.asarray(c.synaptic_gain_inh)[circuits],
        )
        return np.log(gains * np.asarray(c.synapse_gain)[circuits, rows])

    error = effective(chip) - effective(hidden)
    errors["effective_gain_log_rms"] = float(np.sqrt(np.mean(error**2)))
    errors["effective_gain_within_5_percent"] = float(np.mean(np.abs(np.expm1(error)) <= 0.05))
    return errors


def network_synapses(network) -> tuple[np.ndarray, np.ndarray]:
    """The `(circuit, row)` pairs, int arrays, whose synapses `network` uses (`bj.place`:
    each neuron's circuit, both rows of each signed input; one circuit per neuron)."""
    circuits, rows = [], []
    for p in bj.place(network).populations.values():
        grid = np.meshgrid(p.circuits.ravel(), np.arange(2 * p.fan_in), indexing="ij")
        circuits.append(grid[0].ravel())
        rows.append(grid[1].ravel())
    return np.concatenate(circuits), np.concatenate(rows)


def recipe_configs(args):
    """`bss2jax train`'s phases at its defaults (chip backend, inject), resized by the
    benchmark's options: `(pretraining, fine_tuning)`."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    train_args = parser.parse_args(["--backend", "chip", "--gradient", "inject"])
    pretraining, random_chips, main = train_configs(train_args)
    if random_chips is not None or pretraining is None:
        raise RuntimeError("the recipe's defaults changed: expected numerics, then the chip")
    if args.pretrain_epochs is not None:
        pretraining = dataclasses.replace(pretraining, epochs=args.pretrain_epochs)
    if args.epochs is not None:
        main = dataclasses.replace(main, epochs=args.epochs)
    sizes = dict(train_size=args.train_size, test_size=args.test_size)
    sizes = {k: v for k, v in sizes.items() if v is not None}
    return dataclasses.replace(pretraining, **sizes), dataclasses.replace(main, **sizes)


def phase(network, config, data, *, backend, eval_backend, key, output, quiet):
    """One phase of the recipe, as `bss2jax train` runs it (`_command._fit_phase`)."""
    train, test = data
    return fit(
        network,
        yinyang.YinYangLoss.from_config(config),
        yinyang.optimiser(config, config.train_size // config.batch_size),
        train,
        test=test,
        epochs=config.epochs,
        batch_size=config.batch_size,
        key=key,
        backend=backend,
        eval_backend=eval_backend,
        eval_loss=yinyang.YinYangLoss.from_config(config, training=False),
        trainable=yinyang.readout_weights if config.trainable == "readout" else None,
        constrain=yinyang.clip_weights,
        output=output,
        config={k: v for k, v in config.to_dict().items() if k != "epochs"},
        progress=False,
        epoch_callback=None if quiet else _print_epoch(str(output)),
        diagnose=False,
    )


def _print_epoch(label: str):
    def report(record: dict) -> None:
        accuracy = 100 * record.get("test_accuracy", float("nan"))
        print(f"{label} epoch {record['epoch']}: test {accuracy:.2f} %", flush=True)

    return report


def chip_phase_backends(chip: bj.ChipInstance, config) -> tuple:
    """`(train_backend, eval_backend)` of the recipe's chip phase with `chip` in the loop."""
    train_backend = bj.RandomChips(
        gradient="inject",
        anchor=chip,
        anchor_probability=config.anchor_probability,
        chips_per_call=config.chips_per_call,
    )
    return train_backend, bj.ChipModel(chip, gradient="inject")


def train_three(args, seed: int, chips: dict, hidden: bj.ChipInstance) -> dict:
    """Pretrain once, fine-tune on each of `chips`, evaluate all on `hidden`."""
    pretraining, main = recipe_configs(args)
    data = bd.yin_yang_splits(main.train_size, main.test_size)
    key = jax.random.key(seed)
    network = yinyang.yin_yang_network(main, key=jax.random.fold_in(key, 0))
    folder = Path(args.output_dir) / f"seed{seed}"
    start = time.perf_counter()
    pretrained = phase(
        network,
        pretraining,
        data,
        backend=bj.Numeric(),
        eval_backend=None,
        key=jax.random.fold_in(key, 4),
        output=folder / "pretrain",
        quiet=args.quiet,
    ).network
    seconds = {"pretrain": time.perf_counter() - start}
    networks = {"pretrained": pretrained}
    own = {}
    for name, chip in chips.items():
        start = time.perf_counter()
        train_backend, eval_backend = chip_phase_backends(chip, main)
        result = phase(
            pretrained,
            main,
            data,
            backend=train_backend,
            eval_backend=eval_backend,
            key=jax.random.fold_in(key, 1),
            output=folder / name,
            quiet=args.quiet,
        )
        networks[name] = result.network
        own[name] = result.history[-1]["test_accuracy"]
        seconds[name] = time.perf_counter() - start
    eval_loss = yinyang.YinYangLoss.from_config(main, training=False)
    backends = [bj.ChipModel(chip) for chip in chips.values()]
    matrix = {
        name: dict(
            zip(
                chips,
                (
                    r["accuracy"]
                    for r in evaluate_backends(
                        net, eval_loss, data[1], backends, key=jax.random.fold_in(key, 2)
                    )
                ),
                strict=True,
            )
        )
        for name, net in networks.items()
    }
    on_hidden = {name: row["hidden"] for name, row in matrix.items()}
    return {
        "seed": seed,
        "accuracy_on_hidden": on_hidden,
        "accuracy_on_own_chip": own,
        "accuracy_matrix": matrix,
        "twin_minus_hidden_points": 100 * (on_hidden["twin"] - on_hidden["hidden"]),
        "twin_minus_nominal_points": 100 * (on_hidden["twin"] - on_hidden["nominal"]),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden-seed", type=int, default=20261207, help="the hidden chip")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--neurons", type=int, default=None, help="default: bj.probe_plan")
    parser.add_argument("--inputs", type=int, default=None, help="default: bj.probe_plan")
    parser.add_argument("--inputs-per-run", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=40)
    parser.add_argument("--tau", type=float, default=6e-6, help="probe's tau_mem = tau_syn")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="default: recipe's")
    parser.add_argument("--epochs", type=int, default=None, help="chip phase; default recipe's")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--output-dir", default="runs/twin-yinyang", help="checkpoints")
    parser.add_argument(
        "--oracle-gains",
        action="store_true",
        help="a fourth arm: the twin with the hidden chip's true synaptic and synapse gains",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument("--fit-only", action="store_true", help="probe and fit, no training")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds to minutes")
    parser.add_argument("--output", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repetitions, args.rounds, args.iterations = 4, 1, 1
        args.pretrain_epochs, args.epochs, args.train_size, args.test_size = 1, 1, 100, 100
    return args


def _mean(runs: list, name: str) -> float | None:
    return float(np.mean([r[name] for r in runs])) if runs else None


def main(argv=None) -> dict:
    args = parse(argv)
    hidden = bj.ChipInstance.random(jax.random.PRNGKey(args.hidden_seed))
    config = bj.ChipConfig()
    network = yinyang.yin_yang_network(recipe_configs(args)[1], key=jax.random.key(0))
    plan = bj.probe_plan(network)
    args.neurons = plan["neurons"] if args.neurons is None else args.neurons
    args.inputs = plan["inputs"] if args.inputs is None else args.inputs
    keys = jax.random.split(jax.random.PRNGKey(args.hidden_seed + 1), 2)
    twin, data, seconds = probe_and_fit(args, hidden, config, keys)
    chips = {"twin": twin.chip, "hidden": hidden, "nominal": bj.ChipInstance.nominal()}
    if args.oracle_gains:  # a diagnosis: the twin with the hidden chip's true synaptic gains
        names = ("synaptic_gain_exc", "synaptic_gain_inh", "synapse_gain")
        chips["twin_true_gains"] = eqx.tree_at(
            lambda c: [getattr(c, n) for n in names],
            twin.chip,
            [getattr(hidden, n) for n in names],
        )
    used = network_synapses(network)
    quality = {n: twin_quality(c, hidden, used) for n, c in chips.items() if n != "hidden"}
    runs = [] if args.fit_only else [train_three(args, seed, chips, hidden) for seed in args.seeds]
    report = {
        "benchmark": "twin_yinyang",
        "command": "python benchmarks/twin_yinyang.py " + " ".join(argv or sys.argv[1:]),
        **machine(),
        "hidden_seed": args.hidden_seed,
        "neurons": args.neurons,
        "inputs": args.inputs,
        "tau": args.tau,
        "backend_runs": data.runs,
        "probe_seconds": round(seconds["probe"], 1),
        "fit_seconds": round(seconds["fit"], 1),
        "fit_trace_rms_lsb": [round(float(x), 3) for x in twin.rms],
        "fit_row_rms_lsb": None
        if twin.row_rms is None
        else [round(float(x), 3) for x in np.asarray(twin.row_rms).mean(1)],
        "chip_errors_on_network_circuits": quality,
        "runs": runs,
        "mean_twin_minus_hidden_points": _mean(runs, "twin_minus_hidden_points"),
        "mean_twin_minus_nominal_points": _mean(runs, "twin_minus_nominal_points"),
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

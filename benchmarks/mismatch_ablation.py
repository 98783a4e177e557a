"""Which part of a chip's mismatch costs a trained Yin-Yang network its accuracy elsewhere.

An accuracy analysis (no timing) of a `bss2jax train` run: the network of `--run DIR` is
evaluated on the chip instance it was trained on (`chip_seed` of the run), on `--donors`
other chip instances, and on hybrids: the trained-on chip with one `ChipInstance` field
(thresholds, leaks, time constants, gains, CADC) taken from a donor chip, or with all
fields of the hidden (or readout) circuits taken from it. A field whose swap costs much
accuracy is one the network depends on. Same test split, same noise key everywhere.

    bss2jax train --output runs/inject-s0 --no-progress
    python benchmarks/mismatch_ablation.py --run runs/inject-s0 --output ablation.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import bss2jax as bj
from bss2jax import data as bd, yinyang
from bss2jax._misc import write_json

PHASES = {"main": ".", "random-chips": "random-chips", "pretrain": "pretrain"}


def load_run(folder: Path, phase: str = "main"):
    """The network of a `bss2jax train` output folder after `phase`, and its config."""
    metrics = json.loads((folder / "metrics.json").read_text())
    values = metrics["config"]
    fields = {f for f in yinyang.YinYangConfig.__dataclass_fields__}
    config = yinyang.YinYangConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
    )
    network = yinyang.yin_yang_network(config, key=jax.random.key(0))
    spec = (
        yinyang.readout_weights(network)
        if config.trainable == "readout"
        else bj.trainable_filter(network)
    )
    opt_state = yinyang.optimiser(config, 1).init(eqx.filter(network, spec))
    checkpoint = folder / PHASES[phase] / "checkpoint.npz"
    (network, _), _ = bj.load_checkpoint(checkpoint, (network, opt_state))
    return network, config, values


def _mix(chip, donor, circuits):
    mask = np.zeros(chip.leak.shape[0], bool)
    mask[np.asarray(circuits).ravel()] = True
    mask = jnp.asarray(mask)

    def pick(own, other):
        where = mask if own.ndim == 1 else mask[:, None]
        return jnp.where(where, other, own)

    return jax.tree.map(pick, chip, donor)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a `bss2jax train` output folder")
    parser.add_argument(
        "--donors", default="1,2,3", help="seeds of the chip instances to take fields from"
    )
    parser.add_argument(
        "--phase",
        choices=tuple(PHASES),
        default="main",
        help="the network after which phase of the run (default: the end)",
    )
    parser.add_argument("--test-size", type=int, default=None, help="default: the run's")
    parser.add_argument("--output", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)

    folder = Path(args.run)
    network, config, values = load_run(folder, args.phase)
    chip_seed = int(values.get("chip_seed", 0))
    donors = [int(s) for s in args.donors.split(",") if s.strip()]
    if not donors or chip_seed in donors:
        raise ValueError(
            f"`--donors` must name chip seeds other than the run's chip {chip_seed}; "
            f"got {args.donors!r}."
        )
    _, test = bd.yin_yang_splits(config.train_size, args.test_size or config.test_size)
    loss = yinyang.YinYangLoss.from_config(config, training=False)
    key = jax.random.key(7)

    def accuracy(chip):
        backend = bj.ChipModel(chip)
        return float(bj.evaluate(network, loss, test, backend=backend, key=key)["accuracy"])

    def chip_of(seed):
        return bj.ChipInstance.random(jax.random.PRNGKey(seed))

    own = chip_of(chip_seed)
    others = [chip_of(s) for s in donors]
    base = accuracy(own)
    report = {
        "run": str(folder),
        "phase": args.phase,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "python": platform.python_version(),
        "chip_seed": chip_seed,
        "donor_seeds": donors,
        "test_size": int(len(test.labels)),
        "accuracy": {
            "trained_chip": base,
            "donors": [accuracy(c) for c in others],
            "nominal_chip": accuracy(bj.ChipInstance.nominal()),
        },
        "swap_one_field": {},
        "swap_circuits": {},
    }
    for name in bj.ChipInstance.__dataclass_fields__:
        hybrid = [
            accuracy(eqx.tree_at(lambda c, n=name: getattr(c, n), own, getattr(o, name)))
            for o in others
        ]
        report["swap_one_field"][name] = {"accuracy": hybrid, "drop": base - float(np.mean(hybrid))}
    placement = bj.place(network)
    populations = list(placement.populations.values())
    for label, population in (("hidden", populations[0]), ("readout", populations[-1])):
        hybrid = [accuracy(_mix(own, o, population.circuits)) for o in others]
        report["swap_circuits"][label] = {"accuracy": hybrid, "drop": base - float(np.mean(hybrid))}

    donor_text = ", ".join(f"{100 * a:.1f}" for a in report["accuracy"]["donors"])
    print(
        f"trained-on chip {chip_seed}: {100 * base:.1f} %; donors {donors}: {donor_text} %; "
        f"nominal chip {100 * report['accuracy']['nominal_chip']:.1f} %"
    )
    print("drop (points) when the trained-on chip takes from the donors:")
    for group in ("swap_one_field", "swap_circuits"):
        for name, entry in report[group].items():
            print(f"  {name:<20s} {100 * entry['drop']:6.2f}")
    if args.output:
        write_json(args.output, report)  # atomically
    return report


if __name__ == "__main__":
    main()

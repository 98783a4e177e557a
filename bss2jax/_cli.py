"""The `bss2jax` command line."""

from __future__ import annotations

import argparse
import sys

from . import _yinyang


def _demo(args: argparse.Namespace) -> int:
    """The intro tutorial's first network: one Synapse onto one LIF, four input spikes."""
    import jax.numpy as jnp
    import numpy as np

    import bss2jax as bj

    inputs = jnp.zeros((50, 1, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)
    net = bj.Sequential(
        [
            bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0)),
            bj.LIF(1, enable_madc_recording=True),
        ]
    )
    (lif,) = bj.run(net, inputs, backend=bj.Numeric(), dt=args.dt)
    spikes = np.flatnonzero(np.asarray(lif.spikes[:, 0, 0]))
    membrane = np.asarray(lif.membrane_cadc[:, 0, 0])
    print("bss2jax demo: Synapse(1 -> 1, weight 63) -> LIF (hxtorch defaults), Numeric backend")
    print(f"input spikes at steps {[10, 15, 20, 30]} (dt = {args.dt:g} s)")
    print(f"output spikes at steps {spikes.tolist()}")
    print("membrane (model units = CADC LSB), one value per step:")
    for start in range(0, len(membrane), 10):
        row = " ".join(f"{v:7.2f}" for v in membrane[start : start + 10])
        print(f"  t={start:3d}: {row}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bss2jax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="emulate the intro tutorial's first network")
    demo.add_argument("--dt", type=float, default=1e-6, help="grid step in seconds")
    demo.set_defaults(func=_demo)
    train = commands.add_parser(
        "train", help="train hxtorch's Yin-Yang network (the main job); resumable"
    )
    _yinyang.add_train_arguments(train)
    train.set_defaults(func=_yinyang.train_command)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

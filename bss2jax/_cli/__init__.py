"""The `bss2jax` command line."""

from __future__ import annotations

import argparse

from ..yinyang import _command as _train_command
from . import _demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bss2jax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="hxtorch's intro tutorial end to end on the chip model")
    demo.add_argument("--dt", type=float, default=1e-6, help="grid step in seconds")
    demo.add_argument("--epochs", type=int, default=200, help="training epochs (section 4)")
    demo.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's step size")
    demo.add_argument("--repetitions", type=int, default=10, help="runs averaged to align")
    demo.add_argument("--seed", type=int, default=0, help="chip instance, noise and data")
    demo.add_argument("--output", help="folder for the figures (PNG); none by default")
    demo.set_defaults(func=_demo.demo_command)
    train = commands.add_parser(
        "train", help="train hxtorch's Yin-Yang network (the main job); resumable"
    )
    _train_command.add_train_arguments(train)
    train.set_defaults(func=_train_command.train_command)
    args = parser.parse_args(argv)
    return args.func(args)

"""The `bss2jax` command line."""

from __future__ import annotations

import argparse

from .._misc import (
    nonnegative_int_argument,
    positive_float_argument,
    positive_int_argument,
)
from ..yinyang import _command as _train_command
from . import _cache, _demo, _fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bss2jax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="hxtorch's intro tutorial end to end on the chip model")
    demo.add_argument(
        "--dt", type=positive_float_argument, default=1e-6, help="grid step in seconds"
    )
    demo.add_argument(
        "--epochs", type=positive_int_argument, default=200, help="training epochs (section 4)"
    )
    demo.add_argument(
        "--learning-rate", type=positive_float_argument, default=2e-3, help="Adam's step size"
    )
    demo.add_argument(
        "--repetitions", type=positive_int_argument, default=10, help="runs averaged to align"
    )
    demo.add_argument(
        "--seed", type=nonnegative_int_argument, default=0, help="chip instance, noise and data"
    )
    demo.add_argument("--output", help="folder for the figures (PNG); none by default")
    _cache.add_cache_arguments(demo)
    demo.set_defaults(func=_demo.demo_command, check=None, parser=demo)
    train = commands.add_parser(
        "train", help="train hxtorch's Yin-Yang network (the main job); resumable"
    )
    _train_command.add_train_arguments(train)
    _cache.add_cache_arguments(train)
    train.set_defaults(
        func=_train_command.train_command, check=_train_command.train_configs, parser=train
    )
    fit = commands.add_parser(
        "fit", help="the hardware-aware schedule on your own spike data (--data my.npz)"
    )
    _fit.add_fit_arguments(fit)
    _cache.add_cache_arguments(fit)
    fit.set_defaults(func=_fit.fit_command, check=_fit.check_fit, parser=fit)
    args = parser.parse_args(argv)
    if args.check is not None:
        try:  # options that are wrong together: argparse's `error:` line and status 2
            args.check(args)
        except ValueError as error:
            args.parser.error(str(error))
    _cache.configure(args)
    return args.func(args)

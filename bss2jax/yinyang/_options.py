"""The options of `bss2jax train` and the training phases they select."""

from __future__ import annotations

import dataclasses

from .._misc import (
    nonnegative_float_argument,
    nonnegative_int_argument,
    positive_float_argument,
    positive_int_argument,
    probability_argument,
)
from ._config import (
    CHIP_FINE_TUNING,
    CHIP_FINE_TUNING_THROUGH,
    CHIP_PRETRAINING,
    CHIP_RANDOM,
    EVENTPROP,
    YinYangConfig,
)

BACKENDS = ("numeric", "chip")
GRADIENTS = ("inject", "through", "eventprop")
DEFAULT_BACKEND = "chip"

_DEFAULT = YinYangConfig()
# the readout's decoding and its scale (`YinYangConfig.decoder`, `.readout_scale`)
DECODERS = {"max": _DEFAULT.readout_scale, "mean": EVENTPROP.readout_scale}

# `bss2jax train`'s options in the order `--help` lists them: (flag, `add_argument` keywords).
OPTIONS = (
    (
        "--backend",
        dict(
            choices=BACKENDS,
            default=DEFAULT_BACKEND,
            help=f"what runs the network in training (default {DEFAULT_BACKEND})",
        ),
    ),
    (
        "--gradient",
        dict(
            choices=GRADIENTS,
            default="inject",
            help="gradient: inject (chip forward, numerics' surrogate backward), through (the "
            "chip model's own) or eventprop (exact spike-time gradients, Wunderlich & Pehle "
            "2021, on the observed spikes; every phase, numerics too)",
        ),
    ),
    (
        "--epochs",
        dict(
            type=positive_int_argument,
            default=None,
            help=f"epochs on the backend (default {_DEFAULT.epochs} numeric, "
            f"{CHIP_FINE_TUNING.epochs} chip)",
        ),
    ),
    (
        "--pretrain-epochs",
        dict(
            type=nonnegative_int_argument,
            default=CHIP_PRETRAINING.epochs,
            help="chip backend: epochs of numerics first, with training noise standing for a "
            f"chip's mismatch (default {CHIP_PRETRAINING.epochs})",
        ),
    ),
    (
        "--pretrain-lr",
        dict(
            type=positive_float_argument,
            default=None,
            help=f"chip backend: that phase's learning rate (default {CHIP_PRETRAINING.lr}, "
            f"{EVENTPROP.lr} with --gradient eventprop)",
        ),
    ),
    (
        "--pretrain-noise",
        dict(
            type=nonnegative_float_argument,
            default=1.0,
            help="chip backend: factor on that training noise (default 1: weights 5 %%, "
            "per-neuron gains 7 %%, leaks and thresholds 0.02, time constants 2 %%; 0: none)",
        ),
    ),
    (
        "--pretrain-noise-draws",
        dict(
            type=positive_int_argument,
            default=CHIP_PRETRAINING.noise_draws,
            help="chip backend: draws of that noise per batch, each for an equal part of it "
            f"(default {CHIP_PRETRAINING.noise_draws}; the batch size must be a multiple)",
        ),
    ),
    (
        "--random-chip-epochs",
        dict(
            type=nonnegative_int_argument,
            default=0,
            help="chip backend: then epochs on the chip model with new random chip instances "
            f"({CHIP_RANDOM.chips_per_call} per batch), gradient through (default 0: skipped)",
        ),
    ),
    (
        "--anchor-probability",
        dict(
            type=probability_argument,
            default=None,
            help="chip backend, last phase: chance that a batch runs on the chip trained on "
            "rather than on a random chip (default "
            f"{CHIP_FINE_TUNING.anchor_probability}, "
            f"{CHIP_FINE_TUNING_THROUGH.anchor_probability} "
            "with --gradient through; 1 trains on that chip alone)",
        ),
    ),
    (
        "--chips-per-call",
        dict(
            type=positive_int_argument,
            default=None,
            help="chip backend, last phase: chips per batch, each running an equal share of it "
            f"(default {CHIP_FINE_TUNING.chips_per_call}; the batch size must be a multiple)",
        ),
    ),
    (
        "--decoder",
        dict(
            choices=DECODERS,
            default=None,
            help="the readout's decoding: its max over time (scale "
            f"{DECODERS['max']}) or its mean (scale {DECODERS['mean']}); default "
            f"{EVENTPROP.decoder} with --gradient eventprop, else {_DEFAULT.decoder}",
        ),
    ),
    ("--batch-size", dict(type=positive_int_argument, default=_DEFAULT.batch_size)),
    (
        "--lr",
        dict(
            type=positive_float_argument,
            default=None,
            help=f"Adam's learning rate on the backend (default {_DEFAULT.lr} numeric, "
            f"{EVENTPROP.lr} numeric eventprop, {CHIP_FINE_TUNING.lr} chip, "
            f"{CHIP_FINE_TUNING_THROUGH.lr} chip through)",
        ),
    ),
    (
        "--lr-decay",
        dict(
            type=positive_float_argument,
            default=None,
            help=f"learning-rate factor per epoch (default {_DEFAULT.lr_decay} numeric, "
            f"{EVENTPROP.lr_decay} numeric eventprop, {CHIP_FINE_TUNING.lr_decay} chip)",
        ),
    ),
    (
        "--weight-noise",
        dict(
            type=nonnegative_float_argument,
            default=None,
            help="relative weight noise in training on the backend (default 0)",
        ),
    ),
    (
        "--gain-noise",
        dict(
            type=nonnegative_float_argument,
            default=None,
            help="relative per-neuron gain noise in training on the backend (default 0)",
        ),
    ),
    (
        "--neuron-noise",
        dict(
            type=nonnegative_float_argument,
            default=None,
            help="per-neuron noise on thresholds, leaks (model units; chip values alike) and "
            "time constants (relative) in training on the backend (default 0)",
        ),
    ),
    (
        "--trainable",
        dict(
            choices=("all", "readout"),
            default=None,
            help="weights trained in the last phase: all, or the readout's only (default all; "
            "readout keeps the hidden layer of the earlier phases)",
        ),
    ),
    ("--train-size", dict(type=positive_int_argument, default=_DEFAULT.train_size)),
    ("--test-size", dict(type=positive_int_argument, default=_DEFAULT.test_size)),
    (
        "--hidden",
        dict(type=positive_int_argument, default=_DEFAULT.hidden, help="hidden LIF neurons"),
    ),
    ("--seed", dict(type=nonnegative_int_argument, default=0, help="weights, shuffling and noise")),
    (
        "--chip-seed",
        dict(type=nonnegative_int_argument, default=0, help="the chip instance trained on"),
    ),
    (
        "--transfer",
        dict(
            type=nonnegative_int_argument,
            default=5,
            help="evaluate the trained network on this many other chip instances (chip backend)",
        ),
    ),
    (
        "--output",
        dict(
            default=None,
            help="folder for metrics.json, checkpoint.npz and plots; rerunning with the same "
            "folder resumes (default "
            "runs/yinyang-<backend>[-<gradient>-chip<chip seed>]-seed<seed>)",
        ),
    ),
    (
        "--checkpoint-every",
        dict(type=positive_int_argument, default=None, help="steps between checkpoints (1 epoch)"),
    ),
    ("--no-progress", dict(action="store_true", help="no progress bar")),
    ("--no-plots", dict(action="store_true", help="skip the plots")),
)


def add_train_arguments(parser) -> None:
    """The options of `bss2jax train` (defaults: the main job), from the table `OPTIONS`."""
    for flag, keywords in OPTIONS:
        parser.add_argument(flag, **keywords)


def train_configs(args) -> tuple[YinYangConfig | None, YinYangConfig | None, YinYangConfig]:
    """The phases `bss2jax train args` runs: (numerics or None, random chips or None, main)."""
    chip = args.backend == "chip"
    eventprop = args.gradient == "eventprop"
    main = EVENTPROP if eventprop else YinYangConfig()
    if chip:
        main = CHIP_FINE_TUNING_THROUGH if args.gradient == "through" else CHIP_FINE_TUNING
    decoder = getattr(args, "decoder", None) or (EVENTPROP.decoder if eventprop else "max")
    common = dict(
        batch_size=args.batch_size,
        train_size=args.train_size,
        test_size=args.test_size,
        hidden=args.hidden,
        decoder=decoder,
        readout_scale=DECODERS[decoder],
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
    pretraining = _pretraining(args, chip, common)
    random_chips = None
    random_epochs = getattr(args, "random_chip_epochs", 0)
    if chip and random_epochs:
        random_chips = dataclasses.replace(CHIP_RANDOM, **common, epochs=random_epochs)
    _check_phases(args, chip, pretraining, random_chips, main, random_epochs)
    return pretraining, random_chips, main


def _pretraining(args, chip: bool, common: dict) -> YinYangConfig | None:
    """The numerics phase with mismatch-like noise (chip backend, `--pretrain-epochs` > 0)."""
    noise = getattr(args, "pretrain_noise", 1.0)
    if not noise >= 0:
        raise ValueError(f"`--pretrain-noise` must be a non-negative float; got {noise}.")
    draws = getattr(args, "pretrain_noise_draws", CHIP_PRETRAINING.noise_draws)
    if not (chip and args.pretrain_epochs):
        return None
    if draws < 1 or args.batch_size % draws:
        raise ValueError(
            "`--pretrain-noise-draws` must be a positive int that divides the batch size "
            f"({args.batch_size}); got {draws}."
        )
    return dataclasses.replace(
        CHIP_PRETRAINING,
        **common,
        epochs=args.pretrain_epochs,
        lr=getattr(args, "pretrain_lr", None)
        or (EVENTPROP.lr if args.gradient == "eventprop" else CHIP_PRETRAINING.lr),
        noise_draws=draws,
        **{
            name: noise * getattr(CHIP_PRETRAINING, name)
            for name in ("weight_noise", "gain_noise", "neuron_noise")
        },
    )


def _check_phases(args, chip, pretraining, random_chips, main, random_epochs) -> None:
    """Raise `ValueError`, naming the option, for sizes and shares the phases cannot use."""
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

"""The main job's recipe: hxtorch's Yin-Yang example network, its loss and its training.

Network (hxtorch's `yinyang_model.py`): 5 inputs (x, y, 1-x, 1-y and a bias spike) → 120
LIF (leak and reset `Mixed(0, 80)`, threshold `Mixed(1, 150)`, tau_mem = tau_syn = 6 us)
→ 3 LI (leak `Mixed(0, 80)`, 6 us); decoded by max over time times `readout_scale`, trained
with cross-entropy. Coordinates are encoded between `t_early` and `t_late` on a `steps`
grid of `dt` (2 / 26 / bias 2 us, 38 steps of 1 us: hxtorch's defaults).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import data as bd
from ._losses import accuracy, cross_entropy, firing_regulariser
from ._network import Sequential
from ._neurons import LI, LIF
from ._parameters import Mixed
from ._synapse import Synapse
from ._transforms import WEIGHT_MAX, LinearSaturating, linear_saturating


@dataclasses.dataclass(frozen=True)
class YinYangConfig:
    """Hyperparameters of one training phase of the Yin-Yang job.

    The defaults are the numerics phase: 30 epochs of Adam at 5e-3, decaying by 0.9 per
    epoch, no training noise (`bss2jax train --backend numeric`). `CHIP_PRETRAINING`,
    `CHIP_RANDOM` and `CHIP_FINE_TUNING` are the three phases of the chip job.
    `anchor_probability` (chip phases): the chance that a batch runs on the chip trained
    on rather than on a freshly drawn one (1: always that chip).
    """

    train_size: int = 5000
    test_size: int = 1000
    hidden: int = 120
    tau: float = 6e-6
    dt: float = 1e-6
    steps: int = 38
    t_early: float = 2e-6
    t_late: float = 26e-6
    t_bias: float = 2e-6
    repetitions: int = 5
    integrator: str = "exact"
    capacitance: float = 20.0
    synapse_dac_bias: float = 600.0
    weight_scale: float = 36.6
    output_weight_scale: float = 36.6
    hidden_trace_scale: float = 1.0 / 70.0
    readout_trace_scale: float = 1.0 / 70.0
    readout_scale: float = 10.0
    decoder: str = "max"
    init_hidden: tuple[float, float] = (0.2, 0.3)
    init_output: tuple[float, float] = (0.0, 0.1)
    weight_noise: float = 0.0
    gain_noise: float = 0.0
    neuron_noise: float = 0.0
    firing_upper: float = 2.0
    firing_lower: float = 0.0
    firing_weight: float = 0.0
    lr: float = 5e-3
    lr_decay: float = 0.9
    epochs: int = 30
    batch_size: int = 50
    trainable: str = "all"
    anchor_probability: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHIP_PRETRAINING = YinYangConfig(epochs=30)
"""Phase 1 of the chip job: ideal numerics."""
CHIP_RANDOM = YinYangConfig(epochs=20, lr=5e-3, lr_decay=0.9)
"""Phase 2: the chip model on a new random chip instance every batch, gradient "through"."""
CHIP_FINE_TUNING = YinYangConfig(epochs=6, lr=1e-3, lr_decay=0.8, anchor_probability=0.3)
"""Phase 3: the chip in the loop (inject mode), each batch on it with probability 0.3 and
on a random chip otherwise, so that the network adapts to its chip without leaning on it."""


def yin_yang_network(config: YinYangConfig, *, key: jax.Array) -> Sequential:
    """hxtorch's Yin-Yang network for `config`, weights drawn from `key`."""
    k_hidden, k_output = jax.random.split(key)
    hidden_weight = config.init_hidden[0] + config.init_hidden[1] * jax.random.normal(
        k_hidden, (config.hidden, 5 * config.repetitions)
    )
    output_weight = config.init_output[0] + config.init_output[1] * jax.random.normal(
        k_output, (3, config.hidden)
    )
    potentials = dict(leak=Mixed(0.0, 80.0), reset=Mixed(0.0, 80.0), threshold=Mixed(1.0, 150.0))
    return Sequential(
        [
            Synapse(
                5 * config.repetitions,
                config.hidden,
                weight=hidden_weight,
                transform=linear_saturating(config.weight_scale),
            ),
            LIF(
                config.hidden,
                **potentials,
                tau_mem=config.tau,
                tau_syn=config.tau,
                trace_scale=config.hidden_trace_scale,
                shift_cadc_to_first=True,
                membrane_capacitance=Mixed(10e-6, config.capacitance),
                integrator=config.integrator,
                synapse_dac_bias=config.synapse_dac_bias,
            ),
            Synapse(
                config.hidden,
                3,
                weight=output_weight,
                transform=linear_saturating(config.output_weight_scale),
            ),
            LI(
                3,
                leak=Mixed(0.0, 80.0),
                tau_mem=config.tau,
                tau_syn=config.tau,
                trace_scale=config.readout_trace_scale,
                shift_cadc_to_first=True,
                membrane_capacitance=Mixed(10e-6, config.capacitance),
                integrator=config.integrator,
                synapse_dac_bias=config.synapse_dac_bias,
            ),
        ]
    )


class YinYangLoss(eqx.Module):
    """Cross-entropy on `readout_scale * max_over_time(readout)`, plus a firing penalty.

    A loss for `bj.fit`: `loss(network, batch, *, key, backend) -> (value, {"accuracy"})`
    with `batch` a `bd.YinYang` of coordinates `(batch, 4)` and labels `(batch,)`.
    """

    steps: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    t_early: float = eqx.field(static=True)
    t_late: float = eqx.field(static=True)
    t_bias: float = eqx.field(static=True)
    repetitions: int = eqx.field(static=True)
    readout_scale: float = eqx.field(static=True)
    decoder: str = eqx.field(static=True)
    weight_noise: float = eqx.field(static=True)
    gain_noise: float = eqx.field(static=True)
    neuron_noise: float = eqx.field(static=True)
    firing_upper: float = eqx.field(static=True)
    firing_lower: float = eqx.field(static=True)
    firing_weight: float = eqx.field(static=True)

    @classmethod
    def from_config(cls, config: YinYangConfig, *, training: bool = True) -> YinYangLoss:
        return cls(
            weight_noise=config.weight_noise if training else 0.0,
            gain_noise=config.gain_noise if training else 0.0,
            neuron_noise=config.neuron_noise if training else 0.0,
            steps=config.steps,
            dt=config.dt,
            t_early=config.t_early,
            t_late=config.t_late,
            t_bias=config.t_bias,
            repetitions=config.repetitions,
            readout_scale=config.readout_scale,
            decoder=config.decoder,
            firing_upper=config.firing_upper,
            firing_lower=config.firing_lower,
            firing_weight=config.firing_weight,
        )

    def scores(self, network, coordinates, *, key, backend):
        """Decoded readout `(batch, 3)` and the hidden spikes `(time, batch, hidden)`."""
        from ._run import run

        spikes = bd.encode_coordinates(
            coordinates,
            steps=self.steps,
            t_early=self.t_early,
            t_late=self.t_late,
            t_bias=self.t_bias,
            dt=self.dt,
        )
        spikes = jnp.tile(spikes, (1, 1, self.repetitions))
        if self.weight_noise or self.gain_noise or self.neuron_noise:
            key, noise_key = jax.random.split(key)
            network = perturb(
                network, noise_key, self.weight_noise, self.gain_noise, self.neuron_noise
            )
        hidden, readout = run(network, spikes, backend=backend, dt=self.dt, key=key)
        decode = {"max": bd.max_over_time, "mean": bd.mean_over_time}[self.decoder]
        return self.readout_scale * decode(readout.membrane_cadc), hidden.spikes

    def __call__(self, network, batch, *, key, backend):
        coordinates, labels = batch
        scores, spikes = self.scores(network, coordinates, key=key, backend=backend)
        value = cross_entropy(scores, labels)
        if self.firing_weight:
            value = value + self.firing_weight * firing_regulariser(
                spikes, upper=self.firing_upper, lower=self.firing_lower or None
            )
        return value, {"accuracy": accuracy(scores, labels)}


def perturb(network, key, weight_noise: float, gain_noise: float, neuron_noise: float = 0.0):
    """Training noise that stands for a chip's fixed-pattern mismatch.

    Every weight is multiplied by `(1 + weight_noise * N(0, 1))` and every row (target
    neuron; one factor for its excitatory and one for its inhibitory inputs) by
    `(1 + gain_noise * N(0, 1))`. With `neuron_noise`, every LIF's model threshold and leak
    move by `neuron_noise * N(0, 1)` (model units, per neuron; their chip values by the
    same amount in LSB, like the chip's calibration residuals) and every population's time
    constants by a factor `exp(neuron_noise * N(0, 1))`.
    """
    layers = list(network.layers)
    for index, layer in enumerate(layers):
        key, k_weight, k_gain, k_neuron = jax.random.split(key, 4)
        if isinstance(layer, Synapse):
            shape = layer.weight.shape
            gains = 1.0 + gain_noise * jax.random.normal(k_gain, (2, shape[0], 1))
            factor = (1.0 + weight_noise * jax.random.normal(k_weight, shape)) * jnp.where(
                layer.weight > 0, gains[0], gains[1]
            )
            layers[index] = eqx.tree_at(lambda s: s.weight, layer, layer.weight * factor)
        elif neuron_noise:
            k_leak, k_threshold, k_mem, k_syn = jax.random.split(k_neuron, 4)
            size = layer.size

            span = _chip_per_model_unit(layer) if layer.fire else 1.0

            def shifted(value, k, size=size, span=span):
                noise = neuron_noise * jax.random.normal(k, (size,))
                if isinstance(value, Mixed):
                    return Mixed(value.model + noise, value.hardware + span * noise)
                return value + noise

            def scaled(value, k, size=size):
                return value * jnp.exp(neuron_noise * jax.random.normal(k, (size,)))

            names = ["tau_mem", "tau_syn"]
            values = [scaled(layer.tau_mem, k_mem), scaled(layer.tau_syn, k_syn)]
            if layer.fire:
                names += ["leak", "threshold"]
                values += [shifted(layer.leak, k_leak), shifted(layer.threshold, k_threshold)]
            layers[index] = eqx.tree_at(
                lambda n, names=names: [getattr(n, name) for name in names], layer, values
            )
    return eqx.tree_at(lambda n: n.layers, network, tuple(layers))


def _chip_per_model_unit(neuron):
    """Chip LSB per model unit of potential: (threshold - leak) on the chip over the model's."""
    from ._parameters import hardware_value, model_value

    chip = hardware_value(neuron.threshold) - hardware_value(neuron.leak)
    model = model_value(neuron.threshold) - model_value(neuron.leak)
    return chip / model


def readout_weights(network):
    """Filter spec: only the readout projection's (the last synapse's) weights train."""
    spec = jax.tree_util.tree_map(lambda _: False, network)
    return eqx.tree_at(lambda n: n.layers[-2].weight, spec, True)


def clip_weights(network):
    """Keep every weight inside the chip's range: `|w| <= 63 / scale` (hxtorch's clamp)."""
    layers = list(network.layers)
    for index, layer in enumerate(layers):
        if isinstance(layer, Synapse) and isinstance(layer.transform, LinearSaturating):
            bound = WEIGHT_MAX / layer.transform.scale
            layers[index] = eqx.tree_at(
                lambda s: s.weight, layer, jnp.clip(layer.weight, -bound, bound)
            )
    return eqx.tree_at(lambda n: n.layers, network, tuple(layers))


def optimiser(config: YinYangConfig, batches_per_epoch: int) -> optax.GradientTransformation:
    """Adam with an exponential decay of the learning rate by `lr_decay` per epoch."""
    schedule = optax.exponential_decay(
        config.lr, transition_steps=batches_per_epoch, decay_rate=config.lr_decay
    )
    return optax.adam(schedule)


# --------------------------------------------------------------------------------------------
# The `bss2jax train` command
# --------------------------------------------------------------------------------------------

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
        help=f"chip backend: epochs of ideal numerics first (default {CHIP_PRETRAINING.epochs})",
    )
    parser.add_argument(
        "--random-chip-epochs",
        type=int,
        default=CHIP_RANDOM.epochs,
        help="chip backend: then epochs on the chip model with a new random chip instance "
        f"per batch, gradient through (default {CHIP_RANDOM.epochs}; 0 skips them)",
    )
    parser.add_argument(
        "--anchor-probability",
        type=float,
        default=None,
        help="chip backend, last phase: chance that a batch runs on the chip trained on "
        "rather than on a random chip (default "
        f"{CHIP_FINE_TUNING.anchor_probability}; 1 trains on that chip alone)",
    )
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam's learning rate on the backend (default {default.lr} numeric, "
        f"{CHIP_FINE_TUNING.lr} chip)",
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
        help="weights trained on the backend: all, or the readout's only (chip default all; "
        "readout keeps the robust hidden layer of the numerics phase and transfers better)",
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
    main = CHIP_FINE_TUNING if chip else YinYangConfig()
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
        )
        if getattr(args, name, None) is not None
    }
    main = dataclasses.replace(main, **common, **changes)
    pretraining = random_chips = None
    if chip and args.pretrain_epochs:
        pretraining = dataclasses.replace(CHIP_PRETRAINING, **common, epochs=args.pretrain_epochs)
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


def make_backend(
    name: str, *, gradient: str = "inject", chip_seed: int = 0, anchor_probability: float = 1.0
):
    """The backend called `name` ("numeric" or "chip": a seeded chip instance).

    With `anchor_probability < 1` the chip backend is `RandomChips` anchored to that
    instance: each call runs on it with that probability, else on a freshly drawn chip.
    """
    from ._backend import Numeric

    if name == "numeric":
        return Numeric()
    if name == "chip":
        from ._backend import ChipInstance, ChipModel, RandomChips

        chip = ChipInstance.random(jax.random.PRNGKey(chip_seed))
        if anchor_probability < 1.0:
            return RandomChips(
                gradient=gradient, anchor=chip, anchor_probability=anchor_probability
            )
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
    return values


def _fit_phase(
    network, config, args, *, backend, output, key, phase, train, test, eval_backend=None
):
    from ._train import fit

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

    With the chip backend the job has two phases: `--pretrain-epochs` of numerics with
    noise that stands for the chips' mismatch (checkpointed in `<output>/pretrain`), then
    `--epochs` with the chip model in the loop. A rerun with the same output folder
    resumes whichever phase was interrupted.
    """
    from ._backend import Numeric
    from ._train import evaluate_backends, write_json

    if args.transfer < 0:
        raise ValueError(f"`--transfer` must be a non-negative int; got {args.transfer}.")
    pretraining, random_chips, config = train_configs(args)
    backend = make_backend(args.backend, gradient=args.gradient, chip_seed=args.chip_seed)
    train_backend = make_backend(
        args.backend,
        gradient=args.gradient,
        chip_seed=args.chip_seed,
        anchor_probability=config.anchor_probability,
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
        plan += f" with probability {config.anchor_probability:g}, else a random chip"
    if random_chips is not None:
        plan = f"{random_chips.epochs} epochs on random chips (through), then " + plan
    if pretraining is not None:
        plan = f"{pretraining.epochs} epochs of numerics, then " + plan
    print(
        f"bss2jax train: Yin-Yang {config.train_size} train / {config.test_size} test, "
        f"{5 * config.repetitions} inputs -> {config.hidden} LIF -> 3 LI; {plan}; "
        f"batches of {config.batch_size}; output {output}",
        flush=True,
    )
    started = time.perf_counter()
    pretrain_history, resumed = [], []
    if pretraining is not None:
        result = _fit_phase(
            network,
            pretraining,
            args,
            backend=Numeric(),
            output=output / "pretrain",
            key=jax.random.fold_in(key, 4),
            phase="pretrain",
            train=train,
            test=test,
        )
        network, pretrain_history = result.network, result.history
        resumed.append(result.resumed_step)
    random_history = []
    if random_chips is not None:
        from ._backend import RandomChips

        result = _fit_phase(
            network,
            random_chips,
            args,
            backend=RandomChips(gradient="through"),
            eval_backend=backend,
            output=output / "random-chips",
            key=jax.random.fold_in(key, 5),
            phase="random",
            train=train,
            test=test,
        )
        network, random_history = result.network, result.history
        resumed.append(result.resumed_step)
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
    }
    if pretraining is not None:
        metrics["pretrain_config"] = _run_config(pretraining, args, "pretrain") | {
            "epochs": pretraining.epochs
        }
        metrics["pretrain_history"] = pretrain_history
    if random_chips is not None:
        metrics["random_chips_config"] = _run_config(random_chips, args, "random") | {
            "epochs": random_chips.epochs
        }
        metrics["random_chips_history"] = random_history
    write_json(output / "metrics.json", metrics)
    if not args.no_plots:
        plot_curves(
            result.history,
            output / "curves.png",
            [("numerics", pretrain_history), ("random chips", random_history)],
            args.backend,
        )
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


def plot_curves(history: list, path, earlier: list | None = None, label: str | None = None) -> None:
    """Loss and accuracy per epoch, train and test, into a PNG at `path`.

    `earlier`: `(name, history)` of the phases before (e.g. numerics), drawn first, in
    other line styles.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    earlier = [(name, h) for name, h in (earlier or []) if h]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for split, colour in (("train", "C0"), ("test", "C1")):
            name = f"{split}_{metric}"
            offset = 0
            for (phase, records), style in zip(earlier, ("--", ":", "-."), strict=False):
                if all(name in h for h in records):
                    axis.plot(
                        [offset + h["epoch"] for h in records],
                        [h[name] for h in records],
                        style,
                        color=colour,
                        label=f"{split} ({phase})",
                    )
                offset += len(records)
            if all(name in h for h in history):
                axis.plot(
                    [offset + h["epoch"] for h in history],
                    [h[name] for h in history],
                    marker="o",
                    color=colour,
                    label=split if label is None else f"{split} ({label})",
                )
        if metric == "accuracy":
            axis.set_ylim(max(0.0, axis.get_ylim()[0]), 1.0)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Yin-Yang training")
    figure.savefig(path, dpi=120)


def plot_decision_map(network, loss, test, path, *, backend, key, resolution: int = 100) -> None:
    """The predicted class over the Yin-Yang plane, with the test samples, into a PNG."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    axis_values = (np.arange(resolution) + 0.5) / resolution
    x, y = np.meshgrid(axis_values, axis_values)
    x, y = x.ravel(), y.ravel()
    coordinates = jnp.asarray(np.stack([x, y, 1 - x, 1 - y], axis=1))
    predict = eqx.filter_jit(
        lambda n, c, k, b: jnp.argmax(loss.scores(n, c, key=k, backend=b)[0], axis=-1)
    )
    labels = np.concatenate(
        [
            np.asarray(
                predict(network, coordinates[i : i + 1200], jax.random.fold_in(key, i), backend)
            )
            for i in range(0, len(coordinates), 1200)
        ]
    ).astype(float)
    labels[(x - 0.5) ** 2 + (y - 0.5) ** 2 > 0.25] = np.nan
    colours = ListedColormap(["#2b6cb0", "#dd6b20", "#38a169"])
    figure = Figure(figsize=(5, 5), layout="constrained")
    axis = figure.subplots()
    axis.imshow(
        labels.reshape(resolution, resolution),
        origin="lower",
        extent=(0, 1, 0, 1),
        cmap=colours,
        vmin=0,
        vmax=2,
        alpha=0.35,
        interpolation="nearest",
    )
    test_labels = np.asarray(test.labels)
    points = np.asarray(test.coordinates)
    predicted = np.concatenate(
        [
            np.asarray(
                predict(
                    network,
                    jnp.asarray(points[i : i + 1200]),
                    jax.random.fold_in(key, 1_000_000 + i),
                    backend,
                )
            )
            for i in range(0, len(points), 1200)
        ]
    )
    right = predicted == test_labels
    axis.scatter(
        points[right, 0], points[right, 1], c=test_labels[right], cmap=colours, vmin=0, vmax=2, s=8
    )
    axis.scatter(
        points[~right, 0],
        points[~right, 1],
        c="k",
        marker="x",
        s=20,
        label=f"misclassified ({int((~right).sum())})",
    )
    axis.set_xlabel("x")
    axis.set_ylabel("y")
    axis.set_aspect("equal")
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(f"decision map, test accuracy {100 * right.mean():.1f} %")
    figure.savefig(path, dpi=120)

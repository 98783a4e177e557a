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
    """Hyperparameters of the Yin-Yang job (the CLI's defaults)."""

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
    init_hidden: tuple[float, float] = (0.2, 0.3)
    init_output: tuple[float, float] = (0.0, 0.1)
    weight_noise: float = 0.05
    gain_noise: float = 0.1
    firing_upper: float = 2.0
    firing_lower: float = 0.0
    firing_weight: float = 0.0
    lr: float = 3e-3
    lr_decay: float = 0.97
    epochs: int = 20
    batch_size: int = 50

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    weight_noise: float = eqx.field(static=True)
    gain_noise: float = eqx.field(static=True)
    firing_upper: float = eqx.field(static=True)
    firing_lower: float = eqx.field(static=True)
    firing_weight: float = eqx.field(static=True)

    @classmethod
    def from_config(cls, config: YinYangConfig, *, training: bool = True) -> YinYangLoss:
        return cls(
            weight_noise=config.weight_noise if training else 0.0,
            gain_noise=config.gain_noise if training else 0.0,
            steps=config.steps,
            dt=config.dt,
            t_early=config.t_early,
            t_late=config.t_late,
            t_bias=config.t_bias,
            repetitions=config.repetitions,
            readout_scale=config.readout_scale,
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
        if self.weight_noise or self.gain_noise:
            key, noise_key = jax.random.split(key)
            network = perturb_weights(network, noise_key, self.weight_noise, self.gain_noise)
        hidden, readout = run(network, spikes, backend=backend, dt=self.dt, key=key)
        return self.readout_scale * bd.max_over_time(readout.membrane_cadc), hidden.spikes

    def __call__(self, network, batch, *, key, backend):
        coordinates, labels = batch
        scores, spikes = self.scores(network, coordinates, key=key, backend=backend)
        value = cross_entropy(scores, labels)
        if self.firing_weight:
            value = value + self.firing_weight * firing_regulariser(
                spikes, upper=self.firing_upper, lower=self.firing_lower or None
            )
        return value, {"accuracy": accuracy(scores, labels)}


def perturb_weights(network, key, weight_noise: float, gain_noise: float):
    """Multiply every weight by `(1 + weight_noise * N(0, 1))` and every row (target
    neuron; one factor for its excitatory and one for its inhibitory inputs) by
    `(1 + gain_noise * N(0, 1))`: training noise that stands for the chip's
    per-synapse and per-neuron gain mismatch, so the trained network tolerates other chips.
    """
    layers = list(network.layers)
    for index, layer in enumerate(layers):
        if isinstance(layer, Synapse):
            key, k_weight, k_gain = jax.random.split(key, 3)
            shape = layer.weight.shape
            gains = 1.0 + gain_noise * jax.random.normal(k_gain, (2, shape[0], 1))
            factor = (1.0 + weight_noise * jax.random.normal(k_weight, shape)) * jnp.where(
                layer.weight > 0, gains[0], gains[1]
            )
            layers[index] = eqx.tree_at(lambda s: s.weight, layer, layer.weight * factor)
    return eqx.tree_at(lambda n: n.layers, network, tuple(layers))


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
    parser.add_argument("--epochs", type=int, default=default.epochs)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--lr", type=float, default=default.lr, help="Adam's learning rate")
    parser.add_argument(
        "--lr-decay", type=float, default=default.lr_decay, help="learning-rate factor per epoch"
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
        "folder resumes (default runs/yinyang-<backend>[-<gradient>]-seed<seed>)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=None, help="steps between checkpoints (1 epoch)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")


DEFAULT_BACKEND = "chip"


def make_backend(name: str, *, gradient: str = "inject", chip_seed: int = 0):
    """The backend called `name` ("numeric" or "chip": a seeded chip instance)."""
    from ._backend import Numeric

    if name == "numeric":
        return Numeric()
    if name == "chip":
        from ._backend import ChipInstance, ChipModel

        chip = ChipInstance.random(jax.random.PRNGKey(chip_seed))
        return ChipModel(chip, gradient=gradient)
    raise ValueError(f"`backend` must be one of {BACKENDS}; got {name!r}.")


def _default_output(args) -> str:
    name = f"yinyang-{args.backend}"
    if args.backend == "chip":
        name += f"-{args.gradient}-chip{args.chip_seed}"
    return str(Path("runs") / f"{name}-seed{args.seed}")


def train_command(args) -> int:
    """`bss2jax train`: train the Yin-Yang network; print, save metrics, checkpoint, plots."""
    from tqdm.auto import tqdm

    from ._train import evaluate_backends, fit, write_json

    config = dataclasses.replace(
        YinYangConfig(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        train_size=args.train_size,
        test_size=args.test_size,
        hidden=args.hidden,
    )
    for name in ("epochs", "batch_size", "train_size", "test_size", "hidden"):
        value = getattr(config, name)
        if value < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be a positive int; got {value}.")
    if config.batch_size > config.train_size:
        raise ValueError(
            f"`--batch-size` must not exceed `--train-size` ({config.train_size}); got "
            f"{config.batch_size}."
        )
    if args.transfer < 0:
        raise ValueError(f"`--transfer` must be a non-negative int; got {args.transfer}.")
    backend = make_backend(args.backend, gradient=args.gradient, chip_seed=args.chip_seed)
    output = Path(args.output or _default_output(args))
    run_config = {k: v for k, v in config.to_dict().items() if k != "epochs"} | {
        "backend": args.backend,
        "seed": args.seed,
    }
    if args.backend == "chip":
        run_config |= {"gradient": args.gradient, "chip_seed": args.chip_seed}

    train, test = bd.yin_yang_splits(config.train_size, config.test_size)
    key = jax.random.key(args.seed)
    network = yin_yang_network(config, key=jax.random.fold_in(key, 0))
    loss = YinYangLoss.from_config(config)
    eval_loss = YinYangLoss.from_config(config, training=False)
    batches = config.train_size // config.batch_size
    where = args.backend + (
        f" ({args.gradient} mode, chip {args.chip_seed})" if args.backend == "chip" else ""
    )
    print(
        f"bss2jax train: Yin-Yang {config.train_size} train / {config.test_size} test, "
        f"{5 * config.repetitions} inputs -> {config.hidden} LIF -> 3 LI, on {where}; "
        f"{config.epochs} epochs of {batches} batches of {config.batch_size}; output {output}",
        flush=True,
    )
    started = time.perf_counter()
    result = fit(
        network,
        loss,
        optimiser(config, batches),
        train,
        test=test,
        epochs=config.epochs,
        batch_size=config.batch_size,
        key=jax.random.fold_in(key, 1),
        backend=backend,
        eval_loss=eval_loss,
        constrain=clip_weights,
        output=output,
        checkpoint_every=args.checkpoint_every,
        config=run_config,
        progress=not args.no_progress,
        epoch_callback=None if not args.no_progress else _print_epoch(config.epochs),
    )
    seconds = time.perf_counter() - started
    final = result.history[-1]
    summary: dict[str, Any] = {
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "train_accuracy": final["train_accuracy"],
        "seconds": seconds,
        "resumed_step": result.resumed_step,
    }
    if args.backend == "chip" and args.transfer:
        others = [
            make_backend("chip", gradient=args.gradient, chip_seed=args.chip_seed + 1 + i)
            for i in range(args.transfer)
        ]
        transfer = evaluate_backends(
            result.network, eval_loss, test, others, key=jax.random.fold_in(key, 2)
        )
        accuracies = [r["accuracy"] for r in transfer]
        summary["transfer_chip_seeds"] = [args.chip_seed + 1 + i for i in range(args.transfer)]
        summary["transfer_accuracy"] = accuracies
        summary["transfer_mean_drop"] = final["test_accuracy"] - float(np.mean(accuracies))
    write_json(
        output / "metrics.json",
        {
            "config": run_config | {"epochs": config.epochs},
            "history": result.history,
            "final": summary,
        },
    )
    if not args.no_plots:
        plot_curves(result.history, output / "curves.png")
        plot_decision_map(
            result.network,
            eval_loss,
            test,
            output / "decision_map.png",
            backend=backend,
            key=jax.random.fold_in(key, 3),
        )
    if result.resumed_step is not None:
        tqdm.write(f"(resumed from the checkpoint at step {result.resumed_step})")
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


def _print_epoch(epochs: int):
    def report(record: dict) -> None:
        parts = [f"epoch {record['epoch']}/{epochs}"]
        for split in ("train", "test"):
            if f"{split}_loss" in record:
                parts.append(
                    f"{split} loss {record[f'{split}_loss']:.4f} accuracy "
                    f"{100 * record.get(f'{split}_accuracy', float('nan')):.2f} %"
                )
        parts.append(f"{record['seconds']:.1f} s")
        print(", ".join(parts), flush=True)

    return report


def plot_curves(history: list, path) -> None:
    """Loss and accuracy per epoch, train and test, into a PNG at `path`."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for split in ("train", "test"):
            name = f"{split}_{metric}"
            if all(name in h for h in history):
                axis.plot(epochs, [h[name] for h in history], marker="o", label=split)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
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

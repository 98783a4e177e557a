"""hxtorch's Yin-Yang example as a recipe: the network, its loss, its training phases, plots.

What `bss2jax train` runs, for scripts and notebooks to reuse:

```python
from bss2jax import yinyang
config = yinyang.YinYangConfig()
net = yinyang.yin_yang_network(config, key=jax.random.key(0))
loss = yinyang.YinYangLoss.from_config(config)
```

Network (hxtorch's `yinyang_model.py`): 5 inputs (x, y, 1-x, 1-y and a bias spike) → 120
LIF (leak and reset `Mixed(0, 80)`, threshold `Mixed(1, 150)`, tau_mem = tau_syn = 6 us)
→ 3 LI (leak `Mixed(0, 80)`, 6 us); decoded by max over time times `readout_scale`, trained
with cross-entropy. Coordinates are encoded between `t_early` and `t_late` on a `steps`
grid of `dt` (2 / 26 / bias 2 us, 38 steps of 1 us: hxtorch's defaults).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import data as bd
from .._constants import WEIGHT_MAX
from .._misc import join_batch, split_batch
from .._network import Sequential
from .._neurons import LI, LIF
from .._parameters import Mixed
from .._synapse import Synapse
from .._train._losses import accuracy, cross_entropy, firing_regulariser
from .._transforms import LinearSaturating, linear_saturating


@dataclasses.dataclass(frozen=True)
class YinYangConfig:
    """Hyperparameters of one training phase of the Yin-Yang job.

    The defaults are the numerics phase: 30 epochs of Adam at 5e-3, decaying by 0.9 per
    epoch, no training noise (`bss2jax train --backend numeric`). `CHIP_PRETRAINING` and
    `CHIP_FINE_TUNING` are the phases of the chip job (`CHIP_RANDOM` an optional one in
    between). `anchor_probability` (chip phases): the chance that a group of a batch runs
    on the chip trained on rather than on a freshly drawn one (1: always that chip).
    `chips_per_call` (chip phases): the batch is cut into this many groups, each on its
    own chip (`bj.RandomChips(chips_per_call=...)`). `noise_draws`: likewise for the
    training noise (`weight_noise`, `gain_noise`, `neuron_noise`): each group of a batch
    runs with its own draw (`perturb`).
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
    noise_draws: int = 1
    firing_upper: float = 2.0
    firing_lower: float = 0.0
    firing_weight: float = 0.0
    lr: float = 5e-3
    lr_decay: float = 0.9
    epochs: int = 30
    batch_size: int = 50
    trainable: str = "all"
    anchor_probability: float = 1.0
    chips_per_call: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHIP_PRETRAINING = YinYangConfig(
    epochs=100,
    lr_decay=0.97,
    weight_noise=0.05,
    gain_noise=0.07,
    neuron_noise=0.02,
    noise_draws=5,
)
"""Phase 1 of the chip job: numerics with training noise that stands for a chip's mismatch
(`perturb`, a new draw for every fifth of a batch), so that the network does not lean on
any one synapse's or neuron's exact value. The spreads follow `bj.MismatchProfile()`:
weights 5 % (per-synapse DAC gain), per-neuron gains 7 % (synaptic gain 5 % and the
membrane time constant's 5 % share of the PSP gain, R = tau / C, combined), leaks and
thresholds 0.02 model units (1.4 chip LSB on the 70-LSB span; the profile says 1.5 and 2)
and time constants 2 % (`neuron_noise` sets both). Five draws per batch instead of one:
benchmarks/README.md.
"""
CHIP_RANDOM = YinYangConfig(epochs=10, lr=1e-3, lr_decay=0.9, chips_per_call=5)
"""An optional phase between the two (`bss2jax train --random-chip-epochs N`; off by
default): the chip model, gradient "through", every fifth of a batch on a new random chip
instance. After `CHIP_PRETRAINING` it changes little (benchmarks/README.md: 10 epochs cost
0.1 points on the trained-on chip, gain 0.1 on others, and take 1-2 minutes more)."""
CHIP_FINE_TUNING = YinYangConfig(
    epochs=6, lr=3e-4, lr_decay=0.8, anchor_probability=0.3, chips_per_call=5
)
"""The last phase: the chip in the loop (inject mode). Each fifth of a batch runs on it with
probability 0.3 and on a random chip otherwise, so that the network adapts to its chip
without leaning on it."""
CHIP_FINE_TUNING_THROUGH = dataclasses.replace(CHIP_FINE_TUNING, lr=1e-3, anchor_probability=0.5)
"""The last phase with gradient "through": the chip's own model gives the gradient, so the
phase leans harder on that chip (more accuracy there, less on others)."""


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
    membrane = dict(
        tau_mem=config.tau,
        tau_syn=config.tau,
        shift_cadc_to_first=True,
        membrane_capacitance=Mixed(10e-6, config.capacitance),
        integrator=config.integrator,
        synapse_dac_bias=config.synapse_dac_bias,
    )
    return Sequential(
        [
            Synapse(
                5 * config.repetitions,
                config.hidden,
                weight=hidden_weight,
                transform=linear_saturating(config.weight_scale),
            ),
            LIF(config.hidden, **potentials, **membrane, trace_scale=config.hidden_trace_scale),
            Synapse(
                config.hidden,
                3,
                weight=output_weight,
                transform=linear_saturating(config.output_weight_scale),
            ),
            LI(3, leak=Mixed(0.0, 80.0), **membrane, trace_scale=config.readout_trace_scale),
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
    noise_draws: int = eqx.field(static=True)
    firing_upper: float = eqx.field(static=True)
    firing_lower: float = eqx.field(static=True)
    firing_weight: float = eqx.field(static=True)

    @classmethod
    def from_config(cls, config: YinYangConfig, *, training: bool = True) -> YinYangLoss:
        return cls(
            weight_noise=config.weight_noise if training else 0.0,
            gain_noise=config.gain_noise if training else 0.0,
            neuron_noise=config.neuron_noise if training else 0.0,
            noise_draws=config.noise_draws if training else 1,
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
        from .._run import run

        spikes = bd.encode_coordinates(
            coordinates,
            steps=self.steps,
            t_early=self.t_early,
            t_late=self.t_late,
            t_bias=self.t_bias,
            dt=self.dt,
        )
        spikes = jnp.tile(spikes, (1, 1, self.repetitions))
        noise = (self.weight_noise, self.gain_noise, self.neuron_noise)
        if any(noise) and self.noise_draws > 1:
            hidden, membrane = self._run_groups(network, spikes, key, backend, noise)
        else:
            if any(noise):
                key, noise_key = jax.random.split(key)
                network = perturb(network, noise_key, *noise)
            hidden, readout = run(network, spikes, backend=backend, dt=self.dt, key=key)
            hidden, membrane = hidden.spikes, readout.membrane_cadc
        decode = {"max": bd.max_over_time, "mean": bd.mean_over_time}[self.decoder]
        return self.readout_scale * decode(membrane), hidden

    def _run_groups(self, network, spikes, key, backend, noise):
        """`noise_draws` groups of the batch, each with its own draw of the training noise."""
        from .._run import run

        groups, batch = self.noise_draws, spikes.shape[1]
        if batch % groups:
            raise ValueError(
                f"`noise_draws` ({groups}) must divide the batch size; got a batch of {batch}."
            )

        def one(inputs, group_key):
            noise_key, run_key = jax.random.split(group_key)
            perturbed = perturb(network, noise_key, *noise)
            hidden, readout = run(perturbed, inputs, backend=backend, dt=self.dt, key=run_key)
            return hidden.spikes, readout.membrane_cadc

        hidden, readout = jax.vmap(one)(split_batch(spikes, groups), jax.random.split(key, groups))
        return join_batch(hidden), join_batch(readout)

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
    from .._parameters import hardware_value, model_value

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

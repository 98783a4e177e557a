"""The main job's recipe: hxtorch's Yin-Yang example network, its loss and its training.

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
    weight_scale: float = 64.0
    output_weight_scale: float = 64.0
    hidden_trace_scale: float = 1.0 / 70.0
    readout_trace_scale: float = 1.0 / 70.0
    readout_scale: float = 10.0
    init_hidden: tuple[float, float] = (0.5, 1.0)
    init_output: tuple[float, float] = (0.0, 0.3)
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
                synapse_dac_bias=1000.0,
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
                synapse_dac_bias=1000.0,
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
    firing_upper: float = eqx.field(static=True)
    firing_lower: float = eqx.field(static=True)
    firing_weight: float = eqx.field(static=True)

    @classmethod
    def from_config(cls, config: YinYangConfig) -> YinYangLoss:
        return cls(
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

"""The Yin-Yang recipe: hxtorch's network, its loss, the training noise and the optimiser."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
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
from ._config import YinYangConfig


def yin_yang_network(config: YinYangConfig, *, key: jax.Array) -> Sequential:
    """hxtorch's Yin-Yang network for `config`, weights drawn from `key`."""
    k_hidden, k_output = jax.random.split(key)
    hidden_weight = config.init_hidden[0] + config.init_hidden[1] * jax.random.normal(
        k_hidden, (config.hidden, 5 * config.repetitions)
    )
    output_weight = config.init_output[0] + config.init_output[1] * jax.random.normal(
        k_output, (3, config.hidden)
    )
    potentials: dict[str, Any] = dict(
        leak=Mixed(0.0, 80.0), reset=Mixed(0.0, 80.0), threshold=Mixed(1.0, 150.0)
    )
    membrane: dict[str, Any] = dict(
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


# the fields of `YinYangConfig` that `YinYangLoss` reads
_LOSS_FIELDS = (
    *("steps", "dt", "t_early", "t_late", "t_bias", "repetitions", "readout_scale", "decoder"),
    *("weight_noise", "gain_noise", "neuron_noise", "noise_draws"),
    *("firing_upper", "firing_lower", "firing_weight"),
)


class YinYangLoss(eqx.Module):
    """Cross-entropy on `readout_scale * max_over_time(readout)`, plus a firing penalty.

    A loss for `bj.fit`: `loss(network, batch, *, key, backend) -> (value, {"accuracy"})`
    with `batch` a `bd.YinYang` of coordinates `(batch, 4)` and labels `(batch,)`. Build it
    with `from_config`; its `config` holds the settings it reads (`loss.config.steps`, ...).
    """

    config: YinYangConfig = eqx.field(static=True)

    @classmethod
    def from_config(cls, config: YinYangConfig, *, training: bool = True) -> YinYangLoss:
        """The loss of `config`: its encoding, decoding, training noise (none and one draw
        with `training=False`, for evaluation) and firing penalty. It holds a
        `YinYangConfig` of those fields only (the others at their defaults), so that losses
        that agree on them are equal and compile once."""
        kept = {name: getattr(config, name) for name in _LOSS_FIELDS}
        if not training:
            kept |= dict(weight_noise=0.0, gain_noise=0.0, neuron_noise=0.0, noise_draws=1)
        return cls(YinYangConfig(**kept))

    # the training noise it applies (read by scripts and tests)
    weight_noise = property(lambda self: self.config.weight_noise)
    gain_noise = property(lambda self: self.config.gain_noise)
    neuron_noise = property(lambda self: self.config.neuron_noise)
    noise_draws = property(lambda self: self.config.noise_draws)

    def inputs(self, coordinates):
        """The job's input spikes `(steps, batch, 5 * repetitions)`: `coordinates`
        `(batch, 4)` encoded as spike times (`bd.encode_coordinates`), repeated."""
        config = self.config
        spikes = bd.encode_coordinates(
            coordinates,
            steps=config.steps,
            t_early=config.t_early,
            t_late=config.t_late,
            t_bias=config.t_bias,
            dt=config.dt,
        )
        return jnp.tile(spikes, (1, 1, config.repetitions))

    def decode(self, membrane):
        """The scores `(batch, 3)`: `readout_scale` times the readout membrane `(time, batch,
        3)` decoded by `decoder` (its maximum or its mean over time)."""
        decode = {"max": bd.max_over_time, "mean": bd.mean_over_time}[self.config.decoder]
        return self.config.readout_scale * decode(membrane)

    def scores(self, network, coordinates, *, key, backend):
        """Decoded readout `(batch, 3)` and the hidden spikes `(time, batch, hidden)`."""
        from .._run import run

        config = self.config
        spikes = self.inputs(coordinates)
        noise = (config.weight_noise, config.gain_noise, config.neuron_noise)
        if any(noise) and config.noise_draws > 1:
            hidden, membrane = self._run_groups(network, spikes, key, backend, noise)
        else:
            if any(noise):
                key, noise_key = jax.random.split(key)
                network = perturb(network, noise_key, *noise)
            hidden, readout = run(network, spikes, backend=backend, dt=config.dt, key=key)
            hidden, membrane = hidden.spikes, readout.membrane_cadc
        return self.decode(membrane), hidden

    def _run_groups(self, network, spikes, key, backend, noise):
        """`noise_draws` groups of the batch, each with its own draw of the training noise."""
        from .._run import run

        groups, batch, dt = self.noise_draws, spikes.shape[1], self.config.dt
        if batch % groups:
            raise ValueError(
                f"`noise_draws` ({groups}) must divide the batch size; got a batch of {batch}."
            )

        def one(inputs, group_key):
            noise_key, run_key = jax.random.split(group_key)
            perturbed = perturb(network, noise_key, *noise)
            hidden, readout = run(perturbed, inputs, backend=backend, dt=dt, key=run_key)
            return hidden.spikes, readout.membrane_cadc

        hidden, readout = jax.vmap(one)(split_batch(spikes, groups), jax.random.split(key, groups))
        return join_batch(hidden), join_batch(readout)

    def __call__(self, network, batch, *, key, backend):
        coordinates, labels = batch
        scores, spikes = self.scores(network, coordinates, key=key, backend=backend)
        value = cross_entropy(scores, labels)
        config = self.config
        if config.firing_weight:
            value = value + config.firing_weight * firing_regulariser(
                spikes, upper=config.firing_upper, lower=config.firing_lower or None
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

            def where(n, names=names):
                return [getattr(n, name) for name in names]

            layers[index] = eqx.tree_at(where, layer, values)
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

"""Hardware-aware training for any network: training noise that stands for a chip's
mismatch (`perturb`, `hardware_aware`), weights kept in the chip's range (`clip_weights`)
and the chip's weight scale set in one call (`with_weight_scale`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._constants import WEIGHT_MAX
from .._neurons import AbstractNeuron
from .._parameters import Frozen, Mixed, hardware_value, model_value
from .._synapse import Synapse
from .._transforms import LinearSaturating
from .._typing import user_facing
from ._step import _call_loss


def _is_node(x) -> bool:
    return isinstance(x, (Synapse, AbstractNeuron))


def _check_spread(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a number in [0, 1) (a relative spread); got {value!r}.")
    return float(value)


@user_facing
def perturb(
    network,
    key: jax.Array,
    *,
    weight_noise: float = 0.05,
    gain_noise: float = 0.07,
    neuron_noise: float = 0.0,
):
    """A draw of training noise that stands for a chip's fixed-pattern mismatch.

    Every `Synapse` (of a `Sequential`, a `Network` or any pytree holding them): each
    weight is multiplied by `1 + weight_noise * N(0, 1)` (the per-synapse DAC gain) and
    each row (target neuron) by `1 + gain_noise * N(0, 1)`, one factor for its excitatory
    and one for its inhibitory inputs (the per-neuron synaptic gains). With `neuron_noise`,
    every population's time constants are multiplied by `exp(neuron_noise * N(0, 1))` per
    neuron, and a firing population's leak and threshold move by `neuron_noise * (threshold
    - leak) * N(0, 1)` per neuron (the calibration residuals), on the chip side of a
    `Mixed` by the same fraction of its chip span. This is the Yin-Yang recipe's noise
    (`bss2jax.yinyang.perturb`) for any network; with a model-space span of 1 the two agree.
    The defaults follow `bj.MismatchProfile()` (calibrated): weights 5 %, per-neuron gains
    7 % (synaptic gain and the membrane time constant's share of the PSP combined).

    **Arguments:**
    - `network`: a network (or any pytree of synapses and populations).
    - `key`: PRNG key; one draw per call.
    - `weight_noise`, `gain_noise`, `neuron_noise`: relative spreads in [0, 1).

    **Returns:** the perturbed network (same structure; differentiable in its weights).

    ```python
    noisy = bj.perturb(net, jax.random.key(0), weight_noise=0.05, gain_noise=0.07)
    ```
    """
    spreads = (
        _check_spread("weight_noise", weight_noise),
        _check_spread("gain_noise", gain_noise),
        _check_spread("neuron_noise", neuron_noise),
    )
    return _perturb(network, key, spreads)


@eqx.filter_jit
def _perturb(network, key, spreads: tuple[float, float, float]):
    """`perturb` after its checks, compiled once per network structure and spreads."""
    counter = itertools.count()

    def one(node):
        if not _is_node(node):
            return node
        node_key = jax.random.fold_in(key, next(counter))
        if isinstance(node, Synapse):
            return _perturb_synapse(node, node_key, spreads[0], spreads[1])
        return _perturb_neuron(node, node_key, spreads[2]) if spreads[2] else node

    return jax.tree_util.tree_map(one, network, is_leaf=_is_node)


def _perturb_synapse(synapse: Synapse, key, weight_noise: float, gain_noise: float) -> Synapse:
    k_weight, k_gain = jax.random.split(key)
    weight = synapse.weight
    gains = 1.0 + gain_noise * jax.random.normal(k_gain, (2, weight.shape[0], 1))
    factor = 1.0 + weight_noise * jax.random.normal(k_weight, weight.shape)
    factor = factor * jnp.where(weight > 0, gains[0], gains[1])
    return eqx.tree_at(lambda s: s.weight, synapse, weight * factor.astype(weight.dtype))


def _perturb_neuron(neuron: AbstractNeuron, key, spread: float) -> AbstractNeuron:
    k_leak, k_threshold, k_mem, k_syn = jax.random.split(key, 4)
    size = neuron.size

    def scaled(value, k):
        factor = jnp.exp(spread * jax.random.normal(k, (size,)))
        return _map_sides(value, lambda x: x * factor, lambda x: x * factor)

    names = ["tau_mem", "tau_syn"]
    values = [scaled(neuron.tau_mem, k_mem), scaled(neuron.tau_syn, k_syn)]
    if neuron.fire:
        model_span = model_value(neuron.threshold) - model_value(neuron.leak)
        chip_span = hardware_value(neuron.threshold) - hardware_value(neuron.leak)

        def shifted(value, k):
            noise = spread * jax.random.normal(k, (size,))
            return _map_sides(
                value, lambda x: x + noise * model_span, lambda x: x + noise * chip_span
            )

        names += ["leak", "threshold"]
        values += [shifted(neuron.leak, k_leak), shifted(neuron.threshold, k_threshold)]
    return eqx.tree_at(lambda n: [getattr(n, name) for name in names], neuron, values)


def _map_sides(value, on_model: Callable, on_chip: Callable):
    """`value` with `on_model` applied to its model side and `on_chip` to its chip side (a
    plain value is both: `on_model`); `Frozen` stays frozen."""
    if isinstance(value, Frozen):
        return Frozen(_map_sides(value.value, on_model, on_chip))
    if isinstance(value, Mixed):
        return Mixed(on_model(value.model), on_chip(value.hardware))
    return on_model(jnp.asarray(value))


@user_facing
def clip_weights(network):
    """Keep every weight inside the chip's range: `|w| <= 63 / scale` for each synapse with
    a `bj.linear_saturating(scale)` transform (per row when `scale` is per row), as hxtorch's
    examples clamp after each step. Other transforms saturate by themselves and are left as
    they are. Use as `fit(..., constrain=bj.clip_weights)`: the weights never leave the range
    in which the model and the chip agree (beyond it the chip saturates, the model not).

    ```python
    net = bj.clip_weights(net)
    ```
    """

    def one(node):
        if isinstance(node, Synapse) and isinstance(node.transform, LinearSaturating):
            bound = WEIGHT_MAX / jnp.asarray(node.transform.scale, node.weight.dtype)
            return eqx.tree_at(lambda s: s.weight, node, jnp.clip(node.weight, -bound, bound))
        return node

    return jax.tree_util.tree_map(one, network, is_leaf=_is_node)


class HardwareAwareLoss(eqx.Module):
    """`loss` on a network with a fresh draw of `perturb`'s training noise per call (per
    group of the batch with `draws > 1`). Built by `bj.hardware_aware`."""

    loss: Callable
    weight_noise: float = eqx.field(static=True)
    gain_noise: float = eqx.field(static=True)
    neuron_noise: float = eqx.field(static=True)
    draws: int = eqx.field(static=True)

    def __call__(self, network, batch, *, key, backend):
        noise = dict(
            weight_noise=self.weight_noise,
            gain_noise=self.gain_noise,
            neuron_noise=self.neuron_noise,
        )
        if self.draws == 1:
            noise_key, key = jax.random.split(key)
            return self.loss(perturb(network, noise_key, **noise), batch, key=key, backend=backend)
        groups = jax.tree_util.tree_map(self._split, batch)

        def one(group, group_key):
            noise_key, run_key = jax.random.split(group_key)
            noisy = perturb(network, noise_key, **noise)
            return _call_loss(self.loss, noisy, group, run_key, backend)

        values, metrics = jax.vmap(one)(groups, jax.random.split(key, self.draws))
        return jnp.mean(values), jax.tree_util.tree_map(jnp.mean, metrics)

    def _split(self, leaf):
        leaf = jnp.asarray(leaf)
        if leaf.ndim == 0 or leaf.shape[0] % self.draws:
            raise ValueError(
                f"`draws` ({self.draws}) must divide the batch size (every array's first "
                f"axis); got an array of shape {leaf.shape}."
            )
        return leaf.reshape(self.draws, leaf.shape[0] // self.draws, *leaf.shape[1:])


@user_facing
def hardware_aware(
    loss: Callable,
    *,
    weight_noise: float = 0.05,
    gain_noise: float = 0.07,
    neuron_noise: float = 0.02,
    draws: int = 1,
) -> HardwareAwareLoss:
    """A loss that trains for the chip in the numerics: `loss` on a perturbed network.

    Each call draws `perturb`'s training noise (standing for the fixed-pattern mismatch of
    an unknown chip) from its key, so the network learns not to lean on any one synapse's
    or neuron's exact value; with `draws = K > 1` the batch is cut into `K` equal groups
    (every array's first axis), each run with its own draw (`jax.vmap` over the groups:
    numerics or the chip model), and the values and metrics are averaged. Evaluate with
    the plain `loss` (`fit(..., eval_loss=loss)`).

    The schedule that works (the Yin-Yang job, benchmarks/README.md), for any network, is
    one call with `bj.fit_hardware_aware`; spelled out:
    ```python
    noisy = bj.hardware_aware(loss, draws=5)
    pre = bj.fit(net, noisy, optax.adam(5e-3), train, epochs=30, batch_size=50, key=k1,
                 eval_loss=loss, constrain=bj.clip_weights)            # 1. numerics + noise
    tuned = bj.fit(pre.network, loss, optax.adam(3e-4), train, epochs=5, batch_size=50,
                   key=k2, backend=bj.RandomChips(anchor=chip, anchor_probability=0.3,
                   chips_per_call=5), constrain=bj.clip_weights)        # 2. chip in the loop
    ```

    **Arguments:**
    - `loss`: `loss(network, batch, *, key, backend) -> scalar | (scalar, metrics)`.
    - `weight_noise`, `gain_noise`, `neuron_noise`: as for `bj.perturb` (relative spreads).
    - `draws`: int >= 1, noise draws per call; it must divide the batch size.

    **Returns:** a `HardwareAwareLoss`, a loss for `bj.fit` / `bj.make_train_step`.
    """
    for name, value in (("weight_noise", weight_noise), ("gain_noise", gain_noise)):
        _check_spread(name, value)
    _check_spread("neuron_noise", neuron_noise)
    if not callable(loss):
        raise TypeError(f"`loss` must be callable; got {loss!r}.")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"`draws` must be a positive int; got {draws!r}.")
    return HardwareAwareLoss(
        loss, float(weight_noise), float(gain_noise), float(neuron_noise), draws
    )


@user_facing
def with_weight_scale(network, scale):
    """`network` with every `bj.linear_saturating` synapse mapped to the chip with a new
    `scale` (chip weight units per model weight unit); the model weights, and so the
    numerics, stay as they are. E.g. after `bj.align` measured a chip's scale, or to try
    a trained network at another scale, without `eqx.tree_at` on each transform.

    **Arguments:**
    - `network`: a network (or any pytree holding synapses).
    - `scale`: a positive float for all such synapses, or a list with one per synapse in
      the network's order (`network.synapse(i)`; None keeps that synapse's scale), each a
      float or a per-row array `(out_features, 1)` (as `Alignment.transform()` gives).

    ```python
    net = bj.with_weight_scale(net, 36.6)
    ```
    """
    synapses = [
        node
        for node in jax.tree_util.tree_leaves(network, is_leaf=_is_node)
        if isinstance(node, Synapse)
    ]
    scales = scale if isinstance(scale, (list, tuple)) else [scale] * len(synapses)
    if len(scales) != len(synapses):
        raise ValueError(
            f"`scale` must be one number or a list of one per synapse ({len(synapses)}); "
            f"got {len(scales)} entries."
        )
    for index, value in enumerate(scales):
        bad = value is not None and not bool(np.all(np.asarray(value) > 0))
        if bad or (value is not None and not bool(np.all(np.isfinite(np.asarray(value))))):
            raise ValueError(f"`scale` must be positive and finite; got {value!r} (entry {index}).")
    counter = itertools.count()

    def one(node):
        if not isinstance(node, Synapse):
            return node
        value = scales[next(counter)]
        if value is None or not isinstance(node.transform, LinearSaturating):
            return node
        if isinstance(value, (int, float)):
            value = float(value)
        else:
            value = jnp.asarray(value, dtype=node.weight.dtype)
            if value.shape not in ((), (node.out_features, 1)):
                raise ValueError(
                    "`scale` per row must have shape (out_features, 1) = "
                    f"({node.out_features}, 1); got {value.shape}."
                )
        return eqx.tree_at(lambda s: s.transform, node, LinearSaturating(value))

    return jax.tree_util.tree_map(one, network, is_leaf=_is_node)

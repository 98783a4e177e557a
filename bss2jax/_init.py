"""Fluctuation-driven initialisation: weights that put a fresh network's membranes near
threshold on a sample of its inputs (Rossbroich, Gygax & Zenke 2022)."""

from __future__ import annotations

from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from ._network import Sequential
from ._neurons import AbstractNeuron, AdEx, Integrator
from ._observables import Observables
from ._parameters import model_value
from ._synapse import Synapse
from ._transforms import LinearSaturating
from ._typing import user_facing


@user_facing
def init_fluctuation_driven(
    network: Sequential,
    inputs: Real[ArrayLike, "time batch in_features"],
    *,
    key: PRNGKeyArray,
    dt: float = 1e-6,
    xi: float = 1.0,
    mean: float = 0.0,
    readout_std: float = 1.0,
) -> Sequential:
    """New synapse weights for `network`, drawn so that its membranes fluctuate near threshold.

    Fluctuation-driven initialisation (Rossbroich, Gygax & Zenke 2022, "Fluctuation-driven
    initialization for spiking neural network training", Neuromorph. Comput. Eng. 2,
    044016): each weight of a projection onto a firing population is drawn from
    `N(mu_w, sigma_w)`, with `mu_w` and `sigma_w` chosen so that the free membrane (no
    threshold) has, over the sample `inputs`, the mean `mu_U = leak + mean * (threshold -
    leak)` and the standard deviation `sigma_U = (threshold - mu_U) / xi`: the threshold
    lies `xi` standard deviations above the mean, so neurons fire on fluctuations. With
    `F_j(t)` the membrane that one unit weight from input `j` causes (the neuron's own
    PSP kernel applied to input `j`'s spikes, computed from `inputs`), the free membrane of
    neuron `i` is `leak + sum_j w_ij F_j(t)`, whose mean and variance over iid weights and
    over `(time, batch)` are exactly
    ```python
    mu_U - leak = mu_w * E[sum_j F_j]
    sigma_U**2 = sigma_w**2 * E[sum_j F_j**2] + mu_w**2 * Var[sum_j F_j]
    ```
    (sums over the neuron's connected inputs: a mask is honoured row by row, so each target
    neuron gets its own `sigma_w`). Populations are initialised in order; each next layer
    sees the spikes the layers before it now give. A readout (a population that does not
    fire) gets `mu_w = 0` and `sigma_U = readout_std` model units. Time constants that
    differ between neurons are averaged for the kernel `F`.

    Works in the network's own units: weights of order `1 / sqrt(fan_in)` with
    `bj.LIF.model_space` (threshold 1), of order tens with hxtorch's defaults.

    **Arguments:**
    - `network`: a `bj.Sequential`; its weights' shapes, masks and transforms are kept.
    - `inputs`: float array `(time, batch, in_features)`, a sample of the input spikes as
      0/1 (a few dozen samples suffice).
    - `key`: PRNG key for the weights. `dt`: the grid step in seconds, as for `bj.run`.
    - `xi`: threshold distance in standard deviations (positive; 1 as in Rossbroich et al.).
      `mean`: the target mean as a fraction of `threshold - leak` (in `[0, 1)`; 0: purely
      fluctuation-driven). `readout_std`: the readouts' membrane std (model units, > 0).

    **Returns:** `network` with new weights (nothing else changed).

    Raises `ValueError` when `inputs` give a projection no input at all, or when a weight
    transform would change the drawn weights in the model (use `bj.linear_saturating`).

    ```python
    net = bj.Sequential([bj.Synapse(20, 64, key=k1), bj.LIF.model_space(64),
                         bj.Synapse(64, 4, key=k2), bj.LI.model_space(4)])
    net = bj.init_fluctuation_driven(net, spikes, key=k3)   # spikes: (time, batch, 20)
    ```
    """
    if not isinstance(network, Sequential):
        raise TypeError(
            "`network` must be a bj.Sequential (init_fluctuation_driven follows its layers in "
            f"order); got {type(network).__name__}."
        )
    _check_targets(xi, mean, readout_std)
    source = jnp.asarray(inputs, dtype=float)
    if source.ndim != 3 or source.shape[2] != network.input_size:
        raise ValueError(
            "`inputs` must have shape (time, batch, in_features) with in_features = "
            f"{network.input_size}; got {source.shape}."
        )
    layers = list(network.layers)
    keys = jax.random.split(key, len(layers) // 2)
    for index in range(0, len(layers), 2):
        synapse, neuron = layers[index], layers[index + 1]
        weight = _draw(synapse, neuron, source, keys[index // 2], dt, (xi, mean, readout_std))
        synapse = eqx.tree_at(lambda s: s.weight, synapse, weight)
        _check_transform(synapse, weight, index)
        layers[index] = synapse
        if neuron.fire:
            source = _spikes(synapse, neuron, source, dt)
    return Sequential(layers)


def _check_targets(xi, mean, readout_std) -> None:
    for name, value in (("xi", xi), ("readout_std", readout_std)):
        if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
            raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    if not (isinstance(mean, (int, float)) and 0 <= mean < 1):
        raise ValueError(
            f"`mean` must lie in [0, 1) (a fraction of threshold - leak); got {mean!r}."
        )


def _draw(synapse: Synapse, neuron: AbstractNeuron, source, key, dt, targets):
    """Weights `(out, in)` for the projection `synapse` onto `neuron` fed by `source`."""
    xi, mean, readout_std = targets
    kernel = _unit_responses(neuron, source, dt)  # (time, batch, in)
    mask = jnp.ones(synapse.weight.shape) if synapse.mask is None else synapse.mask.astype(float)
    drive = kernel @ mask.T  # (time, batch, out): sum_j F_j over connected inputs
    first = jnp.mean(drive, axis=(0, 1))  # E[sum_j F_j], per target neuron
    spread = jnp.var(drive, axis=(0, 1))  # Var[sum_j F_j]
    second = jnp.mean(kernel**2, axis=(0, 1)) @ mask.T  # E[sum_j F_j ** 2]
    if not bool(jnp.all(second > 0)):
        raise ValueError(
            f"`inputs` give population of size {neuron.size} no input through its synapse "
            f"(in_features={synapse.in_features}): no spike reaches some neuron, so there is "
            "nothing to scale. Use a sample with spikes on its inputs (or of the layer before)."
        )
    if neuron.fire:
        leak = model_value(neuron.leak)
        span = model_value(neuron.threshold) - leak
        mu_w = mean * span / first
        sigma_u = (1.0 - mean) * span / xi
    else:
        mu_w = jnp.zeros_like(first)
        sigma_u = jnp.full_like(first, readout_std)
    variance = (sigma_u**2 - mu_w**2 * spread) / second
    sigma_w = jnp.sqrt(jnp.maximum(variance, 0.0))
    noise = jax.random.normal(key, synapse.weight.shape)
    weight = mu_w[:, None] + sigma_w[:, None] * noise
    return jnp.asarray(weight, dtype=synapse.weight.dtype)


def _unit_responses(
    neuron: AbstractNeuron, source: Float[Array, "time batch inputs"], dt: float
) -> Float[Array, "time batch inputs"]:
    """`F_j(t)`: the free membrane (leak 0) of `neuron`'s dynamics driven by input `j`'s
    spikes through a unit weight, for every input channel `j`."""
    size = source.shape[2]

    def average(name):
        return float(np.mean(np.asarray(model_value(getattr(neuron, name)))))

    probe = AdEx(
        size,
        leak=0.0,
        reset=0.0,
        tau_mem=average("tau_mem"),
        tau_syn=average("tau_syn"),
        membrane_capacitance=average("membrane_capacitance"),
        leaky=neuron.leaky,
        fire=False,
        exponential=False,
        subthreshold_adaptation=False,
        spike_triggered_adaptation=False,
        integrator=cast(Integrator, neuron.integrator),
    )
    identity = Synapse(size, size, weight=jnp.eye(size), transform=LinearSaturating(1.0))
    return _run(Sequential([identity, probe]), source, dt).membrane_cadc


def _spikes(synapse: Synapse, neuron: AbstractNeuron, source, dt: float):
    """The spikes `(time, batch, out)` of `neuron` fed by `source` through `synapse`."""
    return _run(Sequential([synapse, neuron]), source, dt).spikes


def _check_transform(synapse: Synapse, weight, index: int) -> None:
    model = synapse.transform.model(weight)
    if not bool(jnp.allclose(model, weight, rtol=1e-6, atol=0.0)):
        raise ValueError(
            f"`network.layers[{index}].transform` changes the drawn weights in the model "
            f"({type(synapse.transform).__name__} is not the identity on them, largest "
            f"|weight| {float(jnp.max(jnp.abs(weight))):.3g}); use bj.linear_saturating or a "
            "larger cap."
        )


@eqx.filter_jit
def _run(network: Sequential, source, dt: float) -> Observables:
    """The `Observables` of a one-population `Sequential` on `source` (compiled once per
    structure and shape, so that repeated initialisations reuse it)."""
    from ._run import run

    (observed,) = cast(tuple[Observables, ...], run(network, source, dt=dt))
    return observed

"""Losses, regularisers and metrics on a network's observables.

hxtorch ships none; its examples write them inline (log-softmax and NLL on a max-over-time
readout, squared readout, spike-count and weight penalties). These are the same, as pure
functions that reduce to scalars and work under `jit`, `grad` and `vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._network import AbstractNetwork
from .._typing import user_facing


def _check_scores(scores, labels):
    scores = jnp.asarray(scores)
    labels = jnp.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"`scores` must have shape (batch, classes); got {scores.shape}.")
    if labels.shape != scores.shape[:1]:
        raise ValueError(
            f"`labels` must have shape (batch,) = ({scores.shape[0]},); got {labels.shape}."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"`labels` must be integer class indices; got dtype {labels.dtype}.")
    return scores, labels


@user_facing
def cross_entropy(
    scores: Float[Array, "batch classes"], labels: Int[Array, " batch"]
) -> Float[Array, ""]:
    """Mean cross-entropy of `softmax(scores)` against integer `labels`.

    hxtorch's examples: `nll_loss(log_softmax(scores), labels)`, where `scores` is a decoded
    readout, e.g. `readout_scale * max_over_time(readout.membrane_cadc)`.

    **Arguments:**
    - `scores`: float array `(batch, classes)`, unnormalised log-probabilities.
    - `labels`: int array `(batch,)`, class indices in `[0, classes)`.

    **Returns:** a float scalar, averaged over the batch.

    ```python
    loss = bj.cross_entropy(10.0 * bd.max_over_time(readout.membrane_cadc), labels)
    ```
    """
    scores, labels = _check_scores(scores, labels)
    log_probabilities = jax.nn.log_softmax(scores, axis=-1)
    picked = jnp.take_along_axis(log_probabilities, labels[:, None], axis=-1)[:, 0]
    return -jnp.mean(picked)


@user_facing
def accuracy(
    scores: Float[Array, "batch classes"], labels: Int[Array, " batch"]
) -> Float[Array, ""]:
    """Fraction of samples whose largest score is the label's (ties: the first index wins).

    **Returns:** a float scalar in [0, 1].

    ```python
    bj.accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([1, 1]))   # 0.5
    ```
    """
    scores, labels = _check_scores(scores, labels)
    return jnp.mean((jnp.argmax(scores, axis=-1) == labels).astype(scores.dtype))


@user_facing
def mse(trace: Float[Array, "*shape"], target: Float[Array, "*shape"]) -> Float[Array, ""]:
    """Mean squared error between a trace and a target of the same shape (model units²).

    ```python
    loss = bj.mse(readout.membrane_cadc, target)   # both (time, batch, neurons)
    ```
    """
    trace = jnp.asarray(trace)
    target = jnp.asarray(target)
    if trace.shape != target.shape:
        raise ValueError(
            f"`target` must have the shape of `trace` {trace.shape}; got {target.shape}."
        )
    return jnp.mean((trace - target) ** 2)


def firing_regulariser(
    spikes: Float[Array, "time batch neurons"],
    *,
    upper: float = 0.0,
    lower: float | None = None,
) -> Float[Array, ""]:
    """Penalty on spike counts outside `[lower, upper]`, squared (Cramer et al. 2022).

    With `counts[b, n] = sum_t spikes[t, b, n]`:
    `mean(relu(counts - upper)^2) + mean(relu(lower - mean_b counts)^2)`. The first term
    (default `upper=0`: hxtorch's `(sum of spikes)^2`) keeps the activity sparse; the
    optional second one revives neurons that are silent over the whole batch.

    **Arguments:**
    - `spikes`: float array `(time, batch, neurons)`, 0/1.
    - `upper`: spike count per neuron and sample above which it costs.
    - `lower`: mean count per neuron (over the batch) below which it costs; None for none.

    **Returns:** a float scalar.

    ```python
    reg = bj.firing_regulariser(hidden.spikes, upper=2.0, lower=0.05)
    ```
    """
    spikes = jnp.asarray(spikes)
    if spikes.ndim != 3:
        raise ValueError(f"`spikes` must have shape (time, batch, neurons); got {spikes.shape}.")
    if upper < 0:
        raise ValueError(f"`upper` must be non-negative; got {upper!r}.")
    counts = jnp.sum(spikes, axis=0)
    penalty = jnp.mean(jax.nn.relu(counts - upper) ** 2)
    if lower is not None:
        if lower < 0:
            raise ValueError(f"`lower` must be non-negative or None; got {lower!r}.")
        penalty = penalty + jnp.mean(jax.nn.relu(lower - jnp.mean(counts, axis=0)) ** 2)
    return penalty


@user_facing
def weight_regulariser(network: AbstractNetwork, *, power: float = 2.0) -> Float[Array, ""]:
    """Sum over the projections of the mean of `|weight|^power` (model weights).

    **Arguments:**
    - `network`: a `Sequential` or `Network`.
    - `power`: the exponent (2 is weight decay's L2; 1 favours sparse weights).

    **Returns:** a float scalar.

    ```python
    reg = bj.weight_regulariser(net)
    ```
    """
    if not isinstance(network, AbstractNetwork):
        raise TypeError(
            f"`network` must be a bj.Sequential or bj.Network; got {type(network).__name__}."
        )
    if not power > 0:
        raise ValueError(f"`power` must be positive; got {power!r}.")
    total = jnp.zeros(())
    for index in range(len(network.edges())):
        weight = network.synapse(index).model_weight()
        total = total + jnp.mean(jnp.abs(weight) ** power)
    return total

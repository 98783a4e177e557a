"""Weight transforms: model-space weights to 6-bit signed chip weights.

A transform has two views of one float weight matrix: `model(w)`, what the numerics use, and
`hardware(w)`, integers in [-63, 63] for the chip (the sign selects an excitatory or an
inhibitory synapse row). Rounding is straight-through: forward rounded, gradient identity.
"""

from __future__ import annotations

import abc
import warnings
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._constants import WEIGHT_MAX
from ._misc import warn_if
from ._typing import FloatScalar, user_facing


def round_half_away(x: jax.Array) -> jax.Array:
    """Round half away from zero, as hxtorch's `±0.5` shift and truncation does."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def round_straight_through(x: jax.Array) -> jax.Array:
    """`round_half_away(x)` forward, identity backward."""
    return x + jax.lax.stop_gradient(round_half_away(x) - x)


class AbstractWeightTransform(eqx.Module):
    """Maps a synapse's float weights `(out, in)` to the model's and to the chip's weights."""

    @abc.abstractmethod
    def model(self, weight: jax.Array) -> jax.Array:
        """Effective weights of the numerics, model units, same shape."""

    @abc.abstractmethod
    def hardware(self, weight: jax.Array) -> jax.Array:
        """Chip weights: float array of integers in [-63, 63], same shape."""


class LinearSaturating(AbstractWeightTransform):
    """hxtorch's `linear_saturating`: chip weight `round(clip(scale * w, -63, 63))`.

    The numerics use the unquantised float weights, as hxtorch's do. Weights that the clip
    would change trigger a warning when checked with `check_range` (never silently).
    """

    scale: FloatScalar | Float[Array, "out_features 1"] = 1.0
    """Chip weight units per model weight unit: one for all, or one per row (per target
    neuron, as `Alignment.transform()` gives)."""

    def model(self, weight):
        return weight

    def hardware(self, weight):
        scaled = jnp.clip(self.scale * weight, -WEIGHT_MAX, WEIGHT_MAX)
        return round_straight_through(scaled)


@user_facing
def linear_saturating(scale: FloatScalar = 1.0) -> LinearSaturating:
    """The default weight transform: scale, clip to ±63, round half away from zero.

    **Arguments:**
    - `scale`: chip weight units per model weight unit (hxtorch users report 55-70).

    ```python
    syn = bj.Synapse(128, 3, key=key, transform=bj.linear_saturating(55.0))
    ```
    """
    if isinstance(scale, jax.core.Tracer):  # a scale swept under vmap/jit
        return LinearSaturating(scale)
    if isinstance(scale, (bool, str, bytes)) or not (
        isinstance(scale, (int, float, np.number)) and 0 < scale < float("inf")
    ):
        raise ValueError(
            "`scale` must be a positive finite number (chip weight units per model weight "
            f"unit); got {scale!r}."
        )
    return LinearSaturating(float(scale))


class ExponentialClamp(AbstractWeightTransform):
    """hxtorch's `linear_exponential_clamp`: a soft saturation at `±cap`, optionally 6-bit.

    With `s = 1 / (1 - start_weight / 63)`, weights with `|w| > start_weight / 63 * cap`
    become `sign(w) * cap * (1 - exp(-s (|w| / cap - (1 - 1/s))) / s)`, which approaches
    `cap` smoothly. With `quantize`, the numerics see multiples of `cap / 63`
    (straight-through). On the chip `cap` maps to 63.
    """

    cap: FloatScalar = 1.5
    start_weight: FloatScalar = 61.0
    quantize: bool = eqx.field(static=True, default=False)

    def model(self, weight):
        s = 1.0 / (1.0 - self.start_weight / WEIGHT_MAX)
        magnitude = jnp.abs(weight)
        start = self.start_weight / WEIGHT_MAX * self.cap
        soft = self.cap * (1.0 - jnp.exp(-s * (magnitude / self.cap - (1.0 - 1.0 / s))) / s)
        clamped = jnp.where(magnitude > start, jnp.sign(weight) * soft, weight)
        if self.quantize:
            step = self.cap / WEIGHT_MAX
            clamped = round_straight_through(clamped / step) * step
        return clamped

    def hardware(self, weight):
        return round_straight_through(self.model(weight) * (WEIGHT_MAX / self.cap))


def linear_exponential_clamp(
    cap: FloatScalar = 1.5, start_weight: FloatScalar = 61.0, quantize: bool = False
) -> ExponentialClamp:
    """Soft clamp of the weights at `±cap`, with optional straight-through 6-bit rounding.

    ```python
    syn = bj.Synapse(784, 64, key=key, transform=bj.linear_exponential_clamp(quantize=True))
    ```
    """
    if not cap > 0:
        raise ValueError(f"`cap` must be positive; got {cap!r}.")
    if not 0 < start_weight < WEIGHT_MAX:
        raise ValueError(f"`start_weight` must lie in (0, 63); got {start_weight!r}.")
    return ExponentialClamp(float(cap), float(start_weight), bool(quantize))


def check_range(
    transform: LinearSaturating, weight, *, name: str = "weight", stacklevel: int = 2
) -> jax.Array | int:
    """Warn (never clip silently) when `scale * weight` leaves [-63, 63] on the chip, and
    return how many entries the chip clips. Traced weights (under `jit`, `vmap`, `grad`):
    the count is traced and the warning is given at run time (`_misc.warn_if`; none in the
    CLI's compilation-cache mode, where the count in `Recording.clipped_weights` says it)."""
    scaled = jnp.abs(transform.scale * jnp.asarray(weight))
    if isinstance(scaled, jax.core.Tracer):
        traced = jnp.sum(scaled > WEIGHT_MAX + 0.5).astype(jnp.int32)
        largest = jnp.max(scaled, initial=0.0)
        scale = jnp.asarray(transform.scale)
        warn_if(traced > 0, partial(_clipped_message, name), scale, traced, largest)
        return traced
    count = int(jnp.sum(scaled > WEIGHT_MAX + 0.5))
    message = _clipped_message(name, transform.scale, count, float(jnp.max(scaled, initial=0.0)))
    if message:
        warnings.warn(message, stacklevel=stacklevel)
    return count


def _clipped_message(name, scale, count, largest) -> str | None:
    """The warning for `count` clipped entries (arrays from `warn_if` under `vmap`: summed;
    None when nothing is clipped); `scale` the transform's (one, or one per row)."""
    count, largest = int(np.sum(count)), float(np.max(largest))
    if not count:
        return None
    scale = np.asarray(scale)
    scale = f"{float(scale.flat[0])}" if scale.size == 1 else "(several values)"
    return (
        f"{count} entries of `{name}` exceed ±{WEIGHT_MAX} after scaling by the "
        f"transform's scale {scale} (largest {largest:g}) and will be clipped to "
        f"±{WEIGHT_MAX} on the chip; lower the scale or clip the weights (fit's `constrain`)."
    )


def check_weight_range(network, *, stacklevel: int = 2) -> jax.Array | int:
    """`check_range` on every `linear_saturating` synapse of `network` (masked entries
    excluded): what `ChipModel` and `Hardware` call before they run. Returns the number of
    weights the chip clips (traced when the weights are; `Recording.clipped_weights`)."""
    total: jax.Array | int = 0
    for index in range(len(network.edges())):
        synapse = network.synapse(index)
        if not isinstance(synapse.transform, LinearSaturating):
            continue
        weight = synapse.weight
        if synapse.mask is not None:
            weight = jnp.where(synapse.mask, weight, 0.0)
        name = f"weight of synapse {index}"
        total = total + check_range(synapse.transform, weight, name=name, stacklevel=stacklevel + 1)
    return total

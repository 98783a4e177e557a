"""Projections between populations: a weight matrix without bias, as on the chip."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, Real

from ._transforms import AbstractWeightTransform, LinearSaturating
from ._typing import user_facing


class Synapse(eqx.Module):
    """A dense (optionally masked) projection with weight of shape `(out_features, in_features)`.

    Initialised like `torch.nn.Linear` (hxtorch's `Synapse`): kaiming-uniform with
    `a = sqrt(5)`, i.e. uniform in `±1 / sqrt(in_features)`; no bias (the chip has none).

    **Arguments:**
    - `in_features`, `out_features`: sizes of the source and the target population.
    - `key`: a `jax.random.PRNGKey` for the initial weights.
    - `transform`: the weight transform to the chip (default `linear_saturating(1.0)`).
    - `mask`: optional bool array `(out_features, in_features)`; False entries are absent
      connections (hxtorch's `SparseSynapse`; its `connections` is the transpose). The mask
      is a bool leaf: differentiate with `eqx.filter_grad` (or `jax.grad` on an unmasked net).
    - `weight`: optional initial weight array, instead of the random one.

    ```python
    syn = bj.Synapse(128, 3, key=jax.random.PRNGKey(0), transform=bj.linear_saturating(55.0))
    ```
    """

    weight: Float[Array, "out_features in_features"]
    transform: AbstractWeightTransform
    mask: Bool[Array, "out_features in_features"] | None
    in_features: int = eqx.field(static=True)
    out_features: int = eqx.field(static=True)

    @user_facing
    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        key: PRNGKeyArray | None = None,
        transform: AbstractWeightTransform | None = None,
        mask: Bool[ArrayLike, "out_features in_features"] | None = None,
        weight: Real[ArrayLike, "out_features in_features"] | None = None,
    ):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
        self.in_features = in_features
        self.out_features = out_features
        shape = (out_features, in_features)
        if weight is None:
            if key is None:
                raise ValueError("`key` is required to initialise the weights (or pass `weight`).")
            bound = 1.0 / math.sqrt(in_features)
            weight = jax.random.uniform(key, shape, minval=-bound, maxval=bound)
        weight = jnp.asarray(weight, dtype=float)
        if weight.shape != shape:
            raise ValueError(
                f"`weight` must have shape (out_features, in_features) = {shape}; "
                f"got {weight.shape}."
            )
        self.weight = weight
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.shape != shape:
                raise ValueError(
                    f"`mask` must have shape (out_features, in_features) = {shape}; "
                    f"got {mask.shape}."
                )
            mask = mask.astype(bool)
        self.mask = mask
        transform = LinearSaturating(1.0) if transform is None else transform
        if not isinstance(transform, AbstractWeightTransform):
            raise TypeError(
                "`transform` must be a weight transform such as `bj.linear_saturating(55.0)`; "
                f"got {transform!r}."
            )
        self.transform = transform

    def model_weight(self) -> Float[Array, "out_features in_features"]:
        """Weights the numerics use: `(out, in)`, the transform's model view, masked."""
        weight = self.transform.model(self.weight)
        if self.mask is not None:
            weight = jnp.where(self.mask, weight, 0.0)
        return weight

    def hardware_weight(self) -> Float[Array, "out_features in_features"]:
        """Chip weights: float array `(out, in)` of integers in [-63, 63], masked."""
        weight = self.transform.hardware(self.weight)
        if self.mask is not None:
            weight = jnp.where(self.mask, weight, 0.0)
        return weight

    def __call__(
        self, spikes: Float[Array, "*batch in_features"]
    ) -> Float[Array, "*batch out_features"]:
        """Graded spikes `(..., out)` from spikes `(..., in)`: `spikes @ weight.T`."""
        return spikes @ self.model_weight().T

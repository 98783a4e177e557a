"""Reference input projection: one dense matrix product over every time step and sample.

This is what bss2jax has always done for a feed-forward projection, and what the event
kernels in `events.py` are tested against.
"""

from __future__ import annotations

from jaxtyping import Array, Float


def project(
    inputs: Float[Array, "*rows in_features"], weight: Float[Array, "out_features in_features"]
) -> Float[Array, "*rows out_features"]:
    """The graded spikes that reach the targets: `inputs @ weight.T`.

    **Arguments:**
    - `inputs`: float array `(..., in_features)`, spikes as 0/1 (any values work).
    - `weight`: float array `(out_features, in_features)` in model units.

    **Returns:** float array `(..., out_features)`, in the units of `weight`.
    """
    return inputs @ weight.T.astype(inputs.dtype)

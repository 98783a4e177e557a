"""Parameters that differ between model space and chip space, and frozen parameters."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


class Mixed(eqx.Module):
    """A parameter with one value in model space and another on the chip.

    hxtorch's `MixedHXModelParameter`: the numerics (and the gradient) use `model`; a chip
    backend configures the chip with `hardware` (CADC LSB for potentials, seconds for times).

    **Arguments:**
    - `model`: float or float array broadcastable to `(neurons,)`, model units.
    - `hardware`: float or float array broadcastable to `(neurons,)`, chip units.

    ```python
    threshold = bj.Mixed(1.0, 125.0)   # threshold 1 in the model, 125 LSB on the chip
    ```
    """

    model: jax.Array
    hardware: jax.Array

    def __init__(self, model, hardware):
        self.model = _as_float(model, "Mixed.model")
        self.hardware = _as_float(hardware, "Mixed.hardware")


def _as_float(value, name: str) -> jax.Array:
    """`value` as a float array; a named error for a string, None, a complex number or a
    finite value that the float type cannot hold (a traced value passes unchecked)."""
    real_values(value, name, float(jnp.finfo(jnp.asarray(0.0).dtype).max))
    return jnp.asarray(value, dtype=float)


def real_values(value, name: str, limit: float) -> np.ndarray | None:
    """The float64 values of a concrete real number or array (None for a traced one); a
    named error for a string, None, a complex number, or a finite value beyond `limit`."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        array = None if isinstance(value, (str, bytes)) else np.asarray(value)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype.kind not in "fiubc":
        raise TypeError(f"`{name}` must be a real number or float array; got {value!r}.")
    if np.iscomplexobj(array):
        raise TypeError(f"`{name}` must be real (a float or float array); got {value!r}.")
    values = array.astype(np.float64)
    if np.any(np.isfinite(values) & (np.abs(values) > limit)):
        raise ValueError(f"`{name}` must lie within the float range (±{limit:.3g}); got {value!r}.")
    return values


class Frozen(eqx.Module):
    """A parameter that the gradient does not reach (its derivative is zero).

    `Frozen(value)` wraps a number, an array or a `Mixed`; `jax.grad` returns zeros for it,
    so an optimiser without weight decay leaves it unchanged.

    ```python
    lif = bj.LIF(10, tau_mem=bj.Frozen(6e-6))
    ```
    """

    value: Any

    def __init__(self, value):
        self.value = value if isinstance(value, Mixed) else jnp.asarray(value, dtype=float)


ParameterLike = ArrayLike | Mixed | Frozen
"""A parameter: a number or a float array `()` or `(neurons,)`, a `Mixed` or a `Frozen`."""


def as_parameter(value: Any, name: str, size: int) -> ParameterLike:
    """Turn a user's value into an array leaf (or keep a `Mixed`/`Frozen`), checking shape."""
    if isinstance(value, Frozen):
        as_parameter(value.value, name, size)
        return value
    if isinstance(value, Mixed):
        for part in (value.model, value.hardware):
            _check_shape(part, name, size)
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a number or a float array; got the bool {value!r}.")
    array = jnp.asarray(value, dtype=float)
    _check_shape(array, name, size)
    return array


def _check_shape(array, name: str, size: int) -> None:
    shape = jnp.shape(array)
    if shape not in ((), (size,)):
        raise ValueError(
            f"`{name}` must be a scalar or have shape (size,) = ({size},); got shape {shape}."
        )


def _side(value: ParameterLike, side: str) -> jax.Array:
    if isinstance(value, Frozen):
        return jax.lax.stop_gradient(_side(value.value, side))
    if isinstance(value, Mixed):
        return getattr(value, side)
    return jnp.asarray(value)


def model_value(value: ParameterLike) -> jax.Array:
    """The value the numerics use: `Mixed.model`, stop-gradient for `Frozen`, else itself."""
    return _side(value, "model")


def hardware_value(value: ParameterLike) -> jax.Array:
    """The value a chip is configured with: `Mixed.hardware`, else the plain value."""
    return _side(value, "hardware")

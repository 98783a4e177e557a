"""Value checks of neuron parameters beyond their shapes: no NaN or complex values, a
threshold above the reset, a positive AdEx slope (concrete values; a traced one is checked
where it was made)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._parameters import Frozen, Mixed

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_real(value, name):
    """Raise for a value that is not a real number or array (a string, None, a complex
    number), a NaN, or a finite value beyond float32's range, in the model or the chip
    value of a parameter."""
    if isinstance(value, Frozen):
        return check_real(value.value, name)
    for part in (value.model, value.hardware) if isinstance(value, Mixed) else (value,):
        if isinstance(part, jax.core.Tracer):
            continue
        try:
            array = None if isinstance(part, (str, bytes)) else np.asarray(part)
        except (TypeError, ValueError):
            array = None
        if array is None or array.dtype.kind not in "fiubc":
            raise TypeError(f"`{name}` must be a number or a float array; got {part!r}.")
        if np.iscomplexobj(array):
            raise TypeError(f"`{name}` must be real (a float or float array); got {part!r}.")
        values = array.astype(np.float64)
        if np.isnan(values).any():
            raise ValueError(f"`{name}` must not be NaN; got {part!r}.")
        if np.any(np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX)):
            raise ValueError(f"`{name}` must lie within float32's range; got {part!r}.")


def check_setting(value, name: str) -> float:
    """A chip setting as a non-negative finite float; else a named error."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"`{name}` must be a non-negative number; got {value!r}.")
    if not 0 <= value < float("inf"):
        raise ValueError(f"`{name}` must be a non-negative finite number; got {value!r}.")
    return float(value)


def check_relations(neuron, flags):
    """Raise for parameter values that break the dynamics: a threshold below the reset
    (the neuron would fire every step), a non-positive AdEx exponential slope."""
    if flags.get("fire"):
        for side, threshold, reset in _same_sides(neuron.threshold, neuron.reset):
            if np.any(np.asarray(threshold) < np.asarray(reset)):
                raise ValueError(
                    f"`threshold` must not lie below `reset` ({reset}{side}); got {threshold}."
                )
    if flags.get("exponential"):
        for side, slope, _ in _same_sides(neuron.exponential_slope, neuron.exponential_slope):
            if not np.all(np.asarray(slope) > 0):
                raise ValueError(f"`exponential_slope` must be positive{side}; got {slope}.")


def _same_sides(first, second):
    """`(side, a, b)` for the concrete values of two parameters on the same side: model
    and chip values when both are `Mixed`, the values when neither is; nothing for a
    `Mixed` beside a plain value (a chip-only setting, say, whose model side is unused)."""
    first = first.value if isinstance(first, Frozen) else first
    second = second.value if isinstance(second, Frozen) else second
    if isinstance(first, Mixed) and isinstance(second, Mixed):
        pairs = [(" in the model", first.model, second.model)]
        pairs.append((" on the chip", first.hardware, second.hardware))
    elif isinstance(first, Mixed) or isinstance(second, Mixed):
        return []
    else:
        pairs = [("", first, second)]
    traced = (jax.core.Tracer,)
    return [p for p in pairs if not isinstance(p[1], traced) and not isinstance(p[2], traced)]


_TRACED_RULES = {
    "tau_mem": ("positive", lambda x: ~(x > 0)),
    "tau_syn": ("positive", lambda x: ~(x > 0)),
    "tau_adap": ("positive", lambda x: ~(x > 0)),
    "membrane_capacitance": ("positive", lambda x: ~(x > 0)),
    "refractory_time": ("non-negative", lambda x: ~(x >= 0)),
}


def guard_traced(neuron, names) -> None:
    """The run-time counterpart of the checks above for parameters traced under `jit` or
    `vmap` (a network built inside a sweep): `eqx.error_if` on every traced leaf of the
    parameters `names` (`Mixed` and `Frozen` are pytrees), replacing them on `neuron`
    (call from its `__init__`). Time constants must be positive, no value NaN."""
    for name in names:
        rule, bad = _TRACED_RULES.get(name, ("not NaN", jnp.isnan))

        def check(leaf, name=name, rule=rule, bad=bad):
            if not isinstance(leaf, jax.core.Tracer):
                return leaf
            return eqx.error_if(leaf, jnp.any(bad(leaf)), f"`{name}` must be {rule}.")

        setattr(neuron, name, jax.tree_util.tree_map(check, getattr(neuron, name)))

"""Value checks of neuron parameters beyond their shapes: no NaN or complex values, a
threshold above the reset, a positive AdEx slope, time constants an Euler step can take
(concrete values; a traced one is checked where it was made); the readout settings that
the constructors share."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._misc import error_if
from ._parameters import Frozen, Mixed, real_values

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_real(value, name):
    """Raise for a value that is not a real number or array (a string, None, a complex
    number), a NaN, an infinity (but a threshold of +inf), or a finite value beyond
    float32's range, in the model or the chip value of a parameter."""
    if isinstance(value, Frozen):
        return check_real(value.value, name)
    for part in (value.model, value.hardware) if isinstance(value, Mixed) else (value,):
        values = real_values(part, name, _FLOAT32_MAX)
        if values is not None and np.isnan(values).any():
            raise ValueError(f"`{name}` must not be NaN; got {part!r}.")
        if values is None:
            continue
        # an infinite leak, slope or time constant gives NaN; +inf threshold: never fires
        infinite = np.isinf(values) & ~((values > 0) if name == "threshold" else False)
        if np.any(infinite):
            rule = "finite (or +inf: never fires)" if name == "threshold" else "finite"
            raise ValueError(f"`{name}` must be {rule}; got {part!r}.")


def check_setting(value, name: str) -> float:
    """A chip setting as a non-negative finite float; else a named error."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"`{name}` must be a non-negative number; got {value!r}.")
    if not 0 <= value < float("inf"):
        raise ValueError(f"`{name}` must be a non-negative finite number; got {value!r}.")
    return float(value)


def check_relations(neuron, flags):
    """Raise for parameter values that break the dynamics: a threshold below the reset
    (the neuron would fire every step), a non-positive AdEx exponential slope. Traced
    values: the same rules at run time (`error_if` on `threshold`, `exponential_slope`)."""
    if flags.get("fire"):
        _guard_traced_relation(neuron, "threshold", "reset")
        for side, threshold, reset in _same_sides(neuron.threshold, neuron.reset):
            if np.any(np.asarray(threshold) < np.asarray(reset)):
                raise ValueError(
                    f"`threshold` must not lie below `reset` ({reset}{side}); got {threshold}."
                )
    if flags.get("exponential"):
        _guard_traced_relation(neuron, "exponential_slope", None)
        for side, slope, _ in _same_sides(neuron.exponential_slope, neuron.exponential_slope):
            if not np.all(np.asarray(slope) > 0):
                raise ValueError(f"`exponential_slope` must be positive{side}; got {slope}.")


def _guard_traced_relation(neuron, name: str, lower: str | None) -> None:
    """`neuron.<name>` carrying the run-time check `name >= lower` (`> 0` without `lower`)
    when either value is traced (same sides as `_same_sides`, traced pairs only)."""
    first, second = getattr(neuron, name), getattr(neuron, lower or name)
    if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((first, second))):
        return
    first_v = first.value if isinstance(first, Frozen) else first
    second_v = second.value if isinstance(second, Frozen) else second
    if isinstance(first_v, Mixed) and isinstance(second_v, Mixed):
        pairs = [(first_v.model, second_v.model), (first_v.hardware, second_v.hardware)]
    elif isinstance(first_v, Mixed) or isinstance(second_v, Mixed):
        return
    else:
        pairs = [(first_v, second_v)]
    bad = jnp.any(jnp.asarray([jnp.any(a < b if lower else ~(a > 0)) for a, b in pairs]))
    rule = f"must not lie below `{lower}`" if lower else "must be positive"
    setattr(neuron, name, error_if(first, bad, f"`{name}` {rule} (a traced value does)."))


def guard_euler_step(network, dt: float):
    """The run-time counterpart of `check_euler_step` for time constants traced under
    `jit`: `network` carrying `error_if` (so that the run holds the check; on its small
    parameters, not on the inputs, which `error_if` would copy: `_misc.check_spikes`)."""
    for key in network.population_keys():
        neuron = network.population(key)
        if neuron.integrator != "euler":
            continue
        names = ["tau_syn"] + ["tau_mem"] * neuron.leaky + ["tau_adap"] * neuron.adaptation
        for name in names:
            value = getattr(neuron, name)
            value = value.value if isinstance(value, Frozen) else value
            value = value.model if isinstance(value, Mixed) else value
            if isinstance(value, jax.core.Tracer):
                message = (
                    f"`{name}` must exceed `dt` = {dt:g} s with integrator='euler' (a traced "
                    "value does not); lower `dt` or use integrator='exact'."
                )
                network = error_if(network, jnp.any(~(value > dt)), message)
    return network


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


def _positive(x):
    return ~((x > 0) & jnp.isfinite(x))


_TRACED_RULES = {
    "tau_mem": ("positive and finite", _positive),
    "tau_syn": ("positive and finite", _positive),
    "tau_adap": ("positive and finite", _positive),
    "membrane_capacitance": ("positive and finite", _positive),
    "refractory_time": ("non-negative and finite", lambda x: ~((x >= 0) & jnp.isfinite(x))),
    "threshold": ("finite (or +inf: never fires)", lambda x: jnp.isnan(x) | (x == -jnp.inf)),
}


def guard_traced(neuron, names) -> None:
    """The run-time counterpart of the checks above for parameters traced under `jit` or
    `vmap` (a network built inside a sweep): `_misc.error_if` on every traced leaf of the
    parameters `names` (`Mixed` and `Frozen` are pytrees), replacing them on `neuron`
    (call from its `__init__`). Time constants must be positive, every value finite (a
    threshold may be +inf)."""
    for name in names:
        rule, bad = _TRACED_RULES.get(name, ("finite", lambda x: ~jnp.isfinite(x)))

        def check(leaf, name=name, rule=rule, bad=bad):
            if not isinstance(leaf, jax.core.Tracer):
                return leaf
            return error_if(leaf, jnp.any(bad(leaf)), f"`{name}` must be {rule}.")

        setattr(neuron, name, jax.tree_util.tree_map(check, getattr(neuron, name)))


def check_positive(value, name):
    """Raise unless every concrete value of `value` (its model side if `Mixed`) is > 0."""
    for part in concrete_parts(value):
        if not bool(jnp.all(part > 0)):
            raise ValueError(f"`{name}` must be positive; got {part}.")


def check_non_negative(value, name):
    """Raise unless every concrete value of `value` (its model side if `Mixed`) is >= 0."""
    for part in concrete_parts(value):
        if not bool(jnp.all(part >= 0)):
            raise ValueError(f"`{name}` must be non-negative; got {part}.")


def concrete_parts(value):
    """The concrete model-side value of a parameter, as a 0- or 1-tuple."""
    if isinstance(value, Frozen):
        return concrete_parts(value.value)
    if isinstance(value, Mixed):
        value = value.model
    # A value traced under jit/vmap (a network built inside a sweep) is checked by no one
    # here; its concrete origin was.
    return () if isinstance(value, jax.core.Tracer) else (value,)


def check_euler_step(neuron, dt: float) -> None:
    """`AbstractNeuron.check_step`: raise when explicit Euler cannot integrate `neuron`
    with step `dt` (seconds)."""
    if neuron.integrator != "euler":
        return
    names = ["tau_syn"] + ["tau_mem"] * neuron.leaky + ["tau_adap"] * neuron.adaptation
    for name in names:
        for part in concrete_parts(getattr(neuron, name)):
            shortest = float(np.min(np.asarray(part)))
            if not shortest > dt:
                raise ValueError(
                    f"`{name}` must exceed `dt` = {dt:g} s with integrator='euler' (explicit "
                    f"Euler overshoots or diverges for dt >= tau); got {shortest:g} s. Lower "
                    "`dt` or use integrator='exact'."
                )


_READOUT_SETTINGS = (
    "integrator",
    "cadc_time_shift",
    "shift_cadc_to_first",
    "interpolation",
    "enable_spike_recording",
    "enable_cadc_recording",
    "enable_madc_recording",
    "record_neuron_id",
    "i_synin_gm",
    "synapse_dac_bias",
)


def readout_settings(arguments: dict[str, Any]) -> dict[str, Any]:
    """The readout settings among a constructor's arguments (`AbstractNeuron._setup`
    alone checks and stores them)."""
    return {name: arguments[name] for name in _READOUT_SETTINGS if name in arguments}

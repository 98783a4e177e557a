"""Neuron populations: LIF, LI and the AdEx family, with hxtorch's parameters and defaults.

A population is a pytree of its parameters. Numbers become float array leaves (trainable);
sizes, flags and choices of method are static.

Two sets of defaults. `LIF.model_space(n)` / `LI.model_space(n)` (start here) give the usual
model units, leak 0, reset 0, threshold 1, with hxtorch's chip values (80, 80, 125 CADC LSB)
as the chip side of each `Mixed`. The plain constructors `LIF(n)` / `LI(n)` keep hxtorch's
defaults (leak 80, reset 80, threshold 125, the same in model and chip space), so that a
port of an hxtorch script computes what hxtorch computes; with them, weights must be of
order tens before a neuron fires (see `bj.init_fluctuation_driven`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypedDict, TypeVar, Unpack

import equinox as eqx
import jax.numpy as jnp

from ._neuron_checks import (
    check_euler_step,
    check_non_negative,
    check_positive,
    check_real,
    check_relations,
    check_setting,
    guard_traced,
    readout_settings,
)
from ._parameters import Mixed, ParameterLike, as_parameter, model_value
from ._surrogate import AbstractSurrogate, SuperSpike
from ._typing import user_facing
from .kernels.cuba import CubaFlags, CubaParams

_CAPACITANCE_MODEL = 10e-6  # hxtorch's default: model value 1e-5, chip value 63 LSB
_CAPACITANCE_HARDWARE = 63.0
_LEAK_HARDWARE = 80.0  # hxtorch's chip defaults (CADC LSB): leak and reset 80, threshold 125
_THRESHOLD_HARDWARE = 125.0

_PARAMETERS = (*CubaParams._fields, "trace_scale", "trace_offset")
"""The float parameters, in the order they are checked and stored."""
_FLAGS = ("leaky", "fire", "exponential", "subthreshold_adaptation", "spike_triggered_adaptation")
"""The AdEx family's switches (static)."""
_LIF_FIXED: dict[str, Any] = dict(
    leaky=True,
    exponential=False,
    subthreshold_adaptation=False,
    spike_triggered_adaptation=False,
    exponential_slope=50e-3,
    exponential_threshold=110.0,
    subthreshold_adaptation_strength=0.0,
    spike_triggered_adaptation_increment=0.0,
    tau_adap=100e-6,
)
"""What `LIF` and `LI` fix of the AdEx family: leaky, no exponential term, no adaptation
(the unused parameters at hxtorch's values, `a` and `b` 0)."""

Interpolation = Literal["linear", "nearest"]
Integrator = Literal["euler", "exact"]


class Readout(TypedDict, total=False):
    """The readout and chip keywords that `LIF`, `LI` and `AdEx` share (hxtorch's names):
    `trace_scale=1`, `trace_offset=0` (measured CADC trace to model units),
    `cadc_time_shift=0` (steps), `shift_cadc_to_first=False`, `interpolation="linear"`,
    `integrator="euler"`, `enable_cadc_recording=True`, `enable_madc_recording=False`,
    `record_neuron_id=0` (the neuron the MADC watches), `i_synin_gm=500`,
    `synapse_dac_bias=600` (chip-only calibration targets)."""

    trace_scale: ParameterLike
    trace_offset: ParameterLike
    cadc_time_shift: int
    shift_cadc_to_first: bool
    interpolation: Interpolation
    integrator: Integrator
    enable_cadc_recording: bool
    enable_madc_recording: bool
    record_neuron_id: int
    i_synin_gm: float
    synapse_dac_bias: float


_READOUT_DEFAULTS = Readout(
    trace_scale=1.0,
    trace_offset=0.0,
    cadc_time_shift=0,
    shift_cadc_to_first=False,
    interpolation="linear",
    integrator="euler",
    enable_cadc_recording=True,
    enable_madc_recording=False,
    record_neuron_id=0,
    i_synin_gm=500.0,
    synapse_dac_bias=600.0,
)


class AbstractNeuron(eqx.Module):
    """A population of current-based neurons (hxtorch's `AELIF` and its reductions).

    Parameters (float, per-neuron array of shape `(size,)`, `Mixed` or `Frozen`):
    `leak`, `reset`, `threshold` (potentials); `tau_mem`, `tau_syn`, `refractory_time`,
    `tau_adap` (seconds); `membrane_capacitance` (model value in seconds-per-conductance
    units such that `dt / c` scales the synaptic input; chip value in LSB);
    `exponential_slope`, `exponential_threshold`, `subthreshold_adaptation_strength` (`a`),
    `spike_triggered_adaptation_increment` (`b`); `trace_scale`, `trace_offset` (readout
    post-processing of measured CADC traces).

    Static: `size`, the AdEx flags, `integrator` ("euler" is hxtorch's explicit Euler;
    "exact" decays exactly over a step), `cadc_time_shift` (steps), `shift_cadc_to_first`,
    `interpolation` ("linear" | "nearest"), the recording switches and `record_neuron_id`
    (the neuron the MADC watches), `i_synin_gm` and `synapse_dac_bias` (chip-only
    calibration targets).
    """

    size: int = eqx.field(static=True)
    leak: ParameterLike
    reset: ParameterLike
    threshold: ParameterLike
    tau_mem: ParameterLike
    tau_syn: ParameterLike
    membrane_capacitance: ParameterLike
    refractory_time: ParameterLike
    exponential_slope: ParameterLike
    exponential_threshold: ParameterLike
    subthreshold_adaptation_strength: ParameterLike
    spike_triggered_adaptation_increment: ParameterLike
    tau_adap: ParameterLike
    trace_scale: ParameterLike
    trace_offset: ParameterLike
    surrogate: AbstractSurrogate
    leaky: bool = eqx.field(static=True)
    fire: bool = eqx.field(static=True)
    exponential: bool = eqx.field(static=True)
    subthreshold_adaptation: bool = eqx.field(static=True)
    spike_triggered_adaptation: bool = eqx.field(static=True)
    integrator: str = eqx.field(static=True)
    cadc_time_shift: int = eqx.field(static=True)
    shift_cadc_to_first: bool = eqx.field(static=True)
    interpolation: str = eqx.field(static=True)
    enable_spike_recording: bool = eqx.field(static=True)
    enable_cadc_recording: bool = eqx.field(static=True)
    enable_madc_recording: bool = eqx.field(static=True)
    record_neuron_id: int = eqx.field(static=True)
    i_synin_gm: float = eqx.field(static=True)
    synapse_dac_bias: float = eqx.field(static=True)

    @user_facing
    def _setup(self, arguments: dict[str, Any], **fixed: Any) -> None:
        """Check and store a constructor's arguments (its `locals()`: its named keywords
        with their defaults, and `readout`, the `Readout` keywords given, over
        `_READOUT_DEFAULTS`), `fixed` the values its type sets in their place or beside
        them. An unknown readout keyword is a `TypeError`, as Python raises for a named one."""
        arguments = dict(arguments)
        given = arguments.pop("readout", {})
        unknown = sorted(set(given) - set(_READOUT_DEFAULTS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {unknown}; "
                f"its readout keywords are {sorted(_READOUT_DEFAULTS)}."
            )
        arguments = {**_READOUT_DEFAULTS, **given, **arguments, **fixed}
        size = arguments["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"`size` must be a positive int; got {size!r}.")
        self.size = size
        parameters = {name: arguments[name] for name in _PARAMETERS}
        if parameters["membrane_capacitance"] is None:
            parameters["membrane_capacitance"] = Mixed(_CAPACITANCE_MODEL, _CAPACITANCE_HARDWARE)
        for name, value in parameters.items():
            check_real(value, name)
            setattr(self, name, as_parameter(value, name, size))
        for name in ("tau_mem", "tau_syn", "tau_adap", "membrane_capacitance"):
            check_positive(getattr(self, name), name)
        check_non_negative(self.refractory_time, "refractory_time")
        flags = {name: arguments[name] for name in _FLAGS}
        check_relations(self, flags)
        guard_traced(self, parameters)
        surrogate = arguments["surrogate"]
        if not isinstance(surrogate, AbstractSurrogate):
            raise TypeError(
                "`surrogate` must be a bss2jax surrogate such as `bj.SuperSpike(alpha=50.0)`; "
                f"got {surrogate!r}."
            )
        self.surrogate = surrogate
        for name, value in flags.items():
            setattr(self, name, bool(value))
        readout = readout_settings(arguments)
        integrator = readout.pop("integrator")
        if integrator not in ("euler", "exact"):
            raise ValueError(f"`integrator` must be 'euler' or 'exact'; got {integrator!r}.")
        self.integrator = integrator
        interpolation = readout.pop("interpolation")
        if interpolation not in ("linear", "nearest"):
            raise ValueError(
                f"`interpolation` must be 'linear' or 'nearest'; got {interpolation!r}."
            )
        self.interpolation = interpolation
        shift = readout.pop("cadc_time_shift")
        if isinstance(shift, bool) or not isinstance(shift, int):
            raise ValueError(f"`cadc_time_shift` must be an int (steps); got {shift!r}.")
        self.cadc_time_shift = shift
        record = readout.pop("record_neuron_id")
        if isinstance(record, bool) or not isinstance(record, int) or not 0 <= record < size:
            raise ValueError(
                f"`record_neuron_id` must be an int in [0, size) = [0, {size}); got {record!r}."
            )
        self.record_neuron_id = record
        self.shift_cadc_to_first = bool(readout["shift_cadc_to_first"])
        self.enable_spike_recording = bool(readout["enable_spike_recording"]) and self.fire
        self.enable_cadc_recording = bool(readout["enable_cadc_recording"])
        self.enable_madc_recording = bool(readout["enable_madc_recording"])
        # a negative bias would flip every synapse's sign
        self.i_synin_gm = check_setting(readout["i_synin_gm"], "i_synin_gm")
        self.synapse_dac_bias = float(readout["synapse_dac_bias"])

    @property
    def adaptation(self) -> bool:
        """Whether the population carries an adaptation state."""
        return self.subthreshold_adaptation or self.spike_triggered_adaptation

    def cuba_flags(self) -> CubaFlags:
        """The static flags of the integrator."""
        return CubaFlags(
            leaky=self.leaky,
            fire=self.fire,
            refractory=self.fire,
            exponential=self.exponential,
            subthreshold_adaptation=self.subthreshold_adaptation,
            spike_triggered_adaptation=self.spike_triggered_adaptation,
            exact=self.integrator == "exact",
        )

    def check_step(self, dt: float) -> None:
        """Raise `ValueError` when explicit Euler (`integrator="euler"`) cannot integrate
        with step `dt` (seconds): a time constant at or below `dt` makes it overshoot or
        diverge. Concrete values only (a traced one was checked where it was made)."""
        check_euler_step(self, dt)

    def cuba_params(self) -> CubaParams:
        """Model-space values of the parameters, as the integrator takes them."""
        return CubaParams(*(model_value(getattr(self, name)) for name in CubaParams._fields))


def _model_space(fire: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a `model_space` preset: `overrides` over the preset's."""
    settings: dict[str, Any] = dict(
        leak=Mixed(0.0, _LEAK_HARDWARE),
        tau_mem=10e-6,
        tau_syn=10e-6,
        integrator="exact",
        trace_offset=_LEAK_HARDWARE,
        trace_scale=1.0 / (_THRESHOLD_HARDWARE - _LEAK_HARDWARE),
    )
    if fire:
        settings.update(reset=Mixed(0.0, _LEAK_HARDWARE), threshold=Mixed(1.0, _THRESHOLD_HARDWARE))
    settings.update(overrides)
    return settings


_Preset = TypeVar("_Preset", bound="AbstractPreset")


class AbstractPreset(AbstractNeuron):
    """A neuron type with a `model_space` preset (`LIF`, `LI`)."""

    _FIRES: ClassVar[bool]

    @classmethod
    def model_space(cls: type[_Preset], size: int, **overrides: Any) -> _Preset:
        """The population in the usual model units: `leak=Mixed(0, 80)`, and for `LIF`
        `reset=Mixed(0, 80)`, `threshold=Mixed(1, 125)`.

        The chip side: potentials in CADC LSB (hxtorch's defaults); the readout maps a
        measured CADC trace to model units with `trace_offset=80` and `trace_scale=1/45`
        (the nominal 45 LSB per model unit; `bj.align` measures a chip's own).
        `integrator="exact"` (the chip integrates in continuous time); time constants
        10 µs as in hxtorch. Any keyword of the constructor overrides the preset's.

        ```python
        lif = bj.LIF.model_space(128)
        readout = bj.LI.model_space(10)
        ```
        """
        return cls(size, **_model_space(cls._FIRES, overrides))


class LIF(AbstractPreset):
    """Leaky integrate-and-fire population (hxtorch's `LIF`), current-based synapses.

    New here? `bj.LIF.model_space(n)`: leak 0, reset 0, threshold 1 in the model (chip
    values 80, 80, 125 LSB). `bj.LIF(n)` keeps hxtorch's defaults for ports of hxtorch
    scripts: leak 80, reset 80, threshold 125 as *model* values too, so a fresh network
    needs weights of order tens to fire (`bj.init_fluctuation_driven` finds them).

    **Arguments** (hxtorch's defaults): `size`; `leak=80`, `reset=80`, `threshold=125`
    (model units; chip LSB unless `Mixed`); `tau_mem=tau_syn=10e-6` s;
    `refractory_time=1e-6` s; `membrane_capacitance=Mixed(10e-6, 63)`;
    `surrogate=SuperSpike(alpha=50)`; `trace_scale=1`, `trace_offset=0`, `cadc_time_shift=0`,
    `shift_cadc_to_first=False`, `interpolation="linear"`; `integrator="euler"`; recording
    switches (`enable_spike_recording=True`, `enable_cadc_recording=True`,
    `enable_madc_recording=False`, `record_neuron_id=0`); `i_synin_gm=500`,
    `synapse_dac_bias=600` (chip only).

    ```python
    lif = bj.LIF.model_space(100, tau_mem=6e-6, tau_syn=6e-6)
    ported = bj.LIF(100, threshold=bj.Mixed(1.0, 125.0))   # as in an hxtorch script
    ```
    """

    _FIRES = True

    @user_facing
    def __init__(
        self,
        size: int,
        *,
        leak: ParameterLike = 80.0,
        reset: ParameterLike = 80.0,
        threshold: ParameterLike = 125.0,
        tau_mem: ParameterLike = 10e-6,
        tau_syn: ParameterLike = 10e-6,
        membrane_capacitance: ParameterLike | None = None,
        refractory_time: ParameterLike = 1e-6,
        surrogate: AbstractSurrogate = SuperSpike(),
        enable_spike_recording: bool = True,
        **readout: Unpack[Readout],
    ):
        self._setup(locals(), fire=True, **_LIF_FIXED)


class LI(AbstractPreset):
    """Leaky integrator (hxtorch's `LI`, the readout): no threshold, no spikes.

    New here? `bj.LI.model_space(n)`: leak 0 in the model (80 LSB on the chip). `bj.LI(n)`
    keeps hxtorch's defaults (leak 80 as the model value too), for ports of hxtorch scripts.
    It may receive several input projections (their currents add). Same defaults as `LIF`
    for the parameters it has (`leak=80`, `tau_mem=tau_syn=10e-6` s, ...).

    ```python
    readout = bj.LI.model_space(3)
    ported = bj.LI(3, leak=bj.Mixed(0.0, 80.0), tau_mem=10e-6, tau_syn=10e-6)
    ```
    """

    _FIRES = False

    @user_facing
    def __init__(
        self,
        size: int,
        *,
        leak: ParameterLike = 80.0,
        tau_mem: ParameterLike = 10e-6,
        tau_syn: ParameterLike = 10e-6,
        membrane_capacitance: ParameterLike | None = None,
        **readout: Unpack[Readout],
    ):
        self._setup(
            locals(),
            fire=False,
            surrogate=SuperSpike(),
            enable_spike_recording=False,
            reset=leak,
            threshold=jnp.inf,
            refractory_time=0.0,
            **_LIF_FIXED,
        )


class AdEx(AbstractNeuron):
    """Adaptive exponential integrate-and-fire family (hxtorch's `AELIF`).

    All terms on by default, as in hxtorch; switch them with `leaky` (False gives an
    integrate-and-fire neuron, IAF), `fire`, `exponential`, `subthreshold_adaptation`
    (strength `subthreshold_adaptation_strength`, "a") and `spike_triggered_adaptation`
    (increment `spike_triggered_adaptation_increment`, "b"), with `tau_adap` in seconds.
    Defaults otherwise as `LIF`, plus `exponential_slope=50e-3`, `exponential_threshold=110`,
    `a=b=1`, `tau_adap=100e-6`.

    ```python
    iaf = bj.AdEx(10, leaky=False, exponential=False, subthreshold_adaptation=False,
                  spike_triggered_adaptation=False)
    ```
    """

    @user_facing
    def __init__(
        self,
        size: int,
        *,
        leak: ParameterLike = 80.0,
        reset: ParameterLike = 80.0,
        threshold: ParameterLike = 125.0,
        tau_mem: ParameterLike = 10e-6,
        tau_syn: ParameterLike = 10e-6,
        membrane_capacitance: ParameterLike | None = None,
        refractory_time: ParameterLike = 1e-6,
        exponential_slope: ParameterLike = 50e-3,
        exponential_threshold: ParameterLike = 110.0,
        subthreshold_adaptation_strength: ParameterLike = 1.0,
        spike_triggered_adaptation_increment: ParameterLike = 1.0,
        tau_adap: ParameterLike = 100e-6,
        leaky: bool = True,
        fire: bool = True,
        exponential: bool = True,
        subthreshold_adaptation: bool = True,
        spike_triggered_adaptation: bool = True,
        surrogate: AbstractSurrogate = SuperSpike(),
        enable_spike_recording: bool = True,
        **readout: Unpack[Readout],
    ):
        self._setup(
            locals(),
            threshold=threshold if fire else jnp.inf,
            refractory_time=refractory_time if fire else 0.0,
        )

"""The hxtorch adapter's pure part: an `ExperimentRequest` mapped to hxtorch, raw data back.

Checked against the real code, not the documentation: electronicvisions/hxtorch at
`3bfc7aadf33d795b5a184dfad03eedcf26243420` (2026-03-12, "hxtorch@3bfc7aa" below), the
grenade of the same day (`f66cf8fef8dc20d62866f1186f7e89cd12198923`, "grenade@f66cf8f") and
calix at `1dd7d7c293b83dd6e9b57e5c40d3029c3d2bc445` ("calix@1dd7d7c"). Paths are relative to
each repository; hxtorch's Python is under `src/pyhxtorch/hxtorch/spiking/`.

The mapping from an `ExperimentRequest` to hxtorch is pure functions on numpy data, tested
without a chip: signed weights for hxtorch's `Synapse` (which splits them into excitatory
and inhibitory rows again), the dense input tensor, and the neuron calibration targets,
checked against calix's ranges and types. Raw data come back from hxtorch's sparse handles
(`get_data()`) and are converted by pure functions too:

- spikes `(time, batch, neuron)`, CADC `(value, time, batch, neuron)` and MADC
  `(value, time, batch, neuron)` tuples, times in FPGA cycles of 125 MHz;
- CADC values arrive as raw − 128 in [-128, 127] and are mapped back to the 0..255 LSB
  scale of the rest of bss2jax (`cadc_from_hxtorch`).

Only `HxtorchClient.execute` and `HxtorchClient.self_test` need hxtorch and a chip; they
import hxtorch lazily, inside the call.
"""

from __future__ import annotations

import numpy as np

from .._constants import CADC_RANGE, CALIX_RANGES, FPGA_CLOCK
from .._errors import HardwareError
from .._hardware._protocol import (
    CADCSamples,
    ExperimentRequest,
    MADCSamples,
    PopulationRequest,
    ProjectionRequest,
    SpikeEvents,
)

HXTORCH_COMMIT = "3bfc7aadf33d795b5a184dfad03eedcf26243420"
"""The hxtorch this adapter was checked against (electronicvisions/hxtorch, 2026-03-12)."""

CADC_INT8_OFFSET = 128
"""hxtorch's CADC values are raw − 128: add this to get the 0..255 LSB scale.

grenade stores each raw CADC byte (0..255) as a signed `Int8` (two's complement:
`signal_flow::Int8(local_bytes.at(...))`, grenade@f66cf8f
`src/grenade/vx/execution/detail/execution_instance_chip_snippet_realtime_executor.cpp`),
and hxtorch hands it out as `int32(int8(value + 128))` (hxtorch@3bfc7aa
`src/hxtorch/spiking/extract_tensors.cpp`, `extract_cadc`): raw 80 arrives as -48, raw 200
as 72, always raw − 128 in [-128, 127]."""

INTEGER_TARGETS = ("leak", "reset", "threshold", "membrane_capacitance")
"""Targets that calix holds as integers: `NeuronCalibTarget.DenseDefault` has int arrays
for them (calix@1dd7d7c `src/py/calix/spiking/neuron.py`), and hxtorch's
`Population.calibration_from_params` writes the module's values into those arrays
(hxtorch@3bfc7aa `modules/types.py`), which truncates a float such as 80.7 to 80."""


class _CADCConventionError(HardwareError):
    """hxtorch's CADC values are outside the int8 convention (`cadc_from_hxtorch`)."""


def hxtorch_weight(projection: ProjectionRequest) -> np.ndarray:
    """The float32 `(out, in)` weight for hxtorch's `Synapse` with an identity transform.

    hxtorch splits a signed weight into an excitatory (positive part) and an inhibitory
    (negative part) projection, rounding by `±0.5` and truncation; for the integers of
    `exc - inh` that reproduces `weight_exc` and `weight_inh` exactly (`hxtorch_rows`).

    ```python
    weight = hxtorch_weight(request.projections[0])   # integers in [-63, 63]
    ```
    """
    return projection.signed_weight.astype(np.float32)


def hxtorch_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What hxtorch writes for a signed weight: (excitatory, inhibitory) magnitudes.

    `Synapse.add_to_network_graph` (hxtorch@3bfc7aa `modules/synapse.py`) adds 0.5 to the
    positive part and subtracts 0.5 from the negative part, truncates (`.int()`), and
    `weight_to_connection` (`src/hxtorch/core/weight_to_connection.cpp`) takes `abs`;
    returned as uint8.
    """
    weight = np.asarray(weight, np.float64)
    exc = np.trunc(np.where(weight > 0, weight + 0.5, 0.0)).astype(np.uint8)
    inh = np.trunc(np.where(weight < 0, -weight + 0.5, 0.0)).astype(np.uint8)
    return exc, inh


def input_steps(request: ExperimentRequest) -> int:
    """Grid steps of the input tensor: `round(runtime / dt)`, the `runtime` of `hxsnn.run`.

    `run` requires a Python int on hardware (hxtorch@3bfc7aa `run.py`).
    """
    return int(round(request.runtime / request.dt))


def input_tensor(request: ExperimentRequest) -> np.ndarray:
    """float32 `(time, batch, input_size)` 0/1 spikes: `LIFObservables(spikes=...)`'s tensor.

    Each spike at `t` sets step `round(t / dt)`, the inverse of hxtorch's
    `tensor_to_spike_times` (step `k` → `k * dt`, hxtorch@3bfc7aa
    `src/hxtorch/spiking/tensor_to_spike_times.cpp`).
    """
    steps = input_steps(request)
    dense = np.zeros((steps, request.batch_size, request.input_size), np.float32)
    for b, spikes in enumerate(request.input_spikes):
        index = np.round(spikes.times / request.dt).astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= steps):
            raise HardwareError(
                f"input spikes of batch entry {b} must lie in [0, runtime) = [0, "
                f"{request.runtime:g}) s; got one at {spikes.times[np.argmax(index)]:g} s."
            )
        dense[index, b, spikes.channels] = 1.0
    return dense


def input_spike_lists(request: ExperimentRequest, *, unit: float = 1e-3) -> list:
    """Spike times per batch entry and input channel: `lists[b][channel]` (sorted floats).

    `unit` is the time unit in seconds (default 1e-3: milliseconds, as hxtorch's
    `InputNeuron.add_to_input_generator` hands them to grenade's `InputGenerator.add`).
    """
    lists = []
    for spikes in request.input_spikes:
        per_channel: list[list[float]] = [[] for _ in range(request.input_size)]
        for t, c in zip(spikes.times.tolist(), spikes.channels.tolist(), strict=True):
            per_channel[c].append(t / unit)
        lists.append([sorted(times) for times in per_channel])
    return lists


def _integer_or_fail(population, name, values):
    if np.all(values == np.round(values)):
        return values
    bad = values != np.round(values)
    raise HardwareError(
        f"population {population.key!r}: calibration target `{name}` must be an integer on "
        f"BSS-2 (calix holds it as an int, and hxtorch's calibration_from_params would "
        f"truncate it); got {values[bad][0].item()!r} ({int(bad.sum())} of {values.size} "
        "neurons). Round it in the network's hardware value."
    )


def _uniform_or_list(values: np.ndarray, integer: bool):
    values = np.asarray(values, np.float64)
    if np.all(values == values[0]):
        return int(values[0]) if integer else float(values[0])
    return values.tolist()


def calibration_targets(population: PopulationRequest) -> dict:
    """hxtorch module arguments (hardware values) for one population, range- and type-checked.

    **Returns:** a dict with `leak`, `reset`, `threshold` (CADC LSB) and
    `membrane_capacitance` (LSB) as a Python int (uniform) or a list of integer-valued
    floats `(size,)`; `tau_mem`, `tau_syn`, `refractory_time` (seconds) as a float or a
    list; `i_synin_gm`, `synapse_dac_bias` as ints; and the recording switches. `reset`,
    `threshold`, `refractory_time` and `enable_spike_recording` only for a firing
    population: `LI` sets `refractory_time` and `enable_spike_recording` itself and would
    raise on a second value (hxtorch@3bfc7aa `modules/neuron.py`).

    Rules: a value outside calix's range (`CALIX_RANGES`, calix@1dd7d7c
    `spiking/neuron.py` `check_target`) or a non-integer for `INTEGER_TARGETS`,
    `i_synin_gm` or `synapse_dac_bias` raises `HardwareError` naming it.

    ```python
    targets = calibration_targets(request.populations[0])   # {"leak": 80, ...}
    ```
    """
    names = ["leak", "tau_mem", "tau_syn", "membrane_capacitance"]
    if population.fire:
        names += ["reset", "threshold", "refractory_time"]
    targets = {}
    for name in names:
        values = np.asarray(getattr(population, name), np.float64)
        low, high, unit = CALIX_RANGES[name]
        bad = ~((values >= low) & (values <= high))
        if bad.any():
            raise HardwareError(
                f"population {population.key!r}: calibration target `{name}` must lie in calix's "
                f"range [{low:g}, {high:g}] {unit}; got {values[bad][0].item()!r} "
                f"({int(bad.sum())} of {values.size} neurons)."
            )
        integer = name in INTEGER_TARGETS
        if integer:
            _integer_or_fail(population, name, values)
        targets[name] = _uniform_or_list(values, integer)
    for name in ("i_synin_gm", "synapse_dac_bias"):
        low, high, unit = CALIX_RANGES[name]
        value = getattr(population, name)
        if not low <= value <= high:
            raise HardwareError(
                f"population {population.key!r}: `{name}` must lie in [{low:g}, {high:g}] "
                f"{unit}; got {value!r}."
            )
        _integer_or_fail(population, name, np.asarray([value], np.float64))
        targets[name] = int(value)  # calix writes it to CapMem cells (integers)
    targets["enable_cadc_recording"] = bool(population.record_cadc)
    if population.fire:
        targets["enable_spike_recording"] = bool(population.record_spikes)
    return targets


def global_targets(request: ExperimentRequest) -> dict:
    """The chip-global `i_synin_gm` and `synapse_dac_bias`; populations must agree.

    hxtorch raises on conflicting global values (`calibration_from_params`); this says
    which populations differ.
    """
    result = {}
    for name in ("i_synin_gm", "synapse_dac_bias"):
        values = {p.key: getattr(p, name) for p in request.populations}
        if len(set(values.values())) > 1:
            raise HardwareError(
                f"`{name}` is chip-global on BSS-2: all populations must share one value; got "
                f"{values}."
            )
        result[name] = next(iter(values.values()))
    return result


def check_mappable(request: ExperimentRequest) -> None:
    """Raise `HardwareError` for what this adapter does not map to hxtorch.

    Rules: AdEx terms other than leak and firing are not mapped; a recurrent (delayed)
    projection needs hxtorch's `HXModuleWrapper`, not mapped either; every population
    needs exactly one incoming projection (hxtorch's `Synapse` has one source and one
    target).
    """
    for p in request.populations:
        extra = [
            f
            for f in ("exponential", "subthreshold_adaptation", "spike_triggered_adaptation")
            if getattr(p, f)
        ]
        if extra or not p.leaky:
            raise HardwareError(
                f"population {p.key!r}: the hxtorch adapter maps LIF and LI populations only; "
                f"got {p.kind} with {extra or ['leaky=False']}."
            )
        incoming = [q for q in request.projections if q.target == p.key]
        if len(incoming) != 1:
            raise HardwareError(
                f"population {p.key!r}: the hxtorch adapter needs exactly one incoming "
                f"projection per population; got {len(incoming)}."
            )
    for q in request.projections:
        if q.delayed:
            raise HardwareError(
                f"projection {q.source!r} → {q.target!r} is recurrent; hxtorch needs an "
                "HXModuleWrapper for that, which this adapter does not build."
            )


def _cycles_to_seconds(cycles) -> np.ndarray:
    return np.asarray(cycles, np.float64) / FPGA_CLOCK


def spikes_from_hxtorch(data) -> SpikeEvents:
    """`SpikeHandle.get_data()` tuples `(time_cycles, batch, neuron)` → `SpikeEvents`.

    hxtorch@3bfc7aa `src/hxtorch/spiking/extract_tensors.cpp` (`extract_spikes`): int64
    FPGA cycles since the start of the batch entry, batch entry, neuron in the population.
    """
    array = np.asarray(list(data), np.int64).reshape(-1, 3)
    return SpikeEvents(
        times=_cycles_to_seconds(array[:, 0]),
        neurons=array[:, 2].astype(np.int32),
        batch=array[:, 1].astype(np.int32),
    )


def cadc_from_hxtorch(data) -> CADCSamples:
    """`CADCHandle.get_data()` tuples `(value, time_cycles, batch, neuron)` → `CADCSamples`.

    hxtorch's values are raw − 128 in [-128, 127] (`CADC_INT8_OFFSET`); they are mapped to
    the 0..255 LSB scale here. A value outside [-128, 127] means hxtorch's convention
    changed, and raises `HardwareError` rather than being passed on shifted.
    """
    array = np.asarray(list(data), np.int64).reshape(-1, 4)
    values = array[:, 0]
    low, high = CADC_RANGE[0] - CADC_INT8_OFFSET, CADC_RANGE[1] - CADC_INT8_OFFSET
    outside = (values < low) | (values > high)
    if outside.any():
        raise _CADCConventionError(
            f"hxtorch's CADC values must be raw - {CADC_INT8_OFFSET} in [{low:g}, {high:g}] "
            f"(int8, hxtorch@{HXTORCH_COMMIT[:7]} extract_tensors.cpp); got "
            f"{values[outside][0].item()} ({int(outside.sum())} samples). hxtorch's value "
            "convention differs from the one this adapter was checked against (value offset)."
        )
    return CADCSamples(
        times=_cycles_to_seconds(array[:, 1]),
        values=(values + CADC_INT8_OFFSET).astype(np.float64),
        neurons=array[:, 3].astype(np.int32),
        batch=array[:, 2].astype(np.int32),
    )


def madc_from_hxtorch(data) -> MADCSamples:
    """`MADCHandle.get_data()` tuples `(value, time_cycles, batch, neuron)` → `MADCSamples`.

    hxtorch@3bfc7aa `extract_tensors.cpp` (`extract_madc`): the 10-bit sample
    (haldls `MADCSampleFromChip::Value`, 0..1023) as int16, FPGA cycles since the start
    of the batch entry, batch entry, and the watched neuron's index in its population.
    """
    array = np.asarray(list(data), np.int64).reshape(-1, 4)
    return MADCSamples(
        times=_cycles_to_seconds(array[:, 1]),
        values=array[:, 0].astype(np.float64),
        batch=array[:, 2].astype(np.int32),
    )


READ_BACK = {
    # name → rows of hxtorch's hardware_value after `params_from_calibration`
    # (hxtorch@3bfc7aa `modules/types.py`): per neuron `(size,)`, `tau_syn` may be
    # `(2, size)` (excitatory, inhibitory), `i_synin_gm` is `(2,)`, the bias a scalar.
    "leak": "neuron",
    "tau_mem": "neuron",
    "tau_syn": "neuron",
    "membrane_capacitance": "neuron",
    "reset": "neuron",
    "threshold": "neuron",
    "refractory_time": "neuron",
    "i_synin_gm": "global",
    "synapse_dac_bias": "global",
}
"""The settings read back from hxtorch's modules after a run, and their shape kind."""


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float64)


def read_back(module, population: PopulationRequest) -> dict:
    """What hxtorch configured for one population: name → float64 array.

    Reads `module.<name>.hardware_value` (the `HXParameter` that hxtorch calibrates for
    and, with a calibration file, overwrites from the file's targets). Per-neuron values
    come back as `(size,)` (or `(2, size)` for `tau_syn`), `i_synin_gm` and
    `synapse_dac_bias` as given by hxtorch.
    """
    names = ["leak", "tau_mem", "tau_syn", "membrane_capacitance", "i_synin_gm"]
    names += ["synapse_dac_bias"]
    if population.fire:
        names += ["reset", "threshold", "refractory_time"]
    settings = {}
    for name in names:
        value = _as_numpy(getattr(module, name).hardware_value)
        if READ_BACK[name] == "neuron" and value.ndim == 0:
            value = np.full(population.size, value.item())
        settings[name] = value
    return settings


def settings_mismatches(population: PopulationRequest, chip: dict, *, rtol=1e-4) -> list[str]:
    """Lines naming each setting where `chip` (from `read_back`) differs from the request.

    Equal within `rtol` (relative; hxtorch hands times through float32 and `quantities`).
    """
    lines = []
    for name, value in chip.items():
        requested = np.asarray(getattr(population, name), np.float64)
        got = np.asarray(value, np.float64)
        if READ_BACK[name] == "neuron" and got.ndim == 2:  # (2, size) for tau_syn
            requested = np.broadcast_to(requested, got.shape)
        try:
            close = np.isclose(got, requested, rtol=rtol, atol=0.0)
        except ValueError:  # shapes differ: certainly not what was asked for
            close = np.zeros(1, bool)
        if not close.all():
            lines.append(
                f"population {population.key!r}: `{name}` runs at "
                f"{_short(got)} on the chip; the request asks for {_short(requested)}"
            )
    return lines


def _short(values) -> str:
    values = np.asarray(values, np.float64).ravel()
    unique = np.unique(values)
    if unique.size == 1:
        return f"{unique[0]:g}"
    return "[" + ", ".join(f"{v:g}" for v in values[:6]) + (", ...]" if values.size > 6 else "]")


def _require(hxsnn, name: str):
    value = getattr(hxsnn, name, None)
    if value is None:
        raise HardwareError(
            f"hxtorch.spiking has no `{name}`; this adapter was checked against hxtorch "
            f"{HXTORCH_COMMIT} (LIF, LI, LIFObservables since the 2025-06 AELIF refactor)."
        )
    return value


def _capturing(cls, key, captured: dict):
    """A subclass of hxtorch's neuron module whose `post_process` keeps the raw data.

    `post_process(hw_data, runtime)` is called once per hardware module after the run
    (`Experiment._get_observables`, hxtorch@3bfc7aa `experiment.py`) with a
    `HardwareObservables(spikes, cadc, madc)` of `SpikeHandle`/`CADCHandle`/`MADCHandle`
    or None (`observables.py`). The raw tuples are read with `get_data()`; hxtorch's own
    result (a `Handle(voltage=AnalogObservable, adaptation=..., spikes=...)`, which its
    `forward_func` reads next) is returned unchanged.
    """

    class Capturing(cls):
        def post_process(self, hw_data, runtime):
            captured[key] = {
                name: None if getattr(hw_data, name) is None else getattr(hw_data, name).get_data()
                for name in ("spikes", "cadc", "madc")
            }
            return super().post_process(hw_data, runtime)

    Capturing.__name__ = f"Capturing{cls.__name__}"
    return Capturing

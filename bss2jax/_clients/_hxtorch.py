"""`HxtorchClient`: a real BrainScaleS-2 system through hxtorch, as a `Hardware` client.

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

import dataclasses

import numpy as np

from .._constants import CADC_RANGE, CALIX_RANGES, FPGA_CLOCK, WEIGHT_MAX
from .._errors import HardwareError
from .._hardware._protocol import (
    AbstractClient,
    CADCSamples,
    ExperimentRequest,
    MADCSamples,
    PopulationRequest,
    ProjectionRequest,
    RawRecording,
    SpikeEvents,
    configuration_hash,
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


class CalibrationMismatchError(HardwareError):
    """The chip runs other neuron settings than the request asked for.

    With a calibration file, hxtorch replaces every population's hardware values by the
    file's targets (`ExecutionInstance.calibrate` → `Population.params_from_calibration`,
    hxtorch@3bfc7aa `execution_instance.py`, `modules/types.py`). `HxtorchClient` reads
    them back after the first run of each configuration and raises this error, naming
    each setting, when they differ from the request.
    """


class SelfTestError(HardwareError):
    """`HxtorchClient.self_test` found the chip not behaving as expected.

    `cause` names the likely cause: "value offset", "calibration override", "leak",
    "time offset", "PSP sign", "no PSP", "PSP size" or "MADC"; the message says what was
    measured and what was expected.
    """

    def __init__(self, cause: str, message: str):
        super().__init__(f"self-test failed ({cause}): {message}")
        self.cause = cause


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
        per_channel = [[] for _ in range(request.input_size)]
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


class HxtorchClient(AbstractClient):
    """A BSS-2 system through hxtorch (`hxtorch.spiking`); imports hxtorch on first use.

    **Arguments:**
    - `calib_path`: a calix-native calibration file (`.pkl`, e.g. the nightly
      `spiking_calix-native.pkl`) for `ExecutionInstance.load_calib`. hxtorch then runs
      **the file's** neuron settings, whatever the network asks for; the client reads
      them back after the first run of each configuration and raises
      `CalibrationMismatchError` when they differ from the request. None (the default)
      lets hxtorch calibrate the chip for the populations' targets with calix (minutes the
      first time; calix caches results by target).
    - `init_hardware`: call `hxtorch.init_hardware()` on first use and
      `hxtorch.release_hardware()` in `close()`.

    The experiment (modules, calibration) is built once per set of neuron settings; when
    only the weights change (`request.reconfigure` with the same neurons) the synapse
    weights are replaced in place, and otherwise only the inputs change. Raw data are read
    from the modules' hardware observables before hxtorch converts them, so `Hardware` sees
    the real irregular CADC sample times. `chip_settings` holds what hxtorch configured
    (population key → name → array, from `read_back`) after the last build.

    Start on a new system with `client.self_test()`.

    ```python
    client = bj.HxtorchClient(calib_path=None)
    client.self_test()
    backend = bj.Hardware(client, timeout=120.0, record_to="chip-session")
    ```
    """

    def __init__(self, *, calib_path: str | None = None, init_hardware: bool = True):
        if calib_path is not None and not str(calib_path).endswith(".pkl"):
            raise HardwareError(
                "`calib_path` must be a calix-native calibration (`.pkl`) or None; got "
                f"{str(calib_path)!r}. hxtorch loads other files (coco binaries) without "
                "their targets (ExecutionInstance.load_calib), so what the chip runs could "
                "not be read back."
            )
        self.calib_path = calib_path
        self.init_hardware = init_hardware
        self.chip_settings: dict = {}
        self._modules = None
        self._neurons = None
        self._checked = False
        self._initialised = False

    def _import(self):
        try:
            import hxtorch
            import hxtorch.spiking as hxsnn
            import torch
        except ImportError as error:
            raise HardwareError(
                "HxtorchClient needs hxtorch and torch (the BrainScaleS-2 software stack); "
                f"they are not importable here ({error}). Run on a BSS-2 system, or use "
                "bj.ChipModelClient / bj.Replay without a chip."
            ) from error
        return hxtorch, hxsnn, torch

    @staticmethod
    def _tensor(torch, value):
        # A per-neuron list becomes a float tensor (integer values stay exact in float32);
        # a uniform value stays a Python number, like hxtorch's own defaults.
        return torch.as_tensor(value, dtype=torch.float32) if isinstance(value, list) else value

    def _build(self, request, hxsnn, torch):
        # hxtorch@3bfc7aa: `Experiment(mock, dt)` (experiment.py); `LIF`/`LI(size,
        # experiment, **targets)` (modules/neuron.py), whose `**extra_params` end in
        # `Population._generate_hxparameters`, which keeps known names only: a misspelt
        # keyword is silently dropped by hxtorch, so `calibration_targets` owns the names.
        experiment = hxsnn.Experiment(mock=False, dt=request.dt)
        if self.calib_path is not None:
            experiment.default_execution_instance.load_calib(self.calib_path)
        captured = {}
        populations = {}
        global_targets(request)
        for p in request.populations:
            kwargs = {k: self._tensor(torch, v) for k, v in calibration_targets(p).items()}
            if request.madc is not None and request.madc[0] == p.key:
                kwargs.update(enable_madc_recording=True, record_neuron_id=int(request.madc[1]))
            cls = _require(hxsnn, "LIF" if p.fire else "LI")
            populations[p.key] = _capturing(cls, p.key, captured)(p.size, experiment, **kwargs)
        synapses = []
        for q in request.projections:
            out_features, in_features = q.weight_exc.shape
            # `Synapse(in_features, out_features, experiment, ..., transform=...)`
            # (modules/synapse.py); identity transform: the weights are chip integers.
            synapse = hxsnn.Synapse(in_features, out_features, experiment, transform=lambda w: w)
            synapse.weight.data = torch.as_tensor(hxtorch_weight(q))
            synapses.append(synapse)
        return experiment, populations, synapses, captured

    def execute(self, request: ExperimentRequest) -> RawRecording:
        hxtorch, hxsnn, torch = self._import()
        check_mappable(request)
        if self.init_hardware and not self._initialised:
            hxtorch.init_hardware()  # src/hxtorch/hxtorch_core.cpp, default arguments
            self._initialised = True
        neurons = configuration_hash(request.populations, ())
        if self._modules is None or neurons != self._neurons:
            self._modules = self._build(request, hxsnn, torch)  # calibration, placement
            self._neurons = neurons
            self._checked = False
        elif request.reconfigure:  # only the weights changed: no new experiment
            for projection, synapse in zip(request.projections, self._modules[2], strict=True):
                synapse.weight.data = torch.as_tensor(hxtorch_weight(projection))
        experiment, populations, synapses, captured = self._modules
        captured.clear()
        # An input handle that no module produced is an open source: hxtorch inserts an
        # `InputNeuron` for it (`ModuleManager._handle_inputs`, backend/module_manager.py).
        spikes_in = torch.as_tensor(input_tensor(request))
        handles = {"input": _require(hxsnn, "LIFObservables")(spikes=spikes_in)}
        keys = list(request.keys())
        pending = list(zip(request.projections, synapses, strict=True))
        while pending:  # feed-forward order: a projection runs once its source exists
            for item in pending:
                projection, synapse = item
                if projection.source in handles:
                    handles[projection.target] = populations[projection.target](
                        synapse(handles[projection.source])
                    )
                    pending.remove(item)
                    break
            else:
                raise HardwareError(f"projections do not form a feed-forward chain over {keys}.")
        hxsnn.run(experiment, input_steps(request))  # run.py: `run(experiment, runtime: int)`
        if not self._checked:
            self._check_settings(request, populations)
        spikes, cadc, madc = {}, {}, {}
        for p in request.populations:
            data = captured.get(p.key)
            if data is None:
                raise HardwareError(f"hxtorch returned no hardware data for population {p.key!r}.")
            if p.record_spikes:
                spikes[p.key] = spikes_from_hxtorch(_present(data, "spikes", p.key))
            if p.record_cadc:
                cadc[p.key] = cadc_from_hxtorch(_present(data, "cadc", p.key))
            if request.madc is not None and request.madc[0] == p.key:
                madc[p.key] = madc_from_hxtorch(_present(data, "madc", p.key))
        return RawRecording(spikes=spikes, cadc=cadc, madc=madc)

    def _check_settings(self, request, populations) -> None:
        self.chip_settings = {p.key: read_back(populations[p.key], p) for p in request.populations}
        lines = []
        for p in request.populations:
            lines += settings_mismatches(p, self.chip_settings[p.key])
        if lines:
            self._modules = None  # rebuild (and check again) on the next call
            source = (
                f"the calibration file {str(self.calib_path)!r}"
                if self.calib_path is not None
                else "hxtorch's calibration"
            )
            raise CalibrationMismatchError(
                f"{source} overrides the requested neuron settings (hxtorch's "
                "ExecutionInstance.calibrate → Population.params_from_calibration):\n  "
                + "\n  ".join(lines)
                + "\nSet the network's hardware values to the file's, or use "
                "HxtorchClient(calib_path=None) to calibrate for the request."
            )
        self._checked = True

    def self_test(
        self,
        *,
        dt: float = 1e-6,
        runtime: float = 60e-6,
        leak: int = 80,
        weight: int = WEIGHT_MAX,
        leak_tolerance: float = 10.0,
        psp_tolerance: float = 4.0,
        verbose: bool = True,
    ) -> SelfTestReport:
        """First contact with a chip: a leak-only run and a single-PSP run, checked.

        Two `LI` neurons (hxtorch's defaults: `tau_mem = tau_syn = 10e-6` s) get one input
        channel, neuron 0 with weight `+weight`, neuron 1 with `-weight`; the MADC watches
        neuron 0. Both runs go through `bj.Hardware`, as a user's runs do.

        1. No input: each neuron's mean CADC value must be `leak` within
           `leak_tolerance` LSB (default 10: about three times the CADC channel spread
           that calix's tests allow, std < 3 LSB).
        2. One input spike at `runtime / 4`: the PSP of neuron 0 must rise and that of
           neuron 1 fall, each with a peak within a factor `psp_tolerance` of the chip
           model's (`ChipModel(ChipInstance.nominal(), ChipConfig.noiseless())`, whose
           synaptic efficacy is an estimate), reaching half its peak within two CADC
           sample intervals (or two `dt`) of the model's time; CADC and MADC samples must
           cover the whole run, and the MADC trace must rise too.

        **Returns:** a `SelfTestReport` (printed when `verbose`).

        **Raises:** `SelfTestError` whose `cause` names the likely cause: "value offset"
        (CADC values shifted by hxtorch's int8 convention), "calibration override" (the
        calibration file's settings differ from the request), "leak" (the calibration
        does not hold), "time offset" (samples or the PSP shifted in time), "PSP sign"
        (excitatory and inhibitory inputs swapped), "no PSP" (input does not reach the
        neurons), "PSP size", or "MADC".

        ```python
        with bj.HxtorchClient() as client:
            print(client.self_test(verbose=False))
        ```
        """
        return _self_test(
            self,
            dt=dt,
            runtime=runtime,
            leak=leak,
            weight=weight,
            leak_tolerance=leak_tolerance,
            psp_tolerance=psp_tolerance,
            verbose=verbose,
        )

    def close(self) -> None:
        if self._initialised:
            import hxtorch

            hxtorch.release_hardware()
            self._initialised = False
        self._modules = None


def _present(data: dict, name: str, key):
    if data.get(name) is None:
        raise HardwareError(
            f"hxtorch returned no {name} data for population {key!r}, which recorded it."
        )
    return data[name]


@dataclasses.dataclass(frozen=True)
class SelfTestReport:
    """What `HxtorchClient.self_test` measured (CADC LSB, seconds).

    - `leak_requested`; `leak_measured`: `(2,)` mean CADC value per neuron without input.
    - `psp_expected`, `psp_measured`: `(2,)` signed peak deviation from the baseline
      (neuron 0 excitatory, neuron 1 inhibitory); `psp_delay`: `(2,)` measured minus
      expected time of half the peak.
    - `cadc_first`, `cadc_last`, `cadc_interval`: first and last CADC sample time and
      the median interval (neuron 0); `madc_first`, `madc_last`, `madc_interval` alike.
    - `runtime`; `chip_settings`: what hxtorch configured (`HxtorchClient.chip_settings`).
    """

    leak_requested: float
    leak_measured: np.ndarray
    psp_expected: np.ndarray
    psp_measured: np.ndarray
    psp_delay: np.ndarray
    cadc_first: float
    cadc_last: float
    cadc_interval: float
    madc_first: float
    madc_last: float
    madc_interval: float
    runtime: float
    chip_settings: dict

    def __str__(self) -> str:
        us = 1e6
        lines = [
            f"hxtorch self-test (checked against hxtorch {HXTORCH_COMMIT[:7]}): passed",
            f"  leak: requested {self.leak_requested:g} LSB, measured "
            + ", ".join(f"{v:.1f}" for v in self.leak_measured),
            "  PSP peak (exc, inh): expected "
            + ", ".join(f"{v:+.1f}" for v in self.psp_expected)
            + " LSB, measured "
            + ", ".join(f"{v:+.1f}" for v in self.psp_measured),
            "  PSP half-rise delay vs model: "
            + ", ".join(f"{v * us:+.2f}" for v in self.psp_delay)
            + " us",
            f"  CADC samples: {self.cadc_first * us:.2f} .. {self.cadc_last * us:.2f} us of "
            f"{self.runtime * us:g} us, every {self.cadc_interval * us:.2f} us",
            f"  MADC samples: {self.madc_first * us:.3f} .. {self.madc_last * us:.3f} us, "
            f"every {self.madc_interval * 1e9:.1f} ns",
        ]
        for key, settings in self.chip_settings.items():
            lines.append(
                f"  chip settings of population {key!r}: "
                + ", ".join(f"{name}={_short(value)}" for name, value in settings.items())
            )
        return "\n".join(lines)


class _Keeping(AbstractClient):
    """Delegates to a client and keeps each (request, raw recording, error)."""

    def __init__(self, client, kept: list):
        self.client, self.kept = client, kept

    def execute(self, request):
        try:
            raw = self.client.execute(request)
        except Exception as error:
            self.kept.append((request, None, error))
            raise
        self.kept.append((request, raw, None))
        return raw


def _observe(backend, net, inputs, dt, kept):
    import jax.numpy as jnp

    try:
        recording = backend.observe(net, jnp.asarray(inputs), dt=dt, key=None)
    except HardwareError as error:
        original = kept[-1][2] if kept and kept[-1][2] is not None else error
        if isinstance(original, CalibrationMismatchError):
            raise SelfTestError("calibration override", str(original)) from error
        if isinstance(original, _CADCConventionError):
            raise SelfTestError("value offset", str(original)) from error
        raise
    return np.asarray(recording.populations[0].membrane_cadc, np.float64)[:, 0, :]


def _coverage(times, runtime, what):
    times = np.unique(np.asarray(times, np.float64))
    if times.size < 2:
        raise SelfTestError("time offset", f"{what}: {times.size} sample(s) in the whole run.")
    interval = float(np.median(np.diff(times)))
    first, last = float(times[0]), float(times[-1])
    if first > 2 * interval or runtime - last > 2 * interval:
        raise SelfTestError(
            "time offset",
            f"{what} samples cover {first * 1e6:.2f} .. {last * 1e6:.2f} us of a "
            f"{runtime * 1e6:g} us run (every {interval * 1e6:.3f} us): they should start and "
            "end within two sample intervals of the run's bounds (grenade's time base for "
            "the PPU's CADC samples or the FPGA's event window differs from the one checked).",
        )
    return first, last, interval


def check_leak(measured, leak, tolerance):
    """Raise `SelfTestError` unless every neuron's `measured` mean is `leak` ± `tolerance`."""
    off = np.abs(measured - leak) > tolerance
    if not off.any():
        return
    text = ", ".join(f"{v:.1f}" for v in measured)
    for shift in (CADC_INT8_OFFSET, -CADC_INT8_OFFSET):
        if np.all(np.abs(measured - (leak + shift)) <= tolerance):
            raise SelfTestError(
                "value offset",
                f"the leak reads {text} LSB for a requested {leak:g}, i.e. {shift:+d}: hxtorch's "
                "CADC value convention (raw - 128) differs from the one this adapter expects.",
            )
    raise SelfTestError(
        "leak",
        f"the leak reads {text} LSB for a requested {leak:g} (tolerance {tolerance:g}): the "
        "chip's calibration does not hold for these settings (a stale calibration file, or "
        "calix failed); recalibrate with HxtorchClient(calib_path=None).",
    )


def check_psp(measured, expected, onset, dt, interval, tolerance):
    """Compare single-PSP traces `(time, neurons)`; return (peaks measured, expected, delays).

    Baselines are the means up to step `onset` (the input spike); a response counts when
    its peak exceeds three times the baseline's std and two LSB (the CADC quantisation
    step is one LSB). Raises `SelfTestError` ("PSP sign", "no PSP", "PSP size", "time
    offset") when the measured PSPs do not match the expected ones.
    """
    dev_m = measured - measured[: onset + 1].mean(0)
    dev_e = expected - expected[: onset + 1].mean(0)
    detect = np.maximum(3 * measured[: onset + 1].std(0), 2.0)
    sign = np.sign(dev_e[np.argmax(np.abs(dev_e), 0), np.arange(dev_e.shape[1])])
    after_m, after_e = sign * dev_m[onset:], sign * dev_e[onset:]
    peak_m, peak_e, wrong = after_m.max(0), after_e.max(0), (-after_m).max(0)
    missing = peak_m < detect
    if missing.any():
        if np.all(wrong[missing] >= detect[missing]):
            raise SelfTestError(
                "PSP sign",
                "the PSPs have the wrong sign (expected "
                + ", ".join(f"{s * p:+.1f}" for s, p in zip(sign, peak_e, strict=True))
                + " LSB, measured "
                + ", ".join(f"{-s * p:+.1f}" for s, p in zip(sign, wrong, strict=True))
                + "): excitatory and inhibitory inputs are swapped.",
            )
        raise SelfTestError(
            "no PSP",
            f"neurons {np.flatnonzero(missing).tolist()} show no response to the input spike at "
            f"{onset * dt * 1e6:g} us (threshold {detect.max():.1f} LSB): input spikes do not "
            "reach the neurons (routing, weights not written) or arrive outside the run.",
        )
    ratio = peak_m / peak_e
    if np.any((ratio < 1 / tolerance) | (ratio > tolerance)):
        raise SelfTestError(
            "PSP size",
            f"PSP peaks are {', '.join(f'{r:.2f}' for r in ratio)} times the chip model's "
            f"(allowed 1/{tolerance:g} .. {tolerance:g}): check i_synin_gm / synapse_dac_bias "
            "and the calibration.",
        )
    half_m = np.argmax(after_m >= peak_m / 2, 0)
    half_e = np.argmax(after_e >= peak_e / 2, 0)
    delay = (half_m - half_e) * dt
    allowed = max(2 * interval, 2 * dt)
    if np.any(np.abs(delay) > allowed):
        raise SelfTestError(
            "time offset",
            f"the PSPs reach half their peak {', '.join(f'{d * 1e6:+.2f}' for d in delay)} us "
            f"from the chip model's time (allowed ±{allowed * 1e6:.2f} us): CADC sample times "
            "and input spike times do not share one time base.",
        )
    return sign * peak_m, sign * peak_e, delay


def _self_test(client, *, dt, runtime, leak, weight, leak_tolerance, psp_tolerance, verbose):
    import jax.numpy as jnp

    from .._backend import ChipModel, Hardware
    from .._chip._config import ChipConfig
    from .._chip._instance import ChipInstance
    from .._network import Sequential
    from .._neurons import LI
    from .._synapse import Synapse

    net = Sequential(
        [
            Synapse(1, 2, weight=jnp.array([[float(weight)], [-float(weight)]])),
            LI(2, leak=float(leak), enable_madc_recording=True, record_neuron_id=0),
        ]
    )
    steps = int(round(runtime / dt))
    onset = steps // 4
    quiet = np.zeros((steps, 1, 1), np.float32)
    pulse = quiet.copy()
    pulse[onset, 0, 0] = 1.0
    kept = []
    backend = Hardware(_Keeping(client, kept), timeout=None, retries=0)

    leak_trace = _observe(backend, net, quiet, dt, kept)
    check_leak(leak_trace.mean(0), float(leak), leak_tolerance)

    psp_trace = _observe(backend, net, pulse, dt, kept)
    _, raw, _ = kept[-1]
    cadc = raw.cadc[0]
    cadc_first, cadc_last, cadc_interval = _coverage(cadc.times[cadc.neurons == 0], runtime, "CADC")
    madc = raw.madc[0]
    madc_first, madc_last, madc_interval = _coverage(madc.times, runtime, "MADC")
    model = ChipModel(ChipInstance.nominal(), ChipConfig.noiseless())
    expected = np.asarray(
        model.observe(net, jnp.asarray(pulse), dt=dt, key=None).populations[0].membrane_cadc,
        np.float64,
    )[:, 0, :]
    psp_measured, psp_expected, delay = check_psp(
        psp_trace, expected, onset, dt, cadc_interval, psp_tolerance
    )
    before = madc.values[madc.times <= onset * dt]
    rise = madc.values[madc.times > onset * dt].max() - np.median(before)
    if rise < max(3 * before.std(), 2.0):
        raise SelfTestError(
            "MADC",
            f"the MADC trace of neuron 0 rises by {rise:.1f} LSB after the input spike, less than "
            "three times its noise: the MADC watches another neuron or its time window is off.",
        )
    report = SelfTestReport(
        leak_requested=float(leak),
        leak_measured=leak_trace.mean(0),
        psp_expected=psp_expected,
        psp_measured=psp_measured,
        psp_delay=delay,
        cadc_first=cadc_first,
        cadc_last=cadc_last,
        cadc_interval=cadc_interval,
        madc_first=madc_first,
        madc_last=madc_last,
        madc_interval=madc_interval,
        runtime=steps * dt,
        chip_settings=dict(client.chip_settings),
    )
    if verbose:
        print(report)
    return report

"""`HxtorchClient`: a real BrainScaleS-2 system through hxtorch, as a `Hardware` client.

The mapping from an `ExperimentRequest` to hxtorch is pure functions on numpy data, tested
without a chip: signed weights for hxtorch's `Synapse` (which splits them into excitatory
and inhibitory rows again, `split_weight` checks the round trip), the dense input tensor
and per-(batch, channel) spike-time lists, and the neuron calibration targets checked
against calix's feasible ranges. Raw data come back from hxtorch's sparse handles
(`get_data()`: CADC `(value, time, batch, neuron)`, spikes `(time, batch, neuron)`, MADC
`(value, time, batch, ...)`, times in FPGA cycles of 125 MHz) and are converted by pure
functions too. Only `HxtorchClient.execute` needs hxtorch and a chip; it imports hxtorch
lazily, inside the call.
"""

from __future__ import annotations

import numpy as np

from .._constants import CALIX_RANGES, FPGA_CLOCK
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
    """What hxtorch's C++ `weight_to_connection` writes: (excitatory, inhibitory) magnitudes.

    Positive weights `int(w + 0.5)` on the excitatory row, negative ones `int(-w + 0.5)`
    on the inhibitory row, both as uint8 (truncation toward zero, as in C++).
    """
    weight = np.asarray(weight, np.float64)
    exc = np.trunc(np.where(weight > 0, weight + 0.5, 0.0)).astype(np.uint8)
    inh = np.trunc(np.where(weight < 0, -weight + 0.5, 0.0)).astype(np.uint8)
    return exc, inh


def input_steps(request: ExperimentRequest) -> int:
    """Grid steps of the input tensor: `round(runtime / dt)` (the `runtime` of `hxsnn.run`)."""
    return int(round(request.runtime / request.dt))


def input_tensor(request: ExperimentRequest) -> np.ndarray:
    """float32 `(time, batch, input_size)` 0/1 spikes: the tensor for `hxsnn.NeuronHandle`.

    Each spike at `t` sets step `round(t / dt)`, the inverse of hxtorch's
    `tensor_to_spike_times` (step `k` → `k * dt`).
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
    `InputNeuron` hands them to grenade).
    """
    lists = []
    for spikes in request.input_spikes:
        per_channel = [[] for _ in range(request.input_size)]
        for t, c in zip(spikes.times.tolist(), spikes.channels.tolist(), strict=True):
            per_channel[c].append(t / unit)
        lists.append([sorted(times) for times in per_channel])
    return lists


def _uniform_or_array(values: np.ndarray):
    values = np.asarray(values, np.float64)
    return float(values[0]) if np.all(values == values[0]) else values.tolist()


def calibration_targets(population: PopulationRequest) -> dict:
    """hxtorch module arguments (hardware values) for one population, range-checked.

    **Returns:** a dict with `leak`, `reset`, `threshold` (CADC LSB), `tau_mem`, `tau_syn`,
    `refractory_time` (seconds), `membrane_capacitance` (LSB) as a float (uniform) or a
    list `(size,)`, plus `i_synin_gm`, `synapse_dac_bias` and the recording switches.
    A value outside calix's feasible range raises `HardwareError` naming it.

    ```python
    targets = calibration_targets(request.populations[0])   # {"leak": 80.0, ...}
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
        targets[name] = _uniform_or_array(values)
    for name in ("i_synin_gm", "synapse_dac_bias"):
        low, high, unit = CALIX_RANGES[name]
        value = getattr(population, name)
        if not low <= value <= high:
            raise HardwareError(
                f"population {population.key!r}: `{name}` must lie in [{low:g}, {high:g}] "
                f"{unit}; got {value!r}."
            )
        targets[name] = float(value)
    targets["enable_cadc_recording"] = population.record_cadc
    if population.fire:
        targets["enable_spike_recording"] = population.record_spikes
    return targets


def global_targets(request: ExperimentRequest) -> dict:
    """The chip-global `i_synin_gm` and `synapse_dac_bias`; populations must agree.

    hxtorch raises on conflicting global values; this says which populations differ.
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
    """Raise `HardwareError` for what hxtorch cannot express.

    Rules: AdEx terms other than leak and firing are not mapped by this adapter; a
    recurrent (delayed) projection needs hxtorch's `HXModuleWrapper`, not mapped either;
    every population needs exactly one incoming projection (hxtorch's `Synapse` has one
    source and one target).
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
    """hxtorch `SpikeHandle.get_data()` tuples `(time_cycles, batch, neuron)` → `SpikeEvents`."""
    array = np.asarray(list(data), np.int64).reshape(-1, 3)
    return SpikeEvents(
        times=_cycles_to_seconds(array[:, 0]),
        neurons=array[:, 2].astype(np.int32),
        batch=array[:, 1].astype(np.int32),
    )


def cadc_from_hxtorch(data) -> CADCSamples:
    """hxtorch `CADCHandle.get_data()` tuples `(value, time_cycles, batch, neuron)` →
    `CADCSamples` (values already re-centred to 0..255 by hxtorch's extraction)."""
    array = np.asarray(list(data), np.int64).reshape(-1, 4)
    return CADCSamples(
        times=_cycles_to_seconds(array[:, 1]),
        values=array[:, 0].astype(np.float64),
        neurons=array[:, 3].astype(np.int32),
        batch=array[:, 2].astype(np.int32),
    )


def madc_from_hxtorch(data) -> MADCSamples:
    """hxtorch `MADCHandle.get_data()` tuples `(value, time_cycles, batch, channel)` →
    `MADCSamples` (10-bit values as recorded)."""
    array = np.asarray(list(data), np.int64).reshape(-1, 4)
    return MADCSamples(
        times=_cycles_to_seconds(array[:, 1]),
        values=array[:, 0].astype(np.float64),
        batch=array[:, 2].astype(np.int32),
    )


class HxtorchClient(AbstractClient):
    """A BSS-2 system through hxtorch (`hxtorch.spiking`); imports hxtorch on first use.

    **Arguments:**
    - `calib_path`: a calibration file for `ExecutionInstance.load_calib` (e.g. the
      nightly `spiking_calix-native.pkl`); None lets hxtorch calibrate from the
      populations' targets (minutes).
    - `init_hardware`: call `hxtorch.init_hardware()` on first use and
      `hxtorch.release_hardware()` in `close()`.

    The experiment (modules, calibration) is built once per set of neuron settings; when
    only the weights change (`request.reconfigure` with the same neurons) the synapse
    weights are replaced in place, and otherwise only the inputs change. Raw data are read
    from the modules' hardware observables before hxtorch converts them, so `Hardware` sees
    the real irregular CADC sample times.

    ```python
    client = bj.HxtorchClient(calib_path="spiking_calix-native.pkl")
    backend = bj.Hardware(client, timeout=120.0, record_to="chip-session")
    ```
    """

    def __init__(self, *, calib_path: str | None = None, init_hardware: bool = True):
        self.calib_path = calib_path
        self.init_hardware = init_hardware
        self._modules = None
        self._neurons = None
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

    def _build(self, request, hxsnn, torch):
        experiment = hxsnn.Experiment(mock=False, dt=request.dt)
        if self.calib_path is not None:
            experiment.default_execution_instance.load_calib(self.calib_path)
        captured = {}
        populations = {}
        global_targets(request)
        for p in request.populations:
            targets = calibration_targets(p)
            kwargs = {
                k: torch.as_tensor(v) if isinstance(v, list) else v for k, v in targets.items()
            }
            if request.madc is not None and request.madc[0] == p.key:
                kwargs.update(enable_madc_recording=True, record_neuron_id=int(request.madc[1]))
            cls = neuron_class(hxsnn, p.fire)
            populations[p.key] = _capturing(cls, p.key, captured, p.fire)(
                p.size, experiment, **kwargs
            )
        synapses = []
        for q in request.projections:
            out_features, in_features = q.weight_exc.shape
            synapse = hxsnn.Synapse(in_features, out_features, experiment, transform=lambda w: w)
            synapse.weight.data = torch.as_tensor(hxtorch_weight(q))
            synapses.append(synapse)
        return experiment, populations, synapses, captured

    def execute(self, request: ExperimentRequest) -> RawRecording:
        hxtorch, hxsnn, torch = self._import()
        check_mappable(request)
        if self.init_hardware and not self._initialised:
            hxtorch.init_hardware()
            self._initialised = True
        neurons = configuration_hash(request.populations, ())
        if self._modules is None or neurons != self._neurons:
            self._modules = self._build(request, hxsnn, torch)  # calibration, placement
            self._neurons = neurons
        elif request.reconfigure:  # only the weights changed: no new experiment
            for projection, synapse in zip(request.projections, self._modules[2], strict=True):
                synapse.weight.data = torch.as_tensor(hxtorch_weight(projection))
        experiment, populations, synapses, captured = self._modules
        captured.clear()
        handles = {"input": input_handle(hxsnn, torch.as_tensor(input_tensor(request)))}
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
        hxsnn.run(experiment, input_steps(request))
        spikes, cadc, madc = {}, {}, {}
        for p in request.populations:
            data = captured.get(p.key)
            if data is None:
                raise HardwareError(f"hxtorch returned no hardware data for population {p.key!r}.")
            if p.record_spikes:
                spikes[p.key] = spikes_from_hxtorch(data["spikes"])
            if p.record_cadc:
                cadc[p.key] = cadc_from_hxtorch(data["cadc"])
            if request.madc is not None and request.madc[0] == p.key:
                madc[p.key] = madc_from_hxtorch(data["madc"])
        return RawRecording(spikes=spikes, cadc=cadc, madc=madc)

    def close(self) -> None:
        if self._initialised:
            import hxtorch

            hxtorch.release_hardware()
            self._initialised = False
        self._modules = None


def neuron_class(hxsnn, fire: bool):
    """hxtorch's module for a firing (`LIF`) or non-firing (`LI`) population.

    The names since hxtorch 2025-06 are `LIF` and `LI`; older releases call them `Neuron`
    and `ReadoutNeuron` (reference/hxtorch-semantics.md §1.2).
    """
    names = ("LIF", "Neuron") if fire else ("LI", "ReadoutNeuron")
    for name in names:
        cls = getattr(hxsnn, name, None)
        if cls is not None:
            return cls
    raise HardwareError(f"hxtorch.spiking has none of {names}; this hxtorch is not supported.")


def input_handle(hxsnn, spikes):
    """hxtorch's handle for input spikes `(time, batch, in)`: `NeuronHandle(spikes)` in
    older releases, `LIFObservables(spikes=spikes)` where `NeuronHandle` is gone."""
    handle = getattr(hxsnn, "NeuronHandle", None)
    if handle is not None:
        return handle(spikes)
    return hxsnn.LIFObservables(spikes=spikes)


def _capturing(cls, key, captured: dict, fire: bool):
    """A subclass of hxtorch's neuron module whose `post_process` keeps the raw data.

    `post_process(hw_data, runtime)` is hxtorch's documented hook for a module's hardware
    data; the raw handles are read with `get_data()` before hxtorch densifies them.
    """

    class Capturing(cls):
        def post_process(self, hw_data, runtime):
            captured[key] = {
                name: None if getattr(hw_data, name) is None else getattr(hw_data, name).get_data()
                for name in ("spikes", "cadc", "madc")
            }
            try:  # keep hxtorch's own result for its numerics (bss2jax ignores it)
                return super().post_process(hw_data, runtime)
            except NotImplementedError:  # older releases: "MADCHandle to dense" missing
                return (None, None, None) if fire else (None, None)

    Capturing.__name__ = f"Capturing{cls.__name__}"
    return Capturing

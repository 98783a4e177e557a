"""A stand-in for hxtorch that behaves like the real code where the adapter depends on it.

Written from electronicvisions/hxtorch at 3bfc7aadf33d795b5a184dfad03eedcf26243420 (paths
under `src/pyhxtorch/hxtorch/spiking/` unless given in full), grenade at
f66cf8fef8dc20d62866f1186f7e89cd12198923 and calix at
1dd7d7c293b83dd6e9b57e5c40d3029c3d2bc445; numpy only (no torch), a crude chip behind it:

- module signatures as in `modules/neuron.py` (`LIF`, `LI` with `**extra_params`, which
  `Population._generate_hxparameters` in `modules/types.py` swallows unless the name is a
  calibratable parameter; `LI` sets `refractory_time` and `enable_spike_recording` itself);
  no `Neuron`, `ReadoutNeuron` or `NeuronHandle` (removed in 2025-06);
- an `InputNeuron` inserted for an input handle no module produced (`ModuleManager`);
- `run(experiment, runtime: int)`; with a `.pkl` calibration, each population's hardware
  values are replaced by the file's targets (`ExecutionInstance.calibrate` →
  `params_from_calibration`); without one, calix gets the targets in its int arrays
  (`NeuronCalibTarget.DenseDefault`), truncating floats;
- `post_process(hw_data, runtime)` returns `Handle(voltage=AnalogObservable(cadc, madc),
  adaptation=AnalogObservable(), spikes=...)`, which `forward_func` then reads;
- hardware handles only where recorded (`extract_tensors.cpp`): spikes for populations with
  spike recording, CADC for those with CADC recording, MADC for the watched one; CADC values
  as `int8(raw + 128)` of grenade's int8 byte, i.e. raw − 128; times in 125 MHz cycles.

`Faults` switch on the failures `HxtorchClient.self_test` must name.
"""

from __future__ import annotations

import dataclasses
import pickle
import types

import numpy as np

CLOCK = 125e6  # FPGA cycles per second (grenade: "FPGA clock 125MHz")
CADC_PERIOD = 213  # cycles: ~1.7 us, hxtorch's "maximum sample rate of 1.7us" (neuron.py)
MADC_PERIOD = 4  # cycles: 32 ns, close to the MADC's ~34 ns (reference/bss2-chip.md §3)
MADC_GAIN = 4.5 / 1.2  # MADC LSB per CADC LSB, as bss2jax's ChipConfig
KAPPA = 0.67  # synaptic current (LSB) per weight unit, bss2jax's ChipConfig.weight_efficacy

CALIBRATABLE = {  # Population._calibratable_parameters_defaults (modules/types.py)
    "leak": 80,
    "reset": 80,
    "threshold": 125,
    "tau_mem": 1e-5,
    "tau_syn": 1e-5,
    "i_synin_gm": 500,
    "membrane_capacitance": 63,
    "refractory_time": 2e-6,
    "synapse_dac_bias": 600,
    "holdoff_time": 0,
}


@dataclasses.dataclass
class Faults:
    """What the stand-in gets wrong on purpose."""

    cadc_raw: bool = False  # hand out raw 0..255 instead of raw - 128
    cadc_time_shift: int = 0  # cycles added to every CADC sample time
    swap_receptors: bool = False  # excitatory rows act inhibitory and vice versa
    drop_input: bool = False  # input spikes never reach the chip


class HXParameter:
    def __init__(self, value):
        self.hardware_value = value

    @property
    def model_value(self):
        return self.hardware_value


@dataclasses.dataclass
class AnalogObservable:
    cadc: object = None
    madc: object = None


@dataclasses.dataclass
class Handle:  # the type `post_process` returns: Handle('voltage', 'adaptation', 'spikes')
    voltage: AnalogObservable = None
    adaptation: AnalogObservable = None
    spikes: object = None


@dataclasses.dataclass
class LIFObservables:
    current: object = None
    membrane_cadc: object = None
    membrane_madc: object = None
    spikes: object = None


@dataclasses.dataclass
class LIObservables:
    current: object = None
    membrane_cadc: object = None
    membrane_madc: object = None


@dataclasses.dataclass
class SynapseHandle:
    graded_spikes: object = None


@dataclasses.dataclass
class HardwareObservables:
    spikes: object = None
    cadc: object = None
    madc: object = None


class _DataHandle:
    def __init__(self, data, batch_size, population_size):
        self._data, self.batch_size, self.population_size = data, batch_size, population_size

    def get_data(self):
        return list(self._data)


class SpikeHandle(_DataHandle):
    def to_dense(self, runtime, dt):
        dense = np.zeros((int(round(runtime / dt)) + 1, self.batch_size, self.population_size))
        for t, b, n in self._data:
            dense[min(int(round(t / CLOCK / dt)), dense.shape[0] - 1), b, n] = 1.0
        return dense


class CADCHandle(_DataHandle):
    def to_dense(self, runtime, dt, mode="linear"):
        return np.zeros((int(round(runtime / dt)) + 1, self.batch_size, self.population_size))


class MADCHandle(_DataHandle):
    def to_raw(self):
        return np.asarray(self._data, np.float64)


class ExecutionInstance:
    def __init__(self, calib_path=None, calib_cache_dir=None, input_loopback=False):
        self.calib_path, self.calib = None, None
        self.calibrated = False
        if calib_path is not None:
            self.load_calib(calib_path)

    def load_calib(self, calib_path):
        if str(calib_path).endswith(".pkl"):
            with open(calib_path, "rb") as file:
                self.calib = pickle.load(file)  # an object with `.target.neuron_target`
        self.calib_path = calib_path


class Experiment:
    def __init__(self, mock=False, dt=1e-6, hw_routing_func=None):
        self.mock, self.dt = mock, dt
        self._default_execution_instance = None
        self.populations, self.edges = [], []

    @property
    def default_execution_instance(self):
        if self._default_execution_instance is None:
            self._default_execution_instance = ExecutionInstance()
        return self._default_execution_instance

    def connect(self, module, source, target):
        self.edges.append((module, source, target))
        return target


class _Module:
    def forward(self, handle):
        return self.experiment.connect(self, handle, self.output_type())

    def __call__(self, handle):
        return self.forward(handle)

    def post_process(self, hw_data, runtime):
        return None


class Population(_Module):
    def __init__(self, size, experiment, execution_instance=None, chip_coordinate=None, **hx):
        self.size, self.experiment = size, experiment
        for name, default in CALIBRATABLE.items():  # unknown names in `hx` are dropped
            setattr(self, name, HXParameter(hx.get(name, default)))
        experiment.populations.append(self)


class AELIF(Population):
    def __init__(
        self,
        size,
        experiment,
        leak=80,
        reset=80,
        threshold=125,
        tau_mem=10e-6,
        tau_syn=10e-6,
        i_synin_gm=500,
        membrane_capacitance=63,
        refractory_time=1e-6,
        synapse_dac_bias=600,
        holdoff_time=0.0,
        method="superspike",
        alpha=50.0,
        execution_instance=None,
        chip_coordinate=None,
        enable_spike_recording=True,
        enable_cadc_recording=True,
        enable_cadc_recording_placement_in_dram=False,
        enable_madc_recording=False,
        record_neuron_id=None,
        placement_constraint=None,
        trace_offset=0.0,
        trace_scale=1.0,
        cadc_time_shift=0,
        shift_cadc_to_first=False,
        interpolation_mode="linear",
        leaky=True,
        fire=True,
        exponential=True,
        subthreshold_adaptation=True,
        spike_triggered_adaptation=True,
        **extra_params,
    ):
        super().__init__(
            size,
            experiment,
            leak=leak,
            reset=reset,
            threshold=threshold,
            tau_mem=tau_mem,
            tau_syn=tau_syn,
            i_synin_gm=i_synin_gm,
            membrane_capacitance=membrane_capacitance,
            refractory_time=refractory_time,
            synapse_dac_bias=synapse_dac_bias,
            holdoff_time=holdoff_time,
            **extra_params,
        )
        self.fire = fire
        self._enable_spike_recording = enable_spike_recording
        self._enable_cadc_recording = enable_cadc_recording
        self._enable_madc_recording = enable_madc_recording
        self._record_neuron_id = record_neuron_id
        self.output_type = LIFObservables if fire else LIObservables

    def post_process(self, hw_data, runtime):
        cadc = spikes = madc = None
        if self._enable_cadc_recording:
            cadc = hw_data.cadc.to_dense(runtime, self.experiment.dt)
        if self._enable_spike_recording:
            spikes = hw_data.spikes.to_dense(runtime, self.experiment.dt)
        if self._enable_madc_recording:
            madc = hw_data.madc.to_raw()
        return Handle(
            voltage=AnalogObservable(cadc, madc), adaptation=AnalogObservable(), spikes=spikes
        )

    def forward_func(self, *inputs, hw_data=None):
        if hw_data:  # what hxtorch's forward_func reads from post_process's result
            membrane = hw_data.voltage.cadc
            _ = hw_data.adaptation.cadc, hw_data.spikes
        else:
            membrane = None
        return self.output_type(membrane_cadc=membrane)


class LIF(AELIF):
    def __init__(
        self,
        size,
        experiment,
        leak=80,
        reset=80,
        threshold=125,
        tau_mem=10e-6,
        tau_syn=10e-6,
        i_synin_gm=500,
        membrane_capacitance=63,
        refractory_time=1e-6,
        synapse_dac_bias=600,
        holdoff_time=0.0,
        method="superspike",
        alpha=50.0,
        execution_instance=None,
        enable_spike_recording=True,
        enable_cadc_recording=True,
        enable_cadc_recording_placement_in_dram=False,
        enable_madc_recording=False,
        record_neuron_id=None,
        placement_constraint=None,
        trace_offset=0.0,
        trace_scale=1.0,
        cadc_time_shift=0,
        shift_cadc_to_first=False,
        interpolation_mode="linear",
        neuron_structure=None,
        **extra_params,
    ):
        super().__init__(
            size,
            experiment,
            leak=leak,
            reset=reset,
            threshold=threshold,
            tau_mem=tau_mem,
            tau_syn=tau_syn,
            i_synin_gm=i_synin_gm,
            membrane_capacitance=membrane_capacitance,
            refractory_time=refractory_time,
            synapse_dac_bias=synapse_dac_bias,
            holdoff_time=holdoff_time,
            method=method,
            alpha=alpha,
            execution_instance=execution_instance,
            enable_spike_recording=enable_spike_recording,
            enable_cadc_recording=enable_cadc_recording,
            enable_madc_recording=enable_madc_recording,
            record_neuron_id=record_neuron_id,
            leaky=True,
            fire=True,
            exponential=False,
            subthreshold_adaptation=False,
            spike_triggered_adaptation=False,
            **extra_params,
        )


class LI(AELIF):
    def __init__(
        self,
        size,
        experiment,
        leak=80,
        tau_mem=10e-6,
        tau_syn=10e-6,
        i_synin_gm=500,
        membrane_capacitance=63,
        synapse_dac_bias=600,
        execution_instance=None,
        enable_cadc_recording=True,
        enable_cadc_recording_placement_in_dram=False,
        enable_madc_recording=False,
        record_neuron_id=None,
        placement_constraint=None,
        trace_offset=0.0,
        trace_scale=1.0,
        cadc_time_shift=0,
        shift_cadc_to_first=False,
        interpolation_mode="linear",
        neuron_structure=None,
        **extra_params,
    ):
        super().__init__(
            size,
            experiment,
            leak=leak,
            tau_mem=tau_mem,
            tau_syn=tau_syn,
            i_synin_gm=i_synin_gm,
            membrane_capacitance=membrane_capacitance,
            refractory_time=0.0,
            synapse_dac_bias=synapse_dac_bias,
            execution_instance=execution_instance,
            enable_spike_recording=False,
            enable_cadc_recording=enable_cadc_recording,
            enable_madc_recording=enable_madc_recording,
            record_neuron_id=record_neuron_id,
            leaky=True,
            fire=False,
            exponential=False,
            subthreshold_adaptation=False,
            spike_triggered_adaptation=False,
            **extra_params,
        )


class _Weight:
    def __init__(self, shape):
        self.data = np.zeros(shape, np.float32)


class Synapse(_Module):
    output_type = SynapseHandle

    def __init__(
        self,
        in_features,
        out_features,
        experiment,
        execution_instance=None,
        chip_coordinate=None,
        device=None,
        dtype=None,
        transform=None,
        plasticity_rule=None,
    ):
        self.experiment, self.weight = experiment, _Weight((out_features, in_features))
        self.weight_transform = transform

    def rows(self):
        """Signed weights as written (`add_to_network_graph` + `weight_to_connection`)."""
        w = np.asarray(self.weight_transform(np.array(self.weight.data)), np.float64)
        exc = np.trunc(np.where(w >= 0, w, 0.0) + 0.5)
        inh = np.trunc(np.where(w < 0, w, 0.0) - 0.5)
        return np.abs(exc) - np.abs(inh)


def _chip_values(population, instance, log):
    """The values the chip runs for `population` (and what hxtorch's modules then hold)."""
    if instance.calib_path is not None:
        if instance.calib is None:
            return {name: getattr(population, name).hardware_value for name in CALIBRATABLE}
        target = instance.calib.target.neuron_target  # params_from_calibration
        for name in CALIBRATABLE:
            if hasattr(target, name):
                value = np.asarray(getattr(target, name), np.float64)
                if name == "i_synin_gm":
                    value = np.full(2, value) if value.ndim == 0 else value
                elif name != "synapse_dac_bias":
                    value = np.broadcast_to(value, (population.size,)).copy()
                getattr(population, name).hardware_value = value
        return {name: getattr(population, name).hardware_value for name in CALIBRATABLE}
    values = {}  # calibration_from_params into calix's DenseDefault (int arrays truncate)
    for name in CALIBRATABLE:
        value = np.asarray(getattr(population, name).hardware_value)
        if name in ("leak", "reset", "threshold", "membrane_capacitance"):
            value = np.broadcast_to(value, (population.size,)).astype(int)
        values[name] = value
    log.append(("calix", {k: (np.asarray(v).dtype.kind, np.asarray(v)) for k, v in values.items()}))
    return values


def _simulate(values, fire, size, events, weights, steps_cycles, kappa):
    """Euler on an 8-cycle sub-grid; returns membrane `(substeps, size)` and spikes."""
    h = 8 / CLOCK
    n = int(np.ceil(steps_cycles / 8))
    leak = np.broadcast_to(np.asarray(values["leak"], np.float64), (size,))
    tau_m = np.broadcast_to(np.asarray(values["tau_mem"], np.float64), (size,))
    tau_s = np.broadcast_to(np.asarray(values["tau_syn"], np.float64), (size,))
    threshold = np.broadcast_to(np.asarray(values["threshold"], np.float64), (size,))
    reset = np.broadcast_to(np.asarray(values["reset"], np.float64), (size,))
    refractory = np.broadcast_to(np.asarray(values["refractory_time"], np.float64), (size,))
    drive = np.zeros((n, size))
    for t, source in events:
        drive[min(t // 8, n - 1)] += kappa * weights[:, source]
    v, i, hold = leak.copy(), np.zeros(size), np.zeros(size)
    trace, spikes = np.zeros((n, size)), []
    for k in range(n):
        i = i * np.exp(-h / tau_s) + drive[k]
        v = np.where(hold > 0, reset, v + h / tau_m * (leak - v + i))
        hold = np.maximum(hold - h, 0.0)
        if fire:
            for neuron in np.flatnonzero(v >= threshold):
                spikes.append((k * 8, int(neuron)))
                v[neuron], hold[neuron] = reset[neuron], refractory[neuron]
        trace[k] = v
    return trace, spikes


def run(experiment, runtime):
    if not isinstance(runtime, int) and not experiment.mock:
        raise ValueError("Requested runtime invalid.")
    fake = experiment.fake
    cycles = int(runtime * experiment.dt * 1e6 * 125)  # get_hw_results, truncating
    instance = experiment.default_execution_instance
    if not instance.calibrated:
        instance.values = {
            id(p): _chip_values(p, instance, fake.log) for p in experiment.populations
        }
        instance.calibrated = True
    producers = {id(target): module for module, _, target in experiment.edges}
    batch = None
    outputs = {}  # id(population) -> per batch list of (cycle, neuron) spikes
    hw = {}
    for module, source, _target in experiment.edges:
        if not isinstance(module, AELIF):
            continue
        synapse, _, _ = next(e for e in experiment.edges if e[2] is source)
        _, synapse_source, _ = next(e for e in experiment.edges if e[0] is synapse)
        weights = synapse.rows() * (-1 if fake.faults.swap_receptors else 1)
        upstream = producers.get(id(synapse_source))
        if upstream is None:  # open source: hxtorch's InputNeuron + tensor_to_spike_times
            dense = np.asarray(synapse_source.spikes)
            batch = dense.shape[1]
            per_batch = [
                []
                if fake.faults.drop_input
                else [
                    (int(round(k * experiment.dt * 1e3 * 1000 * 125)), int(c))
                    for k, c in zip(*np.nonzero(dense[:, b]), strict=True)
                ]
                for b in range(batch)
            ]
        else:
            per_batch = outputs[id(upstream)]
        values = instance.values[id(module)]
        spikes, cadc, madc = [], [], []
        outputs[id(module)] = []
        for b in range(batch):
            trace, fired = _simulate(
                values, module.fire, module.size, per_batch[b], weights, cycles, fake.kappa
            )
            outputs[id(module)].append(fired)
            spikes += [(t, b, n) for t, n in fired]
            for t in range(100 + 40 * b, cycles, CADC_PERIOD):  # irregular per batch entry
                raw = np.clip(np.round(trace[t // 8]), 0, 255).astype(int)
                shifted = t + fake.faults.cadc_time_shift
                if shifted >= cycles:
                    continue
                for n in range(module.size):
                    value = (
                        int(raw[n])
                        if fake.faults.cadc_raw
                        else int(np.int8(np.uint8(raw[n]) ^ 0x80))
                    )
                    cadc.append((value, shifted, b, n))
            if module._enable_madc_recording:
                n = module._record_neuron_id
                for t in range(0, cycles, MADC_PERIOD):
                    value = int(np.clip(np.round(trace[t // 8, n] * MADC_GAIN), 0, 1023))
                    madc.append((value, t, b, n))
        hw[id(module)] = HardwareObservables(
            spikes=SpikeHandle(spikes, batch, module.size)
            if module._enable_spike_recording
            else None,
            cadc=CADCHandle(cadc, batch, module.size) if module._enable_cadc_recording else None,
            madc=MADCHandle(madc, batch, module.size) if module._enable_madc_recording else None,
        )
    for module, source, _target in experiment.edges:  # _get_observables, then exec_forward
        if isinstance(module, AELIF):
            returned = module.post_process(hw[id(module)], cycles / 125 / 1e6)
            module.forward_func(source, hw_data=returned)
    fake.log.append(("run", runtime))
    experiment.edges = []  # ModuleManager.done() clears the graph after each run


def make(faults: Faults | None = None, *, kappa: float = KAPPA):
    """`{"torch": ..., "hxtorch": ..., "hxtorch.spiking": ...}` and the shared state."""
    state = types.SimpleNamespace(log=[], faults=faults or Faults(), kappa=kappa)
    torch = types.ModuleType("torch")
    torch.float32 = np.float32
    torch.Tensor = type("Tensor", (), {})  # nothing here is a torch tensor
    torch.as_tensor = lambda value, dtype=None: np.asarray(value, dtype)
    hxtorch = types.ModuleType("hxtorch")
    hxtorch.init_hardware = lambda hwdb_path=None, ann=False: state.log.append(("init",))
    hxtorch.release_hardware = lambda: state.log.append(("release",))
    hxsnn = types.ModuleType("hxtorch.spiking")
    hxtorch.spiking = hxsnn

    class BoundExperiment(Experiment):
        def __init__(self, mock=False, dt=1e-6, hw_routing_func=None):
            super().__init__(mock, dt, hw_routing_func)
            self.fake = state
            state.log.append(("experiment", mock, dt))

    for name, value in {
        "Experiment": BoundExperiment,
        "ExecutionInstance": ExecutionInstance,
        "AELIF": AELIF,
        "LIF": LIF,
        "LI": LI,
        "Synapse": Synapse,
        "LIFObservables": LIFObservables,
        "LIObservables": LIObservables,
        "SynapseHandle": SynapseHandle,
        "Handle": Handle,
        "run": run,
    }.items():
        setattr(hxsnn, name, value)
    return {"torch": torch, "hxtorch": hxtorch, "hxtorch.spiking": hxsnn}, state


def calibration_file(path, **targets):
    """A `.pkl` like calix-native's: an object with `.target.neuron_target.<name>`."""
    neuron_target = types.SimpleNamespace(**targets)
    result = types.SimpleNamespace(target=types.SimpleNamespace(neuron_target=neuron_target))
    with open(path, "wb") as file:
        pickle.dump(result, file)
    return str(path)

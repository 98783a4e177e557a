"""The hxtorch adapter: its request-to-hxtorch mapping on pure data, and its final call
against a stand-in for hxtorch's documented API (no chip, no hxtorch needed)."""

from __future__ import annotations

import dataclasses
import sys
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import sent_request

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._clients import _hxtorch as adapter

DT = 1e-6


@pytest.fixture(scope="module")
def net():
    return bj.Sequential(
        [
            bj.Synapse(10, 4, key=jax.random.PRNGKey(0), transform=bj.linear_saturating(80.0)),
            bj.LIF(4, threshold=bj.Mixed(1.0, 150.0), tau_mem=6e-6, tau_syn=6e-6),
            bj.Synapse(4, 3, key=jax.random.PRNGKey(1), transform=bj.linear_saturating(70.0)),
            bj.LI(3, enable_madc_recording=True, record_neuron_id=2),
        ]
    )


@pytest.fixture(scope="module")
def inputs():
    return (jax.random.uniform(jax.random.PRNGKey(2), (25, 3, 10)) < 0.2).astype(jnp.float32)


@pytest.fixture(scope="module")
def request_(net, inputs):
    return sent_request(net, inputs, dt=DT)


def test_hxtorch_is_not_imported_with_bss2jax():
    assert "hxtorch" not in sys.modules and "torch" not in sys.modules


def test_weights_round_trip_through_hxtorchs_split(request_, net):
    for index, projection in enumerate(request_.projections):
        weight = adapter.hxtorch_weight(projection)
        np.testing.assert_array_equal(weight, np.asarray(net.synapse(index).hardware_weight()))
        exc, inh = adapter.hxtorch_rows(weight)
        np.testing.assert_array_equal(exc, projection.weight_exc)
        np.testing.assert_array_equal(inh, projection.weight_inh)
    every = np.arange(-63, 64, dtype=np.float64)[None, :]
    exc, inh = adapter.hxtorch_rows(every)
    np.testing.assert_array_equal(exc.astype(int) - inh.astype(int), every.astype(int))
    assert exc.max() == inh.max() == 63 and not np.any((exc > 0) & (inh > 0))


def test_inputs_as_tensor_and_spike_time_lists(request_, inputs):
    assert adapter.input_steps(request_) == inputs.shape[0]
    np.testing.assert_array_equal(adapter.input_tensor(request_), np.asarray(inputs))
    lists = adapter.input_spike_lists(request_)
    assert len(lists) == inputs.shape[1] and all(len(b) == inputs.shape[2] for b in lists)
    for b in range(inputs.shape[1]):
        for channel in range(inputs.shape[2]):
            steps = np.flatnonzero(np.asarray(inputs[:, b, channel]))
            np.testing.assert_allclose(lists[b][channel], steps * DT * 1e3)  # milliseconds
    late = dataclasses.replace(
        request_,
        input_spikes=(bjh.InputSpikes(np.array([request_.runtime]), np.array([0], np.int32)),)
        + request_.input_spikes[1:],
    )
    with pytest.raises(bj.HardwareError, match="batch entry 0 must lie in"):
        adapter.input_tensor(late)


def test_calibration_targets(request_):
    lif, li = request_.populations
    targets = adapter.calibration_targets(lif)
    assert targets["leak"] == 80.0 and targets["threshold"] == 150.0 and targets["reset"] == 80.0
    assert targets["tau_mem"] == pytest.approx(6e-6) and targets["tau_syn"] == pytest.approx(6e-6)
    assert (
        targets["refractory_time"] == pytest.approx(1e-6)
        and targets["membrane_capacitance"] == 63.0
    )
    assert targets["i_synin_gm"] == 500.0 and targets["synapse_dac_bias"] == 600.0
    assert targets["enable_spike_recording"] and targets["enable_cadc_recording"]
    readout = adapter.calibration_targets(li)
    assert "threshold" not in readout and "reset" not in readout
    varied = dataclasses.replace(lif, leak=np.array([80.0, 90.0, 100.0, 110.0]))
    assert adapter.calibration_targets(varied)["leak"] == [80.0, 90.0, 100.0, 110.0]
    cases = {
        "leak": (
            np.full(4, 40.0),
            r"`leak` must lie in calix's range \[50, 160\] CADC LSB; got 40.0",
        ),
        "threshold": (np.full(4, 230.0), r"`threshold` must lie .*\[50, 220\]"),
        "tau_mem": (np.full(4, 100e-6), r"`tau_mem` must lie .*\[5e-07, 6e-05\] s"),
        "refractory_time": (np.full(4, 1e-9), r"`refractory_time`"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(bj.HardwareError, match=message):
            adapter.calibration_targets(dataclasses.replace(lif, **{name: value}))
    with pytest.raises(bj.HardwareError, match=r"`synapse_dac_bias` must lie in \[30, 1022\]"):
        adapter.calibration_targets(dataclasses.replace(lif, synapse_dac_bias=2000.0))


def test_global_targets_must_agree(request_):
    assert adapter.global_targets(request_) == {"i_synin_gm": 500.0, "synapse_dac_bias": 600.0}
    lif, li = request_.populations
    conflict = dataclasses.replace(
        request_, populations=(lif, dataclasses.replace(li, synapse_dac_bias=1000.0))
    )
    with pytest.raises(
        bj.HardwareError, match=r"`synapse_dac_bias` is chip-global.*\{0: 600.0, 1: 1000.0\}"
    ):
        adapter.global_targets(conflict)


def test_what_hxtorch_cannot_express(request_, inputs, getkey):
    adapter.check_mappable(request_)
    adex = bj.Sequential([bj.Synapse(10, 2, key=getkey()), bj.AdEx(2)])
    with pytest.raises(bj.HardwareError, match="maps LIF and LI populations only"):
        adapter.check_mappable(sent_request(adex, inputs, dt=DT))
    recurrent = bj.Network(
        {"a": bj.LIF(3)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(10, 3, key=getkey())),
            bj.Projection("a", "a", bj.Synapse(3, 3, key=getkey())),
        ],
        input_size=10,
    )
    with pytest.raises(bj.HardwareError, match="exactly one incoming projection"):
        adapter.check_mappable(sent_request(recurrent, inputs, dt=DT))


def test_raw_data_from_hxtorch_handles(request_):
    clock = adapter.FPGA_CLOCK
    spikes = adapter.spikes_from_hxtorch([(1250, 0, 1), (2500, 2, 3)])
    np.testing.assert_allclose(spikes.times, [1250 / clock, 2500 / clock])
    np.testing.assert_array_equal(spikes.neurons, [1, 3])
    np.testing.assert_array_equal(spikes.batch, [0, 2])
    cadc = adapter.cadc_from_hxtorch([(117, 213, 1, 2), (255, 425, 0, 0)])
    np.testing.assert_array_equal(cadc.values, [117.0, 255.0])
    np.testing.assert_allclose(cadc.times, [213 / clock, 425 / clock])
    np.testing.assert_array_equal(cadc.neurons, [2, 0])
    np.testing.assert_array_equal(cadc.batch, [1, 0])
    madc = adapter.madc_from_hxtorch([(1023, 4, 2, 0)])
    assert madc.values[0] == 1023.0 and madc.batch[0] == 2 and madc.times[0] == 4 / clock
    empty = adapter.spikes_from_hxtorch([])
    assert empty.times.shape == (0,) and empty.neurons.dtype == np.int32


def test_neuron_class_old_and_new_names():
    new = types.SimpleNamespace(LIF="LIF", LI="LI", Neuron="Neuron", ReadoutNeuron="ReadoutNeuron")
    old = types.SimpleNamespace(Neuron="Neuron", ReadoutNeuron="ReadoutNeuron")
    assert adapter.neuron_class(new, True) == "LIF" and adapter.neuron_class(new, False) == "LI"
    assert adapter.neuron_class(old, True) == "Neuron"
    assert adapter.neuron_class(old, False) == "ReadoutNeuron"
    with pytest.raises(bj.HardwareError, match="none of"):
        adapter.neuron_class(types.SimpleNamespace(), True)


def test_client_without_hxtorch_says_so(net, inputs):
    backend = bj.Hardware(bj.HxtorchClient(), retries=0)
    with pytest.raises(bj.HardwareError, match="HxtorchClient needs hxtorch and torch"):
        backend.observe(net, inputs, dt=DT, key=None)


# ---------------------------------------------------------------------------------------
# The final call, against a stand-in that follows hxtorch's documented API: modules with
# `post_process(hw_data, runtime)`, hardware handles with `get_data()`, `hxsnn.run`.


class _Handle:
    def __init__(self, data):
        self.data = data

    def get_data(self):
        return self.data


def _fake_hxtorch(log):
    torch = types.ModuleType("torch")
    torch.as_tensor = np.asarray
    hxtorch = types.ModuleType("hxtorch")
    hxtorch.init_hardware = lambda: log.append(("init",))
    hxtorch.release_hardware = lambda: log.append(("release",))
    hxsnn = types.ModuleType("hxtorch.spiking")
    hxtorch.spiking = hxsnn

    class Experiment:
        def __init__(self, mock, dt):
            log.append(("experiment", mock, dt))
            self.populations = []
            self.default_execution_instance = types.SimpleNamespace(
                load_calib=lambda path: log.append(("calib", path))
            )

    class Weight:
        data = None

    class Synapse:
        def __init__(self, in_features, out_features, experiment, transform):
            self.weight = Weight()
            self.transform = transform

        def __call__(self, handle):
            return ("current", self, handle)

    class Population:
        def __init__(self, size, experiment, **kwargs):
            self.size, self.kwargs = size, kwargs
            experiment.populations.append(self)
            log.append(("population", type(self).__bases__[0].__name__, size, kwargs))

        def __call__(self, current):
            _, synapse, source = current
            log.append(("forward", synapse.transform(synapse.weight.data), source))
            return ("handle", self)

    class LIF(Population):
        def post_process(self, hw_data, runtime):
            # What hxtorch itself raises here; the adapter must read the raw data instead.
            raise NotImplementedError("MADCHandle to dense torch Tensor is not implemented yet.")

    class LI(Population):
        def post_process(self, hw_data, runtime):
            return ("dense cadc", None)

    def NeuronHandle(tensor):  # noqa: N802 - hxtorch's name
        log.append(("input", tensor))
        return ("handle", "input")

    def run(experiment, runtime):
        log.append(("run", runtime))
        cycles = int(round(runtime * DT * adapter.FPGA_CLOCK))
        for population in experiment.populations:
            cadc = [
                (80 + n, t, b, n)
                for b in range(3)
                for n in range(population.size)
                for t in range(b + 100, cycles, 213)  # irregular per batch entry
            ]
            spikes = [(500 * (n + 1), b, n) for b in range(3) for n in range(population.size)]
            madc = [(500, t, b, 0) for b in range(3) for t in range(0, cycles, 5)]
            hw = types.SimpleNamespace(
                spikes=_Handle(spikes) if population.kwargs.get("enable_spike_recording") else None,
                cadc=_Handle(cadc),
                madc=_Handle(madc) if population.kwargs.get("enable_madc_recording") else None,
            )
            population.post_process(hw, runtime * DT)

    hxsnn.Experiment, hxsnn.Synapse, hxsnn.LIF, hxsnn.LI = Experiment, Synapse, LIF, LI
    hxsnn.NeuronHandle, hxsnn.run = NeuronHandle, run
    return {"torch": torch, "hxtorch": hxtorch, "hxtorch.spiking": hxsnn}


def test_final_call_against_hxtorchs_api(net, inputs, monkeypatch):
    log = []
    for name, module in _fake_hxtorch(log).items():
        monkeypatch.setitem(sys.modules, name, module)
    client = bj.HxtorchClient(calib_path="spiking_calix-native.pkl")
    backend = bj.Hardware(client, retries=0)
    recording = backend.observe(net, inputs, dt=DT, key=None)
    kinds = [entry[0] for entry in log]
    assert kinds.count("experiment") == 1 and kinds.count("init") == 1
    assert ("calib", "spiking_calix-native.pkl") in log
    populations = [entry for entry in log if entry[0] == "population"]
    assert [p[1:3] for p in populations] == [("LIF", 4), ("LI", 3)]
    assert populations[0][3]["threshold"] == 150.0
    assert populations[1][3]["enable_madc_recording"] and populations[1][3]["record_neuron_id"] == 2
    forwards = [entry for entry in log if entry[0] == "forward"]
    for index, forward in enumerate(forwards):
        np.testing.assert_array_equal(forward[1], np.asarray(net.synapse(index).hardware_weight()))
    (input_entry,) = [entry for entry in log if entry[0] == "input"]
    np.testing.assert_array_equal(input_entry[1], np.asarray(inputs))
    assert ("run", inputs.shape[0]) in log
    # The raw data went through the validated to-dense path: CADC 80 + n everywhere.
    cadc = np.asarray(recording.populations[1].membrane_cadc)
    np.testing.assert_array_equal(cadc, np.broadcast_to(80.0 + np.arange(3), cadc.shape))
    spikes = np.asarray(recording.populations[0].spikes)
    assert spikes.sum() == 3 * 4 and spikes[8, 0, 1] == 1.0  # 1000 cycles = 8 us
    # Same configuration again: the experiment is reused, not rebuilt.
    backend.observe(net, 1.0 - inputs, dt=DT, key=None)
    assert [entry[0] for entry in log].count("experiment") == 1
    # New weights only: written into the existing synapses, no new experiment.
    changed = eqx.tree_at(lambda n: n.layers[0].weight, net, -net.layers[0].weight)
    backend.observe(changed, inputs, dt=DT, key=None)
    assert [entry[0] for entry in log].count("experiment") == 1
    last = [entry for entry in log if entry[0] == "forward"][-2]
    np.testing.assert_array_equal(last[1], np.asarray(changed.synapse(0).hardware_weight()))
    # New neuron settings: a new experiment (calibration).
    slower = eqx.tree_at(lambda n: n.layers[1].tau_mem, net, net.layers[1].tau_mem * 2.0)
    backend.observe(slower, inputs, dt=DT, key=None)
    assert [entry[0] for entry in log].count("experiment") == 2
    client.close()
    assert log[-1] == ("release",)

"""The hxtorch adapter: its request-to-hxtorch mapping on pure data, and its calls against a
stand-in that behaves like hxtorch's real code (`hxtorch_standin.py`; no chip, no hxtorch).

The adapter and the stand-in were checked against electronicvisions/hxtorch at
3bfc7aadf33d795b5a184dfad03eedcf26243420 and the grenade and calix of the same weeks.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types

import equinox as eqx
import hxtorch_standin as standin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import sent_request

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._clients import _hxtorch_map as adapter, _hxtorch_selftest as selftest

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
    # The stand-in's copy of hxtorch's Synapse.add_to_network_graph writes the same rows.
    synapse = standin.Synapse(127, 1, None, transform=lambda w: w)
    synapse.weight.data = every.astype(np.float32)
    np.testing.assert_array_equal(synapse.rows(), every)


def test_inputs_as_tensor_and_spike_time_lists(request_, inputs):
    assert adapter.input_steps(request_) == inputs.shape[0]
    assert type(adapter.input_steps(request_)) is int  # hxtorch's run insists on an int
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
    assert targets["leak"] == 80 and targets["threshold"] == 150 and targets["reset"] == 80
    for name in ("leak", "threshold", "reset", "membrane_capacitance", "i_synin_gm"):
        assert type(targets[name]) is int, name  # calix's int arrays; no truncation
    assert targets["tau_mem"] == pytest.approx(6e-6) and targets["tau_syn"] == pytest.approx(6e-6)
    assert targets["refractory_time"] == pytest.approx(1e-6)
    assert targets["membrane_capacitance"] == 63
    assert targets["i_synin_gm"] == 500 and targets["synapse_dac_bias"] == 600
    assert targets["enable_spike_recording"] and targets["enable_cadc_recording"]
    readout = adapter.calibration_targets(li)
    for name in ("threshold", "reset", "refractory_time", "enable_spike_recording"):
        assert name not in readout  # LI sets these itself; a second value is a TypeError
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
    with pytest.raises(bj.HardwareError, match=r"`leak` must be an integer.*got 80.7"):
        adapter.calibration_targets(dataclasses.replace(lif, leak=np.full(4, 80.7)))
    with pytest.raises(bj.HardwareError, match=r"`i_synin_gm` must be an integer"):
        adapter.calibration_targets(dataclasses.replace(lif, i_synin_gm=500.5))


def test_targets_are_hxtorch_module_arguments(request_):
    # hxtorch swallows unknown keyword arguments (`**extra_params`, dropped by
    # Population._generate_hxparameters), so a misspelt name would silently fall back to a
    # default: every name the adapter passes must be a named parameter of LIF / LI.
    lif, li = request_.populations
    madc = {"enable_madc_recording", "record_neuron_id"}
    for population, cls in ((lif, standin.LIF), (li, standin.LI)):
        named = set(inspect.signature(cls).parameters) - {"extra_params"}
        assert set(adapter.calibration_targets(population)) | madc <= named
    log = []
    experiment = types.SimpleNamespace(populations=log)
    swallowed = standin.LI(2, experiment, enable_cadc_recordin=False, leek=120)
    assert swallowed.leak.hardware_value == 80 and swallowed._enable_cadc_recording
    with pytest.raises(TypeError, match="refractory_time"):
        standin.LI(2, experiment, refractory_time=1e-6)


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


def test_raw_data_from_hxtorch_handles():
    clock = adapter.FPGA_CLOCK
    spikes = adapter.spikes_from_hxtorch([(1250, 0, 1), (2500, 2, 3)])
    np.testing.assert_allclose(spikes.times, [1250 / clock, 2500 / clock])
    np.testing.assert_array_equal(spikes.neurons, [1, 3])
    np.testing.assert_array_equal(spikes.batch, [0, 2])
    # hxtorch's CADC values are raw - 128 (int8): -48 is a leak of 80.
    cadc = adapter.cadc_from_hxtorch([(-48, 213, 1, 2), (127, 425, 0, 0), (-128, 638, 0, 1)])
    np.testing.assert_array_equal(cadc.values, [80.0, 255.0, 0.0])
    np.testing.assert_allclose(cadc.times, [213 / clock, 425 / clock, 638 / clock])
    np.testing.assert_array_equal(cadc.neurons, [2, 0, 1])
    np.testing.assert_array_equal(cadc.batch, [1, 0, 0])
    with pytest.raises(bj.HardwareError, match=r"raw - 128 in \[-128, 127\].*got 200"):
        adapter.cadc_from_hxtorch([(200, 213, 0, 0)])
    madc = adapter.madc_from_hxtorch([(1023, 4, 2, 0)])
    assert madc.values[0] == 1023.0 and madc.batch[0] == 2 and madc.times[0] == 4 / clock
    empty = adapter.spikes_from_hxtorch([])
    assert empty.times.shape == (0,) and empty.neurons.dtype == np.int32


def test_only_the_hxtorch_names_that_exist():
    modules, _ = standin.make()
    hxsnn = modules["hxtorch.spiking"]
    for gone in ("Neuron", "ReadoutNeuron", "NeuronHandle"):  # removed in hxtorch 2025-06
        assert not hasattr(hxsnn, gone)
    assert adapter._require(hxsnn, "LIF") is hxsnn.LIF
    with pytest.raises(bj.HardwareError, match="no `Neuron`.*3bfc7aadf33d"):
        adapter._require(hxsnn, "Neuron")


def test_client_without_hxtorch_says_so(net, inputs):
    backend = bj.Hardware(bj.HxtorchClient(), retries=0)
    with pytest.raises(bj.HardwareError, match="HxtorchClient needs hxtorch and torch"):
        backend.observe(net, inputs, dt=DT, key=None)


def test_calibration_must_be_calix_native():
    with pytest.raises(bj.HardwareError, match=r"`calib_path` must be .*\.pkl.*cocolist.pbin"):
        bj.HxtorchClient(calib_path="spiking_cocolist.pbin")


# ---------------------------------------------------------------------------------------
# The calls, against the stand-in.


def _install(monkeypatch, faults=None, **options):
    modules, state = standin.make(faults, **options)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return state


def test_lif_li_chain_with_cadc_spikes_and_madc(net, inputs, monkeypatch):
    state = _install(monkeypatch, kappa=5.0)  # strong synapses: the hidden layer fires
    client = bj.HxtorchClient()
    backend = bj.Hardware(client, retries=0)
    recording = backend.observe(net, inputs, dt=DT, key=None)
    kinds = [entry[0] for entry in state.log]
    assert kinds.count("experiment") == 1 and kinds.count("init") == 1
    assert ("run", inputs.shape[0]) in state.log
    (calix,) = [entry[1] for entry in state.log if entry[0] == "calix"][:1]
    assert calix["leak"][0] == "i" and calix["i_synin_gm"][1].dtype.kind == "i"
    # The CADC values are on the 0..255 scale: the readout sits at its leak of 80 before
    # any input can reach it (one step of synaptic delay after the first LIF spike).
    readout = np.asarray(recording.populations[1].membrane_cadc)
    assert readout.shape == (inputs.shape[0] + 1, 3, 3)
    np.testing.assert_allclose(readout[0], 80.0, atol=1.0)
    assert np.all((readout >= 0) & (readout <= 255))
    hidden = recording.populations[0]
    assert hidden.spikes is not None and float(hidden.spikes.sum()) > 0
    assert hidden.membrane_cadc is not None and float(hidden.membrane_cadc.max()) > 80.0
    madc = recording.populations[1].membrane_madc
    assert madc is not None and np.asarray(madc).shape == (inputs.shape[0] + 1, 3)
    settings = client.chip_settings
    np.testing.assert_array_equal(settings[0]["threshold"], np.full(4, 150.0))
    np.testing.assert_array_equal(settings[1]["leak"], np.full(3, 80.0))
    # Same configuration again: the experiment is reused, not rebuilt.
    backend.observe(net, 1.0 - inputs, dt=DT, key=None)
    assert [entry[0] for entry in state.log].count("experiment") == 1
    # New weights only: written into the existing synapses, no new experiment.
    changed = eqx.tree_at(lambda n: n.layers[0].weight, net, -net.layers[0].weight)
    silent = backend.observe(changed, inputs, dt=DT, key=None)
    assert [entry[0] for entry in state.log].count("experiment") == 1
    assert float(silent.populations[0].spikes.sum()) < float(hidden.spikes.sum())
    # New neuron settings: a new experiment (calibration).
    slower = eqx.tree_at(lambda n: n.layers[1].tau_mem, net, net.layers[1].tau_mem * 2.0)
    backend.observe(slower, inputs, dt=DT, key=None)
    assert [entry[0] for entry in state.log].count("experiment") == 2
    client.close()
    assert state.log[-1] == ("release",)


def test_cadc_only_where_recorded(inputs, monkeypatch, getkey):
    _install(monkeypatch)
    net = bj.Sequential(
        [
            bj.Synapse(10, 4, key=getkey(), transform=bj.linear_saturating(80.0)),
            bj.LIF(4, enable_cadc_recording=False),
            bj.Synapse(4, 2, key=getkey(), transform=bj.linear_saturating(70.0)),
            bj.LI(2),
        ]
    )
    recording = bj.Hardware(bj.HxtorchClient(), retries=0).observe(net, inputs, dt=DT, key=None)
    assert recording.populations[0].membrane_cadc is None
    assert recording.populations[0].spikes is not None
    np.testing.assert_allclose(np.asarray(recording.populations[1].membrane_cadc)[0], 80.0, atol=1)


def test_calibration_file_overriding_the_request_is_refused(net, inputs, monkeypatch, tmp_path):
    state = _install(monkeypatch)
    path = standin.calibration_file(
        tmp_path / "spiking_calix-native.pkl",
        leak=100,
        reset=80,
        threshold=150,
        tau_mem=6e-6,
        tau_syn=6e-6,
        membrane_capacitance=63,
        refractory_time=1e-6,
        i_synin_gm=500,
        synapse_dac_bias=600,
    )
    client = bj.HxtorchClient(calib_path=path)
    backend = bj.Hardware(client, retries=0)
    with pytest.raises(bj.HardwareError, match=r"(?s)overrides.*`leak` runs at 100 .* asks for 80"):
        backend.observe(net, inputs, dt=DT, key=None)
    assert isinstance(client.chip_settings[0]["leak"], np.ndarray)
    assert not [entry for entry in state.log if entry[0] == "calix"]  # targets never used
    # The LI readout's own tau (10 us) differs from the file's 6 us as well.
    with pytest.raises(bj.HardwareError, match=r"(?s)population 1: `tau_mem` runs at 6e-06"):
        backend.observe(net, inputs, dt=DT, key=None)


def test_calibration_file_matching_the_request(monkeypatch, tmp_path, inputs, getkey):
    _install(monkeypatch)
    path = standin.calibration_file(
        tmp_path / "matching.pkl",
        leak=80,
        reset=80,
        threshold=125,
        tau_mem=10e-6,
        tau_syn=10e-6,
        membrane_capacitance=63,
        refractory_time=1e-6,
        i_synin_gm=500,
        synapse_dac_bias=600,
    )
    net = bj.Sequential(
        [bj.Synapse(10, 3, key=getkey(), transform=bj.linear_saturating(60.0)), bj.LIF(3)]
    )
    client = bj.HxtorchClient(calib_path=path)
    recording = bj.Hardware(client, retries=0).observe(net, inputs, dt=DT, key=None)
    assert recording.populations[0].membrane_cadc is not None
    np.testing.assert_array_equal(client.chip_settings[0]["i_synin_gm"], [500.0, 500.0])


# ---------------------------------------------------------------------------------------
# The first-contact self-test, on a healthy and on broken stand-ins.


def test_self_test_passes_on_a_healthy_system(monkeypatch, capsys):
    _install(monkeypatch)
    report = bj.HxtorchClient().self_test()
    assert "self-test" in capsys.readouterr().out
    np.testing.assert_allclose(report.leak_measured, 80.0, atol=2.0)
    assert report.psp_measured[0] > 0 > report.psp_measured[1]
    assert np.all(np.abs(report.psp_delay) <= 2 * report.cadc_interval)
    assert report.cadc_first < 2 * report.cadc_interval
    assert report.madc_last > report.runtime - 2 * report.madc_interval


@pytest.mark.parametrize(
    "faults, cause",
    [
        (standin.Faults(cadc_raw=True), "value offset"),
        (standin.Faults(cadc_time_shift=1000), "time offset"),
        (standin.Faults(swap_receptors=True), "PSP sign"),
        (standin.Faults(drop_input=True), "no PSP"),
    ],
)
def test_self_test_names_the_cause(monkeypatch, faults, cause):
    _install(monkeypatch, faults)
    with pytest.raises(bj.SelfTestError, match=cause) as info:
        bj.HxtorchClient().self_test(verbose=False)
    assert info.value.cause == cause


def test_self_test_names_a_calibration_override(monkeypatch, tmp_path):
    _install(monkeypatch)
    path = standin.calibration_file(
        tmp_path / "spiking_calix-native.pkl",
        leak=90,
        tau_mem=10e-6,
        tau_syn=10e-6,
        membrane_capacitance=63,
        i_synin_gm=500,
        synapse_dac_bias=600,
    )
    with pytest.raises(bj.SelfTestError, match="(?s)calibration override.*`leak` runs at 90"):
        bj.HxtorchClient(calib_path=path).self_test(verbose=False)


def test_self_test_checks():
    selftest.check_leak(np.array([79.0, 83.0]), 80.0, 10.0)
    with pytest.raises(bj.SelfTestError, match=r"value offset.*-128"):
        selftest.check_leak(np.array([-48.0, -47.0]), 80.0, 10.0)
    with pytest.raises(bj.SelfTestError, match=r"\(leak\).*reads 120.0"):
        selftest.check_leak(np.array([120.0, 80.0]), 80.0, 10.0)
    time = np.arange(40)
    bump = np.where(time > 10, 5 * (time - 10) * np.exp(-(time - 10) / 5.0), 0.0)
    expected = 80.0 + np.stack([bump, -bump], 1)
    measured, model, delay = selftest.check_psp(expected, expected, 10, 1e-6, 1.7e-6, 4.0)
    np.testing.assert_allclose(measured, model) and np.testing.assert_array_equal(delay, 0.0)
    with pytest.raises(bj.SelfTestError, match="PSP size"):
        selftest.check_psp(80.0 + 10 * (expected - 80.0), expected, 10, 1e-6, 1.7e-6, 4.0)
    late = 80.0 + np.stack([np.roll(bump, 8), -np.roll(bump, 8)], 1)
    with pytest.raises(bj.SelfTestError, match="time offset"):
        selftest.check_psp(late, expected, 10, 1e-6, 1.7e-6, 4.0)

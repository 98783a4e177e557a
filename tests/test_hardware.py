"""The `Hardware` backend: the callback path, its transformations, and every failure mode."""

from __future__ import annotations

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hardware_clients import FakeClient, irregular_recording
from helpers import SyntheticBackend, tree_equal

import bss2jax as bj
import bss2jax.hardware as bjh

DT = 1e-6
TIME, BATCH = 20, 3


def make_net(key, *, madc=False):
    k1, k2 = jax.random.split(key)
    return bj.Sequential(
        [
            bj.Synapse(8, 4, key=k1, transform=bj.linear_saturating(40.0)),
            bj.LIF(
                4,
                leak=bj.Mixed(0.0, 80.0),
                reset=bj.Mixed(0.0, 80.0),
                threshold=bj.Mixed(1.0, 125.0),
                enable_madc_recording=madc,
                record_neuron_id=2,
            ),
            bj.Synapse(4, 2, key=k2, transform=bj.linear_saturating(30.0)),
            bj.LI(2, leak=bj.Mixed(0.0, 80.0), trace_offset=80.0, trace_scale=0.02),
        ]
    )


@pytest.fixture(scope="module")
def net():
    return make_net(jax.random.PRNGKey(0), madc=True)


@pytest.fixture(scope="module")
def inputs():
    return (jax.random.uniform(jax.random.PRNGKey(1), (TIME, BATCH, 8)) < 0.25).astype(float)


def channels(samples, batch, size):
    """CADC samples → sorted `(batch, size, count)` arrays (each channel equally long)."""
    order = np.lexsort((samples.times, samples.neurons, samples.batch))
    shape = (batch, size, -1)
    return samples.times[order].reshape(shape), samples.values[order].reshape(shape)


def expected_recording(request, raw):
    """The to-dense conversion of a raw recording, written out independently of Hardware."""
    grid = bjh.grid_length(request.runtime, request.dt)
    result = {}
    for p in request.populations:
        entry = {}
        if p.record_spikes:
            events = raw.spikes[p.key]
            dense = np.zeros((grid, request.batch_size, p.size), np.float32)
            dense[np.round(events.times / request.dt).astype(int), events.batch, events.neurons] = 1
            entry["spikes"] = dense
        if p.record_cadc:
            t, v = channels(raw.cadc[p.key], request.batch_size, p.size)
            entry["membrane_cadc"] = bjh.cadc_to_dense(
                jnp.asarray(t, jnp.float32), jnp.asarray(v, jnp.float32), dt=request.dt, length=grid
            )
        if request.madc is not None and request.madc[0] == p.key:
            m = raw.madc[p.key]
            t = m.times.reshape(request.batch_size, -1)
            v = m.values.reshape(request.batch_size, -1)
            entry["membrane_madc"] = bjh.madc_to_dense(
                jnp.asarray(t, jnp.float32), jnp.asarray(v, jnp.float32), dt=request.dt, length=grid
            )
            entry["madc_time"], entry["madc_value"] = t, v
        result[p.key] = entry
    return result


def test_recording_equals_dense_conversion_bit_for_bit(net, inputs):
    client = FakeClient()
    recording = bj.Hardware(client).observe(net, inputs, dt=DT, key=None)
    (request,) = client.requests
    raw = irregular_recording(request)  # deterministic in the request
    expected = expected_recording(request, raw)
    for key, entry in expected.items():
        got = recording.populations[key]
        for name in ("spikes", "membrane_cadc", "membrane_madc"):
            if name in entry:
                np.testing.assert_array_equal(np.asarray(getattr(got, name)), entry[name])
        if "madc_time" in entry:
            count = entry["madc_time"].shape[1]
            np.testing.assert_array_equal(
                np.asarray(got.madc_time)[:, :count], entry["madc_time"].astype(np.float32)
            )
            np.testing.assert_array_equal(
                np.asarray(got.madc_value)[:, :count], entry["madc_value"]
            )
            # Padding repeats the last sample: the dense trace does not change.
            assert np.all(
                np.asarray(got.madc_time)[:, count:]
                == entry["madc_time"][:, -1:].astype(np.float32)
            )
    assert recording.populations[1].spikes is None
    # Sanity check against numpy's interpolation (independent of bss2jax's code).
    t, v = channels(raw.cadc[1], BATCH, 2)
    grid = np.arange(TIME + 1) * DT
    reference = np.interp(grid, t[0, 1], v[0, 1])
    np.testing.assert_allclose(
        np.asarray(recording.populations[1].membrane_cadc)[:, 0, 1], reference, rtol=1e-4, atol=1e-2
    )


def test_request_in_chip_units(net, inputs):
    client = FakeClient()
    bj.run(net, inputs, backend=bj.Hardware(client), dt=DT)
    (request,) = client.requests
    assert request.runtime == TIME * DT and request.dt == DT and request.batch_size == BATCH
    assert request.madc == (0, 2)
    for index, projection in enumerate(request.projections):
        hardware = np.asarray(net.synapse(index).hardware_weight())
        assert projection.weight_exc.dtype == np.uint8
        np.testing.assert_array_equal(projection.signed_weight, hardware)
        assert not np.any((projection.weight_exc > 0) & (projection.weight_inh > 0))
    lif, li = request.populations
    assert lif.kind == "LIF" and li.kind == "LI" and lif.fire and not li.fire
    np.testing.assert_array_equal(lif.leak, 80.0)
    np.testing.assert_array_equal(lif.threshold, 125.0)
    np.testing.assert_array_equal(lif.membrane_capacitance, 63.0)
    assert lif.record_spikes and lif.record_cadc and not li.record_spikes
    assert lif.circuits.shape == (4, 1) and li.circuits.shape == (2, 1)
    assert len(set(lif.circuits.ravel()) | set(li.circuits.ravel())) == 6
    for b, spikes in enumerate(request.input_spikes):
        steps, channels_ = np.nonzero(np.asarray(inputs[:, b]))
        np.testing.assert_allclose(spikes.times, steps * DT)
        np.testing.assert_array_equal(spikes.channels, channels_)


def test_run_injects_the_recording_eager_and_jit(net, inputs):
    client = FakeClient()
    backend = bj.Hardware(client)
    eager = bj.run(net, inputs, backend=backend, dt=DT)
    request = client.requests[0]
    expected = expected_recording(request, irregular_recording(request))
    np.testing.assert_array_equal(np.asarray(eager[0].spikes), expected[0]["spikes"][:TIME])
    readout = bj.cadc_to_model(jnp.asarray(expected[1]["membrane_cadc"]), net.layers[3])
    np.testing.assert_array_equal(np.asarray(eager[1].membrane_cadc), np.asarray(readout[:TIME]))

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(net, x):
        return bj.run(net, x, backend=backend, dt=DT)

    jitted = f(net, inputs)
    # The injected observations are the recording's, bit for bit, under jit too; the
    # numerics around them (`current`) may round differently where XLA fuses the jitted
    # program otherwise than eager dispatch does (seen: one float32 ulp).
    for got, want in zip(jitted, eager, strict=True):
        assert tree_equal(got.membrane_cadc, want.membrane_cadc)
        assert tree_equal(got.spikes, want.spikes) and tree_equal(
            got.membrane_madc, want.membrane_madc
        )
        np.testing.assert_allclose(
            np.asarray(got.current), np.asarray(want.current), rtol=1e-6, atol=1e-6
        )
    f(eqx.tree_at(lambda n: n.layers[0].weight, net, net.layers[0].weight * 0.5), inputs)
    assert len(client.requests) == 3  # eager, jit, jit again without retracing


def test_gradient_is_the_numerics_around_the_recording(net, inputs):
    backend = bj.Hardware(FakeClient())
    fixed = SyntheticBackend(backend.observe(net, inputs, dt=DT, key=None))

    def loss(net, backend):
        out = bj.run(net, inputs, backend=backend, dt=DT)
        return jnp.mean(out[1].membrane_cadc ** 2) + jnp.mean(out[0].membrane_cadc)

    grad = jax.jit(jax.grad(loss))  # (eager grad, the direct host call: tests/test_replay.py)
    expected = grad(net, fixed)
    assert tree_equal(grad(net, backend), expected)
    assert float(jnp.abs(expected.layers[0].weight).sum()) > 0


def test_vmap_over_inputs_is_one_chip_run(net, inputs):
    client = FakeClient()
    backend = bj.Hardware(client)
    stacked = jnp.stack([inputs, inputs[::-1], 1.0 - inputs])
    batched = jax.jit(jax.vmap(lambda x: bj.run(net, x, backend=backend, dt=DT)))(stacked)
    assert len(client.requests) == 1 and client.requests[0].batch_size == 3 * BATCH
    # Each vmapped entry equals the matching batch slice of the one merged run.
    merged = client.requests[0]
    expected = expected_recording(merged, irregular_recording(merged))
    for v in range(3):
        part = slice(v * BATCH, (v + 1) * BATCH)
        np.testing.assert_array_equal(
            np.asarray(batched[0].spikes[v]), expected[0]["spikes"][:TIME, part]
        )
        readout = bj.cadc_to_model(
            jnp.asarray(expected[1]["membrane_cadc"][:, part]), net.layers[3]
        )
        np.testing.assert_array_equal(
            np.asarray(batched[1].membrane_cadc[v]), np.asarray(readout[:TIME])
        )


def test_vmap_sequential_and_over_weights(net, inputs):
    stacked = jnp.stack([inputs, inputs[::-1]])
    client = FakeClient()
    backend = bj.Hardware(client, vmap_method="sequential")
    batched = jax.jit(jax.vmap(lambda x: backend.observe(net, x, dt=DT, key=None)))(stacked)
    assert [r.batch_size for r in client.requests] == [BATCH, BATCH]
    for v in range(2):
        single = backend.observe(net, stacked[v], dt=DT, key=None)
        assert tree_equal(jax.tree.map(lambda a, v=v: a[v], batched), single)
    # Different weights per vmapped entry: one configuration each, so one run each.
    client = FakeClient()
    backend = bj.Hardware(client)
    nets = jax.vmap(
        lambda s: eqx.tree_at(lambda n: n.layers[0].weight, net, net.layers[0].weight * s)
    )(jnp.array([0.5, 1.0]))
    eqx.filter_jit(jax.vmap(lambda n: backend.observe(n, inputs, dt=DT, key=None)))(nets)
    assert len(client.requests) == 2
    assert client.requests[0].configuration_hash != client.requests[1].configuration_hash


def test_unchanged_configuration_is_not_reconfigured(net, inputs):
    client = FakeClient()
    backend = bj.Hardware(client)
    backend.observe(net, inputs, dt=DT, key=None)
    backend.observe(net, 1.0 - inputs, dt=DT, key=None)
    changed = eqx.tree_at(lambda n: n.layers[0].weight, net, net.layers[0].weight * 2.0)
    backend.observe(changed, inputs, dt=DT, key=None)
    assert [r.reconfigure for r in client.requests] == [True, False, True]
    assert client.requests[0].configuration_hash == client.requests[1].configuration_hash
    # A failed call forgets the configuration: the next call uploads it again.
    client.failures.append(RuntimeError("lost"))
    with pytest.raises(bj.HardwareError):
        backend.observe(changed, inputs, dt=DT, key=None)
    backend.observe(changed, inputs, dt=DT, key=None)
    assert client.requests[-1].reconfigure


# ---------------------------------------------------------------------------------------
# Failure modes: each gives a HardwareError that names the cause.


def test_client_exception_is_a_hardware_error(net, inputs):
    backend = bj.Hardware(FakeClient(failures=[ValueError("chip on fire")]))
    with pytest.raises(bj.HardwareError, match="FakeClient raised ValueError: chip on fire"):
        bj.run(net, inputs, backend=backend, dt=DT)


def test_client_exception_under_jit_names_the_cause(net, inputs):
    backend = bj.Hardware(FakeClient(failures=[ValueError("chip on fire")]))
    f = jax.jit(lambda n, x: bj.run(n, x, backend=backend, dt=DT)[1].membrane_cadc)
    with pytest.raises(jax.errors.JaxRuntimeError, match="HardwareError: client FakeClient raised"):
        f(net, inputs).block_until_ready()


def test_transient_errors_are_retried(net, inputs):
    failures = [bjh.TransientHardwareError("busy"), ConnectionError("reset by peer")]
    client = FakeClient(failures=list(failures))
    bj.Hardware(client, retries=2, retry_delay=0.0).observe(net, inputs, dt=DT, key=None)
    assert len(client.requests) == 3 and all(r.reconfigure for r in client.requests)
    client = FakeClient(failures=list(failures))
    backend = bj.Hardware(client, retries=1, retry_delay=0.0)
    with pytest.raises(bj.HardwareError, match=r"failed 2 times.*busy.*reset by peer"):
        bj.run(net, inputs, backend=backend, dt=DT)


def test_final_errors_are_not_retried(net, inputs):
    client = FakeClient(failures=[KeyError("calibration")])
    with pytest.raises(bj.HardwareError, match="KeyError"):
        bj.run(net, inputs, backend=bj.Hardware(client, retries=5, retry_delay=0.0), dt=DT)
    assert len(client.requests) == 1


def test_timeout(net, inputs):
    client = FakeClient(delay=1.0)
    backend = bj.Hardware(client, timeout=0.05, retries=0)
    start = time.perf_counter()
    with pytest.raises(bj.HardwareTimeoutError, match="within the timeout of 0.05 s"):
        bj.run(net, inputs, backend=backend, dt=DT)
    assert time.perf_counter() - start < 0.9
    assert client.cancelled == 1


def with_entry(field, key, fn):
    def mutate(request, raw):
        entries = dict(getattr(raw, field))
        entries[key] = fn(entries[key], request)
        return dataclasses.replace(raw, **{field: entries})

    return mutate


def nan_first(entry, request):
    times = entry.times.copy()
    times[0] = np.nan
    return dataclasses.replace(entry, times=times)


MALFORMED = {
    "not a recording": (lambda request, raw: {"cadc": {}}, "must return a bjh.RawRecording"),
    "NaN time": (with_entry("cadc", 1, nan_first), r"cadc\[1\]: `times` must be finite"),
    "late time": (
        with_entry("spikes", 0, lambda e, r: dataclasses.replace(e, times=e.times + r.runtime)),
        r"spikes\[0\]: `times` must lie before runtime \+ dt/2",
    ),
    "negative time": (
        with_entry("madc", 0, lambda e, r: dataclasses.replace(e, times=e.times - 1e-3)),
        r"madc\[0\]: `times` must lie in \[0",
    ),
    "CADC value range": (
        with_entry("cadc", 0, lambda e, r: dataclasses.replace(e, values=e.values + 100.0)),
        r"cadc\[0\]: `values` must lie in \[0, 255\] LSB",
    ),
    "MADC value range": (
        with_entry("madc", 0, lambda e, r: dataclasses.replace(e, values=e.values * 2.0)),
        r"madc\[0\]: `values` must lie in \[0, 1023\]",
    ),
    "float neuron index": (
        with_entry("cadc", 0, lambda e, r: dataclasses.replace(e, neurons=e.neurons.astype(float))),
        "`neurons` must have an integer dtype",
    ),
    "neuron index range": (
        with_entry("spikes", 0, lambda e, r: dataclasses.replace(e, neurons=e.neurons + 4)),
        r"`neurons` must lie in \[0, 3\]",
    ),
    "batch index range": (
        with_entry("cadc", 1, lambda e, r: dataclasses.replace(e, batch=e.batch + 1)),
        r"`batch` must lie in \[0, 2\]",
    ),
    "length mismatch": (
        with_entry("cadc", 1, lambda e, r: dataclasses.replace(e, values=e.values[:-1])),
        "`values` must have as many entries as `times`",
    ),
    "2-d times": (
        with_entry("spikes", 0, lambda e, r: dataclasses.replace(e, times=e.times[:, None])),
        "`times` must be 1-d",
    ),
    "neuron without samples": (
        with_entry(
            "cadc",
            1,
            lambda e, r: dataclasses.replace(
                e,
                **{
                    n: getattr(e, n)[e.neurons != 1]
                    for n in ("times", "values", "neurons", "batch")
                },
            ),
        ),
        "at least one CADC sample.*none for neuron 1 in batch entry 0",
    ),
    "missing population": (
        lambda request, raw: dataclasses.replace(raw, cadc={0: raw.cadc[0]}),
        r"cadc: must hold exactly the requested populations.*missing \['1'\]",
    ),
    "unrequested population": (
        lambda request, raw: dataclasses.replace(raw, spikes={**raw.spikes, 1: raw.spikes[0]}),
        r"unrequested \['1'\]",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_recording(net, inputs, case):
    mutate, message = MALFORMED[case]
    backend = bj.Hardware(FakeClient(mutate=mutate), retries=3, retry_delay=0.0)
    with pytest.raises(bj.HardwareError, match=message):
        bj.run(net, inputs, backend=backend, dt=DT)
    assert len(backend.client.requests) == 1  # malformed data is not retried


def test_more_samples_than_the_static_limit(net, inputs):
    backend = bj.Hardware(FakeClient(samples=30), cadc_samples=25)
    with pytest.raises(
        bj.HardwareError, match="30 samples; the static limit is 25. Raise `cadc_samples`"
    ):
        bj.run(net, inputs, backend=backend, dt=DT)
    backend = bj.Hardware(FakeClient(), max_spike_events=2)
    with pytest.raises(bj.HardwareError, match="Raise `max_spike_events`"):
        bj.run(net, inputs, backend=backend, dt=DT)


def test_inputs_must_be_spikes(net, inputs):
    with pytest.raises(ValueError, match=r"`inputs` must hold spikes as 0/1; .*\(e.g. 0.5\)"):
        bj.run(net, inputs * 0.5, backend=bj.Hardware(FakeClient()), dt=DT)
    with pytest.raises(bj.HardwareError, match="`inputs` must be spikes as 0/1.*got 0.5"):
        bj.Hardware(FakeClient()).observe(net, inputs * 0.5, dt=DT, key=None)


def test_trace_time_errors(inputs, getkey):
    two_madc = bj.Sequential(
        [
            bj.Synapse(8, 4, key=getkey()),
            bj.LIF(4, enable_madc_recording=True),
            bj.Synapse(4, 2, key=getkey()),
            bj.LI(2, enable_madc_recording=True),
        ]
    )
    with pytest.raises(bj.BackendError, match="MADC watches one neuron per run"):
        bj.run(two_madc, inputs, backend=bj.Hardware(FakeClient()), dt=DT)
    too_big = bj.Sequential([bj.Synapse(8, 600, key=getkey()), bj.LIF(600)])
    with pytest.raises(bj.BackendError, match="512"):
        bj.run(too_big, inputs, backend=bj.Hardware(FakeClient()), dt=DT)


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="`client` must have a method `execute"):
        bj.Hardware(object())
    with pytest.raises(ValueError, match="`timeout` must be a positive number"):
        bj.Hardware(FakeClient(), timeout=0)
    with pytest.raises(ValueError, match="`retries` must be a non-negative int"):
        bj.Hardware(FakeClient(), retries=-1)
    with pytest.raises(ValueError, match="`vmap_method` must be one of"):
        bj.Hardware(FakeClient(), vmap_method="legacy_vectorized")
    with pytest.raises(ValueError, match="`cadc_samples` must be a positive int"):
        bj.Hardware(FakeClient(), cadc_samples=0)


def test_split_weight():
    exc, inh = bjh.split_weight(np.array([[3.0, -5.0, 0.0], [63.0, -63.0, -0.0]]))
    np.testing.assert_array_equal(exc, [[3, 0, 0], [63, 0, 0]])
    np.testing.assert_array_equal(inh, [[0, 5, 0], [0, 63, 0]])
    assert exc.dtype == inh.dtype == np.uint8
    for bad in (64.0, 1.5, np.nan):
        with pytest.raises(bj.HardwareError, match="integers in \\[-63, 63\\]"):
            bjh.split_weight(np.array([[1.0, bad]]))


def test_recorded_runs_are_written(net, inputs, tmp_path):
    backend = bj.Hardware(FakeClient(), record_to=tmp_path / "session")
    backend.observe(net, inputs, dt=DT, key=None)
    backend.observe(net, 1.0 - inputs, dt=DT, key=None)
    files = sorted(p.name for p in (tmp_path / "session").iterdir())
    assert files == ["run-000000.npz", "run-000001.npz"]
    # A new backend on the same folder continues the numbering.
    bj.Hardware(FakeClient(), record_to=tmp_path / "session").observe(net, inputs, dt=DT, key=None)
    assert (tmp_path / "session" / "run-000002.npz").exists()

"""Routing limits (6-bit synapse labels per driver) and the event-rate model (bus drops).

Ground truths: the labels limit is counted by hand for a chain of one-neuron populations
(each takes one circuit, hemispheres alternate, each reads its predecessor on driver 0);
the drop counts are derived per bus from the rule "channel `i` on bus `i % 4`, at most
`floor(125e6 * dt)` events per bus and step, lowest channels first", and the chip model
on a burst must equal the chip model on the burst thinned by hand.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hardware_clients import FakeClient

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._chip._events import bus_capacity, drop_events, input_buses
from bss2jax._hardware._files import decode_run, encode_run
from bss2jax._hardware._validate import validate_dropped

DT = 1e-6


def _chain(length):
    """INPUT -> p0 -> p1 -> ... : one-neuron populations, each reading its predecessor."""
    synapse, lif = bj.Synapse(1, 1, key=jax.random.PRNGKey(0)), bj.LIF(1)  # shared: immutable
    names = [f"p{i}" for i in range(length)]
    projections = [bj.Projection(bj.INPUT, names[0], synapse)]
    projections += [bj.Projection(a, b, synapse) for a, b in zip(names, names[1:], strict=False)]
    return bj.Network(dict.fromkeys(names, lif), projections, input_size=1)


def test_labels_limit_64_sources_per_driver():
    # 128 populations: 64 per hemisphere, 64 distinct sources on driver 0 of each -> fits.
    placement = bj.place(_chain(128))
    hemispheres = [int(p.circuits[0, 0]) // 256 for p in placement.populations.values()]
    assert hemispheres.count(0) == 64 and hemispheres.count(1) == 64
    # 129: hemisphere 0 holds p0, p2, ..., p128 -> 65 distinct sources on its driver 0.
    with pytest.raises(
        bj.PlacementError,
        match=r"driver 0 \(PADI bus 0\) of hemisphere 0 in run 0 would carry 65 distinct "
        r"sources.*at most 64.*6-bit synapse labels",
    ):
        bj.place(_chain(129))


def test_shared_source_takes_one_label():
    # 200 populations all reading INPUT channel 0: one source on driver 0, however many.
    synapse, li = bj.Synapse(1, 1, key=jax.random.PRNGKey(0)), bj.LI(1)
    names = [f"q{i}" for i in range(200)]
    net = bj.Network(
        dict.fromkeys(names, li), [bj.Projection(bj.INPUT, n, synapse) for n in names], input_size=1
    )
    assert bj.place(net).runs == 1


def _layer(fan_in, size=1):
    return bj.Sequential([bj.Synapse(fan_in, size, weight=jnp.zeros((size, fan_in))), bj.LI(size)])


def _expected_drops(active, capacity):
    """Per bus b: the active channels with i % 4 == b beyond the first `capacity`."""
    per_bus = np.bincount(np.flatnonzero(active) % 4, minlength=4)
    return int(np.maximum(per_bus - capacity, 0).sum())


@pytest.mark.parametrize(
    "dt, active, expected",
    [
        (1e-6, 500, 0),  # 125 per bus: exactly at capacity
        (1e-6, 501, 1),  # channel 500 is the 126th on bus 0
        (1e-6, 784, 4 * (196 - 125)),
        (0.5e-6, 500, 4 * (125 - 62)),  # capacity floor(62.5) = 62
    ],
)
def test_drop_counts_on_a_burst(dt, active, expected):
    capacity = bus_capacity(dt)
    assert capacity == int(np.floor(125e6 * dt + 1e-9))
    spikes = np.zeros((3, 2, 784), np.float32)
    spikes[1, 0, :active] = 1.0  # one burst in batch entry 0, step 1
    spikes[2, 1, ::7] = 1.0  # 112 events in entry 1, 28 per bus: no drops
    assert _expected_drops(spikes[1, 0], capacity) == expected
    kept, dropped = drop_events(jnp.asarray(spikes), input_buses(_layer(784)), capacity)
    assert dropped.tolist() == [expected, 0]
    # which go: per bus the highest channels
    lost = np.flatnonzero(spikes[1, 0] - np.asarray(kept[1, 0]))
    for b in range(4):
        on_bus = np.flatnonzero(spikes[1, 0]) % 4 == b
        assert np.all(lost[lost % 4 == b] >= np.flatnonzero(spikes[1, 0])[on_bus][:capacity].max())
    assert np.array_equal(np.asarray(kept[2]), spikes[2])


def test_buses_follow_the_fan_in_offset():
    key = jax.random.PRNGKey(0)
    net = bj.Network(
        {"a": bj.LI(2)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(8, 2, key=key)),
            bj.Projection(bj.INPUT, "a", bj.Synapse(8, 2, key=key)),
        ],
        input_size=8,
    )
    buses = input_buses(net)  # offsets 0 and 8: both on bus i % 4
    assert np.array_equal(buses, np.arange(8)[None] % 4 == np.arange(4)[:, None])
    net = bj.Network(
        {"b": bj.LIF(3), "a": bj.LI(2)},
        [
            bj.Projection(bj.INPUT, "b", bj.Synapse(8, 3, key=key)),
            bj.Projection("b", "a", bj.Synapse(3, 2, key=key)),
            bj.Projection(bj.INPUT, "a", bj.Synapse(8, 2, key=key)),
        ],
        input_size=8,
    )
    buses = input_buses(net)  # into "b" at offset 0 (bus i % 4), into "a" at 3
    expected = (np.arange(8)[None] % 4 == np.arange(4)[:, None]) | (
        (np.arange(8)[None] + 3) % 4 == np.arange(4)[:, None]
    )
    assert np.array_equal(buses, expected) and buses[:, 0].tolist() == [True, False, False, True]


def test_chip_model_drops_as_the_rule_says():
    net = _layer(784, 2)
    config = bj.ChipConfig.noiseless()
    backend = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(1)), config)
    spikes = np.zeros((6, 2, 784), np.float32)
    spikes[1, 0, :] = 1.0
    spikes[3, 1, :600] = 1.0
    recording = backend.observe(net, jnp.asarray(spikes), dt=DT, key=None)
    expected = [_expected_drops(spikes[1, 0], 125), _expected_drops(spikes[3, 1], 125)]
    assert np.asarray(recording.dropped_inputs).tolist() == expected == [284, 100]
    # ground truth: the same run on the burst thinned by hand drops nothing, same traces
    kept, _ = drop_events(jnp.asarray(spikes), input_buses(net), 125)
    thinned = backend.observe(net, kept, dt=DT, key=None)
    assert np.asarray(thinned.dropped_inputs).tolist() == [0, 0]
    for k in (0,):
        a, b = recording.populations[k], thinned.populations[k]
        assert np.array_equal(np.asarray(a.membrane_cadc), np.asarray(b.membrane_cadc))


def test_recording_count_defaults_to_none():
    assert bj.Recording({}).dropped_inputs is None
    out = bj.Recording({}, dropped_inputs=jnp.array([1, 2]))
    assert out.dropped_inputs.tolist() == [1, 2]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("routing")
    net = _layer(6, 2)
    x = (jax.random.uniform(jax.random.PRNGKey(4), (8, 2, 6)) < 0.5).astype(jnp.float32)
    # 8 us hold at most 18 CADC samples (the default limit): the fake answers with 10
    bj.run(net, x, backend=bj.Hardware(FakeClient(samples=10), record_to=folder), dt=DT)
    return bjh.load_run(folder / "run-000000.npz")


def test_drop_count_survives_a_file_round_trip(recorded, tmp_path):
    assert recorded.dropped_inputs is None  # the client did not count
    sent = [len(s.times) for s in recorded.request.input_spikes]
    dropped = np.asarray([1, sent[1]], np.int64)
    run = bjh.RecordedRun(recorded.request, recorded.recording, dropped_inputs=dropped)
    path = bjh.save_run(tmp_path / "run.npz", run)
    again = bjh.load_run(path)
    assert again.dropped_inputs.tolist() == dropped.tolist()
    assert decode_run(encode_run(recorded)).dropped_inputs is None


def test_version_1_files_still_load(recorded):
    import io
    import json

    with np.load(io.BytesIO(encode_run(recorded)), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    metadata = json.loads(arrays["__metadata__"].tobytes())
    metadata["version"] = 1
    del metadata["dropped_inputs"]
    arrays["__metadata__"] = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    old = decode_run(buffer.getvalue())
    assert old.dropped_inputs is None and old.request.request_hash == recorded.request.request_hash


@pytest.mark.parametrize(
    "dropped, message",
    [
        (np.array([-1, 0]), "must not be negative"),
        (np.array([0, 10**6]), "must not exceed the input spikes sent"),
        (np.array([0]), "one entry per batch entry"),
        (np.array([0.5, 0.0]), "integer dtype"),
    ],
)
def test_bad_drop_counts_are_refused(recorded, dropped, message):
    with pytest.raises(bj.HardwareError, match=message):
        validate_dropped(recorded.request, dropped)
    run = bjh.RecordedRun(recorded.request, recorded.recording, dropped_inputs=dropped)
    with pytest.raises(bj.RecordingFileError, match=message):
        decode_run(encode_run(run))

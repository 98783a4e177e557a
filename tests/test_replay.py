"""Recorded runs on disk and the `Replay` backend."""

from __future__ import annotations

import io
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hardware_clients import FakeClient
from helpers import tree_equal

import bss2jax as bj
import bss2jax.hardware as bjh

DT = 1e-6


@pytest.fixture(scope="module")
def net():
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    return bj.Sequential(
        [
            bj.Synapse(6, 3, key=k1, transform=bj.linear_saturating(40.0)),
            bj.LIF(3, threshold=bj.Mixed(1.0, 125.0), enable_madc_recording=True),
            bj.Synapse(3, 2, key=k2, transform=bj.linear_saturating(30.0)),
            bj.LI(2, trace_offset=80.0, trace_scale=0.02),
        ]
    )


@pytest.fixture(scope="module")
def inputs():
    return (jax.random.uniform(jax.random.PRNGKey(4), (15, 2, 6)) < 0.3).astype(float)


@pytest.fixture(scope="module")
def session(net, inputs, tmp_path_factory):
    """Two runs recorded to a folder by a live `Hardware` backend, and their results."""
    folder = tmp_path_factory.mktemp("session")
    client = FakeClient()
    backend = bj.Hardware(client, record_to=folder)
    first = bj.run(net, inputs, backend=backend, dt=DT)
    second = bj.run(net, 1.0 - inputs, backend=backend, dt=DT)
    return folder, client, (first, second)


def test_replay_reproduces_recorded_runs_exactly(net, inputs, session):
    folder, _, (first, second) = session
    replay = bj.Replay(folder)
    assert len(replay.runs) == 2
    assert tree_equal(bj.run(net, inputs, backend=replay, dt=DT), first)
    assert tree_equal(bj.run(net, 1.0 - inputs, backend=replay, dt=DT), second)
    jitted = eqx.filter_jit(lambda n, x: bj.run(n, x, backend=replay, dt=DT))
    # under jit: the replayed observations bit for bit; the numerics' current may round
    # otherwise where XLA fuses the jitted program (one float32 ulp, as in test_hardware)
    for got, want in zip(jitted(net, 1.0 - inputs), second, strict=True):
        assert tree_equal(got.membrane_cadc, want.membrane_cadc)
        assert tree_equal(got.spikes, want.spikes)
        np.testing.assert_allclose(
            np.asarray(got.current), np.asarray(want.current), rtol=1e-6, atol=1e-6
        )


def test_replay_gives_the_same_gradient(net, inputs, session):
    folder, client, _ = session

    def loss(net, backend):
        return jnp.mean(bj.run(net, inputs, backend=backend, dt=DT)[1].membrane_cadc ** 2)

    live = jax.grad(loss)(net, bj.Hardware(client))
    replayed = jax.grad(loss)(net, bj.Replay(folder))
    assert tree_equal(live, replayed)


def test_round_trip_of_a_run_file(session, tmp_path):
    folder, client, _ = session
    run = bjh.load_run(folder / "run-000000.npz")
    request, original = client.requests[0], run.request
    assert original.request_hash == request.request_hash
    assert original.configuration_hash == request.configuration_hash
    assert original.madc == request.madc and original.runtime == request.runtime
    assert run.info["client"] == "FakeClient"
    for a, b in zip(original.projections, request.projections, strict=True):
        np.testing.assert_array_equal(a.weight_exc, b.weight_exc)
        np.testing.assert_array_equal(a.weight_inh, b.weight_inh)
    path = bjh.save_run(tmp_path / "copy.npz", run)
    again = bjh.load_run(path)
    assert again.request.request_hash == run.request.request_hash
    for field in ("spikes", "cadc", "madc"):
        for key, entry in getattr(run.recording, field).items():
            other = getattr(again.recording, field)[key]
            for name in ("times", "batch"):
                np.testing.assert_array_equal(getattr(entry, name), getattr(other, name))
    # The file holds no pickled object.
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_replay_from_recorded_runs_in_memory(net, inputs, session):
    folder, _, (first, _) = session
    runs = bjh.load_runs(folder)
    assert tree_equal(bj.run(net, inputs, backend=bj.Replay(runs), dt=DT), first)
    assert tree_equal(bj.run(net, inputs, backend=bj.Replay(runs[0]), dt=DT), first)


def test_no_matching_run(net, inputs, session):
    folder, _, _ = session
    replay = bj.Replay(folder)
    with pytest.raises(bj.ReplayError, match="2 of them have this configuration"):
        replay.observe(net, inputs[::-1], dt=DT, key=None)
    changed = eqx.tree_at(lambda n: n.layers[0].weight, net, net.layers[0].weight * 3.0)
    with pytest.raises(bj.ReplayError, match="none has this configuration"):
        replay.observe(changed, inputs, dt=DT, key=None)
    with pytest.raises(bj.ReplayError):  # a key is part of the request
        replay.observe(net, inputs, dt=DT, key=jax.random.PRNGKey(0))


def test_replay_in_order(net, inputs, session):
    folder, _, (first, second) = session
    replay = bj.Replay(folder, match="order")
    other = 1.0 - inputs  # ignored: the runs come in recorded order
    a = replay.observe(net, inputs, dt=DT, key=None)
    b = replay.observe(net, other, dt=DT, key=None)
    with pytest.raises(bj.ReplayError, match="all 2 recorded runs were replayed"):
        replay.observe(net, inputs, dt=DT, key=None)
    replay.client.reset()
    assert tree_equal(replay.observe(net, inputs, dt=DT, key=None), a)
    assert not tree_equal(a, b)


def test_replay_validates_against_the_network(net, inputs, session):
    folder, _, _ = session
    wider = bj.Sequential(
        [
            bj.Synapse(6, 4, key=jax.random.PRNGKey(0)),
            bj.LIF(4),
            bj.Synapse(4, 2, key=jax.random.PRNGKey(1)),
            bj.LI(2),
        ]
    )
    with pytest.raises(bj.HardwareError, match="malformed raw recording"):
        bj.Replay(folder, match="order").observe(wider, inputs, dt=DT, key=None)


def _rewrite(path, target, change):
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    target.write_bytes(buffer.getvalue())
    return target


def _metadata(change):
    def apply(arrays):
        metadata = json.loads(arrays["__metadata__"].tobytes())
        change(metadata)
        arrays["__metadata__"] = np.frombuffer(json.dumps(metadata).encode(), np.uint8)

    return apply


def _tamper_weight(arrays):
    arrays["projection/0/weight_exc"] = arrays["projection/0/weight_exc"] + 1


def _tamper_time(arrays):
    arrays["raw/cadc/1/times"] = arrays["raw/cadc/1/times"] + 1.0


BAD_FILES = {
    "version": (_metadata(lambda m: m.update(version=99)), "format version must be 1"),
    "format": (
        _metadata(lambda m: m.update(format="other")),
        "format must be 'bss2jax-recorded-run'",
    ),
    "no metadata": (lambda arrays: arrays.pop("__metadata__"), "no '__metadata__' entry"),
    "missing array": (lambda arrays: arrays.pop("raw/cadc/1/values"), "missing entry"),
    "tampered weight": (_tamper_weight, "does not match its hash"),
    "malformed recording": (_tamper_time, "`times` must lie before runtime"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused(session, tmp_path, case):
    folder, _, _ = session
    change, message = BAD_FILES[case]
    path = _rewrite(folder / "run-000000.npz", tmp_path / "bad.npz", change)
    with pytest.raises(bj.RecordingFileError, match=message):
        bjh.load_run(path)


def test_pickled_and_garbage_files_are_refused(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __metadata__=np.array([{"format": "bss2jax-recorded-run"}], dtype=object))
    with pytest.raises(bj.RecordingFileError, match="not a readable .npz file|pickle"):
        bjh.load_run(pickled)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(bj.RecordingFileError, match="not a readable .npz file"):
        bjh.load_run(garbage)
    (tmp_path / "empty").mkdir()
    with pytest.raises(bj.RecordingFileError, match="no recorded runs"):
        bjh.load_runs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        bjh.load_runs(tmp_path / "absent.npz")


def test_atomic_write_keeps_the_old_file(session, tmp_path, monkeypatch):
    folder, _, _ = session
    run = bjh.load_run(folder / "run-000000.npz")
    path = bjh.save_run(tmp_path / "run.npz", run)
    before = path.read_bytes()

    def fail(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        bjh.save_run(path, bjh.load_run(folder / "run-000001.npz"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_arguments_are_checked(session, tmp_path):
    folder, _, _ = session
    with pytest.raises(TypeError, match="`source` must be a path"):
        bj.Replay(42)
    with pytest.raises(ValueError, match="`match` must be one of"):
        bj.Replay(folder, match="nearest")
    with pytest.raises(ValueError, match="must end in '.npz'"):
        bjh.save_run(tmp_path / "run.bin", bjh.load_run(folder / "run-000000.npz"))
    with pytest.raises(TypeError, match="`run` must be a bjh.RecordedRun"):
        bjh.save_run(tmp_path / "run.npz", {"request": None})


def test_named_populations_and_recurrence_round_trip(tmp_path, getkey):
    net = bj.Network(
        {"hidden": bj.LIF(4, enable_madc_recording=True), "out": bj.LI(2)},
        [
            bj.Projection(bj.INPUT, "hidden", bj.Synapse(6, 4, key=getkey())),
            bj.Projection("hidden", "hidden", bj.Synapse(4, 4, key=getkey())),
            bj.Projection("hidden", "out", bj.Synapse(4, 2, key=getkey())),
        ],
        input_size=6,
    )
    inputs = (jax.random.uniform(getkey(), (12, 2, 6)) < 0.3).astype(jnp.float32)
    client = FakeClient()
    live = bj.Hardware(client, record_to=tmp_path).observe(net, inputs, dt=DT, key=None)
    request = client.requests[0]
    assert request.keys() == ("hidden", "out") and request.madc == ("hidden", 0)
    assert [(q.source, q.target, q.delayed) for q in request.projections] == [
        ("input", "hidden", False),
        ("hidden", "hidden", True),
        ("hidden", "out", False),
    ]
    (run,) = bjh.load_runs(tmp_path)
    assert run.request.request_hash == request.request_hash
    assert tree_equal(bj.Replay(tmp_path).observe(net, inputs, dt=DT, key=None), live)

"""Scale-out: data-parallel training, sharded sweeps, `Hardware` with several clients, two
processes. Each device count runs in its own interpreter (`_sharding_worker.py`): XLA_FLAGS
(`--xla_force_host_platform_device_count`) must be set before JAX is imported."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj

WORKER = Path(__file__).with_name("_sharding_worker.py")
# float32 gradients all-reduced in another order: equal up to rounding, after 2 Adam steps
TOLERANCE = 1e-5


def _environment() -> dict:
    env = dict(os.environ)
    package_root = str(Path(bj.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.pop("XLA_FLAGS", None)
    return env


def _start(tmp_path, name, *arguments) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.json"
    command = [sys.executable, str(WORKER), *arguments, "--out", str(out)]
    process = subprocess.Popen(
        command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return process, out


def _finish(process, out, timeout=900) -> dict:
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        log, _ = process.communicate()
        pytest.fail(f"worker timed out:\n{log[-4000:]}")
    assert process.returncode == 0, log[-4000:]
    return json.loads(out.read_text())


def _worker(tmp_path, *arguments) -> dict:
    return _finish(*_start(tmp_path, "worker", *arguments))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# In this process (one device)


def test_batch_mesh_and_shard_batch():
    mesh = bj.batch_mesh()
    assert mesh.axis_names == ("batch",) and mesh.size == jax.device_count()
    x, y = bj.shard_batch((np.arange(8.0), jnp.ones((8, 3))), mesh)
    assert x.sharding.spec == jax.sharding.PartitionSpec(("batch",))
    key = bj.replicate(jax.random.key(0), mesh)
    assert jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    with pytest.raises(ValueError, match="between 1 and the"):
        bj.batch_mesh(jax.device_count() + 1)
    with pytest.raises(ValueError, match="sample axis"):
        bj.shard_batch(jnp.float32(1.0), mesh)


def test_mesh_argument_errors():
    with pytest.raises(TypeError, match="Mesh"):
        bj.make_train_step(lambda *a, **k: 0.0, __import__("optax").sgd(0.1), mesh="batch")
    with pytest.raises(TypeError, match="Mesh"):
        bj.sweep(lambda a: a, {"a": jnp.arange(3.0)}, mesh=4)

    class Client:
        def execute(self, request):
            raise AssertionError

    with pytest.raises(ValueError, match="several clients"):
        bj.Hardware([Client(), Client()])


def test_sweep_on_a_one_device_mesh_equals_the_plain_sweep():
    def fn(a, b):
        return {"sum": a + b, "product": a * b}

    axes = {"a": jnp.arange(3.0), "b": jnp.arange(5.0)}
    plain = bj.sweep(fn, axes, chunk_size=4)
    sharded = bj.sweep(fn, axes, chunk_size=4, mesh=bj.batch_mesh())
    assert sharded.values["sum"].shape == (3, 5)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, plain.values, sharded.values))


# ------------------------------------------------------------------------------------------
# Forced host devices, one interpreter per device count


def _check_train(result, backends):
    for name in backends:
        assert result[name]["network"] < TOLERANCE, (name, result[name])
        assert result[name]["loss"] < TOLERANCE, (name, result[name])


def test_train_step_equals_one_device_on_4_forced_devices(tmp_path):
    result = _worker(tmp_path, "train", "--devices", "4", "--backends", "numeric")
    assert result["devices"] == 4
    _check_train(result, ["numeric"])


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2, 4])
def test_train_step_equals_one_device_for_every_backend(tmp_path, devices):
    backends = ["numeric", "chip", "through", "random"]
    result = _worker(tmp_path, "train", "--devices", str(devices), "--backends", ",".join(backends))
    assert result["devices"] == devices
    _check_train(result, backends)


def test_sweep_grid_sharded_on_4_forced_devices(tmp_path):
    result = _worker(tmp_path, "sweep", "--devices", "4", "--backends", "numeric")
    assert result["grid"] == 0.0 and result["grid_shape"] == [3, 2]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2, 4])
def test_sweep_over_chips_sharded(tmp_path, devices):
    result = _worker(tmp_path, "sweep", "--devices", str(devices), "--backends", "numeric,chip")
    assert result["grid"] == 0.0 and result["chips"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 4])
def test_hardware_with_several_chip_model_clients(tmp_path, devices):
    result = _worker(tmp_path, "hardware", "--devices", str(devices))
    # noiseless chip-model clients: the split batch gives the one-client result
    assert result["network"] == 0.0 and result["loss"] == 0.0
    assert result["clients_used"] == [0, 1]
    assert result["batch_sizes"] == [8 // devices] * devices
    assert result["one_meshed"] == 0.0 and result["one_meshed_calls"] == 1


def _two_processes(tmp_path, backend):
    address = f"127.0.0.1:{_free_port()}"
    common = ["fit", "--devices", "2", "--processes", "2", "--coordinator", address]
    common += ["--mesh", "--backends", backend]
    workers = [_start(tmp_path, f"process{i}", *common, "--process-id", str(i)) for i in range(2)]
    alone = _start(tmp_path, "alone", "fit", "--devices", "1", "--backends", backend)
    results = [_finish(*w) for w in workers]
    reference = _finish(*alone)
    for result in results:
        assert result["devices"] == 4 and result["local_devices"] == 2
        for a, b in zip(result["leaves"], reference["leaves"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=TOLERANCE)
        for a, b in zip(result["history"], reference["history"], strict=True):
            assert a.keys() == b.keys()
            np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-4)
    assert results[0]["leaves"] == results[1]["leaves"]


def test_two_processes_train_together_like_one(tmp_path):
    _two_processes(tmp_path, "numeric")


@pytest.mark.slow
def test_two_processes_train_together_on_the_chip_model(tmp_path):
    _two_processes(tmp_path, "chip")

"""Fuzzing every entry point (issue 13): each generated case ends in a correct result or a
named error: a bss2jax error class, or a `TypeError`/`ValueError` whose message names the
argument in backticks. Never a raw JAX, numpy or zipfile error, a NaN result, or a crash.

The default run draws a few hundred cases in total (values, not shapes, where `jit` is
involved, so nothing recompiles per case); `@pytest.mark.slow` copies of every test draw
ten times as many: `pytest -m slow tests/test_fuzz.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import io
import math
import sys
import types

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hardware_clients import FakeClient, irregular_recording
from hypothesis import HealthCheck, given, settings, strategies as st

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._errors import NetworkError
from bss2jax._neurons import Readout
from bss2jax.yinyang._options import add_train_arguments, train_configs

BSS2JAX_ERRORS = (
    NetworkError,
    bj.BackendError,
    bj.ChipInstanceError,
    bj.HardwareError,
    bj.NonFiniteError,
    bj.OutputFolderError,
    bj.CheckpointError,
)
LARGE = 10  # the slow copies draw this many times as many cases


def fuzz(examples: int, **strategies):
    """`@given(**strategies)` with `examples` cases; also defines `<name>_large` (marked
    slow) with `LARGE * examples` cases in the test's module."""

    def wrap(check):
        large = types.FunctionType(
            check.__code__, check.__globals__, check.__name__ + "_large", check.__defaults__
        )
        options = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
        slow = settings(max_examples=LARGE * examples, **options)(given(**strategies)(large))
        setattr(sys.modules[check.__module__], large.__name__, pytest.mark.slow(slow))
        return settings(max_examples=examples, **options)(given(**strategies)(check))

    return wrap


def outcome(call):
    """`call()`'s result, or None after a named error (anything else fails the test)."""
    try:
        return call()
    except BSS2JAX_ERRORS:
        return None
    except (TypeError, ValueError) as error:
        assert "`" in str(error), f"{type(error).__name__} names no argument: {error}"
        return None


ODD = [math.nan, math.inf, -math.inf, -1.0, 0.0, 2.5, 255.0, 1e300, -1e-300]
odd_floats = st.sampled_from(ODD) | st.floats(allow_nan=True, allow_infinity=True)
any_value = (
    odd_floats
    | st.integers(-(10**6), 10**6)
    | st.sampled_from([None, True, "55", "x", (), (1.0, 2.0, 3.0), 1 + 2j, [1.0]])
)

NET = bj.Sequential([bj.Synapse(2, 2, weight=jnp.full((2, 2), 0.5)), bj.LIF(2)])
SPIKES = np.zeros((4, 1, 2), np.float32)
spike_values = st.sampled_from([0.0, 1.0, math.nan, math.inf, -1.0, 2.5, 255.0]) | st.floats(
    width=32
)


def _assert_finite(observables):
    for leaf in jax.tree_util.tree_leaves(observables):
        assert np.all(np.isfinite(np.asarray(leaf)))


# --------------------------------------------------------------------------------------------
# Run inputs and dt
# --------------------------------------------------------------------------------------------


@fuzz(40, values=st.lists(spike_values, min_size=8, max_size=8))
def test_run_inputs_eager(values):
    x = np.asarray(values, np.float32).reshape(SPIKES.shape)
    result = outcome(lambda: bj.run(NET, x))
    binary = np.all((x == 0) | (x == 1))
    assert (result is not None) == binary
    if binary:
        _assert_finite(result)


_jit_run = jax.jit(lambda x: bj.run(NET, x)[0].spikes)


@fuzz(80, values=st.lists(spike_values, min_size=8, max_size=8))
def test_run_inputs_under_jit(values):
    """Traced inputs: `eqx.error_if` stops a run on values that are not spikes."""
    x = np.asarray(values, np.float32).reshape(SPIKES.shape)
    binary = bool(np.all((x == 0) | (x == 1)))
    try:
        spikes = np.asarray(_jit_run(x))
    except Exception as error:  # noqa: BLE001 - JAX re-raises error_if as a runtime error
        assert not binary and "`inputs` must hold spikes as 0/1" in str(error)
        return
    assert binary and set(np.unique(spikes)) <= {0.0, 1.0}


@fuzz(30, dt=any_value | st.floats(1e-9, 1e-4))
def test_run_dt(dt):
    result = outcome(lambda: bj.run(NET, SPIKES, dt=dt))
    if result is not None:
        _assert_finite(result)


CHIP = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())


@fuzz(
    30,
    values=st.lists(spike_values, min_size=8, max_size=8),
    dtype=st.sampled_from([np.float32, np.float16, np.int32, np.bool_, np.complex64]),
)
def test_chip_model_inputs(values, dtype):
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.asarray(values, np.float32).reshape(SPIKES.shape).astype(dtype)
    result = outcome(lambda: bj.run(NET, x, backend=CHIP))
    if result is not None:
        _assert_finite(result)


# --------------------------------------------------------------------------------------------
# Neuron and synapse parameters
# --------------------------------------------------------------------------------------------

NEURON_PARAMETERS = [
    "leak",
    "reset",
    "threshold",
    "tau_mem",
    "tau_syn",
    "refractory_time",
    "membrane_capacitance",
    "exponential_slope",
    "i_synin_gm",
    "trace_scale",
]


@fuzz(
    80,
    kind=st.sampled_from([bj.LIF, bj.LI, bj.AdEx]),
    name=st.sampled_from(NEURON_PARAMETERS),
    value=any_value,
    mixed=st.booleans(),
)
def test_neuron_parameters(kind, name, value, mixed):
    if name not in {*inspect.signature(kind).parameters, *Readout.__annotations__}:
        return

    def build():
        given = bj.Mixed(1.0, value) if mixed and name != "i_synin_gm" else value
        return kind(2, **{name: given})

    neuron = outcome(build)
    if neuron is None:
        return
    for leaf in jax.tree_util.tree_leaves(eqx.filter(neuron, eqx.is_inexact_array)):
        assert not np.any(np.isnan(np.asarray(leaf)))
    if neuron.fire and not any(isinstance(v, bj.Mixed) for v in (neuron.threshold, neuron.reset)):
        assert np.all(np.asarray(neuron.threshold) >= np.asarray(neuron.reset))
    network = bj.Sequential([bj.Synapse(2, 2, weight=jnp.full((2, 2), 0.5)), neuron])
    _assert_finite(outcome(lambda: bj.run(network, SPIKES)))  # accepted: runs to finite values


@fuzz(40, scale=any_value, weight=odd_floats)
def test_synapse_weights_and_scale(scale, weight):
    transform = outcome(lambda: bj.linear_saturating(scale))
    if transform is None:
        return
    synapse = outcome(
        lambda: bj.Synapse(2, 2, weight=jnp.full((2, 2), weight), transform=transform)
    )
    if synapse is not None:
        hardware = np.asarray(synapse.hardware_weight())
        finite = np.isfinite(hardware)
        assert np.all(np.abs(hardware[finite]) <= 63)


# --------------------------------------------------------------------------------------------
# ChipConfig, ChipInstance and its files
# --------------------------------------------------------------------------------------------

CONFIG_FIELDS = [field.name for field in dataclasses.fields(bj.ChipConfig)]


@fuzz(60, field=st.sampled_from(CONFIG_FIELDS), value=any_value | st.tuples(odd_floats, odd_floats))
def test_chip_config(field, value):
    config = outcome(lambda: bj.ChipConfig(**{field: value}))
    if config is not None:
        got = getattr(config, field)
        numbers = got if isinstance(got, tuple) else (got,)
        assert all(v is None or math.isfinite(v) for v in numbers)


NOMINAL = bj.ChipInstance.nominal()
FIELDS = list(dict(NOMINAL.__dict__))


@fuzz(
    40,
    field=st.sampled_from(FIELDS),
    value=odd_floats.filter(lambda v: abs(v) < 3e38 or not math.isfinite(v)),
)
def test_chip_instance_fields(field, value):
    fields = dict(NOMINAL.__dict__)
    fields[field] = jnp.full_like(fields[field], value)
    chip = outcome(lambda: bj.ChipInstance(**fields))
    if chip is not None:
        for leaf in jax.tree_util.tree_leaves(chip):
            assert np.all(np.isfinite(np.asarray(leaf)))


@fuzz(
    30,
    field=st.sampled_from(["leak", "tau_mem", "cadc_gain"]),
    value=odd_floats,
    profile_value=any_value,
)
def test_mismatch_profile_and_chip_file_values(field, value, profile_value, tmp_path_factory):
    profile = outcome(lambda: bj.MismatchProfile(leak=profile_value))
    if profile is not None:
        assert math.isfinite(profile.leak) and profile.leak >= 0
    path = tmp_path_factory.mktemp("chip") / "chip.npz"
    NOMINAL.save(path)
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays[field] = np.full(arrays[field].shape, value, np.float64)
    np.savez(path, **arrays)
    chip = outcome(lambda: bj.ChipInstance.load(path))
    if chip is not None:
        assert np.all(np.isfinite(np.asarray(getattr(chip, field))))


def _damage(data: bytes, cut: int, flip: int, byte: int) -> bytes:
    data = bytearray(data[: max(1, len(data) * cut // 100)] if cut < 100 else data)
    data[flip % len(data)] = byte
    return bytes(data)


damage = dict(cut=st.integers(1, 100), flip=st.integers(0, 10**7), byte=st.integers(0, 255))


def _bytes_of(save) -> bytes:
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@fuzz(50, **damage)
def test_damaged_chip_files(folder, cut, flip, byte):
    path = folder / "chip.npz"
    NOMINAL.save(path)
    path.write_bytes(_damage(path.read_bytes(), cut, flip, byte))
    chip = outcome(lambda: bj.ChipInstance.load(path))
    if chip is not None:
        assert all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(chip), jax.tree.leaves(NOMINAL), strict=True)
        )


CHECKPOINT_TREE = ({"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}, jnp.int32(7))


@fuzz(50, **damage)
def test_damaged_checkpoints(folder, cut, flip, byte):
    path = folder / "checkpoint.npz"
    bj.save_checkpoint(path, CHECKPOINT_TREE, {"epoch": 1})
    path.write_bytes(_damage(path.read_bytes(), cut, flip, byte))
    loaded = outcome(lambda: bj.load_checkpoint(path, CHECKPOINT_TREE))
    if loaded is not None:
        tree, meta = loaded
        assert all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(CHECKPOINT_TREE), strict=True)
        )


# --------------------------------------------------------------------------------------------
# Recording files and raw recordings from clients
# --------------------------------------------------------------------------------------------

HW_NET = bj.Sequential(
    [
        bj.Synapse(2, 2, weight=jnp.full((2, 2), 0.5), transform=bj.linear_saturating(40.0)),
        bj.LIF(
            2, leak=bj.Mixed(0.0, 80.0), reset=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0)
        ),
    ]
)
HW_SPIKES = np.zeros((6, 2, 2), np.float32)
HW_SPIKES[1, :, 0] = 1.0


@pytest.fixture(scope="module")
def recorded(folder):
    """A recorded run's bytes and its request (a `FakeClient` run)."""
    client = FakeClient(samples=3)
    bj.run(HW_NET, HW_SPIKES, backend=bj.Hardware(client, record_to=folder / "runs"))
    (path,) = sorted((folder / "runs").glob("run-*.npz"))
    return path.read_bytes(), client.requests[0]


@fuzz(40, **damage)
def test_damaged_recording_files(folder, recorded, cut, flip, byte):
    data, _ = recorded
    path = folder / "run-damaged.npz"
    path.write_bytes(_damage(data, cut, flip, byte))
    run = outcome(lambda: bjh.load_run(path))
    if run is not None:
        bjh.validate_recording(run.request, run.recording)


ENTRIES = [
    ("cadc", "times"),
    ("cadc", "values"),
    ("cadc", "neurons"),
    ("cadc", "batch"),
    ("spikes", "times"),
    ("spikes", "neurons"),
    ("spikes", "batch"),
]


@fuzz(
    60,
    entry=st.sampled_from(ENTRIES),
    index=st.integers(0, 10**6),
    value=odd_floats | st.integers(-5, 300),
)
def test_raw_recordings_from_clients(recorded, entry, index, value):
    _, request = recorded
    raw = irregular_recording(request, samples=3)
    kind, name = entry
    samples = getattr(raw, kind)
    key = next(iter(samples))
    array = np.array(getattr(samples[key], name), dtype=np.float64)
    array[index % array.size] = value
    dtype = getattr(samples[key], name).dtype
    if np.isfinite(value) and np.can_cast(np.min_scalar_type(value), dtype, "same_kind"):
        array = array.astype(dtype)
    changed = dataclasses.replace(samples[key], **{name: array})
    raw = dataclasses.replace(raw, **{kind: {**samples, key: changed}})
    checked = outcome(lambda: bjh.validate_recording(request, raw))
    if checked is not None:
        for samples in checked.cadc.values():
            assert np.all(np.isfinite(np.asarray(samples.times, float)))
            assert np.all(np.isfinite(np.asarray(samples.values, float)))


# --------------------------------------------------------------------------------------------
# CLI options
# --------------------------------------------------------------------------------------------

FLAGS = [
    "--epochs",
    "--pretrain-epochs",
    "--pretrain-noise",
    "--pretrain-noise-draws",
    "--random-chip-epochs",
    "--anchor-probability",
    "--chips-per-call",
    "--batch-size",
    "--lr",
    "--lr-decay",
    "--weight-noise",
    "--train-size",
    "--hidden",
    "--seed",
    "--transfer",
    "--checkpoint-every",
    "--backend",
    "--gradient",
]
option_text = st.sampled_from(["nan", "inf", "-1", "0", "1", "0.5", "1e400", "2", "x", "", "50"])


@fuzz(
    60,
    options=st.lists(
        st.tuples(st.sampled_from(FLAGS), option_text | st.text(max_size=4)), max_size=3
    ),
)
def test_cli_options(options):
    parser = argparse.ArgumentParser(prog="bss2jax train", exit_on_error=True)
    add_train_arguments(parser)
    argv = [part for flag, text in options for part in (flag, text)]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(argv)
    except SystemExit as exit_info:
        assert exit_info.code == 2 and "error:" in errors.getvalue()
        return
    configs = outcome(lambda: train_configs(args))
    for value in vars(args).values():
        assert not (isinstance(value, float) and not math.isfinite(value))
    if configs is not None:
        assert all(c is None or c.lr > 0 for c in configs)

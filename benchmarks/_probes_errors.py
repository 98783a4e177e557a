"""Probes of issue 13's obscure errors and other findings (`probe_campaign.py`)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _probe_kit import (
    CORRECT,
    NOMINAL,
    OBSCURE,
    PROBES,
    SGD,
    SILENT,
    SPIKES,
    TMP,
    Client,
    classify,
    fresh,
    layer,
    probe,
    quiet_cli,
    refused,
)

import bss2jax as bj
import bss2jax.hardware as bjh

# Obscure errors

for _shape in ((0, 1, 2), (5, 0, 2)):
    for _backend_name, _backend in (
        ("numeric", bj.Numeric()),
        ("chip model", NOMINAL),
        ("hardware", bj.Hardware(Client())),
    ):

        def empty_inputs(shape=_shape, backend=_backend):
            return refused(bj.run, layer(), jnp.zeros(shape), backend=backend)

        PROBES.append(
            ("obscure error", f"inputs of shape {_shape} ({_backend_name})", empty_inputs)
        )


for _dtype in (jnp.float16, jnp.bfloat16, jnp.int32, jnp.bool_):

    def low_precision(dtype=_dtype):
        low = bj.run(layer(), SPIKES.astype(dtype), backend=NOMINAL)
        full = bj.run(layer(), SPIKES, backend=NOMINAL)
        return CORRECT if np.array_equal(low[0].spikes, full[0].spikes) else SILENT

    PROBES.append(("obscure error", f"{jnp.dtype(_dtype).name} inputs (chip model)", low_precision))


@probe("obscure error")
def inputs_of_the_wrong_width():
    return refused(bj.run, layer(), jnp.zeros((5, 1, 3)))


@probe("obscure error")
def inputs_of_two_axes():
    return refused(bj.run, layer(), jnp.zeros((5, 2)))


def _damaged(name: str, damage: str) -> Path:
    folder = fresh(f"damaged-{name}-{damage}")
    path = folder / f"{name}.npz"
    if name == "chip":
        bj.ChipInstance.nominal().save(path)
    else:
        bj.save_checkpoint(path, ({"w": jnp.array(1.0)},))
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "junk": b"PK\x03\x04" * 50,
        "empty": b"",
        "text": b"hello",
    }
    path.write_bytes(damaged[damage])
    return path


def _names_file(path):
    def check(function, *args):
        try:
            function(*args)
        except BaseException as error:  # noqa: BLE001 - classified
            return classify(error) if path.name in str(error) else OBSCURE
        return SILENT

    return check


for _damage in ("truncate", "junk", "empty", "text"):

    def damaged_chip(damage=_damage):
        path = _damaged("chip", damage)
        return _names_file(path)(bj.ChipInstance.load, path)

    def damaged_checkpoint(damage=_damage):
        path = _damaged("checkpoint", damage)
        return _names_file(path)(bj.load_checkpoint, path, ({"w": jnp.array(0.0)},))

    PROBES.append(("obscure error", f"chip file: {_damage}", damaged_chip))
    PROBES.append(("obscure error", f"checkpoint: {_damage}", damaged_checkpoint))


@probe("obscure error")
def missing_chip_file():
    path = TMP / "no-such-chip.npz"
    return _names_file(path)(bj.ChipInstance.load, path)


@probe("obscure error")
def missing_checkpoint():
    path = TMP / "no-such-checkpoint.npz"
    return _names_file(path)(bj.load_checkpoint, path, ({"w": jnp.array(0.0)},))


def _recorded_run(metadata) -> Path:
    path = fresh("bad-run") / "run-000000.npz"
    np.savez(path, __metadata__=np.frombuffer(json.dumps(metadata).encode(), np.uint8))
    return path


@probe("obscure error")
def recorded_run_metadata_a_list():
    return refused(bjh.load_run, _recorded_run([1, 2]))


@probe("obscure error")
def recorded_run_populations_an_int():
    from bss2jax._hardware._files import FORMAT, VERSION

    metadata = {"format": FORMAT, "version": VERSION, "populations": 3, "projections": 1}
    return refused(bjh.load_run, _recorded_run(metadata))


@probe("obscure error")
def recorded_run_truncated():
    folder = fresh("recorded-truncated")
    bj.run(layer(), SPIKES, backend=bj.Hardware(Client(), record_to=folder))
    path = next(folder.glob("run-*.npz"))
    path.write_bytes(path.read_bytes()[:200])
    return _names_file(path)(bjh.load_run, path)


@probe("obscure error")
def replay_of_an_empty_folder():
    return refused(bj.Replay, fresh("empty-replay"))


@probe("obscure error")
def fit_output_is_a_file():
    (TMP / "a-file").write_text("")

    def loss(params, batch, *, key, backend):
        raise AssertionError("trained before checking the output folder")

    return refused(
        bj.fit,
        {"w": jnp.array(1.0)},
        loss,
        SGD,
        jnp.zeros((4, 1)),
        epochs=1,
        batch_size=1,
        key=jax.random.key(0),
        output=TMP / "a-file",
        progress=False,
    )


for _argv in (
    ["demo", "--epochs", "-1"],
    ["demo", "--dt", "inf"],
    ["demo", "--learning-rate", "nan"],
    ["train", "--epochs", "-3"],
    ["train", "--batch-size", "0"],
    ["train", "--hidden", "abc"],
    ["train", "--backend", "gpu"],
    ["train", "--no-such-option"],
    ["train", "--output", "/proc/forbidden/out"],
    ["train", "--compilation-cache", "/proc/forbidden/cache"],
):

    def cli_option(argv=_argv):
        return quiet_cli(
            [*argv, "--no-compilation-cache"] if "--compilation-cache" not in argv else argv
        )

    PROBES.append(("obscure error", "bss2jax " + " ".join(_argv), cli_option))


_CONSTRUCTORS = {
    'linear_saturating("55")': lambda: bj.linear_saturating("55"),
    "linear_saturating(0)": lambda: bj.linear_saturating(0.0),
    "linear_saturating(inf)": lambda: bj.linear_saturating(float("inf")),
    "Projection holding a LIF": lambda: bj.Projection(bj.INPUT, "a", bj.LIF(2)),
    "complex threshold": lambda: bj.LIF(2, threshold=1 + 2j),
    "string leak": lambda: bj.LIF(2, leak="high"),
    "potential_range of 3": lambda: bj.ChipConfig(potential_range=(0, 1, 2)),
    "Synapse weight of the wrong shape": lambda: bj.Synapse(2, 2, weight=jnp.ones((3, 3))),
    "Synapse of 0 inputs": lambda: bj.Synapse(0, 2, key=jax.random.key(0)),
    "LIF of -1 neurons": lambda: bj.LIF(-1),
    "ChipModel of a string": lambda: bj.ChipModel("chip"),
    "run on a string backend": lambda: bj.run(layer(), SPIKES, backend="chip"),
    "run of a non-network": lambda: bj.run("net", SPIKES),
    "Hardware with timeout -1": lambda: bj.Hardware(Client(), timeout=-1.0),
    "Hardware with retries 1.5": lambda: bj.Hardware(Client(), retries=1.5),
    "chip file into a folder blocked by a file": lambda: bj.ChipInstance.nominal().save(
        TMP / "a-file" / "c.npz"
    ),
    "chip file metadata not JSON": lambda: bj.ChipInstance.nominal().save(
        TMP / "m.npz", metadata={"x": object()}
    ),
    "ChipModel without a key on a noisy config": lambda: bj.run(
        layer(), SPIKES, backend=bj.ChipModel(bj.ChipInstance.nominal())
    ),
}
for _name, _make in _CONSTRUCTORS.items():

    def constructor(make=_make):
        (TMP / "a-file").write_text("")
        return refused(make)

    PROBES.append(("obscure error", _name, constructor))


# Other


@probe("other")
def atomic_files_get_the_umask_permissions():
    path = fresh("mode") / "chip.npz"
    bj.ChipInstance.nominal().save(path)
    mask = os.umask(0o022)
    os.umask(mask)
    return CORRECT if stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask else SILENT


@probe("other")
def jit_and_eager_runs_are_bit_identical():
    network = layer(weight=1.5)
    eager = bj.run(network, SPIKES)[0].membrane_cadc
    jitted = jax.jit(lambda n, x: bj.run(n, x)[0].membrane_cadc)(network, SPIKES)
    return CORRECT if np.array_equal(eager, jitted) else SILENT


@probe("other")
def replay_is_bit_for_bit():
    folder = fresh("replay")
    first = bj.run(layer(), SPIKES, backend=bj.Hardware(Client(), record_to=folder))
    again = bj.run(layer(), SPIKES, backend=bj.Replay(folder))
    return CORRECT if np.array_equal(first[0].membrane_cadc, again[0].membrane_cadc) else SILENT

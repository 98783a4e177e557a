"""Probe campaign (issue 13): every kind of finding of the reliability issue, reproduced in
a few lines through the public API, each outcome classified, one table printed.

    python benchmarks/probe_campaign.py            # hand-written and generated probes
    python benchmarks/probe_campaign.py --examples 0   # hand-written only

Outcomes: `clear error` (a bss2jax error class, a `TypeError`/`ValueError` naming the
argument in backticks, a run-time check's message under `jit`, argparse's exit 2),
`correct` (the documented result, warnings included), and the failures: `obscure error`
(any other exception), `silently wrong`, `data loss`, `concurrent calls`. The exit status
is 1 when any probe failed. `tests/test_probe_campaign.py` (slow) runs it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._cli import main as cli
from bss2jax._misc import traced_checks

logging.getLogger("jax._src.callback").setLevel(logging.CRITICAL)  # a failed check's log
ERROR, CORRECT = "clear error", "correct"
OBSCURE, SILENT, LOSS, CONCURRENT = "obscure error", "silently wrong", "data loss", "concurrent"
FAILURES = (OBSCURE, SILENT, LOSS, CONCURRENT)
KINDS = ("data loss", "concurrency", "silent wrong", "obscure error", "other", "generated")
PROBES: list[tuple[str, str, object]] = []
NAMED = re.compile(r"`[^`]+`[^\n]*must|must[^\n]*`[^`]+`")
BSS2JAX_ERRORS = tuple(
    getattr(bj, name)
    for name in dir(bj)
    if name.endswith("Error") and isinstance(getattr(bj, name), type)
)


def probe(kind: str):
    def register(function):
        PROBES.append((kind, function.__name__, function))
        return function

    return register


def classify(error: BaseException) -> str:
    """A clear error, or an obscure one (see the module docstring)."""
    if isinstance(error, SystemExit):
        return ERROR if error.code == 2 else OBSCURE
    if isinstance(error, BSS2JAX_ERRORS):
        return ERROR
    if type(error) in (TypeError, ValueError) and "`" in str(error):  # names the argument
        return ERROR
    return ERROR if NAMED.search(str(error)) else OBSCURE  # a run-time check under `jit`


def refused(function, *args, **kwargs) -> str:
    """`function(...)` must raise: a clear error, an obscure one, or silently wrong."""
    try:
        jax.block_until_ready(function(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - classified
        return classify(error)
    return SILENT


def warned(pattern: str, function, *args, **kwargs):
    """`(correct or silent, result)`: whether `function(...)` warned with `pattern`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = jax.block_until_ready(function(*args, **kwargs))
    hit = any(re.search(pattern, str(w.message)) for w in caught)
    return (CORRECT if hit else SILENT), result


def layer(scale=1.0, weight=0.5, **lif):
    synapse = bj.Synapse(
        2, 2, weight=jnp.full((2, 2), weight), transform=bj.linear_saturating(scale)
    )
    return bj.Sequential([synapse, bj.LIF(2, **lif)])


def with_weight(network, weight):
    return eqx.tree_at(lambda n: n.layers[0].weight, network, jnp.full((2, 2), weight))


SPIKES = jnp.zeros((5, 1, 2)).at[1, 0, 0].set(1.0)
NOMINAL = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())
TMP = Path(tempfile.mkdtemp(prefix="bss2jax-probes-"))


class Client(bjh.AbstractClient):
    """A minimal chip stand-in: constant CADC reads, no spikes; counts overlapping calls."""

    def __init__(self, hold: threading.Event | None = None, confirm_cancel=False, delay=0.0):
        self.hold, self.confirm_cancel, self.delay = hold, confirm_cancel, delay
        self.active = self.most_active = self.calls = 0
        self.lock = threading.Lock()

    def execute(self, request):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.hold is not None:
                self.hold.wait(10.0)
            time.sleep(self.delay)
            self.calls += 1
            return _constant_recording(request)
        finally:
            with self.lock:
                self.active -= 1

    def cancel(self):
        return self.confirm_cancel


def _constant_recording(request):
    cadc, spikes = {}, {}
    for p in request.populations:
        if p.record_cadc:
            shape = (request.batch_size, p.size, 3)
            times = np.broadcast_to(np.linspace(0, request.runtime * 0.9, 3), shape)
            b = np.broadcast_to(np.arange(shape[0])[:, None, None], shape)
            n = np.broadcast_to(np.arange(shape[1])[None, :, None], shape)
            cadc[p.key] = bjh.CADCSamples(
                times.ravel().copy(),
                np.full(times.size, 100.0),
                n.ravel().astype(np.int32),
                b.ravel().astype(np.int64),
            )
        if p.record_spikes:
            empty = np.zeros(0, np.int32)
            spikes[p.key] = bjh.SpikeEvents(np.zeros(0), empty, empty)
    return bjh.RawRecording(spikes=spikes, cadc=cadc, madc={})


def fresh(name: str) -> Path:
    path = TMP / name
    path.mkdir(parents=True, exist_ok=True)
    return path


SGD = optax.sgd(1.0)


def sqrt_loss(params, batch, *, key, backend):
    """sqrt(w): SGD(1) from w = 1 reaches w < 0 at step 3 (NaN)."""
    return jnp.sqrt(params["w"]) + 0.0 * jnp.sum(batch)


def fit_sqrt(output, **options):
    options = {"epochs": 1, "batch_size": 1, "progress": False, **options}
    data = jnp.zeros((4, 1))
    return bj.fit(
        {"w": jnp.array(1.0)}, sqrt_loss, SGD, data, key=jax.random.key(0), output=output, **options
    )


def strict_json(path: Path):
    def refuse(token):
        raise ValueError(token)

    return json.loads(path.read_text(), parse_constant=refuse)


def quiet_cli(argv) -> str:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return refused(cli, argv)


# Data loss


@probe("data loss")
def fit_stops_on_nan_and_keeps_the_checkpoint():
    folder = fresh("nan-fit")
    outcome = refused(fit_sqrt, folder, checkpoint_every=1)
    like = ({"w": jnp.array(0.0)}, SGD.init({"w": jnp.array(0.0)}))
    (params, _), _ = bj.load_checkpoint(folder / "checkpoint.npz", like)
    return outcome if np.isfinite(params["w"]) else LOSS


@probe("data loss")
def cli_train_lr_nan():
    return quiet_cli(["train", "--lr", "nan", "--no-compilation-cache"])


@probe("data loss")
def cli_train_lr_negative():
    return quiet_cli(["train", "--lr", "-1", "--no-compilation-cache"])


@probe("data loss")
def metrics_json_is_standard_json():
    folder = fresh("skip-fit")
    fit_sqrt(folder, on_nonfinite="skip", test=jnp.zeros((2, 1)))
    try:
        strict_json(folder / "metrics.json")
    except ValueError:
        return LOSS
    return CORRECT


@probe("data loss")
def record_to_a_file():
    (TMP / "a-file").write_text("")
    return refused(bj.Hardware, Client(), record_to=TMP / "a-file")


@probe("data loss")
def record_to_below_a_file():
    (TMP / "a-file").write_text("")
    return refused(bj.Hardware, Client(), record_to=TMP / "a-file" / "runs")


@probe("data loss")
def record_to_keeps_every_run():
    folder = fresh("recorded")
    bj.run(layer(), SPIKES, backend=bj.Hardware(Client(), record_to=folder))
    runs = sorted(folder.glob("run-*.npz"))
    return CORRECT if len(runs) == 1 and bjh.load_run(runs[0]) is not None else LOSS


@probe("data loss")
def rerun_rewrites_metrics_lost_by_a_kill():
    folder = fresh("killed")
    first = fit_sqrt(folder, on_nonfinite="skip")
    (folder / "metrics.json").unlink()
    fit_sqrt(folder, on_nonfinite="skip")
    if not (folder / "metrics.json").exists():
        return LOSS
    history = strict_json(folder / "metrics.json")["history"]
    return CORRECT if len(history) == len(first.history) else LOSS


@probe("data loss")
def failed_save_keeps_the_old_checkpoint():
    path = fresh("atomic") / "c.npz"
    bj.save_checkpoint(path, ({"w": jnp.array(2.0)},))
    outcome = refused(bj.save_checkpoint, path, ({"w": jnp.array(3.0)},), {"bad": object()})
    (params,), _ = bj.load_checkpoint(path, ({"w": jnp.array(0.0)},))
    return outcome if float(params["w"]) == 2.0 else LOSS


# Concurrency


@probe("concurrency")
def four_threads_one_client():
    client = Client(delay=0.02)
    backends = [bj.Hardware(client), bj.Hardware(client, timeout=5.0)]
    threads = [
        threading.Thread(target=bj.run, args=(layer(), SPIKES), kwargs={"backend": backends[i % 2]})
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    return CONCURRENT if client.most_active > 1 else (CORRECT if client.calls == 4 else SILENT)


@probe("concurrency")
def call_after_a_timeout():
    client = Client(hold=threading.Event())
    first = refused(bj.run, layer(), SPIKES, backend=bj.Hardware(client, timeout=0.05, retries=0))
    second = refused(bj.run, layer(), SPIKES, backend=bj.Hardware(client, timeout=1.0))
    client.hold.set()
    for _ in range(200):
        if client.active == 0:
            break
        time.sleep(0.01)
    if client.most_active > 1:
        return CONCURRENT
    return ERROR if first == second == ERROR else OBSCURE if OBSCURE in (first, second) else SILENT


@probe("concurrency")
def confirmed_cancel_frees_the_client():
    client = Client(hold=threading.Event(), confirm_cancel=True)
    first = refused(bj.run, layer(), SPIKES, backend=bj.Hardware(client, timeout=0.05, retries=0))
    client.hold.set()  # a client that confirms a cancel has stopped: wait as it would
    for _ in range(200):
        if client.active == 0:
            break
        time.sleep(0.01)
    client.hold = None
    bj.run(layer(), SPIKES, backend=bj.Hardware(client))
    return CONCURRENT if client.most_active > 1 else (CORRECT if first == ERROR else first)


# Silent wrong results

CLIPPED = r"4 entries of `weight of synapse 0` exceed ±63"


def _clipped_probe(backend, jit: bool):
    network = layer(40.0, 5.0)  # 40 * 5 = 200 on the chip: clipped to 63
    if jit:
        observe = jax.jit(
            lambda w: backend.observe(with_weight(network, w), SPIKES, dt=1e-6, key=None)
        )
        outcome, recording = warned(CLIPPED, observe, jnp.float32(5.0))
    else:
        outcome, recording = warned(CLIPPED, backend.observe, network, SPIKES, dt=1e-6, key=None)
    return outcome if int(recording.clipped_weights) == 4 else SILENT


@probe("silent wrong")
def chip_model_weights_beyond_6_bits():
    return _clipped_probe(NOMINAL, jit=False)


@probe("silent wrong")
def chip_model_weights_beyond_6_bits_under_jit():
    return _clipped_probe(NOMINAL, jit=True)


@probe("silent wrong")
def hardware_weights_beyond_6_bits():
    return _clipped_probe(bj.Hardware(Client()), jit=False)


@probe("silent wrong")
def hardware_weights_beyond_6_bits_under_jit():
    return _clipped_probe(bj.Hardware(Client()), jit=True)


@probe("silent wrong")
def weights_beyond_6_bits_counted_in_cache_mode():
    network = layer(40.0, 5.0)
    previous = traced_checks("nan")  # as the CLI's compilation cache sets
    try:
        observe = jax.jit(
            lambda w: NOMINAL.observe(with_weight(network, w), SPIKES, dt=1e-6, key=None)
        )
        count = int(observe(jnp.float32(5.0)).clipped_weights)
    finally:
        traced_checks(previous)
    return CORRECT if count == 4 else SILENT


@probe("silent wrong")
def euler_step_not_below_tau():
    return refused(bj.run, layer(tau_syn=5e-6), SPIKES, dt=1e-5)


@probe("silent wrong")
def euler_step_not_below_a_traced_tau():
    run = jax.jit(lambda tau: bj.run(layer(tau_syn=tau), SPIKES, dt=2e-6)[0].current)
    return refused(run, jnp.float32(1e-6))


for _dt in (float("inf"), float("nan"), 0.0, -1e-6, "1e-6", True):

    def dt_value(dt=_dt):
        return refused(bj.run, layer(), SPIKES, dt=dt)

    PROBES.append(("silent wrong", f"dt={_dt!r}", dt_value))


for _backend_name, _backend in (("numeric", bj.Numeric()), ("chip model", NOMINAL)):
    for _value in (float("nan"), float("inf"), 2.5, -1.0, 255.0):

        def inputs_value(value=_value, backend=_backend):
            return refused(bj.run, layer(), SPIKES.at[2, 0, 1].set(value), backend=backend)

        PROBES.append(("silent wrong", f"inputs {_value} ({_backend_name})", inputs_value))

    def complex_inputs(backend=_backend):
        return refused(bj.run, layer(), SPIKES.astype(jnp.complex64), backend=backend)

    PROBES.append(("silent wrong", f"complex inputs ({_backend_name})", complex_inputs))


@probe("silent wrong")
def traced_inputs_not_spikes():
    run = jax.jit(lambda x: bj.run(layer(), x)[0].spikes)
    return refused(run, SPIKES.at[2, 0, 1].set(2.5))


_NEURONS = {
    "leak NaN": (bj.LIF, dict(leak=float("nan"))),
    "threshold NaN": (bj.LIF, dict(threshold=float("nan"))),
    "threshold below reset": (bj.LIF, dict(threshold=0.0, reset=0.5)),
    "tau_mem NaN": (bj.LIF, dict(tau_mem=float("nan"))),
    "tau_mem negative": (bj.LIF, dict(tau_mem=-1e-5)),
    "tau_syn zero": (bj.LIF, dict(tau_syn=0.0)),
    "AdEx slope 0": (bj.AdEx, dict(exponential_slope=0.0)),
    "AdEx slope negative": (bj.AdEx, dict(exponential_slope=-1.0)),
    "i_synin_gm negative": (bj.LIF, dict(i_synin_gm=-5.0)),
    "chip capacitance NaN": (bj.LIF, dict(membrane_capacitance=bj.Mixed(1.0, float("nan")))),
    "refractory time negative": (bj.LIF, dict(refractory_time=-1e-6)),
    "leak beyond float32": (bj.LIF, dict(leak=1e300)),
}
for _name, (_kind, _options) in _NEURONS.items():

    def neuron_value(kind=_kind, options=_options):
        return refused(kind, 2, **options)

    PROBES.append(("silent wrong", f"neuron {_name}", neuron_value))


@probe("silent wrong")
def traced_tau_mem_negative():
    run = jax.jit(lambda tau: bj.run(layer(tau_mem=tau), SPIKES)[0].spikes)
    return refused(run, jnp.float32(-1e-5))


@probe("silent wrong")
def traced_threshold_below_reset():
    run = jax.jit(lambda threshold: bj.run(layer(threshold=threshold, reset=0.5), SPIKES)[0].spikes)
    return refused(run, jnp.float32(0.0))


_CONFIGS = {
    "weight_efficacy": float("inf"),
    "membrane_noise": float("inf"),
    "cadc_period": float("inf"),
    "potential_range": (0.0, float("inf")),
    "madc_offset": float("nan"),
    "substeps": 0,
    "saturation": -1.0,
    "cadc_time_offset": float("inf"),
}
for _field, _value in _CONFIGS.items():

    def config_value(field=_field, value=_value):
        return refused(bj.ChipConfig, **{field: value})

    PROBES.append(("silent wrong", f"ChipConfig({_field}={_value!r})", config_value))


def chip_with(**fields):
    return bj.ChipInstance(**{**bj.ChipInstance.nominal().__dict__, **fields})


@probe("silent wrong")
def chip_instance_nan():
    return refused(chip_with, leak=jnp.full(512, jnp.nan))


@probe("silent wrong")
def chip_instance_negative_gain():
    return refused(chip_with, synaptic_gain_exc=jnp.full(512, -1.0))


@probe("silent wrong")
def chip_instance_traced_negative_gain():
    draw = jax.jit(lambda key: chip_with(cadc_gain=1.0 + 2.0 * jax.random.normal(key, (512,))))
    return refused(draw, jax.random.key(0))


@probe("silent wrong")
def chip_instance_random_under_vmap_with_a_wide_gain_spread():
    profile = bj.MismatchProfile(cadc_gain=2.0)  # N(1, 2): negative gains
    return refused(
        jax.vmap(lambda k: bj.ChipInstance.random(k, profile)),
        jax.random.split(jax.random.key(0), 2),
    )


@probe("silent wrong")
def chip_instance_traced_nan():
    return refused(jax.jit(lambda leak: chip_with(leak=leak).leak), jnp.full(512, jnp.nan))


for _value in (float("nan"), float("inf"), -1.0):

    def profile_value(value=_value):
        return refused(bj.MismatchProfile, leak=value)

    PROBES.append(("silent wrong", f"MismatchProfile(leak={_value})", profile_value))


@probe("silent wrong")
def chip_file_value_beyond_float32():
    path = fresh("chip-1e300") / "chip.npz"
    bj.ChipInstance.nominal().save(path)
    with np.load(path) as archive:
        fields = dict(archive)
    fields["leak"] = np.full(fields["leak"].shape, 1e300, np.float64)
    np.savez(path, **fields)
    return refused(bj.ChipInstance.load, path)


@probe("silent wrong")
def checkpoint_with_nan_leaves():
    path = fresh("nan-checkpoint") / "c.npz"
    bj.save_checkpoint(path, ({"w": jnp.array(jnp.nan)},))
    return refused(bj.load_checkpoint, path, ({"w": jnp.array(0.0)},))


@probe("silent wrong")
def checkpoint_with_absurd_counters():
    folder = fresh("absurd")
    result = fit_sqrt(folder, on_nonfinite="skip")
    path = folder / "checkpoint.npz"
    _, meta = bj.load_checkpoint(path, ({"w": jnp.array(0.0)}, result.opt_state))
    bj.save_checkpoint(path, ({"w": jnp.array(0.5)}, result.opt_state), {**meta, "batch": 10**6})
    return refused(fit_sqrt, folder, on_nonfinite="skip")


@probe("silent wrong")
def chip_capacitance_beyond_63():
    network = layer(membrane_capacitance=bj.Mixed(1.0, 100.0))
    return refused(bj.run, network, SPIKES, backend=NOMINAL)


@probe("silent wrong")
def traced_chip_capacitance_beyond_63():
    run = jax.jit(
        lambda c: (
            bj.run(layer(membrane_capacitance=bj.Mixed(1.0, c)), SPIKES, backend=NOMINAL)[0].spikes
        )
    )
    return refused(run, jnp.float32(100.0))


@probe("silent wrong")
def traced_leak_outside_calix_range():
    run = jax.jit(
        lambda leak: bj.run(layer(leak=bj.Mixed(0.0, leak)), SPIKES, backend=NOMINAL)[0].spikes
    )
    return warned(r"`leak` on the chip is 10.0 CADC LSB, outside calix", run, jnp.float32(10.0))[0]


@probe("silent wrong")
def leak_outside_calix_range():
    network = layer(leak=bj.Mixed(0.0, 10.0))
    return warned(
        r"`leak` on the chip is 10.0 CADC LSB, outside calix",
        bj.run,
        network,
        SPIKES,
        backend=NOMINAL,
    )[0]


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


# Generated probes (Hypothesis): each case must end in a clear error or a correct result


def generated(examples: int) -> list[tuple[str, str, str]]:
    """Run the generated probes; `(kind, name, outcome)` per case."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    results: list[tuple[str, str, str]] = []
    options = dict(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    floats = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1e-6, 3.5e38, float("nan"), float("inf")]),
    )

    def record(name, function):
        try:
            outcome = function()
        except BaseException as error:  # noqa: BLE001 - classified
            outcome = classify(error)
        results.append(("generated", name, outcome))

    def finite_run(network, inputs, **options):
        out = bj.run(network, inputs, **options)[0]
        values = [
            np.asarray(v) for v in (out.membrane_cadc, out.current, out.spikes) if v is not None
        ]
        return CORRECT if all(np.isfinite(v).all() for v in values) else SILENT

    @settings(**options)
    @given(
        st.sampled_from(["leak", "reset", "threshold", "tau_mem", "tau_syn", "refractory_time"]),
        floats,
    )
    def neuron(name, value):
        record(f"LIF({name}={value!r})", lambda: finite_run(layer(**{name: value}), SPIKES))

    @settings(**options)
    @given(st.lists(st.one_of(st.sampled_from([0.0, 1.0]), floats), min_size=10, max_size=10))
    def inputs(values):
        x = jnp.asarray(np.asarray(values, np.float32).reshape(5, 1, 2))
        record("inputs", lambda: finite_run(layer(), x))

    @settings(**options)
    @given(floats)
    def dt(value):
        record(f"dt={value!r}", lambda: finite_run(layer(integrator="exact"), SPIKES, dt=value))

    fields = [
        f for f in bj.ChipConfig.__dataclass_fields__ if f not in ("cadc_memory", "potential_range")
    ]

    @settings(**options)
    @given(st.sampled_from(fields), floats)
    def config(field, value):
        def check():
            bj.ChipConfig(**{field: value})
            return CORRECT if np.isfinite(value) else SILENT

        record(f"ChipConfig({field}={value!r})", check)

    @settings(**options)
    @given(st.sampled_from(list(bj.ChipInstance.nominal().__dict__)), floats)
    def chip(field, value):
        def check():
            nominal = bj.ChipInstance.nominal()
            instance = chip_with(**{field: jnp.full_like(getattr(nominal, field), value)})
            array = np.asarray(getattr(instance, field))
            gain = "gain" in field or field.startswith("tau")
            return (
                CORRECT if np.isfinite(array).all() and (not gain or (array > 0).all()) else SILENT
            )

        record(f"ChipInstance({field}={value!r})", check)

    @settings(**options)
    @given(st.floats(0.5, 100.0), st.floats(-5.0, 5.0))
    def weights(scale, weight):
        def check():
            network = layer(scale, weight)
            expected = 4 * int(abs(scale * weight) > 63.5)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                recording = NOMINAL.observe(network, SPIKES, dt=1e-6, key=None)
            warned_ = any("exceed ±63" in str(w.message) for w in caught)
            ok = int(recording.clipped_weights) == expected and warned_ == bool(expected)
            return CORRECT if ok else SILENT

        record(f"chip weight {scale:g} x {weight:g}", check)

    for case in (neuron, inputs, dt, config, chip, weights):
        case()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, default=40, help="generated cases per strategy (6 strategies)"
    )
    parser.add_argument("--verbose", action="store_true", help="print every probe's outcome")
    args = parser.parse_args(argv)
    results = []
    for kind, name, function in PROBES:
        try:
            outcome = function()
        except BaseException as error:  # noqa: BLE001 - classified
            outcome = classify(error)
            if outcome == OBSCURE:
                traceback.print_exc()
        results.append((kind, name, outcome))
    if args.examples:
        results += generated(args.examples)
    report(results, verbose=args.verbose)
    return 1 if any(outcome in FAILURES for _, _, outcome in results) else 0


def report(results, *, verbose: bool) -> None:
    outcomes = (ERROR, CORRECT, *FAILURES)
    counts = collections.Counter((kind, outcome) for kind, _, outcome in results)
    print(f"bss2jax {bj.__version__}, JAX {jax.__version__}, {len(results)} probes")
    print(f"{'kind':<15}" + "".join(f"{o:>16}" for o in outcomes) + f"{'total':>8}")
    for kind in KINDS:
        row = [counts[kind, o] for o in outcomes]
        print(f"{kind:<15}" + "".join(f"{n:>16}" for n in row) + f"{sum(row):>8}")
    totals = [sum(counts[k, o] for k in KINDS) for o in outcomes]
    print(f"{'all':<15}" + "".join(f"{n:>16}" for n in totals) + f"{sum(totals):>8}")
    for kind, name, outcome in results:
        if verbose or outcome in FAILURES:
            print(f"  {outcome:<16} {kind:<15} {name}")


if __name__ == "__main__":
    sys.exit(main())

"""Probes of issue 13's data loss, concurrency and silent wrong results (`probe_campaign.py`)."""

from __future__ import annotations

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from _probe_kit import (
    CONCURRENT,
    CORRECT,
    ERROR,
    LOSS,
    NOMINAL,
    OBSCURE,
    PROBES,
    SGD,
    SILENT,
    SPIKES,
    TMP,
    Client,
    fit_sqrt,
    fresh,
    layer,
    probe,
    quiet_cli,
    refused,
    strict_json,
    warned,
    with_weight,
)

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._misc import traced_checks

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

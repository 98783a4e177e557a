"""Reliability: no lost data, no concurrent client calls, no silent wrong result, no obscure
error (issue 13). One regression test per finding; `test_fuzz.py` generates the rest."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hardware_clients import FakeClient

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._cli import main
from bss2jax._misc import traced_checks, write_json

# Data loss

SGD = optax.sgd(1.0)  # one object: the compiled step is cached per optimiser


def _sqrt_loss(params, batch, *, key, backend):
    """sqrt(w): with SGD(1) from w = 1 the third step sees w < 0 and gives NaN."""
    return jnp.sqrt(params["w"]) + 0.0 * jnp.sum(batch)


def _fit_sqrt(output, **options):
    options = {"epochs": 1, "batch_size": 1, "progress": False, **options}
    return bj.fit(
        {"w": jnp.array(1.0)},
        _sqrt_loss,
        SGD,
        jnp.zeros((4, 1)),
        key=jax.random.key(0),
        output=output,
        **options,
    )


def _strict_json(path):
    def refuse(token):
        raise AssertionError(f"{path} holds the non-standard token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_fit_stops_on_a_nonfinite_step_and_keeps_the_good_checkpoint(tmp_path):
    with pytest.raises(bj.NonFiniteError, match=r"training step 2 \(epoch 1, batch 2\)"):
        _fit_sqrt(tmp_path, checkpoint_every=1)
    like = ({"w": jnp.array(0.0)}, SGD.init({"w": jnp.array(0.0)}))
    (params, _), meta = bj.load_checkpoint(tmp_path / "checkpoint.npz", like)
    assert meta["step"] == 2 and np.isfinite(params["w"]) and float(params["w"]) < 0


def test_fit_skips_nonfinite_steps_when_asked_and_writes_standard_json(tmp_path):
    test = jnp.zeros((2, 1))
    result = _fit_sqrt(tmp_path, on_nonfinite="skip", test=test)
    record = result.history[-1]
    assert record["skipped_steps"] == 2 and np.isfinite(float(result.network["w"]))
    assert np.isnan(record["test_loss"])  # sqrt of the negative w reached after 2 steps
    metrics = _strict_json(tmp_path / "metrics.json")
    assert metrics["history"][-1]["test_loss"] is None


def test_fit_rejects_an_unknown_nonfinite_policy(tmp_path):
    with pytest.raises(ValueError, match="`on_nonfinite` must be 'raise' or 'skip'; got 'warn'"):
        _fit_sqrt(None, on_nonfinite="warn")


def test_write_json_writes_null_for_nonfinite_floats(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [np.float32("inf"), 1.5]})
    assert _strict_json(tmp_path / "a.json") == {"x": None, "y": [None, 1.5]}


def test_atomic_files_get_the_umask_permissions(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o666 & ~mask


def test_fit_checks_the_output_folder_before_training(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")

    def loss(params, batch, *, key, backend):
        raise AssertionError("trained before checking the output folder")

    with pytest.raises(bj.OutputFolderError, match="`output` must be a folder .* got '.*file"):
        bj.fit(
            {"w": jnp.array(1.0)},
            loss,
            SGD,
            jnp.zeros((4, 1)),
            epochs=1,
            batch_size=1,
            key=jax.random.key(0),
            output=blocked,
            progress=False,
        )


class _NoClient:
    def execute(self, request):
        raise AssertionError("not called")


@pytest.mark.parametrize("where", ["file", "file/below"])
def test_hardware_checks_record_to_at_construction(tmp_path, where):
    (tmp_path / "file").write_text("")
    with pytest.raises(bj.OutputFolderError, match="`record_to` must be a folder"):
        bj.Hardware(_NoClient(), record_to=tmp_path / where)


def test_a_rerun_rewrites_metrics_lost_by_a_kill(tmp_path):
    """A kill between the last checkpoint and `metrics.json` (simulated by deleting it)."""
    first = _fit_sqrt(tmp_path, on_nonfinite="skip")
    (tmp_path / "metrics.json").unlink()
    again = _fit_sqrt(tmp_path, on_nonfinite="skip")
    assert again.resumed_step == 4
    expected = json.loads(json.dumps(first.history).replace("NaN", "null"))
    assert _strict_json(tmp_path / "metrics.json")["history"] == expected


def test_fit_refuses_a_checkpoint_with_absurd_counters(tmp_path):
    result = _fit_sqrt(tmp_path, on_nonfinite="skip")
    path = tmp_path / "checkpoint.npz"
    _, meta = bj.load_checkpoint(path, ({"w": jnp.array(0.0)}, result.opt_state))
    bj.save_checkpoint(path, ({"w": jnp.array(0.5)}, result.opt_state), {**meta, "batch": 10**6})
    with pytest.raises(bj.CheckpointError, match="checkpoint.npz: its counters .* batch 1000000"):
        _fit_sqrt(tmp_path, on_nonfinite="skip")


@pytest.mark.parametrize("argv", [["--epochs", "-1"], ["--dt", "inf"], ["--learning-rate", "nan"]])
def test_demo_option_errors_are_argparse_errors(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *argv])
    assert exit_info.value.code == 2
    assert f"error: argument {argv[0]}: must be" in capsys.readouterr().err


# Concurrency: one call at a time per client


class _CountingClient(FakeClient):
    """Records how many `execute` calls run at once; `hold` makes a call wait on an event."""

    def __init__(self, *, confirm_cancel=False, **kwargs):
        super().__init__(samples=3, **kwargs)
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()
        self.hold = None
        self.confirm_cancel = confirm_cancel

    def execute(self, request):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.hold is not None:
                self.hold.wait(10.0)
            return super().execute(request)
        finally:
            with self.lock:
                self.active -= 1

    def cancel(self):
        super().cancel()
        return self.confirm_cancel


def test_calls_to_one_client_never_overlap():
    """Two backends on one client, four threads: `execute` never runs twice at once."""
    client = _CountingClient(delay=0.02)
    backends = [bj.Hardware(client, timeout=None), bj.Hardware(client, timeout=5.0)]
    net = _one_layer(40.0)
    errors = []

    def work(backend):
        try:
            bj.run(net, SPIKES, backend=backend, dt=1e-6)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(backends[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert not errors and len(client.requests) == 4 and client.most_active == 1


def test_a_timed_out_client_is_unusable_until_its_call_returns():
    client = _CountingClient()
    client.hold = threading.Event()
    backend = bj.Hardware(client, timeout=0.05, retries=0)
    net = _one_layer(40.0)
    with pytest.raises(bj.HardwareTimeoutError, match="takes no new call until"):
        bj.run(net, SPIKES, backend=backend, dt=1e-6)
    with pytest.raises(bj.ClientBusyError, match="still running a call that timed out"):
        bj.run(net, SPIKES, backend=bj.Hardware(client, timeout=1.0), dt=1e-6)
    assert len(client.requests) == 0 and client.active == 1
    client.hold.set()  # the hung call returns
    for _ in range(100):
        if client.active == 0:
            break
        time.sleep(0.01)
    client.hold = None
    bj.run(net, SPIKES, backend=backend, dt=1e-6)
    assert client.most_active == 1


def test_a_confirmed_cancel_frees_the_client():
    client = _CountingClient(confirm_cancel=True)
    client.hold = threading.Event()
    backend = bj.Hardware(client, timeout=0.05, retries=0)
    net = _one_layer(40.0)
    with pytest.raises(bj.HardwareTimeoutError, match="cancel\\(\\) confirmed"):
        bj.run(net, SPIKES, backend=backend, dt=1e-6)
    client.hold.set()
    client.hold = None
    bj.run(net, SPIKES, backend=backend, dt=1e-6)


def test_the_chip_model_client_confirms_a_cancel_and_serves_the_next_call():
    # The first call hangs in the client's simulated latency and times out; `cancel()`
    # kills the worker and confirms, so the next call runs (after the hung one let go of
    # the client's lock) on a new worker: one call at a time, no ClientBusyError.
    net = _one_layer(40.0)
    with bj.ChipModelClient(seed=3, latency=1.0) as client:
        with pytest.raises(bj.HardwareTimeoutError, match="cancel\\(\\) confirmed"):
            bj.run(net, SPIKES, backend=bj.Hardware(client, timeout=0.2, retries=0), dt=1e-6)
        client.latency = 0.0
        out = bj.run(net, SPIKES, backend=bj.Hardware(client, retries=0), dt=1e-6)
        assert client.calls == 1 and client.starts == 2
    assert out[0].spikes.shape == (SPIKES.shape[0], SPIKES.shape[1], 2)


# Silent wrong results


def _one_layer(scale=1.0, weight=0.5, **lif):
    return bj.Sequential(
        [
            bj.Synapse(
                2, 2, weight=jnp.full((2, 2), weight), transform=bj.linear_saturating(scale)
            ),
            bj.LIF(2, **lif),
        ]
    )


SPIKES = jnp.zeros((5, 1, 2)).at[1, 0, 0].set(1.0)
NOMINAL = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())


def test_chip_model_warns_for_weights_beyond_six_bits():
    with pytest.warns(
        UserWarning,
        match=r"4 entries of `weight of synapse 0` exceed ±63 .*"
        r"scale 40.0 \(largest 200\)",
    ):
        bj.run(_one_layer(40.0, 5.0), SPIKES, backend=NOMINAL)


def test_hardware_warns_for_weights_beyond_six_bits():
    backend = bj.Hardware(FakeClient(samples=3))
    with pytest.warns(UserWarning, match="exceed ±63 after scaling by the transform's scale"):
        bj.run(_one_layer(40.0, 5.0), SPIKES, backend=backend)


def test_explicit_euler_refuses_a_step_not_below_tau():
    with pytest.raises(ValueError, match=r"`tau_syn` must exceed `dt` = 1e-05 s .* got 5e-06"):
        bj.run(_one_layer(tau_syn=5e-6), SPIKES, dt=1e-5)
    bj.run(_one_layer(tau_syn=5e-6, integrator="exact"), SPIKES, dt=1e-5)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2.5, -1.0])
@pytest.mark.parametrize("backend", [bj.Numeric(), NOMINAL], ids=["numeric", "chip"])
def test_inputs_must_be_spikes(backend, value):
    x = SPIKES.at[2, 0, 1].set(value)
    with pytest.raises(ValueError, match="`inputs` must hold spikes as 0/1; got 1 other"):
        bj.run(_one_layer(), x, backend=backend)


def test_traced_inputs_that_are_not_spikes_fail_at_run_time():
    run = jax.jit(lambda x: bj.run(_one_layer(), x)[0].spikes)
    run(SPIKES)
    with pytest.raises(Exception, match="`inputs` must hold spikes as 0/1"):
        jax.block_until_ready(run(SPIKES.at[2, 0, 1].set(2.5)))


def test_complex_inputs_are_refused():
    with pytest.raises(TypeError, match="`inputs` must be real spikes as 0/1; got dtype complex"):
        bj.run(_one_layer(), SPIKES.astype(jnp.complex64))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(leak=float("nan")), "`leak` must not be NaN"),
        (dict(threshold=float("nan")), "`threshold` must not be NaN"),
        (dict(threshold=0.0, reset=0.5), r"`threshold` must not lie below `reset` \(0.5\)"),
        (dict(tau_mem=float("nan")), "`tau_mem` must not be NaN"),
        (
            dict(membrane_capacitance=bj.Mixed(1.0, float("nan"))),
            "`membrane_capacitance` must not be NaN",
        ),
        (dict(threshold=1 + 2j), "`threshold` must be real"),
    ],
)
def test_neuron_parameters_are_validated(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bj.LIF(2, **options)


def test_adex_slope_and_synaptic_bias_are_validated():
    with pytest.raises(ValueError, match="`exponential_slope` must be positive"):
        bj.AdEx(2, exponential_slope=0.0)
    with pytest.raises(
        ValueError, match="`i_synin_gm` must be a non-negative finite number; got -5"
    ):
        bj.LIF(2, i_synin_gm=-5.0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("weight_efficacy", float("inf")),
        ("membrane_noise", float("inf")),
        ("cadc_period", float("inf")),
        ("potential_range", (0.0, float("inf"))),
        ("madc_offset", float("nan")),  # missed while the fuzz suite listed fields by hand
    ],
)
def test_chip_config_refuses_infinities(field, value):
    with pytest.raises(ValueError, match=f"`{field}` must be"):
        bj.ChipConfig(**{field: value})


@pytest.mark.parametrize("fill, message", [(np.nan, "must be finite"), (-1.0, "must be positive")])
def test_chip_instance_refuses_nan_and_negative_gains(fill, message):
    fields = dict(bj.ChipInstance.nominal().__dict__)
    fields["synaptic_gain_exc"] = jnp.full_like(fields["synaptic_gain_exc"], fill)
    with pytest.raises(bj.ChipInstanceError, match=f"synaptic_gain_exc` .*{message}"):
        bj.ChipInstance(**fields)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_mismatch_profile_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match="`MismatchProfile.leak` must be a non-negative float"):
        bj.MismatchProfile(leak=value)


def test_a_chip_file_value_beyond_float32_is_refused(tmp_path):
    path = tmp_path / "chip.npz"
    bj.ChipInstance.nominal().save(path)
    with np.load(path) as archive:
        fields = dict(archive)
    fields["leak"] = np.full(fields["leak"].shape, 1e300, np.float64)
    np.savez(path, **fields)
    with pytest.raises(bj.ChipInstanceError, match="'leak' has NaN or inf .*float32"):
        bj.ChipInstance.load(path)


def test_a_checkpoint_with_nan_leaves_is_refused(tmp_path):
    like = ({"w": jnp.array(0.0)}, SGD.init({"w": jnp.array(0.0)}))
    bj.save_checkpoint(tmp_path / "c.npz", ({"w": jnp.array(jnp.nan)}, like[1]))
    with pytest.raises(bj.CheckpointError, match=r"c.npz: array 0 .* holds NaN"):
        bj.load_checkpoint(tmp_path / "c.npz", like)


# Obscure errors


@pytest.mark.parametrize("shape", [(0, 1, 2), (5, 0, 2)])
@pytest.mark.parametrize(
    "backend", [NOMINAL, bj.Hardware(FakeClient(samples=3))], ids=["chip", "hardware"]
)
def test_empty_time_or_batch_is_a_named_error(backend, shape):
    with pytest.raises(ValueError, match=r"at least one time step and one sample; got shape"):
        bj.run(_one_layer(), jnp.zeros(shape), backend=backend)


def test_float16_inputs_run_on_the_chip_model():
    low = bj.run(_one_layer(), SPIKES.astype(jnp.float16), backend=NOMINAL)
    full = bj.run(_one_layer(), SPIKES, backend=NOMINAL)
    assert np.array_equal(low[0].spikes, full[0].spikes)


@pytest.mark.parametrize("damage", ["truncate", "junk"])
def test_damaged_chip_files_and_checkpoints_name_the_file(tmp_path, damage):
    chip, checkpoint = tmp_path / "chip.npz", tmp_path / "checkpoint.npz"
    bj.ChipInstance.nominal().save(chip)
    like = ({"w": jnp.array(1.0)},)
    bj.save_checkpoint(checkpoint, like)
    for path in (chip, checkpoint):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PK\x03\x04" * 50)
    with pytest.raises(bj.ChipInstanceError, match="chip.npz"):
        bj.ChipInstance.load(chip)
    with pytest.raises(bj.CheckpointError, match="checkpoint.npz"):
        bj.load_checkpoint(checkpoint, like)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ([1, 2], "metadata must be a JSON object; got list"),
        ("populations", "malformed metadata|missing entry"),
    ],
)
def test_recorded_run_metadata_of_the_wrong_type(tmp_path, metadata, message):
    from bss2jax._hardware._files import FORMAT, VERSION

    if metadata == "populations":
        metadata = {"format": FORMAT, "version": VERSION, "populations": 3, "projections": 1}
    path = tmp_path / "run-000000.npz"
    np.savez(path, __metadata__=np.frombuffer(json.dumps(metadata).encode(), np.uint8))
    with pytest.raises(bj.RecordingFileError, match=message):
        bjh.load_run(path)


def test_linear_saturating_names_its_argument():
    with pytest.raises(ValueError, match="`scale` must be a positive finite number.*got '55'"):
        bj.linear_saturating("55")


def test_projection_must_hold_a_synapse():
    with pytest.raises(TypeError, match="`Projection.synapse` must be a bj.Synapse; got LIF"):
        bj.Projection(bj.INPUT, "a", bj.LIF(2))


def test_potential_range_must_be_a_pair():
    with pytest.raises(ValueError, match=r"`potential_range` must be a pair .* got \(0, 1, 2\)"):
        bj.ChipConfig(potential_range=(0, 1, 2))


def test_saving_a_chip_file_into_a_missing_or_blocked_folder(tmp_path):
    bj.ChipInstance.nominal().save(tmp_path / "new" / "chip.npz")  # the folder is created
    assert bj.ChipInstance.load(tmp_path / "new" / "chip.npz") is not None
    (tmp_path / "file").write_text("")
    with pytest.raises(bj.OutputFolderError, match="'chip.npz'.* got '.*file'"):
        bj.ChipInstance.nominal().save(tmp_path / "file" / "chip.npz")


def test_traced_neuron_parameters_are_checked_at_run_time():
    spikes = jax.jit(lambda tau: bj.run(_one_layer(tau_mem=tau), SPIKES)[0].spikes)
    assert spikes(jnp.float32(1e-5)).shape == (5, 1, 2)
    for tau in (-1e-5, jnp.nan):
        with pytest.raises(Exception, match="`tau_mem` must be positive"):
            jax.block_until_ready(spikes(jnp.float32(tau)))


# Under jit: traced values are checked at run time (`_misc.error_if` / `warn_if`)


def _with_weight(network, weight):
    return eqx.tree_at(lambda n: n.layers[0].weight, network, jnp.full((2, 2), weight))


def _observe_clipped(backend):
    network = _one_layer(40.0, 5.0)
    return jax.jit(lambda w: backend.observe(_with_weight(network, w), SPIKES, dt=1e-6, key=None))


@pytest.mark.parametrize(
    "backend", [NOMINAL, bj.Hardware(FakeClient(samples=3))], ids=["chip", "hardware"]
)
def test_traced_weights_beyond_six_bits_are_counted_and_warned(backend):
    observe = _observe_clipped(backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in range: no warning
        assert int(observe(jnp.float32(1.5)).clipped_weights) == 0  # 40 * 1.5 = 60
    with pytest.warns(UserWarning, match=r"4 entries of `weight of synapse 0` exceed ±63 .*"):
        recording = observe(jnp.float32(5.0))  # 40 * 5 = 200 -> 63
    assert int(recording.clipped_weights) == 4


def test_clipped_weights_counted_without_a_callback_in_cache_mode():
    previous = traced_checks("nan")
    try:
        observe = _observe_clipped(NOMINAL)
        lowered = jax.jit(observe).lower(jnp.float32(5.0)).as_text()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert int(observe(jnp.float32(5.0)).clipped_weights) == 4
    finally:
        traced_checks(previous)
    assert "callback" not in lowered  # JAX's persistent cache can store the program


def test_eager_recordings_count_clipped_weights():
    with pytest.warns(UserWarning, match="exceed ±63"):
        recording = NOMINAL.observe(_one_layer(40.0, 5.0), SPIKES, dt=1e-6, key=None)
    assert int(recording.clipped_weights) == 4
    fine = NOMINAL.observe(_one_layer(40.0, 1.0), SPIKES, dt=1e-6, key=None)
    assert int(fine.clipped_weights) == 0


def _chip_with(**fields):
    return bj.ChipInstance(**{**bj.ChipInstance.nominal().__dict__, **fields})


def test_traced_chip_instances_are_checked_at_run_time():
    def draw(key, spread):  # as ChipInstance.random draws the CADC gain, 1 + s N(0, 1)
        return _chip_with(cadc_gain=1.0 + spread * jax.random.normal(key, (512,)))

    draw = jax.jit(draw)
    assert bool(jnp.all(draw(jax.random.key(0), 0.01).cadc_gain > 0))
    with pytest.raises(Exception, match="`ChipInstance.cadc_gain` holds factors and must be"):
        jax.block_until_ready(draw(jax.random.key(0), 2.0))  # 1 + 2 N(0, 1) < 0 somewhere


def test_traced_chip_instance_nan_is_checked_at_run_time():
    make = jax.jit(lambda leak: _chip_with(leak=leak))
    make(jnp.zeros(512))
    with pytest.raises(Exception, match="`ChipInstance.leak` must be finite"):
        jax.block_until_ready(make(jnp.full(512, jnp.nan)).leak)


def test_traced_capacitance_is_checked_at_run_time():
    spikes = jax.jit(
        lambda c: (
            bj.run(_one_layer(membrane_capacitance=bj.Mixed(1.0, c)), SPIKES, backend=NOMINAL)[
                0
            ].spikes
        )
    )
    assert spikes(jnp.float32(40.0)).shape == (5, 1, 2)
    with pytest.raises(
        Exception, match=r"`membrane_capacitance` on the chip must lie in \[1, 63\]"
    ):
        jax.block_until_ready(spikes(jnp.float32(100.0)))


def test_traced_calibration_targets_outside_calix_warn_at_run_time():
    spikes = jax.jit(
        lambda leak: bj.run(_one_layer(leak=bj.Mixed(0.0, leak)), SPIKES, backend=NOMINAL)[0].spikes
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spikes(jnp.float32(80.0))
    with pytest.warns(UserWarning, match=r"`leak` on the chip is 10.0 CADC LSB, outside calix"):
        jax.block_until_ready(spikes(jnp.float32(10.0)))


# Found by benchmarks/probe_campaign.py


def test_explicit_euler_refuses_a_traced_tau_not_below_dt():
    current = jax.jit(lambda tau: bj.run(_one_layer(tau_syn=tau), SPIKES, dt=2e-6)[0].current)
    assert np.isfinite(current(jnp.float32(5e-6))).all()
    with pytest.raises(Exception, match=r"`tau_syn` must exceed `dt` = 2e-06 s with integrator"):
        jax.block_until_ready(current(jnp.float32(1e-6)))


@pytest.mark.parametrize("options", [dict(threshold=0.0, reset=0.5), dict(exponential_slope=0.0)])
def test_traced_threshold_below_reset_and_adex_slope_fail_at_run_time(options):
    name, value = next((k, v) for k, v in options.items() if k != "reset")
    rest = {k: v for k, v in options.items() if k != name}

    def spikes(v):
        neuron = bj.AdEx(2, **{name: v}, **rest)
        network = bj.Sequential([bj.Synapse(2, 2, weight=jnp.full((2, 2), 0.5)), neuron])
        return bj.run(network, SPIKES)[0].spikes

    with pytest.raises(Exception, match=f"`{name}` must (not lie below `reset`|be positive)"):
        jax.block_until_ready(jax.jit(spikes)(jnp.float32(value)))


@pytest.mark.parametrize("name", ["leak", "tau_mem", "tau_syn", "reset"])
def test_infinite_neuron_parameters_are_refused(name):
    with pytest.raises(ValueError, match=f"`{name}` must be finite; got inf"):
        bj.LIF(2, **{name: float("inf")})
    with pytest.raises(ValueError, match="`exponential_slope` must be finite"):
        bj.AdEx(2, exponential_slope=float("inf"))


def test_a_threshold_of_plus_infinity_never_fires():
    out = bj.run(_one_layer(weight=5.0, threshold=float("inf")), SPIKES)[0]
    assert np.isfinite(out.membrane_cadc).all() and not np.asarray(out.spikes).any()


def test_traced_infinite_tau_fails_at_run_time():
    spikes = jax.jit(lambda tau: bj.run(_one_layer(tau_mem=tau), SPIKES)[0].spikes)
    with pytest.raises(Exception, match="`tau_mem` must be positive and finite"):
        jax.block_until_ready(spikes(jnp.float32(jnp.inf)))


def test_dt_must_not_be_a_string():
    with pytest.raises(TypeError, match="`dt` must be a positive float in seconds; got '1e-6'"):
        bj.run(_one_layer(), SPIKES, dt="1e-6")


def test_checkpoint_metadata_must_be_json(tmp_path):
    bj.save_checkpoint(tmp_path / "c.npz", ({"w": jnp.array(2.0)},))
    with pytest.raises(TypeError, match="`metadata` must be JSON-serialisable"):
        bj.save_checkpoint(tmp_path / "c.npz", ({"w": jnp.array(3.0)},), {"x": object()})
    (params,), _ = bj.load_checkpoint(tmp_path / "c.npz", ({"w": jnp.array(0.0)},))
    assert float(params["w"]) == 2.0  # the old file is intact


def test_traced_subnormal_inputs_are_refused_as_eagerly():
    x = np.array(SPIKES)
    x[2, 0, 1] = 1.3e-39  # in NumPy: XLA on CPU would flush it to 0, and compares it as 0
    with pytest.raises(ValueError, match="`inputs` must hold spikes as 0/1; got 1 other"):
        bj.run(_one_layer(), x)
    run = jax.jit(lambda x: bj.run(_one_layer(), x)[0].spikes)
    run(np.where(np.array(SPIKES) == 0, -0.0, 1.0))  # -0.0 is a 0
    with pytest.raises(Exception, match="`inputs` must hold spikes as 0/1"):
        jax.block_until_ready(run(x))


def test_adex_with_a_leak_above_its_exponential_threshold():
    """Found by test_fuzz: AdEx(leak=115) with the default exponential threshold (110) and
    slope (0.05) gave NaN membranes from the first step on (exp(100) overflows float32);
    the exponent is now capped at 20 as in the chip model, and the neuron fires."""
    network = bj.Sequential([bj.Synapse(2, 2, weight=jnp.full((2, 2), 0.5)), bj.AdEx(2, leak=115)])
    (out,) = bj.run(network, SPIKES)
    assert np.isfinite(out.membrane_cadc).all()
    assert out.spikes.sum() > 0  # resting past its runaway point, it fires

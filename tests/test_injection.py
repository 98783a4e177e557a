"""Injection of a backend's observations (hxtorch's `Unterjubel`, semantics section 2.5):
post-processing in hxtorch's order, forward values bit for bit, gradient through the
numerics around the observed trajectory."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SyntheticBackend, model_space_neuron, tree_allclose

import bss2jax as bj

DT = 1e-6
TIME, BATCH, IN, N = 12, 2, 3, 4


def hxtorch_post_process(trace, *, shift, offset, scale, to_first):
    """hxtorch's AELIF.post_process on a dense trace, written with numpy in float32:
    roll by -shift along time with edge padding, then subtract the offset (or the first
    sample), then multiply by the scale."""
    trace = np.asarray(trace, np.float32)
    out = np.roll(trace, -shift, axis=0)
    if shift > 0:
        out[-shift:] = trace[-1]
    elif shift < 0:
        out[:-shift] = trace[0]
    out = out - out[:1] if to_first else out - np.asarray(offset, np.float32)
    return out * np.asarray(scale, np.float32)


def test_shift_time_by_hand():
    trace = jnp.arange(5.0)
    np.testing.assert_array_equal(bj.shift_time(trace, 0), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(bj.shift_time(trace, 2), [2, 3, 4, 4, 4])
    np.testing.assert_array_equal(bj.shift_time(trace, -1), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(bj.shift_time(trace, 7), [4, 4, 4, 4, 4])


def test_cadc_to_model_order_by_hand():
    # shift 1: [10, 20, 30, 30]; minus offset 10: [0, 10, 20, 20]; times 0.5.
    lif = bj.LIF(1, trace_offset=10.0, trace_scale=0.5, cadc_time_shift=1)
    trace = jnp.array([0.0, 10.0, 20.0, 30.0])[:, None, None]
    np.testing.assert_array_equal(bj.cadc_to_model(trace, lif)[:, 0, 0], [0, 5, 10, 10])
    # shift-to-first subtracts the first sample AFTER the shift (10), ignoring the offset.
    lif = bj.LIF(1, trace_offset=99.0, trace_scale=0.5, cadc_time_shift=1,
                 shift_cadc_to_first=True)  # fmt: skip
    np.testing.assert_array_equal(bj.cadc_to_model(trace, lif)[:, 0, 0], [0, 5, 10, 10])


SETTINGS = [
    dict(shift=0, offset=0.0, scale=1.0, to_first=False),
    dict(shift=2, offset=80.0, scale=0.03, to_first=False),
    dict(shift=-1, offset=[70.0, 75.0, 80.0, 85.0], scale=[0.02, 0.03, 0.04, 0.05],
         to_first=False),
    dict(shift=1, offset=123.0, scale=0.025, to_first=True),
]  # fmt: skip


def _make(cls, setting):
    return model_space_neuron(
        cls,
        N,
        trace_offset=jnp.asarray(setting["offset"]),
        trace_scale=jnp.asarray(setting["scale"]),
        cadc_time_shift=setting["shift"],
        shift_cadc_to_first=setting["to_first"],
    )


def _recording(seed, *, spikes=True, extra=3):
    rng = np.random.default_rng(seed)
    # Chip units: CADC around 80 LSB, recording a few steps longer than the run.
    cadc = rng.normal(90.0, 20.0, size=(TIME + extra, BATCH, N)).astype(np.float32)
    z = (rng.uniform(size=(TIME + extra, BATCH, N)) < 0.3).astype(np.float32)
    return cadc, (z if spikes else None)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"shift{s['shift']}")
@pytest.mark.parametrize("cls", [bj.LIF, bj.LI, bj.AdEx])
def test_forward_values_are_the_recording_bit_for_bit(cls, setting, getkey):
    neuron = _make(cls, setting)
    cadc, z = _recording(1, spikes=neuron.fire)
    net = bj.Sequential([bj.Synapse(IN, N, key=getkey()), neuron])
    backend = SyntheticBackend(
        bj.Recording({0: bj.PopulationRecording(spikes=z, membrane_cadc=cadc)})
    )
    inputs = (jax.random.uniform(getkey(), (TIME, BATCH, IN)) < 0.4).astype(jnp.float32)
    for run in (bj.run, eqx.filter_jit(bj.run)):
        (obs,) = run(net, inputs, backend=backend, dt=DT)
        expected = hxtorch_post_process(
            cadc,
            shift=setting["shift"],
            offset=setting["offset"],
            scale=setting["scale"],
            to_first=setting["to_first"],
        )[:TIME]
        assert obs.membrane_cadc.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(obs.membrane_cadc), expected)
        if neuron.fire:
            np.testing.assert_array_equal(np.asarray(obs.spikes), z[:TIME])
    # The numerics alone give something else (the injection is not a no-op).
    (free,) = bj.run(net, inputs, dt=DT)
    assert not np.allclose(free.membrane_cadc, obs.membrane_cadc)


def test_injected_spikes_drive_the_next_layer(getkey):
    # Only the hidden LIF is recorded (spikes only); the LI readout is numerics and must
    # see exactly the recorded spikes: its current is the recursion over z_hw @ W^T.
    w_out = jax.random.normal(getkey(), (2, N))
    net = bj.Sequential(
        [
            bj.Synapse(IN, N, key=getkey()),
            model_space_neuron(bj.LIF, N),
            bj.Synapse(N, 2, weight=w_out),
            bj.LI(2, leak=0.0, tau_syn=5e-6),
        ]
    )
    _, z = _recording(2)
    backend = SyntheticBackend(bj.Recording({0: bj.PopulationRecording(spikes=z)}))
    inputs = jnp.zeros((TIME, BATCH, IN))
    hidden, readout = bj.run(net, inputs, backend=backend, dt=DT)
    np.testing.assert_array_equal(hidden.spikes, z[:TIME])
    x = z[:TIME] @ np.asarray(w_out).T
    expected, i = [], np.zeros_like(x[0])
    for t in range(TIME):
        i = 0.8 * i + x[t]  # 1 - dt / tau_syn = 0.8
        expected.append(i)
    np.testing.assert_allclose(readout.current, np.stack(expected), rtol=1e-5, atol=1e-6)


def test_gradient_flows_to_the_weights(getkey):
    net = bj.Sequential(
        [
            bj.Synapse(IN, N, key=getkey()),
            model_space_neuron(bj.LIF, N, trace_offset=80.0, trace_scale=0.03),
            bj.Synapse(N, 2, key=getkey()),
            bj.LI(2, leak=0.0, trace_offset=80.0, trace_scale=0.03),
        ]
    )
    cadc, z = _recording(3)
    cadc_out, _ = _recording(4, spikes=False)
    backend = SyntheticBackend(
        bj.Recording(
            {
                0: bj.PopulationRecording(spikes=z, membrane_cadc=cadc),
                1: bj.PopulationRecording(membrane_cadc=cadc_out[..., :2]),
            }
        )
    )
    inputs = (jax.random.uniform(getkey(), (TIME, BATCH, IN)) < 0.5).astype(jnp.float32)

    def loss(n):
        hidden, readout = bj.run(n, inputs, backend=backend, dt=DT)
        return jnp.sum(readout.membrane_cadc**2) + jnp.sum(hidden.membrane_cadc**2)

    grads = jax.jit(jax.grad(loss))(net)
    for weight in (grads.layers[0].weight, grads.layers[2].weight):
        weight = np.asarray(weight)
        assert np.all(np.isfinite(weight)) and np.abs(weight).sum() > 0
    # No gradient reaches the recording through the post-processing parameters: the
    # forward value is the observation, whose derivative is zero (Unterjubel).
    assert float(grads.layers[3].trace_scale) == 0.0
    assert float(grads.layers[3].trace_offset) == 0.0


def _self_consistent_gradients(net, inputs, recorded):
    """Gradients of a loss on all membranes, numerics alone vs. injected with the numerics'
    own trajectory of the populations in `recorded` (offset 0, scale 1: bit-exact)."""
    free = bj.run(net, inputs, dt=DT)
    entries = {}
    for k in recorded:
        entries[k] = bj.PopulationRecording(
            membrane_cadc=free[k].membrane_cadc,
            spikes=free[k].spikes,
        )
    backend = SyntheticBackend(bj.Recording(entries))
    injected = bj.run(net, inputs, backend=backend, dt=DT)
    assert tree_allclose(free, injected, rtol=0, atol=0)

    def loss(n, b):
        return sum(jnp.sum(jnp.sin(o.membrane_cadc)) for o in bj.run(n, inputs, backend=b, dt=DT))

    return jax.grad(loss)(net, bj.Numeric()), jax.grad(loss)(net, backend), free


def test_self_consistent_recording_gives_the_numerics_gradient_li(getkey, x64):
    # LI is linear and has no reset: injecting its own trajectory changes no value at which
    # a derivative is taken, and the tangent of the injected state is the tangent of the
    # numerical update. So the gradients are equal (up to rounding).
    net = bj.Sequential([bj.Synapse(IN, N, key=getkey()), bj.LI(N, leak=0.0, tau_syn=5e-6)])
    inputs = (jax.random.uniform(getkey(), (TIME, BATCH, IN)) < 0.5).astype(jnp.float64)
    numeric, injected, _ = _self_consistent_gradients(net, inputs, [0])
    assert tree_allclose(numeric, injected)
    assert float(jnp.abs(numeric.layers[0].weight).sum()) > 0


def test_self_consistent_recording_lif_below_threshold(getkey, x64):
    # Below threshold the LIF never resets, and the same argument holds for the whole
    # LIF -> LI chain with both layers injected.
    net = bj.Sequential(
        [
            bj.Synapse(IN, N, weight=jax.random.uniform(getkey(), (N, IN), maxval=0.2)),
            model_space_neuron(bj.LIF, N, threshold=5.0),
            bj.Synapse(N, 2, key=getkey()),
            bj.LI(2, leak=0.0),
        ]
    )
    inputs = (jax.random.uniform(getkey(), (TIME, BATCH, IN)) < 0.5).astype(jnp.float64)
    numeric, injected, free = _self_consistent_gradients(net, inputs, [0, 1])
    assert float(free[0].spikes.sum()) == 0.0
    assert tree_allclose(numeric, injected)


def test_self_consistent_recording_lif_with_spikes_differs(getkey, x64):
    # With spikes the gradients differ by design (hxtorch's semantics, section 2.5): with a
    # measured voltage no software reset is applied, so the tangent of v passes the spike
    # step (the numerics' reset gate (1 - sg(z)) zeroes it), and the surrogate is taken at
    # the recorded (already reset) voltage. Both are finite; only the LIF layer differs.
    net = bj.Sequential(
        [
            bj.Synapse(IN, N, weight=jax.random.uniform(getkey(), (N, IN), maxval=6.0)),
            model_space_neuron(bj.LIF, N),
            bj.Synapse(N, 2, key=getkey()),
            bj.LI(2, leak=0.0),
        ]
    )
    inputs = (jax.random.uniform(getkey(), (TIME, BATCH, IN)) < 0.5).astype(jnp.float64)
    numeric, injected, free = _self_consistent_gradients(net, inputs, [0])
    assert float(free[0].spikes.sum()) > 0
    for leaf in jax.tree_util.tree_leaves(injected):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert not tree_allclose(numeric.layers[0].weight, injected.layers[0].weight)
    # The readout is downstream of the (identical) spikes: its weight gradient is equal.
    assert tree_allclose(numeric.layers[2].weight, injected.layers[2].weight)


def test_recording_by_population_name(getkey):
    net = bj.Network(
        {"hidden": model_space_neuron(bj.LIF, N), "out": bj.LI(2)},
        [
            bj.Projection(bj.INPUT, "hidden", bj.Synapse(IN, N, key=getkey())),
            bj.Projection("hidden", "out", bj.Synapse(N, 2, key=getkey())),
        ],
        input_size=IN,
    )
    cadc, _ = _recording(5, spikes=False)
    backend = SyntheticBackend(
        bj.Recording({"out": bj.PopulationRecording(membrane_cadc=cadc[..., :2])})
    )
    out = bj.run(net, jnp.zeros((TIME, BATCH, IN)), backend=backend, dt=DT)
    np.testing.assert_array_equal(out["out"].membrane_cadc, cadc[:TIME, :, :2])


def test_madc_is_passed_through_without_gradient(getkey):
    lif = model_space_neuron(bj.LIF, N, enable_madc_recording=True, record_neuron_id=1)
    net = bj.Sequential([bj.Synapse(IN, N, key=getkey()), lif])
    madc = jnp.asarray(np.random.default_rng(6).normal(300.0, 50.0, size=(TIME + 2, BATCH)))
    madc = madc.astype(jnp.float32)
    backend = SyntheticBackend(bj.Recording({0: bj.PopulationRecording(membrane_madc=madc)}))
    inputs = jnp.ones((TIME, BATCH, IN))
    (obs,) = bj.run(net, inputs, backend=backend, dt=DT)
    np.testing.assert_array_equal(obs.membrane_madc, madc[:TIME])
    grads = jax.grad(lambda n: jnp.sum(bj.run(n, inputs, backend=backend)[0].membrane_madc))(net)
    assert float(jnp.abs(grads.layers[0].weight).sum()) == 0.0


def test_bad_recordings_give_named_errors(getkey):
    net = bj.Sequential(
        [bj.Synapse(IN, N, key=getkey()), model_space_neuron(bj.LIF, N),
         bj.Synapse(N, 2, key=getkey()), bj.LI(2)]
    )  # fmt: skip
    inputs = jnp.zeros((TIME, BATCH, IN))
    cadc, z = _recording(7)

    def run_with(populations):
        return bj.run(net, inputs, backend=SyntheticBackend(bj.Recording(populations)))

    with pytest.raises(ValueError, match=r"population 0.*`membrane_cadc`.*\(time >= 12, 2, 4\)"):
        run_with({0: bj.PopulationRecording(membrane_cadc=cadc[: TIME - 1])})
    with pytest.raises(ValueError, match=r"population 0.*`spikes`.*got \(15, 2, 3\)"):
        run_with({0: bj.PopulationRecording(spikes=z[..., :3])})
    with pytest.raises(ValueError, match="population 5"):
        run_with({5: bj.PopulationRecording(spikes=z)})
    with pytest.raises(ValueError, match=r"population 1.*does not fire"):
        run_with({1: bj.PopulationRecording(spikes=z[..., :2])})
    with pytest.raises(ValueError, match=r"`membrane_madc`"):
        run_with({0: bj.PopulationRecording(membrane_madc=cadc)})

    class Broken(bj.AbstractBackend):
        def observe(self, network, inputs, *, dt, key):
            return {"spikes": z}

    with pytest.raises(TypeError, match="bj.Recording"):
        bj.run(net, inputs, backend=Broken())


# An independent JAX loop of hxtorch's step code WITH hardware data (sections 2.1-2.3 and
# 2.5), `Unterjubel(x, x_hw)` written as `x_hw + (x - sg(x))`: forward x_hw, derivative 1
# with respect to x. Python-unrolled over a few steps.
def _unterjubel(x, x_hw):
    return x_hw + (x - jax.lax.stop_gradient(x))


def _hxtorch_loop(x, v_hw, z_hw, *, tau_mem, p, dt, spike):
    c, leak, reset, threshold = 10e-6, 0.0, 0.0, 1.0
    g_l = c / tau_mem
    i = jnp.zeros_like(x[0])
    w = jnp.zeros_like(x[0])
    r = jnp.zeros_like(x[0])
    v = jnp.full_like(x[0], leak)
    vs, zs = [], []
    for t in range(x.shape[0]):
        drive = i + g_l * (leak - v)
        if p["adex"]:
            drive = drive + g_l * 0.1 * jnp.exp((v - 1.0) / 0.1) - w
        v_next = v + dt / c * drive
        i = i * (1 - dt / 5e-6) + x[t]
        v = _unterjubel(v_next, v_hw[t])
        z = _unterjubel(spike(v - threshold), z_hw[t])
        if p["adex"]:
            w = w * (1 - dt / 20e-6) + dt / 20e-6 * 0.5 * (v - leak) + 0.3 * z
        # No software reset: the measured trace contains it. Refractory update:
        refractory = (r > 0).astype(v.dtype)
        v = _unterjubel((1 - refractory) * v + refractory * reset, v_hw[t])
        z = _unterjubel((1 - refractory) * z, z_hw[t])
        r = (1 - z) * jax.nn.relu(r - refractory) + z * 1e-6 / dt
        vs.append(v)
        zs.append(z)
    return jnp.stack(vs), jnp.stack(zs)


@pytest.mark.parametrize("adex", [False, True])
def test_injected_gradient_against_independent_loop(adex, getkey, x64):
    # Weights and tau_mem get the gradient of the numerics linearised around an arbitrary
    # (not self-consistent) recording, post-processed with offset 80 and scale 0.02 so the
    # surrogate sees the model-space trace.
    cadc = np.random.default_rng(8).normal(125.0, 30.0, size=(TIME, BATCH, N))
    z_hw = (np.random.default_rng(9).uniform(size=(TIME, BATCH, N)) < 0.3).astype(float)
    v_hw = (cadc - 80.0) * 0.02
    inputs = (jax.random.uniform(getkey(), (TIME, BATCH, IN)) < 0.5).astype(jnp.float64)
    weight0 = jax.random.uniform(getkey(), (N, IN), jnp.float64, maxval=3.0)
    spike = bj.SuperSpike(alpha=2.0)
    backend = SyntheticBackend(
        bj.Recording({0: bj.PopulationRecording(spikes=z_hw, membrane_cadc=cadc)})
    )
    kwargs = dict(tau_syn=5e-6, trace_offset=80.0, trace_scale=0.02, surrogate=spike)
    if adex:
        kwargs.update(exponential_slope=0.1, exponential_threshold=1.0,
                      subthreshold_adaptation_strength=0.5,
                      spike_triggered_adaptation_increment=0.3, tau_adap=20e-6)  # fmt: skip

    def loss_bss2jax(weight, tau_mem_us):
        neuron = model_space_neuron(bj.AdEx if adex else bj.LIF, N, tau_mem=tau_mem_us * 1e-6,
                                    **kwargs)  # fmt: skip
        net = bj.Sequential([bj.Synapse(IN, N, weight=weight), neuron])
        (obs,) = bj.run(net, inputs, backend=backend, dt=DT)
        return jnp.sum(jnp.sin(obs.membrane_cadc)) + jnp.sum(
            obs.spikes * jnp.arange(N, dtype=float)[None, None]
        )

    def loss_reference(weight, tau_mem_us):
        v, z = _hxtorch_loop(inputs @ weight.T, jnp.asarray(v_hw), jnp.asarray(z_hw),
                             tau_mem=tau_mem_us * 1e-6, p=dict(adex=adex), dt=DT,
                             spike=spike)  # fmt: skip
        return jnp.sum(jnp.sin(v)) + jnp.sum(z * jnp.arange(N, dtype=float)[None, None])

    args = (weight0, jnp.float64(10.0))
    np.testing.assert_allclose(loss_bss2jax(*args), loss_reference(*args), rtol=1e-12)
    grads = jax.grad(loss_bss2jax, (0, 1))(*args)
    expected = jax.grad(loss_reference, (0, 1))(*args)
    assert tree_allclose(grads, expected, rtol=1e-9, atol=1e-12)
    assert float(jnp.abs(grads[0]).sum()) > 0 and float(grads[1]) != 0.0

"""The chip model backend: agreement with the numerics, readout, determinism, vmap, gradients."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj
import bss2jax.hardware as bjh

DT = 1e-6
QUIET = bj.ChipConfig.noiseless()
KAPPA = QUIET.weight_efficacy


def _single(weight, *, threshold=125.0, **neuron):
    return bj.Sequential(
        [
            bj.Synapse(1, 1, weight=jnp.full((1, 1), weight)),
            bj.LIF(1, threshold=threshold, **neuron),
        ]
    )


@eqx.filter_jit
def _numerics(network, inputs):
    return bj.run(network, inputs)


def _tutorial_inputs(time=60, batch=1):
    return jnp.zeros((time, batch, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)


def test_nominal_noiseless_equals_numerics_up_to_quantisation_and_sampling():
    # Sub-threshold PSPs of a hardware weight w on the nominal chip against hxtorch's numerics
    # with the model weight w * kappa (the same current in LSB). Three explained errors:
    # - integration: hxtorch's explicit Euler (dt / tau = 0.1) against the chip's exact
    #   sub-stepped decay: the Euler PSP is up to ~6 % larger (measured 5 %);
    # - CADC rounding: 0.5 LSB;
    # - CADC sampling: linear interpolation between samples 1.7 us apart misses at most
    #   period / 4 * (max slope - min slope) of the true trace.
    time = 60
    x = _tutorial_inputs(time)
    backend = bj.ChipModel(bj.ChipInstance.nominal(), QUIET.replace(saturation=None))
    chip_net = _single(30.0, threshold=200.0)
    (numerics,) = _numerics(_single(30.0 * KAPPA, threshold=200.0), x)
    numerics = np.asarray(numerics.membrane_cadc[:, 0, 0])
    raw = backend.record(chip_net, x, dt=DT, key=None)[0]
    true = np.asarray(raw.membrane[:: QUIET.substeps, 0, 0][:time])
    cadc = np.asarray(backend.observe(chip_net, x, dt=DT, key=None).populations[0].membrane_cadc)
    cadc = cadc[:, 0, 0]

    amplitude = numerics.max() - 80.0
    assert amplitude > 15.0  # a real signal, well above the quantisation
    assert np.abs(true - numerics).max() <= 0.06 * amplitude
    slope = np.diff(np.asarray(raw.membrane[:, 0, 0])) / (DT / QUIET.substeps)
    interpolation = QUIET.cadc_sample_period / 4 * (slope.max() - slope.min())
    assert np.abs(cadc - true).max() <= 0.5 + interpolation
    assert np.abs(cadc - numerics).max() <= 0.5 + interpolation + 0.06 * amplitude
    # before any input both are exactly the leak
    assert np.all(cadc[:10] == 80.0) and np.all(numerics[:10] == 80.0)


def test_nominal_spike_times_match_numerics_within_one_step():
    # Regular firing under steady input, without the (deliberate) input saturation.
    x = jnp.zeros((60, 1, 1)).at[10:40].set(1.0)
    backend = bj.ChipModel(bj.ChipInstance.nominal(), QUIET.replace(saturation=None))
    rec = backend.observe(_single(20.0), x, dt=DT, key=None).populations[0]
    (numerics,) = _numerics(_single(20.0 * KAPPA), x)
    chip_steps = np.flatnonzero(np.asarray(rec.spikes[:, 0, 0]))
    numeric_steps = np.flatnonzero(np.asarray(numerics.spikes[:, 0, 0]))
    assert len(chip_steps) == len(numeric_steps) >= 3
    assert np.abs(chip_steps - numeric_steps).max() <= 1


def test_cadc_values_are_integers_in_range_before_post_processing():
    # An uncalibrated chip driven hard: reads reach the top of the 8-bit range.
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0), bj.MismatchProfile.uncalibrated())
    backend = bj.ChipModel(chip, bj.ChipConfig(saturation=None))
    net = bj.Sequential([bj.Synapse(4, 8, weight=jnp.full((8, 4), 63.0)), bj.LI(8, tau_syn=20e-6)])
    x = jnp.ones((30, 2, 4))
    with pytest.warns(UserWarning, match="reliable range"):
        raw = backend.record(net, x, dt=DT, key=jax.random.PRNGKey(1))[0]
    value = np.asarray(raw.cadc_value)
    assert value.shape == (2, 8, 19)  # ceil(29 us / 1.7 us) + 1 samples, the last held
    assert np.all(value == np.round(value))
    assert value.min() >= 0 and value.max() <= 255
    assert value.max() == 255  # the clip is reached, not exceeded
    times = np.asarray(raw.cadc_time)
    assert np.all(np.diff(times, axis=-1) > 0)
    nominal = np.minimum(np.arange(19) * 1.7e-6, 30e-6)
    assert np.all(np.abs(times - nominal) <= 0.1e-6 + 1e-12)


def test_madc_raw_and_grid():
    x = _tutorial_inputs(50)
    backend = bj.ChipModel(bj.ChipInstance.nominal(), QUIET)
    net = _single(20.0, enable_madc_recording=True)  # sub-threshold
    rec = backend.observe(net, x, dt=DT, key=None).populations[0]
    value, times = np.asarray(rec.madc_value), np.asarray(rec.madc_time)
    period = QUIET.madc_sample_period
    assert period == pytest.approx(34e-9)
    assert value.shape == times.shape == (1, int(49e-6 / period) + 1)
    assert np.all(value == np.round(value)) and value.min() >= 0 and value.max() <= 1023
    assert rec.membrane_madc.shape == (50, 1)
    # MADC = gain * membrane; the CADC reads the same membrane, coarser
    madc_in_cadc_units = np.asarray(rec.membrane_madc[:, 0]) / QUIET.madc_gain
    assert np.abs(madc_in_cadc_units - np.asarray(rec.membrane_cadc[:, 0, 0])).max() < 1.5
    assert madc_in_cadc_units[:10] == pytest.approx(80.0, abs=0.2)
    # run passes the MADC trace through in chip units
    (out,) = bj.run(net, x, backend=backend, key=None)
    assert np.array_equal(np.asarray(out.membrane_madc), np.asarray(rec.membrane_madc))


def test_keys_determinism_and_difference():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(2))
    backend = bj.ChipModel(chip)
    net = _single(40.0)
    x = _tutorial_inputs(40, batch=2)
    a = backend.observe(net, x, dt=DT, key=jax.random.PRNGKey(0))
    b = backend.observe(net, x, dt=DT, key=jax.random.PRNGKey(0))
    c = backend.observe(net, x, dt=DT, key=jax.random.PRNGKey(1))
    assert eqx.tree_equal(a, b)
    assert not np.array_equal(a.populations[0].membrane_cadc, c.populations[0].membrane_cadc)
    # two batch entries see independent noise
    trace = np.asarray(a.populations[0].membrane_cadc)
    assert not np.array_equal(trace[:, 0], trace[:, 1])
    with pytest.raises(ValueError, match="`key` is required"):
        backend.observe(net, x, dt=DT, key=None)


def test_different_chips_differ_and_vmap_over_chips_and_keys_matches_a_loop():
    net = _single(40.0)
    x = _tutorial_inputs(30)
    chips = jax.vmap(bj.ChipInstance.random)(jax.random.split(jax.random.PRNGKey(4), 3))
    keys = jax.random.split(jax.random.PRNGKey(5), 3)

    @jax.jit
    def trace(chip, key):
        (out,) = bj.run(net, x, backend=bj.ChipModel(chip), key=key)
        return out.membrane_cadc[:, 0, 0]

    batched = jax.vmap(trace)(chips, keys)
    for i in range(3):
        chip_i = jax.tree.map(lambda a, i=i: a[i], chips)
        assert np.allclose(batched[i], trace(chip_i, keys[i]), atol=1e-4)
    assert not np.allclose(batched[0], batched[1])
    # same noise key, different chips: the chips alone differ
    same_key = jax.vmap(trace)(chips, jnp.stack([keys[0]] * 3))
    assert not np.allclose(same_key[0], same_key[1])


def test_run_with_chip_model_injects_under_jit_and_grad():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))
    backend = bj.ChipModel(chip)
    lif = bj.LIF(
        3,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(0.0, 80.0),
        threshold=bj.Mixed(1.0, 125.0),
        trace_offset=80.0,
        trace_scale=1 / 45,
    )
    net = bj.Sequential(
        [bj.Synapse(2, 3, key=jax.random.PRNGKey(1), transform=bj.linear_saturating(60.0)), lif]
    )
    x = (jax.random.uniform(jax.random.PRNGKey(2), (40, 2, 2)) < 0.2).astype(jnp.float32)
    key = jax.random.PRNGKey(3)
    rec = backend.observe(net, x, dt=DT, key=key).populations[0]
    (out,) = eqx.filter_jit(lambda n, x, k: bj.run(n, x, backend=backend, key=k))(net, x, key)
    expected = (np.asarray(rec.membrane_cadc) - 80.0) / 45
    assert np.allclose(out.membrane_cadc, expected, atol=1e-5)
    assert np.array_equal(out.spikes, rec.spikes)

    def loss(net):
        (o,) = bj.run(net, x, backend=backend, key=key)
        return (o.membrane_cadc**2).mean() + o.spikes.mean()

    grad = eqx.filter_jit(jax.grad(loss))(net)
    assert np.all(np.isfinite(grad.layers[0].weight)) and np.any(grad.layers[0].weight != 0)


def test_through_gradient_differentiates_the_chip_model():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))
    lif = bj.LIF(
        2,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(0.0, 80.0),
        threshold=bj.Mixed(1.0, 125.0),
        trace_offset=80.0,
        trace_scale=1 / 45,
    )
    net = bj.Sequential(
        [bj.Synapse(3, 2, weight=jnp.full((2, 3), 0.3), transform=bj.linear_saturating(60.0)), lif]
    )
    x = (jax.random.uniform(jax.random.PRNGKey(2), (20, 2, 3)) < 0.3).astype(jnp.float32)
    key = jax.random.PRNGKey(3)
    inject, through = bj.ChipModel(chip), bj.ChipModel(chip, gradient="through")

    def loss(net, backend):
        (o,) = bj.run(net, x, backend=backend, key=key)
        return o.membrane_cadc.mean() + o.spikes.sum(), o

    (value_i, out_i), grad_i = eqx.filter_jit(jax.value_and_grad(loss, has_aux=True))(net, inject)
    (value_t, out_t), grad_t = eqx.filter_jit(jax.value_and_grad(loss, has_aux=True))(net, through)
    # the same observation forward
    assert np.allclose(out_i.membrane_cadc, out_t.membrane_cadc, atol=1e-6)
    assert np.array_equal(out_i.spikes, out_t.spikes) and float(out_t.spikes.sum()) > 0
    g_i, g_t = np.asarray(grad_i.layers[0].weight), np.asarray(grad_t.layers[0].weight)
    assert np.all(np.isfinite(g_t)) and np.all(g_t > 0)  # more weight: higher trace, more spikes
    assert not np.allclose(g_i, g_t)  # a different gradient: the chip model's own
    # through also reaches chip-space parameters (here the hardware threshold)
    assert np.all(np.isfinite(grad_t.layers[1].threshold.hardware))


def test_recurrent_network_and_partition_into_runs():
    key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)
    net = bj.Network(
        {"hidden": bj.LIF(5)},
        [
            bj.Projection(bj.INPUT, "hidden", bj.Synapse(3, 5, weight=jnp.full((5, 3), 30.0))),
            bj.Projection("hidden", "hidden", bj.Synapse(5, 5, weight=jnp.full((5, 5), -30.0))),
        ],
        input_size=3,
    )
    x = jnp.zeros((30, 1, 3)).at[5:25:2].set(1.0)
    backend = bj.ChipModel(bj.ChipInstance.nominal(), QUIET)
    out = bj.run(net, x, backend=backend)
    assert out["hidden"].spikes.shape == (30, 1, 5)
    # inhibition delays firing compared with no recurrence
    free = bj.run(
        eqx.tree_at(lambda n: n.projections[1].synapse.weight, net, jnp.zeros((5, 5))),
        x,
        backend=backend,
    )
    assert float(out["hidden"].spikes.sum()) < float(free["hidden"].spikes.sum())

    big = bj.Sequential(
        [bj.Synapse(784, 100, key=k2, transform=bj.linear_saturating(20.0)), bj.LIF(100)]
    )
    with pytest.raises(bj.PlacementError, match="800 neuron circuits.*512"):
        bj.ChipModel(bj.ChipInstance.nominal()).observe(big, jnp.zeros((5, 1, 784)), dt=DT, key=k1)
    split = bj.ChipModel(bj.ChipInstance.nominal(), QUIET, partition=True)
    rec = split.observe(big, jnp.zeros((5, 1, 784)), dt=DT, key=None)
    assert rec.populations[0].membrane_cadc.shape == (5, 1, 100)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`substeps`"):
        bj.ChipConfig(substeps=0)
    with pytest.raises(ValueError, match="`gradient`"):
        bj.ChipModel(bj.ChipInstance.nominal(), gradient="both")
    with pytest.raises(TypeError, match="`chip`"):
        bj.ChipModel(None)
    with pytest.raises(ValueError, match="`cadc_memory`"):
        bj.ChipConfig(cadc_memory="flash")
    net = _single(10.0, enable_madc_recording=True)
    two = bj.Sequential(
        [
            net.layers[0],
            net.layers[1],
            bj.Synapse(1, 1, weight=jnp.ones((1, 1))),
            bj.LIF(1, enable_madc_recording=True),
        ]
    )
    with pytest.raises(bj.BackendError, match="MADC"):
        bj.ChipModel(bj.ChipInstance.nominal(), QUIET).observe(
            two, jnp.zeros((5, 1, 1)), dt=DT, key=None
        )
    with pytest.warns(UserWarning, match="calibration range"):
        bj.ChipModel(bj.ChipInstance.nominal(), QUIET).observe(
            _single(1.0, threshold=240.0), jnp.zeros((5, 1, 1)), dt=DT, key=None
        )


def test_synaptic_delay_shifts_the_response_and_adaptation_slows_firing():
    x = jnp.zeros((30, 1, 1)).at[10].set(1.0)
    net = _single(30.0)
    substep = DT / QUIET.substeps
    plain = bj.ChipModel(bj.ChipInstance.nominal(), QUIET).record(net, x, dt=DT, key=None)
    late = bj.ChipModel(bj.ChipInstance.nominal(), QUIET.replace(synaptic_delay=4 * substep))
    delayed = late.record(net, x, dt=DT, key=None)
    a, b = np.asarray(plain[0].membrane[:, 0, 0]), np.asarray(delayed[0].membrane[:, 0, 0])
    assert np.allclose(b[4:], a[:-4], atol=1e-4) and not np.allclose(a, b)

    drive = jnp.zeros((60, 1, 1)).at[5:55].set(1.0)
    adex = bj.AdEx(
        1,
        exponential=False,
        subthreshold_adaptation=False,
        spike_triggered_adaptation_increment=30.0,
    )
    backend = bj.ChipModel(bj.ChipInstance.nominal(), QUIET)
    lif = backend.observe(_single(30.0), drive, dt=DT, key=None).populations[0]
    adapting = bj.Sequential([bj.Synapse(1, 1, weight=jnp.full((1, 1), 30.0)), adex])
    adapted = backend.observe(adapting, drive, dt=DT, key=None).populations[0]
    assert 0 < float(adapted.spikes.sum()) < float(lif.spikes.sum())


def test_inputs_map_to_circuits_and_rows_of_the_placement():
    # One neuron with 256 inputs: 2 circuits (top and bottom column 0). Input i uses circuit
    # i // 128 and the row pair of i % 128 (excitatory row 2 r, inhibitory row 2 r + 1).
    net = bj.Sequential(
        [bj.Synapse(256, 1, weight=jnp.full((1, 256), 30.0)), bj.LIF(1, threshold=200.0)]
    )
    top, bottom = bj.place(net).populations[0].circuits[0]
    assert (top, bottom) == (0, 256)
    nominal = bj.ChipInstance.nominal()
    chip = eqx.tree_at(
        lambda c: (c.synaptic_gain_exc, c.synapse_gain),
        nominal,
        (
            nominal.synaptic_gain_exc.at[bottom].set(2.0),
            nominal.synapse_gain.at[top, 2 * 5].set(0.0),  # input 5's excitatory synapse
        ),
    )

    def peak(channel):
        x = jnp.zeros((30, 1, 256)).at[5, 0, channel].set(1.0)
        backend = bj.ChipModel(chip, QUIET.replace(saturation=None))
        return float(backend.record(net, x, dt=DT, key=None)[0].membrane.max()) - 80.0

    reference = peak(3)  # top circuit, nominal synapse
    assert reference > 5
    assert peak(5) == pytest.approx(0.0, abs=1e-5)  # its synapse has no gain
    assert peak(128 + 3) == pytest.approx(2 * reference, rel=1e-4)  # bottom circuit gain 2


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_recording_is_the_public_to_dense_conversion_of_the_raw_readout(interpolation):
    # `observe` samples inside the time scan (memory without the sub-step factor); it must
    # equal putting `record`'s raw readout on the grid with the public conversions.
    key = jax.random.PRNGKey(0)
    lif = bj.LIF(5, enable_madc_recording=True, record_neuron_id=3, interpolation=interpolation)
    weight = jax.random.uniform(key, (5, 3), minval=0.2, maxval=0.6)  # excitatory
    synapse = bj.Synapse(3, 5, weight=weight, transform=bj.linear_saturating(60.0))
    net = bj.Sequential([synapse, lif])
    x = (jax.random.uniform(key, (40, 2, 3)) < 0.3).astype(jnp.float32)
    backend = bj.ChipModel(bj.ChipInstance.random(key), bj.ChipConfig(cadc_period=0.7e-6))
    rec = backend.observe(net, x, dt=DT, key=jax.random.PRNGKey(1)).populations[0]
    raw = backend.record(net, x, dt=DT, key=jax.random.PRNGKey(1))[0]

    cadc = bjh.cadc_to_dense(
        jnp.broadcast_to(raw.cadc_time[:, None], raw.cadc_value.shape),
        raw.cadc_value,
        dt=DT,
        length=40,
        interpolation=interpolation,
    )
    assert np.allclose(rec.membrane_cadc, cadc, atol=1e-4)
    madc = bjh.madc_to_dense(
        raw.madc_time, raw.madc_value, dt=DT, length=40, interpolation=interpolation
    )
    assert np.allclose(rec.membrane_madc, madc, atol=1e-4)
    assert np.array_equal(rec.madc_value, raw.madc_value)
    step, batch, neuron = np.nonzero(np.isfinite(np.asarray(raw.spike_times)))
    times = np.asarray(raw.spike_times)[step, batch, neuron]
    inside = np.round(times / DT) < 40
    spikes = bjh.spikes_to_dense(
        times[inside], neuron[inside], batch[inside], dt=DT, shape=(40, 2, 5)
    )
    assert float(spikes.sum()) > 5
    assert np.array_equal(rec.spikes, spikes)


def test_through_gradient_matches_finite_differences_below_threshold():
    # Below threshold and without saturation the chip model is linear in the chip weights;
    # a central difference over +-10 chip weight units (wide enough to average over the
    # rounding) agrees with the straight-through gradient within 2 %.
    backend = bj.ChipModel(
        bj.ChipInstance.nominal(), QUIET.replace(saturation=None), gradient="through"
    )
    x = jnp.zeros((40, 1, 2)).at[jnp.array([5, 12, 20]), 0, 0].set(1.0)
    x = x.at[jnp.array([8, 25]), 0, 1].set(1.0)
    lif = bj.LIF(
        1,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(0.0, 80.0),
        threshold=bj.Mixed(1.0, 200.0),
        trace_offset=80.0,
        trace_scale=1 / 40,
    )

    @jax.jit
    def loss(weight):
        synapse = bj.Synapse(2, 1, weight=weight, transform=bj.linear_saturating(50.0))
        (out,) = bj.run(bj.Sequential([synapse, lif]), x, backend=backend)
        return out.membrane_cadc.sum()

    weight = jnp.array([[0.4, -0.3]])
    grad = np.asarray(jax.jit(jax.grad(loss))(weight))[0]
    step = 10 / 50.0
    for i in range(2):
        difference = loss(weight.at[0, i].add(step)) - loss(weight.at[0, i].add(-step))
        assert grad[i] == pytest.approx(float(difference) / (2 * step), rel=0.02)
    assert grad[0] > 0 and grad[1] > 0  # more weight, higher trace (less inhibition)


def test_reset_relaxation_with_a_short_refractory_time_does_not_reach_reset():
    x = jnp.zeros((30, 1, 1)).at[5:25].set(1.0)
    synapse = bj.Synapse(1, 1, weight=jnp.full((1, 1), 40.0))

    def spikes(refractory, tau):
        net = bj.Sequential([synapse, bj.LIF(1, refractory_time=refractory)])
        backend = bj.ChipModel(bj.ChipInstance.nominal(), QUIET.replace(reset_time_constant=tau))
        raw = backend.record(net, x, dt=DT, key=None)[0]
        steps = np.flatnonzero(np.isfinite(np.asarray(raw.spike_times[:, 0, 0])))
        between = np.asarray(raw.membrane[steps[0] + 1 : steps[-1] + 1, 0, 0])
        return len(steps), between  # the membrane from the first to the last spike

    count, between = spikes(1e-6, None)
    assert count >= 2 and between.min() == pytest.approx(80.0)
    # relaxing with tau = 0.5 us for 1 us gets within exp(-2) of reset: each climb to the
    # threshold starts exp(-2) * (125 - 80) = 6 LSB higher, skipping at most that share of
    # the climb's time (its fastest part): at most 14 % more spikes, so for <= 7 spikes at
    # most one more.
    assert count <= 7
    assert count <= spikes(1e-6, 0.5e-6)[0] <= count + 1
    # for 0.2 us it stays far above reset and fires much more often
    fast, between = spikes(0.2e-6, 0.5e-6)
    assert fast > 2 * count and between.min() > 100
    with pytest.raises(ValueError, match="`reset_time_constant`"):
        bj.ChipConfig(reset_time_constant=-1.0)

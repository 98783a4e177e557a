"""`align` and the intro tutorial's first three sections on the chip model."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj

DT = 1e-6


def _tutorial_lif(**options):
    # the tutorial's section 3: model leak 0, threshold 1; chip leak 80, threshold 125
    return bj.LIF(
        1,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(0.0, 80.0),
        threshold=bj.Mixed(1.0, 125.0),
        **options,
    )


def _truth(chip, placement, threshold, leak):
    """The true threshold-minus-leak span (CADC LSB) of each neuron: the chip's potentials
    at its first circuit (where the model reads the membrane) times that CADC gain."""
    first = next(iter(placement.populations.values())).circuits[:, 0]
    span = threshold + chip.threshold[first] - leak - chip.leak[first]
    return np.asarray(chip.cadc_gain[first] * span)


@eqx.filter_jit
def _run(network, inputs, backend, key):
    return bj.run(network, inputs, backend=backend, dt=DT, key=key)


def test_intro_tutorial_first_three_sections_on_the_chip_model():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(2026))
    # noise on; CADC samples lead the numerics by one step, as the tutorial's setup behaves
    chip_model = bj.ChipModel(chip, bj.ChipConfig(cadc_time_offset=DT))
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 4))

    # 1. Emulate one LIF on the chip (model), recording CADC and MADC.
    inputs = jnp.zeros((50, 1, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)
    syn = bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0))  # chip weights are -63..63
    lif = bj.LIF(1, enable_madc_recording=True, record_neuron_id=0, cadc_time_shift=-1)
    (z,) = _run(bj.Sequential([syn, lif]), inputs, chip_model, next(keys))
    assert z.spikes.shape == z.membrane_cadc.shape == (50, 1, 1)
    assert z.membrane_madc.shape == (50, 1)
    trace = np.asarray(z.membrane_cadc[:, 0, 0])
    assert 70 < trace[:10].mean() < 90  # resting near the leak (80 LSB)
    assert trace.max() > trace[:10].mean() + 10  # the inputs are visible

    # 2. The same in the numerics (hxtorch's mock mode).
    syn_mock = bj.Synapse(1, 1, weight=jnp.full((1, 1), 50.0))
    (mock,) = _run(bj.Sequential([syn_mock, bj.LIF(1)]), inputs, bj.Numeric(), None)
    assert mock.membrane_cadc.shape == (50, 1, 1)
    # unaligned, the y-axes differ (the tutorial's point): chip and numerics disagree
    assert np.abs(np.asarray(mock.membrane_cadc[:, 0, 0]) - trace).max() > 10

    # 3. Align, then compare single-input PSPs in model units.
    alignment = bj.align(chip_model, _tutorial_lif(), key=next(keys))
    # the tutorial's reported 55-70, read with its biased span (test below), plus <= 20 %
    assert 55 <= float(alignment.weight_scale) <= 84
    assert 1 / 50 <= float(alignment.trace_scale) <= 1 / 30
    placement = bj.place(bj.Sequential([syn, _tutorial_lif()]))
    truth = _truth(chip, placement, 125.0, 80.0)[0]  # the model's ground truth
    assert float(alignment.threshold_span) == pytest.approx(truth, rel=0.03)
    # The tutorial's cadc_time_shift=-1 compensates that lead; align finds it exactly.
    assert int(alignment.cadc_time_shift) == -1
    single = jnp.zeros((50, 10, 1)).at[10].set(1.0)
    aligned = alignment.neuron(_tutorial_lif(cadc_time_shift=int(alignment.cadc_time_shift)))
    network = bj.Sequential(
        [bj.Synapse(1, 1, weight=jnp.ones((1, 1)), transform=alignment.transform()), aligned]
    )
    # model weight 1 at the fitted scale (~66) is beyond ±63 on the chip: clipped, and
    # said so (it used to go unwarned); the tolerance below covers the 4 % clip
    with pytest.warns(UserWarning, match=r"1 entries of `weight of synapse 0` exceed ±63"):
        (on_chip,) = _run(network, single, chip_model, next(keys))
    (numerics,) = _run(network, single[:, :1], bj.Numeric(), None)
    chip_psp = np.asarray(on_chip.membrane_cadc[:, :, 0]).mean(1)  # 10 runs, as the tutorial
    model_psp = np.asarray(numerics.membrane_cadc[:, 0, 0])
    peak = model_psp.max()
    assert peak == pytest.approx(0.39, abs=0.02)  # the numerics' PSP of weight 1
    # Stated tolerance: 0.1 model units (10 % of the leak-threshold span) everywhere, and
    # 0.04 in RMS. It covers: the 6-bit weight rounding (<1 %), explicit Euler against
    # exact integration (~5 % of the PSP), CADC sampling at 1.7 us with rounding, and noise
    # (about 1.1 LSB per read over 10 runs: ~0.01).
    error = chip_psp - model_psp
    assert np.abs(error).max() <= 0.1
    assert np.sqrt(np.mean(error**2)) <= 0.04
    assert abs(chip_psp.max() - peak) <= 0.05 * peak + 0.02


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_weight_scale_at_tutorial_settings_is_in_the_reported_range():
    # hxtorch users report 55-70 for leak 80, threshold 125, tau 10 us (calibrated chips),
    # with the tutorial's span reading: linear interpolation, weight 63, 50 steps, each
    # run's maximum averaged. At the CADC's 1.7 us sampling that reads the span low, and
    # `align` (which reads it within 3 %, test below) then gives a larger weight scale:
    # weight_scale = model_slope / (backend_slope * model_span / span), so the tutorial's
    # reading gives `weight_scale * span_tutorial / span`. That is what users report.
    scales = []
    for seed in range(3):
        chip = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(100 + seed)))
        alignment = bj.align(chip, _tutorial_lif(), key=jax.random.PRNGKey(seed))
        syn = bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0))
        network = bj.Sequential([syn, _tutorial_lif()])
        (z,) = _run(network, jnp.ones((50, 10, 1)), chip, jax.random.PRNGKey(10 + seed))
        tutorial_span = float(z.membrane_cadc[:, :, 0].max(0).mean() - alignment.baseline)
        assert tutorial_span < float(alignment.threshold_span)  # the tutorial's reads low
        scale = float(alignment.weight_scale) * tutorial_span / float(alignment.threshold_span)
        scales.append(scale)
    assert all(55 <= s <= 70 for s in scales), scales
    assert len(set(scales)) == 3  # different chips, different scales


# an uncalibrated chip with all noise on, whose CADC samples lead the numerics by 2 steps
UNCALIBRATED = (5, bj.ChipConfig(cadc_time_offset=2 * DT))


def _uncalibrated():
    seed, config = UNCALIBRATED
    chip = bj.ChipInstance.random(jax.random.PRNGKey(seed), bj.MismatchProfile.uncalibrated())
    return chip, bj.ChipModel(chip, config)


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_per_neuron_alignment_follows_the_chip_mismatch():
    # the model's ground truth: span within 3 %; the time offset exact on the mean (per
    # neuron, the uncalibrated chip's spread of time constants moves the rise by < 1 step)
    chip, backend = _uncalibrated()
    lif = bj.LIF(
        4, leak=bj.Mixed(0.0, 80.0), reset=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0)
    )
    alignment = bj.align(backend, lif, key=jax.random.PRNGKey(1), per_neuron=True, repetitions=4)
    assert alignment.trace_offset.shape == alignment.weight_scale.shape == (4,)
    assert np.abs(np.asarray(alignment.cadc_time_shift) + 2).max() <= 1
    circuits = bj.place(bj.Sequential([bj.Synapse(1, 4, key=jax.random.PRNGKey(0)), lif]))
    first = circuits.populations[0].circuits[:, 0]
    expected = chip.cadc_gain[first] * (80 + chip.leak[first]) + chip.cadc_offset[first]
    assert np.allclose(alignment.baseline, expected, atol=1.0)
    truth = _truth(chip, circuits, 125.0, 80.0)
    assert np.abs(np.asarray(alignment.threshold_span) / truth - 1).max() <= 0.03
    assert np.std(np.asarray(alignment.trace_offset)) > 3  # an uncalibrated chip spreads
    mean = bj.align(backend, lif, key=jax.random.PRNGKey(1), repetitions=4)
    assert mean.weight_scale.shape == () and int(mean.cadc_time_shift) == -2
    # plugs into a network: per-neuron scales act on the rows of the weight
    syn = bj.Synapse(2, 4, weight=jnp.ones((4, 2)) * 0.5, transform=alignment.transform())
    expected_hw = bj.round_half_away(
        jnp.clip(np.asarray(alignment.weight_scale)[:, None] * 0.5, -63, 63)
    )
    assert np.array_equal(syn.hardware_weight(), jnp.broadcast_to(expected_hw, (4, 2)))
    neuron = alignment.neuron(lif)
    assert np.array_equal(neuron.trace_scale, alignment.trace_scale)


def test_numeric_backend_gives_the_identity_and_errors_name_the_argument():
    identity = bj.align(bj.Numeric(), _tutorial_lif())
    assert float(identity.trace_scale) == 1.0 and float(identity.trace_offset) == 0.0
    assert float(identity.weight_scale) == 1.0
    backend = bj.ChipModel(bj.ChipInstance.nominal())
    with pytest.raises(ValueError, match="does not fire"):
        bj.align(backend, bj.LI(1, leak=bj.Mixed(0.0, 80.0)))
    with pytest.raises(ValueError, match="`hardware_weights`"):
        bj.align(backend, _tutorial_lif(), hardware_weights=(0.0, 63.0))
    with pytest.raises(ValueError, match="`hardware_weights`"):
        bj.align(backend, _tutorial_lif(), hardware_weights=(100.0,))
    with pytest.raises(ValueError, match="`input_step`"):
        bj.align(backend, _tutorial_lif(), time=10, input_step=20)
    with pytest.raises(TypeError, match="`backend`"):
        bj.align("chip", _tutorial_lif())


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_cadc_time_shift_is_estimated():
    lif = _tutorial_lif()
    nominal = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())
    assert int(bj.align(nominal, lif, repetitions=1).cadc_time_shift) == 0
    late = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless(synaptic_delay=2e-6))
    # a response two steps late is moved two steps earlier: cadc_time_shift = +2
    assert int(bj.align(late, lif, repetitions=1).cadc_time_shift) == 2
    shifted = _tutorial_lif(cadc_time_shift=1)
    assert int(bj.align(late, shifted, repetitions=1).cadc_time_shift) == 2
    # CADC samples leading by 3 steps on top: 2 - 3 = -1, exactly
    config = bj.ChipConfig.noiseless(synaptic_delay=2e-6, cadc_time_offset=3 * DT)
    both = bj.ChipModel(bj.ChipInstance.nominal(), config)
    assert int(bj.align(both, lif, repetitions=1).cadc_time_shift) == -1


def test_fan_in_probes_the_circuits_the_network_will_use():
    # the chip of the test above, where fan-in 1 reads the leaks of circuits 0-3
    chip, backend = _uncalibrated()
    lif = bj.LIF(4, leak=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0))
    quick = dict(per_neuron=True, repetitions=4, time=40, trace_scale=0.02)
    quick.update(hardware_weights=(63.0,), model_weights=(1.0,))
    alignment = bj.align(backend, lif, key=jax.random.PRNGKey(2), fan_in=300, **quick)
    wide = bj.place(bj.Sequential([bj.Synapse(300, 4, key=jax.random.PRNGKey(0)), lif]))
    narrow = bj.place(bj.Sequential([bj.Synapse(1, 4, key=jax.random.PRNGKey(0)), lif]))
    wide_population = next(iter(wide.populations.values()))
    assert wide_population.circuits_per_neuron == bj.circuits_per_neuron(300) == 4
    first = wide_population.circuits[:, 0]
    narrow_first = next(iter(narrow.populations.values())).circuits[:, 0]
    assert not np.array_equal(first, narrow_first)  # joined circuits sit elsewhere
    # the baseline is the leak read at each neuron's first circuit of its 4
    expected = chip.cadc_gain[first] * (80 + chip.leak[first]) + chip.cadc_offset[first]
    assert np.allclose(alignment.baseline, expected, atol=1.0)
    at_narrow = chip.cadc_gain[narrow_first] * (80 + chip.leak[narrow_first])
    at_narrow = at_narrow + chip.cadc_offset[narrow_first]
    assert np.abs(np.asarray(expected - at_narrow)).max() > 3  # so the test can tell


@pytest.mark.parametrize("fan_in", [0, -3, 1.5, True, "8"])
def test_bad_fan_in_is_a_named_error(fan_in):
    backend = bj.ChipModel(bj.ChipInstance.nominal())
    with pytest.raises((ValueError, TypeError), match="fan_in"):
        bj.align(backend, _tutorial_lif(), fan_in=fan_in)


def test_fan_in_beyond_one_run_and_bad_drive_are_named_errors():
    backend = bj.ChipModel(bj.ChipInstance.nominal())
    lif = bj.LIF(65, leak=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0))
    with pytest.raises(ValueError, match="`fan_in` = 784 joins 8 circuits.*at most 64"):
        bj.align(backend, lif, fan_in=784)
    for weights in (0.0, 64.0, (), (63.0, -1.0)):
        with pytest.raises(ValueError, match="`saturating_weight`"):
            bj.align(backend, _tutorial_lif(), saturating_weight=weights)
    with pytest.raises(ValueError, match="did not fire in every run"):  # too weak a drive
        bj.align(backend, _tutorial_lif(), saturating_weight=1.0)


def test_cadc_time_offset_is_validated():
    for value in (float("nan"), "1us", None):
        with pytest.raises(ValueError, match="`cadc_time_offset`"):
            bj.ChipConfig(cadc_time_offset=value)

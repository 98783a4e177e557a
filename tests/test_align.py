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


@eqx.filter_jit
def _run(network, inputs, backend, key):
    return bj.run(network, inputs, backend=backend, dt=DT, key=key)


def test_intro_tutorial_first_three_sections_on_the_chip_model():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(2026))
    chip_model = bj.ChipModel(chip)
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
    assert 55 <= float(alignment.weight_scale) <= 70
    assert 1 / 50 <= float(alignment.trace_scale) <= 1 / 30
    # The tutorial's cadc_time_shift=-1 compensates a timing offset of the real setup;
    # the chip model responds at step k + 1 like the numerics, so it needs none.
    assert int(alignment.cadc_time_shift) == 0
    single = jnp.zeros((50, 10, 1)).at[10].set(1.0)
    aligned = alignment.neuron(_tutorial_lif())
    network = bj.Sequential(
        [bj.Synapse(1, 1, weight=jnp.ones((1, 1)), transform=alignment.transform()), aligned]
    )
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


def test_weight_scale_at_tutorial_settings_is_in_the_reported_range():
    # hxtorch users report 55-70 for leak 80, threshold 125, tau 10 us (calibrated chips)
    scales = []
    for seed in range(3):
        chip = bj.ChipInstance.random(jax.random.PRNGKey(100 + seed))
        alignment = bj.align(bj.ChipModel(chip), _tutorial_lif(), key=jax.random.PRNGKey(seed))
        scales.append(float(alignment.weight_scale))
    assert all(55 <= s <= 70 for s in scales), scales
    assert len(set(scales)) == 3  # different chips, different scales


def test_per_neuron_alignment_follows_the_chip_mismatch():
    chip = bj.ChipInstance.random(jax.random.PRNGKey(5), bj.MismatchProfile.uncalibrated())
    lif = bj.LIF(
        4, leak=bj.Mixed(0.0, 80.0), reset=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0)
    )
    alignment = bj.align(
        bj.ChipModel(chip), lif, key=jax.random.PRNGKey(1), per_neuron=True, repetitions=4
    )
    assert alignment.trace_offset.shape == alignment.weight_scale.shape == (4,)
    assert alignment.cadc_time_shift.shape == (4,)
    circuits = bj.place(bj.Sequential([bj.Synapse(1, 4, key=jax.random.PRNGKey(0)), lif]))
    first = circuits.populations[0].circuits[:, 0]
    expected = chip.cadc_gain[first] * (80 + chip.leak[first]) + chip.cadc_offset[first]
    assert np.allclose(alignment.baseline, expected, atol=1.0)
    assert np.std(np.asarray(alignment.trace_offset)) > 3  # an uncalibrated chip spreads
    mean = bj.align(bj.ChipModel(chip), lif, key=jax.random.PRNGKey(1), repetitions=4)
    assert mean.weight_scale.shape == ()
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


def test_cadc_time_shift_is_estimated():
    lif = _tutorial_lif()
    nominal = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())
    assert int(bj.align(nominal, lif, repetitions=1).cadc_time_shift) == 0
    late = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless(synaptic_delay=2e-6))
    # a response two steps late is moved two steps earlier: cadc_time_shift = +2
    assert int(bj.align(late, lif, repetitions=1).cadc_time_shift) == 2
    shifted = _tutorial_lif(cadc_time_shift=1)
    assert int(bj.align(late, shifted, repetitions=1).cadc_time_shift) == 2

"""Weight transforms to the chip's 6-bit signed weights, and the `Synapse` that uses them."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

import bss2jax as bj
from bss2jax._transforms import check_range


def test_round_half_away_from_zero():
    x = jnp.array([-2.5, -1.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5])
    # hxtorch: +-0.5 then truncation (jnp.round would give half-to-even: 2, 2, 0, ...).
    np.testing.assert_array_equal(bj.round_half_away(x), [-3, -2, -1, 0, 0, 0, 1, 2, 3])


def test_linear_saturating_values_and_straight_through_gradient():
    t = bj.linear_saturating(10.0)
    w = jnp.array([-7.0, -0.26, 0.04, 0.05, 0.3, 6.2, 6.35, 9.0])
    # scale 10: -70 -> clip -63; -2.6 -> -3; 0.4 -> 0; 0.5 -> 1; 3; 62; 63.5 -> clip 63; 63.
    np.testing.assert_array_equal(t.hardware(w), [-63, -3, 0, 1, 3, 62, 63, 63])
    np.testing.assert_array_equal(t.model(w), w)  # numerics use the float weights
    grad = jax.grad(lambda x: jnp.sum(t.hardware(x)))(w)
    # Straight-through rounding: d/dw = scale inside the range, 0 where clipped.
    np.testing.assert_array_equal(grad, [0, 10, 10, 10, 10, 10, 0, 0])
    with pytest.raises(ValueError, match="`scale`"):
        bj.linear_saturating(0.0)


@given(
    weight=arrays(np.float32, (4, 3), elements=st.floats(-1e3, 1e3, width=32)),
    scale=st.floats(0.01, 500.0),
)
def test_hardware_weights_stay_in_range(weight, scale):
    for transform in (bj.linear_saturating(scale), bj.linear_exponential_clamp(quantize=True)):
        hw = np.asarray(transform.hardware(jnp.asarray(weight)))
        assert np.all(np.abs(hw) <= 63)
        np.testing.assert_array_equal(hw, np.round(hw))


def _hxtorch_exponential_clamp(w, cap=1.5, start_weight=61.0):
    # hxtorch-semantics.md 2.6, written out with numpy.
    s = 1.0 / (1.0 - start_weight / 63.0)
    out = np.array(w, dtype=np.float64)
    big = np.abs(out) > start_weight / 63.0 * cap
    out[big] = (
        np.sign(out[big])
        * cap
        * (1.0 - (1.0 / s) * np.exp(-s * (np.abs(out[big]) / cap - (1.0 - 1.0 / s))))
    )
    return out


def test_exponential_clamp_formula_and_smoothness(x64):
    t = bj.linear_exponential_clamp()
    w = np.array([-40.0, -3.0, -1.5, -1.45, -1.0, 0.0, 0.7, 1.45, 1.46, 2.0, 100.0])
    np.testing.assert_allclose(t.model(jnp.asarray(w)), _hxtorch_exponential_clamp(w),
                               rtol=1e-12)  # fmt: skip
    # Identity below start = 61/63 * 1.5 ~ 1.452, saturating towards the cap above.
    np.testing.assert_array_equal(t.model(jnp.asarray(w[3:8])), w[3:8])
    # Never beyond the cap (exp(-31.5 * ...) underflows to exactly the cap for huge |w|).
    assert np.all(np.abs(np.asarray(t.model(jnp.asarray(w)))) <= 1.5)
    assert np.all(np.abs(np.asarray(t.model(jnp.asarray(w[2:10])))) < 1.5)
    np.testing.assert_allclose(t.model(jnp.asarray(100.0)), 1.5, rtol=1e-9)
    # Value and slope are continuous at the start (C1): slope 1 on both sides.
    start = 61.0 / 63.0 * 1.5
    eps = 1e-7
    for x in (start - eps, start + eps):
        np.testing.assert_allclose(jax.grad(t.model)(jnp.float64(x)), 1.0, atol=1e-5)
    np.testing.assert_allclose(t.model(jnp.float64(start + eps)), start + eps, atol=1e-12)


def test_exponential_clamp_quantised_multiples_straight_through(x64):
    t = bj.linear_exponential_clamp(cap=1.5, quantize=True)
    w = jnp.linspace(-3.0, 3.0, 101)
    q = np.asarray(t.model(w)) / (1.5 / 63)
    np.testing.assert_allclose(q, np.round(q), atol=1e-9)  # multiples of cap / 63
    np.testing.assert_array_equal(t.hardware(w), np.round(q))
    # Straight-through: the gradient is that of the unquantised clamp.
    smooth = bj.linear_exponential_clamp(cap=1.5)
    np.testing.assert_allclose(jax.vmap(jax.grad(t.model))(w), jax.vmap(jax.grad(smooth.model))(w))
    with pytest.raises(ValueError, match="`cap`"):
        bj.linear_exponential_clamp(cap=-1.0)
    with pytest.raises(ValueError, match="`start_weight`"):
        bj.linear_exponential_clamp(start_weight=63.0)


def test_check_range_warns_never_clips_silently():
    t = bj.linear_saturating(100.0)
    with pytest.warns(UserWarning, match=r"2 entries of `weight` exceed"):
        check_range(t, jnp.array([0.1, 0.7, -0.9]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_range(t, jnp.array([0.1, 0.6, -0.63]))


# --------------------------------------- Synapse ---------------------------------------
def test_synapse_init_like_torch_linear(getkey):
    key = getkey()
    syn = bj.Synapse(64, 8, key=key)
    assert syn.weight.shape == (8, 64)
    # kaiming_uniform(a = sqrt(5)) on (out, in): bound = 1 / sqrt(in_features).
    bound = 1.0 / math.sqrt(64)
    assert float(jnp.abs(syn.weight).max()) <= bound
    assert float(jnp.abs(syn.weight).max()) > 0.8 * bound
    np.testing.assert_array_equal(bj.Synapse(64, 8, key=key).weight, syn.weight)  # same bits
    assert not np.array_equal(bj.Synapse(64, 8, key=getkey()).weight, syn.weight)


def test_synapse_mask_zeroes_weights_and_gradients(getkey):
    mask = jnp.array([[True, False, True], [False, True, True]])
    syn = bj.Synapse(3, 2, key=getkey(), mask=mask)
    np.testing.assert_array_equal(syn.model_weight() == 0, ~mask)
    np.testing.assert_array_equal(syn.hardware_weight()[~mask], 0)
    x = jnp.ones((4, 3))
    np.testing.assert_allclose(syn(x), x @ syn.model_weight().T)
    grads = jax.grad(lambda w: jnp.sum(bj.Synapse(3, 2, weight=w, mask=mask)(x)))(syn.weight)
    np.testing.assert_array_equal(grads, np.where(mask, 4.0, 0.0))


def test_synapse_errors(getkey):
    with pytest.raises(ValueError, match="`in_features`"):
        bj.Synapse(0, 2, key=getkey())
    with pytest.raises(ValueError, match="`key`"):
        bj.Synapse(3, 2)
    with pytest.raises(ValueError, match=r"`weight`.*\(2, 3\); got \(3, 2\)"):
        bj.Synapse(3, 2, weight=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"`mask`.*\(2, 3\)"):
        bj.Synapse(3, 2, key=getkey(), mask=jnp.ones((3, 2), bool))
    with pytest.raises(TypeError, match="`transform`"):
        bj.Synapse(3, 2, key=getkey(), transform=lambda w: w)

"""Surrogate spike functions: Heaviside forward, analytic derivative backward."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SURROGATES

import bss2jax as bj

# Points away from 0 (the step) and from the kinks of Triangle/Boxcar at |alpha x| = 1;
# with alpha = 4 the kinks lie at +-0.25.
POINTS = np.array([-2.0, -0.6, -0.2, -0.1, -0.013, 0.007, 0.05, 0.2, 0.31, 1.5])
ALPHA = 4.0


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_surrogate_of_the_library_is_public_and_in_the_table():
    # The table is derived from `bj.__all__`; a surrogate the library defines but does not
    # export would escape every parametrised test below (and the users).
    defined = {
        cls
        for cls in _subclasses(bj.AbstractSurrogate)
        if cls.__module__.startswith("bss2jax") and not inspect.isabstract(cls)
    }
    assert defined, "no concrete surrogate found"
    assert defined <= set(ALL_SURROGATES), defined - set(ALL_SURROGATES)
    for cls in defined:
        # Concrete classes are final (equinox's abstract/final rule): compose, do not extend.
        assert not any(issubclass(other, cls) for other in defined - {cls}), cls


# The formulas as the docstrings state them, written out independently of the library.
DOCUMENTED = {
    bj.SuperSpike: lambda x, a: 1.0 / (a * np.abs(x) + 1.0) ** 2,
    bj.Sigmoid: lambda x, a: a * _logistic(a * x) * (1.0 - _logistic(a * x)),
    bj.ArcTan: lambda x, a: (a / 2.0) / (1.0 + (np.pi * a * x / 2.0) ** 2),
    bj.Triangle: lambda x, a: a * np.maximum(0.0, 1.0 - np.abs(a * x)),
    bj.Gaussian: lambda x, a: a / np.sqrt(2.0 * np.pi) * np.exp(-0.5 * (a * x) ** 2),
    bj.Boxcar: lambda x, a: np.where(np.abs(a * x) < 1.0, a / 2.0, 0.0),
}


def _logistic(y):
    return 1.0 / (1.0 + np.exp(-y))


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_derivative_is_the_documented_formula(cls, x64):
    assert cls in DOCUMENTED, f"{cls.__name__}: add its docstring's formula to DOCUMENTED"
    spike = cls()
    assert spike.alpha > 0  # a default sharpness
    x = np.concatenate([POINTS, [0.0]])
    expected = DOCUMENTED[cls](x, spike.alpha)
    np.testing.assert_allclose(spike.derivative(jnp.asarray(x)), expected, rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(jax.grad(spike))(jnp.asarray(x)), expected, rtol=1e-12)


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_derivative_is_an_even_bump_peaked_at_the_step(cls, x64):
    # A surrogate of the step's derivative: non-negative, symmetric, largest at 0 and not
    # increasing away from it; so its relaxation rises monotonically, symmetric about 0.
    spike = cls(alpha=ALPHA)
    x = jnp.linspace(0.0, 3.0, 3001)
    right, left = spike.derivative(x), spike.derivative(-x)
    np.testing.assert_allclose(right, left, rtol=1e-12, atol=1e-15)  # Sigmoid: 1 - s rounds
    assert float(right.min()) >= 0.0 and float(right[0]) > 0.0
    assert float(right[0]) == float(right.max())
    assert np.all(np.diff(np.asarray(right)) <= 0.0)
    up, down = spike.relaxation(x), spike.relaxation(-x)
    assert np.all(np.diff(np.asarray(up)) >= 0.0)
    np.testing.assert_allclose(up + down, 2.0 * spike.relaxation(jnp.float64(0.0)), atol=1e-14)


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_forward_is_strict_heaviside(cls):
    spike = cls(alpha=ALPHA)
    x = jnp.array([-1.0, -1e-7, 0.0, 1e-7, 1.0], jnp.float32)
    # Strict: x == 0 gives no spike (hxtorch's `x > 0`).
    np.testing.assert_array_equal(spike(x), np.array([0.0, 0.0, 0.0, 1.0, 1.0], np.float32))
    assert spike(x).dtype == x.dtype


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_grad_equals_surrogate_formula(cls, x64):
    spike = cls(alpha=ALPHA)
    x = jnp.asarray(POINTS)
    grads = jax.vmap(jax.grad(spike))(x)
    expected = cls.surrogate(x, ALPHA)
    np.testing.assert_allclose(grads, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(grads, spike.derivative(x), rtol=1e-12, atol=0)
    # The derivative is not trivially zero anywhere near the threshold.
    assert float(jax.grad(spike)(jnp.float64(0.01))) > 0


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_grad_equals_grad_of_smooth_relaxation(cls, x64):
    x = jnp.asarray(POINTS)
    spike_grads = jax.vmap(jax.grad(cls(alpha=ALPHA)))(x)
    smooth_grads = jax.vmap(jax.grad(lambda y: cls.smooth(y, ALPHA)))(x)
    np.testing.assert_allclose(spike_grads, smooth_grads, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_jvp_matches_vjp(cls, x64):
    spike = cls(alpha=ALPHA)
    x = jnp.asarray(POINTS)
    tangent = jnp.linspace(-1.0, 2.0, x.size)
    _, forward = jax.jvp(spike, (x,), (tangent,))
    _, pullback = jax.vjp(spike, x)
    (backward,) = pullback(tangent)
    np.testing.assert_allclose(forward, backward, rtol=1e-12)


def test_superspike_is_hxtorchs():
    # hxtorch: backward is grad / (alpha |x| + 1)^2 with alpha = 50 by default.
    spike = bj.SuperSpike()
    assert spike.alpha == 50.0
    x = jnp.array([-0.1, 0.0, 0.02], jnp.float32)
    expected = 1.0 / (50.0 * np.abs(np.asarray(x)) + 1.0) ** 2  # = [1/36, 1, 1/4]
    np.testing.assert_allclose(jax.vmap(jax.grad(spike))(x), expected, rtol=1e-6)


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_surrogate_integrates_to_relaxation(cls, x64):
    # Fundamental theorem: the integral of the surrogate over [-L, L] equals
    # smooth(L) - smooth(-L). Every relaxation goes from 0 to 1 across the step, except
    # SuperSpike's x / (1 + alpha |x|), hxtorch's unscaled fast sigmoid, whose total rise is
    # 2 / alpha; over [-L, L] it is 2 / alpha * (1 - 1 / (1 + alpha L)) (1/x^2 tails).
    length = 200.0
    x = jnp.linspace(-length, length, 2_000_001)
    area = float(jnp.trapezoid(cls.surrogate(x, ALPHA), x))
    rise = float(cls.smooth(length, ALPHA) - cls.smooth(-length, ALPHA))
    assert abs(area - rise) < 1e-5 * rise
    if cls is bj.SuperSpike:
        expected = 2.0 / ALPHA * (1.0 - 1.0 / (1.0 + ALPHA * length))
        assert abs(rise - expected) < 1e-12
    else:
        # ArcTan's tails are the heaviest: 1 - rise = 4 / (pi^2 alpha L) ~ 5e-4.
        assert abs(rise - 1.0) < 1e-3


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_no_gradient_to_alpha(cls):
    # alpha only shapes the backward pass; the forward step does not depend on it.
    grad = jax.grad(lambda a: cls(alpha=a)(jnp.float32(0.01)))(jnp.float32(ALPHA))
    assert float(grad) == 0.0


@pytest.mark.parametrize("cls", ALL_SURROGATES)
def test_jit_and_vmap(cls):
    spike = cls(alpha=ALPHA)
    x = jnp.asarray(POINTS, jnp.float32).reshape(2, 5)
    g = jax.grad(lambda y: jnp.sum(spike(y)))
    np.testing.assert_array_equal(jax.jit(g)(x), g(x))
    np.testing.assert_allclose(jax.vmap(g)(x), g(x), rtol=1e-6)

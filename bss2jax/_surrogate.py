"""Spike functions: a Heaviside step forward, a surrogate derivative backward.

Each surrogate is a `jax.custom_jvp` whose tangent is the analytic derivative of a smooth
(or piecewise linear) relaxation of the step; the tests check the two against each other.
`alpha` sets the sharpness: larger is closer to the step.
"""

from __future__ import annotations

import abc
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ._typing import FloatScalar


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _spike(cls, x, alpha):
    del cls, alpha
    return (x > 0).astype(x.dtype)


@_spike.defjvp
def _spike_jvp(cls, primals, tangents):
    x, alpha = primals
    x_dot, _ = tangents
    return _spike(cls, x, alpha), cls.surrogate(x, alpha).astype(x.dtype) * x_dot


class AbstractSurrogate(eqx.Module):
    """Maps `v - threshold` (model units) to spikes: `x > 0` forward, a surrogate backward.

    Subclasses define the static `surrogate(x, alpha)` (the derivative used backward) and
    `smooth(x, alpha)` (a relaxation of the step whose derivative it is; tests and plots).
    The six of bss2jax: `SuperSpike` (hxtorch's, the default), `Sigmoid`, `ArcTan`,
    `Triangle`, `Gaussian`, `Boxcar`.

    ```python
    lif = bj.LIF(10, surrogate=bj.SuperSpike(alpha=50.0))
    lif = bj.LIF(10, surrogate=bj.ArcTan(alpha=20.0))
    ```
    """

    alpha: eqx.AbstractVar[FloatScalar]

    @staticmethod
    @abc.abstractmethod
    def surrogate(x: jax.Array, alpha) -> jax.Array: ...

    @staticmethod
    @abc.abstractmethod
    def smooth(x: jax.Array, alpha) -> jax.Array: ...

    def derivative(self, x: jax.Array) -> jax.Array:
        """The surrogate derivative at `x`."""
        return type(self).surrogate(x, self.alpha)

    def relaxation(self, x: jax.Array) -> jax.Array:
        """The smooth relaxation of the step at `x`."""
        return type(self).smooth(x, self.alpha)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _spike(type(self), x, jnp.asarray(self.alpha, x.dtype))


def _superspike(x, alpha):
    return 1.0 / (alpha * jnp.abs(x) + 1.0) ** 2


def _superspike_relaxation(x, alpha):
    return x / (1.0 + alpha * jnp.abs(x))


class SuperSpike(AbstractSurrogate):
    """SuperSpike / fast sigmoid, hxtorch's only surrogate: `1 / (alpha |x| + 1)^2`.

    Unscaled like hxtorch's (the peak is 1, the area `2 / alpha`). Default `alpha = 50`.
    """

    alpha: FloatScalar = 50.0
    surrogate = staticmethod(_superspike)
    smooth = staticmethod(_superspike_relaxation)


def _sigmoid(x, alpha):
    s = jax.nn.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


def _sigmoid_relaxation(x, alpha):
    return jax.nn.sigmoid(alpha * x)


class Sigmoid(AbstractSurrogate):
    """Logistic surrogate: `alpha * s * (1 - s)` with `s = sigmoid(alpha x)`."""

    alpha: FloatScalar = 20.0
    surrogate = staticmethod(_sigmoid)
    smooth = staticmethod(_sigmoid_relaxation)


def _arctan(x, alpha):
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def _arctan_relaxation(x, alpha):
    return jnp.arctan(math.pi / 2.0 * alpha * x) / math.pi + 0.5


class ArcTan(AbstractSurrogate):
    """Arc-tangent surrogate: `(alpha / 2) / (1 + (pi alpha x / 2)^2)`."""

    alpha: FloatScalar = 20.0
    surrogate = staticmethod(_arctan)
    smooth = staticmethod(_arctan_relaxation)


def _triangle(x, alpha):
    return alpha * jnp.maximum(0.0, 1.0 - jnp.abs(alpha * x))


def _triangle_relaxation(x, alpha):
    y = jnp.clip(alpha * x, -1.0, 1.0)
    return 0.5 + y - y * jnp.abs(y) / 2.0


class Triangle(AbstractSurrogate):
    """Triangular surrogate: `alpha * max(0, 1 - |alpha x|)`."""

    alpha: FloatScalar = 10.0
    surrogate = staticmethod(_triangle)
    smooth = staticmethod(_triangle_relaxation)


def _gaussian(x, alpha):
    return alpha / math.sqrt(2.0 * math.pi) * jnp.exp(-0.5 * (alpha * x) ** 2)


def _gaussian_relaxation(x, alpha):
    return 0.5 * (1.0 + jax.scipy.special.erf(alpha * x / math.sqrt(2.0)))


class Gaussian(AbstractSurrogate):
    """Gaussian surrogate: the normal density with standard deviation `1 / alpha`."""

    alpha: FloatScalar = 10.0
    surrogate = staticmethod(_gaussian)
    smooth = staticmethod(_gaussian_relaxation)


def _boxcar(x, alpha):
    return jnp.where(jnp.abs(alpha * x) < 1.0, alpha / 2.0, 0.0)


def _boxcar_relaxation(x, alpha):
    return jnp.clip((alpha * x + 1.0) / 2.0, 0.0, 1.0)


class Boxcar(AbstractSurrogate):
    """Straight-through window: `alpha / 2` for `|x| < 1 / alpha`, else 0."""

    alpha: FloatScalar = 5.0
    surrogate = staticmethod(_boxcar)
    smooth = staticmethod(_boxcar_relaxation)


ALL_SURROGATES = (SuperSpike, Sigmoid, ArcTan, Triangle, Gaussian, Boxcar)

"""The memory-lean CUBA integrator (`bss2jax.kernels.cuba.lean`): values and gradients
equal to the reference scan's, with and without a per-segment projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bss2jax.kernels import cuba, projection
from bss2jax.kernels.cuba import lean
from helpers import tree_allclose

DT = 1e-6


@jax.custom_jvp
def _spike(x):
    return (x > 0).astype(x.dtype)


@_spike.defjvp
def _spike_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return _spike(x), x_dot / (50.0 * jnp.abs(x) + 1.0) ** 2


def _params(flags):
    values = dict(
        leak=0.0,
        reset=-0.1,
        threshold=1.0,
        tau_mem=6e-6,
        tau_syn=5e-6,
        membrane_capacitance=10e-6,
        refractory_time=2e-6,
        exponential_slope=0.2,
        exponential_threshold=0.8,
        subthreshold_adaptation_strength=0.1,
        spike_triggered_adaptation_increment=0.05,
        tau_adap=20e-6,
    )
    return cuba.CubaParams(**{k: jnp.asarray(v, jnp.float64) for k, v in values.items()})


def _loss(integrate, params, flags, x, **kwargs):
    out = integrate(params, flags, x, dt=DT, spike_fn=_spike, **kwargs)
    time = out.membrane.shape[0]
    weights = jnp.arange(time, dtype=jnp.float64)[:, None, None]
    loss = jnp.sum(out.membrane**2 * weights) + jnp.sum(out.current)
    if out.spikes is not None:
        loss = loss + jnp.sum(out.spikes * weights)
    if out.adaptation is not None:
        loss = loss + jnp.sum(out.adaptation)
    return loss


FLAGS = [
    cuba.CubaFlags(),
    cuba.CubaFlags(fire=False, refractory=False),
    cuba.CubaFlags(exact=True),
    cuba.CubaFlags(exponential=True, subthreshold_adaptation=True, spike_triggered_adaptation=True),
]


CASES = [(flags, 4) for flags in FLAGS] + [(FLAGS[0], 1)]


# segment 4 of 23 steps leaves a tail segment of 3 steps
@pytest.mark.parametrize("flags,segment", CASES)
def test_equal_to_reference(x64, getkey, flags, segment):
    params = _params(flags)
    x = 0.6 * jax.random.uniform(getkey(), (23, 3, 5), jnp.float64)
    reference = jax.value_and_grad(lambda p, x: _loss(cuba.integrate, p, flags, x), argnums=(0, 1))(
        params, x
    )
    got = jax.jit(
        jax.value_and_grad(
            lambda p, x: _loss(lean.integrate, p, flags, x, segment=segment), argnums=(0, 1)
        )
    )(params, x)
    assert reference[0] > 0
    assert tree_allclose(got, reference, rtol=1e-10, atol=1e-12)


def test_hardware_injection(x64, getkey):
    flags = cuba.CubaFlags()
    params = _params(flags)
    x = 0.6 * jax.random.uniform(getkey(), (12, 2, 4), jnp.float64)
    hardware = cuba.HardwareStep(
        membrane=jax.random.uniform(getkey(), (12, 2, 4), jnp.float64),
        spikes=(jax.random.uniform(getkey(), (12, 2, 4)) < 0.2).astype(jnp.float64),
    )

    def loss(integrate, **kwargs):
        return jax.value_and_grad(
            lambda x: _loss(
                lambda *a, **k: integrate(*a, hardware, **k), params, flags, x, **kwargs
            )
        )(x)

    assert tree_allclose(loss(lean.integrate, segment=5), loss(cuba.integrate))


def test_events_projection_inside(x64, getkey):
    flags = cuba.CubaFlags()
    params = _params(flags)
    spikes = (np.random.default_rng(0).random((20, 3, 30)) < 0.1).astype(np.float64)
    events = projection.from_numpy(spikes, by_input=False)
    weight = 2.0 * jax.random.normal(getkey(), (6, 30), jnp.float64)

    def lean_loss(w):
        def project(indices):
            return projection.project(projection.Events(indices, None, 30), w, method="events")

        return _loss(lean.integrate, params, flags, events.indices, segment=6, project=project)

    def reference_loss(w):
        return _loss(cuba.integrate, params, flags, jnp.asarray(spikes) @ w.T)

    expected = jax.value_and_grad(reference_loss)(weight)
    assert tree_allclose(jax.jit(jax.value_and_grad(lean_loss))(weight), expected)


def test_choice(x64):
    assert not lean.uses_lean((100, 32, 256))
    assert lean.uses_lean((10_000, 32, 256))
    assert lean.uses_lean((10, 1, 1), "lean")
    assert not lean.uses_lean((10_000, 32, 256), "reference")
    with pytest.raises(ValueError, match="method"):
        lean.uses_lean((1, 1, 1), "fast")
    flags = cuba.CubaFlags()
    x = jnp.full((10, 2, 3), 0.3, jnp.float64)
    a = lean.integrate_auto(_params(flags), flags, x, dt=DT, spike_fn=_spike, method="lean")
    b = cuba.integrate(_params(flags), flags, x, dt=DT, spike_fn=_spike)
    assert tree_allclose(a, b)


def test_default_segment():
    assert lean.default_segment(10_000) == 100
    assert lean.default_segment(1000) in (25, 40)
    assert lean.default_segment(1) == 1
    assert lean.default_segment(97) == 10  # prime: a tail segment


def test_keep_projects_each_segment(x64, getkey):
    """`keep`: the hidden spikes projected onto a readout segment by segment (the
    `(time, batch, neurons)` spikes never whole) give the value and gradients of projecting
    the reference scan's spikes."""
    flags = cuba.CubaFlags()
    params = _params(flags)
    x = 0.6 * jax.random.normal(getkey(), (37, 3, 16), jnp.float64)  # 6 segments of 6 + 1
    readout = jax.random.normal(getkey(), (5, 16), jnp.float64)

    def reference(x, readout):
        out = cuba.integrate(params, flags, x, dt=DT, spike_fn=_spike)
        return out.spikes @ readout.T

    def kept(x, readout):
        keep = lambda out: out.spikes @ readout.T  # noqa: E731
        return lean.integrate(params, flags, x, dt=DT, spike_fn=_spike, keep=keep)

    value, pullback = jax.vjp(kept, x, readout)
    expected, expected_pullback = jax.vjp(reference, x, readout)
    assert float(expected.std()) > 0  # the hidden neurons spike
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)
    cotangent = jax.random.normal(getkey(), value.shape, jnp.float64)
    got = pullback(cotangent)
    assert tree_allclose(got, expected_pullback(cotangent), rtol=1e-10, atol=1e-12)

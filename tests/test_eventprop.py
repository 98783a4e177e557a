"""EventProp (`bj.run(..., gradient="eventprop")`): the gradients of spike times.

The references are the continuous-time model the grid approximates: the membrane of a LIF
with leak 0 and current-based synapses is `V(t) = sum_k w_k K(t - t_k)` with
`K(t) = tau_m tau_s / (C (tau_m - tau_s)) (exp(-t / tau_m) - exp(-t / tau_s))`, the spike
time `t*` its root at the threshold, and by the implicit function theorem
`dt*/dw_k = -K(t* - t_k) / V'(t*)` (closed form at the precise root). EventProp integrates
the adjoint on the grid (error O(dt)); where no spike is seen by the loss the adjoint is the
grid's exact transpose and equals the surrogate path's gradient to rounding.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import bss2jax as bj
from bss2jax._eventprop import EventProp, WithGradient

TAU_MEM, TAU_SYN, CAPACITANCE, THRESHOLD = 8e-6, 4e-6, 10e-6, 1.0
LI_TAU_MEM, LI_TAU_SYN = 10e-6, 5e-6


def kernel(t, tau_mem=TAU_MEM, tau_syn=TAU_SYN):
    """The membrane of a leak-0 neuron after a unit weight at t = 0 (and its slope)."""
    t = np.asarray(t, float)
    scale = tau_mem * tau_syn / (CAPACITANCE * (tau_mem - tau_syn))
    value = scale * (np.exp(-t / tau_mem) - np.exp(-t / tau_syn))
    slope = scale * (np.exp(-t / tau_syn) / tau_syn - np.exp(-t / tau_mem) / tau_mem)
    return np.where(t > 0, value, 0.0), np.where(t > 0, slope, 0.0)


def first_crossing(weights, times, horizon=40e-6):
    """The precise first threshold crossing of `sum w K(t - t_k)` (Brent on a bracket)."""

    def excess(t):
        return sum(w * kernel(t - s)[0] for w, s in zip(weights, times, strict=True)) - THRESHOLD

    grid = np.linspace(0.0, horizon, 40001)
    above = np.nonzero(excess(grid) > 0)[0]
    assert above.size, "the test's neuron must fire"
    i = above[0]
    return brentq(excess, grid[i - 1], grid[i], xtol=1e-20, rtol=1e-15)


def lif(size, integrator="exact", refractory_time=1e-3, **kwargs):
    """A leak-0 LIF; the long refractory time leaves one spike per neuron."""
    return bj.LIF(
        size,
        leak=0.0,
        reset=0.0,
        threshold=THRESHOLD,
        tau_mem=TAU_MEM,
        tau_syn=TAU_SYN,
        membrane_capacitance=CAPACITANCE,
        refractory_time=refractory_time,
        integrator=integrator,
        **kwargs,
    )


def spike_inputs(times, dt, steps):
    x = np.zeros((steps, 1, len(times)))
    for j, t in enumerate(times):
        x[int(round(t / dt)), 0, j] = 1.0
    return jnp.asarray(x)


@pytest.mark.parametrize(
    ("weights", "times", "integrator"),
    [
        ([4.0, 5.0], [0.0, 3e-6], "exact"),
        pytest.param([8.0], [0.0], "exact", marks=pytest.mark.slow),
        pytest.param([8.0], [0.0], "euler", marks=pytest.mark.slow),
        pytest.param([4.0, 5.0], [0.0, 3e-6], "euler", marks=pytest.mark.slow),
        pytest.param([7.0, -2.0], [0.0, 1e-6], "exact", marks=pytest.mark.slow),
    ],
)
def test_spike_time_gradient_matches_the_closed_form(weights, times, integrator, x64):
    """d t*/d w of one neuron with one or two inputs: the loss `sum_t t dt z_t` is the
    spike time (one spike), EventProp's gradient the continuous one to O(dt)."""
    crossing = first_crossing(weights, times)
    slope = sum(w * kernel(crossing - s)[1] for w, s in zip(weights, times, strict=True))
    expected = np.array([-kernel(crossing - s)[0] / slope for s in times])
    dt = 2.5e-8
    steps = int(round(8e-6 / dt))
    x = spike_inputs(times, dt, steps)
    clock = jnp.arange(steps, dtype=jnp.float64) * dt

    def spike_time(w):
        net = bj.Sequential([bj.Synapse(len(w), 1, weight=w[None]), lif(1, integrator)])
        (hidden,) = bj.run(net, x, dt=dt, gradient="eventprop")
        return jnp.sum(hidden.spikes[:, 0, 0] * clock), jnp.sum(hidden.spikes)

    (value, count), grad = jax.value_and_grad(spike_time, has_aux=True)(jnp.asarray(weights))
    assert float(count) == 1.0 and abs(float(value) - crossing) <= dt
    # O(dt) on the grid: within 3 % at dt = tau_syn / 160
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=3e-2)


def after_reset(t, t1, w):
    """The membrane after a reset to 0 at `t1` of a leak-0 neuron whose current
    `w exp(-t / tau_syn)` started at 0 (the current runs on through the reset)."""
    r = 1 / TAU_MEM - 1 / TAU_SYN
    return w / CAPACITANCE * np.exp(-t / TAU_MEM) * (np.exp(r * t) - np.exp(r * t1)) / r


def two_spikes(w, refractory=0.0):
    """The first two spike times of that neuron (precise roots); the membrane held at the
    reset for `refractory` seconds after the first (released at `t1 + refractory`)."""
    t1 = first_crossing([w], [0.0])
    release = t1 + refractory
    grid = np.linspace(release, release + 20e-6, 20001)[1:]
    i = np.nonzero(after_reset(grid, release, w) > THRESHOLD)[0][0]
    t2 = brentq(lambda t: after_reset(t, release, w) - THRESHOLD, grid[i - 1], grid[i], xtol=1e-20)
    return t1, t2


@pytest.mark.parametrize("refractory", [0.0, 1e-6])
def test_reset_term_two_spikes(refractory, x64):
    """The jump's reset term (`vdot_plus * lambda_v`): the loss `t1 + t2` of a neuron that
    fires twice depends on `w` also through the reset at `t1` (and, with a refractory
    hold, the release at its end: `vdot_plus` is the slope there, with the current of
    the release); its derivative by central differences of the precise roots,
    EventProp's to O(dt). (With the slope at the spike instead of the release, the
    refractory case is off by 12 %.)"""
    w, h = 12.0, 1e-4
    t1, t2 = two_spikes(w, refractory)
    expected = (sum(two_spikes(w + h, refractory)) - sum(two_spikes(w - h, refractory))) / (2 * h)
    dt = 2.5e-8
    steps = int(round((t2 + 0.3e-6) / dt))
    x = spike_inputs([0.0], dt, steps)
    clock = jnp.arange(steps, dtype=jnp.float64) * dt

    def spike_times(weight):
        synapse = bj.Synapse(1, 1, weight=weight[None])
        net = bj.Sequential([synapse, lif(1, refractory_time=refractory)])
        (hidden,) = bj.run(net, x, dt=dt, gradient="eventprop")
        return jnp.sum(hidden.spikes[:, 0, 0] * clock), jnp.sum(hidden.spikes)

    (value, count), grad = jax.value_and_grad(spike_times, has_aux=True)(jnp.asarray([w]))
    assert float(count) == 2.0 and abs(float(value) - (t1 + t2)) <= 3 * dt  # each on the step after
    np.testing.assert_allclose(float(grad[0]), expected, rtol=2e-2)


@pytest.mark.slow
def test_spike_time_gradient_converges_with_dt(x64):
    """The error of EventProp's d t*/d w shrinks with the grid step (O(dt))."""
    weights, times = [8.0], [0.0]
    crossing = first_crossing(weights, times)
    expected = -kernel(crossing)[0] / (weights[0] * kernel(crossing)[1])

    def error(dt):
        steps = int(round(12e-6 / dt))
        x = spike_inputs(times, dt, steps)
        clock = jnp.arange(steps, dtype=jnp.float64) * dt

        def spike_time(w):
            net = bj.Sequential([bj.Synapse(1, 1, weight=w[None]), lif(1)])
            (hidden,) = bj.run(net, x, dt=dt, gradient="eventprop")
            return jnp.sum(hidden.spikes[:, 0, 0] * clock)

        return abs(float(jax.grad(spike_time)(jnp.asarray(weights))[0]) / expected - 1)

    coarse, fine = error(2e-7), error(1e-8)
    assert fine < 0.2 * coarse and fine < 2e-3


# A 2 -> 2 LIF -> 1 LI network, one spike per hidden neuron, against its continuous model.
W_HIDDEN = np.array([[8.0, 3.0], [4.0, 6.0]])
W_OUT = np.array([[1.0, -0.5]])
INPUT_TIMES = [0.0, 2e-6]
HORIZON = 20e-6


def continuous_loss(w_hidden, w_out, dt):
    """`dt * sum_t V_out(t dt)^2` of the continuous model (spike times by root finding)."""
    spikes = [first_crossing(row, INPUT_TIMES) for row in w_hidden]
    clock = np.arange(int(round(HORIZON / dt))) * dt
    v_out = sum(
        w * kernel(clock - s, LI_TAU_MEM, LI_TAU_SYN)[0]
        for w, s in zip(w_out[0], spikes, strict=True)
    )
    return dt * np.sum(v_out**2)


def grid_network(w_hidden, w_out):
    return bj.Sequential(
        [
            bj.Synapse(2, 2, weight=w_hidden),
            lif(2),
            bj.Synapse(2, 1, weight=w_out),
            bj.LI(
                1,
                leak=0.0,
                tau_mem=LI_TAU_MEM,
                tau_syn=LI_TAU_SYN,
                membrane_capacitance=CAPACITANCE,
                integrator="exact",
            ),
        ]
    )


@pytest.mark.parametrize(
    ("dt", "rtol"), [(2.5e-8, 5e-2), pytest.param(1e-8, 2e-2, marks=pytest.mark.slow)]
)
def test_network_gradient_matches_finite_differences_of_the_continuous_model(dt, rtol, x64):
    """LIF -> LI, a smooth loss on the readout: EventProp's gradients of both weight
    matrices against central differences of the continuous model (no spike appears or
    disappears within the steps); the hidden weights act only through spike times."""
    x = spike_inputs(INPUT_TIMES, dt, int(round(HORIZON / dt)))

    def loss(weights):
        hidden, out = bj.run(grid_network(*weights), x, dt=dt, gradient="eventprop")
        return dt * jnp.sum(out.membrane_cadc**2), jnp.sum(hidden.spikes, axis=(0, 1))

    grads, counts = jax.grad(loss, has_aux=True)((jnp.asarray(W_HIDDEN), jnp.asarray(W_OUT)))
    np.testing.assert_array_equal(counts, [1.0, 1.0])
    for which, base in enumerate((W_HIDDEN, W_OUT)):
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            h = 1e-5 * max(1.0, abs(base[index]))
            args = [W_HIDDEN.copy(), W_OUT.copy()]
            args[which][index] += h
            up = continuous_loss(*args, dt)
            args[which][index] -= 2 * h
            numeric[index] = (up - continuous_loss(*args, dt)) / (2 * h)
        np.testing.assert_allclose(np.asarray(grads[which]), numeric, rtol=rtol)
    # neuron 0 fires before input 1 arrives: that weight has no effect, all others do
    hidden = np.abs(np.asarray(grads[0]))
    assert hidden[0, 1] == 0 and np.all(hidden[[0, 1, 1], [0, 0, 1]] > 0)


def random_inputs(rng, steps=30, batch=2, features=3, rate=0.3):
    return jnp.asarray((rng.uniform(size=(steps, batch, features)) < rate).astype(np.float64))


def test_subthreshold_losses_equal_the_surrogate_gradient(x64):
    """Without spikes in what the loss sees the two gradients are the same maths: a loss on
    a LIF's membrane and current below threshold, and on an LI readout (any spikes of a
    hidden layer reach it through weights whose gradients both compute alike)."""
    rng = np.random.default_rng(0)
    x = random_inputs(rng)
    weight = jnp.asarray(rng.uniform(0.0, 0.3, size=(4, 3)))

    def quiet(w, gradient):
        net = bj.Sequential([bj.Synapse(3, 4, weight=w), lif(4, "euler")])
        (obs,) = bj.run(net, x, gradient=gradient)
        value = jnp.sum(obs.membrane_cadc**2) + jnp.sum(jnp.sin(obs.current))
        return value, jnp.sum(obs.spikes)

    @jax.jit
    def both(w):
        (_, count), surrogate = jax.value_and_grad(quiet, has_aux=True)(w, "surrogate")
        return count, surrogate, jax.grad(quiet, has_aux=True)(w, "eventprop")[0]

    count, surrogate, eventprop = both(weight)
    assert float(count) == 0.0
    np.testing.assert_allclose(eventprop, surrogate, rtol=1e-12, atol=1e-15)
    # and both are the grid's derivative: a central difference in float64
    direction = jnp.asarray(rng.normal(size=weight.shape))
    h = 1e-6
    value = jax.jit(lambda w: quiet(w, "surrogate")[0])
    numeric = (value(weight + h * direction) - value(weight - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(surrogate * direction), numeric, rtol=1e-6)

    def readout(weights, gradient):
        _, out = bj.run(grid_network(*weights), x[:, :, :2], gradient=gradient)
        return jnp.sum(out.membrane_cadc**2)

    weights = (jnp.asarray(W_HIDDEN), jnp.asarray(W_OUT))
    np.testing.assert_allclose(
        jax.grad(readout)(weights, "eventprop")[1],
        jax.grad(readout)(weights, "surrogate")[1],
        rtol=1e-12,
    )


def small_network(seed=1):
    rng = np.random.default_rng(seed)
    return bj.Sequential(
        [
            bj.Synapse(3, 5, weight=jnp.asarray(rng.uniform(0.5, 4.0, size=(5, 3)))),
            lif(5, refractory_time=1e-6),
            bj.Synapse(5, 2, weight=jnp.asarray(rng.normal(size=(2, 5)))),
            bj.LI(2, leak=0.0, membrane_capacitance=CAPACITANCE),
        ]
    )


def readout_loss(net, x, gradient="eventprop", backend=None):
    backend = bj.Numeric() if backend is None else backend
    hidden, out = bj.run(net, x, gradient=gradient, backend=backend, key=jax.random.key(0))
    return jnp.sum(jnp.max(out.membrane_cadc, axis=0) ** 2) + 0.1 * jnp.sum(hidden.spikes)


@pytest.mark.slow  # 20-90 s: kept out of the 15-minute default suite
def test_forward_is_unchanged_and_jit_vmap_invariant(x64):
    """The forward is the surrogate run's bit for bit; jit, and vmap over samples, give the
    gradients of the plain call."""
    x = random_inputs(np.random.default_rng(2), steps=25, batch=2)
    net = small_network()
    for a, b in zip(bj.run(net, x), bj.run(net, x, gradient="eventprop"), strict=True):
        for name in ("spikes", "membrane_cadc", "current"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    grad = eqx.filter_grad(readout_loss)(net, x)
    jitted = eqx.filter_jit(eqx.filter_grad(readout_loss))(net, x)
    per_sample = eqx.filter_vmap(
        lambda sample: eqx.filter_grad(readout_loss)(net, sample[:, None]), in_axes=1
    )(x)
    leaves = (jax.tree.leaves(grad), jax.tree.leaves(jitted), jax.tree.leaves(per_sample))
    for g, j, v in zip(*leaves, strict=True):
        np.testing.assert_allclose(g, j, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g, jnp.sum(v, axis=0), rtol=1e-10, atol=1e-13)
    assert float(jnp.sum(jnp.abs(grad.layers[0].weight))) > 0


@pytest.mark.slow
def test_compact_storage_equals_dense_and_overflow_is_nan(x64):
    """`EventProp(max_spikes=K)` stores K events: the same gradient while they fit, NaN
    (never a silently wrong value) when the run fires more."""
    x = random_inputs(np.random.default_rng(3), steps=40, batch=3)
    net = small_network()
    spikes = int(jnp.sum(bj.run(net, x)[0].spikes))
    assert spikes > 2
    dense = eqx.filter_grad(readout_loss)(net, x, EventProp())
    compact = eqx.filter_grad(readout_loss)(net, x, EventProp(max_spikes=spikes))
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(compact), strict=True):
        np.testing.assert_array_equal(a, b)
    wrapped = eqx.filter_grad(readout_loss)(
        net, x, "surrogate", WithGradient(bj.Numeric(), EventProp())
    )
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(wrapped), strict=True):
        np.testing.assert_array_equal(a, b)
    short = eqx.filter_grad(readout_loss)(net, x, EventProp(max_spikes=spikes - 1))
    assert np.all(np.isnan(np.asarray(short.layers[0].weight)))


def chip_network(hidden=8):
    """hxtorch's Yin-Yang network (25 inputs -> LIF -> 3 LI), chip values included."""
    config = bj.yinyang.YinYangConfig(hidden=hidden)
    return bj.yinyang.yin_yang_network(config, key=jax.random.key(0))


class Observed(bj.AbstractBackend):
    """A backend that observed `spikes` for population 0 (nothing else)."""

    spikes: jax.Array

    def observe(self, network, inputs, *, dt, key):
        del network, inputs, dt, key
        return bj.Recording({0: bj.PopulationRecording(spikes=self.spikes)})


def test_the_adjoint_jumps_at_the_observed_spikes(x64):
    """Injected spikes are the forward and the places of EventProp's jumps: the numerics'
    own spikes, injected, give the numerics' gradient; one spike moved gives another."""
    x = random_inputs(np.random.default_rng(5), steps=30, batch=2)
    net = small_network()
    own = bj.run(net, x)[0].spikes
    assert float(jnp.sum(own)) > 2
    first = np.argwhere(np.asarray(own) > 0)[0]
    moved = own.at[tuple(first)].set(0.0).at[(first[0] + 3, *first[1:])].set(1.0)

    @jax.jit
    def grads(net):
        return [
            eqx.filter_grad(readout_loss)(net, x, "eventprop", backend)
            for backend in (bj.Numeric(), Observed(own), Observed(moved))
        ]

    numeric, injected, shifted = (np.asarray(g.layers[0].weight) for g in grads(net))
    np.testing.assert_allclose(injected, numeric, rtol=1e-12, atol=1e-15)
    assert not np.allclose(shifted, numeric, rtol=1e-3)
    np.testing.assert_array_equal(bj.run(net, x, backend=Observed(moved))[0].spikes, moved)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*will be clipped to ±63 on the chip")  # random weights
def test_chip_model_backend_uses_the_observed_spikes():
    """With `ChipModel` the forward is the chip's observation (as with the surrogate) and
    EventProp's jumps sit at the chip's spikes: the gradient is finite and differs from
    the numerics' run of the same network."""
    backend = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(0)))
    rng = np.random.default_rng(4)
    x = jnp.asarray((rng.uniform(size=(38, 2, 25)) < 0.1).astype(np.float32))
    net = chip_network()
    key = jax.random.key(0)
    observed = bj.run(net, x, backend=backend, key=key)
    evented = bj.run(net, x, backend=backend, key=key, gradient="eventprop")
    for a, b in zip(observed, evented, strict=True):
        np.testing.assert_array_equal(a.membrane_cadc, b.membrane_cadc)
    np.testing.assert_array_equal(observed[0].spikes, evented[0].spikes)
    assert float(jnp.sum(observed[0].spikes)) > 0
    grads = eqx.filter_jit(
        lambda net: [
            eqx.filter_grad(readout_loss)(net, x, "eventprop", b) for b in (backend, bj.Numeric())
        ]
    )(net)
    on_chip, numeric = (np.asarray(g.layers[0].weight) for g in grads)
    assert np.all(np.isfinite(on_chip)) and np.any(on_chip != 0)
    assert not np.allclose(on_chip, numeric)


def test_errors_name_the_argument():
    x = jnp.zeros((5, 1, 3))
    net = small_network()
    with pytest.raises(ValueError, match="`gradient` must be"):
        bj.run(net, x, gradient="exact")
    with pytest.raises(ValueError, match="`max_spikes` must be"):
        EventProp(max_spikes=0)
    adex = bj.Sequential(
        [bj.Synapse(3, 2, weight=jnp.ones((2, 3))), bj.AdEx(2, spike_triggered_adaptation=True)]
    )
    with pytest.raises(ValueError, match="covers LIF"):
        bj.run(adex, x, gradient="eventprop")
    wrapped = WithGradient(bj.Numeric(), EventProp())
    with pytest.raises(ValueError, match="disagrees"):
        bj.run(net, x, backend=wrapped, gradient=EventProp(max_spikes=3))
    with pytest.raises(TypeError, match="`gradient` must be a bj.EventProp"):
        WithGradient(bj.Numeric(), "eventprop")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*will be clipped to ±63 on the chip")  # random weights
def test_a_backend_that_differentiates_itself_is_refused():
    through = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(0)), gradient="through")
    with pytest.raises(ValueError, match="inject mode"):
        bj.run(
            chip_network(),
            jnp.zeros((5, 1, 25)),
            backend=through,
            gradient="eventprop",
            key=jax.random.key(0),
        )

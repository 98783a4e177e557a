"""`run`: shapes, transformations (jit, vmap, vmap of grad), no retracing, gradient
checks on sub-threshold dynamics, and named errors for bad arguments."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_BACKENDS, ALL_NEURON_TYPES, model_space_neuron, tree_allclose
from jax.test_util import check_grads

import bss2jax as bj

DT = 1e-6


def _net(key, neuron_cls=bj.LIF, n_in=5, n_hidden=4, n_out=3):
    k1, k2 = jax.random.split(key)
    return bj.Sequential(
        [
            bj.Synapse(n_in, n_hidden, weight=jax.random.uniform(k1, (n_hidden, n_in)) * 2.0),
            model_space_neuron(neuron_cls, n_hidden),
            bj.Synapse(n_hidden, n_out, key=k2),
            bj.LI(n_out, leak=0.0),
        ]
        if neuron_cls is not bj.LI
        else [bj.Synapse(n_in, n_out, key=k1), bj.LI(n_out, leak=0.0)]
    )


def _inputs(key, time=20, batch=3, n_in=5, p=0.3):
    return (jax.random.uniform(key, (time, batch, n_in)) < p).astype(jnp.float32)


def _loss(net, inputs):
    return jnp.mean(bj.run(net, inputs, dt=DT)[-1].membrane_cadc ** 2)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_shapes_and_dtypes(cls, backend, getkey):
    net = _net(getkey(), cls)
    inputs = _inputs(getkey())
    out = bj.run(net, inputs, backend=backend, dt=DT)
    assert isinstance(out, tuple) and len(out) == len(net.layers) // 2
    for obs, neuron in zip(out, net.layers[1::2], strict=True):
        assert isinstance(obs, bj.Observables)
        shape = (20, 3, neuron.size)
        assert obs.membrane_cadc.shape == obs.current.shape == shape
        assert obs.membrane_cadc.dtype == jnp.float32
        assert (obs.spikes is None) == (not neuron.fire)
        if obs.spikes is not None:
            assert obs.spikes.shape == shape
            assert set(np.unique(np.asarray(obs.spikes))) <= {0.0, 1.0}
        assert (obs.adaptation is None) == (not neuron.adaptation)
        assert obs.membrane_madc is None
        assert np.all(np.isfinite(np.asarray(obs.membrane_cadc)))


def test_issue_example_runs():
    # The example of the issue, as written (chip-space defaults for the LI).
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    net = bj.Sequential([bj.Synapse(128, 3, key=k1), bj.LI(3, tau_mem=10e-6, tau_syn=10e-6)])
    x = (jax.random.uniform(k2, (100, 1, 128)) < 0.03).astype(jnp.float32)

    def loss(n):
        return jnp.mean(bj.run(n, x, backend=bj.Numeric(), dt=1e-6)[-1].membrane_cadc ** 2)

    grads = jax.jit(jax.grad(loss))(net)
    assert grads.layers[0].weight.shape == (3, 128)
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(jnp.abs(grads.layers[0].weight).sum()) > 0


def test_madc_recording_is_the_watched_neuron(getkey):
    lif = model_space_neuron(bj.LIF, 4, enable_madc_recording=True, record_neuron_id=2)
    net = bj.Sequential([bj.Synapse(5, 4, key=getkey()), lif])
    (obs,) = bj.run(net, _inputs(getkey()), dt=DT)
    assert obs.membrane_madc.shape == (20, 3)
    np.testing.assert_array_equal(obs.membrane_madc, obs.membrane_cadc[:, :, 2])


def test_integer_inputs_are_cast(getkey):
    net = _net(getkey())
    inputs = _inputs(getkey())
    assert tree_allclose(bj.run(net, inputs.astype(jnp.int32)), bj.run(net, inputs))


@pytest.mark.parametrize("cls", ALL_NEURON_TYPES)
def test_jit_equals_eager(cls, getkey):
    net, inputs = _net(getkey(), cls), _inputs(getkey())
    eager = bj.run(net, inputs, dt=DT)
    jitted = eqx.filter_jit(bj.run)(net, inputs, dt=DT)
    assert tree_allclose(eager, jitted)


def test_vmap_over_examples_equals_loop(getkey):
    net = _net(getkey())
    examples = _inputs(getkey(), batch=4)[:, :, None, :].transpose(1, 0, 2, 3)  # (4, T, 1, in)
    batched = jax.vmap(lambda x: bj.run(net, x, dt=DT))(examples)
    run = eqx.filter_jit(bj.run)
    looped = [run(net, x, dt=DT) for x in examples]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
    assert tree_allclose(batched, stacked)
    # And the batch axis of `run` itself is the same as separate runs.
    together = bj.run(net, examples[:, :, 0, :].transpose(1, 0, 2), dt=DT)
    for b in range(4):
        sliced = jax.tree_util.tree_map(lambda a, b=b: a[:, b : b + 1], together)
        assert tree_allclose(sliced, looped[b])


def test_vmap_over_parameters_equals_loop(getkey):
    inputs = _inputs(getkey())
    nets = [_net(getkey()) for _ in range(3)]
    stacked_nets = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *nets)
    batched = jax.vmap(lambda n: bj.run(n, inputs, dt=DT))(stacked_nets)
    looped = [bj.run(n, inputs, dt=DT) for n in nets]
    assert tree_allclose(batched, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped))


@pytest.mark.parametrize("cls", [bj.LIF, bj.AdEx])
def test_vmap_of_grad_equals_per_example_grads(cls, getkey):
    net = _net(getkey(), cls)
    examples = _inputs(getkey(), batch=3, p=0.5)[:, :, None, :].transpose(1, 0, 2, 3)
    grad = eqx.filter_jit(eqx.filter_grad(_loss))
    batched = jax.vmap(grad, in_axes=(None, 0))(net, examples)
    per_example = [grad(net, x) for x in examples]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_example)
    assert tree_allclose(batched, stacked, rtol=1e-5, atol=1e-7)
    # The hidden weights get a surrogate gradient (spikes happen), and examples differ.
    hidden = np.asarray(batched.layers[0].weight)
    assert np.abs(hidden).sum() > 0
    assert not np.allclose(hidden[0], hidden[1])


def test_no_retrace_on_second_call(getkey):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def forward(net, inputs):
        return bj.run(net, inputs, dt=DT)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def train_step(net, inputs):
        grads = eqx.filter_grad(_loss)(net, inputs)
        # A small step: at 0.1 the time constants reach -3817 s, which the run-time check
        # of Euler's step refuses (and which used to run on silently).
        return eqx.apply_updates(net, jax.tree_util.tree_map(lambda g: -1e-12 * g, grads))

    net = _net(getkey())
    for _ in range(3):
        forward(net, _inputs(getkey()))
        net = train_step(net, _inputs(getkey()))
    # New values, same shapes and structure: still one trace each (asserted by the
    # decorators, which raise on a second trace). A new shape does retrace:
    with pytest.raises(RuntimeError):
        forward(net, _inputs(getkey(), time=7))


def test_same_inputs_same_bits(getkey):
    net, inputs = _net(getkey()), _inputs(getkey())
    key = jax.random.PRNGKey(3)
    a = bj.run(net, inputs, dt=DT, key=key)
    b = bj.run(net, inputs, dt=DT, key=key)
    assert eqx.tree_equal(a, b)


# ------------------------------ gradient checks ----------------------------------------
# Finite differences only on smooth paths: LI, and LIF/AdEx kept below threshold (no spike
# ever happens, so the reset and refractory gates are constant). Times in microseconds so
# that the finite-difference steps are well scaled.
def _subthreshold_fn(cls, inputs, threshold):
    def f(weight, tau_mem_us, tau_syn_us):
        if cls is bj.LI:
            neuron = bj.LI(2, leak=0.0, tau_mem=tau_mem_us * 1e-6, tau_syn=tau_syn_us * 1e-6)
        else:
            extra = {}
            if cls is bj.AdEx:
                # hxtorch does not detach the spike in w += b z, so even below threshold the
                # surrogate derivative of z (at v - threshold) reaches w: the gradient is then
                # deliberately not the true derivative. b = 0 makes the path smooth.
                extra = dict(spike_triggered_adaptation_increment=0.0)
            neuron = model_space_neuron(
                cls,
                2,
                threshold=threshold,
                tau_mem=tau_mem_us * 1e-6,
                tau_syn=tau_syn_us * 1e-6,
                **extra,
            )
        net = bj.Sequential([bj.Synapse(3, 2, weight=weight), neuron])
        (obs,) = bj.run(net, inputs, dt=DT)
        assert obs.spikes is None or obs.spikes.dtype == jnp.float64
        return obs.membrane_cadc

    return jax.jit(f)


@pytest.mark.parametrize("cls", [bj.LI, bj.LIF, bj.AdEx])
def test_check_grads_subthreshold(cls, x64):
    rng = np.random.default_rng(0)
    inputs = jnp.asarray((rng.uniform(size=(15, 2, 3)) < 0.4).astype(np.float64))
    weight = jnp.asarray(rng.uniform(0.05, 0.3, size=(2, 3)))
    threshold = 1.5
    f = _subthreshold_fn(cls, inputs, threshold)
    args = (weight, jnp.float64(10.0), jnp.float64(6.0))
    v = f(*args)
    assert float(jnp.max(v)) < threshold - 0.1  # really sub-threshold, with margin
    assert float(jnp.max(v)) > 0.05  # and not trivially zero
    # Second order only for the linear LI (cheap); first order for the others.
    order = 2 if cls is bj.LI else 1
    check_grads(f, args, order=order, modes=("fwd", "rev"), eps=1e-5, atol=1e-6, rtol=1e-5)


def test_spike_triggered_adaptation_passes_surrogate_gradient_below_threshold(x64):
    # The counterpart of the note above: with b != 0 the gradient of a sub-threshold AdEx
    # differs from the finite difference (hxtorch's semantics: b z is not detached).
    rng = np.random.default_rng(0)
    inputs = jnp.asarray((rng.uniform(size=(15, 1, 3)) < 0.4).astype(np.float64))

    def run_adex(weight, b):
        neuron = model_space_neuron(
            bj.AdEx, 2, threshold=1.5, spike_triggered_adaptation_increment=b
        )
        (obs,) = bj.run(bj.Sequential([bj.Synapse(3, 2, weight=weight), neuron]), inputs)
        return jnp.sum(obs.membrane_cadc), obs.spikes

    def loss(weight, b):
        return run_adex(weight, b)[0]

    weight = jnp.asarray(rng.uniform(0.05, 0.3, size=(2, 3)))
    assert float(run_adex(weight, 0.5)[1].sum()) == 0.0
    direction = jnp.ones_like(weight)
    for b, should_match in ((0.0, True), (0.5, False)):
        _, tangent = jax.jvp(lambda w, b=b: loss(w, b), (weight,), (direction,))
        eps = 1e-6
        fd = (loss(weight + eps * direction, b) - loss(weight - eps * direction, b)) / (2 * eps)
        assert np.isclose(float(tangent), float(fd), rtol=1e-6) == should_match


def test_gradient_wrt_tau_has_the_right_sign(x64):
    # A longer membrane time constant keeps more charge: d(sum v)/d(tau_mem) > 0.
    inputs = jnp.zeros((30, 1, 3)).at[2].set(1.0)
    f = _subthreshold_fn(bj.LI, inputs, 1.0)
    g = jax.grad(lambda t: jnp.sum(f(jnp.full((2, 3), 0.2), t, 6.0)))(jnp.float64(10.0))
    assert float(g) > 0


# ------------------------------------ errors -------------------------------------------
def test_bad_arguments_give_named_errors(getkey):
    net, inputs = _net(getkey()), _inputs(getkey())
    with pytest.raises(ValueError, match=r"`inputs`.*\(time, batch, in_features\).*5.*\(20, 5\)"):
        bj.run(net, inputs[:, 0])
    with pytest.raises(ValueError, match=r"`inputs`.*in_features = 5.*\(20, 3, 4\)"):
        bj.run(net, inputs[..., :4])
    for dt in (0.0, -1e-6, float("nan")):
        with pytest.raises(ValueError, match="`dt` must be a positive"):
            bj.run(net, inputs, dt=dt)
    for dt in ("fast", None):
        with pytest.raises((TypeError, ValueError), match="`dt`"):
            bj.run(net, inputs, dt=dt)
    with pytest.raises(TypeError, match="`dt`.*static"):
        jax.jit(lambda d: bj.run(net, inputs, dt=d))(1e-6)
    with pytest.raises(TypeError, match="`network`"):
        bj.run([net], inputs)
    with pytest.raises(TypeError, match="`backend`"):
        bj.run(net, inputs, backend="numeric")

"""Hypothesis properties of the numerics: no input gives no spikes, more excitatory
input never gives fewer spikes, the refractory time bounds the spike count, permuting
neurons permutes the outputs."""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from helpers import model_space_neuron, tree_allclose
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

import bss2jax as bj

DT = 1e-6
TIME, BATCH, IN, N = 30, 2, 5, 3

# One compiled function for every example: parameters are array leaves, shapes fixed.
run = eqx.filter_jit(bj.run)

spikes_strategy = arrays(np.float32, (TIME, BATCH, IN), elements=st.sampled_from([0.0, 1.0]))
tau_strategy = st.floats(2e-6, 20e-6)


def _first_spikes(spikes, k):
    """Time of the k-th spike (1-based) per (batch, neuron), TIME if there is none."""
    counts = np.cumsum(np.asarray(spikes), axis=0)
    reached = counts >= k
    return np.where(reached.any(axis=0), reached.argmax(axis=0), TIME)


@given(
    weight=arrays(np.float32, (N, IN), elements=st.floats(-5, 5, width=32)),
    leak=st.floats(-1.0, 0.9),
    tau_mem=tau_strategy,
    tau_syn=tau_strategy,
    refractory_steps=st.integers(0, 3),
    adex=st.booleans(),
)
def test_no_input_no_spikes(weight, leak, tau_mem, tau_syn, refractory_steps, adex):
    # Without input the current stays 0 and the membrane stays at the leak (< threshold 1;
    # for AdEx the adaptation stays 0 because v - leak = 0 and nothing spikes).
    kwargs = dict(leak=leak, tau_mem=tau_mem, tau_syn=tau_syn,
                  refractory_time=refractory_steps * DT)  # fmt: skip
    if adex:
        neuron = model_space_neuron(bj.AdEx, N, exponential=False, **kwargs)
    else:
        neuron = model_space_neuron(bj.LIF, N, **kwargs)
    net = bj.Sequential([bj.Synapse(IN, N, weight=weight), neuron])
    (obs,) = run(net, jnp.zeros((TIME, BATCH, IN)), dt=DT)
    assert float(obs.spikes.sum()) == 0.0
    np.testing.assert_allclose(obs.membrane_cadc, np.full((TIME, BATCH, N), leak), atol=1e-6)


# Why "more excitatory input never gives fewer spikes" holds here, and where it does not:
# single LIF layer, non-negative weights, the stronger input a superset of the weaker one,
# reset <= leak, dt <= tau_mem, tau_syn. Then (1) the current is never reset and is linear
# in the input with non-negative coefficients, so i_strong >= i_weak >= 0 at every step;
# (2) between (effective) resets, i.e. from the end of the refractory period on, v - leak
# is a non-negative combination of past currents plus a^n (reset - leak), which grows with
# the time n since the reset when reset <= leak. By induction over k, the strong neuron's
# k-th spike comes no later than the weak one's: if the strong neuron has not spiked again
# by the weak one's k-th spike time, its refractory period ended earlier and it integrated
# more current over a longer window, so its membrane is at least as high and it crosses
# too. Hence counts are monotone in any window. With reset > leak an earlier reset decays
# further down, and with negative weights the order of the currents is lost: there the
# argument does not go through (with inhibitory weights Hypothesis finds counterexamples
# quickly), so it is not asserted. Weights are multiples of 0.5 so that distinct
# trajectories differ by far more than rounding.
@given(
    weak=spikes_strategy,
    extra=spikes_strategy,
    weight=arrays(np.float32, (N, IN), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0])),
    tau_mem=tau_strategy,
    tau_syn=tau_strategy,
    refractory_steps=st.integers(0, 3),
    reset=st.sampled_from([0.0, -0.5]),
)
def test_more_excitatory_input_never_fewer_spikes(
    weak, extra, weight, tau_mem, tau_syn, refractory_steps, reset
):
    strong = np.maximum(weak, extra)
    lif = model_space_neuron(
        bj.LIF, N, reset=reset, tau_mem=tau_mem, tau_syn=tau_syn,
        refractory_time=refractory_steps * DT,
    )  # fmt: skip
    net = bj.Sequential([bj.Synapse(IN, N, weight=weight), lif])
    (obs_weak,) = run(net, jnp.asarray(weak), dt=DT)
    (obs_strong,) = run(net, jnp.asarray(strong), dt=DT)
    count_weak = np.asarray(obs_weak.spikes).sum(axis=0)
    count_strong = np.asarray(obs_strong.spikes).sum(axis=0)
    assert np.all(count_strong >= count_weak)
    for k in range(1, int(count_weak.max()) + 1):
        assert np.all(_first_spikes(obs_strong.spikes, k) <= _first_spikes(obs_weak.spikes, k))
    assert np.all(np.asarray(obs_strong.current) >= np.asarray(obs_weak.current) - 1e-5)


@given(
    weight=arrays(np.float32, (N, IN), elements=st.floats(-10, 30, width=32)),
    inputs=spikes_strategy,
    refractory_steps=st.integers(0, 4),
    adex=st.booleans(),
)
def test_spike_count_bounded_by_refractory_time(weight, inputs, refractory_steps, adex):
    # After a spike the neuron is clamped for k = refractory_time / dt steps, so two spikes
    # are at least k + 1 steps apart: at most ceil(T / (k + 1)) spikes in T steps.
    kwargs = dict(refractory_time=refractory_steps * DT, tau_syn=20e-6)
    if adex:
        neuron = model_space_neuron(bj.AdEx, N, spike_triggered_adaptation_increment=0.1,
                                    **kwargs)  # fmt: skip
    else:
        neuron = model_space_neuron(bj.LIF, N, **kwargs)
    net = bj.Sequential([bj.Synapse(IN, N, weight=weight), neuron])
    (obs,) = run(net, jnp.asarray(inputs), dt=DT)
    spikes = np.asarray(obs.spikes)
    bound = math.ceil(TIME / (1 + refractory_steps))
    assert spikes.sum(axis=0).max() <= bound
    # The spacing itself: no two spikes of one neuron closer than k + 1 steps.
    for b in range(BATCH):
        for n in range(N):
            times = np.flatnonzero(spikes[:, b, n])
            assert np.all(np.diff(times) >= refractory_steps + 1)


@given(
    permutation=st.permutations(list(range(N))),
    w_in=arrays(np.float32, (N, IN), elements=st.floats(0, 4, width=32)),
    w_out=arrays(np.float32, (2, N), elements=st.floats(-2, 2, width=32)),
    tau_mem_us=arrays(np.float32, (N,), elements=st.floats(2, 20, width=32)),
    threshold=arrays(np.float32, (N,), elements=st.floats(0.5, 2.0, width=32)),
    inputs=spikes_strategy,
)
def test_permuting_neurons_permutes_outputs(permutation, w_in, w_out, tau_mem_us, threshold,
                                            inputs):  # fmt: skip
    perm = np.asarray(permutation)
    tau_mem = tau_mem_us * np.float32(1e-6)

    def make(order):
        hidden = model_space_neuron(
            bj.LIF, N, tau_mem=jnp.asarray(tau_mem[order]),
            threshold=jnp.asarray(threshold[order]),
        )  # fmt: skip
        return bj.Sequential(
            [bj.Synapse(IN, N, weight=w_in[order]), hidden,
             bj.Synapse(N, 2, weight=w_out[:, order]), bj.LI(2, leak=0.0)]
        )  # fmt: skip

    hidden, readout = run(make(np.arange(N)), jnp.asarray(inputs), dt=DT)
    hidden_p, readout_p = run(make(perm), jnp.asarray(inputs), dt=DT)
    for name in ("spikes", "membrane_cadc", "current"):
        a = np.asarray(getattr(hidden, name))[..., perm]
        np.testing.assert_allclose(getattr(hidden_p, name), a, rtol=1e-5, atol=1e-5)
    # The readout sums over the hidden neurons: invariant (up to summation order).
    assert tree_allclose(readout, readout_p, rtol=1e-4, atol=1e-4)

"""The reference CUBA integrator (`bss2jax.kernels.cuba`): analytic solutions and a
plain-numpy loop written from hxtorch's equations (hxtorch-semantics.md 2.1-2.3)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bss2jax.kernels import cuba
from helpers import SyntheticBackend

import bss2jax as bj

DT = 1e-6


# ---------------------------------------------------------------------------------------
# An independent plain-numpy loop of hxtorch's `cuba_aelif_integration` (explicit Euler):
#
#   dv = dt/c (i[t-1] + g_l (E_l - v[t-1]) + g_l D exp((v[t-1] - V_T)/D) - w[t-1])
#   i[t] = i[t-1] (1 - dt/tau_syn) + x[t]
#   v[t] = v[t-1] + dv                      (or the hardware voltage)
#   z[t] = [v[t] - theta > 0]               (or the hardware spike)
#   w[t] = w[t-1] (1 - dt/tau_w) + dt/tau_w a (v[t] - E_l) + b z[t]
#   v[t] = reset where z[t]                 (only without a hardware voltage)
#   refractory: while r > 0, v = reset (then hw voltage), z = 0 (then hw spike);
#               r = (1 - z) relu(r - [r > 0]) + z tau_ref / dt
#   initial state: i = w = r = 0; v = E_l if leaky or subthreshold adaptation, else 0.
# ---------------------------------------------------------------------------------------
def numpy_aelif(x, p, *, dt, v_hw=None, z_hw=None, exact=False):
    time, batch, size = x.shape
    leaky, fire = p["leaky"], p["fire"]
    exponential, sub, spk = p["exponential"], p["sub"], p["spk"]
    c, leak = p["c"], p["leak"]
    g_l = c / p["tau_mem"]
    i = np.zeros((batch, size))
    w = np.zeros((batch, size))
    r = np.zeros((batch, size))
    v = np.full((batch, size), leak if (leaky or sub) else 0.0)
    out = {k: [] for k in ("v", "i", "w", "z")}
    for t in range(time):
        drive = i.copy()
        if exponential:
            drive = drive + g_l * p["slope"] * np.exp((v - p["v_exp"]) / p["slope"])
        if sub or spk:
            drive = drive - w
        if exact and leaky:
            # bss2jax's exact variant: the drive held over the step, the leak exactly:
            # dv/dt = (g_l (E_l - v) + drive) / c relaxes to E_l + drive / g_l.
            v_inf = leak + drive / g_l
            v_next = v_inf + (v - v_inf) * np.exp(-dt / p["tau_mem"])
        else:
            if leaky:
                drive = drive + g_l * (leak - v)
            v_next = v + dt / c * drive
        keep_syn = np.exp(-dt / p["tau_syn"]) if exact else 1.0 - dt / p["tau_syn"]
        i = i * keep_syn + x[t]
        v = v_next if v_hw is None else v_hw[t].copy()
        z = np.zeros_like(v)
        if fire:
            z = (v - p["threshold"] > 0).astype(float)
            if z_hw is not None:
                z = z_hw[t].copy()
        if sub or spk:
            keep = np.exp(-dt / p["tau_adap"]) if exact else 1.0 - dt / p["tau_adap"]
            w = w * keep
            if sub:
                w = w + (1.0 - keep) * p["a"] * (v - leak)
            if spk:
                w = w + p["b"] * z
        if fire and v_hw is None:
            v = np.where(z > 0, p["reset"], v)
        if fire and p["tau_ref"] > 0:
            refractory = (r > 0).astype(float)
            v = np.where(refractory > 0, p["reset"], v)
            if v_hw is not None:
                v = v_hw[t].copy()
            z = np.where(refractory > 0, 0.0, z)
            if z_hw is not None:
                z = z_hw[t].copy()
            r = (1.0 - z) * np.maximum(r - refractory, 0.0) + z * p["tau_ref"] / dt
        out["v"].append(v)
        out["i"].append(i)
        out["w"].append(w)
        out["z"].append(z)
    return {k: np.stack(val) for k, val in out.items()}


# Model-space settings (leak 0, reset 0, threshold 1) of each neuron kind, as the numpy
# loop's parameters and as the bss2jax constructor.
_COMMON = dict(c=10e-6, leak=0.0, reset=0.0, threshold=1.0, tau_mem=10e-6, tau_syn=5e-6)
CASES = {
    "LIF": (
        dict(_COMMON, leaky=True, fire=True, exponential=False, sub=False, spk=False,
             tau_ref=2e-6),
        lambda n, **kw: bj.LIF(n, **kw, leak=0.0, reset=0.0, threshold=1.0, tau_mem=10e-6,
                               tau_syn=5e-6, refractory_time=2e-6),
    ),
    "LI": (
        dict(_COMMON, leaky=True, fire=False, exponential=False, sub=False, spk=False,
             tau_ref=0.0),
        lambda n, **kw: bj.LI(n, **kw, leak=0.0, tau_mem=10e-6, tau_syn=5e-6),
    ),
    # IAF: not leaky, no exponential, no adaptation; the leak value must NOT be the initial
    # potential (hxtorch starts a non-leaky neuron without subthreshold adaptation at 0).
    "IAF": (
        dict(_COMMON, leak=0.5, leaky=False, fire=True, exponential=False, sub=False,
             spk=False, tau_ref=1e-6),
        lambda n, **kw: bj.AdEx(n, **kw, leak=0.5, reset=0.0, threshold=1.0, tau_mem=10e-6,
                                tau_syn=5e-6, leaky=False, exponential=False,
                                subthreshold_adaptation=False,
                                spike_triggered_adaptation=False),
    ),
    "AdEx": (
        dict(_COMMON, threshold=1.2, leaky=True, fire=True, exponential=True, sub=True,
             spk=True, tau_ref=1e-6, slope=0.1, v_exp=1.0, a=0.5, b=0.3, tau_adap=20e-6),
        lambda n, **kw: bj.AdEx(n, **kw, leak=0.0, reset=0.0, threshold=1.2, tau_mem=10e-6,
                                tau_syn=5e-6, exponential_slope=0.1, exponential_threshold=1.0,
                                subthreshold_adaptation_strength=0.5,
                                spike_triggered_adaptation_increment=0.3, tau_adap=20e-6),
    ),
}  # fmt: skip

TIME, BATCH, IN, OUT = 40, 3, 6, 4


def _problem(seed):
    rng = np.random.default_rng(seed)
    inputs = (rng.uniform(size=(TIME, BATCH, IN)) < 0.3).astype(np.float64)
    weight = rng.uniform(-0.5, 2.5, size=(OUT, IN))
    return inputs, weight


# LI does not fire: a spike recording for it is an error (tested in test_injection.py).
COMBINATIONS = [
    (kind, injection)
    for kind in CASES
    for injection in ("none", "membrane", "spikes", "both")
    if not (kind == "LI" and injection in ("spikes", "both"))
]


@pytest.mark.parametrize(("kind", "injection"), COMBINATIONS)
def test_against_numpy_loop(kind, injection, x64):
    p, make = CASES[kind]
    inputs, weight = _problem(seed=len(kind) * 10 + len(injection))
    rng = np.random.default_rng(1)
    # Synthetic observations, longer than the run (run cuts them to `time`), model units
    # equal chip units here (trace_offset 0, trace_scale 1).
    v_hw = rng.normal(0.8, 0.4, size=(TIME + 3, BATCH, OUT))
    # Observed spikes: the free-running spikes plus random extra ones (with only spikes
    # injected these are the only resets; an AdEx without them runs away through its
    # exponential term).
    free = numpy_aelif(inputs @ weight.T, p, dt=DT)["z"]
    extra = rng.uniform(size=(TIME + 3, BATCH, OUT)) < 0.15
    z_hw = np.maximum(np.concatenate([free, np.zeros((3, BATCH, OUT))]), extra).astype(float)
    use_v = injection in ("membrane", "both")
    use_z = injection in ("spikes", "both")

    net = bj.Sequential([bj.Synapse(IN, OUT, weight=weight), make(OUT)])
    backend = bj.Numeric()
    if injection != "none":
        rec = bj.PopulationRecording(
            membrane_cadc=jnp.asarray(v_hw) if use_v else None,
            spikes=jnp.asarray(z_hw) if use_z else None,
        )
        backend = SyntheticBackend(bj.Recording({0: rec}))
    (obs,) = bj.run(net, jnp.asarray(inputs), backend=backend, dt=DT)

    expected = numpy_aelif(
        inputs @ weight.T,
        p,
        dt=DT,
        v_hw=v_hw[:TIME] if use_v else None,
        z_hw=z_hw[:TIME] if use_z else None,
    )
    assert obs.membrane_cadc.dtype == jnp.float64
    np.testing.assert_allclose(obs.membrane_cadc, expected["v"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(obs.current, expected["i"], rtol=1e-10, atol=1e-12)
    if p["fire"]:
        np.testing.assert_array_equal(obs.spikes, expected["z"])
    else:
        assert obs.spikes is None
    if p["sub"] or p["spk"]:
        np.testing.assert_allclose(obs.adaptation, expected["w"], rtol=1e-10, atol=1e-12)
    else:
        assert obs.adaptation is None
    # The case must exercise the dynamics: spiking neurons spike, but not every step.
    if p["fire"] and not use_z:
        assert 0 < expected["z"].sum() < expected["z"].size / 2


@pytest.mark.parametrize("kind", list(CASES))
def test_exact_integrator_against_numpy_loop(kind, x64):
    # The exact variant (not in hxtorch): leak, synaptic and adaptation decays exp(-dt/tau)
    # with the rest of the drive held over the step; same step order otherwise.
    p, make = CASES[kind]
    inputs, weight = _problem(seed=len(kind))
    neuron = make(OUT, integrator="exact")
    (obs,) = bj.run(bj.Sequential([bj.Synapse(IN, OUT, weight=weight), neuron]),
                    jnp.asarray(inputs), dt=DT)  # fmt: skip
    expected = numpy_aelif(inputs @ weight.T, p, dt=DT, exact=True)
    euler = numpy_aelif(inputs @ weight.T, p, dt=DT)
    np.testing.assert_allclose(obs.membrane_cadc, expected["v"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(obs.current, expected["i"], rtol=1e-10, atol=1e-12)
    if p["fire"]:
        np.testing.assert_array_equal(obs.spikes, expected["z"])
    if p["sub"] or p["spk"]:
        np.testing.assert_allclose(obs.adaptation, expected["w"], rtol=1e-10, atol=1e-12)
    assert not np.allclose(expected["i"], euler["i"])  # the variants really differ


def test_refractory_spacing_by_hand():
    # LIF (leak 0, reset 0, threshold 1, c = tau_mem so dt/c = 0.1) with a huge input
    # spike at step 0 on every step: i[t] >= 1000 so every non-refractory step crosses.
    # Step 0: v uses i[-1] = 0, stays 0. From step 1 on the neuron fires whenever it is not
    # refractory; refractory_time = 3 us = 3 steps, so spikes at 1, 5, 9, ...
    lif = bj.LIF(1, leak=0.0, reset=0.0, threshold=1.0, refractory_time=3e-6)
    net = bj.Sequential([bj.Synapse(1, 1, weight=jnp.array([[1000.0]])), lif])
    (obs,) = bj.run(net, jnp.ones((20, 1, 1)), dt=DT)
    spikes = np.flatnonzero(np.asarray(obs.spikes[:, 0, 0]))
    np.testing.assert_array_equal(spikes, [1, 5, 9, 13, 17])
    # During the refractory steps the membrane is clamped at reset.
    np.testing.assert_array_equal(np.asarray(obs.membrane_cadc[2:5, 0, 0]), [0.0, 0.0, 0.0])


def test_zero_refractory_fires_every_step():
    lif = bj.LIF(1, leak=0.0, reset=0.0, threshold=1.0, refractory_time=0.0)
    net = bj.Sequential([bj.Synapse(1, 1, weight=jnp.array([[1000.0]])), lif])
    (obs,) = bj.run(net, jnp.ones((6, 1, 1)), dt=DT)
    # Step 0 has no current yet (one dt of synaptic delay); then a spike every step.
    np.testing.assert_array_equal(np.asarray(obs.spikes[:, 0, 0]), [0, 1, 1, 1, 1, 1])


# --------------------------------- analytic PSPs ---------------------------------------
def _li_psp(tau_mem, tau_syn, integrator, *, time=60, t0=3, weight=2.0, dt=DT):
    """Membrane and current of an LI (leak 0, c = tau_mem) after one input spike at t0."""
    li = bj.LI(1, leak=0.0, tau_mem=tau_mem, tau_syn=tau_syn, membrane_capacitance=tau_mem,
               integrator=integrator)  # fmt: skip
    net = bj.Sequential([bj.Synapse(1, 1, weight=jnp.array([[weight]])), li])
    inputs = jnp.zeros((time, 1, 1)).at[t0, 0, 0].set(1.0)
    (obs,) = bj.run(net, inputs, dt=dt)
    return np.asarray(obs.membrane_cadc[:, 0, 0]), np.asarray(obs.current[:, 0, 0])


@pytest.mark.parametrize("tau_syn", [5e-6, 10e-6])
def test_euler_psp_closed_form(tau_syn, x64):
    # Euler recursion with u = v - leak, c = tau_mem (g_l = 1), a = 1 - dt/tau_mem,
    # b = 1 - dt/tau_syn and x = w at step t0:
    #   i[t] = w b^(t - t0) for t >= t0 (0 before);
    #   u[t] = a u[t-1] + dt/c i[t-1]  =>  u[t0 + n] = dt/c w sum_{k=0}^{n-1} a^(n-1-k) b^k
    #        = dt/c w (a^n - b^n) / (a - b)   (a != b),   dt/c w n a^(n-1)   (a == b),
    # and u[t] = 0 for t <= t0 (one dt of synaptic delay).
    tau_mem, weight, t0, time = 10e-6, 2.0, 3, 60
    v, i = _li_psp(tau_mem, tau_syn, "euler", time=time, t0=t0, weight=weight)
    a, b = 1 - DT / tau_mem, 1 - DT / tau_syn
    n = np.arange(time) - t0
    expected_i = np.where(n >= 0, weight * b ** np.maximum(n, 0), 0.0)
    np.testing.assert_allclose(i, expected_i, rtol=1e-12, atol=1e-300)
    m = np.maximum(n, 0)
    if a != b:
        shape = (a**m - b**m) / (a - b)
    else:
        shape = m * a ** np.maximum(m - 1, 0)
    expected_v = np.where(n > 0, DT / tau_mem * weight * shape, 0.0)
    np.testing.assert_allclose(v, expected_v, rtol=1e-10, atol=1e-14)
    assert v[t0] == 0.0 and v[t0 + 1] > 0.0


@pytest.mark.parametrize("dt", [1e-6, 2.5e-7])
def test_exact_psp_is_the_continuous_double_exponential(dt, x64):
    # Continuous CUBA PSP of weight w at time 0 (c = tau_mem, so g_l = 1):
    #   i(s) = w exp(-s/ts),  u(s) = w/c * tm ts / (tm - ts) * (exp(-s/tm) - exp(-s/ts)).
    # The exact integrator holds i over each step (zero-order hold) and decays v exactly:
    #   u[n] = sum_{k<n} A^(n-1-k) (1 - A) i[k] / g_l with A = exp(-dt/tm), B = exp(-dt/ts),
    #        = w tm / c (1 - A) (A^n - B^n) / (A - B),
    # i.e. exactly the continuous shape at s = n dt, times the constant hold gain
    #   kappa = (1 - A)(tm - ts) / (ts (A - B)) = 1 + O(dt / tau).
    tau_mem, tau_syn, weight, t0 = 10e-6, 5e-6, 2.0, 3
    time = t0 + int(round(60e-6 / dt))
    v, i = _li_psp(tau_mem, tau_syn, "exact", time=time, t0=t0, weight=weight, dt=dt)
    s = (np.arange(time) - t0) * dt
    after = s > 0
    continuous = (
        weight / tau_mem * tau_mem * tau_syn / (tau_mem - tau_syn)
        * (np.exp(-s / tau_mem) - np.exp(-s / tau_syn))
    )  # fmt: skip
    np.testing.assert_allclose(i[t0:], weight * np.exp(-s[t0:] / tau_syn), rtol=1e-12)
    ratio = v[after] / continuous[after]
    big_a, big_b = math.exp(-dt / tau_mem), math.exp(-dt / tau_syn)
    kappa = (1 - big_a) * (tau_mem - tau_syn) / (tau_syn * (big_a - big_b))
    np.testing.assert_allclose(ratio, kappa, rtol=1e-9)
    assert abs(kappa - 1.0) < dt / tau_syn
    assert np.all(v[: t0 + 1] == 0.0)
    # The peak sits where the continuous one does: t* = tm ts / (tm - ts) ln(tm / ts).
    t_peak = tau_mem * tau_syn / (tau_mem - tau_syn) * math.log(tau_mem / tau_syn)
    assert abs(s[np.argmax(v)] - t_peak) <= dt / 2 + 1e-15


def test_euler_psp_converges_to_continuous(x64):
    # Euler is first order: halving dt (about) halves the largest error of the PSP.
    tau_mem, tau_syn, weight, t0 = 10e-6, 5e-6, 2.0, 0
    errors = []
    for dt in (1e-6, 5e-7, 2.5e-7):
        time = int(round(50e-6 / dt))
        v, _ = _li_psp(tau_mem, tau_syn, "euler", time=time, t0=t0, weight=weight, dt=dt)
        s = np.arange(time) * dt
        continuous = (
            weight * tau_syn / (tau_mem - tau_syn) * (np.exp(-s / tau_mem) - np.exp(-s / tau_syn))
        )
        errors.append(np.max(np.abs(v - continuous)) / np.max(continuous))
    assert errors[0] < 0.2
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 1.6 < coarse / fine < 2.4


@pytest.mark.parametrize("integrator", ["euler", "exact"])
def test_decay_towards_leak_after_one_time_constant(integrator, x64):
    # No input, v starts 1 above the leak. After tau_mem / dt = 10 steps:
    # exact: v - leak = exp(-1); Euler: (1 - dt/tau_mem)^10 = 0.9^10.
    tau_mem, leak = 10e-6, 0.3
    neuron = bj.LI(2, leak=leak, tau_mem=tau_mem, integrator=integrator)
    params, flags = neuron.cuba_params(), neuron.cuba_flags()
    state = cuba.init_state(params, flags, (1, 2), jnp.float64)
    state = state._replace(membrane=state.membrane + 1.0)
    out = cuba.integrate(
        params, flags, jnp.zeros((10, 1, 2)), dt=DT, spike_fn=neuron.surrogate, state=state
    )
    expected = math.exp(-1.0) if integrator == "exact" else 0.9**10
    np.testing.assert_allclose(out.membrane[-1] - leak, expected, rtol=1e-12)


def test_exact_differs_from_euler_but_agrees_for_small_dt(x64):
    v_euler, _ = _li_psp(10e-6, 5e-6, "euler")
    v_exact, _ = _li_psp(10e-6, 5e-6, "exact")
    assert not np.allclose(v_euler, v_exact)
    v_euler, _ = _li_psp(10e-6, 5e-6, "euler", dt=1e-8, time=2000)
    v_exact, _ = _li_psp(10e-6, 5e-6, "exact", dt=1e-8, time=2000)
    np.testing.assert_allclose(v_euler, v_exact, rtol=0, atol=2e-2 * v_exact.max())


def test_init_state_rule():
    # v(0) = leak if leaky or subthreshold adaptation, else 0.
    for kwargs, expected in [
        (dict(leaky=True, subthreshold_adaptation=False), 0.7),
        (dict(leaky=False, subthreshold_adaptation=True), 0.7),
        (dict(leaky=False, subthreshold_adaptation=False), 0.0),
    ]:
        neuron = bj.AdEx(3, leak=0.7, exponential=False, **kwargs)
        state = cuba.init_state(neuron.cuba_params(), neuron.cuba_flags(), (2, 3), jnp.float32)
        np.testing.assert_array_equal(state.membrane, np.full((2, 3), expected, np.float32))
        for field in (state.current, state.adaptation, state.refractory):
            np.testing.assert_array_equal(field, np.zeros((2, 3), np.float32))


def test_inject_forward_and_derivative():
    value, observed = jnp.array([1.0, 2.0]), jnp.array([5.0, -3.0])
    np.testing.assert_array_equal(cuba.inject(value, observed), observed)
    g_value, g_observed = jax.grad(lambda a, b: jnp.sum(3.0 * cuba.inject(a, b)), (0, 1))(
        value, observed
    )
    np.testing.assert_array_equal(g_value, [3.0, 3.0])
    np.testing.assert_array_equal(g_observed, [0.0, 0.0])

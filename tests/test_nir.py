"""NIR exchange: round trips, and graphs written by hand from the NIR 1.0.8 equations (as
snnTorch or hxtorch would export them) simulated against the analytic single-neuron
response (conventions: `bss2jax/_nir.py`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj

nir = pytest.importorskip("nir")

DT = 1e-7  # 100 steps per 10 µs time constant: Euler's error is about 1 %


def _network(key):
    k1, k2, k3 = jax.random.split(key, 3)
    hidden = bj.LIF(
        4,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(jnp.array([0.0, -0.1, 0.0, 0.1]), 70.0),
        threshold=bj.Mixed(jnp.array([0.5, 0.6, 0.4, 0.55]), 125.0),
        tau_mem=jnp.array([6e-6, 8e-6, 10e-6, 12e-6]),
        tau_syn=5e-6,
        membrane_capacitance=bj.Mixed(7e-6, 63.0),
        refractory_time=2e-6,
        integrator="euler",
    )
    out = bj.LI(
        2, leak=0.0, tau_mem=10e-6, tau_syn=jnp.array([4e-6, 6e-6]), membrane_capacitance=1e-5
    )
    synapses = [
        bj.Synapse(3, 4, key=k1, transform=bj.linear_saturating(55.0)),
        bj.Synapse(4, 4, key=k2),
        bj.Synapse(4, 2, key=k3),
    ]
    projections = [
        bj.Projection(bj.INPUT, "hidden", synapses[0]),
        bj.Projection("hidden", "hidden", synapses[1]),
        bj.Projection("hidden", "out", synapses[2]),
    ]
    return bj.Network({"hidden": hidden, "out": out}, projections, input_size=3)


def _assert_same_parameters(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_array_equal(np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape)), y)


def _inputs(key, steps, size, rate=0.3):
    return (jax.random.uniform(key, (steps, 2, size)) < rate).astype(jnp.float32)


def test_network_round_trip_through_a_file_is_bit_for_bit(tmp_path):
    net = _network(jax.random.PRNGKey(0))
    graph = bj.to_nir(net, dt=1e-6, allow_refractory=True)
    assert isinstance(graph.nodes["hidden"], nir.CubaLIF)
    assert isinstance(graph.nodes["out"], nir.CubaLI)
    assert ("hidden", "projection_1") in graph.edges and ("projection_1", "hidden") in graph.edges
    nir.write(tmp_path / "net.nir", graph)
    back = bj.from_nir(nir.read(tmp_path / "net.nir"), dt=1e-6)
    assert isinstance(back, bj.Network) and back.order == ("hidden", "out")
    _assert_same_parameters(net, back)
    x = _inputs(jax.random.PRNGKey(1), 60, 3)
    for a, b in zip(jax.tree.leaves(bj.run(net, x)), jax.tree.leaves(bj.run(back, x)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sequential_round_trip_stays_sequential():
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    net = bj.Sequential(
        [
            bj.Synapse(5, 3, key=k1),
            bj.LIF(3, leak=0.0, reset=0.0, threshold=0.3, tau_mem=8e-6, tau_syn=4e-6,
                   membrane_capacitance=1e-5, refractory_time=0.0),
            bj.Synapse(3, 2, key=k2),
            bj.LI(2, leak=0.0, tau_mem=8e-6, tau_syn=4e-6, membrane_capacitance=1e-5),
        ]
    )  # fmt: skip
    back = bj.from_nir(bj.to_nir(net), dt=1e-6)
    assert isinstance(back, bj.Sequential)
    _assert_same_parameters(net, back)
    x = _inputs(jax.random.PRNGKey(3), 40, 5, rate=0.5)
    for a, b in zip(jax.tree.leaves(bj.run(net, x)), jax.tree.leaves(bj.run(back, x)), strict=True):
        np.testing.assert_array_equal(a, b)


def _chain(neuron, weight, size_in=1):
    """Input → Linear → neuron → Output, as snnTorch's and hxtorch's exporters lay it out."""
    n = np.asarray(weight).shape[0]
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([size_in])),
            "fc": nir.Linear(weight=np.asarray(weight, dtype=np.float64)),
            "neuron": neuron,
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "fc"), ("fc", "neuron"), ("neuron", "output")],
    )


@pytest.mark.parametrize("time_unit", [1.0, 1e-3])
def test_cuba_li_psp_matches_the_closed_form(time_unit):
    # Two neurons with their own time constants, w_in and r (per-neuron parameters); one
    # input spike at t = 0 of weight w: I jumps by w_in w / tau_syn, then
    # v(t) = v_leak + r A tau_syn / (tau_mem - tau_syn) (e^{-t/tau_mem} - e^{-t/tau_syn}).
    tau_syn, tau_mem = np.array([4e-6, 5e-6]), np.array([10e-6, 20e-6])
    r, w_in, w, v_leak = np.array([2.0, 0.5]), np.array([1.5, 3.0]), np.array([0.7, -0.4]), 0.2
    node = nir.CubaLI(
        tau_syn=tau_syn / time_unit,
        tau_mem=tau_mem / time_unit,
        r=r,
        v_leak=np.full(2, v_leak),
        w_in=w_in,
    )
    net = bj.from_nir(_chain(node, w[:, None]), dt=DT, time_unit=time_unit)
    steps = 600
    x = jnp.zeros((steps, 1, 1)).at[0].set(1.0)
    v = np.asarray(bj.run(net, x, dt=DT)[0].membrane_cadc[:, 0])
    t = np.arange(steps)[:, None] * DT
    amplitude = w_in * w / (tau_syn / time_unit)
    expected = v_leak + r * amplitude * tau_syn / (tau_mem - tau_syn) * (
        np.exp(-t / tau_mem) - np.exp(-t / tau_syn)
    )
    peak = np.abs(expected - v_leak).max(axis=0)
    assert np.all(np.abs(v - expected).max(axis=0) < 0.02 * peak)


def _first_crossing(u, theta, t_max):
    lo, hi = 0.0, t_max
    assert u(hi) > theta
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if u(mid) < theta else (lo, mid)
    return hi


def test_cuba_lif_first_spike_under_constant_drive():
    # A spike every step (rate 1/dt) is the constant drive S = 1/dt: tau_syn dI/dt =
    # -I + w_in w / dt, so I = I0 (1 - e^{-t/tau_syn}) and
    # v - v_leak = r I0 (1 - (tau_m e^{-t/tau_m} - tau_s e^{-t/tau_s}) / (tau_m - tau_s)).
    tau_syn, tau_mem, r, w_in, w, theta = 5e-6, 10e-6, 1.0, 5e-6, 0.02, 0.5
    node = nir.CubaLIF(
        tau_syn=np.array([tau_syn]), tau_mem=np.array([tau_mem]), r=np.array([r]),
        v_leak=np.array([0.0]), v_threshold=np.array([theta]), v_reset=np.array([0.0]),
        w_in=np.array([w_in]),
    )  # fmt: skip
    net = bj.from_nir(_chain(node, [[w]]), dt=DT)
    current = w_in * w / DT  # I0

    def u(s):
        decay = tau_mem * np.exp(-s / tau_mem) - tau_syn * np.exp(-s / tau_syn)
        return r * current * (1 - decay / (tau_mem - tau_syn))

    expected = _first_crossing(u, theta, 10 * tau_mem)
    spikes = np.asarray(bj.run(net, jnp.ones((400, 1, 1)), dt=DT)[0].spikes[:, 0, 0])
    first = np.argmax(spikes > 0) * DT
    assert spikes.any() and abs(first - expected) < 0.03 * expected + 2 * DT


def test_plain_lif_needs_lif_tau_syn_and_then_fires_on_time():
    tau, r, w, theta = 10e-6, 2.0, 0.01, 0.6
    node = nir.LIF(
        tau=np.array([tau]), r=np.array([r]), v_leak=np.array([0.0]),
        v_threshold=np.array([theta]), v_reset=np.array([0.0]),
    )  # fmt: skip
    with pytest.raises(bj.NetworkError, match="lif_tau_syn"):
        bj.from_nir(_chain(node, [[w]]), dt=DT)
    net = bj.from_nir(_chain(node, [[w]]), dt=DT, lif_tau_syn=2 * DT)
    # tau dv/dt = -v + r w / dt: first crossing at tau ln(rI / (rI - theta))
    drive = r * w / DT
    expected = tau * np.log(drive / (drive - theta))
    spikes = np.asarray(bj.run(net, jnp.ones((300, 1, 1)), dt=DT)[0].spikes[:, 0, 0])
    first = np.argmax(spikes > 0) * DT
    assert spikes.any() and abs(first - expected) < 0.03 * expected + 4 * DT


def test_if_integrates_without_leak():
    node = nir.IF(r=np.array([3.0]), v_threshold=np.array([1.0]), v_reset=np.array([0.0]))
    net = bj.from_nir(_chain(node, [[0.01]]), dt=DT, lif_tau_syn=2 * DT)
    assert not net.population(0).leaky
    # dv/dt = r w / dt: a spike every step reaches threshold 1 after dt / (r w) steps
    spikes = np.asarray(bj.run(net, jnp.ones((100, 1, 1)), dt=DT)[0].spikes[:, 0, 0])
    assert abs(np.argmax(spikes > 0) - 1 / (3.0 * 0.01)) <= 4


def _affine_graph(bias):
    node = nir.CubaLI(
        tau_syn=np.array([5e-6]), tau_mem=np.array([10e-6]), r=np.array([1.0]),
        v_leak=np.array([0.0]), w_in=np.array([1.0]),
    )  # fmt: skip
    graph = _chain(node, [[0.5, 0.2]], size_in=2)
    graph.nodes["fc"] = nir.Affine(weight=np.array([[0.5, 0.2]]), bias=np.array([bias]))
    return graph


def test_affine_bias_is_refused_unless_dropped():
    with pytest.raises(bj.NetworkError, match="bias.*drop_bias=True"):
        bj.from_nir(_affine_graph(0.3), dt=DT)
    dropped = bj.from_nir(_affine_graph(0.3), dt=DT, drop_bias=True)
    plain = bj.from_nir(_affine_graph(0.0), dt=DT)
    _assert_same_parameters(dropped, plain)


def test_recurrent_graph_from_the_spec_is_a_network_with_a_loop():
    n = 3
    node = nir.CubaLIF(
        tau_syn=np.full(n, 5e-6), tau_mem=np.full(n, 10e-6), r=np.ones(n),
        v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, 5e-6),
    )  # fmt: skip
    w_rec = np.full((n, n), 0.1)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "fc": nir.Linear(weight=np.ones((n, 2))),
            "lif": node,
            "w_rec": nir.Linear(weight=w_rec),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[
            ("input", "fc"),
            ("fc", "lif"),
            ("lif", "w_rec"),
            ("w_rec", "lif"),
            ("lif", "output"),
        ],
    )
    net = bj.from_nir(graph, dt=DT)
    assert isinstance(net, bj.Network) and net.edges() == ((bj.INPUT, "lif"), ("lif", "lif"))
    np.testing.assert_array_equal(net.synapse(1).weight, w_rec.astype(np.float32))


def test_bad_input_gets_named_errors():
    net = _network(jax.random.PRNGKey(0))
    with pytest.raises(bj.NetworkError, match="'hidden'.*refractory"):
        bj.to_nir(net)
    for flags in (dict(fire=False, exponential=False), dict(exponential=True)):
        adex = bj.Sequential(
            [bj.Synapse(1, 1, weight=[[1.0]]),
             bj.AdEx(1, leaky=False, subthreshold_adaptation=False,
                     spike_triggered_adaptation=False, refractory_time=0.0, **flags)]
        )  # fmt: skip
        with pytest.raises(bj.NetworkError, match="'population_0'.*no NIR equivalent"):
            bj.to_nir(adex)
    graph = _affine_graph(0.0)
    graph.nodes["fc"] = nir.Delay(delay=np.array([1.0]))
    with pytest.raises(bj.NetworkError, match="'fc' is a Delay"):
        bj.from_nir(graph, dt=DT)
    bad = _affine_graph(0.0)
    bad.nodes["neuron"].tau_mem = np.array([-1.0])
    with pytest.raises(bj.NetworkError, match="'neuron'.*tau_mem.*positive"):
        bj.from_nir(bad, dt=DT)


def test_snntorch_synaptic_export_reproduces_its_discrete_dynamics():
    # snnTorch's exporter (snntorch/export_nir.py) writes a `Synaptic(alpha, beta)` layer as
    # tau_syn = dt / (1 - alpha), tau_mem = dt / (1 - beta), r = tau_mem / dt,
    # w_in = tau_syn / dt, v_leak = 0, with dt = 1e-4 s, and simulates
    # syn[t+1] = alpha syn[t] + W x[t], mem[t+1] = beta mem[t] + syn[t+1]. Read with
    # spike_area = dt, bss2jax's Euler step is that recursion, one step later (its dt of
    # synaptic delay); below threshold, so no reset convention enters.
    dt, alpha, beta = 1e-4, np.array([0.9, 0.8]), np.array([0.85, 0.95])
    weight = np.array([[0.3, -0.2, 0.1], [0.05, 0.2, 0.25]])
    tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
    node = nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(2),
        v_threshold=np.full(2, 1e3), v_reset=np.zeros(2), w_in=tau_syn / dt,
    )  # fmt: skip
    net = bj.from_nir(_chain(node, weight, size_in=3), dt=dt, spike_area=dt)
    x = np.asarray(_inputs(jax.random.PRNGKey(4), 50, 3, rate=0.4))
    mem = np.asarray(bj.run(net, jnp.asarray(x), dt=dt)[0].membrane_cadc)
    syn_ref, mem_ref = np.zeros((2, 2)), np.zeros((2, 2))
    expected = []
    for step in range(50):
        syn_ref = alpha * syn_ref + x[step] @ weight.T
        mem_ref = beta * mem_ref + syn_ref
        expected.append(mem_ref)
    assert np.abs(np.stack(expected)).max() > 1.0  # a real trace, not zeros
    np.testing.assert_allclose(mem[1:], np.stack(expected)[:-1], rtol=1e-4, atol=1e-5)
    unscaled = bj.from_nir(_chain(node, weight, size_in=3), dt=dt)  # spikes as Dirac deltas
    np.testing.assert_allclose(unscaled.synapse(0).weight, weight / dt, rtol=1e-6)


def _iaf(n, **kwargs):
    """A non-leaky, firing AdEx: an integrate-and-fire neuron with a synaptic current."""
    flags = dict(leaky=False, exponential=False, subthreshold_adaptation=False,
                 spike_triggered_adaptation=False)  # fmt: skip
    return bj.AdEx(n, **flags, **kwargs)


def test_iaf_round_trip_through_a_file_is_bit_for_bit(tmp_path):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 3)
    iaf = _iaf(
        3,
        leak=bj.Mixed(0.1, 80.0),  # unused without leak, but kept
        reset=jnp.array([0.0, 0.1, -0.1]),
        threshold=bj.Mixed(jnp.array([0.3, 0.4, 0.5]), 125.0),
        tau_mem=7e-6,
        tau_syn=jnp.array([3e-6, 4e-6, 5e-6]),
        membrane_capacitance=bj.Mixed(jnp.array([1e-5, 2e-5, 1.5e-5]), 63.0),
        refractory_time=0.0,
    )
    out = bj.LI(2, leak=0.0, tau_mem=8e-6, tau_syn=4e-6, membrane_capacitance=1e-5)
    projections = [
        bj.Projection(bj.INPUT, "iaf", bj.Synapse(2, 3, key=k1)),
        bj.Projection("iaf", "iaf", bj.Synapse(3, 3, key=k2)),
        bj.Projection("iaf", "out", bj.Synapse(3, 2, key=k3)),
    ]
    net = bj.Network({"iaf": iaf, "out": out}, projections, input_size=2)
    graph = bj.to_nir(net, time_unit=1e-3)
    assert isinstance(graph.nodes["iaf"], nir.IF) and isinstance(graph.nodes["iaf_synapse"], nir.LI)
    assert ("projection_0", "iaf_synapse") in graph.edges and ("iaf_synapse", "iaf") in graph.edges
    # the NIR equations in milliseconds: LI tau = r = tau_syn; IF dv/dt' = r I, r = 1e-3 / c
    current, soma = graph.nodes["iaf_synapse"], graph.nodes["iaf"]
    np.testing.assert_allclose(current.tau, [3e-3, 4e-3, 5e-3], rtol=1e-6)
    np.testing.assert_array_equal(current.r, current.tau)
    np.testing.assert_allclose(soma.r, [100.0, 50.0, 1e-3 / 1.5e-5], rtol=1e-6)
    nir.write(tmp_path / "iaf.nir", graph)
    back = bj.from_nir(nir.read(tmp_path / "iaf.nir"), dt=1e-7, time_unit=1e-3)
    assert isinstance(back, bj.Network) and back.order == ("iaf", "out")
    assert back.edges() == net.edges()
    _assert_same_parameters(net, back)
    x = _inputs(jax.random.PRNGKey(6), 80, 2, rate=0.5)
    outputs = bj.run(net, x, dt=1e-7)
    assert np.asarray(outputs["iaf"].spikes).sum() > 0  # the IAFs fire
    for a, b in zip(
        jax.tree.leaves(outputs), jax.tree.leaves(bj.run(back, x, dt=1e-7)), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def _li_if_chain(tau, r_li, r_if, theta, w, time_unit=1.0):
    """Input → Linear → LI → IF → Output: another library's current-based IF, in NIR."""
    n = len(w)
    graph = _chain(nir.IF(r=r_if, v_threshold=theta, v_reset=np.zeros(n)), w[:, None])
    graph.nodes["current"] = nir.LI(tau=tau / time_unit, r=r_li, v_leak=np.zeros(n))
    graph.edges = [("input", "fc"), ("fc", "current"), ("current", "neuron"), ("neuron", "output")]
    return graph


@pytest.mark.parametrize("time_unit", [1.0, 1e-3])
def test_li_into_if_from_the_spec_matches_the_closed_form(time_unit):
    # One spike of weight w at t = 0: the LI's I jumps by r_li w / tau and decays; the IF
    # integrates it: v(t) = r_if r_li w (1 - e^{-t / tau}) (NIR units cancel), per neuron.
    tau, r_li = np.array([4e-6, 6e-6]), np.array([1.5, 0.5])
    r_if, w = np.array([2.0, 3.0]), np.array([0.4, -0.3])
    graph = _li_if_chain(tau, r_li, r_if, np.full(2, 1e3), w, time_unit)
    net = bj.from_nir(graph, dt=DT, time_unit=time_unit)
    assert not net.population(0).leaky and net.population(0).fire
    steps = 500
    v = np.asarray(bj.run(net, jnp.zeros((steps, 1, 1)).at[0].set(1.0), dt=DT)[0].membrane_cadc)
    t = np.arange(steps)[:, None] * DT
    expected = r_if * r_li * w * (1 - np.exp(-t / tau))
    assert np.all(np.abs(v[:, 0] - expected).max(axis=0) < 0.02 * np.abs(r_if * r_li * w))


def test_if_under_constant_current_fires_at_the_linear_rate():
    # A spike every step is S = 1/dt: the LI's current settles at I0 = r_li w / dt; the IF's
    # membrane then grows linearly, r_if I0 per second, and fires every theta / (r_if I0).
    tau, r_li, r_if, w, theta = 2e-6, 1.0, 1e5, 1e-8, 0.1  # r_if: c = 1e-5
    graph = _li_if_chain(np.array([tau]), np.array([r_li]), np.array([r_if]),
                         np.array([theta]), np.array([w]))  # fmt: skip
    net = bj.from_nir(graph, dt=DT)
    spikes = np.asarray(bj.run(net, jnp.ones((600, 1, 1)), dt=DT)[0].spikes[:, 0, 0])
    times = np.flatnonzero(spikes)
    period = theta / (r_if * r_li * w / DT) / DT  # in steps: 100
    assert len(times) >= 4
    assert np.all(np.abs(np.diff(times[1:]) - period) <= 1)


def test_an_li_that_is_no_if_current_is_refused():
    # a leaky LI before an IF is no synaptic current (a constant offset has no bss2jax form)
    graph = _li_if_chain(*(np.array([x]) for x in (4e-6, 1.0, 2.0, 1.0, 0.5)))
    graph.nodes["current"].v_leak = np.array([0.1])
    with pytest.raises(bj.NetworkError, match="'current'.*synaptic current.*v_leak 0"):
        bj.from_nir(graph, dt=DT)
    graph = _li_if_chain(*(np.array([x]) for x in (4e-6, 1.0, 2.0, 1.0, 0.5)))
    graph.edges.append(("current", "output"))  # its trace is read out too: not folded
    with pytest.raises(bj.NetworkError, match="'current' does not spike"):
        bj.from_nir(graph, dt=DT, lif_tau_syn=2 * DT)

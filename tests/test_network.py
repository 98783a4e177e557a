"""Network containers: Sequential and the graph Network (recurrence, several inputs,
construction errors, the integration plan)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import model_space_neuron, tree_allclose

import bss2jax as bj

DT = 1e-6


def _lif(size):
    # Model space: leak 0, reset 0, threshold 1; c = tau_mem = 10 us, so dt/c = 0.1;
    # tau_syn = 10 us, so the current decays by 0.9 per step; refractory 1 step.
    return bj.LIF(size, leak=0.0, reset=0.0, threshold=1.0)


def _pulse(time=8):
    return jnp.zeros((time, 1, 1)).at[0, 0, 0].set(1.0)


def test_recurrent_projection_has_one_extra_dt_of_delay():
    # Neuron 0 gets the input (weight 20): i0[0] = 20, v0[1] = 0.1 * 20 = 2 > 1, so it
    # spikes at step 1; step 2 is refractory; v0[3] = 0.1 * i0[2] = 0.1 * 16.2 > 1: spike.
    # Recurrent weight 5 from neuron 0 onto neuron 1 carries the spikes of the PREVIOUS
    # step: x1[t] = 5 z0[t-1], so i1 = [0, 0, 5, 4.5, 4.05 + 5, ...].
    w_in = jnp.array([[20.0], [0.0]])
    w_rec = jnp.array([[0.0, 0.0], [5.0, 0.0]])
    net = bj.Network(
        {"h": _lif(2)},
        [
            bj.Projection(bj.INPUT, "h", bj.Synapse(1, 2, weight=w_in)),
            bj.Projection("h", "h", bj.Synapse(2, 2, weight=w_rec)),
        ],
        input_size=1,
    )
    out = bj.run(net, _pulse(), dt=DT)["h"]
    np.testing.assert_array_equal(out.spikes[:5, 0, 0], [0, 1, 0, 1, 0])
    np.testing.assert_allclose(out.current[:5, 0, 1], [0, 0, 5, 4.5, 9.05], rtol=1e-6)

    # The same connection feed-forward (a -> b, b declared after a) has no extra delay:
    # x_b[t] = 5 z_a[t], so i_b = [0, 5, 4.5, 9.05, ...].
    forward = bj.Network(
        {"a": _lif(1), "b": _lif(1)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(1, 1, weight=jnp.array([[20.0]]))),
            bj.Projection("a", "b", bj.Synapse(1, 1, weight=jnp.array([[5.0]]))),
        ],
        input_size=1,
    )
    out = bj.run(forward, _pulse(), dt=DT)
    np.testing.assert_allclose(out["b"].current[:4, 0, 0], [0, 5, 4.5, 9.05], rtol=1e-6)

    # Declared the other way round (b before a), a -> b projects onto an earlier
    # population and is delayed by one dt, like the recurrent one.
    backward = bj.Network(
        {"b": _lif(1), "a": _lif(1)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(1, 1, weight=jnp.array([[20.0]]))),
            bj.Projection("a", "b", bj.Synapse(1, 1, weight=jnp.array([[5.0]]))),
        ],
        input_size=1,
    )
    out = bj.run(backward, _pulse(), dt=DT)
    np.testing.assert_allclose(out["b"].current[:5, 0, 0], [0, 0, 5, 4.5, 9.05], rtol=1e-6)
    assert list(out) == ["b", "a"]


def test_mutual_recurrence_integrates_jointly(getkey):
    # a -> b (same step) and b -> a (delayed) form one stage; compare with a hand loop
    # of the two populations' currents using the run's own spikes.
    w_ab = jax.random.uniform(getkey(), (3, 2), minval=0.0, maxval=3.0)
    w_ba = jax.random.uniform(getkey(), (2, 3), minval=0.0, maxval=3.0)
    w_in = jax.random.uniform(getkey(), (2, 4), minval=0.0, maxval=8.0)
    net = bj.Network(
        {"a": _lif(2), "b": _lif(3)},
        [
            bj.Projection(bj.INPUT, "a", bj.Synapse(4, 2, weight=w_in)),
            bj.Projection("a", "b", bj.Synapse(2, 3, weight=w_ab)),
            bj.Projection("b", "a", bj.Synapse(3, 2, weight=w_ba)),
        ],
        input_size=4,
    )
    (stage,) = net.plan()
    assert stage.populations == ("a", "b")
    inputs = (jax.random.uniform(getkey(), (25, 2, 4)) < 0.3).astype(jnp.float32)
    out = bj.run(net, inputs, dt=DT)
    za, zb = np.asarray(out["a"].spikes), np.asarray(out["b"].spikes)
    assert za.sum() > 0 and zb.sum() > 0
    zb_prev = np.concatenate([np.zeros_like(zb[:1]), zb[:-1]])
    x_a = np.asarray(inputs) @ np.asarray(w_in).T + zb_prev @ np.asarray(w_ba).T
    x_b = za @ np.asarray(w_ab).T
    for x, current in ((x_a, out["a"].current), (x_b, out["b"].current)):
        expected, i = [], np.zeros_like(x[0])
        for t in range(x.shape[0]):
            i = 0.9 * i + x[t]
            expected.append(i)
        np.testing.assert_allclose(current, np.stack(expected), rtol=1e-5, atol=1e-5)


def test_several_inputs_into_one_population_add(getkey):
    w1 = jax.random.normal(getkey(), (3, 4))
    w2 = jax.random.normal(getkey(), (3, 4))
    inputs = (jax.random.uniform(getkey(), (20, 2, 4)) < 0.3).astype(jnp.float32)
    li = model_space_neuron(bj.LI, 3)
    two = bj.Network(
        {"out": li},
        [
            bj.Projection(bj.INPUT, "out", bj.Synapse(4, 3, weight=w1)),
            bj.Projection(bj.INPUT, "out", bj.Synapse(4, 3, weight=w2)),
        ],
        input_size=4,
    )
    one = bj.Network(
        {"out": li}, [bj.Projection(bj.INPUT, "out", bj.Synapse(4, 3, weight=w1 + w2))],
        input_size=4,
    )  # fmt: skip
    assert tree_allclose(bj.run(two, inputs)["out"], bj.run(one, inputs)["out"], atol=1e-5)
    # Not trivially equal to either projection alone.
    alone = bj.Network(
        {"out": li}, [bj.Projection(bj.INPUT, "out", bj.Synapse(4, 3, weight=w1))], input_size=4
    )
    assert not tree_allclose(bj.run(two, inputs)["out"], bj.run(alone, inputs)["out"])


def test_network_chain_equals_sequential(getkey):
    s1, s2 = bj.Synapse(5, 4, key=getkey()), bj.Synapse(4, 2, key=getkey())
    hidden = bj.LIF(4, leak=0.0, reset=0.0, threshold=0.3)
    readout = bj.LI(2, leak=0.0)
    seq = bj.Sequential([s1, hidden, s2, readout])
    graph = bj.Network(
        {"hidden": hidden, "readout": readout},
        [bj.Projection(bj.INPUT, "hidden", s1), bj.Projection("hidden", "readout", s2)],
        input_size=5,
    )
    inputs = (jax.random.uniform(getkey(), (30, 3, 5)) < 0.4).astype(jnp.float32)
    a, b = bj.run(seq, inputs), bj.run(graph, inputs)
    assert float(a[0].spikes.sum()) > 0
    assert tree_allclose(a[0], b["hidden"]) and tree_allclose(a[1], b["readout"])
    assert [len(s.populations) for s in seq.plan()] == [1, 1]
    assert all(not s.internal for s in seq.plan())


# ----------------------------------- errors --------------------------------------------
def _syn(i, o):
    return bj.Synapse(i, o, key=jax.random.PRNGKey(0))


def test_sequential_errors():
    with pytest.raises(bj.NetworkError, match="`layers`"):
        bj.Sequential([])
    with pytest.raises(bj.NetworkError, match="`layers`"):
        bj.Sequential([_syn(2, 3)])
    with pytest.raises(bj.NetworkError, match=r"`layers\[0\]` must be a Synapse"):
        bj.Sequential([bj.LIF(3), _syn(3, 3)])
    with pytest.raises(bj.NetworkError, match=r"`layers\[1\]` must be an? \w*Neuron"):
        bj.Sequential([_syn(2, 3), _syn(3, 3)])
    with pytest.raises(bj.NetworkError, match=r"`layers\[1\].size`.*\(3\); got 4"):
        bj.Sequential([_syn(2, 3), bj.LIF(4)])
    with pytest.raises(bj.NetworkError, match=r"`layers\[2\].in_features`.*\(3\); got 5"):
        bj.Sequential([_syn(2, 3), bj.LIF(3), _syn(5, 1), bj.LI(1)])
    with pytest.raises(bj.NetworkError, match=r"`layers\[2\]`.*does not fire"):
        bj.Sequential([_syn(2, 3), bj.LI(3), _syn(3, 1), bj.LI(1)])
    assert issubclass(bj.NetworkError, ValueError)


def test_network_errors():
    pops = {"h": bj.LIF(3), "out": bj.LI(2)}
    good = [bj.Projection(bj.INPUT, "h", _syn(4, 3)), bj.Projection("h", "out", _syn(3, 2))]
    bj.Network(pops, good, input_size=4)
    cases = [
        # in_features does not match the source
        (
            [bj.Projection(bj.INPUT, "h", _syn(5, 3)), good[1]],
            r"`projections\[0\]`.*`in_features`.*\(4\); got 5",
        ),
        (
            [good[0], bj.Projection("h", "out", _syn(2, 2))],
            r"`projections\[1\]`.*`in_features`.*\(3\); got 2",
        ),
        ([good[0], bj.Projection("h", "out", _syn(3, 5))], r"`out_features`.*\(2\); got 5"),
        ([good[0], bj.Projection("hiden", "out", _syn(3, 2))], r"`projections\[1\].source`"),
        ([good[0], bj.Projection("h", "output", _syn(3, 2))], r"`projections\[1\].target`"),
        ([good[0], good[1], bj.Projection("out", "h", _syn(2, 3))], r"does not fire"),
        ([good[0]], r"incoming projection.*\['out'\]"),
        ([good[0], "h->out"], r"`projections\[1\]` must be a bj.Projection"),
    ]
    for projections, message in cases:
        with pytest.raises(bj.NetworkError, match=message):
            bj.Network(pops, projections, input_size=4)
    with pytest.raises(bj.NetworkError, match="`input_size`"):
        bj.Network(pops, good, input_size=0)
    with pytest.raises(bj.NetworkError, match="`populations`"):
        bj.Network({}, good, input_size=4)
    with pytest.raises(bj.NetworkError, match="population names"):
        bj.Network({bj.INPUT: bj.LIF(3)}, good, input_size=4)
    with pytest.raises(bj.NetworkError, match=r"`populations\['h'\]`"):
        bj.Network({"h": _syn(1, 1), "out": bj.LI(2)}, good, input_size=4)


def test_network_is_a_pytree_of_its_parameters(getkey):
    net = bj.Network(
        {"h": bj.LIF(3)},
        [
            bj.Projection(bj.INPUT, "h", bj.Synapse(2, 3, key=getkey())),
            bj.Projection("h", "h", bj.Synapse(3, 3, key=getkey())),
        ],
        input_size=2,
    )
    leaves, tree = jax.tree_util.tree_flatten(net)
    rebuilt = jax.tree_util.tree_unflatten(tree, leaves)
    inputs = jnp.ones((5, 1, 2))
    assert tree_allclose(bj.run(net, inputs), bj.run(rebuilt, inputs))
    doubled = jax.tree_util.tree_map(lambda x: x, net)
    assert jax.tree_util.tree_structure(doubled) == tree

"""NIR graphs with nested sub-graphs (`nir.NIRGraph` nodes), as snnTorch exports its
recurrent `RLeaky`/`RSynaptic` layers: `from_nir` inlines them (`bss2jax/_nir_import.py`)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import bss2jax as bj

nir = pytest.importorskip("nir")

DT = 1e-7


def _inputs(key, steps, size, rate):
    return (jax.random.uniform(key, (steps, 2, size)) < rate).astype(np.float32)


def _rsynaptic(n, w_rec):
    """snnTorch's RSynaptic export (snntorch/export_nir.py): a sub-graph with a loop."""
    lif = nir.CubaLIF(
        tau_syn=np.full(n, 5e-6), tau_mem=np.array([8e-6, 10e-6, 12e-6][:n]), r=np.ones(n),
        v_leak=np.zeros(n), v_threshold=np.full(n, 0.3), v_reset=np.zeros(n),
        w_in=np.full(n, 5e-6),
    )  # fmt: skip
    return {
        "nodes": {
            "input": nir.Input(input_type=np.array([n])),
            "lif": lif,
            "w_rec": nir.Linear(weight=w_rec),
            "output": nir.Output(output_type=np.array([n])),
        },
        "edges": [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    }


def _outer(middle, name):
    li = nir.CubaLI(
        tau_syn=np.full(2, 4e-6), tau_mem=np.full(2, 8e-6), r=np.ones(2), v_leak=np.zeros(2),
        w_in=np.full(2, 4e-6),
    )  # fmt: skip
    nodes = {
        "input": nir.Input(input_type=np.array([2])),
        "fc": nir.Linear(weight=np.array([[0.8, 0.1], [0.2, 0.7], [0.5, 0.5]])),
        "fc2": nir.Linear(weight=np.array([[0.3, -0.2, 0.1], [0.1, 0.4, -0.3]])),
        "li": li,
        "output": nir.Output(output_type=np.array([2])),
    }
    return nodes | middle, [("input", "fc"), ("fc", name), (name, "fc2"), ("fc2", "li"),
                            ("li", "output")]  # fmt: skip


@pytest.mark.parametrize("depth", [1, 2])
def test_nested_recurrent_graph_imports_as_its_flat_equivalent(tmp_path, depth):
    w_rec = np.array([[0.0, 0.3, -0.2], [0.1, 0.0, 0.2], [-0.3, 0.2, 0.0]])
    inner = _rsynaptic(3, w_rec)
    flat_nodes, flat_edges = _outer({"rsyn": inner["nodes"]["lif"], "w": inner["nodes"]["w_rec"]},
                                    "rsyn")  # fmt: skip
    flat = nir.NIRGraph(nodes=flat_nodes, edges=flat_edges + [("rsyn", "w"), ("w", "rsyn")])
    sub = nir.NIRGraph(nodes=inner["nodes"], edges=inner["edges"])
    name = "rsyn.lif"
    if depth == 2:  # a composite module around it: rsyn = {input, rnn: RSynaptic, output}
        sub = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([3])), "rnn": sub,
                   "output": nir.Output(output_type=np.array([3]))},
            edges=[("input", "rnn"), ("rnn", "output")],
        )  # fmt: skip
        name = "rsyn.rnn.lif"
    nested = nir.NIRGraph(*_outer({"rsyn": sub}, "rsyn"))
    nir.write(tmp_path / "nested.nir", nested)
    net = bj.from_nir(nir.read(tmp_path / "nested.nir"), dt=DT)
    reference = bj.from_nir(flat, dt=DT)
    assert isinstance(net, bj.Network) and net.order == (name, "li")
    # the outer edges first, then the sub-graph's
    assert net.edges() == ((bj.INPUT, name), (name, "li"), (name, name))
    np.testing.assert_array_equal(net.synapse(2).weight, w_rec.astype(np.float32))
    x = _inputs(jax.random.PRNGKey(7), 120, 2, rate=0.6)
    got, want = bj.run(net, x, dt=DT), bj.run(reference, x, dt=DT)
    assert np.asarray(want["rsyn"].spikes).sum() > 0
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nested_graph_edges_may_address_inner_nodes_and_ambiguity_is_refused():
    inner = _rsynaptic(3, np.zeros((3, 3)))
    two = dict(inner["nodes"], extra=nir.Input(input_type=np.array([3])))
    sub = nir.NIRGraph(nodes=two, edges=inner["edges"] + [("extra", "lif")], type_check=False)
    nodes, edges = _outer({"rsyn": sub}, "rsyn")
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(bj.NetworkError, match="'rsyn' has 2 Input.*'rsyn.<name>'"):
        bj.from_nir(graph, dt=DT)
    graph.edges = [("fc", "rsyn.extra") if e == ("fc", "rsyn") else e for e in edges]
    net = bj.from_nir(graph, dt=DT)
    assert net.edges() == ((bj.INPUT, "rsyn.lif"), ("rsyn.lif", "li"), ("rsyn.lif", "rsyn.lif"))
    graph.edges = good = [("fc", "rsyn.lif") if e == ("fc", "rsyn") else e for e in edges]
    assert bj.from_nir(graph, dt=DT).edges() == net.edges()
    graph.edges = good + [("li", "nowhere")]
    with pytest.raises(bj.NetworkError, match="'nowhere' names no node"):
        bj.from_nir(graph, dt=DT)
    graph.nodes["rsyn.lif"], graph.edges = nir.Linear(weight=np.eye(3)), good
    with pytest.raises(bj.NetworkError, match="'rsyn.lif' is used twice"):
        bj.from_nir(graph, dt=DT)

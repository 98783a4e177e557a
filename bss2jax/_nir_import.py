"""`from_nir`: a `nir.NIRGraph` as a `bj.Sequential` or `bj.Network` (conventions: `_nir`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._errors import NetworkError
from ._network import INPUT, Network, Projection, Sequential
from ._neurons import LI, LIF, AdEx
from ._nir import _check_time_unit, _nir
from ._parameters import Mixed
from ._synapse import Synapse
from ._transforms import LinearSaturating

_NEURONS = ("CubaLIF", "CubaLI", "LIF", "LI", "IF")
_WEIGHTS = ("Linear", "Affine")


def _vector(node_name: str, field: str, value, size: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 1:
        array = np.full(size, array[0])
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise NetworkError(
            f"NIR node {node_name!r}: `{field}` must hold {size} finite values; got {value!r}."
        )
    return array


def _positive(node_name: str, field: str, array: np.ndarray) -> np.ndarray:
    if not np.all(array > 0):
        raise NetworkError(
            f"NIR node {node_name!r}: `{field}` must be positive; got {array.min():g}."
        )
    return array


def _compact(array: np.ndarray):
    """A scalar where all neurons agree, else the per-neuron array (float32 as bss2jax)."""
    return float(array[0]) if np.all(array == array[0]) else jnp.asarray(array, dtype=float)


def _parameters(values: dict, meta: dict) -> dict[str, Any]:
    """Model values as bss2jax parameters, `Mixed` with the chip values `to_nir` kept."""
    parameters: dict[str, Any] = {}
    for key, value in values.items():
        hardware = meta.get(f"bss2jax_hardware_{key}")
        parameters[key] = _compact(value)
        if hardware is not None:
            hardware = np.asarray(hardware, dtype=np.float64).reshape(-1)
            parameters[key] = Mixed(
                jnp.asarray(value, dtype=float), jnp.asarray(hardware, dtype=float)
            )
            if np.all(value == value[0]) and np.all(hardware == hardware[0]):
                parameters[key] = Mixed(float(value[0]), float(hardware[0]))
    return parameters


def _neuron(name: str, node, kind: str, options: dict) -> tuple[Any, np.ndarray]:
    """The bss2jax population for NIR neuron `node`, and the row gain `w_in / tau_syn` that
    turns NIR weights into its weights (NIR time units)."""
    unit = options["time_unit"]
    field = "v_threshold" if kind in ("CubaLIF", "LIF", "IF") else "v_leak"
    size = int(np.asarray(getattr(node, field)).size)
    get = lambda f: _vector(name, f, getattr(node, f), size)  # noqa: E731
    meta = dict(node.metadata or {})
    current = options["currents"].get(name)  # the LI that is this IF's synaptic current
    if kind.startswith("Cuba"):
        tau_syn, w_in, tau_mem = get("tau_syn"), get("w_in"), get("tau_mem")
    elif current is not None:
        li = options["nodes"][current]
        tau_syn = _positive(current, "tau", _vector(current, "tau", li.tau, size))
        w_in = _positive(current, "r", _vector(current, "r", li.r, size))
        tau_mem = np.ones(size)
    else:
        if options["lif_tau_syn"] is None:
            raise NetworkError(
                f"NIR node {name!r} is a {kind}, which has no synaptic current, but bss2jax's "
                "neurons are current-based: pass `lif_tau_syn` (seconds), a short synaptic "
                "time constant that approximates it (the PSP is smeared over about that time)."
            )
        tau_syn = np.full(size, options["lif_tau_syn"] / unit)
        w_in = np.ones(size)
        tau_mem = get("tau") if kind != "IF" else np.ones(size)
    _positive(name, "tau_syn", tau_syn)
    _positive(name, "tau_mem" if kind.startswith("Cuba") else "tau", tau_mem)
    r = _positive(name, "r", get("r"))
    tau_mem_s, tau_syn_s = tau_mem * unit, tau_syn * unit
    numerator = np.full(size, unit) if kind == "IF" else tau_mem_s
    capacitance = numerator / r
    stored = meta.get("bss2jax_membrane_capacitance")
    if stored is not None:
        stored = np.asarray(stored, dtype=np.float64).reshape(-1)
        if stored.shape == (size,) and np.array_equal(numerator / stored, r):
            capacitance = stored  # exactly what to_nir wrote r from
    leak = get("v_leak") if kind != "IF" else np.zeros(size)
    if kind == "IF":  # unused without leak: what to_nir kept, else 0 and one time unit
        leak = _vector(name, "bss2jax_leak", meta.get("bss2jax_leak", leak), size)
        tau_mem_s = _vector(name, "bss2jax_tau_mem", meta.get("bss2jax_tau_mem", tau_mem_s), size)
    values = {
        "tau_mem": tau_mem_s,
        "tau_syn": tau_syn_s,
        "membrane_capacitance": capacitance,
        "leak": leak,
    }
    if kind in ("CubaLIF", "LIF", "IF"):
        values["reset"], values["threshold"] = get("v_reset"), get("v_threshold")
    parameters = _parameters(values, meta)
    settings = dict(integrator=options["integrator"], trace_scale=1.0, trace_offset=0.0)
    gain = w_in * options["spike_area"] / tau_syn
    if kind in ("CubaLI", "LI"):
        return LI(size, **parameters, **settings), gain
    refractory = np.asarray(meta.get("bss2jax_refractory_time", 0.0), dtype=np.float64)
    parameters["refractory_time"] = _compact(np.broadcast_to(refractory, (size,)))
    if kind == "IF":
        population: Any = AdEx(
            size,
            **parameters,
            **settings,
            exponential=False,
            subthreshold_adaptation=False,
            spike_triggered_adaptation=False,
            leaky=False,
            fire=True,
        )
    else:
        population = LIF(size, **parameters, **settings)
    return population, gain


def _resolve(end: str, side: int, nodes: dict, ports: dict) -> str:
    """The flat node an edge end names: itself, or a sub-graph's only Input (side 1, an
    edge into it) or only Output (side 0, an edge out of it)."""
    if end in ports:
        port = ports[end][side]
        if len(port) != 1:
            what = "Input" if side else "Output"
            raise NetworkError(
                f"NIR sub-graph {end!r} has {len(port)} {what} nodes "
                f"{[p[len(end) + 1 :] for p in port]}: an edge {'into' if side else 'out of'} "
                f"it must name one as '{end}.<name>'."
            )
        return port[0]
    if end not in nodes:
        raise NetworkError(f"NIR edge end {end!r} names no node of the graph.")
    return end


def _contract(edges: list, port: str, entry: bool) -> list:
    """`edges` without the pass-through node `port`: every path `a -> port -> b` becomes
    `a -> b`, placed where the outer-graph edge was (`a -> port` for an entry, an Input;
    `port -> b` for an exit, an Output), so the outer edge order stays."""
    before = [a for a, b in edges if b == port and a != port]
    after = [b for a, b in edges if a == port and b != port]
    contracted = []
    for a, b in edges:
        if entry and b == port and a != port:
            contracted += [(a, c) for c in after]
        elif not entry and a == port and b != port:
            contracted += [(c, b) for c in before]
        elif port not in (a, b):
            contracted.append((a, b))
    return contracted


def _flatten(graph) -> tuple[dict, list]:
    """Nodes and edges of `graph` with every nested `NIRGraph` inlined: inner node `B` of
    sub-graph `G` becomes `G.B`; edges into or out of `G` go through its Input/Output nodes,
    which are then contracted. Edge order: the outer edges, then each sub-graph's."""
    nir = _nir()
    nodes: dict = {}
    inner_edges: list = []
    ports: dict = {}  # sub-graph name -> (its Output names, its Input names)
    for name, node in graph.nodes.items():
        inner = {name: node}
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten(node)
            inner = {f"{name}.{k}": v for k, v in sub_nodes.items()}
            inner_edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in sub_edges]
            kinds = {k: type(v).__name__ for k, v in inner.items()}
            ports[name] = tuple([k for k in inner if kinds[k] == t] for t in ("Output", "Input"))
        for key, value in inner.items():
            if key in nodes:
                raise NetworkError(f"NIR node name {key!r} is used twice once flattened.")
            nodes[key] = value
    edges = [(_resolve(a, 0, nodes, ports), _resolve(b, 1, nodes, ports)) for a, b in graph.edges]
    edges += inner_edges
    for exits, entries in ports.values():
        for port in exits + entries:
            edges = _contract(edges, port, entry=port in entries)
            del nodes[port]
    return nodes, edges


def _synaptic_currents(nodes: dict, edges: list) -> tuple[dict, list, dict]:
    """Fold each `LI` whose only edge is into an `IF` that nothing else feeds into that IF
    as its synaptic current (how `to_nir` writes a non-leaky population): nodes without
    those LIs, edges into them redirected to their IF, and `{IF name: LI name}`."""
    currents = {}
    for name, node in nodes.items():
        out = [b for a, b in edges if a == name]
        if type(node).__name__ != "LI" or len(out) != 1 or type(nodes[out[0]]).__name__ != "IF":
            continue
        if [a for a, b in edges if b == out[0]] != [name]:
            continue
        if np.any(np.asarray(node.v_leak) != 0):
            raise NetworkError(
                f"NIR node {name!r}: an LI whose only edge is into IF {out[0]!r} is read as its "
                "synaptic current, which needs v_leak 0 (bss2jax has no constant current); got "
                f"v_leak up to {np.abs(np.asarray(node.v_leak)).max():g}."
            )
        currents[out[0]] = name
    into = {li: soma for soma, li in currents.items()}
    edges = [(a, into.get(b, b)) for a, b in edges if a not in into]
    return {k: v for k, v in nodes.items() if k not in into}, edges, currents


def _weights(name: str, node, drop_bias: bool) -> np.ndarray:
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise NetworkError(
            f"NIR node {name!r}: `weight` must be 2-D (out, in); got {weight.shape}."
        )
    bias = np.asarray(getattr(node, "bias", 0.0), dtype=np.float64)
    if np.any(bias != 0) and not drop_bias:
        raise NetworkError(
            f"NIR node {name!r} is an Affine with a nonzero bias (largest |b| = "
            f"{np.abs(bias).max():g}); the chip has no bias. Pass drop_bias=True to drop it."
        )
    return weight


def _order(populations: dict, links: list, metadata_positions: dict) -> list:
    """Population names in execution order: `bss2jax_position` metadata where every node has
    one, else feed-forward order from the input (a cycle broken at its first-found node)."""
    if len(metadata_positions) == len(populations):
        return sorted(populations, key=lambda k: metadata_positions[k])
    found = [t for s, t in links if s == INPUT] + [t for _, t in links]
    found += list(populations)
    order: list = []
    while len(order) < len(populations):
        ready = [
            p
            for p in populations
            if p not in order and all(s in order or s in (INPUT, p) for s, t in links if t == p)
        ]
        pending = [p for p in found if p not in order]
        order.append(ready[0] if ready else pending[0])
    return order


def _projections(graph, kinds, populations, gains, input_size, drop_bias):
    """`(source, target)` links and `bj.Projection`s for the edges of `graph`, in edge order:
    a weight node gives one projection per neuron it feeds, a direct edge an identity."""
    links, projections = [], []
    alias = {n: INPUT for n, k in kinds.items() if k == "Input"}
    for source, target in graph.edges:
        if kinds[target] == "Output" or kinds[source] in _WEIGHTS:
            if kinds[source] in _WEIGHTS and kinds[target] not in _NEURONS:
                raise NetworkError(
                    f"NIR edge {source!r} -> {target!r}: a weight must feed a neuron."
                )
            continue
        if kinds[target] not in _NEURONS + _WEIGHTS:
            raise NetworkError(f"NIR edge {source!r} -> {target!r}: unsupported target.")
        if kinds[source] in ("CubaLI", "LI"):
            raise NetworkError(
                f"NIR edge {source!r} -> {target!r}: {source!r} does not spike (an LI feeds "
                "bss2jax only as the synaptic current of one IF: v_leak 0, its only edge)."
            )
        weight_nodes = [target] if kinds[target] in _WEIGHTS else [None]
        for weight_node in weight_nodes:
            post = [t for s, t in graph.edges if s == weight_node] if weight_node else [target]
            for neuron in post:
                size_in = input_size if kinds[source] == "Input" else populations[source].size
                if weight_node is None:
                    weight = np.eye(populations[neuron].size, size_in)
                    if populations[neuron].size != size_in:
                        raise NetworkError(f"NIR edge {source!r} -> {neuron!r}: sizes differ.")
                    meta: dict = {}
                else:
                    weight = _weights(weight_node, graph.nodes[weight_node], drop_bias)
                    meta = dict(graph.nodes[weight_node].metadata or {})
                if weight.shape != (populations[neuron].size, size_in):
                    raise NetworkError(
                        f"NIR node {weight_node!r}: weight shape must be (out, in) = "
                        f"{(populations[neuron].size, size_in)}; got {weight.shape}."
                    )
                gain = gains[neuron]
                scaled = weight if np.all(gain == 1.0) else weight * gain[:, None]
                scale = np.asarray(meta.get("bss2jax_transform_scale", [1.0]), dtype=np.float64)
                transform = LinearSaturating(
                    float(scale[0]) if scale.ndim <= 1 else jnp.asarray(scale, dtype=float)
                )
                synapse = Synapse(
                    size_in, populations[neuron].size, weight=scaled, transform=transform
                )
                links.append((alias.get(source, source), neuron))
                projections.append(Projection(alias.get(source, source), neuron, synapse))
    return links, projections


def _input_size(nodes: dict, kinds: dict) -> int:
    for name, kind in kinds.items():
        if kind not in _NEURONS + _WEIGHTS + ("Input", "Output"):
            raise NetworkError(
                f"NIR node {name!r} is a {kind}; from_nir maps Input, Output, Linear, Affine, "
                f"{', '.join(_NEURONS)} and nested NIRGraphs of them."
            )
    inputs = [n for n, k in kinds.items() if k == "Input"]
    if len(inputs) != 1:
        raise NetworkError(f"the NIR graph must have exactly one Input node; got {inputs}.")
    shape = np.asarray(nodes[inputs[0]].input_type["input"]).reshape(-1)
    if shape.size != 1:
        raise NetworkError(f"NIR Input {inputs[0]!r} must be 1-D; got shape {tuple(shape)}.")
    return int(shape[0])


def from_nir(
    graph,
    *,
    dt: float = 1e-6,
    drop_bias: bool = False,
    time_unit: float = 1.0,
    lif_tau_syn: float | None = None,
    spike_area: float = 1.0,
    integrator: str = "euler",
):
    """Import a `nir.NIRGraph` as a `bj.Sequential` (a plain chain) or a `bj.Network`.

    **Arguments:**
    - `graph`: one `Input` (1-D), `Linear`/`Affine` nodes, neuron nodes `CubaLIF` (→ `LIF`),
      `CubaLI` (→ `LI`), `LI` → `IF` (an IAF, the LI its synaptic current), `LIF`/`LI`/`IF`
      (with `lif_tau_syn`), `Output`s, and nested `NIRGraph`s of these (inlined: node `B`
      of sub-graph `G` becomes population `G.B`). Edges may close loops (a population onto
      itself or an earlier one: one extra `dt` of delay).
    - `dt`: step (seconds) the network will run with: every time constant must exceed it
      with `integrator="euler"`.
    - `drop_bias`: drop an `Affine`'s bias instead of refusing it (the chip has none).
    - `time_unit`: seconds per NIR time unit (1.0 seconds; 1e-3 for hxtorch's files).
    - `lif_tau_syn`: synaptic time constant (seconds) for NIR's synapse-free LIF/LI/IF.
    - `spike_area`: area of one input spike `S` in NIR time units: 1.0 (default) reads
      spikes as unit Dirac deltas; a file whose exporter meant `S` as a 0/1 value held for
      one step (snnTorch's exporter, `w_in = tau_syn / dt`) needs its step, `dt` in NIR units.
    - `integrator`: "euler" or "exact", for every population.

    Parameters stay per neuron; weights into a population are scaled by its
    `w_in * spike_area / tau_syn` (see `bss2jax._nir` for the conventions).
    """
    nir = _nir()
    options: dict[str, Any] = dict(time_unit=_check_time_unit(time_unit))
    options.update(lif_tau_syn=lif_tau_syn, integrator=integrator, spike_area=spike_area)
    if isinstance(spike_area, bool) or not 0 < float(spike_area) < float("inf"):
        raise ValueError(f"`spike_area` must be a positive float; got {spike_area!r}.")
    if lif_tau_syn is not None and not (0 < float(lif_tau_syn) < float("inf")):
        raise ValueError(f"`lif_tau_syn` must be a positive time (s); got {lif_tau_syn!r}.")
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"`graph` must be a nir.NIRGraph; got {type(graph).__name__}.")
    everything, edges = _flatten(graph)
    nodes, edges, currents = _synaptic_currents(everything, edges)
    options.update(currents=currents, nodes=everything)
    flat = SimpleNamespace(nodes=nodes, edges=edges)
    kinds = {name: type(node).__name__ for name, node in nodes.items()}
    input_size = _input_size(nodes, kinds)
    populations, gains, positions = {}, {}, {}
    for name, kind in kinds.items():
        if kind in _NEURONS:
            node = nodes[name]
            populations[name], gains[name] = _neuron(name, node, kind, options)
            if "bss2jax_position" in (node.metadata or {}):
                positions[name] = int(np.asarray(node.metadata["bss2jax_position"]))
    links, projections = _projections(flat, kinds, populations, gains, input_size, drop_bias)
    order = _order(populations, links, positions)
    populations = {name: populations[name] for name in order}
    chain = [(INPUT if k == 0 else order[k - 1], order[k]) for k in range(len(order))]
    kind = str((graph.metadata or {}).get("bss2jax_network", ""))
    if links == chain and kind != "Network":
        layers: list = []
        for projection in projections:
            layers += [projection.synapse, populations[projection.target]]
        network: Any = Sequential(layers)
    else:
        network = Network(populations, projections, input_size=input_size)
    for name in order:
        populations[name].check_step(float(dt))
    return network

"""`from_nir`: a `nir.NIRGraph` as a `bj.Sequential` or `bj.Network` (conventions: `_nir`)."""

from __future__ import annotations

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


def _neuron(name: str, node, kind: str, options: dict) -> tuple[Any, np.ndarray]:
    """The bss2jax population for NIR neuron `node`, and the row gain `w_in / tau_syn` that
    turns NIR weights into its weights (NIR time units)."""
    unit = options["time_unit"]
    field = "v_threshold" if kind in ("CubaLIF", "LIF", "IF") else "v_leak"
    size = int(np.asarray(getattr(node, field)).size)
    get = lambda f: _vector(name, f, getattr(node, f), size)  # noqa: E731
    meta = dict(node.metadata or {})
    if kind.startswith("Cuba"):
        tau_syn, w_in, tau_mem = get("tau_syn"), get("w_in"), get("tau_mem")
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
    capacitance = unit / r if kind == "IF" else tau_mem_s / r
    stored = meta.get("bss2jax_membrane_capacitance")
    if stored is not None and kind != "IF":
        stored = np.asarray(stored, dtype=np.float64).reshape(-1)
        if stored.shape == (size,) and np.array_equal(tau_mem_s / stored, r):
            capacitance = stored  # exactly what to_nir wrote r from
    values = {
        "tau_mem": tau_mem_s,
        "tau_syn": tau_syn_s,
        "membrane_capacitance": capacitance,
        "leak": get("v_leak") if kind != "IF" else np.zeros(size),
    }
    if kind in ("CubaLIF", "LIF", "IF"):
        values["reset"], values["threshold"] = get("v_reset"), get("v_threshold")
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
            raise NetworkError(f"NIR edge {source!r} -> {target!r}: {source!r} does not spike.")
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
      `CubaLI` (→ `LI`), `LIF`/`LI`/`IF` (with `lif_tau_syn`), `Output`s. Edges may close
      loops (a population onto itself or an earlier one: one extra `dt` of delay).
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
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    for name, kind in kinds.items():
        if kind not in _NEURONS + _WEIGHTS + ("Input", "Output"):
            raise NetworkError(
                f"NIR node {name!r} is a {kind}; from_nir maps Input, Output, Linear, Affine, "
                f"{', '.join(_NEURONS)} (flatten nested graphs first)."
            )
    inputs = [n for n, k in kinds.items() if k == "Input"]
    if len(inputs) != 1:
        raise NetworkError(f"the NIR graph must have exactly one Input node; got {inputs}.")
    shape = np.asarray(graph.nodes[inputs[0]].input_type["input"]).reshape(-1)
    if shape.size != 1:
        raise NetworkError(f"NIR Input {inputs[0]!r} must be 1-D; got shape {tuple(shape)}.")
    input_size = int(shape[0])
    populations, gains, positions = {}, {}, {}
    for name, kind in kinds.items():
        if kind in _NEURONS:
            node = graph.nodes[name]
            populations[name], gains[name] = _neuron(name, node, kind, options)
            if "bss2jax_position" in (node.metadata or {}):
                positions[name] = int(np.asarray(node.metadata["bss2jax_position"]))
    links, projections = _projections(graph, kinds, populations, gains, input_size, drop_bias)
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

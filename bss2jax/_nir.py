"""Exchange networks with NIR, the Neuromorphic Intermediate Representation (`nir` package).

Checked against `nir` 1.0.8 and neuromorphs/NIR@7232ada6d30e1beea78b180a5135b1a3bb3d3bc0
(`nir/ir/neuron.py`, `nir/ir/linear.py`, `nir/ir/graph.py`, `docs/source/api_design.md`),
whose continuous-time equations are, with times in NIR time units:

    CubaLIF / CubaLI:  tau_syn dI/dt = -I + w_in * S;   tau_mem dv/dt = (v_leak - v) + r * I
    LIF / LI:          tau dv/dt = (v_leak - v) + r * S
    IF:                dv/dt = r * S
    LI's output is v, IF's and LIF's are spikes
    Linear / Affine:   S_out = W S_in (+ b)

Conventions of this module (stated, since converters disagree on them):

- **Spikes are Dirac deltas.** A spike through a weight `w` delivers a delta of area `w`, so
  it raises `I` by `w_in * w / tau_syn`, whatever the step of a simulator (snnTorch's fix
  of its CubaLIF import, PR #435, argues the same). snnTorch's exporter instead writes
  `w_in = tau_syn / dt` and `r = tau_mem / dt` for its discrete `alpha`/`beta` neurons,
  i.e. it reads `S` as a 0/1 value held for one step (a spike of area `dt`): import such a
  file with `from_nir(..., spike_area=dt)`, or its currents come out `1 / dt` times larger.
- **Time.** `time_unit` is the number of seconds (bss2jax's hardware time) in one NIR
  time unit: 1.0 (default) writes seconds; hxtorch's converter writes milliseconds
  (`time_unit=1e-3`).
- **bss2jax ↔ CubaLIF.** bss2jax integrates `c dv/dt = i + (c / tau_mem) (leak - v)`,
  `di/dt = -i / tau_syn` with `i` jumping by the weight `W` at a spike (hxtorch's CUBA
  equations, `kernels/cuba/reference.py`). With `I = i`: `r = tau_mem / c` and
  `W = w_in * w / tau_syn`. `to_nir` writes `w_in = tau_syn` and `w = W` (weights as they
  are); `from_nir` scales the rows of every weight into a population by `w_in / tau_syn`
  (exactly 1.0 for a graph that `to_nir` wrote) and sets `c = tau_mem / r`.
- **LIF, LI, IF have no synapse**; bss2jax's neurons always have one. `from_nir` maps them
  only when given `lif_tau_syn` (seconds): the `tau_syn -> 0` limit of CubaLIF with
  `w_in = 1` is approximated by that short synaptic time constant (the PSP is smeared over
  about `lif_tau_syn`). `to_nir` writes no LIF.
- **IF.** NIR's IF (`dv/dt = r S`) has no current-based variant, but an `LI` feeding it
  is exactly one: `to_nir` writes a non-leaky population (an IAF: `bj.AdEx(leaky=False,
  exponential=False, ...)`) as `LI(tau = r = tau_syn, v_leak = 0) -> IF(r = time_unit / c)`,
  and `from_nir` reads any `LI` (v_leak 0) whose only edge is into an `IF` that nothing
  else feeds as that IF's synaptic current (`tau_syn = tau`, `w_in = r`), exactly.
  A non-leaky population's unused `leak` and `tau_mem` travel in metadata.
- **Nested graphs** (`nir.NIRGraph` nodes, e.g. snnTorch's `RLeaky`/`RSynaptic` as
  `{input, lif, w_rec, output}`) are inlined by `from_nir`: inner node `B` of sub-graph
  `G` becomes `G.B`, an edge into `G` enters its only `Input`, an edge out of `G` leaves its
  only `Output`, an edge may address `G.B` directly (NIR's `docs/source/api_design.md`), and
  the inner `Input`/`Output` nodes are contracted away.
- **Potentials** are model values (`Mixed.model`); the chip values, the exact membrane
  capacitance, the refractory time and the weight transform's scale travel in node
  `metadata` under `bss2jax_*` keys, which other libraries ignore and `from_nir` reads back
  (a bit-for-bit round trip for `time_unit=1`). NIR has no refractory period: `to_nir`
  refuses one unless `allow_refractory=True`.
- **Delays.** Every bss2jax projection acts one `dt` later (the current of a step moves the
  membrane in the next); a projection onto the same or an earlier population acts one more
  `dt` later (`bj.Network`). NIR edges carry no delay; a simulator must add one to close a
  loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import NetworkError
from ._network import INPUT, AbstractNetwork, Sequential
from ._neurons import AbstractNeuron
from ._parameters import Mixed, hardware_value, model_value
from ._synapse import Synapse
from ._transforms import LinearSaturating

_POTENTIALS = {"leak": "v_leak", "reset": "v_reset", "threshold": "v_threshold"}
_MIXABLE = ("leak", "reset", "threshold", "tau_mem", "tau_syn")


def _nir():
    try:
        import nir
    except ImportError as error:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "bss2jax's NIR support needs the `nir` package: pip install 'bss2jax[nir]'."
        ) from error
    return nir


def _per_neuron(value, size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (size,)).copy()


def _check_time_unit(time_unit: float) -> float:
    if isinstance(time_unit, bool) or not (
        isinstance(time_unit, (int, float)) and 0 < time_unit < float("inf")
    ):
        raise ValueError(
            f"`time_unit` must be a positive finite float (seconds); got {time_unit!r}."
        )
    return float(time_unit)


def _neuron_node(name: str, neuron: AbstractNeuron, time_unit: float, allow_refractory: bool):
    """The NIR node of a population: `CubaLIF`/`CubaLI`, or for a non-leaky, firing one the
    pair `(LI, IF)`: NIR's IF has no synaptic current, so an `LI` carries it."""
    nir = _nir()
    if neuron.exponential or neuron.adaptation or not (neuron.leaky or neuron.fire):
        raise NetworkError(
            f"population {name!r}: to_nir maps neurons without exponential term or "
            "adaptation, leaky (NIR CubaLIF/CubaLI) or non-leaky and firing (NIR LI -> IF); "
            f"this {type(neuron).__name__} has no NIR equivalent."
        )
    n = neuron.size
    value = {k: _per_neuron(model_value(getattr(neuron, k)), n) for k in _MIXABLE}
    capacitance = _per_neuron(model_value(neuron.membrane_capacitance), n)
    meta: dict[str, Any] = {"bss2jax_membrane_capacitance": capacitance}
    for key in _MIXABLE + ("membrane_capacitance",):
        if isinstance(getattr(neuron, key), Mixed):
            meta[f"bss2jax_hardware_{key}"] = _per_neuron(hardware_value(getattr(neuron, key)), n)
    refractory = _per_neuron(model_value(neuron.refractory_time), n)
    if neuron.fire and np.any(refractory > 0):
        if not allow_refractory:
            raise NetworkError(
                f"population {name!r}: NIR's CubaLIF and IF have no refractory period, but "
                f"`refractory_time` is {refractory.max():g} s. Build it with "
                "refractory_time=0.0, or pass allow_refractory=True to keep it in the node's "
                "metadata (other NIR importers ignore it)."
            )
        meta["bss2jax_refractory_time"] = refractory
    tau_syn = value["tau_syn"] / time_unit
    if not neuron.leaky:
        # bss2jax: c dv/dt = i, di/dt = -i / tau_syn (+ W at a spike). NIR: LI with
        # tau = r = tau_syn (I jumps by w), then IF with dv/dt' = r I, t' = t / time_unit.
        meta.update(bss2jax_leak=value["leak"], bss2jax_tau_mem=value["tau_mem"])
        synapse = nir.LI(tau=tau_syn, r=tau_syn.copy(), v_leak=np.zeros(n))
        soma = nir.IF(
            r=time_unit / capacitance,
            v_threshold=value["threshold"],
            v_reset=value["reset"],
            metadata=meta,
        )
        return synapse, soma
    common = dict(
        tau_syn=tau_syn,
        tau_mem=value["tau_mem"] / time_unit,
        r=value["tau_mem"] / capacitance,
        v_leak=value["leak"],
        w_in=tau_syn,
        metadata=meta,
    )
    if neuron.fire:
        return None, nir.CubaLIF(v_threshold=value["threshold"], v_reset=value["reset"], **common)
    return None, nir.CubaLI(**common)


def _synapse_node(synapse: Synapse):
    nir = _nir()
    meta: dict[str, Any] = {}
    if isinstance(synapse.transform, LinearSaturating):
        # a scalar as shape (1,): HDF5 cannot compress a 0-d data set
        scale = np.asarray(synapse.transform.scale, dtype=np.float64)
        meta["bss2jax_transform_scale"] = scale.reshape(-1) if scale.ndim == 0 else scale
    weight = np.asarray(synapse.model_weight(), dtype=np.float64)
    return nir.Linear(weight=weight, metadata=meta)


def to_nir(
    network: AbstractNetwork,
    *,
    dt: float | None = None,
    time_unit: float = 1.0,
    allow_refractory: bool = False,
):
    """Export a `bj.Sequential` or `bj.Network` as a `nir.NIRGraph`.

    **Arguments:**
    - `network`: populations of `bj.LIF` (→ `CubaLIF`), `bj.LI` (→ `CubaLI`) and non-leaky
      `bj.AdEx` without exponential term or adaptation (an IAF → `LI` → `IF`: the `LI`,
      named `<population>_synapse`, is its synaptic current), joined by `bj.Synapse`s
      (→ `Linear`, the model weights `(out, in)`, masked). Anything else is refused.
    - `dt`: optional step (seconds) the network is run with; recorded in the graph's
      metadata as `bss2jax_dt` (NIR itself is continuous-time).
    - `time_unit`: seconds per NIR time unit (1.0: seconds; 1e-3: milliseconds).
    - `allow_refractory`: keep a refractory time in metadata instead of refusing it.

    Nodes: `input`, one per population (its name; `population_k` for a `Sequential`), one
    `Linear` per projection (`synapse_k` / `projection_k`), and an `Output` named
    `output_<population>` for each population that projects nowhere. Conventions and units:
    the module docstring of `bss2jax._nir`.
    """
    nir = _nir()
    time_unit = _check_time_unit(time_unit)
    sequential = isinstance(network, Sequential)
    keys = network.population_keys()
    names = {k: (f"population_{k}" if sequential else k) for k in keys}
    names[INPUT] = "input"
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([network.input_size]))}
    edges, entry = [], {}
    for position, key in enumerate(keys):
        population = network.population(key)
        synapse, node = _neuron_node(names[key], population, time_unit, allow_refractory)
        node.metadata["bss2jax_position"] = np.int64(position)
        nodes[names[key]] = node
        entry[key] = names[key]
        if synapse is not None:  # a non-leaky population: its current is an LI
            entry[key] = f"{names[key]}_synapse"
            if entry[key] in names.values():
                raise NetworkError(
                    f"to_nir: population name {entry[key]!r} clashes with the synaptic-current "
                    f"node of the non-leaky population {names[key]!r}."
                )
            nodes[entry[key]] = synapse
            edges.append((entry[key], names[key]))
    sources = set()
    for index, (source, target) in enumerate(network.edges()):
        name = f"synapse_{index}" if sequential else f"projection_{index}"
        if name in nodes:
            raise NetworkError(f"to_nir: population name {name!r} clashes with a synapse node.")
        nodes[name] = _synapse_node(network.synapse(index))
        edges += [(names[source], name), (name, entry[target])]
        sources.add(source)
    for key in keys:
        if key not in sources:
            name = f"output_{names[key]}"
            if name in nodes:
                raise NetworkError(f"to_nir: population name {name!r} clashes with an output.")
            nodes[name] = nir.Output(output_type=np.array([network.population(key).size]))
            edges.append((names[key], name))
    metadata: dict[str, Any] = {"bss2jax_network": "Sequential" if sequential else "Network"}
    if dt is not None:
        metadata["bss2jax_dt"] = float(dt)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)

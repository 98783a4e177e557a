"""Networks: a plain sequence of layers, or a graph of populations and projections.

Both are static graphs built once and pytrees of their parameters. `run` integrates them
stage by stage: populations that feed each other (a cycle through recurrent projections)
share one `lax.scan`; every projection from an earlier stage (or from the input) is one
matrix product over all time steps, outside the scan.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax

from ._errors import NetworkError
from ._neurons import AbstractNeuron
from ._parameters import Frozen, Mixed
from ._synapse import Synapse
from ._typing import user_facing
from .kernels.cuba import CubaParams

INPUT = "input"
"""Name of the external spike source in a `Network`'s projections."""


class Edge(NamedTuple):
    """A projection in the static plan: synapse number `synapse`, `source` → `target`."""

    synapse: int
    source: Hashable
    target: Hashable
    delayed: bool


class Stage(NamedTuple):
    """Populations integrated jointly in one scan, and the projections that reach them."""

    populations: tuple
    hoisted: tuple[Edge, ...]
    internal: tuple[Edge, ...]


class AbstractNetwork(eqx.Module):
    """A static graph of neuron populations joined by synapses.

    Concrete networks say which populations they have (`population_keys`, in declared
    order), how they are joined (`edges`, `synapse`) and how results are packed.
    """

    @property
    @abc.abstractmethod
    def input_size(self) -> int:
        """Number of input channels (the last axis of `run`'s inputs)."""

    @abc.abstractmethod
    def population_keys(self) -> tuple:
        """Keys of the populations in declared order."""

    @abc.abstractmethod
    def population(self, key) -> AbstractNeuron:
        """The population called `key`."""

    @abc.abstractmethod
    def edges(self) -> tuple[tuple[Any, Any], ...]:
        """`(source, target)` of every projection, in the order of `synapse(index)`."""

    @abc.abstractmethod
    def synapse(self, index: int) -> Synapse:
        """The synapse of projection `index`."""

    @abc.abstractmethod
    def pack(self, values: Mapping) -> Any:
        """Arrange per-population values (keyed like `population_keys`) for the user."""

    def plan(self) -> tuple[Stage, ...]:
        """The integration stages in order (static; computed at trace time)."""
        return _plan(self.population_keys(), self.edges())


class Sequential(AbstractNetwork):
    """A feed-forward chain: `Synapse`, neuron, `Synapse`, neuron, ...

    `run` returns a tuple with one `Observables` per neuron population, in order.

    ```python
    net = bj.Sequential([bj.Synapse(128, 3, key=key), bj.LI(3)])
    ```
    """

    layers: tuple

    def __init__(self, layers: Sequence):
        layers = tuple(layers)
        if not layers or len(layers) % 2:
            raise NetworkError(
                "`layers` must alternate Synapse and neuron population, starting with a "
                f"Synapse; got {len(layers)} layers."
            )
        previous = None
        for position, layer in enumerate(layers):
            expected = Synapse if position % 2 == 0 else AbstractNeuron
            if not isinstance(layer, expected):
                raise NetworkError(
                    f"`layers[{position}]` must be a {expected.__name__}; got "
                    f"{type(layer).__name__}."
                )
            if isinstance(layer, Synapse):
                if previous is not None and not previous.fire:
                    raise NetworkError(
                        f"`layers[{position}]` projects from a population that does not fire "
                        f"({type(previous).__name__}); only spiking populations can be sources."
                    )
                if previous is not None and layer.in_features != previous.size:
                    raise NetworkError(
                        f"`layers[{position}].in_features` must equal the size of the "
                        f"population before it ({previous.size}); got {layer.in_features}."
                    )
            else:
                synapse = layers[position - 1]
                if synapse.out_features != layer.size:
                    raise NetworkError(
                        f"`layers[{position}].size` must equal `out_features` of the synapse "
                        f"before it ({synapse.out_features}); got {layer.size}."
                    )
                previous = layer
        self.layers = layers

    @property
    def input_size(self) -> int:
        return self.layers[0].in_features

    def population_keys(self) -> tuple:
        return tuple(range(len(self.layers) // 2))

    def population(self, key) -> AbstractNeuron:
        return self.layers[2 * key + 1]

    def edges(self):
        return tuple((INPUT if k == 0 else k - 1, k) for k in self.population_keys())

    def synapse(self, index: int) -> Synapse:
        return self.layers[2 * index]

    def pack(self, values):
        return tuple(values[k] for k in self.population_keys())


@user_facing
class Projection(eqx.Module):
    """A synapse from population `source` (or `bj.INPUT`) onto population `target`.

    ```python
    bj.Projection("hidden", "hidden", bj.Synapse(100, 100, key=key))   # recurrent
    ```
    """

    source: str = eqx.field(static=True)
    target: str = eqx.field(static=True)
    synapse: Synapse

    def __check_init__(self):
        if not isinstance(self.synapse, Synapse):
            raise TypeError(
                f"`Projection.synapse` must be a bj.Synapse; got {type(self.synapse).__name__} "
                f"(projection {self.source!r} -> {self.target!r})."
            )


class Network(AbstractNetwork):
    """A graph of named populations and projections; recurrence is first-class.

    A projection onto the same or an earlier population (in the order of `populations`)
    acts with one extra `dt` of delay: it carries the source's spikes of the previous step.
    A population may receive several projections; their currents add. `run` returns a dict
    of `Observables` keyed by population name.

    **Arguments:**
    - `populations`: dict name → neuron population, in execution order.
    - `projections`: sequence of `Projection`; the source `bj.INPUT` is the external input.
    - `input_size`: number of input channels.

    ```python
    net = bj.Network(
        {"hidden": bj.LIF(50), "out": bj.LI(3)},
        [bj.Projection(bj.INPUT, "hidden", bj.Synapse(5, 50, key=k1)),
         bj.Projection("hidden", "hidden", bj.Synapse(50, 50, key=k2)),
         bj.Projection("hidden", "out", bj.Synapse(50, 3, key=k3))],
        input_size=5,
    )
    ```
    """

    populations: dict
    projections: tuple
    order: tuple = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)

    def __init__(self, populations: Mapping, projections: Sequence, *, input_size: int):
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise NetworkError(f"`input_size` must be a positive int; got {input_size!r}.")
        if not populations:
            raise NetworkError("`populations` must name at least one population; got none.")
        for name, population in populations.items():
            if not isinstance(name, str) or name == INPUT:
                raise NetworkError(
                    f"population names must be strings other than {INPUT!r}; got {name!r}."
                )
            if not isinstance(population, AbstractNeuron):
                raise NetworkError(
                    f"`populations[{name!r}]` must be a neuron population; got "
                    f"{type(population).__name__}."
                )
        projections = tuple(projections)
        fed = set()
        for index, projection in enumerate(projections):
            if not isinstance(projection, Projection):
                raise NetworkError(
                    f"`projections[{index}]` must be a bj.Projection; got "
                    f"{type(projection).__name__}."
                )
            source, target, synapse = projection.source, projection.target, projection.synapse
            if source != INPUT and source not in populations:
                raise NetworkError(
                    f"`projections[{index}].source` must be {INPUT!r} or one of "
                    f"{sorted(populations)}; got {source!r}."
                )
            if target not in populations:
                raise NetworkError(
                    f"`projections[{index}].target` must be one of {sorted(populations)}; "
                    f"got {target!r}."
                )
            if source != INPUT and not populations[source].fire:
                raise NetworkError(
                    f"`projections[{index}].source` {source!r} does not fire "
                    f"({type(populations[source]).__name__}); only spiking populations and "
                    f"{INPUT!r} can be sources."
                )
            source_size = input_size if source == INPUT else populations[source].size
            if synapse.in_features != source_size:
                raise NetworkError(
                    f"`projections[{index}]` ({source!r} → {target!r}): `in_features` must "
                    f"equal the size of {source!r} ({source_size}); got {synapse.in_features}."
                )
            if synapse.out_features != populations[target].size:
                raise NetworkError(
                    f"`projections[{index}]` ({source!r} → {target!r}): `out_features` must "
                    f"equal the size of {target!r} ({populations[target].size}); got "
                    f"{synapse.out_features}."
                )
            fed.add(target)
        unfed = [name for name in populations if name not in fed]
        if unfed:
            raise NetworkError(
                f"every population needs at least one incoming projection; {unfed} have none."
            )
        self.populations = dict(populations)
        self.projections = projections
        self.order = tuple(populations)
        self.n_inputs = input_size

    @property
    def input_size(self) -> int:
        return self.n_inputs

    def population_keys(self) -> tuple:
        return self.order

    def population(self, key) -> AbstractNeuron:
        return self.populations[key]

    def edges(self):
        return tuple((p.source, p.target) for p in self.projections)

    def synapse(self, index: int) -> Synapse:
        return self.projections[index].synapse

    def pack(self, values):
        return {k: values[k] for k in self.order}


def _plan(keys: tuple, edges: tuple) -> tuple[Stage, ...]:
    position = {key: i for i, key in enumerate(keys)}
    typed = [
        Edge(i, s, t, s != INPUT and position[s] >= position[t]) for i, (s, t) in enumerate(edges)
    ]
    successors: dict[Hashable, set[Hashable]] = {key: set() for key in keys}
    for edge in typed:
        if edge.source != INPUT:
            successors[edge.source].add(edge.target)
    component = _strongly_connected(keys, successors)
    # Order the components topologically, breaking ties by declared order.
    members: dict[int, list] = {}
    for key in keys:
        members.setdefault(component[key], []).append(key)
    depends: dict[int, set[int]] = {c: set() for c in members}
    for edge in typed:
        if edge.source != INPUT and component[edge.source] != component[edge.target]:
            depends[component[edge.target]].add(component[edge.source])
    ordered: list[int] = []
    done: set[int] = set()
    while len(ordered) < len(members):
        ready = [c for c in members if c not in done and depends[c] <= done]
        first = min(ready, key=lambda c: position[members[c][0]])
        ordered.append(first)
        done.add(first)
    stages = []
    for c in ordered:
        populations = tuple(members[c])
        inside = set(populations)
        hoisted = tuple(e for e in typed if e.target in inside and e.source not in inside)
        internal = tuple(e for e in typed if e.target in inside and e.source in inside)
        stages.append(Stage(populations, hoisted, internal))
    return tuple(stages)


def _strongly_connected(keys, successors) -> dict:
    """Tarjan's algorithm on a small graph; returns key → component id."""
    index, low, on_stack, stack, result = {}, {}, set(), [], {}
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in successors[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            while True:
                member = stack.pop()
                on_stack.discard(member)
                result[member] = index[node]
                if member == node:
                    break

    for key in keys:
        if key not in index:
            visit(key)
    return result


def trainable_filter(network: AbstractNetwork, *, neuron_parameters: bool = False):
    """A filter spec (pytree of bools shaped like `network`) of what training updates.

    True for every synapse's `weight`; with `neuron_parameters`, also for the float
    parameters of the neurons (model values of `Mixed`; never `Frozen` ones, surrogate
    sharpness or trace post-processing). Use it with `eqx.partition`:

    ```python
    params, static = eqx.partition(net, bj.trainable_filter(net))
    grads = jax.grad(lambda p: loss(eqx.combine(p, static)))(params)
    ```
    """

    def is_node(x):
        return isinstance(x, Synapse | AbstractNeuron)

    def mark(node):
        if isinstance(node, Synapse):
            return eqx.tree_at(lambda s: s.weight, jax.tree.map(lambda _: False, node), True)
        marked = jax.tree.map(lambda _: False, node)
        if not neuron_parameters:
            return marked
        for name in CubaParams._fields:
            value = getattr(node, name)
            if isinstance(value, Frozen):
                continue
            if isinstance(value, Mixed):
                where = lambda n, name=name: getattr(n, name).model  # noqa: E731
            else:
                where = lambda n, name=name: getattr(n, name)  # noqa: E731
            marked = eqx.tree_at(where, marked, True)
        return marked

    return jax.tree.map(lambda x: mark(x) if is_node(x) else False, network, is_leaf=is_node)

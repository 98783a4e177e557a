"""Placement of a network onto the chip's neuron circuits (reference/bss2-chip.md §1, §7.6).

The chip has 512 neuron circuits: two hemispheres of 256 columns. Each circuit sees the 256
synapse rows of its hemisphere; a signed input takes an excitatory and an inhibitory row,
so a circuit takes 128 signed inputs. A logical neuron with fan-in `F` joins
`c = ceil(F / 128)` circuits, rounded up to an even number when `c > 1` (a multi-circuit
neuron takes the same columns in both hemispheres, as in hxtorch's and Cramer et al.'s
layouts: 784 inputs give 8 circuits, 256 inputs give 2). One run holds at most
`floor(512 / c)` such neurons; a larger network raises `PlacementError`, or, when asked,
is split into sequential runs (hxtorch's execution instances), population by population.

Routing (§1): a circuit's signed input `k` (of its 128) takes the two rows of synapse
driver `k` of its hemisphere, and a driver's rows are shared by all 256 columns of the
hemisphere. Columns listening to different sources on one driver tell them apart by the
synapse's 6-bit label, so one driver carries at most 64 distinct sources
(`SYNAPSE_LABELS`) per run; `place` raises `PlacementError` naming that limit otherwise.
Driver `k` listens to PADI bus `k % 4`; the event rate of the buses is modelled by
`bss2jax._chip._events` (drops), not checked here.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import NamedTuple

import numpy as np

from .._constants import (
    HEMISPHERES,
    INPUTS_PER_CIRCUIT,
    NEURON_CIRCUITS,
    PADI_BUSES,
    SYNAPSE_LABELS,
)
from .._errors import PlacementError
from .._network import INPUT, AbstractNetwork

COLUMNS = NEURON_CIRCUITS // HEMISPHERES


def circuits_per_neuron(fan_in: int) -> int:
    """Neuron circuits one logical neuron needs for `fan_in` signed inputs.

    `ceil(fan_in / 128)`, rounded up to an even number above 1 (both hemispheres alike).

    ```python
    assert bj.circuits_per_neuron(784) == 8 and bj.circuits_per_neuron(256) == 2
    ```
    """
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 0:
        raise ValueError(f"`fan_in` must be a non-negative int; got {fan_in!r}.")
    count = max(1, math.ceil(fan_in / INPUTS_PER_CIRCUIT))
    if count > 1 and count % 2:
        count += 1
    return count


def neurons_per_run(fan_in: int) -> int:
    """The most logical neurons with this fan-in that one run holds: `floor(512 / c)`.

    ```python
    assert bj.neurons_per_run(784) == 64
    ```
    """
    return NEURON_CIRCUITS // circuits_per_neuron(fan_in)


class PopulationPlacement(NamedTuple):
    """Where one population lives.

    - `key`: the population's key; `size`: neurons; `fan_in`: signed inputs per neuron
      (the sum over its incoming projections, in projection order).
    - `circuits_per_neuron`: `c`.
    - `circuits`: int array `(size, c)` of physical circuit ids (`hemisphere * 256 +
      column`); the first is the one read by the CADC and the MADC.
    - `runs`: int array `(size,)`, the sequential run each neuron belongs to.
    - `inputs`: `((projection index, offset), ...)`: each incoming projection's first
      signed-input index in the neuron's fan-in.

    ```python
    hidden = bj.place(net).populations[0]
    hidden.circuits_per_neuron, hidden.circuits[0]   # e.g. 2, [0, 256]
    ```
    """

    key: object
    size: int
    fan_in: int
    circuits_per_neuron: int
    circuits: np.ndarray
    runs: np.ndarray
    inputs: tuple


class Placement(NamedTuple):
    """A network's placement: `populations` (key → `PopulationPlacement`), `runs`.

    ```python
    placement = bj.place(net, partition=True)
    placement.runs, placement.circuits_used(0)
    ```
    """

    populations: dict
    runs: int

    def circuits_used(self, run: int = 0) -> int:
        """Neuron circuits used in `run`."""
        return int(
            sum(np.sum(p.runs == run) * p.circuits_per_neuron for p in self.populations.values())
        )


class _Run:
    """Free columns of one run: per hemisphere, the next free column."""

    def __init__(self):
        self.next = [0, 0]

    def fits(self, size: int, c: int) -> bool:
        if c == 1:
            free = 2 * COLUMNS - self.next[0] - self.next[1]
            return size <= free
        return max(self.next) + size * (c // 2) <= COLUMNS

    def take(self, c: int) -> list[int]:
        if c == 1:
            hemisphere = 0 if self.next[0] <= self.next[1] else 1
            column = self.next[hemisphere]
            self.next[hemisphere] += 1
            return [hemisphere * COLUMNS + column]
        start = max(self.next)
        half = c // 2
        columns = list(range(start, start + half))
        self.next = [start + half, start + half]
        return [h * COLUMNS + col for h in range(HEMISPHERES) for col in columns]

    def room(self, c: int) -> int:
        if c == 1:
            return 2 * COLUMNS - self.next[0] - self.next[1]
        return (COLUMNS - max(self.next)) // (c // 2)


def place(network: AbstractNetwork, *, partition: bool = False) -> Placement:
    """Place `network` on the chip's 512 neuron circuits (static; at trace time).

    **Arguments:**
    - `network`: a `Sequential` or `Network`.
    - `partition`: if the network needs more than one chip's circuits, split it into
      sequential runs instead of raising: populations are filled in execution order, a
      population that does not fit the current run starts a new one, and a population
      larger than one run (`size > floor(512 / c)`) is cut into chunks of that size.
      Populations joined by recurrent projections must share a run.

    **Returns:** a `Placement`.

    **Raises:** `PlacementError` naming the limit and the numbers when the network does not
    fit (or, with `partition`, when a recurrent group or one neuron exceeds a chip), or
    when more than 64 distinct sources share one synapse driver of a hemisphere in a run
    (the 6-bit synapse labels; see the module docstring).

    ```python
    placement = bj.place(net)
    placement.populations[0].circuits_per_neuron
    ```
    """
    keys = network.population_keys()
    fan_in, inputs = _fan_in(network)
    width = {k: circuits_per_neuron(fan_in[k]) for k in keys}
    _check_fits(network, fan_in, width, partition)
    circuits, runs, run_count = _assign_circuits(network, width, partition)
    sizes = _sizes(network)
    populations = {
        k: PopulationPlacement(
            key=k,
            size=sizes[k],
            fan_in=fan_in[k],
            circuits_per_neuron=width[k],
            circuits=np.asarray(circuits[k], np.int32).reshape(-1, width[k]),
            runs=np.asarray(runs[k], np.int32),
            inputs=tuple(inputs[k]),
        )
        for k in keys
    }
    check_routing(network, populations)
    return Placement(populations, run_count)


def check_routing(network: AbstractNetwork, populations: dict) -> None:
    """Raise `PlacementError` where more than `SYNAPSE_LABELS` (64) distinct sources share
    one synapse driver (its two rows) in one hemisphere and run.

    Circuit slot `j` of a neuron takes the neuron's signed inputs `j * 128 + k` on driver
    `k`; a source is `(source population or INPUT, neuron index)`. All neurons of a
    population in one hemisphere and run share their slots' sources (same driver, same
    label), so each (population, run, hemisphere, slot) adds its sources once.
    """
    edges, sizes = network.edges(), _sizes(network)
    drivers: dict[tuple[int, int, int], set] = {}
    for p in populations.values():
        sources: list[tuple[Hashable, int]] = []  # signed input index -> source
        for index, _ in p.inputs:
            source = edges[index][0]
            size = network.input_size if source == INPUT else sizes[source]
            sources.extend((source, i) for i in range(size))
        slots = set()
        for circuits, run in zip(p.circuits, p.runs, strict=True):
            for j, circuit in enumerate(circuits):
                slots.add((int(run), int(circuit) // COLUMNS, j))
        for run, hemisphere, j in slots:
            start = j * INPUTS_PER_CIRCUIT
            for k, source in enumerate(sources[start : start + INPUTS_PER_CIRCUIT]):
                drivers.setdefault((run, hemisphere, k), set()).add(source)
    for (run, hemisphere, k), shared in sorted(drivers.items(), key=lambda item: item[0]):
        if len(shared) > SYNAPSE_LABELS:
            raise PlacementError(
                f"synapse driver {k} (PADI bus {k % PADI_BUSES}) of hemisphere {hemisphere} "
                f"in run {run} would carry {len(shared)} distinct sources, but a driver's "
                f"rows tell at most {SYNAPSE_LABELS} apart (6-bit synapse labels); put fewer "
                "populations with different inputs on the chip at once (or pass "
                "`partition=True` and smaller groups)."
            )


def _sizes(network: AbstractNetwork) -> dict:
    """Population sizes by key. The bound method is looked up once: each lookup of an
    equinox module's method flattens the module, which made placement quadratic."""
    population = network.population
    return {k: population(k).size for k in network.population_keys()}


def _fan_in(network: AbstractNetwork) -> tuple[dict, dict]:
    """Per population key: the fan-in (signed inputs per neuron), and the list of
    `(projection index, offset)` of its incoming projections, in projection order."""
    keys = network.population_keys()
    inputs: dict[Hashable, list[tuple[int, int]]] = {k: [] for k in keys}
    fan_in = {k: 0 for k in keys}
    sizes = _sizes(network)
    for index, (source, target) in enumerate(network.edges()):
        inputs[target].append((index, fan_in[target]))
        fan_in[target] += network.input_size if source == INPUT else sizes[source]
    return fan_in, inputs


def _check_fits(network: AbstractNetwork, fan_in: dict, width: dict, partition: bool) -> None:
    """Raise `PlacementError` where one neuron needs more circuits than the chip has, or
    (without `partition`) the network needs more than the chip's circuits."""
    keys = network.population_keys()
    for k in keys:
        if width[k] > NEURON_CIRCUITS:
            raise PlacementError(
                f"population {k!r} has fan-in {fan_in[k]}, which needs {width[k]} neuron "
                f"circuits per neuron (128 signed inputs each); the chip has "
                f"{NEURON_CIRCUITS} circuits."
            )
    sizes = _sizes(network)
    needed = {k: sizes[k] * width[k] for k in keys}
    total = sum(needed.values())
    if not partition and total > NEURON_CIRCUITS:
        detail = "; ".join(
            f"{k!r}: {sizes[k]} neurons x {width[k]} circuits (fan-in {fan_in[k]}) = {needed[k]}"
            for k in keys
        )
        raise PlacementError(
            f"the network needs {total} neuron circuits, but the chip has {NEURON_CIRCUITS} "
            f"(128 signed inputs per circuit; {detail}). Make populations smaller or "
            "construct the backend with `partition=True` to split it into sequential runs."
        )


def _assign_circuits(network: AbstractNetwork, width: dict, partition: bool):
    """Fill runs with the populations in execution order (see `place`).

    **Returns:** per population key the list of each neuron's circuit ids and the list of
    each neuron's run, and the number of runs.
    """
    keys = network.population_keys()
    sizes = _sizes(network)
    needed = {k: sizes[k] * width[k] for k in keys}
    circuits: dict[Hashable, list[np.ndarray]] = {k: [] for k in keys}
    runs: dict[Hashable, list[int]] = {k: [] for k in keys}
    run, run_index = _Run(), 0

    def take(k, count, run, run_index):  # the next `count` neurons of `k` into `run`
        for _ in range(count):
            circuits[k].append(run.take(width[k]))
            runs[k].append(run_index)

    for stage in network.plan():
        group = stage.populations
        stage_need = sum(needed[k] for k in group)
        if len(group) > 1 or stage.internal:
            if stage_need > NEURON_CIRCUITS:
                raise PlacementError(
                    f"populations {list(group)} are joined by recurrent projections and must "
                    f"share one run, but need {stage_need} neuron circuits; the chip has "
                    f"{NEURON_CIRCUITS}."
                )
            if not all(run.fits(sizes[k], width[k]) for k in group):
                _check_partition(partition, group, stage_need)
                run, run_index = _Run(), run_index + 1
            for k in group:
                take(k, sizes[k], run, run_index)
            continue
        (k,) = group
        remaining = sizes[k]
        while remaining:
            room = run.room(width[k])
            if room == 0:
                _check_partition(partition, group, stage_need)
                run, run_index = _Run(), run_index + 1
                continue
            if room < remaining and not partition:
                raise PlacementError(
                    f"population {k!r} does not fit the columns left: it needs {remaining} "
                    f"neurons x {width[k]} circuits, and only {room} such neurons fit "
                    f"(max {NEURON_CIRCUITS // width[k]} per run); pass `partition=True`."
                )
            take(k, min(room, remaining), run, run_index)
            remaining -= min(room, remaining)
    return circuits, runs, run_index + 1


def _check_partition(partition, group, need):
    if not partition:
        raise PlacementError(
            f"populations {list(group)} (needing {need} neuron circuits) do not fit in the "
            f"circuits left on the chip ({NEURON_CIRCUITS} in all); make the network smaller "
            "or pass `partition=True`."
        )

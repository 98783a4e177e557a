"""The event-rate limit of the chip's input path: input events beyond a bus's rate drop.

Facts (`bss2jax._constants`, reference/bss2-chip.md §1): a synapse driver, and the PADI
bus it listens to, takes one event per 8 ns clock cycle, 125 MEvent/s
(`DRIVER_EVENT_RATE`); there are 4 buses per hemisphere, driver `k` on bus `k % 4`, and a
circuit's signed input `k` on driver `k` (see `_placement`). So input channel `i` of a
projection from `INPUT` at fan-in offset `o` travels on bus `(o + i) % 4`.

The model ([estimate]: the sources do not say how deep the chip's event queues are, nor
which events an overloaded bus loses): on the grid step `dt`, a bus carries at most
`capacity = floor(125e6 * dt)` events per step (125 at `dt = 1 us`); events beyond that in
one step are dropped, nothing is carried over to the next step (a queue that empties
within a step). Which go is deterministic: the events of the lowest channel indices are
kept (a fixed-priority arbiter by address), those of the highest are dropped. A channel
that travels on several buses (several projections from `INPUT` at different offsets) is
dropped for all its targets when any of its buses drops it, so the model never delivers
more than the chip could. The drops are counted per batch entry and reported in
`Recording.dropped_inputs`; they are never silent.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._constants import DRIVER_EVENT_RATE, INPUTS_PER_CIRCUIT, PADI_BUSES
from .._network import INPUT, AbstractNetwork


def bus_capacity(dt: float) -> int:
    """Events one PADI bus carries in one grid step of `dt` seconds: `floor(125e6 * dt)`.

    ```python
    assert bus_capacity(1e-6) == 125
    ```
    """
    if not dt > 0:
        raise ValueError(f"`dt` must be positive; got {dt!r}.")
    return int(math.floor(DRIVER_EVENT_RATE * dt + 1e-9))


def input_buses(network: AbstractNetwork) -> np.ndarray:
    """Which PADI buses each input channel travels on: bool `(PADI_BUSES, in_features)`.

    Channel `i` of a projection from `INPUT` at fan-in offset `o` of its target uses
    driver `(o + i) % 128`, so bus `(o + i) % 4` (in whichever hemisphere its target
    lives; both hemispheres are taken alike, which can only overcount a bus's load).
    """
    from ._placement import _fan_in

    _, inputs = _fan_in(network)
    edges = network.edges()
    buses = np.zeros((PADI_BUSES, network.input_size), bool)
    channels = np.arange(network.input_size)
    for offsets in inputs.values():
        for index, offset in offsets:
            if edges[index][0] == INPUT:
                driver = (offset + channels) % INPUTS_PER_CIRCUIT
                buses[driver % PADI_BUSES, channels] = True
    return buses


def drop_events(
    inputs: Float[Array, "time batch channels"], buses: np.ndarray, capacity: int
) -> tuple[Float[Array, "time batch channels"], Int[Array, " batch"]]:
    """Drop the input events that exceed a bus's `capacity` per grid step.

    **Arguments:** `inputs` float `(time, batch, channels)`, spikes 0/1; `buses` bool
    `(buses, channels)` from `input_buses`; `capacity` events per bus and step.

    **Returns:** `(kept, dropped)`: the inputs with the dropped events set to 0 (same
    shape and dtype; a kept event keeps its value and gradient), and int32 `(batch,)` the
    number of events dropped per batch entry. Per step and bus the events of the lowest
    channel indices are kept; an event dropped on any of its buses is dropped.
    """
    buses = np.asarray(buses, bool)
    if np.all(buses.sum(axis=1) <= capacity):  # no bus has more channels than capacity
        return inputs, jnp.zeros(inputs.shape[1], jnp.int32)
    spikes = inputs > 0
    drop = jnp.zeros(inputs.shape, bool)
    for on_bus in buses:
        mine = spikes & jnp.asarray(on_bus)[None, None]  # explicit rank: (1, 1, channels)
        rank = jnp.cumsum(mine.astype(jnp.int32), axis=-1)  # 1-based order on the bus
        drop = drop | (mine & (rank > capacity))
    kept = jnp.where(drop, jnp.zeros((), inputs.dtype), inputs)
    return kept, jnp.sum(drop, axis=(0, 2), dtype=jnp.int32)

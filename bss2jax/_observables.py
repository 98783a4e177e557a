"""What a run returns: `Observables`, one per population.

All traces are time-major on one dense grid: step `k` is the value at `k * dt`.
"""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float


class Observables(eqx.Module):
    """The observables of one population, each `(time, batch, neurons)` unless noted.

    - `membrane_cadc`: membrane potential in model units (the measured CADC trace after
      time shift, offset and scale when a backend observed it).
    - `current`: synaptic current of the numerics.
    - `spikes`: 0/1 floats (None for `LI`).
    - `membrane_madc`: `(time, batch)` trace of neuron `record_neuron_id` on the grid, as
      observed (chip units from a chip backend); None unless MADC recording is enabled.
    - `adaptation`: adaptation state (None unless the neuron adapts).
    """

    membrane_cadc: Float[Array, "time batch neurons"]
    current: Float[Array, "time batch neurons"]
    spikes: Float[Array, "time batch neurons"] | None = None
    membrane_madc: Float[Array, "time batch"] | None = None
    adaptation: Float[Array, "time batch neurons"] | None = None

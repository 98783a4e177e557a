"""What a backend observed (`Recording`), and how a CADC trace becomes model units.

All traces are time-major on one dense grid: step `k` is the value at `k * dt`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._neurons import AbstractNeuron
from ._parameters import model_value


class PopulationRecording(eqx.Module):
    """What a backend observed for one population, on the grid, in chip units.

    - `spikes`: float `(time, batch, neurons)`, 0/1 (at most one per bin), or None.
    - `membrane_cadc`: float `(time, batch, neurons)`, CADC LSB before post-processing
      (time shift, offset, scale are applied by `run`), or None.
    - `membrane_madc`: float `(time, batch)`, MADC LSB of the watched neuron on the grid.
    - `madc_time`, `madc_value`: raw MADC samples `(batch, samples)`: seconds and LSB.
    - `differentiable` (static, default False): the values carry the backend's own
      gradient (a chip model differentiated "through"); `run` then returns the
      post-processed `membrane_cadc` and `spikes` as they are, gradient included, instead
      of injecting them with the numerics' gradient.
    """

    spikes: jax.Array | None = None
    membrane_cadc: jax.Array | None = None
    membrane_madc: jax.Array | None = None
    madc_time: jax.Array | None = None
    madc_value: jax.Array | None = None
    differentiable: bool = eqx.field(default=False, static=True)


class Recording(eqx.Module):
    """A backend's observation of a whole network: population key → `PopulationRecording`.

    Keys are those of the network (`0, 1, ...` for `Sequential`, names for `Network`); a
    population without an entry (or with None fields) is simulated by the numerics.

    ```python
    rec = bj.Recording({0: bj.PopulationRecording(membrane_cadc=trace)})
    ```
    """

    populations: dict

    def __init__(self, populations):
        self.populations = dict(populations)


def shift_time(trace: jax.Array, steps: int) -> jax.Array:
    """hxtorch's `cadc_time_shift`: `out[t] = trace[clip(t + steps, 0, T - 1)]`.

    A positive shift moves later samples earlier, padding the end with the last value; a
    negative one moves them later, padding the start with the first.
    """
    if steps == 0:
        return trace
    length = trace.shape[0]
    index = jnp.clip(jnp.arange(length) + steps, 0, length - 1)
    return trace[index]


def cadc_to_model(trace: jax.Array, neuron: AbstractNeuron) -> jax.Array:
    """Post-process a CADC trace `(time, batch, neurons)` on the grid into model units.

    In hxtorch's order: shift by `cadc_time_shift`, subtract `trace_offset` (or the first
    sample with `shift_cadc_to_first`), multiply by `trace_scale`.
    """
    trace = shift_time(trace, neuron.cadc_time_shift)
    if neuron.shift_cadc_to_first:
        trace = trace - trace[:1]
    else:
        trace = trace - model_value(neuron.trace_offset)
    return trace * model_value(neuron.trace_scale)

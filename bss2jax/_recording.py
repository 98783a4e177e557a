"""What a backend observed (`Recording`), and how a CADC trace becomes model units.

All traces are time-major on one dense grid: step `k` is the value at `k * dt`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real

from ._neurons import AbstractNeuron
from ._parameters import model_value
from ._typing import user_facing
from .kernels.cuba.reference import PerNeuron


@user_facing
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

    spikes: Real[ArrayLike, "time batch neurons"] | None = None
    membrane_cadc: Real[ArrayLike, "time batch neurons"] | None = None
    membrane_madc: Real[ArrayLike, "time batch"] | None = None
    madc_time: Real[ArrayLike, "batch samples"] | None = None
    madc_value: Real[ArrayLike, "batch samples"] | None = None
    differentiable: bool = eqx.field(default=False, static=True)


@user_facing
class Recording(eqx.Module):
    """A backend's observation of a whole network: population key → `PopulationRecording`.

    Keys are those of the network (`0, 1, ...` for `Sequential`, names for `Network`); a
    population without an entry (or with None fields) is simulated by the numerics.

    `dropped_inputs`: int `(batch,)`, the input events the chip lost per batch entry
    because a PADI bus got more than its rate allows (`ChipModel` counts them, see
    `bss2jax._chip._events`); None where the backend does not know (`Numeric` loses
    nothing).

    `clipped_weights`: int scalar, how many chip weights (`scale * weight` of every
    `linear_saturating` synapse) lay beyond ±63 and were clipped for this run (`ChipModel`,
    `Hardware` and `Replay` count them; concrete weights also warn, traced ones warn at run
    time unless the CLI's compilation cache is on); None where not counted.

    ```python
    rec = bj.Recording({0: bj.PopulationRecording(membrane_cadc=trace)})
    ```
    """

    populations: dict[Hashable, PopulationRecording | None]
    dropped_inputs: Int[ArrayLike, " batch"] | None = None
    clipped_weights: Int[ArrayLike, ""] | None = None

    def __init__(
        self,
        populations: Mapping[Hashable, PopulationRecording | None],
        dropped_inputs: Int[ArrayLike, " batch"] | None = None,
        clipped_weights: Int[ArrayLike, ""] | None = None,
    ):
        self.populations = dict(populations)
        self.dropped_inputs = dropped_inputs
        self.clipped_weights = clipped_weights


def shift_time(trace: Float[Array, "time ..."], steps: int) -> Float[Array, "time ..."]:
    """hxtorch's `cadc_time_shift`: `out[t] = trace[clip(t + steps, 0, T - 1)]`.

    A positive shift moves later samples earlier, padding the end with the last value; a
    negative one moves them later, padding the start with the first.
    """
    if steps == 0:
        return trace
    length = trace.shape[0]
    index = jnp.clip(jnp.arange(length) + steps, 0, length - 1)
    return trace[index]


def cadc_to_model(
    trace: Float[Array, "time batch neurons"], neuron: AbstractNeuron
) -> Float[Array, "time batch neurons"]:
    """Post-process a CADC trace `(time, batch, neurons)` on the grid into model units.

    In hxtorch's order: shift by `cadc_time_shift`, subtract `trace_offset` (or the first
    sample with `shift_cadc_to_first`), multiply by `trace_scale`.
    """
    trace = shift_time(trace, neuron.cadc_time_shift)
    if neuron.shift_cadc_to_first:
        trace = trace - trace[:1]
    else:
        trace = _per_neuron(jnp.subtract, trace, model_value(neuron.trace_offset))
    return _per_neuron(jnp.multiply, trace, model_value(neuron.trace_scale))


def _per_neuron(
    op: Callable[[Array, Array], Array],
    trace: Float[Array, "time batch neurons"],
    value: PerNeuron,
) -> Float[Array, "time batch neurons"]:
    """`op(trace, value)` for a scalar or `(neurons,)` parameter, with the dtype and the rank
    promoted explicitly as NumPy's rules would implicitly."""
    value = jnp.asarray(value)
    dtype = np.promote_types(trace.dtype, value.dtype)
    if value.ndim == 1:
        value = value.reshape(1, 1, -1)
    return op(trace.astype(dtype), value.astype(dtype))

"""`align_network`: `align` for every population of a network, written into it.

The intro tutorial aligns one population by hand; a network has several, each with its
own fan-in (and so its own circuit count, `circuits_per_neuron`) and its own chip
parameters. `align_network` measures each population on the backend as it will run there
and returns the network with every constant in place: each neuron's `trace_offset`,
`trace_scale` and `cadc_time_shift`, and each incoming `linear_saturating` synapse's scale.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._align import Alignment, align
from ._backend import AbstractBackend
from ._chip._placement import _fan_in
from ._misc import replace_static
from ._network import AbstractNetwork
from ._transforms import LinearSaturating
from ._typing import user_facing

NetworkT = TypeVar("NetworkT", bound=AbstractNetwork)


@user_facing
def align_network(
    backend: AbstractBackend,
    network: NetworkT,
    *,
    key: jax.Array | None = None,
    trace_scale: Mapping[Hashable, float] | None = None,
    per_neuron: bool = False,
    time_shift: bool = True,
    **options: Any,
) -> tuple[NetworkT, dict[Hashable, Alignment]]:
    """Align every population of `network` on `backend` and write the constants in.

    **Arguments:**
    - `backend`: any backend (`ChipModel`, hardware; on `Numeric()` every constant is the
      identity).
    - `network`: a `Sequential` or `Network` whose synapses into each population use
      `bj.linear_saturating` (the default transform), in model units (e.g. built with
      `LIF.model_space`).
    - `key`: PRNG key for noisy backends; one is split off per population.
    - `trace_scale`: `{population key: model units per CADC LSB}` for populations that
      do not fire (LI readouts), whose threshold cannot be measured. A non-firing
      population not named here takes the scale of the last firing population before it
      in the network's order (as hxtorch's Yin-Yang example and `bss2jax.yinyang` use one
      trace scale for hidden and readout layer); with none before it, this is an error.
    - `per_neuron`: one offset, trace scale and weight scale per neuron (weight scales
      act on the rows of the incoming synapses) instead of one per population.
    - `time_shift`: also set each neuron's `cadc_time_shift` to the measured one (the
      median over neurons with `per_neuron`).
    - `options`: passed to `bj.align` for every population (`dt`, `time`,
      `repetitions`, `input_step`, `saturating_weight`, `hardware_weights`,
      `model_weights`).

    **Returns:** `(aligned network, {population key: Alignment})`. Each population is
    probed with its real fan-in (`align(..., fan_in=...)`, the sum of its incoming
    synapses' input sizes), and all of its incoming synapses get its weight scale. The
    model weights, and so the numerics, are unchanged.

    ```python
    net, alignments = bj.align_network(bj.ChipModel(chip), net, key=key)
    ```
    """
    given = _check(network, trace_scale)
    keys = network.population_keys()
    fan_in, _ = _fan_in(network)
    if key is None:
        key = jax.random.PRNGKey(0)
    alignments: dict[Hashable, Alignment] = {}
    last_scale = None
    for population_key, subkey in zip(keys, jax.random.split(key, len(keys)), strict=True):
        neuron = network.population(population_key)
        scale = given.get(population_key)
        if scale is None and not neuron.fire:
            if last_scale is None:
                raise ValueError(
                    f"population {population_key!r} does not fire and no firing population "
                    "comes before it, so its trace scale cannot be measured; pass "
                    f"`trace_scale={{{population_key!r}: ...}}`."
                )
            scale = last_scale
        alignment = align(
            backend,
            neuron,
            key=subkey,
            trace_scale=scale,
            per_neuron=per_neuron,
            fan_in=fan_in[population_key],
            **options,
        )
        if neuron.fire and population_key not in given:
            last_scale = float(jnp.mean(alignment.trace_scale))
        alignments[population_key] = alignment
        network = _write(network, population_key, alignment, time_shift)
    return network, alignments


def _check(network, trace_scale) -> dict:
    """Check `network` (every synapse must map with `linear_saturating`, whose scale
    `align` measures) and the keys of `trace_scale`; returns `trace_scale` as a dict."""
    if not isinstance(network, AbstractNetwork):
        raise TypeError(f"`network` must be a bss2jax network; got {network!r}.")
    given = dict(trace_scale or {})
    keys = network.population_keys()
    unknown = [k for k in given if k not in keys]
    if unknown:
        raise ValueError(
            f"`trace_scale` names populations {unknown} that `network` does not have; "
            f"its populations are {list(keys)}."
        )
    for index in range(len(network.edges())):
        transform = network.synapse(index).transform
        if not isinstance(transform, LinearSaturating):
            raise ValueError(
                f"synapse {index} of `network` maps its weights with {transform!r}; "
                "`align_network` measures the scale of `bj.linear_saturating` only."
            )
    return given


def _write(network, population_key, alignment: Alignment, time_shift: bool):
    """`network` with `alignment` in population `population_key` and its incoming synapses."""
    neuron = alignment.neuron(network.population(population_key))
    if time_shift:
        shift = int(jnp.round(jnp.median(alignment.cadc_time_shift)))
        neuron = replace_static(neuron, cadc_time_shift=shift)
    network = eqx.tree_at(lambda n: n.population(population_key), network, neuron)
    incoming = [i for i, (_, target) in enumerate(network.edges()) if target == population_key]
    transforms = [alignment.transform()] * len(incoming)
    return eqx.tree_at(lambda n: [n.synapse(i).transform for i in incoming], network, transforms)

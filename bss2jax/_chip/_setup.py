"""Building the emulated network for the chip model, and its trace-time checks.

Chip-unit parameters of every neuron and circuit (the network's hardware values plus the
chip's mismatch at the placed circuits), the efficacies of every projection onto the
circuits and synapse rows, and the checks a chip would impose (calix target ranges, one
MADC per run, the CADC buffer).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._constants import CALIX_RANGES, INPUTS_PER_CIRCUIT
from .._errors import BackendError
from .._misc import error_if, warn_if
from .._network import INPUT
from .._parameters import hardware_value, model_value
from .._transforms import check_weight_range
from ..kernels.cuba import CubaParams
from ._config import (
    REFERENCE_CAPACITANCE,
    REFERENCE_CAPACITANCE_TIME,
    REFERENCE_I_SYNIN_GM,
    REFERENCE_SYNAPSE_DAC_BIAS,
    SRAM_CADC_SAMPLES,
    ChipConfig,
)
from ._instance import ChipInstance
from ._placement import Placement
from ._readout import cadc_sample_count, user_stacklevel

TARGET_NAMES = ("leak", "reset", "threshold", "tau_mem", "tau_syn")
"""The hardware values that `ChipModel` checks against calix's ranges."""


def check_network(network, placement: Placement, config: ChipConfig, time, dt, inputs):
    """Trace-time checks: targets in calix ranges (warn), chip weights beyond 6 bits
    (warn), the membrane capacitance in [1, 63] (error), MADC one per run, CADC buffer.

    Traced parameters are checked at run time: the calix ranges and the weights through
    `_misc.warn_if`, the capacitance through `_misc.error_if` on `inputs` (so that the
    check is part of the run). **Returns:** `(inputs, clipped)`: `inputs` carrying those
    checks, and the number of chip weights beyond ±63 (`Recording.clipped_weights`)."""
    clipped = check_weight_range(network, stacklevel=user_stacklevel() + 1)
    madc_runs: dict[int, Hashable] = {}
    for key in network.population_keys():
        neuron = network.population(key)
        for name in TARGET_NAMES:
            if name in ("threshold", "reset") and not neuron.fire:
                continue
            _check_target(key, name, hardware_value(getattr(neuron, name)))
        inputs = _check_capacitance(key, hardware_value(neuron.membrane_capacitance), inputs)
        if neuron.enable_madc_recording:
            run = int(placement.populations[key].runs[neuron.record_neuron_id])
            if run in madc_runs:
                raise BackendError(
                    f"populations {madc_runs[run]!r} and {key!r} both enable MADC recording in "
                    f"run {run}; the chip's MADC records one neuron per run."
                )
            madc_runs[run] = key
    samples = cadc_sample_count(time, dt, config)
    if config.cadc_memory == "sram" and samples > SRAM_CADC_SAMPLES:
        warnings.warn(
            f"{samples} CADC samples per neuron exceed the {SRAM_CADC_SAMPLES} that SRAM "
            "placement holds on the chip; use ChipConfig(cadc_memory='dram').",
            stacklevel=user_stacklevel(),
        )
    return inputs, jnp.asarray(clipped, jnp.int32)


def _target_message(key, name, value) -> str | None:
    """The warning for a chip value outside calix's range (None inside)."""
    low, high, unit = CALIX_RANGES[name]
    value = np.asarray(value)
    if not np.any((value < low) | (value > high)):
        return None
    return (
        f"population {key!r}: `{name}` on the chip is {value} {unit}, outside calix's "
        f"calibration range [{low}, {high}]; the chip could not be calibrated to it (the "
        "model uses it unchanged)."
    )


def _check_target(key, name, value: Any) -> None:
    """Warn for a calibration target outside calix's range (at run time when traced)."""
    if isinstance(value, jax.core.Tracer):
        low, high, _ = CALIX_RANGES[name]
        outside = jnp.any((value < low) | (value > high))
        warn_if(outside, partial(_target_message, key, name), value)
        return
    message = _target_message(key, name, value)
    if message:
        warnings.warn(message, stacklevel=user_stacklevel())


def _check_capacitance(key, capacitance: Any, inputs):
    """`BackendError` unless the chip capacitance lies in [1, 63] LSB (NaN fails); a
    traced one is checked at run time by `error_if` on `inputs`."""
    rule = f"population {key!r}: `membrane_capacitance` on the chip must lie in [1, 63] LSB"
    if isinstance(capacitance, jax.core.Tracer):
        outside = ~jnp.all((capacitance >= 1) & (capacitance <= 63))
        return error_if(inputs, outside, f"{rule} (a traced value does not).")
    capacitance = np.asarray(capacitance)
    if not np.all((capacitance >= 1) & (capacitance <= 63)):  # NaN included
        raise BackendError(f"{rule}; got {capacitance}. Use bj.Mixed(model_seconds, lsb).")
    return inputs


def _efficacy_scale(neuron, config: ChipConfig) -> float:
    return (
        config.weight_efficacy
        * neuron.synapse_dac_bias
        / REFERENCE_SYNAPSE_DAC_BIAS
        * neuron.i_synin_gm
        / REFERENCE_I_SYNIN_GM
    )


def _circuit_weights(network, key, pp, chip: ChipInstance, config: ChipConfig):
    """Efficacies of every incoming projection onto the circuits of population `key`.

    **Returns:** dict projection index → `(exc, inh)`, each float `(in_features, n * c)`:
    the current (LSB) that one event of each source adds to each circuit.
    """
    neuron = network.population(key)
    n, c = pp.size, pp.circuits_per_neuron
    width = c * INPUTS_PER_CIRCUIT
    weight = jnp.zeros((n, width), jnp.float32)
    spans = {}
    for index, offset in pp.inputs:
        hw = network.synapse(index).hardware_weight().astype(jnp.float32)
        weight = weight.at[:, offset : offset + hw.shape[1]].set(hw)
        spans[index] = (offset, hw.shape[1])
    weight = weight.reshape(n, c, INPUTS_PER_CIRCUIT)
    circuits = jnp.asarray(pp.circuits)
    rows = chip.synapse_gain[circuits]  # (n, c, 256)
    scale = _efficacy_scale(neuron, config)
    exc = jax.nn.relu(weight) * rows[..., 0::2] * chip.synaptic_gain_exc[circuits][..., None]
    inh = jax.nn.relu(-weight) * rows[..., 1::2] * chip.synaptic_gain_inh[circuits][..., None]
    eye = jnp.eye(c, dtype=jnp.float32)

    def to_circuits(w):  # (n, c, 128) -> (c * 128, n * c), block-diagonal in the circuit
        return (scale * jnp.einsum("njr,jk->jrnk", w, eye)).reshape(width, n * c)

    exc, inh = to_circuits(exc), to_circuits(inh)
    return {
        index: (exc[offset : offset + size], inh[offset : offset + size])
        for index, (offset, size) in spans.items()
    }


class NeuronParameters(NamedTuple):
    """Chip-unit parameters of every logical neuron, concatenated over populations.

    Each is float32 `(neurons,)`: the network's hardware values plus the chip's mismatch at
    the neuron's first circuit. Potentials in CADC LSB, times in seconds.

    - `leak`, `reset`, `threshold`: potentials (LSB).
    - `tau_mem`: membrane time constant (s).
    - `capacitance`: the capacitance setting (LSB) of the neuron's one membrane, summed
      over its `c` joined circuits: `membrane_capacitance + (c - 1) * joined_capacitance`
      (hxtorch sets the capacitance of all but the first circuit to 0, so by default the
      sum is the first circuit's; docs/reference/chip-model.md §3).
    - `input_gain`: `tau_mem / C` (s / s), the steady-state membrane shift (LSB) per LSB of
      synaptic current; `C = 10 us * capacitance / 63`. Only the first circuit leaks, so
      `tau_mem` is the calibrated one.
    - `refractory_steps`: the refractory time in sub-steps (rounded, still float).
    - `exponential_slope`, `exponential_threshold`: AdEx exponential term (LSB).
    - `adaptation_strength` (`a`, dimensionless), `adaptation_increment` (`b`, LSB of
      current per spike), `tau_adaptation` (s).
    - `trace_scale`: the model-space scale of the trace (model units per LSB).
    - `cadc_offset` (LSB), `cadc_gain`: the neuron's CADC channel.
    """

    leak: jax.Array
    reset: jax.Array
    threshold: jax.Array
    tau_mem: jax.Array
    capacitance: jax.Array
    input_gain: jax.Array
    refractory_steps: jax.Array
    exponential_slope: jax.Array
    exponential_threshold: jax.Array
    adaptation_strength: jax.Array
    adaptation_increment: jax.Array
    tau_adaptation: jax.Array
    trace_scale: jax.Array
    cadc_offset: jax.Array
    cadc_gain: jax.Array


class CircuitParameters(NamedTuple):
    """Per-circuit synaptic-input parameters, float32 `(circuits,)`, concatenated.

    - `tau_syn_exc`, `tau_syn_inh`: the synaptic time constants (s).
    - `saturation_scale`: `i_synin_gm / 500`, the factor on `ChipConfig.saturation` (the
      OTA's output current limit scales with its bias; docs/reference/chip-model.md §2).
    """

    tau_syn_exc: jax.Array
    tau_syn_inh: jax.Array
    saturation_scale: jax.Array


def _population_parameters(
    neuron, placement, chip: ChipInstance, substep: float, joined_capacitance: float
):
    """One population's `NeuronParameters` and `CircuitParameters` fields (unconcatenated)."""
    first = jnp.asarray(placement.circuits[:, 0])
    circuits = jnp.asarray(placement.circuits)

    def full(value):
        return jnp.broadcast_to(jnp.asarray(value, jnp.float32), (placement.size,))

    hw = {name: full(hardware_value(getattr(neuron, name))) for name in CubaParams._fields}
    tau_mem = hw["tau_mem"] * chip.tau_mem[first]
    joined = (placement.circuits_per_neuron - 1) * joined_capacitance  # in parallel: they add
    capacitance = hw["membrane_capacitance"] + joined
    neuron_values = NeuronParameters(
        leak=hw["leak"] + chip.leak[first],
        reset=hw["reset"] + chip.reset[first],
        threshold=hw["threshold"] + chip.threshold[first],
        tau_mem=tau_mem,
        capacitance=capacitance,
        input_gain=tau_mem / (REFERENCE_CAPACITANCE_TIME * capacitance / REFERENCE_CAPACITANCE),
        refractory_steps=jnp.round(hw["refractory_time"] / substep),
        exponential_slope=hw["exponential_slope"],
        exponential_threshold=hw["exponential_threshold"],
        adaptation_strength=hw["subthreshold_adaptation_strength"],
        adaptation_increment=hw["spike_triggered_adaptation_increment"],
        tau_adaptation=hw["tau_adap"],
        trace_scale=full(model_value(neuron.trace_scale)),
        cadc_offset=chip.cadc_offset[first],
        cadc_gain=chip.cadc_gain[first],
    )
    tau_syn = hw["tau_syn"][:, None]
    circuit_values = CircuitParameters(
        tau_syn_exc=(tau_syn * chip.tau_syn_exc[circuits]).reshape(-1),
        tau_syn_inh=(tau_syn * chip.tau_syn_inh[circuits]).reshape(-1),
        saturation_scale=jnp.full(
            (circuits.size,), neuron.i_synin_gm / REFERENCE_I_SYNIN_GM, jnp.float32
        ),
    )
    return neuron_values, circuit_values


def neuron_parameters(
    network, placement: Placement, chip: ChipInstance, substep: float, joined_capacitance=0.0
) -> tuple[NeuronParameters, CircuitParameters]:
    """The chip-unit parameters of every neuron and circuit, concatenated over populations
    in `network.population_keys()` order; `substep` is the sub-step length `h` (s) and
    `joined_capacitance` the capacitance setting (LSB) each joined circuit after a
    neuron's first adds to its membrane (`ChipConfig.joined_capacitance`)."""
    per_population = [
        _population_parameters(
            network.population(key), placement.populations[key], chip, substep, joined_capacitance
        )
        for key in network.population_keys()
    ]
    neurons = NeuronParameters(
        *(jnp.concatenate(values) for values in zip(*(n for n, _ in per_population), strict=True))
    )
    circuits = CircuitParameters(
        *(jnp.concatenate(values) for values in zip(*(c for _, c in per_population), strict=True))
    )
    return neurons, circuits


class Layout(NamedTuple):
    """Where each population lives in the concatenated neuron and circuit vectors.

    - `keys`: the population keys in execution order.
    - `neurons`, `circuits`: key → `slice` into the `(neurons,)` and `(circuits,)` vectors.
    - `circuits_per_neuron`: key → `c`; a neuron's circuits are consecutive.
    - `neuron_count`, `circuit_count`: the vectors' lengths.
    """

    keys: tuple
    neurons: dict
    circuits: dict
    circuits_per_neuron: dict
    neuron_count: int
    circuit_count: int


def layout(network, placement: Placement) -> Layout:
    """The `Layout` of `network`'s populations, in `network.population_keys()` order."""
    neurons, circuits, widths = {}, {}, {}
    first_neuron = first_circuit = 0
    for key in network.population_keys():
        population = placement.populations[key]
        width = population.circuits_per_neuron
        neurons[key] = slice(first_neuron, first_neuron + population.size)
        circuits[key] = slice(first_circuit, first_circuit + population.size * width)
        widths[key] = width
        first_neuron += population.size
        first_circuit += population.size * width
    keys = tuple(network.population_keys())
    return Layout(keys, neurons, circuits, widths, first_neuron, first_circuit)


class OnChipProjection(NamedTuple):
    """A projection between populations on the chip: the spikes of neurons `source` (a
    slice of the neuron vector) drive circuits `target` (a slice of the circuit vector)
    through `weight_exc`, `weight_inh`, float `(source neurons, target circuits)` (LSB of
    current per spike)."""

    source: slice
    target: slice
    weight_exc: jax.Array
    weight_inh: jax.Array


class Projections(NamedTuple):
    """Every projection's efficacies on the circuits.

    - `external`: float `(in_features, 2 * circuits)`, the current (LSB) one input event
      adds to each circuit's excitatory input (first half) and inhibitory input (second).
    - `on_chip`: the `OnChipProjection`s, in the network's projection order.
    """

    external: jax.Array
    on_chip: tuple


def projections(network, placement: Placement, layout: Layout, chip, config) -> Projections:
    """The efficacies of every projection of `network` onto the placed circuits."""
    shape = (network.input_size, layout.circuit_count)
    external_exc = jnp.zeros(shape, jnp.float32)
    external_inh = jnp.zeros(shape, jnp.float32)
    on_chip = []
    for key in layout.keys:
        weights = _circuit_weights(network, key, placement.populations[key], chip, config)
        target = layout.circuits[key]
        for index, (exc, inh) in weights.items():
            source = network.edges()[index][0]
            if source == INPUT:
                external_exc = external_exc.at[:, target].add(exc)
                external_inh = external_inh.at[:, target].add(inh)
            else:
                on_chip.append(OnChipProjection(layout.neurons[source], target, exc, inh))
    external = jnp.concatenate([external_exc, external_inh], axis=1)
    return Projections(external, tuple(on_chip))


class NeuronFlags(NamedTuple):
    """Static numpy bool `(neurons,)`: which terms each neuron integrates."""

    fire: np.ndarray
    leaky: np.ndarray
    exponential: np.ndarray
    subthreshold_adaptation: np.ndarray
    spike_triggered_adaptation: np.ndarray

    @property
    def adaptation(self) -> bool:
        return bool(np.any(self.subthreshold_adaptation | self.spike_triggered_adaptation))


def neuron_flags(network) -> NeuronFlags:
    """The `NeuronFlags` of `network`'s populations, concatenated."""

    def flag(name):
        return np.concatenate(
            [
                np.full(network.population(k).size, bool(getattr(network.population(k), name)))
                for k in network.population_keys()
            ]
        )

    return NeuronFlags(*(flag(name) for name in NeuronFlags._fields))


def sum_circuits(layout: Layout, current: jax.Array) -> jax.Array:
    """Sum each neuron's circuits: `(batch, circuits)` → `(batch, neurons)`."""
    if all(width == 1 for width in layout.circuits_per_neuron.values()):
        return current
    parts = []
    for key in layout.keys:
        part, width = current[:, layout.circuits[key]], layout.circuits_per_neuron[key]
        # strided slices added in order, not a reduction: XLA fuses the adds into the
        # sub-step, where its CPU reduction over a short minor axis was a slow kernel
        total = part[:, 0::width]
        for j in range(1, width):
            total = total + part[:, j::width]
        parts.append(total)
    return jnp.concatenate(parts, axis=1)


def spike_function(network, population_layout: Layout, through: bool):
    """Heaviside spikes, or with `through` each population's surrogate spike function."""
    if not through:
        return lambda above: (above > 0).astype(jnp.float32)
    surrogates = [network.population(key).surrogate for key in population_layout.keys]

    def spike_function(above):
        parts = [
            surrogate(above[:, population_layout.neurons[key]]).astype(jnp.float32)
            for surrogate, key in zip(surrogates, population_layout.keys, strict=True)
        ]
        return jnp.concatenate(parts, axis=1)

    return spike_function

"""Building the emulated network for the chip model, and its trace-time checks.

Chip-unit parameters of every neuron and circuit (the network's hardware values plus the
chip's mismatch at the placed circuits), the efficacies of every projection onto the
circuits and synapse rows, and the checks a chip would impose (calix target ranges, one
MADC per run, the CADC buffer).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._constants import CALIX_RANGES, INPUTS_PER_CIRCUIT
from .._errors import BackendError
from .._parameters import hardware_value, model_value
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
from ._readout import _cadc_count, user_stacklevel

TARGET_NAMES = ("leak", "reset", "threshold", "tau_mem", "tau_syn")
"""The hardware values that `ChipModel` checks against calix's ranges."""


def _check_network(network, placement: Placement, config: ChipConfig, time, dt) -> None:
    """Trace-time checks: targets in calix ranges (warn), MADC one per run, CADC buffer."""
    madc_runs = {}
    for key in network.population_keys():
        neuron = network.population(key)
        for name in TARGET_NAMES:
            low, high, unit = CALIX_RANGES[name]
            if name == "threshold" and not neuron.fire:
                continue
            if name == "reset" and not neuron.fire:
                continue
            value = hardware_value(getattr(neuron, name))
            if isinstance(value, jax.core.Tracer):
                continue
            value = np.asarray(value)
            if np.any((value < low) | (value > high)):
                warnings.warn(
                    f"population {key!r}: `{name}` on the chip is {value} {unit}, outside "
                    f"calix's calibration range [{low}, {high}]; the chip could not be "
                    "calibrated to it (the model uses it unchanged).",
                    stacklevel=user_stacklevel(),
                )
        capacitance = hardware_value(neuron.membrane_capacitance)
        if not isinstance(capacitance, jax.core.Tracer):
            capacitance = np.asarray(capacitance)
            if np.any((capacitance < 1) | (capacitance > 63)):
                raise BackendError(
                    f"population {key!r}: `membrane_capacitance` on the chip must lie in "
                    f"[1, 63] LSB; got {capacitance}. Use bj.Mixed(model_seconds, lsb)."
                )
        if neuron.enable_madc_recording:
            run = int(placement.populations[key].runs[neuron.record_neuron_id])
            if run in madc_runs:
                raise BackendError(
                    f"populations {madc_runs[run]!r} and {key!r} both enable MADC recording in "
                    f"run {run}; the chip's MADC records one neuron per run."
                )
            madc_runs[run] = key
    samples = _cadc_count(time, dt, config)
    if config.cadc_memory == "sram" and samples > SRAM_CADC_SAMPLES:
        warnings.warn(
            f"{samples} CADC samples per neuron exceed the {SRAM_CADC_SAMPLES} that SRAM "
            "placement holds on the chip; use ChipConfig(cadc_memory='dram').",
            stacklevel=user_stacklevel(),
        )


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


def _neuron_arrays(network, placement: Placement, chip: ChipInstance, config, h):
    """Per-neuron and per-circuit parameters, concatenated over populations."""
    per_neuron = {
        name: []
        for name in (
            "leak",
            "reset",
            "threshold",
            "tau_mem",
            "gain",
            "refractory",
            "slope",
            "exp_threshold",
            "adapt_a",
            "adapt_b",
            "tau_adap",
            "trace_scale",
            "cadc_offset",
            "cadc_gain",
        )
    }
    per_circuit = {"tau_exc": [], "tau_inh": []}
    for key in network.population_keys():
        neuron = network.population(key)
        pp = placement.populations[key]
        first = jnp.asarray(pp.circuits[:, 0])
        circuits = jnp.asarray(pp.circuits)
        n = pp.size

        def full(value, n=n):
            return jnp.broadcast_to(jnp.asarray(value, jnp.float32), (n,))

        hw = {name: full(hardware_value(getattr(neuron, name))) for name in CubaParams._fields}
        per_neuron["leak"].append(hw["leak"] + chip.leak[first])
        per_neuron["reset"].append(hw["reset"] + chip.reset[first])
        per_neuron["threshold"].append(hw["threshold"] + chip.threshold[first])
        tau_mem = hw["tau_mem"] * chip.tau_mem[first]
        capacitance = (
            REFERENCE_CAPACITANCE_TIME * hw["membrane_capacitance"] / REFERENCE_CAPACITANCE
        )
        per_neuron["tau_mem"].append(tau_mem)
        per_neuron["gain"].append(tau_mem / capacitance)
        per_neuron["refractory"].append(jnp.round(hw["refractory_time"] / h))
        per_neuron["slope"].append(hw["exponential_slope"])
        per_neuron["exp_threshold"].append(hw["exponential_threshold"])
        per_neuron["adapt_a"].append(hw["subthreshold_adaptation_strength"])
        per_neuron["adapt_b"].append(hw["spike_triggered_adaptation_increment"])
        per_neuron["tau_adap"].append(hw["tau_adap"])
        per_neuron["trace_scale"].append(full(model_value(neuron.trace_scale)))
        per_neuron["cadc_offset"].append(chip.cadc_offset[first])
        per_neuron["cadc_gain"].append(chip.cadc_gain[first])
        tau_syn = hw["tau_syn"][:, None]
        per_circuit["tau_exc"].append((tau_syn * chip.tau_syn_exc[circuits]).reshape(-1))
        per_circuit["tau_inh"].append((tau_syn * chip.tau_syn_inh[circuits]).reshape(-1))
    neuron_values = {k: jnp.concatenate(v) for k, v in per_neuron.items()}
    circuit_values = {k: jnp.concatenate(v) for k, v in per_circuit.items()}
    return neuron_values, circuit_values

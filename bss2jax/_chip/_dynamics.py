"""The chip model's dynamics: a typed state, one sub-step function, a scan over the grid.

Everything is in chip units: potentials and currents in CADC LSB, times in seconds of
hardware time. Inside a step arrays are `(batch, neurons)` or `(batch, circuits)`, where a
logical neuron joins `c` consecutive circuits (see `Layout`). The integration runs on an
internal sub-step `h = dt / substeps` (reference/bss2-chip.md §7); `substep` documents
one sub-step, `integrate` the loop over grid steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._config import REFERENCE_CAPACITANCE, ChipConfig
from ._noise import normal
from ._setup import (
    CircuitParameters,
    Layout,
    NeuronFlags,
    NeuronParameters,
    Projections,
    layout,
    neuron_flags,
    neuron_parameters,
    projections,
    spike_function,
    sum_circuits,
)


class ChipState(NamedTuple):
    """Carry of the sub-step scan.

    - `membrane`: float `(batch, neurons)`, the membrane potential (LSB).
    - `current_exc`, `current_inh`: float `(batch, circuits)`, each circuit's excitatory
      and inhibitory synaptic current (LSB), both non-negative.
    - `refractory`: int32 `(batch, neurons)`, sub-steps of refractory time left.
    - `spikes`: float `(batch, neurons)`, 0/1 spikes of the previous sub-step (they arrive
      at their on-chip targets in this one).
    - `adaptation`: float `(batch, neurons)`, the AdEx adaptation current (LSB).
    """

    membrane: jax.Array
    current_exc: jax.Array
    current_inh: jax.Array
    refractory: jax.Array
    spikes: jax.Array
    adaptation: jax.Array


class SubstepOutput(NamedTuple):
    """What one sub-step emits, each `(batch, neurons)`.

    - `membrane`: the membrane after the sub-step (LSB).
    - `spikes`: the 0/1 spikes with the surrogate's gradient (`gradient="through"`), else
      None.
    - `spike_time`: the FPGA time stamp (s) of the spike emitted in the sub-step, `inf`
      where none.
    """

    membrane: jax.Array
    spikes: jax.Array | None
    spike_time: jax.Array


class SubstepCoefficients(NamedTuple):
    """Constants of the sub-step, derived once from the parameters and `h`.

    `(1, neurons)`: `membrane_decay = exp(-h / tau_mem)`, `adaptation_decay =
    exp(-h / tau_adaptation)`, `noise_std` (LSB: the stationary std of the membrane noise,
    `membrane_noise * sqrt(63 / capacitance)`, so ∝ 1/sqrt(C) like thermal kT/C noise),
    `noise_scale` (LSB: the OU increment's std), `refractory_steps` (int32), `threshold`
    (`inf` where a neuron does not fire) and `crossing_threshold` (0 there, no gradient:
    for the spike time). `(1, circuits)`: `current_decay_* = exp(-h / tau_syn_*)`,
    `current_average_* = tau_syn_* / h * (1 - current_decay_*)`, the mean of a decaying
    current over the sub-step, and `saturation` (LSB: each synaptic input OTA's output
    limit `I_sat`, `ChipConfig.saturation * i_synin_gm / 500`; None without saturation).
    `reset_decay`: `exp(-h / reset_time_constant)`, a Python float (0 without one).
    """

    membrane_decay: jax.Array
    adaptation_decay: jax.Array
    noise_std: jax.Array
    noise_scale: jax.Array
    refractory_steps: jax.Array
    threshold: jax.Array
    crossing_threshold: jax.Array
    current_decay_exc: jax.Array
    current_decay_inh: jax.Array
    current_average_exc: jax.Array
    current_average_inh: jax.Array
    saturation: jax.Array | None
    reset_decay: float


class ChipDynamics(NamedTuple):
    """Everything the sub-step needs, built once per trace by `chip_dynamics`.

    - `config`: the `ChipConfig`; `dt` the grid step and `substep_time` `h` (s).
    - `layout`: the `Layout`; `flags`: the `NeuronFlags`, as rows `(1, neurons)`.
    - `neurons`: `NeuronParameters`, and `coefficients`: `SubstepCoefficients`, as rows
      `(1, neurons)` or `(1, circuits)` that broadcast over the batch.
    - `projections`: the `Projections` (external efficacies and on-chip projections).
    - `spike_function`: `(batch, neurons)` scaled distance above threshold → 0/1 spikes.
    - `through`: whether the dynamics are differentiated (`gradient="through"`).
    - `delay_steps`, `delivery_substep`: the synaptic delay as whole grid steps and the
      sub-step within a grid step at which the inputs of a grid step arrive.
    """

    config: ChipConfig
    dt: float
    substep_time: float
    layout: Layout
    flags: NeuronFlags
    neurons: NeuronParameters
    coefficients: SubstepCoefficients
    projections: Projections
    spike_function: Callable[[jax.Array], jax.Array]
    through: bool
    delay_steps: int
    delivery_substep: int


def substep_coefficients(
    neurons: NeuronParameters,
    circuits: CircuitParameters,
    flags: NeuronFlags,
    config: ChipConfig,
    substep_time: float,
) -> SubstepCoefficients:
    """The `SubstepCoefficients` for sub-steps of `substep_time` (s)."""
    h = substep_time
    membrane_decay = jnp.exp(-h / neurons.tau_mem)
    current_decay_exc = jnp.exp(-h / circuits.tau_syn_exc)
    current_decay_inh = jnp.exp(-h / circuits.tau_syn_inh)
    reset_time_constant = config.reset_time_constant
    noise_std = config.membrane_noise * jnp.sqrt(REFERENCE_CAPACITANCE / neurons.capacitance)
    saturation = config.saturation
    return SubstepCoefficients(
        membrane_decay=membrane_decay,
        adaptation_decay=jnp.exp(-h / neurons.tau_adaptation),
        noise_std=noise_std,
        noise_scale=noise_std * jnp.sqrt(1 - membrane_decay**2),
        refractory_steps=neurons.refractory_steps.astype(jnp.int32),
        threshold=jnp.where(flags.fire, neurons.threshold, jnp.inf),
        crossing_threshold=lax.stop_gradient(jnp.where(flags.fire, neurons.threshold, 0.0)),
        current_decay_exc=current_decay_exc,
        current_decay_inh=current_decay_inh,
        current_average_exc=circuits.tau_syn_exc / h * (1 - current_decay_exc),
        current_average_inh=circuits.tau_syn_inh / h * (1 - current_decay_inh),
        saturation=None if saturation is None else saturation * circuits.saturation_scale,
        reset_decay=math.exp(-h / reset_time_constant) if reset_time_constant else 0.0,
    )


def initial_state(dynamics: ChipDynamics, batch: int, noise: jax.Array | None) -> ChipState:
    """The state before the first sub-step: the membrane at the leak (at the reset for a
    non-leaky neuron) plus `noise_std * noise` (`noise` float `(batch * neurons,)`
    standard normal, or None), clipped to the potential range; everything else zero."""
    neurons, count = dynamics.neurons, dynamics.layout.neuron_count
    membrane = jnp.where(dynamics.flags.leaky, neurons.leak, neurons.reset)
    membrane = jnp.broadcast_to(membrane, (batch, count)).astype(jnp.float32)
    if dynamics.config.membrane_noise:
        assert noise is not None  # drawn by the caller whenever membrane_noise is set
        noise_std = dynamics.coefficients.noise_std
        membrane = membrane + noise_std * noise.reshape(membrane.shape)
    membrane = jnp.clip(membrane, *dynamics.config.potential_range)
    circuit_zeros = jnp.zeros((batch, dynamics.layout.circuit_count), jnp.float32)
    neuron_zeros = jnp.zeros((batch, count), jnp.float32)
    refractory = jnp.zeros((batch, count), jnp.int32)
    return ChipState(membrane, circuit_zeros, circuit_zeros, refractory, neuron_zeros, neuron_zeros)


def _receive_spikes(dynamics: ChipDynamics, state: ChipState):
    """The synaptic currents after the previous sub-step's on-chip spikes arrive."""
    current_exc, current_inh = state.current_exc, state.current_inh
    for projection in dynamics.projections.on_chip:
        spikes = state.spikes[:, projection.source]
        target = projection.target
        current_exc = current_exc.at[:, target].add(spikes @ projection.weight_exc)
        current_inh = current_inh.at[:, target].add(spikes @ projection.weight_inh)
    return current_exc, current_inh


def synaptic_drive(coefficients: SubstepCoefficients, current_exc, current_inh):
    """Each circuit's net synaptic current onto the membrane in one sub-step (LSB),
    `(batch, circuits)`: the excitatory and the inhibitory input are separate circuits
    (each a synaptic line and its own OTA), and each OTA saturates on its own,

    ```python
    J = I_sat tanh(a_e I_e / I_sat) - I_sat tanh(a_i I_i / I_sat)   # a: sub-step averages
    ```
    so inhibition does not cancel excitation before the clipping, as on the chip
    (docs/reference/chip-model.md §2). Without saturation `J = a_e I_e - a_i I_i`."""
    excitatory = current_exc * coefficients.current_average_exc
    inhibitory = current_inh * coefficients.current_average_inh
    limit = coefficients.saturation
    if limit is not None:
        excitatory = limit * jnp.tanh(excitatory / limit)
        inhibitory = limit * jnp.tanh(inhibitory / limit)
    return excitatory - inhibitory


def _free_membrane(dynamics: ChipDynamics, state: ChipState, current_exc, current_inh):
    """The membrane after one sub-step of leak, synaptic and AdEx input, before noise,
    reset and threshold: exact exponential integration toward `v_inf` (leaky neurons),
    an Euler step of the input otherwise. A neuron's joined circuits all drive its one
    membrane: their currents add (`sum_circuits`)."""
    neurons, coefficients, flags = dynamics.neurons, dynamics.coefficients, dynamics.flags
    drive = sum_circuits(dynamics.layout, synaptic_drive(coefficients, current_exc, current_inh))
    if flags.adaptation:
        drive = drive - state.adaptation
    push = neurons.input_gain * drive  # LSB: where the input alone would hold the membrane
    if np.any(flags.exponential):
        distance = (state.membrane - neurons.exponential_threshold) / neurons.exponential_slope
        exponential = neurons.exponential_slope * jnp.exp(jnp.minimum(distance, 20.0))
        push = push + jnp.where(flags.exponential, exponential, 0.0)
    target = neurons.leak + push
    leaky = target + (state.membrane - target) * coefficients.membrane_decay
    if np.all(flags.leaky):
        return leaky
    euler = state.membrane + dynamics.substep_time / neurons.tau_mem * push
    return jnp.where(flags.leaky, leaky, euler)


def _spike_time(dynamics: ChipDynamics, before, after, start_time):
    """The FPGA time stamp (s) of a threshold crossing between the membrane `before` and
    `after` a sub-step starting at `start_time` (s): the linearly interpolated crossing,
    rounded up to the clock, plus the output latency."""
    config = dynamics.config
    before, after = lax.stop_gradient(before), lax.stop_gradient(after)
    rise = jnp.where(after > before, after - before, 1.0)
    threshold = dynamics.coefficients.crossing_threshold
    fraction = jnp.clip((threshold - before) / rise, 0.0, 1.0)
    stamp = jnp.ceil((start_time + fraction * dynamics.substep_time) / config.clock_period - 1e-6)
    return stamp * config.clock_period + config.spike_latency


def _adapt(dynamics: ChipDynamics, adaptation, membrane, spikes):
    """The AdEx adaptation current after one sub-step (LSB)."""
    neurons, flags = dynamics.neurons, dynamics.flags
    decay = dynamics.coefficients.adaptation_decay
    adaptation = adaptation * decay
    subthreshold = (1 - decay) * neurons.adaptation_strength * (membrane - neurons.leak)
    adaptation = adaptation + jnp.where(flags.subthreshold_adaptation, subthreshold, 0.0)
    spike_triggered = neurons.adaptation_increment * spikes
    return adaptation + jnp.where(flags.spike_triggered_adaptation, spike_triggered, 0.0)


def substep(
    dynamics: ChipDynamics, state: ChipState, inputs: tuple[jax.Array, jax.Array]
) -> tuple[ChipState, SubstepOutput]:
    """One sub-step `h` of every neuron and circuit; `inputs = (noise, start_time)`: float
    standard normal `(batch, neurons)` (or broadcastable zeros) and the sub-step's start (s).

    ```python
    I_e, I_i += previous sub-step's on-chip spikes @ efficacies
    J     = sum over circuits of I_sat (tanh(a_e I_e / I_sat) - tanh(a_i I_i / I_sat))
    v_inf = leak + tau_mem / C * (J - w + AdEx exponential term)   # C: the joined sum
    v'    = v_inf + (v - v_inf) exp(-h / tau_mem) + noise_scale * noise
    I_e  *= exp(-h / tau_syn_e);  I_i *= exp(-h / tau_syn_i)
    if refractory: v' = reset (or relax toward it)   elif v' > threshold: spike, v' = reset
    w     = w exp(-h / tau_adaptation) + ...;  v' = clip(v', *potential_range)
    ```
    The spike is `spike_function(trace_scale * (v' - threshold))`, so with
    `gradient="through"` it carries the population's surrogate gradient.
    """
    noise, start_time = inputs
    config, neurons, coefficients = dynamics.config, dynamics.neurons, dynamics.coefficients
    current_exc, current_inh = _receive_spikes(dynamics, state)
    membrane = _free_membrane(dynamics, state, current_exc, current_inh)
    if config.membrane_noise:
        membrane = membrane + coefficients.noise_scale * noise
    current_exc = current_exc * coefficients.current_decay_exc
    current_inh = current_inh * coefficients.current_decay_inh
    resting = state.refractory > 0
    if config.reset_time_constant is None:
        membrane = jnp.where(resting, neurons.reset, membrane)
    else:  # the reset conductance pulls the membrane down while refractory
        relaxed = neurons.reset + (state.membrane - neurons.reset) * coefficients.reset_decay
        membrane = jnp.where(resting, relaxed, membrane)
    above = jnp.where(resting | ~dynamics.flags.fire, -jnp.inf, membrane - coefficients.threshold)
    spikes = dynamics.spike_function(neurons.trace_scale * jnp.where(jnp.isinf(above), -1e3, above))
    crossed = above > 0
    spike_time = _spike_time(dynamics, state.membrane, membrane, start_time)
    spike_time = jnp.where(crossed, spike_time, jnp.inf)
    if config.reset_time_constant is None:
        no_gradient = lax.stop_gradient(spikes)
        membrane = (1 - no_gradient) * membrane + no_gradient * neurons.reset
    refractory = jnp.where(
        crossed, coefficients.refractory_steps, jnp.maximum(state.refractory - 1, 0)
    )
    adaptation = state.adaptation
    if dynamics.flags.adaptation:
        adaptation = _adapt(dynamics, adaptation, membrane, spikes)
    membrane = jnp.clip(membrane, *config.potential_range)
    new_state = ChipState(membrane, current_exc, current_inh, refractory, spikes, adaptation)
    return new_state, SubstepOutput(membrane, spikes if dynamics.through else None, spike_time)


def external_drive(dynamics: ChipDynamics, inputs: jax.Array) -> jax.Array:
    """The currents (LSB) the input events of each grid step add to every circuit.

    `inputs` float32 `(time, batch, in_features)` → `(time, batch, 2 * circuits)`
    (excitatory, then inhibitory), shifted by the synaptic delay's whole grid steps. One
    matrix product outside the scan.
    """
    time, batch, _ = inputs.shape
    width = 2 * dynamics.layout.circuit_count
    drive = inputs.reshape(time * batch, -1) @ dynamics.projections.external
    drive = drive.reshape(time, batch, width)
    shift = dynamics.delay_steps
    if shift:
        delayed = jnp.zeros((shift, batch, width), drive.dtype)
        drive = jnp.concatenate([delayed, drive[:-shift]])[:time]
    return drive


def chip_dynamics(network, placement, chip, config: ChipConfig, dt: float, *, through: bool):
    """Build the `ChipDynamics` of `network` placed by `placement` on `chip` (a
    `ChipInstance`), on the grid `dt` (s); `through` selects surrogate spikes."""
    substep_time = dt / config.substeps
    population_layout = layout(network, placement)
    # Rows `(1, neurons)` and `(1, circuits)`: they broadcast over the batch explicitly.
    flags = NeuronFlags(*(flag[None] for flag in neuron_flags(network)))
    neurons, circuits = neuron_parameters(
        network, placement, chip, substep_time, config.joined_capacitance
    )
    neurons = NeuronParameters(*(value[None] for value in neurons))
    circuits = CircuitParameters(*(value[None] for value in circuits))
    delay_steps, delivery_substep = divmod(
        int(round(config.synaptic_delay / substep_time)), config.substeps
    )
    return ChipDynamics(
        config=config,
        dt=dt,
        substep_time=substep_time,
        layout=population_layout,
        flags=flags,
        neurons=neurons,
        coefficients=substep_coefficients(neurons, circuits, flags, config, substep_time),
        projections=projections(network, placement, population_layout, chip, config),
        spike_function=spike_function(network, population_layout, through),
        through=through,
        delay_steps=delay_steps,
        delivery_substep=delivery_substep,
    )


def _deliver(state: ChipState, drive: jax.Array) -> ChipState:
    """The input events of one grid step arrive: `drive` `(batch, 2 * circuits)`."""
    circuits = state.current_exc.shape[1]
    return state._replace(
        current_exc=state.current_exc + drive[:, :circuits],
        current_inh=state.current_inh + drive[:, circuits:],
    )


def advance_window(
    dynamics: ChipDynamics, state: ChipState, drive: jax.Array, noise_key, step: jax.Array
) -> tuple[ChipState, SubstepOutput]:
    """The `substeps` sub-steps of grid step `step` (float scalar): the inputs `drive`
    `(batch, 2 * circuits)` arrive before sub-step `delivery_substep`; the membrane noise
    is drawn from `noise_key`. Returns the state and the `SubstepOutput`s stacked on a
    leading `(substeps,)` axis."""
    substeps, h = dynamics.config.substeps, dynamics.substep_time
    batch = state.membrane.shape[0]
    if dynamics.config.membrane_noise:
        shape = (substeps, batch, dynamics.layout.neuron_count)
        noise = normal(noise_key, shape)  # = jax.random.normal's draws, faster (_noise)
    else:
        noise = jnp.zeros((substeps, 1, 1), jnp.float32)
    start_time = step * dynamics.dt + jnp.arange(substeps, dtype=jnp.float32) * h

    def body(carry, inputs):
        return substep(dynamics, carry, inputs)

    first = dynamics.delivery_substep
    if first == 0:
        return lax.scan(body, _deliver(state, drive), (noise, start_time))
    state, early = lax.scan(body, state, (noise[:first], start_time[:first]))
    state, late = lax.scan(body, _deliver(state, drive), (noise[first:], start_time[first:]))
    return state, jax.tree.map(lambda a, b: jnp.concatenate([a, b]), early, late)


def integrate(
    dynamics: ChipDynamics,
    state: ChipState,
    drive: jax.Array,
    key: jax.Array,
    reduce_window: Callable | None = None,
    window_inputs=None,
):
    """Integrate every grid step: a `lax.scan` of `advance_window`.

    **Arguments:**
    - `state`: the `ChipState` at time 0.
    - `drive`: float `(time, batch, 2 * circuits)`, from `external_drive`.
    - `key`: PRNG key of the membrane noise (split into one key per grid step).
    - `reduce_window`: None, or `(membrane at the window's start (batch, neurons),
      SubstepOutput of the window (substeps, ...), window_inputs[k]) -> value`, applied
      inside the scan so that only the reduced values are kept.
    - `window_inputs`: a pytree with leading axis `time`, passed to `reduce_window`.

    **Returns:** per grid step, stacked on a leading `(time,)` axis, the window's
    `SubstepOutput`s (`(time, substeps, batch, neurons)` each) or `reduce_window`'s values.

    ```python
    for k in range(time):
        start = state.membrane
        state, window = advance_window(dynamics, state, drive[k], keys[k], k)
        outputs.append(window if reduce_window is None else reduce_window(start, window, ...))
    ```
    """
    time = drive.shape[0]
    noise_keys = jax.random.split(key, time)
    steps = jnp.arange(time, dtype=jnp.float32)

    def grid_step(state, inputs):
        drive_k, noise_key, step, extra = inputs
        start = state.membrane
        state, outputs = advance_window(dynamics, state, drive_k, noise_key, step)
        if reduce_window is None:
            return state, outputs
        return state, reduce_window(start, outputs, extra)

    _, outputs = lax.scan(grid_step, state, (drive, noise_keys, steps, window_inputs))
    return outputs

"""`run`: a network on spike inputs, with a backend's observations injected."""

from __future__ import annotations

import functools
import operator
from collections.abc import Hashable

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import DTypeLike
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from . import _eventprop
from ._backend import AbstractBackend, Numeric
from ._eventprop import EventProp
from ._misc import check_dt as _check_dt, check_inputs
from ._network import INPUT, AbstractNetwork, Edge, Stage
from ._neuron_checks import guard_euler_step
from ._neurons import AbstractNeuron
from ._observables import Observables
from ._recording import PopulationRecording, Recording, cadc_to_model
from ._typing import user_facing
from .kernels import cuba, projection as _projection
from .kernels.cuba import lean as _lean

Spikes = dict[Hashable, Float[Array, "time batch _"] | _projection.Events]
"""Each source's spikes by key (`INPUT` and every population run so far), dense or events."""
Hoisted = list[
    tuple[Edge, Float[Array, "time batch _"] | _projection.Events, Float[Array, "_out _in"]]
]
"""A stage's hoisted projections: `(edge, the source's spikes, the model weight)` each."""


@user_facing
def run(
    network: AbstractNetwork,
    inputs: Real[ArrayLike, "time batch in_features"],
    *,
    backend: AbstractBackend = Numeric(),
    dt: float = 1e-6,
    key: PRNGKeyArray | None = None,
    projection: str = "auto",
    integrator: str = "auto",
    gradient: str | EventProp = "surrogate",
) -> tuple[Observables, ...] | dict[str, Observables]:
    """Run `network` on `inputs` and return the observables of every population.

    **Arguments:**
    - `network`: a `Sequential` or a `Network`.
    - `inputs`: array `(time, batch, in_features)`, input spikes as 0/1 (cast to float
      unless floating already).
    - `backend`: what produces the observations (`Numeric()`, a chip model, hardware).
    - `dt`: the grid step in seconds of hardware time (Python float; default 1 µs).
    - `key`: PRNG key for backends that draw noise.
    - `projection`: `"auto"`, `"dense"` or `"events"`: how input projections are computed
      (`bss2jax.kernels.projection`). `inputs` may also be `bj.kernels.projection.Events`
      (built on the host by `from_numpy`); with `"auto"` these take the event path when
      their capacity is at most a quarter of `in_features`, dense inputs the dense product.
    - `integrator`: `"auto"`, `"reference"` or `"lean"`: the scan of a lone population;
      `"auto"` takes the memory-lean one (`kernels.cuba.lean`, checkpoints every
      sqrt(time) steps) when time x batch x neurons exceeds 2**24.
    - `gradient`: `"surrogate"` (default: each population's surrogate), `"eventprop"` or
      `bj.EventProp(max_spikes=...)`: exact spike-time gradients for the firing populations
      of feed-forward stages (`bss2jax._eventprop`); the forward is the same. A backend
      wrapped in `bj.WithGradient(backend, bj.EventProp())` chooses it too.

    **Returns:** a tuple of `Observables` (one per population of a `Sequential`) or a dict
    (population name → `Observables`) for a `Network`; arrays are `(time, batch, neurons)`.

    Whatever the backend observed (spikes, CADC membrane) is post-processed (time shift,
    offset, scale) and becomes the forward value bit for bit, while the gradient flows
    through the numerics linearised around the observed trajectory (hxtorch's
    `Unterjubel`). With `Numeric()` the numerics are the result.
    """
    dt = _check_arguments(network, backend, dt, projection, integrator)
    exact, backend = _eventprop.check_gradient(gradient, backend)
    if isinstance(inputs, _projection.Events):
        return _run_events(network, inputs, backend, dt, key, projection, integrator, exact)
    network, inputs = check_inputs(network, inputs, float)
    network = guard_euler_step(network, dt)
    recording = backend.observe(network, inputs, dt=dt, key=key)
    return _run_network(network, inputs, inputs, recording, dt, projection, integrator, exact)


def _run_network(
    network: AbstractNetwork,
    source: Float[Array, "time batch in_features"] | _projection.Events,
    like: Float[Array, "time batch in_features"] | jax.ShapeDtypeStruct,
    recording: object,
    dt: float,
    projection: str,
    integrator: str,
    gradient: EventProp | None = None,
) -> tuple[Observables, ...] | dict[str, Observables]:
    """The numerics of every stage, fed by `source` (dense spikes or events of the shape
    and dtype of `like`), with `recording` injected."""
    time, batch = like.shape[:2]
    observed = _check_recording(network, recording, (time, batch))
    spikes: Spikes = {INPUT: source}
    results: dict[Hashable, Observables] = {}
    for stage in network.plan():
        results.update(
            _run_stage(network, stage, spikes, observed, like, dt, projection, integrator, gradient)
        )
    return network.pack(results)


def _check_arguments(
    network: object, backend: object, dt: object, projection: str, integrator: str
) -> float:
    """`run`'s arguments other than the inputs, with named errors; returns `dt` as a float."""
    if not isinstance(network, AbstractNetwork):
        raise TypeError(
            f"`network` must be a bj.Sequential or bj.Network; got {type(network).__name__}."
        )
    if not isinstance(backend, AbstractBackend):
        raise TypeError(
            f"`backend` must be a bss2jax backend such as bj.Numeric(); got {backend!r}."
        )
    checked = _check_dt(dt)
    for key in network.population_keys():
        network.population(key).check_step(checked)
    _projection.uses_events(None, projection)  # validates the names
    _lean.uses_lean((), integrator)
    return checked


def _run_events(
    network: AbstractNetwork,
    events: _projection.Events,
    backend: AbstractBackend,
    dt: float,
    key: PRNGKeyArray | None,
    projection: str,
    integrator: str,
    gradient: EventProp | None = None,
) -> tuple[Observables, ...] | dict[str, Observables]:
    """`run` on inputs given as `Events` (the numerics project them without a dense copy)."""
    if len(events.shape) != 3 or events.in_features != network.input_size:
        raise ValueError(
            "`inputs` must have shape (time, batch, in_features) with in_features = "
            f"{network.input_size}; got Events of shape {events.shape}."
        )
    dtype = jnp.asarray(0.0).dtype
    recording = None  # Numeric observes nothing; other backends see the 0/1 spikes
    if not isinstance(backend, Numeric):
        recording = backend.observe(network, events.to_dense(dtype), dt=dt, key=key)
    like = jax.ShapeDtypeStruct(events.shape, dtype)
    return _run_network(network, events, like, recording, dt, projection, integrator, gradient)


def _check_recording(
    network: AbstractNetwork, recording: object, time_batch: tuple[int, int]
) -> dict[Hashable, PopulationRecording]:
    """What a backend returned (a `Recording` or None), validated with named errors."""
    if recording is None:
        return {}
    if not isinstance(recording, Recording):
        raise TypeError(f"a backend must return a bj.Recording or None; got {recording!r}.")
    time, batch = time_batch
    keys = network.population_keys()
    for key, entry in recording.populations.items():
        if key not in keys:
            raise ValueError(f"the recording names population {key!r}; the network has {keys}.")
        if entry is None:
            continue
        if not isinstance(entry, PopulationRecording):
            raise TypeError(f"`populations[{key!r}]` must be a bj.PopulationRecording.")
        size = network.population(key).size
        for name in ("spikes", "membrane_cadc"):
            trace = getattr(entry, name)
            if trace is None:
                continue
            shape = jnp.shape(trace)
            if len(shape) != 3 or shape[0] < time or shape[1:] != (batch, size):
                raise ValueError(
                    f"recording of population {key!r}: `{name}` must have shape "
                    f"(time >= {time}, {batch}, {size}); got {shape}."
                )
        if entry.spikes is not None and not network.population(key).fire:
            raise ValueError(f"recording of population {key!r}: it does not fire, got spikes.")
        if entry.membrane_madc is not None:
            shape = jnp.shape(entry.membrane_madc)
            if len(shape) != 2 or shape[0] < time or shape[1] != batch:
                raise ValueError(
                    f"recording of population {key!r}: `membrane_madc` must have shape "
                    f"(time >= {time}, {batch}); got {shape}."
                )
    return {k: v for k, v in recording.populations.items() if v is not None}


def _hardware(
    neuron: AbstractNeuron, entry: PopulationRecording | None, time: int, dtype: DTypeLike
) -> cuba.HardwareStep:
    if entry is None:
        return cuba.HardwareStep()
    membrane = spikes = None
    if entry.membrane_cadc is not None:
        membrane = cadc_to_model(jnp.asarray(entry.membrane_cadc, dtype), neuron)[:time]
    if entry.spikes is not None:
        spikes = jnp.asarray(entry.spikes, dtype)[:time]
    return cuba.HardwareStep(membrane=membrane, spikes=spikes)


def _run_stage(
    network: AbstractNetwork,
    stage: Stage,
    spikes: Spikes,
    observed: dict[Hashable, PopulationRecording],
    inputs: Float[Array, "time batch in_features"] | jax.ShapeDtypeStruct,
    dt: float,
    projection: str = "auto",
    integrator: str = "auto",
    gradient: EventProp | None = None,
) -> dict[Hashable, Observables]:
    """One stage of `network.plan()`: project its inputs, integrate, observe.

    Adds the spikes of the stage's populations to `spikes` (the later stages' sources).
    """
    time, batch = inputs.shape[:2]
    dtype = inputs.dtype
    neurons = {k: network.population(k) for k in stage.populations}
    exact = None
    if gradient is not None and _eventprop.check_stage(stage, neurons, observed):
        exact = gradient
    hoisted = [
        (edge, spikes[edge.source], network.synapse(edge.synapse).model_weight().astype(dtype))
        for edge in stage.hoisted
    ]
    fused = None
    if exact is None:
        fused = _fused_events(stage, hoisted, neurons, (time, batch), projection, integrator)
    external = {}
    if fused is None:
        external = _project_inputs(stage, hoisted, neurons, inputs, projection)
    hardware = {k: _hardware(neurons[k], observed.get(k), time, dtype) for k in neurons}

    if not stage.internal and len(stage.populations) == 1:
        (k,) = stage.populations
        if exact is not None:
            out = _eventprop.integrate(neurons[k], external[k], hardware[k], dt, integrator, exact)
        else:
            out = _integrate_alone(neurons[k], fused, external.get(k), hardware[k], dt, integrator)
        outputs = {k: out}
    else:
        outputs = _scan_jointly(network, stage, neurons, external, hardware, batch, dtype, dt)
    return _observe(outputs, neurons, observed, spikes, time, dtype)


def _fused_events(
    stage: Stage,
    hoisted: Hoisted,
    neurons: dict[Hashable, AbstractNeuron],
    grid: tuple[int, int],
    projection: str,
    integrator: str,
) -> tuple[_projection.Events, Float[Array, "neurons in_features"]] | None:
    """`(events, weight)` when the stage's one input projection is fused into the lean
    scan's segments (a lone population fed by `Events` only, taking the lean integrator);
    `grid` is `(time, batch)`."""
    if stage.internal or len(stage.populations) != 1 or len(hoisted) != 1:
        return None
    ((edge, source, weight),) = hoisted
    (k,) = stage.populations
    if (
        isinstance(source, _projection.Events)
        and not edge.delayed
        and _projection.uses_events(source, projection)
        and _lean.uses_lean((*grid, neurons[k].size), integrator)
    ):
        return source, weight
    return None


def _project_inputs(
    stage: Stage,
    hoisted: Hoisted,
    neurons: dict[Hashable, AbstractNeuron],
    inputs: Float[Array, "time batch in_features"] | jax.ShapeDtypeStruct,
    projection: str,
) -> dict[Hashable, Float[Array, "time batch _"]]:
    """The summed current of the stage's hoisted projections into each population."""
    time, batch = inputs.shape[:2]
    dtype = inputs.dtype
    received: dict[Hashable, list[Array]] = {k: [] for k in stage.populations}
    for edge, source, weight in hoisted:
        if isinstance(source, _projection.Events) and edge.delayed:
            source = source.to_dense(dtype)
        if edge.delayed:
            source = jnp.concatenate([jnp.zeros_like(source[:1]), source[:-1]])
        if edge.source == INPUT:
            current = _projection.project(source, weight, method=projection, dtype=dtype)
        else:
            current = source @ weight.T
        received[edge.target].append(current)
    return {
        k: functools.reduce(operator.add, currents)
        if currents
        else jnp.zeros((time, batch, neurons[k].size), dtype)
        for k, currents in received.items()
    }


def _integrate_alone(
    neuron: AbstractNeuron,
    fused: tuple[_projection.Events, Float[Array, "neurons in_features"]] | None,
    external: Float[Array, "time batch neurons"] | None,
    hardware: cuba.HardwareStep,
    dt: float,
    integrator: str,
) -> cuba.StepOutput:
    """A lone population's scan: the reference or the lean integrator, the input projection
    fused into the lean scan's segments when `fused` is given, else the `external` current."""
    if fused is None:
        return _lean.integrate_auto(
            neuron.cuba_params(),
            neuron.cuba_flags(),
            external,
            hardware,
            dt=dt,
            spike_fn=neuron.surrogate,
            method=integrator,
        )
    events, weight = fused

    def project(indices):
        part = _projection.Events(indices, None, events.in_features)
        return _projection.project(part, weight, method="events", dtype=weight.dtype)

    return _lean.integrate(
        neuron.cuba_params(),
        neuron.cuba_flags(),
        events.indices,
        hardware,
        dt=dt,
        spike_fn=neuron.surrogate,
        project=project,
    )


def _observe(
    outputs: dict[Hashable, cuba.StepOutput],
    neurons: dict[Hashable, AbstractNeuron],
    observed: dict[Hashable, PopulationRecording],
    spikes: Spikes,
    time: int,
    dtype: DTypeLike,
) -> dict[Hashable, Observables]:
    """The stage's `Observables`: a backend's differentiable values where it has them, the
    MADC trace recorded or read off the membrane; the stage's spikes added to `spikes`."""
    results = {}
    for k, out in outputs.items():
        neuron = neurons[k]
        entry = observed.get(k)
        if entry is not None and entry.differentiable:
            out = _differentiable_observation(out, entry, neuron, time, dtype)
        if out.spikes is not None:
            spikes[k] = out.spikes
        madc = None
        if neuron.enable_madc_recording:
            if entry is not None and entry.membrane_madc is not None:
                madc = lax.stop_gradient(jnp.asarray(entry.membrane_madc, dtype)[:time])
            else:
                madc = out.membrane[:, :, neuron.record_neuron_id]
        results[k] = Observables(
            membrane_cadc=out.membrane,
            current=out.current,
            spikes=out.spikes,
            membrane_madc=madc,
            adaptation=out.adaptation,
        )
    return results


def _differentiable_observation(
    out: cuba.StepOutput,
    entry: PopulationRecording,
    neuron: AbstractNeuron,
    time: int,
    dtype: DTypeLike,
) -> cuba.StepOutput:
    """A backend's own differentiable values replace the numerics' (no injection)."""
    membrane, spikes = out.membrane, out.spikes
    if entry.membrane_cadc is not None:
        membrane = cadc_to_model(jnp.asarray(entry.membrane_cadc, dtype), neuron)[:time]
    if entry.spikes is not None:
        spikes = jnp.asarray(entry.spikes, dtype)[:time]
    return out._replace(membrane=membrane, spikes=spikes)


def _scan_jointly(network, stage, neurons, external, hardware, batch, dtype, dt):
    """One scan over time for populations joined by projections inside the stage."""
    params = {k: n.cuba_params() for k, n in neurons.items()}
    flags = {k: n.cuba_flags() for k, n in neurons.items()}
    values = {k: cuba.coefficients(params[k], flags[k], dt, dtype) for k in neurons}
    weights = {
        e.synapse: network.synapse(e.synapse).model_weight().astype(dtype) for e in stage.internal
    }
    delayed_sources = sorted(
        {e.source for e in stage.internal if e.delayed}, key=stage.populations.index
    )
    states = {
        k: cuba.init_state(params[k], flags[k], (batch, neurons[k].size), dtype) for k in neurons
    }
    previous = {k: jnp.zeros((batch, neurons[k].size), dtype) for k in delayed_sources}

    def body(carry, xs):
        states, previous = carry
        currents, observed = xs
        emitted, new_states, outs = {}, {}, {}
        for k in stage.populations:
            x = currents[k]
            for e in stage.internal:
                if e.target == k:
                    z = previous[e.source] if e.delayed else emitted[e.source]
                    x = x + z @ weights[e.synapse].T
            new_states[k], outs[k] = cuba.step_with(
                values[k], flags[k], states[k], x, observed[k], spike_fn=neurons[k].surrogate
            )
            emitted[k] = outs[k].spikes
        return (new_states, {k: emitted[k] for k in delayed_sources}), outs

    _, outputs = lax.scan(body, (states, previous), (external, hardware))
    return outputs

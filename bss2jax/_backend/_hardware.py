"""`Hardware`: a chip (or anything that behaves like one) behind a host callback.

Data flow of `Hardware.observe(network, inputs, dt=dt, key=key)`:

1. Trace time: a static `_Spec` of the network (populations, placement, projections, what
   to record, static sample-count limits) and the dynamic arrays the chip needs (chip
   weights, neuron settings in chip units, input spikes, a seed), all `stop_gradient`-ed.
2. Host: `_host_observe` builds an `ExperimentRequest`, calls the client (timeout, retries,
   skip of unchanged configurations), validates the `RawRecording`, optionally writes it
   to disk, and packs it into padded arrays of static shape (a channel with fewer samples
   than the limit repeats its last sample, which leaves the to-dense result unchanged).
   Under `jit` or `vmap` this runs inside `jax.pure_callback`; with concrete arrays it is
   called directly, so a `HardwareError` reaches the caller unchanged.
3. Trace time again: the padded raw data go through `spikes_to_dense`, `cadc_to_dense` and
   `madc_to_dense`, the one to-dense conversion, into a `Recording`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pathlib
import threading
import time
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._dense import cadc_to_dense, grid_length, madc_to_dense, spikes_to_dense
from .._hardware_io import (
    FLAG_NAMES,
    PARAMETER_NAMES,
    CADCSamples,
    ExperimentRequest,
    HardwareError,
    HardwareTimeoutError,
    InputSpikes,
    MADCSamples,
    PopulationRequest,
    ProjectionRequest,
    RawRecording,
    SpikeEvents,
    TransientHardwareError,
    configuration_hash,
    split_weight,
    validate_recording,
)
from .._network import INPUT
from .._observables import PopulationRecording, Recording
from .._parameters import hardware_value
from ._base import AbstractBackend, BackendError
from ._placement import place

CADC_MIN_PERIOD = 0.5e-6
"""Shortest CADC sample period assumed for the default `cadc_samples` (1.85 MSa/s max)."""
MADC_MIN_PERIOD = 32e-9
"""Shortest MADC sample period assumed for the default `madc_samples` (~34 ns nominal)."""
VMAP_METHODS = ("expand_dims", "sequential")


class _PopulationSpec(NamedTuple):
    key: Any
    kind: str
    size: int
    flags: tuple
    i_synin_gm: float
    synapse_dac_bias: float
    circuits: tuple
    record_spikes: bool
    record_cadc: bool
    record_madc: bool
    interpolation: str
    spike_events: int


class _ProjectionSpec(NamedTuple):
    source: Any
    target: Any
    delayed: bool
    shape: tuple


class _Spec(NamedTuple):
    populations: tuple
    projections: tuple
    input_size: int
    time: int
    batch: int
    dt: float
    runtime: float
    grid: int
    cadc_samples: int
    madc_samples: int
    madc: tuple | None
    has_seed: bool
    options: tuple


def _make_spec(network, shape, dt, has_seed, limits) -> _Spec:
    time_steps, batch, _ = shape
    runtime = time_steps * dt
    grid = grid_length(runtime, dt)
    placement = {k: p.circuits for k, p in place(network).populations.items()}
    keys = network.population_keys()
    madc = [(k, network.population(k)) for k in keys if network.population(k).enable_madc_recording]
    if len(madc) > 1:
        raise BackendError(
            "the chip's MADC watches one neuron per run; enable_madc_recording is set on "
            f"populations {[k for k, _ in madc]}. Enable it on one population only."
        )
    populations = []
    for key in keys:
        neuron = network.population(key)
        events = limits["max_spike_events"] or grid * batch * neuron.size
        populations.append(
            _PopulationSpec(
                key=key,
                kind=type(neuron).__name__,
                size=neuron.size,
                flags=tuple(bool(getattr(neuron, f)) for f in FLAG_NAMES),
                i_synin_gm=float(neuron.i_synin_gm),
                synapse_dac_bias=float(neuron.synapse_dac_bias),
                circuits=tuple(map(tuple, placement[key].tolist())),
                record_spikes=bool(neuron.fire and neuron.enable_spike_recording),
                record_cadc=bool(neuron.enable_cadc_recording),
                record_madc=bool(neuron.enable_madc_recording),
                interpolation=neuron.interpolation,
                spike_events=int(events),
            )
        )
    position = {k: i for i, k in enumerate(keys)}
    projections = []
    for index, (source, target) in enumerate(network.edges()):
        synapse = network.synapse(index)
        delayed = source != INPUT and position[source] >= position[target]
        projections.append(
            _ProjectionSpec(source, target, delayed, (synapse.out_features, synapse.in_features))
        )
    cadc = limits["cadc_samples"] or math.ceil(runtime / CADC_MIN_PERIOD) + 2
    madc_samples = limits["madc_samples"] or math.ceil(runtime / MADC_MIN_PERIOD) + 2
    return _Spec(
        populations=tuple(populations),
        projections=tuple(projections),
        input_size=network.input_size,
        time=time_steps,
        batch=batch,
        dt=dt,
        runtime=runtime,
        grid=grid,
        cadc_samples=int(cadc),
        madc_samples=int(madc_samples),
        madc=(madc[0][0], madc[0][1].record_neuron_id) if madc else None,
        has_seed=has_seed,
        options=tuple(sorted(limits.items())),
    )


def _dynamic_args(network, inputs, key) -> list:
    args = []
    for k in network.population_keys():
        neuron = network.population(k)
        values = [
            jnp.broadcast_to(
                jnp.asarray(hardware_value(getattr(neuron, name)), float), (neuron.size,)
            )
            for name in PARAMETER_NAMES
        ]
        args.append(jnp.stack(values))
    for index in range(len(network.edges())):
        args.append(jnp.asarray(network.synapse(index).hardware_weight(), float))
    args.append(inputs)
    if key is None:
        args.append(jnp.zeros((2,), jnp.uint32))
    else:
        data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        args.append(jnp.asarray(data).reshape(-1)[-2:].astype(jnp.uint32))
    return [jax.lax.stop_gradient(a) for a in args]


def _result_shapes(spec: _Spec, float_dtype) -> list:
    shapes = []
    b = spec.batch
    for p in spec.populations:
        if p.record_spikes:
            e = (b, p.spike_events)
            shapes += [
                jax.ShapeDtypeStruct(e, float_dtype),
                jax.ShapeDtypeStruct(e, jnp.int32),
                jax.ShapeDtypeStruct(e, jnp.bool_),
            ]
        if p.record_cadc:
            s = (b, p.size, spec.cadc_samples)
            shapes += [jax.ShapeDtypeStruct(s, float_dtype), jax.ShapeDtypeStruct(s, jnp.float32)]
        if p.record_madc:
            m = (b, spec.madc_samples)
            shapes += [jax.ShapeDtypeStruct(m, float_dtype), jax.ShapeDtypeStruct(m, jnp.float32)]
    return shapes


def _to_recording(spec: _Spec, flat: list) -> Recording:
    flat = list(flat)
    populations = {}
    for p in spec.populations:
        entry = {}
        if p.record_spikes:
            times, neurons, valid = flat[:3]
            del flat[:3]
            batch = jnp.broadcast_to(jnp.arange(spec.batch, dtype=jnp.int32)[:, None], times.shape)
            entry["spikes"] = spikes_to_dense(
                times.reshape(-1),
                neurons.reshape(-1),
                batch.reshape(-1),
                dt=spec.dt,
                shape=(spec.grid, spec.batch, p.size),
                valid=valid.reshape(-1),
            )
        if p.record_cadc:
            times, values = flat[:2]
            del flat[:2]
            entry["membrane_cadc"] = cadc_to_dense(
                times, values, dt=spec.dt, length=spec.grid, interpolation=p.interpolation
            )
        if p.record_madc:
            times, values = flat[:2]
            del flat[:2]
            entry["membrane_madc"] = madc_to_dense(
                times, values, dt=spec.dt, length=spec.grid, interpolation=p.interpolation
            )
            entry["madc_time"], entry["madc_value"] = times, values
        populations[p.key] = PopulationRecording(**entry) if entry else None
    return Recording(populations)


_to_recording_jit = jax.jit(_to_recording, static_argnums=0)


# --------------------------------------------------------------------------------------
# Host side.


def _seed(data: np.ndarray, has_seed: bool) -> int | None:
    if not has_seed:
        return None
    digest = hashlib.sha256(np.ascontiguousarray(data, np.uint32).tobytes()).digest()
    return int.from_bytes(digest[:4], "little")


def _input_spikes(inputs: np.ndarray, dt: float) -> tuple[InputSpikes, ...]:
    bad = (inputs != 0) & (inputs != 1)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise HardwareError(
            "`inputs` must be spikes as 0/1 for the chip (time, batch, in_features); got "
            f"{inputs[index].item()!r} at index {index}."
        )
    result = []
    for b in range(inputs.shape[1]):
        steps, channels = np.nonzero(inputs[:, b, :])
        result.append(InputSpikes(times=steps * dt, channels=channels.astype(np.int32)))
    return tuple(result)


def _build_request(spec: _Spec, params, weights, inputs, seed) -> ExperimentRequest:
    populations = []
    for p, values in zip(spec.populations, params, strict=True):
        values = np.asarray(values, np.float64)
        settings = {name: values[i].copy() for i, name in enumerate(PARAMETER_NAMES)}
        for name in ("tau_mem", "tau_syn", "tau_adap", "membrane_capacitance"):
            bad = ~(settings[name] > 0) | ~np.isfinite(settings[name])
            if bad.any():
                raise HardwareError(
                    f"population {p.key!r}: `{name}` must be positive and finite on the chip; "
                    f"got {settings[name][bad][0].item()!r}."
                )
        for name in ("leak", "reset") + (("threshold",) if p.flags[1] else ()):
            if not np.all(np.isfinite(settings[name])):
                raise HardwareError(
                    f"population {p.key!r}: `{name}` must be finite (CADC LSB) on the chip; "
                    f"got {settings[name]}."
                )
        populations.append(
            PopulationRequest(
                key=p.key,
                kind=p.kind,
                size=p.size,
                circuits=np.asarray(p.circuits, np.int64).reshape(p.size, -1),
                **settings,
                **dict(zip(FLAG_NAMES, p.flags, strict=True)),
                i_synin_gm=p.i_synin_gm,
                synapse_dac_bias=p.synapse_dac_bias,
                record_spikes=p.record_spikes,
                record_cadc=p.record_cadc,
            )
        )
    projections = []
    for index, (q, weight) in enumerate(zip(spec.projections, weights, strict=True)):
        exc, inh = split_weight(weight, name=f"hardware weight of projection {index}")
        projections.append(ProjectionRequest(q.source, q.target, exc, inh, q.delayed))
    populations, projections = tuple(populations), tuple(projections)
    return ExperimentRequest(
        populations=populations,
        projections=projections,
        input_size=spec.input_size,
        batch_size=inputs.shape[1],
        input_spikes=_input_spikes(inputs, spec.dt),
        runtime=spec.runtime,
        dt=spec.dt,
        madc=spec.madc,
        seed=seed,
        configuration_hash=configuration_hash(populations, projections),
    )


def _slice_batch(raw: RawRecording, start: int, stop: int) -> RawRecording:
    """The entries of batch `[start, stop)`, re-indexed from 0."""

    def pick(entry, cls, names):
        keep = (entry.batch >= start) & (entry.batch < stop)
        fields = {n: getattr(entry, n)[keep] for n in names}
        fields["batch"] = entry.batch[keep] - start
        return cls(**fields)

    return RawRecording(
        spikes={k: pick(e, SpikeEvents, ("times", "neurons")) for k, e in raw.spikes.items()},
        cadc={k: pick(e, CADCSamples, ("times", "values", "neurons")) for k, e in raw.cadc.items()},
        madc={k: pick(e, MADCSamples, ("times", "values")) for k, e in raw.madc.items()},
    )


def _pad_channels(times, values, group, channels, limit, what, option):
    """Samples of `channels` groups → `(channels, limit)`, sorted, last sample repeated."""
    order = np.lexsort((times, group))
    times, values, group = times[order], values[order], group[order]
    counts = np.bincount(group, minlength=channels)
    if counts.max(initial=0) > limit:
        worst = int(np.argmax(counts))
        raise HardwareError(
            f"{what}: channel {worst} has {int(counts[worst])} samples; the static limit is "
            f"{limit}. Raise `{option}` (Hardware/Replay option) to at least {int(counts.max())}."
        )
    starts = np.cumsum(counts) - counts
    position = np.arange(times.shape[0]) - starts[group]
    out_times = np.zeros((channels, limit), np.float64)
    out_values = np.zeros((channels, limit), np.float64)
    out_times[group, position] = times
    out_values[group, position] = values
    last = starts + counts - 1
    pad = np.arange(limit)[None, :] >= counts[:, None]
    out_times = np.where(pad, times[last][:, None], out_times)
    out_values = np.where(pad, values[last][:, None], out_values)
    return out_times, out_values


def _pack(spec: _Spec, raw: RawRecording, float_dtype) -> list:
    """A validated raw recording of one (un-merged) batch → padded arrays of static shape."""
    out = []
    b = spec.batch
    for p in spec.populations:
        if p.record_spikes:
            events = raw.spikes[p.key]
            times = np.zeros((b, p.spike_events), float_dtype)
            neurons = np.zeros((b, p.spike_events), np.int32)
            valid = np.zeros((b, p.spike_events), np.bool_)
            for entry in range(b):
                keep = events.batch == entry
                count = int(keep.sum())
                if count > p.spike_events:
                    raise HardwareError(
                        f"spikes[{p.key!r}]: batch entry {entry} has {count} spike events; the "
                        f"static limit is {p.spike_events}. Raise `max_spike_events` "
                        "(Hardware/Replay option)."
                    )
                times[entry, :count] = events.times[keep]
                neurons[entry, :count] = events.neurons[keep]
                valid[entry, :count] = True
            out += [times, neurons, valid]
        if p.record_cadc:
            samples = raw.cadc[p.key]
            group = samples.batch.astype(np.int64) * p.size + samples.neurons
            t, v = _pad_channels(
                samples.times.astype(np.float64),
                samples.values.astype(np.float64),
                group,
                b * p.size,
                spec.cadc_samples,
                f"cadc[{p.key!r}]",
                "cadc_samples",
            )
            out += [
                t.reshape(b, p.size, -1).astype(float_dtype),
                v.reshape(b, p.size, -1).astype(np.float32),
            ]
        if p.record_madc:
            samples = raw.madc[p.key]
            t, v = _pad_channels(
                samples.times.astype(np.float64),
                samples.values.astype(np.float64),
                samples.batch.astype(np.int64),
                b,
                spec.madc_samples,
                f"madc[{p.key!r}]",
                "madc_samples",
            )
            out += [t.astype(float_dtype), v.astype(np.float32)]
    return out


def _host_observe(link, spec: _Spec, float_dtype, *args):
    """The callback: leading (vmapped) axes → one client call per distinct configuration."""
    count = len(spec.populations)
    weights_count = len(spec.projections)
    ranks = [2] * count + [2] * weights_count + [3, 1]
    args = [np.asarray(a) for a in args]
    leading = np.broadcast_shapes(
        *(a.shape[: a.ndim - r] for a, r in zip(args, ranks, strict=True))
    )
    args = [
        np.broadcast_to(a, leading + a.shape[a.ndim - r :])
        for a, r in zip(args, ranks, strict=True)
    ]
    results = {}
    indices = list(np.ndindex(*leading))
    position = 0
    while position < len(indices):
        # Merge consecutive entries with the same configuration and seed into one run.
        first = indices[position]
        signature = [args[i][first].tobytes() for i in range(count + weights_count)]
        signature.append(args[-1][first].tobytes())
        group = [first]
        while position + len(group) < len(indices):
            candidate = indices[position + len(group)]
            same = all(
                args[i][candidate].tobytes() == signature[i] for i in range(count + weights_count)
            )
            if not (same and args[-1][candidate].tobytes() == signature[-1]):
                break
            group.append(candidate)
        params = [args[i][first] for i in range(count)]
        weights = [args[count + i][first] for i in range(weights_count)]
        inputs = np.concatenate([args[-2][index] for index in group], axis=1)
        request = _build_request(
            spec, params, weights, inputs, _seed(args[-1][first], spec.has_seed)
        )
        raw = link.execute(request, options=dict(spec.options))
        for n, index in enumerate(group):
            part = _slice_batch(raw, n * spec.batch, (n + 1) * spec.batch)
            results[index] = _pack(spec, part, float_dtype)
        position += len(group)
    outputs = []
    for j in range(len(results[indices[0]])):
        stacked = np.stack([results[index][j] for index in indices])
        outputs.append(stacked.reshape(leading + stacked.shape[1:]))
    return outputs


class _Link:
    """Host-side state of one backend: the client, its last configuration, retry policy.

    This is the one mutable object of the design: a connection to a chip has state (what
    was uploaded last). It lives outside the pytree as a static field, compared by
    identity, so copies of a `Hardware` backend share it.
    """

    def __init__(self, client, *, timeout, retries, retry_on, retry_delay, record_to):
        self.client = client
        self.timeout = timeout
        self.retries = retries
        self.retry_on = retry_on
        self.retry_delay = retry_delay
        self.record_to = None if record_to is None else pathlib.Path(record_to)
        self.last_configuration: str | None = None
        self.lock = threading.Lock()
        self.calls = 0
        self.reconfigurations = 0
        self._next_file = None

    def _call(self, request):
        if self.timeout is None:
            return self.client.execute(request)
        box = {}

        def target():
            try:
                box["result"] = self.client.execute(request)
            except BaseException as error:  # noqa: BLE001 - handed to the caller below
                box["error"] = error

        thread = threading.Thread(target=target, name="bss2jax-hardware-client", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            cancel = getattr(self.client, "cancel", None)
            if callable(cancel):
                try:
                    cancel()
                except Exception:  # noqa: BLE001 - the timeout is the error to report
                    pass
            raise HardwareTimeoutError(
                f"client {type(self.client).__name__} did not answer within the timeout of "
                f"{self.timeout:g} s (Hardware(timeout=...))."
            )
        if "error" in box:
            raise box["error"]
        return box["result"]

    def execute(self, request: ExperimentRequest, options: dict | None = None) -> RawRecording:
        with self.lock:
            return self._execute(request, options or {})

    def _execute(self, request: ExperimentRequest, options: dict) -> RawRecording:
        import dataclasses

        name = type(self.client).__name__
        failures = []
        for attempt in range(self.retries + 1):
            reconfigure = request.configuration_hash != self.last_configuration
            attempt_request = dataclasses.replace(request, reconfigure=reconfigure)
            self.calls += 1
            self.reconfigurations += reconfigure
            try:
                raw = self._call(attempt_request)
            except self.retry_on as error:
                self.last_configuration = None
                failures.append(f"{type(error).__name__}: {error}")
                if attempt < self.retries:
                    time.sleep(self.retry_delay)
                    continue
                raise HardwareError(
                    f"client {name} failed {attempt + 1} times with transient errors "
                    f"(Hardware(retries={self.retries})): " + "; ".join(failures)
                ) from error
            except HardwareError:
                self.last_configuration = None
                raise
            except Exception as error:
                self.last_configuration = None
                raise HardwareError(
                    f"client {name} raised {type(error).__name__}: {error}"
                ) from error
            try:
                raw = validate_recording(attempt_request, raw)
            except HardwareError as error:
                self.last_configuration = None
                raise HardwareError(f"client {name}: {error}") from None
            self.last_configuration = request.configuration_hash
            if self.record_to is not None:
                self._save(attempt_request, raw, attempts=attempt + 1, options=options)
            return raw
        raise AssertionError("unreachable")

    def _save(self, request, raw, *, attempts, options):
        from .._recording_file import RecordedRun, save_run

        if self._next_file is None:
            existing = sorted(self.record_to.glob("run-*.npz")) if self.record_to.exists() else []
            numbers = [int(p.stem[4:]) for p in existing if p.stem[4:].isdigit()]
            self._next_file = max(numbers, default=-1) + 1
        info = {
            "client": type(self.client).__name__,
            "attempts": attempts,
            "time": time.time(),
            "limits": options,  # the static limits, so that a replay pads identically
        }
        save_run(self.record_to / f"run-{self._next_file:06d}.npz", RecordedRun(request, raw, info))
        self._next_file += 1


def observe_through(link: _Link, limits: dict, vmap_method: str, network, inputs, dt, key):
    """`observe` of `Hardware` and `Replay`: the callback around `link`, then to-dense."""
    spec = _make_spec(network, inputs.shape, dt, key is not None, limits)
    args = _dynamic_args(network, inputs, key)
    float_dtype = np.dtype(inputs.dtype)
    shapes = _result_shapes(spec, float_dtype)
    host = functools.partial(_host_observe, link, spec, float_dtype)
    if any(isinstance(a, jax.core.Tracer) for a in args):
        flat = jax.pure_callback(host, shapes, *args, vmap_method=vmap_method)
        return _to_recording(spec, flat)
    # Concrete inputs: call the host directly, so that a HardwareError reaches the caller
    # as it is, and convert in one compiled call (cached per spec).
    flat = [jnp.asarray(x, s.dtype) for x, s in zip(host(*args), shapes, strict=True)]
    return _to_recording_jit(spec, flat)


def _check_limits(**limits) -> dict:
    for name, value in limits.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"`{name}` must be a positive int or None; got {value!r}.")
    return limits


class Hardware(AbstractBackend):
    """A chip behind a host callback: `client.execute(request) -> RawRecording`.

    **Arguments:**
    - `client`: an object with `execute(ExperimentRequest) -> RawRecording` (see
      `bj.AbstractClient`): `bj.ChipModelClient()` (the chip model in another process),
      `bj.HxtorchClient(...)` (a real BSS-2 system through hxtorch), or your own.
    - `timeout`: seconds one client call may take (None: no limit); past it the client's
      `cancel()` is called and `HardwareTimeoutError` raised.
    - `retries`: how often a call that raised one of `retry_on` is repeated (after
      `retry_delay` seconds); the configuration is re-uploaded on a retry.
    - `retry_on`: exception types treated as transient (default
      `(TransientHardwareError, ConnectionError)`); others fail at once.
    - `record_to`: a folder; every successful run is saved there as `run-NNNNNN.npz`
      (atomic, versioned; replay with `bj.Replay(folder)`).
    - `vmap_method`: under `jax.vmap`, "expand_dims" (default) sends one client call per
      run of consecutive vmapped entries that share the configuration (weights, neuron
      settings, key) with their batches concatenated: vmapping over inputs is one chip run;
      "sequential" makes one call per entry.
    - `cadc_samples`, `madc_samples`, `max_spike_events`: static limits of the padded raw
      data per channel (CADC: per neuron and batch entry; MADC: per batch entry; spikes: per
      population and batch entry). Defaults: `ceil(runtime / 0.5 us) + 2`,
      `ceil(runtime / 32 ns) + 2` and one event per grid bin. A recording above a limit
      raises `HardwareError` naming the option; nothing is dropped.

    `observe` works under `jit`, `grad` (forward: the recording, injected by `run`;
    backward: the numerics) and `vmap`. Client failures, timeouts and malformed data raise
    `HardwareError` (under `jit`, JAX re-raises it as `JaxRuntimeError` with the same text).
    A configuration equal to the last one run is sent with `request.reconfigure = False`.

    ```python
    with bj.ChipModelClient() as client:
        backend = bj.Hardware(client, timeout=60.0, retries=2, record_to="session")
        (readout,) = bj.run(net, inputs, backend=backend)
    ```
    """

    client: Any = eqx.field(static=True)
    timeout: float | None = eqx.field(static=True)
    retries: int = eqx.field(static=True)
    retry_delay: float = eqx.field(static=True)
    retry_on: tuple = eqx.field(static=True)
    record_to: str | None = eqx.field(static=True)
    vmap_method: str = eqx.field(static=True)
    cadc_samples: int | None = eqx.field(static=True)
    madc_samples: int | None = eqx.field(static=True)
    max_spike_events: int | None = eqx.field(static=True)
    link: _Link = eqx.field(static=True, repr=False)

    def __init__(
        self,
        client,
        *,
        timeout: float | None = 300.0,
        retries: int = 2,
        retry_delay: float = 1.0,
        retry_on: tuple = (TransientHardwareError, ConnectionError),
        record_to=None,
        vmap_method: str = "expand_dims",
        cadc_samples: int | None = None,
        madc_samples: int | None = None,
        max_spike_events: int | None = None,
    ):
        if not callable(getattr(client, "execute", None)):
            raise TypeError(
                "`client` must have a method `execute(request) -> RawRecording` (see "
                f"bj.AbstractClient); got {type(client).__name__}."
            )
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(
                f"`timeout` must be a positive number of seconds or None; got {timeout!r}."
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"`retries` must be a non-negative int; got {retries!r}.")
        if not (isinstance(retry_delay, (int, float)) and retry_delay >= 0):
            raise ValueError(f"`retry_delay` must be a non-negative number; got {retry_delay!r}.")
        retry_on = tuple(retry_on)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise TypeError(f"`retry_on` must be a tuple of exception types; got {retry_on!r}.")
        if vmap_method not in VMAP_METHODS:
            raise ValueError(f"`vmap_method` must be one of {VMAP_METHODS}; got {vmap_method!r}.")
        _check_limits(
            cadc_samples=cadc_samples, madc_samples=madc_samples, max_spike_events=max_spike_events
        )
        self.client = client
        self.timeout = None if timeout is None else float(timeout)
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.retry_on = retry_on
        self.record_to = None if record_to is None else str(record_to)
        self.vmap_method = vmap_method
        self.cadc_samples = cadc_samples
        self.madc_samples = madc_samples
        self.max_spike_events = max_spike_events
        self.link = _Link(
            client,
            timeout=self.timeout,
            retries=retries,
            retry_on=retry_on,
            retry_delay=self.retry_delay,
            record_to=record_to,
        )

    def observe(self, network, inputs, *, dt, key):
        limits = dict(
            cadc_samples=self.cadc_samples,
            madc_samples=self.madc_samples,
            max_spike_events=self.max_spike_events,
        )
        return observe_through(self.link, limits, self.vmap_method, network, inputs, dt, key)

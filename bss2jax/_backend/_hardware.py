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
import math
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._chip._placement import place
from .._chip._readout import user_stacklevel
from .._dense import cadc_to_dense, grid_length, madc_to_dense, spikes_to_dense
from .._errors import BackendError, TransientHardwareError
from .._hardware._link import _host_observe, _Link
from .._hardware._protocol import (
    FLAG_NAMES,
    PARAMETER_NAMES,
)
from .._misc import check_writable_folder
from .._network import INPUT
from .._parameters import hardware_value
from .._recording import PopulationRecording, Recording
from .._sharding import check_mesh, sharded_callback
from .._transforms import check_weight_range
from .._typing import user_facing
from ._base import AbstractBackend

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
        entry: dict[str, Any] = {}
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


def observe_through(
    link: _Link, limits: dict, vmap_method: str, network, inputs, dt, key, links=(), mesh=None
):
    """`observe` of `Hardware` and `Replay`: the callback around `link`, then to-dense.
    With a `mesh`, each device's slice of the batch goes through one of `links`."""
    spec = _make_spec(network, inputs.shape, dt, key is not None, limits)
    clipped = jnp.asarray(check_weight_range(network, stacklevel=user_stacklevel() + 1))
    args = _dynamic_args(network, inputs, key)
    float_dtype = np.dtype(inputs.dtype)
    shapes = _result_shapes(spec, float_dtype)
    if mesh is not None:

        def each(link, local_spec, *local_args):
            return _host_observe(link, local_spec, float_dtype, *local_args)

        flat = sharded_callback(each, links, spec, shapes, args, mesh)
        return _with_clipped(_to_recording(spec, flat), clipped)
    host = functools.partial(_host_observe, link, spec, float_dtype)
    if any(isinstance(a, jax.core.Tracer) for a in args):
        flat = jax.pure_callback(host, shapes, *args, vmap_method=vmap_method)
        return _with_clipped(_to_recording(spec, flat), clipped)
    # Concrete inputs: call the host directly, so that a HardwareError reaches the caller
    # as it is, and convert in one compiled call (cached per spec).
    flat = [jnp.asarray(x, s.dtype) for x, s in zip(host(*args), shapes, strict=True)]
    return _with_clipped(_to_recording_jit(spec, flat), clipped)


def _with_clipped(recording: Recording, clipped) -> Recording:
    """`recording` with the count of chip weights clipped to ±63 (`check_weight_range`)."""
    return Recording(recording.populations, recording.dropped_inputs, clipped.astype(jnp.int32))


def _client_folder(record_to, index: int, clients: int):
    if record_to is None or clients == 1:
        return record_to
    return str(Path(record_to) / f"client-{index}")


def check_limits(**limits) -> dict:
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
      `bss2jax.hardware.AbstractClient`): `bj.ChipModelClient()` (the chip model in
      another process), `bj.HxtorchClient(...)` (a real BSS-2 system through hxtorch), or your own.
      With a `mesh`, a sequence of clients (several chips) may be given.
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
    - `mesh`: a `jax.sharding.Mesh` (e.g. `bj.batch_mesh()`): the batch is split over its
      devices (they must divide it) and device `d` sends its slice to client
      `d % len(clients)`, all at once (`jax.shard_map`, one callback per device): several
      setups serve one batch. Every client gets the same seed, so a noisy client's noise
      depends on the split; a noiseless one gives the one-client result. With several
      clients, `record_to` gets a folder `client-<i>` per client. Without a mesh, a
      `Hardware` inside a sharded train step gets the whole batch in one call (XLA gathers
      it onto one device for the callback).

    `observe` works under `jit`, `grad` (forward: the recording, injected by `run`;
    backward: the numerics) and `vmap`. Client failures, timeouts and malformed data raise
    `HardwareError` (under `jit`, JAX re-raises it as `JaxRuntimeError` with the same text).
    A configuration equal to the last one run is sent with `request.reconfigure = False`.
    The callback is a `jax.pure_callback`: JAX may drop it when no result is used, or
    repeat it under rematerialisation; a `run` (or a jitted training step) makes one chip
    run in practice. The client and its state (`link`) live outside the pytree.

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
    links: tuple = eqx.field(static=True, repr=False)
    mesh: Any = eqx.field(static=True)

    @user_facing
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
        mesh=None,
    ):
        clients = tuple(client) if isinstance(client, (list, tuple)) else (client,)
        for one in clients:
            if not callable(getattr(one, "execute", None)):
                raise TypeError(
                    "`client` must have a method `execute(request) -> RawRecording` (see "
                    f"bss2jax.hardware.AbstractClient); got {type(one).__name__}."
                )
        if not clients or (len(clients) > 1 and check_mesh(mesh) is None):
            raise ValueError(
                f"several clients serve the slices of a batch split over a `mesh`; got "
                f"{len(clients)} clients and mesh={mesh!r} (pass mesh=bj.batch_mesh())."
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
        check_limits(
            cadc_samples=cadc_samples, madc_samples=madc_samples, max_spike_events=max_spike_events
        )
        self.client = clients if len(clients) > 1 else client
        self.mesh = check_mesh(mesh)
        self.timeout = None if timeout is None else float(timeout)
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.retry_on = retry_on
        self.record_to = None if record_to is None else str(record_to)
        for index in range(len(clients) if record_to is not None else 0):
            check_writable_folder(_client_folder(record_to, index, len(clients)), "record_to")
        self.vmap_method = vmap_method
        self.cadc_samples = cadc_samples
        self.madc_samples = madc_samples
        self.max_spike_events = max_spike_events
        self.links = tuple(
            _Link(
                one,
                timeout=self.timeout,
                retries=retries,
                retry_on=retry_on,
                retry_delay=self.retry_delay,
                record_to=_client_folder(record_to, index, len(clients)),
            )
            for index, one in enumerate(clients)
        )
        self.link = self.links[0]

    def observe(self, network, inputs, *, dt, key):
        limits = dict(
            cadc_samples=self.cadc_samples,
            madc_samples=self.madc_samples,
            max_spike_events=self.max_spike_events,
        )
        return observe_through(
            self.link, limits, self.vmap_method, network, inputs, dt, key, self.links, self.mesh
        )

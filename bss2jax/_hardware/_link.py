"""The host side of `Hardware`: requests from arrays, the client call, padded raw data.

Everything here runs outside JAX (in `jax.pure_callback`, or directly with concrete
arrays): build an `ExperimentRequest` per run of vmapped entries, call the client through
a `_Link` (timeout, retries, skip of unchanged configurations, recording to disk), split
the validated `RawRecording` per entry and pack it into arrays of static shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import threading
import time
import weakref

import numpy as np

from .._errors import ClientBusyError, HardwareError, HardwareTimeoutError
from ._protocol import (
    FLAG_NAMES,
    PARAMETER_NAMES,
    CADCSamples,
    ExperimentRequest,
    InputSpikes,
    MADCSamples,
    PopulationRequest,
    ProjectionRequest,
    RawRecording,
    SpikeEvents,
    configuration_hash,
    split_weight,
)
from ._validate import validate_recording


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


def _build_request(spec, params, weights, inputs, seed) -> ExperimentRequest:
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
    return ExperimentRequest(
        populations=tuple(populations),
        projections=tuple(projections),
        input_size=spec.input_size,
        batch_size=inputs.shape[1],
        input_spikes=_input_spikes(inputs, spec.dt),
        runtime=spec.runtime,
        dt=spec.dt,
        madc=spec.madc,
        seed=seed,
        configuration_hash=configuration_hash(tuple(populations), tuple(projections)),
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


def _pack(spec, raw: RawRecording, float_dtype) -> list:
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


def _host_observe(link, spec, float_dtype, *args):
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


class _Guard:
    """One client's exclusive access: a lock held for each call (with its retries), and the
    thread of a call that timed out and has not yet returned (None when there is none)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.hung: threading.Thread | None = None
        self.hung_since = 0.0


_GUARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GUARDS_LOCK = threading.Lock()


def _guard(client) -> _Guard:
    """The guard shared by every `Hardware` backend that uses `client` (a fresh one for a
    client that cannot be weakly referenced or hashed)."""
    with _GUARDS_LOCK:
        try:
            return _GUARDS.setdefault(client, _Guard())
        except TypeError:
            return _Guard()


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
        self.guard = _guard(client)
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
            stopped = self._cancel()
            thread.join(min(self.timeout, 0.1))  # a cancelled call may end at once
            stopped = stopped or not thread.is_alive()
            if not stopped:  # the client stays unusable until the call returns
                self.guard.hung, self.guard.hung_since = thread, time.monotonic()
            raise HardwareTimeoutError(
                f"client {type(self.client).__name__} did not answer within the timeout of "
                f"{self.timeout:g} s (Hardware(timeout=...)); "
                + (
                    "its cancel() confirmed that the call stopped."
                    if stopped
                    else "it takes no new call until that one returns or cancel() returns True."
                )
            )
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _cancel(self) -> bool:
        """Call the client's `cancel()`; True only when it returned True (the call stopped)."""
        cancel = getattr(self.client, "cancel", None)
        if not callable(cancel):
            return False
        try:
            return cancel() is True
        except Exception:  # noqa: BLE001 - the timeout is the error to report
            return False

    def _check_not_busy(self) -> None:
        """Raise `ClientBusyError` while a timed-out call of the client is still running
        (asking the client's `cancel()` once more whether it stopped)."""
        hung = self.guard.hung
        if hung is None or not hung.is_alive() or self._cancel():
            self.guard.hung = None
            return
        raise ClientBusyError(
            f"client {type(self.client).__name__} is still running a call that timed out "
            f"{time.monotonic() - self.guard.hung_since:.0f} s ago; bss2jax sends one "
            "experiment at a time, so the client takes no new call until that one returns or "
            "its cancel() returns True."
        )

    def execute(self, request: ExperimentRequest, options: dict | None = None) -> RawRecording:
        """Run `request` on the client, one call at a time per client (whatever the number
        of `Hardware` backends or threads that use it)."""
        with self.guard.lock:
            self._check_not_busy()
            return self._execute(request, options or {})

    def _execute(self, request: ExperimentRequest, options: dict) -> RawRecording:
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
        from ._files import RecordedRun, save_run

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

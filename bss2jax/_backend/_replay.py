"""`Replay`: recorded runs served again, through the same path as a live chip.

A `Replay` backend answers each request from stored `RecordedRun`s (matched by the request's
hash, or in recorded order) and sends the raw recording through the same validation,
packing and to-dense conversion as `Hardware`, so a replayed run gives bit for bit the
`Recording` the live run gave.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import equinox as eqx

from .._hardware_io import AbstractClient, ExperimentRequest, HardwareError, RawRecording
from .._recording_file import RecordedRun, load_runs
from ._base import AbstractBackend
from ._hardware import VMAP_METHODS, _check_limits, observe_through
from ._hardware_host import _Link

MATCH_METHODS = ("request", "order")


class ReplayError(HardwareError):
    """No recorded run answers a request (a different network, input, seed or order).

    ```python
    bj.Replay("session").observe(other_net, x, dt=1e-6, key=None)   # raises ReplayError
    ```
    """


class ReplayClient(AbstractClient):
    """A client that answers from recorded runs instead of a chip.

    - `match="request"`: the run whose `request_hash` equals the request's (the same
      configuration, inputs, runtime, dt, MADC neuron and seed); none raises `ReplayError`.
    - `match="order"`: the next run in recorded order, whatever the request (the recording
      is still validated against it); past the last one raises `ReplayError`.

    ```python
    client = bj.ReplayClient(bj.load_runs("session"), match="order")
    backend = bj.Hardware(client)   # the same as bj.Replay("session", match="order")
    ```
    """

    def __init__(self, runs: Sequence[RecordedRun], match: str = "request"):
        if match not in MATCH_METHODS:
            raise ValueError(f"`match` must be one of {MATCH_METHODS}; got {match!r}.")
        self.runs = tuple(runs)
        self.match = match
        self._by_hash = {}
        for run in self.runs:
            self._by_hash.setdefault(run.request.request_hash, run)
        self._position = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Start again from the first run (`match="order"`)."""
        with self._lock:
            self._position = 0

    def execute(self, request: ExperimentRequest) -> RawRecording:
        if self.match == "order":
            with self._lock:
                if self._position >= len(self.runs):
                    raise ReplayError(
                        f"all {len(self.runs)} recorded runs were replayed (match='order'); "
                        "call `reset()` on the replay client or record more runs."
                    )
                run = self.runs[self._position]
                self._position += 1
            return run.recording
        run = self._by_hash.get(request.request_hash)
        if run is None:
            same = sum(
                r.request.configuration_hash == request.configuration_hash for r in self.runs
            )
            detail = (
                f"{same} of them have this configuration, so the inputs, runtime, dt, MADC "
                "neuron or seed differ"
                if same
                else "none has this configuration (weights, neuron settings, placement)"
            )
            raise ReplayError(
                f"no recorded run matches this request (match='request'); {len(self.runs)} runs "
                f"are recorded and {detail}. Replay the same network, inputs and key, or use "
                "match='order'."
            )
        return run.recording


def _as_runs(source) -> tuple[RecordedRun, ...]:
    if isinstance(source, (str, os.PathLike)):
        return tuple(load_runs(source))
    if isinstance(source, RecordedRun):
        return (source,)
    if isinstance(source, Sequence) and source and all(isinstance(r, RecordedRun) for r in source):
        return tuple(source)
    raise TypeError(
        "`source` must be a path (a recorded-run .npz or a folder of them), a bj.RecordedRun "
        f"or a non-empty sequence of them; got {type(source).__name__}."
    )


def _max_counts(runs) -> dict:
    """Static limits large enough for every recorded run (per channel counts)."""
    import numpy as np

    cadc = madc = events = 1
    for run in runs:
        raw = run.recording
        for samples in raw.cadc.values():
            size = max(int(samples.neurons.max(initial=0)) + 1, 1)
            group = samples.batch.astype(np.int64) * size + samples.neurons
            cadc = max(cadc, int(np.bincount(group).max(initial=0)))
        for samples in raw.madc.values():
            madc = max(madc, int(np.bincount(samples.batch).max(initial=0)))
        for spikes in raw.spikes.values():
            events = max(events, int(np.bincount(spikes.batch).max(initial=0)))
    return dict(cadc_samples=cadc, madc_samples=madc, max_spike_events=events)


def _recorded_limits(runs) -> dict | None:
    """The static limits the recording backend used, if all runs agree (exact padding)."""
    limits = [run.info.get("limits") for run in runs]
    if limits[0] is None or any(other != limits[0] for other in limits):
        return None
    return dict(limits[0])


class Replay(AbstractBackend):
    """Recorded runs as a backend: a chip session analysed again, or CI without a chip.

    **Arguments:**
    - `source`: a folder written by `Hardware(record_to=...)`, one `.npz` run file, a
      `bj.RecordedRun`, or a sequence of them.
    - `match`: "request" (default: the run recorded for exactly this network, input and
      key) or "order" (the runs one after the other).
    - `vmap_method`, `cadc_samples`, `madc_samples`, `max_spike_events`: as for
      `bj.Hardware`; the limits default to those the recording backend used (so even the
      padding of the raw MADC arrays is identical), else to the largest recorded counts.

    The recording is validated again and converted by the same code as a live run, so
    `run` with `Replay` reproduces the recorded run's forward values bit for bit (and the
    same gradients). Works under `jit`, `grad` and `vmap` like `Hardware`.

    ```python
    backend = bj.Replay("session")          # folder written by Hardware(record_to="session")
    (readout,) = bj.run(net, inputs, backend=backend)
    ```
    """

    client: ReplayClient = eqx.field(static=True, repr=False)
    match: str = eqx.field(static=True)
    vmap_method: str = eqx.field(static=True)
    limits: tuple = eqx.field(static=True)
    link: Any = eqx.field(static=True, repr=False)

    def __init__(
        self,
        source,
        *,
        match: str = "request",
        vmap_method: str = "expand_dims",
        cadc_samples: int | None = None,
        madc_samples: int | None = None,
        max_spike_events: int | None = None,
    ):
        runs = _as_runs(source)
        if vmap_method not in VMAP_METHODS:
            raise ValueError(f"`vmap_method` must be one of {VMAP_METHODS}; got {vmap_method!r}.")
        given = _check_limits(
            cadc_samples=cadc_samples, madc_samples=madc_samples, max_spike_events=max_spike_events
        )
        limits = _recorded_limits(runs) if not any(given.values()) else None
        if limits is None:
            recorded = _max_counts(runs)
            limits = {name: given[name] or recorded[name] for name in given}
        self.client = ReplayClient(runs, match)
        self.match = match
        self.vmap_method = vmap_method
        self.limits = tuple(sorted(limits.items()))
        self.link = _Link(
            self.client, timeout=None, retries=0, retry_on=(), retry_delay=0.0, record_to=None
        )

    @property
    def runs(self) -> tuple[RecordedRun, ...]:
        """The recorded runs this backend serves."""
        return self.client.runs

    def observe(self, network, inputs, *, dt, key):
        return observe_through(
            self.link, dict(self.limits), self.vmap_method, network, inputs, dt, key
        )

"""`ReplayClient`: a hardware client that answers from recorded runs instead of a chip."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from .._errors import ReplayError
from .._hardware._files import RecordedRun, load_runs
from .._hardware._protocol import AbstractClient, ExperimentRequest, RawRecording

MATCH_METHODS = ("request", "order")


class ReplayClient(AbstractClient):
    """A client that answers from recorded runs instead of a chip.

    - `match="request"`: the run whose `request_hash` equals the request's (the same
      configuration, inputs, runtime, dt, MADC neuron and seed); none raises `ReplayError`.
    - `match="order"`: the next run in recorded order, whatever the request (the recording
      is still validated against it); past the last one raises `ReplayError`.

    ```python
    client = bjh.ReplayClient(bjh.load_runs("session"), match="order")
    backend = bj.Hardware(client)   # the same as bj.Replay("session", match="order")
    ```
    """

    def __init__(self, runs: Sequence[RecordedRun], match: str = "request"):
        if match not in MATCH_METHODS:
            raise ValueError(f"`match` must be one of {MATCH_METHODS}; got {match!r}.")
        self.runs = tuple(runs)
        self.match = match
        self._by_hash: dict[str, RecordedRun] = {}
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
        found = self._by_hash.get(request.request_hash)
        if found is None:
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
        return found.recording


def as_runs(source) -> tuple[RecordedRun, ...]:
    if isinstance(source, (str, os.PathLike)):
        return tuple(load_runs(source))
    if isinstance(source, RecordedRun):
        return (source,)
    if isinstance(source, Sequence) and source and all(isinstance(r, RecordedRun) for r in source):
        return tuple(source)
    raise TypeError(
        "`source` must be a path (a recorded-run .npz or a folder of them), a bjh.RecordedRun "
        f"or a non-empty sequence of them; got {type(source).__name__}."
    )


def max_counts(runs) -> dict:
    """Static limits large enough for every recorded run (per channel counts)."""
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


def recorded_limits(runs) -> dict | None:
    """The static limits the recording backend used, if all runs agree (exact padding)."""
    limits = [run.info.get("limits") for run in runs]
    if limits[0] is None or any(other != limits[0] for other in limits):
        return None
    return dict(limits[0])

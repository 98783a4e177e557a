"""`Replay`: recorded runs served again, through the same path as a live chip.

`Replay` is `Hardware` around a `ReplayClient`: each request is answered from stored
`RecordedRun`s (matched by the request's hash, or in recorded order) and the raw recording
goes through the same validation, packing and to-dense conversion as a live run, so a
replayed run gives bit for bit the `Recording` the live run gave.
"""

from __future__ import annotations

from .._clients._replay import ReplayClient, as_runs, max_counts, recorded_limits
from .._hardware._files import RecordedRun
from ._base import AbstractBackend
from ._hardware import Hardware, check_limits


class Replay(AbstractBackend):
    """Recorded runs as a backend: a chip session analysed again, or CI without a chip.

    **Arguments:**
    - `source`: a folder written by `Hardware(record_to=...)`, one `.npz` run file, a
      `bjh.RecordedRun`, or a sequence of them.
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

    hardware: Hardware

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
        runs = as_runs(source)
        given = check_limits(
            cadc_samples=cadc_samples, madc_samples=madc_samples, max_spike_events=max_spike_events
        )
        limits = recorded_limits(runs) if not any(given.values()) else None
        if limits is None:
            recorded = max_counts(runs)
            limits = {name: given[name] or recorded[name] for name in given}
        self.hardware = Hardware(
            ReplayClient(runs, match),
            timeout=None,
            retries=0,
            retry_delay=0.0,
            retry_on=(),
            vmap_method=vmap_method,
            **limits,
        )

    @property
    def client(self) -> ReplayClient:
        """The `ReplayClient` that answers the requests."""
        return self.hardware.client

    @property
    def runs(self) -> tuple[RecordedRun, ...]:
        """The recorded runs this backend serves."""
        return self.client.runs

    @property
    def match(self) -> str:
        return self.client.match

    def observe(self, network, inputs, *, dt, key):
        return self.hardware.observe(network, inputs, dt=dt, key=key)

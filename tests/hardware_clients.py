"""Fake hardware clients for the tests of `Hardware` and `Replay` (no chip, no subprocess)."""

from __future__ import annotations

import time

import numpy as np

import bss2jax.hardware as bjh


def irregular_recording(request: bjh.ExperimentRequest, *, samples: int = 23) -> bjh.RawRecording:
    """A deterministic raw recording with irregular CADC/MADC times that differ per neuron.

    Every CADC channel gets exactly `samples` samples (sorted), so the expected dense trace
    is `cadc_to_dense` of the `(batch, neurons, samples)` arrays; the data depend on the
    request (weights, inputs), so different requests give different recordings.
    """
    seed = int(request.request_hash[:8], 16)
    rng = np.random.default_rng(seed)
    runtime, batch = request.runtime, request.batch_size
    spikes, cadc, madc = {}, {}, {}
    for p in request.populations:
        if p.record_cadc:
            shape = (batch, p.size, samples)
            times = rng.uniform(0.0, runtime, shape)
            times[..., 0] = rng.uniform(0.0, 0.5 * request.dt, shape[:2])  # irregular start
            times = np.sort(times, axis=-1)
            values = rng.integers(20, 230, shape).astype(np.float64)
            b = np.broadcast_to(np.arange(batch)[:, None, None], shape)
            n = np.broadcast_to(np.arange(p.size)[None, :, None], shape)
            order = rng.permutation(times.size)  # clients may return samples in any order
            cadc[p.key] = bjh.CADCSamples(
                times=times.ravel()[order],
                values=values.ravel()[order],
                neurons=n.ravel()[order].astype(np.int32),
                batch=b.ravel()[order].astype(np.int64),
            )
        if p.record_spikes:
            events = 3 * batch * p.size
            spikes[p.key] = bjh.SpikeEvents(
                times=rng.uniform(0.0, runtime, events),
                neurons=rng.integers(0, p.size, events).astype(np.int32),
                batch=rng.integers(0, batch, events).astype(np.int32),
            )
    if request.madc is not None:
        count = 200
        times = np.sort(rng.uniform(0.0, runtime, (batch, count)), axis=-1)
        values = rng.integers(0, 1024, (batch, count)).astype(np.float64)
        b = np.broadcast_to(np.arange(batch)[:, None], (batch, count))
        madc[request.madc[0]] = bjh.MADCSamples(times.ravel(), values.ravel(), b.ravel().copy())
    return bjh.RawRecording(spikes=spikes, cadc=cadc, madc=madc)


class FakeClient(bjh.AbstractClient):
    """Answers with `irregular_recording`; keeps every request; can be told to misbehave.

    - `failures`: a list of exceptions raised by the next calls, one per call.
    - `mutate`: a function `(request, raw) -> raw` that corrupts the answer.
    - `delay`: seconds to sleep in each call.
    """

    def __init__(self, *, failures=(), mutate=None, delay=0.0, samples=23):
        self.requests = []
        self.failures = list(failures)
        self.mutate = mutate
        self.delay = delay
        self.samples = samples
        self.cancelled = 0
        self.closed = False

    def execute(self, request):
        self.requests.append(request)
        if self.delay:
            time.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        raw = irregular_recording(request, samples=self.samples)
        if self.mutate is not None:
            raw = self.mutate(request, raw)
        return raw

    def cancel(self):
        self.cancelled += 1

    def close(self):
        self.closed = True

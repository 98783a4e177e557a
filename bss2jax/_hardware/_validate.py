"""`validate_recording`: the checks a client's raw recording must pass before bss2jax
puts it on the grid (the rules are in its docstring)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._constants import CADC_RANGE, MADC_RANGE
from .._errors import HardwareError
from .._typing import user_facing
from ._protocol import CADCSamples, ExperimentRequest, MADCSamples, RawRecording, SpikeEvents


def _fail(where: str, rule: str, got) -> None:
    raise HardwareError(f"malformed raw recording: {where}: {rule}; got {got}.")


def _check_1d(where, name, array, *, kind, count=None):
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception:  # noqa: BLE001 - anything unconvertible is malformed
            _fail(where, f"`{name}` must be a numpy array", type(array).__name__)
    if array.ndim != 1:
        _fail(where, f"`{name}` must be 1-d", f"shape {array.shape}")
    if count is not None and array.shape[0] != count:
        _fail(where, f"`{name}` must have as many entries as `times` ({count})", array.shape[0])
    if kind == "int" and not np.issubdtype(array.dtype, np.integer):
        _fail(where, f"`{name}` must have an integer dtype", array.dtype)
    if kind == "float":
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            _fail(where, f"`{name}` must have a real dtype", array.dtype)
        if array.size and not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            _fail(
                where,
                f"`{name}` must be finite (no NaN or inf)",
                f"{array[bad].item()} at entry {bad}",
            )
    return array


def _check_where(where, rule, array, bad, what):
    """Fail naming the first entry of `array` where `bad` holds and how many do."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _fail(where, rule, f"{array[i].item()!r} at entry {i} ({int(bad.sum())} entries {what})")


def _check_range(where, name, array, low, high, unit):
    if array.size:
        outside = (array < low) | (array > high)
        _check_where(
            where, f"`{name}` must lie in [{low:g}, {high:g}] {unit}", array, outside, "outside"
        )


@user_facing
def validate_recording(request: ExperimentRequest, raw: RawRecording) -> RawRecording:
    """Check a client's raw recording against its request; raise `HardwareError` if bad.

    Rules: a `RawRecording` with exactly the requested observables; per entry 1-d arrays
    of equal length, real finite times and values, integer indices; times in
    `[0, runtime + dt/2)`, so that every one rounds onto the grid of `run` (whose last
    step is `runtime`); neuron indices in `[0, size)`, batch indices in `[0, batch_size)`;
    CADC values in [0, 255] and MADC values in [0, 1023]; at least one CADC sample per
    neuron and batch entry and one MADC sample per batch entry (nothing is zero-filled).

    **Returns:** the recording with every array as a numpy array.

    ```python
    raw = bjh.validate_recording(request, client.execute(request))   # or HardwareError
    ```
    """
    if not isinstance(raw, RawRecording):
        raise HardwareError(
            f"the client must return a bjh.RawRecording; got {type(raw).__name__}: {raw!r:.200}."
        )
    runtime, batch = request.runtime, request.batch_size
    wanted = {
        "spikes": {p.key for p in request.populations if p.record_spikes},
        "cadc": {p.key for p in request.populations if p.record_cadc},
        "madc": {request.madc[0]} if request.madc is not None else set(),
    }
    cleaned: dict[str, dict] = {}
    for field in ("spikes", "cadc", "madc"):
        entries = getattr(raw, field)
        if not isinstance(entries, Mapping):
            _fail(field, "must be a dict keyed by population", type(entries).__name__)
        got = set(entries)
        if got != wanted[field]:
            missing = sorted(map(repr, wanted[field] - got))
            extra = sorted(map(repr, got - wanted[field]))
            _fail(
                field,
                f"must hold exactly the requested populations {sorted(map(repr, wanted[field]))}",
                f"missing {missing}, unrequested {extra}",
            )
        cleaned[field] = {}
        for key, entry in entries.items():
            where = f"{field}[{key!r}]"
            size = request.population(key).size
            cleaned[field][key] = _validate_entry(
                field, where, entry, size, batch, runtime, request.dt
            )
    return RawRecording(**cleaned)


@user_facing
def validate_dropped(request: ExperimentRequest, dropped) -> np.ndarray | None:
    """Check a count of dropped input events against its request; raise `HardwareError`.

    Rules: None (not counted), or a 1-d integer array of `batch_size` entries, each in
    `[0, number of input spikes of that batch entry]` (the chip cannot lose more events
    than it was sent).

    **Returns:** the count as an int64 numpy array, or None.

    ```python
    bjh.validate_dropped(request, np.zeros(request.batch_size, np.int64))
    ```
    """
    if dropped is None:
        return None
    where = "dropped_inputs"
    array = _check_1d(where, "dropped_inputs", dropped, kind="int")
    if array.shape[0] != request.batch_size:
        _fail(where, f"must have one entry per batch entry ({request.batch_size})", array.shape)
    sent = np.asarray([len(s.times) for s in request.input_spikes], np.int64)
    if sent.shape[0] != array.shape[0]:
        sent = np.full(array.shape, np.iinfo(np.int64).max)
    _check_where(where, "counts must not be negative", array, array < 0, "negative")
    _check_where(
        where,
        "counts must not exceed the input spikes sent in that batch entry",
        array,
        array > sent,
        "too large",
    )
    return array.astype(np.int64)


_ENTRY_TYPES = {"spikes": SpikeEvents, "cadc": CADCSamples, "madc": MADCSamples}


def _validate_entry(field, where, entry, size, batch, runtime, dt):
    cls = _ENTRY_TYPES[field]
    if not isinstance(entry, cls):
        _fail(where, f"must be a bj.{cls.__name__}", type(entry).__name__)
    times = _check_1d(where, "times", entry.times, kind="float")
    count = times.shape[0]
    window = runtime + 0.5 * dt
    rule = f"`times` must lie before runtime + dt/2 = {window:g} s (the last grid bin)"
    _check_where(where, rule, times, times >= window, "that late")
    _check_range(where, "times", times, 0.0, window, "s")
    fields = {"times": times}
    if field in ("cadc", "madc"):
        values = _check_1d(where, "values", entry.values, kind="float", count=count)
        low, high = CADC_RANGE if field == "cadc" else MADC_RANGE
        _check_range(where, "values", values, low, high, "LSB (the ADC range)")
        fields["values"] = values
    if field in ("spikes", "cadc"):
        neurons = _check_1d(where, "neurons", entry.neurons, kind="int", count=count)
        _check_range(where, "neurons", neurons, 0, size - 1, "(neuron index)")
        fields["neurons"] = neurons
    batch_index = _check_1d(where, "batch", entry.batch, kind="int", count=count)
    _check_range(where, "batch", batch_index, 0, batch - 1, "(batch entry)")
    fields["batch"] = batch_index
    if field == "cadc":
        counts = np.zeros((batch, size), np.int64)
        np.add.at(counts, (batch_index, neurons), 1)
        if (counts == 0).any():
            b, n = (int(i) for i in np.argwhere(counts == 0)[0])
            _fail(
                where,
                "every neuron needs at least one CADC sample in every batch entry",
                f"none for neuron {n} in batch entry {b} ({int((counts == 0).sum())} empty)",
            )
    if field == "madc":
        counts = np.bincount(batch_index, minlength=batch)
        if (counts == 0).any():
            _fail(
                where,
                "every batch entry needs MADC samples",
                f"none in batch entries {np.flatnonzero(counts == 0).tolist()}",
            )
    return cls(**fields)

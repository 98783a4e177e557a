"""Recorded runs on disk: one `.npz` per run, arrays plus versioned JSON metadata.

The format is safe to load (`numpy.load(allow_pickle=False)`, no pickle anywhere), written
atomically (a temporary file in the same folder, then `os.replace`), and versioned: the
JSON entry `__metadata__` names the format and its version, and loading checks both and
validates the recording against its request.

Version 2 adds the optional `dropped_inputs` array (input events the chip lost per batch
entry, `bss2jax._chip._events`); version 1 files still load (with `dropped_inputs` None).
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
from typing import Any

import numpy as np

from .._errors import HardwareError, RecordingFileError
from .._misc import atomic_write
from .._typing import user_facing
from . import _protocol as protocol
from ._validate import validate_dropped, validate_recording

FORMAT = "bss2jax-recorded-run"
VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class RecordedRun:
    """One observed run: the `ExperimentRequest` sent and the `RawRecording` returned.

    `info` holds free JSON-serialisable notes (client name, time). `dropped_inputs`: int
    `(batch_size,)`, the input events the chip lost per batch entry (bus overload), or None
    where the client did not count them.

    ```python
    run = bjh.RecordedRun(request, raw)
    bjh.save_run("session/run-000000.npz", run)
    backend = bj.Replay("session")
    ```
    """

    request: protocol.ExperimentRequest
    recording: protocol.RawRecording
    info: dict = dataclasses.field(default_factory=dict)
    dropped_inputs: np.ndarray | None = None


_RAW_FIELDS = {
    "spikes": (protocol.SpikeEvents, ("times", "neurons", "batch")),
    "cadc": (protocol.CADCSamples, ("times", "values", "neurons", "batch")),
    "madc": (protocol.MADCSamples, ("times", "values", "batch")),
}


def _encode(run: RecordedRun) -> bytes:
    request = run.request
    arrays: dict[str, Any] = {}
    populations = []
    index_of = {}
    for i, p in enumerate(request.populations):
        index_of[p.key] = i
        meta = {"key": p.key, "kind": p.kind, "size": p.size}
        meta.update({f: bool(getattr(p, f)) for f in protocol.FLAG_NAMES})
        meta.update(i_synin_gm=p.i_synin_gm, synapse_dac_bias=p.synapse_dac_bias)
        meta.update(record_spikes=p.record_spikes, record_cadc=p.record_cadc)
        populations.append(meta)
        arrays[f"population/{i}/circuits"] = p.circuits
        for name in protocol.PARAMETER_NAMES:
            arrays[f"population/{i}/{name}"] = getattr(p, name)
    projections = []
    for j, q in enumerate(request.projections):
        projections.append({"source": q.source, "target": q.target, "delayed": q.delayed})
        arrays[f"projection/{j}/weight_exc"] = q.weight_exc
        arrays[f"projection/{j}/weight_inh"] = q.weight_inh
    counts = [len(s.times) for s in request.input_spikes]
    arrays["input/times"] = np.concatenate([s.times for s in request.input_spikes] or [np.zeros(0)])
    arrays["input/channels"] = np.concatenate(
        [s.channels for s in request.input_spikes] or [np.zeros(0, np.int32)]
    ).astype(np.int32)
    arrays["input/counts"] = np.asarray(counts, np.int64)
    raw_keys: dict[str, list[int]] = {}
    for field, (_, names) in _RAW_FIELDS.items():
        raw_keys[field] = []
        for key, entry in getattr(run.recording, field).items():
            i = index_of[key]
            raw_keys[field].append(i)
            for name in names:
                arrays[f"raw/{field}/{i}/{name}"] = np.asarray(getattr(entry, name))
    if run.dropped_inputs is not None:
        arrays["dropped_inputs"] = np.asarray(run.dropped_inputs)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "populations": populations,
        "projections": projections,
        "input_size": request.input_size,
        "batch_size": request.batch_size,
        "runtime": request.runtime,
        "dt": request.dt,
        "madc": list(request.madc) if request.madc is not None else None,
        "seed": request.seed,
        "reconfigure": request.reconfigure,
        "configuration_hash": request.configuration_hash,
        "request_hash": request.request_hash,
        "raw": raw_keys,
        "info": run.info,
        "dropped_inputs": run.dropped_inputs is not None,
    }
    text = json.dumps(metadata, allow_nan=False)
    arrays["__metadata__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@user_facing
def save_run(path, run: RecordedRun) -> pathlib.Path:
    """Write `run` to `path` (`.npz`) atomically: a temporary file, then `os.replace`.

    **Returns:** the path written. A reader never sees a half-written file.

    ```python
    bjh.save_run("runs/run-000000.npz", bjh.RecordedRun(request, raw))
    ```
    """
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"`path` must end in '.npz'; got {str(path)!r}.")
    data = encode_run(run)
    atomic_write(path, lambda file: file.write(data))
    return path


def _bad(path, rule):
    raise RecordingFileError(f"recorded run {str(path)!r}: {rule}.")


def load_run(path) -> RecordedRun:
    """Read a run written by `save_run` (or by `Hardware(record_to=...)`).

    Checks the format name and version and validates the recording against its request;
    raises `RecordingFileError` naming what is wrong. Never unpickles.

    ```python
    run = bjh.load_run("runs/run-000000.npz")
    ```
    """
    path = pathlib.Path(path)
    return decode_run(path.read_bytes(), name=str(path))


@user_facing
def encode_run(run: RecordedRun) -> bytes:
    """The bytes of `save_run`'s file format (an `.npz` archive) for `run`."""
    if not isinstance(run, RecordedRun):
        raise TypeError(f"`run` must be a bjh.RecordedRun; got {type(run).__name__}.")
    return _encode(run)


def decode_run(data: bytes, *, name: str = "<bytes>", validate: bool = True) -> RecordedRun:
    """Inverse of `encode_run`: checks format and version, validates unless told not to."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # noqa: BLE001 - any decoding failure is a bad file
        _bad(name, f"not a readable .npz file ({type(error).__name__}: {error})")
    if "__metadata__" not in arrays:
        _bad(name, "no '__metadata__' entry; not a bss2jax recorded run")
    try:
        metadata = json.loads(arrays.pop("__metadata__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        _bad(name, f"metadata is not valid JSON ({error})")
    if not isinstance(metadata, dict):
        _bad(name, f"metadata must be a JSON object; got {type(metadata).__name__}")
    if metadata.get("format") != FORMAT:
        _bad(name, f"format must be {FORMAT!r}; got {metadata.get('format')!r}")
    version = metadata.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        _bad(
            name,
            f"format version must be {' or '.join(map(str, READABLE_VERSIONS))} (the versions "
            f"this bss2jax reads); got {version!r}",
        )
    try:
        run = _decode(metadata, arrays)
    except KeyError as error:
        _bad(name, f"missing entry {error}")
    except (TypeError, ValueError, AttributeError, IndexError) as error:
        _bad(name, f"malformed metadata ({type(error).__name__}: {error})")
    if validate:
        try:
            validate_recording(run.request, run.recording)
            validate_dropped(run.request, run.dropped_inputs)
        except HardwareError as error:
            _bad(name, str(error))
    if run.request.request_hash != metadata.get("request_hash"):
        _bad(name, "the stored request does not match its hash (corrupted file)")
    return run


def _decode(metadata, arrays) -> RecordedRun:
    from ._protocol import configuration_hash

    populations = []
    for i, meta in enumerate(metadata["populations"]):
        populations.append(
            protocol.PopulationRequest(
                key=meta["key"],
                kind=meta["kind"],
                size=meta["size"],
                circuits=arrays[f"population/{i}/circuits"],
                **{name: arrays[f"population/{i}/{name}"] for name in protocol.PARAMETER_NAMES},
                **{f: meta[f] for f in protocol.FLAG_NAMES},
                i_synin_gm=meta["i_synin_gm"],
                synapse_dac_bias=meta["synapse_dac_bias"],
                record_spikes=meta["record_spikes"],
                record_cadc=meta["record_cadc"],
            )
        )
    projections = tuple(
        protocol.ProjectionRequest(
            source=meta["source"],
            target=meta["target"],
            weight_exc=arrays[f"projection/{j}/weight_exc"],
            weight_inh=arrays[f"projection/{j}/weight_inh"],
            delayed=meta["delayed"],
        )
        for j, meta in enumerate(metadata["projections"])
    )
    bounds = np.concatenate([[0], np.cumsum(arrays["input/counts"])]).astype(np.int64)
    inputs = tuple(
        protocol.InputSpikes(
            times=arrays["input/times"][bounds[b] : bounds[b + 1]],
            channels=arrays["input/channels"][bounds[b] : bounds[b + 1]],
        )
        for b in range(metadata["batch_size"])
    )
    madc = metadata["madc"]
    request = protocol.ExperimentRequest(
        populations=tuple(populations),
        projections=projections,
        input_size=metadata["input_size"],
        batch_size=metadata["batch_size"],
        input_spikes=inputs,
        runtime=metadata["runtime"],
        dt=metadata["dt"],
        madc=tuple(madc) if madc is not None else None,
        seed=metadata["seed"],
        configuration_hash=configuration_hash(tuple(populations), projections),
        reconfigure=bool(metadata.get("reconfigure", True)),
    )
    raw = {}
    for field, (cls, names) in _RAW_FIELDS.items():
        raw[field] = {
            populations[i].key: cls(**{n: arrays[f"raw/{field}/{i}/{n}"] for n in names})
            for i in metadata["raw"][field]
        }
    dropped = None
    if metadata.get("version") != 1 and metadata.get("dropped_inputs"):
        dropped = arrays["dropped_inputs"]
    return RecordedRun(
        request, protocol.RawRecording(**raw), metadata.get("info", {}), dropped_inputs=dropped
    )


def load_runs(path) -> list[RecordedRun]:
    """All runs in `path`: one `.npz` file, or a folder of them (sorted by name).

    ```python
    runs = bjh.load_runs("session")
    ```
    """
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npz" and p.is_file())
        if not files:
            raise RecordingFileError(f"no recorded runs (*.npz) in folder {str(path)!r}.")
        return [load_run(p) for p in files]
    if not path.exists():
        raise FileNotFoundError(f"no recorded run or folder at {str(path)!r}.")
    return [load_run(path)]

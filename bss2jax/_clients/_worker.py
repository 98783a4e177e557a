"""`ChipModelClient`'s worker process: `python -m bss2jax._clients._worker`.

The worker rebuilds the request's network in chip units, runs `ChipModel.record` and answers
with a `RawRecording`; `_serve` is its loop. A module of its own that `bss2jax` does not
import, so that `-m` runs it without importing it twice. Arguments: chip file, chip config
(JSON), seed, JAX platform ("" for the default).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import traceback
from typing import Any

import numpy as np

from .._hardware._protocol import (
    FLAG_NAMES,
    PARAMETER_NAMES,
    CADCSamples,
    ExperimentRequest,
    MADCSamples,
    RawRecording,
    SpikeEvents,
)
from ._chip_model import _CLOSE, _ERROR, _RECORDING, _write_message

_ADEX_TERMS = PARAMETER_NAMES[PARAMETER_NAMES.index("exponential_slope") :]
"""The AdEx-only settings of a `PopulationRequest` (exponential term, adaptation)."""


def network_from_request(request: ExperimentRequest):
    """The request's network rebuilt in chip units: a `bj.Network` and key → name map.

    Potentials and times are the request's hardware values (plain numbers, so model and
    chip values coincide); weights are the signed integers `exc - inh` with an identity
    transform (`linear_saturating(1)`), so `hardware_weight()` returns them unchanged.
    """
    import jax.numpy as jnp

    from .._network import INPUT, Network, Projection
    from .._neurons import LI, LIF, AbstractNeuron, AdEx
    from .._parameters import Mixed
    from .._synapse import Synapse
    from .._transforms import linear_saturating

    names = {p.key: f"population_{i}" for i, p in enumerate(request.populations)}
    madc_key, madc_neuron = request.madc if request.madc is not None else (None, 0)
    populations = {}
    for p in request.populations:
        common: dict[str, Any] = dict(
            leak=p.leak,
            tau_mem=p.tau_mem,
            tau_syn=p.tau_syn,
            membrane_capacitance=Mixed(10e-6, jnp.asarray(p.membrane_capacitance)),
            enable_cadc_recording=p.record_cadc,
            enable_madc_recording=p.key == madc_key,
            record_neuron_id=int(madc_neuron) if p.key == madc_key else 0,
            i_synin_gm=p.i_synin_gm,
            synapse_dac_bias=p.synapse_dac_bias,
        )
        firing: dict[str, Any] = dict(
            reset=p.reset,
            threshold=p.threshold,
            refractory_time=p.refractory_time,
            enable_spike_recording=p.record_spikes,
        )
        neuron: AbstractNeuron
        if p.kind == "LI":
            neuron = LI(p.size, **common)
        elif p.kind == "LIF":
            neuron = LIF(p.size, **common, **firing)
        else:
            flags: dict[str, Any] = {name: getattr(p, name) for name in FLAG_NAMES}
            extra: dict[str, Any] = {name: getattr(p, name) for name in _ADEX_TERMS}
            if not p.fire:
                firing = dict(enable_spike_recording=False)
            neuron = AdEx(p.size, **common, **firing, **flags, **extra)
        populations[names[p.key]] = neuron
    projections = []
    for q in request.projections:
        out_features, in_features = q.weight_exc.shape
        synapse = Synapse(
            in_features,
            out_features,
            weight=q.signed_weight.astype(np.float32),
            transform=linear_saturating(1.0),
        )
        source = INPUT if q.source == "input" else names[q.source]
        projections.append(Projection(source, names[q.target], synapse))
    network = Network(populations, projections, input_size=request.input_size)
    return network, names


def input_dense(request: ExperimentRequest) -> np.ndarray:
    """float32 `(round(runtime / dt), batch, input_size)` 0/1 spikes from the request."""
    steps = int(round(request.runtime / request.dt))
    dense = np.zeros((steps, request.batch_size, request.input_size), np.float32)
    for b, spikes in enumerate(request.input_spikes):
        dense[np.round(spikes.times / request.dt).astype(np.int64), b, spikes.channels] = 1.0
    return dense


def recording_from_chip_model(request: ExperimentRequest, raw: dict, names: dict) -> RawRecording:
    """`ChipModel.record`'s raw readout → the `RawRecording` of the hardware contract."""
    spikes, cadc, madc = {}, {}, {}
    for p in request.populations:
        entry = raw[names[p.key]]
        if p.record_spikes:
            times = np.asarray(entry.spike_times, np.float64)
            _, b, n = np.nonzero(np.isfinite(times))
            spikes[p.key] = SpikeEvents(
                times=times[np.isfinite(times)],
                neurons=n.astype(np.int32),
                batch=b.astype(np.int32),
            )
        if p.record_cadc:
            values = np.asarray(entry.cadc_value, np.float64)  # (batch, neurons, samples)
            times = np.broadcast_to(
                np.asarray(entry.cadc_time, np.float64)[:, None, :], values.shape
            )
            index = np.indices(values.shape)
            cadc[p.key] = CADCSamples(
                times=times.ravel(),
                values=values.ravel(),
                neurons=index[1].ravel().astype(np.int32),
                batch=index[0].ravel().astype(np.int32),
            )
        if request.madc is not None and request.madc[0] == p.key:
            values = np.asarray(entry.madc_value, np.float64)  # (batch, samples)
            times = np.asarray(entry.madc_time, np.float64)
            madc[p.key] = MADCSamples(
                times=times.ravel(),
                values=values.ravel(),
                batch=np.indices(values.shape)[0].ravel().astype(np.int32),
            )
    return RawRecording(spikes=spikes, cadc=cadc, madc=madc)


def _config_from_json(text: str):
    from .._chip._config import ChipConfig

    fields = json.loads(text)
    fields["potential_range"] = tuple(fields["potential_range"])
    return ChipConfig(**fields)


def _serve(chip_path: str, config_json: str, seed: int, platform: str | None) -> None:
    """The worker's loop: read a request, configure if needed, run, answer."""
    import warnings

    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing else may write to the message stream
    import jax

    if platform:
        jax.config.update("jax_platforms", platform)
    from .._backend._chip_model import ChipModel
    from .._chip._instance import ChipInstance
    from .._hardware._files import RecordedRun, decode_run, encode_run

    backend = ChipModel(ChipInstance.load(chip_path), _config_from_json(config_json))
    source = sys.stdin.buffer
    network = names = configured = None
    calls = 0
    while True:
        head = source.read(9)
        if len(head) < 9 or head[:1] == _CLOSE:
            return
        (length,) = struct.unpack("<Q", head[1:])
        payload = source.read(length)
        try:
            delay = struct.unpack("<d", payload[:8])[0]
            request = decode_run(payload[8:], validate=False).request
            reconfigured = False
            if request.reconfigure or configured != request.configuration_hash:
                network, names = network_from_request(request)
                configured = request.configuration_hash
                reconfigured = True
                time.sleep(delay)
            if request.seed is not None:
                key = jax.random.PRNGKey(request.seed)
            else:  # like a chip: every run draws fresh noise
                key = jax.random.fold_in(jax.random.PRNGKey(seed), calls)
            calls += 1
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert network is not None and names is not None  # configured above
                raw = backend.record(network, input_dense(request), dt=request.dt, key=key)
            recording = recording_from_chip_model(request, raw, names)
            info = {"reconfigured": reconfigured, "warnings": [str(w.message) for w in caught]}
            _write_message(out, _RECORDING, encode_run(RecordedRun(request, recording, info)))
        except Exception as error:  # noqa: BLE001 - sent to the parent, which raises
            text = json.dumps(
                {
                    "name": type(error).__name__,
                    "message": str(error),
                    "trace": traceback.format_exc(),
                }
            )
            _write_message(out, _ERROR, text.encode())


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] or None)

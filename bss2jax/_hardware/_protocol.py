"""The client contract of the `Hardware` backend: plain-numpy requests and raw recordings.

A client is any object with one method, `execute(request: ExperimentRequest) ->
RawRecording`, that runs one experiment on a chip (or on something that behaves like one).
Everything here is host-side numpy, in chip units: integer weights split into excitatory and
inhibitory rows, potentials in CADC LSB, times in seconds of hardware time. bss2jax builds the
request from the network, validates the raw recording (`validate_recording`) and puts it on
the grid with the same to-dense code every backend uses.

```python
class MyClient(bjh.AbstractClient):
    def execute(self, request):
        ...  # configure the chip unless `request.reconfigure` is False, run, read back
        return bjh.RawRecording(spikes={...}, cadc={...}, madc={...})
```
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from collections.abc import Hashable, Mapping

import numpy as np

from .._constants import WEIGHT_MAX
from .._errors import HardwareError

PopulationKey = Hashable


@dataclasses.dataclass(frozen=True, eq=False)
class PopulationRequest:
    """Settings of one neuron population on the chip, in chip units.

    - `key`: the population's key in the network (`0, 1, ...` for a `Sequential`, a name
      for a `Network`); `kind`: "LIF", "LI" or "AdEx"; `size`: neurons.
    - `circuits`: int64 `(size, circuits_per_neuron)`, the neuron circuits (0..511) of
      each logical neuron (placement).
    - `leak`, `reset`, `threshold`: float64 `(size,)`, CADC LSB (`threshold` is inf for a
      population that does not fire).
    - `tau_mem`, `tau_syn`, `refractory_time`, `tau_adap`: float64 `(size,)`, seconds.
    - `membrane_capacitance`: float64 `(size,)`, capacitance LSB (0..63).
    - `exponential_slope`, `exponential_threshold`, `subthreshold_adaptation_strength`,
      `spike_triggered_adaptation_increment`: float64 `(size,)` (AdEx terms, used when
      the matching flag is on).
    - `leaky`, `fire`, `exponential`, `subthreshold_adaptation`,
      `spike_triggered_adaptation`: the circuit's switches.
    - `i_synin_gm`, `synapse_dac_bias`: chip-global calibration targets (DAC values).
    - `record_spikes`, `record_cadc`: what to record for this population.

    ```python
    population = request.population(0)
    population.threshold   # float64 (size,), CADC LSB
    ```
    """

    key: PopulationKey
    kind: str
    size: int
    circuits: np.ndarray
    leak: np.ndarray
    reset: np.ndarray
    threshold: np.ndarray
    tau_mem: np.ndarray
    tau_syn: np.ndarray
    membrane_capacitance: np.ndarray
    refractory_time: np.ndarray
    exponential_slope: np.ndarray
    exponential_threshold: np.ndarray
    subthreshold_adaptation_strength: np.ndarray
    spike_triggered_adaptation_increment: np.ndarray
    tau_adap: np.ndarray
    leaky: bool
    fire: bool
    exponential: bool
    subthreshold_adaptation: bool
    spike_triggered_adaptation: bool
    i_synin_gm: float
    synapse_dac_bias: float
    record_spikes: bool
    record_cadc: bool


PARAMETER_NAMES = (
    "leak",
    "reset",
    "threshold",
    "tau_mem",
    "tau_syn",
    "membrane_capacitance",
    "refractory_time",
    "exponential_slope",
    "exponential_threshold",
    "subthreshold_adaptation_strength",
    "spike_triggered_adaptation_increment",
    "tau_adap",
)
"""The per-neuron float64 `(size,)` settings of a `PopulationRequest`, in this order."""

FLAG_NAMES = (
    "leaky",
    "fire",
    "exponential",
    "subthreshold_adaptation",
    "spike_triggered_adaptation",
)


@dataclasses.dataclass(frozen=True, eq=False)
class ProjectionRequest:
    """Synapses from `source` (a population key, or "input") onto population `target`.

    - `weight_exc`, `weight_inh`: uint8 `(out, in)` in [0, 63]: the magnitudes on the
      excitatory and the inhibitory synapse rows; the signed chip weight is `exc - inh`,
      and at most one of the two is non-zero per synapse.
    - `delayed`: True for a recurrent projection (onto the same or an earlier population),
      which the numerics model with one extra `dt` of delay.

    ```python
    projection = request.projections[0]
    projection.weight_exc, projection.weight_inh   # uint8 (out, in) rows in [0, 63]
    ```
    """

    source: PopulationKey
    target: PopulationKey
    weight_exc: np.ndarray
    weight_inh: np.ndarray
    delayed: bool

    @property
    def signed_weight(self) -> np.ndarray:
        """int16 `(out, in)` chip weights in [-63, 63]: `weight_exc - weight_inh`."""
        return self.weight_exc.astype(np.int16) - self.weight_inh.astype(np.int16)


@dataclasses.dataclass(frozen=True, eq=False)
class InputSpikes:
    """Input spikes of one batch entry: float64 `times` (seconds) and int32 `channels`.

    Both `(events,)`, sorted by time then channel. A 1 at grid step `k` of `run`'s inputs
    is a spike at `k * dt` (hxtorch's `tensor_to_spike_times`).

    ```python
    spikes = bjh.InputSpikes(times=np.array([3e-6, 5e-6]), channels=np.array([0, 7], np.int32))
    ```
    """

    times: np.ndarray
    channels: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class ExperimentRequest:
    """One experiment in chip units: what a client configures, runs and records.

    - `populations`, `projections`: settings and integer weights (see their docs).
    - `input_size`: input channels; `batch_size`: batch entries, each a separate run of
      `runtime` seconds on the chip (hxtorch's realtime snippets).
    - `input_spikes`: one `InputSpikes` per batch entry.
    - `runtime`: seconds of hardware time per batch entry; `dt`: the grid step, seconds.
    - `madc`: `(population key, neuron index)` that the MADC watches, or None.
    - `seed`: an int from the `key` passed to `run` (for models of the chip), or None.
    - `configuration_hash`: sha256 of placement, neuron settings and weights; equal
      hashes mean an identical configuration.
    - `reconfigure`: False when this configuration equals the one this client last ran
      successfully for the same backend, so the (slow) upload may be skipped.

    ```python
    def execute(self, request):
        if request.reconfigure:
            upload(request.populations, request.projections)   # the slow part
        ...
    ```
    """

    populations: tuple[PopulationRequest, ...]
    projections: tuple[ProjectionRequest, ...]
    input_size: int
    batch_size: int
    input_spikes: tuple[InputSpikes, ...]
    runtime: float
    dt: float
    madc: tuple[PopulationKey, int] | None
    seed: int | None
    configuration_hash: str
    reconfigure: bool = True

    def population(self, key) -> PopulationRequest:
        """The `PopulationRequest` with this key."""
        for population in self.populations:
            if population.key == key:
                return population
        raise KeyError(f"no population {key!r} in the request; it has {self.keys()}.")

    def keys(self) -> tuple:
        """Population keys in network order."""
        return tuple(p.key for p in self.populations)

    @property
    def request_hash(self) -> str:
        """sha256 of the configuration, inputs, runtime, dt, MADC choice and seed."""
        digest = hashlib.sha256(self.configuration_hash.encode())
        meta = [self.input_size, self.batch_size, repr(self.runtime), repr(self.dt)]
        meta += [_key_json(self.madc[0]) if self.madc else None]
        meta += [self.madc[1] if self.madc else None, self.seed]
        digest.update(json.dumps(meta).encode())
        for entry in self.input_spikes:
            _update(digest, entry.times)
            _update(digest, entry.channels)
        return digest.hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeEvents:
    """Spike events of one population: float `times` (seconds since the start of the batch
    entry), int `neurons` (index in the population) and int `batch` (batch entry), each
    `(events,)`, in any order.

    ```python
    events = bjh.SpikeEvents(times=np.array([12.3e-6]), neurons=np.array([2]), batch=np.array([0]))
    ```
    """

    times: np.ndarray
    neurons: np.ndarray
    batch: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class CADCSamples:
    """CADC samples of one population, each `(samples,)`: float `times` (seconds), `values`
    (LSB in [0, 255]), int `neurons` and int `batch`. Every neuron of every batch entry needs
    at least one sample; times may be irregular and differ between neurons.

    ```python
    samples = bjh.CADCSamples(
        times=np.array([0.1e-6, 1.8e-6]), values=np.array([80.0, 93.0]),
        neurons=np.array([0, 0]), batch=np.array([0, 0]),
    )
    ```
    """

    times: np.ndarray
    values: np.ndarray
    neurons: np.ndarray
    batch: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class MADCSamples:
    """MADC samples of the watched neuron, each `(samples,)`: float `times` (seconds),
    `values` (LSB in [0, 1023]) and int `batch`; every batch entry needs samples.

    ```python
    samples = bjh.MADCSamples(
        times=np.arange(3) * 34e-9, values=np.full(3, 300.0), batch=np.zeros(3, int)
    )
    ```
    """

    times: np.ndarray
    values: np.ndarray
    batch: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class RawRecording:
    """What a client read back, keyed by population key: exactly the observables the
    request asked for (`spikes` for `record_spikes`, `cadc` for `record_cadc`, `madc` for
    the population named in `request.madc`), nothing more.

    ```python
    raw = bjh.RawRecording(spikes={0: events}, cadc={0: samples, 1: readout_samples})
    ```
    """

    spikes: Mapping = dataclasses.field(default_factory=dict)
    cadc: Mapping = dataclasses.field(default_factory=dict)
    madc: Mapping = dataclasses.field(default_factory=dict)


class AbstractClient(abc.ABC):
    """A host-side connection to a chip (or a model of one), used by `bj.Hardware`.

    Subclasses implement `execute`; `cancel` (called from another thread when a call times
    out) and `close` are optional. A client may raise `TransientHardwareError` to ask for a
    retry; any other exception fails the run with a `HardwareError`.

    Concurrency: `Hardware` never calls `execute` of one client object twice at once, even
    from several backends or threads: calls are serialised. With `Hardware(timeout=...)`,
    `execute` runs in a worker thread; when it times out, `Hardware` calls `cancel()` and
    raises `HardwareTimeoutError`. Unless `cancel()` returned True, the client is then
    unusable (`ClientBusyError` on the next call, which asks `cancel()` again) until the
    hung `execute` returns. So `cancel()` returns True only once the running `execute` has
    stopped touching the chip; the default returns None (nothing cancelled).

    ```python
    class Echo(bjh.AbstractClient):
        def execute(self, request):
            ...   # run on the chip, read back
            return bjh.RawRecording(cadc={...})
    ```
    """

    @abc.abstractmethod
    def execute(self, request: ExperimentRequest) -> RawRecording:
        """Configure (unless `request.reconfigure` is False), run and read back."""

    def cancel(self) -> bool | None:
        """Abort a running `execute` (called from another thread when it exceeded the
        timeout); return True only when it has stopped (see the class's notes)."""
        return None

    def close(self) -> None:
        """Release the connection."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _update(digest, array) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def _key_json(key):
    return key if isinstance(key, (int, str)) else repr(key)


def configuration_hash(
    populations: tuple[PopulationRequest, ...], projections: tuple[ProjectionRequest, ...]
) -> str:
    """sha256 over placement, neuron settings and weights: what a reconfiguration writes."""
    digest = hashlib.sha256()
    for p in populations:
        meta = [_key_json(p.key), p.kind, p.size, p.i_synin_gm, p.synapse_dac_bias]
        meta += [getattr(p, f) for f in FLAG_NAMES] + [p.record_spikes, p.record_cadc]
        digest.update(json.dumps(meta).encode())
        _update(digest, p.circuits)
        for name in PARAMETER_NAMES:
            _update(digest, getattr(p, name))
    for q in projections:
        digest.update(json.dumps([_key_json(q.source), _key_json(q.target), q.delayed]).encode())
        _update(digest, q.weight_exc)
        _update(digest, q.weight_inh)
    return digest.hexdigest()


def split_weight(weight_hw: np.ndarray, *, name: str = "weight") -> tuple[np.ndarray, np.ndarray]:
    """Signed chip weights `(out, in)` → uint8 excitatory and inhibitory magnitudes.

    hxtorch's mapping: positive entries go to the excitatory row, negative ones (as
    magnitudes) to the inhibitory row. The input must hold integers in [-63, 63]; anything
    else raises `HardwareError` (never clipped or rounded here).

    ```python
    exc, inh = bjh.split_weight(np.array([[3.0, -5.0]]))   # exc [[3, 0]], inh [[0, 5]]
    ```
    """
    weight = np.asarray(weight_hw, dtype=np.float64)
    bad = ~np.isfinite(weight) | (np.abs(weight) > WEIGHT_MAX) | (weight != np.round(weight))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise HardwareError(
            f"`{name}` must hold integers in [-{WEIGHT_MAX}, {WEIGHT_MAX}] on the chip; got "
            f"{weight[index].item()!r} at index {index} ({int(bad.sum())} bad entries)."
        )
    exc = np.where(weight > 0, weight, 0).astype(np.uint8)
    inh = np.where(weight < 0, -weight, 0).astype(np.uint8)
    return exc, inh

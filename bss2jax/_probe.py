"""`probe_chip`: the probing protocol of a digital twin (`bj.identify`), on any backend.

Six runs over `neurons` circuits at once (one LIF population, each neuron its own input
row pair, on the circuits `bj.place` gives it), each a batch of `repetitions` identical entries, so
a real system runs the protocol in six hardware executions. All six share one network
structure (only parameter values differ), so the chip model compiles them once:

- `baseline_low`, `baseline_high`: leak 60 and 140, no input → CADC gain, leak;
- `psp_exc`: leak 80, one weight +63 event at steps 5 and 50 → excitatory gain,
  `tau_syn_exc` (and `tau_mem`);
- `psp_inh`: leak 120, weight -63 at steps 5 and 50 → inhibitory gain, `tau_syn_inh`;
- `reset`: leak 80, reset 50, threshold 100, refractory 30 us, weight +63 at steps 5 to
  8 → reset (the plateau), `tau_mem` (the relaxation after it);
- `firing`: leak 140, reset 60, threshold 110, refractory 2 us, no input: it fires on
  its own, and the mean interval gives the threshold.

All six are LIF populations so that they share one structure; the first four have
threshold 200 and do not fire.

The six runs see each neuron's synapse rows 0 and 1 only (signed input 0). A network uses
rows `2 k` (excitatory) and `2 k + 1` (inhibitory) for its signed input `k`, each with its
own weight-DAC factor (`ChipInstance.synapse_gain`), so `inputs=k` adds the synapse-row
probe (`RowProbe`): signed inputs `0 .. k - 1` in groups of `inputs_per_run`, each group in
two runs (every weight +63 at leak 80, then -63 at leak 120, threshold 200). A group's
inputs send one event each, one after the other, 3 time constants apart (rounded up to
whole steps), from step 5. An input's events reach every probed neuron through the same
row (a driver's rows are shared by the hemisphere), so one run measures `inputs_per_run`
rows of every neuron at once: `2 ceil(k / inputs_per_run)` runs for `2 k` rows.
`probe_plan(network)` gives the `neurons` and `inputs` that cover a placed network.

Potentials in CADC LSB (chip values); `tau_mem` and
`tau_syn` are the user's operating point (default 10 us). In `reset` the burst fires every
neuron once; it then rests at its reset for the refractory time and relaxes toward its
leak with `tau_mem` (the input's current has decayed by `exp(-3)` by then). The PSPs stay
in the synaptic input's linear regime (one weight-63 event, ~40 LSB of current). Readings
stay within calix's reliable CADC range (30-210 LSB) on a calibrated chip.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._backend import AbstractBackend
from ._chip._placement import COLUMNS, place
from ._constants import INPUTS_PER_CIRCUIT
from ._network import Sequential
from ._neurons import LIF
from ._synapse import Synapse
from ._typing import user_facing

BASELINE_LEAKS = (60.0, 140.0)
"""Leak settings (LSB) of the two no-input probes (CADC gain = slope of the baseline)."""
PSP_WEIGHT = 63.0
"""Chip weight of the PSP and burst inputs."""
PSP_STEPS = (5, 50)
"""Grid steps of the single input events of the PSP probes."""
BURST_STEPS = (5, 6, 7, 8)
"""Grid steps of the input burst of the `reset` probe."""
RESET_PROBE = dict(leak=80.0, reset=50.0, threshold=100.0, refractory_time=30e-6)
"""The `reset` probe's neuron settings (LSB, s)."""
FIRING_PROBE = dict(leak=140.0, reset=60.0, threshold=110.0, refractory_time=2e-6)
"""The `firing` probe's neuron settings (LSB, s): it fires on its own, regularly."""
SILENT_THRESHOLD = 200.0
"""Threshold (LSB) of the probes that must not fire."""
PROBE_NAMES = ("baseline_low", "baseline_high", "psp_exc", "psp_inh", "reset", "firing")
"""The probes, in the order of `ProbeData.traces`."""
ROW_LEAKS = (80.0, 120.0)
"""Leak settings (LSB) of the synapse-row probe's excitatory and inhibitory runs."""
ROW_FIRST_STEP = 5
"""Grid step of a row-probe group's first event."""


class RowProbe(NamedTuple):
    """The synapse-row probe's recordings (`probe_chip(..., inputs=k)`; module docstring).

    - `networks`: `(excitatory, inhibitory)`, each a `Sequential` of `k` inputs into the
      probed neurons, every weight +63 (rows `2 i`) or -63 (rows `2 i + 1`).
    - `inputs`: float `(groups, time, 1, k)`, each group's input (the same for every
      repetition).
    - `groups`: int `(groups, inputs_per_run)`, the signed input of each slot in order of
      its event (-1: none, in a short last group).
    - `traces`: float `(2, groups, time, neurons)`, the mean CADC traces (LSB) of the
      excitatory and the inhibitory run of each group.
    """

    networks: tuple
    inputs: jax.Array
    groups: jax.Array
    traces: jax.Array

    def rows(self, sign: int) -> jax.Array:
        """Int `(groups, inputs_per_run)`: the synapse row of each slot in the excitatory
        (`sign` 0) or inhibitory (`sign` 1) runs (-1: none)."""
        return jnp.where(self.groups >= 0, 2 * self.groups + sign, -1)


class ProbeData(NamedTuple):
    """The probing protocol's recordings, reduced (what `fit_twin` needs).

    - `networks`, `inputs`: per probe (in `PROBE_NAMES` order) the `Sequential` that ran
      and its input, float `(time, repetitions, 1)`.
    - `traces`: float `(probes, time, neurons)`, each probe's mean CADC trace (LSB) over
      the repetitions.
    - `spikes`: float `(probes, time, repetitions, neurons)`, 0/1.
    - `circuits`: int `(neurons,)`, the circuit each probe neuron ran on.
    - `dt` (s) of the grid; `runs`: the backend runs made (one per probe, two per row group).
    - `rows`: the synapse-row probe's `RowProbe` (None without `inputs`).
    """

    networks: tuple
    inputs: tuple
    traces: jax.Array
    spikes: jax.Array
    circuits: jax.Array
    dt: float
    runs: int
    rows: RowProbe | None = None

    def trace(self, name: str) -> jax.Array:
        """The mean trace `(time, neurons)` of probe `name` (see `PROBE_NAMES`)."""
        return self.traces[PROBE_NAMES.index(name)]

    def spike(self, name: str) -> jax.Array:
        """The spikes `(time, repetitions, neurons)` of probe `name`."""
        return self.spikes[PROBE_NAMES.index(name)]


def _network(neurons: int, weight: float, tau_mem: float, tau_syn: float, **settings):
    values = dict(threshold=SILENT_THRESHOLD, refractory_time=2e-6) | settings
    values.setdefault("reset", values["leak"])
    population = LIF(neurons, tau_mem=tau_mem, tau_syn=tau_syn, **values)
    synapse = Synapse(1, neurons, weight=jnp.full((neurons, 1), weight, jnp.float32))
    return Sequential([synapse, population])


def probe_networks(
    neurons: int, *, time: int = 100, repetitions: int = 40, tau_mem=10e-6, tau_syn=10e-6
) -> tuple[tuple, tuple]:
    """The protocol's networks and inputs (see the module docstring), in `PROBE_NAMES`
    order: `(networks, inputs)`, inputs float `(time, repetitions, 1)`."""
    silence = jnp.zeros((time, repetitions, 1), jnp.float32)
    psp = silence.at[jnp.asarray(PSP_STEPS)].set(1.0)
    burst = silence.at[jnp.asarray(BURST_STEPS)].set(1.0)
    taus = dict(tau_mem=tau_mem, tau_syn=tau_syn)
    low, high = BASELINE_LEAKS
    networks = (
        _network(neurons, 0.0, leak=low, **taus),
        _network(neurons, 0.0, leak=high, **taus),
        _network(neurons, PSP_WEIGHT, leak=80.0, **taus),
        _network(neurons, -PSP_WEIGHT, leak=120.0, **taus),
        _network(neurons, PSP_WEIGHT, **RESET_PROBE, **taus),
        _network(neurons, 0.0, **FIRING_PROBE, **taus),
    )
    return networks, (silence, silence, psp, psp, burst, silence)


def row_schedule(inputs: int, inputs_per_run: int, spacing: int) -> tuple[jax.Array, jax.Array]:
    """The synapse-row probe's `(inputs, groups)`: float `(groups, time, 1, inputs)` and
    int `(groups, inputs_per_run)` (see `RowProbe`), `time = 5 + inputs_per_run * spacing
    + 1` steps: slot `j` of a group fires at step `5 + j * spacing`."""
    count = -(-inputs // inputs_per_run)
    groups = np.full((count, inputs_per_run), -1, np.int32)
    groups.flat[:inputs] = np.arange(inputs)
    time = ROW_FIRST_STEP + inputs_per_run * spacing + 1
    x = np.zeros((count, time, 1, inputs), np.float32)
    for g, slot in zip(*np.nonzero(groups >= 0), strict=True):
        x[g, ROW_FIRST_STEP + slot * spacing, 0, groups[g, slot]] = 1.0
    return jnp.asarray(x), jnp.asarray(groups)


def row_networks(neurons: int, inputs: int, tau_mem: float, tau_syn: float) -> tuple:
    """The synapse-row probe's `(excitatory, inhibitory)` networks (see `RowProbe`)."""
    networks = []
    for weight, leak in zip((PSP_WEIGHT, -PSP_WEIGHT), ROW_LEAKS, strict=True):
        population = LIF(
            neurons,
            threshold=SILENT_THRESHOLD,
            leak=leak,
            reset=leak,
            tau_mem=tau_mem,
            tau_syn=tau_syn,
        )
        weights = jnp.full((neurons, inputs), weight, jnp.float32)
        networks.append(Sequential([Synapse(inputs, neurons, weight=weights), population]))
    return tuple(networks)


def _row_probe(backend, neurons, inputs, inputs_per_run, repetitions, key, dt, **taus):
    """Run the synapse-row probe (module docstring): a `RowProbe` and the runs made."""
    spacing = int(np.ceil(3 * max(taus.values()) / dt))
    x, groups = row_schedule(inputs, inputs_per_run, spacing)
    networks = row_networks(neurons, inputs, **taus)
    traces = []
    keys = jax.random.split(key, 2 * len(groups))
    for sign, network in enumerate(networks):
        each = []
        for g in range(len(groups)):
            stimulus = jnp.broadcast_to(x[g], (x.shape[1], repetitions, inputs))
            k = keys[sign * len(groups) + g]
            each.append(observe_probe(backend, network, stimulus, k, dt)[0].mean(1))
        traces.append(jnp.stack(each))
    return RowProbe(networks, x, groups, jnp.stack(traces)), 2 * len(groups)


def probe_plan(network) -> dict:
    """The `neurons` and `inputs` of `probe_chip` (and `identify`) that cover `network`:
    every circuit `bj.place` gives it, and every synapse row its neurons use.

    Probe neuron `i` is placed on column `i // 2` of hemisphere `i % 2`, so circuit `h * 256
    + c` is probed when `neurons > 2 c + h`; a circuit's signed inputs are its neurons'
    first 128 (a wider neuron's later circuits reuse the same rows).

    ```python
    data = bj.probe_chip(chip, **bj.probe_plan(net), tau_mem=6e-6, tau_syn=6e-6)
    ```
    """
    populations = place(network).populations.values()
    circuits = np.concatenate([p.circuits.ravel() for p in populations])
    neurons = int(np.max(2 * (circuits % COLUMNS) + circuits // COLUMNS)) + 1
    inputs = min(INPUTS_PER_CIRCUIT, max(p.fan_in for p in populations))
    return {"neurons": neurons, "inputs": int(inputs)}


def _check(backend, neurons, time, repetitions, dt, tau_mem, tau_syn):
    if not isinstance(backend, AbstractBackend):
        raise TypeError(
            f"`backend` must be a bss2jax backend (bj.ChipModel, ...); got {backend!r}."
        )
    for name, value, low, high in (
        ("neurons", neurons, 1, 512),
        ("time", time, 60, 10**6),
        ("repetitions", repetitions, 1, 10**6),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"`{name}` must be an int in [{low}, {high}]; got {value!r}.")
    for name, value in (("dt", dt), ("tau_mem", tau_mem), ("tau_syn", tau_syn)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"`{name}` must be a positive float (s); got {value!r}.")
    if abs(dt - 1e-6) > 1e-12:
        raise ValueError(f"`dt` must be 1e-6 s: the protocol's steps are 1 us; got {dt!r}.")


def _check_rows(inputs, inputs_per_run):
    for name, value, low in (("inputs", inputs, 0), ("inputs_per_run", inputs_per_run, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 128:
            raise ValueError(
                f"`{name}` must be an int in [{low}, 128] (signed inputs of a circuit); "
                f"got {value!r}."
            )


@user_facing
def probe_chip(
    backend: AbstractBackend,
    neurons: int,
    *,
    key: jax.Array | None = None,
    time: int = 100,
    repetitions: int = 40,
    tau_mem: float = 10e-6,
    tau_syn: float = 10e-6,
    dt: float = 1e-6,
    inputs: int = 0,
    inputs_per_run: int = 8,
) -> ProbeData:
    """Run the twin's probing protocol on `backend` and keep the mean traces and spikes.

    **Arguments:**
    - `backend`: any backend that records CADC traces and spikes: `bj.ChipModel`,
      `bj.Hardware(bj.HxtorchClient(...), record_to=...)` on a real system, `bj.Replay`.
    - `neurons`: how many circuits to probe (1 to 512, placed by `bj.place`: both
      hemispheres alternately).
    - `key`: PRNG key (noise of a chip model; a request seed on hardware). Default 0.
    - `time`: grid steps per run (>= 60); `repetitions`: batch entries per run (their
      mean trace is fitted, so more repetitions average the noise away).
    - `tau_mem`, `tau_syn` (s): the operating point, as the twin will be used.
    - `dt`: the grid step, 1 us.
    - `inputs`: signed inputs `0 .. inputs - 1` whose synapse rows to probe (0 to 128;
      default 0, none: rows 0 and 1 only); `inputs_per_run`: rows per row-probe run.
      `probe_plan(network)` gives `neurons` and `inputs` for a network.

    **Returns:** `ProbeData` (`runs` = 6 + 2 ceil(inputs / inputs_per_run) backend runs).

    ```python
    hidden = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(5)))
    data = bj.probe_chip(hidden, 8, key=jax.random.PRNGKey(0), repetitions=4)
    ```
    """
    _check(backend, neurons, time, repetitions, dt, tau_mem, tau_syn)
    _check_rows(inputs, inputs_per_run)
    key = jax.random.PRNGKey(0) if key is None else key
    networks, stimuli = probe_networks(
        neurons, time=time, repetitions=repetitions, tau_mem=tau_mem, tau_syn=tau_syn
    )
    traces, spikes = [], []
    for network, x, k in zip(networks, stimuli, jax.random.split(key, len(networks)), strict=True):
        cadc, fired = observe_probe(backend, network, x, k, dt)
        traces.append(cadc.mean(1))
        spikes.append(fired)
    circuits = place(networks[0]).populations[0].circuits[:, 0]
    rows, row_runs = None, 0
    if inputs:  # its own key: the six probes' keys stay what they were
        rows, row_runs = _row_probe(
            backend,
            neurons,
            inputs,
            inputs_per_run,
            repetitions,
            jax.random.fold_in(key, 1),
            dt,
            tau_mem=tau_mem,
            tau_syn=tau_syn,
        )
    return ProbeData(
        networks,
        stimuli,
        jnp.stack(traces),
        jnp.stack(spikes),
        jnp.asarray(circuits, jnp.int32),
        float(dt),
        len(networks) + row_runs,
        rows,
    )


def observe_probe(backend, network, inputs, key, dt):
    """One probe run on `backend`: CADC trace and spikes, each float `(time, batch, n)`."""
    recording = backend.observe(network, inputs, dt=dt, key=key)
    population = None if recording is None else recording.populations.get(0)
    if population is None or population.membrane_cadc is None:
        raise ValueError(
            f"`backend` ({type(backend).__name__}) recorded no CADC traces; the twin is "
            "fitted to them (use a chip, a chip model or a replay)."
        )
    time = inputs.shape[0]
    cadc = jnp.asarray(population.membrane_cadc, jnp.float32)[:time]
    if population.spikes is None:
        raise ValueError(f"`backend` ({type(backend).__name__}) recorded no spikes.")
    return cadc, jnp.asarray(population.spikes, jnp.float32)[:time]

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
threshold 200 and do not fire. Potentials in CADC LSB (chip values); `tau_mem` and
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

from ._backend import AbstractBackend
from ._chip._placement import place
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


class ProbeData(NamedTuple):
    """The probing protocol's recordings, reduced (what `fit_twin` needs).

    - `networks`, `inputs`: per probe (in `PROBE_NAMES` order) the `Sequential` that ran
      and its input, float `(time, repetitions, 1)`.
    - `traces`: float `(probes, time, neurons)`, each probe's mean CADC trace (LSB) over
      the repetitions.
    - `spikes`: float `(probes, time, repetitions, neurons)`, 0/1.
    - `circuits`: int `(neurons,)`, the circuit each probe neuron ran on.
    - `dt` (s) of the grid; `runs`: the backend runs made (one per probe).
    """

    networks: tuple
    inputs: tuple
    traces: jax.Array
    spikes: jax.Array
    circuits: jax.Array
    dt: float
    runs: int

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

    **Returns:** `ProbeData` (`runs` = 6 backend runs).

    ```python
    hidden = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(5)))
    data = bj.probe_chip(hidden, 8, key=jax.random.PRNGKey(0), repetitions=4)
    ```
    """
    _check(backend, neurons, time, repetitions, dt, tau_mem, tau_syn)
    key = jax.random.PRNGKey(0) if key is None else key
    networks, inputs = probe_networks(
        neurons, time=time, repetitions=repetitions, tau_mem=tau_mem, tau_syn=tau_syn
    )
    traces, spikes = [], []
    for network, x, k in zip(networks, inputs, jax.random.split(key, len(networks)), strict=True):
        cadc, fired = observe_probe(backend, network, x, k, dt)
        traces.append(cadc.mean(1))
        spikes.append(fired)
    circuits = place(networks[0]).populations[0].circuits[:, 0]
    return ProbeData(
        networks,
        inputs,
        jnp.stack(traces),
        jnp.stack(spikes),
        jnp.asarray(circuits, jnp.int32),
        float(dt),
        len(networks),
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

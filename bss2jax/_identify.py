"""`identify`: a digital twin of one chip, fitted to recordings of it (`probe_chip`).

The fit finds the `ChipInstance` whose chip model reproduces the probing protocol's
recordings (`bss2jax._probe`), in three kinds of step:

1. closed form: the CADC gain `g` is the slope of the baseline over the two leak settings,
   the leak the baseline over `g` minus the setting, the reset the resting plateau of the
   `reset` probe over `g` minus its setting (exact up to the CADC's rounding and noise,
   which the mean over repetitions and time averages away);
2. the threshold: Newton steps on the `firing` probe's mean inter-spike interval, whose
   slope is `dT / d threshold = tau_mem / (leak - threshold)` for `T = tau_mem
   log((leak - reset) / (leak - threshold)) + refractory`, the model's interval simulated
   on the current twin with the backend's noise (`config`), so the noise's shortening of
   the interval is not mistaken for a lower threshold;
3. Levenberg-Marquardt (Gauss-Newton) through `ChipModel(gradient="through")` on the mean
   traces of `psp_exc`, `psp_inh` and `reset` (around its spike left out): `tau_mem`,
   `tau_syn_exc`, `tau_syn_inh`, `synaptic_gain_exc`, `synaptic_gain_inh`, as log-factors.
   Every neuron's residuals depend on its own five parameters only, so five forward-mode
   derivatives (one per parameter, all neurons at once) give every neuron's Jacobian and a
   5 x 5 solve per neuron the step. The twin's traces are noiseless with the CADC's
   rounding dithered (`_twin_rows.DITHER`), like the recorded means, whose noise dithers it.

Precision: on a calibrated chip model with all noise on, at the default operating point
(10 us) and 40 repetitions, the bar of issue 12 holds (`benchmarks/twin.py`). At 6 us
the traces are still predicted to ~0.2 LSB, but `tau_mem` and `tau_syn` are harder to
tell apart (a PSP is symmetric in the two, the relaxation is short against the CADC's
1.7 us): 83-98 % of neurons within 5 %, and more repetitions help little.

Steps 2 and 3 alternate (`rounds`), since the `reset` probe's spike time depends on the
threshold and the interval on `tau_mem`. Last, with the synapse-row probe
(`probe_chip(..., inputs=k)`), Gauss-Newton on the factors of the rows of signed inputs
`0 .. k - 1`, relative to rows 0 and 1 (`bss2jax._twin_rows`).

Identifiability (`canonical_chip`): a CADC reading is `g * (v + dv) + o` for every
potential `v` (leak, reset, threshold) of a neuron, so the channel offset `o` and the
potential offsets `dv` are seen only as `dv + o / g`; the twin stores `cadc_offset = 0`
and that sum. Only the product `synaptic_gain_exc * synapse_gain[circuit, 0]` (row 0,
excitatory input 0) is seen, and likewise for inhibition with row 1; the twin stores the
product as the synaptic gain and the rows' factors relative to rows 0 and 1: fitted for
the rows of the synapse-row probe, 1 for rows it did not probe (the twin does not know
their per-synapse mismatch).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._backend import AbstractBackend, ChipModel
from ._chip._config import ChipConfig
from ._chip._instance import ChipInstance
from ._parameters import hardware_value
from ._probe import (
    BASELINE_LEAKS,
    FIRING_PROBE,
    PROBE_NAMES,
    RESET_PROBE,
    ProbeData,
    observe_probe,
    probe_chip,
)
from ._twin_rows import canonical_rows, dithered_trace, fit_rows
from ._typing import user_facing

FACTORS = ("tau_mem", "tau_syn_exc", "tau_syn_inh", "synaptic_gain_exc", "synaptic_gain_inh")
"""The factor fields fitted by Levenberg-Marquardt (as log-factors)."""
TRACE_PROBES = ("psp_exc", "psp_inh", "reset")
"""The probes whose mean traces the Levenberg-Marquardt step fits."""


class TwinFit(NamedTuple):
    """What `fit_twin` and `identify` return.

    - `chip`: the twin, a `ChipInstance` in `canonical_chip` form (save it with `chip.save`).
    - `data`: the `ProbeData` it was fitted to (`data.runs` backend runs).
    - `rms`: float `(3,)`, the RMS (CADC LSB) of the twin's noiseless traces against the
      recorded mean traces of `TRACE_PROBES` (where fitted).
    - `rms_start`: float `(3,)`, the same RMS of the chip the trace fit started from (the
      closed-form step and the first threshold step on `base`).
    - `interval_error`: float `(neurons,)`, the twin's mean firing interval minus the
      recorded one (s), at the last threshold step.
    - `row_rms`: float `(2, groups)`, the RMS (LSB) of the twin's traces against the
      synapse-row probe's excitatory and inhibitory runs (None without that probe).
    """

    chip: ChipInstance
    data: ProbeData
    rms: jax.Array
    rms_start: jax.Array
    interval_error: jax.Array
    row_rms: jax.Array | None = None


@user_facing
def canonical_chip(chip: ChipInstance) -> ChipInstance:
    """`chip` in the form a twin is fitted in, with the same behaviour on every reading.

    The CADC offset moves into the potentials (`leak + cadc_offset / cadc_gain`, the same for
    reset and threshold; `cadc_offset = 0`), and the synapse rows' factors into the
    synaptic gains relative to row 0 (excitatory) and row 1 (inhibitory) of each circuit.

    ```python
    truth = bj.canonical_chip(hidden_chip)
    error = twin.leak - truth.leak     # LSB, comparable at the probed circuits
    ```
    """
    if not isinstance(chip, ChipInstance):
        raise TypeError(f"`chip` must be a bj.ChipInstance; got {type(chip).__name__}.")
    shift = chip.cadc_offset / chip.cadc_gain
    return eqx.tree_at(
        lambda c: (c.leak, c.reset, c.threshold, c.cadc_offset),
        canonical_rows(chip),
        (chip.leak + shift, chip.reset + shift, chip.threshold + shift, jnp.zeros_like(shift)),
    )


def _put(chip: ChipInstance, circuits: jax.Array, **values) -> ChipInstance:
    """`chip` with `values` (name → `(neurons,)`) set at `circuits`."""
    names = tuple(values)
    return eqx.tree_at(
        lambda c: tuple(getattr(c, name) for name in names),
        chip,
        tuple(getattr(chip, name).at[circuits].set(values[name]) for name in names),
    )


def _setting(data: ProbeData, name: str, field: str) -> float:
    """The chip value of `field` of probe `name`'s population (a Python float)."""
    population = data.networks[PROBE_NAMES.index(name)].population(0)
    return float(np.asarray(hardware_value(getattr(population, field))).mean())


@eqx.filter_jit
def _first_spike(spikes: jax.Array) -> jax.Array:
    """Per neuron, the grid step at which at least half the repetitions have fired
    (float `(n,)`; NaN where they never do). `spikes` `(time, repetitions, n)`."""
    share = (jnp.cumsum(spikes, 0) > 0).mean(1)  # (time, n): share fired by each step
    step = jnp.argmax(share >= 0.5, axis=0).astype(jnp.float32)
    return jnp.where(share[-1] >= 0.5, step, jnp.nan)


@eqx.filter_jit
def _plateau(trace: jax.Array, start: jax.Array, length: float) -> jax.Array:
    """Mean of `trace` `(time, n)` over steps `start + 3` to `start + length - 3` per neuron."""
    steps = jnp.arange(trace.shape[0], dtype=jnp.float32)[:, None]
    window = (steps >= start[None] + 3) & (steps <= start[None] + length - 3)
    window = window.astype(jnp.float32)
    return (trace * window).sum(0) / jnp.maximum(window.sum(0), 1.0)


def closed_form(data: ProbeData, base: ChipInstance) -> ChipInstance:
    """Step 1 of the fit: `base` with the CADC gain, leak and reset of the probed
    circuits from the baselines and the `reset` probe's plateau (`cadc_offset` 0)."""
    low, high = BASELINE_LEAKS
    b_low = data.trace("baseline_low").mean(0)
    b_high = data.trace("baseline_high").mean(0)
    gain = (b_high - b_low) / (high - low)
    start = _first_spike(data.spike("reset"))
    if not bool(jnp.all(jnp.isfinite(start))):
        missing = np.flatnonzero(~np.isfinite(np.asarray(start)))
        raise ValueError(
            f"the `reset` probe's burst did not fire neurons {missing.tolist()[:10]} in at "
            "least half the repetitions; `reset` cannot be read (is the chip calibrated?)."
        )
    rest = RESET_PROBE["refractory_time"] / data.dt
    plateau = _plateau(data.trace("reset"), start, rest)
    return _put(
        base,
        data.circuits,
        cadc_gain=gain,
        cadc_offset=jnp.zeros_like(gain),
        leak=(b_low + b_high) / (2 * gain) - (low + high) / 2,
        reset=plateau / gain - RESET_PROBE["reset"],
    )


@eqx.filter_jit
def interval(spikes: jax.Array, dt: float) -> jax.Array:
    """Mean inter-spike interval (s) per neuron of `spikes` `(time, batch, n)`: per batch
    entry `(last - first) / (count - 1)`, averaged over the entries with two or more
    spikes (NaN where none has)."""
    steps = jnp.arange(spikes.shape[0], dtype=jnp.float32)[:, None, None]
    fired = spikes > 0
    count = fired.sum(0).astype(jnp.float32)
    first = jnp.where(fired, steps, jnp.inf).min(0)
    last = jnp.where(fired, steps, -jnp.inf).max(0)
    valid = count >= 2
    each = jnp.where(valid, (last - first) / jnp.maximum(count - 1, 1), 0.0)
    entries = valid.sum(0).astype(jnp.float32)
    return dt * each.sum(0) / jnp.where(entries > 0, entries, jnp.nan)


def _threshold_steps(chip, data: ProbeData, config: ChipConfig, key, iterations: int):
    """Step 2: Newton steps of the probed circuits' thresholds on the `firing` probe's
    mean interval. Returns the twin and the last interval error (s, twin - recorded)."""
    index = PROBE_NAMES.index("firing")
    measured = interval(data.spikes[index], data.dt)
    if not bool(jnp.all(jnp.isfinite(measured))):
        missing = np.flatnonzero(~np.isfinite(np.asarray(measured))).tolist()[:10]
        raise ValueError(
            f"neurons {missing} never fired twice in the `firing` probe (leak "
            f"{FIRING_PROBE['leak']} above threshold {FIRING_PROBE['threshold']} LSB); "
            "their threshold cannot be read (is the chip calibrated?)."
        )
    c = data.circuits
    tau = _setting(data, "firing", "tau_mem")
    error = jnp.zeros_like(measured)
    for k in jax.random.split(key, iterations):
        backend = ChipModel(chip, config)
        _, fired = observe_probe(backend, data.networks[index], data.inputs[index], k, data.dt)
        error = interval(fired, data.dt) - measured
        leak = FIRING_PROBE["leak"] + chip.leak[c]
        threshold = FIRING_PROBE["threshold"] + chip.threshold[c]
        slope = tau * chip.tau_mem[c] / jnp.maximum(leak - threshold, 1.0)  # dT/dθ, s/LSB
        step = jnp.clip(-error / slope, -5.0, 5.0)
        step = jnp.where(jnp.isfinite(step), step, 0.0)  # a twin that stopped firing: wait
        chip = _put(chip, c, threshold=chip.threshold[c] + step)
    return chip, error


def _trace_mask(data: ProbeData) -> jax.Array:
    """Float `(3, time, n)` weights of `TRACE_PROBES`' residuals: 1, except 0 in the
    `reset` probe from a step before its spike to two steps after the refractory time."""
    time, n = data.traces.shape[1:]
    steps = jnp.arange(time, dtype=jnp.float32)[:, None]
    start = _first_spike(data.spike("reset"))
    rest = RESET_PROBE["refractory_time"] / data.dt
    keep = (steps < start[None] - 1) | (steps > start[None] + rest + 2)
    ones = jnp.ones((time, n), jnp.float32)
    return jnp.stack([ones, ones, keep.astype(jnp.float32)])


def _traces(chip: ChipInstance, data: ProbeData, config: ChipConfig) -> jax.Array:
    """The noiseless chip model's CADC traces `(3, time, n)` of `TRACE_PROBES` on `chip`
    (one repetition each, rounding dithered: `bss2jax._twin_rows.DITHER`), differentiable
    (`gradient="through"`). The three probe networks differ in parameter values only, so
    one `vmap` over them runs all three (one scan to compile instead of three)."""
    indices = [PROBE_NAMES.index(name) for name in TRACE_PROBES]
    networks = jax.tree.map(lambda *xs: jnp.stack(xs), *(data.networks[i] for i in indices))
    inputs = jnp.stack([data.inputs[i][:, :1] for i in indices])
    return jax.vmap(lambda n, x: dithered_trace(chip, config, n, x, data.dt))(networks, inputs)


def _factors(chip: ChipInstance, circuits: jax.Array, log_factors: jax.Array):
    """`chip` with the `FACTORS` of `circuits` set to `exp(log_factors)` `(5, n)`."""
    return _put(chip, circuits, **dict(zip(FACTORS, jnp.exp(log_factors), strict=True)))


@eqx.filter_jit
def _linearise(chip, data, config, mask, log_factors):
    """Residuals `(3, time, n)` (masked) and their derivatives `(5, 3, time, n)` with
    respect to each neuron's five log-factors (forward mode, all neurons at once)."""
    target = data.traces[jnp.asarray([PROBE_NAMES.index(name) for name in TRACE_PROBES])]

    def residual(p):
        return mask * (_traces(_factors(chip, data.circuits, p), data, config) - target)

    basis = jnp.eye(len(FACTORS), dtype=jnp.float32)[:, :, None] * jnp.ones_like(log_factors)[None]
    values, tangents = jax.vmap(lambda t: jax.jvp(residual, (log_factors,), (t,)))(basis)
    return values[0], tangents


def _levenberg_marquardt(chip, data: ProbeData, config: ChipConfig, iterations: int):
    """Step 3: Levenberg-Marquardt on the log-factors of the probed circuits, per neuron
    (a 5 x 5 system each). Returns the twin and the per-probe RMS (LSB) of its traces
    before and after."""
    c = data.circuits
    mask = _trace_mask(data)

    def rms(residual):
        return jnp.sqrt((residual**2).sum((1, 2)) / jnp.maximum(mask.sum((1, 2)), 1.0))

    params = jnp.log(jnp.stack([getattr(chip, name)[c] for name in FACTORS]))
    damping = jnp.full(params.shape[1:], 1e-3, jnp.float32)
    residual, jacobian = _linearise(chip, data, config, mask, params)
    loss = (residual**2).sum((0, 1))
    start = rms(residual)
    for _ in range(iterations):
        normal = jnp.einsum("kptn,lptn->nkl", jacobian, jacobian)
        gradient = jnp.einsum("kptn,ptn->nk", jacobian, residual)
        diagonal = jnp.diagonal(normal, axis1=1, axis2=2)
        system = normal + (damping[:, None] * diagonal)[:, :, None] * jnp.eye(len(FACTORS))[None]
        step = -jnp.linalg.solve(system, gradient[..., None])[..., 0].T
        step = jnp.clip(jnp.where(jnp.isfinite(step), step, 0.0), -0.3, 0.3)
        trial = params + step
        new_residual, new_jacobian = _linearise(chip, data, config, mask, trial)
        new_loss = (new_residual**2).sum((0, 1))
        better = new_loss < loss
        params = jnp.where(better[None], trial, params)
        residual = jnp.where(better[None, None], new_residual, residual)
        jacobian = jnp.where(better[None, None, None], new_jacobian, jacobian)
        loss = jnp.where(better, new_loss, loss)
        damping = jnp.clip(jnp.where(better, damping / 3, damping * 4), 1e-7, 1e7)
    return _factors(chip, c, params), start, rms(residual)


@user_facing
def fit_twin(
    data: ProbeData,
    *,
    config: ChipConfig | None = None,
    base: ChipInstance | None = None,
    rounds: int = 2,
    iterations: int = 8,
    threshold_iterations: int = 3,
    key: jax.Array | None = None,
) -> TwinFit:
    """Fit a twin `ChipInstance` to `data` (from `probe_chip`); see the module docstring.

    **Arguments:**
    - `data`: `ProbeData`.
    - `config`: the `ChipConfig` that describes the chip's noise and readout (default
      `ChipConfig()`); the trace fit uses its noiseless version, the threshold step
      simulates with its noise.
    - `base`: the instance the twin starts from and keeps at unprobed circuits and
      unfitted fields (default nominal).
    - `rounds`: alternations of the threshold and the trace fit; `iterations`:
      Levenberg-Marquardt steps per round; `threshold_iterations`: Newton steps per round.
    - `key`: noise of the threshold step's simulations.

    **Returns:** a `TwinFit`.

    ```python
    data = bj.probe_chip(hidden, 8, key=jax.random.PRNGKey(0), repetitions=4)
    twin = bj.fit_twin(data, rounds=1, iterations=1, threshold_iterations=1).chip
    ```
    """
    if not isinstance(data, ProbeData):
        raise TypeError(f"`data` must be bj.ProbeData (from bj.probe_chip); got {data!r}.")
    config = ChipConfig() if config is None else config
    if not isinstance(config, ChipConfig):
        raise TypeError(f"`config` must be a bj.ChipConfig; got {config!r}.")
    base = ChipInstance.nominal() if base is None else base
    if not isinstance(base, ChipInstance) or base.leak.ndim != 1:
        raise TypeError(f"`base` must be one bj.ChipInstance (not a stack); got {base!r}.")
    for name, value in (("rounds", rounds), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    if not isinstance(threshold_iterations, int) or threshold_iterations < 1:
        raise ValueError(
            f"`threshold_iterations` must be a positive int; got {threshold_iterations!r}."
        )
    quiet = config.replace(membrane_noise=0.0, cadc_jitter=0.0, cadc_noise=0.0, madc_noise=0.0)
    key = jax.random.PRNGKey(1) if key is None else key
    chip = closed_form(data, canonical_chip(base))
    starts = []
    for k in jax.random.split(key, rounds):
        chip, error = _threshold_steps(chip, data, config, k, threshold_iterations)
        chip, start, rms = _levenberg_marquardt(chip, data, quiet, iterations)
        starts.append(start)
    row_rms = None
    if data.rows is not None:
        chip, row_rms = fit_rows(chip, data, quiet)
    return TwinFit(chip, data, rms, starts[0], error, row_rms)


@user_facing
def identify(
    backend: AbstractBackend,
    neurons: int,
    *,
    key: jax.Array | None = None,
    config: ChipConfig | None = None,
    repetitions: int = 40,
    tau_mem: float = 10e-6,
    tau_syn: float = 10e-6,
    rounds: int = 2,
    iterations: int = 8,
    inputs: int = 0,
    inputs_per_run: int = 8,
) -> TwinFit:
    """Probe `neurons` circuits of the chip behind `backend` and fit its digital twin.

    `probe_chip` (6 backend runs of `repetitions` entries each, and two per
    `inputs_per_run` of the `inputs` whose synapse rows are probed), then `fit_twin`. Save the
    twin with `fit.chip.save(path)`; use it with `ChipModel(twin)`, `RandomChips(anchor=
    twin)` or `sweep` over `ChipInstance.stack([...])`.

    **Arguments:** `backend` (a chip: `bj.Hardware(bj.HxtorchClient(...))`), `neurons`
    (1-512), `key`, `config` (the chip model's settings for the twin's noise and readout),
    `repetitions`, the operating point `tau_mem`, `tau_syn` (s), the fit's `rounds`
    and `iterations` (see `fit_twin`), and the synapse-row probe's `inputs` and
    `inputs_per_run` (see `probe_chip`; `bj.probe_plan(net)` gives `neurons` and
    `inputs` for a network).

    ```python
    hidden = bj.ChipModel(bj.ChipInstance.random(jax.random.PRNGKey(5)))
    twin = bj.identify(hidden, 4, repetitions=4, rounds=1, iterations=1).chip
    ```
    """
    key = jax.random.PRNGKey(0) if key is None else key
    probe_key, fit_key = jax.random.split(key)
    data = probe_chip(
        backend,
        neurons,
        key=probe_key,
        repetitions=repetitions,
        tau_mem=tau_mem,
        tau_syn=tau_syn,
        inputs=inputs,
        inputs_per_run=inputs_per_run,
    )
    return fit_twin(data, config=config, rounds=rounds, iterations=iterations, key=fit_key)

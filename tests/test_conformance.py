"""Backend conformance: every backend through the same checks.

One table (`ENTRIES`) lists every backend; each check below is parametrised over it:

- `test_run_shapes_and_dtypes`: `run` gives float32 `(time, batch, neurons)`.
- `test_observe_is_a_recording_in_chip_units`: `observe` gives None (numerics) or a
  `Recording` on the grid (at least `time` steps): CADC LSB in [0, 255], spikes 0/1.
- `test_run_shows_what_was_observed`: `run`'s forward values are the observation,
  post-processed.
- `test_jit_and_vmap_equal_the_eager_loop`: `jit(vmap(run))` over inputs equals the
  eager loop (bit for bit where the observation is computed on the host; for `Hardware`,
  which joins vmapped entries into one chip run, the loop is that one run).
- `test_grad_is_finite_and_nonzero`: `grad` w.r.t. the weights, under `jit` and `vmap`.
- `test_keys`: the same key gives the same bits; another key other bits exactly when the
  backend draws noise.

and where a backend must agree with something, it is checked: `Numeric` with the
numerics, the noiseless nominal chip with the numerics within a derived bound, `Replay`
bit for bit with the `Hardware` runs it replays.

The network is one LIF population of 4 neurons on 3 inputs, 25 steps, batch 2, in model
space with the chip's scales aligned (weights `linear_saturating(SCALE)`, traces
`trace_scale = 1 / (kappa * SCALE)`), so every backend's output is in the same units.
Each chip compilation costs seconds, so every backend's eager runs, observation and one
jitted, vmapped value-and-gradient are computed once (`outcome`) and shared by the checks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose, tree_equal

import bss2jax as bj

DT = 1e-6
TIME, BATCH, INPUTS, NEURONS = 25, 2, 3, 4
TAU = 10e-6  # tau_mem = tau_syn, the default
SCALE = 60.0  # model weight 1 = 60 chip weight units
LSB = bj.ChipConfig().weight_efficacy * SCALE  # CADC LSB per model unit of the membrane
QUIET = 3  # a neuron that stays below threshold: its weights are whole chip units
WEIGHT = jnp.array(
    [
        [1.0, 0.8, 0.5],
        [0.5, 1.05, 0.9],  # 1.05 * SCALE = 63: the chip's largest weight, none clipped
        [0.9, 0.6, 1.05],
        [8 / SCALE, 5 / SCALE, 6 / SCALE],
    ]
)
KEY, OTHER_KEY = jax.random.PRNGKey(10), jax.random.PRNGKey(11)
IDEAL = bj.ChipConfig.noiseless(saturation=None)  # no noise, linear synaptic input


def network():
    potentials = dict(
        leak=bj.Mixed(0.0, 80.0), reset=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 80.0 + LSB)
    )
    lif = bj.LIF(NEURONS, integrator="exact", trace_offset=80.0, trace_scale=1 / LSB, **potentials)
    synapse = bj.Synapse(INPUTS, NEURONS, weight=WEIGHT, transform=bj.linear_saturating(SCALE))
    return bj.Sequential([synapse, lif])


def spikes_in(seed):
    shape = (TIME, BATCH, INPUTS)
    return (jax.random.uniform(jax.random.PRNGKey(seed), shape) < 0.3).astype(jnp.float32)


NET = network()
X = spikes_in(1)


def noisy_chip():
    return bj.ChipInstance.random(jax.random.PRNGKey(2))


@dataclasses.dataclass(frozen=True)
class Entry:
    """A backend of the table and what it promises.

    - `noisy`: the key draws noise (or a chip): another key gives other bits.
    - `host`: the observation is computed outside XLA (a client), so `jit` reproduces it
      bit for bit.
    - `merges_vmap`: `vmap` over inputs is one run of the joined batch (Hardware's
      "expand_dims"): entry `v` equals batch entry `v` of one run.
    - `build(session)`: the backend; `session` holds the two that need module fixtures.
    """

    name: str
    noisy: bool
    host: bool
    merges_vmap: bool
    build: Callable


ENTRIES = (
    Entry("numeric", False, False, False, lambda session: bj.Numeric()),
    Entry(
        "chip-nominal",
        False,
        False,
        False,
        lambda session: bj.ChipModel(bj.ChipInstance.nominal(), IDEAL),
    ),
    Entry("chip-noisy", True, False, False, lambda session: bj.ChipModel(noisy_chip())),
    Entry("random-chips", True, False, False, lambda session: bj.RandomChips()),
    Entry("hardware", True, True, True, lambda session: session["hardware"]),
    Entry("replay", True, True, True, lambda session: session["replay"]),
)
BY_NAME = {entry.name: entry for entry in ENTRIES}
every_backend = pytest.mark.parametrize("name", [entry.name for entry in ENTRIES])


@pytest.fixture(scope="module")
def client():
    """The chip model in a worker process (one per module), on the noisy chip."""
    with bj.ChipModelClient(chip=noisy_chip(), seed=1) as client:
        yield client


@pytest.fixture(scope="module")
def session(client, tmp_path_factory):
    """The `Hardware` backend of the table (over the worker, recording to a folder), the
    `Replay` of the runs it recorded first (`NET` on `X` with both keys), and the
    recordings it observed in those runs."""
    folder = tmp_path_factory.mktemp("session")
    hardware = bj.Hardware(client, record_to=folder)
    live = {
        name: hardware.observe(NET, X, dt=DT, key=k)
        for name, k in [("key", KEY), ("other", OTHER_KEY)]
    }
    return dict(hardware=hardware, replay=bj.Replay(folder), live=live)


def loss(network, backend, inputs, key):
    (out,) = bj.run(network, inputs, backend=backend, dt=DT, key=key)
    return jnp.mean(out.membrane_cadc**2) + jnp.mean(out.spikes), out


def eager_loop(entry, backend, eager):
    """The inputs `vmap` goes over, and the eager results it must reproduce.

    Most backends: `[X, other]`, and the eager run of each. A backend that merges vmapped
    entries into one run: `X`'s batch entries one by one, and `X`'s run cut into them.
    """
    if entry.merges_vmap:
        stack = jnp.moveaxis(X[:, :, None], 1, 0)  # (BATCH, TIME, 1, INPUTS)
        return stack, jax.tree.map(lambda a: jnp.moveaxis(a[:, :, None], 1, 0), eager)
    other = spikes_in(4)
    again = bj.run(NET, other, backend=backend, dt=DT, key=KEY)
    return jnp.stack([X, other]), jax.tree.map(lambda *a: jnp.stack(a), eager, again)


@dataclasses.dataclass
class Outcome:
    """One backend's results on `NET` with `KEY`: the eager run and observation on `X`; the
    eager loop over `stack` and `jit(vmap(value_and_grad(loss)))` over it; the client calls
    that the jitted program made (None without a counting client)."""

    backend: bj.AbstractBackend
    eager: tuple
    observed: bj.Recording | None
    stack: jax.Array
    loop: tuple
    jitted: bj.Observables
    grad: bj.Sequential
    calls: int | None


@pytest.fixture(scope="module")
def outcome(session):
    """`outcome(name)`: that backend's `Outcome`, computed once per module (one chip
    compilation for the eager runs, one for the jitted and vmapped program)."""
    cache = {}

    def compute(name):
        if name not in cache:
            entry = BY_NAME[name]
            backend = entry.build(session)
            eager = bj.run(NET, X, backend=backend, dt=DT, key=KEY)
            observed = backend.observe(NET, X, dt=DT, key=KEY)
            stack, loop = eager_loop(entry, backend, eager)
            batched = jax.vmap(
                jax.value_and_grad(loss, has_aux=True), in_axes=(None, None, 0, None)
            )
            counter = getattr(backend, "client", None)
            before = getattr(counter, "calls", None)
            (_, jitted), grad = eqx.filter_jit(batched)(NET, backend, stack, KEY)
            calls = None if before is None else counter.calls - before
            cache[name] = Outcome(backend, eager, observed, stack, loop, jitted, grad, calls)
        return cache[name]

    return compute


@every_backend
def test_run_shapes_and_dtypes(name, outcome):
    (out,) = outcome(name).eager
    assert isinstance(out, bj.Observables)
    for array in (out.spikes, out.membrane_cadc, out.current):
        assert array.shape == (TIME, BATCH, NEURONS)
        assert array.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(array)))
    assert set(np.unique(np.asarray(out.spikes))) <= {0.0, 1.0}
    assert out.adaptation is None and out.membrane_madc is None
    assert float(out.spikes.sum()) > 0  # the network fires on every backend


@every_backend
def test_observe_is_a_recording_in_chip_units(name, outcome):
    observed = outcome(name).observed
    if name == "numeric":
        assert observed is None  # nothing to inject: the numerics are the result
        return
    assert isinstance(observed, bj.Recording)
    assert set(observed.populations) == {0}
    population = observed.populations[0]
    assert isinstance(population, bj.PopulationRecording)
    for array in (population.spikes, population.membrane_cadc):
        # On the grid of step DT, at least TIME steps (Hardware's has hxtorch's one more).
        assert array.shape[0] >= TIME and array.shape[1:] == (BATCH, NEURONS)
        assert array.dtype == jnp.float32
    assert set(np.unique(np.asarray(population.spikes))) <= {0.0, 1.0}
    cadc = np.asarray(population.membrane_cadc)
    assert cadc.min() >= 0.0 and cadc.max() <= 255.0  # 8-bit CADC LSB
    assert cadc.min() < 90.0 and cadc.max() > 100.0  # chip units, not model units
    assert population.membrane_madc is None  # not asked for


@every_backend
def test_run_shows_what_was_observed(name, outcome):
    result = outcome(name)
    (out,) = result.eager
    if result.observed is None:  # Numeric: the numerics, as with the default backend
        assert tree_equal(result.eager, bj.run(NET, X, dt=DT))
        return
    population = result.observed.populations[0]
    np.testing.assert_array_equal(out.spikes, population.spikes[:TIME])
    expected = bj.cadc_to_model(population.membrane_cadc, NET.layers[1])[:TIME]
    np.testing.assert_array_equal(out.membrane_cadc, expected)


@every_backend
def test_jit_and_vmap_equal_the_eager_loop(name, outcome):
    # One compiled program per backend checks both (a chip compilation costs seconds):
    # jit(vmap(f))(stack) against [f(x) for x in stack], run eagerly.
    result = outcome(name)
    jitted, (loop,) = result.jitted, result.loop
    assert jitted.membrane_cadc.shape == (len(result.stack), *result.stack.shape[1:3], NEURONS)
    np.testing.assert_array_equal(jitted.spikes, loop.spikes)
    if BY_NAME[name].host:  # computed outside XLA: the same bits
        assert tree_equal(jitted, loop)
    else:  # XLA may fuse the float operations of a jitted program differently
        assert tree_allclose(jitted, loop)
    if BY_NAME[name].merges_vmap and result.calls is not None:
        assert result.calls == 1  # the vmapped entries went to the chip as one run


@every_backend
def test_grad_is_finite_and_nonzero(name, outcome):
    result = outcome(name)
    weight = np.asarray(result.grad.layers[0].weight)  # one gradient per vmapped entry
    assert weight.shape == (len(result.stack), NEURONS, INPUTS)
    assert np.all(np.isfinite(weight))
    assert np.all(np.any(weight != 0, axis=(1, 2)))
    for leaf in jax.tree.leaves(eqx.filter(result.grad, eqx.is_inexact_array)):
        assert np.all(np.isfinite(np.asarray(leaf)))


@every_backend
def test_keys(name, outcome):
    result = outcome(name)
    again = result.backend.observe(NET, X, dt=DT, key=KEY)
    other = result.backend.observe(NET, X, dt=DT, key=OTHER_KEY)
    assert tree_equal(again, result.observed)
    if BY_NAME[name].noisy:
        a, b = (np.asarray(r.populations[0].membrane_cadc) for r in (result.observed, other))
        assert not np.array_equal(a, b)
    else:
        assert tree_equal(other, result.observed)


def test_nominal_chip_agrees_with_the_numerics_below_threshold(outcome):
    # The quiet neuron's sub-threshold PSPs on the noiseless nominal chip against the exact
    # integrator, both in model units (aligned scales; its weights are whole chip units, so
    # no weight rounding). Three differences, each bounded:
    # - the current within a step: the numerics hold each step's current i_k for the whole
    #   step, the chip lets it decay, so the chip's current lies in [exp(-dt/tau) i_k, i_k].
    #   The membrane is a positive filter of the current (all its inputs excitatory), so
    #   pointwise chip(t) lies in [exp(-dt/tau) numerics(t), numerics(t)]: the chip is lower
    #   by at most 1 - exp(-0.1) = 9.5 % (about 1 - a = 4.8 % on average, see below);
    # - CADC rounding: 0.5 LSB;
    # - CADC sampling: linear interpolation between samples a period apart misses at most
    #   period / 4 * (max slope - min slope) of the trace.
    numerics = np.asarray(outcome("numeric").eager[0].membrane_cadc[:, :, QUIET])
    chip = np.asarray(outcome("chip-nominal").eager[0].membrane_cadc[:, :, QUIET])
    slope = np.diff(numerics, axis=0) / DT
    readout = 0.5 / LSB + IDEAL.cadc_sample_period / 4 * (slope.max() - slope.min())
    current = 1 - math.exp(-DT / TAU)
    assert numerics.max() > 10 * readout  # a real signal, well above the readout's error
    assert numerics.max() < 1.0  # below threshold: neither fires
    assert not np.any(outcome("chip-nominal").eager[0].spikes[:, :, QUIET])
    assert np.all(chip - numerics <= readout)
    assert np.all(numerics - chip <= current * numerics + readout)
    assert np.all(chip[0] == 0.0) and np.all(numerics[0] == 0.0)  # at rest before any input
    # Tighter, on average: the chip's current over a step is the numerics' times
    # a = tau/dt (1 - exp(-dt/tau)) = 0.9516, so the least-squares gain of chip on numerics
    # is about a. Measured over 7 input draws: 0.946 to 0.955 (rounding and sampling
    # errors average out); a 1 % error in the weight efficacy or the alignment shows.
    step_average = TAU / DT * (1 - math.exp(-DT / TAU))
    gain = float((chip * numerics).sum() / (numerics * numerics).sum())
    assert abs(gain - step_average) <= 0.01, gain


def test_replay_equals_the_hardware_runs_it_recorded(outcome, session):
    live = session["live"]
    replay, hardware = outcome("replay"), outcome("hardware")
    assert tree_equal(replay.observed, live["key"])
    assert tree_equal(replay.backend.observe(NET, X, dt=DT, key=OTHER_KEY), live["other"])
    # The same request to the live worker gives the same bits, so the runs agree too.
    assert tree_equal(replay.eager, hardware.eager)
    assert tree_equal(replay.grad, hardware.grad)

"""The digital twin: `probe_chip`, `fit_twin`, `identify`, `canonical_chip`.

The hidden chips are chip-model instances whose truth the tests know. The lean tests use a
noiseless hidden chip built so that every reading the closed-form step uses is an integer
(no CADC rounding error): there the closed form must be exact. The slow test is the
issue's bar on a noisy calibrated chip of 512 circuits.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_equal

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax import _identify, _probe
from bss2jax._clients._worker import input_dense, network_from_request, recording_from_chip_model

HIDDEN_SEED = 1729
"""Seed of the hidden chip; the fit starts from the nominal instance and never sees it."""
N = 4
QUIET = bj.ChipConfig.noiseless()
POTENTIALS = ("leak", "reset", "threshold")


def integral_chip(seed: int = HIDDEN_SEED) -> bj.ChipInstance:
    """A random calibrated chip whose noiseless CADC readings at the probe's baselines and
    reset plateau are integers: CADC gain 5/4, leak `4/5 m`, reset `2/5 (2 j + 1)`, offset
    `k` (integers m, j, k), so `5/4 (60 + leak) + offset`, `5/4 (140 + leak) + offset` and
    `5/4 (50 + reset) + offset` are integers. Every other field is drawn from the seed."""
    chip = bj.ChipInstance.random(jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    m, j, k = (rng.integers(-2, 3, 512) for _ in range(3))
    return eqx.tree_at(
        lambda c: (c.cadc_gain, c.leak, c.reset, c.cadc_offset),
        chip,
        tuple(
            jnp.asarray(v, jnp.float32)
            for v in (np.full(512, 1.25), 0.8 * m, 0.4 * (2 * j + 1), 1.0 * k)
        ),
    )


@pytest.fixture(scope="module")
def hidden():
    return integral_chip()


@pytest.fixture(scope="module")
def data(hidden):
    return bj.probe_chip(bj.ChipModel(hidden, QUIET), N, repetitions=1)


@pytest.fixture(scope="module")
def fitted(data):
    return bj.fit_twin(data, config=QUIET, rounds=2, iterations=6, threshold_iterations=3)


def test_probe_data_shapes_and_runs(data):
    assert data.runs == len(_probe.PROBE_NAMES) == 6
    assert data.traces.shape == (6, 100, N) and data.spikes.shape == (6, 100, 1, N)
    placed = bj.place(data.networks[0]).populations[0].circuits[:, 0]
    assert np.array_equal(np.asarray(data.circuits), placed) and len(set(placed)) == N
    # the four sub-threshold probes never fire; `reset` fires once, `firing` regularly
    assert float(data.spikes[:4].sum()) == 0.0
    assert np.all(np.asarray(data.spike("reset").sum(0)) == 1)
    assert np.all(np.asarray(data.spike("firing").sum(0)) >= 4)


def test_closed_form_is_exact_on_a_noiseless_chip(hidden, data):
    twin = _identify.closed_form(data, bj.ChipInstance.nominal())
    truth = bj.canonical_chip(hidden)
    c = data.circuits
    for name in ("cadc_gain", "leak", "reset"):
        assert np.allclose(getattr(twin, name)[c], getattr(truth, name)[c], atol=2e-5), name
    assert np.all(np.asarray(twin.cadc_offset) == 0)
    # the circuits it did not probe keep the base's values
    other = np.setdiff1d(np.arange(512), np.asarray(c))
    nominal = bj.ChipInstance.nominal()
    assert tree_equal(
        jax.tree.map(lambda a: a[other], twin), jax.tree.map(lambda a: a[other], nominal)
    )


def test_canonical_chip_keeps_every_reading(hidden, data):
    again = bj.probe_chip(bj.ChipModel(bj.canonical_chip(hidden), QUIET), N, repetitions=1)
    # `g (v + o / g)` and `g v + o` differ by float rounding only: a reading may flip by 1
    difference = np.abs(np.asarray(again.traces - data.traces))
    assert difference.max() <= 1.0 and difference.mean() < 0.01
    assert tree_equal(again.spikes, data.spikes)
    # every synapse row's efficacy is kept: synaptic gain x row factor
    canonical = bj.canonical_chip(hidden)
    for gain, rows in (
        ("synaptic_gain_exc", slice(0, None, 2)),
        ("synaptic_gain_inh", slice(1, None, 2)),
    ):
        before = getattr(hidden, gain)[:, None] * hidden.synapse_gain[:, rows]
        after = getattr(canonical, gain)[:, None] * canonical.synapse_gain[:, rows]
        assert np.allclose(before, after, rtol=1e-6)
    assert np.allclose(canonical.synapse_gain[:, :2], 1.0)


def test_interval_of_known_spike_trains():
    spikes = jnp.zeros((40, 3, 2)).at[jnp.array([2, 9, 16, 23]), 0, 0].set(1.0)
    spikes = spikes.at[jnp.array([5, 10]), 1, 0].set(1.0).at[7, 2, 0].set(1.0)
    # entry 0: 3 intervals of 7 steps; entry 1: one of 5; entry 2 has one spike (left out)
    assert np.allclose(_identify.interval(spikes, 1e-6), [6e-6, np.nan], equal_nan=True)


def test_fit_recovers_the_hidden_chip(hidden, data, fitted):
    truth, twin, c = bj.canonical_chip(hidden), fitted.chip, data.circuits
    nominal = bj.ChipInstance.nominal()
    # the trace fit lowers the traces' RMS, down to about the CADC rounding (1/sqrt(12))
    assert np.all(np.asarray(fitted.rms) < np.asarray(fitted.rms_start))
    assert np.all(np.asarray(fitted.rms) < 0.5)
    for name in POTENTIALS:
        assert np.all(np.abs(np.asarray(getattr(twin, name)[c] - getattr(truth, name)[c])) <= 1)
    for name in _identify.FACTORS:
        error = np.abs(np.asarray(getattr(twin, name)[c] / getattr(truth, name)[c]) - 1)
        start = np.abs(np.asarray(getattr(nominal, name)[c] / getattr(truth, name)[c]) - 1)
        assert np.all(error <= 0.05), (name, error)
        assert error.mean() < start.mean(), (name, error, start)


def test_twin_file_round_trips_and_plugs_into_the_chip_model(data, fitted, tmp_path):
    path = tmp_path / "twin.npz"
    fitted.chip.save(path, metadata={"neurons": N})
    loaded = bj.ChipInstance.load(path)
    assert tree_equal(loaded, fitted.chip)
    # the closed form is exact here, so the twin reproduces the baselines bit for bit
    for name in ("baseline_low", "baseline_high"):
        index = _probe.PROBE_NAMES.index(name)
        backend = bj.ChipModel(loaded, QUIET)
        cadc, _ = _probe.observe_probe(
            backend, data.networks[index], data.inputs[index], jax.random.PRNGKey(0), 1e-6
        )
        assert tree_equal(cadc[:, 0], data.traces[index])


class InProcessChipClient(bjh.AbstractClient):
    """`ChipModelClient`'s worker, in this process: the hardware contract over a chip model."""

    def __init__(self, chip, config):
        self.backend = bj.ChipModel(chip, config)

    def execute(self, request):
        network, names = network_from_request(request)
        raw = self.backend.record(network, input_dense(request), dt=request.dt, key=None)
        return recording_from_chip_model(request, raw, names)


@pytest.mark.slow
def test_probe_through_the_hardware_path_is_recorded_and_replayed(hidden, tmp_path):
    client = InProcessChipClient(hidden, QUIET)
    rows = dict(inputs=2, inputs_per_run=2)  # and the synapse-row probe's two runs
    live = bj.probe_chip(bj.Hardware(client, record_to=tmp_path), 2, repetitions=1, **rows)
    replayed = bj.probe_chip(bj.Replay(tmp_path), 2, repetitions=1, **rows)
    assert len(list(tmp_path.glob("*.npz"))) == live.runs == 6 + 2
    assert tree_equal(replayed.traces, live.traces) and tree_equal(replayed.spikes, live.spikes)
    assert tree_equal(replayed.rows.traces, live.rows.traces)
    twin = _identify.closed_form(replayed, bj.ChipInstance.nominal())
    truth = bj.canonical_chip(hidden)
    c = replayed.circuits
    for name in ("cadc_gain", "leak", "reset"):
        assert np.allclose(getattr(twin, name)[c], getattr(truth, name)[c], atol=2e-5), name


def test_errors_name_the_argument(data):
    chip = bj.ChipModel(bj.ChipInstance.nominal(), QUIET)
    with pytest.raises(ValueError, match="`neurons` must be an int in \\[1, 512\\]; got 0"):
        bj.probe_chip(chip, 0)
    with pytest.raises(ValueError, match="`repetitions`"):
        bj.probe_chip(chip, 2, repetitions=0)
    with pytest.raises(ValueError, match="`dt` must be 1e-6"):
        bj.probe_chip(chip, 2, dt=2e-6)
    with pytest.raises(TypeError, match="`backend` must be a bss2jax backend"):
        bj.probe_chip("chip", 2)
    with pytest.raises(ValueError, match="recorded no CADC traces"):
        bj.probe_chip(bj.Numeric(), 2)
    with pytest.raises(TypeError, match="`data` must be bj.ProbeData"):
        bj.fit_twin("data")
    with pytest.raises(ValueError, match="`rounds` must be a positive int; got 0"):
        bj.fit_twin(data, rounds=0)
    with pytest.raises(TypeError, match="`chip` must be a bj.ChipInstance"):
        bj.canonical_chip("chip")


def held_out(neurons: int, key, repetitions: int):
    """Stimuli the protocol never sent: Poisson inputs (0.05 per step) on input 0 with a
    random chip weight per neuron in [-40, 40], into non-firing (leak 110) and firing (leak 80,
    threshold 120, reset 70) neurons."""
    out = []
    for i, k in enumerate(jax.random.split(key, 4)):
        k_weight, k_input = jax.random.split(k)
        weight = jnp.round(jax.random.uniform(k_weight, (neurons, 1), minval=-40, maxval=40))
        spikes = jax.random.bernoulli(k_input, 0.05, (100, 1, 1)).astype(jnp.float32)
        settings = dict(leak=110.0, reset=110.0, threshold=200.0)
        if i % 2:
            settings = dict(leak=80.0, reset=70.0, threshold=120.0)
        population = bj.LIF(neurons, tau_mem=10e-6, tau_syn=10e-6, **settings)
        network = bj.Sequential([bj.Synapse(1, neurons, weight=weight), population])
        out.append((network, jnp.broadcast_to(spikes, (100, repetitions, 1))))
    return out


def mean_trace(chip, config, network, inputs, key):
    recording = bj.ChipModel(chip, config).observe(network, inputs, dt=1e-6, key=key)
    return np.asarray(recording.populations[0].membrane_cadc).mean(1)


@pytest.mark.slow
def test_twin_meets_the_bar_on_a_noisy_chip():
    """Issue 12's bar: from <= 100 probing runs of a hidden-seed chip (512 circuits, all
    noise on), starting from the nominal instance, leak/reset/threshold within 1 LSB and
    time constants within 5 % for >= 95 % of neurons; held-out recordings predicted with
    RMS <= 1.5 CADC LSB."""
    config = bj.ChipConfig()
    hidden = bj.ChipInstance.random(jax.random.PRNGKey(HIDDEN_SEED))
    key = jax.random.PRNGKey(0)
    fit = bj.identify(bj.ChipModel(hidden, config), 512, key=key, config=config)
    assert fit.data.runs <= 100
    truth, twin = bj.canonical_chip(hidden), fit.chip
    for name in POTENTIALS:
        error = np.abs(np.asarray(getattr(twin, name) - getattr(truth, name)))
        assert np.mean(error <= 1.0) >= 0.95, (name, np.sort(error)[-10:])
    for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
        error = np.abs(np.asarray(getattr(twin, name) / getattr(truth, name)) - 1)
        assert np.mean(error <= 0.05) >= 0.95, (name, np.sort(error)[-10:])
    squares = []
    for i, (network, inputs) in enumerate(held_out(512, jax.random.PRNGKey(7), 40)):
        k_chip, k_twin = jax.random.split(jax.random.PRNGKey(100 + i))
        recorded = mean_trace(hidden, config, network, inputs, k_chip)
        predicted = mean_trace(twin, config, network, inputs, k_twin)
        squares.append(np.mean((recorded - predicted) ** 2))
    assert np.sqrt(np.mean(squares)) <= 1.5
    # it plugs into `sweep` beside the hidden chip: the same noiseless trace within the bar
    network, inputs = held_out(512, jax.random.PRNGKey(8), 8)[0]

    def trace(chip):
        out = bj.ChipModel(chip, bj.ChipConfig.noiseless()).observe(
            network, inputs, dt=1e-6, key=None
        )
        return out.populations[0].membrane_cadc[:, 0]

    result = bj.sweep(trace, {"chip": bj.ChipInstance.stack([hidden, twin])})
    assert np.sqrt(np.mean((np.asarray(result.values[0] - result.values[1])) ** 2)) <= 1.5
    # ... and into `RandomChips` as its anchor: with probability 1 it runs on the twin
    anchored = bj.RandomChips(config=bj.ChipConfig.noiseless(), anchor=twin, anchor_probability=1.0)
    out = anchored.observe(network, inputs, dt=1e-6, key=jax.random.PRNGKey(3))
    difference = np.asarray(out.populations[0].membrane_cadc[:, 0] - result.values[1])
    assert np.abs(difference).max() <= 1.0  # vmap may flip a rounding, nothing more


@pytest.mark.slow
def test_twin_benchmark_smoke_through_a_chip_model_client(tmp_path):
    """benchmarks/twin.py at a tiny size, probing through `Hardware(ChipModelClient(...))`
    (a worker process), recorded to a folder and fitted from its `Replay`."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "twin.py"
    spec = importlib.util.spec_from_file_location("benchmark_twin", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path / "twin.json"
    argv = "--neurons 4 --repetitions 8 --rounds 1 --iterations 3 --held-out 2 --client"
    argv += " --inputs 2 --inputs-per-run 2"  # the synapse-row probe through the client too
    saved = tmp_path / "t.npz"
    report = module.main([*argv.split(), "--output", str(output), "--save", str(saved)])
    assert json.loads(output.read_text()) == report
    assert report["backend_runs"] == 6 + 2 and report["neurons"] == 4
    assert bj.ChipInstance.load_metadata(saved)["neurons"] == 4
    held_out = report["held_out_rms_lsb"]
    assert held_out["twin"] < held_out["nominal"]
    for name in ("leak", "reset"):
        assert report["twin"][name]["median"] < report["nominal"][name]["median"]
    rows = report["twin"]["row_gains (5 %)"], report["nominal"]["row_gains (5 %)"]
    assert rows[0]["rows"] == 4 and rows[0]["log_rms"] < rows[1]["log_rms"]

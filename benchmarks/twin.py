"""The digital twin (issue 12): how well `bj.identify` recovers a hidden chip.

A hidden chip (`ChipInstance.random(PRNGKey(--seed), profile)`, all noise of the default
`ChipConfig` on) is probed through a backend (`ChipModel`, or with `--client` the whole
hardware path: `Hardware(ChipModelClient(hidden))`, each run recorded to a folder and the
fit made from `Replay` of it), and the twin is fitted starting from the nominal instance.
Reported, over the `--neurons` probed circuits:

- the backend runs made (the bar: at most 100);
- per field, the twin's error against the hidden chip in its identifiable form
  (`bj.canonical_chip`): potentials (leak, reset, threshold) in LSB, the share of neurons
  within 1 LSB; factors (time constants, synaptic gains, CADC gain) relative, the share
  within 5 %; the same for the nominal chip (the starting point) for comparison;
- held-out prediction: `--held-out` new stimuli (random spike trains of random weights on
  the probed input, into non-firing and firing neurons, at the probe's `--tau`) recorded
  on the hidden chip, and simulated on the twin and on the nominal chip with the same
  config and other noise keys; the RMS (CADC LSB) of the mean traces' difference over
  `--repetitions` entries (the bar: at most 1.5 LSB);
- with `--inputs k` (the synapse-row probe, `bj.probe_chip(inputs=k)`), the effective
  gains of rows `0 .. 2k - 1` (`row_gains`), and held-out stimuli on `k` inputs instead of
  one;
- the wall time of the probe and the fit (CPU, see `machine`).

    python benchmarks/twin.py                                   # the bar: 512 neurons
    python benchmarks/twin.py --neurons 8 --repetitions 4 --rounds 1 --iterations 2
    python benchmarks/twin.py --inputs 120 --tau 6e-6             # with the row probe
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import bss2jax as bj

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import emit, machine  # noqa: E402

POTENTIALS = ("leak", "reset", "threshold")
FACTORS = (
    "tau_mem",
    "tau_syn_exc",
    "tau_syn_inh",
    "synaptic_gain_exc",
    "synaptic_gain_inh",
    "cadc_gain",
)


def field_errors(chip: bj.ChipInstance, truth: bj.ChipInstance, circuits) -> dict:
    """Per field: the share of neurons within the bar, and the largest and median error."""
    out = {}
    for name in POTENTIALS + FACTORS:
        fitted = np.asarray(getattr(chip, name))[circuits]
        true = np.asarray(getattr(truth, name))[circuits]
        potential = name in POTENTIALS
        error = np.abs(fitted - true) if potential else np.abs(fitted / true - 1)
        bar = 1.0 if potential else 0.05
        out[name] = {
            "within_bar": float(np.mean(error <= bar)),
            "max": float(error.max()),
            "median": float(np.median(error)),
            "unit": "LSB" if potential else "relative",
        }
    return out


def row_errors(chip: bj.ChipInstance, hidden: bj.ChipInstance, data) -> dict:
    """The effective gains `synaptic_gain * synapse_gain[circuit, row]` of the probed
    circuits over the rows of the synapse-row probe (rows 0 and 1 without it) against the
    hidden chip's: the share within 5 %, the log-RMS error."""
    rows = np.arange(2 * max(1, data.rows.inputs.shape[-1] if data.rows else 1))
    circuits = np.asarray(data.circuits)

    def effective(c):
        gain = np.where(
            rows[None] % 2 == 0,
            np.asarray(c.synaptic_gain_exc)[circuits, None],
            np.asarray(c.synaptic_gain_inh)[circuits, None],
        )
        return np.log(gain * np.asarray(c.synapse_gain)[np.ix_(circuits, rows)])

    error = effective(chip) - effective(hidden)
    return {
        "row_gains (5 %)": {
            "within_bar": float(np.mean(np.abs(np.expm1(error)) <= 0.05)),
            "log_rms": float(np.sqrt(np.mean(error**2))),
            "rows": int(len(rows)),
        }
    }


def held_out_stimuli(
    neurons: int, count: int, time: int, repetitions: int, key, tau: float, inputs: int = 1
):
    """`count` (network, inputs) pairs the protocol never sent: Poisson inputs (rate 0.05
    per step in all) on `inputs` inputs with a random chip weight per synapse in [-40,
    40], into neurons that do not fire (leak 110) and, every other stimulus, LIFs (leak 80,
    threshold 120, reset 70) that do."""
    stimuli = []
    for i, k in enumerate(jax.random.split(key, count)):
        k_weight, k_input = jax.random.split(k)
        shape = (neurons, inputs)
        weight = jnp.round(jax.random.uniform(k_weight, shape, minval=-40, maxval=40))
        rate = 0.05 / inputs
        spikes = jax.random.bernoulli(k_input, rate, (time, 1, inputs)).astype(jnp.float32)
        x = jnp.broadcast_to(spikes, (time, repetitions, inputs))
        if i % 2 == 0:
            settings = dict(leak=110.0, reset=110.0, threshold=200.0)
        else:
            settings = dict(leak=80.0, reset=70.0, threshold=120.0)
        population = bj.LIF(neurons, tau_mem=tau, tau_syn=tau, **settings)
        network = bj.Sequential([bj.Synapse(inputs, neurons, weight=weight), population])
        stimuli.append((network, x))
    return stimuli


def mean_traces(backend, stimuli, key) -> list:
    out = []
    for (network, inputs), k in zip(stimuli, jax.random.split(key, len(stimuli)), strict=True):
        recording = backend.observe(network, inputs, dt=1e-6, key=k)
        out.append(np.asarray(recording.populations[0].membrane_cadc).mean(1))
    return out


def held_out_rms(recorded: list, predicted: list) -> float:
    squares = [np.mean((a - b) ** 2) for a, b in zip(recorded, predicted, strict=True)]
    return float(np.sqrt(np.mean(squares)))


def probe(args, hidden, config, key):
    """Probe the hidden chip: directly, or through the hardware path recorded and replayed."""
    options = dict(
        key=key,
        repetitions=args.repetitions,
        tau_mem=args.tau,
        tau_syn=args.tau,
        inputs=args.inputs,
        inputs_per_run=args.inputs_per_run,
    )
    if not getattr(args, "client", False):  # twin_yinyang.py has no --client
        return bj.probe_chip(bj.ChipModel(hidden, config), args.neurons, **options)
    with tempfile.TemporaryDirectory() as folder, bj.ChipModelClient(hidden, config) as client:
        bj.probe_chip(bj.Hardware(client, record_to=folder), args.neurons, **options)
        return bj.probe_chip(bj.Replay(folder), args.neurons, **options)


def probe_and_fit(args, hidden, config, keys) -> tuple:
    """Probe the hidden chip (`probe`, with `keys[0]`) and fit its twin (`keys[1]`), each
    timed: `(fit, data, {"probe": seconds, "fit": seconds})`."""
    start = time.perf_counter()
    data = probe(args, hidden, config, keys[0])
    jax.block_until_ready(data.traces)
    probe_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fit = bj.fit_twin(
        data, config=config, rounds=args.rounds, iterations=args.iterations, key=keys[1]
    )
    jax.block_until_ready(fit.chip)
    return fit, data, {"probe": probe_seconds, "fit": time.perf_counter() - start}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--neurons", type=int, default=512)
    parser.add_argument("--repetitions", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261202, help="the hidden chip's seed")
    parser.add_argument("--profile", choices=("calibrated", "uncalibrated"), default="calibrated")
    parser.add_argument("--tau", type=float, default=10e-6, help="tau_mem = tau_syn (s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=0, help="synapse-row probe: inputs")
    parser.add_argument("--inputs-per-run", type=int, default=8)
    parser.add_argument("--client", action="store_true", help="probe via ChipModelClient")
    parser.add_argument("--save", default=None, help="save the twin (.npz) here")
    parser.add_argument("--output", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)

    profile = getattr(bj.MismatchProfile, args.profile)()
    hidden = bj.ChipInstance.random(jax.random.PRNGKey(args.seed), profile)
    config = bj.ChipConfig()
    keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), 5)
    fit, data, seconds = probe_and_fit(args, hidden, config, keys[:2])
    if args.save:
        fit.chip.save(args.save, metadata={"hidden_seed": args.seed, "neurons": args.neurons})

    circuits = np.asarray(data.circuits)
    truth = bj.canonical_chip(hidden)
    nominal = bj.ChipInstance.nominal()
    stimuli = held_out_stimuli(
        args.neurons, args.held_out, 100, args.repetitions, keys[2], args.tau, max(1, args.inputs)
    )
    recorded = mean_traces(bj.ChipModel(hidden, config), stimuli, keys[3])
    twin_rms = held_out_rms(recorded, mean_traces(bj.ChipModel(fit.chip, config), stimuli, keys[4]))
    nominal_rms = held_out_rms(
        recorded, mean_traces(bj.ChipModel(nominal, config), stimuli, keys[4])
    )
    report = {
        "benchmark": "twin",
        "command": "python benchmarks/twin.py " + " ".join(argv or sys.argv[1:]),
        **machine(),
        "neurons": args.neurons,
        "repetitions": args.repetitions,
        "profile": args.profile,
        "tau": args.tau,
        "hidden_seed": args.seed,
        "backend_runs": data.runs,
        "probe_seconds": round(seconds["probe"], 1),
        "fit_seconds": round(seconds["fit"], 1),
        "fit_trace_rms_lsb": [round(float(x), 3) for x in fit.rms],
        "inputs": args.inputs,
        "fit_row_rms_lsb": None
        if fit.row_rms is None
        else [round(float(x), 3) for x in np.asarray(fit.row_rms).mean(1)],
        "twin": field_errors(fit.chip, truth, circuits) | row_errors(fit.chip, hidden, data),
        "nominal": field_errors(nominal, truth, circuits) | row_errors(nominal, hidden, data),
        "held_out_rms_lsb": {"twin": round(twin_rms, 3), "nominal": round(nominal_rms, 3)},
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

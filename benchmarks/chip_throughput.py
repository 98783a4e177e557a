"""Chip-model throughput: emulated samples per second for Cramer et al.'s full-chip layout.

Workload (issue 3): 256 inputs -> 246 LIF (hidden) -> 10 LI (readout), 2 circuits per
neuron (all 512 circuits), 34 us per sample (dt = 1.7 us, 20 steps, as the CADC samples),
tau_mem = tau_syn = 6 us, noise on, a calibrated random chip, batch 100, Bernoulli input
spikes. Times the chip model's `observe` (emulation plus readout onto the grid) and, with
`--run`, the whole `bj.run` with the observation injected. Compile time is measured apart;
the steady state is the median of `--repeats` calls, each `block_until_ready`. With
`--grad`, also the value and gradient of a cross-entropy on the readout's maximum over
time, with the numerics' gradient (`inject`) and the chip model's own (`through`).

    python benchmarks/chip_throughput.py --run --grad       # full size, CPU here
    python benchmarks/chip_throughput.py --inputs 8 --hidden 6 --outputs 2 --time 4 \
        --batch 2 --repeats 2                               # smoke size

The physical chip runs in real time: one sample per `time * dt` of membrane time, 29,400
samples per second for these 34 us samples (host I/O aside; Cramer et al. 2022 report
85,000 per second for their 11.8 us inference samples, the same rule). The JSON reports the
model's rate and its ratio to the chip's rate for the same sample.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import bss2jax as bj

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import cpu_model, emit  # noqa: E402


def chip_samples_per_second(time_steps: int, dt: float) -> float:
    """The chip's real-time rate for samples of `time_steps * dt` seconds of membrane time
    (Cramer et al. 2022, PNAS: 85k images per second at 11.8 us per image, i.e. 1 / 11.8
    us)."""
    return 1.0 / (time_steps * dt)


def build(inputs: int, hidden: int, outputs: int, key):
    k1, k2 = jax.random.split(key)
    tau = dict(tau_mem=6e-6, tau_syn=6e-6)
    lif = bj.LIF(
        hidden,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(0.0, 80.0),
        threshold=bj.Mixed(1.0, 150.0),
        trace_offset=80.0,
        trace_scale=1 / 60,
        **tau,
    )
    li = bj.LI(outputs, leak=bj.Mixed(0.0, 80.0), trace_offset=80.0, trace_scale=1 / 60, **tau)
    return bj.Sequential(
        [
            bj.Synapse(inputs, hidden, key=k1, transform=bj.linear_saturating(240.0)),
            lif,
            bj.Synapse(hidden, outputs, key=k2, transform=bj.linear_saturating(60.0)),
            li,
        ]
    )


def _median(fn, *args, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The workload's options (layout, grid, batch, sub-steps, input rate), shared with
    `chip_speedup.py`."""
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=246)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--time", type=int, default=20, help="grid steps per sample")
    parser.add_argument("--dt", type=float, default=1.7e-6, help="grid step (s)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--substeps", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.05, help="input spike probability")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", action="store_true", help="also time bj.run (injection)")
    parser.add_argument(
        "--grad",
        action="store_true",
        help="also time a training gradient, with gradient='inject' and 'through'",
    )
    parser.add_argument("--noiseless", action="store_true", help="switch all noise off")
    parser.add_argument("--output", type=str, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    key = jax.random.PRNGKey(0)
    k_net, k_chip, k_in, k_noise = jax.random.split(key, 4)
    network = build(args.inputs, args.hidden, args.outputs, k_net)
    chip = bj.ChipInstance.random(k_chip)
    config = bj.ChipConfig(substeps=args.substeps)
    if args.noiseless:
        config = bj.ChipConfig.noiseless(substeps=args.substeps)
    backend = bj.ChipModel(chip, config)
    shape = (args.time, args.batch, args.inputs)
    inputs = (jax.random.uniform(k_in, shape) < args.rate).astype(jnp.float32)

    @eqx.filter_jit
    def observe(network, inputs, key):
        return backend.observe(network, inputs, dt=args.dt, key=key)

    @eqx.filter_jit
    def forward(network, inputs, key):
        return bj.run(network, inputs, backend=backend, dt=args.dt, key=key)

    labels = jnp.arange(args.batch) % args.outputs

    def gradient_of(mode):
        chip_model = bj.ChipModel(chip, config, gradient=mode)

        @eqx.filter_jit
        def value_and_grad(network, inputs, key):
            def loss(network):
                _, readout = bj.run(network, inputs, backend=chip_model, dt=args.dt, key=key)
                logits = readout.membrane_cadc.max(0)
                log_p = jax.nn.log_softmax(logits)
                return -jnp.take_along_axis(log_p, labels[:, None], 1).mean()

            return eqx.filter_value_and_grad(loss)(network)

        return value_and_grad

    results = {}
    cases = [("observe", observe)] + ([("run", forward)] if args.run else [])
    if args.grad:
        cases += [("grad_inject", gradient_of("inject")), ("grad_through", gradient_of("through"))]
    for name, fn in cases:
        start = time.perf_counter()
        jax.block_until_ready(fn(network, inputs, k_noise))
        first = time.perf_counter() - start
        median = _median(fn, network, inputs, k_noise, repeats=args.repeats)
        rate = args.batch / median
        results[name] = {
            "first_call_s": first,
            "compile_s": max(first - median, 0.0),
            "median_s": median,
            "samples_per_second": rate,
            "fraction_of_chip": rate / chip_samples_per_second(args.time, args.dt),
        }
    report = {
        "benchmark": "chip_throughput",
        "workload": {
            "inputs": args.inputs,
            "hidden": args.hidden,
            "outputs": args.outputs,
            "time_steps": args.time,
            "dt_s": args.dt,
            "sample_s": args.time * args.dt,
            "batch": args.batch,
            "substeps": args.substeps,
            "noise": config.noisy,
            "circuits": bj.place(network).circuits_used(),
        },
        "results": results,
        "chip_samples_per_second": chip_samples_per_second(args.time, args.dt),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "cpu": cpu_model(),
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

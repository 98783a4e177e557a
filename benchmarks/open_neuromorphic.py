"""The Open Neuromorphic benchmark shape: one Linear n -> n and a LIF layer, B 16, T 500.

For each `n`, the forward pass and the forward-and-backward pass (the gradient of the
summed output spikes with respect to the weight) of: a hand-written `lax.scan` with the
input projection hoisted out of the loop (the yardstick), bss2jax (`Synapse` + `LIF`, the
reference kernel), and, when importable (benchmarks/requirements-peers.txt), spyx as its
docs write it (`spyx.nn.Sequential(nnx.Linear, spyx.nn.LIF)` stepped by `spyx.nn.run`, the
Linear inside the loop) and spyx with the Linear hoisted out of the loop (labelled
`spyx_hoisted`: a faster variant its docs do not show). Each library uses its own LIF
(bss2jax and the hand-written scan: current-based, tau_mem = tau_syn = 10 us at dt = 1 us;
spyx: a voltage LIF, beta 0.9), so this compares cost at equal shape. Inputs are
Bernoulli(0.1) spikes. Rounds alternate between the implementations; medians and ratios to
the yardstick are reported, compile time apart.

    python benchmarks/open_neuromorphic.py                          # n = 512, 2048
    python benchmarks/open_neuromorphic.py --sizes 1024,4096,16384  # on a GPU
    python benchmarks/open_neuromorphic.py --sizes 64 --time 20 --rounds 2   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import bss2jax as bj

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import cpu_model, emit  # noqa: E402
from train_step import _superspike  # noqa: E402  (SuperSpike, alpha 50)

DT, TAU = 1e-6, 10e-6


def handwritten(weight, inputs):
    """Hoisted projection, then a current-based LIF scan (decay dt / tau, threshold 1)."""
    decay = 1 - DT / TAU

    def step(carry, current_in):
        v, i = carry
        v = decay * v + (DT / TAU) * i
        i = decay * i + current_in
        z = _superspike(v - 1.0)
        return ((1 - jax.lax.stop_gradient(z)) * v, i), z

    zeros = jnp.zeros(inputs.shape[1:2] + weight.shape[:1], inputs.dtype)
    _, spikes = jax.lax.scan(step, (zeros, zeros), inputs @ weight.T)
    return spikes.sum()


def make_bss2jax(n, key):
    network = bj.Sequential(
        [
            bj.Synapse(n, n, key=key),
            bj.LIF(n, leak=0.0, reset=0.0, threshold=1.0, tau_mem=TAU, tau_syn=TAU),
        ]
    )
    params, static = eqx.partition(network, bj.trainable_filter(network))

    def loss(params, inputs):
        (out,) = bj.run(eqx.combine(params, static), inputs, dt=DT)[-1:]
        return out.spikes.sum()

    return loss, params


def make_spyx(n, weight, hoisted):
    """spyx's network, or a string saying why spyx is not importable."""
    try:
        import spyx.axn
        import spyx.nn
        from flax import nnx
    except ImportError as error:
        return f"not importable: {error!r}"
    rngs = nnx.Rngs(0)
    linear = nnx.Linear(n, n, use_bias=False, rngs=rngs)
    linear.kernel[...] = weight.T
    lif = spyx.nn.LIF((n,), beta=0.9, activation=spyx.axn.superspike(50.0), rngs=rngs)
    core = spyx.nn.Sequential(lif) if hoisted else spyx.nn.Sequential(linear, lif)
    model = nnx.List([linear, core])
    graphdef, params, rest = nnx.split(model, nnx.PathContains("kernel"), ...)

    def loss(params, inputs):
        linear, core = nnx.merge(graphdef, params, rest)
        spikes, _ = spyx.nn.run(core, linear(inputs) if hoisted else inputs)
        return spikes.sum()

    return loss, params


def _compiled(loss, params, inputs):
    forward = jax.jit(loss)
    backward = jax.jit(jax.value_and_grad(loss))
    times = {}
    for name, fn in (("forward", forward), ("backward", backward)):
        start = time.perf_counter()
        jax.block_until_ready(fn(params, inputs))
        times[name] = time.perf_counter() - start
    return {"forward": forward, "backward": backward}, times


def one_size(n, args, key):
    k_weight, k_in = jax.random.split(key)
    inputs = (jax.random.uniform(k_in, (args.time, args.batch, n)) < 0.1).astype(jnp.float32)
    loss, params = make_bss2jax(n, k_weight)
    weight = params.layers[0].weight * 4.0  # strong enough to fire
    params = eqx.tree_at(lambda p: p.layers[0].weight, params, weight)
    cases = {"handwritten_scan": (handwritten, weight), "bss2jax": (loss, params)}
    skipped = {}
    for name, hoisted in (("spyx", False), ("spyx_hoisted", True)):
        peer = make_spyx(n, weight, hoisted)
        if isinstance(peer, str):
            skipped[name] = peer
        else:
            cases[name] = peer
    compiled, compile_s = {}, {}
    for name, (fn, p) in cases.items():
        compiled[name], compile_s[name] = _compiled(fn, p, inputs)
    times = {(name, kind): [] for name in cases for kind in ("forward", "backward")}
    for _ in range(args.rounds):
        for name, (_, p) in cases.items():
            for kind, fn in compiled[name].items():
                start = time.perf_counter()
                jax.block_until_ready(fn(p, inputs))
                times[name, kind].append(time.perf_counter() - start)
    medians = {key: 1e3 * statistics.median(values) for key, values in times.items()}
    spikes = {name: float(compiled[name]["forward"](p, inputs)) for name, (_, p) in cases.items()}
    return {
        "n": n,
        "median_ms": {f"{name}/{kind}": value for (name, kind), value in medians.items()},
        "ratio_to_handwritten_scan": {
            f"{name}/{kind}": value / medians["handwritten_scan", kind]
            for (name, kind), value in medians.items()
        },
        "first_call_s": compile_s,
        "output_spikes": spikes,
        "skipped": skipped,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,2048", help="comma-separated n")
    parser.add_argument("--time", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    results = [one_size(n, args, jax.random.key(n)) for n in sizes]
    report = {
        "benchmark": "open_neuromorphic",
        "workload": {"time": args.time, "batch": args.batch, "rounds": args.rounds},
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpu": cpu_model(),
        "results": results,
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

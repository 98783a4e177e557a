"""The input projection alone: dense product against the event kernels, interleaved.

For 0/1 inputs `(time, batch, in_features)` of a given density and a weight
`(out_features, in_features)`, times (a) the forward `inputs @ weight.T` and (b) the
forward with the weight gradient, for `bss2jax.kernels.projection.project` with
`method="dense"`, with `Events` built on the host (`method="events"`), and with dense
inputs compacted inside `jit` (`method="events"` on a dense array). Rounds alternate the
implementations; medians and ratios to dense are printed as JSON with the CPU model.

    python benchmarks/projection.py                               # 5 % of 700 -> 256
    python benchmarks/projection.py --density 0.02,0.05,0.1,0.2,0.3 --time 100 --batch 32
    python benchmarks/projection.py --time 4 --batch 2 --repeats 2 # smoke size
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from bss2jax.kernels import projection

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import cpu_model, emit  # noqa: E402


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def interleaved(cases: dict, repeats: int) -> dict:
    """Median seconds of each `name -> (compiled, args)`, the cases alternating per round."""
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, args) in cases.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(density, args, key):
    k_in, k_w, k_g = jax.random.split(key, 3)
    shape = (args.time, args.batch, args.inputs)
    dense = (jax.random.uniform(k_in, shape) < density).astype(jnp.float32)
    weight = 0.05 * jax.random.normal(k_w, (args.outputs, args.inputs))
    cotangent = jax.random.normal(k_g, (args.time, args.batch, args.outputs))
    start = time.perf_counter()
    events = projection.from_numpy(np.asarray(dense))
    host_seconds = time.perf_counter() - start
    capacity = events.capacity

    def forward(method):
        return lambda x, w: projection.project(x, w, method=method, capacity=capacity)

    def with_grad(method):
        def fn(x, w):
            value, pullback = jax.vjp(lambda w: forward(method)(x, w), w)
            return value, pullback(cotangent)[0]

        return fn

    cases, compile_s = {}, {}
    for label, method, x in (
        ("dense", "dense", dense),
        ("events", "events", events),
        ("events_compacted_in_jit", "events", dense),
    ):
        for kind, make in (("forward", forward), ("forward_and_weight_gradient", with_grad)):
            name = f"{label}/{kind}"
            cases[name], compile_s[name] = _compile(make(method), x, weight)
            cases[name] = (cases[name], (x, weight))
            jax.block_until_ready(cases[name][0](x, weight))
    reference = cases["dense/forward_and_weight_gradient"][0](dense, weight)
    check = cases["events/forward_and_weight_gradient"][0](events, weight)
    error = max(float(jnp.abs(a - b).max()) for a, b in zip(reference, check, strict=True))
    medians = interleaved(cases, args.repeats)
    ratios = {
        name: value / medians["dense/" + name.split("/")[1]] for name, value in medians.items()
    }
    return {
        "density": density,
        "capacity": capacity,
        "host_compaction_ms": 1e3 * host_seconds,
        "max_abs_difference_to_dense": error,
        "median_ms": {k: 1e3 * v for k, v in medians.items()},
        "ratio_to_dense": ratios,
        "compile_s": compile_s,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=700)
    parser.add_argument("--outputs", type=int, default=256)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--density", default="0.05", help="comma-separated densities")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    key = jax.random.PRNGKey(0)
    results = [measure(float(d), args, key) for d in args.density.split(",")]
    report = {
        "workload": vars(args),
        "cpu": cpu_model(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "results": results,
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

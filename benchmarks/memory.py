"""Peak memory of one train step against the number of time steps: dense and lean.

Workload A (700 Bernoulli(0.05) inputs -> 256 LIF -> 20 LI, cross-entropy of the
max-over-time readout, gradient of both weights, Adam update), B = 32, for each T and each
mode, in a fresh process (peak RSS, `VmHWM` of /proc/self/status, includes JAX's own
~0.2 GiB):

- `dense`: what `bj.run` does today: 0/1 inputs as float32 `(T, B, 700)`, the input
  current of all steps in one matrix product, the reference scan (`kernels.cuba`).
- `lean`: inputs as `Events` built on the host, in time chunks, the input current
  computed per segment inside the checkpointed scan (`kernels.cuba.lean` with
  `kernels.projection`), the hidden spikes projected onto the readout inside the
  same segments (`keep`: the `(T, B, 256)` spikes are never whole, neither forward nor
  as a cotangent), the readout integrated by the lean scan too.

    python benchmarks/memory.py                          # T = 1000, 5000, 10000
    python benchmarks/memory.py --time 50 --modes lean   # smoke size

Prints one JSON object (also with the CPU model and the JAX version).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import cpu_model, emit, peak_rss_bytes  # noqa: E402

DT = 1e-6
TAU = 6e-6
CAPACITANCE = 10e-6


def _current_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def one(mode: str, time_steps: int, batch: int, inputs: int, hidden: int, outputs: int):
    """One train step of `mode` in this process; returns the figures (run in a child)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from kernels import cuba, projection  # the shipped bss2jax.kernels, JAX only
    from kernels.cuba import lean

    @jax.custom_jvp
    def spike(x):
        return (x > 0).astype(x.dtype)

    @spike.defjvp
    def _(primals, tangents):
        return spike(primals[0]), tangents[0] / (50.0 * jnp.abs(primals[0]) + 1.0) ** 2

    def params(n):
        values = (0.0, 0.0, 1.0, TAU, TAU, CAPACITANCE, 1e-6, 1.0, 1.0, 0.0, 0.0, 1e-5)
        return cuba.CubaParams(*(jnp.full((n,), v, jnp.float32) for v in values))

    lif, li = cuba.CubaFlags(), cuba.CubaFlags(fire=False, refractory=False)
    rng = np.random.default_rng(0)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    w1 = 4 * jax.random.uniform(k1, (hidden, inputs), minval=-1, maxval=1) / inputs**0.5
    w2 = jax.random.uniform(k2, (outputs, hidden), minval=-1, maxval=1) / hidden**0.5
    labels = jnp.asarray(np.arange(batch) % outputs)
    baseline = _current_rss_bytes()

    chunk = 500  # draw the spikes in time chunks: the lean mode never holds them whole

    def spikes(t):
        return rng.random((min(chunk, time_steps - t), batch, inputs)) < 0.05

    if mode == "dense":
        data = jnp.concatenate(
            [jnp.asarray(spikes(t), jnp.float32) for t in range(0, time_steps, chunk)]
        )

        def loss(weights, data):
            w1, w2 = weights
            hidden_out = cuba.integrate(params(hidden), lif, data @ w1.T, dt=DT, spike_fn=spike)
            readout = cuba.integrate(
                params(outputs), li, hidden_out.spikes @ w2.T, dt=DT, spike_fn=spike
            )
            return optax.softmax_cross_entropy_with_integer_labels(
                readout.membrane.max(0), labels
            ).mean()
    else:
        parts = [
            np.asarray(projection.from_numpy(spikes(t), capacity=80, by_input=False).indices)
            for t in range(0, time_steps, chunk)
        ]
        data = jnp.asarray(np.concatenate(parts))
        del parts

        def loss(weights, data):
            w1, w2 = weights

            def project(indices):
                events = projection.Events(indices, None, inputs)
                return projection.project(events, w1, method="events")

            def keep(out):  # the hidden spikes projected onto the readout, per segment
                return out.spikes @ w2.T

            readout_input = lean.integrate(
                params(hidden), lif, data, dt=DT, spike_fn=spike, project=project, keep=keep
            )
            readout = lean.integrate(params(outputs), li, readout_input, dt=DT, spike_fn=spike)
            return optax.softmax_cross_entropy_with_integer_labels(
                readout.membrane.max(0), labels
            ).mean()

    optimizer = optax.adam(1e-3)
    weights = (w1, w2)
    state = optimizer.init(weights)

    def step(weights, state, data):
        value, grads = jax.value_and_grad(loss)(weights, data)
        updates, state = optimizer.update(grads, state, weights)
        return optax.apply_updates(weights, updates), state, value

    start = time.perf_counter()
    compiled = jax.jit(step).lower(weights, state, data).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
    start = time.perf_counter()
    _, _, value = jax.block_until_ready(compiled(weights, state, data))
    step_s = time.perf_counter() - start
    return {
        "mode": mode,
        "time": time_steps,
        "batch": batch,
        "loss": float(value),
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_compile_bytes": baseline,
        "xla_temp_bytes": temp,
        "input_bytes": int(data.nbytes),
        "compile_s": compile_s,
        "step_s": step_s,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="1000,5000,10000", help="comma-separated T")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=700)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=20)
    parser.add_argument("--modes", default="dense,lean")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    sizes = (args.batch, args.inputs, args.hidden, args.outputs)
    if args.child:
        mode, steps = args.child.split(":")
        print(json.dumps(one(mode, int(steps), *sizes)))
        return None
    rows = []
    for steps in (int(t) for t in args.time.split(",")):
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--child", f"{mode}:{steps}"]
            command += ["--batch", str(args.batch), "--inputs", str(args.inputs)]
            command += ["--hidden", str(args.hidden), "--outputs", str(args.outputs)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append({"mode": mode, "time": steps, "failed": done.stderr[-2000:]})
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["peak_rss_gib"] = row["peak_rss_bytes"] / 2**30
            rows.append(row)
    import jax

    report = {"cpu": cpu_model(), "jax": jax.__version__, "workload": vars(args), "rows": rows}
    return emit(report, args.output)


if __name__ == "__main__":
    main()

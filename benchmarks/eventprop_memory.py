"""Peak memory of a gradient through `bj.run`: surrogate against EventProp, against T.

Workload: Bernoulli(`--rate`) inputs -> LIF -> LI, cross-entropy of the max-over-time
readout, gradient of both weights (`jax.value_and_grad` of one `bj.run`), batch `--batch`,
for each T and each mode, in a fresh process. Modes:

- `surrogate`: `bj.run` as today (reference scan, its residuals every step).
- `lean`: the surrogate with `integrator="lean"` (checkpointed scan, sqrt(T) segments).
- `eventprop`: `gradient=bj.EventProp()`: spike mask and slopes stored densely.
- `compact`: `gradient=bj.EventProp(max_spikes=K)`, K = the forward's hidden spike count
  rounded up to a multiple of 1024: what the backward keeps grows with the spikes.

Figures: XLA's temporary buffers of the compiled step (`memory_analysis`, the scan
residuals and the backward's work arrays; the inputs and weights not included) and the
process's peak RSS (`VmHWM`, includes JAX's own ~0.2 GiB).

    python benchmarks/eventprop_memory.py                      # T = 1000, 5000, 10000
    python benchmarks/eventprop_memory.py --time 100 --batch 2 # smoke size

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
MODES = ("surrogate", "lean", "eventprop", "compact")


def one(mode: str, steps: int, batch: int, inputs: int, hidden: int, outputs: int, rate: float):
    """One gradient of `mode` in this process; returns the figures (run in a child)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import bss2jax as bj

    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    network = bj.Sequential(
        [
            bj.Synapse(inputs, hidden, weight=jax.random.uniform(k1, (hidden, inputs)) * 0.3),
            bj.LIF(hidden, leak=0.0, reset=0.0, threshold=1.0, tau_mem=6e-6, tau_syn=6e-6),
            bj.Synapse(hidden, outputs, weight=jax.random.normal(k2, (outputs, hidden)) * 0.3),
            bj.LI(outputs, leak=0.0, tau_mem=6e-6, tau_syn=6e-6),
        ]
    )
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.random((steps, batch, inputs)) < rate, jnp.float32)
    labels = jnp.asarray(np.arange(batch) % outputs)
    spikes = int(jax.jit(lambda n, x: jnp.sum(bj.run(n, x, dt=DT)[0].spikes))(network, data))
    options: dict = {}
    if mode == "lean":
        options = {"integrator": "lean"}
    elif mode == "eventprop":
        options = {"gradient": bj.EventProp()}
    elif mode == "compact":
        options = {"gradient": bj.EventProp(max_spikes=max(1024, -(-spikes // 1024) * 1024))}

    def loss(network, data):
        _, readout = bj.run(network, data, dt=DT, **options)
        scores = readout.membrane_cadc.max(0)
        return optax.softmax_cross_entropy_with_integer_labels(scores, labels).mean()

    step = jax.jit(jax.value_and_grad(loss))
    start = time.perf_counter()
    compiled = step.lower(network, data).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
    start = time.perf_counter()
    value, grads = jax.block_until_ready(compiled(network, data))
    step_s = time.perf_counter() - start
    finite = bool(jnp.all(jnp.isfinite(grads.layers[0].weight)))
    return {
        "mode": mode,
        "time": steps,
        "batch": batch,
        "hidden_spikes": spikes,
        "max_spikes": getattr(options.get("gradient"), "max_spikes", None),
        "loss": float(value),
        "finite_gradient": finite,
        "xla_temp_bytes": temp,
        "peak_rss_bytes": peak_rss_bytes(),
        "input_bytes": int(data.nbytes),
        "compile_s": compile_s,
        "step_s": step_s,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="1000,5000,10000", help="comma-separated T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.02, help="input spike probability")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    sizes = (args.batch, args.inputs, args.hidden, args.outputs, args.rate)
    if args.child:
        mode, steps = args.child.split(":")
        print(json.dumps(one(mode, int(steps), *sizes)))
        return None
    rows = []
    for steps in (int(t) for t in args.time.split(",")):
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--child", f"{mode}:{steps}"]
            for flag in ("batch", "inputs", "hidden", "outputs", "rate"):
                command += [f"--{flag}", str(getattr(args, flag))]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append({"mode": mode, "time": steps, "failed": done.stderr[-2000:]})
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            for name in ("xla_temp", "peak_rss"):
                row[f"{name}_mib"] = (row[f"{name}_bytes"] or 0) / 2**20
            rows.append(row)
    import jax

    report = {"cpu": cpu_model(), "jax": jax.__version__, "workload": vars(args), "rows": rows}
    return emit(report, args.output)


if __name__ == "__main__":
    main()

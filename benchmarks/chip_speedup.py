"""Chip-model speed-up: this checkout's `ChipModel.observe` against a baseline commit's.

The workload is `chip_throughput.py`'s (Cramer et al.'s 256-246-10 layout on all 512
circuits, 20 steps of 1.7 us, sub-step dt / 10, all noise on, a calibrated random chip,
Bernoulli(0.05) inputs). The baseline's `bss2jax` package is extracted with `git archive`
into a temporary folder; each version runs in its own worker process (one thread pool
each, never both at once), compiled before timing. Rounds alternate baseline / current,
`--calls` timed calls each (`block_until_ready`), so that load on the machine hits both
alike; the report gives each version's median per call, samples per second, and the ratio
of the medians. Each worker also returns its first outputs, and the report says whether the
two versions' recordings are equal bit for bit (same key, chip and inputs).

    python benchmarks/chip_speedup.py                       # batch 100, 7 rounds x 3 calls
    python benchmarks/chip_speedup.py --batch 4 --rounds 2 --calls 1      # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE = "fce8f6f"  # the commit before issue 14's chip-model work

WORKER = r"""
import hashlib, json, sys, time
sys.path.insert(0, {benchmarks!r})
import jax, jax.numpy as jnp, numpy as np, equinox as eqx
import bss2jax as bj
from chip_throughput import build
args = json.loads(sys.argv[1])
key = jax.random.PRNGKey(0)
k_net, k_chip, k_in, k_noise = jax.random.split(key, 4)
network = build(args["inputs"], args["hidden"], args["outputs"], k_net)
chip = bj.ChipInstance.random(k_chip)
config = bj.ChipConfig(substeps=args["substeps"])
backend = bj.ChipModel(chip, config)
shape = (args["time"], args["batch"], args["inputs"])
inputs = (jax.random.uniform(k_in, shape) < args["rate"]).astype(jnp.float32)
observe = eqx.filter_jit(lambda n, x, k: backend.observe(n, x, dt=args["dt"], key=k))
start = time.perf_counter()
out = jax.block_until_ready(observe(network, inputs, k_noise))
first = time.perf_counter() - start
digest = hashlib.sha256()
for leaf in jax.tree.leaves(out):
    digest.update(np.asarray(leaf).tobytes())
print(json.dumps({{"first_call_s": first, "digest": digest.hexdigest(),
                  "package": bj.__file__}}), flush=True)
for line in sys.stdin:
    times = []
    for _ in range(int(line)):
        start = time.perf_counter()
        jax.block_until_ready(observe(network, inputs, k_noise))
        times.append(time.perf_counter() - start)
    print(json.dumps(times), flush=True)
"""


def _worker(package_root: Path, workload: dict) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(package_root))
    code = WORKER.format(benchmarks=str(HERE))
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(workload)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # so that `import bss2jax` finds PYTHONPATH's, not ./
    )


def _extract(revision: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "bss2jax"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def main(argv=None) -> dict:
    sys.path.insert(0, str(HERE))
    from _report import cpu_model, emit
    from chip_throughput import add_workload_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    add_workload_arguments(parser)
    parser.add_argument("--rounds", type=int, default=7, help="alternations old / new")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per round")
    parser.add_argument("--output", type=str, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    workload = {k: getattr(args, k) for k in ("inputs", "hidden", "outputs", "time", "dt")}
    workload |= {k: getattr(args, k) for k in ("batch", "substeps", "rate")}

    with tempfile.TemporaryDirectory() as folder:
        _extract(args.baseline, Path(folder))
        workers, info = {}, {}
        for name, root in (("baseline", Path(folder)), ("current", ROOT)):  # compile in turn
            workers[name] = _worker(root, workload)
            info[name] = json.loads(workers[name].stdout.readline())
        times: dict[str, list[float]] = {name: [] for name in workers}
        for _ in range(args.rounds):
            for name, worker in workers.items():
                worker.stdin.write(f"{args.calls}\n")
                worker.stdin.flush()
                times[name] += json.loads(worker.stdout.readline())
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
            worker.stdout.close()
    results = {}
    for name, series in times.items():
        median = statistics.median(series)
        results[name] = {
            "first_call_s": info[name]["first_call_s"],
            "median_s": median,
            "samples_per_second": args.batch / median,
            "calls": len(series),
        }
    import jax

    report = {
        "benchmark": "chip_speedup",
        "baseline": args.baseline,
        "workload": workload,
        "results": results,
        "speedup": results["baseline"]["median_s"] / results["current"]["median_s"],
        "bit_identical": info["baseline"]["digest"] == info["current"]["digest"],
        "jax": jax.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

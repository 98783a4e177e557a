"""Samples per second against the number of devices: data-parallel training and a sweep over
chip instances, both sharded with a `jax.sharding.Mesh` (`bj.batch_mesh`).

Workload: hxtorch's Yin-Yang network as in `sweep_chips.py` (5 inputs repeated 5 times ->
`--hidden` LIF -> 3 LI, 38 steps of 1 us; untrained: the cost does not depend on the
weights) on the chip model (`ChipModel`, calibrated random chips, all noise on).

- `train`: one jitted train step (cross-entropy, Adam, gradient injected from the chip
  model), the batch of `--batch-size` samples split over the devices;
  samples/s = batch size / median step time.
- `sweep`: `bj.sweep(accuracy, {"chip": ..., "key": ...}, product=False, mesh=mesh,
  chunk_size=--chunk-size)` over `--chips` chips of `--test-size` samples each;
  samples/s = chips x test size / median sweep time.

Each device count runs in its own interpreter: on the CPU the devices are forced host
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`, which must be set before
JAX is imported); they share the machine's cores, so N devices cannot beat the core count.
With `--platform gpu` the first N real devices are used. The first call (compilation plus
one run) is timed apart; the steady state is the median of `--repeats` further calls, each
`block_until_ready`. The JSON names the device, the core count and the load.

    python benchmarks/scaling.py                                   # 1, 2, 4 devices, both
    python benchmarks/scaling.py --cases sweep --chips 256 --devices 1,4
    python benchmarks/scaling.py --devices 1,2 --chips 4 --test-size 8 --batch-size 8 \
        --hidden 8 --repeats 1                                     # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import emit  # noqa: E402


def _time(fn, repeats):
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "first_call_s": first,
        "median_s": statistics.median(times),
        "times_s": times,
        "cpu_median_s": statistics.median(cpu),
    }


def _train(args, mesh, network, scores):
    import jax
    import optax

    import bss2jax as bj
    import bss2jax.data as bd

    train, _ = bd.yin_yang_splits(args.batch_size, 10, train_seed=42, test_seed=41)
    chip = bj.ChipInstance.random(jax.random.PRNGKey(1000))
    backend = bj.ChipModel(chip)

    def loss(net, batch, *, key, backend):
        s = scores(net, batch.coordinates, key=key, backend=backend)
        return bj.cross_entropy(s, batch.labels)

    step = bj.make_train_step(loss, optax.adam(1e-3), mesh=mesh)
    opt_state = step.init(network)
    key = jax.random.PRNGKey(0)
    result = _time(lambda: step(network, opt_state, train, key=key, backend=backend), args.repeats)
    result["samples_per_second"] = args.batch_size / result["median_s"]
    return result


def _sweep(args, mesh, network, scores):
    import jax

    import bss2jax as bj
    import bss2jax.data as bd

    _, test = bd.yin_yang_splits(10, args.test_size, train_seed=42, test_seed=41)
    chips = jax.vmap(bj.ChipInstance.random)(jax.random.split(jax.random.PRNGKey(1000), args.chips))
    keys = jax.random.split(jax.random.PRNGKey(2000), args.chips)

    def accuracy(chip, key):
        s = scores(network, test.coordinates, key=key, backend=bj.ChipModel(chip))
        return bj.accuracy(s, test.labels)

    def swept():
        axes = {"chip": chips, "key": keys}
        return bj.sweep(accuracy, axes, product=False, chunk_size=args.chunk_size, mesh=mesh)

    result = _time(lambda: swept().values, args.repeats)
    result["samples_per_second"] = args.chips * args.test_size / result["median_s"]
    result["chips_per_second"] = args.chips / result["median_s"]
    result["mean_accuracy"] = float(swept().values.mean())
    return result


def child(args) -> dict:
    """One device count, in this interpreter (XLA_FLAGS already set by the parent)."""
    import jax

    sys.path.insert(0, str(Path(__file__).parent))
    from sweep_chips import make_network, scores

    import bss2jax as bj

    mesh = bj.batch_mesh(args.child)
    network = make_network(args.hidden, jax.random.PRNGKey(args.seed))
    report = {
        "devices": args.child,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
    }
    if "train" in args.cases:
        report["train"] = _train(args, mesh, network, scores)
    if "sweep" in args.cases:
        report["sweep"] = _sweep(args, mesh, network, scores)
    return report


def _speedups(runs: list[dict], case: str) -> None:
    base = next((r[case] for r in runs if r["devices"] == 1 and case in r), None)
    for r in runs:
        if base is not None and case in r:
            r[case]["speedup_over_1_device"] = base["median_s"] / r[case]["median_s"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="comma-separated device counts")
    parser.add_argument("--cases", default="train,sweep", help="comma-separated: train, sweep")
    parser.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batch-size", type=int, default=64, help="train: samples per step")
    parser.add_argument("--chips", type=int, default=64, help="sweep: chip instances")
    parser.add_argument("--test-size", type=int, default=200, help="sweep: samples per chip")
    parser.add_argument("--chunk-size", type=int, default=4, help="sweep: chips per device+call")
    parser.add_argument("--hidden", type=int, default=120, help="hidden LIF neurons")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the JSON report here")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    if set(args.cases) - {"train", "sweep"}:
        parser.error(f"unknown --cases {args.cases}")
    if args.child is not None:
        print(json.dumps(child(args)))
        return {}
    counts = [int(n) for n in args.devices.split(",")]
    runs = []
    for n in counts:
        env = dict(os.environ)
        if args.platform == "cpu":
            flags = env.get("XLA_FLAGS", "")
            env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
            env["JAX_PLATFORMS"] = "cpu"
        command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
        command += ["--child", str(n)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"the run on {n} devices failed")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for case in args.cases:
        _speedups(runs, case)
    import jax

    report = {
        "benchmark": "scaling",
        "workload": {
            "network": f"25 -> {args.hidden} LIF -> 3 LI, 38 steps of 1 us",
            "backend": "ChipModel, calibrated random chips, default config (noise on)",
            "batch_size": args.batch_size,
            "chips": args.chips,
            "test_size": args.test_size,
            "chunk_size_per_device": args.chunk_size,
        },
        "runs": runs,
        "cpu_cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "jax": jax.__version__,
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

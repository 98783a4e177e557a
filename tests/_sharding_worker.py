"""Run in a subprocess by `test_sharding.py`: XLA_FLAGS (forced host devices) must be set
before JAX is imported, so each device count gets a fresh interpreter.

    python tests/_sharding_worker.py train --devices 4 --out result.json
    python tests/_sharding_worker.py sweep --devices 4 --out result.json
    python tests/_sharding_worker.py hardware --devices 4 --out result.json
    python tests/_sharding_worker.py fit --devices 2 --process-id 0 --processes 2 \
        --coordinator 127.0.0.1:PORT --out result.json        # one of two processes

Each case runs the same job with and without a mesh and writes the largest differences
(and the sharded results) as JSON; the test asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _setup(devices: int) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"
    os.environ["JAX_PLATFORMS"] = "cpu"


def _small_job(backend_name: str, batch: int = 8):
    import jax

    import bss2jax as bj
    import bss2jax.data as bd
    from bss2jax import yinyang

    config = yinyang.YinYangConfig(
        train_size=4 * batch, test_size=batch, hidden=8, batch_size=batch
    )
    train, test = bd.yin_yang_splits(config.train_size, config.test_size)
    network = yinyang.yin_yang_network(config, key=jax.random.key(0))
    loss = yinyang.YinYangLoss.from_config(config)
    chip = bj.ChipInstance.random(jax.random.key(3))
    backend = {
        "numeric": bj.Numeric(),
        "chip": bj.ChipModel(chip),
        "through": bj.ChipModel(chip, gradient="through"),
        "random": bj.RandomChips(chips_per_call=2),
    }[backend_name]
    return network, loss, train, test, backend


def _difference(a, b) -> float:
    import jax
    import numpy as np

    differences = [0.0]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.inexact):
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            with np.errstate(invalid="ignore"):
                difference = np.abs(np.where(same, 0, x - y))
            differences.append(float(np.max(difference, initial=0.0)))
        elif not np.array_equal(x, y):
            differences.append(float("inf"))
    return max(differences)


def _train(backends: list[str]) -> dict:
    import jax
    import optax

    import bss2jax as bj

    mesh = bj.batch_mesh()
    result = {}
    for name in backends:
        network, loss, train, _, backend = _small_job(name)
        optimiser = optax.adam(5e-3)
        runs = []
        for m in (None, mesh):
            step = bj.make_train_step(loss, optimiser, mesh=m)
            net, opt_state = network, step.init(network)
            for b in range(2):
                batch = jax.tree.map(lambda x, b=b: x[8 * b : 8 * (b + 1)], train)
                net, opt_state, metrics = step(
                    net, opt_state, batch, key=jax.random.key(b), backend=backend
                )
            runs.append((net, metrics))
        result[name] = {
            "network": _difference(runs[0][0], runs[1][0]),
            "loss": abs(float(runs[0][1]["loss"]) - float(runs[1][1]["loss"])),
            "sharding": str(jax.tree.leaves(runs[1][0])[0].sharding),
        }
    return result


def _sweep(backends) -> dict:
    import jax
    import jax.numpy as jnp

    import bss2jax as bj
    from bss2jax import yinyang

    mesh = bj.batch_mesh()
    network, loss, _, test, _ = _small_job("numeric")
    chips = jax.vmap(bj.ChipInstance.random)(jax.random.split(jax.random.key(1), 8))
    keys = jax.random.split(jax.random.key(2), 8)

    def accuracy(chip, key):
        scores, _ = loss.scores(network, test.coordinates, key=key, backend=bj.ChipModel(chip))
        return bj.accuracy(scores, test.labels)

    def spikes(scale, tau):
        config = yinyang.YinYangConfig(hidden=8, tau=tau, weight_scale=scale)
        net = yinyang.yin_yang_network(config, key=jax.random.key(0))
        hidden, _ = loss.scores(net, test.coordinates, key=jax.random.key(0), backend=bj.Numeric())
        return {"count": hidden.sum(), "first": hidden[:, 0].sum()}

    grid = {"scale": jnp.array([20.0, 30.0, 40.0]), "tau": jnp.array([4e-6, 6e-6])}
    grid_plain = bj.sweep(spikes, grid)
    grid_sharded = bj.sweep(spikes, grid, mesh=mesh)
    result = {
        "grid": _difference(grid_plain.values, grid_sharded.values),
        "grid_shape": list(grid_sharded.values["count"].shape),
    }
    if "chip" in backends:  # 8 chips: 3 per call unsharded; 1 per device and call sharded
        chip_axes = {"chip": chips, "key": keys}
        plain = bj.sweep(accuracy, chip_axes, product=False, chunk_size=3)
        sharded = bj.sweep(accuracy, chip_axes, product=False, chunk_size=1, mesh=mesh)
        result["chips"] = _difference(plain.values, sharded.values)
        result["accuracies"] = [float(a) for a in sharded.values]
    return result


def _hardware() -> dict:
    import threading
    import time

    import jax
    import jax.numpy as jnp
    import optax

    import bss2jax as bj
    import bss2jax.hardware as bjh

    class Served(bjh.AbstractClient):
        """Notes which client served which slice, and when."""

        def __init__(self, inner, number, log):
            self.inner, self.number, self.log = inner, number, log

        def execute(self, request):
            start = time.perf_counter()
            raw = self.inner.execute(request)
            ident = threading.get_ident()
            self.log.append((self.number, request.batch_size, start, time.perf_counter(), ident))
            return raw

    mesh = bj.batch_mesh()
    lif = dict(leak=bj.Mixed(0.0, 80.0), reset=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 125.0))
    network = bj.Sequential(
        [
            bj.Synapse(4, 6, key=jax.random.key(0)),
            bj.LIF(6, **lif),
            bj.Synapse(6, 2, key=jax.random.key(1)),
            bj.LI(2, leak=bj.Mixed(0.0, 80.0)),
        ]
    )
    inputs = (jax.random.uniform(jax.random.key(1), (20, 8, 4)) < 0.2).astype(jnp.float32)
    config, chip = bj.ChipConfig.noiseless(), bj.ChipInstance.nominal()
    log: list = []
    inner = [bj.ChipModelClient(chip, config) for _ in range(2)]
    clients = [Served(c, i, log) for i, c in enumerate(inner)]
    try:
        one = bj.Hardware(clients[0])
        several = bj.Hardware(clients, mesh=mesh)

        def loss(net, batch, *, key, backend):
            inputs = batch.transpose(1, 0, 2)  # the step splits axis 0: samples come first
            _, readout = bj.run(net, inputs, backend=backend, key=key)
            return jnp.mean(readout.membrane_cadc**2)

        outs = {}
        cases = (("one", one, None), ("several", several, mesh), ("one_meshed", one, mesh))
        for name, backend, m in cases:
            step = bj.make_train_step(loss, optax.sgd(0.1), mesh=m)
            log.clear()
            net, _, metrics = step(
                network,
                step.init(network),
                inputs.transpose(1, 0, 2),
                key=jax.random.key(2),
                backend=backend,
            )
            outs[name] = (net, float(metrics["loss"]), list(log))
    finally:
        for c in inner:
            c.close()
    calls = outs["several"][2]
    return {
        "network": _difference(outs["one"][0], outs["several"][0]),
        # one client under a sharded step: the callback gets the whole batch on one device
        "one_meshed": _difference(outs["one"][0], outs["one_meshed"][0]),
        "one_meshed_calls": len(outs["one_meshed"][2]),
        "loss": abs(outs["one"][1] - outs["several"][1]),
        "clients_used": sorted({c[0] for c in calls}),
        "batch_sizes": sorted(c[1] for c in calls),
        "overlap": any(a[0] != b[0] and a[2] < b[3] and b[2] < a[3] for a in calls for b in calls),
    }


def _fit(args) -> dict:
    import jax
    import numpy as np
    import optax

    import bss2jax as bj

    network, loss, train, test, backend = _small_job(args.backends.split(",")[0])
    mesh = bj.batch_mesh() if args.mesh else None
    result = bj.fit(
        network,
        loss,
        optax.adam(5e-3),
        train,
        test=test,
        epochs=2,
        batch_size=8,
        key=jax.random.key(0),
        backend=backend,
        mesh=mesh,
        progress=False,
    )
    leaves = [
        np.asarray(x, np.float64).tolist()
        for x in jax.tree.leaves(result.network)
        if np.issubdtype(np.asarray(x).dtype, np.floating)
    ]
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
    return {"history": history, "leaves": leaves}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["train", "sweep", "hardware", "fit"])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--backends", default="numeric,chip,random")
    parser.add_argument("--out", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--mesh", action="store_true", help="fit: over all devices")
    args = parser.parse_args(argv)
    _setup(args.devices)
    import jax

    if args.processes > 1:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.processes,
            process_id=args.process_id,
        )
    result = {"devices": jax.device_count(), "local_devices": jax.local_device_count()}
    if args.case == "train":
        result.update(_train(args.backends.split(",")))
    elif args.case == "sweep":
        result.update(_sweep(args.backends.split(",")))
    elif args.case == "hardware":
        result.update(_hardware())
    else:
        result.update(_fit(args))
    with open(args.out, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    sys.exit(main())

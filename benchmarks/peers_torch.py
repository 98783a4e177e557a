"""Workload A's train step in snnTorch and norse (PyTorch, eager), in their own process.

The PyTorch peers never share a process with JAX: this script (run with bss2jax's Python)
starts itself again as a worker under a Python that has torch, snnTorch and norse
(`--torch-python`, e.g. a separate venv: `pip install snntorch norse`), pinned to one
thread (`torch.set_num_threads(1)`), and talks to it through a pipe. Rounds alternate:
one round of the hand-written hoisted `lax.scan` (the yardstick of `train_step.py`), one
of bss2jax (dense and event inputs), then one round of each PyTorch peer in the worker;
medians per implementation and ratios to the yardstick are reported, so that the drift of
a shared machine cancels.

Workload A (as in `train_step.py`): 700 Bernoulli(0.05) inputs -> 256 LIF -> 20 LI, T =
100, B = 32, cross-entropy of the max-over-time readout, Adam. The peers are written as
their tutorials write them: a `torch.nn.Module` with `nn.Linear` layers and the neuron
cells stepped in a Python loop over time (snnTorch `Synaptic` for the LIF layer and a
`Synaptic` without reset or spikes as the readout, tutorial 5's loop; norse `LIFCell` and
`LICell`, its cell-loop example). Their equations differ in details from bss2jax's (where
the current enters, the reset), so the comparison is of cost; the hidden spike counts are
reported beside it to show that every implementation fires alike.

    python benchmarks/peers_torch.py --torch-python /tmp/peers-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DT, TAU, CAPACITANCE = 1e-6, 6e-6, 10e-6  # as _workload.py (not imported: no JAX here)


# --- the worker: PyTorch only ---------------------------------------------------------------


def _torch_networks(w1, w2):
    """`name -> (module, forward(module, inputs) -> (readout, hidden spikes))`."""
    import norse.torch as norse
    import snntorch as snn
    import torch
    from snntorch import surrogate
    from torch import nn

    decay, gain = 1 - DT / TAU, DT / CAPACITANCE

    def linear(weight):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        layer.weight.data = torch.tensor(gain * weight, dtype=torch.float32)
        return layer

    class SnnTorchNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = linear(w1), linear(w2)
            spike_grad = surrogate.fast_sigmoid(slope=50)
            self.lif = snn.Synaptic(
                alpha=decay,
                beta=decay,
                threshold=1.0,
                spike_grad=spike_grad,
                reset_mechanism="zero",
            )
            self.li = snn.Synaptic(alpha=decay, beta=decay, reset_mechanism="none")

        def forward(self, x):
            syn1, mem1 = self.lif.init_synaptic()
            syn2, mem2 = self.li.init_synaptic()
            readout, spikes = [], []
            for step in range(x.shape[0]):
                spk, syn1, mem1 = self.lif(self.fc1(x[step]), syn1, mem1)
                _, syn2, mem2 = self.li(self.fc2(spk), syn2, mem2)
                readout.append(mem2)
                spikes.append(spk)
            return torch.stack(readout), torch.stack(spikes)

    class NorseNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = linear(w1), linear(w2)
            rate = 1 / (6 * 1e-3)  # norse's dt is 1e-3: dt * rate = dt / tau = 1/6
            lif = norse.LIFParameters(
                tau_syn_inv=torch.tensor(rate),
                tau_mem_inv=torch.tensor(rate),
                v_th=torch.tensor(1.0),
                v_leak=torch.tensor(0.0),
                v_reset=torch.tensor(0.0),
                method="super",
                alpha=torch.tensor(50.0),
            )
            li = norse.LIParameters(tau_syn_inv=torch.tensor(rate), tau_mem_inv=torch.tensor(rate))
            self.lif, self.li = norse.LIFCell(p=lif), norse.LICell(p=li)

        def forward(self, x):
            s1 = s2 = None
            readout, spikes = [], []
            for step in range(x.shape[0]):
                z, s1 = self.lif(self.fc1(x[step]) * 6.0, s1)  # norse scales input by dt*rate
                v, s2 = self.li(self.fc2(z) * 6.0, s2)
                readout.append(v)
                spikes.append(z)
            return torch.stack(readout), torch.stack(spikes)

    return {"snntorch": SnnTorchNet(), "norse": NorseNet()}


def worker(folder: str) -> None:
    """Serve `round <name> <steps>` requests on stdin with the median step time (ms)."""
    import torch

    torch.set_num_threads(1)
    data = {name: np.load(Path(folder) / f"{name}.npy") for name in ("w1", "w2", "x", "y")}
    inputs = torch.tensor(data["x"], dtype=torch.float32)
    labels = torch.tensor(data["y"], dtype=torch.long)
    nets = _torch_networks(data["w1"], data["w2"])
    optimisers = {name: torch.optim.Adam(net.parameters(), lr=1e-3) for name, net in nets.items()}

    def step(name):
        net, optimiser = nets[name], optimisers[name]
        optimiser.zero_grad()
        readout, spikes = net(inputs)
        loss = torch.nn.functional.cross_entropy(readout.max(0).values, labels)
        loss.backward()
        optimiser.step()
        return float(loss), float(spikes.sum(0).mean())

    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in nets:
        loss, spikes = step(name)  # warm-up
        info[name] = {"initial_loss": loss, "hidden_spikes_per_neuron_and_sample": spikes}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        _, name, steps = line.split()
        times = []
        for _ in range(int(steps)):
            start = time.perf_counter()
            step(name)
            times.append(time.perf_counter() - start)
        print(json.dumps({"median_ms": 1e3 * statistics.median(times)}), flush=True)


# --- the driver: JAX only -------------------------------------------------------------------


def _jax_cases(args):
    import functools

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from bss2jax.kernels import projection

    import bss2jax as bj

    sys.path.insert(0, str(HERE))
    import train_step as ts

    k_net, k_in, k_lab = jax.random.split(jax.random.PRNGKey(0), 3)
    shape = (args.time, args.batch, args.inputs)
    inputs = (jax.random.uniform(k_in, shape) < 0.05).astype(jnp.float32)
    labels = jax.random.randint(k_lab, (args.batch,), 0, args.outputs)
    net = ts.make_bss2jax(k_net, args.inputs, args.hidden, args.outputs, args.weight_gain)
    params, static = eqx.partition(net, bj.trainable_filter(net))
    weights = (net.layers[0].weight, net.layers[2].weight)
    events = projection.from_numpy(np.asarray(inputs))
    optimiser = optax.adam(1e-3)
    cases = {
        "handwritten_scan": (ts.handwritten_loss, weights, (inputs, labels)),
        "bss2jax": (functools.partial(ts.bss2jax_loss, static=static), params, (inputs, labels)),
        "bss2jax_events": (
            functools.partial(ts.bss2jax_events_loss, static=static),
            params,
            (events, labels),
        ),
    }
    compiled = {}
    for name, (loss, p, data) in cases.items():
        step = jax.jit(ts._train_step(loss, optimiser))
        arguments = (p, optimiser.init(p), *data)
        jax.block_until_ready(step(*arguments))
        compiled[name] = (step, arguments)
    spikes = float(bj.run(net, inputs, dt=DT)[0].spikes.sum(0).mean())
    arrays = {"w1": weights[0], "w2": weights[1], "x": inputs, "y": labels}
    return compiled, {k: np.asarray(v) for k, v in arrays.items()}, spikes, jax.__version__


def _jax_round(step, arguments, steps):
    import jax

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(*arguments))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", help="a Python with torch, snntorch and norse")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=int, default=700)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=20)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--weight-gain", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="train steps per round")
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return {}
    if not args.torch_python:
        parser.error("--torch-python is required (a Python with torch, snntorch and norse)")
    sys.path.insert(0, str(HERE))
    from _report import cpu_model, emit

    compiled, arrays, spikes, jax_version = _jax_cases(args)
    with tempfile.TemporaryDirectory() as folder:
        for name, value in arrays.items():
            np.save(Path(folder) / f"{name}.npy", value)
        command = [args.torch_python, __file__, "--worker", folder]
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as w:
            assert w.stdin is not None and w.stdout is not None
            info = json.loads(w.stdout.readline())
            times: dict[str, list[float]] = {name: [] for name in [*compiled, "snntorch", "norse"]}
            for _ in range(args.rounds):
                for name, (step, arguments) in compiled.items():
                    times[name].append(_jax_round(step, arguments, args.steps))
                for name in ("snntorch", "norse"):
                    w.stdin.write(f"round {name} {args.steps}\n")
                    w.stdin.flush()
                    times[name].append(json.loads(w.stdout.readline())["median_ms"])
            w.stdin.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "benchmark": "peers_torch",
        "workload": {k: v for k, v in vars(args).items() if k not in ("worker", "output")},
        "cpu": cpu_model(),
        "jax": jax_version,
        "torch_worker": info,
        "bss2jax_hidden_spikes_per_neuron_and_sample": spikes,
        "train_step_median_ms": medians,
        "ratio_to_handwritten_scan": {
            k: v / medians["handwritten_scan"] for k, v in medians.items()
        },
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

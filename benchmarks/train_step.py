"""Numeric train step: bss2jax against a hand-written hoisted `lax.scan` (and peers).

Workload (issue 2): 700 Bernoulli(0.05) inputs -> 256 LIF -> 20 LI, T = 100, B = 32,
loss = cross-entropy of the max-over-time readout, Adam. Prints one JSON object with the
compile time, forward and train-step medians, XLA's temporary memory, the JAX version and
the device; every implementation is timed in the same process, one after the other.

    python benchmarks/train_step.py                      # full size
    python benchmarks/train_step.py --time 10 --repeats 3 --hidden 16   # smoke size

The peers spyx and jaxsnn (benchmarks/requirements-peers.txt; not dependencies of bss2jax)
are timed too when importable; otherwise their entries say why they were skipped.
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from bss2jax.kernels import projection

import bss2jax as bj

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _peers import make_jaxsnn, make_spyx  # noqa: E402
from _report import cpu_model, emit  # noqa: E402
from _workload import CAPACITANCE, DT, TAU, loss_from_readout as _loss_from_readout  # noqa: E402


def _timed(fn, *args, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
    return compiled, seconds, temp


# --- bss2jax -------------------------------------------------------------------------------


def make_bss2jax(key, n_in, n_hidden, n_out, weight_gain=1.0):
    k1, k2 = jax.random.split(key)
    lif = bj.LIF(n_hidden, leak=0.0, reset=0.0, threshold=1.0, tau_mem=TAU, tau_syn=TAU)
    li = bj.LI(n_out, leak=0.0, tau_mem=TAU, tau_syn=TAU)
    net = bj.Sequential(
        [bj.Synapse(n_in, n_hidden, key=k1), lif, bj.Synapse(n_hidden, n_out, key=k2), li]
    )
    first = lambda n: n.layers[0].weight  # noqa: E731
    return eqx.tree_at(first, net, weight_gain * first(net))


def bss2jax_loss(params, inputs, labels, *, static):
    net = eqx.combine(params, static)
    _, readout = bj.run(net, inputs, dt=DT)
    return _loss_from_readout(readout.membrane_cadc, labels)


def bss2jax_events_loss(params, events, labels, *, static):
    """The same loss with the inputs as `Events` (built on the host, outside the step)."""
    net = eqx.combine(params, static)
    _, readout = bj.run(net, events, dt=DT, projection="events")
    return _loss_from_readout(readout.membrane_cadc, labels)


# --- hand-written hoisted scan with the same equations ---------------------------------------


@jax.custom_jvp
def _superspike(x):
    return (x > 0).astype(x.dtype)


@_superspike.defjvp
def _superspike_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return _superspike(x), x_dot / (50.0 * jnp.abs(x) + 1.0) ** 2


def handwritten_loss(params, inputs, labels):
    w1, w2 = params
    kappa_syn = 1 - DT / TAU
    gain = DT / CAPACITANCE
    leak_rate = DT / TAU  # dt / c * g_l with g_l = c / tau_mem
    refractory_steps = 1e-6 / DT

    def lif_step(carry, x):
        v, i, r = carry
        v = v + gain * i - leak_rate * v
        i = i * kappa_syn + x
        z = _superspike(v - 1.0)
        z_stop = jax.lax.stop_gradient(z)
        v = (1 - z_stop) * v
        refractory = (r > 0).astype(v.dtype)
        v = (1 - refractory) * v
        z = (1 - refractory) * z
        r = (1 - z) * jax.nn.relu(r - refractory) + z * refractory_steps
        return (v, i, r), z

    def li_step(carry, x):
        v, i = carry
        v = v + gain * i - leak_rate * v
        i = i * kappa_syn + x
        return (v, i), v

    batch = inputs.shape[1]
    hidden_in = inputs @ w1.T
    zeros = jnp.zeros((batch, w1.shape[0]), inputs.dtype)
    _, spikes = jax.lax.scan(lif_step, (zeros, zeros, zeros), hidden_in)
    out_in = spikes @ w2.T
    zeros = jnp.zeros((batch, w2.shape[0]), inputs.dtype)
    _, readout = jax.lax.scan(li_step, (zeros, zeros), out_in)
    return _loss_from_readout(readout, labels)


# --- driver --------------------------------------------------------------------------------


def _train_step(loss, optimizer):
    def step(params, opt_state, *data):
        value, grads = jax.value_and_grad(loss)(params, *data)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def bench(name, loss, params, data, repeats):
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)
    forward, forward_compile, _ = _compile(loss, params, *data)
    step = _train_step(loss, optimizer)
    train, train_compile, temp = _compile(step, params, opt_state, *data)
    jax.block_until_ready(train(params, opt_state, *data))
    return {
        "name": name,
        "initial_loss": float(forward(params, *data)),
        "compile_forward_s": forward_compile,
        "compile_train_step_s": train_compile,
        "forward_median_ms": 1e3 * _timed(forward, params, *data, repeats=repeats),
        "train_step_median_ms": 1e3 * _timed(train, params, opt_state, *data, repeats=repeats),
        "train_step_temp_bytes": temp,
    }


def interleaved(cases, repeats):
    """Train-step medians (ms) of `name -> (loss, params, data)`, alternating per round,
    with ratios to `handwritten_scan`; compile times apart."""
    optimizer = optax.adam(1e-3)
    compiled, compile_s = {}, {}
    for name, (loss, params, data) in cases.items():
        opt_state = optimizer.init(params)
        step = _train_step(loss, optimizer)
        compiled[name], compile_s[name], _ = _compile(step, params, opt_state, *data)
        compiled[name] = (compiled[name], (params, opt_state, *data))
        jax.block_until_ready(compiled[name][0](*compiled[name][1]))
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, args) in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    medians = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    return {
        "train_step_median_ms": medians,
        "ratio_to_handwritten_scan": {
            name: value / medians["handwritten_scan"] for name, value in medians.items()
        },
        "compile_train_step_s": compile_s,
        "rounds": repeats,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=700)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=20)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--weight-gain",
        type=float,
        default=4.0,
        help="multiplies the torch-like initial input weights so that hidden neurons spike",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip spyx and jaxsnn (and the sequential table)"
    )
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)

    key = jax.random.PRNGKey(0)
    k_net, k_in, k_lab = jax.random.split(key, 3)
    inputs = (jax.random.uniform(k_in, (args.time, args.batch, args.inputs)) < 0.05).astype(
        jnp.float32
    )
    labels = jax.random.randint(k_lab, (args.batch,), 0, args.outputs)
    net = make_bss2jax(k_net, args.inputs, args.hidden, args.outputs, args.weight_gain)
    # Train the weights, as the hand-written scan does; a second entry trains every float
    # leaf (neuron parameters too), which adds one reduction per parameter to the backward.
    params, static = eqx.partition(net, bj.trainable_filter(net))
    all_params, all_static = eqx.partition(net, eqx.is_inexact_array)
    weights = (net.layers[0].weight, net.layers[2].weight)

    # Both implementations integrate the same equations: their losses must agree.
    ours = bss2jax_loss(params, inputs, labels, static=static)
    theirs = handwritten_loss(weights, inputs, labels)
    if not jnp.allclose(ours, theirs, rtol=1e-4):
        raise RuntimeError(f"implementations disagree: loss {ours} against {theirs}")
    # The event path: inputs compacted on the host, as a data pipeline would (timed apart).
    start = time.perf_counter()
    events = projection.from_numpy(np.asarray(inputs))
    host_events_ms = 1e3 * (time.perf_counter() - start)
    events_loss = functools.partial(bss2jax_events_loss, static=static)
    dense_value, dense_grads = jax.value_and_grad(bss2jax_loss)(
        params, inputs, labels, static=static
    )
    event_value, event_grads = jax.value_and_grad(events_loss)(params, events, labels)
    gradient_difference = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(dense_grads), jax.tree.leaves(event_grads), strict=True)
    )
    gradient_scale = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(dense_grads))
    if not jnp.allclose(dense_value, event_value, rtol=1e-5):
        raise RuntimeError(f"event path disagrees: loss {event_value} against {dense_value}")
    comparison = interleaved(
        {
            "handwritten_scan": (handwritten_loss, weights, (inputs, labels)),
            "bss2jax": (
                functools.partial(bss2jax_loss, static=static),
                params,
                (inputs, labels),
            ),
            "bss2jax_events": (events_loss, params, (events, labels)),
        },
        args.repeats,
    )
    comparison |= {
        "events_capacity": events.capacity,
        "host_events_ms": host_events_ms,
        "event_loss_minus_dense": float(event_value - dense_value),
        "event_gradient_max_abs_difference": gradient_difference,
        "gradient_max_abs": gradient_scale,
    }
    if args.no_peers:
        report = {
            "workload": vars(args),
            "cpu": cpu_model(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "interleaved": comparison,
        }
        return emit(report, args.output)

    results = [
        bench(
            "bss2jax",
            functools.partial(bss2jax_loss, static=static),
            params,
            (inputs, labels),
            args.repeats,
        ),
        bench("handwritten_scan", handwritten_loss, weights, (inputs, labels), args.repeats),
        bench(
            "bss2jax_all_parameters",
            functools.partial(bss2jax_loss, static=all_static),
            all_params,
            (inputs, labels),
            args.repeats,
        ),
    ]
    peers = {
        "spyx": make_spyx(weights),
        "jaxsnn": make_jaxsnn(weights, args.time),
    }
    for name, peer in peers.items():
        if isinstance(peer, str):
            results.append({"name": name, "skipped": peer})
            continue
        loss, peer_params = peer
        result = bench(name, loss, peer_params, (inputs, labels), args.repeats)
        if not math.isfinite(result["initial_loss"]):
            raise RuntimeError(f"{name}: non-finite initial loss {result['initial_loss']}")
        results.append(result)
    report = {
        "hidden_spikes_per_neuron_and_sample": float(
            bj.run(net, inputs, dt=DT)[0].spikes.sum(0).mean()
        ),
        "workload": vars(args) | {"loss": "cross-entropy of max-over-time LI readout, Adam"},
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "interleaved": comparison,
        "results": results,
    }
    return emit(report, args.output)


if __name__ == "__main__":
    main()

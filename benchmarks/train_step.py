"""Numeric train step: bss2jax against a hand-written hoisted `lax.scan` (and peers).

Workload (issue 2): 700 Bernoulli(0.05) inputs -> 256 LIF -> 20 LI, T = 100, B = 32,
loss = cross-entropy of the max-over-time readout, Adam. Prints one JSON object with the
compile time, forward and train-step medians, XLA's temporary memory, the JAX version and
the device; every implementation is timed in the same process, one after the other.

    python benchmarks/train_step.py                      # full size
    python benchmarks/train_step.py --time 10 --repeats 3 --hidden 16   # smoke size
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import bss2jax as bj

DT = 1e-6
TAU = 6e-6
CAPACITANCE = 10e-6


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


def _loss_from_readout(readout, labels):
    logits = jnp.max(readout, axis=0)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# --- bss2jax -------------------------------------------------------------------------------


def make_bss2jax(key, n_in, n_hidden, n_out):
    k1, k2 = jax.random.split(key)
    lif = bj.LIF(n_hidden, leak=0.0, reset=0.0, threshold=1.0, tau_mem=TAU, tau_syn=TAU)
    li = bj.LI(n_out, leak=0.0, tau_mem=TAU, tau_syn=TAU)
    return bj.Sequential(
        [bj.Synapse(n_in, n_hidden, key=k1), lif, bj.Synapse(n_hidden, n_out, key=k2), li]
    )


def bss2jax_loss(params, inputs, labels, *, static):
    net = eqx.combine(params, static)
    _, readout = bj.run(net, inputs, dt=DT)
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
        "compile_forward_s": forward_compile,
        "compile_train_step_s": train_compile,
        "forward_median_ms": 1e3 * _timed(forward, params, *data, repeats=repeats),
        "train_step_median_ms": 1e3 * _timed(train, params, opt_state, *data, repeats=repeats),
        "train_step_temp_bytes": temp,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=700)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=20)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", help="also write the JSON to this file")
    args = parser.parse_args(argv)

    key = jax.random.PRNGKey(0)
    k_net, k_in, k_lab = jax.random.split(key, 3)
    inputs = (jax.random.uniform(k_in, (args.time, args.batch, args.inputs)) < 0.05).astype(
        jnp.float32
    )
    labels = jax.random.randint(k_lab, (args.batch,), 0, args.outputs)
    net = make_bss2jax(k_net, args.inputs, args.hidden, args.outputs)
    # Train the weights, as the hand-written scan does; a second entry trains every float
    # leaf (neuron parameters too), which adds one reduction per parameter to the backward.
    only_weights = jax.tree.map(lambda _: False, net)
    only_weights = eqx.tree_at(
        lambda n: (n.layers[0].weight, n.layers[2].weight), only_weights, replace=(True, True)
    )
    params, static = eqx.partition(net, only_weights)
    all_params, all_static = eqx.partition(net, eqx.is_inexact_array)
    weights = (net.layers[0].weight, net.layers[2].weight)

    # Both implementations integrate the same equations: their losses must agree.
    ours = bss2jax_loss(params, inputs, labels, static=static)
    theirs = handwritten_loss(weights, inputs, labels)
    if not jnp.allclose(ours, theirs, rtol=1e-4):
        raise RuntimeError(f"implementations disagree: loss {ours} against {theirs}")

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
    report = {
        "workload": vars(args) | {"loss": "cross-entropy of max-over-time LI readout, Adam"},
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()

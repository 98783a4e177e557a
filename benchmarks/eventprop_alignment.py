"""How well EventProp's and the surrogate's gradients point downhill on Yin-Yang.

The Yin-Yang loss of `bss2jax train` (hxtorch's network, 1 us grid) is piecewise constant
in the hidden weights on the grid, so the reference is the gradient of the loss smoothed
by Gaussian noise of std `--sigma` on the hidden weights, estimated by antithetic finite
differences over `--pairs` noise draws (`E[(L(w + s e) - L(w - s e)) / (2 s) e]`). The
script prints the cosine of EventProp's and of the surrogate's hidden-weight gradient
with that reference and with each other, at the initial network of `--seed` (or the one
in `--network`, written by `eventprop_explore.py --save`), on the
first `--samples` training samples, for the readout decoded by its maximum or its mean
over time (`--decoder`; scale 10 / 20 as in `bss2jax train`).

    python benchmarks/eventprop_alignment.py --decoder max
    python benchmarks/eventprop_alignment.py --decoder mean
    python benchmarks/eventprop_alignment.py --pairs 1000 --samples 20   # smoke size

Prints one JSON object (with the CPU model and the JAX version); the cosines with the
reference converge (up) as `--pairs` grows: compare decoders at equal `--pairs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside it
from _report import emit, machine  # noqa: E402

from bss2jax import data as bd  # noqa: E402
from bss2jax.yinyang import YinYangConfig, YinYangLoss, yin_yang_network  # noqa: E402
from bss2jax.yinyang._command import make_backend  # noqa: E402
from bss2jax.yinyang._options import DECODERS  # noqa: E402


def cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def alignment(decoder, sigma, pairs, samples, seed, chunk, network_path=None):
    """The three cosines and the gradients' norms (a dict)."""
    config = dataclasses.replace(YinYangConfig(), decoder=decoder, readout_scale=DECODERS[decoder])
    loss = YinYangLoss.from_config(config, training=False)
    train, _ = bd.yin_yang_splits(config.train_size, config.test_size)
    batch = (jnp.asarray(train[0][:samples]), jnp.asarray(train[1][:samples]))
    network = yin_yang_network(config, key=jax.random.fold_in(jax.random.key(seed), 0))
    if network_path:
        network = eqx.tree_deserialise_leaves(network_path, network)
    w0 = network.layers[0].weight

    def value(w, gradient):
        net = eqx.tree_at(lambda n: n.layers[0].weight, network, w)
        backend = make_backend("numeric", gradient=gradient)
        return loss(net, batch, key=jax.random.key(0), backend=backend)[0]

    surrogate = jax.grad(value)(w0, "inject")
    eventprop = jax.grad(value)(w0, "eventprop")
    difference = jax.jit(
        jax.vmap(
            lambda e: (
                (value(w0 + sigma * e, "inject") - value(w0 - sigma * e, "inject")) / (2 * sigma)
            )
        )
    )
    total, key = jnp.zeros_like(w0), jax.random.key(seed + 1)
    for _ in range(max(1, pairs // chunk)):
        key, draw = jax.random.split(key)
        noise = jax.random.normal(draw, (chunk, *w0.shape))
        total = total + jnp.einsum("n,nij->ij", difference(noise), noise)
    smoothed = total / (max(1, pairs // chunk) * chunk)
    return {
        "cos_eventprop_smoothed": cosine(eventprop, smoothed),
        "cos_surrogate_smoothed": cosine(surrogate, smoothed),
        "cos_eventprop_surrogate": cosine(eventprop, surrogate),
        "norms": {
            "eventprop": float(jnp.linalg.norm(eventprop)),
            "surrogate": float(jnp.linalg.norm(surrogate)),
            "smoothed": float(jnp.linalg.norm(smoothed)),
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoder", choices=tuple(DECODERS), default="max")
    parser.add_argument("--sigma", type=float, default=0.02)
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--network", default=None, help="a trained network (eventprop_explore --save)"
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    for name in ("pairs", "chunk", "samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be a positive int; got {getattr(args, name)}.")
    if not args.sigma > 0:
        raise ValueError(f"`--sigma` must be positive; got {args.sigma}.")
    chunk = min(args.chunk, args.pairs)
    report = {"machine": machine(), "settings": vars(args) | {"chunk": chunk}}
    report |= alignment(
        args.decoder, args.sigma, args.pairs, args.samples, args.seed, chunk, args.network
    )
    return emit(report, args.output)


if __name__ == "__main__":
    main()

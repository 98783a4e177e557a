"""The peers of `train_step.py`, written the way their own docs write them: spyx and jaxsnn.

Optional (benchmarks/requirements-peers.txt): each `make_*` returns `(loss, params)`, or a
string saying why the peer is not importable.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
from _workload import CAPACITANCE, DT, TAU, loss_from_readout as _loss_from_readout

# --- peers: spyx and jaxsnn, with their own layers --------------------------------------------
#
# Both start from bss2jax's initial weights, rescaled so that one unit of weight moves the
# membrane as much as in bss2jax, whose current enters as dt / C * i per step (spyx: i, so
# x dt / C = 0.1; jaxsnn: dt / tau_mem * i, so x tau / C = 0.6), and train only those two
# weight matrices (the rescaling also rescales Adam's step in bss2jax's units; the timing
# does not care). Decay per step 1 - dt / tau = 5/6 for current and membrane, threshold 1,
# leak 0. What the peers' layers cannot express (checked: with these changes made to the
# hand-written scan, both peers reproduce its hidden spikes and readout to float rounding):
# - Neither has bss2jax's refractory step (bss2jax clamps a neuron for one step after it
#   spikes, and carries a counter for it), and in both the readout sees the hidden spikes
#   one step earlier (readout[t] equals bss2jax's readout[t + 1]).
# - spyx `CuBaLIF` resets by subtracting the threshold instead of to 0 (it tests the membrane
#   before the step's update: same step index as bss2jax, whose update adds the previous
#   step's current); spyx's `LI` has no synaptic current, so the readout is two spyx `LI`s
#   in series (current, then membrane). Surrogate spyx `superspike(50)`, as bss2jax's.
#   Idiomatic spyx: the input projection hoisted out of the scan (all T steps in one
#   matmul), the rest a `spyx.nn.Sequential` stepped by `spyx.nn.run`; the LIF state is
#   V and I concatenated, split and re-concatenated each step.
# - jaxsnn's discrete `LIF`/`LI` (tau_syn = tau_mem = 6 us at dt = 1 us, reset to 0) are
#   otherwise bss2jax's Euler equations; its Heaviside is 0.5 exactly at threshold.
#   Surrogate: jaxsnn's superspike with alpha = 50 (its default is 80). Idiomatic jaxsnn:
#   a `Topology` graph of per-sample modules, every projection inside the scan, and
#   `jax.vmap` over the batch, as in its examples.


def _spyx_loss(weights, inputs, labels, *, graphdef, rest):
    from flax import nnx

    net = nnx.merge(graphdef, weights, rest)
    return _loss_from_readout(net(inputs), labels)


def make_spyx(weights):
    """`(loss, params)` of the spyx network, or a string saying why spyx is unavailable."""
    try:
        import spyx.axn
        import spyx.nn
        from flax import nnx
    except ImportError as error:
        return f"not importable: {error!r}"
    w1, w2 = weights
    gain = DT / CAPACITANCE
    kappa, decay = 1 - DT / TAU, 1 - DT / TAU

    def constant(value):
        return lambda key, shape, dtype=jnp.float32: jnp.asarray(value, dtype).reshape(shape)

    class Net(nnx.Module):
        def __init__(self, rngs):
            n_hidden, n_in = w1.shape
            n_out = w2.shape[0]
            self.projection = nnx.Linear(
                n_in, n_hidden, use_bias=False, kernel_init=constant(gain * w1.T), rngs=rngs
            )
            self.core = spyx.nn.Sequential(
                spyx.nn.CuBaLIF(
                    (n_hidden,),
                    alpha=kappa,
                    beta=decay,
                    threshold=1.0,
                    activation=spyx.axn.superspike(50.0),
                    rngs=rngs,
                ),
                nnx.Linear(
                    n_hidden, n_out, use_bias=False, kernel_init=constant(gain * w2.T), rngs=rngs
                ),
                spyx.nn.LI((n_out,), beta=kappa, rngs=rngs),
                spyx.nn.LI((n_out,), beta=decay, rngs=rngs),
            )

        def __call__(self, inputs):
            readout, _ = spyx.nn.run(self.core, self.projection(inputs))
            return readout

    net = Net(nnx.Rngs(0))
    # Train the two kernels only; alpha and beta (also `nnx.Param`s) stay fixed.
    graphdef, params, rest = nnx.split(net, nnx.PathContains("kernel"), ...)
    return functools.partial(_spyx_loss, graphdef=graphdef, rest=rest), params


def _jaxsnn_loss(params, inputs, labels, *, apply):
    _, outputs = apply({"inp": inputs}, params)
    return _loss_from_readout(outputs["li"], labels)


def make_jaxsnn(weights, steps):
    """`(loss, params)` of the jaxsnn network, or a string saying why jaxsnn is unavailable."""
    # Importing jaxsnn warns that the hardware package (hxtorch) is missing, and calls
    # `logging.basicConfig` unless its logger has a handler somewhere: keep both quiet.
    jaxsnn_logger = logging.getLogger("jaxsnn")
    level = jaxsnn_logger.level
    if not jaxsnn_logger.hasHandlers():
        jaxsnn_logger.addHandler(logging.NullHandler())
    jaxsnn_logger.setLevel(logging.ERROR)
    try:
        from jaxsnn.discrete.functional import LIFParameters, LIParameters
        from jaxsnn.discrete.functional.threshold import superspike
        from jaxsnn.discrete.modules import LI, LIF, Input, Linear
        from jaxsnn.discrete.topology import Topology
    except ImportError as error:
        return f"not importable: {error!r}"
    finally:
        jaxsnn_logger.setLevel(level)
    w1, w2 = weights
    # jaxsnn adds dt / tau_mem * i per step, bss2jax dt / C * i.
    scale = TAU / CAPACITANCE
    lif = LIFParameters(tau_syn=TAU, tau_mem=TAU, v_th=1.0, v_leak=0.0, v_reset=0.0)
    li = LIParameters(tau_syn=TAU, tau_mem=TAU, v_leak=0.0)

    def surrogate(x):
        return superspike(x, 50.0)

    topology = Topology(time_steps=steps, dt=DT)
    topology.add(
        {
            "inp": Input(w1.shape[1]),
            "syn_ih": Linear(pre_weights=scale * w1.T),
            "lif": LIF(w1.shape[0], lif, method=surrogate),
            "syn_ho": Linear(pre_weights=scale * w2.T),
            "li": LI(w2.shape[0], li),
        }
    )
    topology.connect([("inp", "syn_ih"), ("syn_ih", "lif"), ("lif", "syn_ho"), ("syn_ho", "li")])
    init, apply = topology.done()
    # Weights for the projections, None for the populations (no trainable parameters).
    params = init(jax.random.PRNGKey(0))
    # Per-sample model: map over the batch axis of the time-major data, time-major out.
    apply = jax.vmap(apply, in_axes=(1, None), out_axes=1)
    return functools.partial(_jaxsnn_loss, apply=apply), params

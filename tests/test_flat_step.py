"""`TrainStep.flatten`: the step on the network's array leaves equals `TrainStep` bit for
bit, `scan` equals its steps one by one, a non-finite step is flagged (and skipped when
asked), and two flat steps of the same structure share one compiled program."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import bss2jax as bj
import bss2jax.data as bd
from bss2jax import yinyang

ADAM = optax.adam(3e-2)


def _job():
    config = yinyang.YinYangConfig(train_size=60, test_size=10, hidden=8, batch_size=20)
    train, _ = bd.yin_yang_splits(config.train_size, config.test_size)
    network = yinyang.yin_yang_network(config, key=jax.random.key(0))
    batches = [
        jax.tree.map(lambda a, i=i: jnp.asarray(a[20 * i : 20 * (i + 1)]), train) for i in range(3)
    ]
    return network, yinyang.YinYangLoss.from_config(config), batches


def _arrays(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def test_flat_steps_equal_the_train_step_bit_for_bit_and_scan_equals_the_steps():
    network, loss, batches = _job()
    step = bj.make_train_step(loss, ADAM, constrain=yinyang.clip_weights)
    keys = [jax.random.key(k) for k in range(3)]
    reference, state = network, step.init(network)
    losses = []
    for batch, key in zip(batches, keys, strict=True):
        reference, state, metrics = step(reference, state, batch, key=key)
        losses.append(float(metrics["loss"]))
    flat = step.flatten(network)
    leaves, flat_state = flat.leaves, step.init(network)
    for batch, key in zip(batches, keys, strict=True):
        out = flat.step(leaves, flat_state, batch, key=key)
        leaves, flat_state = out.leaves, out.opt_state
        assert bool(out.finite)
    for a, b in zip(_arrays(reference), _arrays(flat.network(leaves)), strict=True):
        np.testing.assert_array_equal(a, b)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *batches)
    scanned = flat.scan(flat.leaves, step.init(network), stacked, keys=jnp.stack(keys))
    np.testing.assert_allclose(np.asarray(scanned.metrics["loss"]), losses, rtol=1e-6)
    for a, b in zip(_arrays(reference), scanned.leaves, strict=True):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    assert np.asarray(scanned.finite).all()


def _sqrt_loss(params, batch, *, key, backend):
    return jnp.sqrt(params["w"]) + 0.0 * jnp.sum(batch)


def test_a_nonfinite_step_is_flagged_and_skipped_when_asked():
    # sqrt(w) with SGD(1) from w = 1: w = 0.5, then 0.5 - 1/(2 sqrt 0.5) < 0, then NaN
    step = bj.make_train_step(_sqrt_loss, optax.sgd(1.0))
    params, batch = {"w": jnp.array(1.0)}, jnp.zeros((1,))
    for skip, expected in ((False, [True, True, False]), (True, [True, True, False])):
        flat = step.flatten(params, skip_nonfinite=skip)
        leaves, state, flags = flat.leaves, step.init(params), []
        for k in range(3):
            out = flat.step(leaves, state, batch, key=jax.random.key(k))
            leaves, state = out.leaves, out.opt_state
            flags.append(bool(out.finite))
        assert flags == expected
        w = float(flat.network(leaves)["w"])
        if skip:  # the state from before the third step
            np.testing.assert_allclose(w, 0.5 - 1 / (2 * np.sqrt(0.5)), rtol=1e-6)
        else:
            assert np.isnan(w)


def test_flat_steps_of_one_structure_share_their_compiled_program():
    network, loss, batches = _job()
    step = bj.make_train_step(loss, ADAM)
    first = step.flatten(network)
    first.step(first.leaves, step.init(network), batches[0], key=jax.random.key(0))
    from bss2jax._train._flat import _step

    size = _step._cache_size()
    again = bj.make_train_step(loss, ADAM).flatten(network)
    again.step(again.leaves, step.init(network), batches[1], key=jax.random.key(1))
    assert _step._cache_size() == size

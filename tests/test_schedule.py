"""`bj.fit_hardware_aware`: the phased hardware-aware schedule (numerics with training
noise, then the chip model in the loop on several chips per step)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bss2jax as bj
import bss2jax.data as bd

BOUND = 0.05  # |w| <= 63 / scale with the scale below


def _network(key, n_in=6, hidden=8, classes=3):
    k1, k2 = jax.random.split(key)
    scale = bj.linear_saturating(63.0 / BOUND)
    return bj.Sequential(
        [
            bj.Synapse(
                n_in, hidden, weight=0.3 * jax.random.normal(k1, (hidden, n_in)), transform=scale
            ),
            bj.LIF.model_space(hidden),
            bj.Synapse(
                hidden,
                classes,
                weight=0.3 * jax.random.normal(k2, (classes, hidden)),
                transform=scale,
            ),
            bj.LI.model_space(classes),
        ]
    )


def _loss(network, batch, *, key, backend):
    inputs, labels = batch
    _, readout = bj.run(network, jnp.swapaxes(inputs, 0, 1), backend=backend, key=key)
    scores = bd.max_over_time(readout.membrane_cadc)
    return bj.cross_entropy(scores, labels), {"accuracy": bj.accuracy(scores, labels)}


def _data(key, samples=20, steps=10, n_in=6):
    inputs = (jax.random.uniform(key, (samples, steps, n_in)) < 0.3).astype(jnp.float32)
    return inputs, jnp.arange(samples, dtype=jnp.int32) % 3


@functools.cache
def _chip():
    return bj.ChipInstance.random(jax.random.PRNGKey(0))


def test_schedule_checks_its_arguments(getkey):
    network, train = _network(getkey()), _data(getkey())
    common = dict(chip=_chip(), key=getkey(), batch_size=10)
    cases = [
        (dict(numerics_epochs=0, chip_epochs=0), ValueError, "both 0: nothing to train"),
        (
            dict(numerics_epochs=-1),
            ValueError,
            "`numerics_epochs` must be a non-negative int; got -1",
        ),
        (dict(chip_epochs=1.5), ValueError, "`chip_epochs` must be a non-negative int; got 1.5"),
        (
            dict(chips_per_call=3),
            ValueError,
            "`chips_per_call` \\(3\\) must divide `batch_size` \\(10\\)",
        ),
        (
            dict(numerics_loss=bj.hardware_aware(_loss, draws=4)),
            ValueError,
            "`draws` \\(4\\) must divide `batch_size` \\(10\\)",
        ),
        (dict(backend=bj.Numeric()), TypeError, "sets `bj.fit`'s \\['backend'\\] itself"),
        (dict(numerics_loss="noisy"), TypeError, "`numerics_loss` must be callable"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            bj.fit_hardware_aware(network, _loss, train, **{**common, **extra})
    with pytest.raises(TypeError, match="`chip` must be a bj.ChipInstance"):
        bj.fit_hardware_aware(network, _loss, train, **{**common, "chip": bj.ChipModel(_chip())})


@pytest.mark.slow  # two compilations of a train step: 15-50 s on the 2-core box
def test_numerics_phase_is_fit_with_training_noise_and_clipping(getkey):
    # chip_epochs=0: the schedule is exactly one `bj.fit` of `bj.hardware_aware(loss)` (5
    # draws per batch) on the numerics, `bj.clip_weights` after each step, key fold_in(key, 0).
    network, train, key = _network(getkey()), _data(getkey()), getkey()
    assert float(jnp.max(jnp.abs(network.layers[0].weight))) > 4 * BOUND  # clipping will bind
    result = bj.fit_hardware_aware(
        network,
        _loss,
        train,
        chip=_chip(),
        key=key,
        batch_size=10,
        numerics_epochs=2,
        chip_epochs=0,
        numerics_optimiser=optax.adam(1e-2),
        progress=False,
        diagnose=False,
    )
    assert list(result.histories) == ["numerics"] and len(result.histories["numerics"]) == 2
    for index in (0, 2):
        assert float(jnp.max(jnp.abs(result.network.layers[index].weight))) <= BOUND * (1 + 1e-6)
    expected = bj.fit(
        network,
        bj.hardware_aware(_loss, draws=5),
        optax.adam(1e-2),
        train,
        epochs=2,
        batch_size=10,
        key=jax.random.fold_in(key, 0),
        eval_loss=_loss,
        constrain=bj.clip_weights,
        progress=False,
        diagnose=False,
    )
    assert eqx.tree_equal(result.network, expected.network)
    assert not eqx.tree_equal(result.network, network)  # it trained


@pytest.mark.slow
def test_both_phases_run_clip_and_checkpoint(getkey, tmp_path):
    network, train, key, chip = _network(getkey()), _data(getkey()), getkey(), _chip()
    test = _data(getkey(), samples=10)

    def schedule():  # the same call twice: the second resumes
        return bj.fit_hardware_aware(
            network,
            _loss,
            train,
            test=test,
            chip=chip,
            key=key,
            batch_size=10,
            numerics_epochs=1,
            chip_epochs=2,
            chips_per_call=2,
            output=tmp_path,
            config={"task": "tiny"},
            progress=False,
            diagnose=False,
        )

    result = schedule()
    assert list(result.histories) == ["numerics", "chips"]
    assert [len(h) for h in result.histories.values()] == [1, 2]
    assert "test_accuracy" in result.histories["chips"][-1]
    for index in (0, 2):
        assert float(jnp.max(jnp.abs(result.network.layers[index].weight))) <= BOUND * (1 + 1e-6)
    for phase in ("numerics", "chips"):
        assert (tmp_path / phase / "checkpoint.npz").exists()
        assert (tmp_path / phase / "metrics.json").exists()
    # the chip phase is `bj.fit` from the numerics phase's network on RandomChips anchored
    # on the target chip, evaluated on it
    backend = bj.RandomChips(anchor=chip, anchor_probability=0.3, chips_per_call=2)
    expected = bj.fit(
        result.results["numerics"].network,
        _loss,
        optax.adam(3e-4),
        train,
        test=test,
        epochs=2,
        batch_size=10,
        key=jax.random.fold_in(key, 1),
        backend=backend,
        eval_backend=bj.ChipModel(chip),
        constrain=bj.clip_weights,
        progress=False,
        diagnose=False,
    )
    assert eqx.tree_equal(result.network, expected.network)
    np.testing.assert_allclose(
        result.histories["chips"][-1]["test_accuracy"], expected.history[-1]["test_accuracy"]
    )
    # a rerun with the same output resumes: both phases are complete, nothing trains
    again = schedule()
    assert eqx.tree_equal(again.network, result.network)

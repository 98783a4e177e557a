"""The jitted train step, fit (checkpoints, resume), evaluation on other backends."""

from __future__ import annotations

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tree_allclose

import bss2jax as bj
import bss2jax.data as bd
from bss2jax import yinyang

ADAM = optax.adam(5e-3)  # one object: the compiled step is cached per optimiser


def small_job(hidden: int = 16):
    config = yinyang.YinYangConfig(train_size=120, test_size=60, hidden=hidden, batch_size=20)
    train, test = bd.yin_yang_splits(config.train_size, config.test_size)
    network = yinyang.yin_yang_network(config, key=jax.random.key(0))
    return network, yinyang.YinYangLoss.from_config(config), train, test


def test_train_step_lowers_the_loss():
    network, loss, train, _ = small_job()
    step = bj.make_train_step(loss, optax.adam(3e-2))
    opt_state = step.init(network)
    batch = jax.tree.map(jnp.asarray, train)
    key = jax.random.key(0)
    first = None
    for _ in range(20):
        network, opt_state, metrics = step(network, opt_state, batch, key=key)
        first = float(metrics["loss"]) if first is None else first
    assert set(metrics) == {"loss", "accuracy"}
    assert float(metrics["loss"]) < 0.8 * first


def test_train_step_trains_weights_only_and_keeps_masks():
    key = jax.random.key(1)
    mask = jax.random.bernoulli(key, 0.5, (8, 4))
    network = bj.Sequential(
        [
            bj.Synapse(4, 8, weight=jnp.full((8, 4), 2.0), mask=mask),
            bj.LIF(8, leak=0.0, reset=0.0, threshold=1.0),
            bj.Synapse(8, 2, key=jax.random.key(2)),
            bj.LI(2, leak=0.0),
        ]
    )
    inputs = (jax.random.uniform(key, (20, 3, 4)) < 0.3).astype(jnp.float32)
    labels = jnp.array([0, 1, 0])

    def loss(net, batch, *, key, backend):
        x, y = batch
        _, readout = bj.run(net, x, backend=backend, key=key)
        return bj.cross_entropy(bd.max_over_time(readout.membrane_cadc) * 10, y)

    step = bj.make_train_step(loss, optax.sgd(1.0))
    new, _, metrics = step(network, step.init(network), (inputs, labels), key=key)
    assert set(metrics) == {"loss"}
    assert new.layers[0].mask.dtype == jnp.bool_
    np.testing.assert_array_equal(new.layers[0].mask, mask)
    assert not np.allclose(new.layers[2].weight, network.layers[2].weight)
    assert not np.allclose(new.layers[0].weight, network.layers[0].weight)
    # neuron parameters and the transform do not train by default
    assert tree_allclose(new.layers[1], network.layers[1])
    assert tree_allclose(new.layers[0].transform, network.layers[0].transform)


def test_train_step_constrain_and_errors():
    network, loss, train, _ = small_job()
    clip = yinyang.clip_weights
    step = bj.make_train_step(loss, optax.sgd(1e3), constrain=clip)
    batch = jax.tree.map(jnp.asarray, train)
    new, _, _ = step(network, step.init(network), batch, key=jax.random.key(0))
    bound = 63 / network.layers[0].transform.scale
    assert float(jnp.max(jnp.abs(new.layers[0].weight))) <= bound + 1e-6
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        bj.make_train_step(loss, "adam")
    with pytest.raises(TypeError, match="`backend` must be a bss2jax backend"):
        step(network, step.init(network), batch, key=jax.random.key(0), backend="chip")


def test_training_noise_perturbs_weights_and_neurons():
    network, _, _, _ = small_job()
    key = jax.random.key(4)
    same = yinyang.perturb(network, key, 0.0, 0.0)
    assert tree_allclose(same, network, rtol=0, atol=0)
    noisy = yinyang.perturb(network, key, 0.05, 0.1, 0.03)
    ratio = noisy.layers[0].weight / network.layers[0].weight
    assert 0.02 < float(jnp.std(ratio)) < 0.3 and abs(float(jnp.mean(ratio)) - 1) < 0.05
    lif = noisy.layers[1]
    assert lif.threshold.model.shape == (16,) and float(jnp.std(lif.threshold.model)) > 0.01
    # the chip value moves by the same potential: 70 LSB per model unit (80..150 vs 0..1)
    np.testing.assert_allclose(
        lif.threshold.hardware - 150.0, 70.0 * (lif.threshold.model - 1.0), rtol=1e-4, atol=1e-4
    )
    assert float(jnp.std(noisy.layers[3].tau_mem)) > 0
    config = yinyang.YinYangConfig(weight_noise=0.03, neuron_noise=0.03)
    assert yinyang.YinYangLoss.from_config(config).neuron_noise == config.neuron_noise
    assert yinyang.YinYangLoss.from_config(config, training=False).weight_noise == 0.0


def test_noise_draws_give_each_group_of_the_batch_its_own_perturbation():
    network, _, train, _ = small_job(hidden=8)
    config = yinyang.YinYangConfig(hidden=8, weight_noise=0.1, gain_noise=0.1, noise_draws=2)
    loss = yinyang.YinYangLoss.from_config(config)
    coordinates = train.coordinates[:6]
    key = jax.random.key(2)
    scores, spikes = loss.scores(network, coordinates, key=key, backend=bj.Numeric())
    assert scores.shape == (6, 3) and spikes.shape == (config.steps, 6, 8)
    clean = dataclasses.replace(config, weight_noise=0.0, gain_noise=0.0, noise_draws=1)
    plain = yinyang.YinYangLoss.from_config(clean)
    for group, group_key in enumerate(jax.random.split(key, 2)):
        noise_key, run_key = jax.random.split(group_key)
        perturbed = yinyang.perturb(network, noise_key, 0.1, 0.1, 0.0)
        part = slice(3 * group, 3 * group + 3)
        expected, hidden = plain.scores(
            perturbed, coordinates[part], key=run_key, backend=bj.Numeric()
        )
        np.testing.assert_allclose(scores[part], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(spikes[:, part], hidden)
    # the two groups met different perturbations: the same samples score differently
    twice = jnp.concatenate([coordinates[:3], coordinates[:3]])
    doubled, _ = loss.scores(network, twice, key=key, backend=bj.Numeric())
    assert not np.allclose(doubled[:3], doubled[3:])
    assert yinyang.YinYangLoss.from_config(config, training=False).noise_draws == 1
    with pytest.raises(ValueError, match=r"`noise_draws` \(2\) must divide the batch size"):
        loss.scores(network, coordinates[:5], key=key, backend=bj.Numeric())


def test_yin_yang_loss_holds_only_what_it_reads():
    # phases that differ in optimiser, size or epochs only share one evaluation loss (one
    # compilation); a setting the loss reads makes another loss
    pre = yinyang.YinYangLoss.from_config(yinyang.CHIP_PRETRAINING, training=False)
    tune = yinyang.YinYangLoss.from_config(yinyang.CHIP_FINE_TUNING, training=False)
    assert pre == tune and hash(pre) == hash(tune)
    assert yinyang.YinYangLoss.from_config(yinyang.CHIP_PRETRAINING) != pre
    other = dataclasses.replace(yinyang.CHIP_FINE_TUNING, readout_scale=5.0)
    assert yinyang.YinYangLoss.from_config(other, training=False) != tune
    noisy = yinyang.YinYangLoss.from_config(yinyang.CHIP_PRETRAINING)
    assert (noisy.gain_noise, noisy.noise_draws) == (0.07, 5)
    assert (noisy.config.steps, noisy.config.dt) == (38, 1e-6)


def test_run_phases_needs_a_key_for_a_phase_without_one():
    from bss2jax._train._schedule import Phase, run_phases

    network, loss, train, _ = small_job()
    skipped = Phase("skipped", 0, loss, ADAM, bj.Numeric())
    assert run_phases(network, train, [skipped], batch_size=20).histories == {}
    with pytest.raises(ValueError, match="phase 'first' has no key, and `key` is None"):
        run_phases(network, train, [skipped._replace(name="first", epochs=1)], batch_size=20)


def test_readout_only_training_keeps_the_hidden_layer():
    network, loss, train, _ = small_job()
    step = bj.make_train_step(loss, optax.adam(1e-2), trainable=yinyang.readout_weights)
    batch = jax.tree.map(jnp.asarray, train)
    new, _, _ = step(network, step.init(network), batch, key=jax.random.key(0))
    np.testing.assert_array_equal(new.layers[0].weight, network.layers[0].weight)
    assert not np.allclose(new.layers[2].weight, network.layers[2].weight)


def test_loss_must_return_a_scalar():
    network, _, train, _ = small_job()
    step = bj.make_train_step(lambda n, b, *, key, backend: jnp.ones(3), optax.sgd(0.1))
    with pytest.raises(ValueError, match="a loss must return a scalar"):
        step(network, step.init(network), jax.tree.map(jnp.asarray, train), key=jax.random.key(0))


def test_checkpoint_round_trip_without_pickle(tmp_path):
    network, _, _, _ = small_job()
    optimiser = optax.adam(1e-3)
    opt_state = optimiser.init(eqx.filter(network, eqx.is_inexact_array))
    path = tmp_path / "ck.npz"
    bj.save_checkpoint(path, (network, opt_state), {"epoch": 3})
    fresh = small_job()[0]
    fresh = eqx.tree_at(lambda n: n.layers[0].weight, fresh, fresh.layers[0].weight * 0)
    (loaded, state), meta = bj.load_checkpoint(path, (fresh, opt_state))
    assert meta == {"epoch": 3}
    assert tree_allclose(loaded, network, rtol=0, atol=0)
    assert tree_allclose(state, opt_state, rtol=0, atol=0)
    with np.load(path, allow_pickle=False) as file:  # nothing needs unpickling
        assert all(file[name].dtype != object for name in file.files)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary files left
    with pytest.raises(ValueError, match="does not fit the given structure"):
        bj.load_checkpoint(path, (small_job(hidden=17)[0], opt_state))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    network, _, _, _ = small_job()
    path = tmp_path / "ck.npz"
    bj.save_checkpoint(path, network, {"n": 1})
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        bj.save_checkpoint(path, network, {"n": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


class Interrupt(Exception):
    pass


def _fit(network, loss, train, test, **kwargs):
    return bj.fit(
        network,
        loss,
        ADAM,
        train,
        test=test,
        epochs=2,
        batch_size=20,
        key=jax.random.key(7),
        progress=False,
        **kwargs,
    )


def test_fit_resumes_after_an_interruption(tmp_path):
    network, loss, train, test = small_job()
    reference = _fit(network, loss, train, test)
    assert [h["epoch"] for h in reference.history] == [1, 2]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy"} <= set(
        reference.history[0]
    )
    assert reference.resumed_step is None

    def crash(info):
        if info["step"] == 8:  # 6 batches per epoch, checkpoints every 4 steps
            raise Interrupt

    output = tmp_path / "run"
    with pytest.raises(Interrupt):
        _fit(network, loss, train, test, output=output, checkpoint_every=4, callback=crash)
    meta = json.loads(json.loads(json.dumps(_read_metadata(output / "checkpoint.npz"))))
    assert meta["metadata"]["step"] == 8  # the checkpoint after step index 7
    resumed = _fit(network, loss, train, test, output=output, checkpoint_every=4)
    assert resumed.resumed_step == 8
    assert tree_allclose(resumed.network, reference.network, rtol=0, atol=0)
    for got, want in zip(resumed.history, reference.history, strict=True):
        for name in ("train_loss", "test_loss", "test_accuracy"):
            assert got[name] == pytest.approx(want[name], rel=1e-6)
    metrics = json.loads((output / "metrics.json").read_text())
    assert len(metrics["history"]) == 2


def _read_metadata(path):
    with np.load(path, allow_pickle=False) as file:
        return str(file["__metadata__"])


def test_fit_refuses_a_checkpoint_of_another_configuration(tmp_path):
    network, loss, train, test = small_job()
    _fit(network, loss, train, None, output=tmp_path, config={"lr": 1})
    with pytest.raises(ValueError, match="different configuration \\(differs in \\['lr'\\]\\)"):
        _fit(network, loss, train, None, output=tmp_path, config={"lr": 2})


def test_fit_argument_errors():
    network, loss, train, _ = small_job()
    with pytest.raises(ValueError, match="`batch_size` must not exceed"):
        bj.fit(network, loss, optax.sgd(0.1), train, epochs=1, batch_size=1000, key=None)
    with pytest.raises(ValueError, match="`epochs` must be a positive int"):
        bj.fit(network, loss, optax.sgd(0.1), train, epochs=0, batch_size=10, key=None)
    with pytest.raises(ValueError, match="same leading"):
        bj.fit(
            network,
            loss,
            optax.sgd(0.1),
            (np.zeros((5, 4)), np.zeros(4)),
            epochs=1,
            batch_size=2,
            key=None,
        )


def test_evaluate_on_several_backends():
    network, loss, _, test = small_job()
    key = jax.random.key(3)
    one = bj.evaluate(network, loss, test, key=key)
    chunked = bj.evaluate(network, loss, test, key=key, batch_size=25)
    assert one["accuracy"] == pytest.approx(chunked["accuracy"])
    assert one["loss"] == pytest.approx(chunked["loss"], rel=1e-5)
    both = bj.evaluate_backends(network, loss, test, [bj.Numeric(), bj.Numeric()], key=key)
    assert both == [one, one]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "threshold"),
    [
        (["--backend", "numeric"], 0.96),
        ([], 0.95),  # the default: the chip model in inject mode
        (["--gradient", "through"], 0.96),
    ],
    ids=["numeric", "chip-inject", "chip-through"],
)
def test_yin_yang_accuracy_gate(tmp_path, options, threshold):
    """The main job reaches the issue's accuracy, mean over seeds 0, 1, 2 (as reported); the
    default run also on its own (issue 12: `bss2jax train` with its defaults, seed 0)."""
    from bss2jax._cli import main

    finals = []
    for seed in (0, 1, 2):
        output = tmp_path / f"seed{seed}"
        args = ["train", *options, "--seed", str(seed), "--output", str(output)]
        assert main([*args, "--no-progress", "--no-plots"]) == 0
        finals.append(json.loads((output / "metrics.json").read_text())["final"])
    accuracy = float(np.mean([f["test_accuracy"] for f in finals]))
    assert accuracy >= threshold, f"mean accuracy {100 * accuracy:.2f} %"
    if options == []:  # the default run: >= 95 % on its chip, at most 2 points lost on chips 1-5
        default = finals[0]
        assert default["test_accuracy"] >= 0.95, f"seed 0: {100 * default['test_accuracy']:.2f} %"
        assert default["transfer_mean_drop"] <= 0.02, (
            f"seed 0: mean drop {100 * default['transfer_mean_drop']:.2f} points"
        )
        drops = [f["transfer_mean_drop"] for f in finals]
        assert np.mean(drops) <= 0.02, f"mean drop {100 * np.mean(drops):.2f} points"

"""Hardware-aware training for any network: `perturb`, `clip_weights`, `hardware_aware`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj
import bss2jax.data as bd


def _network(key, n_in=200, hidden=200):
    k1, k2 = jax.random.split(key)
    return bj.Sequential(
        [
            bj.Synapse(n_in, hidden, key=k1, transform=bj.linear_saturating(40.0)),
            bj.LIF.model_space(hidden),
            bj.Synapse(hidden, 3, key=k2, transform=bj.linear_saturating(40.0)),
            bj.LI.model_space(3),
        ]
    )


def test_zero_spreads_change_nothing(getkey):
    network = _network(getkey())
    same = bj.perturb(network, getkey(), weight_noise=0.0, gain_noise=0.0, neuron_noise=0.0)
    assert eqx.tree_equal(same, network)
    key = getkey()  # the same key gives the same draw
    assert eqx.tree_equal(bj.perturb(network, key), bj.perturb(network, key))


def test_weight_noise_is_a_per_synapse_factor(getkey):
    # gain_noise = 0: w' / w = 1 + weight_noise * N(0, 1), independent per synapse; over
    # 40,000 synapses the standard deviation is estimated to ~0.4 %.
    network = _network(getkey())
    noisy = bj.perturb(network, getkey(), weight_noise=0.1, gain_noise=0.0)
    factor = noisy.layers[0].weight / network.layers[0].weight
    np.testing.assert_allclose(float(jnp.mean(factor)), 1.0, atol=0.005)
    np.testing.assert_allclose(float(jnp.std(factor)), 0.1, rtol=0.03)


def test_gain_noise_is_one_factor_per_row_and_sign(getkey):
    # weight_noise = 0: every row's excitatory weights share one factor, its inhibitory
    # ones another; over 200 rows their spread is gain_noise (to ~5 %).
    network = _network(getkey())
    noisy = bj.perturb(network, getkey(), weight_noise=0.0, gain_noise=0.1)
    weight = network.layers[0].weight
    factor = noisy.layers[0].weight / weight
    for sign in (weight > 0, weight < 0):
        per_row = jnp.where(sign, factor, jnp.nan)
        spread = jnp.nanmax(per_row, axis=1) - jnp.nanmin(per_row, axis=1)
        assert float(jnp.max(spread)) < 1e-5
        np.testing.assert_allclose(float(jnp.std(jnp.nanmean(per_row, axis=1))), 0.1, rtol=0.25)


def test_neuron_noise_moves_potentials_by_a_fraction_of_the_span(getkey):
    network = _network(getkey(), hidden=2000)
    noisy = bj.perturb(network, getkey(), weight_noise=0.0, gain_noise=0.0, neuron_noise=0.05)
    before, after = network.layers[1], noisy.layers[1]
    for name in ("leak", "threshold"):
        model_shift = bj.model_value(getattr(after, name)) - bj.model_value(getattr(before, name))
        chip_shift = bj.hardware_value(getattr(after, name)) - bj.hardware_value(
            getattr(before, name)
        )
        np.testing.assert_allclose(float(jnp.std(model_shift)), 0.05, rtol=0.1)  # span 1
        np.testing.assert_allclose(chip_shift, 45.0 * model_shift, rtol=1e-4, atol=1e-4)
    ratio = jnp.log(after.tau_mem / before.tau_mem)
    np.testing.assert_allclose(float(jnp.std(ratio)), 0.05, rtol=0.1)
    # the readout has no threshold: its leak stays, its time constants move
    assert eqx.tree_equal(noisy.layers[3].leak, network.layers[3].leak)
    assert not bool(jnp.all(noisy.layers[3].tau_syn == network.layers[3].tau_syn))


def test_perturb_reaches_every_synapse_of_a_graph(getkey):
    network = bj.Network(
        {"hidden": bj.LIF.model_space(4), "out": bj.LI.model_space(2)},
        [
            bj.Projection(bj.INPUT, "hidden", bj.Synapse(3, 4, key=getkey())),
            bj.Projection("hidden", "hidden", bj.Synapse(4, 4, key=getkey())),
            bj.Projection("hidden", "out", bj.Synapse(4, 2, key=getkey())),
        ],
        input_size=3,
    )
    noisy = bj.perturb(network, getkey())
    for index in range(3):
        assert not bool(jnp.all(noisy.synapse(index).weight == network.synapse(index).weight))
    with pytest.raises(ValueError, match="`gain_noise` must be a number in \\[0, 1\\)"):
        bj.perturb(network, getkey(), gain_noise=1.5)


def test_clip_weights_keeps_the_chip_range(getkey):
    scale = jnp.array([[10.0], [40.0]])  # per row
    weight = jnp.array([[7.0, -0.5], [2.0, -3.0]])
    network = bj.Sequential(
        [
            bj.Synapse(2, 2, weight=weight, transform=bj.LinearSaturating(scale)),
            bj.LIF.model_space(2),
            bj.Synapse(2, 1, weight=jnp.full((1, 2), 9.0), transform=bj.linear_exponential_clamp()),
            bj.LI.model_space(1),
        ]
    )
    clipped = bj.clip_weights(network)
    # |w| <= 63 / scale per row: 6.3 and 1.575; in-range weights untouched
    np.testing.assert_allclose(clipped.layers[0].weight, [[6.3, -0.5], [1.575, -1.575]], rtol=1e-6)
    assert float(jnp.max(jnp.abs(clipped.layers[0].hardware_weight()))) <= 63.0
    assert eqx.tree_equal(clipped.layers[2], network.layers[2])  # saturates by itself


def _loss(network, batch, *, key, backend):
    inputs, labels = batch
    _, readout = bj.run(network, jnp.swapaxes(inputs, 0, 1), backend=backend, key=key)
    scores = bd.max_over_time(readout.membrane_cadc)
    return bj.cross_entropy(scores, labels), {"accuracy": bj.accuracy(scores, labels)}


def test_hardware_aware_refuses_bad_draws(getkey):
    network = _network(getkey(), n_in=6, hidden=8)
    batch = (jnp.zeros((4, 10, 6)), jnp.zeros((4,), dtype=int))
    with pytest.raises(ValueError, match="`draws` \\(3\\) must divide the batch size"):
        bj.hardware_aware(_loss, draws=3)(network, batch, key=getkey(), backend=bj.Numeric())
    with pytest.raises(ValueError, match="`draws` must be a positive int"):
        bj.hardware_aware(_loss, draws=0)
    with pytest.raises(TypeError, match="`loss` must be callable"):
        bj.hardware_aware("loss")


@pytest.mark.slow
def test_hardware_aware_loss_semantics(getkey):
    network = _network(getkey(), n_in=6, hidden=8)
    inputs = (jax.random.uniform(getkey(), (4, 10, 6)) < 0.3).astype(float)
    labels = jnp.array([0, 1, 2, 0])
    backend, key = bj.Numeric(), getkey()
    # no noise, one draw: the plain loss
    plain = bj.hardware_aware(_loss, weight_noise=0.0, gain_noise=0.0, neuron_noise=0.0)
    value, metrics = plain(network, (inputs, labels), key=key, backend=backend)
    reference, _ = _loss(network, (inputs, labels), key=key, backend=backend)
    np.testing.assert_allclose(value, reference, rtol=1e-6)
    # two draws: each half of the batch with its own draw from split(key, 2), averaged
    noisy = bj.hardware_aware(_loss, draws=2)
    value, metrics = jax.jit(noisy, static_argnames="backend")(
        network, (inputs, labels), key=key, backend=backend
    )
    halves = []
    for group, group_key in enumerate(jax.random.split(key, 2)):
        noise_key, run_key = jax.random.split(group_key)
        part = slice(2 * group, 2 * group + 2)
        drawn = bj.perturb(
            network, noise_key, weight_noise=0.05, gain_noise=0.07, neuron_noise=0.02
        )
        halves.append(_loss(drawn, (inputs[part], labels[part]), key=run_key, backend=backend))
    np.testing.assert_allclose(value, (halves[0][0] + halves[1][0]) / 2, rtol=1e-5)
    expected = (halves[0][1]["accuracy"] + halves[1][1]["accuracy"]) / 2
    np.testing.assert_allclose(metrics["accuracy"], expected, rtol=1e-6)


def test_with_weight_scale_changes_the_chip_side_only(getkey):
    network = _network(getkey(), n_in=4, hidden=3)
    scaled = bj.with_weight_scale(network, 20.0)
    for index in (0, 2):
        assert scaled.layers[index].transform.scale == 20.0
        np.testing.assert_array_equal(scaled.layers[index].weight, network.layers[index].weight)
        # chip weights: round(clip(20 w, -63, 63)), from the same model weights
        expected = jnp.clip(20.0 * network.layers[index].weight, -63, 63)
        np.testing.assert_allclose(
            scaled.layers[index].hardware_weight(), bj.round_half_away(expected)
        )
    per_row = jnp.array([[10.0], [20.0], [30.0]])
    mixed = bj.with_weight_scale(network, [per_row, None])
    np.testing.assert_array_equal(mixed.layers[0].transform.scale, per_row)
    assert mixed.layers[2].transform.scale == network.layers[2].transform.scale
    with pytest.raises(ValueError, match="one per synapse \\(2\\); got 3"):
        bj.with_weight_scale(network, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive and finite"):
        bj.with_weight_scale(network, -1.0)
    with pytest.raises(ValueError, match="\\(out_features, 1\\) = \\(3, 1\\)"):
        bj.with_weight_scale(network, [jnp.ones((2, 1)), None])

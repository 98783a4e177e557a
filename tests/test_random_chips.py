"""`RandomChips`: one chip model per call, drawn from the key; the anchor; gradients; errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj

DT = 1e-6


def _network(key=jax.random.PRNGKey(0)):
    k1, k2 = jax.random.split(key)
    potentials = dict(
        leak=bj.Mixed(0.0, 80.0), reset=bj.Mixed(0.0, 80.0), threshold=bj.Mixed(1.0, 150.0)
    )
    return bj.Sequential(
        [
            bj.Synapse(
                4,
                6,
                weight=1.2 + 0.3 * jax.random.normal(k1, (6, 4)),
                transform=bj.linear_saturating(36.0),
            ),
            bj.LIF(6, tau_mem=6e-6, tau_syn=6e-6, trace_scale=1 / 70, **potentials),
            bj.Synapse(
                6,
                2,
                weight=0.3 * jax.random.normal(k2, (2, 6)),
                transform=bj.linear_saturating(36.0),
            ),
            bj.LI(2, leak=bj.Mixed(0.0, 80.0), tau_mem=6e-6, tau_syn=6e-6, trace_scale=1 / 70),
        ]
    )


def _inputs(batch=3, time=30):
    spikes = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (time, batch, 4))
    return spikes.astype(jnp.float32)


def _readout(backend, key, network=None):
    network = _network() if network is None else network
    *_, out = bj.run(network, _inputs(), backend=backend, dt=DT, key=key)
    return out.membrane_cadc


def test_a_call_is_the_chip_model_on_the_chip_its_key_draws():
    backend = bj.RandomChips()
    key = jax.random.PRNGKey(5)
    chip = backend.chip(key)
    chip_key, _, noise_key = jax.random.split(key, 3)  # chip, anchor coin, noise
    assert eqx.tree_equal(chip, bj.ChipInstance.random(chip_key))
    expected = _readout(bj.ChipModel(chip), noise_key)
    np.testing.assert_array_equal(_readout(backend, key), expected)


def test_same_key_same_chip_other_key_other_chip():
    backend = bj.RandomChips()
    a, b = jax.random.PRNGKey(2), jax.random.PRNGKey(3)
    np.testing.assert_array_equal(_readout(backend, a), _readout(backend, a))
    assert not np.array_equal(backend.chip(a).threshold, backend.chip(b).threshold)


def test_chips_follow_the_profile_spreads():
    profile = bj.MismatchProfile(threshold=4.0, synapse_gain=0.1)
    chip = bj.RandomChips(profile).chip(jax.random.PRNGKey(0))
    # 512 circuits: the sample std lies within 15 % of the spread (std error ~3 %)
    assert float(jnp.std(chip.threshold)) == pytest.approx(4.0, rel=0.15)
    assert float(jnp.std(jnp.log(chip.synapse_gain))) == pytest.approx(0.1, rel=0.05)


def test_anchor_probability_one_always_runs_the_anchor():
    anchor = bj.ChipInstance.random(jax.random.PRNGKey(9))
    backend = bj.RandomChips(anchor=anchor, anchor_probability=1.0)
    key = jax.random.PRNGKey(4)
    assert eqx.tree_equal(backend.chip(key), anchor)
    expected = _readout(bj.ChipModel(anchor), jax.random.split(key, 3)[2])
    np.testing.assert_array_equal(_readout(backend, key), expected)


def test_anchor_is_chosen_with_its_probability():
    anchor = bj.ChipInstance.nominal()
    backend = bj.RandomChips(anchor=anchor, anchor_probability=0.3)
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    chips = jax.vmap(backend.chip)(keys)
    on_anchor = np.asarray(jnp.all(chips.threshold == 0.0, axis=1))
    # Binomial(400, 0.3): mean 120, std 9.2; 4 std either side
    assert 83 <= on_anchor.sum() <= 157
    # the others are random chips, not the anchor
    assert np.all(np.asarray(jnp.std(chips.threshold[~on_anchor], axis=1)) > 1.0)


def test_several_chips_per_call_run_the_groups_of_the_batch_on_their_own_chips():
    backend = bj.RandomChips(
        chips_per_call=2, anchor=bj.ChipInstance.nominal(), anchor_probability=0.5
    )
    network, inputs = _network(), _inputs(batch=4)
    key = jax.random.PRNGKey(4)  # a key whose first group lands on the anchor, the second not
    chips = backend.chip(key)
    assert chips.threshold.shape == (2, 512)
    got = backend.observe(network, inputs, dt=DT, key=key)
    parts = []
    for k, group_key in enumerate(jax.random.split(key, 2)):
        chip_key, coin_key, noise_key = jax.random.split(group_key, 3)
        chip = jax.tree.map(lambda c, k=k: c[k], chips)
        assert eqx.tree_equal(chip, backend._draw(chip_key, coin_key))
        model = bj.ChipModel(chip)
        parts.append(model.observe(network, inputs[:, 2 * k : 2 * k + 2], dt=DT, key=noise_key))
    for name, population in got.populations.items():
        for field in ("spikes", "membrane_cadc", "membrane_madc"):
            value = getattr(population, field)
            if value is None:
                continue
            expected = jnp.concatenate([getattr(p.populations[name], field) for p in parts], 1)
            np.testing.assert_array_equal(value, expected)
        for field in ("madc_time", "madc_value"):
            value = getattr(population, field)
            if value is not None:
                expected = jnp.concatenate([getattr(p.populations[name], field) for p in parts])
                np.testing.assert_array_equal(value, expected)
    # each group tossed its own coin: the first ran on the anchor, the second on a random chip
    assert np.all(chips.threshold[0] == 0.0) and float(jnp.std(chips.threshold[1])) > 1.0


@pytest.mark.parametrize("gradient", ["inject", "through"])
@pytest.mark.parametrize("chips_per_call", [1, 3])
def test_gradients_flow_under_jit(gradient, chips_per_call):
    backend = bj.RandomChips(gradient=gradient, chips_per_call=chips_per_call)
    network = _network()

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(net, key):
        *_, out = bj.run(net, _inputs(), backend=backend, dt=DT, key=key)
        return jnp.sum(out.membrane_cadc.max(0))

    g = grad(network, jax.random.PRNGKey(0))
    for layer in (g.layers[0], g.layers[2]):
        assert np.all(np.isfinite(layer.weight)) and float(jnp.abs(layer.weight).sum()) > 0


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="`profile` must be a bj.MismatchProfile"):
        bj.RandomChips("calibrated")
    with pytest.raises(TypeError, match="`config` must be a bj.ChipConfig"):
        bj.RandomChips(config={})
    with pytest.raises(ValueError, match="`gradient` must be 'inject' or 'through'; got 'x'"):
        bj.RandomChips(gradient="x")
    with pytest.raises(TypeError, match="`anchor` must be a bj.ChipInstance or None"):
        bj.RandomChips(anchor=3)
    anchor = bj.ChipInstance.nominal()
    for bad in (-0.1, 1.5, True, "0.3"):
        with pytest.raises(ValueError, match="`anchor_probability` must be a float in"):
            bj.RandomChips(anchor=anchor, anchor_probability=bad)
    with pytest.raises(ValueError, match="there is no `anchor`"):
        bj.RandomChips(anchor_probability=0.5)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="`chips_per_call` must be a positive int"):
            bj.RandomChips(chips_per_call=bad)
    with pytest.raises(bj.BackendError, match="multiple of 2; got 3"):
        bj.run(
            _network(),
            _inputs(batch=3),
            backend=bj.RandomChips(chips_per_call=2),
            dt=DT,
            key=jax.random.PRNGKey(0),
        )
    with pytest.raises(ValueError, match="`key` is required"):
        bj.run(_network(), _inputs(), backend=bj.RandomChips(), dt=DT, key=None)

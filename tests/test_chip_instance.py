"""ChipInstance: mismatch statistics, determinism, stacking, safe files."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax as bj
from bss2jax._chip._instance import field_names


def _draw(count, profile=None, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return jax.vmap(lambda k: bj.ChipInstance.random(k, profile))(keys)


@pytest.mark.parametrize(
    "profile", [bj.MismatchProfile.calibrated(), bj.MismatchProfile.uncalibrated()]
)
def test_mismatch_statistics_match_the_configured_spreads(profile):
    # 16 chips x 512 circuits = 8192 draws per parameter: the sample std of a normal is
    # within 3 % of the true one with overwhelming probability (std error ~0.8 %).
    chips = _draw(16, profile)
    for name in ("leak", "reset", "threshold", "cadc_offset"):
        values = np.asarray(getattr(chips, name))
        assert abs(values.mean()) < 4 * getattr(profile, name) / np.sqrt(values.size)
        assert np.std(values) == pytest.approx(getattr(profile, name), rel=0.03)
    for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh", "synaptic_gain_exc", "synapse_gain"):
        log = np.log(np.asarray(getattr(chips, name)))
        assert np.std(log) == pytest.approx(profile.spread(name), rel=0.03)
        assert abs(log.mean()) < 4 * profile.spread(name) / np.sqrt(log.size)
    gain = np.asarray(chips.cadc_gain)
    assert np.std(gain) == pytest.approx(profile.cadc_gain, rel=0.03)
    assert gain.mean() == pytest.approx(1.0, abs=1e-3)


def test_behavioural_spread_of_the_baseline_over_512_neurons():
    # The CADC baseline of 512 leak-only neurons spreads as the leak, the CADC offset and
    # gain (at 80 LSB) and the read and membrane noise averaged over the samples combine.
    profile = bj.MismatchProfile.calibrated()
    chip = bj.ChipInstance.random(jax.random.PRNGKey(7), profile)
    net = bj.Sequential([bj.Synapse(1, 512, weight=jnp.zeros((512, 1))), bj.LI(512)])
    raw = bj.ChipModel(chip).record(net, jnp.zeros((20, 1, 1)), dt=1e-6, key=jax.random.PRNGKey(0))
    baseline = np.asarray(raw[0].cadc_value).mean(-1)[0]  # (512,)
    samples = raw[0].cadc_value.shape[-1]
    expected = np.sqrt(
        profile.leak**2
        + profile.cadc_offset**2
        + (80 * profile.cadc_gain) ** 2
        + 0.5**2  # membrane noise: correlated over tau_mem, barely averaged in 20 us
        + (1.0**2 + 1 / 12) / samples  # read noise and rounding, averaged
    )
    assert np.std(baseline) == pytest.approx(expected, rel=0.15)
    assert baseline.mean() == pytest.approx(80.0, abs=0.5)


def test_keys_give_different_chips_and_the_same_key_the_same_bits():
    a = bj.ChipInstance.random(jax.random.PRNGKey(1))
    b = bj.ChipInstance.random(jax.random.PRNGKey(1))
    c = bj.ChipInstance.random(jax.random.PRNGKey(2))
    for name in field_names():
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_nominal_has_no_deviation_and_none_profile_is_nominal():
    nominal = bj.ChipInstance.nominal()
    drawn = bj.ChipInstance.random(jax.random.PRNGKey(0), bj.MismatchProfile.none())
    for name in field_names():
        assert np.array_equal(getattr(nominal, name), getattr(drawn, name))
    assert np.all(nominal.leak == 0) and np.all(nominal.tau_mem == 1)
    assert nominal.synapse_gain.shape == (512, 256)


def test_stack_and_vmap():
    chips = bj.ChipInstance.stack(
        [bj.ChipInstance.nominal(), bj.ChipInstance.random(jax.random.PRNGKey(0))]
    )
    assert chips.leak.shape == (2, 512)
    means = jax.vmap(lambda chip: chip.threshold.mean())(chips)
    assert means.shape == (2,) and means[0] == 0
    with pytest.raises(bj.ChipInstanceError, match="leading"):
        bj.ChipInstance(
            **{name: getattr(chips, name) for name in field_names()} | {"leak": jnp.zeros(512)}
        )


def test_save_load_roundtrip_atomic_and_validated(tmp_path):
    chip = bj.ChipInstance.random(jax.random.PRNGKey(3))
    path = tmp_path / "chip.npz"
    chip.save(path, metadata={"seed": 3, "profile": "calibrated"})
    loaded = bj.ChipInstance.load(path)
    for name in field_names():
        assert np.array_equal(getattr(chip, name), getattr(loaded, name))
    assert bj.ChipInstance.load_metadata(path) == {"seed": 3, "profile": "calibrated"}
    assert [p.name for p in tmp_path.iterdir()] == ["chip.npz"]  # no temporary left over

    def corrupt(**changes):
        arrays = dict(np.load(path, allow_pickle=False))
        arrays.update(changes)
        bad = tmp_path / "bad.npz"
        with open(bad, "wb") as file:
            np.savez(file, **arrays)
        return bad

    def header(**fields):
        text = json.dumps({"format": "bss2jax.ChipInstance", "version": 1} | fields)
        return np.frombuffer(text.encode(), np.uint8)

    with pytest.raises(bj.ChipInstanceError, match="version must be 1"):
        bj.ChipInstance.load(corrupt(__header__=header(version=99)))
    with pytest.raises(bj.ChipInstanceError, match="'leak' must have shape"):
        bj.ChipInstance.load(corrupt(leak=np.zeros(10, np.float32)))
    with pytest.raises(bj.ChipInstanceError, match="NaN"):
        bj.ChipInstance.load(corrupt(reset=np.full(512, np.nan, np.float32)))
    with pytest.raises(bj.ChipInstanceError, match="positive"):
        bj.ChipInstance.load(corrupt(tau_mem=np.zeros(512, np.float32)))
    with pytest.raises(bj.ChipInstanceError, match="no bss2jax header"):
        with open(tmp_path / "plain.npz", "wb") as file:
            np.savez(file, leak=np.zeros(512))
        bj.ChipInstance.load(tmp_path / "plain.npz")
    # an object array would need pickle: refused
    with open(tmp_path / "pickled.npz", "wb") as file:
        np.savez(file, leak=np.array([{"a": 1}], dtype=object))
    with pytest.raises(bj.ChipInstanceError, match="cannot read|header"):
        bj.ChipInstance.load(tmp_path / "pickled.npz")
    with pytest.raises(ValueError, match="JSON"):
        chip.save(tmp_path / "x.npz", metadata={"bad": object()})
    assert not os.path.exists(tmp_path / "x.npz")


def test_profile_validation():
    with pytest.raises(ValueError, match="`MismatchProfile.leak`"):
        bj.MismatchProfile(leak=-1.0)
    with pytest.raises(TypeError, match="`profile`"):
        bj.ChipInstance.random(jax.random.PRNGKey(0), profile="calibrated")

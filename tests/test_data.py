"""bss2jax.data: the Yin-Yang dataset, encoders and decoders."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bss2jax.data as bd


def test_public_names_have_docstrings():
    for name in bd.__all__:
        assert getattr(bd, name).__doc__, name


# --- Yin-Yang ---------------------------------------------------------------------------------


def test_yin_yang_geometry_and_balance():
    data = bd.yin_yang(900, seed=3)
    coordinates, labels = data
    assert coordinates.shape == (900, 4) and labels.shape == (900,)
    assert labels.dtype == np.int32
    x, y = coordinates[:, 0], coordinates[:, 1]
    np.testing.assert_allclose(coordinates[:, 2], 1 - x)
    np.testing.assert_allclose(coordinates[:, 3], 1 - y)
    assert np.all((x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25)
    np.testing.assert_array_equal(labels, bd.yin_yang_class(x, y))
    counts = np.bincount(labels, minlength=3)
    assert counts.sum() == 900 and counts.min() > 250  # goals are uniform over the classes


def test_yin_yang_class_landmarks():
    # dot centres, the upper and lower halves away from the dots
    x = np.array([0.25, 0.75, 0.5, 0.5, 0.25, 0.75])
    y = np.array([0.5, 0.5, 0.9, 0.1, 0.5 + 0.2, 0.5 - 0.2])
    np.testing.assert_array_equal(bd.yin_yang_class(x, y), [2, 2, 1, 0, 1, 0])


def test_yin_yang_seeded():
    a, b = bd.yin_yang(50, seed=1), bd.yin_yang(50, seed=1)
    np.testing.assert_array_equal(a.coordinates, b.coordinates)
    c = bd.yin_yang(50, seed=2)
    assert not np.array_equal(a.coordinates, c.coordinates)
    # hxtorch's generator and order: the first goal class and the first draw
    rng = np.random.RandomState(1)
    goal = rng.randint(3)
    assert a.labels[0] == goal


def test_yin_yang_splits():
    train, test = bd.yin_yang_splits(100, 40)
    assert len(train.labels) == 100 and len(test.labels) == 40
    np.testing.assert_array_equal(train.coordinates, bd.yin_yang(100, seed=42).coordinates)
    np.testing.assert_array_equal(test.coordinates, bd.yin_yang(40, seed=41).coordinates)
    with pytest.raises(ValueError, match="must differ"):
        bd.yin_yang_splits(10, 10, train_seed=1, test_seed=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(size=-1), "`size` must be a non-negative int"),
        (dict(size=2.5), "`size`"),
        (dict(r_small=0.3, r_big=0.5), "2 \\* r_small < r_big"),
    ],
)
def test_yin_yang_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bd.yin_yang(**kwargs)


# --- encoders ---------------------------------------------------------------------------------


def test_encode_coordinates_bins_and_bias():
    coordinates = jnp.array([[0.0, 1.0, 0.5, 0.25], [0.1, 0.9, 0.3, 0.7]])
    spikes = bd.encode_coordinates(coordinates, steps=38)
    assert spikes.shape == (38, 2, 5) and spikes.dtype == jnp.float32
    np.testing.assert_array_equal(spikes.sum(axis=0), np.ones((2, 5)))
    times = 2e-6 + np.asarray(coordinates) * 24e-6
    expected = np.round(times / 1e-6).astype(int)
    np.testing.assert_array_equal(np.argmax(spikes, axis=0)[:, :4], expected)
    np.testing.assert_array_equal(np.argmax(spikes, axis=0)[:, 4], [2, 2])
    plain = bd.encode_coordinates(coordinates, steps=38, t_bias=None)
    np.testing.assert_array_equal(plain, spikes[..., :4])


def test_encode_coordinates_dt_and_jit():
    coordinates = jnp.array([[0.5]])
    spikes = jax.jit(lambda c: bd.encode_coordinates(c, steps=20, dt=2e-6, t_bias=None))(
        coordinates
    )
    assert int(jnp.argmax(spikes[:, 0, 0])) == 7  # 14 us at 2 us per step


def test_encode_coordinates_errors():
    with pytest.raises(ValueError, match="`t_late` must fall inside the grid"):
        bd.encode_coordinates(jnp.zeros((1, 4)), steps=20)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        bd.encode_coordinates(jnp.zeros((1, 4)), steps=0)
    with pytest.raises(ValueError, match="shape \\(batch, channels\\)"):
        bd.encode_coordinates(jnp.zeros((4,)), steps=38)
    with pytest.raises(ValueError, match="t_early <= t_late"):
        bd.encode_coordinates(jnp.zeros((1, 4)), steps=38, t_early=5e-6, t_late=3e-6)


def test_spike_times_to_dense_drops_off_grid():
    times = jnp.array([[0.0, 3.4e-6, 3.6e-6, 10e-6, jnp.inf, -1e-6]])
    dense = bd.spike_times_to_dense(times, steps=10)
    np.testing.assert_array_equal(dense.sum(axis=0)[0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(np.argmax(dense, axis=0)[0, :3], [0, 3, 4])


def test_pixels_to_spike_times():
    pixels = jnp.array([[0.0, 0.2, 0.3, 0.5, 1.0]])
    times = bd.pixels_to_spike_times(pixels, tau=20.0, threshold=0.2, t_max=1.0)
    expected = np.minimum(20 * np.log(np.array([0.3, 0.5, 1.0]) / np.array([0.1, 0.3, 0.8])), 1)
    np.testing.assert_allclose(times[0, :2], [1.0, 1.0])
    np.testing.assert_allclose(times[0, 2:], expected, rtol=1e-6)
    fine = bd.pixels_to_spike_times(jnp.linspace(0.25, 1, 20), tau=1.0, t_max=10.0)
    assert np.all(np.diff(np.asarray(fine)) < 0)  # brighter spikes earlier
    with pytest.raises(ValueError, match="`tau` and `t_max` must be positive"):
        bd.pixels_to_spike_times(pixels, tau=0.0)


def test_encode_bernoulli_rates_and_keys():
    key = jax.random.key(0)
    probabilities = jnp.array([[0.0, 0.1, 0.5, 1.0]])
    spikes = bd.encode_bernoulli(probabilities, steps=4000, key=key)
    assert spikes.shape == (4000, 1, 4)
    rates = np.asarray(spikes.mean(axis=0))[0]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.5, 1.0], atol=0.03)
    np.testing.assert_array_equal(spikes, bd.encode_bernoulli(probabilities, steps=4000, key=key))
    other = bd.encode_bernoulli(probabilities, steps=4000, key=jax.random.key(1))
    assert not np.array_equal(spikes, other)


def test_encode_poisson_probability():
    spikes = bd.encode_poisson(jnp.full((1, 2), 2e5), steps=5000, dt=1e-6, key=jax.random.key(2))
    np.testing.assert_allclose(spikes.mean(), 1 - np.exp(-0.2), atol=0.02)
    assert bd.encode_poisson(jnp.zeros((1, 2)), steps=10, key=jax.random.key(0)).sum() == 0


# --- decoders ---------------------------------------------------------------------------------


def test_decoders_against_numpy():
    trace = jax.random.normal(jax.random.key(3), (7, 2, 3))
    np.testing.assert_allclose(bd.max_over_time(trace), np.max(trace, axis=0))
    np.testing.assert_allclose(bd.sum_over_time(trace), np.sum(trace, axis=0), rtol=1e-6)
    np.testing.assert_allclose(bd.mean_over_time(trace), np.mean(trace, axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="\\(time, batch, neurons\\)"):
        bd.max_over_time(trace[0])


def test_max_over_time_gradient_reaches_the_peak():
    trace = jnp.array([[[1.0]], [[3.0]], [[2.0]]])
    grad = jax.grad(lambda t: bd.max_over_time(t).sum())(trace)
    np.testing.assert_array_equal(grad[:, 0, 0], [0.0, 1.0, 0.0])


def test_first_spike_time():
    spikes = jnp.zeros((6, 2, 2)).at[3, 0, 1].set(1.0).at[5, 0, 1].set(1.0).at[0, 1, 0].set(1.0)
    times = bd.first_spike_time(spikes, dt=2e-6)
    np.testing.assert_allclose(times, [[np.inf, 6e-6], [0.0, np.inf]])
    assert float(bd.first_spike_time(spikes, no_spike=-1.0)[0, 0]) == -1.0

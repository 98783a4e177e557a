"""Plots return (figure, axes), draw what they are given, and never show."""

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bss2jax as bj  # noqa: E402
import bss2jax.plot as bplt  # noqa: E402


@pytest.fixture
def observables():
    inputs = jnp.zeros((50, 1, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)
    net = bj.Sequential(
        [bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0)), bj.LIF(1, enable_madc_recording=True)]
    )
    (out,) = bj.run(net, inputs)
    yield out
    plt.close("all")


def test_traces_marks_every_spike(observables):
    fig, ax = bplt.traces(observables)
    n_spikes = int(observables.spikes.sum())
    assert n_spikes > 0
    assert len([line for line in ax.lines if line.get_linestyle() == ":"]) == n_spikes
    assert isinstance(fig, matplotlib.figure.Figure)


def test_traces_with_raw_madc(observables):
    fig, ax = bplt.traces(
        observables, madc_time=np.linspace(0, 50e-6, 200), madc_value=np.arange(200.0)
    )
    assert len(fig.axes) == 2  # the MADC axis is the twin


def test_compare_raster_targets_training(observables):
    _, ax = bplt.compare(observables.membrane_cadc, observables.membrane_cadc + 1)
    assert len(ax.lines) == 2
    spikes = (jax.random.uniform(jax.random.PRNGKey(0), (20, 1, 5)) < 0.2).astype(float)
    _, ax = bplt.raster(spikes)
    assert ax.collections[0].get_offsets().shape[0] == int(spikes.sum())
    _, ax = bplt.targets(jnp.zeros((20, 1, 3)), jnp.ones((20, 1, 3)))
    assert len(ax.lines) == 6
    fig, ax = bplt.training({"loss": [1.0, 0.5], "test_accuracy": [0.5, 0.9]})
    assert len(fig.axes) == 2


def test_heatmap_from_sweep():
    result = bj.sweep(lambda a, b: a * b, {"a": jnp.arange(3.0), "b": jnp.arange(4.0)})
    fig, ax = bplt.heatmap(result, label="a*b")
    assert ax.get_xlabel() == "b" and ax.get_ylabel() == "a"
    np.testing.assert_array_equal(ax.images[0].get_array(), np.outer(np.arange(3), np.arange(4)))
    with pytest.raises(ValueError, match="2-D"):
        bplt.heatmap(jnp.zeros(3))

"""Plots return (figure, axes), draw what they are given, keep their labels inside the
figure and never show; every documented input of every plot is drawn."""

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bss2jax as bj  # noqa: E402
import bss2jax.plot as bplt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def observables():
    inputs = jnp.zeros((50, 1, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)
    net = bj.Sequential(
        [bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0)), bj.LIF(1, enable_madc_recording=True)]
    )
    (out,) = bj.run(net, inputs)
    return out


def _inside(fig, *texts):
    """Every text artist lies within the figure once drawn (nothing clipped)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.y0 >= box.y0 - 1, text.get_text()
        assert extent.x1 <= box.x1 + 1 and extent.y1 <= box.y1 + 1, text.get_text()


def test_traces_marks_every_spike(observables):
    fig, ax = bplt.traces(observables)
    n_spikes = int(observables.spikes.sum())
    assert n_spikes > 0
    assert len([line for line in ax.lines if line.get_linestyle() == ":"]) == n_spikes
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2  # the grid MADC on the twin axis
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), observables.membrane_cadc[:, 0, 0])
    _inside(fig, ax.xaxis.label, ax.yaxis.label)


def test_traces_with_raw_madc(observables):
    fig, _ = bplt.traces(
        observables, madc_time=np.linspace(0, 50e-6, 200), madc_value=np.arange(200.0)
    )
    assert len(fig.axes) == 2  # the MADC axis is the twin
    np.testing.assert_allclose(fig.axes[1].lines[0].get_xdata(), np.linspace(0, 50, 200))


def test_traces_of_a_readout_without_spikes_or_madc():
    net = bj.Sequential([bj.Synapse(1, 2, weight=jnp.ones((2, 1))), bj.LI(2)])
    (out,) = bj.run(net, jnp.ones((10, 3, 1)))
    fig, ax = bplt.traces(out, neuron=1, batch=2)
    assert len(fig.axes) == 1 and len(ax.lines) == 1  # no spike marks, no MADC axis


def test_compare_raster_targets(observables):
    _, ax = bplt.compare(observables.membrane_cadc, observables.membrane_cadc + 1)
    assert len(ax.lines) == 2
    _, ax = bplt.compare(observables.membrane_cadc, observables.membrane_cadc, labels=("a", "b"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    spikes = (jax.random.uniform(jax.random.PRNGKey(0), (20, 1, 5)) < 0.2).astype(float)
    _, ax = bplt.raster(spikes)
    assert ax.collections[0].get_offsets().shape[0] == int(spikes.sum())
    _, ax = bplt.raster(jnp.zeros((20, 1, 5)))  # no spikes: an empty raster, no error
    assert ax.collections[0].get_offsets().shape[0] == 0
    _, ax = bplt.targets(jnp.zeros((20, 1, 3)), jnp.ones((20, 1, 3)))
    assert len(ax.lines) == 6
    _, ax = bplt.targets(jnp.zeros((20, 1, 3)))
    assert len(ax.lines) == 3


def test_training_with_losses_and_accuracies():
    fig, ax = bplt.training({"loss": [1.0, 0.5], "test_accuracy": [0.5, 0.9]})
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2])  # epochs count from 1
    assert ax.get_ylabel() == "loss" and fig.axes[1].get_ylabel() == "accuracy"
    _inside(fig, ax.xaxis.label, ax.yaxis.label, fig.axes[1].yaxis.label)


def test_training_with_accuracies_only_draws_no_empty_loss_axis():
    fig, ax = bplt.training({"train_accuracy": [0.4, 0.6, 0.7], "test_accuracy": [0.3, 0.5, 0.6]})
    assert len(fig.axes) == 1 and len(ax.lines) == 2
    assert ax.get_ylabel() == "accuracy" and ax.get_xlabel() == "epoch"
    _inside(fig, ax.xaxis.label, ax.yaxis.label)
    fig, ax = bplt.training({"train_loss": [1.0, 0.8]})
    assert len(fig.axes) == 1 and ax.get_ylabel() == "loss"


def test_training_takes_fit_history():
    history = [
        {"epoch": 1, "step": 10, "train_loss": 1.0, "test_accuracy": 0.5, "seconds": 2.0},
        {"epoch": 2, "step": 20, "train_loss": 0.7, "test_accuracy": 0.8, "seconds": 1.0},
    ]
    fig, ax = bplt.training(history)
    labels = [line.get_label() for axes in fig.axes for line in axes.lines]
    assert labels == ["train_loss", "test_accuracy"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, 0.7])
    with pytest.raises(ValueError, match="no metric"):
        bplt.training([{"epoch": 1, "seconds": 1.0}])


def test_heatmap_from_a_numeric_sweep():
    result = bj.sweep(lambda a, b: a * b, {"a": jnp.arange(3.0), "b": jnp.arange(4.0)})
    fig, ax = bplt.heatmap(result, label="a*b")
    assert ax.get_xlabel() == "b" and ax.get_ylabel() == "a"
    np.testing.assert_array_equal(ax.images[0].get_array(), np.outer(np.arange(3), np.arange(4)))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    _inside(fig, ax.xaxis.label, ax.yaxis.label)
    with pytest.raises(ValueError, match="2-D"):
        bplt.heatmap(jnp.zeros(3))
    zipped = bj.sweep(
        lambda a, b: a * b, {"a": jnp.arange(3.0), "b": jnp.arange(3.0)}, product=False
    )
    with pytest.raises(ValueError, match="zipped"):
        bplt.heatmap(zipped)


def test_heatmap_from_a_sweep_over_stacked_chips_and_keys():
    # The notebook's sweep: coordinates that are pytrees (stacked chip instances) or keys
    # have no len(); their ticks are indices.
    chips = jax.vmap(bj.ChipInstance.random)(jax.random.split(jax.random.PRNGKey(0), 3))
    keys = jax.random.split(jax.random.key(1), 2)

    def value(chip, key):
        leaf = jax.tree_util.tree_leaves(chip)[0]
        return jnp.mean(leaf) + jax.random.uniform(key)

    result = bj.sweep(value, {"chip": chips, "key": keys})
    fig, ax = bplt.heatmap(result)
    assert ax.get_ylabel() == "chip" and ax.get_xlabel() == "key"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    np.testing.assert_allclose(ax.images[0].get_array(), result.values)
    # explicit ticks: numbers, strings, a wrong length
    _, ax = bplt.heatmap(np.zeros((2, 2)), x=["a", "b"], y=np.array([0.5, 1.5]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "1.5"]
    with pytest.raises(ValueError, match="`x` must have a leading axis of length 2"):
        bplt.heatmap(np.zeros((2, 2)), x=np.arange(3.0))

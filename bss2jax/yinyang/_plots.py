"""The Yin-Yang job's plots: learning curves and the decision map (PNG, matplotlib)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def plot_curves(history: list, path, earlier: list | None = None, label: str | None = None) -> None:
    """Loss and accuracy per epoch, train and test, into a PNG at `path`.

    `earlier`: `(name, history)` of the phases before (e.g. numerics), drawn first, in
    other line styles.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    earlier = [(name, h) for name, h in (earlier or []) if h]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    for axis, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for split, colour in (("train", "C0"), ("test", "C1")):
            name = f"{split}_{metric}"
            offset = 0
            for (phase, records), style in zip(earlier, ("--", ":", "-."), strict=False):
                if all(name in h for h in records):
                    axis.plot(
                        [offset + h["epoch"] for h in records],
                        [h[name] for h in records],
                        style,
                        color=colour,
                        label=f"{split} ({phase})",
                    )
                offset += len(records)
            if all(name in h for h in history):
                axis.plot(
                    [offset + h["epoch"] for h in history],
                    [h[name] for h in history],
                    marker="o",
                    color=colour,
                    label=split if label is None else f"{split} ({label})",
                )
        if metric == "accuracy":
            axis.set_ylim(max(0.0, axis.get_ylim()[0]), 1.0)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Yin-Yang training")
    figure.savefig(path, dpi=120)


def plot_decision_map(network, loss, test, path, *, backend, key, resolution: int = 100) -> None:
    """The predicted class over the Yin-Yang plane, with the test samples, into a PNG."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    axis_values = (np.arange(resolution) + 0.5) / resolution
    grid_x, grid_y = np.meshgrid(axis_values, axis_values)
    x, y = grid_x.ravel(), grid_y.ravel()
    coordinates = jnp.asarray(np.stack([x, y, 1 - x, 1 - y], axis=1))
    predict = eqx.filter_jit(
        lambda n, c, k, b: jnp.argmax(loss.scores(n, c, key=k, backend=b)[0], axis=-1)
    )
    labels = np.concatenate(
        [
            np.asarray(
                predict(network, coordinates[i : i + 1200], jax.random.fold_in(key, i), backend)
            )
            for i in range(0, len(coordinates), 1200)
        ]
    ).astype(float)
    labels[(x - 0.5) ** 2 + (y - 0.5) ** 2 > 0.25] = np.nan
    colours = ListedColormap(["#2b6cb0", "#dd6b20", "#38a169"])
    figure = Figure(figsize=(5, 5), layout="constrained")
    axis = figure.subplots()
    axis.imshow(
        labels.reshape(resolution, resolution),
        origin="lower",
        extent=(0, 1, 0, 1),
        cmap=colours,
        vmin=0,
        vmax=2,
        alpha=0.35,
        interpolation="nearest",
    )
    test_labels = np.asarray(test.labels)
    points = np.asarray(test.coordinates)
    predicted = np.concatenate(
        [
            np.asarray(
                predict(
                    network,
                    jnp.asarray(points[i : i + 1200]),
                    jax.random.fold_in(key, 1_000_000 + i),
                    backend,
                )
            )
            for i in range(0, len(points), 1200)
        ]
    )
    right = predicted == test_labels
    axis.scatter(
        points[right, 0], points[right, 1], c=test_labels[right], cmap=colours, vmin=0, vmax=2, s=8
    )
    axis.scatter(
        points[~right, 0],
        points[~right, 1],
        c="k",
        marker="x",
        s=20,
        label=f"misclassified ({int((~right).sum())})",
    )
    axis.set_xlabel("x")
    axis.set_ylabel("y")
    axis.set_aspect("equal")
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(f"decision map, test accuracy {100 * right.mean():.1f} %")
    figure.savefig(path, dpi=120)

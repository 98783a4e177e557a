"""Plots for BSS-2 experiments (matplotlib). Each function returns `(figure, axes)` and
never calls `show()`; pass `ax=` to draw into an existing axes.

```python
import bss2jax.plot as bplt
fig, ax = bplt.traces(out[0], dt=1e-6)
fig.savefig("traces.png")
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _axes(ax, figsize=(7, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def traces(
    observables,
    *,
    dt: float = 1e-6,
    neuron: int = 0,
    batch: int = 0,
    madc_time=None,
    madc_value=None,
    ax=None,
):
    """CADC membrane on the grid against MADC samples, with spike marks (the tutorial's
    first figure).

    **Arguments:**
    - `observables`: one population's `bj.Observables`.
    - `dt`: grid step in seconds; the x axis is in µs.
    - `neuron`, `batch`: which trace.
    - `madc_time`, `madc_value`: optional raw MADC samples `(samples,)` (seconds, LSB) drawn
      on a second y axis; otherwise `observables.membrane_madc` (on the grid) if present.
    """
    fig, ax = _axes(ax)
    cadc = np.asarray(observables.membrane_cadc[:, batch, neuron])
    t = np.arange(cadc.shape[0]) * dt * 1e6
    ax.plot(t, cadc, "o-", ms=3, label="CADC (grid)")
    ax.set_xlabel("time [µs]")
    ax.set_ylabel("membrane (CADC)")
    if observables.spikes is not None:
        spikes = np.flatnonzero(np.asarray(observables.spikes[:, batch, neuron]))
        for s in spikes:
            ax.axvline(s * dt * 1e6, color="k", lw=0.8, ls=":")
    madc_ax = None
    if madc_time is not None and madc_value is not None:
        madc_ax = ax.twinx()
        madc_ax.plot(np.asarray(madc_time) * 1e6, np.asarray(madc_value), color="C1", lw=0.8)
        madc_ax.set_ylabel("membrane (MADC)", color="C1")
    elif observables.membrane_madc is not None:
        madc_ax = ax.twinx()
        madc = np.asarray(observables.membrane_madc[:, batch])
        madc_ax.plot(t, madc, color="C1", lw=0.8)
        madc_ax.set_ylabel("membrane (MADC)", color="C1")
    ax.legend(loc="upper left", frameon=False)
    return fig, ax


def compare(
    reference, other, *, dt: float = 1e-6, neuron: int = 0, batch: int = 0, labels=None, ax=None
):
    """Overlay two membrane traces `(time, batch, neurons)`, e.g. numerics against chip."""
    fig, ax = _axes(ax)
    labels = labels or ("numerics", "chip")
    for trace, label in zip((reference, other), labels, strict=True):
        trace = np.asarray(trace)[:, batch, neuron]
        ax.plot(np.arange(trace.shape[0]) * dt * 1e6, trace, label=label)
    ax.set_xlabel("time [µs]")
    ax.set_ylabel("membrane (model units)")
    ax.legend(frameon=False)
    return fig, ax


def raster(spikes, *, dt: float = 1e-6, batch: int = 0, ax=None):
    """Raster plot of spikes `(time, batch, neurons)` for one batch entry."""
    fig, ax = _axes(ax)
    steps, neurons = np.nonzero(np.asarray(spikes)[:, batch, :])
    ax.scatter(steps * dt * 1e6, neurons, s=4, marker="|", color="k")
    ax.set_xlabel("time [µs]")
    ax.set_ylabel("neuron")
    return fig, ax


def training(history: Mapping[str, Sequence[float]], *, ax=None):
    """Training curves: every metric in `history` (name → values per epoch or step).

    Losses go on the left axis, accuracies (names containing "acc") on the right.
    """
    fig, ax = _axes(ax)
    right = None
    for name, sequence in history.items():
        values = np.asarray(sequence, dtype=float)
        if "acc" in name:
            right = right or ax.twinx()
            right.plot(values, label=name, color="C2" if "test" in name else "C3")
            right.set_ylabel("accuracy")
        else:
            ax.plot(values, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles = ax.get_legend_handles_labels()
    if right is not None:
        more = right.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    ax.legend(*handles, frameon=False)
    return fig, ax


def targets(target, output=None, *, dt: float = 1e-6, batch: int = 0, ax=None):
    """Target traces `(time, batch, n)` (dashed) against the output traces (solid)."""
    fig, ax = _axes(ax)
    target = np.asarray(target)[:, batch, :]
    t = np.arange(target.shape[0]) * dt * 1e6
    for n in range(target.shape[1]):
        ax.plot(t, target[:, n], ls="--", color=f"C{n}", label=f"target {n}")
        if output is not None:
            ax.plot(t, np.asarray(output)[:, batch, n], color=f"C{n}", label=f"output {n}")
    ax.set_xlabel("time [µs]")
    ax.legend(frameon=False, ncol=2)
    return fig, ax


def heatmap(values, *, x=None, y=None, xlabel="", ylabel="", label="", ax=None):
    """Heat map of a 2-D sweep result `values[y_index, x_index]` with coordinate ticks.

    Pass a `bj.SweepResult` with two product axes to take names and coordinates from it.
    """
    from ._sweep import SweepResult

    if isinstance(values, SweepResult):
        if len(values.names) != 2 or not values.product:
            raise ValueError("`heatmap` needs a product sweep over exactly two axes.")
        ylabel = ylabel or values.names[0]
        xlabel = xlabel or values.names[1]
        y = values.coords[values.names[0]] if y is None else y
        x = values.coords[values.names[1]] if x is None else x
        values = values.values
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"`values` must be 2-D (y, x); got shape {values.shape}.")
    fig, ax = _axes(ax, figsize=(5, 4))
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=label)
    if x is not None:
        ax.set_xticks(range(len(x)), [f"{v:.3g}" for v in np.asarray(x)], rotation=45)
    if y is not None:
        ax.set_yticks(range(len(y)), [f"{v:.3g}" for v in np.asarray(y)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax

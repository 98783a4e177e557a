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

    if ax is None:  # constrained layout keeps every label inside the figure
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
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


_NOT_METRICS = ("epoch", "step", "seconds", "skipped_steps")


def training(history: Mapping[str, Sequence[float]] | Sequence[Mapping], *, ax=None):
    """Training curves: every metric in `history`, against the epoch (1, 2, ...).

    **Arguments:**
    - `history`: a dict name → values per epoch (or step), or `bj.fit`'s `result.history`
      (a list of per-epoch dicts; its `epoch`, `step`, `seconds` and `skipped_steps` are not
      drawn).

    Losses go on the left axis and accuracies (names containing "acc") on a right one;
    with only one kind, it takes the left axis alone.
    """
    if not isinstance(history, Mapping):
        records = list(history)
        names = [n for n in dict.fromkeys(k for r in records for k in r) if n not in _NOT_METRICS]
        history = {n: [r.get(n, np.nan) for r in records] for n in names}
    if not history:
        raise ValueError("`history` holds no metric to draw.")
    fig, ax = _axes(ax)
    accuracies = [name for name in history if "acc" in name]
    losses = [name for name in history if name not in accuracies]
    right = ax.twinx() if losses and accuracies else ax  # the accuracies' axis
    for name, sequence in history.items():
        values = np.asarray(sequence, dtype=float)
        epochs = np.arange(1, len(values) + 1)
        if name in accuracies:
            right.plot(epochs, values, label=name, color="C2" if "test" in name else "C3")
            right.set_ylabel("accuracy")
        else:
            ax.plot(epochs, values, label=name)
            ax.set_ylabel("loss")
    ax.set_xlabel("epoch")
    handles = ax.get_legend_handles_labels()
    if right is not ax:
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

    **Arguments:**
    - `values`: a 2-D array `(y, x)`, or a `bj.SweepResult` of a product sweep over two
      axes (its names label the axes, its coordinates give the ticks; a scalar output).
    - `x`, `y`: the tick values: 1-D numbers (shown as numbers) or anything with a leading
      axis, e.g. a stacked `bj.ChipInstance` or an array of keys (shown as indices).
    - `xlabel`, `ylabel`, `label` (the colour bar), `ax`.
    """
    from ._sweep import SweepResult

    if isinstance(values, SweepResult):
        if len(values.names) != 2 or not values.product:
            raise ValueError(
                "`heatmap` needs a product sweep over exactly two axes; got "
                f"{'a product' if values.product else 'a zipped'} sweep over {values.names}."
            )
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
        ax.set_xticks(range(values.shape[1]), _tick_labels(x, values.shape[1], "x"), rotation=45)
    if y is not None:
        ax.set_yticks(range(values.shape[0]), _tick_labels(y, values.shape[0], "y"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def _tick_labels(coordinate, length: int, name: str) -> list[str]:
    """Tick labels for one axis of a heat map: the values of 1-D numbers or strings,
    indices for anything else with a leading axis of `length` (stacked chips, keys, ...)."""
    import jax

    if isinstance(coordinate, (list, tuple)):
        coordinate = np.asarray(coordinate)
    leaves = jax.tree_util.tree_leaves(coordinate)
    lengths = {np.shape(leaf)[0] for leaf in leaves if np.ndim(leaf) > 0}
    if lengths != {length}:
        raise ValueError(
            f"`{name}` must have a leading axis of length {length} (one entry per "
            f"{'column' if name == 'x' else 'row'}); got leading lengths {sorted(lengths)}."
        )
    if len(leaves) == 1 and np.ndim(leaves[0]) == 1:
        leaf = leaves[0]
        if not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            array = np.asarray(leaf)
            if array.dtype.kind in "biuf":
                return [f"{v:.3g}" for v in array]
            if array.dtype.kind in "US":
                return [str(v) for v in array]
    return [str(index) for index in range(length)]

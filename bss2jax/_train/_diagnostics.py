"""What `fit` says after its first epoch: the firing rate of every population (naming one
that never spikes or always spikes) and a hint when the loss does not move."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
from collections.abc import Callable, Hashable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._backend import AbstractBackend, Numeric
from .._network import AbstractNetwork
from .._parameters import model_value
from .._typing import user_facing

SATURATION = 0.9
"""A population "always spikes" when its neurons fire, on average, at this fraction of the
largest rate that their refractory time allows (one spike per `1 + ceil(refractory/dt)`
steps) or more."""


class TrainingWarning(UserWarning):
    """`fit`'s diagnostics: a population that never or always spikes, a loss that does not
    move. Silence it with `warnings.filterwarnings("ignore", category=bj.TrainingWarning)`
    or `fit(..., diagnose=False)`."""


class _Sink:
    """Collects, on the host, the spike counts that `_RateProbe` sends out of a traced run.
    The probe's callbacks write into the sink that `_collecting` holds (one at a time), so
    the probe itself has no per-call field and a second `fit` reuses its compiled program."""

    def __init__(self):
        self.counts: dict[Hashable, list] = {}
        self.describe: dict[Hashable, tuple[str, float]] = {}  # key -> (label, dt)

    def add(self, key, label, dt, spikes, entries, ceiling) -> None:
        spikes, ceiling = np.asarray(spikes, float), np.asarray(ceiling, float)
        # under vmap the callback may see a stacked leading axis: fold it in
        spikes = spikes.reshape(-1, spikes.shape[-1]).sum(axis=0)
        entries = float(np.sum(entries))
        ceiling = ceiling.reshape(-1, ceiling.shape[-1])[0]
        total = self.counts.setdefault(key, [np.zeros_like(spikes), 0.0, ceiling])
        total[0] = total[0] + spikes
        total[1] += entries
        self.describe[key] = (label, dt)


_LOCK = threading.Lock()  # one `firing_rates` at a time writes into `_CURRENT`
_CURRENT: list[_Sink | None] = [None]


def _send(key, label, dt, spikes, entries, ceiling) -> None:
    sink = _CURRENT[0]
    if sink is not None:
        sink.add(key, label, dt, spikes, entries, ceiling)


@contextlib.contextmanager
def _collecting(sink: _Sink):
    """Route the probe's callbacks into `sink` while the block runs (and its effects end)."""
    with _LOCK:
        _CURRENT[0] = sink
        try:
            yield sink
            jax.effects_barrier()
        finally:
            _CURRENT[0] = None


class _RateProbe(AbstractBackend):
    """A backend that observes as `inner` does and also sends every firing population's
    spike counts (of the run that `inner`'s observation gives) to the collecting sink."""

    inner: AbstractBackend

    def observe(self, network, inputs, *, dt, key):
        from .._run import _run_network

        recording = self.inner.observe(network, inputs, dt=dt, key=key)
        # what `run` gives with this recording injected (the inner backend observes once)
        outputs = _run_network(network, inputs, inputs, recording, dt, "auto", "auto")
        keys = network.population_keys()
        observed = outputs if isinstance(outputs, dict) else dict(zip(keys, outputs, strict=True))
        for name in keys:
            neuron = network.population(name)
            if not neuron.fire or observed[name].spikes is None:
                continue
            spikes = jax.lax.stop_gradient(observed[name].spikes)
            refractory = jnp.broadcast_to(model_value(neuron.refractory_time), (neuron.size,))
            ceiling = 1.0 / (1.0 + jnp.ceil(jax.lax.stop_gradient(refractory) / dt - 1e-6))
            entries = jnp.asarray(spikes.shape[0] * spikes.shape[1], dtype=float)
            label = f"population {name!r} ({type(neuron).__name__}, {neuron.size} neurons)"
            send = functools.partial(_send, name, label, dt)
            jax.debug.callback(send, jnp.sum(spikes, axis=(0, 1)), entries, ceiling)
        return recording


@eqx.filter_jit
def _probe_loss(loss, network, batch, key, backend):
    out = loss(network, batch, key=key, backend=backend)
    value = out[0] if isinstance(out, tuple) else out
    return jnp.asarray(value)


@user_facing
def firing_rates(
    network, loss: Callable, batch, *, key: jax.Array, backend: AbstractBackend = Numeric()
) -> dict:
    """The firing of every population while `loss` runs `network` on `batch`.

    Runs `loss(network, batch, key=key, backend=...)` once (jitted) with a backend that
    observes as `backend` does and counts the spikes of every firing population in every
    `bj.run` the loss makes (a loss that runs the network several times, e.g. once per
    noise draw, adds them up).

    **Returns:** a dict population key → dict with `"rate"` (mean spikes per neuron per
    step, float in [0, 1]), `"rate_hz"` (the same per second of chip time), `"silent"`
    (the fraction of neurons that never spiked), `"saturation"` (the rate over the largest
    one the refractory time allows, in [0, 1]) and `"label"` (a readable name). Empty when
    the loss runs no network (or none that fires).

    ```python
    rates = bj.firing_rates(net, loss, (x, y), key=jax.random.key(0))
    rates[0]["rate_hz"]
    ```
    """
    if not isinstance(backend, AbstractBackend):
        raise TypeError(f"`backend` must be a bss2jax backend; got {backend!r}.")
    with _collecting(_Sink()) as sink:
        _probe_loss(loss, network, batch, key, _RateProbe(backend))
    return _report(sink)


def _report(sink: _Sink) -> dict:
    """`firing_rates`' dict from the counts in `sink`."""
    report = {}
    for name, (spikes, entries, ceiling) in sink.counts.items():
        per_neuron = spikes / max(entries, 1.0)
        label, dt = sink.describe[name]
        report[name] = {
            "rate": float(per_neuron.mean()),
            "rate_hz": float(per_neuron.mean()) / dt,
            "silent": float(np.mean(spikes == 0)),
            "saturation": float(np.mean(per_neuron / ceiling)),
            "label": label,
        }
    return report


def check_firing(report: dict) -> list[str]:
    """Warnings (as `TrainingWarning`) for populations that never or always spike; returns
    the summary lines."""
    lines = []
    for entry in report.values():
        label = entry["label"]
        lines.append(
            f"{label}: {entry['rate']:.3g} spikes per neuron per step "
            f"({entry['rate_hz'] / 1e3:.3g} kHz), {100 * entry['silent']:.0f}% of neurons silent"
        )
        if entry["rate"] == 0:
            warnings.warn(
                f"{label} never spiked in the first epoch's probe batch: no gradient reaches "
                "the layers before it through its spikes. The weights are too small for its "
                "threshold: build it with `bj.LIF.model_space(n)` (threshold 1 in the model) "
                "and draw the weights with `bj.init_fluctuation_driven(network, inputs, "
                "key=...)`, or scale the weights up.",
                TrainingWarning,
                stacklevel=5,
            )
        elif entry["saturation"] >= SATURATION:
            warnings.warn(
                f"{label} fires at {100 * entry['saturation']:.0f}% of the largest rate its "
                "refractory time allows (it always spikes, whatever the input): the weights "
                "are too large. Lower them, e.g. `bj.init_fluctuation_driven(network, inputs, "
                "key=...)`.",
                TrainingWarning,
                stacklevel=5,
            )
    return lines


def check_loss_moves(before: float, after: float) -> str | None:
    """A `TrainingWarning` when a loss did not change over the first epoch (`before` and
    `after` it, on the same batch and key); returns its message, or None."""
    if not (math.isfinite(before) and math.isfinite(after)):
        return None
    if abs(after - before) > 1e-6 * max(1.0, abs(before)):
        return None
    message = (
        f"the loss did not move over the first epoch ({before:.6g} before it, {after:.6g} "
        "after it, on one training batch)"
    )
    classes = round(math.exp(after)) if 0 < after < math.log(10_000) else 0
    if classes >= 2 and abs(after - math.log(classes)) < 1e-3:
        message += (
            f"; it equals ln({classes}), a cross-entropy at chance level over {classes} "
            "classes: the scores do not depend on the input (often a population that never "
            "spikes; see `bj.firing_rates`)"
        )
    message += (
        ". Check that the gradient reaches the weights (`trainable`), the learning rate and "
        "the firing (`bj.firing_rates`)."
    )
    warnings.warn(message, TrainingWarning, stacklevel=5)
    return message


def diagnose_first_epoch(loss, before, after, batch, key, backend, progress: bool) -> None:
    """`fit`'s report after its first epoch, on one training `batch`: the firing of every
    population of the network `after` it (printed with `progress`; a `TrainingWarning` for
    a population that never or always spikes) and a `TrainingWarning` when the loss of
    `before` equals that of `after`. Skipped with several processes (each holds its own
    part of the data)."""
    if jax.process_count() > 1:
        return
    probe = _RateProbe(backend)
    with _collecting(_Sink()):
        initial = float(_probe_loss(loss, before, batch, key, probe))
    with _collecting(_Sink()) as sink:
        final = float(_probe_loss(loss, after, batch, key, probe))
    if isinstance(after, AbstractNetwork) and sink.counts:
        lines = check_firing(_report(sink))
        if progress:
            from tqdm import tqdm

            tqdm.write("firing after epoch 1 (one batch):\n  " + "\n  ".join(lines))
    check_loss_moves(initial, final)

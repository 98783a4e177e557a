"""The probe campaign's kit (`probe_campaign.py`): outcomes, their classification, the
registry of probes, a small network, a stand-in chip client, and fixtures."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tempfile
import threading
import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import bss2jax as bj
import bss2jax.hardware as bjh
from bss2jax._cli import main as cli

logging.getLogger("jax._src.callback").setLevel(logging.CRITICAL)  # a failed check's log
ERROR, CORRECT = "clear error", "correct"
OBSCURE, SILENT, LOSS, CONCURRENT = "obscure error", "silently wrong", "data loss", "concurrent"
FAILURES = (OBSCURE, SILENT, LOSS, CONCURRENT)
KINDS = ("data loss", "concurrency", "silent wrong", "obscure error", "other", "generated")
PROBES: list[tuple[str, str, object]] = []
NAMED = re.compile(r"`[^`]+`[^\n]*must|must[^\n]*`[^`]+`")
BSS2JAX_ERRORS = tuple(
    getattr(bj, name)
    for name in dir(bj)
    if name.endswith("Error") and isinstance(getattr(bj, name), type)
)


def probe(kind: str):
    def register(function):
        PROBES.append((kind, function.__name__, function))
        return function

    return register


def classify(error: BaseException) -> str:
    """A clear error, or an obscure one (see the module docstring)."""
    if isinstance(error, SystemExit):
        return ERROR if error.code == 2 else OBSCURE
    if isinstance(error, BSS2JAX_ERRORS):
        return ERROR
    if type(error) in (TypeError, ValueError) and "`" in str(error):  # names the argument
        return ERROR
    return ERROR if NAMED.search(str(error)) else OBSCURE  # a run-time check under `jit`


def refused(function, *args, **kwargs) -> str:
    """`function(...)` must raise: a clear error, an obscure one, or silently wrong."""
    try:
        jax.block_until_ready(function(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - classified
        return classify(error)
    return SILENT


def warned(pattern: str, function, *args, **kwargs):
    """`(correct or silent, result)`: whether `function(...)` warned with `pattern`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = jax.block_until_ready(function(*args, **kwargs))
    hit = any(re.search(pattern, str(w.message)) for w in caught)
    return (CORRECT if hit else SILENT), result


def layer(scale=1.0, weight=0.5, **lif):
    synapse = bj.Synapse(
        2, 2, weight=jnp.full((2, 2), weight), transform=bj.linear_saturating(scale)
    )
    return bj.Sequential([synapse, bj.LIF(2, **lif)])


def with_weight(network, weight):
    return eqx.tree_at(lambda n: n.layers[0].weight, network, jnp.full((2, 2), weight))


SPIKES = jnp.zeros((5, 1, 2)).at[1, 0, 0].set(1.0)
NOMINAL = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())
TMP = Path(tempfile.mkdtemp(prefix="bss2jax-probes-"))


class Client(bjh.AbstractClient):
    """A minimal chip stand-in: constant CADC reads, no spikes; counts overlapping calls."""

    def __init__(self, hold: threading.Event | None = None, confirm_cancel=False, delay=0.0):
        self.hold, self.confirm_cancel, self.delay = hold, confirm_cancel, delay
        self.active = self.most_active = self.calls = 0
        self.lock = threading.Lock()

    def execute(self, request):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.hold is not None:
                self.hold.wait(10.0)
            time.sleep(self.delay)
            self.calls += 1
            return _constant_recording(request)
        finally:
            with self.lock:
                self.active -= 1

    def cancel(self):
        return self.confirm_cancel


def _constant_recording(request):
    cadc, spikes = {}, {}
    for p in request.populations:
        if p.record_cadc:
            shape = (request.batch_size, p.size, 3)
            times = np.broadcast_to(np.linspace(0, request.runtime * 0.9, 3), shape)
            b = np.broadcast_to(np.arange(shape[0])[:, None, None], shape)
            n = np.broadcast_to(np.arange(shape[1])[None, :, None], shape)
            cadc[p.key] = bjh.CADCSamples(
                times.ravel().copy(),
                np.full(times.size, 100.0),
                n.ravel().astype(np.int32),
                b.ravel().astype(np.int64),
            )
        if p.record_spikes:
            empty = np.zeros(0, np.int32)
            spikes[p.key] = bjh.SpikeEvents(np.zeros(0), empty, empty)
    return bjh.RawRecording(spikes=spikes, cadc=cadc, madc={})


def fresh(name: str) -> Path:
    path = TMP / name
    path.mkdir(parents=True, exist_ok=True)
    return path


SGD = optax.sgd(1.0)


def sqrt_loss(params, batch, *, key, backend):
    """sqrt(w): SGD(1) from w = 1 reaches w < 0 at step 3 (NaN)."""
    return jnp.sqrt(params["w"]) + 0.0 * jnp.sum(batch)


def fit_sqrt(output, **options):
    options = {"epochs": 1, "batch_size": 1, "progress": False, **options}
    data = jnp.zeros((4, 1))
    return bj.fit(
        {"w": jnp.array(1.0)}, sqrt_loss, SGD, data, key=jax.random.key(0), output=output, **options
    )


def strict_json(path: Path):
    def refuse(token):
        raise ValueError(token)

    return json.loads(path.read_text(), parse_constant=refuse)


def quiet_cli(argv) -> str:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return refused(cli, argv)

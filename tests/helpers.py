"""Shared test helpers: tolerance-aware tree comparison, the tables of neuron types,
surrogates and in-process backends, and a test backend that replays a synthetic recording.

The table of every backend, with `Hardware` over a worker process and `Replay`, is in
`test_conformance.py` (it needs module fixtures).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import bss2jax as bj
import bss2jax.hardware as bjh

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The script `benchmarks/<name>.py` as a module (benchmarks are not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _default_tols(dtype):
    if dtype == jnp.float64:
        return 1e-10, 1e-12
    return 1e-5, 1e-6


def tree_allclose(x, y, *, rtol=None, atol=None) -> bool:
    """True if `x` and `y` have the same structure, shapes and dtypes, and close values.

    Tolerances default by dtype: `(rtol, atol) = (1e-5, 1e-6)` for float32 and
    `(1e-10, 1e-12)` for float64. Non-array leaves must be equal.
    """
    x_leaves, x_tree = jax.tree_util.tree_flatten(x)
    y_leaves, y_tree = jax.tree_util.tree_flatten(y)
    if x_tree != y_tree:
        return False
    for a, b in zip(x_leaves, y_leaves, strict=True):
        if eqx.is_array_like(a) and eqx.is_array_like(b):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or a.dtype != b.dtype:
                return False
            default_rtol, default_atol = _default_tols(a.dtype)
            if not np.allclose(
                a,
                b,
                rtol=default_rtol if rtol is None else rtol,
                atol=default_atol if atol is None else atol,
                equal_nan=True,
            ):
                return False
        elif a != b:
            return False
    return True


def tree_equal(x, y) -> bool:
    """Bit-for-bit equality of two pytrees (structure, shapes, dtypes, values)."""
    return bool(eqx.tree_equal(x, y, typematch=True))


def exported_subclasses(base: type) -> tuple[type, ...]:
    """The classes in `bj.__all__` that subclass `base` (other than `base`), in its order."""
    names = [getattr(bj, name) for name in bj.__all__]
    return tuple(c for c in names if isinstance(c, type) and issubclass(c, base) and c is not base)


# Derived from the public API, so a new neuron type or surrogate is in the tables at once.
ALL_NEURON_TYPES = exported_subclasses(bj.AbstractNeuron)
ALL_SURROGATES = exported_subclasses(bj.AbstractSurrogate)
ALL_BACKENDS = (bj.Numeric(),)


def model_space_neuron(cls, size, **kwargs):
    """A neuron of type `cls` in a convenient model space: leak 0, reset 0, threshold 1.

    For AdEx the exponential threshold is put at 1 (slope 0.1) so that the exponential
    term stays small below threshold.
    """
    options = dict(leak=0.0)
    if cls is not bj.LI:
        options.update(reset=0.0, threshold=1.0)
    if cls is bj.AdEx:
        options.update(exponential_threshold=1.0, exponential_slope=0.1)
    options.update(kwargs)
    return cls(size, **options)


class SyntheticBackend(bj.AbstractBackend):
    """A test backend that 'observes' a fixed synthetic `Recording`."""

    recording: bj.Recording

    def observe(self, network, inputs, *, dt, key):
        del network, inputs, dt, key
        return self.recording


def sent_request(net, inputs, *, dt, key=None):
    """The `ExperimentRequest` that `bj.Hardware` builds for `net` on `inputs`.

    A spy client records the request and fails the run, so no chip (model) is needed.
    """
    import pytest

    seen = []

    class Spy(bjh.AbstractClient):
        def execute(self, request):
            seen.append(request)
            raise bj.HardwareError("spy")

    with pytest.raises(bj.HardwareError, match="spy"):
        bj.Hardware(Spy(), retries=0).observe(net, inputs, dt=dt, key=key)
    return seen[0]

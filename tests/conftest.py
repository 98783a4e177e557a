"""Shared fixtures: a `getkey` fixture, float64 on demand, Hypothesis profiles.

The suite runs with strict dtype promotion and rank promotion raising (as equinox's tests
do): the library casts and broadcasts explicitly. The runtime type checks come from
jaxtyping's import hook with beartype (`--jaxtyping-packages` in pytest's addopts).
"""

from __future__ import annotations

import os

import hypothesis
import jax
import pytest

# Strict dtype promotion and rank promotion raising, as in equinox's tests.
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# The CLI's persistent compilation cache stays off in tests (and in the subprocesses they
# start) unless a test names a folder: the suite writes nothing under ~/.cache.
os.environ.setdefault("BSS2JAX_COMPILATION_CACHE", "off")

hypothesis.settings.register_profile("dev", deadline=None, max_examples=25)
hypothesis.settings.register_profile(
    "ci", deadline=None, max_examples=25, derandomize=True, print_blob=True
)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def getkey():
    """A function returning a fresh PRNG key each call, seeded per test (reproducible)."""
    key = [jax.random.PRNGKey(5678)]

    def _getkey():
        key[0], sub = jax.random.split(key[0])
        return sub

    return _getkey


@pytest.fixture
def x64():
    """Enable float64 for the duration of one test (never globally for the suite)."""
    with jax.enable_x64(True):
        yield

"""Shared fixtures: a `getkey` fixture, float64 on demand, Hypothesis profiles."""

from __future__ import annotations

import os

import hypothesis
import jax
import pytest

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

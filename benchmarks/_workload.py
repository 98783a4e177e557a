"""Workload A's shared definition: the time grid, the neurons' constants, the loss.

Used by `train_step.py` and the peers in `_peers.py`, so that every implementation trains
the same network on the same loss.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

DT = 1e-6
"""Grid step, s."""
TAU = 6e-6
"""tau_mem = tau_syn, s."""
CAPACITANCE = 10e-6
"""bss2jax's membrane capacitance in its model units (current enters as dt / C per step)."""


def loss_from_readout(readout, labels):
    """Cross-entropy of the max-over-time readout `(time, batch, classes)`."""
    logits = jnp.max(readout, axis=0)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

"""The twin's per-row synapse gains, fitted to the synapse-row probe (`probe_chip(inputs=k)`).

A circuit's signed input `i` goes through synapse row `2 i` (excitatory) or `2 i + 1`
(inhibitory), each with its own weight-DAC factor `synapse_gain[circuit, row]` (5 % spread
on a calibrated chip). The six probes of `bss2jax._probe` see rows 0 and 1 only; the
row probe drives the others, one PSP per row, and this step fits them:

- after the rest of the fit (`bss2jax._identify`), with the twin's fitted potentials,
  time constants and gains fixed, the twin's noiseless chip model predicts each row run's
  mean trace (`dithered_trace`). A PSP's amplitude is linear in its row's factor (one
  weight-63 event stays in the synaptic input's linear regime), so Gauss-Newton steps on
  the log-factors of a run's rows are exact up to the saturation's small curvature; two
  steps, each from forward-mode derivatives through `ChipModel(gradient="through")`, one
  per row of the run, and a small solve per neuron (a neuron's trace depends on its own
  circuit's rows only);
- each probed row's effective gain (`synaptic_gain * synapse_gain[circuit, row]`) is then
  the row probe's own estimate: a PSP of the twin's shape fitted to the row's recorded PSP,
  with the noise of that row's PSP only (the synaptic gain fitted before cancels). The
  twin stores it in canonical form (`canonical_rows`, as `bj.canonical_chip`): rows 0 and 1
  (fitted here too) move into the synaptic gains, every row relative to them.

Rows the probe did not drive keep their effective gain (the synaptic gain fitted before).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._backend import ChipModel
from ._chip._config import ChipConfig
from ._chip._instance import ChipInstance
from ._constants import SYNAPSE_ROWS
from ._probe import ProbeData, observe_probe

DITHER = 8
"""Readings per predicted sample: the twin's trace is the mean over `DITHER` copies of the
chip whose CADC offsets are shifted by `(k + 1/2) / DITHER - 1/2` LSB, so the CADC's
rounding averages out (as the noise averages it out of the recorded mean traces) to
within `1 / (2 DITHER)` LSB."""
ROW_STEPS = 2
"""Gauss-Newton steps per row run."""


def dithered_trace(chip: ChipInstance, config: ChipConfig, network, x, dt: float) -> jax.Array:
    """The chip model's CADC trace `(time, n)` of `network` on the first entry of `x`,
    the mean over `DITHER` CADC offsets (see `DITHER`), differentiable
    (`gradient="through"`); `config` should be noiseless."""
    shifts = (jnp.arange(DITHER, dtype=jnp.float32) + 0.5) / DITHER - 0.5

    def trace(shift):
        shifted = eqx.tree_at(lambda c: c.cadc_offset, chip, chip.cadc_offset + shift)
        backend = ChipModel(shifted, config, gradient="through")
        return observe_probe(backend, network, x[:, :1], None, dt)[0][:, 0]

    return jax.vmap(trace)(shifts).mean(0)


@eqx.filter_jit
def _linearise(chip, circuits, slots, network, x, target, config, dt):
    """Residuals `(time, n)` of one row run at `chip`, and their derivatives `(R, time, n)`
    with respect to the log-factor of each slot's row (`slots` float `(R, 256)`, one-hot
    or zero for an empty slot) at every probed circuit."""

    def residual(log_factors):  # (n, R)
        rows = chip.synapse_gain[circuits] * jnp.exp(log_factors @ slots)
        moved = eqx.tree_at(
            lambda c: c.synapse_gain, chip, chip.synapse_gain.at[circuits].set(rows)
        )
        return dithered_trace(moved, config, network, x, dt) - target

    count = slots.shape[0]
    zero = jnp.zeros((circuits.shape[0], count), jnp.float32)
    basis = jnp.eye(count, dtype=jnp.float32)[:, None, :] + zero[None]
    values, tangents = jax.vmap(lambda t: jax.jvp(residual, (zero,), (t,)))(basis)
    return values[0], tangents


def _gauss_newton_step(residual: jax.Array, jacobian: jax.Array) -> jax.Array:
    """Per neuron, the least-squares step `(n, R)` of the log-factors; an empty slot (no
    derivative) gets 0 from the small ridge term."""
    normal = jnp.einsum("ktn,ltn->nkl", jacobian, jacobian)
    gradient = jnp.einsum("ktn,tn->nk", jacobian, residual)
    scale = jnp.maximum(jnp.trace(normal, axis1=1, axis2=2) / normal.shape[-1], 1e-12)
    ridge = 1e-6 * scale[:, None, None] * jnp.eye(normal.shape[-1])[None]
    step = -jnp.linalg.solve(normal + ridge, gradient[..., None])[..., 0]
    return jnp.clip(jnp.where(jnp.isfinite(step), step, 0.0), -0.5, 0.5)


def canonical_rows(chip: ChipInstance) -> ChipInstance:
    """`chip` with each circuit's row factors relative to its rows 0 (excitatory rows) and 1
    (inhibitory rows), those two moved into the synaptic gains (as `bj.canonical_chip`):
    every row's effective gain `synaptic_gain * synapse_gain` stays the same."""
    rows = chip.synapse_gain
    exc, inh = rows[..., 0:1], rows[..., 1:2]
    even = jnp.arange(rows.shape[-1]) % 2 == 0
    return eqx.tree_at(
        lambda c: (c.synaptic_gain_exc, c.synaptic_gain_inh, c.synapse_gain),
        chip,
        (
            chip.synaptic_gain_exc * exc[..., 0],
            chip.synaptic_gain_inh * inh[..., 0],
            jnp.where(even, rows / exc, rows / inh),
        ),
    )


def fit_rows(chip: ChipInstance, data: ProbeData, config: ChipConfig):
    """Fit the probed circuits' synapse-row factors to `data.rows` (module docstring).

    **Returns:** `(chip, rms)`: the twin, and float `(2, groups)` the RMS (LSB) of its
    traces against each row run's recorded mean trace.
    """
    rows = data.rows
    if rows is None:
        raise ValueError("`data` has no synapse-row probe (probe_chip(..., inputs=k)).")
    c = data.circuits
    rms = []
    for sign, network in enumerate(rows.networks):
        row_ids = rows.rows(sign)
        each = []
        for g in range(row_ids.shape[0]):
            slots = jax.nn.one_hot(row_ids[g], SYNAPSE_ROWS, dtype=jnp.float32)  # -1: zeros
            for step in range(ROW_STEPS + 1):
                residual, jacobian = _linearise(
                    chip, c, slots, network, rows.inputs[g], rows.traces[sign, g], config, data.dt
                )
                if step == ROW_STEPS:
                    break
                factor = jnp.exp(_gauss_newton_step(residual, jacobian) @ slots)
                chip = eqx.tree_at(
                    lambda ch: ch.synapse_gain,
                    chip,
                    chip.synapse_gain.at[c].multiply(factor),
                )
            each.append(jnp.sqrt(jnp.mean(residual**2)))
        rms.append(jnp.stack(each))
    return canonical_rows(chip), jnp.stack(rms)

"""`fit_hardware_aware`: the phased hardware-aware schedule as one call, for any network,
loss and data set: numerics with training noise standing for a chip's mismatch, then the
chip in the loop across several chip instances per step; weights kept in the chip's range
throughout. Its phases run through `run_phases` (one `bj.fit` per `Phase`), which the
Yin-Yang recipe (`bss2jax train`) runs its phases through too."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import optax

from .._backend import ChipModel, Numeric, RandomChips
from .._chip._instance import ChipInstance
from .._misc import positive_int
from .._typing import user_facing
from ._fit import FitResult, fit
from ._hardware_aware import clip_weights, hardware_aware

# `fit` keywords that the schedule sets per phase (the others are its own arguments).
_OWN = ("backend", "eval_backend", "epochs")


class HardwareAwareResult(NamedTuple):
    """What `fit_hardware_aware` returns: the trained `network`, each phase's `history`
    (`{"numerics": [...], "chips": [...]}`, the phases that ran, in order) and each phase's
    `FitResult` (`results`, same keys: its optimiser state, the step it resumed from)."""

    network: Any
    histories: dict[str, list]
    results: dict[str, FitResult]


def _check_epochs(numerics_epochs, chip_epochs) -> tuple[int, int]:
    epochs = []
    for name, value in (("numerics_epochs", numerics_epochs), ("chip_epochs", chip_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int; got {value!r}.")
        epochs.append(value)
    if not any(epochs):
        raise ValueError("`numerics_epochs` and `chip_epochs` are both 0: nothing to train.")
    return epochs[0], epochs[1]


@user_facing
def fit_hardware_aware(
    network,
    loss: Callable,
    train,
    *,
    chip: ChipInstance,
    key: jax.Array,
    batch_size: int,
    test=None,
    numerics_epochs: int = 30,
    chip_epochs: int = 5,
    numerics_optimiser: optax.GradientTransformation | None = None,
    chip_optimiser: optax.GradientTransformation | None = None,
    numerics_loss: Callable | None = None,
    chips_per_call: int = 5,
    anchor_probability: float = 0.3,
    gradient: Literal["inject", "through"] = "inject",
    chip_config=None,
    constrain: Callable | None = clip_weights,
    eval_loss: Callable | None = None,
    output: str | os.PathLike | None = None,
    config: Mapping | None = None,
    **options: Any,
) -> HardwareAwareResult:
    """Train `network` for the chip `chip` so that it keeps its accuracy on other chips.

    Two `bj.fit` calls, the second starting from the first's network (a phase with 0
    epochs is skipped), both applying `constrain` after every step (default
    `bj.clip_weights`: `|w| <= 63 / scale`, the range where model and chip agree):

    1. **numerics** (`numerics_epochs`, `numerics_optimiser`, default `optax.adam(5e-3)`):
       `numerics_loss`, default `bj.hardware_aware(loss, draws=5)`, on `bj.Numeric()`: a
       fresh draw of `bj.perturb`'s training noise for each of 5 groups of a batch (as the
       Yin-Yang recipe), standing for the mismatch of a chip not yet known; evaluated with
       the plain loss in the numerics.
    2. **chips** (`chip_epochs`, `chip_optimiser`, default `optax.adam(3e-4)`): `loss` with
       the chip model in the loop on `bj.RandomChips(anchor=chip, ...)`: each batch is cut
       into `chips_per_call` groups, each on `chip` with probability `anchor_probability`,
       else on a fresh random chip, so each step averages over several chips; evaluated on
       `bj.ChipModel(chip)`.
    Fine-tuning on `chip` alone learns its mismatch and loses accuracy on other chips; this
    schedule keeps it (benchmarks/hardware_aware.py measures both).

    **Arguments:**
    - `network`, `loss` (the plain loss), `train`, `test`, `batch_size`, `key`: as for
      `bj.fit`; each phase gets its own key.
    - `chip`: the target `bj.ChipInstance` (for real hardware: a digital twin of it).
    - `numerics_epochs`, `chip_epochs`: non-negative ints, not both 0.
    - `numerics_loss`: the numerics phase's loss, e.g. other noise:
      `bj.hardware_aware(loss, weight_noise=0.1, draws=5)` (its `draws` must divide
      `batch_size`); None: `bj.hardware_aware(loss, draws=5)`.
    - `chips_per_call`, `anchor_probability`, `gradient`, `chip_config`: as for
      `bj.RandomChips` (`gradient` and `chip_config` also for evaluating on the target).
    - `constrain`: applied after each step (None: nothing); `eval_loss`: default `loss`.
    - `output`: a folder; each phase checkpoints in its own subfolder (`numerics/`,
      `chips/`) with its `metrics.json`, so a rerun resumes where it stopped.
    - `config`: JSON-able, stored with each phase's checkpoints (plus `phase`); `options`:
      other keywords of `bj.fit` (`progress`, `trainable`, `diagnose`, ...), for both.

    **Returns:** `HardwareAwareResult(network, histories, results)`.

    ```python
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))
    result = bj.fit_hardware_aware(net, loss, train, test=test, chip=chip, batch_size=50,
                                   key=jax.random.key(1), numerics_epochs=30, chip_epochs=5)
    result.histories["chips"][-1]["test_accuracy"]
    ```
    """
    epochs = _check_epochs(numerics_epochs, chip_epochs)
    noisy = hardware_aware(loss, draws=5) if numerics_loss is None else numerics_loss
    if not callable(noisy):
        raise TypeError(f"`numerics_loss` must be callable (a loss); got {noisy!r}.")
    _check_settings(chip, batch_size, getattr(noisy, "draws", 1), chips_per_call, options)
    chips: dict[str, Any] = dict(gradient=gradient, anchor_probability=anchor_probability)
    chips |= dict(config=chip_config, anchor=chip, chips_per_call=chips_per_call)
    optimisers = (numerics_optimiser, chip_optimiser)
    phases = _phases(loss, noisy, chips, epochs, optimisers, output, dict(config or {}))
    common = dict(test=test, eval_loss=loss if eval_loss is None else eval_loss, **options)
    common |= dict(batch_size=batch_size, constrain=constrain)
    return run_phases(network, train, phases, key=key, **common)


class Phase(NamedTuple):
    """One `bj.fit` call of a phased schedule (`run_phases`): its `name`, `epochs` (0: skipped),
    `loss`, `optimiser`, training `backend` and `eval_backend` (None: `backend`), its `key`
    (None: `fold_in(key, index)` of the schedule's key), `output` folder (None: none) and
    other `bj.fit` keywords of its own (`options`: `config`, `eval_loss`, `trainable`, ...)."""

    name: str
    epochs: int
    loss: Callable
    optimiser: optax.GradientTransformation
    backend: Any
    eval_backend: Any = None
    key: jax.Array | None = None
    output: str | os.PathLike | None = None
    options: Mapping[str, Any] = {}


def _phases(loss, noisy, chips: dict, epochs, optimisers, output, config: dict) -> tuple:
    """The two phases of `fit_hardware_aware`: numerics with noise, then the chips."""
    target = ChipModel(chips["anchor"], chips["config"], gradient=chips["gradient"])
    folder = None if output is None else Path(output)

    def phase(name, count, phase_loss, optimiser, backend, eval_backend=None) -> Phase:
        where = None if folder is None else folder / name
        options = {"config": {**config, "phase": name}}
        return Phase(
            name, count, phase_loss, optimiser, backend, eval_backend, None, where, options
        )

    return (
        phase("numerics", epochs[0], noisy, optimisers[0] or optax.adam(5e-3), Numeric()),
        phase(
            "chips",
            epochs[1],
            loss,
            optimisers[1] or optax.adam(3e-4),
            RandomChips(**chips),
            target,
        ),
    )


def _check_settings(chip, batch_size, draws, chips_per_call, options) -> None:
    """Check what a later phase would only meet after the first has run."""
    if not isinstance(chip, ChipInstance):
        raise TypeError(
            f"`chip` must be a bj.ChipInstance (the target chip); got {type(chip).__name__}."
        )
    batch_size = positive_int(batch_size, "batch_size")
    for name, value in (("draws", draws), ("chips_per_call", chips_per_call)):
        if positive_int(value, name) and batch_size % value:
            raise ValueError(
                f"`{name}` ({value}) must divide `batch_size` ({batch_size}): each batch is cut "
                f"into {value} equal groups."
            )
    clashing = sorted(set(options) & set(_OWN))
    if clashing:
        raise TypeError(
            f"fit_hardware_aware sets `bj.fit`'s {clashing} itself (per phase); see its arguments."
        )


def run_phases(network, train, phases, *, key: jax.Array | None = None, **common):
    """`bj.fit` for each phase with epochs, each from the network the one before gave: the
    schedule of `fit_hardware_aware` and of the Yin-Yang recipe (`bss2jax train`).

    `phases`: `Phase`s in order; `key`: the schedule's key, for phases without their own
    (`fold_in(key, index)`); `common`: `bj.fit` keywords for every phase (a phase's
    `options` add to them). Returns `HardwareAwareResult(network, histories, results)`,
    keyed by phase name (the phases that ran, in order)."""
    histories: dict[str, list] = {}
    results: dict[str, FitResult] = {}
    for index, phase in enumerate(phases):
        if not phase.epochs:
            continue
        phase_key = phase.key
        if phase_key is None:
            if key is None:
                raise ValueError(f"phase {phase.name!r} has no key, and `key` is None.")
            phase_key = jax.random.fold_in(key, index)
        result = fit(
            network,
            phase.loss,
            phase.optimiser,
            train,
            epochs=phase.epochs,
            key=phase_key,
            backend=phase.backend,
            eval_backend=phase.eval_backend,
            output=phase.output,
            **{**common, **phase.options},
        )
        network = result.network
        histories[phase.name], results[phase.name] = result.history, result
    return HardwareAwareResult(network, histories, results)

"""`RandomChips`: the chip model on a freshly drawn chip instance at every call."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from .._chip._config import ChipConfig
from .._chip._instance import ChipInstance, MismatchProfile
from .._errors import BackendError
from .._misc import join_batch, positive_int, split_batch
from .._recording import PopulationRecording, Recording
from .._typing import user_facing
from ._base import AbstractBackend
from ._chip_model import ChipModel


class RandomChips(AbstractBackend):
    """The chip model, on a new chip instance drawn from the key at every call.

    Training with it is training across the population of chips that `profile` describes
    (domain randomisation over the fixed-pattern mismatch): the network cannot lean on one
    chip's pattern, so it keeps its accuracy on chips it has never seen. With `anchor`, a
    call runs on that one chip instead with probability `anchor_probability`: the chip
    in the loop, kept from specialising to it.

    **Arguments:**
    - `profile`: the `MismatchProfile` the chips are drawn from (default: calibrated).
    - `config`: the `ChipConfig` of every chip (default settings when None).
    - `gradient`: "inject" or "through", as for `ChipModel`. "through" differentiates
      the drawn chip itself, so the gradient knows that chip's mismatch.
    - `anchor`: a `ChipInstance`, or None.
    - `anchor_probability`: in [0, 1]; the chance that a call runs on `anchor`.
    - `chips_per_call`: int >= 1. With `K > 1` the batch is cut into `K` equal groups of
      consecutive samples, each run on its own chip (and anchored on its own coin): one
      gradient step then averages over `K` chips at the cost of a batch of the same
      size, which steadies training across chips. The batch size must be a multiple of `K`.

    Semantics, per call (`chips_per_call=1`: one chip for the whole batch):
    ```python
    chip_key, coin_key, key = split(key, 3)
    chip = ChipInstance.random(chip_key, profile)
    if anchor is not None and bernoulli(coin_key, anchor_probability):
        chip = anchor
    return ChipModel(chip, config, gradient=gradient).observe(network, inputs, dt=dt, key=key)
    ```
    With `K > 1`, group `k` (samples `k * B/K` to `(k + 1) * B/K - 1`) does the same with
    `split(key, K)[k]` in place of `key`; the groups' recordings are joined along the batch.

    ```python
    backend = bj.RandomChips(gradient="through")
    step = bj.make_train_step(loss, optax.adam(5e-3))
    net, opt_state, metrics = step(net, opt_state, batch, key=key, backend=backend)
    # each call (each key) meets another chip; with the anchor, chip 0 three times in ten:
    backend = bj.RandomChips(anchor=chip0, anchor_probability=0.3)
    # five chips per step, a fifth of the batch on each:
    backend = bj.RandomChips(gradient="through", chips_per_call=5)
    ```
    """

    profile: MismatchProfile = eqx.field(static=True)
    config: ChipConfig = eqx.field(static=True)
    gradient: str = eqx.field(static=True)
    anchor: ChipInstance | None
    anchor_probability: float = eqx.field(static=True)
    chips_per_call: int = eqx.field(static=True)

    @user_facing
    def __init__(
        self,
        profile: MismatchProfile | None = None,
        config: ChipConfig | None = None,
        *,
        gradient: Literal["inject", "through"] = "inject",
        anchor: ChipInstance | None = None,
        anchor_probability: float = 0.0,
        chips_per_call: int = 1,
    ):
        profile = MismatchProfile.calibrated() if profile is None else profile
        if not isinstance(profile, MismatchProfile):
            raise TypeError(f"`profile` must be a bj.MismatchProfile; got {profile!r}.")
        config = ChipConfig() if config is None else config
        if not isinstance(config, ChipConfig):
            raise TypeError(f"`config` must be a bj.ChipConfig; got {config!r}.")
        if gradient not in ("inject", "through"):
            raise ValueError(f"`gradient` must be 'inject' or 'through'; got {gradient!r}.")
        if anchor is not None and not isinstance(anchor, ChipInstance):
            raise TypeError(f"`anchor` must be a bj.ChipInstance or None; got {anchor!r}.")
        if (
            isinstance(anchor_probability, bool)
            or not isinstance(anchor_probability, (int, float))
            or not 0.0 <= anchor_probability <= 1.0
        ):
            raise ValueError(
                f"`anchor_probability` must be a float in [0, 1]; got {anchor_probability!r}."
            )
        if anchor is None and anchor_probability:
            raise ValueError(
                f"`anchor_probability` is {anchor_probability} but there is no `anchor`; pass "
                "the chip instance to come back to."
            )
        self.chips_per_call = positive_int(chips_per_call, "chips_per_call")
        self.profile = profile
        self.config = config
        self.gradient = gradient
        self.anchor = anchor
        self.anchor_probability = float(anchor_probability)

    def chip(self, key: jax.Array) -> ChipInstance:
        """The chip instance a call with `key` runs on; with `chips_per_call=K > 1`, the
        `K` instances of its groups, stacked (`ChipInstance.stack`)."""
        if self.chips_per_call == 1:
            return self._draw(*jax.random.split(key, 3)[:2])
        keys = jax.random.split(key, self.chips_per_call)
        return jax.vmap(lambda k: self._draw(*jax.random.split(k, 3)[:2]))(keys)

    def _draw(self, chip_key, coin_key) -> ChipInstance:
        chip = ChipInstance.random(chip_key, self.profile)
        if self.anchor is not None and self.anchor_probability > 0:
            coin = jax.random.bernoulli(coin_key, self.anchor_probability)
            chip = jax.tree.map(lambda a, b: jnp.where(coin, a, b), self.anchor, chip)
        return chip

    def observe(self, network, inputs, *, dt, key):
        if key is None:
            raise ValueError(
                "`key` is required: RandomChips draws a chip instance from it at every call "
                "(pass key=jax.random.key(...))."
            )
        if self.chips_per_call == 1:
            return self._observe_one(network, inputs, key, dt)
        groups = self.chips_per_call
        batch = inputs.shape[1]
        if batch % groups:
            raise BackendError(
                f"RandomChips(chips_per_call={groups}) cuts the batch into {groups} equal "
                f"groups, so the batch size must be a multiple of {groups}; got {batch}."
            )
        keys = jax.random.split(key, groups)
        recording = jax.vmap(lambda x, k: self._observe_one(network, x, k, dt))(
            split_batch(inputs, groups), keys
        )
        populations = {name: _join_groups(p) for name, p in recording.populations.items()}
        dropped, clipped = recording.dropped_inputs, recording.clipped_weights
        return Recording(
            populations,
            None if dropped is None else dropped.reshape(-1),  # (groups, batch / groups)
            None if clipped is None else clipped[0],  # one network: the same in every group
        )

    def _observe_one(self, network, inputs, key, dt):
        chip_key, coin_key, noise_key = jax.random.split(key, 3)
        model = ChipModel(self._draw(chip_key, coin_key), self.config, gradient=self.gradient)
        return model.observe(network, inputs, dt=dt, key=noise_key)


def _join_groups(recording: PopulationRecording) -> PopulationRecording:
    """Recordings of `K` groups stacked on a leading axis → one recording of the whole batch.

    Grid traces are `(K, time, B/K, ...)` → `(time, B, ...)`; raw MADC samples are
    `(K, B/K, samples)` → `(B, samples)`.
    """

    def grid(trace):
        return None if trace is None else join_batch(trace)

    def raw(samples):
        return None if samples is None else samples.reshape(-1, *samples.shape[2:])

    return PopulationRecording(
        spikes=grid(recording.spikes),
        membrane_cadc=grid(recording.membrane_cadc),
        membrane_madc=grid(recording.membrane_madc),
        madc_time=raw(recording.madc_time),
        madc_value=raw(recording.madc_value),
        differentiable=recording.differentiable,
    )

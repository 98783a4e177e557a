"""`RandomChips`: the chip model on a freshly drawn chip instance at every call."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from ._base import AbstractBackend
from ._chip import ChipModel
from ._chip_config import ChipConfig
from ._chip_instance import ChipInstance, MismatchProfile


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

    Semantics, per call (one chip for the whole batch):
    ```python
    chip_key, coin_key, key = split(key, 3)
    chip = ChipInstance.random(chip_key, profile)
    if anchor is not None and bernoulli(coin_key, anchor_probability):
        chip = anchor
    return ChipModel(chip, config, gradient=gradient).observe(network, inputs, dt=dt, key=key)
    ```

    ```python
    backend = bj.RandomChips(gradient="through")
    step = bj.make_train_step(loss, optax.adam(5e-3))
    net, opt_state, metrics = step(net, opt_state, batch, key=key, backend=backend)
    # each call (each key) meets another chip; with the anchor, chip 0 three times in ten:
    backend = bj.RandomChips(anchor=chip0, anchor_probability=0.3)
    ```
    """

    profile: MismatchProfile = eqx.field(static=True)
    config: ChipConfig = eqx.field(static=True)
    gradient: str = eqx.field(static=True)
    anchor: ChipInstance | None
    anchor_probability: float = eqx.field(static=True)

    def __init__(
        self,
        profile: MismatchProfile | None = None,
        config: ChipConfig | None = None,
        *,
        gradient: Literal["inject", "through"] = "inject",
        anchor: ChipInstance | None = None,
        anchor_probability: float = 0.0,
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
        self.profile = profile
        self.config = config
        self.gradient = gradient
        self.anchor = anchor
        self.anchor_probability = float(anchor_probability)

    def chip(self, key: jax.Array) -> ChipInstance:
        """The chip instance a call with `key` runs on."""
        chip_key, coin_key, _ = jax.random.split(key, 3)
        return self._draw(chip_key, coin_key)

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
        chip_key, coin_key, noise_key = jax.random.split(key, 3)
        model = ChipModel(self._draw(chip_key, coin_key), self.config, gradient=self.gradient)
        return model.observe(network, inputs, dt=dt, key=noise_key)

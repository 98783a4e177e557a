"""Ideal numerics: nothing is observed, the numerics are the result (hxtorch's mock mode)."""

from __future__ import annotations

from jaxtyping import Array, Float, PRNGKeyArray

from .._network import AbstractNetwork
from ._base import AbstractBackend


class Numeric(AbstractBackend):
    """Ideal numerics (hxtorch's mock mode): no quantisation, mismatch, noise or sampling.

    ```python
    out = bj.run(net, x, backend=bj.Numeric())
    ```
    """

    def observe(
        self,
        network: AbstractNetwork,
        inputs: Float[Array, "time batch in_features"],
        *,
        dt: float,
        key: PRNGKeyArray | None,
    ) -> None:
        del network, inputs, dt, key
        return None

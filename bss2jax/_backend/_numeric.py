"""Ideal numerics: nothing is observed, the numerics are the result (hxtorch's mock mode)."""

from __future__ import annotations

from ._base import AbstractBackend


class Numeric(AbstractBackend):
    """Ideal numerics (hxtorch's mock mode): no quantisation, mismatch, noise or sampling.

    ```python
    out = bj.run(net, x, backend=bj.Numeric())
    ```
    """

    def observe(self, network, inputs, *, dt, key) -> None:  # same signature as the base
        del network, inputs, dt, key
        return None

"""The backend interface: one method, `observe`."""

from __future__ import annotations

import abc

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from .._network import AbstractNetwork
from .._recording import Recording


class AbstractBackend(eqx.Module):
    """Produces what was observed when `network` ran on `inputs`.

    A backend is passed to `run` as an argument (`run(net, x, backend=bj.Numeric())`).
    Whatever it observes is injected as the forward value; the gradient always comes from
    the numerics around it.
    """

    @abc.abstractmethod
    def observe(
        self,
        network: AbstractNetwork,
        inputs: Float[Array, "time batch in_features"],
        *,
        dt: float,
        key: PRNGKeyArray | None,
    ) -> Recording | None:
        """Observe `network` on `inputs` (float `(time, batch, in)` spikes, 0/1).

        **Returns:** a `Recording` on the grid of step `dt` (seconds) with at least `time`
        steps, or None when there is nothing to inject (ideal numerics).
        """

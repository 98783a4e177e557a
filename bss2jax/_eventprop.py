"""EventProp (Wunderlich & Pehle 2021) on the dense time grid: exact spike-time gradients.

The forward is `run`'s, value for value (the backend's observations injected). Only the
backward pass of a firing population differs from the surrogate's: the adjoint state
`(lambda_v, lambda_i)` runs backward in time through the transposed linear step (a reverse
`lax.scan`), and at every observed spike `lambda_v` jumps as in Wunderlich & Pehle's
transition condition, treating the spike as an event whose *time* moves with the state:

```
spike time     t_k moves by -delta_v / vdot_minus    (vdot_minus = dV/dt at the crossing)
jump           lambda_u = (vdot_plus * rho - dG/dt) / vdot_minus
vdot_minus     = (u_t - v_{t-1}) / dt        the slope over the step of the crossing
vdot_plus      = (leak - v_r) / tau_mem + i_r / C      (at the release r: the spike's
                 step t, or the last step of its refractory hold; v_r the reset value)
```
(`u_t` the grid's membrane before the reset, from the observed `v_{t-1}` and `i_{t-1}`;
Wunderlich & Pehle's slope at the threshold is its limit dt -> 0, and the secant stays
resolved on a coarse grid where the slope at the threshold can graze zero.)

`G` is the cotangent of the spike output (an event's *amplitude* sensitivity: the loss's own
dependence on the spikes plus `W^T lambda_i` of the populations they feed, added by JAX), so
`dG/dt` (central difference on the grid) is the sensitivity to the event's *time*;
`rho` is `lambda_v` after the reset, taken at the end of the refractory hold (shifting the
spike shifts the release). With `G_t = t * dt` (the loss "time of the spike") `dG/dt = 1` and
the gradient is that of the continuous spike time. Between events the adjoint is the exact
transpose of the grid's step, so a loss that sees no spike (an LI readout, a membrane loss
below threshold) gets the surrogate path's gradient to float rounding.

The backward uses the spikes the backend observed and its reset value, like injection does
(hxtorch's `EventPropLIFFunction`, src/pyhxtorch/hxtorch/spiking/functional/eventprop.py at
electronicvisions/hxtorch@3bfc7aadf33d795b5a184dfad03eedcf26243420, uses the same jump with
`dv_m = leak - threshold + i`, `dv_p = leak - reset + i`). What it stores for the backward:
the spike positions and the two slopes at each spike, as dense masked arrays or, with
`EventProp(max_spikes=K)`, as a list of `K` events. Only these residuals grow with the
spikes: `run`'s `(time, batch, neurons)` outputs, their cotangents and the backward's
work arrays still grow with time (benchmarks/eventprop_memory.py: at T = 10,000 the dense
residuals take 18 % less XLA memory than the surrogate's, the event list more).

Not covered (named errors or documented zeros): recurrent stages, exponential and adaptive
neurons; the neuron parameters (time constants, potentials) get no EventProp gradient
(zero cotangent): train them with the surrogate.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from ._backend import AbstractBackend
from ._network import AbstractNetwork
from ._neurons import AbstractNeuron
from ._recording import Recording
from ._typing import user_facing
from .kernels import cuba
from .kernels.cuba import lean as _lean

GRADIENTS = ("surrogate", "eventprop")


@user_facing
class EventProp(eqx.Module):
    """The EventProp gradient for firing populations (`bj.run(..., gradient=bj.EventProp())`).

    - `max_spikes`: None stores the spike mask and slopes densely `(time, batch, neurons)`
      for the backward pass; an int `K` stores at most `K` events (per `run` call; under
      `vmap`, per mapped call). Past `K` events every gradient of the call is NaN (never
      silently wrong): raise `K`.
    """

    max_spikes: int | None = eqx.field(default=None, static=True)

    def __check_init__(self):
        k = self.max_spikes
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"`max_spikes` must be None or a positive int; got {k!r}.")


@user_facing
class WithGradient(AbstractBackend):
    """`backend` with a gradient choice that travels with it (to `bj.fit`, losses, `run`).

    ```python
    backend = bj.WithGradient(bj.ChipModel(chip), bj.EventProp())
    ```
    `run` observes with `backend.backend` and differentiates with `backend.gradient`
    (an explicit `run(..., gradient=...)` other than "surrogate" must agree).
    """

    backend: AbstractBackend
    gradient: EventProp

    def __check_init__(self):
        if not isinstance(self.backend, AbstractBackend):
            raise TypeError(f"`backend` must be a bss2jax backend; got {self.backend!r}.")
        if isinstance(self.backend, WithGradient):
            raise TypeError("`backend` must not itself be a bj.WithGradient.")
        if not isinstance(self.gradient, EventProp):
            raise TypeError(f"`gradient` must be a bj.EventProp(); got {self.gradient!r}.")

    def observe(self, network: AbstractNetwork, inputs, **options: Any) -> Recording | None:
        """`backend.observe`, with the same arguments (`dt`, `key`)."""
        return self.backend.observe(network, inputs, **options)


def check_gradient(
    gradient: object, backend: AbstractBackend
) -> tuple[EventProp | None, AbstractBackend]:
    """`run`'s `gradient` and `backend`: `(EventProp or None for the surrogate, backend)`,
    a `WithGradient` unwrapped; named errors for anything else."""
    chosen: EventProp | None
    if isinstance(gradient, EventProp):
        chosen = gradient
    elif gradient == "eventprop":
        chosen = EventProp()
    elif gradient == "surrogate":
        chosen = None
    else:
        raise ValueError(
            f"`gradient` must be 'surrogate', 'eventprop' or a bj.EventProp(); got {gradient!r}."
        )
    if isinstance(backend, WithGradient):
        if chosen is not None and chosen != backend.gradient:
            raise ValueError(
                f"`gradient` ({chosen!r}) disagrees with the backend's ({backend.gradient!r})."
            )
        return backend.gradient, backend.backend
    return chosen, backend


def check_neuron(neuron: AbstractNeuron, key: object) -> None:
    """Raise `ValueError` for a firing population EventProp does not cover."""
    if neuron.exponential or neuron.adaptation:
        raise ValueError(
            f"gradient='eventprop' covers LIF populations (and LI/IF); population {key!r} "
            "has exponential or adaptation terms: use gradient='surrogate'."
        )


def integrate(
    neuron: AbstractNeuron,
    external: Float[Array, "time batch neurons"],
    hardware: cuba.HardwareStep,
    dt: float,
    integrator: str,
    gradient: EventProp,
) -> cuba.StepOutput:
    """A lone firing population: `run`'s forward (the same integrator and injection) with
    the EventProp backward. The neuron parameters get zero cotangents."""
    flags = neuron.cuba_flags()
    dtype = external.dtype

    def heaviside(x):  # every surrogate's forward value
        return (x > 0).astype(x.dtype)

    def forward(params, x, hw):
        return _lean.integrate_auto(
            params, flags, x, hw, dt=dt, spike_fn=heaviside, method=integrator
        )

    @jax.custom_vjp
    def step_all(params, x, hw):
        return forward(params, x, hw)

    def fwd(params, x, hw):
        out = forward(params, x, hw)
        return out, (params, _residuals(params, flags, out, dt, dtype, gradient))

    def bwd(saved, cotangents):
        params, residuals = saved
        dx = _adjoint(params, flags, cotangents, residuals, dt, dtype, gradient, external.shape)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return zeros, dx, jax.tree_util.tree_map(jnp.zeros_like, hardware)

    step_all.defvjp(fwd, bwd)
    return step_all(neuron.cuba_params(), external, hardware)


def _slopes(params, flags, out, dt, dtype):
    """`(vdot_minus, vdot_plus)` `(time, batch, neurons)`, dV/dt (model units per second):
    over the step into each spike (from the observed `v_{t-1}` and `i_{t-1}`: the grid's
    resolution of the crossing) and at the (observed) value after it."""
    k = cuba.coefficients(params, flags, dt, dtype)
    a, b, _ = _linear_maps(params, flags, dt, dtype)
    state = cuba.init_state(params, flags, out.membrane.shape[1:], dtype)
    v_prev = jnp.concatenate([state.membrane[None], out.membrane[:-1]])
    i_prev = jnp.concatenate([state.current[None], out.current[:-1]])
    leak = k.leak if flags.leaky else 0.0
    minus = ((1 - a) * (leak - v_prev) + b * i_prev) / dt
    rate = 1 / jnp.asarray(params.tau_mem, dtype)
    rate = rate[None] if rate.ndim == 1 else rate
    decay = rate if flags.leaky else 0.0
    plus = (leak - out.membrane) * decay + out.current * (k.input_gain / dt)
    return minus, plus


def _residuals(params, flags, out, dt, dtype, gradient: EventProp) -> dict[str, Any]:
    """What the backward needs: spike positions and the slopes at the spikes (`plus` at
    the end of the spike's refractory hold, where the membrane is released)."""
    spiking = lax.stop_gradient(out.spikes) > 0
    minus, plus = _slopes(params, flags, lax.stop_gradient(out), dt, dtype)
    if flags.refractory:
        plus = _at_release(plus, _holds(spiking, params, dt, dtype))
    if gradient.max_spikes is None:
        return {
            "spikes": spiking,
            "minus": jnp.where(spiking, minus, 0),
            "plus": jnp.where(spiking, plus, 0),
        }
    size = spiking.size
    (index,) = jnp.nonzero(spiking.reshape(-1), size=gradient.max_spikes, fill_value=size)
    return {
        "index": index.astype(jnp.int32),
        "count": jnp.sum(spiking, dtype=jnp.int32),
        "minus": minus.reshape(-1).at[index].get(mode="fill", fill_value=0),
        "plus": plus.reshape(-1).at[index].get(mode="fill", fill_value=0),
    }


def _dense(residuals: dict[str, Any], shape, dtype):
    """The residuals as dense `(spikes, minus, plus)` and a flag for an overflowed list."""
    if "spikes" in residuals:
        return residuals["spikes"], residuals["minus"], residuals["plus"], None
    size = 1
    for n in shape:
        size *= n
    index = residuals["index"]

    def scatter(values):
        flat = jnp.zeros((size,), dtype).at[index].set(values, mode="drop")
        return flat.reshape(shape)

    spikes = jnp.zeros((size,), bool).at[index].set(True, mode="drop").reshape(shape)
    overflow = residuals["count"] > index.shape[0]
    return spikes, scatter(residuals["minus"]), scatter(residuals["plus"]), overflow


def _holds(spikes, params, dt, dtype):
    """The refractory hold `(time, batch, neurons)` bool: the forward's `r > 0` before
    each step, recomputed from the observed spikes (the forward's counter rule)."""
    steps = jnp.asarray(params.refractory_time, dtype) / dt
    steps = steps[None] if steps.ndim == 1 else steps

    def body(r, z):
        held = r > 0
        z = z.astype(dtype)
        r = (1 - z) * jax.nn.relu(r - held.astype(dtype)) + z * steps
        return r, held

    r0 = jnp.zeros(spikes.shape[1:], dtype)
    _, held = lax.scan(body, r0, spikes)
    return held


def _at_release(values, held):
    """`values` moved back from the end of each refractory hold to the steps before it:
    at a spike, the value at the last held step (the state the membrane is released
    from), the backward's `rho` rule (`held` as from `_holds`)."""

    def body(carry, xs):
        value, held_next = carry
        v, hold = xs
        value = jnp.where(held_next, value, v)
        return (value, hold), value

    init = (jnp.zeros_like(values[0]), jnp.zeros(values.shape[1:], bool))
    _, moved = lax.scan(body, init, (values, held), reverse=True)
    return moved


def _time_derivative(g, dt):
    """dG/dt on the grid: central differences inside, one-sided at the ends."""
    if g.shape[0] < 2:
        return jnp.zeros_like(g)
    inner = (g[2:] - g[:-2]) / (2 * dt)
    first = (g[1:2] - g[:1]) / dt
    last = (g[-1:] - g[-2:-1]) / dt
    return jnp.concatenate([first, inner, last])


def _linear_maps(params, flags, dt, dtype):
    """`(a, b, keep)`: `u_t = a v_{t-1} + b i_{t-1} + const`, `i_t = keep i_{t-1} + x_t`."""
    k = cuba.coefficients(params, flags, dt, dtype)
    if flags.exact and flags.leaky:
        a, b = k.leak_rate, (1 - k.leak_rate) / k.conductance
    elif flags.leaky:
        a, b = 1 - k.leak_rate, k.input_gain
    else:
        a, b = jnp.ones_like(k.input_gain), k.input_gain
    return a, b, k.current_keep


def _adjoint(params, flags, cotangents, residuals, dt, dtype, gradient, shape):
    """The reverse scan: the cotangent of the synaptic input `(time, batch, neurons)`."""
    spikes, minus, plus, overflow = _dense(residuals, shape, dtype)
    held = _holds(spikes, params, dt, dtype) if flags.refractory else jnp.zeros_like(spikes)
    a, b, keep = _linear_maps(params, flags, dt, dtype)

    def cotangent(value):
        return jnp.zeros(shape, dtype) if value is None else value.astype(dtype)

    g_spikes = cotangent(cotangents.spikes)
    g_v, g_i = cotangent(cotangents.membrane), cotangent(cotangents.current)
    g_dot = _time_derivative(g_spikes, dt)
    fires = spikes & (minus > 0)  # a grazing crossing (vdot_minus <= 0) has no slope

    def body(carry, xs):
        from_v, from_i, rho, held_next = carry
        gv, gi, fire, hold, slope_minus, slope_plus, gdot = xs
        lam_v = gv + from_v
        lam_i = gi + from_i
        rho = jnp.where(held_next, rho, lam_v)
        jump = (slope_plus * rho - gdot) / jnp.where(fire, slope_minus, 1)
        mu = jnp.where(fire, jump, jnp.where(hold, 0, lam_v))
        return (a * mu, keep * lam_i + b * mu, rho, hold), lam_i

    zeros = jnp.zeros(shape[1:], dtype)
    init = (zeros, zeros, zeros, jnp.zeros(shape[1:], bool))
    xs = (g_v, g_i, fires, held, minus, plus, g_dot)
    _, dx = lax.scan(body, init, xs, reverse=True)
    if overflow is not None:
        dx = jnp.where(overflow, jnp.nan, dx)
    return dx


def check_stage(stage: Any, neurons: dict, observed: dict) -> bool:
    """Whether EventProp differentiates this stage of `network.plan()` (it has a firing
    population); `ValueError` for what it does not cover, naming the population."""
    firing = [k for k, n in neurons.items() if n.fire]
    if not firing:
        return False
    if stage.internal or len(stage.populations) != 1:
        raise ValueError(
            f"gradient='eventprop' covers feed-forward networks; populations {firing!r} are "
            "in a recurrent stage (projections inside it): use gradient='surrogate'."
        )
    for key in firing:
        check_neuron(neurons[key], key)
        entry = observed.get(key)
        if entry is not None and entry.differentiable:
            raise ValueError(
                f"gradient='eventprop' takes the backend's observations of population {key!r} "
                "as injected values; this backend differentiates them itself (e.g. "
                "gradient='through'): use its inject mode."
            )
    return True

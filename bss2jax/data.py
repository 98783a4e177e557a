"""Data for spiking networks: the Yin-Yang dataset, spike encoders and readout decoders.

- `yin_yang`, `yin_yang_splits`: hxtorch's (and Kriener et al.'s) Yin-Yang dataset, sample
  for sample: the same NumPy generator, the same rejection sampling, the same labels.
- Encoders produce time-major spike trains `(time, batch, channels)` of 0/1 floats on the
  grid of step `dt` (step `k` is the time `k * dt`): `encode_coordinates` (hxtorch's
  `CoordinatesToSpikes`), `pixels_to_spike_times` + `spike_times_to_dense` (hxtorch's
  `PixelsToSpikeTimes`, time-to-first-spike), `encode_bernoulli` and `encode_poisson`
  (rate codes).
- Decoders reduce a trace `(time, batch, neurons)` to `(batch, neurons)`: `max_over_time`,
  `sum_over_time`, `mean_over_time` (hxtorch's `MaxOverTime`, ...), `first_spike_time`.

```python
import bss2jax.data as bd
train, test = bd.yin_yang_splits(5000, 1000)
spikes = bd.encode_coordinates(train.coordinates[:50], steps=38)   # (38, 50, 5)
```
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._misc import check_dt as _check_dt
from ._typing import user_facing

__all__ = [
    "YIN_YANG_CLASSES",
    "YinYang",
    "yin_yang",
    "yin_yang_class",
    "yin_yang_splits",
    "encode_coordinates",
    "pixels_to_spike_times",
    "spike_times_to_dense",
    "encode_bernoulli",
    "encode_poisson",
    "max_over_time",
    "sum_over_time",
    "mean_over_time",
    "first_spike_time",
]

YIN_YANG_CLASSES = ("yin", "yang", "dot")
"""hxtorch's names of the Yin-Yang labels 0, 1, 2 (its `class_names`)."""


# --------------------------------------------------------------------------------------------
# Yin-Yang
# --------------------------------------------------------------------------------------------


class YinYang(NamedTuple):
    """A Yin-Yang split: NumPy arrays with the sample axis first.

    - `coordinates`: float64 `(size, 4)`, the inputs `(x, y, 1 - x, 1 - y)`, each in [0, 1]
      (for the default `r_big = 0.5`).
    - `labels`: int32 `(size,)`, the class index in {0, 1, 2} (2 is the dots).
    """

    coordinates: np.ndarray
    labels: np.ndarray


def yin_yang_class(x, y, *, r_small: float = 0.1, r_big: float = 0.5) -> np.ndarray:
    """The Yin-Yang label of points `(x, y)` (arrays of any common shape): 0, 1 or 2.

    hxtorch's `which_class`, vectorised: 2 inside either dot (radius `r_small` around
    `(r_big / 2, r_big)` and `(3 r_big / 2, r_big)`), else 1 where hxtorch's `is_yin` holds,
    else 0. Points outside the big circle get a label too; `yin_yang` never draws them.

    ```python
    bd.yin_yang_class(np.array([0.75]), np.array([0.5]))   # array([2]): the right dot
    ```
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    is_yin = (
        (d_right <= r_small)
        | ((d_left > r_small) & (d_left <= 0.5 * r_big))
        | ((y > r_big) & (d_right > 0.5 * r_big))
    )
    is_dot = (d_right < r_small) | (d_left < r_small)
    return np.where(is_dot, 2, is_yin.astype(np.int32)).astype(np.int32)


def _check_size(size, name):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"`{name}` must be a non-negative int; got {size!r}.")
    return int(size)


@user_facing
def yin_yang(
    size: int = 1000, *, seed: int = 42, r_small: float = 0.1, r_big: float = 0.5
) -> YinYang:
    """Draw `size` Yin-Yang samples, balanced over the 3 classes (hxtorch's `YinYangDataset`).

    For each sample a goal class is drawn uniformly, then points uniform in the square
    `[0, 2 r_big]^2` are drawn until one lies inside the big circle and has the goal class
    (rejection sampling). The generator is `numpy.random.RandomState(seed)`, used in
    hxtorch's order, so the same `seed` gives hxtorch's samples exactly.

    **Arguments:**
    - `size`: number of samples (int >= 0).
    - `seed`: int seed of the NumPy generator.
    - `r_small`: radius of the dots; `r_big`: radius of the big circle (`0 < 2 r_small < r_big`).

    **Returns:** a `YinYang` with `coordinates` float64 `(size, 4)` = `(x, y, 1-x, 1-y)` and
    `labels` int32 `(size,)`.

    ```python
    data = bd.yin_yang(1000, seed=42)
    data.coordinates.shape, np.bincount(data.labels)   # (1000, 4), about 333 each
    ```
    """
    size = _check_size(size, "size")
    if not (r_small > 0 and r_big > 2 * r_small):
        raise ValueError(
            "`r_small` and `r_big` must satisfy 0 < 2 * r_small < r_big; got "
            f"r_small={r_small!r}, r_big={r_big!r}."
        )
    rng = np.random.RandomState(seed)
    coordinates = np.empty((size, 4))
    labels = np.empty((size,), np.int32)
    for index in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if np.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            label = int(yin_yang_class(x, y, r_small=r_small, r_big=r_big))
            if label == goal:
                break
        coordinates[index] = (x, y, 1.0 - x, 1.0 - y)
        labels[index] = label
    return YinYang(coordinates, labels)


@user_facing
def yin_yang_splits(
    train_size: int = 5000,
    test_size: int = 1000,
    *,
    train_seed: int = 42,
    test_seed: int = 41,
    r_small: float = 0.1,
    r_big: float = 0.5,
) -> tuple[YinYang, YinYang]:
    """The train and test splits of the Yin-Yang dataset, drawn with different seeds.

    Defaults: 5000 training and 1000 test samples, as in hxtorch's Yin-Yang example.

    ```python
    train, test = bd.yin_yang_splits(5000, 1000)
    ```
    """
    if train_seed == test_seed:
        raise ValueError(
            f"`train_seed` and `test_seed` must differ (else the splits overlap); got {train_seed}."
        )
    return (
        yin_yang(train_size, seed=train_seed, r_small=r_small, r_big=r_big),
        yin_yang(test_size, seed=test_seed, r_small=r_small, r_big=r_big),
    )


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`steps` must be a positive int (grid length); got {steps!r}.")
    return int(steps)


@user_facing
def spike_times_to_dense(
    times: Float[Array, "batch channels"], *, steps: int, dt: float = 1e-6
) -> Float[Array, "time batch channels"]:
    """One spike per channel at `round(t / dt)` on a grid of `steps` steps.

    hxtorch's `SpikeTimesToDense` for one spike per channel. Times whose bin falls outside
    `[0, steps)` (including `inf` and NaN) give no spike.

    **Arguments:**
    - `times`: float array `(batch, channels)`, seconds.
    - `steps`: grid length (int). `dt`: grid step in seconds.

    **Returns:** float32 `(steps, batch, channels)`, 0/1.

    ```python
    bd.spike_times_to_dense(jnp.array([[2e-6, 5e-6]]), steps=8).shape   # (8, 1, 2)
    ```
    """
    steps = _check_steps(steps)
    dt = _check_dt(dt)
    times = jnp.asarray(times)
    if times.ndim != 2:
        raise ValueError(f"`times` must have shape (batch, channels); got {times.shape}.")
    scaled = jnp.round(times / dt)
    valid = jnp.isfinite(scaled) & (scaled >= 0) & (scaled < steps)
    bins = jnp.where(valid, scaled, -1).astype(jnp.int32)
    dense = jax.nn.one_hot(bins, steps, dtype=jnp.float32)  # (batch, channels, steps)
    return jnp.moveaxis(dense, -1, 0)


@user_facing
def encode_coordinates(
    coordinates: Float[ArrayLike, "batch channels"],
    *,
    steps: int,
    t_early: float = 2e-6,
    t_late: float = 26e-6,
    t_bias: float | None = 2e-6,
    dt: float = 1e-6,
) -> Float[Array, "time batch channels_out"]:
    """Coordinates in [0, 1] to one spike each, early for 0 and late for 1.

    hxtorch's `CoordinatesToSpikes`: channel value `c` spikes at
    `t = t_early + c * (t_late - t_early)`, placed at step `round(t / dt)`; with `t_bias`
    an extra last channel spikes at `t_bias` for every sample (the bias input).

    **Arguments:**
    - `coordinates`: float array `(batch, channels)`, values in [0, 1].
    - `steps`: grid length; `t_late` must fall inside the grid.
    - `t_early`, `t_late`, `t_bias`: seconds (`t_bias=None` for no bias channel).
    - `dt`: grid step in seconds.

    **Returns:** float32 `(steps, batch, channels + 1)` (or `channels` without a bias), 0/1.

    ```python
    spikes = bd.encode_coordinates(jnp.array([[0.0, 1.0, 0.5, 0.25]]), steps=38)
    spikes.shape   # (38, 1, 5); spikes at steps 2, 26, 14, 8 and the bias at 2
    ```
    """
    steps = _check_steps(steps)
    dt = _check_dt(dt)
    if not 0 <= t_early <= t_late:
        raise ValueError(
            f"`t_early` and `t_late` must satisfy 0 <= t_early <= t_late; got "
            f"t_early={t_early!r}, t_late={t_late!r}."
        )
    for name, value in (("t_late", t_late), ("t_bias", t_bias)):
        if value is not None and not 0 <= round(value / dt) < steps:
            raise ValueError(
                f"`{name}` must fall inside the grid, 0 <= round({name} / dt) < steps = "
                f"{steps}; got {name}={value!r} (step {round(value / dt)})."
            )
    coordinates = jnp.asarray(coordinates)
    if coordinates.ndim != 2:
        raise ValueError(
            f"`coordinates` must have shape (batch, channels); got {coordinates.shape}."
        )
    times = t_early + jnp.clip(coordinates, 0.0, 1.0) * (t_late - t_early)
    if t_bias is not None:
        bias = jnp.full(times.shape[:1] + (1,), t_bias, times.dtype)
        times = jnp.concatenate([times, bias], axis=1)
    return spike_times_to_dense(times, steps=steps, dt=dt)


@user_facing
def pixels_to_spike_times(
    pixels: Float[Array, "*shape"],
    *,
    tau: float = 20.0,
    threshold: float = 0.2,
    t_max: float = 1.0,
    epsilon: float = 1e-7,
) -> Float[Array, "*shape"]:
    """Time-to-first-spike code (hxtorch's `PixelsToSpikeTimes`): bright pixels spike early.

    A pixel `p > threshold` spikes at `t = tau * log(p / (p - threshold))` (the time a
    leaky integrator charged by `p` needs to reach `threshold`); the others at `t_max`.
    The result is clipped to `[0, t_max]`. Times are in the unit of `tau` and `t_max`;
    pass seconds (e.g. `tau=20e-6, t_max=30e-6`) to feed `spike_times_to_dense`.

    **Arguments:**
    - `pixels`: float array of any shape, intensities (typically in [0, 1]).
    - `tau`, `t_max`: time constant and latest time; `threshold`: the intensity that never
      spikes before `t_max`; `epsilon` keeps the logarithm finite at `p = threshold`.

    **Returns:** float array of the shape of `pixels`, spike times.

    ```python
    times = bd.pixels_to_spike_times(jnp.array([[0.1, 0.5, 1.0]]), tau=20e-6, t_max=30e-6)
    spikes = bd.spike_times_to_dense(times, steps=32)   # (32, 1, 3)
    ```
    """
    if not tau > 0 or not t_max > 0:
        raise ValueError(f"`tau` and `t_max` must be positive; got tau={tau!r}, t_max={t_max!r}.")
    if not threshold >= 0:
        raise ValueError(f"`threshold` must be non-negative; got {threshold!r}.")
    pixels = jnp.asarray(pixels, dtype=float)
    above = pixels > threshold
    safe = jnp.where(above, pixels, 1.0)
    margin = jnp.where(above, jnp.maximum(pixels - threshold, epsilon), 1.0)
    times = jnp.where(above, tau * jnp.log(safe / margin), t_max)
    return jnp.clip(times, 0.0, t_max)


@user_facing
def encode_bernoulli(
    probabilities: Float[Array, "batch channels"], *, steps: int, key: jax.Array
) -> Float[Array, "time batch channels"]:
    """Independent spikes with a fixed probability per step (a Bernoulli rate code).

    **Arguments:**
    - `probabilities`: float array `(batch, channels)`, the spike probability per step,
      in [0, 1] (e.g. pixel intensities).
    - `steps`: grid length. `key`: PRNG key (same key, same spikes).

    **Returns:** float32 `(steps, batch, channels)`, 0/1.

    ```python
    spikes = bd.encode_bernoulli(jnp.full((2, 3), 0.1), steps=100, key=jax.random.key(0))
    ```
    """
    steps = _check_steps(steps)
    probabilities = jnp.asarray(probabilities)
    if probabilities.ndim != 2:
        raise ValueError(
            f"`probabilities` must have shape (batch, channels); got {probabilities.shape}."
        )
    probabilities = jnp.clip(probabilities, 0.0, 1.0)
    uniform = jax.random.uniform(key, (steps,) + probabilities.shape)
    return (uniform < probabilities[None]).astype(jnp.float32)


@user_facing
def encode_poisson(
    rates: Float[Array, "batch channels"], *, steps: int, dt: float = 1e-6, key: jax.Array
) -> Float[Array, "time batch channels"]:
    """Poisson spike trains of `rates` (Hz), at most one spike per step.

    A step holds a spike with probability `1 - exp(-rate * dt)`, the chance that a Poisson
    process of that rate fires at least once within the step.

    **Arguments:**
    - `rates`: float array `(batch, channels)`, non-negative, in Hz of hardware time.
    - `steps`: grid length; `dt`: step in seconds; `key`: PRNG key.

    **Returns:** float32 `(steps, batch, channels)`, 0/1.

    ```python
    spikes = bd.encode_poisson(jnp.full((2, 3), 50e3), steps=100, key=jax.random.key(0))
    ```
    """
    dt = _check_dt(dt)
    rates = jnp.asarray(rates)
    return encode_bernoulli(-jnp.expm1(-jnp.maximum(rates, 0.0) * dt), steps=steps, key=key)


# --------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------


def _check_trace(trace, name="trace"):
    trace = jnp.asarray(trace)
    if trace.ndim != 3:
        raise ValueError(f"`{name}` must have shape (time, batch, neurons); got {trace.shape}.")
    return trace


@user_facing
def max_over_time(trace: Float[Array, "time batch neurons"]) -> Float[Array, "batch neurons"]:
    """hxtorch's `MaxOverTime`: the maximum of each neuron's trace over time.

    ```python
    scores = bd.max_over_time(readout.membrane_cadc)   # (batch, neurons)
    ```
    """
    return jnp.max(_check_trace(trace), axis=0)


@user_facing
def sum_over_time(trace: Float[Array, "time batch neurons"]) -> Float[Array, "batch neurons"]:
    """hxtorch's `SumOverTime`, e.g. spike counts from spikes.

    ```python
    counts = bd.sum_over_time(hidden.spikes)   # (batch, neurons)
    ```
    """
    return jnp.sum(_check_trace(trace), axis=0)


@user_facing
def mean_over_time(trace: Float[Array, "time batch neurons"]) -> Float[Array, "batch neurons"]:
    """hxtorch's `MeanOverTime`, e.g. firing probability per step from spikes.

    ```python
    rates = bd.mean_over_time(hidden.spikes) / 1e-6   # Hz at dt = 1 us
    ```
    """
    return jnp.mean(_check_trace(trace), axis=0)


@user_facing
def first_spike_time(
    spikes: Float[Array, "time batch neurons"], *, dt: float = 1e-6, no_spike: float = math.inf
) -> Float[Array, "batch neurons"]:
    """Time of each neuron's first spike, `k * dt` for the first step `k` with a spike.

    Not differentiable (the gradient is zero); decode for evaluation or TTFS readouts.

    **Arguments:**
    - `spikes`: float array `(time, batch, neurons)`, 0/1.
    - `dt`: grid step in seconds; `no_spike`: the value for neurons that never spike.

    **Returns:** float `(batch, neurons)`, seconds.

    ```python
    bd.first_spike_time(jnp.zeros((5, 1, 2)).at[3, 0, 1].set(1.0))   # [[inf, 3e-6]]
    ```
    """
    dt = _check_dt(dt)
    spikes = jax.lax.stop_gradient(_check_trace(spikes, "spikes"))
    fired = spikes > 0
    first: Int[Array, "batch neurons"] = jnp.argmax(fired, axis=0)
    times = first.astype(jnp.result_type(spikes.dtype, float)) * dt
    return jnp.where(jnp.any(fired, axis=0), times, no_spike)

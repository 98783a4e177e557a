"""Standard normal draws for the chip model: `jax.random.normal`'s bits, computed faster.

On CPU, JAX lowers its Threefry-2x32 hash as a rolled loop (five iterations over the whole
array, each reading and writing it), which made the membrane noise drawn in every sub-step
about a third of the chip model's time. `normal` computes the same hash unrolled, one
elementwise expression that XLA fuses, and maps the bits to a normal as
`jax.random.normal` does (`sqrt(2) erfinv(u)`, `u` uniform in `(-1, 1)` from the top 23
bits), so its draws equal `jax.random.normal(key, shape, float32)` bit for bit (the tests
pin it). Keys of another implementation (`jax_default_prng_impl`), or JAX configured with
the non-partitionable Threefry, fall back to `jax.random.normal` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return lax.shift_left(x, np.uint32(r)) | lax.shift_right_logical(x, np.uint32(32 - r))


def threefry2x32(k1, k2, x1, x2) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds) of the counters `x1`, `x2` (uint32) under the key
    `(k1, k2)`, unrolled: JAX's `_threefry2x32_lowering(use_rolled_loops=False)`."""
    keys = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1, x2 = x1 + keys[0], x2 + keys[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = _rotate_left(x2, r) ^ x1
        x1 = x1 + keys[(i + 1) % 3]
        x2 = x2 + keys[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _is_threefry(key: jax.Array) -> bool:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return "threefry" in str(jax.random.key_impl(key))
    default = jax.config.jax_default_prng_impl  # type: ignore[attr-defined]
    return key.shape[-1:] == (2,) and default in ("threefry2x32", "threefry")


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Float32 standard normal draws of `shape`, equal to `jax.random.normal(key, shape)`.

    ```python
    assert (normal(key, (3, 4)) == jax.random.normal(key, (3, 4))).all()
    ```
    """
    size = math.prod(shape)
    partitionable = jax.config.jax_threefry_partitionable  # type: ignore[attr-defined]
    if not (_is_threefry(key) and partitionable) or size >= 2**32:
        return jax.random.normal(key, shape, jnp.float32)
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    counter = lax.iota(np.uint32, size).reshape(shape)  # JAX's iota_2x32_shape: high word 0
    bits1, bits2 = threefry2x32(data[0], data[1], jnp.zeros_like(counter), counter)
    bits = bits1 ^ bits2
    # jax.random.uniform(key, shape, float32, nextafter(-1, 0), 1), then sqrt(2) erfinv
    mantissa = lax.shift_right_logical(bits, np.uint32(32 - 23)) | np.uint32(0x3F800000)
    floats = lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)
    low = np.nextafter(np.float32(-1.0), np.float32(0.0))
    uniform = lax.max(low, floats * (np.float32(1.0) - low) + low)
    return np.float32(np.sqrt(2)) * lax.erf_inv(uniform)

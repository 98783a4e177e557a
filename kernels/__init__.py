"""Numerical kernels of bss2jax, shipped as `bss2jax.kernels`.

Each op lives in its own subpackage with the plain-`jnp` reference that every faster
variant is tested against. The kernels depend on JAX only, never on the rest of bss2jax.
"""

from . import cuba as cuba

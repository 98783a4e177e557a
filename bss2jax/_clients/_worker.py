"""Entry point of `ChipModelClient`'s worker process: `python -m bss2jax._clients._worker`.

A module of its own (not imported by `bss2jax`), so that `-m` runs it without importing it
twice. Arguments: chip file, chip config (JSON), seed, JAX platform ("" for the default).
"""

import sys

from bss2jax._clients._chip_model import _serve

if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] or None)

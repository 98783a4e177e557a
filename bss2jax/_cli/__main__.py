"""`python -m bss2jax._cli`: the `bss2jax` command."""

import sys

from . import main

sys.exit(main())

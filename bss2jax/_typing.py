"""Typing helpers: how the public boundary and the runtime type checker meet.

The tests run with jaxtyping's import hook and beartype, which check every annotated
function of the package. Functions a user calls directly check their own arguments and
raise the named errors the user should see (`ValueError: \\`integrator\\` must be 'euler'
or 'exact'; got 'rk4'.`); `checks_own_arguments` keeps the runtime checker from answering
first with a generic one. Static checkers (mypy) still read their annotations, and
everything they call is checked at run time as usual.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import TypeVar

from jaxtyping import Array, Float

_F = TypeVar("_F", bound=Callable[..., object])

FloatScalar = float | Float[Array, ""]
"""A Python float, or a float array of shape `()` (what a float leaf is when traced)."""


def user_facing(fn: _F) -> _F:
    """Mark a function or class whose arguments get named errors: runtime checkers skip it.

    `typing.no_type_check` at run time only (as a decorator, mypy would drop the signature).
    """
    return typing.no_type_check(fn)

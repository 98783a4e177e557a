"""Backends: what produces the observations that `run` injects."""

from ._base import AbstractBackend as AbstractBackend, BackendError as BackendError
from ._numeric import Numeric as Numeric

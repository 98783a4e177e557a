"""Backends: what produces the observations that `run` injects, one file each."""

from ._base import AbstractBackend as AbstractBackend
from ._chip_model import ChipModel as ChipModel
from ._hardware import Hardware as Hardware
from ._numeric import Numeric as Numeric
from ._random_chips import RandomChips as RandomChips
from ._replay import Replay as Replay

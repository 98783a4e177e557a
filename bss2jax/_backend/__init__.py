"""Backends: what produces the observations that `run` injects."""

from ._base import AbstractBackend as AbstractBackend, BackendError as BackendError
from ._chip import ChipModel as ChipModel
from ._chip_config import ChipConfig as ChipConfig
from ._chip_instance import (
    ChipInstance as ChipInstance,
    ChipInstanceError as ChipInstanceError,
    MismatchProfile as MismatchProfile,
)
from ._chip_readout import RawPopulationRecording as RawPopulationRecording
from ._hardware import Hardware as Hardware
from ._numeric import Numeric as Numeric
from ._placement import (
    Placement as Placement,
    PlacementError as PlacementError,
    PopulationPlacement as PopulationPlacement,
    circuits_per_neuron as circuits_per_neuron,
    neurons_per_run as neurons_per_run,
    place as place,
)
from ._random_chips import RandomChips as RandomChips
from ._replay import Replay as Replay, ReplayClient as ReplayClient, ReplayError as ReplayError

"""bss2jax: emulate and train spiking networks for the BrainScaleS-2 chip, in JAX.

The names here are for users: networks, `run`, backends, training, alignment, sweeps.
Client authors find the hardware contract in `bss2jax.hardware`; the numerical kernels
are in `bss2jax.kernels`.
"""

from . import data as data, hardware as hardware, kernels as kernels, yinyang as yinyang
from ._align import Alignment as Alignment, align as align
from ._align_network import align_network as align_network
from ._backend import (
    AbstractBackend as AbstractBackend,
    ChipModel as ChipModel,
    Hardware as Hardware,
    Numeric as Numeric,
    RandomChips as RandomChips,
    Replay as Replay,
)
from ._chip._config import ChipConfig as ChipConfig
from ._chip._instance import ChipInstance as ChipInstance, MismatchProfile as MismatchProfile
from ._chip._placement import (
    Placement as Placement,
    PopulationPlacement as PopulationPlacement,
    circuits_per_neuron as circuits_per_neuron,
    neurons_per_run as neurons_per_run,
    place as place,
)
from ._clients._chip_model import ChipModelClient as ChipModelClient
from ._clients._hxtorch import HxtorchClient as HxtorchClient
from ._errors import (
    BackendError as BackendError,
    CalibrationMismatchError as CalibrationMismatchError,
    CheckpointError as CheckpointError,
    ChipInstanceError as ChipInstanceError,
    ClientBusyError as ClientBusyError,
    HardwareError as HardwareError,
    HardwareTimeoutError as HardwareTimeoutError,
    NetworkError as NetworkError,
    NonFiniteError as NonFiniteError,
    OutputFolderError as OutputFolderError,
    PlacementError as PlacementError,
    RecordingFileError as RecordingFileError,
    ReplayError as ReplayError,
    SelfTestError as SelfTestError,
)
from ._eventprop import EventProp as EventProp, WithGradient as WithGradient
from ._identify import (
    TwinFit as TwinFit,
    canonical_chip as canonical_chip,
    fit_twin as fit_twin,
    identify as identify,
)
from ._init import init_fluctuation_driven as init_fluctuation_driven
from ._network import (
    INPUT as INPUT,
    AbstractNetwork as AbstractNetwork,
    Network as Network,
    Projection as Projection,
    Sequential as Sequential,
    trainable_filter as trainable_filter,
)
from ._neurons import LI as LI, LIF as LIF, AbstractNeuron as AbstractNeuron, AdEx as AdEx
from ._nir import to_nir as to_nir
from ._nir_import import from_nir as from_nir
from ._observables import Observables as Observables
from ._parameters import (
    Frozen as Frozen,
    Mixed as Mixed,
    hardware_value as hardware_value,
    model_value as model_value,
)
from ._probe import (
    ProbeData as ProbeData,
    RowProbe as RowProbe,
    probe_chip as probe_chip,
    probe_plan as probe_plan,
)
from ._recording import (
    PopulationRecording as PopulationRecording,
    Recording as Recording,
    cadc_to_model as cadc_to_model,
    shift_time as shift_time,
)
from ._run import run as run
from ._sharding import (
    batch_mesh as batch_mesh,
    replicate as replicate,
    shard_batch as shard_batch,
)
from ._surrogate import (
    AbstractSurrogate as AbstractSurrogate,
    ArcTan as ArcTan,
    Boxcar as Boxcar,
    Gaussian as Gaussian,
    Sigmoid as Sigmoid,
    SuperSpike as SuperSpike,
    Triangle as Triangle,
)
from ._sweep import SweepResult as SweepResult, sweep as sweep
from ._synapse import Synapse as Synapse
from ._train import (
    FitResult as FitResult,
    TrainStep as TrainStep,
    evaluate as evaluate,
    evaluate_backends as evaluate_backends,
    fit as fit,
    load_checkpoint as load_checkpoint,
    make_train_step as make_train_step,
    save_checkpoint as save_checkpoint,
)
from ._train._diagnostics import (
    TrainingWarning as TrainingWarning,
    firing_rates as firing_rates,
)
from ._train._hardware_aware import (
    clip_weights as clip_weights,
    hardware_aware as hardware_aware,
    perturb as perturb,
    with_weight_scale as with_weight_scale,
)
from ._train._losses import (
    accuracy as accuracy,
    cross_entropy as cross_entropy,
    firing_regulariser as firing_regulariser,
    mse as mse,
    weight_regulariser as weight_regulariser,
)
from ._train._schedule import (
    HardwareAwareResult as HardwareAwareResult,
    fit_hardware_aware as fit_hardware_aware,
)
from ._transforms import (
    AbstractWeightTransform as AbstractWeightTransform,
    ExponentialClamp as ExponentialClamp,
    LinearSaturating as LinearSaturating,
    linear_exponential_clamp as linear_exponential_clamp,
    linear_saturating as linear_saturating,
    round_half_away as round_half_away,
)

__version__ = "0.1.0"

__all__ = [
    # networks
    "AbstractNetwork",
    "Sequential",
    "Network",
    "Projection",
    "INPUT",
    "Synapse",
    "init_fluctuation_driven",
    "AbstractNeuron",
    "LIF",
    "LI",
    "AdEx",
    "Mixed",
    "Frozen",
    "model_value",
    "hardware_value",
    "trainable_filter",
    "to_nir",
    "from_nir",
    "AbstractWeightTransform",
    "LinearSaturating",
    "ExponentialClamp",
    "linear_saturating",
    "linear_exponential_clamp",
    "round_half_away",
    "AbstractSurrogate",
    "SuperSpike",
    "Sigmoid",
    "ArcTan",
    "Triangle",
    "Gaussian",
    "Boxcar",
    # running
    "run",
    "EventProp",
    "WithGradient",
    "Observables",
    "Recording",
    "PopulationRecording",
    "cadc_to_model",
    "shift_time",
    # backends
    "AbstractBackend",
    "Numeric",
    "ChipModel",
    "RandomChips",
    "Hardware",
    "Replay",
    "ChipConfig",
    "ChipInstance",
    "MismatchProfile",
    "place",
    "Placement",
    "PopulationPlacement",
    "circuits_per_neuron",
    "neurons_per_run",
    "ChipModelClient",
    "HxtorchClient",
    # training and analysis
    "make_train_step",
    "TrainStep",
    "fit",
    "FitResult",
    "evaluate",
    "evaluate_backends",
    "firing_rates",
    "TrainingWarning",
    "hardware_aware",
    "perturb",
    "clip_weights",
    "with_weight_scale",
    "fit_hardware_aware",
    "HardwareAwareResult",
    "save_checkpoint",
    "load_checkpoint",
    "cross_entropy",
    "mse",
    "accuracy",
    "firing_regulariser",
    "weight_regulariser",
    "align",
    "align_network",
    "Alignment",
    "probe_chip",
    "probe_plan",
    "ProbeData",
    "RowProbe",
    "fit_twin",
    "identify",
    "TwinFit",
    "canonical_chip",
    "sweep",
    "SweepResult",
    "batch_mesh",
    "shard_batch",
    "replicate",
    # errors
    "NetworkError",
    "BackendError",
    "PlacementError",
    "ChipInstanceError",
    "HardwareError",
    "HardwareTimeoutError",
    "RecordingFileError",
    "ReplayError",
    "CalibrationMismatchError",
    "SelfTestError",
    "NonFiniteError",
    "OutputFolderError",
    "CheckpointError",
    "ClientBusyError",
    # submodules
    "data",
    "hardware",
    "kernels",
    "yinyang",
]

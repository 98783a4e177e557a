"""bss2jax: emulate and train spiking networks for the BrainScaleS-2 chip, in JAX."""

from . import data as data, kernels as kernels, yinyang as yinyang
from ._align import Alignment as Alignment, align as align
from ._backend import (
    AbstractBackend as AbstractBackend,
    BackendError as BackendError,
    ChipConfig as ChipConfig,
    ChipInstance as ChipInstance,
    ChipInstanceError as ChipInstanceError,
    ChipModel as ChipModel,
    Hardware as Hardware,
    MismatchProfile as MismatchProfile,
    Numeric as Numeric,
    Placement as Placement,
    PlacementError as PlacementError,
    PopulationPlacement as PopulationPlacement,
    RandomChips as RandomChips,
    RawPopulationRecording as RawPopulationRecording,
    Replay as Replay,
    ReplayClient as ReplayClient,
    ReplayError as ReplayError,
    circuits_per_neuron as circuits_per_neuron,
    neurons_per_run as neurons_per_run,
    place as place,
)
from ._chip_client import ChipModelClient as ChipModelClient
from ._dense import (
    cadc_to_dense as cadc_to_dense,
    grid_length as grid_length,
    madc_to_dense as madc_to_dense,
    samples_to_dense as samples_to_dense,
    spikes_to_dense as spikes_to_dense,
)
from ._hardware_io import (
    AbstractClient as AbstractClient,
    CADCSamples as CADCSamples,
    ExperimentRequest as ExperimentRequest,
    HardwareError as HardwareError,
    HardwareTimeoutError as HardwareTimeoutError,
    InputSpikes as InputSpikes,
    MADCSamples as MADCSamples,
    PopulationRequest as PopulationRequest,
    ProjectionRequest as ProjectionRequest,
    RawRecording as RawRecording,
    SpikeEvents as SpikeEvents,
    TransientHardwareError as TransientHardwareError,
    split_weight as split_weight,
    validate_recording as validate_recording,
)
from ._hxtorch_adapter import HxtorchClient as HxtorchClient
from ._losses import (
    accuracy as accuracy,
    cross_entropy as cross_entropy,
    firing_regulariser as firing_regulariser,
    mse as mse,
    weight_regulariser as weight_regulariser,
)
from ._network import (
    INPUT as INPUT,
    AbstractNetwork as AbstractNetwork,
    Network as Network,
    NetworkError as NetworkError,
    Projection as Projection,
    Sequential as Sequential,
    trainable_filter as trainable_filter,
)
from ._neurons import LI as LI, LIF as LIF, AbstractNeuron as AbstractNeuron, AdEx as AdEx
from ._observables import (
    Observables as Observables,
    PopulationRecording as PopulationRecording,
    Recording as Recording,
    cadc_to_model as cadc_to_model,
    shift_time as shift_time,
)
from ._parameters import (
    Frozen as Frozen,
    Mixed as Mixed,
    hardware_value as hardware_value,
    model_value as model_value,
)
from ._recording_file import (
    RecordedRun as RecordedRun,
    RecordingFileError as RecordingFileError,
    load_run as load_run,
    load_runs as load_runs,
    save_run as save_run,
)
from ._run import run as run
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
from ._transforms import (
    AbstractWeightTransform as AbstractWeightTransform,
    ExponentialClamp as ExponentialClamp,
    LinearSaturating as LinearSaturating,
    linear_exponential_clamp as linear_exponential_clamp,
    linear_saturating as linear_saturating,
    round_half_away as round_half_away,
)

__version__ = "0.1.0"

__all__ = [name for name in dir() if not name.startswith("_") and name != "kernels"]

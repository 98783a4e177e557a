"""For people who write hardware clients: the client contract, in plain numpy.

A client has one method, `execute(ExperimentRequest) -> RawRecording`; `bj.Hardware(client)`
calls it from a host callback, validates what it returns with `validate_recording` and puts
it on the grid with the same to-dense functions the chip model uses. Recorded runs
(`Hardware(record_to=...)`) are read and written with `save_run` / `load_run(s)`.

```python
import bss2jax as bj
from bss2jax import hardware as bjh


class MyClient(bjh.AbstractClient):
    def execute(self, request: bjh.ExperimentRequest) -> bjh.RawRecording:
        ...


backend = bj.Hardware(MyClient())
```
"""

from ._chip._readout import RawPopulationRecording as RawPopulationRecording
from ._clients._hxtorch_selftest import SelfTestReport as SelfTestReport
from ._clients._replay import ReplayClient as ReplayClient
from ._constants import (
    CADC_RANGE as CADC_RANGE,
    FPGA_CLOCK as FPGA_CLOCK,
    MADC_RANGE as MADC_RANGE,
    WEIGHT_MAX as WEIGHT_MAX,
)
from ._dense import (
    cadc_to_dense as cadc_to_dense,
    grid_length as grid_length,
    madc_to_dense as madc_to_dense,
    samples_to_dense as samples_to_dense,
    spikes_to_dense as spikes_to_dense,
)
from ._errors import (
    ClientBusyError as ClientBusyError,
    HardwareError as HardwareError,
    HardwareTimeoutError as HardwareTimeoutError,
    RecordingFileError as RecordingFileError,
    TransientHardwareError as TransientHardwareError,
)
from ._hardware._files import (
    RecordedRun as RecordedRun,
    load_run as load_run,
    load_runs as load_runs,
    save_run as save_run,
)
from ._hardware._protocol import (
    AbstractClient as AbstractClient,
    CADCSamples as CADCSamples,
    ExperimentRequest as ExperimentRequest,
    InputSpikes as InputSpikes,
    MADCSamples as MADCSamples,
    PopulationRequest as PopulationRequest,
    ProjectionRequest as ProjectionRequest,
    RawRecording as RawRecording,
    SpikeEvents as SpikeEvents,
    configuration_hash as configuration_hash,
    split_weight as split_weight,
)
from ._hardware._validate import validate_recording as validate_recording

__all__ = [
    "AbstractClient",
    "CADCSamples",
    "CADC_RANGE",
    "ClientBusyError",
    "ExperimentRequest",
    "FPGA_CLOCK",
    "HardwareError",
    "HardwareTimeoutError",
    "InputSpikes",
    "MADCSamples",
    "MADC_RANGE",
    "PopulationRequest",
    "ProjectionRequest",
    "RawPopulationRecording",
    "RawRecording",
    "RecordedRun",
    "RecordingFileError",
    "ReplayClient",
    "SelfTestReport",
    "SpikeEvents",
    "TransientHardwareError",
    "WEIGHT_MAX",
    "cadc_to_dense",
    "configuration_hash",
    "grid_length",
    "load_run",
    "load_runs",
    "madc_to_dense",
    "samples_to_dense",
    "save_run",
    "spikes_to_dense",
    "split_weight",
    "validate_recording",
]

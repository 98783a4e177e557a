"""`HxtorchClient`: a real BrainScaleS-2 system through hxtorch, as a `Hardware` client.

The mapping between an `ExperimentRequest` and hxtorch is in `_hxtorch_map.py` (pure
functions, tested without a chip), the first-contact self-test in `_hxtorch_selftest.py`.
Both cite the hxtorch, grenade and calix code they were checked against.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .._constants import WEIGHT_MAX
from .._errors import CalibrationMismatchError, HardwareError
from .._hardware._protocol import (
    AbstractClient,
    ExperimentRequest,
    RawRecording,
    configuration_hash,
)
from ._hxtorch_map import (
    _capturing,
    _require,
    cadc_from_hxtorch,
    calibration_targets,
    check_mappable,
    global_targets,
    hxtorch_weight,
    input_steps,
    input_tensor,
    madc_from_hxtorch,
    read_back,
    settings_mismatches,
    spikes_from_hxtorch,
)
from ._hxtorch_selftest import SelfTestReport, _self_test


class HxtorchClient(AbstractClient):
    """A BSS-2 system through hxtorch (`hxtorch.spiking`); imports hxtorch on first use.

    **Arguments:**
    - `calib_path`: a calix-native calibration file (`.pkl`, e.g. the nightly
      `spiking_calix-native.pkl`) for `ExecutionInstance.load_calib`. hxtorch then runs
      **the file's** neuron settings, whatever the network asks for; the client reads
      them back after the first run of each configuration and raises
      `CalibrationMismatchError` when they differ from the request. None (the default)
      lets hxtorch calibrate the chip for the populations' targets with calix (minutes the
      first time; calix caches results by target).
    - `init_hardware`: call `hxtorch.init_hardware()` on first use and
      `hxtorch.release_hardware()` in `close()`.

    The experiment (modules, calibration) is built once per set of neuron settings; when
    only the weights change (`request.reconfigure` with the same neurons) the synapse
    weights are replaced in place, and otherwise only the inputs change. Raw data are read
    from the modules' hardware observables before hxtorch converts them, so `Hardware` sees
    the real irregular CADC sample times. `chip_settings` holds what hxtorch configured
    (population key → name → array, from `read_back`) after the last build.

    Start on a new system with `client.self_test()`.

    ```python
    client = bj.HxtorchClient(calib_path=None)
    client.self_test()
    backend = bj.Hardware(client, timeout=120.0, record_to="chip-session")
    ```
    """

    def __init__(self, *, calib_path: str | None = None, init_hardware: bool = True):
        if calib_path is not None and not str(calib_path).endswith(".pkl"):
            raise HardwareError(
                "`calib_path` must be a calix-native calibration (`.pkl`) or None; got "
                f"{str(calib_path)!r}. hxtorch loads other files (coco binaries) without "
                "their targets (ExecutionInstance.load_calib), so what the chip runs could "
                "not be read back."
            )
        self.calib_path = calib_path
        self.init_hardware = init_hardware
        self.chip_settings: dict = {}
        self._modules: tuple[Any, Any, Any, Any] | None = None  # experiment, populations, ...
        self._neurons: str | None = None
        self._checked = False
        self._initialised = False

    def _import(self):
        try:
            import hxtorch
            import hxtorch.spiking as hxsnn
            import torch
        except ImportError as error:
            raise HardwareError(
                "HxtorchClient needs hxtorch and torch (the BrainScaleS-2 software stack); "
                f"they are not importable here ({error}). Run on a BSS-2 system, or use "
                "bj.ChipModelClient / bj.Replay without a chip."
            ) from error
        return hxtorch, hxsnn, torch

    @staticmethod
    def _tensor(torch, value):
        # A per-neuron list becomes a float tensor (integer values stay exact in float32);
        # a uniform value stays a Python number, like hxtorch's own defaults.
        return torch.as_tensor(value, dtype=torch.float32) if isinstance(value, list) else value

    def _build(self, request, hxsnn, torch):
        # hxtorch@3bfc7aa: `Experiment(mock, dt)` (experiment.py); `LIF`/`LI(size,
        # experiment, **targets)` (modules/neuron.py), whose `**extra_params` end in
        # `Population._generate_hxparameters`, which keeps known names only: a misspelt
        # keyword is silently dropped by hxtorch, so `calibration_targets` owns the names.
        experiment = hxsnn.Experiment(mock=False, dt=request.dt)
        if self.calib_path is not None:
            experiment.default_execution_instance.load_calib(self.calib_path)
        captured = {}
        populations = {}
        global_targets(request)
        for p in request.populations:
            kwargs = {k: self._tensor(torch, v) for k, v in calibration_targets(p).items()}
            if request.madc is not None and request.madc[0] == p.key:
                kwargs.update(enable_madc_recording=True, record_neuron_id=int(request.madc[1]))
            cls = _require(hxsnn, "LIF" if p.fire else "LI")
            populations[p.key] = _capturing(cls, p.key, captured)(p.size, experiment, **kwargs)
        synapses = []
        for q in request.projections:
            out_features, in_features = q.weight_exc.shape
            # `Synapse(in_features, out_features, experiment, ..., transform=...)`
            # (modules/synapse.py); identity transform: the weights are chip integers.
            synapse = hxsnn.Synapse(in_features, out_features, experiment, transform=lambda w: w)
            synapse.weight.data = torch.as_tensor(hxtorch_weight(q))
            synapses.append(synapse)
        return experiment, populations, synapses, captured

    def execute(self, request: ExperimentRequest) -> RawRecording:
        hxtorch, hxsnn, torch = self._import()
        check_mappable(request)
        if self.init_hardware and not self._initialised:
            hxtorch.init_hardware()  # src/hxtorch/hxtorch_core.cpp, default arguments
            self._initialised = True
        neurons = configuration_hash(request.populations, ())
        if self._modules is None or neurons != self._neurons:
            self._modules = self._build(request, hxsnn, torch)  # calibration, placement
            self._neurons = neurons
            self._checked = False
        elif request.reconfigure:  # only the weights changed: no new experiment
            for projection, synapse in zip(request.projections, self._modules[2], strict=True):
                synapse.weight.data = torch.as_tensor(hxtorch_weight(projection))
        experiment, populations, synapses, captured = self._modules
        captured.clear()
        # An input handle that no module produced is an open source: hxtorch inserts an
        # `InputNeuron` for it (`ModuleManager._handle_inputs`, backend/module_manager.py).
        spikes_in = torch.as_tensor(input_tensor(request))
        handles: dict[Hashable, Any] = {
            "input": _require(hxsnn, "LIFObservables")(spikes=spikes_in)
        }
        keys = list(request.keys())
        pending = list(zip(request.projections, synapses, strict=True))
        while pending:  # feed-forward order: a projection runs once its source exists
            for item in pending:
                projection, synapse = item
                if projection.source in handles:
                    handles[projection.target] = populations[projection.target](
                        synapse(handles[projection.source])
                    )
                    pending.remove(item)
                    break
            else:
                raise HardwareError(f"projections do not form a feed-forward chain over {keys}.")
        hxsnn.run(experiment, input_steps(request))  # run.py: `run(experiment, runtime: int)`
        if not self._checked:
            self._check_settings(request, populations)
        spikes, cadc, madc = {}, {}, {}
        for p in request.populations:
            data = captured.get(p.key)
            if data is None:
                raise HardwareError(f"hxtorch returned no hardware data for population {p.key!r}.")
            if p.record_spikes:
                spikes[p.key] = spikes_from_hxtorch(_present(data, "spikes", p.key))
            if p.record_cadc:
                cadc[p.key] = cadc_from_hxtorch(_present(data, "cadc", p.key))
            if request.madc is not None and request.madc[0] == p.key:
                madc[p.key] = madc_from_hxtorch(_present(data, "madc", p.key))
        return RawRecording(spikes=spikes, cadc=cadc, madc=madc)

    def _check_settings(self, request, populations) -> None:
        self.chip_settings = {p.key: read_back(populations[p.key], p) for p in request.populations}
        lines = []
        for p in request.populations:
            lines += settings_mismatches(p, self.chip_settings[p.key])
        if lines:
            self._modules = None  # rebuild (and check again) on the next call
            source = (
                f"the calibration file {str(self.calib_path)!r}"
                if self.calib_path is not None
                else "hxtorch's calibration"
            )
            raise CalibrationMismatchError(
                f"{source} overrides the requested neuron settings (hxtorch's "
                "ExecutionInstance.calibrate → Population.params_from_calibration):\n  "
                + "\n  ".join(lines)
                + "\nSet the network's hardware values to the file's, or use "
                "HxtorchClient(calib_path=None) to calibrate for the request."
            )
        self._checked = True

    def self_test(
        self,
        *,
        dt: float = 1e-6,
        runtime: float = 60e-6,
        leak: int = 80,
        weight: int = WEIGHT_MAX,
        leak_tolerance: float = 10.0,
        psp_tolerance: float = 4.0,
        verbose: bool = True,
    ) -> SelfTestReport:
        """First contact with a chip: a leak-only run and a single-PSP run, checked.

        Two `LI` neurons (hxtorch's defaults: `tau_mem = tau_syn = 10e-6` s) get one input
        channel, neuron 0 with weight `+weight`, neuron 1 with `-weight`; the MADC watches
        neuron 0. Both runs go through `bj.Hardware`, as a user's runs do.

        1. No input: each neuron's mean CADC value must be `leak` within
           `leak_tolerance` LSB (default 10: about three times the CADC channel spread
           that calix's tests allow, std < 3 LSB).
        2. One input spike at `runtime / 4`: the PSP of neuron 0 must rise and that of
           neuron 1 fall, each with a peak within a factor `psp_tolerance` of the chip
           model's (`ChipModel(ChipInstance.nominal(), ChipConfig.noiseless())`, whose
           synaptic efficacy is an estimate), reaching half its peak within two CADC
           sample intervals (or two `dt`) of the model's time; CADC and MADC samples must
           cover the whole run, and the MADC trace must rise too.

        **Returns:** a `SelfTestReport` (printed when `verbose`).

        **Raises:** `SelfTestError` whose `cause` names the likely cause: "value offset"
        (CADC values shifted by hxtorch's int8 convention), "calibration override" (the
        calibration file's settings differ from the request), "leak" (the calibration
        does not hold), "time offset" (samples or the PSP shifted in time), "PSP sign"
        (excitatory and inhibitory inputs swapped), "no PSP" (input does not reach the
        neurons), "PSP size", or "MADC".

        ```python
        with bj.HxtorchClient() as client:
            print(client.self_test(verbose=False))
        ```
        """
        return _self_test(
            self,
            dt=dt,
            runtime=runtime,
            leak=leak,
            weight=weight,
            leak_tolerance=leak_tolerance,
            psp_tolerance=psp_tolerance,
            verbose=verbose,
        )

    def close(self) -> None:
        if self._initialised:
            import hxtorch

            hxtorch.release_hardware()
            self._initialised = False
        self._modules = None


def _present(data: dict, name: str, key):
    if data.get(name) is None:
        raise HardwareError(
            f"hxtorch returned no {name} data for population {key!r}, which recorded it."
        )
    return data[name]

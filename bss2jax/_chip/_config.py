"""`ChipConfig`: the chip model's settings that are not per-chip mismatch, and constants.

All defaults are the estimates of reference/bss2-chip.md §7; keep them configuration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from .._constants import CADC_RANGE, FPGA_CLOCK
from .._typing import user_facing

REFERENCE_CAPACITANCE = 63.0
"""Membrane capacitance setting (LSB) at which `C = 10 us` (hxtorch's convention)."""
REFERENCE_CAPACITANCE_TIME = 10e-6
"""`C` (s) at the reference setting: `C = 10 us * membrane_capacitance / 63`, so that a
held synaptic current `J` (LSB) moves the membrane by `tau_mem / C * J` (LSB)."""
REFERENCE_SYNAPSE_DAC_BIAS = 600.0
"""`synapse_dac_bias` (DAC) at which `weight_efficacy` holds; the efficacy scales with it."""
REFERENCE_I_SYNIN_GM = 500.0
"""`i_synin_gm` (DAC) at which `weight_efficacy` holds; the efficacy scales with it."""
CADC_RELIABLE = (30.0, 210.0)
"""CADC reads (LSB) within which calix calibrates the chip; `ChipModel` warns outside."""
SRAM_CADC_SAMPLES = 100
"""CADC samples per neuron that hxtorch's SRAM placement holds (grenade buffer size)."""

SYNAPTIC_SATURATION = 490.0
"""Default `I_sat` (LSB of current) of a synaptic input OTA at `i_synin_gm = 500`: its bias
current, 500/1023 of the CapMem's ~1 uA (thesis-ch), over one LSB of current, 2.2 pF *
4.5 mV / 10 us = 0.99 nA (calix `neuron_calib_target.h`@e573081: 63 LSB ~ 2.2 pF;
bss2-chip.md §3: ~4.5 mV per CADC LSB). [estimate]: derivation in
docs/reference/chip-model.md §2; fit it to an n-row sweep on a real chip."""

WEIGHT_EFFICACY = 0.67
"""Default `kappa`: synaptic current (LSB) per hardware weight unit, calibrated so that the
intro tutorial's settings (leak 80, threshold 125, tau 10 us) give weight_scale 55-70."""


@user_facing
@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """Settings of the chip model that are not per-chip mismatch (static, hashable).

    Potentials and currents are in CADC LSB, times in seconds of hardware time.

    - `substeps`: internal sub-steps per grid step `dt` (`h = dt / substeps`; default 10).
    - `weight_efficacy`: `kappa`, LSB of synaptic current per hardware weight unit at
      `synapse_dac_bias = 600`, `i_synin_gm = 500` (it scales linearly with both).
    - `saturation`: the output limit `I_sat` (LSB of current) of each synaptic input's
      OTA at `i_synin_gm = 500` (it scales with `i_synin_gm`; None turns it off). The
      excitatory and the inhibitory input of every circuit saturate separately, as
      `I_sat tanh(I / I_sat)`; default `SYNAPTIC_SATURATION`, derived in
      docs/reference/chip-model.md §2.
    - `membrane_noise`: stationary std of the OU membrane noise (LSB) of a membrane of
      capacitance setting 63; it scales as `sqrt(63 / C)` with the neuron's summed
      capacitance setting `C` (thermal kT/C noise).
    - `joined_capacitance`: the capacitance setting (LSB) that each of a neuron's joined
      circuits after the first adds to its one membrane. hxtorch's
      `SingleCompartmentNeuron` sets it to 0 (and switches their leak off), so by default
      a neuron of `c` circuits has the first circuit's capacitance, and `c` circuits'
      synaptic inputs (docs/reference/chip-model.md §3).
    - `synaptic_delay`: extra delay of input events after `k * dt` (s). With 0, the membrane
      first responds at step `k + 1`: hxtorch's one-`dt` synaptic delay.
    - `spike_latency` (s) added to every spike time; `clock_period`: the FPGA clock the
      spike times are rounded up to (8 ns).
    - `potential_range`: the membrane is clipped to this range (LSB).
    - `reset_time_constant`: None resets the membrane at once and clamps it while
      refractory (the default); a time (s, ~0.5 us on the chip) instead relaxes it toward
      the reset potential during the refractory time, so a short refractory time does not
      reach it (haldls note).
    - `cadc_memory`: "sram" (period 1.7 us) or "dram" (6 us); `cadc_period` overrides it.
      `cadc_jitter`: uniform jitter of each sample time (± s). `cadc_noise`: read noise
      std (LSB). `cadc_time_offset` (s): a CADC sample stamped `t` reads the membrane at
      `t + cadc_time_offset`, so traces lead the numerics by it (default 0; the intro
      tutorial's setup behaves as 1 us = one `dt`, undone by `cadc_time_shift=-1`).
    - `madc_clock` (Hz) and `madc_sample_duration_adjust`: the MADC samples every
      `(12 + adjust) / clock` (34 ns). `madc_noise` (MADC LSB), `madc_gain` (MADC LSB per
      CADC LSB: 4.5 mV / 1.2 mV), `madc_offset` (MADC LSB at 0 CADC LSB).

    Defaults are the estimates of bss2-chip.md §7 (keep them config, fit them to data).

    ```python
    config = bj.ChipConfig(membrane_noise=1.0, cadc_memory="dram")
    quiet = bj.ChipConfig.noiseless()
    ```
    """

    substeps: int = 10
    weight_efficacy: float = WEIGHT_EFFICACY
    saturation: float | None = SYNAPTIC_SATURATION
    membrane_noise: float = 0.5
    joined_capacitance: float = 0.0
    synaptic_delay: float = 0.0
    spike_latency: float = 80e-9
    clock_period: float = 1 / FPGA_CLOCK
    potential_range: tuple[float, float] = CADC_RANGE
    reset_time_constant: float | None = None
    cadc_memory: Literal["sram", "dram"] = "sram"
    cadc_period: float | None = None
    cadc_jitter: float = 0.1e-6
    cadc_noise: float = 1.0
    cadc_time_offset: float = 0.0
    madc_clock: float = 500e6
    madc_sample_duration_adjust: int = 5
    madc_noise: float = 1.5
    madc_gain: float = 4.5 / 1.2
    madc_offset: float = 0.0

    def __post_init__(self):
        if isinstance(self.substeps, bool) or not isinstance(self.substeps, int):
            raise ValueError(f"`substeps` must be a positive int; got {self.substeps!r}.")
        if self.substeps < 1:
            raise ValueError(f"`substeps` must be a positive int; got {self.substeps!r}.")
        positive = ("weight_efficacy", "clock_period", "madc_clock", "madc_gain")
        for name in positive:
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be a positive float; got {getattr(self, name)!r}.")
        for name in (
            "membrane_noise",
            "joined_capacitance",
            "synaptic_delay",
            "spike_latency",
            "cadc_jitter",
            "cadc_noise",
            "madc_noise",
        ):
            if not _is_number(getattr(self, name)) or not getattr(self, name) >= 0:
                raise ValueError(
                    f"`{name}` must be a non-negative float; got {getattr(self, name)!r}."
                )
        if self.saturation is not None and not (
            _is_number(self.saturation) and self.saturation > 0
        ):
            raise ValueError(f"`saturation` must be positive or None; got {self.saturation!r}.")
        if self.reset_time_constant is not None and not (
            _is_number(self.reset_time_constant) and self.reset_time_constant > 0
        ):
            raise ValueError(
                "`reset_time_constant` must be positive (seconds) or None; got "
                f"{self.reset_time_constant!r}."
            )
        if not _is_number(self.cadc_time_offset):
            raise ValueError(
                f"`cadc_time_offset` must be a finite float (s); got {self.cadc_time_offset!r}."
            )
        if not _is_number(self.madc_offset):
            raise ValueError(
                f"`madc_offset` must be a finite float (MADC LSB); got {self.madc_offset!r}."
            )
        if self.cadc_memory not in ("sram", "dram"):
            raise ValueError(f"`cadc_memory` must be 'sram' or 'dram'; got {self.cadc_memory!r}.")
        if self.cadc_period is not None and not (
            _is_number(self.cadc_period) and self.cadc_period > 0
        ):
            raise ValueError(f"`cadc_period` must be positive or None; got {self.cadc_period!r}.")
        bounds = self.potential_range
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ValueError(
                f"`potential_range` must be a pair (low, high) in LSB; got {bounds!r}."
            )
        low, high = bounds
        if not (_is_number(low) and _is_number(high) and low < high):
            raise ValueError(
                "`potential_range` must be (low, high) with low < high; got "
                f"{self.potential_range}."
            )
        if self.cadc_jitter * 2 >= self.cadc_sample_period:
            raise ValueError(
                f"`cadc_jitter` must be below half the CADC period ({self.cadc_sample_period}); "
                f"got {self.cadc_jitter}."
            )
        adjust = self.madc_sample_duration_adjust
        if isinstance(adjust, bool) or not isinstance(adjust, int) or adjust < 0:
            raise ValueError(f"`madc_sample_duration_adjust` must be an int >= 0; got {adjust!r}.")

    @classmethod
    def noiseless(cls, **changes) -> ChipConfig:
        """No membrane noise, CADC/MADC read noise or CADC jitter (other settings kept).

        ```python
        backend = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())
        ```
        """
        options: dict[str, Any] = dict(
            membrane_noise=0.0, cadc_jitter=0.0, cadc_noise=0.0, madc_noise=0.0
        )
        options.update(changes)
        return cls(**options)

    def replace(self, **changes) -> ChipConfig:
        """A copy with some settings changed: `config.replace(substeps=20)`."""
        return dataclasses.replace(self, **changes)

    @property
    def cadc_sample_period(self) -> float:
        """Seconds between CADC samples."""
        if self.cadc_period is not None:
            return float(self.cadc_period)
        return 1.7e-6 if self.cadc_memory == "sram" else 6e-6

    @property
    def madc_sample_period(self) -> float:
        """Seconds between MADC samples: `(12 + adjust) / madc_clock`."""
        return (12 + self.madc_sample_duration_adjust) / self.madc_clock

    @property
    def noisy(self) -> bool:
        """Whether the model draws any noise (and so needs a key)."""
        return bool(self.membrane_noise or self.cadc_jitter or self.cadc_noise or self.madc_noise)


def _is_number(value) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)

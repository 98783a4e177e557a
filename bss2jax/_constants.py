"""Facts about the BrainScaleS-2 chip that more than one part of bss2jax relies on.

Each fact lives here once, with its source (`../shared/reference/bss2-chip.md`, "§" below,
which cites the chip's own software: halco, haldls, calix, grenade, hxtorch).
"""

from __future__ import annotations

NEURON_CIRCUITS = 512
"""Neuron circuits on one chip: 2 hemispheres of 256 columns (§1, halco)."""

HEMISPHERES = 2
"""Rows of neuron circuits ("hemispheres"), each with its own synapse array (§1)."""

SYNAPSE_ROWS = 256
"""Synapse rows per hemisphere; each circuit sees all 256 rows of its hemisphere (§1)."""

INPUTS_PER_CIRCUIT = SYNAPSE_ROWS // 2
"""Signed inputs per neuron circuit: one excitatory and one inhibitory row each (§1)."""

WEIGHT_MAX = 63
"""Largest synapse weight on the chip: 6 bit, per excitatory or inhibitory row (§1)."""

FPGA_CLOCK = 125e6
"""FPGA clock in Hz: timestamps count cycles of 8 ns (§1, haldls `timer.h`)."""

MAX_RUNTIME = 2**32 / FPGA_CLOCK
"""Longest run in seconds: the 32-bit FPGA timer at 125 MHz (§1)."""

CADC_RANGE = (0.0, 255.0)
"""Values of a CADC sample, LSB: the 8-bit raw reading (§3). hxtorch hands them out as
raw − 128 (grenade keeps the byte as int8); `HxtorchClient` adds the 128 back."""

MADC_RANGE = (0.0, 1023.0)
"""Values of an MADC sample, LSB (10 bit, §3)."""

CALIX_RANGES = {
    "leak": (50.0, 160.0, "CADC LSB"),
    "reset": (50.0, 160.0, "CADC LSB"),
    "threshold": (50.0, 220.0, "CADC LSB"),
    "tau_mem": (0.5e-6, 60e-6, "s"),
    "tau_syn": (0.3e-6, 30e-6, "s"),
    "refractory_time": (40e-9, 32e-6, "s"),
    "membrane_capacitance": (0.0, 63.0, "LSB"),
    "i_synin_gm": (30.0, 800.0, "DAC"),
    "synapse_dac_bias": (30.0, 1022.0, "DAC"),
}
"""calix's `check_target` ranges of the calibration targets (§2): name → (low, high, unit)."""

SYNAPSE_DRIVERS = 128
"""Synapse drivers per hemisphere, each driving 2 adjacent synapse rows (§1: halco
`SynapseDriverOnSynapseDriverBlock` 0..127, `SynapseRowOnSynapseDriver` 0..1). bss2jax
puts a circuit's signed input `k` on rows `2k` (excitatory) and `2k + 1` (inhibitory),
both rows of driver `k`, as hxtorch does with one signed input per driver."""

PADI_BUSES = 4
"""PADI event buses per hemisphere; 32 drivers listen to each (§1: halco
`SynapseDriverOnPADIBus` 0..31, 128 / 32 = 4). Driver `k` listens to bus `k % 4`
(halco `src/halco/hicann-dls/vx/synapse_driver.cpp`@e1451fc,
`SynapseDriverOnSynapseDriverBlock::toPADIBusOnPADIBusBlock`: `toEnum() % 4`)."""

SYNAPSE_LABELS = 64
"""Distinct 6-bit synapse labels (§1: halco `SynapseLabel` 0..63): a synapse responds only
to events whose low 6 address bits match its label, so one driver's rows carry at most 64
distinct presynaptic sources. grenade's router groups external sources per PADI bus in
sets of at most `SynapseMatrix::Label::size` (grenade
`src/grenade/vx/network/placed_atomic/routing/detail/source_on_padi_bus_manager.cpp`@1b66fa2,
`split_linear`, `distribute_external_sources_linear`)."""

DRIVER_EVENT_RATE = 125e6
"""Events per second one synapse driver (and so one PADI bus) takes: one per 8 ns clock
cycle (§1 "Event throughput", from Billaudelle's thesis chapter [thesis-ch]: 125 MEvent/s
per driver; the 8 on-chip background generators give 8 x 125 MEvent/s, one per bus).
How the chip loses events beyond this rate (queue depth, which events go) is not stated
in the sources: the drop rule of `bss2jax._chip._events` is an [estimate]."""

"""The Yin-Yang job's hyperparameters: `YinYangConfig` and the phases of the chip job."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class YinYangConfig:
    """Hyperparameters of one training phase of the Yin-Yang job.

    The defaults are the numerics phase: 30 epochs of Adam at 5e-3, decaying by 0.9 per
    epoch, no training noise (`bss2jax train --backend numeric`). `CHIP_PRETRAINING` and
    `CHIP_FINE_TUNING` are the phases of the chip job (`CHIP_RANDOM` an optional one in
    between). `anchor_probability` (chip phases): the chance that a group of a batch runs
    on the chip trained on rather than on a freshly drawn one (1: always that chip).
    `chips_per_call` (chip phases): the batch is cut into this many groups, each on its
    own chip (`bj.RandomChips(chips_per_call=...)`). `noise_draws`: likewise for the
    training noise (`weight_noise`, `gain_noise`, `neuron_noise`): each group of a batch
    runs with its own draw (`perturb`).

    The chip side is hxtorch's published Yin-Yang calibration (`capacitance` 63,
    `synapse_dac_bias` 1000, i_synin_gm 500, tau 6 us, leak/reset 80, threshold 150 LSB),
    with `weight_scale` 70.9 and trace scale 1/70 as `bj.align` measures them on the
    nominal chip model there (hxtorch uses 64, its CI 70, and 1/50-1/68). An earlier
    recipe ran at capacitance 20 / DAC bias 600, which no published example validates;
    with the chip model's membrane noise scaling as 1/sqrt(C), the published point
    transfers better to other chips (benchmarks/README.md).
    """

    train_size: int = 5000
    test_size: int = 1000
    hidden: int = 120
    tau: float = 6e-6
    dt: float = 1e-6
    steps: int = 38
    t_early: float = 2e-6
    t_late: float = 26e-6
    t_bias: float = 2e-6
    repetitions: int = 5
    integrator: str = "exact"
    capacitance: float = 63.0
    synapse_dac_bias: float = 1000.0
    weight_scale: float = 70.9
    output_weight_scale: float = 70.9
    hidden_trace_scale: float = 1.0 / 70.0
    readout_trace_scale: float = 1.0 / 70.0
    readout_scale: float = 10.0
    decoder: str = "max"
    init_hidden: tuple[float, float] = (0.2, 0.3)
    init_output: tuple[float, float] = (0.0, 0.1)
    weight_noise: float = 0.0
    gain_noise: float = 0.0
    neuron_noise: float = 0.0
    noise_draws: int = 1
    firing_upper: float = 2.0
    firing_lower: float = 0.0
    firing_weight: float = 0.0
    lr: float = 5e-3
    lr_decay: float = 0.9
    epochs: int = 30
    batch_size: int = 50
    trainable: str = "all"
    anchor_probability: float = 1.0
    chips_per_call: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHIP_PRETRAINING = YinYangConfig(
    epochs=100,
    lr_decay=0.97,
    weight_noise=0.05,
    gain_noise=0.07,
    neuron_noise=0.02,
    noise_draws=5,
)
"""Phase 1 of the chip job: numerics with training noise that stands for a chip's mismatch
(`perturb`, a new draw for every fifth of a batch), so that the network does not lean on
any one synapse's or neuron's exact value. The spreads follow `bj.MismatchProfile()`:
weights 5 % (per-synapse DAC gain), per-neuron gains 7 % (synaptic gain 5 % and the
membrane time constant's 5 % share of the PSP gain, R = tau / C, combined), leaks and
thresholds 0.02 model units (1.4 chip LSB on the 70-LSB span; the profile says 1.5 and 2)
and time constants 2 % (`neuron_noise` sets both). Five draws per batch instead of one:
benchmarks/README.md.
"""
CHIP_RANDOM = YinYangConfig(epochs=10, lr=1e-3, lr_decay=0.9, chips_per_call=5)
"""An optional phase between the two (`bss2jax train --random-chip-epochs N`; off by
default): the chip model, gradient "through", every fifth of a batch on a new random chip
instance. After `CHIP_PRETRAINING` it changes little (benchmarks/README.md: 10 epochs cost
0.1 points on the trained-on chip, gain 0.1 on others, and take 1-2 minutes more)."""
CHIP_FINE_TUNING = YinYangConfig(
    epochs=10, lr=1e-3, lr_decay=0.8, anchor_probability=0.5, chips_per_call=5
)
"""The last phase: the chip in the loop (inject mode), 10 epochs of Adam at 1e-3 decaying by
0.8 per epoch. Each fifth of a batch runs on it with probability 0.5 and on a random chip
otherwise, so that the network adapts to its chip without leaning on it alone. (hxtorch's
example trains on its chip alone, 10 epochs at 5e-4.) At the published calibration the
gentler phase of the earlier recipe (6 epochs at 3e-4, probability 0.3) left seed 0 at
94.5 % on chip 0 (benchmarks/README.md)."""
CHIP_FINE_TUNING_THROUGH = YinYangConfig(
    epochs=6, lr=1e-3, lr_decay=0.8, anchor_probability=0.5, chips_per_call=5
)
"""The last phase with gradient "through": the chip's own model gives the gradient; 6
epochs, as before (it leans harder on that chip: more accuracy there, less on others)."""
EVENTPROP = YinYangConfig(decoder="mean", readout_scale=20.0, lr=1e-3, lr_decay=0.95)
"""The numerics phase with `--gradient eventprop`: the readout decoded by its mean over
time (scale 20) instead of its maximum, Adam at 1e-3 decaying by 0.95 per epoch, 30
epochs. With the maximum, EventProp's gradient of the hidden spike times is the time
derivative of the readout's adjoint, which jumps at the maximum's time; on the 1 us grid
training stalls and its loss rises again (88 % over 3 seeds); with the mean (the integral
of the readout) it falls steadily (benchmarks/README.md, EventProp)."""

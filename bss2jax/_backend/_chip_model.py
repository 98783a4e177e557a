"""`ChipModel`: a JIT-compiled model of the BrainScaleS-2 chip as a backend.

This file holds the backend and its orchestration; what it emulates lives in `_chip/`:
the placement (`_placement`), the chip-unit parameters and efficacies (`_setup`), the
dynamics on the internal sub-step (`_dynamics`: a typed state, one sub-step, a scan), the
CADC and MADC readout (`_readout`) and its way onto the grid (`_grid`, the code that
converts real recordings). `ChipModel`'s docstring states the semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from .._chip._config import ChipConfig
from .._chip._dynamics import chip_dynamics, external_drive, initial_state, integrate
from .._chip._events import bus_capacity, drop_events, input_buses
from .._chip._grid import to_recording
from .._chip._instance import ChipInstance
from .._chip._placement import place
from .._chip._readout import (
    plan_readout,
    read_trajectory,
    read_windows,
    reduce_window,
    warn_cadc_range,
)
from .._chip._setup import check_network
from .._constants import MAX_RUNTIME
from .._misc import check_dt, check_inputs
from .._network import AbstractNetwork
from .._recording import Recording
from .._typing import user_facing
from ._base import AbstractBackend


class ChipModel(AbstractBackend):
    """The BrainScaleS-2 chip model (reference/bss2-chip.md §7) as a backend.

    **Arguments:**
    - `chip`: a `ChipInstance` (the chip's mismatch; `ChipInstance.nominal()` for none).
    - `config`: a `ChipConfig` (default settings when None).
    - `gradient`: "inject" (default, as on hardware: the chip model's observations are the
      forward values, the gradient is the numerics') or "through" (differentiate the chip
      model itself: straight-through rounding of weights and ADC values, the neuron's
      surrogate on `trace_scale * (v - threshold)` for its spikes).
    - `partition`: split a network that needs more than 512 neuron circuits into
      sequential runs (see `place`) instead of raising `PlacementError`.

    Which gradient when training: inject mode is a poor start *from scratch*. Its gradient
    is the numerics' linearised around the chip's trajectory, which points the wrong way
    where the two differ much (mismatch, saturation, a network far from trained); issue 15
    reports ≈ 0.86 where the numerics reach 0.95 on a small image task. What works:
    pretrain in the numerics (`backend=bj.Numeric()`, with training noise for the mismatch,
    `bj.perturb`, and weights kept in the chip's range, `bj.clip_weights`), then fine-tune
    a few epochs with the chip in the loop (inject, small learning rate; several chip
    instances per step, `bj.RandomChips`, so as not to lean on one). "through" learns
    from scratch too, at a few times the cost per step, and leans harder on the chip it
    trains on. Figures:
    benchmarks/README.md ("Chip-model throughput", "Yin-Yang training").

    `run` calls `observe`, which needs a `key` when the config draws noise. The model is
    pure and jit-able; `jax.vmap` over keys or over stacked `ChipInstance`s works.

    Semantics, per internal sub-step `h = dt / substeps`, for every logical neuron (`c`
    joined circuits; potentials in CADC LSB, the chip values of the neuron's parameters
    plus the chip's mismatch):
    ```python
    I_e[circuit] += sum of arriving events |w_hw| * kappa * g_syn_e * g_dac[row]  (w_hw > 0)
    I_i[circuit] += the same for w_hw < 0                  # the sign picks the row type
    J     = sum over circuits of I_sat * tanh((a_e I_e - a_i I_i) / I_sat)
    v_inf = leak + tau_mem / C * J                          # C = 10 us * capacitance / 63
    v     = v_inf + (v - v_inf) exp(-h / tau_mem) + OU noise (stationary std sigma)
    I_e  *= exp(-h / tau_syn_e);  I_i *= exp(-h / tau_syn_i)
    if refractory: v = reset   elif v > threshold: spike, v = reset, refractory
    v     = clip(v, 0, 255)
    ```
    where `a = tau_syn / h * (1 - exp(-h / tau_syn))` averages the current over the step
    and AdEx terms enter `v_inf` as in the numerics. Input events of step `k` arrive at
    `k * dt + synaptic_delay`, so with the default delay 0 the membrane first moves at
    step `k + 1`, hxtorch's one-`dt` delay; on-chip spikes arrive one sub-step after they
    are emitted. A spike's time stamp is the interpolated crossing rounded up to the 8 ns
    clock plus the latency. Differences from the numerics that remain on the nominal,
    noiseless chip: exact instead of explicit-Euler integration (~5 % of a PSP at
    `dt / tau = 0.1`), the input saturation, CADC sampling and rounding.

    Input events beyond a PADI bus's rate (125 MEvent/s, so 125 per bus in a 1 us step)
    are dropped before they reach the synapses, as an overloaded chip loses them; the
    `Recording`'s `dropped_inputs` `(batch,)` counts them (rule: `bss2jax._chip._events`).

    ```python
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))
    out = bj.run(net, x, backend=bj.ChipModel(chip), key=jax.random.PRNGKey(1))
    ```
    """

    chip: ChipInstance
    config: ChipConfig = eqx.field(static=True)
    gradient: str = eqx.field(static=True)
    partition: bool = eqx.field(static=True)

    @user_facing
    def __init__(
        self,
        chip: ChipInstance,
        config: ChipConfig | None = None,
        *,
        gradient: Literal["inject", "through"] = "inject",
        partition: bool = False,
    ):
        if not isinstance(chip, ChipInstance):
            raise TypeError(
                "`chip` must be a bj.ChipInstance (e.g. bj.ChipInstance.random(key)); "
                f"got {type(chip).__name__}."
            )
        config = ChipConfig() if config is None else config
        if not isinstance(config, ChipConfig):
            raise TypeError(f"`config` must be a bj.ChipConfig; got {config!r}.")
        if gradient not in ("inject", "through"):
            raise ValueError(f"`gradient` must be 'inject' or 'through'; got {gradient!r}.")
        self.chip = chip
        self.config = config
        self.gradient = gradient
        self.partition = bool(partition)

    def observe(self, network, inputs, *, dt, key):
        """Emulate `network` on `inputs` and return the `Recording` on the grid `dt`.

        **Arguments:** `network`; `inputs` float `(time, batch, in)` spikes 0/1; `dt` grid
        step (s, Python float); `key` PRNG key (required when the config is noisy).

        **Returns:** a `Recording`: per population spikes `(time, batch, neurons)`, CADC
        membrane `(time, batch, neurons)` in CADC LSB before post-processing, and for the
        MADC-recorded population `membrane_madc` `(time, batch)` and the raw MADC samples.
        With `gradient="through"` the entries are marked `differentiable`.
        """
        return self._emulate(network, inputs, dt=dt, key=key, densify=True)[1]

    def record(
        self,
        network: AbstractNetwork,
        inputs: ArrayLike,
        *,
        dt: float,
        key: jax.Array | None,
    ) -> dict:
        """The raw readout: population key → `RawPopulationRecording` (chip units).

        This is what a hardware client returns before bss2jax puts it on the grid.

        ```python
        raw = backend.record(net, x, dt=1e-6, key=key)
        raw[0].cadc_value   # (batch, neurons, samples), integers in [0, 255]
        ```
        """
        return self._emulate(network, inputs, dt=dt, key=key, densify=False)[0]

    def _emulate(self, network, inputs, *, dt, key, densify):
        if not isinstance(network, AbstractNetwork):
            raise TypeError(f"`network` must be a bj.Sequential or bj.Network; got {network!r}.")
        dt = check_dt(dt)
        network, inputs = check_inputs(network, inputs, jnp.float32)
        if key is None:
            if self.config.noisy:
                raise ValueError(
                    "`key` is required: the chip model draws membrane noise, CADC jitter and "
                    "read noise (pass key=jax.random.PRNGKey(...), or use "
                    "ChipConfig.noiseless())."
                )
            key = jax.random.PRNGKey(0)
        time = inputs.shape[0]
        if time * dt > MAX_RUNTIME:
            raise ValueError(
                f"the run lasts {time} steps x {dt} s = {time * dt} s, longer than the chip's "
                f"timer allows ({MAX_RUNTIME:.3f} s: 2^32 cycles at 125 MHz)."
            )
        placement = place(network, partition=self.partition)
        inputs, clipped = check_network(network, placement, self.config, time, dt, inputs)
        model = self
        if self.gradient == "inject":
            model, network, inputs = _stop_gradient((self, network, inputs))
        raw, recording, ranges = _emulate_jit(model, network, inputs, key, dt, densify)
        warn_cadc_range(ranges)
        if recording is not None:
            recording = Recording(recording.populations, recording.dropped_inputs, clipped)
        return raw, recording


def _stop_gradient(tree):
    return jax.tree.map(lambda x: lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


def _record(model: ChipModel, network, inputs, key, dt: float, lean: bool = False):
    """Emulate; returns `(readout, windows, dropped)`.

    With `lean=False`, `readout` is population key → `RawPopulationRecording` (the whole
    sub-step trajectory and every sub-step's spike time). With `lean=True` (for
    `observe`), the CADC and MADC are sampled and the spikes reduced to each grid window's
    extremes inside the time scan, so memory grows with `time * batch * neurons` only
    (not times `substeps`): population key → `WindowedReadout`. `windows`: per population
    the surrogate spikes summed per grid window (`gradient="through"`), else None.
    `dropped`: int32 `(batch,)`, the input events lost to the buses' rate (`_events`).
    """
    placement = place(network, partition=model.partition)
    time, batch, _ = inputs.shape
    through = model.gradient == "through"
    dynamics = chip_dynamics(network, placement, model.chip, model.config, dt, through=through)
    inputs, dropped = drop_events(
        inputs.astype(jnp.float32), input_buses(network), bus_capacity(dt)
    )
    drive = external_drive(dynamics, inputs)
    # Few random call sites (each compiles a threefry): the sub-step noise inside the scan,
    # and one draw for everything else (initial state, CADC jitter and reads, MADC reads).
    key_noise, key_once = jax.random.split(key)
    layout, config = dynamics.layout, model.config
    plan = plan_readout(
        network, layout, config, key_once, time=time, batch=batch, dt=dt, windowed=lean
    )
    state = initial_state(dynamics, batch, plan.noise.membrane)
    if lean:
        summaries = integrate(
            dynamics, state, drive, key_noise, partial(reduce_window, plan), plan.cadc_local
        )
        read: Callable[..., Any] = read_windows
    else:
        summaries = integrate(dynamics, state, drive, key_noise)
        read = read_trajectory
    readout, windows = read(plan, network, layout, summaries, dynamics.neurons, state.membrane)
    return readout, windows, dropped


@eqx.filter_jit
def _emulate_jit(model, network, inputs, key, dt, densify):
    readout, windows, dropped = _record(model, network, inputs, key, dt, lean=densify)
    ranges = {
        k: (r.cadc_value.min(), r.cadc_value.max())
        for k, r in readout.items()
        if r.cadc_value is not None and r.cadc_value.size
    }
    if not densify:
        return readout, None, ranges
    time = inputs.shape[0]
    through = model.gradient == "through"
    recording = to_recording(network, readout, windows, time, dt, through=through)
    return None, Recording(recording.populations, dropped_inputs=dropped), ranges

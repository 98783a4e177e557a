"""hxtorch.snn's introduction tutorial, ported to bss2jax (the port-from-hxtorch guide).

The chip model stands in for the chip, so this runs anywhere: `python docs/guides/intro_port.py`.
The guide shows its sections beside the tutorial's code; tests/test_docs.py runs it (with
fewer epochs).
"""

# --8<-- [start:imports]
import jax
import jax.numpy as jnp
import optax

import bss2jax as bj
from bss2jax import plot

# --8<-- [end:imports]

# --8<-- [start:setup]
keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))
chip = bj.ChipModel(bj.ChipInstance.random(next(keys)))  # a seeded chip model: no BSS-2 needed
# On a BSS-2 system, with the setup's nightly calibration:
# chip = bj.Hardware(bj.HxtorchClient(calib_path="spiking_calix-native.pkl"))
dt = 1e-6
# --8<-- [end:setup]

# --8<-- [start:emulate]
# Modules: no experiment object; a network is a plain value
net = bj.Sequential(
    [
        bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0)),  # chip weights lie in [-63, 63]
        bj.LIF(
            1,
            enable_cadc_recording=True,
            enable_madc_recording=True,
            enable_spike_recording=True,
            record_neuron_id=0,
            cadc_time_shift=-1,
        ),
    ]
)
# Some input spikes, time-major (time, batch, in), one step per dt
inputs = jnp.zeros((50, 1, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)
# Forward: runs at once and returns the observables (no handles to fill later)
(z,) = bj.run(net, inputs, backend=chip, dt=dt, key=next(keys))
print(z.spikes.shape, z.membrane_cadc.shape)  # (50, 1, 1) (50, 1, 1)
plot.traces(z, dt=dt)
# --8<-- [end:emulate]

# --8<-- [start:mock]
# The numerics alone (hxtorch's mock mode) is the backend bj.Numeric(), the default
mock = bj.Sequential([bj.Synapse(1, 1, weight=jnp.full((1, 1), 50.0)), bj.LIF(1)])
(z,) = bj.run(mock, inputs, dt=dt)
plot.traces(z, dt=dt)
# --8<-- [end:mock]

# --8<-- [start:align]
# Model leak 0, reset 0, threshold 1; the chip's 80, 80, 125 CADC LSB
lif = bj.LIF(
    1,
    leak=bj.Mixed(0.0, 80.0),
    reset=bj.Mixed(0.0, 80.0),
    threshold=bj.Mixed(1.0, 125.0),
    cadc_time_shift=-1,
)
# Baseline, threshold (trace scale) and PSP size (weight scale), measured in one call
alignment = bj.align(chip, lif, key=next(keys), repetitions=10)
print("CADC membrane baseline:", alignment.baseline)
print("Trace scaling:", alignment.trace_scale, " weight scaling:", alignment.weight_scale)
# Compare one PSP: numerics against the chip, with the measured scales plugged in
aligned = bj.Sequential(
    [
        bj.Synapse(1, 1, weight=jnp.full((1, 1), 0.5), transform=alignment.transform()),
        alignment.neuron(lif),
    ]
)
single = jnp.zeros((50, 10, 1)).at[10].set(1.0)
(on_chip,) = bj.run(aligned, single, backend=chip, dt=dt, key=next(keys))
(numerics,) = bj.run(aligned, single[:, :1], dt=dt)
plot.compare(numerics.membrane_cadc, on_chip.membrane_cadc.mean(1, keepdims=True), dt=dt)
# --8<-- [end:align]


# --8<-- [start:targets]
def get_target(key, n_out=3, time=100):
    """Sums of three random sines per output, normalised to ±1: (time, 1, n_out)."""
    targets = jnp.zeros((time, 1, n_out))
    ramp = jnp.linspace(0.0, 1.0, time)[:, None, None]
    for k in jax.random.split(key, 3):
        k_sign, k_period = jax.random.split(k)
        sign = jnp.sign(jax.random.uniform(k_sign, (n_out,)) - 0.5)
        period = (0.3 - 2.0) * jax.random.uniform(k_period, (n_out,)) + 2.0
        targets = targets + sign[None, None] * jnp.sin(ramp * 2 * jnp.pi / period[None, None])
    return targets / jnp.abs(targets).max(0, keepdims=True)


targets = get_target(next(keys))
plot.targets(targets, dt=dt)
# --8<-- [end:targets]

# --8<-- [start:train]
EPOCHS = 200
k_weight, k_input = jax.random.split(next(keys))
readout = bj.Sequential(
    [
        bj.Synapse(128, 3, key=k_weight, transform=alignment.transform()),
        bj.LI(
            3,
            tau_mem=10e-6,
            tau_syn=10e-6,
            leak=bj.Mixed(0.0, 80.0),
            shift_cadc_to_first=True,
            trace_scale=float(alignment.trace_scale),
        ),
    ]
)
inputs = (jax.random.uniform(k_input, (100, 1, 128)) < 0.03).astype(jnp.float32)


def loss_fn(net, batch, *, key, backend):
    spikes, target = batch
    (y,) = bj.run(net, spikes, backend=backend, dt=dt, key=key)  # runs on the chip (model)
    return bj.mse(y.membrane_cadc, target)


step = bj.make_train_step(loss_fn, optax.adam(2e-3))  # trains the synapse weights
opt_state = step.init(readout)
train_key = next(keys)
losses = []
for epoch in range(EPOCHS):
    readout, opt_state, metrics = step(
        readout,
        opt_state,
        (inputs, targets),
        key=jax.random.fold_in(train_key, epoch),
        backend=chip,
    )
    losses.append(float(metrics["loss"]))
print(f"MSE {losses[0]:.4f} -> {losses[-1]:.4f}")
plot.training({"MSE": losses})
# --8<-- [end:train]

"""`bss2jax demo`: hxtorch's intro tutorial end to end, on the chip model.

The four sections of the tutorial, each printed (and drawn into `--output` if given):
1. emulate one LIF driven by four input spikes on a chip model, recording CADC and MADC;
2. the same network in the numerics (hxtorch's mock mode);
3. align numerics and chip (`bj.align`: baseline, trace scale, weight scale, time shift) and
   compare the single-input PSPs;
4. train 128 Poisson inputs -> 3 LI readouts to follow three sine targets (Adam, MSE on the
   CADC trace) with the chip model in the loop.
"""

from __future__ import annotations

import argparse
import functools
import pathlib


def _sine_targets(key, n_out=3, time=100):
    """The tutorial's targets: sums of three random sines per output, normalised to ±1."""
    import jax
    import jax.numpy as jnp

    targets = jnp.zeros((time, 1, n_out))
    ramp = jnp.linspace(0.0, 1.0, time)[:, None, None]
    for k in jax.random.split(key, 3):
        k_sign, k_period = jax.random.split(k)
        sign = jnp.sign(jax.random.uniform(k_sign, (n_out,)) - 0.5)
        period = (0.3 - 2.0) * jax.random.uniform(k_period, (n_out,)) + 2.0
        targets = targets + sign[None, None] * jnp.sin(ramp * 2 * jnp.pi / period[None, None])
    return targets / jnp.abs(targets).max(0, keepdims=True)


def demo_command(args: argparse.Namespace) -> int:
    """Run the four sections of the tutorial (module docstring) with `args` (`--seed`,
    `--dt`, `--repetitions`, `--epochs`, `--learning-rate`, `--output`); return 0."""
    import jax

    import bss2jax as bj

    keys = iter(jax.random.split(jax.random.PRNGKey(args.seed), 16))
    chip = bj.ChipModel(bj.ChipInstance.random(next(keys)))
    figures: dict[str, object] = {}
    _emulate(chip, next(keys), args.dt, figures)
    _mock(args.dt, figures)
    alignment = _align_and_compare(chip, keys, args, figures)
    _train_readout(chip, alignment, keys, args, figures)
    if args.output:
        _save_figures(pathlib.Path(args.output), figures, args.dt)
    return 0


def _emulate(chip, key, dt, figures):
    """Section 1: one LIF driven by four input spikes on the chip model."""
    import jax.numpy as jnp
    import numpy as np

    import bss2jax as bj

    print("1. one LIF on the chip model (hxtorch defaults, weight 63), CADC and MADC")
    network = bj.Sequential(
        [bj.Synapse(1, 1, weight=jnp.full((1, 1), 63.0)), bj.LIF(1, enable_madc_recording=True)]
    )
    (on_chip,) = bj.run(network, _four_spikes(), backend=chip, dt=dt, key=key)
    _print_trace("   CADC membrane (LSB)", on_chip.membrane_cadc[:, 0, 0])
    print("   spikes at steps", np.flatnonzero(np.asarray(on_chip.spikes[:, 0, 0])).tolist())
    figures["1_chip_traces"] = ("traces", on_chip)


def _mock(dt, figures):
    """Section 2: the same network in the numerics (hxtorch's mock mode)."""
    import jax.numpy as jnp

    import bss2jax as bj

    print("2. the same network in the numerics (mock mode, weight 50)")
    mock = bj.Sequential([bj.Synapse(1, 1, weight=jnp.full((1, 1), 50.0)), bj.LIF(1)])
    (numerics,) = bj.run(mock, _four_spikes(), backend=bj.Numeric(), dt=dt)
    _print_trace("   membrane (model units)", numerics.membrane_cadc[:, 0, 0])
    figures["2_mock_traces"] = ("traces", numerics)


def _four_spikes():
    """Sections 1 and 2's input: spikes at steps 10, 15, 20 and 30 of 50, `(50, 1, 1)`."""
    import jax.numpy as jnp

    return jnp.zeros((50, 1, 1)).at[jnp.array([10, 15, 20, 30])].set(1.0)


def _align_and_compare(chip, keys, args, figures):
    """Section 3: align numerics and chip (two keys from `keys`), compare the PSPs;
    return the `Alignment`."""
    import jax.numpy as jnp

    import bss2jax as bj

    dt = args.dt
    print("3. align: model leak 0, threshold 1 against chip leak 80, threshold 125 LSB")
    lif = bj.LIF(
        1,
        leak=bj.Mixed(0.0, 80.0),
        reset=bj.Mixed(0.0, 80.0),
        threshold=bj.Mixed(1.0, 125.0),
    )
    alignment = bj.align(chip, lif, key=next(keys), repetitions=args.repetitions)
    print(
        f"   baseline {float(alignment.baseline):.1f} LSB, trace_scale "
        f"{float(alignment.trace_scale):.4f}, weight_scale {float(alignment.weight_scale):.1f}, "
        f"cadc_time_shift {int(alignment.cadc_time_shift)}"
    )
    aligned = bj.Sequential(
        [
            # model weight 0.8: within the chip's ±63 at the weight scales align measures
            bj.Synapse(1, 1, weight=jnp.full((1, 1), 0.8), transform=alignment.transform()),
            alignment.neuron(
                bj.LIF(
                    1,
                    leak=bj.Mixed(0.0, 80.0),
                    reset=bj.Mixed(0.0, 80.0),
                    threshold=bj.Mixed(1.0, 125.0),
                    cadc_time_shift=int(alignment.cadc_time_shift),
                )
            ),
        ]
    )
    single = jnp.zeros((50, args.repetitions, 1)).at[10].set(1.0)
    (psp_chip,) = bj.run(aligned, single, backend=chip, dt=dt, key=next(keys))
    (psp_model,) = bj.run(aligned, single[:, :1], dt=dt)
    chip_mean = psp_chip.membrane_cadc.mean(1, keepdims=True)
    deviation = float(jnp.abs(chip_mean - psp_model.membrane_cadc).max())
    print(f"   single-input PSP, chip (mean of {args.repetitions}) against numerics:")
    print(
        f"   peak {float(chip_mean.max()):.3f} against {float(psp_model.membrane_cadc.max()):.3f}"
    )
    print(f"   largest difference {deviation:.3f} model units")
    figures["3_aligned_psp"] = ("compare", (psp_model.membrane_cadc, chip_mean))
    return alignment


def _train_readout(chip, alignment, keys, args, figures):
    """Section 4: train 128 Poisson inputs -> 3 LI readouts to three sine targets with the
    chip model in the loop (four keys from `keys`)."""
    import jax
    import jax.numpy as jnp
    import optax

    import bss2jax as bj

    dt = args.dt
    print(f"4. train 128 Poisson inputs -> 3 LI to three sine targets ({args.epochs} epochs)")
    # ±0.8 model units: the trained traces stay inside the CADC's reliable range (30-210
    # LSB) around the leak of 80 LSB at the ~45 LSB per model unit that align measures
    targets = 0.8 * _sine_targets(next(keys))
    k_weight, k_input = jax.random.split(next(keys))
    readout = bj.Sequential(
        [
            bj.Synapse(128, 3, key=k_weight, transform=alignment.transform()),
            bj.LI(
                3,
                leak=bj.Mixed(0.0, 80.0),
                tau_mem=10e-6,
                tau_syn=10e-6,
                shift_cadc_to_first=True,
                trace_scale=float(alignment.trace_scale),
            ),
        ]
    )
    poisson = (jax.random.uniform(k_input, (100, 1, 128)) < 0.03).astype(jnp.float32)

    def trace_loss(net, batch, *, key, backend):
        spikes, target = batch
        (out,) = bj.run(net, spikes, backend=backend, dt=dt, key=key)
        return bj.mse(out.membrane_cadc, target)

    step = bj.make_train_step(trace_loss, optax.adam(args.learning_rate))
    opt_state = step.init(readout)
    losses = []
    train_key = next(keys)
    for epoch in range(args.epochs):
        readout, opt_state, metrics = step(
            readout,
            opt_state,
            (poisson, targets),
            key=jax.random.fold_in(train_key, epoch),
            backend=chip,
        )
        losses.append(float(metrics["loss"]))
        if epoch % max(1, args.epochs // 5) == 0 or epoch == args.epochs - 1:
            print(f"   epoch {epoch + 1:4d}: MSE {losses[-1]:.4f}")
    print(f"   MSE {losses[0]:.4f} -> {losses[-1]:.4f} ({losses[0] / losses[-1]:.0f}x lower)")
    (trained,) = bj.run(readout, poisson, backend=chip, dt=dt, key=next(keys))
    figures["4_targets"] = ("targets", (targets, trained.membrane_cadc))
    figures["4_loss"] = ("training", {"MSE": losses})


def _print_trace(label, trace, every=5):
    import numpy as np

    values = np.asarray(trace)[::every]
    print(f"{label}, every {every} steps: " + " ".join(f"{v:.2f}" for v in values))


def _save_figures(folder: pathlib.Path, figures, dt):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot
    from .._misc import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    for name, (kind, data) in figures.items():
        if kind == "traces":
            fig, _ = plot.traces(data, dt=dt)
        elif kind == "compare":
            fig, _ = plot.compare(*data, dt=dt)
        elif kind == "targets":
            fig, _ = plot.targets(*data, dt=dt)
        else:
            fig, _ = plot.training(data)
        atomic_write(folder / f"{name}.png", functools.partial(fig.savefig, dpi=100, format="png"))
        plt.close(fig)
    print(f"figures written to {folder}/")

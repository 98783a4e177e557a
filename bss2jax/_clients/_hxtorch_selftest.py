"""`HxtorchClient.self_test`: a first-contact check of a real system against the chip model.

A leak-only run and a single-PSP run (one excitatory, one inhibitory input), compared with
the requested leak and with the nominal noiseless chip model's PSP; a `SelfTestError`
names the likely cause when they disagree.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._errors import CalibrationMismatchError, HardwareError, SelfTestError
from .._hardware._protocol import (
    AbstractClient,
)
from ._hxtorch_map import CADC_INT8_OFFSET, HXTORCH_COMMIT, _CADCConventionError, _short


@dataclasses.dataclass(frozen=True)
class SelfTestReport:
    """What `HxtorchClient.self_test` measured (CADC LSB, seconds).

    - `leak_requested`; `leak_measured`: `(2,)` mean CADC value per neuron without input.
    - `psp_expected`, `psp_measured`: `(2,)` signed peak deviation from the baseline
      (neuron 0 excitatory, neuron 1 inhibitory); `psp_delay`: `(2,)` measured minus
      expected time of half the peak.
    - `cadc_first`, `cadc_last`, `cadc_interval`: first and last CADC sample time and
      the median interval (neuron 0); `madc_first`, `madc_last`, `madc_interval` alike.
    - `runtime`; `chip_settings`: what hxtorch configured (`HxtorchClient.chip_settings`).
    """

    leak_requested: float
    leak_measured: np.ndarray
    psp_expected: np.ndarray
    psp_measured: np.ndarray
    psp_delay: np.ndarray
    cadc_first: float
    cadc_last: float
    cadc_interval: float
    madc_first: float
    madc_last: float
    madc_interval: float
    runtime: float
    chip_settings: dict

    def __str__(self) -> str:
        us = 1e6
        lines = [
            f"hxtorch self-test (checked against hxtorch {HXTORCH_COMMIT[:7]}): passed",
            f"  leak: requested {self.leak_requested:g} LSB, measured "
            + ", ".join(f"{v:.1f}" for v in self.leak_measured),
            "  PSP peak (exc, inh): expected "
            + ", ".join(f"{v:+.1f}" for v in self.psp_expected)
            + " LSB, measured "
            + ", ".join(f"{v:+.1f}" for v in self.psp_measured),
            "  PSP half-rise delay vs model: "
            + ", ".join(f"{v * us:+.2f}" for v in self.psp_delay)
            + " us",
            f"  CADC samples: {self.cadc_first * us:.2f} .. {self.cadc_last * us:.2f} us of "
            f"{self.runtime * us:g} us, every {self.cadc_interval * us:.2f} us",
            f"  MADC samples: {self.madc_first * us:.3f} .. {self.madc_last * us:.3f} us, "
            f"every {self.madc_interval * 1e9:.1f} ns",
        ]
        for key, settings in self.chip_settings.items():
            lines.append(
                f"  chip settings of population {key!r}: "
                + ", ".join(f"{name}={_short(value)}" for name, value in settings.items())
            )
        return "\n".join(lines)


class _Keeping(AbstractClient):
    """Delegates to a client and keeps each (request, raw recording, error)."""

    def __init__(self, client, kept: list):
        self.client, self.kept = client, kept

    def execute(self, request):
        try:
            raw = self.client.execute(request)
        except Exception as error:
            self.kept.append((request, None, error))
            raise
        self.kept.append((request, raw, None))
        return raw


def _observe(backend, net, inputs, dt, kept):
    import jax.numpy as jnp

    try:
        recording = backend.observe(net, jnp.asarray(inputs), dt=dt, key=None)
    except HardwareError as error:
        original = kept[-1][2] if kept and kept[-1][2] is not None else error
        if isinstance(original, CalibrationMismatchError):
            raise SelfTestError("calibration override", str(original)) from error
        if isinstance(original, _CADCConventionError):
            raise SelfTestError("value offset", str(original)) from error
        raise
    return np.asarray(recording.populations[0].membrane_cadc, np.float64)[:, 0, :]


def _coverage(times, runtime, what):
    times = np.unique(np.asarray(times, np.float64))
    if times.size < 2:
        raise SelfTestError("time offset", f"{what}: {times.size} sample(s) in the whole run.")
    interval = float(np.median(np.diff(times)))
    first, last = float(times[0]), float(times[-1])
    if first > 2 * interval or runtime - last > 2 * interval:
        raise SelfTestError(
            "time offset",
            f"{what} samples cover {first * 1e6:.2f} .. {last * 1e6:.2f} us of a "
            f"{runtime * 1e6:g} us run (every {interval * 1e6:.3f} us): they should start and "
            "end within two sample intervals of the run's bounds (grenade's time base for "
            "the PPU's CADC samples or the FPGA's event window differs from the one checked).",
        )
    return first, last, interval


def check_leak(measured, leak, tolerance):
    """Raise `SelfTestError` unless every neuron's `measured` mean is `leak` ± `tolerance`."""
    off = np.abs(measured - leak) > tolerance
    if not off.any():
        return
    text = ", ".join(f"{v:.1f}" for v in measured)
    for shift in (CADC_INT8_OFFSET, -CADC_INT8_OFFSET):
        if np.all(np.abs(measured - (leak + shift)) <= tolerance):
            raise SelfTestError(
                "value offset",
                f"the leak reads {text} LSB for a requested {leak:g}, i.e. {shift:+d}: hxtorch's "
                "CADC value convention (raw - 128) differs from the one this adapter expects.",
            )
    raise SelfTestError(
        "leak",
        f"the leak reads {text} LSB for a requested {leak:g} (tolerance {tolerance:g}): the "
        "chip's calibration does not hold for these settings (a stale calibration file, or "
        "calix failed); recalibrate with HxtorchClient(calib_path=None).",
    )


def check_psp(measured, expected, onset, dt, interval, tolerance):
    """Compare single-PSP traces `(time, neurons)`; return (peaks measured, expected, delays).

    Baselines are the means up to step `onset` (the input spike); a response counts when
    its peak exceeds three times the baseline's std and two LSB (the CADC quantisation
    step is one LSB). Raises `SelfTestError` ("PSP sign", "no PSP", "PSP size", "time
    offset") when the measured PSPs do not match the expected ones.
    """
    dev_m = measured - measured[: onset + 1].mean(0)
    dev_e = expected - expected[: onset + 1].mean(0)
    detect = np.maximum(3 * measured[: onset + 1].std(0), 2.0)
    sign = np.sign(dev_e[np.argmax(np.abs(dev_e), 0), np.arange(dev_e.shape[1])])
    after_m, after_e = sign * dev_m[onset:], sign * dev_e[onset:]
    peak_m, peak_e, wrong = after_m.max(0), after_e.max(0), (-after_m).max(0)
    missing = peak_m < detect
    if missing.any():
        if np.all(wrong[missing] >= detect[missing]):
            raise SelfTestError(
                "PSP sign",
                "the PSPs have the wrong sign (expected "
                + ", ".join(f"{s * p:+.1f}" for s, p in zip(sign, peak_e, strict=True))
                + " LSB, measured "
                + ", ".join(f"{-s * p:+.1f}" for s, p in zip(sign, wrong, strict=True))
                + "): excitatory and inhibitory inputs are swapped.",
            )
        raise SelfTestError(
            "no PSP",
            f"neurons {np.flatnonzero(missing).tolist()} show no response to the input spike at "
            f"{onset * dt * 1e6:g} us (threshold {detect.max():.1f} LSB): input spikes do not "
            "reach the neurons (routing, weights not written) or arrive outside the run.",
        )
    ratio = peak_m / peak_e
    if np.any((ratio < 1 / tolerance) | (ratio > tolerance)):
        raise SelfTestError(
            "PSP size",
            f"PSP peaks are {', '.join(f'{r:.2f}' for r in ratio)} times the chip model's "
            f"(allowed 1/{tolerance:g} .. {tolerance:g}): check i_synin_gm / synapse_dac_bias "
            "and the calibration.",
        )
    half_m = np.argmax(after_m >= peak_m / 2, 0)
    half_e = np.argmax(after_e >= peak_e / 2, 0)
    delay = (half_m - half_e) * dt
    allowed = max(2 * interval, 2 * dt)
    if np.any(np.abs(delay) > allowed):
        raise SelfTestError(
            "time offset",
            f"the PSPs reach half their peak {', '.join(f'{d * 1e6:+.2f}' for d in delay)} us "
            f"from the chip model's time (allowed ±{allowed * 1e6:.2f} us): CADC sample times "
            "and input spike times do not share one time base.",
        )
    return sign * peak_m, sign * peak_e, delay


def _self_test(client, *, dt, runtime, leak, weight, leak_tolerance, psp_tolerance, verbose):
    import jax.numpy as jnp

    from .._backend import ChipModel, Hardware
    from .._chip._config import ChipConfig
    from .._chip._instance import ChipInstance
    from .._network import Sequential
    from .._neurons import LI
    from .._synapse import Synapse

    net = Sequential(
        [
            Synapse(1, 2, weight=jnp.array([[float(weight)], [-float(weight)]])),
            LI(2, leak=float(leak), enable_madc_recording=True, record_neuron_id=0),
        ]
    )
    steps = int(round(runtime / dt))
    onset = steps // 4
    quiet = np.zeros((steps, 1, 1), np.float32)
    pulse = quiet.copy()
    pulse[onset, 0, 0] = 1.0
    kept = []
    backend = Hardware(_Keeping(client, kept), timeout=None, retries=0)

    leak_trace = _observe(backend, net, quiet, dt, kept)
    check_leak(leak_trace.mean(0), float(leak), leak_tolerance)

    psp_trace = _observe(backend, net, pulse, dt, kept)
    _, raw, _ = kept[-1]
    cadc = raw.cadc[0]
    cadc_first, cadc_last, cadc_interval = _coverage(cadc.times[cadc.neurons == 0], runtime, "CADC")
    madc = raw.madc[0]
    madc_first, madc_last, madc_interval = _coverage(madc.times, runtime, "MADC")
    model = ChipModel(ChipInstance.nominal(), ChipConfig.noiseless())
    expected = np.asarray(
        model.observe(net, jnp.asarray(pulse), dt=dt, key=None).populations[0].membrane_cadc,
        np.float64,
    )[:, 0, :]
    psp_measured, psp_expected, delay = check_psp(
        psp_trace, expected, onset, dt, cadc_interval, psp_tolerance
    )
    before = madc.values[madc.times <= onset * dt]
    rise = madc.values[madc.times > onset * dt].max() - np.median(before)
    if rise < max(3 * before.std(), 2.0):
        raise SelfTestError(
            "MADC",
            f"the MADC trace of neuron 0 rises by {rise:.1f} LSB after the input spike, less than "
            "three times its noise: the MADC watches another neuron or its time window is off.",
        )
    report = SelfTestReport(
        leak_requested=float(leak),
        leak_measured=leak_trace.mean(0),
        psp_expected=psp_expected,
        psp_measured=psp_measured,
        psp_delay=delay,
        cadc_first=cadc_first,
        cadc_last=cadc_last,
        cadc_interval=cadc_interval,
        madc_first=madc_first,
        madc_last=madc_last,
        madc_interval=madc_interval,
        runtime=steps * dt,
        chip_settings=dict(client.chip_settings),
    )
    if verbose:
        print(report)
    return report

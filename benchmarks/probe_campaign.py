"""Probe campaign (issue 13): every kind of finding of the reliability issue, reproduced in
a few lines through the public API, each outcome classified, one table printed.

    python benchmarks/probe_campaign.py            # hand-written and generated probes
    python benchmarks/probe_campaign.py --examples 0   # hand-written only

Outcomes: `clear error` (a bss2jax error class, a `TypeError`/`ValueError` naming the
argument in backticks, a run-time check's message under `jit`, argparse's exit 2),
`correct` (the documented result, warnings included), and the failures: `obscure error`
(any other exception), `silently wrong`, `data loss`, `concurrent calls`. The exit status
is 1 when any probe failed. `tests/test_probe_campaign.py` (slow) runs it.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import traceback
import warnings

import _probes_errors  # noqa: F401 - registers its probes
import _probes_state  # noqa: F401 - registers its probes
import jax
import jax.numpy as jnp
import numpy as np
from _probe_kit import (
    CORRECT,
    ERROR,
    FAILURES,
    KINDS,
    NOMINAL,
    OBSCURE,
    PROBES,
    SILENT,
    SPIKES,
    TMP,
    classify,
    layer,
)
from _probes_state import chip_with

import bss2jax as bj

# Generated probes (Hypothesis): each case must end in a clear error or a correct result


def generated(examples: int) -> list[tuple[str, str, str]]:
    """Run the generated probes; `(kind, name, outcome)` per case."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    results: list[tuple[str, str, str]] = []
    options = dict(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    floats = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 1e-300, 1e300, -1e-6, 3.5e38, float("nan"), float("inf")]),
    )

    def record(name, function):
        try:
            outcome = function()
        except BaseException as error:  # noqa: BLE001 - classified
            outcome = classify(error)
        results.append(("generated", name, outcome))

    def finite_run(network, inputs, **options):
        out = bj.run(network, inputs, **options)[0]
        values = [
            np.asarray(v) for v in (out.membrane_cadc, out.current, out.spikes) if v is not None
        ]
        return CORRECT if all(np.isfinite(v).all() for v in values) else SILENT

    @settings(**options)
    @given(
        st.sampled_from(["leak", "reset", "threshold", "tau_mem", "tau_syn", "refractory_time"]),
        floats,
    )
    def neuron(name, value):
        record(f"LIF({name}={value!r})", lambda: finite_run(layer(**{name: value}), SPIKES))

    @settings(**options)
    @given(st.lists(st.one_of(st.sampled_from([0.0, 1.0]), floats), min_size=10, max_size=10))
    def inputs(values):
        x = jnp.asarray(np.asarray(values, np.float32).reshape(5, 1, 2))
        record("inputs", lambda: finite_run(layer(), x))

    @settings(**options)
    @given(floats)
    def dt(value):
        record(f"dt={value!r}", lambda: finite_run(layer(integrator="exact"), SPIKES, dt=value))

    fields = [
        f for f in bj.ChipConfig.__dataclass_fields__ if f not in ("cadc_memory", "potential_range")
    ]

    @settings(**options)
    @given(st.sampled_from(fields), floats)
    def config(field, value):
        def check():
            bj.ChipConfig(**{field: value})
            return CORRECT if np.isfinite(value) else SILENT

        record(f"ChipConfig({field}={value!r})", check)

    @settings(**options)
    @given(st.sampled_from(list(bj.ChipInstance.nominal().__dict__)), floats)
    def chip(field, value):
        def check():
            nominal = bj.ChipInstance.nominal()
            instance = chip_with(**{field: jnp.full_like(getattr(nominal, field), value)})
            array = np.asarray(getattr(instance, field))
            gain = "gain" in field or field.startswith("tau")
            return (
                CORRECT if np.isfinite(array).all() and (not gain or (array > 0).all()) else SILENT
            )

        record(f"ChipInstance({field}={value!r})", check)

    @settings(**options)
    @given(st.floats(0.5, 100.0), st.floats(-5.0, 5.0))
    def weights(scale, weight):
        def check():
            network = layer(scale, weight)
            expected = 4 * int(abs(scale * weight) > 63.5)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                recording = NOMINAL.observe(network, SPIKES, dt=1e-6, key=None)
            warned_ = any("exceed ±63" in str(w.message) for w in caught)
            ok = int(recording.clipped_weights) == expected and warned_ == bool(expected)
            return CORRECT if ok else SILENT

        record(f"chip weight {scale:g} x {weight:g}", check)

    for case in (neuron, inputs, dt, config, chip, weights):
        case()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples", type=int, default=40, help="generated cases per strategy (6 strategies)"
    )
    parser.add_argument("--verbose", action="store_true", help="print every probe's outcome")
    args = parser.parse_args(argv)
    results = []
    try:
        for kind, name, function in PROBES:
            try:
                outcome = function()
            except BaseException as error:  # noqa: BLE001 - classified
                outcome = classify(error)
                if outcome == OBSCURE:
                    traceback.print_exc()
            results.append((kind, name, outcome))
        if args.examples:
            results += generated(args.examples)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    report(results, verbose=args.verbose)
    return 1 if any(outcome in FAILURES for _, _, outcome in results) else 0


def report(results, *, verbose: bool) -> None:
    outcomes = (ERROR, CORRECT, *FAILURES)
    counts = collections.Counter((kind, outcome) for kind, _, outcome in results)
    print(f"bss2jax {bj.__version__}, JAX {jax.__version__}, {len(results)} probes")
    print(f"{'kind':<15}" + "".join(f"{o:>16}" for o in outcomes) + f"{'total':>8}")
    for kind in KINDS:
        row = [counts[kind, o] for o in outcomes]
        print(f"{kind:<15}" + "".join(f"{n:>16}" for n in row) + f"{sum(row):>8}")
    totals = [sum(counts[k, o] for k in KINDS) for o in outcomes]
    print(f"{'all':<15}" + "".join(f"{n:>16}" for n in totals) + f"{sum(totals):>8}")
    for kind, name, outcome in results:
        if verbose or outcome in FAILURES:
            print(f"  {outcome:<16} {kind:<15} {name}")


if __name__ == "__main__":
    sys.exit(main())

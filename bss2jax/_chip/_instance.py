"""One physical chip's fixed-pattern deviations (mismatch), drawn from a key, saved safely.

A `ChipInstance` is a pytree of arrays only, indexed by physical location: neuron circuit
(512: hemisphere * 256 + column), synapse (circuit, row of 256) and CADC channel (one per
circuit). Different keys act like different chips; the same key gives the same bits.
Instances stack along a leading axis for `jax.vmap` (many chips in one call).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._constants import NEURON_CIRCUITS, SYNAPSE_ROWS
from .._errors import ChipInstanceError
from .._misc import atomic_write, error_if
from .._typing import user_facing

FORMAT_NAME = "bss2jax.ChipInstance"
FORMAT_VERSION = 1

# name -> (trailing shape, kind); kind "offset" (additive, nominal 0) or "gain" (factor, nominal 1)
_FIELDS = {
    "leak": ((NEURON_CIRCUITS,), "offset"),
    "reset": ((NEURON_CIRCUITS,), "offset"),
    "threshold": ((NEURON_CIRCUITS,), "offset"),
    "tau_mem": ((NEURON_CIRCUITS,), "gain"),
    "tau_syn_exc": ((NEURON_CIRCUITS,), "gain"),
    "tau_syn_inh": ((NEURON_CIRCUITS,), "gain"),
    "synaptic_gain_exc": ((NEURON_CIRCUITS,), "gain"),
    "synaptic_gain_inh": ((NEURON_CIRCUITS,), "gain"),
    "synapse_gain": ((NEURON_CIRCUITS, SYNAPSE_ROWS), "gain"),
    "cadc_offset": ((NEURON_CIRCUITS,), "offset"),
    "cadc_gain": ((NEURON_CIRCUITS,), "gain"),
}


@user_facing  # validates its own fields (named errors; an int is a valid float)
@dataclasses.dataclass(frozen=True)
class MismatchProfile:
    """Spreads of the fixed-pattern deviations of a chip (reference/bss2-chip.md §7.3).

    Potentials are additive normal deviations with the given std in CADC LSB; time
    constants and gains are multiplicative log-normal factors `exp(N(0, s))` with the given
    log-std `s`, except `cadc_gain`, a factor `N(1, s)`. All defaults are estimates to be
    replaced by fitted values (see the reference for each bound's source).

    ```python
    profile = bj.MismatchProfile.uncalibrated()
    chip = bj.ChipInstance.random(jax.random.PRNGKey(1), profile)
    ```
    """

    leak: float = 1.5
    """Std of the leak potential per neuron circuit, CADC LSB."""
    reset: float = 1.5
    """Std of the reset potential per neuron circuit, CADC LSB."""
    threshold: float = 2.0
    """Std of the threshold per neuron circuit, CADC LSB."""
    tau_mem: float = 0.05
    """Log-std of the membrane time constant per circuit."""
    tau_syn: float = 0.03
    """Log-std of the synaptic time constants per circuit (exc and inh drawn apart)."""
    synaptic_gain: float = 0.05
    """Log-std of the per-circuit synaptic input gain (exc and inh)."""
    synapse_gain: float = 0.05
    """Log-std of the per-synapse weight-DAC gain (no trim on the chip)."""
    cadc_offset: float = 1.5
    """Std of the offset per CADC channel, LSB."""
    cadc_gain: float = 0.01
    """Std of the gain per CADC channel (a factor `N(1, s)`)."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < float("inf")  # NaN and infinity fail too
            ):
                raise ValueError(
                    f"`MismatchProfile.{field.name}` must be a non-negative float; got {value!r}."
                )

    @classmethod
    def calibrated(cls) -> MismatchProfile:
        """The default: a chip after calix calibration (bss2-chip.md §7.3, estimates)."""
        return cls()

    @classmethod
    def uncalibrated(cls) -> MismatchProfile:
        """A chip without calibration: broad spreads (potentials 10-20 LSB, times ~25 %).

        ```python
        chip = bj.ChipInstance.random(key, bj.MismatchProfile.uncalibrated())
        ```
        """
        return cls(
            leak=15.0,
            reset=15.0,
            threshold=20.0,
            tau_mem=0.25,
            tau_syn=0.25,
            synaptic_gain=0.2,
            synapse_gain=0.05,
            cadc_offset=10.0,
            cadc_gain=0.05,
        )

    @classmethod
    def none(cls) -> MismatchProfile:
        """No deviation at all (every draw is the nominal chip)."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls)})

    def spread(self, name: str) -> float:
        """The spread that applies to the `ChipInstance` field `name`."""
        base = name.removesuffix("_exc").removesuffix("_inh")
        return float(getattr(self, base))


def _check_values(name: str, value):
    """`value`, else `ChipInstanceError` for NaN or inf in a concrete field or a gain that
    is not positive. A traced field (made under `jit` or `vmap`) comes back carrying the
    same check at run time (`_misc.error_if`)."""
    field = f"`ChipInstance.{name}`"
    gain = _FIELDS[name][1] == "gain"
    if isinstance(value, jax.core.Tracer):
        bad = ~jnp.isfinite(value) | (~(value > 0) if gain else False)
        rule = "holds factors and must be positive and finite" if gain else "must be finite"
        return error_if(value, jnp.any(bad), f"{field} {rule} (a traced value is not).")
    array = np.asarray(value)
    if not np.all(np.isfinite(array)):
        count = int(np.sum(~np.isfinite(array)))
        raise ChipInstanceError(f"{field} must be finite; got {count} NaN or inf values.")
    if gain and not np.all(array > 0):
        raise ChipInstanceError(
            f"{field} holds factors and must be positive; got min {array.min()}."
        )
    return value


class ChipInstance(eqx.Module):
    """The fixed-pattern deviations of one BSS-2 chip, by physical location.

    Fields (float32 arrays; a stack of instances has one more leading axis):
    - `leak`, `reset`, `threshold`: `(512,)` additive deviations in CADC LSB per circuit.
    - `tau_mem`, `tau_syn_exc`, `tau_syn_inh`: `(512,)` factors on the time constants.
    - `synaptic_gain_exc`, `synaptic_gain_inh`: `(512,)` factors on the synaptic input.
    - `synapse_gain`: `(512, 256)` factor of each synapse's weight DAC, indexed by
      (circuit, row); rows `2 k` (excitatory) and `2 k + 1` (inhibitory) carry signed input
      `k` of the circuit.
    - `cadc_offset` `(512,)` LSB and `cadc_gain` `(512,)` of each CADC channel.

    Circuit `h * 256 + c` is column `c` of hemisphere `h`. Make one with `random`,
    `nominal` or `load`.

    ```python
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))        # a calibrated chip
    chips = jax.vmap(bj.ChipInstance.random)(jax.random.split(key, 8))   # eight chips
    ```
    """

    leak: jax.Array
    reset: jax.Array
    threshold: jax.Array
    tau_mem: jax.Array
    tau_syn_exc: jax.Array
    tau_syn_inh: jax.Array
    synaptic_gain_exc: jax.Array
    synaptic_gain_inh: jax.Array
    synapse_gain: jax.Array
    cadc_offset: jax.Array
    cadc_gain: jax.Array

    def __post_init__(self):
        for name in _FIELDS:  # a traced field gets its run-time check here
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                setattr(self, name, _check_values(name, value))

    def __check_init__(self):
        lead = None
        for name, (shape, _) in _FIELDS.items():
            value = getattr(self, name)
            got = tuple(jnp.shape(value))
            if got[len(got) - len(shape) :] != shape or len(got) < len(shape):
                raise ChipInstanceError(
                    f"`ChipInstance.{name}` must have shape (..., {', '.join(map(str, shape))});"
                    f" got {got}."
                )
            if not isinstance(value, jax.core.Tracer):  # traced: checked in __post_init__
                _check_values(name, value)
            this = got[: len(got) - len(shape)]
            if lead is None:
                lead = this
            elif this != lead:
                raise ChipInstanceError(
                    f"all `ChipInstance` fields must share the leading (stack) shape {lead}; "
                    f"`{name}` has {this}."
                )

    @classmethod
    def nominal(cls) -> ChipInstance:
        """The perfect chip: no offsets, all factors 1 (for tests and ideal emulation).

        ```python
        backend = bj.ChipModel(bj.ChipInstance.nominal(), bj.ChipConfig.noiseless())
        ```
        """
        values = {}
        for name, (shape, kind) in _FIELDS.items():
            fill = 0.0 if kind == "offset" else 1.0
            values[name] = jnp.full(shape, fill, jnp.float32)
        return cls(**values)

    @classmethod
    @user_facing
    def random(cls, key: jax.Array, profile: MismatchProfile | None = None) -> ChipInstance:
        """Draw a chip from `key` with the spreads of `profile` (default: calibrated).

        Pure and traceable: `jax.vmap(ChipInstance.random)(keys)` draws a stack of chips.
        Offsets are `N(0, s)`, time constants and gains `exp(N(0, s))`, the CADC gain
        `1 + N(0, s)`.

        ```python
        chip = bj.ChipInstance.random(jax.random.PRNGKey(3))
        ```
        """
        profile = MismatchProfile.calibrated() if profile is None else profile
        if not isinstance(profile, MismatchProfile):
            raise TypeError(f"`profile` must be a bj.MismatchProfile; got {profile!r}.")
        keys = jax.random.split(key, len(_FIELDS))
        values = {}
        for k, (name, (shape, kind)) in zip(keys, _FIELDS.items(), strict=True):
            spread = profile.spread(name)
            noise = jax.random.normal(k, shape, jnp.float32)
            if kind == "offset":
                values[name] = spread * noise
            elif name == "cadc_gain":
                values[name] = 1.0 + spread * noise
            else:
                values[name] = jnp.exp(spread * noise)
        return cls(**values)

    @staticmethod
    def stack(chips) -> ChipInstance:
        """Stack instances along a new leading axis, for `jax.vmap` over chips.

        ```python
        chips = bj.ChipInstance.stack([bj.ChipInstance.nominal(), chip])
        ```
        """
        chips = list(chips)
        if not chips or not all(isinstance(c, ChipInstance) for c in chips):
            raise TypeError("`chips` must be a non-empty sequence of bj.ChipInstance.")
        return jax.tree.map(lambda *xs: jnp.stack(xs), *chips)

    def save(self, path, *, metadata: dict | None = None) -> None:
        """Write this instance to `path` (`.npz` of arrays plus JSON metadata), atomically.

        The file holds one array per field and a JSON header with the format name and
        version (and `metadata`, which must be JSON-serialisable). It is written with
        `atomic_write` (a temporary file in the same folder, flushed and moved into place
        with `os.replace`), so a crash never leaves a half-written file. No pickle is used.

        ```python
        chip.save("chip-a.npz", metadata={"seed": 0})
        ```
        """
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fields": {name: list(jnp.shape(getattr(self, name))) for name in _FIELDS},
            "metadata": {} if metadata is None else metadata,
        }
        try:
            text = json.dumps(header, sort_keys=True)
        except TypeError as error:
            raise ValueError(f"`metadata` must be JSON-serialisable; {error}.") from None
        arrays: dict[str, Any] = {
            name: np.asarray(getattr(self, name), np.float32) for name in _FIELDS
        }
        arrays["__header__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        atomic_write(Path(path), lambda file: np.savez(file, **arrays))

    @classmethod
    def load(cls, path) -> ChipInstance:
        """Read an instance written by `save`, validating format, version, shapes, values.

        Raises `ChipInstanceError` naming what is wrong (missing field, wrong shape, NaN,
        non-positive factor, unknown version). Never unpickles (`allow_pickle=False`).

        ```python
        chip = bj.ChipInstance.load("chip-a.npz")
        ```
        """
        return cls._read(path)[0]

    @classmethod
    def load_metadata(cls, path) -> dict:
        """The `metadata` dict stored with `save`."""
        return cls._read(path)[1]

    @classmethod
    def _read(cls, path):
        """`_from_file`, with every failure to read the archive as a `ChipInstanceError`
        naming the file (a truncated or damaged file, a missing entry)."""
        try:
            return cls._from_file(path)
        except ChipInstanceError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise ChipInstanceError(
                f"cannot read a chip instance from {os.fspath(path)!r}: "
                f"{type(error).__name__}: {error} (a damaged or truncated file?)"
            ) from None

    @classmethod
    def _from_file(cls, path):
        path = os.fspath(path)
        try:
            with open(path, "rb") as handle:  # read whole: a damaged file leaks no handle
                archive = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ChipInstanceError(f"cannot read a chip instance from {path!r}: {error}") from None
        with archive:
            if "__header__" not in archive.files:
                raise ChipInstanceError(f"{path!r} has no bss2jax header; not a chip instance.")
            try:
                header = json.loads(bytes(archive["__header__"]).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                raise ChipInstanceError(f"{path!r}: unreadable header ({error}).") from None
            if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
                raise ChipInstanceError(
                    f"{path!r}: format must be {FORMAT_NAME!r}; got {header.get('format')!r}."
                )
            if header.get("version") != FORMAT_VERSION:
                raise ChipInstanceError(
                    f"{path!r}: format version must be {FORMAT_VERSION}; got "
                    f"{header.get('version')!r} (written by another bss2jax version)."
                )
            values = {}
            for name, (shape, kind) in _FIELDS.items():
                if name not in archive.files:
                    raise ChipInstanceError(f"{path!r}: field {name!r} is missing.")
                array = archive[name]
                if not np.issubdtype(array.dtype, np.floating):
                    raise ChipInstanceError(
                        f"{path!r}: field {name!r} must be a float array; got {array.dtype}."
                    )
                if array.shape[array.ndim - len(shape) :] != shape or array.ndim < len(shape):
                    raise ChipInstanceError(
                        f"{path!r}: field {name!r} must have shape (..., "
                        f"{', '.join(map(str, shape))}); got {array.shape}."
                    )
                with np.errstate(over="ignore"):
                    array = array.astype(np.float32)  # what the chip model computes with
                if not np.all(np.isfinite(array)):
                    raise ChipInstanceError(
                        f"{path!r}: field {name!r} has NaN or inf values (or values beyond "
                        "float32's range)."
                    )
                if kind == "gain" and not np.all(array > 0):
                    raise ChipInstanceError(
                        f"{path!r}: field {name!r} holds factors and must be positive; "
                        f"min {array.min()}."
                    )
                values[name] = jnp.asarray(array, jnp.float32)
        return cls(**values), header.get("metadata", {})


def field_names() -> tuple[str, ...]:
    """Names of the `ChipInstance` fields, in order."""
    return tuple(_FIELDS)

"""`bss2jax fit`'s data file and network: reading and checking the `.npz` (no pickle), the
default network, its loss, and saving / loading the trained network."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

_FIELDS = ("inputs", "labels", "test_inputs", "test_labels")


def _field(name: str, rule: str, value) -> ValueError:
    return ValueError(f"--data: field '{name}' must be {rule}; got {value}")


def _spikes(name: str, array: np.ndarray, shape: tuple | None = None) -> np.ndarray:
    rule = "an array (samples, time, channels) of 0/1 spikes"
    if array.ndim != 3 or 0 in array.shape:
        raise _field(name, rule, f"shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise _field(name, rule, f"dtype {array.dtype}")
    if shape is not None and array.shape[1:] != shape:
        raise _field(
            name,
            f"of shape (samples, {shape[0]}, {shape[1]}) like 'inputs'",
            f"shape {array.shape}",
        )
    bad = ~((array == 0) | (array == 1))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _field(name, rule, f"{array[first].item()!r} at index {first}")
    return array.astype(np.float32)


def _labels(name: str, array: np.ndarray, samples: int, classes: int | None) -> np.ndarray:
    rule = "an integer array (samples,)"
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise _field(name, rule, f"shape {array.shape}, dtype {array.dtype}")
    if array.shape[0] != samples:
        raise _field(
            name, f"of length {samples} (the samples of its inputs)", f"length {array.shape[0]}"
        )
    if array.min() < 0 or (classes is not None and array.max() >= classes):
        limit = (
            "non-negative" if classes is None else f"in [0, {classes}) (the classes of 'labels')"
        )
        value = array.min() if array.min() < 0 else array.max()
        raise _field(name, f"{rule}, every label {limit}", f"label {int(value)}")
    return array.astype(np.int32)


def load_data(path) -> dict[str, np.ndarray]:
    """Read and check the `.npz` file (module docstring); `ValueError` naming the field,
    the rule and the value. Returns the arrays (spikes as float32, labels as int32)."""
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"--data: cannot read {str(path)!r} as a .npz file ({error})") from None
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ValueError(f"--data: {str(path)!r} holds one array (.npy), not named fields (.npz)")
    with stored:
        extra = sorted(set(stored.files) - set(_FIELDS))
        if extra:
            raise ValueError(f"--data: unknown fields {extra}; the file may hold {list(_FIELDS)}")
        raw = {}
        for name in stored.files:
            try:
                raw[name] = stored[name]
            except ValueError:  # an object array: it would need pickle
                raise _field(
                    name, "a plain numeric array", "an object array (needs pickle)"
                ) from None
    for name in ("inputs", "labels"):
        if name not in raw:
            raise ValueError(f"--data: field '{name}' is missing; the file holds {sorted(raw)}")
    if ("test_inputs" in raw) != ("test_labels" in raw):
        raise ValueError(
            "--data: fields 'test_inputs' and 'test_labels' come together; got only one"
        )
    data = {"inputs": _spikes("inputs", raw["inputs"])}
    data["labels"] = _labels("labels", raw["labels"], len(data["inputs"]), None)
    classes = int(data["labels"].max()) + 1
    if classes < 2:
        raise _field("labels", "at least two classes (labels 0 and 1)", f"classes {classes}")
    if "test_inputs" in raw:
        data["test_inputs"] = _spikes("test_inputs", raw["test_inputs"], data["inputs"].shape[1:])
        data["test_labels"] = _labels(
            "test_labels", raw["test_labels"], len(data["test_inputs"]), classes
        )
    return data


def default_network(channels: int, hidden: int, classes: int, *, key):
    """The command's network: `channels -> hidden LIF.model_space -> classes LI.model_space`
    (weights drawn later by `init_fluctuation_driven`)."""
    import jax

    from .._network import Sequential
    from .._neurons import LI, LIF
    from .._synapse import Synapse

    k_hidden, k_readout = jax.random.split(key)
    return Sequential(
        [
            Synapse(channels, hidden, key=k_hidden),
            LIF.model_space(hidden),
            Synapse(hidden, classes, key=k_readout),
            LI.model_space(classes),
        ]
    )


class SpikeLoss:
    """Cross-entropy on the readout's maximum over time (`bd.max_over_time` of the CADC
    trace), with accuracy; a batch is `(inputs (batch, time, channels), labels)`."""

    def __init__(self, dt: float):
        self.dt = dt

    def __hash__(self):
        return hash((SpikeLoss, self.dt))

    def __eq__(self, other):
        return isinstance(other, SpikeLoss) and other.dt == self.dt

    def __call__(self, network, batch, *, key, backend):
        import jax.numpy as jnp

        from .. import data as bd
        from .._run import run
        from .._train._losses import accuracy, cross_entropy

        inputs, labels = batch
        _, readout = run(network, jnp.swapaxes(inputs, 0, 1), backend=backend, dt=self.dt, key=key)
        scores = bd.max_over_time(readout.membrane_cadc)
        return cross_entropy(scores, labels), {"accuracy": accuracy(scores, labels)}


def save_network(path, network, metadata: dict) -> None:
    """The trained network in the checkpoint format (`bj.save_checkpoint`, atomic): its
    arrays, and in the metadata the kind of every leaf (an array's shape and dtype, or a
    plain number's value) and each population's `cadc_time_shift` (a static field), which a
    freshly built template does not carry."""
    import jax

    from .._train._checkpoint import save_checkpoint

    kinds: list[Any] = []
    for leaf in jax.tree_util.tree_leaves(network):
        if isinstance(leaf, (bool, int, float)):
            kinds.append({"number": leaf})
        elif hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            kinds.append({"shape": list(leaf.shape), "dtype": str(leaf.dtype)})
        else:
            kinds.append(None)  # kept from the template
    shifts = [network.layers[i].cadc_time_shift for i in (1, 3)]
    save_checkpoint(path, network, {**metadata, "leaves": kinds, "cadc_time_shift": shifts})


def load_network(path):
    """`(network, metadata)` from the `network.npz` that `bss2jax fit` writes."""
    import jax
    import jax.numpy as jnp

    from .._misc import replace_static
    from .._train._checkpoint import _read, load_checkpoint

    meta = _read(Path(path))[0]["metadata"]
    key = jax.random.key(0)
    template = default_network(meta["channels"], meta["hidden"], meta["classes"], key=key)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    for index, kind in enumerate(meta["leaves"]):
        if kind is not None and "number" in kind:
            leaves[index] = kind["number"]
        elif kind is not None:
            leaves[index] = jnp.zeros(kind["shape"], kind["dtype"])
    layers = list(jax.tree_util.tree_unflatten(treedef, leaves).layers)
    for index, shift in zip((1, 3), meta["cadc_time_shift"], strict=True):
        layers[index] = replace_static(layers[index], cadc_time_shift=shift)
    return load_checkpoint(path, type(template)(layers))

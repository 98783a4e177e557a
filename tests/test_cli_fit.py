"""`bss2jax fit --data my.npz`: the data file's checks (named errors, exit 2, no pickle) and
a tiny run that writes `metrics.json` and the trained network."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import bss2jax as bj
from bss2jax._cli import main
from bss2jax._cli._fit_data import SpikeLoss, load_network


def _arrays(samples=40, steps=12, channels=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    inputs = (rng.random((samples, steps, channels)) < 0.2).astype(np.uint8)
    return inputs, (np.arange(samples) % classes).astype(np.int64)


def _write(tmp_path, **fields):
    path = tmp_path / "data.npz"
    np.savez(path, **fields)
    return path


def _error(path, capsys, *extra) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data", str(path), "--output", "unused", *extra])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


SPIKES = "an array (samples, time, channels) of 0/1 spikes"


def test_bad_fields_are_named_errors_with_exit_2(tmp_path, capsys):
    inputs, labels = _arrays()
    twos = inputs.copy()
    twos[3, 4, 1] = 2
    cases = [
        (dict(inputs=inputs), "field 'labels' is missing"),
        (
            dict(inputs=inputs[0], labels=labels),
            f"field 'inputs' must be {SPIKES}; got shape (12, 5)",
        ),
        (
            dict(inputs=twos, labels=labels),
            f"field 'inputs' must be {SPIKES}; got 2 at index (3, 4, 1)",
        ),
        (
            dict(inputs=inputs.astype(str), labels=labels),
            f"field 'inputs' must be {SPIKES}; got dtype <U3",
        ),
        (
            dict(inputs=inputs, labels=labels.astype(float)),
            "field 'labels' must be an integer array (samples,); got shape (40,), dtype float64",
        ),
        (
            dict(inputs=inputs, labels=labels[:-1]),
            "field 'labels' must be of length 40 (the samples of its inputs); got length 39",
        ),
        (dict(inputs=inputs, labels=labels - 1), "every label non-negative; got label -1"),
        (dict(inputs=inputs, labels=0 * labels), "field 'labels' must be at least two classes"),
        (
            dict(inputs=inputs, labels=labels, test_inputs=inputs),
            "'test_inputs' and 'test_labels' come together",
        ),
        (
            dict(inputs=inputs, labels=labels, test_inputs=inputs[:, :3], test_labels=labels),
            "field 'test_inputs' must be of shape (samples, 12, 5) like 'inputs'; got shape "
            "(40, 3, 5)",
        ),
        (
            dict(inputs=inputs, labels=labels, test_inputs=inputs, test_labels=labels + 1),
            "field 'test_labels' must be an integer array (samples,), every label in [0, 3) (the "
            "classes of 'labels'); got label 3",
        ),
        (dict(inputs=inputs, labels=labels, weights=labels), "unknown fields ['weights']"),
    ]
    for fields, message in cases:
        err = _error(_write(tmp_path, **fields), capsys)
        assert "bss2jax fit: error: --data" in err and message in err, (message, err)


def test_the_data_file_is_never_unpickled(tmp_path, capsys):
    inputs, labels = _arrays()
    # an object array can only be stored (and loaded) with pickle
    path = _write(tmp_path, inputs=inputs, labels=np.array([{"x": 1}] * 40, dtype=object))
    err = _error(path, capsys)
    assert "field 'labels' must be a plain numeric array; got an object array (needs pickle)" in err
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert "cannot read" in _error(tmp_path / "junk.npz", capsys)
    assert "cannot read" in _error(tmp_path / "missing.npz", capsys)


def test_options_that_are_wrong_together(tmp_path, capsys):
    path = _write(tmp_path, inputs=_arrays()[0], labels=_arrays()[1])
    err = _error(path, capsys, "--batch-size", "10", "--chips-per-call", "4")
    assert "--chips-per-call (4) must divide --batch-size (10)" in err
    err = _error(path, capsys, "--batch-size", "12", "--chips-per-call", "3")
    assert "--draws (5) must divide --batch-size (12)" in err
    err = _error(path, capsys, "--batch-size", "50")
    assert "--batch-size must not exceed the training samples (40); got 50" in err
    assert "--noise must be below 14.29; got 15" in _error(path, capsys, "--noise", "15")
    assert "nothing to train" in _error(path, capsys, "--epochs", "0", "--chip-epochs", "0")
    assert "argument --hidden: must be a positive int; got '0'" in _error(
        path, capsys, "--hidden", "0"
    )


@pytest.mark.slow
def test_tiny_run_writes_metrics_and_a_loadable_network(tmp_path, capsys):
    inputs, labels = _arrays()
    test_inputs, test_labels = _arrays(samples=20, seed=1)
    path = _write(
        tmp_path, inputs=inputs, labels=labels, test_inputs=test_inputs, test_labels=test_labels
    )
    output = tmp_path / "run"
    args = ["fit", "--data", str(path), "--output", str(output), "--hidden", "6"]
    args += ["--epochs", "1", "--chip-epochs", "1", "--batch-size", "20", "--chips-per-call", "2"]
    args += ["--transfer", "2", "--no-progress", "--no-compilation-cache"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test accuracy on the target chip 0:" in out and "on 2 other chips:" in out
    metrics = json.loads((output / "metrics.json").read_text())
    assert list(metrics["histories"]) == ["numerics", "chips"]
    final = metrics["final"]
    assert final["other_chip_seeds"] == [1, 2] and len(final["other_accuracies"]) == 2
    assert metrics["config"]["classes"] == 3 and metrics["config"]["channels"] == 5
    for phase in ("numerics", "chips"):
        assert (output / phase / "checkpoint.npz").exists()
    # the saved network loads back and gives the reported accuracy on the target chip
    network, meta = load_network(output / "network.npz")
    assert meta["hidden"] == 6
    chip = bj.ChipInstance.random(jax.random.PRNGKey(0))
    key = jax.random.fold_in(jax.random.key(0), 4)
    (result,) = bj.evaluate_backends(
        network,
        SpikeLoss(1e-6),
        (test_inputs.astype(np.float32), test_labels.astype(np.int32)),
        [bj.ChipModel(chip)],
        key=key,
        batch_size=20,
    )
    np.testing.assert_allclose(result["accuracy"], final["target_accuracy"])

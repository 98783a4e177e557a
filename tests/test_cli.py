"""The `bss2jax` command line: `demo`, and `train` at a tiny size (numerics and chip model)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from bss2jax._cli import main

TINY = ["--train-size", "60", "--test-size", "30", "--hidden", "8", "--batch-size", "20"]


def test_demo_runs_the_tutorial_and_training_lowers_the_loss(tmp_path, capsys):
    args = ["demo", "--epochs", "30", "--learning-rate", "1e-2", "--repetitions", "3"]
    assert main([*args, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for section in ("1. one LIF on the chip model", "2. the same network", "3. align", "4. train"):
        assert section in out
    before, after = (float(x) for x in re.search(r"MSE (\S+) -> (\S+) ", out).groups())
    assert after < 0.2 * before
    assert {p.name for p in tmp_path.iterdir()} == {
        "1_chip_traces.png",
        "2_mock_traces.png",
        "3_aligned_psp.png",
        "4_targets.png",
        "4_loss.png",
    }


def test_train_tiny_numeric_writes_everything(tmp_path, capsys):
    args = ["train", "--backend", "numeric", "--epochs", "2", *TINY, "--output", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy:" in out
    assert {p.name for p in tmp_path.iterdir()} == {
        "checkpoint.npz",
        "metrics.json",
        "curves.png",
        "decision_map.png",
    }
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert 0.0 <= metrics["final"]["test_accuracy"] <= 1.0
    assert metrics["config"]["backend"] == "numeric" and metrics["config"]["hidden"] == 8
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_train_tiny_chip_model_with_transfer(tmp_path, capsys):
    args = ["train", "--epochs", "1", "--pretrain-epochs", "1", "--random-chip-epochs", "1"]
    args += [*TINY, "--transfer", "2"]
    assert main([*args, "--output", str(tmp_path), "--no-progress", "--no-plots"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["pretrain_history"]) == 1 and len(metrics["history"]) == 1
    assert len(metrics["random_chips_history"]) == 1
    assert metrics["random_chips_config"]["gradient"] == "through"
    assert metrics["config"]["gradient"] == "inject" and metrics["config"]["chip_seed"] == 0
    assert metrics["config"]["anchor_probability"] == 0.5
    assert metrics["config"]["chips_per_call"] == 5
    assert metrics["random_chips_config"]["chips_per_call"] == 5
    assert metrics["pretrain_config"]["weight_noise"] == 0.05
    assert "chips_per_call" not in metrics["pretrain_config"]
    assert (tmp_path / "pretrain" / "checkpoint.npz").exists()
    assert (tmp_path / "random-chips" / "checkpoint.npz").exists()
    final = metrics["final"]
    assert len(final["transfer_accuracy"]) == 2 and final["transfer_chip_seeds"] == [1, 2]
    assert "on 2 other chip instances" in capsys.readouterr().out


def test_train_phase_defaults_follow_the_gradient_mode():
    import argparse

    from bss2jax import yinyang
    from bss2jax.yinyang._options import add_train_arguments, train_configs

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    pretrain, random_chips, inject = train_configs(parser.parse_args([]))
    assert pretrain.epochs == yinyang.CHIP_PRETRAINING.epochs
    assert pretrain.weight_noise == yinyang.CHIP_PRETRAINING.weight_noise > 0
    assert random_chips is None  # off by default
    assert (inject.epochs, inject.lr, inject.anchor_probability) == (10, 1e-3, 0.5)
    assert inject.chips_per_call == 5
    *_, through = train_configs(parser.parse_args(["--gradient", "through"]))
    assert (through.epochs, through.lr, through.anchor_probability) == (6, 1e-3, 0.5)
    *_, chosen = train_configs(parser.parse_args(["--gradient", "through", "--lr", "2e-3"]))
    assert (chosen.lr, chosen.anchor_probability) == (2e-3, 0.5)
    none = train_configs(parser.parse_args(["--backend", "numeric"]))
    assert none[0] is None and none[1] is None and none[2].anchor_probability == 1.0
    _, random_chips, _ = train_configs(parser.parse_args(["--random-chip-epochs", "3"]))
    assert random_chips.epochs == 3 and random_chips.chips_per_call == 5
    once, *_ = train_configs(parser.parse_args(["--pretrain-noise-draws", "1"]))
    assert once.noise_draws == 1 and pretrain.noise_draws == yinyang.CHIP_PRETRAINING.noise_draws
    clean, *_ = train_configs(parser.parse_args(["--pretrain-noise", "0"]))
    assert (clean.weight_noise, clean.gain_noise, clean.neuron_noise) == (0, 0, 0)
    *_, one = train_configs(parser.parse_args(["--chips-per-call", "1"]))
    assert one.chips_per_call == 1


def test_eventprop_takes_its_recipe_and_the_decoder_option():
    import argparse

    from bss2jax import yinyang
    from bss2jax.yinyang._options import add_train_arguments, train_configs

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    *_, numeric = train_configs(
        parser.parse_args(["--backend", "numeric", "--gradient", "eventprop"])
    )
    assert numeric == yinyang.EVENTPROP
    assert (numeric.decoder, numeric.readout_scale, numeric.lr) == ("mean", 20.0, 1e-3)
    pretrain, _, chip = train_configs(parser.parse_args(["--gradient", "eventprop"]))
    assert {pretrain.decoder, chip.decoder} == {"mean"} and chip.lr == yinyang.CHIP_FINE_TUNING.lr
    assert (
        pretrain.lr == yinyang.EVENTPROP.lr and pretrain.epochs == yinyang.CHIP_PRETRAINING.epochs
    )
    *_, peak = train_configs(
        parser.parse_args(["--backend", "numeric", "--gradient", "eventprop", "--decoder", "max"])
    )
    assert (peak.decoder, peak.readout_scale, peak.lr) == ("max", 10.0, 1e-3)
    *_, surrogate = train_configs(parser.parse_args(["--backend", "numeric"]))
    assert surrogate == yinyang.YinYangConfig()
    with pytest.raises(SystemExit):
        parser.parse_args(["--decoder", "sum"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], r"--batch-size: must be a positive int; got '0'"),
        (["--train-size", "10", "--batch-size", "20"], "`--batch-size` must not exceed"),
        (["--pretrain-epochs", "-1"], "--pretrain-epochs: must be a non-negative int; got '-1'"),
        (["--random-chip-epochs", "-2"], "--random-chip-epochs: must be a non-negative int"),
        (
            ["--anchor-probability", "1.5"],
            r"--anchor-probability: must be a probability in \[0, 1\]",
        ),
        (["--pretrain-noise", "-1"], "--pretrain-noise: must be a non-negative finite number"),
        (["--pretrain-noise-draws", "3"], r"divides the batch size \(50\); got 3"),
        (["--chips-per-call", "0"], "--chips-per-call: must be a positive int; got '0'"),
        (["--batch-size", "22", "--pretrain-noise-draws", "2"], r"chips per batch \(5\); got 22"),
        (["--lr", "nan"], "--lr: must be a positive finite number; got 'nan'"),
        (["--lr", "-1"], "--lr: must be a positive finite number; got '-1'"),
        (["--backend", "gpu"], "--backend: invalid choice"),
    ],
)
def test_train_argument_errors(tmp_path, capsys, argv, message):
    """Every option error is argparse's: an `error:` line naming the option, exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv, "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "error:" in error and re.search(message, error), error


def test_killed_train_resumes_from_its_checkpoint(tmp_path, capsys):
    """SIGKILL `bss2jax train` after its first checkpoint; the rerun continues from it."""
    output = tmp_path / "run"
    args = ["train", "--backend", "numeric", *TINY, "--output", str(output), "--no-plots"]
    command = [sys.executable, "-m", "bss2jax._cli", *args, "--epochs", "400"]
    command += ["--checkpoint-every", "1", "--no-progress"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not (output / "checkpoint.npz").exists():
            assert process.poll() is None, "train exited before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    # the rerun with the same folder resumes (here to a shorter goal, to finish quickly)
    assert main([*args, "--epochs", "1", "--no-progress"]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["final"]["resumed_step"] >= 1
    assert "(resumed from the checkpoint at step" in capsys.readouterr().out
    assert not [p.name for p in output.iterdir() if p.name.endswith(".tmp")]

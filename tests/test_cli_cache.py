"""The CLI's persistent compilation cache: options, the folder check, and a second run of
the same job that compiles nothing (JAX stores every program in the folder)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import bss2jax as bj
from bss2jax._cli import _cache, main


def _run(argv, cache_env):
    env = dict(os.environ, BSS2JAX_COMPILATION_CACHE=cache_env, JAX_LOGGING_LEVEL="DEBUG")
    return subprocess.run(
        [sys.executable, "-m", "bss2jax._cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


_PROGRAM = """
import logging, sys
import jax, jax.numpy as jnp
import bss2jax as bj
from bss2jax._cli import _cache
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
_cache.enable(sys.argv[1])
net = bj.Sequential([bj.Synapse(2, 3, weight=jnp.full((3, 2), 0.5)), bj.LI(3, leak=0.0)])
@jax.jit
def peak(inputs):  # `run` checks the traced inputs (0/1) with eqx.error_if
    return bj.run(net, inputs, dt=1e-6)[-1].membrane_cadc.max()
print(float(peak(jnp.ones((5, 1, 2)))))
"""


def test_a_rerun_finds_every_program_in_the_cache_checks_included(tmp_path):
    # JAX does not store programs with host callbacks; eqx.error_if's default is one. With
    # the cache on, the checks fail as NaN instead, so every program is stored and found.
    folder = tmp_path / "cache"
    logs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _PROGRAM, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        logs.append(done.stderr)
        assert float(done.stdout) > 0
    assert "Not writing persistent cache entry" not in logs[0], logs[0]
    assert "PERSISTENT COMPILATION CACHE MISS" in logs[0]
    assert "PERSISTENT COMPILATION CACHE MISS" not in logs[1], logs[1]
    assert "Persistent compilation cache hit" in logs[1]


def test_with_the_cache_a_failed_check_gives_nan_instead_of_the_error():
    from bss2jax import _misc

    net = bj.Sequential([bj.Synapse(1, 1, weight=jnp.ones((1, 1))), bj.LI(1, leak=0.0)])
    run = jax.jit(lambda x: bj.run(net, x, dt=1e-6)[-1].membrane_cadc)
    bad = jnp.full((3, 1, 1), 2.0)
    with pytest.raises(Exception, match="must hold spikes as 0/1"):
        jax.block_until_ready(run(bad))
    previous = _misc.traced_checks("nan")
    try:
        run = jax.jit(lambda x: bj.run(net, x, dt=1e-6)[-1].membrane_cadc)
        # another shape: a program traced after the switch (traces are cached with the mode)
        assert jnp.isnan(run(jnp.full((4, 1, 1), 2.0))).any()  # from the first input on
        assert not jnp.isnan(run(jnp.ones((4, 1, 1)))).any()
    finally:
        _misc.traced_checks(previous)
    with pytest.raises(ValueError, match="`mode` must be 'default' or 'nan'; got 'off'"):
        _misc.traced_checks("off")


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BSS2JAX_COMPILATION_CACHE", str(tmp_path / "c"))
    assert _cache.default_folder() == tmp_path / "c"
    monkeypatch.setenv("BSS2JAX_COMPILATION_CACHE", "off")
    assert _cache.default_folder() is None
    monkeypatch.delenv("BSS2JAX_COMPILATION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cache.default_folder() == tmp_path / "xdg" / "bss2jax" / "jax"


def test_an_unwritable_cache_folder_is_argparse_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--epochs", "1", "--compilation-cache", str(blocker / "sub")])
    assert exit_.value.code == 2
    assert "`--compilation-cache` must be a folder" in capsys.readouterr().err


def test_the_two_cache_options_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--compilation-cache", str(tmp_path), "--no-compilation-cache"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
def test_a_second_train_run_compiles_nothing_new(tmp_path):
    # The criterion on the real job (tiny size): every program of the second run
    # comes from the cache (JAX's debug log), and the folder holds the same entries.
    folder = tmp_path / "cache"
    argv = ["train", "--backend", "numeric", "--epochs", "1", "--train-size", "60"]
    argv += ["--test-size", "30", "--hidden", "8", "--batch-size", "20", "--no-plots"]
    argv += ["--no-progress", "--compilation-cache", str(folder)]
    first = _run([*argv, "--output", str(tmp_path / "a")], "off")
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in folder.iterdir())
    assert entries
    assert "Not writing persistent cache entry" not in first.stderr
    second = _run([*argv, "--output", str(tmp_path / "b")], "off")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in folder.iterdir()) == entries
    assert "PERSISTENT COMPILATION CACHE MISS" not in second.stderr
    assert second.stderr.count("Persistent compilation cache hit") >= 3

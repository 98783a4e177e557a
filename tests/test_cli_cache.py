"""The CLI's persistent compilation cache: options, the folder check, and a second run of
the same job that compiles nothing (JAX stores every program in the folder)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bss2jax._cli import _cache, main


def _run(argv, cache_env):
    env = dict(os.environ, BSS2JAX_COMPILATION_CACHE=cache_env)
    return subprocess.run(
        [sys.executable, "-m", "bss2jax._cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


_PROGRAM = (
    "import sys, jax, jax.numpy as jnp\n"
    "from bss2jax._cli import _cache\n"
    "_cache.enable(sys.argv[1])\n"
    "print(float(jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.arange(3.0)).sum()))\n"
)


def test_enable_stores_every_compiled_program_and_a_rerun_adds_none(tmp_path):
    folder = tmp_path / "cache"

    def entries():
        return sorted(p.name for p in folder.iterdir())

    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _PROGRAM, str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert float(done.stdout) == pytest.approx(2.0 * (0.0 + 0.8414709848 + 0.9092974268))
        if _ == 0:
            first = entries()
            assert first, "the first run stored no compiled program"
    assert entries() == first  # the rerun compiled nothing new


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
    # The criterion on the real job (tiny size): the cache folder holds the same
    # entries after the second run as after the first.
    folder = tmp_path / "cache"
    argv = ["train", "--backend", "numeric", "--epochs", "1", "--train-size", "60"]
    argv += ["--test-size", "30", "--hidden", "8", "--batch-size", "20", "--no-plots"]
    argv += ["--no-progress", "--compilation-cache", str(folder)]
    first = _run([*argv, "--output", str(tmp_path / "a")], "off")
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in folder.iterdir())
    assert entries
    second = _run([*argv, "--output", str(tmp_path / "b")], "off")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in folder.iterdir()) == entries

"""JAX's persistent compilation cache for the command line: a second run compiles nothing
that an earlier run with the same JAX, jaxlib, device and program compiled.

The folder is `--compilation-cache DIR`, else `$BSS2JAX_COMPILATION_CACHE`, else
`$XDG_CACHE_HOME/bss2jax/jax` (`~/.cache/bss2jax/jax`); `--no-compilation-cache` (or
`BSS2JAX_COMPILATION_CACHE=off`, as the test suite sets) switches it off. Every compiled
program is stored, however short its compilation (JAX's defaults keep only those over
one second), so that a rerun of a small job starts at once.

JAX does not store a program that holds a host callback, and the run-time checks of traced
values (`eqx.error_if`: inputs that are not 0/1, invalid neuron parameters built under
`jit`) are host callbacks. With the cache on, those checks therefore fail as NaN instead
(`bss2jax._misc.traced_checks("nan")`): the run stops with `NonFiniteError` at the step
that met one, without the check's own message (rerun with `--no-compilation-cache` to see
it). Run-time warnings (chip weights beyond ±63, calix ranges) are host callbacks too
and are left out; `Recording.clipped_weights` still counts the clipped weights.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax

from .._errors import OutputFolderError
from .._misc import check_writable_folder, traced_checks


def default_folder() -> Path | None:
    """The cache folder when no option names one (see the module docstring); None: off."""
    if os.environ.get("BSS2JAX_COMPILATION_CACHE"):
        value = os.environ["BSS2JAX_COMPILATION_CACHE"]
        return None if value == "off" else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "bss2jax" / "jax"


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--compilation-cache",
        metavar="DIR",
        help="folder of JAX's persistent compilation cache (default: "
        "$BSS2JAX_COMPILATION_CACHE unless 'off', else ~/.cache/bss2jax/jax)",
    )
    group.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="compile everything afresh and store nothing",
    )


def enable(folder: str | os.PathLike) -> Path:
    """Point JAX's persistent compilation cache at `folder` (created if missing) and store
    every program in it, run-time checks failing as NaN (module docstring);
    `OutputFolderError` if the folder cannot be written."""
    folder = check_writable_folder(folder, "--compilation-cache").resolve()
    traced_checks("nan")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def configure(args: argparse.Namespace) -> None:
    """Apply the cache options of a parsed command line (argparse's error on a bad folder)."""
    folder = args.compilation_cache or default_folder()
    if args.no_compilation_cache or folder is None:
        return
    try:
        enable(folder)
    except OutputFolderError as error:
        args.parser.error(str(error))

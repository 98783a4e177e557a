"""The built wheel ships `kernels/` as `bss2jax.kernels` and works without the source tree."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
        ],
        check=True,
        cwd=out,
    )
    (path,) = out.glob("bss2jax-*.whl")
    return path


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "bss2jax/kernels/cuba/reference.py" in names
    assert "bss2jax/__init__.py" in names
    top_level = {name.split("/")[0] for name in names}
    assert "kernels" not in top_level, "the wheel must not install a top-level `kernels`"


def test_wheel_imports_and_runs(wheel, tmp_path):
    # A zip of pure Python is importable from sys.path: run from the wheel, away from the
    # source tree, and check every module came from it.
    code = (
        "import jax, jax.numpy as jnp, bss2jax as bj, bss2jax.kernels.cuba as c\n"
        f"assert bj.__file__.startswith({str(wheel)!r}), bj.__file__\n"
        f"assert c.__file__.startswith({str(wheel)!r}), c.__file__\n"
        "net = bj.Sequential([bj.Synapse(2, 1, key=jax.random.PRNGKey(0)), bj.LI(1)])\n"
        "out = bj.run(net, jnp.ones((5, 1, 2)))\n"
        "print(out[0].membrane_cadc.shape)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(wheel))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(5, 1, 1)"


def test_wheel_has_every_source_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [("bss2jax", ROOT / "bss2jax"), ("bss2jax/kernels", ROOT / "kernels")]
    missing = []
    for prefix, folder in sources:
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            if name not in names:
                missing.append(name)
    assert not missing, f"add these packages to [tool.setuptools] packages: {missing}"

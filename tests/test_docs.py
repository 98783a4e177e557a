"""The documentation site (mkdocs.yml, docs/): complete, its code runs, it builds strictly.

The default tests read files only; the slow ones run the guides' code (the chip model's
compilation dominates: about 30 s of CPU) and build the site (`.ci/run` builds it too).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PORT_SCRIPT = DOCS / "guides" / "intro_port.py"
PORT_GUIDE = DOCS / "guides" / "port-from-hxtorch.md"
# `bss2jax.kernels` is the top-level folder kernels/ (pyproject's package-dir), which the
# documentation reads as `kernels`.
DOCUMENTED_AS = {"bss2jax.kernels": "kernels"}


def _documented() -> set[str]:
    """The identifiers of every `::: identifier` block of the API reference pages."""
    found = set()
    for page in (DOCS / "api").glob("*.md"):
        found.update(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.M))
    return found


def _sections(text: str) -> list[str]:
    return re.findall(r"# --8<-- \[start:(\w+)\]", text)


def test_api_reference_lists_every_public_name():
    import bss2jax as bj
    import bss2jax.hardware as bjh

    documented = _documented()
    public = [f"bss2jax.{name}" for name in bj.__all__]
    public += [f"bss2jax.hardware.{name}" for name in bjh.__all__]
    missing = [name for name in public if DOCUMENTED_AS.get(name, name) not in documented]
    assert not missing, f"add `::: <name>` to a page in docs/api/ for: {missing}"
    # ... and nothing there that the package does not export (a stale name).
    exported = {DOCUMENTED_AS.get(name, name) for name in public} | {"bss2jax.plot"}
    assert not documented - exported, f"documented but not exported: {documented - exported}"


def test_yinyang_page_lists_the_recipes_names():
    import inspect

    import bss2jax.yinyang as recipe

    page = (DOCS / "api" / "submodules.md").read_text()
    block = page.split("::: bss2jax.yinyang\n", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^ {8}- (\w+)$", block, flags=re.M))
    public = {
        n for n, v in vars(recipe).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert listed == public, listed ^ public


def test_port_guide_shows_every_section_of_its_script():
    script = PORT_SCRIPT.read_text()
    sections = _sections(script)
    assert len(sections) == len(set(sections)) and sections
    assert len(re.findall(r"# --8<-- \[end:(\w+)\]", script)) == len(sections)
    included = re.findall(r'--8<-- "docs/guides/intro_port.py:(\w+)"', PORT_GUIDE.read_text())
    assert sorted(included) == sorted(sections), (included, sections)


def _list_breaks():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("griffe_lists", DOCS / "_ext/griffe_lists.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.add_list_breaks


def test_list_breaks_put_a_blank_line_before_lists_only():
    add = _list_breaks()
    text = "**Arguments:**\n- `a`: one\n  more of a\n- `b`: two\nAfter.\n1. first"
    assert add(text) == (
        "**Arguments:**\n\n- `a`: one\n  more of a\n- `b`: two\nAfter.\n\n1. first"
    )
    fenced = "Code:\n```python\nx = 1\n- 2\n```\n- item"
    assert add(fenced) == "Code:\n```python\nx = 1\n- 2\n```\n\n- item"
    already = "Text.\n\n- a\n- b"
    assert add(already) == already


def _run_blocks(blocks: list[str], name: str) -> dict:
    """Execute code blocks in one namespace, as a user's script (JAX's default dtype and
    rank promotion: the suite's strict settings are for the library's own code), figures
    off."""
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__docs__"}
    try:
        with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
            for block in blocks:
                exec(compile(block, name, "exec"), namespace)
    finally:
        plt.close("all")
    return namespace


@pytest.mark.slow
def test_port_script_runs_and_trains():
    source = PORT_SCRIPT.read_text()
    assert source.count("EPOCHS = 200\n") == 1
    done = _run_blocks([source.replace("EPOCHS = 200\n", "EPOCHS = 8\n")], str(PORT_SCRIPT))
    alignment = done["alignment"]
    # Model leak 0 / threshold 1 against chip leak 80 / threshold 125 LSB: ideally a span
    # of 45 LSB, so trace_scale 1/45; a calibrated chip instance is near it.
    assert 0.5 / 45 < float(alignment.trace_scale) < 2.0 / 45
    assert 0.0 < float(alignment.weight_scale) < 200.0
    losses = done["losses"]
    assert len(losses) == 8
    assert losses[-1] < 0.8 * losses[0], losses  # the readout learns with the chip in the loop


@pytest.mark.slow
def test_getting_started_and_home_page_code_runs():
    blocks = []
    for page in ("index.md", "getting-started.md"):
        blocks += re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    done = _run_blocks(blocks, "getting-started.md")
    bj = done["bj"]
    assert float(done["hidden"].spikes.sum()) > 0  # fluctuation-driven init: the layer fires
    # A silent readout scores mean(sin^2) ~ 0.5 against the sine target; trained in the
    # numerics, the page's network must do ten times better.
    batch = (done["inputs"], done["target"])
    assert float(done["loss"](done["net"], batch, key=None, backend=bj.Numeric())) < 0.05
    # The last loop (chip model in the loop) improves on the numerics' network on the chip.
    first = float(bj.mse(done["on_chip"].membrane_cadc, done["target"]))
    assert float(done["metrics"]["loss"]) < first


@pytest.mark.slow
def test_site_builds_strictly_and_renders_every_name(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    import bss2jax as bj

    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    html = "".join(p.read_text() for p in (tmp_path / "site" / "api").glob("*/index.html"))
    unrendered = [
        name for name in bj.__all__ if name != "kernels" and f'id="bss2jax.{name}"' not in html
    ]
    assert not unrendered, unrendered
    assert (tmp_path / "site" / "notebooks" / "intro" / "index.html").exists()

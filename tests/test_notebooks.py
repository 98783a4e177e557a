"""Execute every notebook in notebooks/ in fast mode (`BSS2JAX_FAST=1`); any cell error fails.

The notebooks import only the public API and read `BSS2JAX_FAST` to shrink epochs and
sizes. The kernel is `python3` (the interpreter running the tests, through ipykernel) with
the Agg backend, so no window opens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT = 300  # seconds per cell


def test_notebooks_are_found():
    names = {path.name for path in NOTEBOOKS}
    assert {"intro.ipynb", "yinyang.ipynb", "sweeps.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    # stored without outputs (kept small in the repository)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name}: clear the outputs before committing"
            )
    monkeypatch.setenv("BSS2JAX_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # the kernel runs this interpreter (the venv with bss2jax installed)
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any error

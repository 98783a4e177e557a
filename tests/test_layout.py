"""The layout's size limits (issue 11): no source file over 450 lines, no function over 80."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.joinpath("bss2jax").rglob("*.py"), *ROOT.joinpath("kernels").rglob("*.py")])
MAX_FILE_LINES, MAX_FUNCTION_LINES = 450, 80


def test_files_and_functions_stay_small():
    assert len(SOURCES) > 50  # the package was found
    too_long = []
    for path in SOURCES:
        text = path.read_text()
        name = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)

"""The public API: every exported name is documented; importing has no side effects."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pathlib
import subprocess
import sys

import pytest

import bss2jax as bj

PACKAGE = pathlib.Path(bj.__file__).parent


def _auto_docs(obj):
    """Docstrings Python generates by itself (namedtuple, dataclass): not documentation."""
    docs = set()
    if inspect.isclass(obj):
        fields = getattr(obj, "_fields", None)
        if isinstance(fields, tuple):
            docs.add(f"{obj.__name__}({', '.join(fields)})")
        if dataclasses.is_dataclass(obj):
            try:
                signature = str(inspect.signature(obj)).replace(" -> None", "")
            except (TypeError, ValueError):
                signature = "()"
            docs.add(obj.__name__ + signature)
    return docs


def _attribute_docstring(name):
    """The string literal right after `name = ...` in a module of the package, if any."""
    for path in sorted(PACKAGE.rglob("*.py")):
        body = ast.parse(path.read_text()).body
        for statement, following in zip(body, body[1:], strict=False):
            targets = getattr(statement, "targets", None) or [getattr(statement, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                    if isinstance(following.value.value, str):
                        return following.value.value
    return None


def _own_docstring(name, obj):
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        return None if doc in _auto_docs(obj) else doc
    if inspect.isroutine(obj) or inspect.ismodule(obj):
        return obj.__doc__
    # A constant (e.g. `INPUT`): its docstring is the string literal after its assignment;
    # `obj.__doc__` would be the docstring of its type.
    return _attribute_docstring(name)


def test_all_is_consistent():
    assert len(bj.__all__) == len(set(bj.__all__))
    for name in bj.__all__:
        assert not name.startswith("_")
        assert hasattr(bj, name), name
    for name in ("run", "Sequential", "Network", "LIF", "LI", "AdEx", "Synapse", "Numeric"):
        assert name in bj.__all__


@pytest.mark.parametrize("name", sorted(bj.__all__))
def test_every_public_name_has_a_docstring(name):
    doc = _own_docstring(name, getattr(bj, name))
    assert doc is not None and len(doc.strip()) >= 10, f"`bj.{name}` has no docstring"


def test_constant_docstring_found():
    # The check above must be able to fail: an undocumented constant gives None.
    assert _attribute_docstring("INPUT")
    assert _attribute_docstring("__no_such_name__") is None
    assert _own_docstring("x", type("Undocumented", (), {})) is None


def test_import_has_no_side_effects():
    code = (
        "import logging, sys\n"
        "before = list(logging.getLogger().handlers)\n"
        "import bss2jax\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'hxtorch']\n"
        "assert logging.getLogger().handlers == before\n"
        "assert 'kernels' not in sys.modules  # shipped as bss2jax.kernels only\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

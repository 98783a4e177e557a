"""A griffe extension for the API reference: a blank line before each Markdown list.

bss2jax's docstrings (equinox's style) start lists right under a line of text:

    **Arguments:**
    - `chip`: ...

Python-Markdown needs a blank line before a list, or it renders the items as one
paragraph. This adds it in the docstrings as the documentation reads them (the source is
unchanged), outside code fences and not between the items of one list.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s")


def add_list_breaks(text: str) -> str:
    """`text` with a blank line inserted before every list that follows a line of text."""
    lines = text.split("\n")
    out: list[str] = []
    fence = None
    in_list = False
    for line in lines:
        stripped = line.lstrip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            out.append(line)
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            in_list = False
            out.append(line)
            continue
        if not stripped:
            in_list = False
        elif _ITEM.match(line):  # an item at the margin
            if not in_list and out and out[-1].strip():
                out.append("")
            in_list = True
        elif not line.startswith((" ", "\t")):
            in_list = False  # a paragraph at the margin ends the list
        out.append(line)
    return "\n".join(out)


class ListBreaks(griffe.Extension):
    """Apply `add_list_breaks` to every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = add_list_breaks(obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)  # type: ignore[arg-type]

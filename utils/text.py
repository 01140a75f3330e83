"""Text from data (class names, file names) as it is shown: in tables, log lines, plots and drawn labels.

A class name comes from a COCO json or a checkpoint and may hold anything: a newline splits a table row in
two, `$...$` is read by matplotlib as mathtext (`cost $\\x$` raises when the figure is drawn), 300 characters
overflow every column. File and folder names from such text: utils/paths.py (safe_name, class_dirs).
"""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display_text(text: object, limit: int | None = None) -> str:
    """One line of plain text: control characters written as escapes (a newline as \\n), cut to `limit`
    characters with '...' where longer."""
    s = _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), str(text))
    if limit is not None and len(s) > limit:
        s = s[:max(limit - 3, 1)] + "..."
    return s


def plot_text(text: object, limit: int | None = None) -> str:
    """display_text for matplotlib: every '$' escaped, so the text is drawn as written, never as mathtext."""
    return display_text(text, limit).replace("$", r"\$")

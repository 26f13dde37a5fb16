"""How the shell shows results, as rqlite's CLI does: query rows in a box
with a header row, writes as "N rows affected", JSON documents (/status,
/nodes, /debug/vars) as an indented tree of sorted keys.

Pure functions of already-decoded JSON; nothing here does IO.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any


class Number(str):
    """A JSON number kept as the text the node sent (`json.loads(...,
    parse_float=Number)`), so that 1e+21 or 0.1 show as they came instead
    of as Python reprints them."""


def cell(value: object) -> str:
    """One value as the table shows it: NULL for null, true/false for
    booleans, a byte array (?blob_array) as [1 2 3]."""
    return "NULL" if value is None else scalar(value)


def width(text: str) -> int:
    """Columns a line takes on a terminal: wide (CJK) characters take two,
    combining marks none; otherwise a box with such text would not line up."""
    total = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        total += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return total


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A box of left-aligned cells:

        +----+-------+
        | id | name  |
        +----+-------+
        | 1  | fiona |
        +----+-------+

    A value holding newlines (a CREATE statement typed over several lines)
    spans several lines of its row, so the box stays intact."""
    grid = [[str(c) for c in columns]] + [
        [cell(row[i]) if i < len(row) else "NULL" for i in range(len(columns))] for row in rows
    ]
    split = [[c.expandtabs(4).split("\n") for c in line] for line in grid]
    widths = [max(width(part) for line in split for part in line[i]) for i in range(len(columns))]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [border]
    for n, line in enumerate(split):
        for k in range(max((len(c) for c in line), default=1)):
            parts = [c[k] if k < len(c) else "" for c in line]
            padded = (p + " " * (w - width(p)) for p, w in zip(parts, widths, strict=True))
            out.append("| " + " | ".join(padded) + " |")
        if n == 0:
            out.append(border)
    if len(split) > 1:
        out.append(border)
    return "\n".join(out)


def rows_affected(count: int, time_s: float | None = None) -> str:
    """rqlite's line after a write, with the statement's time when the
    timer is on."""
    text = f"{count} {'row' if count == 1 else 'rows'} affected"
    return text if time_s is None else f"{text} ({time_s:f} sec)"


def run_time(time_s: float) -> str:
    return f"Run Time: {time_s:f} seconds"


def tree(doc: Mapping[str, Any], indent: int = 0) -> list[str]:
    """A JSON object as rqlite's CLI prints /status: one `key: value` line
    per scalar, a nested object under its `key:` two spaces further in,
    keys sorted, nulls left out."""
    lines = []
    pad = "  " * indent
    for key in sorted(doc):
        value = doc[key]
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key}:")
            lines.extend(tree(value, indent + 1))
        else:
            lines.append(f"{pad}{key}: {scalar(value)}")
    return lines


def scalar(value: object) -> str:
    """A value on one line: lists as [a b c] (Go's %v, as rqlite shows
    them), objects inside lists as JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(scalar(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    return str(value)

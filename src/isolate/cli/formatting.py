"""Docker's ``--format`` for lists (``ps``, ``stats``, ``volume ls``) and objects
(``inspect``): ``table TEMPLATE`` (a header and columns aligned as Go's tabwriter aligns them),
``json`` (one JSON object per row), or a template run once per row.

Owns the layout only; the rows and their fields come from the library.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from isolate import _json as json
from isolate.cli.template import Template

__all__ = ["print_inspect", "print_rows", "tabwrite"]


def _prepare(source: str) -> tuple[bool, str]:
    """(is a table, the template text): Docker strips ``table``, trims spaces and reads
    ``\\t`` and ``\\n`` as a tab and a newline."""
    table = source.startswith("table")
    text = source[len("table"):] if table else source
    text = text.strip(" ") if table else text
    return table, text.replace("\\t", "\t").replace("\\n", "\n")


def tabwrite(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells as Go's ``tabwriter.NewWriter(w, minwidth, 1, padding, ' ',
    0)`` does (Docker's tables): each column as wide as its widest cell plus the padding, at
    least ``minwidth``; a line's last cell is not aligned, and trailing blanks are kept as
    Go keeps them."""
    rows = [line.split("\t") for line in lines]
    out = []
    # tabwriter aligns a column over a block of consecutive lines that all have that cell.
    widths: dict[tuple[int, int], int] = {}
    ncols = max((len(r) for r in rows), default=0)
    for col in range(ncols - 1):
        start = None
        for i in range(len(rows) + 1):
            has = i < len(rows) and len(rows[i]) > col + 1
            if has and start is None:
                start = i
            elif not has and start is not None:
                width = max(len(rows[j][col]) for j in range(start, i)) + padding
                width = max(width, minwidth)
                for j in range(start, i):
                    widths[(j, col)] = width
                start = None
    for i, r in enumerate(rows):
        cells = [c.ljust(widths[(i, col)]) for col, c in enumerate(r[:-1])]
        out.append("".join(cells) + r[-1])
    return "\n".join(out)


def print_rows(rows: Sequence[Mapping[str, Any]], fmt: str | None, default_table: str,
               headers: Mapping[str, str], *, out: IO[str] | None = None,
               quiet_field: str | None = None) -> None:
    """Print ``rows`` (each a mapping of the fields a template names) in ``fmt``: ``None``
    or ``"table"`` for ``default_table``, ``"json"`` for one compact JSON object per row
    (keys sorted, as Docker's), ``table TEMPLATE`` or any other template. ``headers`` names
    each field's column.

    Raises:
        TemplateError: a bad template.
    """
    stream = out if out is not None else sys.stdout
    if fmt in (None, "", "table"):
        fmt = default_table
    if fmt == "json":
        for row in rows:
            stream.write(json.dumps(dict(sorted(row.items())), separators=(",", ":"),
                                    ensure_ascii=False) + "\n")
        return
    table, text = _prepare(fmt)
    template = Template(text)
    lines = [template.render(row) for row in rows]
    if table:
        header = template.render({**{k: k.upper() for k in (rows[0] if rows else {})},
                                  **headers}, header=True)
        lines = tabwrite([header, *lines]).split("\n")
        stream.write("\n".join(lines) + "\n")
        return
    for line in lines:
        stream.write(line + "\n")


def print_inspect(objects: Sequence[Any], fmt: str | None, *,
                  out: IO[str] | None = None) -> None:
    """``inspect``'s output: a JSON array indented as Docker's (``fmt`` None or ``json``),
    else the template run over each object, one line each.

    Raises:
        TemplateError: a bad template.
    """
    stream = out if out is not None else sys.stdout
    if fmt in (None, "", "json"):
        stream.write(json.dumps(list(objects), indent=4, ensure_ascii=False) + "\n")
        return
    template = Template(fmt)  # as Docker's inspect: no \t or \n replaced
    for obj in objects:
        stream.write(template.render(obj) + "\n")

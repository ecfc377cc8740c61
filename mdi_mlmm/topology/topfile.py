"""Walking the text of a GROMACS ``.top`` / ``.itp``: its sections, the moleculetype each line belongs to, its
``#include`` lines. The one text walker of the package (:mod:`.hmr` edits masses with it,
:func:`mdi_mlmm.prep.complex.add_position_restraints` inserts restraints); reading a whole system into atoms
and parameters is ParmEd's (:mod:`.gromacs`).
"""
from __future__ import annotations

import re

#: a section header line ``[ name ]`` (any spacing); group 1: the name
SECTION = re.compile(r"^\s*\[\s*([A-Za-z_]+)\s*\]")
#: an ``#include "file"`` / ``#include <file>`` line; group 1: the file
INCLUDE = re.compile(r'^\s*#\s*include\s+["<]([^">]+)[">]')


def fields(line: str) -> list[str]:
    """The whitespace-separated fields of ``line`` before its ``;`` comment."""
    return line.split(";", 1)[0].split()


def blocks(lines: list[str]):
    """(section name in lower case or None, moleculetype name or None, line index, whether the line is a section
    header) of every line of ``lines``: a line belongs to the moleculetype whose ``[ moleculetype ]`` it follows
    (named by that section's first field that is not a comment or ``#`` line) until ``[ system ]`` or
    ``[ molecules ]``. Preprocessor lines (``#ifdef``, ``#include``) are yielded like any line."""
    section, moltype, expect_name = None, None, False
    for i, ln in enumerate(lines):
        m = SECTION.match(ln)
        if m:
            section = m.group(1).lower()
            if section == "moleculetype":
                moltype, expect_name = None, True
            elif section in ("system", "molecules"):
                moltype = None
            yield section, moltype, i, True
            continue
        f = fields(ln)
        if expect_name and f and not ln.lstrip().startswith("#"):
            moltype, expect_name = f[0], False
        yield section, moltype, i, False

"""GROMACS index (``.ndx``) files and the ML region.

In Python, atom indices are 0-based; in the file they are 1-based (GROMACS).
The ML region is the group named ``ML`` (:data:`ML_GROUP`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from ..errors import UserInputError

ML_GROUP = "ML"
MM_GROUP = "MM"


def write_ndx(path: Path, groups: Mapping[str, Iterable[int]], append: bool = False) -> Path:
    """Write ``groups`` (name → 0-based atom indices) as a GROMACS index file, 15 numbers a line."""
    lines = []
    for name, idx in groups.items():
        if not name or any(c.isspace() for c in name):
            raise UserInputError(f"bad index group name {name!r}")
        nums = [int(i) + 1 for i in idx]
        lines.append(f"[ {name} ]")
        for k in range(0, len(nums), 15):
            lines.append(" ".join(f"{n:4d}" for n in nums[k:k + 15]))
    text = "\n".join(lines) + "\n"
    path = Path(path)
    if append and path.is_file():
        old = path.read_text()
        text = old + ("" if old.endswith("\n") else "\n") + text
    path.write_text(text)
    return path


def read_ndx(path: Path) -> dict[str, list[int]]:
    """Groups of an index file: name → 0-based atom indices (file order). A repeated name keeps the last."""
    groups: dict[str, list[int]] = {}
    current = None
    for ln, line in enumerate(Path(path).read_text().splitlines(), 1):
        s = line.split(";", 1)[0].strip()
        if not s:
            continue
        if s.startswith("["):
            if not s.endswith("]"):
                raise UserInputError(f"{path}:{ln}: bad group header {line!r}")
            current = s[1:-1].strip()
            groups[current] = []
        elif current is None:
            raise UserInputError(f"{path}:{ln}: atom numbers before any [ group ]")
        else:
            try:
                groups[current].extend(int(x) - 1 for x in s.split())
            except ValueError as exc:
                raise UserInputError(f"{path}:{ln}: not an atom number in {line!r}") from exc
    return groups


def ml_indices(path: Path, group: str = ML_GROUP) -> list[int]:
    """0-based indices of the ML region (group ``ML`` unless told otherwise) in ``path``."""
    groups = read_ndx(path)
    if group not in groups:
        raise UserInputError(f"index file {path} has no group [ {group} ] (groups: {', '.join(groups)})")
    return groups[group]

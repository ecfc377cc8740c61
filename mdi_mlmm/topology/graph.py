"""Molecular graphs (pure Python): connected components of atoms joined by bonds."""
from __future__ import annotations

from typing import Sequence


def components(n: int, bonds: Sequence[tuple[int, int]]) -> list[int]:
    """Connected-component label of each of ``n`` atoms: 0, 1, ... in order of each component's first atom."""
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in bonds:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[ri] = rj
    roots: dict[int, int] = {}
    return [roots.setdefault(find(i), len(roots)) for i in range(n)]

"""Small .gro manipulations shared by the host tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def wrap_shifted_gro(gro: Path, out: Path, shift_nm) -> None:
    """Translate every atom by ``shift_nm`` (nm; multiples of 0.001) and put it back into the rectangular box
    atom by atom: molecules straddling the boundary come out broken, as an MD engine may see them."""
    lines = Path(gro).read_text().splitlines()
    box = np.array([float(v) for v in lines[-1].split()[:3]])
    new = lines[:2]
    for ln in lines[2:-1]:
        x = np.array([float(ln[20 + 8 * d: 28 + 8 * d]) for d in range(3)]) + shift_nm
        x -= np.floor(x / box) * box
        new.append(ln[:20] + "".join(f"{v:8.3f}" for v in x) + ln[44:])
    Path(out).write_text("\n".join(new + [lines[-1]]) + "\n")

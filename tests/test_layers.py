"""The package's layers: no import (at module level or inside a function) runs up the floors.

Floors, lowest first. A module may import from its own floor or any floor below it. The
README's layout table describes the same order.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mdi_mlmm"

#: floor of each top-level module or sub-package of mdi_mlmm
FLOORS = {
    # 0: helpers everybody may use
    "errors": 0, "units": 0, "processes": 0, "files": 0, "progress": 0, "_version": 0,
    # 1: data and physics without MDI or processes of ours
    "topology": 1, "potentials": 1, "protocol": 1,
    # 2: the MDI engine (serves a potential)
    "engine": 2,
    # 3: preparation with external tools (AmberTools, stock gmx)
    "prep": 3,
    # 4: MM hosts (drivers) and what they write
    "hosts": 4,
    # 5: analysis of what the hosts wrote
    "analysis": 5,
    # 6: workflows (plans, windows in parallel, resume)
    "workflow": 6,
    # 7: the public Python API, then the command line over it
    "api": 7,
    "cli": 8, "__main__": 9,
}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module or not node.level else [f"{target}.{a.name}" for a in node.names]
            for t in names:
                if t.startswith("mdi_mlmm"):
                    yield mod, t
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mdi_mlmm"):
                    yield mod, a.name


def _floor(mod: str):
    parts = mod.split(".")
    if len(parts) < 2:
        return None  # the package itself (its __init__ may re-export the API lazily)
    return FLOORS.get(parts[1])


def test_every_module_has_a_floor():
    missing = sorted({_module(p) for p in PKG.rglob("*.py")
                      if len(_module(p).split(".")) > 1 and _floor(_module(p)) is None})
    assert not missing, f"add these to FLOORS in tests/test_layers.py: {missing}"


def test_no_import_runs_up_the_floors():
    up = set()
    for p in PKG.rglob("*.py"):
        for mod, target in _imports(p):
            a, b = _floor(mod), _floor(target)
            if a is None or b is None:
                continue
            if b > a:
                up.add((mod, target))
    assert not up, "imports that run up the floors:\n" + "\n".join(f"  {m} -> {t}" for m, t in sorted(up))

"""GROMACS mdp templates (``mdi_mlmm/data/gromacs_inputs``) and a tiny renderer.

Templates: ``em``, ``nvt``, ``npt``, ``nve``, ``lambda`` (one window of the
decoupling leg), ``gas`` and ``gas_em`` (solute alone in a large box). Times are ps,
lengths nm, temperatures K, pressures bar (GROMACS units).

The λ schedule is not in the templates: it is defined in :mod:`mdi_mlmm.protocol.schedule`
and rendered into ``coul-lambdas``/``vdw-lambdas`` (FreeSolv's 20 states unless a schedule
is given).

>>> text = render("lambda", init_lambda_state=3, nsteps=5000)           # FreeSolv's 20 states
>>> text = render("lambda", lambda_values([(0, 0), (1, 0), (1, 1)]), init_lambda_state=1)
>>> nvt_at_3 = render("nvt", fep_overrides(3))
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserInputError
from ..protocol.schedule import FREESOLV

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
#: keys of the lambda template that make up the free-energy block
_FEP_KEYS = (
    "free-energy", "init-lambda-state", "coul-lambdas", "vdw-lambdas", "couple-moltype", "couple-lambda0",
    "couple-lambda1", "couple-intramol", "sc-alpha", "sc-power", "sc-sigma", "sc-coul", "nstdhdl",
    "calc-lambda-neighbors", "dhdl-derivatives", "separate-dhdl-file",
)


#: keys the schedule is rendered into
_LAMBDA_KEYS = ("coul-lambdas", "vdw-lambdas")


def lambda_values(schedule: Sequence[Sequence[float]]) -> dict[str, str]:
    """``coul-lambdas`` and ``vdw-lambdas`` of ``schedule`` [(coul λ, vdw λ)], as mdp overrides."""
    return {"coul-lambdas": " ".join(f"{float(c):g}" for c, _ in schedule),
            "vdw-lambdas": " ".join(f"{float(v):g}" for _, v in schedule)}


def template_dir() -> Path:
    """Directory holding the ``*.mdp`` templates (works in a source checkout and when installed)."""
    return Path(str(resources.files("mdi_mlmm") / "data" / "gromacs_inputs"))


def templates() -> list[str]:
    """Names of the available templates (file names without ``.mdp``)."""
    return sorted(p.stem for p in template_dir().glob("*.mdp"))


def _key(k: str) -> str:
    return k.strip().lower().replace("_", "-")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return " ".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def template_text(name: str) -> str:
    """Raw text of template ``name``; :class:`UserInputError` if there is none."""
    path = template_dir() / f"{name}.mdp"
    if not path.is_file():
        raise UserInputError(f"no mdp template {name!r}; available: {', '.join(templates())}")
    return path.read_text()


def parse(text: str) -> dict[str, str]:
    """``key -> value`` of an mdp text (keys normalised to lower case with dashes, comments dropped)."""
    out = {}
    for line in text.splitlines():
        body = line.split(";", 1)[0]
        if "=" in body:
            k, v = body.split("=", 1)
            out[_key(k)] = v.strip()
    return out


def render(name: str, overrides: Mapping[str, Any] | None = None, **kw: Any) -> str:
    """Template ``name`` with values replaced by ``overrides``/``kw`` (``init_lambda_state=3`` and
    ``{"init-lambda-state": 3}`` are the same). Keys not in the template are appended.
    Python values: bool → yes/no, sequences → space separated. A template's λ schedule
    (``coul-lambdas``, ``vdw-lambdas``) is FreeSolv's unless given (:func:`lambda_values`).
    Raises :class:`UserInputError` if a ``@PLACEHOLDER@`` is left unset.
    """
    todo = {_key(k): _fmt(v) for k, v in {**(overrides or {}), **kw}.items()}
    defaults = lambda_values(FREESOLV)
    lines = []
    for line in template_text(name).splitlines():
        body, sep, comment = line.partition(";")
        if "=" in body:
            k, _ = body.split("=", 1)
            kk = _key(k)
            if kk not in todo and kk in defaults and _PLACEHOLDER.search(body):
                todo[kk] = defaults[kk]
            if kk in todo:
                old, new = body.split("=", 1)[1].strip(), todo.pop(kk)
                if sep and new != old and not _PLACEHOLDER.search(old):
                    comment = f" set by the caller (template: {old})"  # the template's reason no longer applies
                line = f"{k.rstrip():<24} = {new}" + (f"   ;{comment}" if sep else "")
        lines.append(line)
    if todo:
        lines.append("; --- set by the caller ---")
        lines += [f"{k:<24} = {v}" for k, v in todo.items()]
    text = "\n".join(lines) + "\n"
    body = "\n".join(ln.split(";", 1)[0] for ln in text.splitlines())
    missing = sorted(set(_PLACEHOLDER.findall(body)))
    if missing:
        need = ", ".join(m.lower() for m in missing)
        raise UserInputError(f"mdp template {name!r} needs a value for: {need}")
    return text


def write(name: str, path: Path, overrides: Mapping[str, Any] | None = None, **kw: Any) -> Path:
    """Render template ``name`` (see :func:`render`) into ``path``; returns ``path``."""
    path = Path(path)
    path.write_text(render(name, overrides, **kw))
    return path


def fep_overrides(state: int, moltype: str = "MOL", name: str = "lambda",
                  schedule: Sequence[Sequence[float]] = FREESOLV) -> dict[str, str]:
    """The free-energy block of template ``name`` at λ state ``state`` of ``schedule`` (default
    FreeSolv's), as overrides for any template (e.g. ``render("nvt", fep_overrides(4))``
    equilibrates window 4)."""
    n = len(schedule)
    if not 0 <= int(state) < n:
        raise UserInputError(f"lambda state {state} out of range 0..{n - 1}")
    p = parse(template_text(name))
    block = {k: p[k] for k in _FEP_KEYS if k in p and k not in _LAMBDA_KEYS}
    block.update(lambda_values(schedule))
    block["init-lambda-state"] = str(int(state))
    block["couple-moltype"] = moltype
    return block

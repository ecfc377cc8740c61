"""The one registry of models: what every part of the package asks about a ``--model`` spec.

Importing this module loads no ML library (no torch): preparation, planning and the command
line ask it questions before any engine runs. Each entry holds the model's name, the elements
it can describe, whether it accepts a net charge, whether it is ML at all (``mm`` is an entry
too: plain MM, no ML region physics), a one-line description and a lazy loader.

A spec is ``NAME`` or ``NAME:ARGUMENT``:

* ``ani2x`` (default), ``ani1x``, ``ani1ccx`` — NeuroChem files, see :mod:`.ani`;
* ``mace:/path/to/file.model`` — any MACE model, see :mod:`.mace`;
* ``zero`` — E = 0, F = 0 (benchmarks of coupling overhead);
* ``harmonic[:k]`` — a cheap analytic test potential (k in Hartree/Å², default 0.01);
* ``server:INFO.json`` — a model held by ``mdi-mlmm model-server`` (batched), see :mod:`.shared`;
* ``python:path/to/file.py:FACTORY`` or ``python:package.module:FACTORY`` — a model of your own:
  ``FACTORY`` returns a :class:`~mdi_mlmm.potentials.base.Potential`. It is imported where the
  model is loaded, so it works in engines and model servers that run in processes of their own;
* ``mm`` — no ML model: the solute stays classical (GAFF) everywhere;
* any name added with :func:`register_model` (in this process only).

Every error is a one-line :class:`~mdi_mlmm.errors.UserInputError` (or, for missing files and
failing factories, :class:`~mdi_mlmm.errors.ModelError`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import ChargedSystemError, ModelError, ModelFilesNotFound, UnsupportedElementError, UserInputError

#: the options a loader may receive (the engine's ``--model-dir``, ``--member``, ... options)
LOAD_OPTIONS = ("model_dir", "member", "dtype", "threads", "device")
#: the precisions a model runs in (the ``dtype`` load option, ``--dtype``)
DTYPES = ("float32", "float64")
#: the one default precision of every ML model, wherever one is loaded (engines, the model server, the
#: hydration windows, gas run and endpoint legs, ``load_potential``). float32 since issue 13: ANI-2x NVE
#: drift is the same as in float64 and ΔA(float64 → float32) is 9e-6 kcal/mol, and it is faster (10 ps NVE
#: of ethanol in water: 139 s against 187 s; bench/README.md, "Which precision by default");
#: ``dtype="float64"`` / ``--dtype float64`` for the old default
DEFAULT_DTYPE = "float32"


@dataclass(frozen=True)
class Model:
    """One registry entry.

    elements: symbols the model can describe; None when any element goes or the set is only
    known once the model is loaded (MACE, a model server, a ``python:`` factory).
    accepts_charge: whether the model takes a non-zero net charge; None when only the loaded
    model knows (the engine then checks it). ml: False for ``mm`` (nothing to load).
    loader: ``loader(argument, **options) -> Potential``, imported lazily; options are those of
    :data:`LOAD_OPTIONS`. argument: the placeholder of ``NAME:ARGUMENT`` specs (``PATH``), None
    for names without one; required: whether the argument must be given.
    """

    name: str
    elements: Optional[frozenset] = None
    accepts_charge: Optional[bool] = False
    ml: bool = True
    description: str = ""
    loader: Optional[Callable] = field(default=None, repr=False)
    argument: Optional[str] = None
    required: bool = False
    aliases: tuple = ()
    #: ``parse(spec, raw) -> argument``: checks and converts the text after ``NAME:``
    parse: Optional[Callable] = field(default=None, repr=False)
    #: ``check_files(spec, argument, model_dir)``: cheap checks that the model's files exist
    check_files: Optional[Callable] = field(default=None, repr=False)
    #: added with :func:`register_model`: known in this process only
    local: bool = False

    @property
    def usage(self) -> str:
        """How the model is written on the command line: ``ani2x``, ``mace:PATH``, ``harmonic[:k]``."""
        if self.argument is None:
            return self.name
        return f"{self.name}:{self.argument}" if self.required else f"{self.name}[:{self.argument}]"


@dataclass(frozen=True)
class ModelSpec:
    """A spec resolved against the registry: the entry and its parsed argument."""

    spec: str
    model: Model
    argument: object = None
    raw: str = ""   # the argument as written

    @property
    def name(self) -> str:
        """Canonical name: ``ani2x`` for ``ANI-2x``, ``mace:PATH`` for ``mace:PATH``."""
        return f"{self.model.name}:{self.raw}" if self.raw else self.model.name

    @property
    def ml(self) -> bool:
        return self.model.ml

    @property
    def elements(self) -> Optional[frozenset]:
        return self.model.elements

    @property
    def accepts_charge(self) -> Optional[bool]:
        return self.model.accepts_charge

    def check_files(self, model_dir=None) -> "ModelSpec":
        """Cheap checks that the model's files exist (ANI zoo, MACE file...); returns self."""
        if self.model.check_files is not None:
            self.model.check_files(self.spec, self.argument, model_dir)
        return self

    def check_other_process(self) -> "ModelSpec":
        """Raise unless an engine in a process of its own can load this model (not one added with
        :func:`register_model`, which only this process knows); returns self."""
        if self.model.local:
            raise UserInputError(f"model {self.name!r} was registered in this process only, but engines run in "
                                 f"processes of their own: give it as python:FILE.py:FACTORY or "
                                 f"python:MODULE:FACTORY")
        return self

    def check_solute(self, elements: Iterable[str], net_charge: int) -> str:
        """Raise if this model cannot describe a solute; return the canonical name.

        :class:`UnsupportedElementError` for elements outside the model's set,
        :class:`ChargedSystemError` for a non-zero net charge (e) with a model that cannot take one.
        """
        allowed = self.model.elements
        if allowed is not None:
            bad = sorted({e for e in elements if e not in allowed})
            if bad:
                raise UnsupportedElementError(
                    f"model {self.name} cannot describe element(s) {' '.join(bad)}; it supports only "
                    f"{' '.join(sorted(allowed))} (use --model mm or mace:PATH)")
        if net_charge != 0 and self.model.accepts_charge is False:
            raise ChargedSystemError(
                f"net charge {net_charge:+d} e but model {self.name} cannot take a charged ML region "
                f"(use --model mm or mace:PATH, or a neutral form of the molecule)")
        return self.name

    def load(self, **options):
        """Build the potential (imports torch etc. only now). options: see :data:`LOAD_OPTIONS`."""
        if not self.model.ml or self.model.loader is None:
            raise UserInputError(f"model {self.spec!r} has no ML potential to load "
                                 f"(it keeps the solute classical); choose {choices(ml_only=True)}")
        os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
        bad = set(options) - set(LOAD_OPTIONS)
        if bad:
            raise TypeError(f"unknown load option(s) {', '.join(sorted(bad))}")
        return self.model.loader(self.argument, **options)


_REGISTRY: dict[str, Model] = {}
_ALIASES: dict[str, str] = {}


def _add(model: Model, *, replace: bool = False) -> Model:
    key = model.name.lower()
    if not key or any(c in key for c in ": \t") or key != key.strip():
        raise UserInputError(f"model name {model.name!r} must be one word without ':'")
    if not replace and (key in _REGISTRY or key in _ALIASES):
        raise UserInputError(f"model {model.name!r} is already registered")
    _REGISTRY[key] = model
    for a in model.aliases:
        _ALIASES[a.lower()] = key
    return model


def choices(ml_only: bool = False) -> str:
    """The models as a user writes them: ``ani2x | ani1x | ... | mm``."""
    return " | ".join(m.usage for m in _REGISTRY.values() if m.ml or not ml_only)


def models() -> list[Model]:
    """Every registered model, in registration order."""
    return list(_REGISTRY.values())


def get(name: str) -> Model:
    """The entry called ``name`` (case-insensitive, aliases too); :class:`UserInputError` if none."""
    key = (name or "").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UserInputError(f"unknown model {name!r}; choose {choices()}")
    return _REGISTRY[key]


def resolve(spec: str) -> ModelSpec:
    """Parse ``spec`` against the registry without loading anything (no torch).

    A malformed or unknown spec raises :class:`UserInputError`, one line that lists the models.
    """
    s = (spec or "").strip()
    name, colon, raw = s.partition(":")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    model = _REGISTRY.get(key)
    raw = raw.strip()
    if model is None or (colon and model.argument is None):
        raise UserInputError(f"unknown model {spec!r}; choose {choices()}")
    if model.argument is None:
        return ModelSpec(s, model)
    if not raw:
        if model.required:
            what = "a path" if model.argument in ("PATH", "INFO.json") else model.argument
            raise UserInputError(f"malformed model {spec!r}: {model.name}: needs {what}; choose {choices()}")
        return ModelSpec(s, model, model.parse(spec, None) if model.parse else None)
    return ModelSpec(s, model, model.parse(spec, raw) if model.parse else raw, raw)


def is_ml(spec: Optional[str]) -> bool:
    """Whether ``spec`` asks for an ML region. Never raises: a spec the registry does not know
    counts as ML, so that the check which loads it reports it."""
    if spec is None:
        return False
    key = str(spec).strip().partition(":")[0].lower()
    key = _ALIASES.get(key, key)
    model = _REGISTRY.get(key)
    return True if model is None else model.ml


def check_model(spec: str, elements: Iterable[str], net_charge: int) -> str:
    """:meth:`ModelSpec.check_solute` of ``spec``: the canonical name, or a one-line error."""
    return resolve(spec).check_solute(list(elements), net_charge)


def check_dtype(dtype) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else a one-line :class:`~mdi_mlmm.errors.UserInputError`."""
    if dtype not in DTYPES:
        raise UserInputError(f"dtype must be {' or '.join(DTYPES)}, got {dtype!r}")
    return dtype


def load(spec: str, **options):
    """Build the potential of ``spec`` (see :data:`LOAD_OPTIONS`)."""
    return resolve(spec).load(**options)


def register_model(name: str, factory: Callable, *, elements: Optional[Iterable[str]], accepts_charge: bool = False,
                   description: str = "", replace: bool = False) -> Model:
    """Add a model of your own under ``name`` (this process only).

    factory: a callable returning a :class:`~mdi_mlmm.potentials.base.Potential`; it receives
    those of the load options (``dtype``, ``threads``, ``device``, ``model_dir``, ``member``) that
    it names (all of them if it takes ``**kwargs``). elements: the element symbols it describes
    (None: any). Engines started in processes of their own (``mdi-mlmm engine``, the hydration
    workflow, ``md``) do not see names registered here: give them ``python:FILE.py:FACTORY`` or
    ``python:package.module:FACTORY`` instead, which imports the factory where the model is loaded.
    """
    if not callable(factory):
        raise UserInputError(f"register_model({name!r}): factory must be callable, got {type(factory).__name__}")
    elems = None
    if elements is not None:
        from .base import to_symbols

        elems = frozenset(to_symbols(list(elements)))
    return _add(Model(name=str(name).strip().lower(), elements=elems, accepts_charge=bool(accepts_charge), ml=True,
                      description=description, loader=lambda _arg, **opts: _call_factory(factory, name, opts),
                      local=True),
                replace=replace)


def unregister_model(name: str):
    """Remove a model added with :func:`register_model` (built-in models stay)."""
    key = (name or "").strip().lower()
    if key in _BUILTIN:
        raise UserInputError(f"model {name!r} is built in and cannot be removed")
    _REGISTRY.pop(key, None)
    for a in [a for a, k in _ALIASES.items() if k == key]:
        del _ALIASES[a]


# --- loaders of the built-in models (each imports its library only when called) -----------------

def _ani(name):
    def load(_arg, **opts):
        from .ani import ANIPotential

        return ANIPotential(name, **opts)

    def check_files(spec, _arg, model_dir):
        from .ani import find_info_file

        find_info_file(name, model_dir)
    return dict(loader=load, check_files=check_files)


def _load_mace(path, *, dtype=DEFAULT_DTYPE, threads=None, device="cpu", **_):
    from .mace import MACEPotential

    return MACEPotential(path, dtype=dtype, threads=threads, device=device)


def _load_zero(_arg, **_):
    from .simple import ZeroPotential

    return ZeroPotential()


def _parse_k(spec, raw):
    if raw is None:
        return 0.01
    try:
        k = float(raw)
    except ValueError:
        k = float("nan")
    if k > 0 and k != float("inf"):
        return k
    raise UserInputError(f"malformed model {spec!r}: the harmonic k must be a number > 0; choose {choices()}")


def _load_harmonic(k, **_):
    from .simple import HarmonicPotential

    return HarmonicPotential(k)


def _load_server(info, **_):
    from .shared import SharedModelClient

    return SharedModelClient(info)


def _file_check(what):
    def check(spec, path, model_dir):
        if not Path(path).expanduser().is_file():
            raise ModelFilesNotFound(f"{what} {path} not found (model {spec!r})")
    return check


def _parse_python(spec, raw):
    target, sep, factory = raw.rpartition(":")
    if not sep or not target.strip() or not factory.strip().isidentifier():
        raise UserInputError(f"malformed model {spec!r}: write python:FILE.py:FACTORY or python:MODULE:FACTORY")
    return target.strip(), factory.strip()


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def _files_python(spec, arg, model_dir):
    target, _ = arg
    if _is_file_target(target) and not Path(target).expanduser().is_file():
        raise ModelFilesNotFound(f"python file {target} not found (model {spec!r})")


def _import_target(target: str):
    """The module named ``target`` (``package.module``) or loaded from the file ``target``."""
    try:
        if _is_file_target(target):
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise ModelFilesNotFound(f"python file {target} not found (model python:{target}:...)")
            name = "mdi_mlmm_user_model_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            if name in sys.modules:
                return sys.modules[name]
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        return importlib.import_module(target)
    except ModelError:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise ModelError(f"importing {target} failed: {type(exc).__name__}: {msg}") from exc


def _call_factory(factory, label, opts):
    from .base import Potential

    try:
        params = inspect.signature(factory).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            kwargs = dict(opts)
        else:
            names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            kwargs = {k: v for k, v in opts.items() if k in names}
    except (TypeError, ValueError):   # a builtin without a signature
        kwargs = {}
    try:
        pot = factory(**kwargs)
    except (ModelError, UserInputError):
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise ModelError(f"model {label}: the factory failed: {type(exc).__name__}: {msg}") from exc
    if not isinstance(pot, Potential):
        raise ModelError(f"model {label}: the factory returned {type(pot).__name__}, "
                         f"not a mdi_mlmm.potentials.Potential")
    return pot


def _load_python(arg, **opts):
    target, name = arg
    module = _import_target(target)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ModelError(f"{target} has no callable {name!r} (model python:{target}:{name})")
    return _call_factory(factory, f"python:{target}:{name}", opts)


_ANI_DESC = "ANI ensemble of 8 networks from the NeuroChem files of the ANI model zoo"
for _m in (
    Model("ani2x", frozenset("H C N O F S Cl".split()), False, description=f"ANI-2x: {_ANI_DESC}",
          aliases=("ani-2x",), **_ani("ani2x")),
    Model("ani1x", frozenset("H C N O".split()), False, description=f"ANI-1x: {_ANI_DESC}",
          aliases=("ani-1x",), **_ani("ani1x")),
    Model("ani1ccx", frozenset("H C N O".split()), False, description=f"ANI-1ccx: {_ANI_DESC}",
          aliases=("ani-1ccx",), **_ani("ani1ccx")),
    Model("mace", None, None, description="any MACE model file (elements and charge from the model)",
          loader=_load_mace, argument="PATH", required=True, check_files=_file_check("MACE model file")),
    Model("zero", None, True, description="E = 0, F = 0: measures the coupling overhead alone", loader=_load_zero),
    Model("harmonic", None, True, description="E = k/2 sum |x - mean(x)|^2: a cheap analytic test potential",
          loader=_load_harmonic, argument="k", parse=_parse_k),
    Model("server", None, None, description="a model held by a running mdi-mlmm model-server (batched)",
          loader=_load_server, argument="INFO.json", required=True,
          check_files=_file_check("model server info file")),
    Model("python", None, None, description="a Potential returned by FACTORY in a Python file or module",
          loader=_load_python, argument="FILE.py:FACTORY", required=True, parse=_parse_python,
          check_files=_files_python),
    Model("mm", None, True, ml=False, description="no ML model: the solute stays classical (GAFF)"),
):
    _add(_m)
_BUILTIN = frozenset(_REGISTRY)

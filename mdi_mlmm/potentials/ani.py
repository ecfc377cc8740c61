"""ANI-2x, ANI-1x and ANI-1ccx from the original NeuroChem parameter files.

torchani's legacy NeuroChem reader parses the files; we point it at a local
copy of the ANI model zoo instead of letting it download anything. The default
backend (:mod:`.ani_fast`) caches the parsed weights and evaluates them with its own
molecule-specialised kernel; ``backend="torchani"`` keeps torchani's modules (the reference).

Where the files are looked for (first hit wins):

1. the ``model_dir`` argument (CLI: ``--model-dir``);
2. the environment variable ``MDI_MLMM_ANI_DIR`` (set to a path that is not a directory, it is an
   error rather than skipped);
3. ``shared/models/ani-model-zoo`` and ``../shared/models/ani-model-zoo`` relative to the
   current directory and to the mdi_mlmm source checkout;
4. ``~/.local/share/mdi_mlmm/ani-model-zoo``;
5. torchani's own NeuroChem directory (``$TORCHANI_DATA_DIR/Neurochem`` or
   ``~/.local/share/Torchani/Neurochem``).

A directory qualifies if it contains ``ani-2x_8x.info`` (or the requested model's
``.info`` file) together with the folder that file names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from ..errors import ModelError, ModelFilesNotFound
from .base import ATOMIC_NUMBER, Potential, Result, torch_device
from .registry import DEFAULT_DTYPE, DTYPES

ENV_VAR = "MDI_MLMM_ANI_DIR"

#: model name → (info file, elements)
MODELS = {
    "ani2x": ("ani-2x_8x.info", ("H", "C", "N", "O", "F", "S", "Cl")),
    "ani1x": ("ani-1x_8x.info", ("H", "C", "N", "O")),
    "ani1ccx": ("ani-1ccx_8x.info", ("H", "C", "N", "O")),
}


def candidate_dirs(model_dir: Optional[str | os.PathLike] = None) -> list[Path]:
    """Directories searched for the ANI model zoo, in order."""
    dirs: list[Path] = []
    if model_dir:
        return [Path(model_dir).expanduser()]
    if os.environ.get(ENV_VAR):
        env_dir = Path(os.environ[ENV_VAR]).expanduser()
        if not env_dir.is_dir():  # set but wrong: say so rather than quietly search elsewhere
            raise ModelFilesNotFound(f"{ENV_VAR}={os.environ[ENV_VAR]}: no such directory "
                                     f"(point it at a copy of the ANI model zoo, or unset it)")
        dirs.append(env_dir)
    src_root = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), src_root):
        dirs += [base / "shared/models/ani-model-zoo", base.parent / "shared/models/ani-model-zoo"]
    dirs.append(Path.home() / ".local/share/mdi_mlmm/ani-model-zoo")
    tdata = os.environ.get("TORCHANI_DATA_DIR")
    dirs.append((Path(tdata) if tdata else Path.home() / ".local/share/Torchani") / "Neurochem")
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_info_file(model: str, model_dir=None) -> Path:
    """Path of the ``.info`` file of ``model``; :class:`ModelFilesNotFound` names every place tried."""
    info_name = MODELS[model][0]
    tried = candidate_dirs(model_dir)
    for d in tried:
        info = d / info_name
        if info.is_file():
            prefix = info.read_text().split()[0].split("/")[0]
            if (d / prefix).is_dir():
                return info
    where = "; ".join(str(d) for d in tried)
    raise ModelFilesNotFound(
        f"{model} parameter files ({info_name}) not found; looked in: {where}. "
        f"Pass --model-dir or set {ENV_VAR} to a copy of the ANI model zoo"
    )


class NeurochemFiles(NamedTuple):
    """Where a NeuroChem model's parts lie (the fields of torchani's ``NeurochemInfo``)."""

    sae: Path
    const: Path
    ensemble_prefix: Path
    ensemble_size: int


def _read_info(info_file: Path) -> NeurochemFiles:
    """Parse a NeuroChem ``.info`` file, paths relative to its folder (no torchani import)."""
    lines = [x.strip() for x in info_file.read_text().splitlines() if x.strip()][:4]
    if len(lines) < 4:
        raise ModelError(f"{info_file}: expected 4 lines (consts, sae, prefix, size)")
    const, sae, prefix, size = lines
    root = info_file.parent
    return NeurochemFiles(
        sae=root.joinpath(*sae.split("/")),
        const=root.joinpath(*const.split("/")),
        ensemble_prefix=root.joinpath(*prefix.split("/")),
        ensemble_size=int(size),
    )


def _torchani_info(files: NeurochemFiles):
    from torchani.neurochem import NeurochemInfo

    return NeurochemInfo(**files._asdict())


def fused_ensemble(ensemble):
    """Replace torchani's member-by-member ensemble by one that evaluates all members at once.

    Same numbers, fewer, larger matrix products: per element, the first layers of all
    members are one (in → M·h1) matmul and the later layers one batched matmul
    (``baddbmm``) over the M members. The mean over members is what the ensemble returns.
    """
    import torch
    from torch import nn

    class FusedEnsemble(nn.Module):
        def __init__(self, ens):
            super().__init__()
            members = [ens.members[i] for i in getattr(ens, "active_members_idxs", range(len(ens.members)))]
            self.num_species = members[0].num_species
            self.register_buffer("atomic_numbers", members[0].atomic_numbers.clone(), persistent=False)
            self.m = len(members)
            self.params = nn.ParameterList()
            self.shapes = []
            for key in members[0].atomics.keys():
                nets = [mb.atomics[key] for mb in members]
                layers = [list(n.layers) + [n.final_layer] for n in nets]
                first = torch.cat([ly[0].weight.t() for ly in layers], dim=1)          # (in, M*h1)
                b_first = torch.cat([ly[0].bias for ly in layers])                     # (M*h1,)
                rest = []
                for k in range(1, len(layers[0])):
                    w = torch.stack([ly[k].weight.t() for ly in layers])               # (M, in, out)
                    b = torch.stack([ly[k].bias for ly in layers]).unsqueeze(1)         # (M, 1, out)
                    rest += [w, b]
                start = len(self.params)
                for t in [first, b_first, *rest]:
                    self.params.append(nn.Parameter(t.detach().clone(), requires_grad=False))
                self.shapes.append((start, len(layers[0]), layers[0][0].out_features))

        def forward(self, elem_idxs, aevs=None, atomic: bool = False, ensemble_values: bool = False):
            flat = elem_idxs.flatten()
            aev = aevs.flatten(0, 1)
            out = aev.new_zeros(flat.shape[0])
            for i, (start, nlayers, h1) in enumerate(self.shapes):
                sel = (flat == i).nonzero().view(-1)
                n = sel.shape[0]
                if n == 0:
                    continue
                x = aev.index_select(0, sel)
                h = torch.nn.functional.celu(torch.addmm(self.params[start + 1], x, self.params[start]), alpha=0.1)
                h = h.view(n, self.m, h1).transpose(0, 1)                                 # (M, n, h1)
                for k in range(1, nlayers):
                    w, b = self.params[start + 2 * k], self.params[start + 2 * k + 1]
                    h = torch.baddbmm(b, h, w)
                    if k < nlayers - 1:
                        h = torch.nn.functional.celu(h, alpha=0.1)
                out.index_add_(0, sel, h.squeeze(-1).mean(0))
            sc = out.view(elem_idxs.shape)
            return sc if atomic else sc.sum(dim=1)

    return FusedEnsemble(ensemble)


class ANIPotential(Potential):
    """An ANI model built from NeuroChem files.

    model: "ani2x" | "ani1x" | "ani1ccx"; member: None for the full ensemble mean
    (8 members) or an index for one member; dtype: "float32" (default, :data:`.registry.DEFAULT_DTYPE`)
    or "float64";
    device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto`` (inputs and outputs stay NumPy on the host);
    backend: ``fast`` (default: :mod:`.ani_fast`, weights cached, specialised to the molecule, TorchScript,
    gradient written out) or ``torchani`` (torchani's own modules; the reference the fast path is
    tested against); fused: with the torchani backend, evaluate the ensemble members together
    (:func:`fused_ensemble`; same numbers, faster).
    """

    BACKENDS = ("fast", "torchani")

    def __init__(self, model: str = "ani2x", model_dir=None, member: Optional[int] = None,
                 dtype: str = DEFAULT_DTYPE, threads: Optional[int] = None, fused: bool = True, device: str = "cpu",
                 backend: str = "fast"):
        import torch

        model = model.lower().replace("-", "")
        if model not in MODELS:
            raise ModelError(f"unknown ANI model {model!r}; choose from {', '.join(MODELS)}")
        if backend not in self.BACKENDS:
            raise ModelError(f"ANI backend must be one of {', '.join(self.BACKENDS)}, got {backend!r}")
        if dtype not in DTYPES:
            raise ModelError(f"dtype must be {' or '.join(DTYPES)}, got {dtype}")
        self.name = model + ("" if member is None else f"[member {member}]")
        self.backend = backend
        self.info_file = find_info_file(model, model_dir)
        info = _read_info(self.info_file)
        if member is not None and not 0 <= member < info.ensemble_size:
            raise ModelError(f"member must be in 0..{info.ensemble_size - 1}, got {member}")
        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.device = torch_device(device)
        if threads:
            torch.set_num_threads(int(threads))
        self.member = member
        self.ensemble_size = info.ensemble_size if member is None else 1
        if backend == "fast":
            from .ani_fast import load_weights

            try:
                self.weights = load_weights(info, self.info_file)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise ModelError(f"could not read {model} files under {self.info_file.parent}: {exc}") from exc
            self.supported_elements = tuple(self.weights["symbols"])
            self._fast: dict = {}
            return
        from torchani.arch import ANI
        from torchani.neurochem import modules_from_info

        try:
            aev, nets, sae, symbols = modules_from_info(_torchani_info(info), member)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"could not read {model} files under {self.info_file.parent}: {exc}") from exc
        self.supported_elements = tuple(symbols)
        self.model = ANI(symbols, aev, nets, sae, periodic_table_index=True).to(self.dtype).eval()
        if fused and member is None and hasattr(nets, "members"):
            self.model.potentials["nnp"].neural_networks = fused_ensemble(self.model.potentials["nnp"].neural_networks)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model = self.model.to(self.device)
        self._species_cache: dict[tuple, object] = {}

    def _species(self, symbols: list[str], batch: int):
        key = (tuple(symbols), batch)
        sp = self._species_cache.get(key)
        if sp is None:
            z = [ATOMIC_NUMBER[s] for s in symbols]
            sp = self.torch.tensor([z] * batch, dtype=self.torch.long, device=self.device)
            self._species_cache = {key: sp}
        return sp

    def _evaluate(self, symbols, positions, cells) -> Result:
        # The ML region is evaluated as an isolated molecule (mechanical embedding):
        # callers make it whole first; cells are not used by the model.
        if self.backend == "fast":
            key = tuple(symbols)
            fast = self._fast.get(key)
            if fast is None:  # one kernel per molecule; a model server may serve a few
                from .ani_fast import FastANI

                if len(self._fast) >= 4:
                    self._fast.pop(next(iter(self._fast)))
                fast = self._fast[key] = FastANI(self.weights, symbols, self.member, self.dtype, self.device)
            energy, forces = fast(positions)
            return Result(energy=energy, forces=forces)
        torch = self.torch
        x = torch.tensor(positions, dtype=self.dtype, device=self.device).requires_grad_(True)
        species = self._species(symbols, positions.shape[0])
        energies = self.model((species, x)).energies
        (grad,) = torch.autograd.grad(energies.sum(), x)
        return Result(energy=energies.detach().to("cpu", torch.float64).numpy().copy(),
                      forces=(-grad).to("cpu", torch.float64).numpy().copy())

    def describe(self) -> str:
        ens = f"{self.ensemble_size}-member ensemble" if self.ensemble_size > 1 else "single member"
        return (f"{self.name} ({ens}, {str(self.dtype).replace('torch.', '')}, {self.device}, {self.backend}) "
                f"from {self.info_file}")

"""A fast ANI evaluator for one fixed molecule (the ML region of an MD run).

Same model and numbers as torchani's (see docs/ani_speed.md for the measured differences);
faster for small molecules on a CPU because it does less:

* **Only the present elements' AEV columns.** An AEV slot for an element (radial) or an element
  pair (angular) that the molecule does not contain is exactly zero at every geometry, so its
  rows of every first-layer weight matrix never contribute. For ethanol (H, C, O) 240 of ANI-2x's
  1008 AEV columns remain: the first layer, most of the work, shrinks about 4×, and so do the
  weights that must stream through the cache on every call.
* **Fixed index lists.** The radial AEV takes every atom pair (masked by the cutoff, N² is nothing
  for an ML region), the angular AEV a triple list built from the pairs within the angular cutoff
  plus a skin; before every call one NumPy test checks that no pair inside the cutoff is missing
  from the list and rebuilds it if one is (exact, like a Verlet list). No neighbour search, no
  data-dependent shapes in the model.
* **One fused ensemble.** Per element, the first layers of all M members are one matrix product
  and the later layers one batched product (``baddbmm``) over members.
* **TorchScript.** Forward and the gradient (``torch.autograd.grad``) are one scripted function.
* **Self energies in float64.** The constant sum of atomic self energies is added in float64
  outside the network, so float32 loses nothing on a −155 Ha total (torchani's float32 path sums
  it in float32: ~1e-5 Ha of rounding).

The NeuroChem files are parsed once by torchani and cached as a torch file under
``$MDI_MLMM_CACHE/ani`` (default ``~/.cache/mdi_mlmm/ani``), keyed on :data:`CACHE_FORMAT` and a hash
of the files' content, so later start-ups import neither torchani nor its parser. The content hash
is reused while no model file's size, times or inode changed (the check git's index makes); the
cache file carries a CRC-32 of what it stores and is refused, with a warning naming it, and
rebuilt if it does not match.

Units: Å in, Hartree and Hartree/Å out.
"""
import hashlib
import json
import logging
import math
import os
import zlib
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from ..files import atomic_open, write_json

log = logging.getLogger("mdi_mlmm.ani")

#: cache format, part of the cache file's name; bump when the stored dict, or how it is computed, changes
#: (2: the key and a CRC-32 are stored and checked)
CACHE_FORMAT = 2
#: angular-list skin (Å): pairs within Rca + SKIN enter the triple list
SKIN = 1.0
#: file types torchani's NeuroChem reader uses (hashed for the cache key)
_MODEL_SUFFIXES = (".nnf", ".wparam", ".bparam", ".dat", ".params", ".info")


def cache_root() -> Path:
    base = os.environ.get("MDI_MLMM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mdi_mlmm")
    return Path(base) / "ani"


def model_files(info_file: Path, member_dirs: List[Path]) -> List[Path]:
    """The .info file and every model file of the members, in a fixed order."""
    files = [info_file]
    for d in member_dirs:
        files += sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in _MODEL_SUFFIXES)
    return files


def files_digest(info_file: Path, member_dirs: List[Path]) -> str:
    """blake2b over the names and bytes of the .info file and every model file it points to."""
    h = hashlib.blake2b(digest_size=16)
    for p in model_files(info_file, member_dirs):
        h.update(str(p.relative_to(info_file.parent)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _stat_signature(info_file: Path, files: List[Path]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in files:   # names relative to the .info file's folder: the same whichever path leads there
        st = p.stat()
        h.update(f"{p.relative_to(info_file.parent)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0"
                 f"{st.st_ino}\0{st.st_dev}\n".encode())
    return h.hexdigest()


def source_key(info_file: Path, member_dirs: List[Path]) -> str:
    """:func:`files_digest` of the model files, reused from the last start while none of them has changed.

    Hashing the ~63 MB of ANI-2x files costs ~0.1 s CPU per start; a stat of each (size, mtime, ctime,
    inode: any write or replacement changes the ctime) costs ~0.01 s. The digest is kept, with the
    signature it was computed under, in a small JSON file next to the cache (per .info path).
    """
    info_file = Path(info_file)
    files = model_files(info_file, member_dirs)
    sig = _stat_signature(info_file, files)   # before hashing: a file changed meanwhile changes the next signature
    where = str(info_file.resolve())
    tag = hashlib.blake2b(where.encode(), digest_size=8).hexdigest()
    index = cache_root() / f"{info_file.stem}-{tag}.files.json"
    try:
        rec = json.loads(index.read_text())
        if rec.get("stat") == sig and isinstance(rec.get("key"), str):
            return rec["key"]
    except (OSError, ValueError, AttributeError):
        pass
    key = files_digest(info_file, member_dirs)
    try:
        write_json(index, {"info": where, "stat": sig, "key": key})
    except OSError:
        pass   # a read-only cache only costs the hash next time
    return key


def _checksum(obj, crc: int = 0) -> int:
    """CRC-32 over every tensor's dtype, shape and bytes and every other value's repr, in a fixed order:
    what the cache file must give back exactly (torch.load does not notice changed tensor bytes)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        crc = zlib.crc32(f"T{t.dtype}{tuple(t.shape)}".encode(), crc)
        return zlib.crc32(t.view(-1).view(torch.uint8).numpy(), crc) if t.numel() else crc
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            crc = _checksum(obj[k], zlib.crc32(f"K{k!r}".encode(), crc))
        return crc
    if isinstance(obj, (list, tuple)):
        crc = zlib.crc32(f"L{len(obj)}".encode(), crc)
        for v in obj:
            crc = _checksum(v, crc)
        return crc
    return zlib.crc32(f"V{obj!r}".encode(), crc)


def _read_cache(path: Path, key: str) -> Optional[dict]:
    """The cached weights at ``path``, or None (with a warning naming the file) if they are not whole."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key:
            problem = "it is not this model's cache (format or key differ)"
        elif data.get("checksum") != _checksum({k: v for k, v in data.items() if k != "checksum"}):
            problem = "its checksum does not match its contents"
        else:
            return data
    except Exception as exc:  # a damaged or foreign file
        problem = f"it cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    log.warning("ANI weight cache %s is damaged: %s; not used: the model files are parsed again and the "
                "cache rewritten", path, problem)
    return None


def _extract(aev, nets, sae, symbols) -> dict:
    """Plain tensors from torchani's modules (the cached form)."""

    rad, ang = aev.radial, aev.angular
    for term in (rad, ang):
        if type(term.cutoff_fn).__name__ != "CutoffCosine":
            raise ValueError(f"unsupported cutoff function {type(term.cutoff_fn).__name__}")
    members = list(nets.members) if hasattr(nets, "members") else [nets]
    layers: Dict[str, List[List[torch.Tensor]]] = {}
    for s in symbols:
        per_member = []
        for m in members:
            net = m.atomics[s]
            if type(net.activation).__name__ != "TightCELU":
                raise ValueError(f"unsupported activation {type(net.activation).__name__}")
            per_member.append(list(net.layers) + [net.final_layer])
        dims = {tuple(ly.weight.shape for ly in pm) for pm in per_member}
        if len(dims) != 1:
            raise ValueError(f"ensemble members of {s} differ in shape")
        stacked = []
        for k in range(len(per_member[0])):
            stacked.append(torch.stack([pm[k].weight.detach().float() for pm in per_member]))   # (M, out, in)
            stacked.append(torch.stack([pm[k].bias.detach().float() for pm in per_member]))     # (M, out)
        layers[s] = stacked
    return {
        "format": CACHE_FORMAT,
        "symbols": list(symbols),
        "radial": {"cutoff": float(rad.cutoff), "eta": float(rad.eta.item()),
                   "shifts": rad.shifts.detach().double().clone()},
        "angular": {"cutoff": float(ang.cutoff), "eta": float(ang.eta.item()), "zeta": float(ang.zeta.item()),
                    "shifts": ang.shifts.detach().double().clone(), "sections": ang.sections.detach().double().clone()},
        # as torchani holds them (a float32 buffer), widened: the float64 reference adds exactly these
        "self_energies": sae.self_energies.detach().double().clone(),
        "members": len(members),
        "layers": layers,
    }


def cache_path(info_file: Path, key: str) -> Path:
    """Where the parsed weights of ``info_file`` with source key ``key`` are cached."""
    return cache_root() / f"{Path(info_file).stem}-v{CACHE_FORMAT}-{key}.pt"


def load_weights(info, info_file: Path, use_cache: bool = True) -> dict:
    """The model's tensors: from the cache when its key matches and it is whole, else parsed by torchani
    (and cached, written atomically: concurrent engines never read half a file).

    info: torchani NeurochemInfo (ensemble_prefix, ensemble_size, const, sae).
    """

    prefix = Path(info.ensemble_prefix)
    member_dirs = [prefix.parent / f"{prefix.name}{i}" for i in range(info.ensemble_size)]
    key = source_key(info_file, member_dirs) if use_cache else files_digest(info_file, member_dirs)
    path = cache_path(info_file, key)
    if use_cache and path.is_file():
        data = _read_cache(path, key)
        if data is not None:
            return data
    from torchani.neurochem import modules_from_info

    aev, nets, sae, symbols = modules_from_info(info, None)
    data = _extract(aev, nets, sae, symbols)
    data["key"] = key
    data["checksum"] = _checksum(data)
    if use_cache:
        try:
            with atomic_open(path, "wb") as fh:
                torch.save(data, fh)
        except OSError:
            pass  # a read-only home only costs the parse next time
    return data


# --------------------------------------------------------------------------- the scripted kernel

class ANIKernel(torch.nn.Module):
    """E (B,) without self energies and dE/dx (B, N, 3) for one molecule's species.

    All index tensors are per call arguments (they depend on the batch size and the triple list).
    """

    weights: List[Tensor]
    layout: List[List[int]]

    def __init__(self, consts: Dict[str, float], rad_shifts: Tensor, ang_shifts: Tensor,
                 ang_sections: Tensor, weights: List[Tensor], layout: List[List[int]], n_members: int):
        super().__init__()
        self.rcr = consts["rcr"]
        self.eta_r = consts["eta_r"]
        self.rca = consts["rca"]
        self.eta_a = consts["eta_a"]
        self.zeta = consts["zeta"]
        self.register_buffer("rad_shifts", rad_shifts)
        self.register_buffer("ang_shifts", ang_shifts)
        self.register_buffer("cos_sec", torch.cos(ang_sections))
        self.register_buffer("sin_sec", torch.sin(ang_sections))
        self.weights = weights
        self.layout = layout           # per present element: [first weight index, number of layers, h1]
        self.m = n_members
        self.nr = int(rad_shifts.shape[0])
        self.na = int(ang_shifts.shape[0]) * int(ang_sections.shape[0])

    def energy(self, x: Tensor, n_species: int, n_pairs_sp: int,
               pi: Tensor, pj: Tensor, ri: Tensor, rj: Tensor,
               tc: Tensor, tj: Tensor, tk: Tensor, ta: Tensor,
               elem_atoms: List[Tensor], elem_frames: List[Tensor]) -> Tensor:
        b = x.shape[0]
        n = x.shape[1]
        flat = x.reshape(b * n, 3)
        # radial: every pair, masked by the cutoff
        d = flat.index_select(0, pj) - flat.index_select(0, pi)
        r = torch.linalg.vector_norm(d, dim=1)
        fc = torch.where(r < self.rcr, 0.5 * torch.cos(r * (math.pi / self.rcr)) + 0.5, torch.zeros_like(r))
        terms = 0.25 * torch.exp(-self.eta_r * (r.unsqueeze(1) - self.rad_shifts) ** 2) * fc.unsqueeze(1)
        radial = x.new_zeros(b * n * n_species, self.nr)
        radial.index_add_(0, ri, terms)
        radial.index_add_(0, rj, terms)
        # angular: the triple list; cos(acos(0.95 c) - z) written without acos
        v1 = flat.index_select(0, tj) - flat.index_select(0, tc)
        v2 = flat.index_select(0, tk) - flat.index_select(0, tc)
        d1 = torch.linalg.vector_norm(v1, dim=1)
        d2 = torch.linalg.vector_norm(v2, dim=1)
        c = 0.95 * (v1 * v2).sum(1) / torch.clamp(d1 * d2, min=1e-10)
        s = torch.sqrt(1.0 - c * c)
        ang = 2.0 * ((1.0 + c.unsqueeze(1) * self.cos_sec + s.unsqueeze(1) * self.sin_sec) * 0.5) ** self.zeta
        rad = torch.exp(-self.eta_a * (((d1 + d2) * 0.5).unsqueeze(1) - self.ang_shifts) ** 2)
        f1 = torch.where(d1 < self.rca, 0.5 * torch.cos(d1 * (math.pi / self.rca)) + 0.5, torch.zeros_like(d1))
        f2 = torch.where(d2 < self.rca, 0.5 * torch.cos(d2 * (math.pi / self.rca)) + 0.5, torch.zeros_like(d2))
        aterms = (rad.unsqueeze(2) * ang.unsqueeze(1)).reshape(-1, self.na) * (f1 * f2).unsqueeze(1)
        angular = x.new_zeros(b * n * n_pairs_sp, self.na)
        angular.index_add_(0, ta, aterms)
        aev = torch.cat([radial.view(b * n, n_species * self.nr), angular.view(b * n, n_pairs_sp * self.na)], 1)
        # the fused ensemble, element by element
        energies = torch.zeros(b, dtype=torch.float64, device=x.device)
        for e, spec in enumerate(self.layout):
            start, nlayers, h1 = spec[0], spec[1], spec[2]
            atoms = elem_atoms[e]
            na = atoms.shape[0]
            h = torch.addmm(self.weights[start + 1], aev.index_select(0, atoms), self.weights[start])
            h = torch.nn.functional.celu(h, 0.1).view(na, self.m, h1).transpose(0, 1)
            for k in range(1, nlayers):
                h = torch.baddbmm(self.weights[start + 2 * k + 1], h, self.weights[start + 2 * k])
                if k < nlayers - 1:
                    h = torch.nn.functional.celu(h, 0.1)
            atomic = h.sum(0).view(na) / self.m
            energies = energies.index_add(0, elem_frames[e], atomic.to(torch.float64))
        return energies

    @torch.jit.export
    def autograd(self, x: Tensor, n_species: int, n_pairs_sp: int,
                 pi: Tensor, pj: Tensor, ri: Tensor, rj: Tensor,
                 tc: Tensor, tj: Tensor, tk: Tensor, ta: Tensor,
                 elem_atoms: List[Tensor], elem_frames: List[Tensor]):
        """(E, dE/dx) through torch.autograd (the cross-check of :meth:`forward`)."""
        x = x.detach().requires_grad_(True)
        e = self.energy(x, n_species, n_pairs_sp, pi, pj, ri, rj, tc, tj, tk, ta, elem_atoms, elem_frames)
        g = torch.autograd.grad([e.sum()], [x])[0]
        assert g is not None
        return e.detach(), g

    def forward(self, x: Tensor, n_species: int, n_pairs_sp: int,
                pi: Tensor, pj: Tensor, ri: Tensor, rj: Tensor,
                tc: Tensor, tj: Tensor, tk: Tensor, ta: Tensor,
                elem_atoms: List[Tensor], elem_frames: List[Tensor], scatter: Tensor):
        """(E (B,) float64 without self energies, dE/dx (B, N, 3)), the gradient written out by hand.

        The same function as :meth:`energy`; no autograd graph, so no per-op bookkeeping.
        ``scatter`` is ``cat([pj, pi, tj, tk, tc])``: where the per-pair and per-triple
        gradients go, in one ``index_add_``.
        """
        b = x.shape[0]
        n = x.shape[1]
        flat = x.reshape(b * n, 3)
        S, P, nr, na = n_species, n_pairs_sp, self.nr, self.na
        nsh = int(self.ang_shifts.shape[0])
        nz = int(self.cos_sec.shape[0])
        # ---- radial AEV and its derivative by r
        d = flat.index_select(0, pj) - flat.index_select(0, pi)
        r = torch.linalg.vector_norm(d, dim=1)
        inr = r < self.rcr
        arg = r * (math.pi / self.rcr)
        zero = torch.zeros_like(r)
        fc = torch.where(inr, 0.5 * torch.cos(arg) + 0.5, zero).unsqueeze(1)
        dfc = torch.where(inr, (-0.5 * math.pi / self.rcr) * torch.sin(arg), zero).unsqueeze(1)
        dr = r.unsqueeze(1) - self.rad_shifts
        ex = 0.25 * torch.exp(-self.eta_r * dr * dr)
        terms = ex * fc
        dterms = ex * (dfc - (2.0 * self.eta_r) * dr * fc)
        radial = x.new_zeros(b * n * S, nr)
        radial.index_add_(0, ri, terms)
        radial.index_add_(0, rj, terms)
        # ---- angular AEV and its derivatives by cos(theta), d1, d2
        v1 = flat.index_select(0, tj) - flat.index_select(0, tc)
        v2 = flat.index_select(0, tk) - flat.index_select(0, tc)
        d1 = torch.linalg.vector_norm(v1, dim=1)
        d2 = torch.linalg.vector_norm(v2, dim=1)
        inv = 1.0 / torch.clamp(d1 * d2, min=1e-10)
        cos_t = (v1 * v2).sum(1) * inv
        c = (0.95 * cos_t).unsqueeze(1)
        sn = torch.sqrt(1.0 - c * c)
        base = (1.0 + c * self.cos_sec + sn * self.sin_sec) * 0.5                 # (T, nz)
        pz1 = base ** (self.zeta - 1.0)
        A = 2.0 * pz1 * base
        dA = (0.95 * self.zeta) * pz1 * (self.cos_sec - (c / sn) * self.sin_sec)  # dA / dcos(theta)
        dm = ((d1 + d2) * 0.5).unsqueeze(1) - self.ang_shifts
        R = torch.exp(-self.eta_a * dm * dm)                                      # (T, nsh)
        dR = (-self.eta_a) * dm * R                                               # dR/dd1 = dR/dd2
        ina1 = d1 < self.rca
        ina2 = d2 < self.rca
        zt = torch.zeros_like(d1)
        a1 = d1 * (math.pi / self.rca)
        a2 = d2 * (math.pi / self.rca)
        f1 = torch.where(ina1, 0.5 * torch.cos(a1) + 0.5, zt)
        f2 = torch.where(ina2, 0.5 * torch.cos(a2) + 0.5, zt)
        df1 = torch.where(ina1, (-0.5 * math.pi / self.rca) * torch.sin(a1), zt)
        df2 = torch.where(ina2, (-0.5 * math.pi / self.rca) * torch.sin(a2), zt)
        ff = f1 * f2
        RA = R.unsqueeze(2) * A.unsqueeze(1)                                      # (T, nsh, nz)
        angular = x.new_zeros(b * n * P, na)
        angular.index_add_(0, ta, RA.reshape(-1, na) * ff.unsqueeze(1))
        aev = torch.cat([radial.view(b * n, S * nr), angular.view(b * n, P * na)], 1)
        # ---- the fused ensemble and its gradient by the AEV, element by element
        energies = torch.zeros(b, dtype=torch.float64, device=x.device)
        g_aev = torch.empty_like(aev)
        for e, spec in enumerate(self.layout):
            start, nlayers, h1 = spec[0], spec[1], spec[2]
            atoms = elem_atoms[e]
            cnt = atoms.shape[0]
            w1 = self.weights[start]
            a0 = torch.nn.functional.celu(torch.addmm(self.weights[start + 1], aev.index_select(0, atoms), w1), 0.1)
            acts: List[Tensor] = []
            h = a0.view(cnt, self.m, h1).transpose(0, 1)
            for k in range(1, nlayers - 1):
                h = torch.nn.functional.celu(torch.baddbmm(self.weights[start + 2 * k + 1], h,
                                                           self.weights[start + 2 * k]), 0.1)
                acts.append(h)
            w_last = self.weights[start + 2 * (nlayers - 1)]                      # (M, h_last, 1)
            out = torch.baddbmm(self.weights[start + 2 * (nlayers - 1) + 1], h, w_last)
            energies.index_add_(0, elem_frames[e], out.sum(0).view(cnt).to(torch.float64) / self.m)
            # backward: celu'(z) = 1 for z > 0, else exp(z / 0.1) = 10 a + 1; so g celu' = g + 10 g min(a, 0)
            g = (w_last.transpose(1, 2) / self.m).expand(self.m, cnt, w_last.shape[1])
            for k in range(nlayers - 2, 0, -1):
                a = acts[k - 1]
                g = torch.bmm(torch.addcmul(g, g, torch.clamp(a, max=0.0), value=10.0),
                              self.weights[start + 2 * k].transpose(1, 2))
            g = g.transpose(0, 1).reshape(cnt, self.m * h1)
            g = torch.addcmul(g, g, torch.clamp(a0, max=0.0), value=10.0)
            g_aev.index_copy_(0, atoms, torch.mm(g, w1.t()))
        # ---- back through the AEV to the coordinates
        g_rad = g_aev[:, :S * nr].reshape(b * n * S, nr)
        g_ang = g_aev[:, S * nr:].reshape(b * n * P, nsh, nz)
        gr = ((g_rad.index_select(0, ri) + g_rad.index_select(0, rj)) * dterms).sum(1)
        fvec = (gr / torch.clamp(r, min=1e-10)).unsqueeze(1) * d
        G = g_ang.index_select(0, ta)                                             # (T, nsh, nz)
        GR = (G * R.unsqueeze(2)).sum(1)                                          # (T, nz)
        gcos = (GR * dA).sum(1) * ff
        gRf = (G * A.unsqueeze(1)).sum(2)                                         # (T, nsh)
        gm = (gRf * dR).sum(1) * ff
        gff = (GR * A).sum(1)
        gd1 = gm + gff * df1 * f2
        gd2 = gm + gff * f1 * df2
        inv1 = 1.0 / torch.clamp(d1, min=1e-10)
        inv2 = 1.0 / torch.clamp(d2, min=1e-10)
        gv1 = (gcos * inv).unsqueeze(1) * v2 + (gd1 * inv1 - gcos * cos_t * inv1 * inv1).unsqueeze(1) * v1
        gv2 = (gcos * inv).unsqueeze(1) * v1 + (gd2 * inv2 - gcos * cos_t * inv2 * inv2).unsqueeze(1) * v2
        grad = x.new_zeros(b * n, 3)
        grad.index_add_(0, scatter, torch.cat([fvec, -fvec, gv1, gv2, -(gv1 + gv2)], 0))
        return energies, grad.view(b, n, 3)


# --------------------------------------------------------------------------- per molecule

class FastANI:
    """Evaluates one molecule (fixed element list) with a model from :func:`load_weights`.

    symbols: the molecule's element symbols (all supported by the model); member: None for the
    ensemble mean or one member's index; dtype/device: torch ones; script: TorchScript the kernel;
    gradient: "analytic" (written out, default) or "autograd" (torch.autograd, the cross-check).
    """

    def __init__(self, weights: dict, symbols: List[str], member: Optional[int], dtype, device,
                 script: bool = True, gradient: str = "analytic"):
        self.torch = torch
        self.gradient = gradient
        self.dtype, self.device = dtype, device
        model_symbols = weights["symbols"]
        present = [s for s in model_symbols if s in set(symbols)]          # model order
        self.symbols = list(symbols)
        self.n = len(symbols)
        slot = {s: i for i, s in enumerate(present)}
        self.atom_slot = np.array([slot[s] for s in symbols], dtype=np.int64)
        S = len(present)
        self.n_species = S
        # AEV columns kept: radial blocks of present species, angular blocks of present pairs,
        # in the compressed order our kernel writes them
        n_model = len(model_symbols)
        nr = len(weights["radial"]["shifts"])
        na = len(weights["angular"]["shifts"]) * len(weights["angular"]["sections"])
        triu = {}
        p = 0
        for a in range(n_model):
            for b in range(a, n_model):
                triu[(a, b)] = p
                p += 1
        midx = [model_symbols.index(s) for s in present]
        cols = [midx[i] * nr + f for i in range(S) for f in range(nr)]
        self.pair_slot = np.zeros((S, S), dtype=np.int64)
        q = 0
        for i in range(S):
            for j in range(i, S):
                mp = triu[(midx[i], midx[j])]
                cols += [n_model * nr + mp * na + f for f in range(na)]
                self.pair_slot[i, j] = self.pair_slot[j, i] = q
                q += 1
        self.n_pairs_sp = q
        cols_t = torch.tensor(cols, dtype=torch.long)
        # weights of the present elements, members stacked
        wlist: List = []
        layout: List[List[int]] = []
        self.elem_local: List[np.ndarray] = []
        for s in present:
            stacked = weights["layers"][s]
            if member is not None:
                stacked = [t[member:member + 1] for t in stacked]
            m = stacked[0].shape[0]
            W1, b1 = stacked[0], stacked[1]                      # (M, h1, F), (M, h1)
            h1 = W1.shape[1]
            first = W1.index_select(2, cols_t).permute(2, 0, 1).reshape(len(cols), m * h1)   # (F', M*h1)
            start = len(wlist)
            wlist += [first, b1.reshape(m * h1)]
            for k in range(1, len(stacked) // 2):
                W, b = stacked[2 * k], stacked[2 * k + 1]        # (M, out, in), (M, out)
                wlist += [W.transpose(1, 2), b.unsqueeze(1)]     # (M, in, out), (M, 1, out)
            layout.append([start, len(stacked) // 2, h1])
            self.elem_local.append(np.array([i for i, t in enumerate(symbols) if t == s], dtype=np.int64))
        self.members = wlist[0].shape[1] // layout[0][2] if layout else 1
        wlist = [t.to(dtype=dtype, device=device).contiguous() for t in wlist]
        sae = weights["self_energies"]
        self.self_energy = float(sum(float(sae[model_symbols.index(s)]) for s in symbols))
        rad, ang = weights["radial"], weights["angular"]
        consts = {"rcr": rad["cutoff"], "eta_r": rad["eta"], "rca": ang["cutoff"], "eta_a": ang["eta"],
                  "zeta": ang["zeta"]}
        self.rca = ang["cutoff"]
        kernel = ANIKernel(consts, rad["shifts"].to(dtype=dtype, device=device),
                        ang["shifts"].to(dtype=dtype, device=device),
                        ang["sections"].to(dtype=dtype, device=device), wlist, layout, self.members)
        self.kernel = torch.jit.script(kernel) if script else kernel
        # radial pairs: all i < j
        iu, ju = np.triu_indices(self.n, 1)
        self.pairs = (iu.astype(np.int64), ju.astype(np.int64))
        self._triples = None          # (c, j, k) for one frame
        self._ang_pairs = None        # (N, N) bool: pairs whose triples are in the list
        self._plans: Dict[int, tuple] = {}

    # -- lists
    def _build_triples(self, positions: np.ndarray):
        """Triples (c, j<k) whose two legs lie within Rca + SKIN in some frame of ``positions``."""
        d = np.linalg.norm(positions[:, :, None, :] - positions[:, None, :, :], axis=-1).min(0)
        near = d < self.rca + SKIN
        np.fill_diagonal(near, False)
        c, j, k = [], [], []
        for i in range(self.n):
            nb = np.flatnonzero(near[i])
            if len(nb) >= 2:
                a, b = np.triu_indices(len(nb), 1)
                c.append(np.full(len(a), i))
                j.append(nb[a])
                k.append(nb[b])
        cat = (lambda v: np.concatenate(v).astype(np.int64)) if c else (lambda v: np.zeros(0, dtype=np.int64))
        self._triples = (cat(c), cat(j), cat(k))
        self._ang_pairs = near
        self._plans = {}

    def _check_triples(self, positions: np.ndarray):
        if self._triples is None:
            self._build_triples(positions)
            return
        d = np.linalg.norm(positions[:, :, None, :] - positions[:, None, :, :], axis=-1)
        inside = d < self.rca
        missing = inside & ~self._ang_pairs
        for f in range(positions.shape[0]):     # the diagonal (d = 0) is never missing: excluded below
            np.fill_diagonal(missing[f], False)
        if missing.any():
            self._build_triples(positions)

    def _plan(self, b: int):
        plan = self._plans.get(b)
        if plan is not None:
            return plan
        torch, dev = self.torch, self.device
        n, S, P = self.n, self.n_species, self.n_pairs_sp
        off = (np.arange(b, dtype=np.int64) * n)[:, None]
        iu, ju = self.pairs
        pi, pj = (off + iu).ravel(), (off + ju).ravel()
        ri = (pi * S + np.tile(self.atom_slot[ju], b))
        rj = (pj * S + np.tile(self.atom_slot[iu], b))
        c, j, k = self._triples
        tc, tj, tk = (off + c).ravel(), (off + j).ravel(), (off + k).ravel()
        ta = tc * P + np.tile(self.pair_slot[self.atom_slot[j], self.atom_slot[k]], b)
        elem_atoms = [(off + loc).ravel() for loc in self.elem_local]
        elem_frames = [np.repeat(np.arange(b, dtype=np.int64), len(loc)) for loc in self.elem_local]
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=dev)  # noqa: E731
        plan = (t(pi), t(pj), t(ri), t(rj), t(tc), t(tj), t(tk), t(ta),
                [t(a) for a in elem_atoms], [t(a) for a in elem_frames], t(np.concatenate([pj, pi, tj, tk, tc])))
        self._plans[b] = plan
        return plan

    def __call__(self, positions: np.ndarray):
        """positions (B, N, 3) Å float64 → (E (B,) Hartree float64, F (B, N, 3) Hartree/Å float64)."""
        torch = self.torch
        self._check_triples(positions)
        b = positions.shape[0]
        pi, pj, ri, rj, tc, tj, tk, ta, ea, ef, sc = self._plan(b)
        x = torch.from_numpy(positions).to(dtype=self.dtype, device=self.device)
        if self.gradient == "autograd":
            e, g = self.kernel.autograd(x, self.n_species, self.n_pairs_sp, pi, pj, ri, rj, tc, tj, tk, ta, ea, ef)
        else:
            with torch.inference_mode():
                e, g = self.kernel(x, self.n_species, self.n_pairs_sp, pi, pj, ri, rj, tc, tj, tk, ta, ea, ef, sc)
        energy = e.cpu().numpy() + self.self_energy
        forces = -(g.to("cpu", torch.float64).numpy())
        return energy, forces

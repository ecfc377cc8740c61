"""MACE models (MACE-OFF23 or any other ``.model`` file) through mace-torch.

The path is required: MACE-OFF weights are not downloaded by this package.
Energies are converted from eV to Hartree in :mod:`mdi_mlmm.units`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .. import units
from ..errors import ModelError, ModelFilesNotFound
from .base import SYMBOLS, Potential, Result, torch_device
from .registry import DEFAULT_DTYPE, DTYPES


class MACEPotential(Potential):
    """A MACE model file. dtype: "float32" (default, the one default of every model:
    :data:`.registry.DEFAULT_DTYPE`) or "float64"; the model is cast to it.
    device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``."""

    accepts_charge = False

    def __init__(self, path, dtype: str = DEFAULT_DTYPE, threads: Optional[int] = None, device: str = "cpu"):
        import torch

        if dtype not in DTYPES:
            raise ModelError(f"dtype must be {' or '.join(DTYPES)}, got {dtype}")
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelFilesNotFound(f"MACE model file {p} not found (give mace:/path/to/file.model)")
        # e3nn 0.4.4 (pinned by mace-torch) loads its constants with torch.load's default
        # weights_only=True under torch >= 2.6, which rejects the `slice` they contain.
        torch.serialization.add_safe_globals([slice])
        try:
            from mace import data as mace_data
            from mace.tools import torch_geometric, utils as mace_utils
        except ImportError as exc:  # pragma: no cover
            raise ModelError("mace-torch is not installed: pip install mace-torch") from exc
        if threads:
            torch.set_num_threads(int(threads))
        try:
            model = torch.load(str(p), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelError(f"could not load MACE model {p}: {exc}") from exc
        if not hasattr(model, "atomic_numbers") or not hasattr(model, "r_max"):
            raise ModelError(f"{p} is not a MACE model (no atomic_numbers/r_max)")
        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.device = torch_device(device)
        self.model = model.to(self.dtype).to(self.device).eval()
        for q in self.model.parameters():
            q.requires_grad_(False)
        self.path = p
        self.name = f"mace:{p.name}"
        zs = [int(z) for z in self.model.atomic_numbers]
        self.supported_elements = tuple(SYMBOLS[z] for z in zs)
        self.z_table = mace_utils.AtomicNumberTable(zs)
        self.r_max = float(self.model.r_max)
        self.heads = getattr(self.model, "heads", None) or ["Default"]
        self._data = mace_data
        self._collate = torch_geometric.dataloader.Collater(follow_batch=[None], exclude_keys=[])

    def _graphs(self, symbols, positions):
        import ase

        torch = self.torch
        keyspec = self._data.KeySpecification(info_keys={}, arrays_keys={})
        out = []
        prev = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            for pos in positions:
                atoms = ase.Atoms(symbols=symbols, positions=pos, pbc=False)
                cfg = self._data.config_from_atoms(atoms, key_specification=keyspec, head_name=self.heads[0])
                out.append(self._data.AtomicData.from_config(cfg, z_table=self.z_table, cutoff=self.r_max,
                                                             heads=self.heads))
        finally:
            torch.set_default_dtype(prev)
        return out

    def _evaluate(self, symbols, positions, cells) -> Result:
        # Isolated-molecule evaluation (mechanical embedding); callers make the molecule whole.
        batch = self._collate(self._graphs(symbols, positions))
        d = batch.to_dict()
        for k, v in d.items():
            if self.torch.is_tensor(v):
                d[k] = v.to(self.device, self.dtype) if self.torch.is_floating_point(v) else v.to(self.device)
        out = self.model(d, compute_force=True, training=False)
        e_ev = out["energy"].detach().to("cpu", self.torch.float64).numpy()
        f_ev = out["forces"].detach().to("cpu", self.torch.float64).numpy().reshape(positions.shape)
        to_ha = units.factor("energy", "ev", "hartree")
        return Result(energy=e_ev * to_ha, forces=f_ev * to_ha)

    def describe(self) -> str:
        return f"MACE model {self.path} ({str(self.dtype).replace('torch.', '')}, {self.device}, r_max {self.r_max:g} Å)"

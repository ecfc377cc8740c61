"""Create the small MACE model shipped for tests: tests/data/mace_test_small.model.

TEST-ONLY: randomly initialised weights (fixed seed) with ANI-2x-like atomic
reference energies. It has the architecture and file format of a real MACE model,
so it exercises the whole loading/evaluation path, but its energies mean nothing
physically. Never use it for science. Re-run this script to regenerate it.
"""
from pathlib import Path

import numpy as np
import torch

torch.serialization.add_safe_globals([slice])  # e3nn 0.4.4 + torch >= 2.6
from e3nn import o3  # noqa: E402
from mace import modules  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "mace_test_small.model"
ZS = [1, 6, 7, 8, 9, 16, 17]
# rough per-element reference energies in eV (order of ANI self energies)
E0 = np.array([-13.6, -1029.0, -1485.0, -2042.0, -2713.0, -10830.0, -12516.0])


def main():
    torch.manual_seed(20261121)
    torch.set_default_dtype(torch.float64)
    model = modules.MACE(
        r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(ZS), hidden_irreps=o3.Irreps("8x0e"),
        MLP_irreps=o3.Irreps("8x0e"), atomic_energies=E0, avg_num_neighbors=8.0,
        atomic_numbers=ZS, correlation=2, gate=torch.nn.functional.silu,
    )
    model.eval()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB) — TEST-ONLY, random weights")


if __name__ == "__main__":
    main()

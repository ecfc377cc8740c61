"""Engine start-up (issue 13 item 5): the ANI weight cache and the forwarding engine's imports.

Timing is not tested here (bench/bench_engine_startup.py measures it); what is tested is what makes
the start cheap without changing a number: a cache hit gives bit-for-bit the energies and forces of
a fresh parse, a damaged cache file is refused with a warning naming it and rebuilt, the content
hash of the model files is reused only while they are unchanged, and an engine that forwards to a
model server never imports torch.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent


def ethanol():
    from tests.drivers.scenarios import ETHANOL

    return ["C", "C", "O"] + ["H"] * 6, np.asarray(ETHANOL[1], dtype=float)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """A cache filled by one parse; the parse's own (uncached) weights and ethanol E/F (float32)."""
    from mdi_mlmm.potentials import ani_fast
    from mdi_mlmm.potentials.ani import ANIPotential

    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDI_MLMM_CACHE", str(root))
        p = ANIPotential("ani2x")                  # parses (the cache is empty) and writes the cache
        files = list((root / "ani").glob(f"ani-2x_8x-v{ani_fast.CACHE_FORMAT}-*.pt"))
        assert len(files) == 1
        sym, pos = ethanol()
        r = p.compute(sym, pos)
    return {"root": root, "file": files[0], "weights": p.weights, "energy": r.energy, "forces": r.forces}


def _no_parse(monkeypatch):
    """Make torchani's NeuroChem parser fail: whatever loads now comes from the cache."""
    import torchani.neurochem

    def refuse(*a, **k):
        raise AssertionError("the NeuroChem files were parsed")

    monkeypatch.setattr(torchani.neurochem, "modules_from_info", refuse)


def _same_tensors(a, b):
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return a == b


def test_cache_hit_gives_the_parse_numbers_bit_for_bit(parsed, monkeypatch, caplog):
    from mdi_mlmm.potentials.ani import ANIPotential

    monkeypatch.setenv("MDI_MLMM_CACHE", str(parsed["root"]))
    _no_parse(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="mdi_mlmm.ani"):
        p = ANIPotential("ani2x")
    assert not caplog.records
    assert _same_tensors(p.weights, parsed["weights"])
    sym, pos = ethanol()
    r = p.compute(sym, pos)
    assert r.energy == parsed["energy"]
    assert np.array_equal(r.forces, parsed["forces"])


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_damaged_cache_is_refused_named_and_rebuilt(parsed, tmp_path, monkeypatch, caplog, damage):
    from mdi_mlmm.potentials import ani_fast
    from mdi_mlmm.potentials.ani import ANIPotential

    root = tmp_path / "cache"
    shutil.copytree(parsed["root"], root)
    path = root / "ani" / parsed["file"].name
    raw = bytearray(path.read_bytes())
    if damage == "flipped byte":   # inside the tensor data: torch.load alone reads it without complaint
        raw[len(raw) // 2] ^= 0x01
    else:
        raw = raw[: len(raw) // 3]
    path.write_bytes(bytes(raw))
    monkeypatch.setenv("MDI_MLMM_CACHE", str(root))
    with caplog.at_level(logging.WARNING, logger="mdi_mlmm.ani"):
        p = ANIPotential("ani2x")
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and str(path) in warned[0] and "damaged" in warned[0], warned
    assert _same_tensors(p.weights, parsed["weights"])
    sym, pos = ethanol()
    r = p.compute(sym, pos)
    assert r.energy == parsed["energy"] and np.array_equal(r.forces, parsed["forces"])
    # rebuilt: whole again, read without a warning or a parse
    assert path.read_bytes() != bytes(raw)
    caplog.clear()
    _no_parse(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="mdi_mlmm.ani"):
        again = ani_fast._read_cache(path, parsed["weights"]["key"])
    assert again is not None and not caplog.records


def test_source_key_is_reused_only_while_the_files_are_unchanged(tmp_path, monkeypatch):
    from mdi_mlmm.potentials import ani_fast

    monkeypatch.setenv("MDI_MLMM_CACHE", str(tmp_path / "cache"))
    zoo = tmp_path / "zoo"
    info = zoo / "ani-x_2x.info"
    members = [zoo / "train0", zoo / "train1"]
    for i, d in enumerate(members):
        (d / "networks").mkdir(parents=True)
        (d / "networks" / "ANN-H.nnf").write_text(f"network {i}\n")
        (d / "networks" / "ANN-H.wparam").write_bytes(bytes([i]) * 64)
    info.write_text("consts.params\nsae.dat\ntrain\n2\n")
    key = ani_fast.source_key(info, members)
    assert key == ani_fast.files_digest(info, members)
    real_digest = ani_fast.files_digest
    calls = []
    monkeypatch.setattr(ani_fast, "files_digest", lambda *a: calls.append(1) or real_digest(*a))
    assert ani_fast.source_key(info, members) == key and not calls          # reused: no hashing
    w = members[1] / "networks" / "ANN-H.wparam"
    st = w.stat()
    w.write_bytes(bytes([7]) * 64)                                            # same size...
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))                          # ...and modification time
    new = ani_fast.source_key(info, members)
    assert calls and new != key and new == real_digest(info, members)        # the change time gave it away
    # a damaged index file is only a miss
    index = next((tmp_path / "cache" / "ani").glob("*.files.json"))
    index.write_text("{not json")
    calls.clear()
    assert ani_fast.source_key(info, members) == new and calls


def test_forwarding_engine_does_not_import_torch(tmp_path):
    """An engine started with --model server:INFO (the hydration windows' engines) never imports torch."""
    from mdi_mlmm.potentials import load_potential
    from mdi_mlmm.potentials.shared import ModelServer

    server = ModelServer(load_potential("harmonic"), max_wait_ms=1)
    info = server.write_info(tmp_path / "server.json")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    code = (
        "import json, os, sys\n"
        "os.environ['PYTHONPROFILEIMPORTTIME'] = '1'   # the engine's stderr lists every module it imports\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "from tests.drivers.scenarios import ETHANOL\n"
        "c = start_local_engine('server:' + sys.argv[2], log_path=sys.argv[1])\n"
        "c.setup(ETHANOL[0])\n"
        "e, f = c.compute(ETHANOL[1])\n"
        "c.close()\n"
        "print(json.dumps({'e': e, 'rc': c.engine_proc.returncode}))\n"
    )
    log = tmp_path / "engine.log"
    try:
        r = subprocess.run([sys.executable, "-c", code, str(log), str(info)], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    finally:
        server.stop()
        t.join(10)
    assert r.returncode == 0, r.stderr + log.read_text()
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0 and np.isfinite(out["e"])
    modules = [ln.rsplit("|", 1)[1].strip() for ln in log.read_text().splitlines() if ln.startswith("import time:")]
    assert "mdi_mlmm.potentials.shared" in modules and "mdi" in modules   # the listing is there
    assert not [m for m in modules if m == "torch" or m.startswith(("torch.", "torchani"))]

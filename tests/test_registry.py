"""The model registry: torch-free questions about a model, custom models in and out of process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mdi_mlmm.errors import ChargedSystemError, ModelError, ModelFilesNotFound, UnsupportedElementError, UserInputError
from mdi_mlmm.potentials import load_potential, register_model, registry, unregister_model
from mdi_mlmm.potentials.simple import HarmonicPotential

WATER_Z = [8, 1, 1]
WATER_A = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2399872, 0.9266272, 0.0]])

#: a model of one's own, as a user writes it: a Potential subclass and a factory
CUSTOM = textwrap.dedent('''
    import numpy as np
    from mdi_mlmm.potentials import Potential, Result

    class Spring(Potential):
        """E = k/2 sum |x - mean(x)|^2 for H and O only."""
        name = "spring"
        supported_elements = ("H", "O")

        def __init__(self, k):
            self.k = k

        def _evaluate(self, symbols, positions, cells):
            d = positions - positions.mean(axis=1, keepdims=True)
            return Result(energy=0.5 * self.k * (d ** 2).sum(axis=(1, 2)), forces=-self.k * d)

    def make(dtype="float64"):
        assert dtype == "float32"   # the default precision reaches the factory (in an engine process too)
        return Spring(0.03)

    def not_a_potential():
        return 42
''')


@pytest.fixture
def custom_file(tmp_path):
    path = tmp_path / "my_spring.py"
    path.write_text(CUSTOM)
    return path


def test_import_loads_no_ml_library():
    """Preparation and planning ask the registry before any engine runs: no torch on the way."""
    code = ("import sys, mdi_mlmm.potentials.registry as r, mdi_mlmm.potentials, mdi_mlmm.prep.molecule; "
            "r.resolve('ani2x').check_solute(['C', 'H'], 0); r.resolve('mace:x.model'); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchani', 'mace', 'e3nn')); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_entries_answer_what_callers_ask():
    assert [m.name for m in registry.models()][:3] == ["ani2x", "ani1x", "ani1ccx"]
    mm = registry.resolve("MM")
    assert not mm.ml and mm.accepts_charge and mm.elements is None and mm.name == "mm"
    assert registry.is_ml("ani2x") and registry.is_ml("mace:/x") and not registry.is_ml(" mm ") and not registry.is_ml(None)
    assert registry.is_ml("nonsense")   # unknown: counted as ML, so that resolving it reports it
    assert registry.resolve("ANI-2x").name == "ani2x" and registry.resolve("harmonic").argument == 0.01
    assert registry.resolve("harmonic:0.5").argument == 0.5
    assert registry.resolve("mace:/a/B.model").name == "mace:/a/B.model"
    assert registry.resolve("python:pkg.mod:make").argument == ("pkg.mod", "make")
    assert all(m.description for m in registry.models())


def test_ani_entries_match_the_ani_module():
    from mdi_mlmm.potentials.ani import MODELS

    for name, (_, elements) in MODELS.items():
        assert registry.get(name).elements == frozenset(elements)


def test_solute_checks():
    assert registry.check_model("ani2x", ["C", "Cl", "H"], 0) == "ani2x"
    assert registry.check_model("mm", ["Br", "C"], -1) == "mm"
    assert registry.check_model("mace:/any.model", ["Br"], 1) == "mace:/any.model"   # the loaded model decides
    with pytest.raises(UnsupportedElementError, match=r"model ani1x cannot describe element\(s\) Cl"):
        registry.check_model("ani1x", ["C", "Cl"], 0)
    with pytest.raises(ChargedSystemError, match="net charge -1 e but model ani2x"):
        registry.check_model("ani2x", ["C", "O"], -1)


@pytest.mark.parametrize("spec, cls, text", [
    ("ani3x", UserInputError, "unknown model 'ani3x'; choose ani2x | ani1x"),
    ("ani2x:foo", UserInputError, "unknown model 'ani2x:foo'"),
    ("mace", UserInputError, "malformed model 'mace': mace: needs a path"),
    ("python:", UserInputError, "python: needs FILE.py:FACTORY"),
    ("python:file.py", UserInputError, "write python:FILE.py:FACTORY"),
    ("python:/no/such/file.py:make", ModelFilesNotFound, "python file /no/such/file.py not found"),
    ("python:no_such_module_xyz:make", ModelError, "importing no_such_module_xyz failed: ModuleNotFoundError"),
    ("mm", UserInputError, "model 'mm' has no ML potential to load"),
])
def test_errors_are_one_line(spec, cls, text):
    with pytest.raises(cls) as e:
        load_potential(spec)
    assert text in str(e.value) and "\n" not in str(e.value)


def test_python_spec_in_process(custom_file, tmp_path, monkeypatch):
    pot = load_potential(f"python:{custom_file}:make")
    ref = HarmonicPotential(0.03).compute(["O", "H", "H"], WATER_A)
    got = pot.compute(["O", "H", "H"], WATER_A)
    assert got.energy == pytest.approx(float(ref.energy), rel=1e-12) and got.energy > 0
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_potential("python:my_spring:make").name == "spring"       # module form
    with pytest.raises(ModelError, match="returned int, not a mdi_mlmm.potentials.Potential"):
        load_potential(f"python:{custom_file}:not_a_potential")
    with pytest.raises(ModelError, match="has no callable 'missing'"):
        load_potential(f"python:{custom_file}:missing")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no GPU here\\nat all')\n")
    with pytest.raises(ModelError, match="importing .*broken.py failed: RuntimeError: no GPU here at all"):
        load_potential(f"python:{broken}:make")


def test_register_model(custom_file):
    calls = []

    def factory(threads=None):
        calls.append(threads)
        return HarmonicPotential(0.02)

    register_model("Springy", factory, elements=["H", "O"], description="a test model")
    try:
        assert registry.resolve("springy").ml and registry.get("SPRINGY").description == "a test model"
        assert "springy" in registry.choices()
        pot = load_potential("springy", threads=3)
        assert isinstance(pot, HarmonicPotential) and calls == [3]
        with pytest.raises(UnsupportedElementError, match="model springy cannot describe element"):
            registry.check_model("springy", ["O", "C"], 0)
        with pytest.raises(ChargedSystemError):
            registry.check_model("springy", ["O", "H"], 1)
        with pytest.raises(UserInputError, match="registered in this process only.*python:FILE.py:FACTORY"):
            registry.resolve("springy").check_other_process()
        registry.resolve("ani2x").check_other_process()
        with pytest.raises(UserInputError, match="already registered"):
            register_model("springy", factory, elements=None)
    finally:
        unregister_model("springy")
    with pytest.raises(UserInputError, match="unknown model 'springy'"):
        registry.resolve("springy")
    with pytest.raises(UserInputError, match="built in"):
        unregister_model("ani2x")
    with pytest.raises(UserInputError, match="one word"):
        register_model("a:b", factory, elements=None)


def test_python_spec_in_a_real_engine_process(custom_file, tmp_path):
    """An engine is a process of its own: the python: spec loads the factory there. The driver runs in
    a process of its own too (MDI initialises once per process; another test may have used it here)."""
    log = tmp_path / "engine.log"
    driver = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from mdi_mlmm.hosts.driver import start_local_engine
        conn = start_local_engine({f"python:{custom_file}:make"!r}, log_path={str(log)!r})
        try:
            conn.setup({list(map(int, WATER_Z))!r})
            e, f = conn.compute(np.array({np.asarray(WATER_A).tolist()!r}), np.eye(3) * 30.0)
        finally:
            conn.close()
        print(json.dumps({{"e": e, "f": np.asarray(f).tolist()}}))
    """)
    r = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    e, f = out["e"], np.array(out["f"])
    ref = HarmonicPotential(0.03).compute(["O", "H", "H"], WATER_A)   # the same physics, in this process
    assert e == pytest.approx(float(ref.energy), rel=1e-9) and e > 0   # Hartree
    np.testing.assert_allclose(f, ref.forces, rtol=1e-9, atol=1e-12)   # Hartree/Å
    assert "spring" in log.read_text()


def test_engine_cli_reports_a_bad_python_spec_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "engine", "--model", f"python:{tmp_path}/nope.py:make",
                        "-mdi", "-role ENGINE -name ML -method TCP -port 1 -hostname localhost"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: python file") and len(r.stderr.strip().splitlines()) == 1

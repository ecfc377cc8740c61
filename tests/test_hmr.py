"""Hydrogen mass repartitioning (``--mass-repartition``, GROMACS host; issue 13, items 4 and 6): 4 fs with the
X–H bonds constrained, half the steps (ML calls) per ns of 2 fs.

* the repartitioned topology: H × 3, the bonded heavy atom lighter by what its hydrogens gained, every molecule's
  mass unchanged, rigid water untouched; grompp takes it at 4 fs + h-bonds with no warning;
* physics: NVE energy conservation of a gas of 27 ethanols (MM) at 4 fs with HMR against 2 fs and 4 fs without;
* the masses do not reach the ML engine: E_ML of a 4 fs ML/MM run is the model's energy of the frames;
* the one-line refusals (no h-bonds, LAMMPS, odd topologies), the time-step policy, plan.json on resume.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.hosts.gromacs import build as gbuild
from mdi_mlmm.protocol.timestep import check_mass_repartition, check_timestep
from mdi_mlmm.topology.hmr import repartition, repartition_text

DATA = Path(__file__).resolve().parent / "data" / "lammps_ethanol"  # ethanol (GAFF) + 676 TIP3P, 2037 atoms
GMX = gbuild.gmx_path()

pytestmark = [pytest.mark.timeout(300)]


def _masses(top, gro):
    from mdi_mlmm.topology.gromacs import load_gromacs

    s = load_gromacs(top, gro)
    return np.array([a.mass for a in s.atoms]), [a.residue.name for a in s.atoms], [a.element for a in s.atoms]


def test_repartitioned_topology(tmp_path):
    report = repartition(DATA / "topol.top", tmp_path / "hmr.top", 3.0, check_elements=True)
    assert report.molecules == {"MOL": 6} and report.water == ["SOL"]
    m0, res, z = _masses(DATA / "topol.top", DATA / "conf.gro")
    m1, _, _ = _masses(tmp_path / "hmr.top", DATA / "conf.gro")
    mol = np.array([r == "MOL" for r in res])
    h = np.array([e == 1 for e in z])
    assert np.allclose(m1[mol & h], 3 * 1.008)                         # H x 3
    # C1 (3 H), C2 (2 H), O1 (1 H) lose 2.016 amu per hydrogen
    assert np.allclose(m1[:3], [12.01 - 3 * 2.016, 12.01 - 2 * 2.016, 16.0 - 2.016])
    assert m1[mol].sum() == pytest.approx(m0[mol].sum(), abs=1e-9)     # the molecule's mass unchanged
    assert np.array_equal(m1[~mol], m0[~mol])                          # water untouched
    # nothing else of the file changed: the same lines but the solute's [ atoms ] rows and one comment
    old, new = (DATA / "topol.top").read_text().splitlines(), (tmp_path / "hmr.top").read_text().splitlines()
    assert new[0].startswith("; hydrogen mass repartitioning") and len(new) == len(old) + 1
    assert sum(a != b for a, b in zip(old, new[1:])) == 9
    # a solute without hydrogens (CCl4 has none; here ethanol's H made heavy): left as it is, not refused
    heavy = (DATA / "topol.top").read_text().replace("1.008000   ; qtot", "19.000000   ; qtot")
    text, report = repartition_text(heavy)
    assert report.molecules == {} and text.split("\n", 1)[1] == heavy


def test_included_itp_repartitioned_and_runs_elsewhere(tmp_path, stock_gmx):
    """A ligand in an ``#include``-d .itp next to the .top (a protein-ligand tutorial's layout; its own include
    of position restraints relative to itself) is written into topol_hmr.top and repartitioned (it was refused,
    or with another moleculetype inline left at its masses); the copy, written into another directory as every
    unit's is, goes through grompp there."""

    lines = (DATA / "topol.top").read_text().splitlines(keepends=True)
    mol, sol = [i for i, ln in enumerate(lines) if ln.startswith("[ moleculetype ]")]
    (tmp_path / "lig").mkdir()
    (tmp_path / "lig" / "lig.itp").write_text("".join(lines[mol:sol])
                                              + '#ifdef POSRES\n#include "posre_lig.itp"\n#endif\n')
    (tmp_path / "lig" / "posre_lig.itp").write_text("[ position_restraints ]\n 1 1 1000 1000 1000\n\n")
    (tmp_path / "topol.top").write_text("".join(lines[:mol]) + '#include "lig/lig.itp"\n\n' + "".join(lines[sol:]))
    report = repartition(tmp_path / "topol.top", tmp_path / "unit" / "topol_hmr.top", 3.0, check_elements=True)
    assert report.molecules == {"MOL": 6} and report.water == ["SOL"]
    m0, res, z = _masses(DATA / "topol.top", DATA / "conf.gro")
    m1, _, _ = _masses(tmp_path / "unit" / "topol_hmr.top", DATA / "conf.gro")
    mol_ = np.array([r == "MOL" for r in res])
    assert np.allclose(m1[mol_ & np.array([e == 1 for e in z])], 3 * 1.008)
    assert m1[mol_].sum() == pytest.approx(m0[mol_].sum(), abs=1e-9) and np.array_equal(m1[~mol_], m0[~mol_])
    unit = tmp_path / "unit"
    (unit / "t.mdp").write_text("integrator = md\ndt = 0.004\nnsteps = 0\ncutoff-scheme = Verlet\ncoulombtype = PME\n"
                                "rcoulomb = 1.0\nrvdw = 1.0\nconstraints = h-bonds\ndefine = -DPOSRES\n")
    r = subprocess.run([str(stock_gmx), "grompp", "-f", "t.mdp", "-c", str(DATA / "conf.gro"), "-r", str(DATA / "conf.gro"),
                        "-p", "topol_hmr.top", "-o", "t.tpr", "-maxwarn", "0"], cwd=unit, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_bond_too_fast_for_the_time_step_refused(tmp_path):
    """Repartitioned masses make propene's =CH2 carbon 7.98 amu: its C=C oscillates in 18.8 fs (21.9 fs before),
    under grompp's 5 steps of 4 fs (51 FreeSolv molecules: alkenes, alkynes, nitriles). grompp only warns, and the
    units accept two warnings, so a unit refuses it in one line naming the step that works; 3.5 fs runs, and so
    does ethanol (C-C 23 fs) at 4 fs."""
    from mdi_mlmm.hosts.gromacs.alchemy import _unit_top
    from mdi_mlmm.prep import freesolv
    from mdi_mlmm.protocol.specs import LegSpec
    from mdi_mlmm.topology.hmr import fastest_bond

    top = freesolv.extract("mobley_303222", "top", tmp_path)   # propene, CC=C
    period, mol, bond = fastest_bond(repartition_text(top.read_text())[0])
    assert (mol, bond) == ("MOL", "C2-C3") and 18.5 < period < 19.0 < 21.5 < fastest_bond(top.read_text())[0]
    constrained = repartition_text(top.read_text())[0].replace("[ pairs ]", "[ constraints ]\n 2 3 1 0.13\n\n[ pairs ]",
                                                                1)
    assert fastest_bond(constrained)[2] == "C1-C2"                         # a bond in [ constraints ] is not flexible
    leg = dict(host="gromacs", model="zero", top=str(top), gro="g", ndx="n", ml_indices=[0], steps=10,
               temperature=298.15, sample_every=1, seed=1, constrain_hbonds=True, mass_repartition=3.0,
               phase="gas", lam=0.0, mm_intra_top=str(top))
    with pytest.raises(UserInputError, match=r"C2-C3 of MOL .* in 18\.8 fs.*give --leg-dt 3\.5 or less") as exc:
        _unit_top(LegSpec(**leg, dt_fs=4.0, out_dir=str(tmp_path / "a")), tmp_path / "a", True)
    assert "\n" not in str(exc.value)
    assert _unit_top(LegSpec(**leg, dt_fs=3.5, out_dir=str(tmp_path / "b")), tmp_path / "b",
                     True).endswith("topol_hmr.top")
    assert _unit_top(LegSpec(**{**leg, "top": str(DATA / "topol.top")}, dt_fs=4.0, out_dir=str(tmp_path / "c")),
                     tmp_path / "c", True).endswith("topol_hmr.top")


def test_bond_too_fast_refused_without_hmr_too(tmp_path, capsys):
    """Without HMR too: acetonitrile's C#N (17.3 fs) at --constraints h-bonds --dt 4 ran at 4.3 steps per period
    (grompp's warning swallowed by the units' maxwarn 2); ethanol's flexible O-H (9.1 fs) at --dt 2 likewise. Every
    unit refuses in one line naming the step that works; ``md`` (grompp with the user's --maxwarn) warns."""
    from mdi_mlmm.hosts.gromacs.alchemy import _unit_top
    from mdi_mlmm.hosts.gromacs.host import hmr_topology
    from mdi_mlmm.prep import freesolv
    from mdi_mlmm.protocol.specs import LegSpec, WindowSpec

    top = freesolv.extract("mobley_7532833", "top", tmp_path)   # acetonitrile, CC#N
    unit = dict(host="gromacs", model="zero", top=str(top), gro="g", ndx="n", ml_indices=list(range(6)), steps=10,
                temperature=298.15, sample_every=1, seed=1, constrain_hbonds=True, out_dir=str(tmp_path))
    leg = dict(phase="gas", lam=0.0, mm_intra_top=str(top))
    with pytest.raises(UserInputError, match=r"C2-N1 of MOL \(not constrained\) .* 17\.3 fs.*give --leg-dt 3 or less"):
        _unit_top(LegSpec(**unit, **leg, dt_fs=4.0), tmp_path, True)
    with pytest.raises(UserInputError, match=r"give --dt 3 or less") as exc:
        _unit_top(WindowSpec(**unit, dt_fs=4.0, state=0, schedule=[(1, 1)]), tmp_path, False)
    assert "\n" not in str(exc.value) and "hydrogen masses" not in str(exc.value)
    assert _unit_top(LegSpec(**unit, **leg, dt_fs=3.0), tmp_path, True) == str(top)        # 5.8 steps: runs
    flexible = {**unit, "top": str(DATA / "topol.top"), "constrain_hbonds": False}
    with pytest.raises(UserInputError, match=r"O1-H6 of MOL \(flexible.* 9\.1 fs.*give --dt 1\.5 or less"):
        _unit_top(WindowSpec(**flexible, dt_fs=2.0, state=0, schedule=[(1, 1)]), tmp_path, True)
    assert _unit_top(WindowSpec(**flexible, dt_fs=1.0, state=0, schedule=[(1, 1)]), tmp_path, True) == flexible["top"]
    capsys.readouterr()
    assert hmr_topology(top, tmp_path, None, constrained=True, ml=True, dt_fs=4.0, refuse_fast=False) == top
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "give --dt 3 or less" in err and "--maxwarn" in err and err.count("\n") == 1


#: [ defaults ] and the carbon/nitrogen [ atomtypes ] of the hand-written topologies below
_ATOMTYPES_HEAD = """[ defaults ]
1 2 yes 0.5 0.8333

[ atomtypes ]
; name bond_type at.num mass charge ptype sigma epsilon
c3   c3  6  12.01  0.0  A  0.339967  0.457730
c1x  c1  6  12.01  0.0  A  0.339967  0.879228
n1x  n1  7  14.01  0.0  A  0.325000  0.711280
"""


#: a hand-written topology whose bonds take their parameters from [ bondtypes ] in a file it includes, by the atom
#: types' bonded-type column (c1x -> c1); C1-C4 has no bondtype (grompp would refuse it): skipped, not refused
_BONDTYPES_TOP = _ATOMTYPES_HEAD + """
#include "ffbonded.itp"

[ moleculetype ]
MOL 3

[ atoms ]
; nr type resnr res atom cgnr charge mass
  1  c3   1  MOL  C1  1  0.0  12.01
  2  c1x  1  MOL  C2  2  0.0  12.01
  3  n1x  1  MOL  N1  3  0.0  14.01
  4  c3   1  MOL  C4  4  0.0  12.01

[ bonds ]
  1  2  1
  2  3  1
  1  4  1

[ system ]
bondtypes

[ molecules ]
MOL 1
"""


def test_fast_bond_parameters_from_bondtypes(tmp_path):
    """A bond line without parameters takes its kb from the [ bondtypes ] of its atoms' bonded types, here in an
    included file: the C#N of such a topology (17.3 fs, as acetonitrile's) was not seen, so a unit ran it at 4 fs
    (grompp only warns); now refused like a bond with its kb on the line. A bond found in no [ bondtypes ] is skipped."""
    from mdi_mlmm.hosts.gromacs.alchemy import _unit_top
    from mdi_mlmm.protocol.specs import WindowSpec
    from mdi_mlmm.topology.hmr import fastest_bond, text_as_run

    top = tmp_path / "topol.top"
    top.write_text(_BONDTYPES_TOP)
    (tmp_path / "ffbonded.itp").write_text("[ bondtypes ]\n; i j func b0 kb\n c1 n1 1 0.11530 853000.0\n"
                                           " c3 c1 1 0.14650 303000.0\n")
    period, mol, bond = fastest_bond(text_as_run(top))
    assert (mol, bond) == ("MOL", "C2-N1") and 17.2 < period < 17.4
    unit = dict(host="gromacs", model="zero", top=str(top), gro="g", ndx="n", ml_indices=[0, 1, 2, 3], steps=10,
                temperature=298.15, sample_every=1, seed=1, constrain_hbonds=True, out_dir=str(tmp_path))
    with pytest.raises(UserInputError, match=r"C2-N1 of MOL .* 17\.3 fs.*give --dt 3 or less"):
        _unit_top(WindowSpec(**unit, dt_fs=4.0, state=0, schedule=[(1, 1)]), tmp_path, False)
    assert _unit_top(WindowSpec(**unit, dt_fs=3.0, state=0, schedule=[(1, 1)]), tmp_path, False) == str(top)


#: hand-written molecules with bonds of the other functions grompp estimates a period for: MOL's C2-N1 a GROMOS-96
#: bond (function 2, V = kb/4 (r² − b0²)², parameters from [ bondtypes ] of function 2; the function-1 line of the
#: same types is another bond's), CH2's C1-H2 a harmonic bond without exclusions (function 6), which constraints =
#: h-bonds leaves flexible (grompp converts X-H bonds of functions 1 and 2 only)
_OTHER_BONDS_TOP = _ATOMTYPES_HEAD + """hc   hc  1  1.008  0.0  A  0.264953  0.065689

[ bondtypes ]
; i j func b0 kb
 c1 n1 2 0.1153 3.2e7
 c1 n1 1 0.1153 100000.0

[ moleculetype ]
%s 3

[ atoms ]
; nr type resnr res atom cgnr charge mass
%s
[ bonds ]
%s
[ system ]
other bonds

[ molecules ]
%s 1
"""
_G96 = ("MOL", "  1  c3   1  MOL  C1  1  0.0  12.01\n  2  c1x  1  MOL  C2  2  0.0  12.01\n"
               "  3  n1x  1  MOL  N1  3  0.0  14.01\n", "  1  2  1  0.1465 303000.0\n  2  3  2\n",
        [(1.0, 1.0, 1.0), (1.146, 1.0, 1.0), (1.262, 1.0, 1.0)])
_HARMONIC6 = ("CH2", "  1  c3   1  CH2  C1  1  0.0  12.01\n  2  hc   1  CH2  H1  2  0.0  1.008\n"
                     "  3  hc   1  CH2  H2  3  0.0  1.008\n", "  1  2  1  0.1092 307000.0\n  1  3  6  0.1092 200000.0\n",
              [(1.0, 1.0, 1.0), (1.109, 1.0, 1.0), (0.945, 1.095, 1.0)])


def _grompp_period(gmx, work: Path, mol, dt_ps: float, constraints: str) -> tuple[str, str]:
    """(the period grompp 2022 prints for the fastest flexible bond of ``mol`` (``_G96``, ``_HARMONIC6``), its atoms)."""
    import re

    name, atoms, bonds, xyz = mol
    work.mkdir()
    (work / "t.top").write_text(_OTHER_BONDS_TOP % (name, atoms, bonds, name))
    names = [line.split()[4] for line in atoms.splitlines()]
    (work / "t.gro").write_text(f"t\n{len(xyz)}\n" + "".join(f"{1:5d}{name:<5s}{n:>5s}{i + 1:5d}{x:8.3f}{y:8.3f}{z:8.3f}\n"
                                for i, (n, (x, y, z)) in enumerate(zip(names, xyz))) + "   3.0   3.0   3.0\n")
    (work / "t.mdp").write_text(f"integrator = md\ndt = {dt_ps}\nnsteps = 0\ncutoff-scheme = Verlet\n"
                                f"constraints = {constraints}\n")
    r = subprocess.run([str(gmx), "grompp", "-f", "t.mdp", "-c", "t.gro", "-p", "t.top", "-o", "t.tpr", "-maxwarn", "5"],
                       cwd=work, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"between atoms \d+ (\S+) and \d+ (\S+) has an estimated oscillational period of (\S+) ps",
                  " ".join(r.stderr.split()))
    assert m, r.stderr[-2000:]
    return m.group(3), f"{m.group(1)}-{m.group(2)}"


def test_fast_bond_of_g96_and_harmonic_without_exclusions_as_grompp(tmp_path, stock_gmx):
    """grompp also estimates the period of G96 bonds (harmonic constant 2 kb b0²) and of harmonic bonds without
    exclusions (function 6, flexible under constraints = h-bonds): only function 1 was seen, so a fast G96 C#N
    (17.3 fs) ran at 4 fs. Each molecule's fastest bond and its period are those grompp 2022 names."""
    from mdi_mlmm.topology.hmr import fastest_bond

    text = _OTHER_BONDS_TOP % (_G96[0], _G96[1], _G96[2], _G96[0])
    period, mol, bond = fastest_bond(text, hbonds_constrained=False)
    assert (mol, bond) == ("MOL", "C2-N1") and 17.2 < period < 17.4
    assert _grompp_period(stock_gmx, tmp_path / "g96", _G96, 0.004, "none") == (f"{period / 1000:.1e}", bond)

    text = _OTHER_BONDS_TOP % (_HARMONIC6[0], _HARMONIC6[1], _HARMONIC6[2], _HARMONIC6[0])
    period, mol, bond = fastest_bond(text, hbonds_constrained=True)          # C1-H1 (function 1) constrained
    assert (mol, bond) == ("CH2", "C1-H2") and 13.4 < period < 13.6
    assert _grompp_period(stock_gmx, tmp_path / "h6", _HARMONIC6, 0.002, "h-bonds") == (f"{period / 1000:.1e}", bond)
    assert fastest_bond(text, hbonds_constrained=False)[2] == "C1-H1"       # flexible: the faster function-1 X-H


def test_heavy_atom_not_lighter_than_its_hydrogens():
    """Factor 4 left ethanol's CH3 carbon at 2.94 amu beside hydrogens of 4.03 (the old floor was 1.5 amu):
    refused, naming the largest factor that works for it (3.7, as GROMACS's own mass-repartition-factor rule)."""
    text = (DATA / "topol.top").read_text()
    with pytest.raises(UserInputError, match=r"atom 1 \(C1\) would drop to 2\.938 amu .* lighter than its hydrogens "
                                             r"\(4\.032 amu\); use a factor of 3\.7 or less") as exc:
        repartition_text(text, 4.0)
    assert "\n" not in str(exc.value)
    assert repartition_text(text, 3.7)[1].molecules == {"MOL": 6}


def test_element_check_only_for_the_ml_atoms(tmp_path):
    """A pdb2gmx-style topology: a protein whose atom types come from GMXLIB (no at.num in the file) beside the
    ML ligand. The MDI module reads (or guesses from the masses) the elements of the mdi-ml-group atoms only, so
    only their types are checked: the protein passes, an ML atom without at.num is still refused, and ML atoms
    after a moleculetype the file does not define cannot be found (refused in one line)."""
    import re

    from mdi_mlmm.hosts.gromacs.host import hmr_topology

    text = (DATA / "topol.top").read_text()
    first = text.index("[ moleculetype ]")
    block = text[first:text.index("[ moleculetype ]", first + 1)].replace("MOL          3", "PROT         3")
    block = re.sub(r"(?m)^(\s+\d+\s+)(c3|oh|hc|h1|ho)\b", lambda m: m.group(1) + m.group(2).upper() + "X", block)
    text = text[:first] + block + text[first:].replace("MOL                  1\n", "PROT                 2\nMOL   1\n")
    (tmp_path / "topol.top").write_text(text)
    ml = list(range(18, 27))                                                 # the ligand after two proteins
    with pytest.raises(UserInputError, match="atom type C3X has no atomic number"):
        hmr_topology(tmp_path / "topol.top", tmp_path, 3.0, constrained=True, ml=True)     # every edited atom
    run = hmr_topology(tmp_path / "topol.top", tmp_path, 3.0, constrained=True, ml=True, ml_atoms=ml)
    assert run.name == "topol_hmr.top"
    with pytest.raises(UserInputError, match="atom type C3X has no atomic number"):
        repartition_text(text, 3.0, check_elements=range(9, 18))             # the second protein as the ML region
    gmxlib = text.replace("PROT                 2\n", "NA                   1\nPROT                 2\n")
    with pytest.raises(UserInputError, match="moleculetype NA of \\[ molecules \\] comes before them") as exc:
        repartition_text(gmxlib, 3.0, check_elements=ml)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("case, match", [
    ("factor", "would drop to"),                 # C1 (3 H) at factor 4.5: 12.01 - 3 * 3.528 = 1.43 amu
    ("twice", "repartitioned already"),
    ("lonely", "bonded to 0 heavy atoms"),
    ("name", "named 'X4'"),
    ("atnum", "has no atomic number"),
    ("water_only", "no moleculetype outside rigid water"),   # the solute in an #include-d file: not seen
])
def test_odd_topologies_refused_in_one_line(case, match):
    text = (DATA / "topol.top").read_text()
    factor, check = 3.0, False
    if case == "factor":
        factor = 4.5
    elif case == "twice":
        text = repartition_text(text, 3.0)[0]
    elif case == "lonely":
        text = text.replace("      1      4     1   0.10962 288905.200000\n", "")
    elif case == "name":
        text = text.replace("MOL     H4      7", "MOL     X4      7")
    elif case == "atnum":
        text = text.replace("hc             1   1.008000", "hc                1.008000")   # no at.num
        check = True
    elif case == "water_only":
        first = text.index("[ moleculetype ]")
        text = text[:first] + text[text.index("[ moleculetype ]", first + 1):].replace("MOL                  1\n", "")
    with pytest.raises(UserInputError, match=match) as exc:
        repartition_text(text, factor, check_elements=check)
    assert "\n" not in str(exc.value)


def test_time_step_policy_and_refusals():
    err = io.StringIO()
    check_timestep(4.0, constrained_xh=True, allow_large=False, stream=err, hmr=True)   # 4 fs with HMR: silent
    assert err.getvalue() == ""
    check_timestep(4.5, constrained_xh=True, allow_large=False, stream=err, hmr=True)
    assert "above 4 fs" in err.getvalue()
    with pytest.raises(UserInputError, match="5 fs limit"):
        check_timestep(5.5, constrained_xh=True, allow_large=False, hmr=True)
    with pytest.raises(UserInputError, match="4 fs limit"):                              # without HMR: as before
        check_timestep(4.5, constrained_xh=True, allow_large=False)
    assert check_mass_repartition(None, constrained_xh=False) is None
    assert check_mass_repartition(1, constrained_xh=False) is None                       # 1: off
    assert check_mass_repartition(3, constrained_xh=True, host="gromacs") == 3.0
    with pytest.raises(UserInputError, match="needs the X-H bonds constrained"):
        check_mass_repartition(3, constrained_xh=False, host="gromacs")
    with pytest.raises(UserInputError, match="GROMACS host only"):
        check_mass_repartition(3, constrained_xh=True, host="lammps")
    with pytest.raises(UserInputError, match="above 1"):
        check_mass_repartition(0.5, constrained_xh=True)


def test_cli_refusals(tmp_path):
    cmd = [sys.executable, "-m", "mdi_mlmm", "md", "--top", str(DATA / "topol.top"), "--gro", str(DATA / "conf.gro"),
           "--model", "mm", "--steps", "1", "--dt", "4", "--no-minimize", "--quiet", "--out", str(tmp_path / "x"),
           "--mass-repartition"]
    for extra, match in ((["--host", "gromacs"], "needs the X-H bonds constrained (--constraints h-bonds)"),
                         (["--host", "lammps", "--constraints", "h-bonds"], "GROMACS host only")):
        r = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and match in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "hydration", "--freesolv", "mobley_2310185", "--model", "mm",
                        "--host", "gromacs", "--mass-repartition", "--out", str(tmp_path / "h")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--mass-repartition needs the X-H bonds constrained" in r.stderr, r.stderr


def test_hydration_defaults_plan_and_resume(tmp_path):
    from mdi_mlmm import HydrationFreeEnergy
    from mdi_mlmm.protocol.plan import load_or_create

    with pytest.raises(UserInputError, match="GROMACS host only"):
        HydrationFreeEnergy(freesolv_id="mobley_2310185", host="lammps", constraints="h-bonds", mass_repartition=3)
    with pytest.raises(UserInputError, match="needs the X-H bonds constrained"):
        HydrationFreeEnergy(freesolv_id="mobley_2310185", host="gromacs", mass_repartition=3)
    with pytest.raises(UserInputError, match="needs the X-H bonds constrained"):   # the legs must be constrained
        HydrationFreeEnergy(freesolv_id="mobley_2310185", host="gromacs", route="endpoint", mass_repartition=3)
    kw = dict(freesolv_id="mobley_2310185", model="mm", host="gromacs", constraints="h-bonds", ns_per_window=0.01,
              sample_every=10)
    h = HydrationFreeEnergy(**kw, mass_repartition=3)
    assert h.timestep_fs == 4.0 and h.leg_timestep_fs == 4.0                        # the default dt with HMR
    assert HydrationFreeEnergy(**kw).timestep_fs == 2.0
    out = tmp_path / "run"
    plan, resumed = load_or_create(h.plan(out))
    assert not resumed and (plan.mass_repartition, plan.dt_fs) == (3.0, 4.0)
    assert json.loads((out / "plan.json").read_text())["mass_repartition"] == 3.0
    # resumed without the option: as it started (4 fs too); with another value: one line
    again, resumed = load_or_create(HydrationFreeEnergy(**kw).plan(out))
    assert resumed and (again.mass_repartition, again.dt_fs) == (3.0, 4.0)
    with pytest.raises(UserInputError, match=r"mass_repartition: 3\.0 on disk vs None now") as exc:
        load_or_create(HydrationFreeEnergy(**kw, mass_repartition=1, dt_fs=4.0).plan(out))
    assert "--mass-repartition 3" in str(exc.value) and "\n" not in str(exc.value)
    from mdi_mlmm.analysis.report import run_settings
    from mdi_mlmm.analysis.report import report_markdown
    from mdi_mlmm.analysis.results import ESTIMATORS, Estimate, HydrationResult

    settings = run_settings(plan)
    assert settings["mass_repartition"] == 3.0                                      # results.json records it
    r = HydrationResult(run_dir="x", model="mm", host="gromacs", temperature_K=298.15, windows=20,
                        ns_per_window=0.01, dG={k: Estimate(0.0, 0.0) for k in ESTIMATORS}, **settings)
    back = HydrationResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back.mass_repartition == 3.0 and "hydrogen masses × 3" in report_markdown(back)
    # the units carry it: every window (and the endpoint route's legs, through the same plan field)
    from mdi_mlmm.workflow.hydration import unit_specs

    system = {"root": str(tmp_path), "ml_atoms": list(range(9)),
              "solvated": {"top": "t.top", "gro": "c.gro", "ndx": "i.ndx"}, "gas": {"top": "g.top", "gro": "g.gro",
                                                                                  "ndx": "g.ndx"}}
    specs = unit_specs(plan, system, tmp_path / "eq.gro")
    assert specs and all(s.mass_repartition == 3.0 and s.constrain_hbonds and s.dt_fs == 4.0 for s in specs)


def test_lammps_units_refuse_hmr(tmp_path):
    from mdi_mlmm.hosts import lammps
    from mdi_mlmm.protocol.specs import GasSpec

    spec = GasSpec(host="lammps", model="zero", out_dir=str(tmp_path), top="t", gro="g", ml_indices=[0], steps=10,
                   dt_fs=4.0, temperature=300.0, sample_every=1, seed=1, constrain_hbonds=True, mass_repartition=3.0)
    with pytest.raises(UserInputError, match="GROMACS host only"):
        lammps.run_gas(spec)


@pytest.mark.gromacs_build
@pytest.mark.skipif(GMX is None, reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_solvated_4fs_hmr_md_grompp_clean(tmp_path):
    """`md --host gromacs --constraints h-bonds --mass-repartition --dt 4` (plain MM): grompp at maxwarn 0,
    the repartitioned topology run, a stable 1 ps."""
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "md", "--host", "gromacs", "--top", str(DATA / "topol.top"),
                        "--gro", str(DATA / "conf.gro"), "--model", "mm", "--steps", "250", "--dt", "4",
                        "--constraints", "h-bonds", "--mass-repartition", "--ensemble", "nve", "--no-minimize",
                        "--quiet", "--traj-every", "0", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.lower()                                   # 4 fs with HMR: no time-step warning
    grompp = (tmp_path / "md.grompp.out").read_text()
    assert "topol_hmr.top" in grompp and "WARNING" not in grompp
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mass_repartition"] == 3.0 and summary["dt_fs"] == 4.0
    assert 280 < summary["T_mean_K"] < 315
    assert "LINCS WARNING" not in (tmp_path / "md.log").read_text()


def _gas_of_ethanols(d: Path, n: int = 3) -> tuple[Path, Path]:
    """n³ ethanols (the test system's, GAFF) on a 1.6 nm grid, no water: a dilute gas whose energy conservation
    is the solute's own (in the solvated box the rigid water's dominates)."""
    text = (DATA / "topol.top").read_text()
    i = text.index("[ molecules ]")
    text = text[:i] + text[i:].replace("MOL                  1", f"MOL {n ** 3:20d}").replace("SOL                676", "")
    lines = (DATA / "conf.gro").read_text().splitlines()[2:11]
    xyz = np.array([[float(ln[20:28]), float(ln[28:36]), float(ln[36:44])] for ln in lines])
    xyz -= xyz.mean(0)
    out, k = [], 0
    for a in range(n):
        for b in range(n):
            for c in range(n):
                for ln, x in zip(lines, xyz + (np.array([a, b, c]) + 0.5) * 1.6):
                    k += 1
                    out.append(f"{(k - 1) // 9 + 1:5d}MOL  {ln[10:15]}{k:5d}{x[0]:8.3f}{x[1]:8.3f}{x[2]:8.3f}")
    (d / "topol.top").write_text(text)
    (d / "conf.gro").write_text("\n".join([f"{n ** 3} ethanols", f"{k:5d}", *out, f"{1.6 * n:10.5f}" * 3, ""]))
    return d / "topol.top", d / "conf.gro"


@pytest.mark.gromacs_build
@pytest.mark.skipif(GMX is None, reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_4fs_hmr_energy_conservation(tmp_path):
    """NVE, X–H constrained, the same 2 ps: the conserved energy's fluctuation at 4 fs with HMR against 2 fs
    (the Verlet error grows as dt²: 4× would be no better than plain 4 fs would be if it scaled ideally) and
    against 4 fs without HMR. Measured (27 ethanols, seeds 1-4): HMR/2 fs 2.8-3.6, HMR/plain 4 fs 0.58-0.78."""
    from mdi_mlmm.hosts.gromacs import host

    top, gro = _gas_of_ethanols(tmp_path)

    def run(tag, dt, steps, hmr):
        r = host.run_md(top, gro, None, model="mm", steps=steps, dt_fs=dt, ensemble="nve", out_dir=tmp_path / tag,
                        mdp_overrides={"nstcalcenergy": 1, "nstenergy": 1}, constraints="h-bonds",
                        mass_repartition=hmr, progress=False, ntomp=1, traj_every=0, seed=3)
        e = r.energies.get("Conserved En.", r.energies["Total Energy"])
        return float(np.std(e)), float(np.std(r.energies["Kinetic En."]))

    ref, ref_k = run("2fs", 2.0, 1000, None)
    hmr, hmr_k = run("4fs_hmr", 4.0, 500, 3.0)
    plain, _ = run("4fs", 4.0, 500, None)
    print(f"std(E_conserved), kJ/mol: 2 fs {ref:.3f}, 4 fs HMR {hmr:.3f}, 4 fs {plain:.3f}; "
          f"std(E_kin) 2 fs {ref_k:.2f}, 4 fs HMR {hmr_k:.2f}")
    assert hmr < 0.9 * plain                  # HMR makes 4 fs conserve energy better
    assert hmr < 4.0 * ref                    # better than the dt² growth of the 2 fs run's error
    assert hmr < 0.2 * hmr_k                  # small against the kinetic energy's own fluctuation




@pytest.mark.gromacs_build
@pytest.mark.skipif(GMX is None, reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_masses_do_not_reach_the_engine(tmp_path, ani):
    """ML/MM (ANI-2x) at 4 fs with HMR: the MDI module takes the elements from the atom types (not the changed
    masses), so E_ML at every frame is the model's energy of that frame's coordinates."""
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile

    from mdi_mlmm.hosts.gromacs import host

    host.run_md(DATA / "topol.top", DATA / "conf.gro", "resname MOL", model="ani2x", steps=10, dt_fs=4.0,
                ensemble="nve", out_dir=tmp_path, constraints="h-bonds", mass_repartition=3.0, ntomp=1,
                mdp_overrides={"nstcalcenergy": 1, "nstenergy": 1, "nstxout": 1},
                engine_args=["--call-log", str(tmp_path / "calls.csv"), "--dtype", "float64"])
    assert "elements were guessed from masses" not in (tmp_path / "md.grompp.out").read_text()
    with TRRFile(str(tmp_path / "md.trr")) as f:
        frames = [np.array(fr.x, dtype=np.float64) for fr in f if fr.hasx]
    assert len(frames) == 11
    calls = np.loadtxt(tmp_path / "calls.csv", delimiter=",", skiprows=1, ndmin=2)
    z = ["C", "C", "O", "H", "H", "H", "H", "H", "H"]
    e_direct = np.array([float(ani.compute(z, x[:9] * 10).energy) for x in frames])
    assert np.allclose(calls[: len(frames), 2], e_direct, rtol=0, atol=1e-9)


def test_mm_window_runs_the_repartitioned_topology(tmp_path, stock_gmx):
    """A λ window unit (plain MM, stock gmx) with ``mass_repartition``: its grompp reads ``topol_hmr.top``
    written into the window's directory, at 4 fs with h-bonds."""

    from mdi_mlmm.hosts.gromacs import alchemy
    from mdi_mlmm.protocol.schedule import decoupling_schedule
    from mdi_mlmm.protocol.specs import WindowSpec

    spec = WindowSpec(host="gromacs", model="mm", out_dir=str(tmp_path / "w"), top=str(DATA / "topol.top"),
                      gro=str(DATA / "conf.gro"), ndx=str(DATA / "index.ndx"), ml_indices=list(range(9)), steps=20,
                      dt_fs=4.0, temperature=298.15, sample_every=10, seed=1, state=3, schedule=decoupling_schedule(),
                      constrain_hbonds=True, mass_repartition=3.0)
    alchemy.run_window(spec)
    w = tmp_path / "w"
    assert (w / "done.json").exists() and (w / "topol_hmr.top").read_text().startswith("; hydrogen mass")
    grompp = (w / "prod.grompp.out").read_text()
    assert "topol_hmr.top" in grompp and "WARNING" not in grompp
    mdp = {k.strip(): v.split(";")[0].strip() for k, v in (ln.split("=", 1) for ln in
                                                             (w / "prod.mdp").read_text().splitlines() if "=" in ln)}
    assert (float(mdp["dt"]), mdp["constraints"]) == (0.004, "h-bonds")

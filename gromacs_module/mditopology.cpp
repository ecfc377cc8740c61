/*
 * mdi_mlmm GROMACS module: grompp-time topology processing for the ML group.
 * Part of mdi_mlmm (MIT licence).
 */
#include "gmxpre.h"

#include "mditopology.h"

#include "mdimodule.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "gromacs/fileio/warninp.h"
#include "gromacs/math/invertmatrix.h"
#include "gromacs/math/vec.h"
#include "gromacs/mdtypes/inputrec.h"
#include "gromacs/mdtypes/md_enums.h"
#include "gromacs/pbcutil/pbc.h"
#include "gromacs/topology/ifunc.h"
#include "gromacs/topology/mtop_lookup.h"
#include "gromacs/topology/mtop_util.h"
#include "gromacs/topology/topology.h"
#include "gromacs/utility/exceptions.h"
#include "gromacs/utility/listoflists.h"
#include "gromacs/utility/logger.h"
#include "gromacs/utility/stringutil.h"

namespace gmx
{

namespace
{

//! Interaction types among ML atoms that are kept although they carry energy: restraints.
bool isKeptType(int ftype)
{
    switch (ftype)
    {
        case F_CONNBONDS:
        case F_HARMONIC: // bond type 6, used for restraints; creates no exclusions
        case F_RESTRBONDS:
        case F_POSRES:
        case F_FBPOSRES:
        case F_DISRES:
        case F_DISRESVIOL:
        case F_ORIRES:
        case F_ORIRESDEV:
        case F_ANGRES:
        case F_ANGRESZ:
        case F_DIHRES:
        case F_DIHRESVIOL: return true;
        default: return false;
    }
}

//! Slice molecules [first, first+n) of a block into a new block.
gmx_molblock_t sliceBlock(const gmx_molblock_t& mb, int first, int n, int atomsPerMol)
{
    gmx_molblock_t out;
    out.type = mb.type;
    out.nmol = n;
    auto slice = [&](const std::vector<RVec>& v) {
        if (v.empty())
        {
            return std::vector<RVec>();
        }
        return std::vector<RVec>(v.begin() + first * atomsPerMol, v.begin() + (first + n) * atomsPerMol);
    };
    out.posres_xA = slice(mb.posres_xA);
    out.posres_xB = slice(mb.posres_xB);
    return out;
}

/*! \brief Append a deep copy of moltype \p src; returns its index.
 *
 * gmx_moltype_t owns raw t_atoms memory and only has a shallow copy constructor,
 * so the vector is rebuilt from deep copies (copy_moltype).
 */
int duplicateMoltype(gmx_mtop_t* mtop, int src)
{
    const size_t             n = mtop->moltype.size();
    std::vector<gmx_moltype_t> tmp(n + 1);
    for (size_t i = 0; i < n; i++)
    {
        copy_moltype(&mtop->moltype[i], &tmp[i]);
    }
    copy_moltype(&mtop->moltype[src], &tmp[n]);
    mtop->moltype.resize(n + 1);
    for (size_t i = 0; i < n + 1; i++)
    {
        copy_moltype(&tmp[i], &mtop->moltype[i]);
    }
    return static_cast<int>(n);
}

//! Element from mass (fallback when the topology has no atomic numbers).
int atomicNumberFromMass(real m)
{
    struct E
    {
        int    z;
        double m;
    };
    static const E table[] = { { 1, 1.008 },   { 3, 6.94 },    { 5, 10.81 },  { 6, 12.011 },
                               { 7, 14.007 },  { 8, 15.999 },  { 9, 18.998 }, { 11, 22.990 },
                               { 12, 24.305 }, { 14, 28.085 }, { 15, 30.974 }, { 16, 32.06 },
                               { 17, 35.45 },  { 19, 39.098 }, { 20, 40.078 }, { 35, 79.904 },
                               { 53, 126.904 } };
    for (const auto& e : table)
    {
        if (std::fabs(m - e.m) < 0.3)
        {
            return e.z;
        }
    }
    return -1;
}

void report(const MDLogger* logger, const std::string& text)
{
    if (logger)
    {
        GMX_LOG(logger->info).asParagraph().appendText(text);
    }
    else
    {
        fprintf(stderr, "%s\n", text.c_str());
    }
}

} // namespace

std::vector<std::int64_t> mdiPreprocessTopology(gmx_mtop_t*                      mtop,
                                                const std::vector<std::int64_t>& mlIndices,
                                                const MDLogger*                  logger,
                                                warninp*                         wi)
{
    const int         natoms = mtop->natoms;
    std::vector<char> isML(natoms, 0);
    for (auto i : mlIndices)
    {
        if (i < 0 || i >= natoms)
        {
            GMX_THROW(InconsistentInputError(formatString(
                    "mdi-ml-group: atom index %ld is outside the system (%d atoms)", long(i), natoms)));
        }
        isML[i] = 1;
    }

    // 1. Give every molecule with ML atoms its own block (nmol = 1) and its own molecule type.
    std::vector<int> molsOfType(mtop->moltype.size(), 0);
    for (const auto& mb : mtop->molblock)
    {
        molsOfType[mb.type] += mb.nmol;
    }
    std::vector<gmx_molblock_t> oldBlocks = mtop->molblock;
    std::vector<gmx_molblock_t> newBlocks;
    std::vector<char>           blockIsML;
    int                         globalStart = 0;
    int                         numMLMolecules = 0;
    for (const auto& mb : oldBlocks)
    {
        const int nat      = mtop->moltype[mb.type].atoms.nr;
        int       runStart = 0;
        for (int m = 0; m < mb.nmol; m++)
        {
            bool hasML = false;
            for (int a = 0; a < nat && !hasML; a++)
            {
                hasML = isML[globalStart + m * nat + a] != 0;
            }
            if (!hasML)
            {
                continue;
            }
            if (m > runStart)
            {
                newBlocks.push_back(sliceBlock(mb, runStart, m - runStart, nat));
                blockIsML.push_back(0);
            }
            gmx_molblock_t one = sliceBlock(mb, m, 1, nat);
            if (molsOfType[mb.type] > 1)
            {
                molsOfType[mb.type]--;
                one.type = duplicateMoltype(mtop, mb.type);
                molsOfType.push_back(1);
            }
            newBlocks.push_back(one);
            blockIsML.push_back(1);
            numMLMolecules++;
            runStart = m + 1;
        }
        if (mb.nmol > runStart)
        {
            newBlocks.push_back(sliceBlock(mb, runStart, mb.nmol - runStart, nat));
            blockIsML.push_back(0);
        }
        globalStart += nat * mb.nmol;
    }
    mtop->molblock = newBlocks;
    mtop->finalize();

    // A parameter-less type for connection bonds that replace removed chemical bonds.
    int connBondType = -1;
    auto getConnBondType = [&]() {
        if (connBondType < 0)
        {
            t_iparams p;
            std::memset(&p, 0, sizeof(p));
            mtop->ffparams.functype.push_back(F_CONNBONDS);
            mtop->ffparams.iparams.push_back(p);
            connBondType = mtop->ffparams.numTypes() - 1;
        }
        return connBondType;
    };

    // 2. Remove ML-only bonded terms, exclude all ML-ML pairs.
    std::map<int, int> removed, keptMixed, keptConstraints;
    int                numConnBonds = 0, numExclusionsAdded = 0;
    for (size_t b = 0; b < mtop->molblock.size(); b++)
    {
        if (!blockIsML[b])
        {
            continue;
        }
        gmx_moltype_t* mt    = &mtop->moltype[mtop->molblock[b].type];
        const int      start = mtop->moleculeBlockIndices[b].globalAtomStart;
        const int      nat   = mt->atoms.nr;
        auto           ml    = [&](int localAtom) { return isML[start + localAtom] != 0; };

        for (int ftype = 0; ftype < F_NRE; ftype++)
        {
            const int nral = NRAL(ftype);
            if (mt->ilist[ftype].empty() || nral < 2)
            {
                continue;
            }
            const bool energyTerm = (interaction_function[ftype].flags & IF_BOND) != 0 && !isKeptType(ftype);
            const bool constraint = (interaction_function[ftype].flags & IF_CONSTRAINT) != 0;
            std::vector<int> kept;
            const auto&      ia = mt->ilist[ftype].iatoms;
            for (size_t j = 0; j < ia.size(); j += nral + 1)
            {
                int numML = 0;
                for (int k = 1; k <= nral; k++)
                {
                    numML += ml(ia[j + k]) ? 1 : 0;
                }
                if (energyTerm && numML == nral)
                {
                    removed[ftype]++;
                    if (IS_CHEMBOND(ftype) && ftype != F_CONNBONDS)
                    {
                        const int pair[2] = { ia[j + 1], ia[j + 2] };
                        mt->ilist[F_CONNBONDS].push_back(getConnBondType(), 2, pair);
                        numConnBonds++;
                    }
                    continue;
                }
                if (energyTerm && numML > 0)
                {
                    keptMixed[ftype]++;
                }
                if (constraint && numML > 0)
                {
                    keptConstraints[ftype]++;
                }
                kept.insert(kept.end(), ia.begin() + j, ia.begin() + j + nral + 1);
            }
            mt->ilist[ftype].iatoms.swap(kept);
        }

        std::vector<int> mlLocal;
        for (int a = 0; a < nat; a++)
        {
            if (ml(a))
            {
                mlLocal.push_back(a);
            }
        }
        ListOfLists<int> excls;
        for (int a = 0; a < nat; a++)
        {
            const auto    old = mt->excls[a];
            std::set<int> s(old.begin(), old.end());
            if (ml(a))
            {
                const size_t before = s.size();
                s.insert(mlLocal.begin(), mlLocal.end());
                numExclusionsAdded += static_cast<int>(s.size() - before);
            }
            std::vector<int> v(s.begin(), s.end());
            excls.pushBack(v);
        }
        mt->excls = std::move(excls);
    }
    if (numMLMolecules > 1)
    {
        // ML atoms in different molecules: exclude them from each other as well.
        for (auto i : mlIndices)
        {
            mtop->intermolecularExclusionGroup.push_back(static_cast<int>(i));
        }
    }
    mtop->finalize();

    // 3. Atomic numbers, sanity checks.
    std::vector<std::int64_t> atomicNumbers;
    double                    mlCharge = 0;
    int                       molb     = 0;
    bool                      usedMass = false;
    for (auto i : mlIndices)
    {
        const t_atom& atom = mtopGetAtomParameters(*mtop, static_cast<int>(i), &molb);
        if (atom.ptype == ParticleType::VSite || atom.m <= 0)
        {
            GMX_THROW(InconsistentInputError(formatString(
                    "mdi-ml-group: atom %ld is a virtual site or massless; the ML group must hold "
                    "real atoms only",
                    long(i + 1))));
        }
        int z = atom.atomnumber;
        if (z <= 0)
        {
            z        = atomicNumberFromMass(atom.m);
            usedMass = true;
        }
        if (z <= 0)
        {
            GMX_THROW(InconsistentInputError(formatString(
                    "mdi-ml-group: cannot determine the element of atom %ld (mass %g); give atomic "
                    "numbers in the [ atomtypes ] section",
                    long(i + 1),
                    atom.m)));
        }
        atomicNumbers.push_back(z);
        mlCharge += atom.q;
    }

    std::string text = formatString(
            "MDI ML/MM: %zu ML atoms in %d molecule(s), net MM charge of the ML atoms %.4f e.\n"
            "  Removed among ML atoms (the ML potential replaces them):",
            mlIndices.size(),
            numMLMolecules,
            mlCharge);
    if (removed.empty())
    {
        text += " nothing";
    }
    for (const auto& kv : removed)
    {
        text += formatString(" %d %s,", kv.second, interaction_function[kv.first].longname);
    }
    text += formatString(
            "\n  Added %d exclusions (all ML-ML pairs now excluded; PME exclusion correction "
            "removes their reciprocal part); %d chemical bonds kept as connection bonds.\n"
            "  Kept: ML charges and LJ for ML-MM interactions",
            numExclusionsAdded,
            numConnBonds);
    for (const auto& kv : keptConstraints)
    {
        text += formatString(", %d %s", kv.second, interaction_function[kv.first].longname);
    }
    text += ".";
    report(logger, text);
    if (!keptMixed.empty())
    {
        std::string msg =
                "MDI ML/MM: bonded terms spanning ML and MM atoms are kept as MM terms (no link-atom "
                "treatment):";
        for (const auto& kv : keptMixed)
        {
            msg += formatString(" %d %s", kv.second, interaction_function[kv.first].longname);
        }
        if (wi)
        {
            warning_note(wi, msg);
        }
        else
        {
            report(logger, msg);
        }
    }
    if (usedMass && wi)
    {
        warning_note(wi, "MDI ML/MM: some ML atoms have no atomic number; elements were guessed from masses");
    }
    return atomicNumbers;
}

namespace
{

std::vector<char>       s_gromppMlMask;     // global atom -> ML atom (this grompp run)
std::vector<int>        s_gromppMlIndices;  // sorted global indices
MdiGromppElectrostatics s_gromppElectrostatics;

} // namespace

RVec mdiFractionalExtent(ArrayRef<const RVec> x, const matrix box)
{
    // fractional coordinates (box rows a, b, c; GROMACS boxes are lower triangular)
    matrix inv;
    gmx::invertBoxMatrix(box, inv);
    RVec span(0, 0, 0);
    for (int d = 0; d < DIM; d++)
    {
        double lo = 1e30, hi = -1e30;
        for (const RVec& xi : x)
        {
            double f = 0;
            for (int k = 0; k < DIM; k++)
            {
                f += xi[k] * inv[k][d];
            }
            lo = std::min(lo, f);
            hi = std::max(hi, f);
        }
        span[d] = x.empty() ? 0 : static_cast<real>(hi - lo);
    }
    return span;
}

void mdiSetGromppMlGroup(int numAtoms, const std::vector<std::int64_t>& mlIndices)
{
    s_gromppMlMask.assign(numAtoms, 0);
    s_gromppMlIndices.clear();
    for (auto i : mlIndices)
    {
        if (i >= 0 && i < numAtoms)
        {
            s_gromppMlMask[i] = 1;
            s_gromppMlIndices.push_back(static_cast<int>(i));
        }
    }
}

bool mdiIsMlPair(int a, int b)
{
    const int n = static_cast<int>(s_gromppMlMask.size());
    return a >= 0 && b >= 0 && a < n && b < n && s_gromppMlMask[a] && s_gromppMlMask[b];
}

const MdiGromppElectrostatics& mdiGromppElectrostatics()
{
    return s_gromppElectrostatics;
}

void mdiSetGromppElectrostatics(const gmx_mtop_t&    mtop,
                                const t_inputrec&    ir,
                                ArrayRef<const RVec> x,
                                const matrix         box,
                                warninp*             wi)
{
    if (s_gromppMlIndices.empty())
    {
        return; // mdi-active = no
    }
    const bool freeEnergy = ir.efep != FreeEnergyPerturbationType::No;
    s_gromppElectrostatics.ewald      = EEL_PME_EWALD(ir.coulombtype);
    s_gromppElectrostatics.rCoulomb   = ir.rcoulomb;
    s_gromppElectrostatics.ewaldRtol  = ir.ewald_rtol;
    s_gromppElectrostatics.epsilonR   = ir.epsilon_r;
    s_gromppElectrostatics.freeEnergy = freeEnergy;
    s_gromppElectrostatics.chargeA.clear();
    s_gromppElectrostatics.chargeB.clear();
    int molb = 0;
    for (int i : s_gromppMlIndices)
    {
        const t_atom& atom = mtopGetAtomParameters(mtop, i, &molb);
        s_gromppElectrostatics.chargeA.push_back(atom.q);
        s_gromppElectrostatics.chargeB.push_back(atom.qB);
    }
    if (freeEnergy)
    {
        const t_lambda& fep = *ir.fepvals;
        s_gromppElectrostatics.coulombLambda =
                fep.init_lambda >= 0
                        ? fep.init_lambda
                        : fep.all_lambda[FreeEnergyPerturbationCouplingType::Coul][fep.init_fep_state];
        if (fep.delta_lambda != 0)
        {
            warning_error(wi,
                          "mdi-active: free-energy runs with a changing lambda (delta-lambda != 0) "
                          "are not supported with an ML region");
        }
        // The module's correction of the ML-ML exclusions beyond the cut-off makes the
        // free-energy kernel correct excluded perturbed pairs inside the cut-off only; that is
        // right for ML-ML pairs only, so no other atom may be perturbed.
        int numOther = 0, first = -1;
        for (const AtomProxy atomP : AtomRange(mtop))
        {
            const int i = atomP.globalAtomNumber();
            if (PERTURBED(atomP.atom()) && !(i < static_cast<int>(s_gromppMlMask.size()) && s_gromppMlMask[i]))
            {
                numOther++;
                first = first < 0 ? i : first;
            }
        }
        if (numOther > 0)
        {
            warning_error(wi,
                          formatString("mdi-active with free-energy: %d perturbed atoms are not in the "
                                       "ML group (first: atom %d); only ML atoms may be perturbed",
                                       numOther,
                                       first + 1));
        }
    }
    if (EVDW_PME(ir.vdwtype))
    {
        warning_error(wi,
                      "mdi-active: LJ-PME (vdwtype = PME) is not supported with an ML region (the "
                      "ML-ML LJ reciprocal-space part would stay in); use vdwtype = cut-off");
    }
    if (EEL_PME_EWALD(ir.coulombtype) && ir.epsilon_r == 0)
    {
        warning_error(wi, "mdi-active: epsilon-r = 0 is not supported with an ML region");
    }

    // The ML molecule made whole along a minimum spanning tree of minimum-image distances
    // (as mdrun's module does), then its extent along each box vector.
    t_pbc pbc;
    set_pbc(&pbc, ir.pbcType, box);
    const int         n = static_cast<int>(s_gromppMlIndices.size());
    std::vector<RVec> w(n);
    std::vector<char> placed(n, 0);
    std::vector<real> best(n, 1e30);
    std::vector<int>  parent(n, -1);
    w[0]      = x[s_gromppMlIndices[0]];
    placed[0] = 1;
    int current = 0;
    for (int step = 1; step < n; step++)
    {
        int  next = -1;
        real nd   = 1e30;
        for (int j = 0; j < n; j++)
        {
            if (placed[j])
            {
                continue;
            }
            rvec dx;
            pbc_dx_aiuc(&pbc, x[s_gromppMlIndices[j]], x[s_gromppMlIndices[current]], dx);
            if (norm2(dx) < best[j])
            {
                best[j]   = norm2(dx);
                parent[j] = current;
            }
            if (best[j] < nd)
            {
                nd   = best[j];
                next = j;
            }
        }
        rvec dx;
        pbc_dx_aiuc(&pbc, x[s_gromppMlIndices[next]], x[s_gromppMlIndices[parent[next]]], dx);
        rvec_add(w[parent[next]], dx, w[next]);
        placed[next] = 1;
        current      = next;
    }
    double dmax = 0;
    for (int i = 0; i < n; i++)
    {
        for (int j = i + 1; j < n; j++)
        {
            rvec d;
            rvec_sub(w[j], w[i], d);
            dmax = std::max(dmax, std::sqrt(static_cast<double>(norm2(d))));
        }
    }
    if (ir.pbcType != PbcType::No)
    {
        const RVec span = mdiFractionalExtent(w, box);
        for (int d = 0; d < DIM; d++)
        {
            if (span[d] >= 0.5)
            {
                warning_error(wi,
                              formatString("mdi-ml-group: the ML molecule spans %.2f of the box "
                                           "along box vector %c, half the box or more: its ML-ML "
                                           "exclusions would reach periodic images; use a larger box",
                                           span[d],
                                           "abc"[d]));
            }
        }
    }
    fprintf(stderr,
            "MDI ML/MM: ML molecule of %d atoms, largest intramolecular distance %.3f nm; %s\n",
            n,
            dmax,
            s_gromppElectrostatics.ewald
                    ? formatString("mdrun removes the ML-ML reciprocal-space Coulomb of pairs beyond "
                                   "rcoulomb = %g nm in the MDI module",
                                   ir.rcoulomb)
                              .c_str()
                    : "no ML-ML Ewald correction by the module (no PME)");
}

} // namespace gmx

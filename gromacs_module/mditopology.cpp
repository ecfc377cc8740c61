/*
 * mdi_mlmm GROMACS module: grompp-time topology processing for the ML group.
 * Part of mdi_mlmm (MIT licence).
 */
#include "gmxpre.h"

#include "mditopology.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "gromacs/fileio/warninp.h"
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

} // namespace gmx

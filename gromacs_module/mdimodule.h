/*
 * mdi_mlmm GROMACS module: ML/MM coupling through the MolSSI Driver Interface.
 *
 * Part of mdi_mlmm (MIT licence). This directory is copied into a GROMACS
 * source tree as src/gromacs/applied_forces/mdi by mdi_mlmm/hosts/gromacs/inject.py.
 *
 * Public entry points used by the (minimally modified) GROMACS sources:
 *   - MdiModuleInfo::create()        registered in MDModules (mdrun/mdmodules.cpp)
 *   - mdiConsumeCommandLineOption()  called by gmx mdrun before option parsing
 */
#ifndef MDI_MLMM_GMX_MDIMODULE_H
#define MDI_MLMM_GMX_MDIMODULE_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gromacs/math/vectypes.h"
#include "gromacs/utility/arrayref.h"
#include "gromacs/utility/real.h"

struct gmx_mtop_t;
struct t_inputrec;
struct warninp;

namespace gmx
{

class IMDModule;

//! Information about the MDI (ML/MM) module.
struct MdiModuleInfo
{
    //! Creates the module (inactive unless mdi-active = yes in the mdp/tpr).
    static std::unique_ptr<IMDModule> create();
    //! Name of the module (also the mdp option prefix "mdi-").
    static const std::string name_;
};

/*! \brief Remove "-mdi <options>" (the MDI convention) from mdrun's argv.
 *
 * The options string is remembered for the module; argc/argv are compacted so
 * that GROMACS's own option parsing never sees it. Also accepts "-mdi=<options>".
 */
void mdiConsumeCommandLineOption(int* argc, char* argv[]);

//! Whether mdrun was given -mdi.
bool mdiCommandLineGiven();

//! The string given to mdrun -mdi (empty when not given).
const std::string& mdiCommandLineOptions();

/* grompp-time hooks, called from grompp.cpp (anchored edits of mdi_mlmm/hosts/gromacs/inject.py).
 * They act only when this grompp run has mdi-active = yes. */

//! grompp: the ML group (global indices) of this run, recorded by the module's topology step.
void mdiSetGromppMlGroup(int numAtoms, const std::vector<std::int64_t>& mlIndices);

/*! \brief grompp: whether global atoms a and b are both ML atoms. Their exclusion is exempt
 * from grompp's "excluded atoms beyond the cut-off" check: the module removes the ML-ML
 * reciprocal-space Coulomb beyond the cut-off itself. */
bool mdiIsMlPair(int a, int b);

/*! \brief grompp: take the electrostatics settings for the tpr, and check the ML region
 * (whole molecule spanning less than half the box; no LJ-PME; free-energy runs only for
 * ML molecules narrower than rcoulomb). Errors go to \p wi. */
void mdiSetGromppElectrostatics(const gmx_mtop_t&   mtop,
                                const t_inputrec&   ir,
                                ArrayRef<const RVec> x,
                                const matrix        box,
                                warninp*            wi);

/*! \brief Extent (in box units, along each box vector) of the whole molecule \p x: an ML molecule
 * must span less than 0.5 along every box vector, or its ML-ML exclusions would reach periodic
 * images (the kernels correct an excluded pair through its minimum image). */
RVec mdiFractionalExtent(ArrayRef<const RVec> x, const matrix box);

//! Electrostatics settings recorded by mdiSetGromppElectrostatics().
struct MdiGromppElectrostatics
{
    bool   ewald     = false; //!< module corrects far ML-ML exclusions (PME/Ewald Coulomb)
    double rCoulomb  = 0;     //!< nm
    double ewaldRtol = 0;
    double epsilonR  = 1;
    bool   freeEnergy     = false; //!< free-energy run (ML charges may differ in states A and B)
    double coulombLambda  = 0;     //!< the run's (constant) Coulomb lambda
    std::vector<double> chargeA, chargeB; //!< ML atoms' charges in states A and B (e)
};
const MdiGromppElectrostatics& mdiGromppElectrostatics();

/*! \brief mdrun: the distance (squared, nm^2) up to which the free-energy kernel corrects the
 * reciprocal-space part of excluded perturbed pairs. GROMACS: any distance in its pair list
 * (\p maxAllowedCutoffSquared; it stops on such pairs beyond rlist). When the MDI module
 * corrects the ML-ML exclusions beyond the cut-off itself (only ML atoms are perturbed in
 * such runs, grompp checks), the kernel stops at \p rCoulomb, as the nbnxm kernels do. */
real mdiFepExcludedPairCutoffSquared(real maxAllowedCutoffSquared, real rCoulomb);

/*! \brief mdrun, start of do_force (hooked in sim_util.cpp): send this step's ML coordinates to
 * the engine before the MM work, so the model runs while GROMACS computes the MM forces.
 * Does nothing without an active MDI force provider. */
void mdiEarlyCoordinates(ArrayRef<const RVec> x, const matrix box);

//! mdrun: set by the MDI force provider when it corrects the far ML-ML exclusions of a free-energy run.
void mdiSetFepExclusionsWithinCutoff(bool on);

} // namespace gmx

#endif

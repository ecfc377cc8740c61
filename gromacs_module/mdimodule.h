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

#include <memory>
#include <string>

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

} // namespace gmx

#endif

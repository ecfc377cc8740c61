/*
 * mdi_mlmm GROMACS module: the IMDModule that ties options, grompp processing
 * and the MDI force provider into GROMACS's MDModules.
 * Part of mdi_mlmm (MIT licence).
 */
#include "gmxpre.h"

#include "mdimodule.h"

#include <memory>

#include "gromacs/domdec/localatomsetmanager.h"
#include "gromacs/ewald/pme.h"
#include "gromacs/pbcutil/pbc.h"
#include "gromacs/mdtypes/commrec.h"
#include "gromacs/mdtypes/imdmodule.h"
#include "gromacs/mdtypes/imdoutputprovider.h"
#include "gromacs/mdtypes/iforceprovider.h"
#include "gromacs/utility/exceptions.h"
#include "gromacs/utility/keyvaluetreebuilder.h"
#include "gromacs/utility/logger.h"
#include "gromacs/utility/mdmodulesnotifiers.h"
#include "gromacs/utility/stringutil.h"

#include "mdiforceprovider.h"
#include "mdioptions.h"

namespace gmx
{

namespace
{

class MdiOutputProvider final : public IMDOutputProvider
{
public:
    void initOutput(FILE* /*fplog*/, int /*nfile*/, const t_filenm /*fnm*/[], bool /*bAppendFiles*/, const gmx_output_env_t* /*oenv*/) override
    {
    }
    void finishOutput() override {}
};

class MdiModule final : public IMDModule
{
public:
    void subscribeToPreProcessingNotifications(MDModulesNotifiers* notifiers) override
    {
        if (!options_.active())
        {
            return;
        }
        auto& n = notifiers->preProcessingNotifier_;
        n.subscribe([this](const MDLogger& logger) { options_.setLogger(logger); });
        n.subscribe([this](warninp* wi) { options_.setWarninp(wi); });
        n.subscribe([this](const IndexGroupsAndNames& groups) { options_.setGroupIndices(groups); });
        n.subscribe([this](gmx_mtop_t* mtop) { options_.modifyTopology(mtop); });
        n.subscribe([this](KeyValueTreeObjectBuilder builder) {
            options_.writeInternalParametersToKvt(builder);
        });
    }

    void subscribeToSimulationSetupNotifications(MDModulesNotifiers* notifiers) override
    {
        if (!options_.active())
        {
            if (mdiCommandLineGiven())
            {
                GMX_THROW(InconsistentInputError(
                        "mdrun -mdi was given, but the tpr was not made with mdi-active = yes"));
            }
            return;
        }
        if (!mdiCommandLineGiven())
        {
            GMX_THROW(InconsistentInputError(
                    "The tpr has mdi-active = yes: run mdrun with -mdi \"-role DRIVER -name "
                    "gromacs -method TCP -port PORT\" and start the ML engine"));
        }
        auto& n = notifiers->simulationSetupNotifier_;
        n.subscribe([this](const KeyValueTreeObject& tree) { options_.readInternalParametersFromKvt(tree); });
        n.subscribe([this](const MDLogger& logger) { logger_ = &logger; });
        n.subscribe([this](LocalAtomSetManager* manager) {
            std::vector<index> idx(options_.parameters().mlIndices_.begin(),
                                   options_.parameters().mlIndices_.end());
            mlAtoms_ = std::make_unique<LocalAtomSet>(manager->add(idx));
        });
        n.subscribe([this](const PbcType& pbc) { pbcType_ = pbc; });
        n.subscribe([](const t_commrec& cr) {
            if (cr.nnodes > 1)
            {
                GMX_THROW(InconsistentInputError(formatString(
                        "MDI ML/MM supports a single rank only, but mdrun uses %d ranks: run "
                        "mdrun with -ntmpi 1 (OpenMP threads via -ntomp are fine)",
                        cr.nnodes)));
            }
        });
        // E_ML goes to the F_EQM energy term ("E_ML" in this build's .edr)
        n.subscribe([](MDModulesEnergyOutputToQMMMRequestChecker* request) {
            request->energyOutputToQMMM_ = true;
        });
        n.subscribe([](SeparatePmeRanksPermitted* pmeRanks) {
            pmeRanks->disablePmeRanks("Separate PME-only ranks are not compatible with MDI ML/MM");
        });
    }

    IMdpOptionProvider* mdpOptionProvider() override { return &options_; }
    IMDOutputProvider*  outputProvider() override { return &outputProvider_; }

    void initForceProviders(ForceProviders* forceProviders) override
    {
        if (!options_.active())
        {
            return;
        }
        GMX_RELEASE_ASSERT(mlAtoms_ && logger_, "MDI module was not set up");
        forceProvider_ = std::make_unique<MdiForceProvider>(
                options_.parameters(), *mlAtoms_, pbcType_, *logger_, mdiCommandLineOptions());
        forceProviders->addForceProvider(forceProvider_.get());
    }

private:
    MdiOptions                        options_;
    MdiOutputProvider                 outputProvider_;
    std::unique_ptr<LocalAtomSet>     mlAtoms_;
    PbcType                           pbcType_ = PbcType::Xyz;
    const MDLogger*                   logger_  = nullptr;
    std::unique_ptr<MdiForceProvider> forceProvider_;
};

} // namespace

std::unique_ptr<IMDModule> MdiModuleInfo::create()
{
    return std::make_unique<MdiModule>();
}

const std::string MdiModuleInfo::name_ = "mdi";

} // namespace gmx

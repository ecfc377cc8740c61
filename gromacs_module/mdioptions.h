/*
 * mdi_mlmm GROMACS module: mdp options and grompp-time processing.
 * Part of mdi_mlmm (MIT licence).
 */
#ifndef MDI_MLMM_GMX_MDIOPTIONS_H
#define MDI_MLMM_GMX_MDIOPTIONS_H

#include <cstdint>
#include <string>
#include <vector>

#include "gromacs/mdtypes/imdpoptionprovider.h"
#include "gromacs/utility/real.h"

struct gmx_mtop_t;
struct warninp;

namespace gmx
{

class IndexGroupsAndNames;
class KeyValueTreeObject;
class KeyValueTreeObjectBuilder;
class MDLogger;

//! Module name; also the prefix of the mdp options (mdi-active, mdi-ml-group, ...).
extern const std::string c_mdiModuleName;

//! Parameters of the MDI module: mdp options plus internal data stored in the tpr.
struct MdiParameters
{
    //! mdi-active: couple the ML group to an MDI engine
    bool active_ = false;
    //! mdi-ml-group: index group with the ML atoms
    std::string mlGroup_;
    //! mdi-accept-timeout (s): how long mdrun waits for the engine to connect
    real acceptTimeout_ = 120;
    //! mdi-reply-timeout (s): longest wait for one engine reply (a hung engine); 0 = no limit
    real replyTimeout_ = 300;
    //! ML atom indices (global, sorted) -- internal, written to the tpr
    std::vector<std::int64_t> mlIndices_;
    //! atomic numbers of the ML atoms, same order -- internal, written to the tpr
    std::vector<std::int64_t> atomicNumbers_;
    /*! \brief Electrostatics of the run, copied from the inputrec by grompp -- internal.
     *
     * With Ewald-type Coulomb (PME) the module itself removes the reciprocal-space part of
     * every excluded ML-ML pair at r >= rcoulomb, which the nonbonded kernels leave in
     * (they correct excluded pairs inside the cut-off only). */
    bool   ewaldCoulomb_ = false;
    double rCoulomb_     = 0;  //!< nm
    double ewaldRtol_    = 0;
    double epsilonR_     = 1;
    bool   freeEnergy_    = false; //!< free-energy run
    double coulombLambda_ = 0;     //!< its constant Coulomb lambda
    std::vector<double> chargeA_, chargeB_; //!< ML charges, states A and B (e)
};

/*! \brief The mdp options of the MDI module and what grompp does with them. */
class MdiOptions final : public IMdpOptionProvider
{
public:
    void initMdpTransform(IKeyValueTreeTransformRules* rules) override;
    void initMdpOptions(IOptionsContainerWithSections* options) override;
    void buildMdpOutput(KeyValueTreeObjectBuilder* builder) const override;

    bool                 active() const { return parameters_.active_; }
    const MdiParameters& parameters() const { return parameters_; }

    //! grompp: remember logger / warning handler
    void setLogger(const MDLogger& logger) { logger_ = &logger; }
    void setWarninp(warninp* wi) { wi_ = wi; }
    //! grompp: resolve mdi-ml-group to atom indices
    void setGroupIndices(const IndexGroupsAndNames& indexGroupsAndNames);
    //! grompp: remove ML-ML interactions from the topology, collect atomic numbers
    void modifyTopology(gmx_mtop_t* mtop);
    //! grompp: store indices and atomic numbers in the tpr
    void writeInternalParametersToKvt(KeyValueTreeObjectBuilder treeBuilder) const;
    //! mdrun: read them back
    void readInternalParametersFromKvt(const KeyValueTreeObject& tree);

private:
    MdiParameters  parameters_;
    const MDLogger* logger_ = nullptr;
    warninp*        wi_     = nullptr;
};

} // namespace gmx

#endif

/*
 * mdi_mlmm GROMACS module: the force provider that drives an MDI engine.
 * Part of mdi_mlmm (MIT licence).
 */
#ifndef MDI_MLMM_GMX_MDIFORCEPROVIDER_H
#define MDI_MLMM_GMX_MDIFORCEPROVIDER_H

#include <string>
#include <vector>

#include "gromacs/domdec/localatomset.h"
#include "gromacs/mdtypes/iforceprovider.h"

#include "mdioptions.h"

enum class PbcType : int;

namespace gmx
{

class MDLogger;

/*! \brief mdrun as MDI DRIVER: sends ML coordinates, receives ML energy and forces.
 *
 * Wire protocol (atomic units): once ">NATOMS" (1 int), ">ELEMENTS" (N ints);
 * every force evaluation ">CELL" (9 doubles, rows a,b,c, Bohr; only when it changed), ">COORDS"
 * (3N, Bohr) at the start of do_force, then "<ENERGY_FORCES" (1 + 3N: Hartree, Hartree/Bohr) when
 * the engine registered it (mdi_mlmm engines), else "<ENERGY" (1, Hartree) and "<FORCES" (3N,
 * Hartree/Bohr); at the end "EXIT".
 */
class MdiForceProvider final : public IForceProvider
{
public:
    MdiForceProvider(const MdiParameters& parameters,
                     const LocalAtomSet&  mlAtoms,
                     PbcType              pbcType,
                     const MDLogger&      logger,
                     const std::string&   mdiOptions);
    ~MdiForceProvider();

    void calculateForces(const ForceProviderInput& forceProviderInput,
                         ForceProviderOutput*      forceProviderOutput) override;

    /*! \brief Send this step's ML coordinates (and the cell, when it changed) at the start of
     * do_force, before the MM work, so that the engine evaluates the model while GROMACS
     * computes the MM forces; calculateForces() then only collects energy and forces (it
     * resends when the coordinates it is given differ from those sent early). */
    void sendCoordinatesEarly(ArrayRef<const RVec> x, const matrix box);

private:
    //! Local index of each ML atom (collective order); fatal unless all are on this rank.
    std::vector<int> localIndices() const;
    //! Fill xWhole_, xBohr_ and cellBohr_ from the local coordinates \p x.
    void wholeCoordinates(ArrayRef<const RVec> x, const matrix box, const std::vector<int>& localOf);
    //! Send ">CELL" (only when it differs from the last cell sent) and ">COORDS" from xBohr_/cellBohr_.
    void sendCoordinates();
    void connect();
    void sendCommand(const char* command);
    void sendInts(const std::vector<int>& data, const char* command);
    void sendDoubles(const std::vector<double>& data, const char* command);
    void recvDoubles(std::vector<double>* data, const char* command);
    //! Fatal error if the engine closed the connection; with \p wait, block until a reply is readable.
    void checkEngine(const char* command, bool wait);
    [[noreturn]] void engineGone(const char* command, const char* why);
    void buildWholeMoleculeTree(ArrayRef<const RVec> x, const matrix box);
    //! Warn (once) when the whole ML molecule spans half the box or more along a box vector.
    void checkWithinHalfBox(const matrix box);
    /*! \brief Remove the reciprocal-space Coulomb of the ML-ML pairs at r >= rcoulomb, which the
     * nonbonded kernels leave in (they correct excluded pairs inside the cut-off only):
     * E -= sum q_i q_j erf(beta r)/r (4 pi eps0 eps_r)^-1, with forces and virial. */
    void removeFarExclusions(ArrayRef<const real> chargeA,
                             const std::vector<int>& localOf,
                             ForceProviderOutput*    output);

    MdiParameters       parameters_;
    const LocalAtomSet& mlAtoms_;
    PbcType             pbcType_;
    const MDLogger&     logger_;
    std::string         mdiOptions_;

    int  comm_     = 0;
    int  sockfd_   = -1;
    bool connected_ = false;
    bool exited_    = false;

    //! parent_[i]: ML atom whose image atom i is placed next to (-1 for the root)
    std::vector<int> order_, parent_;
    std::vector<double> xBohr_, fAu_, cellBohr_;
    std::vector<RVec>   xWhole_;
    double              ewaldBeta_ = 0;        //!< 1/nm; 0: no far-exclusion correction
    double              farEnergy_ = 0;        //!< kJ/mol removed at the last step
    int                 maxFarPairs_ = 0;
    bool                warnedHalfBox_ = false;
    std::int64_t        numEvaluations_ = 0;
    //! coordinates and cell the engine last received (to skip an unchanged cell, to check early sends)
    std::vector<double> sentXBohr_, sentCellBohr_;
    bool                earlyPending_ = false; //!< coordinates sent early, energy not yet collected
    bool                energyForces_ = false; //!< the engine answers <ENERGY_FORCES (one round trip)
    std::vector<double> efAu_;                 //!< energy (Hartree) then forces (Hartree/Bohr)
    bool                earlyEnabled_ = true;  //!< MDI_MLMM_GMX_EARLY_COORDS=0 turns early sends off
    std::int64_t        numEarly_ = 0;         //!< evaluations whose coordinates went out early
    double              secondsInEngine_ = 0;
};

} // namespace gmx

#endif

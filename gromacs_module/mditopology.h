/*
 * mdi_mlmm GROMACS module: grompp-time topology processing for the ML group.
 * Part of mdi_mlmm (MIT licence).
 */
#ifndef MDI_MLMM_GMX_MDITOPOLOGY_H
#define MDI_MLMM_GMX_MDITOPOLOGY_H

#include <cstdint>
#include <vector>

struct gmx_mtop_t;
struct warninp;

namespace gmx
{

class MDLogger;

/*! \brief Prepare the topology for ML/MM with the ML atoms \p mlIndices (sorted, global).
 *
 * - molecules holding ML atoms get their own molecule block and type (nmol = 1);
 * - every bonded term (bonds, angles, dihedrals, 1-4 pairs, couple-intramol pairs, ...)
 *   whose atoms are all ML atoms is removed; chemical bonds become connection bonds
 *   (no energy) so the molecular graph survives; constraints, SETTLE, virtual sites
 *   and restraints are kept;
 * - all ML-ML atom pairs are excluded from the nonbonded interactions (with PME the
 *   exclusion correction then removes their reciprocal-space part too);
 * - charges and LJ parameters of ML atoms stay, so ML-MM electrostatics and LJ remain.
 * A summary is printed. Returns the atomic numbers of the ML atoms (same order).
 */
std::vector<std::int64_t> mdiPreprocessTopology(gmx_mtop_t*                      mtop,
                                                const std::vector<std::int64_t>& mlIndices,
                                                const MDLogger*                  logger,
                                                warninp*                         wi);

} // namespace gmx

#endif

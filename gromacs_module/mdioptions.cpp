/*
 * mdi_mlmm GROMACS module: mdp options, key-value-tree (tpr) storage.
 * Part of mdi_mlmm (MIT licence).
 */
#include "gmxpre.h"

#include "mdioptions.h"

#include <algorithm>

#include "gromacs/options/basicoptions.h"
#include "gromacs/options/optionsection.h"
#include "gromacs/selection/indexutil.h"
#include "gromacs/topology/topology.h"
#include "gromacs/utility/exceptions.h"
#include "gromacs/utility/keyvaluetree.h"
#include "gromacs/utility/keyvaluetreebuilder.h"
#include "gromacs/utility/keyvaluetreetransform.h"
#include "gromacs/utility/stringutil.h"
#include "gromacs/utility/strconvert.h"

#include "mdimodule.h"
#include "mditopology.h"

namespace gmx
{

const std::string c_mdiModuleName = "mdi";

namespace
{

const std::string c_activeTag        = "active";
const std::string c_mlGroupTag       = "ml-group";
const std::string c_acceptTimeoutTag = "accept-timeout";
const std::string c_replyTimeoutTag  = "reply-timeout";
// internal (tpr only)
const std::string c_mlIndicesTag     = "ml-indices";
const std::string c_atomicNumbersTag = "ml-atomic-numbers";
const std::string c_ewaldCoulombTag  = "internal-ewald-coulomb";
const std::string c_rCoulombTag      = "internal-rcoulomb";
const std::string c_ewaldRtolTag     = "internal-ewald-rtol";
const std::string c_epsilonRTag      = "internal-epsilon-r";
const std::string c_freeEnergyTag    = "internal-free-energy";
const std::string c_coulLambdaTag    = "internal-coulomb-lambda";
const std::string c_chargeATag       = "internal-ml-charge-a";
const std::string c_chargeBTag       = "internal-ml-charge-b";

std::string mdpKey(const std::string& tag)
{
    return c_mdiModuleName + "-" + tag;
}

template<class ToType, class Function>
void addTransform(IKeyValueTreeTransformRules* rules, Function f, const std::string& tag)
{
    rules->addRule().from<std::string>("/" + mdpKey(tag)).to<ToType>("/" + c_mdiModuleName + "/" + tag).transformWith(f);
}

void addComment(KeyValueTreeObjectBuilder* builder, const std::string& comment, const std::string& tag)
{
    builder->addValue<std::string>("comment-" + mdpKey(tag), comment);
}

std::vector<std::int64_t> readInt64Array(const KeyValueTreeObject& tree, const std::string& key)
{
    if (!tree.keyExists(key))
    {
        GMX_THROW(InconsistentInputError(
                formatString("The tpr lacks '%s', which the MDI (ML/MM) module needs; "
                             "re-run grompp with this GROMACS build.",
                             key.c_str())));
    }
    std::vector<std::int64_t> out;
    for (const auto& v : tree[key].asArray().values())
    {
        out.push_back(v.cast<std::int64_t>());
    }
    return out;
}

} // namespace

void MdiOptions::initMdpTransform(IKeyValueTreeTransformRules* rules)
{
    const auto& identity = [](std::string s) { return s; };
    addTransform<bool>(rules, &fromStdString<bool>, c_activeTag);
    addTransform<std::string>(rules, identity, c_mlGroupTag);
    addTransform<real>(rules, &fromStdString<real>, c_acceptTimeoutTag);
    addTransform<real>(rules, &fromStdString<real>, c_replyTimeoutTag);
}

void MdiOptions::initMdpOptions(IOptionsContainerWithSections* options)
{
    auto section = options->addSection(OptionSection(c_mdiModuleName.c_str()));
    section.addOption(BooleanOption(c_activeTag.c_str()).store(&parameters_.active_));
    section.addOption(StringOption(c_mlGroupTag.c_str()).store(&parameters_.mlGroup_));
    section.addOption(RealOption(c_acceptTimeoutTag.c_str()).store(&parameters_.acceptTimeout_));
    section.addOption(RealOption(c_replyTimeoutTag.c_str()).store(&parameters_.replyTimeout_));
}

void MdiOptions::buildMdpOutput(KeyValueTreeObjectBuilder* builder) const
{
    addComment(builder, "", "empty-line");
    addComment(builder, "; ML/MM through MDI (mdi_mlmm): an MDI engine computes the ML group", "module");
    builder->addValue<bool>(mdpKey(c_activeTag), parameters_.active_);
    if (parameters_.active_)
    {
        addComment(builder, "; Index group of the atoms the ML potential describes", c_mlGroupTag);
        builder->addValue<std::string>(mdpKey(c_mlGroupTag), parameters_.mlGroup_);
        addComment(builder, "; Seconds mdrun waits for the MDI engine to connect", c_acceptTimeoutTag);
        builder->addValue<real>(mdpKey(c_acceptTimeoutTag), parameters_.acceptTimeout_);
        addComment(builder, "; Longest wait (s) for one engine reply (default 300), 0 = no limit", c_replyTimeoutTag);
        builder->addValue<real>(mdpKey(c_replyTimeoutTag), parameters_.replyTimeout_);
    }
}

void MdiOptions::setGroupIndices(const IndexGroupsAndNames& indexGroupsAndNames)
{
    if (!parameters_.active_)
    {
        return;
    }
    if (parameters_.mlGroup_.empty())
    {
        GMX_THROW(InconsistentInputError(
                "mdi-active = yes needs mdi-ml-group = <index group with the ML atoms>"));
    }
    if (!indexGroupsAndNames.containsGroupName(parameters_.mlGroup_))
    {
        GMX_THROW(InconsistentInputError(formatString(
                "mdi-ml-group: index group '%s' not found; make it with gmx make_ndx and pass "
                "it with grompp -n",
                parameters_.mlGroup_.c_str())));
    }
    const auto idx = indexGroupsAndNames.indices(parameters_.mlGroup_);
    if (idx.empty())
    {
        GMX_THROW(InconsistentInputError(
                formatString("mdi-ml-group: index group '%s' is empty", parameters_.mlGroup_.c_str())));
    }
    parameters_.mlIndices_.assign(idx.begin(), idx.end());
    std::sort(parameters_.mlIndices_.begin(), parameters_.mlIndices_.end());
    if (std::adjacent_find(parameters_.mlIndices_.begin(), parameters_.mlIndices_.end())
        != parameters_.mlIndices_.end())
    {
        GMX_THROW(InconsistentInputError(formatString(
                "mdi-ml-group: index group '%s' lists an atom twice", parameters_.mlGroup_.c_str())));
    }
}

void MdiOptions::modifyTopology(gmx_mtop_t* mtop)
{
    if (!parameters_.active_)
    {
        return;
    }
    parameters_.atomicNumbers_ = mdiPreprocessTopology(mtop, parameters_.mlIndices_, logger_, wi_);
    mdiSetGromppMlGroup(mtop->natoms, parameters_.mlIndices_);
}

void MdiOptions::writeInternalParametersToKvt(KeyValueTreeObjectBuilder treeBuilder) const
{
    if (!parameters_.active_)
    {
        return;
    }
    const MdiGromppElectrostatics& elec = mdiGromppElectrostatics();
    treeBuilder.addValue<bool>(mdpKey(c_ewaldCoulombTag), elec.ewald);
    treeBuilder.addValue<double>(mdpKey(c_rCoulombTag), elec.rCoulomb);
    treeBuilder.addValue<double>(mdpKey(c_ewaldRtolTag), elec.ewaldRtol);
    treeBuilder.addValue<double>(mdpKey(c_epsilonRTag), elec.epsilonR);
    treeBuilder.addValue<bool>(mdpKey(c_freeEnergyTag), elec.freeEnergy);
    treeBuilder.addValue<double>(mdpKey(c_coulLambdaTag), elec.coulombLambda);
    auto qa = treeBuilder.addUniformArray<double>(mdpKey(c_chargeATag));
    for (double q : elec.chargeA)
    {
        qa.addValue(q);
    }
    auto qb = treeBuilder.addUniformArray<double>(mdpKey(c_chargeBTag));
    for (double q : elec.chargeB)
    {
        qb.addValue(q);
    }
    auto indices = treeBuilder.addUniformArray<std::int64_t>(mdpKey(c_mlIndicesTag));
    for (auto i : parameters_.mlIndices_)
    {
        indices.addValue(i);
    }
    auto numbers = treeBuilder.addUniformArray<std::int64_t>(mdpKey(c_atomicNumbersTag));
    for (auto z : parameters_.atomicNumbers_)
    {
        numbers.addValue(z);
    }
}

void MdiOptions::readInternalParametersFromKvt(const KeyValueTreeObject& tree)
{
    if (!parameters_.active_)
    {
        return;
    }
    parameters_.mlIndices_     = readInt64Array(tree, mdpKey(c_mlIndicesTag));
    parameters_.atomicNumbers_ = readInt64Array(tree, mdpKey(c_atomicNumbersTag));
    if (tree.keyExists(mdpKey(c_ewaldCoulombTag)))
    {
        parameters_.ewaldCoulomb_ = tree[mdpKey(c_ewaldCoulombTag)].cast<bool>();
        parameters_.rCoulomb_     = tree[mdpKey(c_rCoulombTag)].cast<double>();
        parameters_.ewaldRtol_    = tree[mdpKey(c_ewaldRtolTag)].cast<double>();
        parameters_.epsilonR_     = tree[mdpKey(c_epsilonRTag)].cast<double>();
        parameters_.freeEnergy_    = tree[mdpKey(c_freeEnergyTag)].cast<bool>();
        parameters_.coulombLambda_ = tree[mdpKey(c_coulLambdaTag)].cast<double>();
        for (const auto& v : tree[mdpKey(c_chargeATag)].asArray().values())
        {
            parameters_.chargeA_.push_back(v.cast<double>());
        }
        for (const auto& v : tree[mdpKey(c_chargeBTag)].asArray().values())
        {
            parameters_.chargeB_.push_back(v.cast<double>());
        }
        if (parameters_.ewaldCoulomb_
            && (parameters_.chargeA_.size() != parameters_.mlIndices_.size()
                || parameters_.chargeB_.size() != parameters_.mlIndices_.size()))
        {
            GMX_THROW(InconsistentInputError("Corrupt MDI (ML/MM) charge data in the tpr file"));
        }
    }
    if (parameters_.mlIndices_.size() != parameters_.atomicNumbers_.size()
        || parameters_.mlIndices_.empty())
    {
        GMX_THROW(InconsistentInputError("Corrupt MDI (ML/MM) data in the tpr file"));
    }
}

} // namespace gmx

/*
 * mdi_mlmm GROMACS module: the force provider that drives an MDI engine.
 * Part of mdi_mlmm (MIT licence).
 *
 * Units: GROMACS nm, kJ/mol; MDI wire atomic units (Bohr, Hartree), CODATA 2018
 * values identical to those of the MDI library and mdi_mlmm/units.py.
 */
#include "gmxpre.h"

#include "mdiforceprovider.h"

#include "mdimodule.h"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <limits>
#include <set>
#include <thread>

#include "gromacs/ewald/ewald_utils.h"
#include "gromacs/math/invertmatrix.h"
#include "gromacs/math/units.h"
#include "gromacs/math/vec.h"
#include "gromacs/mdtypes/enerdata.h"
#include "gromacs/mdtypes/md_enums.h"
#include "gromacs/utility/basedefinitions.h"
#include "gromacs/mdtypes/forceoutput.h"
#include "gromacs/pbcutil/pbc.h"
#include "gromacs/topology/ifunc.h"
#include "gromacs/utility/fatalerror.h"
#include "gromacs/utility/logger.h"
#include "gromacs/utility/stringutil.h"

#include "mdi.h"

namespace gmx
{

namespace
{

constexpr double c_bohrInNm          = 0.0529177210903;     // CODATA 2018
constexpr double c_hartreeInKJPerMol = 2625.4996394798254;  // CODATA 2018
constexpr double c_forceAuToGromacs  = c_hartreeInKJPerMol / c_bohrInNm;

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

//! File descriptors of this process's connected TCP stream sockets.
std::set<int> connectedTcpSockets()
{
    std::set<int> out;
    DIR*          dir = opendir("/proc/self/fd");
    if (dir == nullptr)
    {
        return out;
    }
    while (struct dirent* entry = readdir(dir))
    {
        char*      end = nullptr;
        const long fd  = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd == dirfd(dir))
        {
            continue;
        }
        struct stat st;
        if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode))
        {
            continue;
        }
        int       type = 0;
        socklen_t len  = sizeof(type);
        if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        {
            continue;
        }
        sockaddr_storage addr;
        socklen_t        alen = sizeof(addr);
        if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &alen) != 0
            || (addr.ss_family != AF_INET && addr.ss_family != AF_INET6))
        {
            continue;
        }
        alen = sizeof(addr);
        if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &alen) != 0)
        {
            continue; // listening socket
        }
        out.insert(static_cast<int>(fd));
    }
    closedir(dir);
    return out;
}

std::string elementList(const std::vector<std::int64_t>& z)
{
    static const char* symbols[] = { "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",
                                     "Ne", "Na", "Mg", "Al", "Si", "P",  "S",  "Cl", "Ar", "K",
                                     "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
                                     "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr" };
    std::set<std::int64_t> unique(z.begin(), z.end());
    std::string            out;
    for (auto e : unique)
    {
        out += (out.empty() ? "" : " ");
        out += (e > 0 && e < 37) ? symbols[e] : formatString("Z=%ld", long(e));
    }
    return out;
}

//! the force provider of this mdrun (one ML/MM run per process), for the do_force hook
MdiForceProvider* s_activeProvider = nullptr;

} // namespace

void mdiEarlyCoordinates(ArrayRef<const RVec> x, const matrix box)
{
    if (s_activeProvider != nullptr)
    {
        s_activeProvider->sendCoordinatesEarly(x, box);
    }
}

MdiForceProvider::MdiForceProvider(const MdiParameters& parameters,
                                   const LocalAtomSet&  mlAtoms,
                                   PbcType              pbcType,
                                   const MDLogger&      logger,
                                   const std::string&   mdiOptions) :
    parameters_(parameters), mlAtoms_(mlAtoms), pbcType_(pbcType), logger_(logger), mdiOptions_(mdiOptions)
{
    const size_t n = parameters_.mlIndices_.size();
    xBohr_.resize(3 * n);
    fAu_.resize(3 * n);
    cellBohr_.resize(9);
    xWhole_.resize(n);
    if (parameters_.ewaldCoulomb_ && parameters_.rCoulomb_ > 0)
    {
        ewaldBeta_ = calc_ewaldcoeff_q(parameters_.rCoulomb_, parameters_.ewaldRtol_);
        mdiSetFepExclusionsWithinCutoff(parameters_.freeEnergy_);
        GMX_LOG(logger_.info)
                .asParagraph()
                .appendTextFormatted(
                        "MDI ML/MM: the module removes the reciprocal-space Coulomb of ML-ML pairs "
                        "beyond rcoulomb = %g nm (Ewald beta %.6f /nm); the nonbonded kernels "
                        "correct those inside it",
                        parameters_.rCoulomb_,
                        ewaldBeta_);
    }
    if (const char* early = std::getenv("MDI_MLMM_GMX_EARLY_COORDS"))
    {
        earlyEnabled_ = std::string(early) != "0";
    }
    connect();
    s_activeProvider = this;
}

MdiForceProvider::~MdiForceProvider()
{
    if (s_activeProvider == this)
    {
        s_activeProvider = nullptr;
    }
    if (connected_ && !exited_)
    {
        // Polite shutdown; ignore failures (the engine may already be gone).
        pollfd p{ sockfd_, POLLIN, 0 };
        char   c     = 0;
        bool   alive = sockfd_ < 0 || poll(&p, 1, 0) == 0
                     || recv(sockfd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
        if (alive)
        {
            MDI_Send_Command("EXIT", comm_);
        }
        exited_ = true;
        GMX_LOG(logger_.info)
                .asParagraph()
                .appendTextFormatted(
                        "MDI ML/MM: %ld engine evaluations, %.2f s waiting for the engine (%.2f "
                        "ms per evaluation); %ld with coordinates sent before the MM work",
                        long(numEvaluations_),
                        secondsInEngine_,
                        numEvaluations_ > 0 ? 1000 * secondsInEngine_ / numEvaluations_ : 0.0,
                        long(numEarly_));
        if (ewaldBeta_ > 0)
        {
            GMX_LOG(logger_.info)
                    .asParagraph()
                    .appendTextFormatted(
                            "MDI ML/MM: up to %d ML-ML pairs beyond rcoulomb; their reciprocal-space "
                            "Coulomb removed by the module (%.4f kJ/mol at the last step)",
                            maxFarPairs_,
                            farEnergy_);
        }
    }
}

void MdiForceProvider::connect()
{
    // A dead engine must give an error message, not a silent SIGPIPE death.
    std::signal(SIGPIPE, SIG_IGN);

    // MDI_Init(argc, argv) does MDI_Init_code + MDI_Init_with_argv; we hold the options string.
    if (MDI_Init_code() != 0 || MDI_Init_with_options(mdiOptions_.c_str()) != 0)
    {
        gmx_fatal(FARGS,
                  "MDI initialisation failed for -mdi \"%s\" (malformed options, or the port is "
                  "already in use?)",
                  mdiOptions_.c_str());
    }
    int role = 0;
    MDI_Get_Role(&role);
    if (role != MDI_DRIVER)
    {
        gmx_fatal(FARGS,
                  "mdrun -mdi \"%s\": mdrun must be the MDI DRIVER (-role DRIVER)",
                  mdiOptions_.c_str());
    }

    const auto before = connectedTcpSockets();
    const auto t0     = Clock::now();
    fprintf(stderr,
            "MDI ML/MM: waiting up to %g s for the ML engine to connect (-mdi \"%s\")\n",
            parameters_.acceptTimeout_,
            mdiOptions_.c_str());
    int flag = 0;
    while (true)
    {
        if (MDI_Check_for_communicator(&flag) != 0)
        {
            gmx_fatal(FARGS, "MDI: checking for an engine connection failed");
        }
        if (flag)
        {
            break;
        }
        if (secondsSince(t0) > parameters_.acceptTimeout_)
        {
            gmx_fatal(FARGS,
                      "No MDI engine connected within %g s (mdp option mdi-accept-timeout). Start "
                      "the engine with matching options, e.g.\n  mdi-mlmm engine --model ani2x "
                      "-mdi \"-role ENGINE -name ML -method TCP -port PORT -hostname localhost\"",
                      parameters_.acceptTimeout_);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (MDI_Accept_Communicator(&comm_) != 0 || comm_ == MDI_COMM_NULL)
    {
        gmx_fatal(FARGS, "MDI: accepting the engine connection failed");
    }
    connected_ = true;

    // MDI 1.4's TCP layer never sets TCP_NODELAY; without it every small message waits
    // for the peer's delayed ACK (~40 ms per exchange). Set it on the new socket here.
    // (MDI_MLMM_GMX_NODELAY=0 leaves Nagle on, only to measure what it costs.)
    const char* nodelayEnv = std::getenv("MDI_MLMM_GMX_NODELAY");
    const bool  nodelay    = nodelayEnv == nullptr || std::strcmp(nodelayEnv, "0") != 0;
    for (int fd : connectedTcpSockets())
    {
        if (before.count(fd) == 0)
        {
            const int one = 1;
            if (nodelay)
            {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            }
            sockfd_ = fd;
        }
    }

    const int n = static_cast<int>(parameters_.mlIndices_.size());
    // One reply with energy and forces (an mdi_mlmm engine extension): one round trip per step
    // instead of two. Other engines answer <ENERGY and <FORCES as usual.
    int haveEnergyForces = 0;
    if (MDI_Check_command_exists("@DEFAULT", "<ENERGY_FORCES", comm_, &haveEnergyForces) != 0)
    {
        haveEnergyForces = 0;
    }
    const char* efEnv = std::getenv("MDI_MLMM_GMX_ENERGY_FORCES");
    energyForces_     = haveEnergyForces != 0 && (efEnv == nullptr || std::strcmp(efEnv, "0") != 0);
    efAu_.resize(1 + 3 * n);
    sendCommand(">NATOMS");
    sendInts({ n }, ">NATOMS");
    std::vector<int> z(parameters_.atomicNumbers_.begin(), parameters_.atomicNumbers_.end());
    sendCommand(">ELEMENTS");
    sendInts(z, ">ELEMENTS");

    GMX_LOG(logger_.info)
            .asParagraph()
            .appendTextFormatted(
                    "MDI ML/MM: engine connected after %.2f s; ML group of %d atoms (%s)%s",
                    secondsSince(t0),
                    n,
                    elementList(parameters_.atomicNumbers_).c_str(),
                    sockfd_ >= 0 && nodelay ? ", TCP_NODELAY set" : ", TCP_NODELAY not set");
}

void MdiForceProvider::engineGone(const char* command, const char* why)
{
    exited_ = true;
    gmx_fatal(FARGS,
              "The MDI engine is gone: %s (at MDI command %s, after %ld force evaluations). "
              "If this happened at the first step, the engine may have rejected the ML atoms "
              "(elements %s); see the engine's output.",
              why,
              command,
              long(numEvaluations_),
              elementList(parameters_.atomicNumbers_).c_str());
}

void MdiForceProvider::checkEngine(const char* command, bool wait)
{
    if (sockfd_ < 0)
    {
        return;
    }
    const auto t0 = Clock::now();
    while (true)
    {
        pollfd p{ sockfd_, POLLIN, 0 };
        int    r = poll(&p, 1, wait ? 200 : 0);
        if (r < 0 && errno != EINTR)
        {
            return;
        }
        if (r > 0)
        {
            if (p.revents & POLLNVAL)
            {
                engineGone(command, "the connection is closed");
            }
            char    c = 0;
            ssize_t k = recv(sockfd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (k == 0)
            {
                engineGone(command, "the engine closed the connection");
            }
            if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            {
                engineGone(command, std::strerror(errno));
            }
            if (k > 0)
            {
                return;
            }
        }
        if (!wait)
        {
            return;
        }
        if (parameters_.replyTimeout_ > 0 && secondsSince(t0) > parameters_.replyTimeout_)
        {
            gmx_fatal(FARGS,
                      "The MDI engine did not answer %s within %g s (mdp option mdi-reply-timeout)",
                      command,
                      parameters_.replyTimeout_);
        }
    }
}

void MdiForceProvider::sendCommand(const char* command)
{
    checkEngine(command, false);
    if (MDI_Send_Command(command, comm_) != 0)
    {
        engineGone(command, "sending the command failed");
    }
}

void MdiForceProvider::sendInts(const std::vector<int>& data, const char* command)
{
    if (MDI_Send(data.data(), static_cast<int>(data.size()), MDI_INT, comm_) != 0)
    {
        engineGone(command, "sending data failed");
    }
}

void MdiForceProvider::sendDoubles(const std::vector<double>& data, const char* command)
{
    if (MDI_Send(data.data(), static_cast<int>(data.size()), MDI_DOUBLE, comm_) != 0)
    {
        engineGone(command, "sending data failed");
    }
}

void MdiForceProvider::recvDoubles(std::vector<double>* data, const char* command)
{
    checkEngine(command, true);
    if (MDI_Recv(data->data(), static_cast<int>(data->size()), MDI_DOUBLE, comm_) != 0)
    {
        engineGone(command, "receiving data failed");
    }
}

void MdiForceProvider::buildWholeMoleculeTree(ArrayRef<const RVec> x, const matrix box)
{
    // Prim's minimum spanning tree over minimum-image distances: each atom is later
    // placed at the image nearest to its tree parent, which makes the ML molecule(s)
    // whole across periodic boundaries for any frame.
    const int   n     = static_cast<int>(parameters_.mlIndices_.size());
    const auto  local = mlAtoms_.localIndex();
    const auto  coll  = mlAtoms_.collectiveIndex();
    std::vector<int> localOf(n);
    for (size_t k = 0; k < local.size(); k++)
    {
        localOf[coll[k]] = local[k];
    }
    t_pbc pbc;
    set_pbc(&pbc, pbcType_, box);
    std::vector<char> placed(n, 0);
    std::vector<real> best(n, std::numeric_limits<real>::max());
    parent_.assign(n, -1);
    order_.clear();
    int current = 0;
    placed[0]   = 1;
    order_.push_back(0);
    for (int step = 1; step < n; step++)
    {
        int  next     = -1;
        real nextDist = std::numeric_limits<real>::max();
        for (int j = 0; j < n; j++)
        {
            if (placed[j])
            {
                continue;
            }
            rvec dx;
            pbc_dx_aiuc(&pbc, x[localOf[j]], x[localOf[current]], dx);
            const real d2 = norm2(dx);
            if (d2 < best[j])
            {
                best[j]    = d2;
                parent_[j] = current;
            }
            if (best[j] < nextDist)
            {
                nextDist = best[j];
                next     = j;
            }
        }
        placed[next] = 1;
        order_.push_back(next);
        current = next;
    }
}

std::vector<int> MdiForceProvider::localIndices() const
{
    const int  n     = static_cast<int>(parameters_.mlIndices_.size());
    const auto local = mlAtoms_.localIndex();
    const auto coll  = mlAtoms_.collectiveIndex();
    if (static_cast<int>(local.size()) != n)
    {
        gmx_fatal(FARGS, "MDI ML/MM needs all ML atoms on one rank (run mdrun with -ntmpi 1)");
    }
    std::vector<int> localOf(n);
    for (int k = 0; k < n; k++)
    {
        localOf[coll[k]] = local[k];
    }
    return localOf;
}

void MdiForceProvider::wholeCoordinates(ArrayRef<const RVec> x, const matrix box, const std::vector<int>& localOf)
{
    const int n = static_cast<int>(parameters_.mlIndices_.size());
    if (order_.empty())
    {
        buildWholeMoleculeTree(x, box);
    }

    // Whole-molecule coordinates (unwrapped with the spanning tree).
    t_pbc pbc;
    set_pbc(&pbc, pbcType_, box);
    xWhole_[order_[0]] = x[localOf[order_[0]]];
    for (int k = 1; k < n; k++)
    {
        const int i = order_[k];
        const int p = parent_[i];
        rvec      dx;
        pbc_dx_aiuc(&pbc, x[localOf[i]], x[localOf[p]], dx);
        rvec_add(xWhole_[p], dx, xWhole_[i]);
    }
    checkWithinHalfBox(box);
    for (int i = 0; i < n; i++)
    {
        for (int d = 0; d < DIM; d++)
        {
            xBohr_[3 * i + d] = xWhole_[i][d] / c_bohrInNm;
        }
    }
    for (int a = 0; a < DIM; a++)
    {
        for (int d = 0; d < DIM; d++)
        {
            cellBohr_[3 * a + d] = box[a][d] / c_bohrInNm;
        }
    }
}

void MdiForceProvider::sendCoordinates()
{
    if (cellBohr_ != sentCellBohr_)
    {
        sendCommand(">CELL");
        sendDoubles(cellBohr_, ">CELL");
        sentCellBohr_ = cellBohr_;
    }
    sendCommand(">COORDS");
    sendDoubles(xBohr_, ">COORDS");
    sentXBohr_ = xBohr_;
}

void MdiForceProvider::sendCoordinatesEarly(ArrayRef<const RVec> x, const matrix box)
{
    if (!earlyEnabled_ || !connected_ || exited_)
    {
        return;
    }
    const auto t0 = Clock::now();
    wholeCoordinates(x, box, localIndices());
    sendCoordinates();
    earlyPending_ = true;
    secondsInEngine_ += secondsSince(t0);
}

void MdiForceProvider::calculateForces(const ForceProviderInput& input, ForceProviderOutput* output)
{
    const int  n       = static_cast<int>(parameters_.mlIndices_.size());
    const auto localOf = localIndices();
    wholeCoordinates(input.x_, input.box_, localOf);

    const auto       t0 = Clock::now();
    std::vector<double> energy(1, 0.0);
    if (earlyPending_ && xBohr_ == sentXBohr_ && cellBohr_ == sentCellBohr_)
    {
        numEarly_++; // the engine has been evaluating these coordinates during the MM work
    }
    else
    {
        sendCoordinates();
    }
    earlyPending_ = false;
    if (energyForces_)
    {
        sendCommand("<ENERGY_FORCES");
        recvDoubles(&efAu_, "<ENERGY_FORCES");
        energy[0] = efAu_[0];
        std::copy(efAu_.begin() + 1, efAu_.end(), fAu_.begin());
    }
    else
    {
        sendCommand("<ENERGY");
        recvDoubles(&energy, "<ENERGY");
        sendCommand("<FORCES");
        recvDoubles(&fAu_, "<FORCES");
    }
    secondsInEngine_ += secondsSince(t0);
    numEvaluations_++;

    bool finite = std::isfinite(energy[0]);
    for (double v : fAu_)
    {
        finite = finite && std::isfinite(v);
    }
    if (!finite)
    {
        // mdi_mlmm engines answer NaN when they cannot evaluate (unsupported element,
        // bad coordinates) and explain why on "<ERROR" (an mdi_mlmm extension).
        std::string reason = "no reason given";
        sendCommand("<ERROR");
        std::vector<char> text(1024, '\0');
        checkEngine("<ERROR", true);
        if (MDI_Recv(text.data(), static_cast<int>(text.size()), MDI_CHAR, comm_) == 0)
        {
            text.back() = '\0';
            reason      = text.data();
        }
        gmx_fatal(FARGS,
                  "The MDI engine returned a non-finite ML energy or forces at evaluation %ld "
                  "(ML atoms: %s). Engine says: %s",
                  long(numEvaluations_),
                  elementList(parameters_.atomicNumbers_).c_str(),
                  reason.c_str());
    }

    // Forces, virial -0.5 sum x (x) f over whole-molecule coordinates, energy.
    auto&  forceWithVirial = output->forceWithVirial_;
    double vir[DIM][DIM]   = { { 0 } };
    for (int i = 0; i < n; i++)
    {
        double f[DIM];
        for (int d = 0; d < DIM; d++)
        {
            f[d] = fAu_[3 * i + d] * c_forceAuToGromacs;
            forceWithVirial.force_[localOf[i]][d] += static_cast<real>(f[d]);
        }
        for (int a = 0; a < DIM; a++)
        {
            for (int b = 0; b < DIM; b++)
            {
                vir[a][b] -= 0.5 * xWhole_[i][a] * f[b];
            }
        }
    }
    matrix virial;
    for (int a = 0; a < DIM; a++)
    {
        for (int b = 0; b < DIM; b++)
        {
            virial[a][b] = static_cast<real>(vir[a][b]);
        }
    }
    forceWithVirial.addVirialContribution(virial);
    output->enerd_.term[F_EQM] += static_cast<real>(energy[0] * c_hartreeInKJPerMol);
    if (ewaldBeta_ > 0)
    {
        removeFarExclusions(input.chargeA_, localOf, output);
    }
}

void MdiForceProvider::checkWithinHalfBox(const matrix box)
{
    if (pbcType_ == PbcType::No)
    {
        return;
    }
    if (warnedHalfBox_)
    {
        return;
    }
    const RVec span = mdiFractionalExtent(xWhole_, box);
    for (int d = 0; d < DIM; d++)
    {
        if (span[d] >= 0.5)
        {
            // grompp refused such a start; a molecule that gets there during the run is not held
            // together (a test model such as "zero") or the box shrank: say so once, loudly
            const std::string text = formatString(
                    "WARNING: the ML molecule now spans %.2f of the box along box vector %c, half "
                    "the box or more: its ML-ML exclusion corrections are no longer exact (does the "
                    "ML model hold the molecule together? is the box large enough?)",
                    span[d],
                    "abc"[d]);
            fprintf(stderr, "\nMDI ML/MM: %s\n", text.c_str());
            GMX_LOG(logger_.warning).asParagraph().appendText("MDI ML/MM: " + text);
            warnedHalfBox_ = true;
            return;
        }
    }
}

void MdiForceProvider::removeFarExclusions(ArrayRef<const real> /*chargeA*/,
                                           const std::vector<int>& localOf,
                                           ForceProviderOutput*    output)
{
    // Charges of the tpr (states A and B); in a free-energy run the reciprocal-space energy,
    // like the kernels' exclusion corrections, is (1 - lambda) E_A + lambda E_B.
    const int    n       = static_cast<int>(xWhole_.size());
    const double rc2     = parameters_.rCoulomb_ * parameters_.rCoulomb_;
    const double epsfac  = c_one4PiEps0 / parameters_.epsilonR_;
    const double beta    = ewaldBeta_;
    const double twoBeta = 2.0 * beta / std::sqrt(M_PI);
    const bool   fep     = parameters_.freeEnergy_;
    const double lam     = fep ? parameters_.coulombLambda_ : 0.0;
    const auto&  qA      = parameters_.chargeA_;
    const auto&  qB      = parameters_.chargeB_;
    std::vector<double> f(3 * n, 0.0);
    double              energy = 0, energyA = 0, energyB = 0;
    int                 nFar   = 0;
    for (int i = 0; i < n; i++)
    {
        for (int j = i + 1; j < n; j++)
        {
            double dx[DIM];
            double r2 = 0;
            for (int d = 0; d < DIM; d++)
            {
                dx[d] = static_cast<double>(xWhole_[j][d]) - static_cast<double>(xWhole_[i][d]);
                r2 += dx[d] * dx[d];
            }
            if (r2 < rc2)
            {
                continue; // corrected by the nonbonded kernels
            }
            nFar++;
            const double r    = std::sqrt(r2);
            const double qqA  = epsfac * qA[i] * qA[j];
            const double qqB  = epsfac * qB[i] * qB[j];
            const double qq   = (1 - lam) * qqA + lam * qqB;
            const double erfr = std::erf(beta * r) / r;
            const double dEdr = qq * (twoBeta * std::exp(-beta * beta * r2) / r - erfr / r);
            energy += qq * erfr;
            energyA += qqA * erfr;
            energyB += qqB * erfr;
            for (int d = 0; d < DIM; d++)
            {
                const double fj = -dEdr * dx[d] / r; // force of +E on j
                f[3 * j + d] += fj;
                f[3 * i + d] -= fj;
            }
        }
    }
    GMX_UNUSED_VALUE(localOf);
    maxFarPairs_ = std::max(maxFarPairs_, nFar);
    farEnergy_   = -energy;
    if (nFar == 0)
    {
        return;
    }
    // remove: energy -E, forces -F, virial -0.5 sum x (x) (-F), dH/dlambda_coul -(E_B - E_A)
    auto&  forceWithVirial = output->forceWithVirial_;
    double vir[DIM][DIM]   = { { 0 } };
    for (int i = 0; i < n; i++)
    {
        for (int d = 0; d < DIM; d++)
        {
            forceWithVirial.force_[localOf[i]][d] -= static_cast<real>(f[3 * i + d]);
        }
        for (int a = 0; a < DIM; a++)
        {
            for (int b = 0; b < DIM; b++)
            {
                vir[a][b] += 0.5 * xWhole_[i][a] * f[3 * i + b];
            }
        }
    }
    matrix virial;
    for (int a = 0; a < DIM; a++)
    {
        for (int b = 0; b < DIM; b++)
        {
            virial[a][b] = static_cast<real>(vir[a][b]);
        }
    }
    forceWithVirial.addVirialContribution(virial);
    output->enerd_.term[F_COUL_RECIP] -= static_cast<real>(energy);
    if (fep)
    {
        // linear in lambda: GROMACS derives the foreign-lambda energies from dvdl_lin
        output->enerd_.dvdl_lin[FreeEnergyPerturbationCouplingType::Coul] -= (energyB - energyA);
    }
}

namespace
{
bool s_fepExclusionsWithinCutoff = false;
} // namespace

void mdiSetFepExclusionsWithinCutoff(bool on)
{
    s_fepExclusionsWithinCutoff = on;
}

real mdiFepExcludedPairCutoffSquared(real maxAllowedCutoffSquared, real rCoulomb)
{
    return s_fepExclusionsWithinCutoff ? rCoulomb * rCoulomb : maxAllowedCutoffSquared;
}

} // namespace gmx

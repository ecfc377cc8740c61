/*
 * mdi_mlmm GROMACS module: the mdrun -mdi command-line option.
 * Part of mdi_mlmm (MIT licence).
 */
#include "gmxpre.h"

#include "mdimodule.h"

#include <cstring>

namespace gmx
{

namespace
{
//! The -mdi options string; process-wide (mdrun parses argv once on the master thread).
std::string& mdiOptionsStorage()
{
    static std::string options;
    return options;
}
bool& mdiGivenStorage()
{
    static bool given = false;
    return given;
}
} // namespace

void mdiConsumeCommandLineOption(int* argc, char* argv[])
{
    int out = 0;
    for (int i = 0; i < *argc; i++)
    {
        const char* a = argv[i];
        if (i > 0 && (std::strcmp(a, "-mdi") == 0 || std::strcmp(a, "--mdi") == 0) && i + 1 < *argc)
        {
            mdiOptionsStorage() = argv[i + 1];
            mdiGivenStorage()   = true;
            i++;
            continue;
        }
        if (i > 0 && std::strncmp(a, "-mdi=", 5) == 0)
        {
            mdiOptionsStorage() = a + 5;
            mdiGivenStorage()   = true;
            continue;
        }
        argv[out++] = argv[i];
    }
    for (int i = out; i < *argc; i++)
    {
        argv[i] = nullptr;
    }
    *argc = out;
}

bool mdiCommandLineGiven()
{
    return mdiGivenStorage();
}

const std::string& mdiCommandLineOptions()
{
    return mdiOptionsStorage();
}

} // namespace gmx

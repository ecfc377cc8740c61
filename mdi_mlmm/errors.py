"""Typed exception tree.

Every error a user can cause derives from :class:`MdiMlmmError`; the CLI turns
one into a single ``error: ...`` line and a non-zero exit status (no traceback).
"""
from __future__ import annotations


class MdiMlmmError(Exception):
    """Base of every mdi_mlmm error. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UserInputError(MdiMlmmError):
    """Bad command-line arguments or input files."""

    exit_code = 2


class ModelError(MdiMlmmError):
    """A machine-learning potential could not be loaded or evaluated."""


class ModelFilesNotFound(ModelError):
    """Model parameter files are missing; the message names where we looked."""


class UnsupportedElementError(ModelError, UserInputError):
    """Atoms whose elements the model cannot describe."""

    exit_code = 2


class ChargedSystemError(UserInputError):
    """A net charge that the chosen model cannot take."""


class MDIError(MdiMlmmError):
    """Anything going wrong in MDI communication."""


class PeerDisconnected(MDIError):
    """The MDI peer (engine or driver) closed the connection or died."""


class EngineReportedError(MDIError):
    """The engine rejected a request (bad data, unknown command, ...)."""


class EngineTimeout(MDIError):
    """The MDI engine did not answer within the reply time limit (hung, or stopped)."""


class PrepError(MdiMlmmError):
    """System preparation failed (parametrization, solvation, conversion)."""


class ExternalToolError(PrepError):
    """An external program (antechamber, gmx, tleap, ...) failed; message holds its output."""


class HostError(MdiMlmmError):
    """An MM host (LAMMPS, GROMACS) failed."""


class BuildError(HostError):
    """Building the MDI-enabled GROMACS failed."""


class WorkflowError(MdiMlmmError):
    """The free-energy workflow could not continue."""


class AnalysisError(MdiMlmmError):
    """Free-energy analysis failed (missing data, unparsable output)."""


class Interrupted(MdiMlmmError):
    """SIGTERM/SIGINT arrived; children were stopped (a rerun of the same command resumes).

    ``exit_code`` is 128 + the signal number, as a shell reports a process killed by it.
    """

    def __init__(self, signum: int = 15, message: str | None = None):
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        super().__init__(message or f"stopped by {name}; rerun the same command to resume")

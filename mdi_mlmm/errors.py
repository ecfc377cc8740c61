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

"""Errors users can act on, each with its own exit code.

The CLI prints `error: <message>` and exits with `exit_code`; the Slicer module shows the
message. Anything else escaping is a bug and is reported as such.
"""

from __future__ import annotations


class GlandSegError(Exception):
    """`detail`: what a library said about it, for --debug; the message itself is in the user's words."""

    exit_code = 1

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class InputNotFoundError(GlandSegError):
    exit_code = 3


class InvalidInputError(GlandSegError):
    """Readable but unusable input: corrupt DICOM, 2D image, MR intensities, bad header."""

    exit_code = 4


class SeriesChoiceError(GlandSegError):
    """A DICOM folder holds several CT series and none was chosen."""

    exit_code = 5


class NoHeadError(GlandSegError):
    exit_code = 6


class ModelError(GlandSegError):
    """Model missing, corrupt, tampered with, or with labels that cannot be mapped."""

    exit_code = 7


class OutputExistsError(GlandSegError):
    exit_code = 8


class DependencyError(GlandSegError):
    """An optional tool (TotalSegmentator, its weights, CUDA) is not available."""

    exit_code = 9


class CancelledError(GlandSegError):
    exit_code = 130

"""Error types. Every problem with a user's input (spec, ``.m``, ``.mat``, data) is a
:class:`SpecError`; the command line prints it as one line and exits with status 2."""

from __future__ import annotations

import re

# Line breaks and other control characters: escaped in str(err), which is always one line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SpecError(Exception):
    """An input error, optionally located at ``file:line:column`` (1-based).

    ``str(err)`` gives the one-line form ``file:line:col: error: message``; parts that are
    unknown are left out (``file: error: message`` or ``error: message``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column

    def located(self, file: str | None = None, line: int | None = None,
                column: int | None = None) -> SpecError:
        """Fill in the position parts that are still unknown; returns ``self``."""
        if self.file is None:
            self.file = file
        if self.line is None:
            self.line, self.column = line, column
        return self

    @property
    def position(self) -> str:
        parts = [p for p in (self.file, self.line, self.column) if p is not None]
        return ":".join(str(p) for p in parts)

    def __str__(self) -> str:
        pos = self.position
        text = f"{pos}: error: {self.message}" if pos else f"error: {self.message}"
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class ExpressionError(SpecError):
    """A Matlab expression that cannot be parsed or evaluated."""


class ShapeError(SpecError):
    """A spec that does not fit its input, or weights of the wrong shape."""


class DataError(SpecError):
    """A data file (``.npz``, idx, imdb ``.mat``) that is missing or malformed."""


class MatFileError(SpecError):
    """A MatConvNet ``.mat`` file that cannot be read or does not hold a network."""


class MatlabSourceError(SpecError):
    """A Matlab ``.m`` file the porter cannot translate."""


class CheckpointError(SpecError):
    """A checkpoint that is unreadable or does not belong to the spec."""

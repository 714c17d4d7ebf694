"""Errors and warnings raised by the catalog stage."""

from __future__ import annotations

import os
import sys
import warnings

from ..units import UnitError

__all__ = ["CatalogError", "CatalogUnitError", "DroppedRowsWarning", "warn_caller"]

_HERE = os.path.dirname(os.path.abspath(__file__))


class CatalogError(ValueError):
    """Input that cannot become a Catalog; the message names the problem, the count and the fix."""


class CatalogUnitError(CatalogError, UnitError):
    """A column or array has the wrong physical dimension (e.g. a velocity given as a length).

    It is both a :class:`CatalogError` and a :class:`bayesdyn.units.UnitError`, so either
    ``except`` clause catches it.
    """


class DroppedRowsWarning(UserWarning):
    """Rows of an input table were dropped because they give no 6D phase-space point,
    or were removed from a table outside bayesdyn after :meth:`Catalog.to_table`.

    Emitted by :meth:`Catalog.from_gaia` (and :meth:`Catalog.from_table` on Gaia
    columns) with the count per reason, and by :meth:`Catalog.from_table` on a
    table with fewer rows than it had when written; the same counts are recorded in
    ``Catalog.history``. It is a warning rather than a log message so that it is
    visible by default, can be turned into an error with
    ``warnings.simplefilter("error", DroppedRowsWarning)`` (or ``strict=True``),
    and can be silenced deliberately with ``warnings.simplefilter("ignore", ...)``.
    """


def warn_caller(message: str, category: type[Warning]) -> None:
    """Warn, attributing the warning to the first caller outside ``bayesdyn.catalog``."""
    level = 2  # stacklevel 2 is the frame of warn_caller's caller
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE:
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)

"""Catalogs of stellar positions and velocities (pipeline stage 1).

:class:`Catalog` holds positions x (N, 3) [kpc] and velocities v (N, 3) [km/s] in a
right-handed Galactocentric frame with explicit :class:`SolarParameters`, optional
Gaia observables with their errors, and the history of the cuts that made it.
"""

from ._catalog import Catalog as Catalog
from ._catalog import CutRecord as CutRecord
from ._errors import CatalogError as CatalogError
from ._errors import CatalogUnitError as CatalogUnitError
from ._errors import DroppedRowsWarning as DroppedRowsWarning
from ._gaia import observables_to_galactocentric as observables_to_galactocentric
from ._gaia import galactocentric_affine as galactocentric_affine
from ._solar import SolarParameters as SolarParameters

__all__ = [
    "Catalog",
    "CatalogError",
    "CatalogUnitError",
    "CutRecord",
    "DroppedRowsWarning",
    "SolarParameters",
    "galactocentric_affine",
    "observables_to_galactocentric",
]

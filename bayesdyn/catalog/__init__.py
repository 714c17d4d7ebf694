"""Catalogs of stellar positions and velocities (pipeline stage 1)."""

from ._catalog import Catalog as Catalog
from ._catalog import CatalogError as CatalogError
from ._catalog import CutRecord as CutRecord
from ._solar import SolarParameters as SolarParameters

__all__ = ["Catalog", "CatalogError", "CutRecord", "SolarParameters"]

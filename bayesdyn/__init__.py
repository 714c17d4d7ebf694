"""bayesdyn: the Galactic potential and its dark matter from stellar phase-space densities.

The pipeline (DESIGN §1), one subpackage per stage:

catalog → psd → dynamics (CBE) → potentials → inference → results
"""

from . import jeans as jeans
from . import mocks as mocks
from . import units as units
from .catalog import Catalog as Catalog
from .catalog import CatalogError as CatalogError
from .catalog import CutRecord as CutRecord
from .catalog import DroppedRowsWarning as DroppedRowsWarning
from .catalog import SolarParameters as SolarParameters

__version__ = "0.1.0"

__all__ = ["jeans", "mocks", "Catalog", "CatalogError", "CutRecord", "DroppedRowsWarning", "SolarParameters", "units", "__version__"]

"""bayesdyn: the Galactic potential and its dark matter from stellar phase-space densities.

The pipeline (DESIGN §1), one subpackage per stage:

catalog → psd → dynamics (CBE) → potentials → inference → results

Example:
    >>> import bayesdyn as bd
    >>> cat, truth = bd.mocks.load_default()          # 10⁵-star disk mock  # doctest: +SKIP
    >>> psd = bd.fit_psd(cat, ensemble=4, seed=0)       # doctest: +SKIP
"""

__version__ = "0.1.0"

from . import catalog as catalog
from . import dynamics as dynamics
from . import inference as inference
from . import jeans as jeans
from . import maps as maps
from . import mocks as mocks
from . import neural as neural
from . import potentials as potentials
from . import psd as psd
from . import results as results
from . import units as units
from . import validate as validate
from .catalog import Catalog as Catalog
from .catalog import CatalogError as CatalogError
from .catalog import CutRecord as CutRecord
from .catalog import DroppedRowsWarning as DroppedRowsWarning
from .catalog import SolarParameters as SolarParameters
from .dynamics import correct_measurement_errors as correct_measurement_errors
from .dynamics import estimate_accelerations as estimate_accelerations
from .dynamics import weak_form_data as weak_form_data
from .inference import AccelerationData as AccelerationData
from .inference import PotentialModel as PotentialModel
from .inference import infer as infer
from .psd import PhaseSpaceDensity as PhaseSpaceDensity
from .psd import fit_psd as fit_psd
from .psd import load_psd as load_psd
from .results import Posterior as Posterior
from .results import dark_disk_limits as dark_disk_limits

__all__ = [
    "AccelerationData",
    "Catalog",
    "CatalogError",
    "CutRecord",
    "DroppedRowsWarning",
    "PhaseSpaceDensity",
    "Posterior",
    "PotentialModel",
    "SolarParameters",
    "catalog",
    "correct_measurement_errors",
    "dark_disk_limits",
    "dynamics",
    "estimate_accelerations",
    "fit_psd",
    "infer",
    "inference",
    "jeans",
    "load_psd",
    "maps",
    "mocks",
    "neural",
    "potentials",
    "psd",
    "results",
    "units",
    "validate",
    "__version__",
    "weak_form_data",
]

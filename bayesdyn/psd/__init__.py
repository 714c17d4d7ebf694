"""Phase-space densities (pipeline stage 2): f(x, v) = n(x) · p(v|x) from flow ensembles.

``fit_psd`` learns the density of a Catalog with K pairs of flowjax flows trained
in one vmapped program; the resulting :class:`PhaseSpaceDensity` gives log f, the
scores ∂log f/∂x and ∂log f/∂v (ensemble mean and per member), samples, conditional
velocity samples and the number density, and saves to / loads from files without
pickle (``load_psd``). ``score_errors`` compares scores with exact ones.
"""

from ._density import PhaseSpaceDensity as PhaseSpaceDensity
from ._density import load_psd as load_psd
from ._diagnostics import score_errors as score_errors
from ._fit import fit_psd as fit_psd
from ._flows import ACTIVATIONS as ACTIVATIONS
from ._flows import FLOWS as FLOWS
from ._flows import FlowConfig as FlowConfig
from ._io import PSDFileError as PSDFileError

__all__ = [
    "ACTIVATIONS",
    "FLOWS",
    "FlowConfig",
    "PSDFileError",
    "PhaseSpaceDensity",
    "fit_psd",
    "load_psd",
    "score_errors",
]

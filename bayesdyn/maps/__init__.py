"""Maps and derived fields (pipeline stage 6): a(x), Φ(x), ρ(x), ε(x) and ∂f/∂t on grids, slices, lines of sight.

* Where: :func:`grid` (3-d lattice), :func:`slice` (a plane through a point),
  :func:`line_of_sight` (from the Sun along Galactic (l, b), astropy's exact frame).
* What: :func:`evaluate` gives a :class:`FieldMap` of any quantity in
  :data:`QUANTITIES` for any model with ``acceleration``/``density``/``potential``
  (components, reference galaxies, mocks' truths, neural potentials; ensembles and
  lists of models give members and 68/95 % bands, :meth:`FieldMap.band`);
  :func:`smoothed_density` is the ball-averaged density from accelerations alone by
  the divergence theorem; :func:`disequilibrium_map` is ∂log f/∂t = −(v·s_x + a·s_v)
  over p(v|x) given an independent acceleration field.
* Plots (matplotlib, no pyplot state): :func:`plot_map`, :func:`plot_profile`,
  :func:`plot_line_of_sight` (with reference overlays such as MWPotential2014 or
  gala's MilkyWayPotential), :func:`plot_disequilibrium`.

Example:
    >>> import bayesdyn as bd
    >>> mw = bd.potentials.MWPotential2014()
    >>> los = bd.maps.line_of_sight(0.0, 0.0, [0.0, 1.0, 2.0])
    >>> fm = bd.maps.evaluate(mw, "a_R", los)
    >>> fm.mean.shape
    (3,)
"""

from ._fields import GYR_PER_KPC_S_KM as GYR_PER_KPC_S_KM
from ._fields import QUANTITIES as QUANTITIES
from ._fields import DisequilibriumMap as DisequilibriumMap
from ._fields import FieldMap as FieldMap
from ._fields import disequilibrium_map as disequilibrium_map
from ._fields import evaluate as evaluate
from ._fields import smoothed_density as smoothed_density
from ._geometry import PLANES as PLANES
from ._geometry import Grid as Grid
from ._geometry import grid as grid
from ._geometry import line_of_sight as line_of_sight
from ._geometry import plane_slice as slice  # noqa: A004 - the public name the API promises
from ._geometry import sphere_rule as sphere_rule
from ._plots import new_axes as new_axes
from ._plots import plot_disequilibrium as plot_disequilibrium
from ._plots import plot_line_of_sight as plot_line_of_sight
from ._plots import plot_map as plot_map
from ._plots import plot_profile as plot_profile

__all__ = [
    "GYR_PER_KPC_S_KM",
    "PLANES",
    "QUANTITIES",
    "DisequilibriumMap",
    "FieldMap",
    "Grid",
    "disequilibrium_map",
    "evaluate",
    "grid",
    "line_of_sight",
    "new_axes",
    "plot_disequilibrium",
    "plot_line_of_sight",
    "plot_map",
    "plot_profile",
    "slice",
    "smoothed_density",
    "sphere_rule",
]

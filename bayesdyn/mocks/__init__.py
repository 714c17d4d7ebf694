"""Mock catalogs with known truth (pipeline stage 0: the references every later stage is checked against).

Every mock returns ``(Catalog, Truth)``; the :class:`Truth` gives the exact
acceleration, potential, mass density and, where known, the tracer density,
the distribution function and its scores ∂log f/∂x, ∂log f/∂v.

* :func:`plummer` — a self-consistent Plummer sphere (exact f(E), exact scores);
* :func:`spherical_tracer` — tracers (Plummer or Zhao) in a fixed NFW or cored
  (pseudo-isothermal, ρ₀/(1 + r²/r_c²)) halo, isotropic or Osipkov–Merritt;
* :func:`solar_neighbourhood_disk` — a quasi-isothermal disk in MWPotential2014,
  sampled in a sphere around the Sun (needs galpy);
* :func:`load_default` — the shipped 10⁵-star disk mock (no galpy needed);
* :func:`apply_dust` — removes stars with a known efficiency ε(x) from opaque Gaussian clouds.
"""

from ._default import load_default as load_default
from ._dust import DustModel as DustModel
from ._dust import apply_dust as apply_dust
from ._disk import DiskTruth as DiskTruth
from ._disk import mock_solar_parameters as mock_solar_parameters
from ._disk import solar_neighbourhood_disk as solar_neighbourhood_disk
from ._plummer import PlummerTruth as PlummerTruth
from ._plummer import plummer as plummer
from ._spherical import SphericalTracerTruth as SphericalTracerTruth
from ._spherical import spherical_tracer as spherical_tracer
from ._truth import GalpyRequiredError as GalpyRequiredError
from ._truth import MockError as MockError
from ._truth import Truth as Truth

__all__ = [
    "DustModel",
    "apply_dust",
    "DiskTruth",
    "GalpyRequiredError",
    "MockError",
    "PlummerTruth",
    "SphericalTracerTruth",
    "Truth",
    "load_default",
    "mock_solar_parameters",
    "plummer",
    "solar_neighbourhood_disk",
    "spherical_tracer",
]

"""Classic Jeans-equation estimators: the field's binned baseline, with bootstrap errors.

Numpy (binned statistics, vectorised over stars), not part of the JAX hot path.
They give what the CBE-flow measurement is compared against (issue 8):

* :func:`axisymmetric` — (R, z) bins; moments ν, ⟨v_R²⟩, ⟨v_φ⟩, ⟨v_φ²⟩, ⟨v_z²⟩,
  ⟨v_R v_z⟩ and a_R, a_z from the radial and vertical Jeans equations;
* :func:`acceleration_at` — a_R, a_z at one point (e.g. the Sun, |z| = 1 kpc) from a
  local polynomial fit to a small stencil of bins; ``.cartesian(phi)`` gives (a_x, a_y, a_z);
* :func:`spherical` — radial bins; σ_r, σ_t, β, M(<r), a_r = −G M/r², ρ(r).

Conventions: positions kpc, velocities km/s, accelerations a = −∇Φ in (km/s)²/kpc,
masses M☉, tracer densities stars/kpc³. In the right-handed astropy Galactocentric
frame v_φ (φ = atan2(y, x)) is negative for disk stars; only ⟨v_φ²⟩ enters the
accelerations. Errors: bootstrap resamples of the stars (:class:`Estimate`).
"""

from ._axisymmetric import AxisymmetricJeans as AxisymmetricJeans
from ._axisymmetric import PointAcceleration as PointAcceleration
from ._axisymmetric import acceleration_at as acceleration_at
from ._axisymmetric import axisymmetric as axisymmetric
from ._common import Estimate as Estimate
from ._common import MAX_UNDEFINED_FRACTION as MAX_UNDEFINED_FRACTION
from ._common import JeansError as JeansError
from ._spherical import SphericalJeans as SphericalJeans
from ._spherical import spherical as spherical

__all__ = [
    "AxisymmetricJeans",
    "Estimate",
    "JeansError",
    "MAX_UNDEFINED_FRACTION",
    "PointAcceleration",
    "SphericalJeans",
    "acceleration_at",
    "axisymmetric",
    "spherical",
]

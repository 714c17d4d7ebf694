"""Potential models (pipeline stage 4): components with priors, sums, reference galaxies.

Every component gives the potential Φ [(km/s)²], the acceleration a = −∇Φ
[(km/s)²/kpc] and the density ρ = ∇²Φ/4πG [M☉/kpc³] at positions of shape (3,)
or (N, 3) in kpc (Galactocentric). Each parameter is a number (internal units;
astropy Quantities are converted) or a numpyro distribution: a free parameter,
listed by ``free_parameters()`` and replaced by ``bind()`` or ``sample()``.

Example:
    >>> import numpyro.distributions as dist
    >>> from bayesdyn import potentials as bp
    >>> model = bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.Uniform(2, 40)) \\
    ...     + bp.MiyamotoNagai(mass=6.8e10, a=3.0, b=0.28)
    >>> sorted(model.free_parameters())
    ['nfw.scale_density', 'nfw.scale_radius']
    >>> mw = bp.MWPotential2014()
    >>> round(float(mw.circular_velocity([8.0, 0.0, 0.0])), 3)
    220.0
"""

from ._base import Component as Component
from ._base import CompositePotential as CompositePotential
from ._base import PotentialComponent as PotentialComponent
from ._base import UnboundParameterError as UnboundParameterError
from ._disks import DarkDisk as DarkDisk
from ._disks import MiyamotoNagai as MiyamotoNagai
from ._disks import MN3ExponentialDisk as MN3ExponentialDisk
from ._galaxies import MilkyWayPotential as MilkyWayPotential
from ._galaxies import MWPotential2014 as MWPotential2014
from ._spherical import NFW as NFW
from ._spherical import Burkert as Burkert
from ._spherical import CoreNFW as CoreNFW
from ._spherical import Einasto as Einasto
from ._spherical import Hernquist as Hernquist
from ._spherical import Plummer as Plummer
from ._spherical import PowerLawCutoff as PowerLawCutoff
from ._spherical import PseudoIsothermal as PseudoIsothermal
from ._spherical import SphericalComponent as SphericalComponent
from ._spherical import Zhao as Zhao
from ._spherical import ZhaoAtRadius as ZhaoAtRadius
from ._wrappers import Flattened as Flattened
from ._wrappers import Tilted as Tilted
from ._wrappers import rotation_matrix as rotation_matrix

__all__ = [
    "Component",
    "PotentialComponent",
    "SphericalComponent",
    "CompositePotential",
    "UnboundParameterError",
    "NFW",
    "Zhao",
    "ZhaoAtRadius",
    "Burkert",
    "PseudoIsothermal",
    "CoreNFW",
    "Einasto",
    "Hernquist",
    "Plummer",
    "PowerLawCutoff",
    "MiyamotoNagai",
    "MN3ExponentialDisk",
    "DarkDisk",
    "Flattened",
    "Tilted",
    "rotation_matrix",
    "MWPotential2014",
    "MilkyWayPotential",
]

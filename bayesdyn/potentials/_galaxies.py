"""Reference galaxies built from the components: galpy's MWPotential2014 and gala's MilkyWayPotential."""

from __future__ import annotations

import numpy as np
from scipy import special

from .. import units as _units
from ._base import CompositePotential
from ._disks import MiyamotoNagai, MN3ExponentialDisk
from ._spherical import NFW, Hernquist, PowerLawCutoff

__all__ = ["MWPotential2014", "MilkyWayPotential"]


def MWPotential2014() -> CompositePotential:  # noqa: N802 - the name galpy and the literature use
    """Bovy (2015)'s MWPotential2014, as galpy defines it: bulge, disk and halo.

    galpy sets each amplitude by ``normalize=f``: the component's radial force
    at R₀ = 8 kpc, z = 0 is the fraction f of the force that gives
    v_c(R₀) = 220 km/s. The same condition fixes the amplitudes here, so the
    accelerations equal galpy's in physical units (and the masses equal galpy's
    when galpy converts with astropy's G, as it does when astropy is installed;
    without astropy galpy uses G = 4.302e-3 pc (km/s)²/M☉, 2.5e-4 off).

    Components (names ``bulge``, ``disk``, ``halo``):

    - bulge: :class:`PowerLawCutoff`, α = 1.8, r_c = 1.9 kpc, f = 0.05;
    - disk: :class:`MiyamotoNagai`, a = 3 kpc, b = 0.28 kpc, f = 0.60;
    - halo: :class:`NFW`, r_s = 16 kpc, f = 0.35.

    Returns:
        A :class:`CompositePotential` with v_c(8 kpc) = 220 km/s.
    """
    ro, vo = 8.0, 220.0
    g = _units.G
    alpha, rc = 1.8, 1.9
    gm_bulge = 0.05 * vo**2 * ro / special.gammainc(0.5 * (3.0 - alpha), (ro / rc) ** 2)
    a, b = 3.0, 0.28
    gm_disk = 0.60 * vo**2 * (ro**2 + (a + b) ** 2) ** 1.5 / ro**2
    rs = 16.0
    s = ro / rs
    g_rho_s = 0.35 * vo**2 * ro / (4.0 * np.pi * rs**3 * (np.log1p(s) - s / (1.0 + s)))
    return CompositePotential(
        bulge=PowerLawCutoff(gm_bulge / g, alpha, rc),
        disk=MiyamotoNagai(gm_disk / g, a, b),
        halo=NFW(g_rho_s / g, rs),
    )


def MilkyWayPotential(version: str = "v1") -> CompositePotential:  # noqa: N802
    """gala's ``MilkyWayPotential``: nucleus, bulge, disk and NFW halo.

    Args:
        version: ``"v1"`` (gala's default ``MilkyWayPotential``, Bovy 2015 disk:
            Miyamoto–Nagai M = 6.8e10 M☉, a = 3 kpc, b = 0.28 kpc; bulge
            Hernquist 5e9 M☉, 1 kpc; nucleus Hernquist 1.71e9 M☉, 0.07 kpc;
            NFW halo m = 5.4e11 M☉, r_s = 15.62 kpc) or ``"v2"`` (gala's
            ``MilkyWayPotential2022``: three-MN exponential disk M = 4.7717e10
            M☉, h_R = 2.6 kpc, sech² h_z = 0.3 kpc; nucleus 1.8142e9 M☉,
            0.0688867 kpc; halo m = 5.5427e11 M☉, r_s = 15.626 kpc).
            gala's NFW "m" is the scale mass 4π ρ_s r_s³.

    Returns:
        A :class:`CompositePotential` with parts ``disk``, ``bulge``,
        ``nucleus``, ``halo``.
    """
    version = str(version).lower()
    if version == "v1":
        disk = MiyamotoNagai(6.8e10, 3.0, 0.28)
        nucleus = Hernquist(1.71e9, 0.07)
        m_halo, rs = 5.4e11, 15.62
    elif version in ("v2", "2022"):
        disk = MN3ExponentialDisk(4.7717e10, 2.6, 0.3, sech2=True, positive_density=True)
        nucleus = Hernquist(1.8142e9, 0.0688867)
        m_halo, rs = 5.5427e11, 15.626
    else:
        raise ValueError(f"MilkyWayPotential: unknown version {version!r}; use 'v1' (gala's default) or 'v2'")
    return CompositePotential(
        disk=disk,
        bulge=Hernquist(5e9, 1.0),
        nucleus=nucleus,
        halo=NFW(m_halo / (4.0 * np.pi * rs**3), rs),
    )

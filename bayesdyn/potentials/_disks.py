"""Axisymmetric disks: Miyamoto–Nagai, the three-MN exponential disk, and the dark disk."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import units as _units
from . import _numerics as num
from ._base import Component, _own_parameter, _user_stacklevel

__all__ = ["MiyamotoNagai", "MN3ExponentialDisk", "DarkDisk"]

_G = _units.G


def _mn_potential(x, mass, a, b):
    zeta = jnp.sqrt(x[2] ** 2 + b * b)
    return -_G * mass / jnp.sqrt(x[0] ** 2 + x[1] ** 2 + (a + zeta) ** 2)


def _mn_acceleration(x, mass, a, b):
    zeta = jnp.sqrt(x[2] ** 2 + b * b)
    d3 = (x[0] ** 2 + x[1] ** 2 + (a + zeta) ** 2) ** 1.5
    g = _G * mass / d3
    return -g * jnp.stack([x[0], x[1], x[2] * (a + zeta) / zeta])


def _mn_density(x, mass, a, b):
    zeta = jnp.sqrt(x[2] ** 2 + b * b)
    R2 = x[0] ** 2 + x[1] ** 2
    d2 = R2 + (a + zeta) ** 2
    return (
        b * b * mass / (4.0 * np.pi)
        * (a * R2 + (a + 3.0 * zeta) * (a + zeta) ** 2)
        / (d2**2.5 * zeta**3)
    )


class MiyamotoNagai(Component):
    r"""Miyamoto & Nagai (1975) disk, Φ = −GM / √(R² + (a + √(z² + b²))²).

    Same as galpy's and gala's ``MiyamotoNagaiPotential``.

    Args:
        mass: total mass M [M☉].
        a: radial scale length [kpc] (a = 0 is a Plummer sphere).
        b: vertical scale height [kpc].
    """

    mass: Any
    a: Any
    b: Any
    parameter_names = ("mass", "a", "b")
    parameter_types = ("mass", "length", "length")
    parameter_requirements: ClassVar[dict[str, str]] = {"a": ">=0"}

    def __init__(self, mass: Any, a: Any, b: Any):
        self.mass = _own_parameter(type(self), "mass", mass)
        self.a = _own_parameter(type(self), "a", a)
        self.b = _own_parameter(type(self), "b", b)

    def _potential(self, x):
        return _mn_potential(x, self.mass, self.a, self.b)

    def _acceleration(self, x):
        return _mn_acceleration(x, self.mass, self.a, self.b)

    def _density(self, x):
        return _mn_density(x, self.mass, self.a, self.b)


# Smith et al. (2015, MNRAS 448, 2934) fits: rows give M1, M2, M3 (per unit disk
# mass) and a1, a2, a3 (per unit h_R) as quartic polynomials in b/h_R, highest
# power first. Table 1: best fit (density negative in places); Table 2: positive density.
_MN3_NEGATIVE = np.array(
    [
        [-0.0090, 0.0640, -0.1653, 0.1164, 1.9487],
        [0.0173, -0.0903, 0.0877, 0.2029, -1.3077],
        [-0.0051, 0.0287, -0.0361, -0.0544, 0.2242],
        [-0.0358, 0.2610, -0.6987, -0.1193, 2.0074],
        [-0.0830, 0.4992, -0.7967, -1.2966, 4.4441],
        [-0.0247, 0.1718, -0.4124, -0.5944, 0.7333],
    ]
)
_MN3_POSITIVE = np.array(
    [
        [0.0036, -0.0330, 0.1117, -0.1335, 0.1749],
        [-0.0131, 0.1090, -0.3035, 0.2921, -5.7976],
        [-0.0048, 0.0454, -0.1425, 0.1012, 6.7120],
        [-0.0158, 0.0993, -0.2070, -0.7089, 0.6445],
        [-0.0319, 0.1514, -0.1279, -0.9325, 2.6836],
        [-0.0326, 0.1816, -0.2943, -0.6329, 2.3193],
    ]
)
# b/h_R as a cubic in h_z/h_R (highest power first, no constant term).
_MN3_B_SECH2 = (-0.033, 0.262, 0.659)
_MN3_B_EXP = (-0.269, 1.080, 1.092)


class MN3ExponentialDisk(Component):
    r"""Exponential disk approximated by three Miyamoto–Nagai disks (Smith et al. 2015).

    Approximates ρ ∝ exp(−R/h_R) sech²(z/h_z) (``sech2=True``) or
    exp(−R/h_R) exp(−|z|/h_z) (``sech2=False``) of total mass M by three MN disks
    with a common b and masses and scale lengths from Smith et al.'s polynomial
    fits in b/h_R. ``positive_density=True`` uses their Table 2 (density positive
    everywhere, good to ~5 h_R); ``False`` their Table 1 (better fit out to
    ~7–8 h_R, negative density in places). Defaults follow gala's
    ``MN3ExponentialDiskPotential``; galpy's ``MN3ExponentialDiskPotential``
    defaults to ``sech=False, posdens=False`` and takes the midplane density
    ρ₀ = M / (4π h_R² h_z). As galpy does, a b/h_R beyond the fits' range (1.35
    with ``positive_density``, else 3) warns; a ratio that gives b ≤ 0 or a + b ≤ 0
    (no Miyamoto–Nagai potential) is refused.

    M is the mass of the exponential disk being approximated: the three MN masses
    from the fits need not sum to it (1.108 M for gala's MilkyWayPotential2022 disk,
    h_R = 2.6, h_z = 0.3 kpc; gala and galpy build the same three disks).

    Args:
        mass: mass M of the exponential disk approximated [M☉].
        scale_length: h_R [kpc].
        scale_height: h_z [kpc].
        sech2: vertical profile sech² (True) or exponential (False).
        positive_density: use the positive-density fit (Table 2).
    """

    mass: Any
    scale_length: Any
    scale_height: Any
    sech2: bool = eqx.field(static=True)
    positive_density: bool = eqx.field(static=True)
    parameter_names = ("mass", "scale_length", "scale_height")
    parameter_types = ("mass", "length", "length")

    def __init__(
        self,
        mass: Any,
        scale_length: Any,
        scale_height: Any,
        *,
        sech2: bool = True,
        positive_density: bool = True,
    ):
        self.mass = _own_parameter(type(self), "mass", mass)
        self.scale_length = _own_parameter(type(self), "scale_length", scale_length)
        self.scale_height = _own_parameter(type(self), "scale_height", scale_height)
        self.sech2 = bool(sech2)
        self.positive_density = bool(positive_density)
        self._check_values()

    def _check_values(self) -> None:
        if isinstance(self.scale_length, float) and isinstance(self.scale_height, float):
            ratio = self.scale_height / self.scale_length
            parts = [(float(a), float(b)) for a, b in self._shapes()[1]]  # (a free mass is still a prior)
            b_hr = parts[0][1] / self.scale_length
            if any(b <= 0 or a + b <= 0 for a, b in parts):  # no Miyamoto–Nagai potential (accepted silently)
                raise ValueError(
                    f"MN3ExponentialDisk: h_z/h_R = {ratio:.3g} is beyond Smith et al.'s fits, which give a disk "
                    f"with b <= 0 or a + b <= 0 there (a, b = {[(round(a, 3), round(b, 3)) for a, b in parts]} kpc), "
                    "no Miyamoto–Nagai potential: use a thinner disk, or a MiyamotoNagai"
                )
            limit = 1.35 if self.positive_density else 3.0  # galpy's MN3ExponentialDiskPotential warns beyond these
            if b_hr > limit:
                warnings.warn(f"MN3ExponentialDisk: b/h_R = {b_hr:.3g} (h_z/h_R = {ratio:.3g}) is beyond the range of "
                              f"Smith et al.'s fits ({limit} for positive_density={self.positive_density}, as galpy "
                              "checks); the three Miyamoto–Nagai disks approximate the exponential disk poorly",
                              UserWarning, stacklevel=_user_stacklevel())

    def _shapes(self) -> tuple[list[Any], list[tuple[Any, Any]]]:
        """The three disks' mass fractions and their (a [kpc], b [kpc]), from h_R and h_z alone."""
        ratio = self.scale_height / self.scale_length
        c3, c2, c1 = _MN3_B_SECH2 if self.sech2 else _MN3_B_EXP
        b_hr = ((c3 * ratio + c2) * ratio + c1) * ratio
        table = _MN3_POSITIVE if self.positive_density else _MN3_NEGATIVE
        coeffs = [num.horner([float(c) for c in row[::-1]], b_hr) for row in table]
        b = b_hr * self.scale_length
        return coeffs[:3], [(coeffs[i + 3] * self.scale_length, b) for i in range(3)]

    def disks(self) -> list[tuple[Any, Any, Any]]:
        """The three Miyamoto–Nagai disks as (mass [M☉], a [kpc], b [kpc])."""
        fractions, shapes = self._shapes()
        return [(f * self.mass, a, b) for f, (a, b) in zip(fractions, shapes)]

    def _potential(self, x):
        return sum(_mn_potential(x, *d) for d in self.disks())

    def _acceleration(self, x):
        return sum(_mn_acceleration(x, *d) for d in self.disks())

    def _density(self, x):
        return sum(_mn_density(x, *d) for d in self.disks())


class DarkDisk(Component):
    r"""A thin dark disk: a self-gravitating isothermal sheet in the local, plane-parallel limit.

    ρ(z) = Σ / (4h) sech²(z / 2h),  a = (0, 0, −2πGΣ tanh(z / 2h)),
    Φ = 4πGΣh ln cosh(z / 2h).

    Σ is the total surface density (∫ρ dz = Σ) and h the scale height
    (ρ ∝ sech²(z/z_d) with z_d = 2h, the convention of Kramer & Randall 2016 and
    Schutz et al. 2018). The sheet is infinite and uniform in x and y, so a_R = 0:
    a *local* model, valid where |z| ≪ R (distance from the Galactic centre) and
    over radial ranges much shorter than the disk's scale length (a few kpc
    around the Sun), i.e. for vertical dynamics near the solar circle. The
    midplane is z = 0 of the Galactocentric frame.

    Args:
        surface_density: Σ [M☉/kpc²] (1 M☉/pc² = 10⁶ M☉/kpc²; a Quantity in
            M☉/pc² is converted).
        scale_height: h [kpc].
    """

    surface_density: Any
    scale_height: Any
    parameter_names = ("surface_density", "scale_height")
    parameter_types = ("surface density", "length")
    parameter_requirements: ClassVar[dict[str, str]] = {"surface_density": ">=0"}

    def __init__(self, surface_density: Any, scale_height: Any):
        self.surface_density = _own_parameter(type(self), "surface_density", surface_density)
        self.scale_height = _own_parameter(type(self), "scale_height", scale_height)

    def _potential(self, x):
        h = self.scale_height
        return 4.0 * np.pi * _G * self.surface_density * h * num.log_cosh(x[2] / (2.0 * h))

    def _acceleration(self, x):
        az = -2.0 * np.pi * _G * self.surface_density * jnp.tanh(x[2] / (2.0 * self.scale_height))
        zero = jnp.zeros_like(az)
        return jnp.stack([zero, zero, az])

    def _density(self, x):
        h = self.scale_height
        return self.surface_density / (4.0 * h) * num.sech2(x[2] / (2.0 * h))

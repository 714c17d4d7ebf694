"""Units: the internal unit system and the conversions at the public boundary.

Inside JAX every number is a plain array in one unit system (DESIGN §2):

| quantity     | internal unit   |
|--------------|-----------------|
| length       | kpc             |
| velocity     | km/s            |
| mass         | M☉ (solar mass) |
| acceleration | (km/s)²/kpc     |
| density      | M☉/kpc³         |
| potential    | (km/s)²         |

A bare number in the public API means the internal unit. astropy Quantities are
accepted wherever a number is, and are converted (``1000 * u.pc`` is 1 kpc); a
Quantity of the wrong physical type (a velocity given as a length) is refused
with an error naming the argument.

Examples:
    >>> import astropy.units as u
    >>> from bayesdyn import units
    >>> units.strip(250 * u.pc, "length", name="r")
    0.25
    >>> round(float(units.density_to(1e7, "GeV/cm3")), 4)
    0.3797
"""

from __future__ import annotations

from typing import Any

import astropy.constants as const
import astropy.units as u
import numpy as np

__all__ = [
    "G",
    "LENGTH",
    "VELOCITY",
    "MASS",
    "ACCELERATION",
    "DENSITY",
    "SURFACE_DENSITY",
    "POTENTIAL",
    "TIME",
    "GEV_PER_CM3",
    "UnitError",
    "strip",
    "quantity",
    "acceleration_to",
    "acceleration_from",
    "density_to",
    "density_from",
    "KMS2_PER_KPC_IN_KPC_PER_GYR2",
    "KMS2_PER_KPC_IN_KMS_PER_MYR",
    "MSUN_PER_PC3_IN_GEV_PER_CM3",
]

LENGTH = u.kpc
"""The internal length unit: kpc."""
VELOCITY = u.km / u.s
"""The internal velocity unit: km/s."""
MASS = u.Msun
"""The internal mass unit: M☉."""
ACCELERATION = u.km**2 / u.s**2 / u.kpc
"""The internal acceleration unit: (km/s)²/kpc (1.0459 kpc/Gyr², 1.0227e-3 km/s/Myr)."""
DENSITY = u.Msun / u.kpc**3
"""The internal mass-density unit: M☉/kpc³ (1e-9 M☉/pc³)."""
SURFACE_DENSITY = u.Msun / u.kpc**2
"""The internal surface-density unit: M☉/kpc² (1e-6 M☉/pc²)."""
POTENTIAL = u.km**2 / u.s**2
"""The internal potential unit: (km/s)²."""
TIME = u.kpc / (u.km / u.s)  # ≈ 0.9778 Gyr
"""The internal time unit: kpc/(km/s) ≈ 0.9778 Gyr."""

GEV_PER_CM3 = u.def_unit("GeV_per_cm3", (u.GeV / const.c**2 / u.cm**3).to(u.Msun / u.pc**3))
"""GeV/cm³ as an astropy unit of mass density (energy density / c²)."""

G: float = float(const.G.to(LENGTH * VELOCITY**2 / MASS).value)
"""Newton's constant in kpc (km/s)² / M☉ (4.300917270e-6)."""

KMS2_PER_KPC_IN_KPC_PER_GYR2: float = float((1 * ACCELERATION).to(u.kpc / u.Gyr**2).value)
"""1 (km/s)²/kpc in kpc/Gyr² (1.04594)."""
KMS2_PER_KPC_IN_KMS_PER_MYR: float = float((1 * ACCELERATION).to(u.km / u.s / u.Myr).value)
"""1 (km/s)²/kpc in km/s/Myr (1.02271e-3)."""
MSUN_PER_PC3_IN_GEV_PER_CM3: float = float((1 * u.Msun / u.pc**3).to(GEV_PER_CM3).value)
"""1 M☉/pc³ in GeV/cm³ (37.965)."""

_PHYSICAL = {
    "length": LENGTH,
    "velocity": VELOCITY,
    "mass": MASS,
    "acceleration": ACCELERATION,
    "density": DENSITY,
    "surface density": SURFACE_DENSITY,
    "potential": POTENTIAL,
    "time": TIME,
    "angle": u.deg,
    "angular velocity": u.mas / u.yr,
    "dimensionless": u.dimensionless_unscaled,
    # scores ∂log f/∂x, ∂log f/∂v and ∇log ε
    "inverse length": LENGTH**-1,
    "inverse velocity": VELOCITY**-1,
}

_ACC_UNITS = {
    "(km/s)2/kpc": ACCELERATION,
    "kpc/Gyr2": u.kpc / u.Gyr**2,
    "km/s/Myr": u.km / u.s / u.Myr,
    "pc/Myr2": u.pc / u.Myr**2,
    "m/s2": u.m / u.s**2,
}
_DENS_UNITS = {
    "Msun/kpc3": DENSITY,
    "Msun/pc3": u.Msun / u.pc**3,
    "GeV/cm3": GEV_PER_CM3,
    "g/cm3": u.g / u.cm**3,
}


class UnitError(ValueError):
    """A value has the wrong physical dimension for the argument it was given to."""


def _unit_for(physical_type: str) -> u.UnitBase:
    try:
        return _PHYSICAL[physical_type]
    except KeyError:
        raise ValueError(
            f"unknown physical type {physical_type!r}; expected one of {sorted(_PHYSICAL)}"
        ) from None


def strip(value: Any, physical_type: str, name: str = "value") -> Any:
    """Return ``value`` as plain numbers in the internal unit of ``physical_type``.

    Args:
        value: a number, array or astropy Quantity. Bare numbers are taken to be
            in the internal unit already and are returned unchanged.
        physical_type: one of ``"length"`` (kpc), ``"velocity"`` (km/s),
            ``"mass"`` (M☉), ``"acceleration"`` ((km/s)²/kpc), ``"density"``
            (M☉/kpc³), ``"surface density"`` (M☉/kpc²), ``"potential"``
            ((km/s)²), ``"time"`` (kpc/(km/s)), ``"angle"`` (deg),
            ``"angular velocity"`` (mas/yr), ``"dimensionless"``, ``"inverse length"``
            (1/kpc), ``"inverse velocity"`` (s/km).
        name: the argument's name, used in error messages.

    Raises:
        UnitError: if ``value`` is a Quantity whose unit cannot be converted.
    """
    target = _unit_for(physical_type)
    mask = getattr(value, "mask", None)
    if mask is not None and np.any(mask):  # a masked entry's value underneath is not a number to use
        raise UnitError(f"{name} has {int(np.sum(mask))} masked (missing) entries; drop or fill them first")
    if getattr(value, "unit", None) is not None and not isinstance(value, u.Quantity):
        value = u.Quantity(value)  # an astropy Column with a unit is a Quantity in disguise
    elif isinstance(value, (list, tuple)) and any(isinstance(e, u.Quantity) for e in value):
        try:  # a point written (-8122 * u.pc, 0 * u.pc, 20.8 * u.pc): one Quantity (it was passed on, and failed)
            value = u.Quantity(value)
        except (u.UnitsError, TypeError, ValueError) as err:
            raise UnitError(f"{name}: its elements' units do not agree ({err}); give them one unit, e.g. "
                            f"[-8.122, 0, 0.0208] * u.kpc") from None
    if isinstance(value, u.Quantity):
        try:
            out = value.to_value(target)
        except u.UnitConversionError:
            hint = ""
            if physical_type == "density" and value.unit.physical_type == "energy density":
                hint = (" (a dark-matter density quoted in GeV/cm³ is a mass density: write it as "
                        "value * bd.units.GEV_PER_CM3)")
            if target == u.dimensionless_unscaled:  # the message had read "convertible to , or a bare number in "
                raise UnitError(f"{name} was given in {value.unit} (physical type: {value.unit.physical_type}), but "
                                "it must be a dimensionless number: pass a bare number") from None
            raise UnitError(
                f"{name} was given in {value.unit} (physical type: {value.unit.physical_type}), "
                f"but it must be {'an' if physical_type[0] in 'aeiou' else 'a'} {physical_type}: pass a Quantity "
                "convertible to "
                f"{target}, or a bare number in {target}{hint}"
            ) from None
        return float(out) if np.ndim(out) == 0 else np.asarray(out)
    return value


def strip_squared(value: Any, physical_type: str, name: str = "value") -> Any:
    """:func:`strip` for a quantity in the internal unit squared (a covariance, e.g. ((km/s)²/kpc)²).

    Raises:
        UnitError: if ``value`` is a Quantity whose unit cannot be converted.
    """
    if getattr(value, "unit", None) is None:
        return value
    target = _unit_for(physical_type) ** 2
    try:
        return np.asarray(u.Quantity(value).to_value(target))
    except u.UnitConversionError:
        raise UnitError(f"{name} was given in {value.unit}, but it must be a ({physical_type})²: pass a Quantity "
                        f"convertible to {target}, or bare numbers in {target}") from None


def quantity(value: Any, physical_type: str) -> u.Quantity:
    """Attach the internal unit of ``physical_type`` to plain numbers."""
    return u.Quantity(np.asarray(value), _unit_for(physical_type))


def _convert(value: Any, table: dict, unit: str, frm: bool, internal: u.UnitBase, what: str):
    try:
        other = table[unit]
    except KeyError:
        raise ValueError(f"unknown {what} unit {unit!r}; expected one of {list(table)}") from None
    factor = float((1 * internal).to(other).value)
    return np.asarray(value) / factor if frm else np.asarray(value) * factor


def acceleration_to(value: Any, unit: str) -> np.ndarray:
    """Convert accelerations from (km/s)²/kpc to ``unit``.

    ``unit`` is one of ``"(km/s)2/kpc"``, ``"kpc/Gyr2"``, ``"km/s/Myr"``,
    ``"pc/Myr2"``, ``"m/s2"``.
    """
    return _convert(value, _ACC_UNITS, unit, False, ACCELERATION, "acceleration")


def acceleration_from(value: Any, unit: str) -> np.ndarray:
    """Convert accelerations given in ``unit`` to (km/s)²/kpc."""
    return _convert(value, _ACC_UNITS, unit, True, ACCELERATION, "acceleration")


def density_to(value: Any, unit: str) -> np.ndarray:
    """Convert mass densities from M☉/kpc³ to ``unit``.

    ``unit`` is one of ``"Msun/kpc3"``, ``"Msun/pc3"``, ``"GeV/cm3"``, ``"g/cm3"``.
    """
    return _convert(value, _DENS_UNITS, unit, False, DENSITY, "density")


def density_from(value: Any, unit: str) -> np.ndarray:
    """Convert mass densities given in ``unit`` to M☉/kpc³."""
    return _convert(value, _DENS_UNITS, unit, True, DENSITY, "density")

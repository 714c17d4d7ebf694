"""Solar parameters of the right-handed Galactocentric frame."""

from __future__ import annotations

import dataclasses
from typing import Any

import astropy.coordinates as coord
import astropy.units as u
import numpy as np

from .. import units as _u

__all__ = ["SolarParameters"]


@dataclasses.dataclass(frozen=True)
class SolarParameters:
    """Where the Sun sits and how it moves in the Galactocentric frame.

    The frame is astropy's right-handed ``Galactocentric``: the Galactic centre
    is the origin, the Sun lies at x ≈ −galcen_distance, y = 0, z = z_sun, and the
    disk rotates with v_y > 0 at the Sun (so v_φ < 0 in the usual cylindrical
    angle φ = atan2(y, x)). Defaults are astropy's ``'v4.0'`` parameter set.

    Attributes:
        galcen_distance: Sun–Galactic-centre distance [kpc] (8.122).
        z_sun: height of the Sun above the midplane [kpc] (0.0208).
        v_sun: Sun's velocity (v_x, v_y, v_z) [km/s] ((12.9, 245.6, 7.78)).
        roll: roll angle of the frame [deg] (0).
    """

    galcen_distance: float = 8.122
    z_sun: float = 0.0208
    v_sun: tuple[float, float, float] = (12.9, 245.6, 7.78)
    roll: float = 0.0

    def __post_init__(self):
        gd = _u.strip(self.galcen_distance, "length", "galcen_distance")
        zs = _u.strip(self.z_sun, "length", "z_sun")
        vs = _u.strip(self.v_sun, "velocity", "v_sun")
        roll = _u.strip(self.roll, "angle", "roll")
        vs = tuple(float(c) for c in np.asarray(vs, dtype=float).reshape(-1))
        if len(vs) != 3:
            raise ValueError(f"v_sun must have 3 components (v_x, v_y, v_z) in km/s, got {len(vs)}")
        if not (np.isfinite(gd) and gd > 0):
            raise ValueError(f"galcen_distance must be a positive length in kpc, got {gd}")
        if not (np.isfinite(zs) and abs(zs) < gd):
            raise ValueError(f"z_sun must be a finite length smaller than galcen_distance, got {zs} kpc")
        # a NaN here made every star's position or velocity NaN (the conversions then refused each row as if the
        # catalog were at fault)
        if not np.all(np.isfinite(vs)):
            raise ValueError(f"v_sun must be 3 finite velocities in km/s, got {vs}")
        if not np.isfinite(float(roll)):
            raise ValueError(f"roll must be a finite angle in deg, got {roll}")
        object.__setattr__(self, "galcen_distance", float(gd))
        object.__setattr__(self, "z_sun", float(zs))
        object.__setattr__(self, "v_sun", vs)
        object.__setattr__(self, "roll", float(roll))

    @classmethod
    def from_astropy(cls, frame: coord.Galactocentric | None = None) -> "SolarParameters":
        """Read the parameters of an astropy ``Galactocentric`` frame (default: 'v4.0').

        Raises:
            ValueError: the frame's ``galcen_coord`` (the Galactic centre's ICRS direction) is not 'v4.0''s, which
                every bayesdyn conversion uses (astropy's presets share it).
        """
        with coord.galactocentric_frame_defaults.set("v4.0"):
            reference = coord.Galactocentric()
        if frame is None:
            frame = reference
        gc, ref = coord.SkyCoord(frame.galcen_coord).icrs, coord.SkyCoord(reference.galcen_coord).icrs
        off = float(gc.separation(ref).to_value(u.arcsec))
        if off > 1e-3:  # 1 mas (a frame built in FK5 passes); the conversions always use 'v4.0''s, every preset's
            raise ValueError(
                f"the frame's Galactic centre (galcen_coord: RA {gc.ra.deg:.6f}°, Dec {gc.dec.deg:.6f}°) lies "
                f"{off:.3g}″ from astropy's 'v4.0' one (RA {ref.ra.deg:.6f}°, Dec {ref.dec.deg:.6f}°), which "
                f"bayesdyn's conversions always use; stars would be placed in a rotated frame (by "
                f"{np.deg2rad(off / 3600) * frame.galcen_distance.to_value(u.pc):.0f} pc at the Galactic centre). Build the frame "
                "with the default galcen_coord, or convert the positions to Galactocentric yourself and use "
                "Catalog.from_table with x, y, z, v_x, v_y, v_z columns"
            )
        return cls(
            galcen_distance=frame.galcen_distance.to_value(u.kpc),
            z_sun=frame.z_sun.to_value(u.kpc),
            v_sun=tuple(_vsun_kms(frame)),
            roll=frame.roll.to_value(u.deg),
        )

    def to_astropy(self) -> coord.Galactocentric:
        """The astropy ``Galactocentric`` frame with these parameters (ICRS GC position of 'v4.0')."""
        with coord.galactocentric_frame_defaults.set("v4.0"):
            return coord.Galactocentric(
                galcen_distance=self.galcen_distance * u.kpc,
                z_sun=self.z_sun * u.kpc,
                galcen_v_sun=coord.CartesianDifferential(list(self.v_sun) * (u.km / u.s)),
                roll=self.roll * u.deg,
            )

    @property
    def position(self) -> np.ndarray:
        """The Sun's Galactocentric position (x, y, z) [kpc]."""
        return np.array([-np.sqrt(self.galcen_distance**2 - self.z_sun**2), 0.0, self.z_sun])

    @property
    def velocity(self) -> np.ndarray:
        """The Sun's Galactocentric velocity (v_x, v_y, v_z) [km/s]."""
        return np.asarray(self.v_sun, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, units in the keys."""
        return {
            "galcen_distance_kpc": self.galcen_distance,
            "z_sun_kpc": self.z_sun,
            "v_sun_kms": list(self.v_sun),
            "roll_deg": self.roll,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SolarParameters":
        """Inverse of :meth:`to_dict`: numbers only (a saved header's ``true`` or ``"8.1"`` had been read as 1 and
        8.1)."""
        try:
            if not isinstance(d, dict):
                raise TypeError(f"a JSON {type(d).__name__}, not an object")
            v_sun = d["v_sun_kms"]
            if not isinstance(v_sun, (list, tuple)):
                raise TypeError(f"v_sun_kms is {v_sun!r}, not a list")
            return cls(
                galcen_distance=_number(d["galcen_distance_kpc"], "galcen_distance_kpc"),
                z_sun=_number(d["z_sun_kpc"], "z_sun_kpc"),
                v_sun=tuple(_number(c, "v_sun_kms") for c in v_sun),
                roll=_number(d.get("roll_deg", 0.0), "roll_deg"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"solar parameters are malformed ({err}); expected keys galcen_distance_kpc, "
                "z_sun_kpc, v_sun_kms (3 numbers), roll_deg"
            ) from None


def _number(value: Any, key: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{key} is {value!r}, not a number")
    return float(value)


def _vsun_kms(frame: coord.Galactocentric) -> np.ndarray:
    rep = frame.galcen_v_sun
    xyz = rep.d_xyz if isinstance(rep, coord.CartesianDifferential) else rep.xyz
    return np.asarray(xyz.to_value(u.km / u.s), dtype=float).ravel()

"""Where maps are evaluated: 3-d grids, 2-d slices, lines of sight from the Sun, spheres for the divergence theorem."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from .. import units as _u

__all__ = ["Grid", "grid", "plane_slice", "line_of_sight", "sphere_rule", "PLANES"]

PLANES = {"xy": (0, 1, 2), "xz": (0, 2, 1), "yz": (1, 2, 0)}
"""Slice planes: name → (indices of the two in-plane axes, index of the fixed axis)."""
_AXES = "xyz"


class Grid(NamedTuple):
    """Positions on a regular lattice.

    Attributes:
        points: positions, shape (n₁, …, n_d, 3) [kpc] (Galactocentric).
        axes: name → 1-d coordinate values along each lattice axis [kpc]
            (``"x"``, ``"y"``, ``"z"``, or ``"distance"`` for a line of sight), in
            the order of the lattice axes.
    """

    points: np.ndarray
    axes: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, ...]:
        """The lattice shape (points.shape without the last axis)."""
        return self.points.shape[:-1]

    def flat(self) -> np.ndarray:
        """The points as (N, 3) [kpc]."""
        return self.points.reshape(-1, 3)


def _axis(spec: Any, name: str) -> np.ndarray:
    """A coordinate axis from ``(lo, hi, n)`` or explicit values [kpc]."""
    if isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[2], (int, np.integer)):
        lo = float(_u.strip(spec[0], "length", name))
        hi = float(_u.strip(spec[1], "length", name))
        n = int(spec[2])
        if n < 1 or not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{name}=(lo, hi, n) needs finite lo, hi [kpc] and n ≥ 1; got {spec}")
        return np.linspace(lo, hi, n)
    if (isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[2], (float, np.floating))
            and float(spec[2]).is_integer()):  # (0., 1., 3.) had given the three values 0, 1, 3 kpc
        raise ValueError(f"{name}={spec} is ambiguous: (lo, hi, n) needs an integer n (e.g. {int(spec[2])}); for "
                         "explicit values pass a list or an array")
    values = np.atleast_1d(np.asarray(_u.strip(spec, "length", name), dtype=float))
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"{name} must be (lo, hi, n) or a 1-d array of finite values [kpc]; got shape {values.shape}")
    return values


def grid(x: Any, y: Any, z: Any) -> Grid:
    """A 3-d lattice of Galactocentric positions.

    Args:
        x: the x values [kpc]: a tuple ``(lo, hi, n)`` with an integer n for n evenly
            spaced values (so ``(0, 1, 2)`` means 0 and 1 kpc), a number, or a list or
            array of explicit values (Quantities are converted).
        y: likewise.
        z: likewise.

    Returns:
        :class:`Grid` with points of shape (n_x, n_y, n_z, 3).

    Example:
        >>> g = grid((-9.0, -7.0, 5), 0.0, (-1.0, 1.0, 3))
        >>> g.shape
        (5, 1, 3)
    """
    ax = [_axis(s, n) for s, n in zip((x, y, z), _AXES)]
    mesh = np.meshgrid(*ax, indexing="ij")
    return Grid(np.stack(mesh, axis=-1), dict(zip(_AXES, ax)))


def plane_slice(
    plane: str = "xz",
    center: Any = (-8.122, 0.0, 0.0),
    extent: Any = 2.0,
    n: Any = 64,
) -> Grid:
    """A 2-d slice through ``center``, parallel to a coordinate plane (exported as ``maps.slice``).

    Args:
        plane: ``"xy"``, ``"xz"`` or ``"yz"``.
        center: the slice's centre (3,) [kpc]; the third coordinate is fixed there.
        extent: half-widths [kpc]: one number, or one per in-plane axis.
        n: points per in-plane axis: one number, or two.

    Returns:
        :class:`Grid` with points of shape (n₁, n₂, 3) and ``axes`` naming the two
        in-plane coordinates (e.g. ``{"x": ..., "z": ...}``).
    """
    if plane not in PLANES:
        raise ValueError(f"plane={plane!r}; choose one of {sorted(PLANES)}")
    center = np.asarray(_u.strip(center, "length", "center"), dtype=float).reshape(-1)
    if center.shape != (3,) or not np.isfinite(center).all():
        raise ValueError(f"center must be 3 finite numbers (x, y, z) [kpc]; got {center.tolist()}")
    half = np.broadcast_to(np.asarray(_u.strip(extent, "length", "extent"), dtype=float), (2,))
    counts = np.broadcast_to(np.asarray(n), (2,))
    if (not (np.isfinite(half) & (half > 0)).all() or counts.dtype == bool
            or not np.all([float(c).is_integer() and c >= 1 for c in counts])):  # n = 2.7 had made 2 points
        raise ValueError(f"extent must be positive and finite [kpc] and n whole numbers ≥ 1; got "
                         f"extent={half.tolist()}, n={counts.tolist()}")
    i, j, k = PLANES[plane]
    u = center[i] + np.linspace(-half[0], half[0], int(counts[0]))
    w = center[j] + np.linspace(-half[1], half[1], int(counts[1]))
    uu, ww = np.meshgrid(u, w, indexing="ij")
    pts = np.empty(uu.shape + (3,))
    pts[..., i], pts[..., j], pts[..., k] = uu, ww, center[k]
    return Grid(pts, {_AXES[i]: u, _AXES[j]: w})


def line_of_sight(l: Any, b: Any, distances: Any, solar: Any = None) -> Grid:  # noqa: E741 - Galactic l
    """Galactocentric positions along a line of sight from the Sun.

    Uses astropy's exact Galactic → Galactocentric transformation for the given
    solar parameters (the Sun sits at z☉ above the plane, so the frame is tilted
    by asin(z☉/R₀) with respect to the Galactic one). l = 0, b = 0 points at
    the Galactic centre: x increases from the Sun's x ≈ −R₀.

    Args:
        l: Galactic longitude [deg] (number or angle Quantity).
        b: Galactic latitude [deg].
        distances: heliocentric distances (M,) [kpc] (or a length Quantity); may
            include 0 (the Sun).
        solar: :class:`bayesdyn.SolarParameters` (default astropy 'v4.0'), e.g.
            ``catalog.solar``.

    Returns:
        :class:`Grid` with points of shape (M, 3) [kpc] and ``axes = {"distance": distances}``.
    """
    import astropy.coordinates as coord
    import astropy.units as u

    from ..catalog import SolarParameters

    solar = SolarParameters() if solar is None else solar
    if not isinstance(solar, SolarParameters):
        raise TypeError(f"solar must be a bayesdyn.SolarParameters, got {type(solar).__name__}")
    l_deg = float(_u.strip(l, "angle", "l"))
    b_deg = float(_u.strip(b, "angle", "b"))
    if not -90.0 <= b_deg <= 90.0:
        raise ValueError(f"b={b_deg} deg must lie in [-90, 90]")
    if not np.isfinite(l_deg):  # a NaN longitude had given a line of NaN points
        raise ValueError(f"l={l_deg} deg must be a finite angle")
    d = np.atleast_1d(np.asarray(_u.strip(distances, "length", "distances"), dtype=float))
    if d.ndim != 1 or not (np.isfinite(d).all() and (d >= 0).all()):
        raise ValueError("distances must be a 1-d array of finite, non-negative lengths [kpc]")
    # direction cosines in the Galactic (heliocentric) frame; transform two points (d = 0, 1 kpc)
    # with astropy and build the line from them, so d = 0 (not representable in spherical coords) works.
    cb, sb = np.cos(np.radians(b_deg)), np.sin(np.radians(b_deg))
    cl, sl = np.cos(np.radians(l_deg)), np.sin(np.radians(l_deg))
    gal = coord.Galactic(coord.CartesianRepresentation([0.0, cb * cl], [0.0, cb * sl], [0.0, sb], unit=u.kpc))
    gc = gal.transform_to(solar.to_astropy())
    ends = np.stack([gc.x.to_value(u.kpc), gc.y.to_value(u.kpc), gc.z.to_value(u.kpc)], axis=-1)
    sun, direction = ends[0], ends[1] - ends[0]
    direction = direction / np.linalg.norm(direction)
    return Grid(sun + d[:, None] * direction, {"distance": d})


@functools.lru_cache(maxsize=16)
def sphere_rule(order: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A quadrature rule on the unit sphere: Gauss–Legendre in cos θ × trapezoid in φ.

    Exact for polynomials on the sphere (spherical harmonics) of degree ≤ 2·order − 1:
    the trapezoid integrates e^{imφ} exactly for |m| < 2·order and Gauss–Legendre
    P_l(cos θ) for l ≤ 2·order − 1 (checked on monomials x^a y^b z^c).

    Args:
        order: Gauss–Legendre nodes in cos θ; there are 2·order azimuths.

    Returns:
        (unit vectors (2·order², 3), weights (2·order²,) summing to 4π).
    """
    if order < 1:
        raise ValueError(f"order={order} must be ≥ 1")
    mu, w_mu = np.polynomial.legendre.leggauss(order)
    n_phi = 2 * order
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    mm, pp = np.meshgrid(mu, phi, indexing="ij")
    s = np.sqrt(1 - mm**2)
    n = np.stack([s * np.cos(pp), s * np.sin(pp), mm], axis=-1).reshape(-1, 3)
    w = (w_mu[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None, :]).reshape(-1)
    n.setflags(write=False)
    w.setflags(write=False)
    return n, w

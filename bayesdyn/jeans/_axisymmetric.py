"""Axisymmetric Jeans estimator: binned moments in (R, z) and the radial and vertical Jeans equations.

Coordinates (right-handed, about the axis through ``center`` along the frame's z):
R = √(x² + y²), φ = atan2(y, x), z; v_R = v_x cos φ + v_y sin φ,
v_φ = −v_x sin φ + v_y cos φ. In the astropy Galactocentric frame the disk
rotates with v_y > 0 at the Sun (x ≈ −8.1 kpc, φ = 180°), so v_φ is **negative**
for disk stars (⟨v_φ⟩ ≈ −230 km/s): the rotation is clockwise seen from the
north Galactic pole. The usual positive rotation speed is v_T = −v_φ. Only
⟨v_φ²⟩ enters the Jeans equations, so the sign never affects an acceleration.

The steady-state axisymmetric Jeans equations (Binney & Tremaine 2008, eq. 4.222),
with raw second moments ⟨v_i v_j⟩ (about zero, not about the mean) and the
acceleration a = −∇Φ [(km/s)²/kpc]:

    a_R = (1/ν)[∂(ν⟨v_R²⟩)/∂R + ∂(ν⟨v_R v_z⟩)/∂z] + (⟨v_R²⟩ − ⟨v_φ²⟩)/R
    a_z = (1/ν)[∂(ν⟨v_R v_z⟩)/∂R + ∂(ν⟨v_z²⟩)/∂z] + ⟨v_R v_z⟩/R

They follow from the CBE multiplied by v_R (or v_z) and integrated over velocities;
the check of the signs is the isothermal sheet: ν ∝ exp(−Φ/σ²) with constant σ
gives (1/ν) ∂(νσ²)/∂z = −∂Φ/∂z = a_z. Derivatives are taken in the form
(1/ν) ∂(ν Q)/∂x = Q ∂ln ν/∂x + ∂Q/∂x, identical in the continuum; the derivative
of ln ν is exact on bin averages of an exponential profile over bins of equal
width, which the derivative of ν is not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from . import _common as _c
from ._common import Estimate, JeansError

__all__ = ["AxisymmetricJeans", "PointAcceleration", "acceleration_at", "axisymmetric"]

_ACC = "km2 / (s2 kpc)"
_V2 = "km2 / s2"
_FIELDS = ("nu", "vR_mean", "vphi_mean", "vz_mean", "vR2", "vphi2", "vz2", "vRvz")
_UNITS = {
    "nu": "1 / kpc3",
    "vR_mean": "km / s",
    "vphi_mean": "km / s",
    "vz_mean": "km / s",
    "vR2": _V2,
    "vphi2": _V2,
    "vz2": _V2,
    "vRvz": _V2,
    "a_R": _ACC,
    "a_z": _ACC,
    "dlnnu_dR": "1 / kpc",
    "dlnnu_dz": "1 / kpc",
}


def _table(columns: dict[str, Any], estimates: dict[str, Estimate], meta: dict[str, Any]):
    import astropy.units as u
    from astropy.table import QTable

    t = QTable(meta=meta)
    for name, (value, unit) in columns.items():
        t[name] = u.Quantity(np.ravel(value), unit) if unit else np.ravel(value)
    for name, est in estimates.items():
        t[name] = u.Quantity(np.ravel(est.value), est.unit)
        t[f"{name}_err"] = u.Quantity(np.ravel(est.error), est.unit)
    return t


@dataclasses.dataclass(frozen=True)
class AxisymmetricJeans:
    """Binned moments and Jeans accelerations on an (R, z) grid, with bootstrap errors.

    Every :class:`~bayesdyn.jeans.Estimate` has ``value`` and ``error`` of shape
    (nR, nz) and ``samples`` of shape (n_boot, nR, nz). Bins with fewer than
    ``min_count`` stars are NaN, and so are their neighbours' derivatives.

    Attributes:
        R: bin centres (midpoints) in R, shape (nR,) [kpc].
        z: bin centres (midpoints) in z, shape (nz,) [kpc].
        R_edges: radial bin edges, shape (nR + 1,) [kpc].
        z_edges: vertical bin edges, shape (nz + 1,) [kpc].
        count: stars per bin, shape (nR, nz) (with ``symmetrize_z`` a star and its
            mirror image each count).
        volume: effective volume of each bin, shape (nR, nz) [kpc³] (the part that
            the selection keeps; with ``symmetrize_z`` the bin plus its mirror).
        nu: tracer number density ν [stars/kpc³].
        vR_mean: ⟨v_R⟩ [km/s].
        vphi_mean: ⟨v_φ⟩ [km/s] (right-handed; negative for the Milky Way disk).
        vz_mean: ⟨v_z⟩ [km/s].
        vR2: ⟨v_R²⟩ [(km/s)²] (raw second moment, about zero).
        vphi2: ⟨v_φ²⟩ [(km/s)²] (raw; includes the rotation).
        vz2: ⟨v_z²⟩ [(km/s)²].
        vRvz: ⟨v_R v_z⟩ [(km/s)²].
        a_R: radial acceleration −∂Φ/∂R from the radial Jeans equation [(km/s)²/kpc].
        a_z: vertical acceleration −∂Φ/∂z from the vertical Jeans equation [(km/s)²/kpc].
        n_boot: number of bootstrap replicates.
        seed: the seed of the bootstrap.
    """

    R: np.ndarray
    z: np.ndarray
    R_edges: np.ndarray
    z_edges: np.ndarray
    count: np.ndarray
    volume: np.ndarray
    nu: Estimate
    vR_mean: Estimate
    vphi_mean: Estimate
    vz_mean: Estimate
    vR2: Estimate
    vphi2: Estimate
    vz2: Estimate
    vRvz: Estimate
    a_R: Estimate
    a_z: Estimate
    n_boot: int
    seed: int

    @property
    def vT_mean(self) -> Estimate:
        """Mean rotation speed v_T = −⟨v_φ⟩ [km/s] (positive for the Milky Way disk)."""
        e = self.vphi_mean
        return Estimate(-e.value, e.error, -e.samples, e.unit)

    def to_table(self):
        """One row per bin (R-major order): centres, counts, and every estimate with its ``_err`` column.

        Returns:
            astropy.table.QTable with units.
        """
        rr, zz = np.meshgrid(self.R, self.z, indexing="ij")
        names = (*_FIELDS, "a_R", "a_z")
        return _table(
            {"R": (rr, "kpc"), "z": (zz, "kpc"), "count": (self.count, None), "volume": (self.volume, "kpc3")},
            {n: getattr(self, n) for n in names},
            {"estimator": "bayesdyn.jeans.axisymmetric", "n_boot": self.n_boot, "seed": self.seed},
        )


@dataclasses.dataclass(frozen=True)
class PointAcceleration:
    """Jeans accelerations at one point (R, z) from a local fit to a stencil of bins.

    Each :class:`~bayesdyn.jeans.Estimate` is a scalar ``value`` and ``error`` with
    ``samples`` of shape (n_boot,). Moments are the fitted values at the point.

    Attributes:
        R: the point's cylindrical radius [kpc].
        z: the point's height [kpc].
        dR: stencil bin width in R [kpc].
        dz: stencil bin width in z [kpc].
        R_edges: stencil bin edges in R, shape (nR + 1,) [kpc].
        z_edges: stencil bin edges in z, shape (nz + 1,) [kpc].
        count: stars per stencil bin, shape (nR, nz).
        degree: total degree of the local polynomial.
        nu: tracer density ν at the point [stars/kpc³].
        dlnnu_dR: ∂ln ν/∂R [1/kpc].
        dlnnu_dz: ∂ln ν/∂z [1/kpc].
        vR_mean, vphi_mean, vz_mean: mean velocities [km/s] (v_φ right-handed: negative
            for the Milky Way disk).
        vR2, vphi2, vz2, vRvz: raw second moments [(km/s)²].
        a_R: −∂Φ/∂R [(km/s)²/kpc].
        a_z: −∂Φ/∂z [(km/s)²/kpc].
        n_boot: number of bootstrap replicates.
        seed: the seed of the bootstrap.
    """

    R: float
    z: float
    dR: float
    dz: float
    R_edges: np.ndarray
    z_edges: np.ndarray
    count: np.ndarray
    degree: int
    nu: Estimate
    dlnnu_dR: Estimate
    dlnnu_dz: Estimate
    vR_mean: Estimate
    vphi_mean: Estimate
    vz_mean: Estimate
    vR2: Estimate
    vphi2: Estimate
    vz2: Estimate
    vRvz: Estimate
    a_R: Estimate
    a_z: Estimate
    n_boot: int
    seed: int

    def cartesian(self, phi: Any) -> Estimate:
        """The acceleration as a cartesian vector at azimuth ``phi``.

        Axisymmetry gives a_φ = 0, so a = (a_R cos φ, a_R sin φ, a_z) in the frame
        of the catalog (axis through ``center``).

        Args:
            phi: azimuth φ = atan2(y, x) [deg] (or an angle Quantity); the Sun in the
                astropy Galactocentric frame is at φ = 180°.

        Returns:
            Estimate with ``value`` and ``error`` of shape (3,) and ``samples`` of shape
            (n_boot, 3) [(km/s)²/kpc].
        """
        from .. import units as _u

        p = np.deg2rad(float(_u.strip(phi, "angle", name="phi")))
        def vec(a_r, a_z):
            a_r, a_z = np.asarray(a_r, float), np.asarray(a_z, float)
            return np.stack([a_r * np.cos(p), a_r * np.sin(p), a_z], axis=-1)

        return _c.make_estimate(vec(self.a_R.value, self.a_z.value), vec(self.a_R.samples, self.a_z.samples), _ACC)

    def to_table(self):
        """A one-row astropy QTable: the point, stencil widths, total count and every estimate with ``_err``."""
        names = ("nu", "dlnnu_dR", "dlnnu_dz", *_FIELDS[1:], "a_R", "a_z")
        return _table(
            {"R": (self.R, "kpc"), "z": (self.z, "kpc"), "dR": (self.dR, "kpc"), "dz": (self.dz, "kpc"),
             "count": (int(self.count.sum()), None)},
            {n: getattr(self, n) for n in names},
            {"estimator": "bayesdyn.jeans.acceleration_at", "n_boot": self.n_boot, "seed": self.seed,
             "degree": self.degree, "stencil": list(self.count.shape)},
        )


# --------------------------------------------------------------------------- moments


def _binned_moments(
    catalog, R_edges, z_edges, *, center, selection, symmetrize_z, n_boot, seed, min_count
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Moments per bin for the catalog (index 0) and the replicates (1..n_boot), shape (1+n_boot, nR, nz)."""
    x_all, v_all = catalog.x, catalog.v
    if selection is not None:
        keep = _c.apply_selection(selection, x_all)
        x_all, v_all = x_all[keep], v_all[keep]
    x = x_all - center
    R = np.hypot(x[:, 0], x[:, 1])
    phi = np.arctan2(x[:, 1], x[:, 0])
    c, s = np.cos(phi), np.sin(phi)
    vR = v_all[:, 0] * c + v_all[:, 1] * s
    vphi = -v_all[:, 0] * s + v_all[:, 1] * c
    z, vz = x[:, 2], v_all[:, 2]
    n_r, n_z = R_edges.size - 1, z_edges.size - 1

    def entries(zz, vzz):
        i = np.searchsorted(R_edges, R, side="right") - 1
        j = np.searchsorted(z_edges, zz, side="right") - 1
        ok = (i >= 0) & (i < n_r) & (j >= 0) & (j < n_z)
        vals = np.stack([np.ones(ok.sum()), vR[ok], vphi[ok], vzz[ok], vR[ok] ** 2, vphi[ok] ** 2,
                         vzz[ok] ** 2, vR[ok] * vzz[ok]], axis=1)
        return (i * n_z + j)[ok], vals, np.flatnonzero(ok)

    b1, v1, s1 = entries(z, vz)
    if symmetrize_z:  # mirror image (z, v_z) → (−z, −v_z) of every star, sharing its bootstrap weight
        b2, v2, s2 = entries(-z, -vz)
        bins, vals, star = np.concatenate([b1, b2]), np.concatenate([v1, v2]), np.concatenate([s1, s2])
    else:
        bins, vals, star = b1, v1, s1
    if bins.size == 0:
        raise JeansError(
            f"no star of the {catalog.x.shape[0]} (after the selection: {R.size}) falls in the bins "
            f"R ∈ [{R_edges[0]}, {R_edges[-1]}] kpc, z ∈ [{z_edges[0]}, {z_edges[-1]}] kpc about center "
            f"{center.tolist()} kpc; check the edges and center"
        )
    if symmetrize_z:
        star = np.unique(star, return_inverse=True)[1]  # renumber the stars used 0..n_used−1
    else:
        star = None  # one entry per star
    rng = np.random.default_rng(seed)
    full, boot = _c.binned_sums(bins, vals, n_r * n_z, star=star, n_total=R.size, n_boot=n_boot, rng=rng)
    sums = np.concatenate([full[None], boot]).reshape(1 + n_boot, n_r, n_z, -1)

    volume = _volumes(R_edges, z_edges, center, selection, symmetrize_z, phi)
    count = sums[..., 0]
    # the bins are chosen on the catalog (≥ min_count stars); a replicate's moments wherever it has a star there
    # (a per-replicate min_count dropped the replicates with fewer stars and shrank the errors of small bins)
    ok = (count[0] >= min_count)[None] & (count > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mom = {name: np.where(ok, sums[..., k] / count, np.nan) for k, name in enumerate(_FIELDS) if k > 0}
        mom["nu"] = np.where(ok & (volume > 0), count / volume, np.nan)
    return mom, np.rint(full[:, 0]).astype(np.int64).reshape(n_r, n_z), volume


def _volumes(R_edges, z_edges, center, selection, symmetrize_z, phi_stars):
    if selection is None:
        vol = np.pi * np.outer(np.diff(R_edges**2), np.diff(z_edges))
        return 2 * vol if symmetrize_z else vol
    start, width = _c.circular_range(phi_stars)

    def one(zed):
        vol, touches = _c.selected_volumes(selection, center, R_edges, zed, start, width)
        if touches and width < 2 * np.pi:
            vol, _ = _c.selected_volumes(selection, center, R_edges, zed, 0.0, 2 * np.pi, n_points=2**15)
        return vol

    vol = one(z_edges)
    if symmetrize_z:
        vol = vol + one(-z_edges[::-1])[:, ::-1]
    return vol


def _jeans(mom, dlnnu_dR, dlnnu_dz, d, R):
    """a_R and a_z from moments and derivatives; ``d[(name, axis)]`` = ∂name/∂axis."""
    a_R = (mom["vR2"] * dlnnu_dR + d["vR2", "R"] + mom["vRvz"] * dlnnu_dz + d["vRvz", "z"]
           + (mom["vR2"] - mom["vphi2"]) / R)
    a_z = (mom["vRvz"] * dlnnu_dR + d["vRvz", "R"] + mom["vz2"] * dlnnu_dz + d["vz2", "z"]
           + mom["vRvz"] / R)
    return a_R, a_z


def _common_args(catalog, center, selection, n_boot, seed, min_count):
    catalog = _c.check_catalog(catalog)
    center = _c.check_vector(center, "length", "center")
    n_boot, seed = _c.check_n_boot(n_boot, seed)
    if selection is not None and not callable(selection):
        raise JeansError(f"selection must be a function x (M, 3) [kpc] → (M,) bool, got {type(selection).__name__}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 2:
        raise JeansError(f"min_count must be an integer ≥ 2, got {min_count!r}")
    return catalog, center, n_boot, seed


# --------------------------------------------------------------------------- grid


def axisymmetric(
    catalog,
    R_edges: Any,
    z_edges: Any,
    *,
    n_boot: int = 100,
    seed: int = 0,
    center: Any = (0.0, 0.0, 0.0),
    selection: Callable[[np.ndarray], np.ndarray] | None = None,
    symmetrize_z: bool = False,
    min_count: int = 10,
) -> AxisymmetricJeans:
    """Axisymmetric Jeans analysis on an (R, z) grid of bins, with bootstrap errors.

    Bins the stars in cylindrical (R, z) about the axis through ``center`` (along
    the frame's z), takes the tracer density ν and the moments ⟨v_R²⟩, ⟨v_φ⟩,
    ⟨v_φ²⟩, ⟨v_z²⟩, ⟨v_R v_z⟩ per bin, and solves the radial and vertical Jeans
    equations (module docstring) for a_R = −∂Φ/∂R and a_z = −∂Φ/∂z at the bin
    centres, with central finite differences (``numpy.gradient``; one-sided first
    order at the grid's edges, biased there beyond the errors: read the edge bins
    with care) of ln ν and the moments between bin centres. Errors come
    from a bootstrap over stars (``n_boot`` resamples of the catalog, vectorised).

    Args:
        catalog: a :class:`bayesdyn.Catalog` (x [kpc], v [km/s], Galactocentric).
        R_edges: cylindrical-radius bin edges, ≥ 3 increasing values [kpc].
        z_edges: height bin edges, ≥ 3 increasing values [kpc] (relative to ``center``).
        n_boot: number of bootstrap replicates (≥ 2).
        seed: seed of the bootstrap (the same seed gives the same result).
        center: the point on the symmetry axis, (3,) [kpc]; the axis is the frame's z.
        selection: where the catalog is complete, as a function of positions
            x (M, 3) [kpc, catalog frame] → (M,) bool, e.g. a sphere around the Sun
            ``lambda x: np.linalg.norm(x - x_sun, axis=1) < 1.5``. Stars outside are
            dropped and ν uses the selected volume of each bin (quasi-Monte Carlo),
            so that partially covered bins are not biased. None: complete annuli.
        symmetrize_z: assume mirror symmetry about z = 0 and add the mirror image
            (−z, −v_z) of every star (it shares the star's bootstrap weight, so
            errors are not underestimated).
        min_count: bins with fewer stars are NaN (with ``symmetrize_z``, fewer entries:
            stars plus mirror images).

    Returns:
        :class:`AxisymmetricJeans` with every quantity at the bin centres.

    Raises:
        JeansError: not a Catalog, bad edges or center, no star in the bins.
    """
    catalog, center, n_boot, seed = _common_args(catalog, center, selection, n_boot, seed, min_count)
    R_edges = _c.check_edges(R_edges, "R_edges", nonnegative=True)
    z_edges = _c.check_edges(z_edges, "z_edges")
    mom, count, volume = _binned_moments(
        catalog, R_edges, z_edges, center=center, selection=selection, symmetrize_z=_c.check_flag(symmetrize_z, "symmetrize_z"),
        n_boot=n_boot, seed=seed, min_count=min_count,
    )
    Rc = 0.5 * (R_edges[1:] + R_edges[:-1])
    zc = 0.5 * (z_edges[1:] + z_edges[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        lnnu = np.log(mom["nu"])
        dR = lambda f: np.gradient(f, Rc, axis=1, edge_order=1)  # noqa: E731
        dz = lambda f: np.gradient(f, zc, axis=2, edge_order=1)  # noqa: E731
        d = {("vR2", "R"): dR(mom["vR2"]), ("vRvz", "z"): dz(mom["vRvz"]),
             ("vRvz", "R"): dR(mom["vRvz"]), ("vz2", "z"): dz(mom["vz2"])}
        a_R, a_z = _jeans(mom, dR(lnnu), dz(lnnu), d, Rc[None, :, None])
    undefined: list[str] = []
    est = lambda f, name: _c.make_estimate(f[0], f[1:], _UNITS[name], name, undefined)  # noqa: E731
    result = AxisymmetricJeans(
        R=Rc, z=zc, R_edges=R_edges, z_edges=z_edges, count=count, volume=volume,
        **{name: est(mom[name], name) for name in _FIELDS},
        a_R=est(a_R, "a_R"), a_z=est(a_z, "a_z"), n_boot=n_boot, seed=seed,
    )
    _c.warn_undefined(undefined, "jeans.axisymmetric")
    return result


# --------------------------------------------------------------------------- one point


def _fit_operator(X, Z, weights, degree, n_r, n_z):
    """Rows of the weighted least-squares operator giving (value, ∂/∂X, ∂/∂Z) at X = Z = 0."""
    powers = [(i, j) for i in range(n_r) for j in range(n_z) if i + j <= degree]
    A = np.stack([X**i * Z**j for i, j in powers], axis=1)
    sw = np.sqrt(weights)
    pinv = np.linalg.pinv(A * sw[:, None]) * sw[None, :]  # (n_coef, n_bins)
    if np.linalg.matrix_rank(A * sw[:, None]) < len(powers):
        raise JeansError("the stencil cannot constrain the local polynomial; use more bins or a lower degree")
    return pinv[[powers.index((0, 0)), powers.index((1, 0)), powers.index((0, 1))]]


def acceleration_at(
    catalog,
    R: Any,
    z: Any,
    *,
    dR: Any,
    dz: Any,
    stencil: tuple[int, int] = (3, 3),
    degree: int = 2,
    n_boot: int = 100,
    seed: int = 0,
    center: Any = (0.0, 0.0, 0.0),
    selection: Callable[[np.ndarray], np.ndarray] | None = None,
    symmetrize_z: bool = False,
    min_count: int = 10,
) -> PointAcceleration:
    """Jeans accelerations a_R, a_z at one point, from a local polynomial fit to nearby bins.

    A stencil of ``stencil = (nR, nz)`` bins of size dR × dz, centred on (R, z),
    is filled as in :func:`axisymmetric`. ln ν and each moment are fitted over the
    stencil by weighted least squares (weights: the bin counts of the full catalog)
    with a polynomial of total degree ``degree`` in (R − R₀, z − z₀); its value and
    first derivatives at the point enter the Jeans equations (module docstring).
    With the default 3 × 3 stencil and degree 2 this is a central difference,
    averaged over the neighbouring rows. The same linear fit is applied to each
    bootstrap replicate; a replicate with an empty bin is NaN. Up to
    ``MAX_UNDEFINED_FRACTION`` (1 %) of NaN replicates are left out of the error;
    beyond that the error is NaN, and a warning names the quantity.

    Typical use, the Sun and 1 kpc above it in the astropy Galactocentric frame::

        sun = jeans.acceleration_at(cat, 8.122, 0.0208, dR=0.3, dz=0.1)
        up = jeans.acceleration_at(cat, 8.122, 1.0, dR=0.3, dz=0.2)
        sun.a_R.value, sun.a_R.error, sun.cartesian(180.0).value

    Args:
        catalog: a :class:`bayesdyn.Catalog` (x [kpc], v [km/s], Galactocentric).
        R: cylindrical radius of the point [kpc].
        z: height of the point above ``center`` [kpc].
        dR: radial bin width [kpc].
        dz: vertical bin width [kpc].
        stencil: number of bins (nR, nz), each ≥ 2 (odd numbers centre a bin on the point).
        degree: total degree of the local polynomial (≥ 1).
        n_boot: number of bootstrap replicates (≥ 2).
        seed: seed of the bootstrap.
        center: the point on the symmetry axis, (3,) [kpc].
        selection: completeness region, x (M, 3) [kpc] → (M,) bool (see :func:`axisymmetric`).
        symmetrize_z: add mirror images (−z, −v_z) (see :func:`axisymmetric`).
        min_count: every stencil bin must hold at least this many stars (with
            ``symmetrize_z``, entries: stars plus mirror images).

    Returns:
        :class:`PointAcceleration`; ``.cartesian(phi)`` gives (a_x, a_y, a_z).

    Raises:
        JeansError: a stencil bin with fewer than ``min_count`` stars (widen dR/dz),
            a stencil reaching R < 0, or bad arguments.
    """
    catalog, center, n_boot, seed = _common_args(catalog, center, selection, n_boot, seed, min_count)
    from .. import units as _u

    try:
        R0 = float(_u.strip(R, "length", name="R"))
        z0 = float(_u.strip(z, "length", name="z"))
    except (TypeError, ValueError) as err:
        if isinstance(err, _u.UnitError):
            raise
        raise JeansError(f"R and z must be single lengths in kpc, got R={R!r}, z={z!r}") from None
    if not (np.isfinite(R0) and np.isfinite(z0)):  # (it failed as "no star in the bins")
        raise JeansError(f"R and z must be finite lengths in kpc, got R={R0}, z={z0}")
    dR = _c.check_positive(dR, "length", "dR")
    dz = _c.check_positive(dz, "length", "dz")
    try:
        n_r, n_z = stencil
    except (TypeError, ValueError):
        n_r = n_z = None
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in (n_r, n_z)):  # 3.7 ran as 3
        raise JeansError(f"stencil must be a pair of whole bin counts (nR, nz), got {stencil!r}")
    n_r, n_z = int(n_r), int(n_z)
    if n_r < 2 or n_z < 2:
        raise JeansError(f"stencil must have at least 2 bins along each axis for derivatives, got {stencil!r}")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise JeansError(f"degree must be an integer ≥ 1, got {degree!r}")
    if degree > n_r + n_z - 2:  # the terms X^i Z^j need i < nR, j < nz: a higher degree adds none (it was capped)
        raise JeansError(f"degree={degree} needs a larger stencil: a {n_r} × {n_z} stencil fits at most degree "
                         f"{n_r + n_z - 2}")
    R_edges = R0 + dR * (np.arange(n_r + 1) - n_r / 2)
    z_edges = z0 + dz * (np.arange(n_z + 1) - n_z / 2)
    if R_edges[0] < 0:
        raise JeansError(f"the stencil reaches R = {R_edges[0]:.3g} kpc < 0; use a smaller dR or stencil")
    mom, count, _ = _binned_moments(
        catalog, R_edges, z_edges, center=center, selection=selection, symmetrize_z=_c.check_flag(symmetrize_z, "symmetrize_z"),
        n_boot=n_boot, seed=seed, min_count=min_count,
    )
    if (count < min_count).any():
        raise JeansError(
            f"{int((count < min_count).sum())} of the {count.size} stencil bins around (R, z) = ({R0}, {z0}) kpc "
            f"hold fewer than {min_count} {'entries (stars + mirror images)' if symmetrize_z else 'stars'} "
            f"(counts {count.astype(int).tolist()}); widen dR/dz or use a "
            "catalog that covers the stencil"
        )
    Rc = 0.5 * (R_edges[1:] + R_edges[:-1])
    zc = 0.5 * (z_edges[1:] + z_edges[:-1])
    X, Z = np.meshgrid((Rc - R0) / dR, (zc - z0) / dz, indexing="ij")
    op = _fit_operator(X.ravel(), Z.ravel(), count.ravel().astype(float), int(degree), n_r, n_z)
    b = 1 + n_boot
    with np.errstate(divide="ignore", invalid="ignore"):
        mom["lnnu"] = np.log(mom["nu"])
        fit = {k: f.reshape(b, -1) @ op.T for k, f in mom.items()}  # (1+n_boot, 3): value, ∂/∂X, ∂/∂Z
        at = {k: f[:, 0] for k, f in fit.items()}
        d = {(k, "R"): f[:, 1] / dR for k, f in fit.items()} | {(k, "z"): f[:, 2] / dz for k, f in fit.items()}
        a_R, a_z = _jeans(at, d["lnnu", "R"], d["lnnu", "z"], d, R0)
        at["nu"] = np.exp(at["lnnu"])
    undefined: list[str] = []
    est = lambda f, name: _c.make_estimate(f[0], f[1:], _UNITS[name], name, undefined)  # noqa: E731
    result = PointAcceleration(
        R=R0, z=z0, dR=dR, dz=dz, R_edges=R_edges, z_edges=z_edges, count=count, degree=int(degree),
        **{name: est(at[name], name) for name in _FIELDS},
        dlnnu_dR=est(d["lnnu", "R"], "dlnnu_dR"), dlnnu_dz=est(d["lnnu", "z"], "dlnnu_dz"),
        a_R=est(a_R, "a_R"), a_z=est(a_z, "a_z"), n_boot=n_boot, seed=seed,
    )
    _c.warn_undefined(undefined, "jeans.acceleration_at")
    return result

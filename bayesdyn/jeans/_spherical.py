"""Spherical Jeans estimator: σ_r(r), anisotropy β(r), enclosed mass M(<r) and a_r(r).

Coordinates about ``center`` (position) and ``center_velocity``: r = |x − x_c|,
v_r = (v − v_c)·r̂, v_t² = |v − v_c|² − v_r² (both tangential components).
The second moments are raw (about zero): σ_r² ≡ ⟨v_r²⟩, σ_t² ≡ ⟨v_t²⟩ — the
dispersions when there is no net streaming, and what the Jeans equation needs
when there is some rotation (the rotation then counts in σ_t²).

The steady-state spherical Jeans equation (Binney & Tremaine 2008, eq. 4.215),
with β = 1 − σ_t²/(2σ_r²) and a_r = −dΦ/dr = −G M(<r)/r²:

    d(ν σ_r²)/dr + 2 β ν σ_r² / r = ν a_r
    ⇒  M(<r) = −(r σ_r² / G) [d ln ν/d ln r + d ln σ_r²/d ln r + 2β].

Derivatives are central finite differences in ln r between bin centres
(geometric means of the edges; a first bin that starts at r = 0 is centred on its
midpoint). At the first and last bin only a one-sided
difference exists, biased far beyond its bootstrap error (isotropic Plummer
sphere, 10⁶ stars, 8 log bins over 0.2–8 kpc: M(<r) +74 % at 11 σ in the first
bin, one-sided first order; second order gave −17 % there and +4.5 % at 9 σ in the
last), so by default (``ends="nan"``) the quantities that need a derivative are
NaN there, and the density ρ(r) = (dM/dr) / (4π r²), one more difference, also in
the bins next to them. The density is noisy.

The interior bins are biased too: bin averages placed at the centres and differenced
err by O(Δ ln r²) where ν or σ_r² curves, and the bootstrap, in fixed bins, does not
see it. On the same sphere: M(<r) +17 % (9 σ) at r = 0.40 kpc and +6 % (11 σ) at
0.63 kpc; ρ −10 % (27 σ) at 1.0 kpc and +29 % (27 σ) at 2.5 kpc. The bias stays as
stars are added while the errors shrink; check a number by halving the bins
(16 bins: pulls within 2.6 σ; ``benchmarks/jeans_binning_bias.py``, docs/jeans.md).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from .. import units as _u
from . import _common as _c
from ._common import Estimate, JeansError
from ._axisymmetric import _table

__all__ = ["SphericalJeans", "spherical"]

_NAMES = {
    "nu": "1 / kpc3",
    "vr_mean": "km / s",
    "sigma_r": "km / s",
    "sigma_t": "km / s",
    "beta": "",
    "dlnnu_dlnr": "",
    "dlnsigma2_dlnr": "",
    "mass": "Msun",
    "a_r": "km2 / (s2 kpc)",
    "vc": "km / s",
    "density": "Msun / kpc3",
}


@dataclasses.dataclass(frozen=True)
class SphericalJeans:
    """Spherical Jeans analysis in radial bins, with bootstrap errors.

    Every :class:`~bayesdyn.jeans.Estimate` has ``value`` and ``error`` of shape
    (n_bins,) and ``samples`` of shape (n_boot, n_bins). Bins with fewer than
    ``min_count`` stars are NaN, and so are the derivatives next to them; with
    ``ends="nan"`` (the default) the derivative quantities are NaN at the first and
    last bin, and ρ also next to them.

    Attributes:
        r: bin centres (geometric means of the edges; the midpoint of a first bin that starts at 0), shape
            (n_bins,) [kpc].
        r_edges: bin edges, shape (n_bins + 1,) [kpc].
        count: stars per bin.
        nu: tracer number density ν(r) [stars/kpc³].
        vr_mean: ⟨v_r⟩ [km/s] (≈ 0 in equilibrium; a check).
        sigma_r: √⟨v_r²⟩ [km/s].
        sigma_t: √⟨v_t²⟩ [km/s] (both tangential components together).
        beta: anisotropy β = 1 − σ_t²/(2σ_r²) [dimensionless].
        dlnnu_dlnr: d ln ν / d ln r.
        dlnsigma2_dlnr: d ln σ_r² / d ln r.
        mass: enclosed mass M(<r) from the Jeans equation [M☉].
        a_r: radial acceleration −G M(<r)/r² [(km/s)²/kpc] (negative = inward).
        vc: circular speed √(G M(<r)/r) [km/s] (NaN where M < 0).
        density: mass density (dM/dr)/(4π r²) [M☉/kpc³] (noisy).
        n_boot: number of bootstrap replicates.
        seed: the seed of the bootstrap.
    """

    r: np.ndarray
    r_edges: np.ndarray
    count: np.ndarray
    nu: Estimate
    vr_mean: Estimate
    sigma_r: Estimate
    sigma_t: Estimate
    beta: Estimate
    dlnnu_dlnr: Estimate
    dlnsigma2_dlnr: Estimate
    mass: Estimate
    a_r: Estimate
    vc: Estimate
    density: Estimate
    n_boot: int
    seed: int

    def to_table(self):
        """One row per radial bin: r, count, and every estimate with its ``_err`` column (astropy QTable)."""
        return _table(
            {"r": (self.r, "kpc"), "count": (self.count, None)},
            {n: getattr(self, n) for n in _NAMES},
            {"estimator": "bayesdyn.jeans.spherical", "n_boot": self.n_boot, "seed": self.seed},
        )


def spherical(
    catalog,
    r_edges: Any,
    *,
    center: Any = (0.0, 0.0, 0.0),
    center_velocity: Any = (0.0, 0.0, 0.0),
    n_boot: int = 100,
    seed: int = 0,
    min_count: int = 10,
    ends: str = "nan",
) -> SphericalJeans:
    """Spherical Jeans analysis: ν, σ_r, σ_t, β, M(<r), a_r and ρ in radial bins.

    Solves the spherical Jeans equation (module docstring) for the enclosed mass
    at the bin centres, with finite differences in ln r, and gives errors from a
    bootstrap over stars (``n_boot`` resamples of the catalog, vectorised). The tracers
    need not be the mass: M(<r) is the total mass that binds them.

    Args:
        catalog: a :class:`bayesdyn.Catalog` (x [kpc], v [km/s]).
        r_edges: radial bin edges, ≥ 3 increasing values ≥ 0 [kpc]; logarithmic
            spacing suits power-law profiles.
        center: centre of the system, (3,) [kpc].
        center_velocity: bulk velocity of the system, (3,) [km/s] (a dwarf's systemic
            velocity; zero for the Galaxy in its rest frame).
        n_boot: number of bootstrap replicates (≥ 2).
        seed: seed of the bootstrap.
        min_count: bins with fewer stars are NaN.
        ends: ``"nan"``: the derivative quantities (d ln ν/d ln r, d ln σ_r²/d ln r,
            M, a_r, v_c) are NaN in the first and last bin, and ρ also in the second
            and last but one (module docstring: their one-sided differences are
            biased far beyond the errors); ``"one_sided"``: one-sided first-order
            differences there (biased; their errors do not show it). The interior bins
            carry a smaller binning bias that the errors do not show either (module
            docstring).

    Returns:
        :class:`SphericalJeans`.

    Raises:
        JeansError: not a Catalog, bad edges, or no star in the bins.
    """
    catalog = _c.check_catalog(catalog)
    r_edges = _c.check_edges(r_edges, "r_edges", nonnegative=True)
    center = _c.check_vector(center, "length", "center")
    center_velocity = _c.check_vector(center_velocity, "velocity", "center_velocity")
    n_boot, seed = _c.check_n_boot(n_boot, seed)
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 2:
        raise JeansError(f"min_count must be an integer ≥ 2, got {min_count!r}")
    if ends not in ("nan", "one_sided"):
        raise JeansError(f"ends={ends!r}; choose 'nan' (no derivative at the end bins) or 'one_sided'")

    x = catalog.x - center
    v = catalog.v - center_velocity
    r = np.linalg.norm(x, axis=1)
    n_bins = r_edges.size - 1
    i = np.searchsorted(r_edges, r, side="right") - 1
    ok = (i >= 0) & (i < n_bins) & (r > 0)
    if not ok.any():
        raise JeansError(
            f"none of the {r.size} stars lies in r ∈ [{r_edges[0]}, {r_edges[-1]}] kpc about center "
            f"{center.tolist()} kpc; check r_edges and center"
        )
    at_centre = int(np.sum((r == 0) & (i >= 0) & (i < n_bins)))
    if at_centre:  # (left out without a word before)
        warnings.warn(f"jeans.spherical: {at_centre} star(s) exactly at the centre {center.tolist()} kpc left out: "
                      "their radial direction is undefined", UserWarning, stacklevel=2)
    n_total = r.size
    x, v, r, i = x[ok], v[ok], r[ok], i[ok]
    vr = np.einsum("ij,ij->i", x, v) / r
    vt2 = np.einsum("ij,ij->i", v, v) - vr**2
    vals = np.stack([np.ones_like(r), vr, vr**2, vt2], axis=1)
    rng = np.random.default_rng(seed)
    full, boot = _c.binned_sums(i, vals, n_bins, n_total=n_total, n_boot=n_boot, rng=rng)
    sums = np.concatenate([full[None], boot])  # (1 + n_boot, n_bins, 4)

    # geometric means of the edges; a first bin from r = 0 has none, so its centre is the midpoint (only that bin's:
    # all centres became midpoints when r_edges[0] = 0)
    rc = np.sqrt(r_edges[1:] * r_edges[:-1])
    rc[r_edges[:-1] <= 0] = 0.5 * r_edges[1:][r_edges[:-1] <= 0]
    volume = 4.0 / 3.0 * np.pi * np.diff(r_edges**3)
    n = sums[..., 0]
    # the bins are chosen on the catalog (≥ min_count stars); a replicate's moments wherever it has a star there
    # (a per-replicate min_count dropped the replicates with fewer stars and shrank the errors of small bins)
    good = (n[0] >= min_count)[None] & (n > 0)
    G = _u.G
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(good, n / volume, np.nan)
        vr_mean = np.where(good, sums[..., 1] / n, np.nan)
        s_r2 = np.where(good, sums[..., 2] / n, np.nan)
        s_t2 = np.where(good, sums[..., 3] / n, np.nan)
        beta = 1.0 - s_t2 / (2.0 * s_r2)
        lnr = np.log(rc)
        dlnnu = np.gradient(np.log(nu), lnr, axis=1, edge_order=1)
        dlns2 = np.gradient(np.log(s_r2), lnr, axis=1, edge_order=1)
        if ends == "nan":
            dlnnu[:, [0, -1]] = np.nan
            dlns2[:, [0, -1]] = np.nan
        mass = -(rc * s_r2 / G) * (dlnnu + dlns2 + 2.0 * beta)
        a_r = -G * mass / rc**2
        vc = np.sqrt(np.where(mass >= 0, G * mass / rc, np.nan))
        density = np.gradient(mass, rc, axis=1, edge_order=1) / (4.0 * np.pi * rc**2)
    fields = {"nu": nu, "vr_mean": vr_mean, "sigma_r": np.sqrt(s_r2), "sigma_t": np.sqrt(s_t2), "beta": beta,
              "dlnnu_dlnr": dlnnu, "dlnsigma2_dlnr": dlns2, "mass": mass, "a_r": a_r, "vc": vc,
              "density": density}
    if ends == "nan" and n_bins < 5:
        gone = "M(<r), a_r, v_c and ρ" if n_bins < 3 else "ρ"
        warnings.warn(f"jeans.spherical: with {n_bins} bins and ends='nan' no bin has {gone} (the end bins have no "
                      "central difference, and ρ needs one more); use more bins, or ends='one_sided' for biased "
                      "values", UserWarning, stacklevel=2)
    undefined: list[str] = []
    result = SphericalJeans(
        r=rc, r_edges=r_edges, count=np.rint(full[:, 0]).astype(np.int64),
        **{k: _c.make_estimate(f[0], f[1:], _NAMES[k], k, undefined) for k, f in fields.items()},
        n_boot=n_boot, seed=seed,
    )
    _c.warn_undefined(undefined, "jeans.spherical")
    return result

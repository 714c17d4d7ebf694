"""Shared machinery of the Jeans estimators: input checks, bootstrap sums, volumes.

Everything here is numpy (binned statistics, not a JAX hot path) and vectorised
over stars: per-bin sums are bincounts, bootstrap replicates one BLAS product per bin
and block of replicates (stars sorted by bin).

Bootstrap: the classic one — each replicate resamples the N stars of the
catalog with replacement (N fixed); see :func:`bootstrap_counts` for how the
stars outside every bin are skipped without changing the result.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import numpy as np

from .. import units as _u
from ..catalog import Catalog

__all__ = ["Estimate", "JeansError"]

#: Largest number of (replicate × star) weights held in memory at once.
_BLOCK = 8_000_000


class JeansError(ValueError):
    """Bad input to a Jeans estimator (wrong edges, empty bins, bad catalog)."""


class Estimate(NamedTuple):
    """A quantity with its bootstrap error.

    Attributes:
        value: the estimate from the full catalog (shape of the bins, or a scalar).
        error: the bootstrap standard deviation (same shape; NaN where the value is
            not finite or the quantity is undefined in more than 1 % of the replicates).
        samples: the bootstrap replicates, shape (n_boot, *value.shape); NaN marks a
            replicate in which the quantity was undefined (e.g. an empty bin).
        unit: the unit of ``value``, ``error`` and ``samples`` (astropy string).
    """

    value: Any
    error: Any
    samples: np.ndarray
    unit: str

    @property
    def quantity(self):
        """``value`` as an astropy Quantity."""
        import astropy.units as u

        return u.Quantity(self.value, self.unit)


MAX_UNDEFINED_FRACTION = 0.01
"""Largest fraction of bootstrap replicates in which a quantity may be undefined (NaN) while its error is still
the spread of the others: leaving out replicates (a bin emptied, M(<r) < 0 under a square root) truncates the
spread. A bin of 11 stars whose replicates were dropped below 10 stars (35 % of them) had a density error of
0.22–0.23 (two draws of the stars) instead of 1/√11 = 0.30."""


def make_estimate(value: np.ndarray, samples: np.ndarray, unit: str, name: str = "",
                  undefined: list[str] | None = None) -> Estimate:
    """An :class:`Estimate` whose error is the standard deviation of the finite replicates.

    The error is NaN where the value is not finite, and where the quantity is
    undefined in more than :data:`MAX_UNDEFINED_FRACTION` of the replicates; those
    are appended to ``undefined`` (``"name: k of n values (up to x %)"``) for the
    caller's warning.
    """
    value = np.asarray(value, dtype=float)
    samples = np.asarray(samples, dtype=float)
    error = nan_std(samples)
    if samples.shape[0]:
        frac = (~np.isfinite(samples)).mean(axis=0)
        lost = np.isfinite(value) & (frac > MAX_UNDEFINED_FRACTION)
        if lost.any():
            error = np.where(lost, np.nan, error)
            if undefined is not None:
                undefined.append(f"{name or 'value'}: {int(lost.sum())} of {lost.size} (up to "
                                 f"{100 * float(frac[lost].max()):.0f} % of the replicates)")
    error = np.where(np.isfinite(value), error, np.nan)
    return Estimate(value=_scalar(value), error=_scalar(error), samples=samples, unit=unit)


def warn_undefined(undefined: list[str], estimator: str) -> None:
    """One warning naming the quantities whose bootstrap error :func:`make_estimate` left NaN."""
    if undefined:
        warnings.warn(
            f"{estimator}: no bootstrap error (NaN) for {'; '.join(undefined)}: the quantity is undefined in more than "
            f"{100 * MAX_UNDEFINED_FRACTION:g} % of the replicates (a bin left with no star, or M(<r) < 0 under vc's "
            "square root), and the spread of the rest would understate the error. Fix: wider bins or more stars",
            UserWarning, stacklevel=3,
        )


def _scalar(a: np.ndarray) -> Any:
    return float(a) if a.ndim == 0 else a


def nan_std(samples: np.ndarray) -> np.ndarray:
    """Standard deviation (ddof=1) along axis 0 over the finite entries; NaN if fewer than two.

    Written out instead of ``np.nanstd`` so that all-NaN columns give NaN without a
    RuntimeWarning.
    """
    ok = np.isfinite(samples)
    n = ok.sum(axis=0)
    filled = np.where(ok, samples, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / n
        dev = np.where(ok, samples - mean, 0.0)
        var = (dev**2).sum(axis=0) / (n - 1)
    return np.where(n >= 2, np.sqrt(np.where(n >= 2, var, 0.0)), np.nan)


def check_catalog(catalog: Any) -> Catalog:
    if not isinstance(catalog, Catalog):
        raise JeansError(
            f"catalog must be a bayesdyn.Catalog, got {type(catalog).__name__}; "
            "wrap arrays with bayesdyn.Catalog(x=..., v=...) (x in kpc, v in km/s)"
        )
    return catalog


def check_edges(edges: Any, name: str, *, nonnegative: bool = False, min_bins: int = 2) -> np.ndarray:
    """Bin edges as a strictly increasing float array [kpc] with at least ``min_bins`` bins."""
    try:
        arr = np.asarray(_u.strip(edges, "length", name=name), dtype=float)
    except _u.UnitError:
        raise
    except (TypeError, ValueError):
        raise JeansError(f"{name} must be a 1-D array of bin edges in kpc, got {edges!r}") from None
    if arr.ndim != 1 or arr.size < min_bins + 1:
        raise JeansError(
            f"{name} must be a 1-D array of at least {min_bins + 1} edges (≥ {min_bins} bins, needed for "
            f"the finite differences), got shape {arr.shape}; e.g. np.linspace(lo, hi, 11)"
        )
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise JeansError(f"{name} has {bad} non-finite edge(s); pass finite edges in kpc")
    if not np.all(np.diff(arr) > 0):
        raise JeansError(f"{name} must be strictly increasing; {int((np.diff(arr) <= 0).sum())} step(s) are not")
    if nonnegative and arr[0] < 0:
        raise JeansError(f"{name} starts at {arr[0]} kpc; radii cannot be negative")
    return arr


def check_vector(value: Any, physical_type: str, name: str) -> np.ndarray:
    try:
        arr = np.asarray(_u.strip(value, physical_type, name=name), dtype=float)
    except _u.UnitError:
        raise
    except (TypeError, ValueError):
        raise JeansError(f"{name} must be 3 numbers, got {value!r}") from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise JeansError(f"{name} must be 3 finite numbers, got {value!r}")
    return arr


def check_positive(value: Any, physical_type: str, name: str) -> float:
    try:
        out = float(_u.strip(value, physical_type, name=name))
    except _u.UnitError:
        raise
    except (TypeError, ValueError):
        raise JeansError(f"{name} must be one number, got {value!r}") from None
    if not (np.isfinite(out) and out > 0):
        raise JeansError(f"{name} must be positive and finite, got {out}")
    return out


def check_flag(value: Any, name: str) -> bool:
    """A True/False argument (bool() read symmetrize_z="no" as True and mirrored the stars)."""
    if not isinstance(value, (bool, np.bool_)):
        raise JeansError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_n_boot(n_boot: Any, seed: Any) -> tuple[int, int]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise JeansError(f"n_boot must be an integer ≥ 2 (bootstrap replicates), got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise JeansError(f"seed must be a non-negative integer, got {seed!r}")
    return int(n_boot), int(seed)


def bootstrap_counts(n_total: int, n_used: int, n_rep: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n_used`` of ``n_total`` stars is drawn, for ``n_rep`` bootstrap resamples.

    A resample draws ``n_total`` stars with replacement; only the ``n_used`` stars
    that fall in some bin matter, and they receive K ~ Binomial(n_total,
    n_used/n_total) of the draws, spread uniformly — exactly the multinomial
    counts of the classic bootstrap, without drawing the unused stars.

    Returns:
        (n_used, n_rep) float array of counts (column j is resample j).
    """
    k = rng.binomial(n_total, n_used / n_total, size=n_rep) if n_used < n_total else np.full(n_rep, n_total)
    out = np.empty((n_rep, n_used))
    for j in range(n_rep):  # one bincount per resample (a loop over resamples, not stars)
        out[j] = np.bincount(rng.integers(0, n_used, size=int(k[j])), minlength=n_used)
    return out.T


def binned_sums(
    bins: np.ndarray,
    values: np.ndarray,
    n_bins: int,
    *,
    star: np.ndarray | None = None,
    n_total: int,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin sums of per-entry quantities, for the catalog and for bootstrap resamples of it.

    Args:
        bins: (M,) bin index of each entry, in [0, n_bins).
        values: (M, q) quantities of each entry (column 0 is usually 1, the count).
        n_bins: number of bins.
        star: (M,) which star (0..n_used−1) each entry belongs to; entries of one
            star (a star and its mirror image) share its bootstrap count. Default:
            one entry per star.
        n_total: number of stars in the catalog being resampled (≥ the stars used).
        n_boot: number of resamples.
        rng: the generator of the resamples.

    Returns:
        ``(full, boot)``: sums of shape (n_bins, q) and (n_boot, n_bins, q).
    """
    m, q = values.shape
    order = np.argsort(bins, kind="stable")
    bins, values = bins[order], np.ascontiguousarray(values[order])
    # Multinomial counts are exchangeable, so stars may be numbered in any order:
    # with one entry per star, number them in bin order and skip the gather.
    star = None if star is None else star[order]
    n_used = m if star is None else int(star.max()) + 1
    starts = np.searchsorted(bins, np.arange(n_bins + 1))
    full = np.stack([np.bincount(bins, weights=values[:, k], minlength=n_bins) for k in range(q)], axis=1)
    boot = np.zeros((n_boot, n_bins, q))
    nonempty = np.flatnonzero(np.diff(starts) > 0)
    block = max(1, _BLOCK // max(m, 1))
    for lo in range(0, n_boot, block):  # blocks of resamples × non-empty bins; each product is one BLAS call
        hi = min(n_boot, lo + block)
        w = bootstrap_counts(n_total, n_used, hi - lo, rng)
        if star is not None:
            w = w[star]
        for b in nonempty:
            s, e = starts[b], starts[b + 1]
            boot[lo:hi, b] = w[s:e].T @ values[s:e]
    return full, boot


def circular_range(phi: np.ndarray) -> tuple[float, float]:
    """(start, width) [rad] of the smallest arc, padded, that holds the azimuths ``phi`` [rad]."""
    if phi.size == 0:
        return 0.0, 2 * np.pi
    mean = np.arctan2(np.mean(np.sin(phi)), np.mean(np.cos(phi)))
    d = np.angle(np.exp(1j * (phi - mean)))
    lo, hi = float(d.min()), float(d.max())
    pad = 0.25 * (hi - lo) + np.deg2rad(1.0)
    width = hi - lo + 2 * pad
    if width >= 1.5 * np.pi:
        return 0.0, 2 * np.pi
    return float(mean + lo - pad), float(width)


def selected_volumes(
    selection: Callable[[np.ndarray], np.ndarray],
    center: np.ndarray,
    R_edges: np.ndarray,
    z_edges: np.ndarray,
    phi_start: float,
    phi_width: float,
    *,
    n_points: int = 2**13,
) -> tuple[np.ndarray, bool]:
    """Volumes [kpc³] of the parts of the (R, z) annular bins that ``selection`` keeps.

    Quasi-Monte Carlo (scrambled Sobol, fixed seed) with ``n_points`` points per bin,
    uniform in volume over R ∈ bin, z ∈ bin, φ ∈ [phi_start, phi_start + phi_width].

    Returns:
        ``(volumes, touches_edge)``: volumes of shape (nR, nz) and whether any kept
        point lies in the outer 10 % of the φ range on either side (then the range
        was too narrow and the caller widens it).
    """
    from scipy.stats import qmc

    u = qmc.Sobol(d=3, scramble=True, seed=12345).random(n_points)
    r1, r2 = R_edges[:-1], R_edges[1:]
    z1, z2 = z_edges[:-1], z_edges[1:]
    n_r, n_z = r1.size, z1.size
    out = np.empty((n_r, n_z))
    touches = False
    phi = phi_start + phi_width * u[:, 2]
    edge = (u[:, 2] < 0.1) | (u[:, 2] > 0.9)
    cos_p, sin_p = np.cos(phi), np.sin(phi)
    for i in range(n_r):  # loop over radial bins (≤ a few hundred), vectorised over z bins and points
        rr = np.sqrt(r1[i] ** 2 + u[:, 0] * (r2[i] ** 2 - r1[i] ** 2))
        zz = z1[:, None] + (z2 - z1)[:, None] * u[None, :, 1]  # (n_z, n_points)
        pts = np.empty((n_z, n_points, 3))
        pts[..., 0] = center[0] + rr * cos_p
        pts[..., 1] = center[1] + rr * sin_p
        pts[..., 2] = center[2] + zz
        keep = np.asarray(selection(pts.reshape(-1, 3)), dtype=bool).reshape(n_z, n_points)
        if keep.shape != (n_z, n_points):
            raise JeansError("selection(x) must return one boolean per row of x (an (M,) array)")
        touches = touches or bool((keep & edge[None, :]).any())
        full = 0.5 * phi_width * (r2[i] ** 2 - r1[i] ** 2) * (z2 - z1)
        out[i] = keep.mean(axis=1) * full
    return out, touches


def apply_selection(selection: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    keep = np.asarray(selection(x))
    if keep.shape != (x.shape[0],) or keep.dtype != bool:
        raise JeansError(
            f"selection(x) must return a boolean array of shape ({x.shape[0]},) for x of shape {x.shape}, "
            f"got dtype {keep.dtype} and shape {keep.shape}; "
            "e.g. selection=lambda x: np.linalg.norm(x - x_sun, axis=1) < 1.5"
        )
    return keep

"""Measurement errors: re-smear the catalog and correct the accelerations to leading order (SIMEX).

A catalog's stars carry measurement errors, so the flows learn the *observed*
phase-space density — the true one convolved with the errors — and the CBE
accelerations from it are biased. For velocity errors ε on a locally Gaussian
velocity distribution the bias is ε² ∂log ν/∂x to leading order (the Jeans
term of an inflated dispersion): linear in the error variance. Re-smearing the
observed catalog once more with the same errors doubles that variance, so the
difference between the accelerations of the re-smeared copy and of the data
estimates the bias, and the linear extrapolation to zero error (SIMEX, Cook &
Stefanski 1994) is

    a_corrected = a_data − (a_smeared − a_data) = 2 a_data − a_smeared.

The correction is made per ensemble member k (member k of the copies' flows is
fitted with the same seed and settings as member k of the data's flows), so that
the members' spread still carries the training and sampling variance — now of
the corrected field. The copies are independent Monte Carlo draws of the
errors: their mean is used, and the spread of the copies' member-mean fields
estimates the Monte Carlo error of that mean, which is common to all members
and is therefore added to every member's own covariance (it enters Rubin's W̄,
not the between-member B). With one copy that error is not estimated (a warning
says so).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Sequence

import jax.numpy as jnp
import numpy as np

__all__ = ["resmear", "measurement_error_correction", "correct_measurement_errors", "MeasurementErrorCorrection"]


def _per_star(value: Any, n: int, physical_type: str, name: str) -> np.ndarray:
    from .. import units as _u

    arr = np.asarray(_u.strip(value, physical_type, name), dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full((n, 3), float(arr))
    elif arr.shape == (n,):
        arr = np.repeat(arr[:, None], 3, axis=1)
    elif arr.shape != (n, 3):
        raise ValueError(f"{name} must be a number, one per star ({n},) or one per star and axis ({n}, 3); "
                         f"got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr >= 0).all()):
        raise ValueError(f"{name} must be finite and ≥ 0 (a standard deviation); "
                         f"{int((~np.isfinite(arr) | (arr < 0)).any(axis=1).sum())} star(s) are not")
    return arr


def resmear(catalog, seed: int, *, velocity_error: Any = None, position_error: Any = None):
    """A copy of ``catalog`` with every star moved by one more draw of its measurement errors.

    Either from the Gaia error columns (``velocity_error`` and ``position_error``
    both None: :meth:`bayesdyn.Catalog.error_draws`, the observables perturbed with
    their correlations and transformed again), or from Gaussian errors given per
    axis of the Galactocentric x [kpc] and v [km/s]: a number, one per star (N,), or
    one per star and axis (N, 3); astropy Quantities are converted. Applied to an
    error-free mock, the same function makes an "observed" catalog.

    Spherical selections recorded with the catalog (``meta['support_spheres']``,
    or a mock's sphere) are applied again to the moved positions, as the same selection of a second
    observation would be; the cut and its count are recorded in the copy's
    ``history``. The copy keeps the solar parameters and meta (plus
    ``meta['resmeared']``) but not the Gaia columns, which no longer describe it.

    Args:
        catalog: a :class:`bayesdyn.Catalog`.
        seed: integer seed of the error draw.
        velocity_error: σ of each velocity component [km/s], or None.
        position_error: σ of each position component [kpc], or None.

    Returns:
        A new :class:`bayesdyn.Catalog`.

    Raises:
        ValueError: bad error arrays, or a Gaia error draw with no distance (parallax ≤ 0).
        bayesdyn.catalog.CatalogError: no error columns and no errors given.
    """
    from ..catalog import Catalog

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    x = np.asarray(catalog.x, np.float64)
    v = np.asarray(catalog.v, np.float64)
    n = x.shape[0]
    if velocity_error is None and position_error is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # counted and raised below
            xs, vs = catalog.error_draws(1, int(seed))
        xs, vs = np.asarray(xs[0]), np.asarray(vs[0])
        bad = ~(np.isfinite(xs).all(axis=1) & np.isfinite(vs).all(axis=1))
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {n} stars got a parallax ≤ 0 in the error draw, so they have no position; "
                "cut low-parallax stars first (e.g. catalog.parallax_over_error(5)) so that none is silently lost"
            )
        how = {"errors": "gaia columns", "seed": int(seed)}
    else:
        rng = np.random.default_rng(int(seed))
        xs, vs = x.copy(), v.copy()
        how = {"errors": "gaussian", "seed": int(seed)}
        if position_error is not None:
            sx = _per_star(position_error, n, "length", "position_error")
            xs = x + sx * rng.standard_normal((n, 3))
            how["position_error_kpc_median"] = float(np.median(sx))
        if velocity_error is not None:
            sv = _per_star(velocity_error, n, "velocity", "velocity_error")
            vs = v + sv * rng.standard_normal((n, 3))
            how["velocity_error_kms_median"] = float(np.median(sv))
    meta = dict(catalog.meta)
    meta["resmeared"] = list(meta.get("resmeared", [])) + [how]
    out = Catalog(xs, vs, solar=catalog.solar, meta=meta, history=list(catalog.history))
    from ..psd._fit import _support_spheres

    for center, radius, _ in _support_spheres(catalog):
        inside = np.linalg.norm(np.asarray(out.x) - center, axis=1) <= radius
        if not inside.all():
            out = out.select(inside, f"re-smeared copy: back inside the selection sphere of radius {radius:g} kpc")
    return out


def _check_pair(data, other, what: str) -> None:
    if np.shape(other.x) != np.shape(data.x) or not np.allclose(np.asarray(other.x), np.asarray(data.x)):
        raise ValueError(f"{what} were estimated at other nodes; estimate them at the data's nodes (x=data.x)")
    if data.n_members != other.n_members:
        raise ValueError(
            f"{what} have {other.n_members} members and the data {data.n_members}; fit the copies with the data's "
            "fit_psd settings (the same ensemble and seed)"
        )
    if (data.member_cov is None) != (other.member_cov is None):
        raise ValueError(f"{what} and the data must both carry per-member covariances, or neither")


def measurement_error_correction(data, smeared: Sequence):
    """Leading-order (SIMEX) correction of node accelerations for measurement errors.

    Args:
        data: :class:`bayesdyn.inference.AccelerationData` from the flows of the
            observed catalog.
        smeared: one or more AccelerationData from flows fitted, with the same
            settings and seed, to re-smeared copies (:func:`resmear`), estimated
            at the same nodes.

    Returns:
        AccelerationData with members 2 a_k − mean_c a'_{c,k}; member covariances
        4 C_k + Σ_c C'_{c,k}/n² (least-squares noise) + V_MC (the Monte Carlo
        error of the copies' mean, from their spread; n ≥ 2); the combined
        estimate and covariance as :func:`~bayesdyn.estimate_accelerations` forms
        them (member mean; between-member spread + mean least-squares part / K),
        plus V_MC. Resample groups are kept.
    """
    from ..inference._data import AccelerationData

    smeared = list(smeared)
    if not smeared:
        raise ValueError("give at least one AccelerationData of a re-smeared copy")
    for i, s in enumerate(smeared):
        _check_pair(data, s, f"smeared[{i}]")
    n = len(smeared)
    k = max(data.n_members, 1)
    a_obs = jnp.asarray(data.members) if data.members is not None else jnp.asarray(data.a)[None]
    a_sm = jnp.stack([jnp.asarray(s.members) if s.members is not None else jnp.asarray(s.a)[None] for s in smeared])
    members = 2.0 * a_obs - jnp.mean(a_sm, axis=0)  # (K, P, 3)
    if n >= 2:
        means = jnp.mean(a_sm, axis=1)  # (n, P, 3): each copy's member mean
        d = means - jnp.mean(means, axis=0)
        v_mc = jnp.einsum("npi,npj->pij", d, d) / (n - 1) / n  # variance of the copies' mean
    else:
        v_mc = jnp.zeros(np.shape(data.cov))
    if data.member_cov is not None:
        c_sm = jnp.stack([jnp.asarray(s.member_cov) for s in smeared])  # (n, K, P, 3, 3)
        ls = 4.0 * jnp.asarray(data.member_cov) + jnp.sum(c_sm, axis=0) / n**2
        member_cov = ls + v_mc[None]
        within = jnp.mean(ls, axis=0) / k
    else:  # a single field: its covariance is all we have
        member_cov = None
        within = 4.0 * jnp.asarray(data.cov) + sum(jnp.asarray(s.cov) for s in smeared) / n**2
    a = jnp.mean(members, axis=0)
    if k > 1:
        dm = members - a
        between = jnp.einsum("kpi,kpj->pij", dm, dm) / (k - 1)
    else:
        between = jnp.zeros_like(within)
    return AccelerationData.create(
        data.x, a, within + between + v_mc, sun=data.sun,
        members=members if data.members is not None else None,
        member_cov=member_cov, member_groups=data.member_groups,
    )


@dataclasses.dataclass
class MeasurementErrorCorrection:
    """The result of :func:`correct_measurement_errors`.

    Attributes:
        corrected: the corrected AccelerationData (pass it to ``bd.infer``).
        observed: the data's own accelerations, uncorrected.
        smeared: the copies' accelerations.
        bias: the estimated bias of the observed accelerations at the nodes, (P, 3)
            [(km/s)²/kpc] (observed − corrected member means).
    """

    corrected: Any
    observed: Any
    smeared: list

    @property
    def bias(self) -> np.ndarray:
        return np.asarray(self.observed.a) - np.asarray(self.corrected.a)

    def summary(self) -> str:
        """The size of the correction against the observed accelerations and their errors."""
        a = np.linalg.norm(np.asarray(self.observed.a), axis=1)
        b = np.linalg.norm(self.bias, axis=1)
        sd = np.sqrt(np.trace(np.asarray(self.observed.cov), axis1=1, axis2=2))
        return (
            f"measurement-error correction (SIMEX, {len(self.smeared)} re-smeared cop"
            f"{'y' if len(self.smeared) == 1 else 'ies'}) at {a.size} nodes: |bias|/|a| median "
            f"{np.median(b / a):.3g} (max {np.max(b / a):.3g}); |bias|/σ median {np.median(b / sd):.3g}"
        )


def correct_measurement_errors(
    catalog,
    fit: Callable[[Any], Any],
    x: Any,
    *,
    n_copies: int = 2,
    seed: int = 0,
    velocity_error: Any = None,
    position_error: Any = None,
    psd: Any = None,
    **estimate_options: Any,
) -> MeasurementErrorCorrection:
    """Fit flows to ``n_copies`` re-smeared copies of the catalog and correct the node accelerations.

    Costs ``n_copies`` more flow fits. The correction removes the bias of the
    observed accelerations to leading order in the error variance; its noise
    (training, sampling and Monte Carlo) is carried into the covariances
    (:func:`measurement_error_correction`).

    Args:
        catalog: the observed :class:`bayesdyn.Catalog`.
        fit: catalog → density, the same for data and copies, e.g.
            ``lambda c: bd.fit_psd(c, ensemble=4, seed=0)`` (a fixed seed pairs member
            k of every fit).
        x: node positions (P, 3) [kpc].
        n_copies: re-smeared copies (≥ 1; 2 or more estimate the Monte Carlo error).
        seed: seed of the copies' error draws (copy c uses ``seed + c``) and of the
            velocity draws at the nodes (the same for every fit).
        velocity_error: Gaussian velocity errors for :func:`resmear` [km/s]; with
            ``position_error`` also None, the catalog's Gaia error columns are used.
        position_error: Gaussian position errors for :func:`resmear` [kpc].
        psd: the density already fitted to ``catalog`` with ``fit`` (saves one fit).
        **estimate_options: passed to :func:`bayesdyn.estimate_accelerations`
            (``n_velocities``, ``ridge``, ``floor``, ``sun``).

    Returns:
        :class:`MeasurementErrorCorrection`.
    """
    from ._estimate import estimate_accelerations

    if isinstance(n_copies, bool) or not isinstance(n_copies, (int, np.integer)) or n_copies < 1:
        raise ValueError(f"n_copies={n_copies!r} must be a positive integer (2 or more estimate the Monte Carlo error)")
    if n_copies == 1:
        warnings.warn(
            "n_copies=1: the Monte Carlo error of the re-smeared copy is not estimated, so it is missing from the "
            "covariances; use n_copies ≥ 2", UserWarning, stacklevel=2,
        )
    if "seed" in estimate_options:
        raise TypeError("give the seed as correct_measurement_errors(seed=...); it is also the velocity-draw seed")
    x = np.asarray(x, float)
    src = fit(catalog) if psd is None else psd
    observed = estimate_accelerations(src, x, seed=seed, **estimate_options)
    smeared = []
    for c in range(int(n_copies)):
        copy = resmear(catalog, int(seed) + c, velocity_error=velocity_error, position_error=position_error)
        smeared.append(estimate_accelerations(fit(copy), x, seed=seed, **estimate_options))
    return MeasurementErrorCorrection(measurement_error_correction(observed, smeared), observed, smeared)

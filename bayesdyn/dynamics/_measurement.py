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

The correction is made per ensemble member k: member k of every copy's flows is
fitted with the same seed and settings as member k of the data's flows, and the
corrected member is 2 a_k − a'_{c(k),k}, with the copy c(k) assigned by bootstrap
resample (``member_groups``: the members of a seed pair share a copy) or, without
groups, round robin. Each copy is an independent Monte Carlo draw of the errors,
so its noise is a *field* shared by the members that use it: assigned this way it
enters the members' spread — coherently over the nodes, as the combination needs
— and not a per-node covariance. The member mean averages over all copies, while
the combination counts their spread like sampling variance, so this part of the
intervals is conservative (with 2 resamples × 2 seeds and 2 copies, by up to 3×
in variance). With one copy its noise is common to all members and is in no
interval: a warning says so. A copy that loses stars to a recorded selection
sphere (position errors) has other bootstrap resamples than the data, as
``fit_psd`` draws them by row: its members are then paired by seed only, the
training noise does not cancel and the intervals widen; a warning says so too.

**Position errors are corrected less well.** Their bias is not linear in the error
variance: on a Gaussian tracer of scale length h in a harmonic potential, errors
ε_x shrink |a| by 1/(1 + ε_x²/h²), and the straight-line extrapolation leaves
−0.3 % at ε_x/h = 0.2, −1.3 % at 0.3 and −6.7 % at 0.5 (exact scores of the smeared
density; an independent review, 2026-12-07). That residual is in no covariance:
with distance errors approaching the tracers' scale heights (h_z ≈ 0.3 kpc in the
disk) the corrected accelerations are still biased low. Velocity errors were
corrected exactly in the same test (ε = 10 and 20 km/s on σ = 30 km/s).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Sequence

import jax.numpy as jnp
import numpy as np

__all__ = ["resmear", "copy_seed", "measurement_error_correction", "correct_measurement_errors", "MeasurementErrorCorrection"]


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
    or a mock's sphere) are applied again to the moved positions; the cut and its
    count are recorded in the copy's ``history``. (Stars that would scatter in from
    outside the sphere are not in the catalog, so near its edge the copy is
    depleted; keep nodes well inside.) The copy keeps the solar parameters and meta (plus
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
    from .. import units as _u

    x = np.asarray(_u.strip(catalog.x, "length", "catalog.x"), np.float64)  # a Quantity in pc is converted
    v = np.asarray(_u.strip(catalog.v, "velocity", "catalog.v"), np.float64)
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
    g0, g1 = data.member_groups, other.member_groups
    if (g0 is None) != (g1 is None) or (g0 is not None and not np.array_equal(np.asarray(g0), np.asarray(g1))):
        raise ValueError(f"{what} have other resample groups than the data; fit them with the same fit_psd settings")


def copy_seed(seed: int, c: int) -> int:
    """The error-draw seed of re-smeared copy ``c``, derived from ``seed`` (never ``seed`` itself)."""
    return int(np.random.SeedSequence([int(seed), 104729, int(c)]).generate_state(1)[0])


def measurement_error_correction(data, smeared: Sequence, *, floor: float = 0.0):
    """Leading-order (SIMEX) correction of node accelerations for measurement errors.

    Args:
        data: :class:`bayesdyn.inference.AccelerationData` from the flows of the
            observed catalog.
        smeared: one or more AccelerationData from flows fitted, with the same
            settings and seed, to re-smeared copies (:func:`resmear`), estimated
            at the same nodes.
        floor: the relative noise floor all of them were estimated with
            (``estimate_accelerations(floor=...)``): it is taken out of their
            covariances before they are combined and added once, (floor·|a|)² I,
            to the corrected ones.

    Returns:
        AccelerationData. For an ensemble (K ≥ 2 members with covariances):
        members 2 a_k − a'_{c(k),k} with c(k) = resample group of k (or k) modulo
        the number of copies, member covariances 4 C_k + C'_{c(k),k}, and the
        combined estimate and covariance as :func:`~bayesdyn.estimate_accelerations`
        forms them (member mean; between-member spread + mean least-squares part /
        K). For a single field: 2 a − mean_c a'_c with covariance 4 C + Σ_c C'_c/n²
        plus the copies' spread / n (per node). That spread already holds the copies'
        own noise C', so for n ≥ 2 the C'/n term is counted twice: conservative on
        purpose, as the spread of n = 2 copies is a one-degree-of-freedom estimate that
        can be near zero at a node. Resample groups are kept. With members, copies
        beyond the number of resample groups (or members) are not used, and a warning
        says so.

    Raises:
        ValueError: copies at other nodes, with another number of members or other
            resample groups, or members without their covariances.
    """
    from ..inference._data import AccelerationData

    smeared = list(smeared)
    if not smeared:
        raise ValueError("give at least one AccelerationData of a re-smeared copy")
    for i, s in enumerate(smeared):
        _check_pair(data, s, f"smeared[{i}]")
    n = len(smeared)
    k = data.n_members
    if k >= 2 and data.member_cov is None:
        raise ValueError(
            "the data carry members but not their covariances (member_cov); estimate them with "
            "bayesdyn.estimate_accelerations, which gives both"
        )
    if n == 1:
        warnings.warn(
            "one re-smeared copy: its Monte Carlo noise is shared by every member, so it is in no interval; "
            "use at least 2 copies (one per bootstrap resample)", UserWarning, stacklevel=2,
        )
    eye = jnp.eye(3)

    def unfloor(cov, a):  # the floor estimate_accelerations added, taken out again
        return jnp.asarray(cov) - ((floor * jnp.linalg.norm(jnp.asarray(a), axis=-1)) ** 2)[..., None, None] * eye

    if k >= 2:
        groups = np.arange(k) if data.member_groups is None else np.asarray(data.member_groups)
        _, label = np.unique(groups, return_inverse=True)
        which = label % n  # the copy each member is corrected with
        if n > label.max() + 1:
            warnings.warn(
                f"{n} re-smeared copies but {label.max() + 1} resample groups: copies {list(range(label.max() + 1, n))} "
                "are not used (member k is corrected with the copy of its group); give one copy per group",
                UserWarning, stacklevel=2,
            )
        a_sm = jnp.stack([jnp.asarray(smeared[c].members)[m] for m, c in enumerate(which)])
        c_sm = jnp.stack([unfloor(smeared[c].member_cov[m], smeared[c].members[m]) for m, c in enumerate(which)])
        members = 2.0 * jnp.asarray(data.members) - a_sm
        member_cov = 4.0 * unfloor(data.member_cov, data.members) + c_sm
        a = jnp.mean(members, axis=0)
        dm = members - a
        cov = jnp.einsum("kpi,kpj->pij", dm, dm) / (k - 1) + jnp.mean(member_cov, axis=0) / k
        if floor > 0:
            member_cov = member_cov + ((floor * jnp.linalg.norm(members, axis=-1)) ** 2)[..., None, None] * eye
    else:
        a_sm = jnp.stack([jnp.asarray(s.a) for s in smeared])  # (n, P, 3)
        a = 2.0 * jnp.asarray(data.a) - jnp.mean(a_sm, axis=0)
        cov = 4.0 * unfloor(data.cov, data.a) + sum(unfloor(s.cov, s.a) for s in smeared) / n**2
        if n >= 2:
            d = a_sm - jnp.mean(a_sm, axis=0)
            # the copies' spread: re-smearing, training and velocity-draw noise of their mean (the last also in
            # the C'/n² above; counted twice on purpose, a floor under a spread of few copies)
            cov = cov + jnp.einsum("npi,npj->pij", d, d) / (n - 1) / n
        members = member_cov = None
    if floor > 0:
        cov = cov + ((floor * jnp.linalg.norm(a, axis=-1)) ** 2)[:, None, None] * eye
    return AccelerationData.create(data.x, a, cov, sun=data.sun, members=members, member_cov=member_cov,
                                   member_groups=data.member_groups)


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
    n_copies: int | str = "auto",
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
        n_copies: re-smeared copies (≥ 1); ``"auto"``: one per resample group of
            the data's flows (their ``resample_groups``, recorded by
            ``fit_psd(seeds_per_resample=2)``: 2 at K = 4), or 2 without groups (as at
            ``fit_psd``'s default of one seed per resample: round robin, member k with
            copy k mod 2). With one copy its Monte Carlo noise is in no
            interval (a warning says so). For an ensemble, at most one per resample
            group (per member without groups): member k is corrected with its group's
            copy, so more would not be used and are refused before a copy is fitted.
        seed: seed of the copies' error draws (copy c uses :func:`copy_seed`) and of the
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

    from .. import units as _u

    if n_copies != "auto" and (isinstance(n_copies, bool) or not isinstance(n_copies, (int, np.integer))
                               or n_copies < 1):
        raise ValueError(f"n_copies={n_copies!r} must be \"auto\" (one per resample) or a positive integer "
                         "(1 runs, with a warning that its noise is in no interval)")
    if "seed" in estimate_options:
        raise TypeError("give the seed as correct_measurement_errors(seed=...); it is also the velocity-draw seed")
    floor = float(estimate_options.pop("floor", 0.0))  # taken out of the pieces and added once to the result
    x = np.asarray(_u.strip(x, "length", "x"), dtype=float)
    src = fit(catalog) if psd is None else psd
    observed = estimate_accelerations(src, x, seed=seed, floor=floor, **estimate_options)
    groups = observed.member_groups
    if n_copies == "auto":
        n_copies = len(np.unique(groups)) if groups is not None else 2
    n_groups = (len(np.unique(groups)) if groups is not None else observed.n_members) \
        if observed.n_members >= 2 else None
    if n_groups is not None and n_copies > n_groups:  # each copy costs a flow fit
        raise ValueError(
            f"n_copies={n_copies} but the flows have {n_groups} resample groups (members): member k is corrected "
            f"with its group's copy, so copies beyond {n_groups} would cost a flow fit each and not be used; "
            f"give n_copies <= {n_groups}, or \"auto\""
        )
    smeared = []
    for c in range(int(n_copies)):
        copy = resmear(catalog, copy_seed(seed, c), velocity_error=velocity_error, position_error=position_error)
        if copy.n != catalog.n:  # fit_psd draws its validation split and bootstrap resamples by row
            warnings.warn(
                f"re-smeared copy {c} lost {catalog.n - copy.n} of {catalog.n} stars to the recorded selection "
                "sphere, so its flows' validation split and bootstrap resamples are not the data's: member k of "
                "the copy is paired with the data's by seed only, their training noise no longer cancels in "
                "2 a_k − a'_k, and the intervals are wider than with paired members (conservative; up to "
                "~5/(5 − 4ρ) in variance for a pairing correlation ρ). Velocity errors alone cut no star",
                UserWarning, stacklevel=2,
            )
        smeared.append(estimate_accelerations(fit(copy), x, seed=seed, floor=floor, **estimate_options))
    corrected = measurement_error_correction(observed, smeared, floor=floor)
    return MeasurementErrorCorrection(corrected, observed, smeared)

"""Accelerations at nodes from a phase-space density (or exact scores), with covariances."""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import jax.numpy as jnp
import numpy as np

from ._cbe import lstsq_acceleration

__all__ = ["ExactScores", "ScoreSource", "estimate_accelerations", "default_nodes"]


class ScoreSource(Protocol):
    """What acceleration estimation needs from a density estimate (a PhaseSpaceDensity, or exact truth).

    ``sample_velocities(x, n, seed)`` → (P, n, 3) [km/s] drawn from p(v|x);
    ``score_members(x, v)`` → (s_x, s_v), each (K, N, 3) [1/kpc, s/km], per ensemble member.
    Bare numbers are read in these units; Quantities are converted.
    Optional flags silence the one-member warning of :func:`estimate_accelerations`:
    ``exact = True`` (the scores are the truth's) or ``ensemble_member = True`` (one
    member of an ensemble whose posteriors are combined later).
    """

    def sample_velocities(self, x: Any, n: int, seed: int) -> Any: ...

    def score_members(self, x: Any, v: Any) -> tuple[Any, Any]: ...


def default_nodes(positions: np.ndarray, n_nodes: int, seed: int, center: np.ndarray | None = None, radius: float | None = None) -> np.ndarray:
    """``n_nodes`` catalog positions drawn without replacement (optionally within ``radius`` of ``center``) [kpc];
    Quantities are converted (positions in pc were returned as pc numbers, read as kpc)."""
    from .. import units as _u

    positions = np.asarray(_u.strip(positions, "length", "positions"), dtype=float)
    if center is not None and radius is not None:
        center = np.asarray(_u.strip(center, "length", "center"), dtype=float)
        radius = float(_u.strip(radius, "length", "radius"))
        positions = positions[np.linalg.norm(positions - center, axis=1) < radius]
    if positions.shape[0] == 0:
        raise ValueError("no positions to place nodes at; widen the radius")
    rng = np.random.default_rng(seed)
    idx = rng.choice(positions.shape[0], size=min(n_nodes, positions.shape[0]), replace=False)
    return positions[np.sort(idx)]


#: velocity draws farther than this many robust standard deviations (per axis, at a node)
#: from the node's median draw are left out of the least-squares solves (a Gaussian
#: gives such a draw once in ~1e23)
OUTLIER_MAD = 10.0


def _inliers(v: np.ndarray) -> np.ndarray:
    """(P, M) mask of the velocity draws (P, M, 3) within OUTLIER_MAD robust sd of their node's median, per axis;
    non-finite draws are outliers, and the median and MAD are those of the finite ones (one NaN draw made its node's
    median NaN, which flagged every draw of the node and so refused it)."""
    finite = np.isfinite(v)
    w = np.where(finite, v, np.nan)
    with warnings.catch_warnings():  # an axis with no finite draw: NaN median, every draw flagged, as it should
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(w, axis=1, keepdims=True)
        mad = 1.4826 * np.nanmedian(np.abs(w - med), axis=1, keepdims=True)
    scale = np.where(mad > 0, mad, np.inf)  # a constant axis flags nothing
    return np.all(finite & (np.abs(w - med) <= OUTLIER_MAD * scale), axis=-1)


def estimate_accelerations(
    source: ScoreSource,
    x: Any = None,
    *,
    n_nodes: int = 128,
    n_velocities: int = 512,
    seed: int = 0,
    ridge: float = 0.0,
    floor: float = 0.0,
    sun: Any = None,
):
    """Accelerations and their covariances at nodes, per ensemble member and combined.

    At each node, ``n_velocities`` velocities are drawn from p(v|x); each ensemble
    member's scores there give a least-squares acceleration (DESIGN §3). The
    estimate is the member mean and its covariance is the between-member
    covariance *plus* the mean within-member least-squares covariance / K,
    plus an optional relative noise floor: C += (floor·|a|)² I. (Neither the
    covariance of a mean of independent members, B/K, which the members' shared
    data make too narrow, nor Rubin's (1 + 1/K) B of
    :func:`bayesdyn.inference.combine_members`. B holds the members' least-squares
    noise as far as it is their own, and W̄/K is right for noise independent between
    members; but the members are solved on the same velocity draws, and the part of
    their score errors that they share gives least-squares noise common to all, in
    neither term: with a shared fraction ρ of the score noise this covariance is too
    narrow (mean χ² 3.9 at ρ = 0.5 and 13.7 at ρ = 1, against 3; B + W̄ gives 1.4 and
    3.4; ``python benchmarks/ensemble_covariance.py``), and too wide at ρ = 0 (1.25).
    This is the ``"mean"`` likelihood whose coverage docs/calibration measured as
    "ensemble"; the default, one posterior per member, uses each member's own
    covariance.) With K ≥ 2 the
    result also carries each member's accelerations and own covariance, which
    :func:`bayesdyn.infer` uses by default (one posterior per member, combined by
    Rubin's rules; see docs/calibration).

    Args:
        source: a PhaseSpaceDensity, or any :class:`ScoreSource` (e.g. exact truth).
        x: node positions (P, 3) [kpc]; default ``n_nodes`` positions from
            ``source.positions`` (exact-score sources) or drawn from the learnt n(x)
            (``source.sample``, a PhaseSpaceDensity).
        n_nodes: number of default nodes.
        n_velocities: velocities per node (≥ 4: three unknowns and a residual). Use
            hundreds: the least-squares (HC3) covariance is heavy-tailed with few
            draws (a review's simulation with exact scores and noise: per-node χ²
            averaged 8.7 at 8 draws, 4.8 at 16 and 3.06 at 256, against 3).
        seed: random seed of the velocity draws and node choice (an
            :class:`ExactScores` source's velocities do not depend on it).
        ridge: Tikhonov term of the 3×3 solves (relative). It shrinks |a|, and the
            covariances do not carry that bias (Plummer sphere, exact scores, 256
            draws: ridge = 0.01 gave |a| 0.8–1.3 % low, 4–7 σ; 0.1 gave 8–12 % low):
            keep 0 unless the solves are singular.
        floor: relative noise floor added to each covariance (dimensionless).
        sun: the Sun's position (3,) [kpc] for derived quantities (default
            ``source.sun`` or astropy 'v4.0').

    Returns:
        :class:`bayesdyn.inference.AccelerationData`.

    Raises:
        ValueError: ``n_velocities`` not an integer ≥ 4; ``x`` not (P, 3) with P ≥ 1, or not finite; no ``x``
            from a source without positions; a density whose ``info["resample_groups"]`` does not match its members.
        FloatingPointError: a node where more than 10 % of the velocity draws give non-finite scores or lie
            beyond ``OUTLIER_MAD`` robust sd of the node's draws (a node outside the catalog's bulk), or whose
            least-squares solve is singular (draws or scores that do not span three dimensions).

    Warns:
        RuntimeWarning: some draws (≤ 10 % at every node) were left out of the solves for the reason above.
        UserWarning: a one-member density (below).

    With a one-member density (K = 1) the covariance is the least-squares one
    alone: it does not contain the density's own (smooth, correlated) error, which
    DESIGN §6 measured at ~10× that width; a warning says so. Noise in the velocity
    scores s_v also shrinks |a| by 1/(1 + η²) (η its size relative to their spread)
    in every member alike, a bias no covariance here contains (a review measured
    1 % at η = 0.1).
    """
    from .. import units as _u
    from ..inference._data import DEFAULT_SUN, AccelerationData

    if isinstance(n_velocities, bool) or not isinstance(n_velocities, (int, np.integer)) or n_velocities < 4:
        raise ValueError(f"n_velocities={n_velocities!r} must be an integer ≥ 4 (three unknowns per node and a "
                         "residual); use hundreds")

    if x is None:
        pos = getattr(source, "positions", None)
        if pos is None and hasattr(source, "sample"):
            pos = source.sample(n_nodes, seed=seed)[0]  # nodes drawn from the learnt n(x)
        if pos is None:
            raise ValueError("pass node positions x (P, 3) [kpc]: this source has no positions to draw nodes from")
        # (a Quantity converted there: np.asarray here had read positions in pc as kpc)
        x = default_nodes(pos if hasattr(pos, "unit") else np.asarray(pos), n_nodes, seed)
    x = np.asarray(_u.strip(x, "length", "x"), dtype=float)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"x must be (P, 3) [kpc] with P ≥ 1 nodes, got {x.shape}")
    if not np.isfinite(x).all():  # (an ExactScores source had said "only 0 neighbour velocities are bound")
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"{len(bad)} node position(s) are NaN or infinite (first: node {bad[0]}, "
                         f"{x[bad[0]].tolist()} kpc); give finite positions")
    # a custom source may answer in Quantities: converted here (np.asarray kept the numbers of one in m/s as km/s)
    v = np.asarray(_u.strip(source.sample_velocities(x, n_velocities, seed), "velocity",
                            "the source's sample_velocities draws"))  # (P, M, 3)
    p, m = v.shape[:2]
    xs = np.broadcast_to(x[:, None, :], v.shape).reshape(-1, 3)
    # a non-finite draw is an outlier below, but a PhaseSpaceDensity refuses to score it (one inf in P·M draws aborted
    # the estimate): it is scored at a stand-in, the median of its node's finite draws (0 where there is none), and
    # left out of the solves with the other outliers
    v_scored = v
    if not np.isfinite(v).all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stand_in = np.nan_to_num(np.nanmedian(np.where(np.isfinite(v), v, np.nan), axis=1, keepdims=True))
        v_scored = np.where(np.isfinite(v).all(axis=-1, keepdims=True), v, stand_in)
    s_x, s_v = source.score_members(xs, v_scored.reshape(-1, 3))
    s_x = _u.strip(s_x, "inverse length", "the source's scores s_x")
    s_v = _u.strip(s_v, "inverse velocity", "the source's scores s_v")
    s_x = jnp.asarray(s_x).reshape((-1, p, m, 3))
    s_v = jnp.asarray(s_v).reshape((-1, p, m, 3))
    k = s_x.shape[0]
    # a draw in the far tail of p(v|x) can give a non-finite score (overflow in float32), or a
    # finite but absurd one (seen: a flow's draw at 8e5 km/s, scores 1e17, a 3×3 solve that
    # overflows): either would turn its node's solve into NaN or let one draw dominate it. Such
    # draws — non-finite scores, or farther than OUTLIER_MAD robust standard deviations
    # (1.4826 × MAD per axis at the node) from the node's median draw — are left out of every
    # member's solve and counted; a node that loses more than 10 % of its draws is an error.
    ok = jnp.all(jnp.isfinite(s_x) & jnp.isfinite(s_v), axis=(0, -1))  # (P, M), for all members
    ok = ok & jnp.asarray(_inliers(v))
    n_bad = np.asarray(m - jnp.sum(ok, axis=-1))
    if np.any(n_bad > 0.1 * m):
        worst = np.flatnonzero(n_bad > 0.1 * m)
        raise FloatingPointError(
            f"{len(worst)} node(s) (first {x[worst[0]].tolist()} kpc) have non-finite scores or outlying draws at "
            f"more than 10 % of "
            f"their {m} velocity draws; the density is not usable there — move the nodes inside the catalog's bulk"
        )
    if n_bad.any():
        warnings.warn(
            f"{int(n_bad.sum())} of {p * m} velocity draws gave non-finite scores or lay beyond {OUTLIER_MAD:g} robust "
            f"sd of their node's draws and were left out of the least-squares solves ({int((n_bad > 0).sum())} "
            "node(s) affected): far tails of p(v|x), or a minority population that is fast for its node (a review "
            "measured a third to half of a halo's draws among a disk's at 0.5–10 % halo fraction)",
            RuntimeWarning, stacklevel=2,
        )
        keep = ok[None, :, :, None]
        s_x, s_v = jnp.where(keep, s_x, 0.0), jnp.where(keep, s_v, 0.0)
        v = np.where(np.asarray(ok)[:, :, None], v, 0.0)
    fit = lstsq_acceleration(jnp.broadcast_to(jnp.asarray(v), s_x.shape), s_x, s_v, ridge)
    solved = np.isfinite(np.asarray(fit.a)).all(axis=(0, 2)) & np.isfinite(np.asarray(fit.cov)).all(axis=(0, 2, 3))
    if not solved.all():  # (AccelerationData.create then said only "drop those nodes", naming neither node nor cause)
        worst = np.flatnonzero(~solved)
        raise FloatingPointError(
            f"{worst.size} node(s) (first {x[worst[0]].tolist()} kpc) have no finite least-squares acceleration: the "
            "3×3 normal equations of their velocity draws' scores are singular (draws or scores that do not span "
            "three dimensions there, e.g. a velocity component that is constant at the node); check the density "
            "there, or move the nodes"
        )
    members = fit.a  # (K, P, 3)
    a = jnp.mean(members, axis=0)
    within = jnp.mean(fit.cov, axis=0) / k
    if k > 1:
        d = members - a
        between = jnp.einsum("kpi,kpj->pij", d, d) / (k - 1)
    else:
        between = jnp.zeros_like(within)
    cov = within + between
    member_cov = fit.cov  # (K, P, 3, 3): each member's own least-squares covariance
    if floor > 0:
        cov = cov + ((floor * jnp.linalg.norm(a, axis=-1)) ** 2)[:, None, None] * jnp.eye(3)
        member_cov = member_cov + ((floor * jnp.linalg.norm(members, axis=-1)) ** 2)[..., None, None] * jnp.eye(3)
    if k == 1 and not (getattr(source, "exact", False) or getattr(source, "ensemble_member", False)):
        warnings.warn(
            "one density member: the accelerations' covariances are the least-squares ones alone, without the "
            "density's own error (DESIGN §6: ~10× wider for a flow), so posteriors from them are too narrow unless "
            "the scores are exact; fit an ensemble (fit_psd(ensemble=4)) or set a noise floor",
            UserWarning, stacklevel=2,
        )
    if sun is None:
        sun = getattr(source, "sun", None)
        sun = DEFAULT_SUN if sun is None else sun
    sun = np.asarray(_u.strip(sun, "length", "sun"), dtype=float)  # a Quantity in pc was read as kpc
    groups = (getattr(source, "info", None) or {}).get("resample_groups") if k > 1 else None
    if groups is not None and len(groups) != k:
        raise ValueError(f"the density's info['resample_groups'] has {len(groups)} labels for its {k} members; "
                         "the file is inconsistent (refit, or remove the key to treat members as independent resamples)")
    return AccelerationData.create(
        x, a, cov, sun=sun, members=members, member_cov=member_cov if k > 1 else None,
        member_groups=None if groups is None else np.asarray(groups, np.int64),
    )



class ExactScores:
    """A :class:`ScoreSource` from a mock's exact scores (a one-member "ensemble").

    Velocities at a node are those of the catalog stars nearest to it (any velocity
    satisfies the CBE with exact scores; near neighbours keep them inside the bound
    region of phase space): the n nearest whose scores are finite, the same for any
    ``seed`` (``sample_velocities`` ignores it; with these sources the seed of
    :func:`estimate_accelerations` changes only the choice of nodes).

    Args:
        truth: an object with ``score(x, v)`` → (s_x, s_v), (N, 3) each.
        catalog: the mock catalog (its positions and velocities).
    """

    exact = True

    def __init__(self, truth: Any, catalog: Any):
        self.truth = truth
        from .. import units as _u

        self.positions = np.asarray(_u.strip(catalog.x, "length", "catalog.x"), dtype=float)
        self._v = np.asarray(_u.strip(catalog.v, "velocity", "catalog.v"), dtype=float)
        self.sun = np.asarray(catalog.solar.position)

    def sample_velocities(self, x: Any, n: int, seed: int) -> np.ndarray:
        from .. import units as _u

        x = np.asarray(_u.strip(x, "length", "x"), dtype=float)
        out = np.empty((x.shape[0], n, 3))
        k = min(4 * n, self.positions.shape[0] - 1)
        for i, xi in enumerate(x):  # loop over nodes (few), not stars
            d2 = np.sum((self.positions - xi) ** 2, axis=1)
            near = np.argpartition(d2, k)[:k]
            near = near[np.argsort(d2[near])]
            v = self._v[near]
            s_x, s_v = self.truth.score(jnp.broadcast_to(jnp.asarray(xi), v.shape), jnp.asarray(v))
            ok = np.isfinite(np.asarray(s_x)).all(-1) & np.isfinite(np.asarray(s_v)).all(-1)
            if ok.sum() < n:
                raise ValueError(f"only {ok.sum()} neighbour velocities are bound at node {xi}; ask for fewer")
            out[i] = v[ok][:n]
        return out

    def score_members(self, x: Any, v: Any):
        from .. import units as _u

        x, v = _u.strip(x, "length", "x"), _u.strip(v, "velocity", "v")
        s_x, s_v = self.truth.score(jnp.asarray(x), jnp.asarray(v))
        return jnp.asarray(s_x)[None], jnp.asarray(s_v)[None]

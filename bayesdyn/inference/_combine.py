"""One posterior per ensemble member, combined by Rubin's rules (DESIGN §6).

A flow's errors are smooth fields over space: correlated between nodes, so a
likelihood that treats nodes as independent is overconfident however its
per-node covariance is inflated. Each ensemble member (a flow pair trained on its
own bootstrap resample, with its own seed) gives a complete, self-consistent
acceleration field; its posterior, from its own accelerations and its own
(within-member) covariance, carries that member's correlated error into the
parameters through the model itself. The members then play the role of the
*imputations* of multiple imputation (Rubin 1987): with K members whose
posterior means are m_k and covariances W_k, in the unconstrained coordinates of
the parameters,

    m̄ = (1/K) Σ m_k,   W̄ = (1/K) Σ W_k,   B = Σ (m_k − m̄)(m_k − m̄)ᵀ / (K − 1),
    T = W̄ + (1 + 1/K) B,

and Rubin's combined posterior is a Student t of scale T with ν = (K − 1)(1 + 1/r)²
degrees of freedom, r = (1 + 1/K) B/W̄, so that with few members the between-member
spread, itself estimated from K values, gets heavy tails.

The draws made here are within-member draws re-centred on m̄ plus an independent draw
of the between-member part, u = u_ks − m_k + m̄ + g·√(ν_b/χ²_{ν_b}), with g a Gaussian
combination of the deviations m_j − m̄ of covariance (1 + 1/K) B and ν_b = K − 1, the
degrees of freedom of B itself: the between-member variance is drawn from its
posterior given B (scaled inverse χ²), the within-member part keeps the members' own
(near-Gaussian) shape. Rubin's (1 + 1/r)² belongs to a t of the whole scale T; until
2026-12-07 it was applied to the between part alone, which made its tails too light.
Simulated 95 % coverage (``python benchmarks/rubin_design.py``; old ν → now):

- K independent members, between = within (its toy rows): K = 2 0.911 → 0.980,
  K = 4 0.937 → 0.968, K = 8 0.944 → 0.955. The draws now **over-cover** where
  Rubin's analytic t of the whole scale is near nominal (0.919, 0.944, 0.949); at
  K = 2 their 95 % half-width is 3.3× that t's (Cauchy tails of one degree of
  freedom): use K ≥ 4.
- 2 resamples × 2 seeds with the NFW mock's training shares 0.94 / 0.82 / 0.46
  (ρ_s, r_s, ρ(r_s)): 0.957 / 0.937 / 0.877 → 0.983 / 0.972 / 0.925 (draw rows, one
  t of Satterthwaite's ν) → 0.998 / 0.996 / 0.986 (each variance part drawn from its
  posterior, **Resample groups** below).

This errs on the wide side on purpose (except where the old groups rule fell short,
below): the harness measured less coverage on the real pipeline than any of these
simulations (nfw/members at 95 % with the old rule:
0.900 / 0.867 / 0.867 over R = 30, binomial sd ≈ 0.04). **The calibration pages
(docs/calibration) were measured with the old rule** and have not been rerun.
Common-mode errors of all members (a bias shared by the architecture) are not in B;
the calibration harness measures whether they matter.

**Resample groups.** With one member per bootstrap resample, B estimates
V_s + V_t (the sampling and the training variance of one member), while the member
mean's error variance is V_s + (V_s + V_t)/K: Rubin's (1 + 1/K) B overstates it by
V_t, which on the NFW mock is most of B (docs/calibration). When the K members
come as J resamples × L seeds (``fit_psd(seeds_per_resample=L)``), the two parts
separate as in a nested one-way ANOVA: with group means p̄_j, their covariance
S = Σ_j (p̄_j − m̄)(p̄_j − m̄)ᵀ/(J − 1) estimates V_s + V_t/L, and the pooled
within-group covariance M = Σ_jl (m_jl − p̄_j)(m_jl − p̄_j)ᵀ/(J(L − 1)) estimates
V_t. The member mean's error variance is then

    (1 + 1/J) V_s + V_t/(JL),   estimated by   M/(JL) + (1 + 1/J) [S − M/L]₊,

[·]₊ clipping negative eigenvalues to zero (where it does not bind this is
(1 + 1/J) S − M/L; where it does, the training part M/(JL) alone), and
T = W̄ + that. The draws take each part from its own posterior given its estimate,
as the plain rule does for B: per draw, M* = M·J(L − 1)/χ²_{J(L−1)} and
S* = S·(J − 1)/χ²_{J−1} (one χ² per draw and part keeps the parameters' joint
shape), and g ~ N(0, M*/(JL) + (1 + 1/J)[S* − M*/L]₊). Until a second change on
2026-12-07 the between part was one Gaussian of the point estimate times a t of
Satterthwaite's ν for the sum: where S came out small by chance (1 degree of freedom
at J = 2) the clip removed the sampling part and ν rose, lighter tails just where the
variance was underestimated. Simulated 95 % coverage at 2 × 2, training shares
0.1 / 0.25 / 0.46: 0.884 / 0.894 / 0.926 → 0.964 / 0.976 / 0.987 (``python
benchmarks/rubin_design.py --shares``; at 4 × 2: 0.932 / 0.909 / 0.901 →
0.948 / 0.947 / 0.957). The price is width where the old rule fell short: at 2 × 2
and share 0.25 the 95 % half-width goes from 5.3 to 9.0 times the true error's sd.
At J = 2 the intervals were wide already (8.5 times at share 0): the sampling part
rests on two resample means, one degree of freedom; use J ≥ 4 (2.8–4.4 times). At the
NFW mock's shares 0.94 / 0.82 / 0.46, 2 × 2 members now cover like 4 members of one
seed each (plain Rubin) at 68 % (0.901 / 0.858 / 0.767 against 0.902 / 0.866 / 0.771)
with wider 95 % intervals (half-widths 13.4 / 11.7 / 9.5 against 5.4 / 4.7 / 3.5
times the true sd): in simulation the pairs no longer buy narrower honest intervals.
``info["dof"]`` is then J − 1, the heaviest tail among the parts drawn (J(L − 1)
only where the resample means agree exactly, S = 0: S* enters the draws wherever S > 0,
also where the point estimate [S − M/L]₊ clips to zero).
``benchmarks/rubin_design.py`` simulates the coverage of both designs.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import biject_to

__all__ = ["combine_members"]


def _inside(draws, support) -> np.ndarray:
    """Draws moved off the support's boundary by a relative 1e-12 of its width (float64).

    NUTS samples in unconstrained space, so a draw is inside the support; but a
    posterior piled against a bound (a parameter the data cannot limit) gives draws
    that round onto it in float32 (e.g. sigmoid(20) = 1), where the inverse map is
    infinite.
    """
    x = np.asarray(draws, np.float64)
    lo = np.asarray(getattr(support, "lower_bound", -np.inf), np.float64)
    hi = np.asarray(getattr(support, "upper_bound", np.inf), np.float64)
    width = np.where(np.isfinite(hi - lo), hi - lo, np.maximum(np.abs(np.where(np.isfinite(lo), lo, hi)), 1.0))
    eps = 1e-12 * width
    if np.isfinite(lo):
        x = np.maximum(x, lo + eps)
    if np.isfinite(hi):
        x = np.minimum(x, hi - eps)
    return x


def _groups(groups: Any, k: int) -> np.ndarray | None:
    """Validated resample groups as (J, L) member indices, or None for one member per resample."""
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.shape != (k,) or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"groups must give one integer resample label per member ({k}); got {groups!r}")
    labels, counts = np.unique(g, return_counts=True)
    if np.all(counts == 1):
        return None
    if len(set(counts.tolist())) != 1 or len(labels) < 2:
        raise ValueError(
            f"groups {g.tolist()} must be balanced (every resample with the same number of members) with at "
            "least 2 resamples; fit the flows with fit_psd(ensemble=J·L, seeds_per_resample=L)"
        )
    return np.stack([np.flatnonzero(g == lab) for lab in labels])


#: draws of the between-member part computed together with resample groups ((N, P, P) matrices each)
COMBINE_BLOCK = 4096


def _clip_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric matrices (..., P, P) with their negative eigenvalues set to zero."""
    lam, vec = np.linalg.eigh(a)
    return (vec * np.clip(lam, 0.0, None)[..., None, :]) @ np.swapaxes(vec, -1, -2)


def _between(m: np.ndarray, grid: np.ndarray | None):
    """Covariance of the member mean from member values m (K, P): ((1 + 1/K)B, or M/(JL) + (1 + 1/J)[S − M/L]₊
    with resample groups), and for groups also (M, [S − M/L]₊, S); see the module docstring."""
    k, p = m.shape
    dev = m - m.mean(axis=0)
    if grid is None:
        return (1 + 1 / k) * ((dev.T @ dev) / (k - 1)), None, None, None  # combine_members' order of operations
    nj, nl = grid.shape
    gm = m[grid].mean(axis=1)  # (J, P) resample means
    gdev = gm - m.mean(axis=0)
    s_mat = gdev.T @ gdev / (nj - 1)  # estimates V_s + V_t/L
    wdev = (m[grid] - gm[:, None, :]).reshape(-1, p)
    m_mat = wdev.T @ wdev / (nj * (nl - 1))  # estimates V_t
    v_s = _clip_psd(s_mat - m_mat / nl)  # [S − M/L]₊
    return m_mat / (nj * nl) + (1 + 1 / nj) * v_s, m_mat, v_s, s_mat


def ensemble_mean_covariance(values: Any, groups: Any = None) -> np.ndarray:
    """Covariance of an ensemble's mean about the truth, from its K members' values: the rule of :func:`combine_members`.

    Without resample groups (1 + 1/K)·B, B the members' covariance; with J bootstrap
    resamples × L seeds (``fit_psd(seeds_per_resample=L)``), M/(JL) + (1 + 1/J)·[S − M/L]₊,
    M the pooled within-resample (training) covariance and S that of the resample means.

    Args:
        values: (K,) or (K, P) per-member values of P quantities (any unit).
        groups: optional resample label per member (``PhaseSpaceDensity.info["resample_groups"]``).

    Returns:
        (P, P) covariance in the values' unit squared, or a 0-d variance for (K,) values.

    Raises:
        ValueError: fewer than 2 members, or unbalanced groups.
    """
    v = np.asarray(values, dtype=float)
    m = v.reshape(v.shape[0], -1) if v.ndim else v.reshape(1, 1)
    if m.shape[0] < 2:
        raise ValueError(f"an ensemble's spread needs at least 2 members, got {m.shape[0]}")
    cov = _between(m, _groups(groups, m.shape[0]))[0]
    return cov[0, 0] if v.ndim == 1 else cov


def combine_members(
    member_samples: list[Mapping[str, np.ndarray]],
    priors: Mapping[str, Any],
    seed: int = 0,
    groups: Any = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Combine per-member posteriors by Rubin's rules in unconstrained coordinates.

    Args:
        member_samples: one dict per member, site name → draws (chains, draws) of
            a scalar parameter (every member with the same shapes).
        priors: site name → its prior distribution (its support fixes the
            unconstrained coordinates, e.g. log for a positive parameter).
        seed: seed of the between-member draws.
        groups: optional resample label per member (``PhaseSpaceDensity.info
            ["resample_groups"]``, from ``fit_psd(seeds_per_resample=L)``): members
            with the same label were trained on the same bootstrap resample with
            different seeds, and the between-member variance is split into its
            resample and training parts (module docstring). None, or all labels
            distinct: plain Rubin's rules.

    Returns:
        ``(samples, info)``: the combined draws, site → (K·chains, draws), and a
        dict with ``n_members``, ``dof`` (ν_b: the degrees of freedom of the
        between-member variance the draws use, K − 1, or with groups the heaviest
        tail among its parts, J − 1 (J(L − 1) where the resample means agree
        exactly); not Rubin's ν of the whole scale; ∞ when the members agree), and per
        site ``between_fraction``
        ((1 + 1/K)B / T on the diagonal: the share of the variance from the
        members' disagreement), ``member_medians`` (K,) in the parameter's unit;
        with resample groups also ``n_resamples`` (J), ``seeds_per_resample`` (L)
        and per site ``training_fraction`` = M/(M + V̂_s), the estimated share of
        one member's variance that is training (seed) variance.
    """
    k = len(member_samples)
    names = list(priors)
    if k < 2:
        raise ValueError(f"combining needs at least 2 member posteriors, got {k}")
    if not names:  # (it said "got shapes set()")
        raise ValueError("combining needs at least one free parameter (priors is empty): a model without free "
                         "parameters has no posterior to combine")
    shapes = {np.shape(s[n]) for s in member_samples for n in names}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every member must give (chains, draws) draws of scalar sites; got shapes {shapes}")
    c, s = next(iter(shapes))
    with jax.enable_x64(True):
        tr = {n: biject_to(priors[n].support) for n in names}
        # u: (K, C, S, P) unconstrained draws
        u = np.stack(
            [
                np.stack([np.asarray(tr[n].inv(jnp.asarray(_inside(ms[n], priors[n].support), jnp.float64)))
                          for n in names], axis=-1)
                for ms in member_samples
            ]
        )
    if not np.isfinite(u).all():
        bad = sorted({names[i] for i in np.flatnonzero(~np.isfinite(u).reshape(-1, len(names)).all(0))})
        raise FloatingPointError(
            f"member draws of {bad} are NaN or outside their priors' support; cannot combine — check the "
            "members' NUTS diagnostics (info['combine'], Posterior.check())"
        )
    p = len(names)
    grid = _groups(groups, k)
    flat = u.reshape(k, c * s, p)
    m = flat.mean(axis=1)  # (K, P)
    mbar = m.mean(axis=0)
    dev = m - mbar
    w = np.mean([np.atleast_2d(np.cov(flat[j], rowvar=False)) for j in range(k)], axis=0)
    within = np.diag(w)
    rng = np.random.default_rng(seed)
    extra: dict[str, Any] = {}
    cov_b, m_mat, v_s, s_mat = _between(m, grid)
    between = np.diag(cov_b)
    if grid is None:
        # the t tails go to the between-member part alone, with that part's own degrees of freedom: Rubin's
        # ν = ν_b (1 + 1/r)² is for a t of the whole scale T, and on the between part alone it made the tails too
        # light (simulated 95 % coverage 0.911 → 0.980 at K = 2, 0.937 → 0.968 at K = 4: module docstring)
        dof = k - 1.0 if np.any(between > 0) else np.inf
        z = rng.standard_normal((k, c, s, k))  # weights of the K deviations, per draw
        g = np.sqrt((1 + 1 / k) / (k - 1)) * np.einsum("kcsj,jp->kcsp", z, dev)
        if np.isfinite(dof):
            g = g * np.sqrt(dof / rng.chisquare(dof, size=(k, c, s, 1)))
    else:
        nj, nl = grid.shape
        md, vs_d = np.diag(m_mat), np.diag(v_s)
        # each part of the variance drawn from its own posterior given its estimate (scaled inverse χ², one χ² per
        # draw and part, which keeps the parameters' joint shape): M with J(L − 1) degrees of freedom, S with J − 1,
        # then M/(JL) + (1 + 1/J)[S − M/L]₊ per draw. One t of Satterthwaite's ν for the sum under-covered where
        # an S small by chance was clipped away (95 % coverage 0.88–0.93 at training shares 0.1–0.46, 2 × 2; module
        # docstring)
        a_t = (nj * (nl - 1) / rng.chisquare(nj * (nl - 1), size=(k, c, s))).reshape(-1)
        a_s = ((nj - 1) / rng.chisquare(nj - 1, size=(k, c, s))).reshape(-1)
        z = rng.standard_normal((k, c, s, p)).reshape(-1, p)
        g = np.empty_like(z)
        for lo in range(0, z.shape[0], COMBINE_BLOCK):  # (N, P, P) matrices a block of draws at a time (memory)
            b = slice(lo, lo + COMBINE_BLOCK)
            t_part = a_t[b, None, None] * m_mat
            cov_draws = t_part / (nj * nl) + (1 + 1 / nj) * _clip_psd(a_s[b, None, None] * s_mat - t_part / nl)
            lam, vec = np.linalg.eigh(cov_draws)
            root = vec * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]
            g[b] = np.einsum("nij,nj->ni", root, z[b])
        g = g.reshape(k, c, s, p)
        # the heaviest tail among the parts drawn: the sampling part's wherever S > 0 (its draws S* enter also where
        # the point estimate [S − M/L]₊ clips to zero), else the training part's
        s_d = np.diag(s_mat)
        dof = (float(nj - 1) if np.any(s_d > 0) else float(nj * (nl - 1)) if np.any(md > 0) else np.inf) \
            if np.any(between > 0) or np.any(s_d > 0) else np.inf
        extra = {
            "n_resamples": int(nj),
            "seeds_per_resample": int(nl),
            "training_fraction": {n: float(md[i] / max(md[i] + vs_d[i], 1e-300)) for i, n in enumerate(names)},
        }
    combined = u - m[:, None, None, :] + mbar + g
    with jax.enable_x64(True):
        out = {
            n: np.asarray(tr[n](jnp.asarray(combined[..., i].reshape(k * c, s), jnp.float64)))
            for i, n in enumerate(names)
        }
    info = {
        "combine": "members (Rubin's rules)" if grid is None else
                   f"members (Rubin's rules, {grid.shape[0]} resamples × {grid.shape[1]} seeds)",
        "n_members": k,
        "dof": float(dof),
        "between_fraction": {n: float(between[i] / (between[i] + within[i])) for i, n in enumerate(names)},
        **extra,
        "member_medians": {
            n: [float(np.median(np.asarray(ms[n]))) for ms in member_samples] for n in names
        },
    }
    return out, info

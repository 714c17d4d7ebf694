"""Likelihood choices compared by the calibration harness (issue 5, DESIGN §6).

All of them are Gaussian likelihoods of accelerations at nodes
(:func:`bayesdyn.inference.acceleration_log_likelihood`); they differ in the
covariance and in how the ensemble members enter:

- ``ensemble`` (default of :func:`bayesdyn.dynamics.estimate_accelerations`): the
  member-mean acceleration with covariance = between-member spread + mean
  within-member least-squares covariance / K;
- ``floor:f``: the same plus a relative noise floor, C += (f·|a|)² I;
- ``inflate:c`` / ``inflate:auto``: the covariance times c ≥ 1, for correlations
  between nodes that the node-by-node likelihood ignores. ``auto`` sets c to the
  larger of two design effects of the members' deviations: from their correlation
  ρ_ij between nodes i and j, 1 + (1/P) Σ_{i≠j} w_i w_j ρ_ij, and along the field
  (a common scaling) (see :func:`design_effect`);
- ``mixture``: one posterior per ensemble member, from that member's own
  accelerations and within-member covariance, with the draws pooled (an
  equal-weight mixture of the per-member posteriors);
- ``members`` (the default of :func:`bayesdyn.infer` for ensembles): the same
  per-member posteriors (on shared velocity draws), combined by Rubin's rules
  (:func:`bayesdyn.inference.combine_members`): within-member width plus
  (1 + 1/K) × the members' disagreement, with Student-t tails.

Options combine with ``+``: ``"floor:0.02+inflate:auto"``, ``"mixture+floor:0.05"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..dynamics import estimate_accelerations
from ..inference import AccelerationData

__all__ = ["Likelihood", "design_effect", "build_data", "scale_accelerations", "gaussian_noise"]


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """How accelerations and their errors enter the posterior.

    Attributes:
        floor: relative noise floor f added to every node's covariance, (f·|a|)² I
            (dimensionless; 0 for none). Needed with exact scores, whose
            least-squares accelerations have no error.
        inflate: factor c ≥ 1 multiplying every covariance, or ``"auto"`` for the
            design effect of the members' correlations between nodes.
        mixture: pool the posteriors of the members instead of one posterior of
            the ensemble mean.
        members: one posterior per member, combined by Rubin's rules
            (:func:`bayesdyn.inference.combine_members`); not with ``mixture``.
    """

    floor: float = 0.0
    inflate: float | str = 1.0
    mixture: bool = False
    members: bool = False

    def __post_init__(self):
        if self.mixture and self.members:
            raise ValueError("choose one of 'mixture' (pooled draws) and 'members' (Rubin's rules)")
        if not (np.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"floor must be ≥ 0 (a fraction of |a|), got {self.floor}")
        if isinstance(self.inflate, str):
            if self.inflate != "auto":
                raise ValueError(f"inflate must be a factor ≥ 1 or 'auto', got {self.inflate!r}")
        elif not (np.isfinite(self.inflate) and self.inflate >= 1):
            raise ValueError(f"inflate must be a factor ≥ 1 or 'auto', got {self.inflate}")

    @classmethod
    def parse(cls, spec: "str | Likelihood") -> "Likelihood":
        """From a string: ``"ensemble"``, ``"floor:0.05"``, ``"inflate:4"``, ``"inflate:auto"``, ``"mixture"``.

        Options join with ``+``.

        ``"floor"`` alone means a floor of 0.05 and ``"inflate"`` alone means ``"inflate:auto"``.
        """
        if isinstance(spec, Likelihood):
            return spec
        kw: dict[str, Any] = {}
        for part in str(spec).replace(" ", "").split("+"):
            name, _, value = part.partition(":")
            if name == "ensemble" and not value:
                continue
            if name == "floor":
                kw["floor"] = float(value) if value else 0.05
            elif name == "inflate":
                kw["inflate"] = "auto" if value in ("", "auto") else float(value)
            elif name == "mixture" and not value:
                kw["mixture"] = True
            elif name == "members" and not value:
                kw["members"] = True
            else:
                raise ValueError(
                    f"unknown likelihood option {part!r} in {spec!r}; use ensemble, floor:F, inflate:C, "
                    "inflate:auto, mixture or members, joined by '+'"
                )
        return cls(**kw)

    @property
    def label(self) -> str:
        """The canonical string (``parse(label)`` gives back this object)."""
        parts = []
        if self.mixture:
            parts.append("mixture")
        if self.members:
            parts.append("members")
        if self.floor:
            parts.append(f"floor:{_exact(self.floor)}")
        if self.inflate != 1.0:
            parts.append(f"inflate:{self.inflate if isinstance(self.inflate, str) else _exact(self.inflate)}")
        return "+".join(parts) or "ensemble"


def _exact(value: float) -> str:
    """``value`` as short as ``:g`` writes it where that reads back exactly, else in full (``repr``): labels name
    runs, so two floors that differ in the 7th digit must not share one."""
    short = format(value, "g")
    return short if float(short) == value else repr(float(value))


def design_effect(data: AccelerationData) -> dict[str, float]:
    """Covariance inflation for errors correlated between nodes, from the ensemble members.

    Two views of the members' deviations from their mean, d_ki = a_ki − ā_i, and the
    larger of their factors:

    1. **Per component.** Scaled per node and component by their spread, they give the
       correlation between nodes i and j, ρ_ij = Σ_k,c u_kic u_kjc / √(Σ u_ki² Σ u_kj²).
       Only the between-member part of the covariance is correlated (the within-member
       part comes from independent velocity draws at each node), so ρ_ij is weighted by
       the fractions w_i = √(tr B_i / tr C_i). For P nodes sharing a correlation ρ̄ a
       common shift is known only as well as from P / (1 + (P − 1) ρ̄) independent
       nodes; here c_comp = 1 + (1/P) Σ_{i≠j} w_i w_j ρ_ij. This sees a common
       translation of the field, but not a common scaling: for a_k = (1 + ε_k) a its
       ρ_ij is (1/3) Σ_c sign(a_ic a_jc), about 0 for nodes around a centre.
    2. **Along the field (its amplitude).** g_ki = ā_iᵀ C_i⁻¹ d_ki is member k's
       deviation in the direction that measures a common scale of the field (the mass
       of a model); the scale's least-squares error has variance Σ_i ā_iᵀ C_i⁻¹ ā_i
       (in its inverse) for independent nodes, and with the members' correlations
       c_amp = 1 + Σ_{i≠j} Cov_k(g_ki, g_kj) / Σ_i ā_iᵀ C_i⁻¹ ā_i. A common scaling
       of every member's field gives c_amp ≈ P.

    c = max(c_comp, c_amp), clipped to [1, P].

    With few members c is mostly noise: the K deviations at each node give ρ_ij
    from K − 1 degrees of freedom, so even for independent nodes (true c = 1) the
    sum's sd is ≈ w²·√(2/(3(K − 1))) whatever P, and the clip at 1 turns that noise
    into an upward bias: a review's simulation gave a mean c_comp of 1.16–1.19 at K = 4
    (w = 1), 1.34 at K = 2, 1.07 at K = 16, for independent nodes (2026-12-07). c_amp's
    own noise adds to the bias through the maximum: for 20 independent nodes (w ≈ 1,
    400 data sets each) the mean c was 1.33, 1.31, 1.31, 1.21 at K = 2, 4, 8, 16, against
    c_comp's 1.33, 1.19, 1.13, 1.09; a shared translation or scaling gave c = 19.5–20.0
    (``python benchmarks/design_effect.py``, 2026-12-07). Read
    ``inflate:auto`` rows of the calibration with that in mind (those of 2026-12-07 and
    before used c_comp alone).

    Args:
        data: :class:`bayesdyn.inference.AccelerationData` with ``members`` (K ≥ 2).

    Returns:
        dict with ``factor`` (c), ``component_factor`` (c_comp), ``amplitude_factor``
        (c_amp), ``mean_correlation`` (mean ρ_ij over pairs), ``correlated_fraction``
        (mean w_i²) and ``n_members``; c = 1 when there are fewer than 2 members. A node
        where every member agrees exactly counts as uncorrelated (ρ = 0).
    """
    if data.members is None or np.shape(data.members)[0] < 2:
        k = 0 if data.members is None else int(np.shape(data.members)[0])
        return {"factor": 1.0, "component_factor": 1.0, "amplitude_factor": 1.0, "mean_correlation": 0.0,
                "correlated_fraction": 0.0, "n_members": k}
    m = np.asarray(data.members, dtype=np.float64)  # (K, P, 3)
    k, p, _ = m.shape
    d = m - m.mean(axis=0)
    between = np.einsum("kpi,kpj->pij", d, d) / (k - 1)
    sd = np.sqrt(np.maximum(np.einsum("pii->pi", between), 1e-300))
    u = (d / sd).transpose(1, 0, 2).reshape(p, -1)  # (P, K·3)
    norm = np.sqrt(np.sum(u**2, axis=1))
    safe = np.where(norm > 0, norm, 1.0)  # all members equal at a node: its row of u is 0, and so its ρ
    rho = (u @ u.T) / np.outer(safe, safe)
    cov = np.asarray(data.cov, dtype=np.float64)
    w = np.sqrt(np.clip(np.trace(between, axis1=1, axis2=2) / np.trace(cov, axis1=1, axis2=2), 0.0, 1.0))
    off = ~np.eye(p, dtype=bool)
    comp = 1.0 + float(np.sum((np.outer(w, w) * rho)[off])) / p
    # along the field: member k's deviation in the direction of a common scale, C⁻¹ ā per node
    direction = np.linalg.solve(cov, np.asarray(data.a, dtype=np.float64)[..., None])[..., 0]  # (P, 3)
    info = float(np.einsum("pi,pi->", np.asarray(data.a, dtype=np.float64), direction))
    g = np.einsum("kpi,pi->kp", d, direction)  # (K, P)
    gram = g.T @ g / (k - 1)
    amp = 1.0 + float(np.sum(gram[off])) / info if info > 0 else 1.0
    return {
        "factor": float(np.clip(max(comp, amp), 1.0, p)),
        "component_factor": float(np.clip(comp, 1.0, p)),
        "amplitude_factor": float(np.clip(amp, 1.0, p)),
        "mean_correlation": float(rho[off].mean()) if p > 1 else 0.0,
        "correlated_fraction": float(np.mean(w**2)),
        "n_members": k,
    }


class _OneMember:
    """A one-member score source: member ``k`` of a PhaseSpaceDensity (its own p(v|x) and scores)."""

    ensemble_member = True  # its posterior is combined with the other members': no one-member warning

    def __init__(self, psd: Any, k: int):
        self.psd, self.k = psd, k

    def sample_velocities(self, x, n, seed):
        return self.psd.sample_velocities(x, n, seed, member=self.k)

    def score_members(self, x, v):
        s_x, s_v = self.psd.score_members(x, v)
        return s_x[self.k : self.k + 1], s_v[self.k : self.k + 1]


def _as_float(data: AccelerationData, scale: float = 1.0) -> AccelerationData:
    """The same data in the current default float precision, with the covariance times ``scale``."""
    dt = jnp.result_type(float)
    members = None if data.members is None else np.asarray(data.members)
    return AccelerationData.create(
        jnp.asarray(np.asarray(data.x), dt),
        jnp.asarray(np.asarray(data.a), dt),
        jnp.asarray(np.asarray(data.cov, dtype=np.float64) * scale, dt),
        sun=np.asarray(data.sun, dtype=np.float64),
        members=None if members is None else jnp.asarray(members, dt),
    )


def build_data(
    source: Any,
    x: Any,
    likelihood: Likelihood,
    *,
    n_velocities: int,
    seed: int,
    sun: Any,
) -> tuple[list[AccelerationData], dict[str, Any]]:
    """Accelerations at nodes for a likelihood choice.

    Args:
        source: a PhaseSpaceDensity or another :class:`bayesdyn.dynamics.ScoreSource`.
        x: node positions (P, 3) [kpc].
        likelihood: the :class:`Likelihood`.
        n_velocities: velocities drawn per node.
        seed: seed of the velocity draws.
        sun: the Sun's position (3,) [kpc] (for the model's derived quantities).

    Returns:
        ``(datasets, info)``: one :class:`AccelerationData` (or one per member for
        ``mixture`` and ``members``), and a dict with the inflation ``factor`` applied and the
        :func:`design_effect` diagnostics of the ensemble.
    """
    ens = estimate_accelerations(source, x, n_velocities=n_velocities, seed=seed, floor=likelihood.floor, sun=sun)
    de = design_effect(ens)
    factor = de["factor"] if likelihood.inflate == "auto" else float(likelihood.inflate)
    info = {"inflate_factor": factor, **{f"design_effect.{k}": v for k, v in de.items()}}
    k = 1 if ens.members is None else int(np.shape(ens.members)[0])
    if likelihood.members and k > 1:
        return [_as_float(ens.member(j), factor) for j in range(k)], info
    if not likelihood.mixture or k == 1:
        return [_as_float(ens, factor)], info
    out = []
    for j in range(k):
        one = estimate_accelerations(
            _OneMember(source, j), x, n_velocities=n_velocities, seed=seed + 7919 * (j + 1),
            floor=likelihood.floor, sun=sun,
        )
        out.append(_as_float(one, factor))
    return out, info


def scale_accelerations(factor: float):
    """A ``perturb`` for :func:`bayesdyn.validate.coverage`: every acceleration times ``factor``.

    A deliberately biased input (the covariance is kept), which a working
    harness must flag by low coverage and a large |bias|/sd.
    """

    def perturb(data: AccelerationData, seed: int) -> AccelerationData:
        return data._replace(a=data.a * factor)

    perturb.__name__ = f"scale_accelerations({factor:g})"
    return perturb


def gaussian_noise():
    """A ``perturb`` for :func:`bayesdyn.validate.coverage`: a ~ N(a, C) at every node, drawn with the given seed.

    With exact scores (exact accelerations) this makes the Gaussian likelihood
    exactly right, so the posterior must be calibrated: the harness's positive control.
    """

    def perturb(data: AccelerationData, seed: int) -> AccelerationData:
        rng = np.random.default_rng(seed)
        z = rng.standard_normal(np.shape(data.a))
        tril = np.asarray(data.scale_tril)
        a = np.asarray(data.a) + np.einsum("pij,pj->pi", tril, z)
        return data._replace(a=jnp.asarray(a, dtype=jnp.asarray(data.a).dtype))

    perturb.__name__ = "gaussian_noise"
    return perturb

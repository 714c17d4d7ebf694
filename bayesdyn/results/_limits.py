"""Dark-disk limits: the 95 % upper limit on Σ_DD for each scale height h_DD."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["dark_disk_limits", "plot_dark_disk_limits"]


def dark_disk_limits(
    model: Any,
    data: Any,
    scale_heights: Sequence[float],
    *,
    component: str = "dark_disk",
    q: float = 0.95,
    seed: int = 0,
    **infer_kwargs: Any,
) -> pd.DataFrame:
    """Upper limits on the dark-disk surface density as a function of its scale height.

    For each h_DD the dark disk's ``scale_height`` is fixed to h and the model's
    posterior is sampled again; the limit is the ``q`` quantile of the marginal
    posterior of ``<component>.surface_density`` (a one-sided Bayesian upper limit,
    prior-dependent: state the prior with the limit). A prior that also reaches below
    Σ = 0 (a Normal) is read as its physical part Σ ≥ 0: the limit, the median and the
    prior's own limit are those of the draws and the prior with Σ ≥ 0 (the posterior under
    the prior truncated at 0), so that mass at negative Σ does not tighten the limit. A run
    with a draw that is not finite gives no limit (NaN) and says so in ``problems``.

    Args:
        model: a :class:`bayesdyn.PotentialModel` with a dark-disk component whose
            ``surface_density`` is free.
        data: what :func:`bayesdyn.infer` accepts.
        scale_heights: h_DD values [kpc] (astropy lengths accepted).
        component: name of the dark-disk component in the model.
        q: credibility of the limit (0.95).
        seed: random seed of every run.
        **infer_kwargs: passed to :func:`bayesdyn.infer` (num_chains, num_samples, ...).

    Returns:
        DataFrame indexed by ``h_DD_kpc`` with columns ``Sigma_DD_upper_Msun_pc2``
        (the limit in M☉/pc²), ``Sigma_DD_median_Msun_pc2``, ``rho_DD_midplane_upper_Msun_pc3``
        (Σ/(4h) at the limit), ``prior_upper_Msun_pc2`` (the prior's own ``q`` quantile:
        the limit the prior alone would give), ``limit_over_prior`` (their ratio: near 1
        the data do not limit Σ_DD at that h, whatever the number), ``prior_mass_below_limit``
        (the prior's mass on 0 ≤ Σ ≤ limit over its mass on Σ ≥ 0, i.e. its CDF at the limit
        for a prior on Σ ≥ 0: the credibility the prior alone gives the limit; near q the data
        do not limit Σ_DD, and a value above q/2 means the prior sets much of the limit,
        LogUniform priors included; for a Uniform(0, b) prior it is q × ``limit_over_prior``),
        ``prior_lower_Msun_pc2`` (the lower end of the prior's support, −inf if none: a limit
        with ``prior_mass_below_limit`` < 1 − q above a lower end > 0 is set by that end),
        ``num_divergences``,
        ``max_r_hat`` and ``problems`` (that run's convergence problems as
        :meth:`Posterior.check <bayesdyn.results.Posterior.check>` words them, joined by
        " | "; empty when clean).
    """
    from .. import units as _u
    from ..inference import PotentialModel, infer

    if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not 0 < q < 1:
        raise ValueError(f"q must be a credibility in (0, 1), e.g. 0.95, got {q!r}")  # (95 failed after a whole run)
    if component not in model.components:
        raise KeyError(f"the model has no component {component!r}; components are {list(model.components)}")
    name = f"{component}.surface_density"
    if name not in model.free_parameters():
        raise ValueError(f"{name} must be free (a NumPyro prior) to set a limit on it")
    prior = model.free_parameters()[name]
    prior_ul = _physical_prior_quantile(prior, q) * 1e-6  # M☉/kpc² → M☉/pc²
    prior_lower = _prior_lower(prior) * 1e-6
    rows = []
    for h in scale_heights:
        h = float(_u.strip(h, "length", "scale_heights"))
        if not h > 0:
            raise ValueError(f"scale heights must be positive lengths, got {h} kpc")
        comps = dict(model.components)
        comps[component] = comps[component].bind({"scale_height": h})
        sub = PotentialModel(dark=model.dark, **comps)
        post = infer(sub, data, seed=seed, **infer_kwargs)
        s = post.samples[name].reshape(-1) * 1e-6  # M☉/kpc² → M☉/pc²
        problems = post.check(warn=False)
        bad = int(np.sum(~np.isfinite(s)))
        if bad:  # no limit from a broken run (a quantile of the finite draws would hide it)
            problems.append(f"{bad} of {s.size} draws of {name} are not finite: no limit")
            s = np.full(1, np.nan)
        # on the physical Σ ≥ 0: a prior that also reaches below 0 (Normal) is the same as its truncation at 0
        # times the mass it puts there, so the posterior under the physical prior is this one's Σ ≥ 0 part
        phys = s[s >= 0] if bad == 0 else s
        if bad == 0 and phys.size < 0.5 * s.size:  # a limit from few draws, or none, is said to be so
            problems.append(f"only {phys.size} of {s.size} draws of {name} have Σ ≥ 0 (the posterior lies mostly "
                            "below 0)" + ("" if phys.size else ": no limit"))
        ul = float(np.quantile(phys, q)) if phys.size else float("nan")
        diag = post.diagnostics()
        member_rhat = (post.info.get("combine") or {}).get("member_max_r_hat") or []  # a bad member hides in the mix
        rows.append(
            {
                "h_DD_kpc": h,
                "Sigma_DD_upper_Msun_pc2": ul,
                "Sigma_DD_median_Msun_pc2": float(np.median(phys)) if phys.size else float("nan"),
                "rho_DD_midplane_upper_Msun_pc3": ul / (4 * h * 1e3),
                "prior_upper_Msun_pc2": prior_ul,
                "limit_over_prior": ul / prior_ul if prior_ul > 0 else float("nan"),  # NaN > 0 is False
                "prior_mass_below_limit": _prior_mass_below(prior, ul * 1e6),
                "prior_lower_Msun_pc2": prior_lower,
                "num_divergences": post.info["num_divergences"],
                "max_r_hat": _max_finite([*diag["r_hat"].values, *member_rhat]),  # NaN: one chain, no r̂
                "problems": " | ".join(problems),
            }
        )
    df = pd.DataFrame(rows).set_index("h_DD_kpc")
    df.attrs["credibility"] = q
    return df


def _prior_draws(prior: Any) -> np.ndarray | None:
    """400 000 draws of a scalar prior [its units] (fixed seed), for what NumPyro cannot give in closed form (the
    icdf of Gamma, Beta, StudentT needs TFP); None for a prior that cannot be sampled (ImproperUniform)."""
    import jax

    try:
        return np.asarray(prior.sample(jax.random.PRNGKey(0), (400_000,)), np.float64)  # scalar: parameter() says so
    except NotImplementedError:
        return None


def _prior_quantile(prior: Any, q: float) -> float:
    """The q quantile of a prior [its units]: by its inverse CDF where NumPyro has one, else from ``_prior_draws``
    (0.2–0.5 % of the quantile for q = 0.95: Gamma(2) +0.34 %, Gamma(0.5) +0.52 %, StudentT(3) −0.17 %, a review's
    measurement); NaN for a prior with neither (ImproperUniform)."""
    try:
        return float(prior.icdf(q))
    except (NotImplementedError, AttributeError, ImportError):  # Gamma, Beta, StudentT: icdf needs TFP
        draws = _prior_draws(prior)
        return float("nan") if draws is None else float(np.quantile(draws, q))


def _physical_prior_quantile(prior: Any, q: float) -> float:
    """The q quantile of the prior's part on Σ ≥ 0 [its units]: its own quantile for a prior on Σ ≥ 0, else the
    quantile F⁻¹(F(0) + q (1 − F(0))) of its truncation at 0."""
    if not _prior_lower(prior) < 0:
        return _prior_quantile(prior, q)
    f0 = _prior_cdf(prior, 0.0)
    if not 0 <= f0 < 1:
        return float("nan")
    try:
        return float(prior.icdf(f0 + q * (1.0 - f0)))
    except (NotImplementedError, AttributeError, ImportError):
        draws = _prior_draws(prior)
        return float("nan") if draws is None else float(np.quantile(draws[draws >= 0], q))


def _prior_lower(prior: Any) -> float:
    """The lower end of the prior's support [its units]; −inf where the support has none (Normal, StudentT)."""
    try:
        return float(prior.support.lower_bound)
    except (AttributeError, TypeError, ValueError):
        return float("-inf")


def _prior_mass_below(prior: Any, x: float) -> float:
    """The prior's mass on 0 ≤ Σ ≤ x over its mass on Σ ≥ 0 [x in the prior's units]: its CDF at x for a prior
    on Σ ≥ 0; a prior that also reaches below 0 (Normal, StudentT, Uniform(−b, b)) is judged on its physical part,
    so that its mass at negative Σ does not read as support for the limit. NaN where the CDF is unknown."""
    f0 = _prior_cdf(prior, 0.0)
    if not f0 > 0:  # 0, or NaN (no CDF: then the next line is NaN too)
        return _prior_cdf(prior, x)
    return float(np.clip((_prior_cdf(prior, x) - f0) / (1.0 - f0), 0.0, 1.0)) if f0 < 1 else float("nan")


def _prior_cdf(prior: Any, x: float) -> float:
    """The prior's mass below x [x in the prior's units]: by its CDF where NumPyro has one (clipped to [0, 1]),
    else the fraction of ``_prior_draws`` below x; NaN for a prior with neither (ImproperUniform)."""
    import jax.numpy as jnp

    try:
        return float(np.clip(prior.cdf(jnp.asarray(x, jnp.result_type(float))), 0.0, 1.0))
    except (NotImplementedError, AttributeError, ImportError):
        draws = _prior_draws(prior)
        return float("nan") if draws is None else float(np.mean(draws <= x))


def plot_dark_disk_limits(table: pd.DataFrame, path: str | Path | None = None, ax=None):
    """Exclusion plot: the region above the Σ_DD upper limit versus h_DD is excluded.

    Where the table has the prior's own limit (``prior_upper_Msun_pc2``) and it lies within
    the plotted range, it is drawn as a dashed line: limits near it are the prior's.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
    else:
        fig = ax.figure
    table = table.sort_index()  # (scale heights given out of order drew a zig-zag and wrong shading)
    h = table.index.values * 1e3
    ul = table["Sigma_DD_upper_Msun_pc2"].values
    finite = ul[np.isfinite(ul)]  # a failed run's NaN limit is a gap in the line, not an axis limit
    top = max(finite.max() * 2, 1.0) if finite.size else 1.0
    ax.fill_between(h, ul, top, color="tab:red", alpha=0.25, label=f"excluded ({table.attrs.get('credibility', 0.95):.0%})")
    ax.plot(h, ul, "o-", color="tab:red")
    prior_ul = float(table["prior_upper_Msun_pc2"].iloc[0]) if "prior_upper_Msun_pc2" in table else np.inf
    if prior_ul <= top:  # within the plot: a limit near this line is the prior's, not the data's
        ax.axhline(prior_ul, color="0.4", ls="--", lw=1,
                   label=f"the prior's own {table.attrs.get('credibility', 0.95):.0%} limit")
    ax.set_xlabel(r"$h_\mathrm{DD}$ [pc]")
    ax.set_ylabel(r"$\Sigma_\mathrm{DD}$ upper limit [M$_\odot$ pc$^{-2}$]")
    ax.set_ylim(0, top)
    ax.legend(frameon=False)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def _max_finite(values) -> float:
    """The largest value that is not NaN (r̂ of a single chain), NaN when there is none; inf (a member whose chains
    never moved) is kept, so that such a run counts as unconverged."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.max()) if v.size else float("nan")

"""How much did the data say? Posterior widths against prior widths, per quantity."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ..results._posterior import _unit_of

__all__ = ["prior_samples", "prior_vs_posterior", "prior_vs_posterior_markdown", "PRIOR_DOMINATED"]

#: a posterior whose 68 % interval is wider than this fraction of the prior's is called prior-dominated
PRIOR_DOMINATED = 0.5
#: ... and narrower than this fraction: constrained by the data
CONSTRAINED = 0.1
#: the verdict's opening where the posterior's draws of a quantity are not all finite: no width, no ratio
UNDEFINED = "undefined"
#: prior draws behind the prior's widths: the 16th/84th percentiles of 4000 were ~1 % of the width off (a Uniform's
#: [4.76e6, 2.54e7] for [4.80e6, 2.52e7]), enough to move a ratio of 0.537 to 0.530 by the 0.5 line; 40 000 take ~1 s
PRIOR_DRAWS = 40_000


def prior_samples(model, sun, n: int = PRIOR_DRAWS, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` draws of every free parameter from its prior, and the ``derived.*`` quantities they imply.

    Args:
        model: a :class:`bayesdyn.PotentialModel`.
        sun: the Sun's position (3,) [kpc], where the derived quantities are evaluated.
        n: number of prior draws.
        seed: random seed.

    Returns:
        Site name → (n,) array, in the posterior's units.
    """
    free = model.free_parameters()
    keys = jax.random.split(jax.random.PRNGKey(seed), max(len(free), 1))
    out = {name: np.asarray(prior.sample(k, (n,)), np.float64) for k, (name, prior) in zip(keys, free.items())}
    with jax.enable_x64(True):
        derived = model.derived({k: np.asarray(v) for k, v in out.items()}, np.asarray(sun, np.float64))
    out.update({k: np.asarray(v, np.float64).reshape(-1) for k, v in derived.items()})
    return out


def _width(x: np.ndarray, log: bool) -> tuple[float, float, float]:
    y = np.log10(x) if log else x
    lo, hi = np.percentile(y, [16, 84])
    return float(lo), float(hi), float(hi - lo)


def prior_vs_posterior(post, model, sun, n: int = PRIOR_DRAWS, seed: int = 0) -> pd.DataFrame:
    """Posterior 68 % width / prior 68 % width for each free parameter and derived quantity.

    Widths are compared in log10 for positive quantities whose prior spans more than
    two decades (95 % interval), linearly otherwise. A ratio near 1 means the data
    changed little: the posterior is the prior (:data:`PRIOR_DOMINATED` = 0.5 is the
    line drawn here); a small ratio means the data constrain the quantity. Derived
    quantities of a model without free parameters in them (fixed components) have
    zero prior width and are left out.

    Args:
        post: a :class:`bayesdyn.results.Posterior` of ``model``.
        model: the :class:`bayesdyn.PotentialModel` (its priors).
        sun: the Sun's position (3,) [kpc].
        n: prior draws.
        seed: random seed of the prior draws.

    Returns:
        One row per quantity: ``scale`` ("log10" or "linear"), ``unit`` (the posterior table's, as "log10(unit)"
        on the log10 scale), the prior's and the
        posterior's 16th/84th percentiles (on that scale), ``width_ratio`` and ``verdict``: "prior-dominated",
        "partly constrained", "constrained by the data", or, where some posterior draws are not finite (the
        percentiles and the ratio are then NaN), "undefined: k of N posterior draws are not finite".
    """
    prior = prior_samples(model, sun, n=n, seed=seed)
    rows = {}
    for name, p in prior.items():
        if name not in post.samples:
            continue
        q = post.samples[name].reshape(-1).astype(np.float64)
        p = p[np.isfinite(p)]
        lo95, hi95 = np.percentile(p, [2.5, 97.5])
        # the scale from the finite posterior draws (one NaN draw had also switched a log10 row to linear)
        log = bool(np.all(p > 0) and np.all(q[np.isfinite(q)] > 0) and hi95 > 100 * lo95)
        plo, phi, pw = _width(p, log)
        if pw <= 0:
            continue
        with np.errstate(invalid="ignore"):  # (a non-finite draw: the row says so, below)
            qlo, qhi, qw = _width(q, log)
        ratio = qw / pw
        bad = int(np.sum(~np.isfinite(q)))
        if bad or not np.isfinite(ratio):
            # a NaN ratio fails every comparison: it had read "partly constrained". The draws are not left out:
            # which part of the posterior they hide is not known (check() names the site)
            verdict = f"{UNDEFINED}: {bad} of {q.size} posterior draws are not finite"
        else:
            verdict = (
                "prior-dominated" if ratio > PRIOR_DOMINATED else "constrained by the data" if ratio < CONSTRAINED
                else "partly constrained"
            )
        unit = _unit_of(name)
        rows[name] = {
            "scale": "log10" if log else "linear",
            "unit": (f"log10({unit})" if unit else "log10") if log else unit,
            "prior_q16": plo, "prior_q84": phi, "posterior_q16": qlo, "posterior_q84": qhi,
            "width_ratio": ratio, "verdict": verdict,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def prior_vs_posterior_markdown(table: pd.DataFrame, n_stars: int | None = None, extent_kpc: float | None = None) -> str:
    """The comparison as Markdown, with a one-paragraph verdict a reader cannot miss."""
    free = [n for n in table.index if not n.startswith("derived.")]
    dominated = [n for n in free if table.loc[n, "verdict"] == "prior-dominated"]
    undefined = [n for n in table.index if str(table.loc[n, "verdict"]).startswith(UNDEFINED)]
    lines = []
    where = ""
    if n_stars is not None:
        where = f" from {n_stars} stars" + (f" within {extent_kpc * 1e3:.0f} pc of the Sun" if extent_kpc else "")
    if free and len(dominated) == len(free):
        lines.append(
            f"**The posterior is prior-dominated**{where}: every free parameter's 68 % interval is more than "
            f"{PRIOR_DOMINATED:.0%} as wide as its prior's. These numbers restate the priors; they are not a "
            "measurement."
        )
    elif dominated:
        lines.append(
            f"**Partly prior-dominated**{where}: {len(dominated)} of {len(free)} free parameters "
            f"({', '.join(f'`{n}`' for n in dominated)}) have 68 % intervals more than {PRIOR_DOMINATED:.0%} as wide "
            "as their priors: for those, the numbers restate the priors."
        )
    elif not [n for n in free if n in undefined]:
        lines.append(f"Every free parameter's posterior is narrower than {PRIOR_DOMINATED:.0%} of its prior{where}.")
    else:
        lines.append(f"No free parameter's posterior is more than {PRIOR_DOMINATED:.0%} as wide as its prior{where} "
                     "where its width is defined.")
    if undefined:  # on the opening line, which the report's summary quotes: no verdict may hide them
        lines[-1] += (f" **Undefined for {', '.join(f'`{n}`' for n in undefined)}**: some of their posterior draws "
                      "are not finite, so their widths cannot be compared with the priors' (see the posterior's "
                      "convergence problems).")
    lines += [
        "",
        "Width = 84th − 16th percentile, in log10 for positive quantities whose prior spans more than two "
        "decades, linear otherwise; ratio = posterior width / prior width (1 = the data said nothing).",
        "",
        "| quantity | scale | unit | prior 68 % | posterior 68 % | width ratio | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in table.iterrows():
        lines.append(
            f"| `{n}` | {r['scale']} | {r.get('unit', '')} | [{r['prior_q16']:.4g}, {r['prior_q84']:.4g}] | "
            f"[{r['posterior_q16']:.4g}, {r['posterior_q84']:.4g}] | {r['width_ratio']:.2f} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"

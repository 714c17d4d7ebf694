"""Posterior: constraint tables, local ρ_DM, upper limits, corner plots, NetCDF files."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import units as _u

__all__ = ["Posterior", "ConvergenceWarning"]

#: physical unit of each known site, for tables
_UNITS = {
    "derived.rho_dm_sun": "Msun/kpc3",
    "derived.rho_total_sun": "Msun/kpc3",
    "derived.v_circ_R0": "km/s",
    "derived.Kz_1p1kpc": "(km/s)2/kpc",
    "derived.Sigma_1p1kpc": "Msun/pc2",
}
_PARAM_UNITS = {
    "density": "Msun/kpc3",
    "scale_density": "Msun/kpc3",
    "reference_density": "Msun/kpc3",
    "central_density": "Msun/kpc3",
    "cutoff_radius": "kpc",
    "scale_length": "kpc",
    "alpha": "",
    "beta": "",
    "gamma": "",
    "scale_radius": "kpc",
    "mass": "Msun",
    "a": "kpc",
    "b": "kpc",
    "surface_density": "Msun/kpc2",
    "scale_height": "kpc",
    "core_radius": "kpc",
    "n": "",  # CoreNFW's core sharpness
    "p": "",  # Flattened's axis ratios
    "q": "",
    "tilt": "deg",  # Tilted's orientation
    "azimuth": "deg",
    "roll": "deg",
}

#: minimum bulk and tail effective sample sizes per chain-summed posterior
MIN_ESS = 400
MAX_RHAT = 1.01
#: at or below this many degrees of freedom of the members' combination, a t's variance (ν ≤ 2) or the variance
#: of its estimate (ν ≤ 4) is infinite: to_markdown says so
HEAVY_TAIL_DOF = 4.0


class ConvergenceWarning(UserWarning):
    """NUTS did not converge: r̂ > 1.01, divergent transitions, or a low effective sample size."""


def _unit_of(name: str) -> str:
    if name in _UNITS:
        return _UNITS[name]
    return _PARAM_UNITS.get(name.split(".")[-1], "")


def _known_unit(name: str) -> str | None:
    """The site's unit where the tables know it ("" for a dimensionless parameter), None where they do not."""
    if name in _UNITS:
        return _UNITS[name]
    return _PARAM_UNITS.get(name.split(".")[-1])


def stuck_draws(x) -> bool:
    """Whether draws (chains, draws, ...) are not all finite or have an element that never moves: chains stuck at
    one point (seen at a prior's edge) have no r̂ (NaN) but have not converged."""
    x = np.asarray(x)
    return not np.isfinite(x).all() or bool((np.ptp(x.reshape(-1, *x.shape[2:]), axis=0) == 0).any())


def _check_draw_shapes(samples: Mapping[str, np.ndarray]) -> None:
    """Refuse sites that are not (chains, draws, ...) arrays of one run.

    A site given flat, (draws,) as NumPyro's ``mcmc.get_samples()`` returns it, was left out of every table (only
    (chains, draws) sites are scalar sites) and out of :meth:`Posterior.check`, which then looked at nothing while
    ``local_dm_line`` still printed a result; a site whose (chains, draws) differed from the others' (one chain
    beside four) had a NaN r̂ that no check reported, the number of chains being read from the first site only.

    Raises:
        ValueError: a site with fewer than two axes, or whose leading (chains, draws) differ from the other sites'.
    """
    fix = ("Fix: give every site as a (chains, draws, ...) array of the same run — with NumPyro, "
           "mcmc.get_samples(group_by_chain=True); for the draws of one chain, add a chain axis with x[None]")
    flat = [f"{name!r} have shape {x.shape}" for name, x in samples.items() if x.ndim < 2]
    if flat:
        raise ValueError(f"the draws of {'; of '.join(flat)}: not (chains, draws, ...), and a site without a chain "
                         f"axis would be left out of the tables and of the convergence checks. {fix}")
    leading: dict[tuple[int, int], list[str]] = {}
    for name, x in samples.items():
        leading.setdefault(tuple(int(n) for n in x.shape[:2]), []).append(name)
    if len(leading) > 1:
        # the shape most sites share (the first site's among equals) is the run's; the others are named
        common = max(leading, key=lambda k: len(leading[k]))
        odd = "; ".join(f"{names} have (chains, draws) = {shape}" for shape, names in leading.items()
                        if shape != common)
        raise ValueError(f"the sites' draws come from different runs: {odd}, but {leading[common]} have "
                         f"(chains, draws) = {common}; r̂ and the effective sample sizes compare chains of one run "
                         f"(a site with one chain beside four-chain sites had a NaN r̂ that no check reported). {fix}")


class Posterior:
    """Draws from a potential model's posterior, with the usual reductions.

    Build it with :func:`bayesdyn.infer` or :meth:`Posterior.load`. ``samples`` maps
    each site to an array (chains, draws, ...), every site with the same chains and draws (a site with fewer than
    two axes, or other chains or draws than the others', is refused: ValueError); scalars sites, (chains, draws),
    are the ones tabulated.
    """

    def __init__(self, samples: Mapping[str, np.ndarray], info: Mapping[str, Any] | None = None):
        self.samples = {k: np.asarray(v) for k, v in samples.items()}
        _check_draw_shapes(self.samples)
        self.info = dict(info or {})
        div = self.info.get("diverging")
        self.info["num_divergences"] = int(np.sum(div)) if div is not None else int(self.info.get("num_divergences", 0))
        self._warned = False

    @classmethod
    def from_samples(cls, samples, info, model=None) -> "Posterior":
        info = dict(info or {})
        if model is not None and hasattr(model, "free_parameters"):
            info.setdefault("free_parameters", list(model.free_parameters()))  # the sites NUTS moved (check)
        post = cls(samples, info)
        post.check(warn=True)
        return post

    # ------------------------------------------------------------- diagnostics
    @property
    def scalar_names(self) -> list[str]:
        """Names of scalar sites (parameters first, then derived)."""
        names = [k for k, v in self.samples.items() if v.ndim == 2]
        return sorted(names, key=lambda n: (n.startswith("derived."), n))

    def _az(self):
        import arviz as az

        return az

    def diagnostics(self) -> pd.DataFrame:
        """r̂ (rank-normalised split), bulk and tail ESS of each scalar site.

        For a posterior combined over flow members (``info["combine"]["member_diagnostics"]``), from the members'
        own runs: r̂ is the largest member's (inf where a site moves in some members and never in others), the ESS
        the members' sum. The combined draws mix re-centred members of different widths, whose r̂ flags the
        difference in width (1.016 for members of sd 0.8–1.25, each at 1.001), and add an independent
        between-member draw to each draw, which inflates their ESS.
        """
        az = self._az()
        members = (self.info.get("combine") or {}).get("member_diagnostics") or {}
        rows = {}
        for n in self.scalar_names:
            x = self.samples[n]
            if n in members:
                r = np.asarray(members[n]["r_hat"], float)
                # a member's site moves where its ESS is finite (member_diagnostics: NaN where the draws never move,
                # r̂ inf where they are not finite); its r̂ is NaN also for one chain, which read as "never moves"
                # and blanked the ESS, so that one-chain members were never judged at all
                moves = np.isfinite(np.asarray(members[n]["ess_bulk"], float))
                if np.isinf(r).any() or (moves.any() and not moves.all()):
                    r_hat = np.inf
                elif not moves.any() or np.isnan(r).all():
                    r_hat = np.nan
                else:
                    r_hat = float(np.nanmax(r))
                ess = [float(np.sum(members[n][k])) if moves.all() else np.nan for k in ("ess_bulk", "ess_tail")]
                rows[n] = (r_hat, *ess)
                continue
            if np.ptp(x) == 0:
                rows[n] = (np.nan, np.nan, np.nan)
                continue
            rows[n] = (
                float(az.rhat(x)),
                float(az.ess(x, method="bulk")),
                float(az.ess(x, method="tail")),
            )
        return pd.DataFrame.from_dict(rows, orient="index", columns=["r_hat", "ess_bulk", "ess_tail"])

    def check(self, warn: bool = True) -> list[str]:
        """Convergence problems as sentences; warns with :class:`ConvergenceWarning` when ``warn``."""
        problems = []
        nchains = next(iter(self.samples.values())).shape[0] if self.samples else 0
        diag = self.diagnostics()
        # a free parameter whose draws never move, or any non-derived site with non-finite draws (without the model's
        # free parameters, e.g. a custom NumPyro model's, a constant site may be a deterministic one)
        free = set(self.info.get("free_parameters") or ())
        combined = self.info.get("combine") or {}
        if combined.get("n_members"):  # combine_members refuses members whose draws are not finite
            over = {n: int(np.sum(~np.isfinite(self.samples[n]))) for n in self.scalar_names
                    if not n.startswith("derived.") and not np.isfinite(self.samples[n]).all()}
            if over:
                problems.append(
                    f"{sum(over.values())} of the combined draws of {sorted(over)} are not finite (overflow): the "
                    f"members were combined with ν = {combined.get('dof', float('nan')):.1f} degrees of freedom, whose "
                    "Student-t tails reach beyond the numbers this prior's transform can hold (the members' own "
                    "runs are finite); their central quantiles stand while they do not reach the overflowed draws (a quantile that does is NaN), their mean and sd do not, and derived quantities of "
                    "those draws may be NaN, which makes their rows NaN — fit more bootstrap resamples (fit_psd's "
                    "ensemble) or give the parameter a bounded prior"
                )
        else:
            over = {}
        stuck = [n for n in self.scalar_names if not n.startswith("derived.") and n not in over
                 and (not np.isfinite(self.samples[n]).all() or (n in free and np.ptp(self.samples[n]) == 0))]
        if stuck:
            problems.append(f"the draws of {stuck} never move or are not finite: the chains are stuck (often at a "
                            "prior's edge); these intervals mean nothing — check the data's errors and the priors, "
                            "or start the chains near the mode")
        derived_bad = {n: int(np.sum(~np.isfinite(self.samples[n]))) for n in self.scalar_names
                       if n.startswith("derived.") and not np.isfinite(self.samples[n]).all()}
        if derived_bad and not over:  # (the overflow message above says that derived rows may be NaN)
            problems.append(
                "draws of " + ", ".join(f"{n} ({k} of {self.samples[n].size})" for n, k in derived_bad.items())
                + " are not finite, which makes their rows NaN: the model's quantity is undefined at some drawn "
                  "parameters (a density or a circular speed outside the model's range); check the priors")
        by_members = bool(combined.get("member_diagnostics"))  # diag is the members' own: say it once, by member
        if nchains > 1 and not by_members:
            bad = diag.index[diag["r_hat"] > MAX_RHAT].tolist()
            if bad:
                problems.append(f"r̂ > {MAX_RHAT} for {bad} (max {diag['r_hat'].max():.3f}): run longer or reparametrise")
        member_rhat = (self.info.get("combine") or {}).get("member_max_r_hat") or []
        # one chain has no r̂ (ArviZ gives NaN, which no threshold flags): a drifting chain passed unnoticed
        no_rhat = [j for j, r in enumerate(member_rhat) if r is None or np.isnan(r)]
        if (nchains == 1 and not by_members) or no_rhat:
            where = f"of member(s) {no_rhat} " if no_rhat else ""
            problems.append(f"r̂ {where}cannot be computed from one chain, so convergence was not checked across "
                            "chains: run ≥ 2 chains (num_chains; 4 is the default)")
        bad_members = [j for j, r in enumerate(member_rhat) if r is not None and r > MAX_RHAT]
        if bad_members:
            worst = max(member_rhat[j] for j in bad_members)  # (max() of all of them depended on where a NaN sat)
            problems.append(
                f"r̂ > {MAX_RHAT} in the posterior of member(s) {bad_members} (max {worst:.3f}): "
                + ("run longer" if np.isfinite(worst) else
                   "a member's chains never moved or ran to infinity even after a restart near the mode; check "
                   "that member's accelerations and the priors")
            )
        elif nchains > 1 and by_members:  # member_max_r_hat is over the free parameters: a derived site's own
            bad = diag.index[diag["r_hat"] > MAX_RHAT].tolist()  # (the members' largest, in diag) can exceed it
            if bad:
                problems.append(f"r̂ > {MAX_RHAT} for {bad} in a member's posterior (max {diag['r_hat'].max():.3f}): "
                                "run longer")
        low = diag.index[(diag["ess_bulk"] < MIN_ESS) | (diag["ess_tail"] < MIN_ESS)].tolist()
        if low:
            problems.append(f"effective sample size < {MIN_ESS} for {low}: draw more samples")
        # the combined draws add an independent between-member draw to each, which inflates their ESS: judge the
        # members' own runs, whose re-centred draws together make the combined posterior's within-member part
        member_ess = (self.info.get("combine") or {}).get("member_min_ess") or []
        if member_ess and sum(member_ess) < MIN_ESS and not by_members:
            problems.append(f"effective sample size of the flow members' runs together {sum(member_ess):.0f} < "
                            f"{MIN_ESS} (per member {[round(e) for e in member_ess]}): draw more samples")
        ndiv = self.info["num_divergences"]
        if ndiv:
            problems.append(f"{ndiv} divergent transitions: raise target_accept or reparametrise; intervals may be biased")
        if warn:
            for p in problems:
                warnings.warn(p, ConvergenceWarning, stacklevel=3)
        return problems

    # ------------------------------------------------------------- tables
    def summary(self) -> pd.DataFrame:
        """Constraint table: one row per scalar site.

        Columns: unit, median, the 68 % and 95 % central intervals (q16, q84,
        q2.5, q97.5), mean, sd, r_hat, ess_bulk, ess_tail. ``attrs`` carries the
        number of divergences and the convergence problems.
        """
        rows = {}
        for n in self.scalar_names:
            x = self.samples[n].reshape(-1)
            q = np.percentile(x, [2.5, 16, 50, 84, 97.5])
            rows[n] = {
                "unit": _unit_of(n),
                "median": q[2],
                "q16": q[1],
                "q84": q[3],
                "q2.5": q[0],
                "q97.5": q[4],
                "mean": x.mean(),
                "sd": x.std(ddof=1),
            }
        df = pd.DataFrame.from_dict(rows, orient="index")
        df = df.join(self.diagnostics())
        df.attrs["num_divergences"] = self.info["num_divergences"]
        df.attrs["problems"] = self.check(warn=False)
        df.attrs["combine_dof"] = (self.info.get("combine") or {}).get("dof")
        return df

    def to_markdown(self) -> str:
        """The constraint table as a Markdown table (median and 68 %/95 % intervals, r̂, bulk and tail ESS: the 95 %
        interval's ends rest on the tail ESS, which the convergence warning also checks)."""
        df = self.summary()
        lines = [
            "| quantity | unit | median | 68 % interval | 95 % interval | r̂ | ESS bulk | ESS tail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n, r in df.iterrows():
            d = _digits(r["median"], r["q16"], r["q84"])  # enough that the 68 % interval's ends differ
            lines.append(
                f"| `{n.replace('|', '¦')}` | {r['unit']} | {_fmt(r['median'], d)} | [{_fmt(r['q16'], d)}, {_fmt(r['q84'], d)}] | "
                f"[{_fmt(r['q2.5'], d)}, {_fmt(r['q97.5'], d)}] | {r['r_hat']:.3f} | {r['ess_bulk']:.0f} | "
                f"{r['ess_tail']:.0f} |"
            )
        lines.append("")
        lines.append(f"Divergent transitions: {df.attrs['num_divergences']}.")
        if (self.info.get("combine") or {}).get("member_diagnostics"):  # (the header alone read as the draws' own)
            lines.append("r̂ is the largest of the flow members' own posteriors, and ESS bulk and tail the sums of "
                         "theirs (the combined draws are not one chain's).")
        dof = df.attrs["combine_dof"]
        if dof is not None and dof <= HEAVY_TAIL_DOF:
            lines.append(f"**Note:** the flow members were combined with ν = {dof:.1f} degrees of freedom (the "
                         "between-member variance is estimated from few members or resamples), so the between-member part has heavy Student-t "
                         "tails: the intervals are wide and the `sd` of `summary()` is unstable; quote the quantiles.")
        for p in df.attrs["problems"]:
            lines.append(f"**Warning:** {p}.")
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        """The constraint table as a LaTeX tabular (median with 68 % errors, the errors to two significant digits and
        the median to the same decimal place; large and small numbers with a common power of ten)."""
        df = self.summary()
        lines = [r"\begin{tabular}{lll}", r"\hline", r"Quantity & Unit & Median$^{+68\%}_{-68\%}$ \\", r"\hline"]
        for n, r in df.iterrows():
            name = _latex_escape(n)  # (only _ was escaped: & % # in a name broke the table)
            value = _latex_value(r["median"], r["q84"] - r["median"], r["median"] - r["q16"])
            lines.append(rf"\texttt{{{name}}} & {_latex_unit(r['unit'])} & ${value}$ \\")
        lines += [r"\hline", r"\end{tabular}"]
        # a paper's table must not lose what to_markdown says: the warnings ride along as LaTeX comments, and warn
        dof = df.attrs["combine_dof"]
        notes = list(df.attrs["problems"])
        if dof is not None and dof <= HEAVY_TAIL_DOF:
            notes.append(f"the flow members were combined with nu = {dof:.1f} degrees of freedom: heavy Student-t "
                         "tails, quote the quantiles")
        if df.attrs["problems"]:  # the heavy-tail note alone is the design's (ν ≤ 4 for 2 × 2 members), not a problem
            warnings.warn("to_latex: " + "; ".join(df.attrs["problems"]), ConvergenceWarning, stacklevel=2)
        lines += [f"% WARNING: {n}" for n in notes]
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | Path) -> None:
        """Write the constraint table as CSV; the run's convergence problems, which a CSV cannot carry, are warned
        about (:class:`ConvergenceWarning`), as :meth:`to_latex` does."""
        df = self.summary()
        if df.attrs["problems"]:
            warnings.warn("to_csv: " + "; ".join(df.attrs["problems"]), ConvergenceWarning, stacklevel=2)
        df.to_csv(path, index_label="quantity")

    # ------------------------------------------------------------- physics
    def local_dm_density(self, name: str = "derived.rho_dm_sun") -> pd.DataFrame:
        """Local dark-matter density with 68 % and 95 % intervals in GeV/cm³, M☉/pc³ and M☉/kpc³; ``attrs["problems"]``
        holds the run's convergence problems, as :meth:`summary`'s does.

        Args:
            name: a site of one mass density per draw, in M☉/kpc³ (its draws are converted from that unit): a
                site whose unit is known (:meth:`summary`'s ``unit`` column) must be M☉/kpc³; a site of unknown
                unit is taken to be in M☉/kpc³.

        Raises:
            KeyError: ``name`` is not a site.
            ValueError: the site has more than one number per draw, or its known unit is not M☉/kpc³ (e.g.
                ``derived.Sigma_1p1kpc``, a surface density in M☉/pc², had come out in "GeV/cm³").
        """
        if name not in self.samples:
            raise KeyError(f"{name!r} is not in the posterior; sites are {sorted(self.samples)}")
        self._one_number_per_draw(name, "local_dm_density")
        unit = _known_unit(name)
        if unit is not None and unit != "Msun/kpc3":
            raise ValueError(
                f"local_dm_density: {name!r} is in {unit or 'no unit (dimensionless)'}, not a mass density in "
                f"Msun/kpc3: its draws would be converted to GeV/cm³ as if they were. Fix: pass a density site in "
                f"Msun/kpc3, e.g. 'derived.rho_dm_sun' (the default) or a component's density parameter "
                f"(sites in Msun/kpc3 here: {[n for n in self.scalar_names if _known_unit(n) == 'Msun/kpc3']})")
        x = self.samples[name].reshape(-1)
        rows = {}
        for unit in ("GeV/cm3", "Msun/pc3", "Msun/kpc3"):
            y = _u.density_to(x, unit)
            q = np.percentile(y, [2.5, 16, 50, 84, 97.5])
            rows[unit] = {"median": q[2], "q16": q[1], "q84": q[3], "q2.5": q[0], "q97.5": q[4], "sd": y.std(ddof=1)}
        df = pd.DataFrame.from_dict(rows, orient="index")
        df.attrs["problems"] = self.check(warn=False)  # as summary()'s: the table goes into papers without its run
        return df

    def local_dm_line(self) -> str:
        """One line: ρ_DM(⊙) = median +err −err GeV/cm³ (= … M☉/pc³), 68 % interval."""
        t = self.local_dm_density()
        problems = t.attrs["problems"]  # (the table's own check: not run twice)
        if problems:  # the line goes into papers: its run's problems must be said where it is made
            warnings.warn("local_dm_line: " + "; ".join(problems), ConvergenceWarning, stacklevel=2)
        g, m = t.loc["GeV/cm3"], t.loc["Msun/pc3"]
        up, lo = g["q84"] - g["median"], g["median"] - g["q16"]
        d = max(3, _error_decimals(up, lo))  # the smaller error to two significant digits, at least 0.001 GeV/cm³
        m_up, m_lo = m["q84"] - m["median"], m["median"] - m["q16"]
        dm = max(4, _error_decimals(m_up, m_lo))  # the same rule in M☉/pc³ (its errors had .2g: "+0.001 -0.00099")
        return (
            f"rho_DM(sun) = {g['median']:.{d}f} +{up:.{d}f} -{lo:.{d}f} GeV/cm^3"
            f" = {m['median']:.{dm}f} +{m_up:.{dm}f} -{m_lo:.{dm}f} Msun/pc^3 (68 %)"
        )

    def _one_number_per_draw(self, name: str, what: str) -> None:
        """Refuse a site that is not one number per draw, (chains, draws): its draws flattened together (a (4, 1000, 3)
        site of components at 0, 10 and 100 had given one upper limit, 101.01) mean nothing."""
        shape = self.samples[name].shape
        if len(shape) != 2:
            raise ValueError(
                f"{what}: the draws of {name!r} have shape {shape}, {int(np.prod(shape[2:]))} numbers per draw "
                f"(chains, draws, {', '.join(map(str, shape[2:]))}), not one; they cannot be pooled into one "
                f"quantity. Fix: make each element its own site, e.g. Posterior({{**post.samples, "
                f"'{name}[0]': post.samples[{name!r}][:, :, 0]}}, post.info)")

    def upper_limit(self, name: str, q: float = 0.95, lower: float | None = None) -> float:
        """One-sided upper limit: the q-quantile of the marginal posterior of ``name``, in the site's unit as
        :meth:`summary` gives it (its ``unit`` column): M☉/kpc² for a component's surface-density parameter (divide
        by 1e6 for M☉/pc²), but M☉/pc² for ``derived.Sigma_1p1kpc``.

        Args:
            name: the site.
            q: the limit's credibility.
            lower: the quantity's physical lower bound (e.g. 0 for a dark disk's Σ_DD), in the same unit. Draws below
                it are left out first, as :func:`bayesdyn.results.dark_disk_limits` does: under a prior that reaches
                below it (a Normal), the posterior under the physical (truncated) prior is this one's part above it,
                and counting the mass below would tighten the limit (by 9 % where a third of the draws lay below 0).
                None: every draw counts (right when the prior itself stops at the bound).

        Raises:
            ValueError: q outside (0, 1), a site with more than one number per draw (chains, draws, k), a draw that
                is not finite, or no draw at or above ``lower``.
        """
        if not 0 < q < 1:
            raise ValueError(f"q must be in (0, 1), got {q}")
        if name not in self.samples:
            raise KeyError(f"{name!r} is not in the posterior; sites are {sorted(self.samples)}")
        self._one_number_per_draw(name, "upper_limit")
        x = self.samples[name].reshape(-1)
        if getattr(lower, "unit", None) is not None:  # a Quantity: to the site's unit
            import astropy.units as u

            try:
                unit = _unit_of(name).replace("(km/s)2/kpc", "km2 / (s2 kpc)")  # astropy cannot parse the label
                lower = u.Quantity(lower).to_value(u.Unit(unit or u.dimensionless_unscaled))
            except (ValueError, u.UnitConversionError):
                raise _u.UnitError(f"lower={lower} cannot be converted to the unit of {name!r} "
                                   f"({_unit_of(name) or 'unknown'}); pass a bare number in that unit") from None
        if not np.isfinite(x).all():  # as dark_disk_limits: no limit from a broken run (an inf had passed)
            raise ValueError(f"{int(np.sum(~np.isfinite(x)))} of {x.size} draws of {name!r} are not finite: "
                             "no limit")
        if lower is None and name.endswith("surface_density") and np.any(x < 0):
            warnings.warn(
                f"{int(np.sum(x < 0))} of {x.size} draws of {name!r} are below 0, and they count (lower=None): the "
                "limit is tighter than under the physical prior Σ ≥ 0, which dark_disk_limits uses; pass lower=0",
                UserWarning, stacklevel=2)
        problems = self.check(warn=False)
        if problems:  # a limit goes into papers: its run's problems are said where it is made
            warnings.warn("upper_limit: " + "; ".join(problems), ConvergenceWarning, stacklevel=2)
        if lower is not None:
            lower = float(lower)
            x = x[x >= lower]
            if x.size == 0:
                raise ValueError(f"no draw of {name!r} lies at or above lower={lower:g}: no limit")
        return float(np.quantile(x, q))

    # ------------------------------------------------------------- plots
    def corner(self, path: str | Path | None = None, names: list[str] | None = None, truths: Mapping[str, float] | None = None):
        """Corner plot of ``names`` (default: the free parameters) with optional truths; saved to ``path``."""
        import corner as _corner

        names = names or [n for n in self.scalar_names if not n.startswith("derived.")] or self.scalar_names
        constant = [n for n in names if np.ptp(self.samples[n]) == 0 or not np.isfinite(self.samples[n]).all()]
        if constant:  # corner needs a range for each: its error asked for a `range` argument this method lacks
            if len(constant) == len(names):
                raise ValueError(f"the draws of {constant} are constant or not finite: nothing to plot")
            warnings.warn(f"corner: {constant} left out (their draws are constant or not finite)", UserWarning,
                          stacklevel=2)
            names = [n for n in names if n not in constant]
        unknown = sorted(set(truths or {}) - set(self.samples))
        if unknown:  # (a misspelt name lost its truth line without a word)
            raise KeyError(f"corner: truths name {unknown}, which are not sites of the posterior; sites are "
                           f"{sorted(self.samples)}")
        data = np.stack([self.samples[n].reshape(-1) for n in names], axis=-1)
        tv = None if truths is None else [truths.get(n) for n in names]
        labels = [f"{n}\n[{_unit_of(n)}]" if _unit_of(n) else n for n in names]
        fig = _corner.corner(data, labels=labels, truths=tv, quantiles=[0.16, 0.5, 0.84], show_titles=True,
                             title_fmt=[_title_format(data[:, i]) for i in range(len(names))])
        if path is not None:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        return fig

    # ------------------------------------------------------------- files
    def to_inference_data(self):
        """ArviZ InferenceData (posterior group; sample_stats with ``diverging``)."""
        az = self._az()
        sample_stats = {}
        if self.info.get("diverging") is not None:
            sample_stats["diverging"] = np.asarray(self.info["diverging"], dtype=bool)
        meta = {k: v for k, v in self.info.items() if k != "diverging"}
        idata = az.from_dict(posterior=self.samples, sample_stats=sample_stats or None)
        from ..catalog._io import _json_default

        try:
            idata.posterior.attrs["bayesdyn_info"] = json.dumps(meta, default=_json_default)
        except TypeError as err:  # (default=float had read an int64 count back as 50.0, a bool as 1.0)
            raise TypeError(f"Posterior.save: info cannot be written as a JSON record ({err}). Fix: store numbers, "
                            "strings, lists or dicts of them in info") from None
        return idata

    def save(self, path: str | Path) -> None:
        """Save as NetCDF (ArviZ/xarray, h5netcdf engine): data only, no code."""
        self.to_inference_data().to_netcdf(str(path), engine="h5netcdf")

    @classmethod
    def load(cls, path: str | Path) -> "Posterior":
        """Load a posterior written by :meth:`save`."""
        az = cls._az(cls)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no posterior file at {path}")
        what = f"{path} is not a NetCDF posterior written by Posterior.save"
        try:
            # no CF decoding of values (a scale_factor attribute, which save never writes, had doubled a site's
            # draws), and every value read here, inside the try (ArviZ opens lazily: a damaged chunk surfaced later
            # as a bare OSError)
            idata = az.from_netcdf(str(path), engine="h5netcdf", group_kwargs={".*": {"mask_and_scale": False}},
                                   regex=True)
            post = getattr(idata, "posterior", None)
            if post is not None:
                samples = {k: np.asarray(post[k].values) for k in post.data_vars}
                diverging = (np.asarray(idata.sample_stats["diverging"].values)
                             if hasattr(idata, "sample_stats") and "diverging" in idata.sample_stats else None)
                attrs = dict(post.attrs)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{what} ({type(err).__name__}: {err})") from None
        if post is None:
            raise ValueError(f"{what} (it has no posterior group)")
        bad = [k for k, a in samples.items() if a.dtype.kind not in "fiu"]
        if bad:
            raise ValueError(f"{what} (sites {bad} hold no numbers)")
        if diverging is not None and not np.isin(diverging, (0, 1)).all():
            raise ValueError(f"{what} (its sample_stats.diverging holds values other than true/false)")
        if "bayesdyn_info" not in attrs:  # its run's info (divergences, combination, units) would be lost
            raise ValueError(f"{what} (its posterior has no bayesdyn_info record). Fix: for another tool's "
                             "draws build Posterior.from_samples({name: (chains, draws) array}, info)")
        try:
            info = json.loads(attrs["bayesdyn_info"])
        except (ValueError, RecursionError, TypeError) as err:
            raise ValueError(f"{what} (its bayesdyn_info record is damaged: {err})") from None
        if not isinstance(info, dict):
            raise ValueError(f"{what} (its bayesdyn_info record is a JSON {type(info).__name__}, not an object)")
        if diverging is not None:
            info["diverging"] = diverging.astype(bool)
        try:
            out = cls(samples, info)
            out.check(warn=True)  # a posterior read back is as loud about its problems as the run that made it
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as err:  # a record of wrong types
            raise ValueError(f"{what} (its draws or bayesdyn_info record are damaged: {type(err).__name__}: "
                             f"{err}); save the posterior again") from None
        return out

    def __repr__(self) -> str:
        n = next(iter(self.samples.values())).shape[:2] if self.samples else (0, 0)
        return f"Posterior(chains={n[0]}, draws={n[1]}, sites={self.scalar_names})"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (for a site name inside \\texttt)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _fmt(x: float, digits: int = 4) -> str:
    """``digits`` significant digits, trailing zeros kept (``%g`` wrote [14, 18.07] for [14.00, 18.07])."""
    if not np.isfinite(x):
        return "nan"
    text = f"{x:#.{digits}g}"
    return text[:-1] if text.endswith(".") else text  # ('1234.' for 1234)


def _digits(median: float, q16: float, q84: float) -> int:
    """Significant digits for a table row: 4, or more where the 68 % interval is narrow beside the median (so
    that 229.31 ± 0.02 reads [229.29, 229.33], not [229.3, 229.3]): the half-width to two significant digits."""
    half = 0.5 * (q84 - q16)
    if not (np.isfinite(median) and np.isfinite(half) and half > 0 and median != 0):
        return 4
    return int(np.clip(np.floor(np.log10(abs(median))) - np.floor(np.log10(half)) + 2, 4, 12))


def _title_format(x: np.ndarray) -> str:
    """A corner-plot title format for draws x: the smaller 68 % error to two significant digits (corner's ".2f"
    titled a 4 ± 1.5 pc scale height, in kpc, 0.00 ± 0.00), in exponent form beyond 10⁴ or below 10⁻³."""
    q16, q50, q84 = np.percentile(x, [16, 50, 84])
    ref = max(abs(q50), q84 - q50, q50 - q16)
    if ref >= 1e4 or 0 < ref < 1e-3:
        return ".2e"
    return f".{_error_decimals(q84 - q50, q50 - q16)}f"


def _error_decimals(*errors: float) -> int:
    """Decimal places that give the smallest positive finite error two significant digits (0 for errors ≥ 10)."""
    return max(0, _error_place(*errors))


def _error_place(*errors: float) -> int:
    """The decimal place of the smallest positive finite error's second significant digit: 2 for 0.015, 0 for 15,
    −1 for 150 (tens); 0 without such an error."""
    e = [x for x in errors if np.isfinite(x) and x > 0]
    return int(1 - np.floor(np.log10(min(e)))) if e else 0


def _round_sig(x: float, sig: int = 2) -> float:
    """x rounded to ``sig`` significant digits (x > 0)."""
    return float(f"{x:.{sig - 1}e}")


def _latex_value(median: float, up: float, down: float) -> str:
    """median^{+up}_{-down} for LaTeX math: each error rounded to two significant digits, the median to the decimal
    place of the smaller one, a common power of ten outside (1.8^{+65}_{-1.8} × 10^{5}) when the largest of |median|
    and the errors is ≥ 10⁴ or < 10⁻³ (taken from the median alone, a small median with large errors gave
    8^{+1234}_{-987} × 10^{-4}); without a positive error (a constant row, e.g. a fixed halo's ρ_DM(⊙)) the median
    to 4 significant digits, zeros kept (7.54 × 10⁶ had printed as 8 × 10⁶; 9999.7 prints 1.000 × 10⁴)."""
    if np.isinf(median) and np.isfinite(up) and np.isfinite(down):
        return r"\infty" if median > 0 else r"-\infty"
    if not (np.isfinite(median) and np.isfinite(up) and np.isfinite(down)):
        return r"\mathrm{nan}"
    constant = not (up > 0 or down > 0)
    if constant:
        median = float(f"{median:.4g}")
        ref = abs(median)
    else:
        up, down = (_round_sig(e) if e > 0 else 0.0 for e in (up, down))
        ref = max(abs(median), up, down)
    exp = int(np.floor(np.log10(ref))) if ref > 0 else 0
    exp = exp if (exp >= 4 or exp < -3) else 0
    for _ in range(2):  # once more where the mantissa rounds up to 10 (99996 ± 300 → 1.0000 × 10⁵, not 10.000 × 10⁴)
        scale = 10.0 ** exp
        if constant:
            mantissa = f"{median / scale:#.4g}".rstrip(".")
            if abs(float(mantissa)) < 10 or not exp:
                break
        else:
            d = _error_decimals(up / scale, down / scale)
            place = _error_place(up / scale, down / scale)  # < 0: the errors' digits lie left of the point
            # (errors ≥ 100: 1234^{+150}_{-130} had printed its median to the unit, 1230 is to the smaller error's)
            mantissa = f"{round(median / scale, place):.0f}" if place < 0 else f"{median / scale:.{d}f}"
            if abs(float(mantissa)) < 10 or not exp:
                break
        exp += 1
    if float(mantissa) == 0:
        mantissa = mantissa.lstrip("-")  # −0.0 → 0.0
    if constant:
        text = f"{mantissa}^{{+0}}_{{-0}}"
    else:
        def err(e: float) -> str:
            return f"{e / scale:.{min(d, _error_decimals(e / scale))}f}" if e > 0 else "0"

        text = f"{mantissa}^{{+{err(up)}}}_{{-{err(down)}}}"
    return rf"{text} \times 10^{{{exp}}}" if exp else text


def _latex_unit(unit: str) -> str:
    """A table unit as LaTeX: 'Msun/kpc3' → $\\mathrm{M_\\odot/kpc^{3}}$, '(km/s)2/kpc' → $\\mathrm{(km/s)^{2}/kpc}$."""
    if not unit:
        return ""
    text = re.sub(r"([A-Za-z)])(\d+)", r"\1^{\2}", unit).replace("Msun", r"M_\odot")
    return rf"$\mathrm{{{text}}}$"

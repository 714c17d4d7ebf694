"""Why the NFW mock's ρ_s and r_s 68 % intervals over-cover: Rubin's rules with K = 4 members, simulated.

Each ensemble member's estimate of a parameter (unconstrained coordinates) is
modelled as  m_jl = θ̂(D) + e_s(D*_j) + e_t(j, l):  θ̂(D) the (bagged) estimator on
the catalog D, with sampling variance V_s; e_s the bootstrap resample's perturbation,
also of variance V_s; e_t the training noise of seed l, variance V_t. J resamples with
L seeds each give K = J·L members. The member mean's error variance is

    V_true = (1 + 1/J) V_s + V_t / (J L) + W,

W the within-member (Monte-Carlo) variance, which every design also carries. With one
seed per resample (L = 1, bd.infer's default) the members' spread B estimates
V_s + V_t, and Rubin's T = W + (1 + 1/K) B overstates V_true by V_t.

The script draws 200 000 synthetic realisations per case for the training shares
V_t/B measured on the NFW mock (members on the same stars with different seeds
against bootstrap members, ``docs/calibration/nfw-no-bootstrap``: 0.94 for ρ_s, 0.82
for r_s, 0.46 for ρ(r_s)) and prints the coverage of each design's 68 % and 95 %
Student-t intervals and their median half-widths in units of √V_true, beside the
coverage measured by the real harness (R = 30, ``docs/calibration/nfw-one-seed/members`` for the
one-seed design and ``docs/calibration/nfw/members`` for 2 resamples × 2 seeds).
Designs compared:

- ``rubin K=4``: bd.infer's default (J = 4, L = 1);
- ``rubin K=8``: eight bootstrap members (2× training);
- ``anova J=2 L=2``: K = 4 as two resamples × two seeds (same training cost),
  T = W + MSW/(JL) + (1 + 1/J)[S² − MSW/L]₊ from the resample means' variance S² and
  the within-resample (seed) mean square MSW, Satterthwaite degrees of freedom for
  the sum of the two parts (``bayesdyn.inference.combine_members(groups=...)``);
- ``anova J=3 L=2``, ``anova J=4 L=2``: the same with K = 6 and 8;
- ``oracle``: V_true known, Gaussian (what a perfect variance estimate gives).

Those rows are analytic Student-t intervals of the whole scale T. ``bd.infer``'s
combined posterior is made of draws instead (``combine_members``): N(m̄, W) plus the
between part. The ``draws (now)`` rows simulate what the code does (N_DRAWS draws per
realisation, their quantiles as the interval): for plain Rubin √(B_T)·√(ν_b/χ²_ν_b),
B_T = T − W, ν_b = K − 1 (since 2026-12-07); for resample groups, per draw, M and S
each from their own scaled-inverse-χ² posterior (J(L − 1) and J − 1 degrees of
freedom), then M/(JL) + (1 + 1/J)[S − M/L]₊ (since a second change on 2026-12-07).
Also shown: one t of Satterthwaite's ν for the nested sum (the first change that day),
and the earlier ν_b (1 + 1/r)²
(``old ν``), whose tails were too light. ``--shares`` prints the groups' rules over
training shares from 0 to 0.94 alone.

    python benchmarks/rubin_design.py [--shares]
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import stats

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "docs" / "calibration" / "nfw" / "members" / "summary.csv"
#: the one-seed runs (4 resamples × 1 seed), the design of the "rubin K=4" rows
MEASURED_ONE_SEED = ROOT / "docs" / "calibration" / "nfw-one-seed" / "members" / "summary.csv"
SHARES = {"halo.scale_density": 0.94, "halo.scale_radius": 0.82, "rho_at_rs": 0.46}
W_OVER_B = 0.03  # within-member share: between_fraction ≈ 0.975 in the NFW runs (realisations/*.json)
N_SIM = 200_000
#: realisations and draws per realisation of the draw-based rows
N_SIM_DRAWS, N_DRAWS = 20_000, 2000


def simulate(share: float, j: int, l: int, design: str, rng: np.random.Generator, draws: str = "",
             w: float = W_OVER_B) -> tuple[float, ...]:
    """Coverage and median half-width (units of √V_true) at 68 and 95 %; ``draws``: "" for the analytic t of scale
    T, "new" / "old" for combine_members' draws with ν_b / ν_b (1 + 1/r)² on the between part; ``w``: the
    within-member variance in units of V_s + V_t."""
    n_sim = N_SIM_DRAWS if draws else N_SIM
    vt, vs = share, 1.0 - share
    theta = rng.normal(0.0, np.sqrt(vs), n_sim)
    m = theta[:, None, None] + rng.normal(0.0, np.sqrt(vs), (n_sim, j, 1)) + rng.normal(0.0, np.sqrt(vt), (n_sim, j, l))
    err = m.mean(axis=(1, 2)) + rng.normal(0.0, np.sqrt(w), n_sim)  # the within-member noise, honest in W
    v_true = w + (1 + 1 / j) * vs + vt / (j * l)
    if design == "rubin":
        k = j * l
        b = m.reshape(n_sim, k).var(axis=1, ddof=1)
        t = w + (1 + 1 / k) * b
        r = (1 + 1 / k) * b / w
        dof_b = np.full(n_sim, k - 1.0)
    elif design == "anova":
        means = m.mean(axis=2)
        s2 = means.var(axis=1, ddof=1)
        msw = ((m - means[..., None]) ** 2).sum(axis=(1, 2)) / (j * (l - 1))
        c_t = msw / (j * l)  # training part, J(L − 1) dof
        c_s = (1 + 1 / j) * np.maximum(s2 - msw / l, 0.0)  # sampling part (1 + 1/J)[S² − MSW/L]₊, J − 1 dof
        t = w + c_t + c_s
        r = (c_t + c_s) / w
        dof_b = (c_t + c_s) ** 2 / (c_t**2 / (j * (l - 1)) + c_s**2 / (j - 1))
    elif design == "oracle":
        t, r, dof_b = np.full(n_sim, v_true), np.full(n_sim, np.inf), np.full(n_sim, np.inf)
    else:
        raise ValueError(design)
    if not draws:  # Rubin: a t of the whole scale T with ν_b (1 + 1/r)²
        dof = dof_b * (1 + 1 / r) ** 2
        out = []
        for level in (0.68, 0.95):
            half = stats.t.ppf(0.5 + level / 2, np.minimum(dof, 1e6)) * np.sqrt(t)
            out += [float(np.mean(np.abs(err) < half)), float(np.median(half) / np.sqrt(v_true))]
        return tuple(out)
    if draws == "nested" and design != "anova":
        raise ValueError("nested draws are for the anova design")
    dof = np.minimum(dof_b if draws in ("new", "nested") else dof_b * (1 + 1 / r) ** 2, 1e6)
    hits, halves = {0.68: [], 0.95: []}, {0.68: [], 0.95: []}
    for lo in range(0, n_sim, 1000):  # combine_members' draws, 1000 realisations at a time
        sl = slice(lo, lo + 1000)
        n = err[sl].size
        if draws == "nested":  # each variance part drawn from its own scaled-inverse-χ² posterior, per draw
            vt_d = msw[sl, None] * j * (l - 1) / rng.chisquare(j * (l - 1), (n, N_DRAWS))
            s_d = s2[sl, None] * (j - 1) / rng.chisquare(j - 1, (n, N_DRAWS))
            g = rng.standard_normal((n, N_DRAWS)) * np.sqrt(vt_d / (j * l) + (1 + 1 / j) * np.maximum(s_d - vt_d / l, 0))
        else:
            g = rng.standard_normal((n, N_DRAWS)) * np.sqrt(t[sl] - w)[:, None]
            g = g * np.sqrt(dof[sl, None] / rng.chisquare(dof[sl, None], (n, N_DRAWS)))
        x = rng.normal(0.0, np.sqrt(w), (n, N_DRAWS)) + g  # about the member mean
        for level in (0.68, 0.95):
            q = np.quantile(x, [0.5 - level / 2, 0.5 + level / 2], axis=1)
            hits[level].append((q[0] <= -err[sl]) & (-err[sl] <= q[1]))
            halves[level].append((q[1] - q[0]) / 2)
    out = []
    for level in (0.68, 0.95):
        out += [float(np.mean(np.concatenate(hits[level]))), float(np.median(np.concatenate(halves[level])) / np.sqrt(v_true))]
    return tuple(out)


def main() -> None:
    print(machine())
    measured, one_seed = {}, {}
    for path, rows in ((MEASURED, measured), (MEASURED_ONE_SEED, one_seed)):
        if path.is_file():
            with open(path) as fh:
                rows.update({row["quantity"]: row for row in csv.DictReader(fh)})
    designs = [("rubin K=4 (default)", 4, 1, "rubin"), ("rubin K=8", 8, 1, "rubin"),
               ("anova J=2 L=2 (K=4)", 2, 2, "anova"), ("anova J=3 L=2 (K=6)", 3, 2, "anova"), ("anova J=4 L=2 (K=8)", 4, 2, "anova"),
               ("oracle", 4, 1, "oracle")]
    print(f"{N_SIM} simulated realisations per row ({N_SIM_DRAWS} × {N_DRAWS} draws in the draw rows); W/B = {W_OVER_B}; "
          "half-widths in units of the true error sd")
    print("| quantity | V_t/B | design | cov 68 % | half 68 % | cov 95 % | half 95 % |")
    print("|---|---|---|---|---|---|---|")
    for q, share in SHARES.items():
        rng = np.random.default_rng(20261203)
        for name, j, l, design in designs:
            c68, h68, c95, h95 = simulate(share, j, l, design, rng)
            print(f"| {q} | {share:.2f} | {name} | {c68:.3f} | {h68:.2f} | {c95:.3f} | {h95:.2f} |")
        for name, j, l, design in designs[:3]:
            rules = ((("nested", "draws (now)"), ("new", "draws, one t of Satterthwaite's ν"), ("old", "draws, old ν"))
                     if design == "anova" else (("new", "draws (now)"), ("old", "draws, old ν")))
            for which, label in rules:
                c68, h68, c95, h95 = simulate(share, j, l, design, rng, draws=which)
                print(f"| {q} | {share:.2f} | {name}, {label} | {c68:.3f} | {h68:.2f} | {c95:.3f} | {h95:.2f} |")
        for rows, design, folder in ((one_seed, "4 resamples × 1 seed, as the rubin K=4 rows", "nfw-one-seed"),
                                     (measured, "2 resamples × 2 seeds, as the anova J=2 L=2 rows", "nfw")):
            if q in rows:
                row = rows[q]
                print(f"| {q} | — | **measured** (harness, R = 30, K = 4 as {design}, older draws: read from "
                      f"docs/calibration/{folder}/members) | {float(row['coverage_68']):.3f} | — | "
                      f"{float(row['coverage_95']):.3f} | — |")


def toy() -> None:
    """Plain Rubin (one member per resample, no training variance) with within = between variance."""
    print()
    print("Toy: K independent members, V_t = 0, W = V_s (between = within); analytic Rubin t and the draws")
    print("| K | rule | cov 68 % | half 68 % | cov 95 % | half 95 % |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(20261207)
    for k in (2, 4, 8):
        for label, draws in (("Rubin's t (analytic)", ""), ("draws, ν_b (now)", "new"), ("draws, old ν", "old")):
            c68, h68, c95, h95 = simulate(0.0, k, 1, "rubin", rng, draws=draws, w=1.0)
            print(f"| {k} | {label} | {c68:.3f} | {h68:.2f} | {c95:.3f} | {h95:.2f} |")


def shares() -> None:
    """Resample groups over the whole range of training shares: one t of Satterthwaite's ν on the between part
    (combine_members until a second change on 2026-12-07) against drawing each part from its own posterior
    (since)."""
    print()
    print(f"Resample groups, training share V_t/(V_s + V_t) from 0 to 0.94, W/B = {W_OVER_B}; {N_SIM_DRAWS} × "
          f"{N_DRAWS} draws per row")
    print("| J × L | V_t share | rule | cov 68 % | half 68 % | cov 95 % | half 95 % |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(20261208)
    for j, l in ((2, 2), (4, 2)):
        for share in (0.0, 0.1, 0.25, 0.46, 0.7, 0.94):
            for label, draws in (("one t, Satterthwaite ν", "new"), ("each part from its posterior", "nested")):
                c68, h68, c95, h95 = simulate(share, j, l, "anova", rng, draws=draws)
                print(f"| {j} × {l} | {share:.2f} | {label} | {c68:.3f} | {h68:.2f} | {c95:.3f} | {h95:.2f} |",
                      flush=True)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shares", action="store_true", help="only the table by training share (the last part)")
    if ap.parse_args().shares:  # (--help had run the whole simulation)
        shares()
    else:
        main()
        toy()
        shares()

"""Where does the weak-form fit's small a_R bias on the disk mock come from? (issue 8 caveat)

Over the league disk realisations r0–r79 the weak-form fit's a_R(⊙) is high by +0.22 ± 0.06 % (docs/league-weak-form.md).
Two candidates: (a) the two-step GMM's finite-sample bias — its weights S⁻¹ are estimated from the same stars as
the moments; (b) the mock itself — its DF uses Staeckel actions, so it is only approximately in equilibrium, and the
population moments need not vanish at the true potential.

The disk model's acceleration is linear in its free parameters (the disk mass M_d and the halo density ρ_s), so the
weak-form moments are ḡ(u) = c + B u with u = (M_d, ρ_s) / truth, and every weighted fit has a closed form
û = −(BᵀWB)⁻¹BᵀW c. For the same stars of each realisation (``validate.realisation``'s seeds, as
``benchmarks/weak_form_disk.py`` draws them) this script compares

- **two-step**: W from the moments' covariance at the previous estimate, iterated as ``bd.weak_form_weights`` does
  (``WEAK_FORM_STEPS`` times from the per-moment scaling); the fit behind docs/league-weak-form.md's closed-form rows;
- **S at truth**: W = S⁻¹ with S the covariance of the same stars' moments at the true parameters;
- **fixed W**: W = S_ref⁻¹ from an independent reference realisation (``--ref``) at the true parameters: W does not
  depend on the stars, so this estimator's mean error is the population moments' bias, (a) excluded.

It prints, per reference row, each estimator's mean relative error ± its standard error over the realisations, the
paired difference two-step − fixed W, and the pooled test of the mock's equilibrium: with all realisations' stars
together (N_tot), J_true = N_tot ḡ(u_true)ᵀ S⁻¹ ḡ(u_true), χ² with M dof if the population moments vanish at the
truth. Each realisation's numbers are cached (``--cache``), so runs over parts of the range combine.

    python benchmarks/weak_form_bias.py [--first 0] [--realisations 80] [--ref 1000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import league  # noqa: E402
from _machine import machine  # noqa: E402

VERSION = 1


def realisation_terms(r, seed=0):
    """Realisation r's linear moment structure: c (M,), B (M, 2), per-star moments at the truth (N, M), the rows'
    functionals (Q, 3P)·a as a0 (Q,) + A (Q, 2) u, the truth's values (Q,), labels, and the whitening the data
    start from."""
    import jax
    import jax.numpy as jnp

    import bayesdyn as bd
    from bayesdyn import validate
    from bayesdyn.validate._coverage import _seeds

    mock = validate.DiskMock()
    with jax.enable_x64(True):
        cat, truth = mock.draw(league.FULL["realisations"]["n"], _seeds(seed, r)["mock"])
        sun = np.asarray(cat.solar.position, dtype=float)
        X, qs = league.disk_quantities(sun)
        qs = [q for q in qs if q.kind == "acc"]
        data = bd.weak_form_data(cat, volume=(np.asarray(truth.sphere_center, float), float(truth.sphere_radius)))
        data = jax.tree_util.tree_map(lambda t: jnp.asarray(t, jnp.float64) if t is not None else None, data)
        comps = mock._truth_components()
        fixed = comps["bulge"]
        free = [comps["disk"], comps["halo"]]  # acceleration ∝ M_d and ∝ ρ_s: u = 1 is the truth
        x = data.x
        a_fixed = fixed.acceleration(x)
        a_free = [c.acceleration(x) for c in free]
        c = np.asarray(data.mean_moments(a_fixed))
        B = np.stack([np.asarray(data.mean_moments(a_fixed + a)) - c for a in a_free], axis=1)
        g_true = np.asarray(data.moments(a_fixed + a_free[0] + a_free[1]))
        g_fixed = np.asarray(data.moments(a_fixed))
        g_free = np.stack([np.asarray(data.moments(a_fixed + a)) - g_fixed for a in a_free], axis=2)  # (N, M, 2)
        Xj = jnp.asarray(X)
        w = np.stack([np.asarray(q.weights).reshape(-1) for q in qs])
        q0 = w @ np.asarray(fixed.acceleration(Xj)).reshape(-1)
        A = np.stack([w @ np.asarray(cpt.acceleration(Xj)).reshape(-1) for cpt in free], axis=1)
        t = w @ np.asarray(truth.acceleration(Xj)).reshape(-1)
        white = np.asarray(data.whiten)
    return dict(c=c, B=B, g_true=g_true, g_fixed=g_fixed, g_free=g_free, q0=q0, A=A, truth=t,
                labels=[q.label for q in qs], keys=[q.key for q in qs], whiten=white, n=int(data.n_stars))


def solve(c, B, W):
    return -np.linalg.solve(B.T @ W @ B, B.T @ W @ c)


def estimates(t, S_ref, steps):
    """Relative errors (Q,) of the rows for each estimator, and the realisation's ḡ(truth) and S(truth)."""
    c, B = t["c"], t["B"]
    W = t["whiten"].T @ t["whiten"]
    u = solve(c, B, W)
    for _ in range(steps):  # as weak_form_weights: S at the current estimate, then the new estimate
        g = t["g_fixed"] + t["g_free"] @ u
        u = solve(c, B, np.linalg.inv(np.cov(g.T)))
    S_true = np.cov(t["g_true"].T)
    out = {"two-step": u, "S at truth": solve(c, B, np.linalg.inv(S_true)),
           "fixed W": solve(c, B, np.linalg.inv(S_ref))}
    rel = {k: (t["q0"] + t["A"] @ v - t["truth"]) / np.abs(t["truth"]) for k, v in out.items()}
    return rel, {k: v for k, v in out.items()}, t["g_true"].mean(axis=0), S_true


def cached(r, cache, S_ref, steps, seed):
    path = None if cache is None else cache / f"bias-r{r:04d}-{league._key(seed, r, steps, VERSION, league.WEAK_MOMENTS)}.npz"
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        if np.allclose(z["S_ref"], S_ref):
            return {k: z[k] for k in z.files}
    t = realisation_terms(r, seed)
    rel, u, gbar, S = estimates(t, S_ref, steps)
    row = {f"rel:{k}": v for k, v in rel.items()} | {f"u:{k}": v for k, v in u.items()}
    row |= dict(gbar=gbar, S=S, n=np.asarray(t["n"]), S_ref=S_ref, keys=np.asarray(t["keys"]),
                labels=np.asarray(t["labels"]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **row)
    return row


def main(argv=None):
    from scipy import stats

    from bayesdyn.inference._infer import WEAK_FORM_STEPS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--realisations", type=int, default=80)
    ap.add_argument("--ref", type=int, default=1000, help="the reference realisation for the fixed weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(league.DEFAULT_CACHE), help="cache folder ('' for none)")
    a = ap.parse_args(argv)
    cache = Path(a.cache) if a.cache else None
    t0 = time.time()
    m0 = machine()
    ref = realisation_terms(a.ref, a.seed)
    S_ref = np.cov(ref["g_true"].T)
    rows = []
    for r in range(a.first, a.first + a.realisations):
        t = time.time()
        rows.append(cached(r, cache, S_ref, WEAK_FORM_STEPS, a.seed))
        print(f"r{r}: a_R(⊙) two-step {100 * rows[-1]['rel:two-step'][0]:+.3f} %, fixed W "
              f"{100 * rows[-1]['rel:fixed W'][0]:+.3f} % ({time.time() - t:.0f} s)", flush=True)
    n = len(rows)
    labels = list(rows[0]["labels"])
    print(f"\n{n} realisations r{a.first}–r{a.first + n - 1} (10⁵ stars each), fixed W from r{a.ref}; "
          f"mean relative error ± standard error over the realisations [%]:")
    print("| row | two-step | S at truth | fixed W | two-step − fixed W (paired) |")
    print("|---|---|---|---|---|")
    for i, lab in enumerate(labels):
        cols = []
        for k in ("two-step", "S at truth", "fixed W"):
            e = np.array([row[f"rel:{k}"][i] for row in rows]) * 100
            cols.append(f"{e.mean():+.3f} ± {e.std(ddof=1) / math.sqrt(n):.3f}")
        d = np.array([row["rel:two-step"][i] - row["rel:fixed W"][i] for row in rows]) * 100
        cols.append(f"{d.mean():+.3f} ± {d.std(ddof=1) / math.sqrt(n):.3f}")
        print(f"| {lab} | " + " | ".join(cols) + " |")
    for k in ("two-step", "fixed W"):
        u = np.array([row[f"u:{k}"] for row in rows])
        print(f"{k}: M_d/truth − 1 = {100 * (u[:, 0].mean() - 1):+.3f} ± {100 * u[:, 0].std(ddof=1) / math.sqrt(n):.3f} %,"
              f" ρ_s/truth − 1 = {100 * (u[:, 1].mean() - 1):+.3f} ± {100 * u[:, 1].std(ddof=1) / math.sqrt(n):.3f} %")
    ns = np.array([float(row["n"]) for row in rows])
    gbar = sum(row["gbar"] * k for row, k in zip(rows, ns)) / ns.sum()
    S = sum(row["S"] * k for row, k in zip(rows, ns)) / ns.sum()
    J = float(ns.sum() * gbar @ np.linalg.solve(S, gbar))
    M = gbar.size
    print(f"pooled equilibrium test at the true potential: N_tot = {int(ns.sum())}, J_true = {J:.1f} for {M} dof "
          f"(p = {stats.chi2.sf(J, M):.3g})")
    # the same per realisation: its distribution should be χ²_M if each sample's moments vanish at the truth
    Jr = np.array([float(row["n"]) * row["gbar"] @ np.linalg.solve(row["S"], row["gbar"]) for row in rows])
    print(f"per-realisation J_true: mean {Jr.mean():.1f} (χ²_{M}: {M}), KS p against χ²_{M} "
          f"{stats.kstest(Jr, stats.chi2(M).cdf).pvalue:.3g}")
    print(f"\nMachine: {m0}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""The weak-form fit of the disk model against Jeans on league disk realisations (issue 8; pre-registered test).

For league disk realisations r = F … F + N − 1 (``validate.realisation``'s stars and seeds: r0–r19 are the
league's, r20–r39 the held-out set of ``benchmarks/league_nodes.py --first 20``), it fits
``validate.DiskMock.model()`` to all the stars by the weak-form CBE (``bd.weak_form_data`` on the mock's 2-kpc
sphere, ``bd.infer``: two-step GMM weights at the mode, then NUTS with the league's settings), reads a_R and a_z at
the Sun and at z = ±1 kpc from the posterior predictive (median ± half the central 68 % interval), and prints, per
row, the RMS and mean relative error over the realisations, the mean quoted σ, how often the truth is within 1σ
and 2σ, the over-identification tests' p-values, and the ratio to Jeans' RMS on the same realisations (Jeans as
the league computes and seeds it, so r0–r19 give docs/league.md's Jeans numbers). Posteriors are cached in the
league's cache (``benchmarks/league.py`` reuses them).

Pre-registered rule (written before this code ran on r20–r39; session notes): pass if on r20–r39, and on r0–r19,
every row's RMS ≤ 0.5 × Jeans' RMS; honest intervals if, pooled over the 40, the truth is within 2σ in ≥ 34 of 40
for every row.

    python benchmarks/weak_form_disk.py [--first 20] [--realisations 20]

About 1.5–2 min per realisation on the 2-core Xeon (the mock draw ~30 s, the fit ~90 s; no flows).
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


def main(argv=None):
    import jax

    from bayesdyn import validate
    from bayesdyn.validate._coverage import _seeds

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first", type=int, default=0, help="first realisation (default 0, the league's)")
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="the league's master seed")
    ap.add_argument("--cache", default=str(league.DEFAULT_CACHE), help="posterior cache ('' for none)")
    a = ap.parse_args(argv)
    if a.first < 0 or a.realisations < 1:
        ap.error("--first must be ≥ 0 and --realisations ≥ 1")
    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    s, cfg = league.FULL, league.FULL["realisations"]
    mock = validate.DiskMock()
    cache = Path(a.cache) if a.cache else None
    clock = league.Clock()
    rows, keys = [], None
    for r in range(a.first, a.first + a.realisations):
        jax.clear_caches()
        seeds = _seeds(a.seed, r)
        with jax.enable_x64(True):  # as validate.realisation draws them
            cat, truth = mock.draw(cfg["n"], seeds["mock"])
        spec = league._disk_spec(f"disk-r{r:04d}", f"disk realisation {r}", cat, truth, s, seeds["nodes"])
        qs = [q for q in spec.quantities if q.kind == "acc"]
        keys = [(q.key, q.label) for q in qs]
        with jax.enable_x64(True):
            tc = league.exact_cells(qs, spec.X, spec.truth_acceleration, None)
        wc, diag = league.weak_cells(spec, s, seeds["nuts"], cache, clock, False, lambda *_: None,
                                     league._data_sha(cat))
        jc = spec.jeans(s["n_boot"], seeds["accel"])
        p = float(diag.split("p = ")[1].split(")")[0])
        rows.append({"p": p, **{q.key: (league.rel_error(wc[q.key], tc[q.key]), wc[q.key].error / abs(tc[q.key].value),
                                        league.rel_error(jc[q.key], tc[q.key])) for q in qs}})
        print(f"r{r}: " + ", ".join(f"{q.key} {100 * rows[-1][q.key][0]:+.2f} ± {100 * rows[-1][q.key][1]:.2f} % "
                                    f"(Jeans {100 * rows[-1][q.key][2]:+.1f} %)" for q in qs)
              + f"; {diag}  [{time.time() - t0:.0f} s]", flush=True)
    n = len(rows)
    print(f"\n# weak-form fit vs Jeans over {n} realisations (r{a.first}–r{a.first + n - 1}), relative errors in %")
    print("| quantity | weak-form RMS (mean) | mean σ | truth within 1σ, 2σ | Jeans RMS (mean) | ratio of RMS |")
    print("|---|---|---|---|---|---|")
    passed = True
    for key, label in keys:
        e = np.array([row[key][0] for row in rows])
        sd = np.array([row[key][1] for row in rows])
        je = np.array([row[key][2] for row in rows])
        both = np.isfinite(je)
        rms, rms_j = math.sqrt(np.mean(e[both] ** 2)), math.sqrt(np.mean(je[both] ** 2))
        passed &= rms <= league.ACCEPTANCE_RATIO * rms_j
        print(f"| {label} | {100 * math.sqrt(np.mean(e ** 2)):.2f} ({100 * e.mean():+.2f}) | {100 * sd.mean():.2f} | "
              f"{int(np.sum(abs(e) <= sd))}/{n}, {int(np.sum(abs(e) <= 2 * sd))}/{n} | "
              f"{100 * rms_j:.2f} ({100 * np.nanmean(je):+.2f}) | {rms / rms_j:.2f} |")
    ps = np.array([row["p"] for row in rows])
    print(f"\nOver-identification p-values: min {ps.min():.3f}, median {np.median(ps):.2f}, "
          f"{int(np.sum(ps < 0.05))} of {n} below 0.05 (χ² holds: about {0.05 * n:.0f})")
    print(f"Every row's RMS ≤ {league.ACCEPTANCE_RATIO} × Jeans: {'yes' if passed else 'no'}")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

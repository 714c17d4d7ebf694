"""Dust with a known efficiency ε(x) and the weak-form fit: the disk mock's accelerations with and without 1/ε weights.

For each realisation, the solar-neighbourhood disk mock (``validate.DiskMock``: 10⁵ stars in the 2-kpc sphere about
the Sun, MWPotential2014-like truth) is dusted by ``mocks.apply_dust``'s default clouds (4 Gaussian clouds
0.4–1.2 kpc from the Sun within 50 pc of the plane, radii 0.2–0.3 kpc, 90 % of the stars removed at their
centres) and ``validate.DiskMock.model()`` (disk mass and halo density free) is fitted by the weak form three
ways: to the dust-free stars, to the dusted stars as if complete, and to the dusted stars with
``bd.weak_form_data(..., efficiency=dust)`` (each star's moments weighted by 1/ε(x), ε the true efficiency).
Each fit is the two-step GMM estimate with its asymptotic covariance (BᵀS⁻¹B)⁻¹/N carried by the delta method
(``weak_form_disk.closed_form``; no NUTS; ``benchmarks/weak_form_disk.py`` showed that it agrees with NUTS to
0.01 % on a_R at the Sun).

It prints, per realisation and fit, the relative errors and σ of a_R and a_z at the Sun and at z = ±1 kpc,
the error of the acceleration vector at the cloud centres |Δa|/|a| (mean over the clouds), the J test, and
then the RMS over the realisations, and the RMS of the shift the dust causes (each dusted fit minus the dust-free
fit of the same stars' realisation). ε here is the truth: this measures the correction, not learning ε.

    python benchmarks/weak_form_dust.py [--realisations 3] [--stars 100000] [--learnt]

``--learnt`` adds a fourth fit: the dusted stars with ε learnt from them alone by ``benchmarks/dust_weak.py`` (the
weak continuity equation; no truth, no flows), and prints that ε's Pearson with the truth (4–5 min more per
realisation).

About 3 min per realisation on the 2-core Xeon.
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
from weak_form_disk import closed_form  # noqa: E402

FITS = ("dust-free", "dusted, no correction", "dusted, 1/ε weights")
LEARNT = "dusted, learnt ε (dust_weak.py)"


def main(argv=None):
    import jax

    import bayesdyn as bd
    from bayesdyn import validate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realisations", type=int, default=3)
    ap.add_argument("--stars", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=5000, help="mock seed of the first realisation (then +1, +2, …)")
    ap.add_argument("--learnt", action="store_true",
                    help="also fit with ε learnt from the dusted stars by benchmarks/dust_weak.py (no truth used)")
    a = ap.parse_args(argv)
    fits = FITS + ((LEARNT,) if a.learnt else ())
    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    mock = validate.DiskMock()
    model = mock.model()
    errors = {f: [] for f in fits}
    for r in range(a.realisations):
        with jax.enable_x64(True):
            cat, truth = mock.draw(a.stars, a.seed + r)
        dusty, dust = bd.mocks.apply_dust(cat, seed=r)
        sun = np.asarray(cat.solar.position, float)
        X, qs = league.disk_quantities(sun)
        qs = [q for q in qs if q.kind == "acc"]
        clouds = np.asarray(dust.centers)
        points = np.concatenate([X, clouds])
        true_a = np.asarray(truth.acceleration(points), float)
        ball = (np.asarray(truth.sphere_center, float), float(truth.sphere_radius))
        inside = np.linalg.norm(np.asarray(cat.x) - ball[0], axis=1) < ball[1]
        removed = 1 - dusty.n / cat.n
        removed_in = 1 - dust.inside(np.asarray(dusty.x)).sum() / dust.inside(np.asarray(cat.x)).sum()
        print(f"\nr{r}: mock seed {a.seed + r}, dust seed {r}: {cat.n} stars, dust removed {100 * removed:.1f} % "
              f"({100 * removed_in:.0f} % of those within one cloud radius of a centre); clouds at "
              f"{np.round(clouds, 2).tolist()} kpc, radii {np.round(dust.radii, 2).tolist()} kpc; "
              f"{int(inside.sum())} stars in the ball", flush=True)
        runs = [(FITS[0], cat, None), (FITS[1], dusty, None), (FITS[2], dusty, dust)]
        if a.learnt:
            from dust_weak import continuity_weak_efficiency, volume_points

            x, v = np.asarray(dusty.x, float), np.asarray(dusty.v, float)
            inb = np.linalg.norm(x - ball[0], axis=1) < ball[1]
            learnt, linfo = continuity_weak_efficiency(x[inb], v[inb], *ball, log=lambda *q: None)
            vol = volume_points(sun)
            print(f"  learnt ε: Pearson with the true ε over the volume "
                  f"{np.corrcoef(np.asarray(learnt(vol)), np.asarray(dust.efficiency(vol)))[0, 1]:.3f} "
                  f"(λ = {linfo['lam']:g} λ_max, {linfo['seconds']:.0f} s)", flush=True)
            runs.append((LEARNT, dusty, learnt))
        for name, c, eff in runs:
            data = bd.weak_form_data(c, volume=ball, efficiency=eff)
            acc, cov, info = closed_form(model, data, points)
            sd = np.sqrt(np.diag(cov)).reshape(-1, 3)
            row = {}
            for q in qs:
                w = q.weights  # (len(X), 3) functionals on X
                t = float(np.einsum("pi,pi->", true_a[: len(X)], w))
                e = float(np.einsum("pi,pi->", acc[: len(X)], w))
                idx = np.nonzero(np.abs(w).sum(1))[0][0]
                s = float(np.sqrt(w[idx] @ cov[3 * idx:3 * idx + 3, 3 * idx:3 * idx + 3] @ w[idx]))
                row[q.key] = ((e - t) / abs(t), s / abs(t))
            dc = acc[len(X):] - true_a[len(X):]
            cloud_err = np.linalg.norm(dc, axis=1) / np.linalg.norm(true_a[len(X):], axis=1)
            row["clouds"] = (float(np.mean(cloud_err)), float(np.mean(np.linalg.norm(sd[len(X):], axis=1)
                                                                           / np.linalg.norm(true_a[len(X):], axis=1))))
            errors[name].append(row)
            print(f"  {name:24s}: " + ", ".join(f"{k} {100 * v[0]:+.2f} ± {100 * v[1]:.2f} %" for k, v in row.items()
                                                  if k != "clouds")
                  + f"; |Δa|/|a| at the cloud centres {100 * row['clouds'][0]:.2f} % (σ {100 * row['clouds'][1]:.2f} %)"
                  + f"; J = {info['J']:.1f} for {info['dof']} dof (p = {info['p_value']:.2g}), {info['n_stars']} stars"
                  + f"  [{time.time() - t0:.0f} s]", flush=True)
    keys = list(errors[FITS[0]][0])
    print(f"\nRMS over {a.realisations} realisations (relative error, %):\n")
    print("| fit | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name in fits:
        print(f"| {name} | " + " | ".join(
            f"{100 * math.sqrt(np.mean([row[k][0] ** 2 for row in errors[name]])):.2f}" for k in keys) + " |")
    points = [k for k in keys if k != "clouds"]
    print(f"\nShift the dust causes: each dusted fit minus the dust-free fit of the same realisation, RMS over "
          f"{a.realisations} realisations (relative, %):\n")
    print("| fit | " + " | ".join(points) + " |")
    print("|---|" + "---|" * len(points))
    for name in fits[1:]:
        print(f"| {name} | " + " | ".join(
            f"{100 * math.sqrt(np.mean([(row[k][0] - clean[k][0]) ** 2 for row, clean in zip(errors[name], errors[FITS[0]])])):.2f}"
            for k in points) + " |")
    ratio = (math.sqrt(np.mean([row["clouds"][0] ** 2 for row in errors[FITS[1]]]))
             / math.sqrt(np.mean([row["clouds"][0] ** 2 for row in errors[FITS[2]]])))
    print(f"\nAcceleration error at the cloud centres, no correction / 1/ε weights: {ratio:.1f}×")
    if a.learnt:
        ratio = (math.sqrt(np.mean([row["clouds"][0] ** 2 for row in errors[FITS[1]]]))
                 / math.sqrt(np.mean([row["clouds"][0] ** 2 for row in errors[LEARNT]])))
        print(f"Acceleration error at the cloud centres, no correction / learnt ε: {ratio:.1f}×")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

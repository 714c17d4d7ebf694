"""Position errors and the weak-form fit: the disk mock's accelerations with and without ``position_errors=``.

For each realisation, the solar-neighbourhood disk mock (``validate.DiskMock``: 10⁵ stars in the 2-kpc sphere about
the Sun, MWPotential2014-like truth) gets three kinds of measurement error, each drawn once per realisation:

- ``distance 10 % (Gaussian)``: each star moved along its line of sight from the Sun by δd ~ N(0, (0.1 d)²), its
  heliocentric tangential velocity scaled by (d + δd)/d (a proper motion times a wrong distance): the Gaussian,
  x–v correlated error that ``position_errors`` models, with the rank-one 6 × 6 covariance σ_d² u uᵀ,
  u = ∂(x, v)/∂d, at the observed point;
- ``parallax 0.05 mas``: the same, with the error Gaussian in parallax instead (ϖ̃ = 1/d + N(0, 0.05²) mas,
  d̃ = 1/ϖ̃, as Gaia measures it; 5–8 % in distance at 1–1.5 kpc), corrected with the linearised σ_d = d̃² σ_ϖ,
  once with that covariance alone and once with the errors' mean too (E[d̃] − d = d (σ_ϖ d)² to second order, and
  the tangential velocity's mean scaled likewise; what ``Catalog.error_mean`` gives a Gaia catalog);
- ``parallax 0.1 mas``: the same at 10–15 % in distance at 1–1.5 kpc (20 % at the mock's 2-kpc edge);
- ``isotropic 0.1 kpc``: x + N(0, 0.1² I) kpc, velocities exact.

``validate.DiskMock.model()`` (disk mass and halo density free) is fitted by the weak form in the ball of radius
1.5 kpc about the Sun (the mock extends to 2 kpc, so the observed catalog is complete in observed positions inside
the ball) to the error-free stars, and to each observed catalog without and with ``position_errors``, all with the
window (1 − ρ²)³ that the correction needs (``--window-power``). Each fit is the two-step GMM estimate with its
asymptotic covariance (``weak_form_disk.closed_form``; no NUTS).

It prints, per realisation and fit, the relative errors (against the truth) and σ of a_R and a_z at the Sun and at
z = ±1 kpc and the J test; then, over the realisations, the mean shift of each fit from the error-free fit of the
same stars (± its standard error) in units of the error-free fit's σ.

    python benchmarks/weak_form_position_errors.py [--realisations 4] [--stars 100000]

About 4 min per realisation with the first three cases (7 fits) on the 2-core AMD EPYC; about 40 s per fit.
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

CASES = ("distance 10 % (Gaussian)", "parallax 0.05 mas", "isotropic 0.1 kpc", "parallax 0.1 mas")  # (new ones last: the earlier draws stay)
BALL_RADIUS = 1.5  # kpc, inside the mock's 2-kpc sphere


def observe(cat, case: str, rng):
    """(observed catalog, its (N, 6, 6) error covariance at the observed points, the errors' mean (N, 6) there or
    None where it is 0) for one error case."""
    import bayesdyn as bd

    x, v = np.asarray(cat.x, float), np.asarray(cat.v, float)
    sun, v_sun = np.asarray(cat.solar.position, float), np.asarray(cat.solar.v_sun, float)
    if case.startswith("isotropic"):
        sig = 0.1
        cov = np.zeros((len(x), 6, 6))
        cov[:, :3, :3] = sig**2 * np.eye(3)
        return bd.Catalog(x + sig * rng.standard_normal(x.shape), v, solar=cat.solar), cov, None
    s = x - sun
    d = np.linalg.norm(s, axis=1)
    u = s / d[:, None]
    vh = v - v_sun
    vt = vh - np.sum(vh * u, axis=1)[:, None] * u  # heliocentric tangential velocity: ∝ distance at fixed μ
    if case.startswith("distance"):
        d_obs = d * (1 + 0.1 * rng.standard_normal(len(d)))
    else:
        sig_plx = float(case.split()[1])  # mas
        d_obs = 1.0 / (1.0 / d + sig_plx * rng.standard_normal(len(d)))  # ϖ in mas, d in kpc
        if (d_obs <= 0).any():
            raise RuntimeError(f"{int((d_obs <= 0).sum())} parallax draws ≤ 0: choose another seed")
    x_obs = sun + u * d_obs[:, None]
    v_obs = v + (d_obs / d - 1)[:, None] * vt
    # the linearised covariance at the observed point: σ_d² ∂(x, v)/∂d ∂(x, v)/∂dᵀ
    vt_obs = vt * (d_obs / d)[:, None]
    sig_d = 0.1 * d_obs if case.startswith("distance") else sig_plx * d_obs**2
    jac = np.concatenate([u, vt_obs / d_obs[:, None]], axis=1)
    cov = sig_d[:, None, None] ** 2 * jac[:, :, None] * jac[:, None, :]
    # Gaussian parallax errors: E[d̃] − d = d (σ_ϖ d)² and the tangential velocity likewise, at the observed point
    mean = None if case.startswith("distance") else (sig_plx * d_obs)[:, None] ** 2 * np.concatenate(
        [u * d_obs[:, None], vt_obs], axis=1)
    return bd.Catalog(x_obs, v_obs, solar=cat.solar), cov, mean


def main(argv=None):
    import jax

    import bayesdyn as bd
    from bayesdyn import validate

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realisations", type=int, default=4)
    ap.add_argument("--stars", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=5000, help="mock seed of the first realisation (then +1, +2, …)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, metavar="CASE",
                    help=f"error cases to run (default all: {', '.join(repr(c) for c in CASES)})".replace("%", "%%"))
    ap.add_argument("--window-power", type=int, default=3,
                    help="k of the window (1 − ρ²)^k for every fit (position errors need ≥ 3)")
    a = ap.parse_args(argv)
    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    mock = validate.DiskMock()
    model = mock.model()
    hows = {c: ("uncorrected", "corrected") + (("corrected, with the mean",) if c.startswith("parallax") else ())
            for c in a.cases}
    fits = ["error-free"] + [f"{c}, {how}" for c in a.cases for how in hows[c]]
    rows = {f: [] for f in fits}
    for r in range(a.realisations):
        with jax.enable_x64(True):
            cat, truth = mock.draw(a.stars, a.seed + r)
        sun = np.asarray(cat.solar.position, float)
        X, qs = league.disk_quantities(sun)
        qs = [q for q in qs if q.kind == "acc"]
        true_a = np.asarray(truth.acceleration(X), float)
        ball = (sun, BALL_RADIUS)
        print(f"\nr{r}: mock seed {a.seed + r}, {cat.n} stars", flush=True)
        rng = np.random.default_rng([a.seed + r, 7])
        runs = [("error-free", cat, None, None)]
        for case in CASES:  # every case drawn, in order, so that a case's draws do not depend on --cases
            obs, cov, mean = observe(cat, case, rng)
            if case in a.cases:
                runs += [(f"{case}, uncorrected", obs, None, None), (f"{case}, corrected", obs, cov, None)]
                if mean is not None:
                    runs.append((f"{case}, corrected, with the mean", obs, cov, mean))
        for name, c, cov, mean in runs:
            data = bd.weak_form_data(c, volume=ball, position_errors=cov, error_mean=mean,
                                     window_power=a.window_power)
            acc, acov, info = closed_form(model, data, X)
            row = {}
            for q in qs:
                w = q.weights  # (len(X), 3) functionals on X
                t = float(np.einsum("pi,pi->", true_a, w))
                e = float(np.einsum("pi,pi->", acc, w))
                idx = np.nonzero(np.abs(w).sum(1))[0][0]
                s = float(np.sqrt(w[idx] @ acov[3 * idx:3 * idx + 3, 3 * idx:3 * idx + 3] @ w[idx]))
                row[q.key] = ((e - t) / abs(t), s / abs(t))
            rows[name].append(row)
            jax.clear_caches()  # each fit compiles new programs: their memory mappings ran out after 20 fits
            print(f"  {name:50s}: " + ", ".join(f"{k} {100 * v[0]:+.2f} ± {100 * v[1]:.2f} %" for k, v in row.items())
                  + f"; J = {info['J']:.1f} for {info['dof']} dof (p = {info['p_value']:.2g}), {info['n_stars']} "
                  f"stars  [{time.time() - t0:.0f} s]", flush=True)
    keys = list(rows["error-free"][0])
    R = a.realisations
    print(f"\nShift from the error-free fit of the same stars, in units of its σ: mean ± standard error over {R} "
          "realisations (relative shift in % in brackets)\n")
    print("| fit | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name in fits[1:]:
        cells = []
        for k in keys:
            z = np.array([(row[k][0] - ref[k][0]) / ref[k][1] for row, ref in zip(rows[name], rows["error-free"])])
            rel = np.array([row[k][0] - ref[k][0] for row, ref in zip(rows[name], rows["error-free"])])
            se = z.std(ddof=1) / math.sqrt(R) if R > 1 else float("nan")
            cells.append(f"{z.mean():+.2f} ± {se:.2f} ({100 * rel.mean():+.2f} %)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    sig = {k: 100 * np.mean([row[k][1] for row in rows["error-free"]]) for k in keys}
    print("\nerror-free fit's mean σ (%): " + ", ".join(f"{k} {v:.2f}" for k, v in sig.items()))
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

"""Measurement errors on the solar-neighbourhood disk mock: their bias, and the SIMEX correction.

For each realisation (the seeds of realisation r of ``benchmarks/calibration.py --mock
disk``): draw the mock (error-free truth), make an "observed" catalog by adding Gaussian
velocity errors of ε km/s per component (``bd.dynamics.resmear``), and fit flows
(``fit_psd`` at its defaults, ≤ 30 epochs, as the calibration runs) to

  1. the error-free catalog (the flows' own error, for reference),
  2. the observed catalog, uncorrected,
  3. the observed catalog corrected with ``bd.correct_measurement_errors`` (re-smeared
     copies, leading-order extrapolation to zero error),

then estimate the accelerations at the calibration's 64 nodes and run ``bd.infer`` with
the mock's model. Prints, per case, the node errors of a_R and a_z against the truth
(median relative error, mean signed error in units of |a_true|, pulls) and the
posterior of ρ_tot(⊙), ρ_DM(⊙) and K_z(1.1 kpc) against the truth.

    python benchmarks/measurement_errors.py --velocity-error 10 --copies 2 --realisations 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import bayesdyn as bd
from bayesdyn.dynamics import resmear
from bayesdyn.validate._coverage import _seeds
from bayesdyn.validate._mocks import DiskMock
from bayesdyn.validate._quantities import evaluate_draws

from _machine import machine

QUANTITIES = ("rho_total_sun", "rho_dm_sun", "Kz_1p1kpc")


def node_errors(data, x, a_true):
    """a_R and a_z at the nodes against the truth: median |rel. err|, mean signed err / |a_true|, rms pull."""
    R = np.hypot(x[:, 0], x[:, 1])
    eR = np.stack([x[:, 0] / R, x[:, 1] / R, np.zeros_like(R)], axis=1)
    a, cov = np.asarray(data.a), np.asarray(data.cov)
    out = {}
    for name, e in (("a_R", eR), ("a_z", np.tile([0.0, 0.0, 1.0], (len(x), 1)))):
        est, tru = np.sum(a * e, 1), np.sum(a_true * e, 1)
        sd = np.sqrt(np.einsum("pi,pij,pj->p", e, cov, e))
        scale = np.linalg.norm(a_true, axis=1)  # a_z passes through 0 in the plane: measure against |a|
        out[name] = {
            "median_abs_err_over_abs_a": float(np.median(np.abs(est - tru) / scale)),
            "mean_err_over_abs_a": float(np.mean((est - tru) / scale)),
            "rms_pull": float(np.sqrt(np.mean(((est - tru) / sd) ** 2))),
        }
    return out


def posterior(mock, data, seed):
    model = mock.model()
    post = bd.infer(model, data, seed=seed, num_chains=2, num_warmup=500, num_samples=1000, progress=False)
    qs = mock.quantities()
    draws = evaluate_draws(model, post.samples, {q: qs[q].fn for q in QUANTITIES})
    out = {}
    for q in QUANTITIES:
        d = np.ravel(draws[q])
        lo68, hi68, lo95, hi95, med = np.quantile(d, [0.16, 0.84, 0.025, 0.975, 0.5])
        t = qs[q].truth
        out[q] = {"truth": float(t), "median": float(med), "rel_err": float(med / t - 1), "q16": float(lo68),
                  "q84": float(hi68), "q2.5": float(lo95), "q97.5": float(hi95), "in68": bool(lo68 <= t <= hi68),
                  "in95": bool(lo95 <= t <= hi95)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realisations", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="first realisation")
    ap.add_argument("--n-stars", type=int, default=50_000)
    ap.add_argument("--velocity-error", type=float, default=10.0, help="σ per velocity component [km/s]")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    print(machine(), flush=True)
    mock = DiskMock()
    eps = args.velocity_error
    rows = []
    for r in range(args.first, args.first + args.realisations):
        t0 = time.perf_counter()
        seeds = _seeds(0, r)
        with jax.enable_x64(True):
            truth_cat, truth = mock.draw(args.n_stars, seeds["mock"])
            x = mock.nodes(truth_cat, 64, seeds["nodes"])
            a_true = np.asarray(truth.acceleration(x), float)
        observed = resmear(truth_cat, seeds["mock"] + 1, velocity_error=eps)

        def fit(cat):
            with jax.enable_x64(False):
                return bd.fit_psd(cat, seed=seeds["psd"], max_epochs=args.max_epochs, progress=False)

        with jax.enable_x64(True):
            clean = bd.estimate_accelerations(fit(truth_cat), x, n_velocities=256, seed=seeds["accel"],
                                              sun=mock.sun(truth_cat))
            res = bd.correct_measurement_errors(observed, fit, x, n_copies=args.copies, seed=seeds["accel"],
                                                velocity_error=eps, n_velocities=256, sun=mock.sun(truth_cat))
        print(f"realisation {r}: {res.summary()}", flush=True)
        row = {"realisation": r, "velocity_error_kms": eps, "copies": args.copies, "n_stars": args.n_stars,
               # the flows' design (fit_psd's default pairing changed on 2026-12-07): K and the resample groups
               "flows": {"ensemble": res.observed.n_members,
                         "member_groups": None if res.observed.member_groups is None
                         else np.asarray(res.observed.member_groups).tolist()}}
        for name, data in (("error-free", clean), ("observed", res.observed), ("corrected", res.corrected)):
            with jax.enable_x64(True):
                row[name] = {"nodes": node_errors(data, x, a_true), "posterior": posterior(mock, data, seeds["nuts"])}
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"\nrealisation {r} (ε = {eps:g} km/s per component, {args.copies} copies, {args.n_stars} stars, "
              f"{row['seconds']:.0f} s)")
        print(f"{'case':<11} {'a_R med|err|':>13} {'a_R mean err':>13} {'a_R rms pull':>13} "
              f"{'a_z med|err|':>13} {'a_z mean err':>13} {'a_z rms pull':>13}   "
              "(errors in units of |a_true|; pulls in units of σ)")
        for name in ("error-free", "observed", "corrected"):
            nd = row[name]["nodes"]
            print(f"{name:<11} " + " ".join(
                f"{nd[c][k]:>13.4f}" for c in ("a_R", "a_z")
                for k in ("median_abs_err_over_abs_a", "mean_err_over_abs_a", "rms_pull")))
        print(f"{'case':<11} " + " ".join(f"{q + ' rel.err [68 %] in95':>40}" for q in QUANTITIES))
        for name in ("error-free", "observed", "corrected"):
            ps = row[name]["posterior"]
            print(f"{name:<11} " + " ".join(
                f"{ps[q]['rel_err']:+8.3f} [{ps[q]['q16'] / ps[q]['truth'] - 1:+.3f}, "
                f"{ps[q]['q84'] / ps[q]['truth'] - 1:+.3f}] {'yes' if ps[q]['in95'] else 'no':>3}".rjust(40)
                for q in QUANTITIES))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

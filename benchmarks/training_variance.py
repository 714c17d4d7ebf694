"""How much of the flow ensemble's spread is training variance, and does longer training shrink it?

On one realisation of the calibration's NFW-tracer mock (same seeds as realisation r of
``benchmarks/calibration.py --mock nfw``), fits K-member ensembles with and without
bootstrap resampling and with different epoch budgets, estimates the accelerations
at the harness's nodes from shared velocity draws, and fits each member's radial
accelerations with an NFW halo by weighted least squares (weights 1/(σ² + (0.02 a_true)²):
each node's σ with a 2 % floor; a fast stand-in for the
per-member NUTS posteriors of ``bd.infer``; the calibration's Rubin combination sees
the members through exactly these per-member estimates). Prints, per setting, the
between-member variance of log ρ_s, log r_s and log ρ(r_s) and the node-level spread
of a_r/a_r,true.

    python benchmarks/training_variance.py --realisation 0 --epochs 30 90
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.optimize import least_squares

import bayesdyn as bd
from bayesdyn import units
from bayesdyn.validate._coverage import _seeds
from bayesdyn.validate._mocks import NFWMock

from _machine import machine


def nfw_ar(r, log_rho, log_rs):
    rho, rs = np.exp(log_rho), np.exp(log_rs)
    s = r / rs
    m = 4 * np.pi * rho * rs**3 * (np.log1p(s) - s / (1 + s))
    return -units.G * m / r**2


def member_fit(r, ar, sd):
    res = least_squares(lambda p: (nfw_ar(r, *p) - ar) / sd, x0=[np.log(1e7), np.log(10.0)])
    lr, lrs = res.x
    s = 10.0 / np.exp(lrs)
    rho_true_rs = np.exp(lr) / (s * (1 + s) ** 2)
    return np.array([lr, lrs, np.log(rho_true_rs)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realisation", type=int, default=0)
    ap.add_argument("--n-stars", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, nargs="+", default=[30, 90])
    ap.add_argument("--ensemble", type=int, default=4)
    ap.add_argument("--bootstrap", choices=["both", "yes", "no"], default="both")
    args = ap.parse_args()
    print(machine())
    mock = NFWMock()
    seeds = _seeds(0, args.realisation)
    catalog, truth = mock.draw(args.n_stars, seeds["mock"])
    x = mock.nodes(catalog, 64, seeds["nodes"])
    r = np.linalg.norm(x, axis=1)
    a_true = np.asarray(truth.acceleration(x), np.float64)
    ar_true = np.sum(a_true * x, axis=1) / r
    boots = {"both": [True, False], "yes": [True], "no": [False]}[args.bootstrap]
    print(f"realisation {args.realisation}: {args.n_stars} stars, {len(x)} nodes, K = {args.ensemble}")
    print("setting                       | epochs run | var log ρ_s | var log r_s | var log ρ(r_s) | node sd a_r/a_true | seconds")
    for epochs in args.epochs:
        for boot in boots:
            t0 = time.perf_counter()
            with jax.enable_x64(False):
                psd = bd.psd.fit_psd(catalog, ensemble=args.ensemble, seed=seeds["psd"], max_epochs=epochs,
                                     bootstrap=boot, seeds_per_resample=1, progress=False)
            data = bd.dynamics.estimate_accelerations(psd, x, n_velocities=256, seed=seeds["accel"])
            mem = np.asarray(data.members, np.float64)  # (K, P, 3)
            mcov = np.asarray(data.member_cov, np.float64)
            rhat = x / r[:, None]
            ar = np.einsum("kpi,pi->kp", mem, rhat)
            var_ar = np.einsum("pi,kpij,pj->kp", rhat, mcov, rhat)
            est = np.array([member_fit(r, ar[k], np.sqrt(var_ar[k] + (0.02 * ar_true) ** 2))
                            for k in range(len(ar))])
            v = est.var(axis=0, ddof=1)
            node_sd = np.sqrt(np.mean(np.var(ar / ar_true, axis=0, ddof=1)))
            dt = time.perf_counter() - t0
            name = f"{'bootstrap' if boot else 'same stars'}, max_epochs {epochs}"
            print(f"{name:29s} | {psd.info['epochs']:10d} | {v[0]:.2e}    | {v[1]:.2e}    | {v[2]:.2e}       "
                  f"| {node_sd:.4f}             | {dt:.0f}", flush=True)
            print(f"    member log-estimates − truth: ρ_s {np.round(est[:, 0] - np.log(1e7), 3).tolist()}, "
                  f"r_s {np.round(est[:, 1] - np.log(10.0), 3).tolist()}", flush=True)


if __name__ == "__main__":
    main()

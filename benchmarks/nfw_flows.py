"""Issue 4 acceptance with flows: tracers in an NFW halo → flows → accelerations → NUTS.

Spherical tracer mock (Zhao tracer, isotropic Eddington DF) in an NFW halo with
ρ_s = 1e7 M☉/kpc³, r_s = 10 kpc; N stars (default 10⁵); an ensemble of flows;
accelerations at nodes drawn from the catalog within 2–20 kpc of the centre; NUTS on
NFW(ρ_s, r_s). Prints the posterior of the density at r = r_s = 10 kpc against the
truth (ρ_s/4 = 2.5e6 M☉/kpc³), the halo parameters, timings and the machine.

    python benchmarks/nfw_flows.py [--n 100000] [--ensemble 4] [--epochs 60] [--combine members mean]
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np
import numpyro.distributions as dist

import bayesdyn as bd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine  # noqa: E402  (benchmarks/_machine.py: CPU model, load, JAX backend)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--ensemble", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bootstrap", action="store_true", help="members differ by seed only (no bootstrap resamples)")
    ap.add_argument("--combine", nargs="+", default=["members", "mean"], help="bd.infer combine option(s) to compare")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    t0 = time.perf_counter()
    cat, truth = bd.mocks.spherical_tracer(n=args.n, seed=args.seed, halo="nfw", halo_density=1e7, halo_scale_radius=10.0)
    print(f"mock: {cat.n} stars in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    psd = bd.fit_psd(cat, ensemble=args.ensemble, seed=args.seed, max_epochs=args.epochs, progress=False,
                     bootstrap=not args.no_bootstrap)
    print(f"flows: {time.perf_counter() - t0:.1f} s\n{psd.summary()}")
    r = np.linalg.norm(cat.x, axis=1)
    pool = cat.x[(r > 2.0) & (r < 20.0)]
    nodes = bd.dynamics.default_nodes(pool, args.nodes, args.seed)
    t0 = time.perf_counter()
    data = bd.estimate_accelerations(psd, nodes, n_velocities=512, seed=args.seed)
    a_true = np.asarray(truth.acceleration(nodes))
    rel = np.linalg.norm(np.asarray(data.a) - a_true, axis=1) / np.linalg.norm(a_true, axis=1)
    print(f"accelerations: {time.perf_counter() - t0:.1f} s; median |â − a|/|a| = {np.median(rel):.3f}")
    model = bd.PotentialModel(halo=bd.potentials.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.Uniform(1.0, 50.0)))
    for combine in args.combine:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True):
            post = bd.infer(model, data, seed=args.seed, num_chains=4, num_warmup=500, num_samples=1000, progress=False,
                            combine=combine)
        print(f"\n== combine={combine!r}: NUTS {time.perf_counter() - t0:.1f} s")
        print(post.summary()[["median", "q2.5", "q97.5", "r_hat", "ess_bulk"]].loc[["halo.scale_density", "halo.scale_radius"]])
        if "combine" in post.info:
            c = post.info["combine"]
            print(f"members: t dof {c['dof']:.2f}; between-member share {c['between_fraction']}; "
                  f"member r̂ {np.round(c['member_max_r_hat'], 4).tolist()}")
        rs, rhos = post.samples["halo.scale_radius"].reshape(-1), post.samples["halo.scale_density"].reshape(-1)
        u = 10.0 / rs
        rho10 = rhos / (u * (1 + u) ** 2)
        lo, med, hi = np.percentile(rho10, [2.5, 50, 97.5])
        t = 2.5e6
        print(f"density at r = r_s = 10 kpc [Msun/kpc^3]: truth {t:.4g}; median {med:.4g} ({(med / t - 1) * 100:+.1f} %), "
              f"95 % [{lo:.4g}, {hi:.4g}] -> inside: {lo <= t <= hi}; within 10 %: {abs(med / t - 1) < 0.1}")


if __name__ == "__main__":
    main()

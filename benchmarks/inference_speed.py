"""Wall time of a 4-chain × 1000-draw NUTS posterior with the acceleration likelihood.

Model: the default run model (NFW halo density, disk mass and dark-disk surface
density free; bulge fixed: 3 free parameters), data: MWPotential2014 accelerations
at 64 nodes within 1 kpc of the Sun with 3 % Gaussian errors. Prints the time for
NumPyro and BlackJAX (500 warm-up + 1000 draws per chain, chains vectorised), the
machine and its load, and whether the truth is inside the 95 % intervals; then the
default for a flow ensemble, one posterior per member (K = 4, each member's field
= truth × (1 + 2 % scale) + noise) combined by Rubin's rules.

    python benchmarks/inference_speed.py
"""

import os
import sys
import time
import warnings

import numpy as np

from bayesdyn.inference import AccelerationData, infer
from bayesdyn.pipeline import DEFAULT_CONFIG, build_model
from bayesdyn.potentials import MWPotential2014

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine  # noqa: E402  (benchmarks/_machine.py: CPU model, load, JAX backend)


def main():
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()  # (--help ran the benchmark)
    rng = np.random.default_rng(0)
    sun = np.array([-8.0, 0.0, 0.0208])
    x = sun + rng.normal(size=(64, 3)) * 0.5
    a_true = np.asarray(MWPotential2014().acceleration(x))
    sig = 0.03 * np.linalg.norm(a_true, axis=1)
    a = a_true + sig[:, None] * rng.normal(size=a_true.shape)
    data = AccelerationData.create(x, a, sig[:, None, None] ** 2 * np.eye(3), sun=sun)
    model = build_model(DEFAULT_CONFIG["model"])
    print(f"machine: {machine()}")
    print(f"model: {model}")
    for backend in ("numpyro", "blackjax"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            post = infer(model, data, seed=0, num_chains=4, num_warmup=500, num_samples=1000, backend=backend, progress=False)
            dt = time.perf_counter() - t0
        t = post.summary()
        print(f"\n{backend}: 4 chains × (500 + 1000) draws in {dt:.1f} s (target ≤ 60 s); "
              f"max r̂ {t['r_hat'].max():.4f}, min bulk ESS {t['ess_bulk'].min():.0f}, divergences {post.info['num_divergences']}")
        truth = {"halo.scale_density": 8.4868e6, "disk.mass": 6.8194e10}
        for k, v in truth.items():
            inside = t.loc[k, "q2.5"] <= v <= t.loc[k, "q97.5"]
            print(f"  {k}: median {t.loc[k, 'median']:.4g} (truth {v:.4g}), 95 % [{t.loc[k, 'q2.5']:.4g}, {t.loc[k, 'q97.5']:.4g}] inside={inside}")
        print(f"  warnings: {[str(x.message)[:80] for x in w if 'Convergence' in type(x.message).__name__]}")

    # the default for a flow ensemble: one posterior per member (K = 4), combined by Rubin's rules
    k = 4
    members = a_true[None] * (1 + 0.02 * rng.normal(size=(k, 1, 1))) + sig[None, :, None] * rng.normal(size=(k, 64, 3))
    cov = sig[:, None, None] ** 2 * np.eye(3)
    ens = AccelerationData.create(x, members.mean(0), cov, sun=sun, members=members,
                                  member_cov=np.broadcast_to(cov, (k,) + cov.shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        post = infer(model, ens, seed=0, num_chains=4, num_warmup=500, num_samples=1000, progress=False)
        dt = time.perf_counter() - t0
    c = post.info["combine"]
    print(f"\nnumpyro, combine='members' (default for an ensemble), K = {k} members × 4 chains × (500 + 1000) draws: "
          f"{dt:.1f} s (target ≤ 60 s); per member {[round(t, 1) for t in post.info['member_wall_time_s']]} s "
          f"(the first includes compilation); member r̂ {[round(r, 4) for r in c['member_max_r_hat']]}")
    print(f"machine (end): {machine()}")


if __name__ == "__main__":
    main()

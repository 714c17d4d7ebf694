"""Time of a weak-form NUTS fit on the per-star path (a model not linear in its parameters), with and without
position errors.

When every free parameter is a component's amplitude, the weak form's moments are linear in them and a NUTS step
costs O(K M); otherwise (a scale radius free) every step evaluates the model at every star. With position errors it
also needs the field's Jacobian and tr(C ∇²a) there (``WeakFormData.field``), i.e. third derivatives of Φ. This
script fits an exact Plummer sphere (b = 1 kpc, 10⁴ stars in the 2.5-kpc ball) with mass and scale radius free, once
without position errors (the peer, measured in the same run) and once with isotropic σ_x = 0.1 kpc errors
(cubic window for both), and prints the wall time of the mode search plus NUTS and the posterior
medians (median ± standard deviation; in a ball about the centre the data barely separate M and b, so these
are wide and the chain short: this is a timing).

    python benchmarks/weak_form_per_star_timing.py [--stars 10000] [--warmup 250] [--samples 250]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

MASS, B = 1e10, 1.0  # M☉, kpc
from bayesdyn.units import G  # noqa: E402  kpc (km/s)² / M☉


def plummer_sphere(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An exact sample of the isotropic Plummer sphere (Aarseth, Hénon & Wielen 1974), as in the tests."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(1e-6, 1 - 1e-6, n)
    r = B / np.sqrt(m ** (-2 / 3) - 1)
    q = np.empty(0)
    while q.size < n:  # g(q) = q²(1 − q²)^{7/2} ≤ 0.1 on [0, 1]
        u, y = rng.uniform(0, 1, 4 * n), rng.uniform(0, 0.1, 4 * n)
        q = np.concatenate([q, u[y < u**2 * (1 - u**2) ** 3.5]])
    speed = q[:n] * np.sqrt(2 * G * MASS / np.sqrt(r**2 + B**2))

    def directions():
        d = rng.normal(size=(n, 3))
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    return r[:, None] * directions(), speed[:, None] * directions()


def main(argv=None):
    import numpyro.distributions as dist

    import bayesdyn as bd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stars", type=int, default=10_000, help="stars drawn (those inside the 2.5-kpc ball are fitted)")
    ap.add_argument("--warmup", type=int, default=250)
    ap.add_argument("--samples", type=int, default=250)
    a = ap.parse_args(argv)
    print(f"# machine: {machine()}", flush=True)
    x, v = plummer_sphere(a.stars, seed=1)
    sig = 0.1
    noisy = bd.Catalog(x + sig * np.random.default_rng(101).normal(size=x.shape), v)
    model = bd.PotentialModel(halo=bd.potentials.Plummer(mass=dist.LogUniform(1e9, 1e11),
                                                         scale_radius=dist.Uniform(0.3, 3.0)), dark=())
    ball = ((0.0, 0.0, 0.0), 2.5)
    print("| fit | stars | wall [s] | mass [1e10 M☉] | b [kpc] |\n|---|---|---|---|---|")
    for name, cat, kw in (("no position errors (peer)", bd.Catalog(x, v), dict(window_power=3)),
                          ("position errors σ_x = 0.1 kpc", noisy, dict(position_errors=np.full(x.shape, sig)))):
        data = bd.weak_form_data(cat, volume=ball, **kw)
        t0 = time.perf_counter()
        post = bd.infer(model, data, num_chains=1, num_warmup=a.warmup, num_samples=a.samples, progress=False,
                        seed=0)
        wall = time.perf_counter() - t0
        m = np.asarray(post.samples["halo.mass"]).ravel() / 1e10
        b = np.asarray(post.samples["halo.scale_radius"]).ravel()
        print(f"| {name} | {data.n_stars} | {wall:.0f} | {np.median(m):.3f} ± {m.std():.3f} | {np.median(b):.3f} ± {b.std():.3f} |", flush=True)
    print(f"\n(wall: weights, mode search and one chain of {a.warmup} + {a.samples} steps)\n# {machine()}")


if __name__ == "__main__":
    main()

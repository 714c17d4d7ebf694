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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_weak_form import plummer_sphere  # noqa: E402  the tests' exact Plummer sample (M = 10¹⁰ M☉, b = 1 kpc)


def main(argv=None):
    import numpyro.distributions as dist

    import bayesdyn as bd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stars", type=int, default=10_000, help="stars drawn (those inside the 2.5-kpc ball are fitted)")
    ap.add_argument("--warmup", type=int, default=250)
    ap.add_argument("--samples", type=int, default=250)
    a = ap.parse_args(argv)
    print(f"# machine: {machine()}", flush=True)
    x, v = plummer_sphere(a.stars, seed=1)  # as tests/test_weak_form.py's position-error test
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

"""What the weak-form fit's over-identification test sees: an exact Plummer sphere and five kinds of misfit.

The stars: an exact sample of the self-consistent isotropic Plummer sphere (M = 10¹⁰ M☉, b = 1 kpc;
``tests/test_weak_form.py::plummer_sphere``), cut to the 2.5-kpc ball about its centre. The model: a Plummer
sphere at the origin with its mass free (log-uniform 10⁹–10¹¹ M☉) and b fixed. For the right model and for
models or data that break one assumption — b fixed 0.5× or 3× too large, the stars' centre 0.3 kpc off the
model's, a bulk velocity of 20 km/s (a wrong solar motion) — it prints the GMM mode of the mass
(``bd.inference.weak_form_weights``, two-step weights) and the J statistic with its χ² p-value. No NUTS.

    python benchmarks/weak_form_misfit.py [--stars 20000] [--seeds 3]

About 10 s per case on the 2-core Xeon.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _machine import machine  # noqa: E402
from test_weak_form import B, MASS, plummer_sphere  # noqa: E402

CASES = {
    "right model": dict(),
    "b fixed at 0.5 × the truth": dict(b=0.5),
    "b fixed at 3 × the truth": dict(b=3.0),
    "stars' centre 0.3 kpc off the model's": dict(shift=0.3),
    "bulk velocity 20 km/s (wrong solar motion)": dict(bulk=20.0),
}


def main(argv=None):
    import numpyro.distributions as dist

    import bayesdyn as bd
    from bayesdyn.inference import weak_form_weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stars", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3, help="independent samples per case")
    a = ap.parse_args(argv)
    t0 = time.time()
    print(f"# machine: {machine()}")
    print("| case | seed | mass mode / truth | J (dof) | p |")
    print("|---|---|---|---|---|")
    for name, c in CASES.items():
        for seed in range(a.seeds):
            x, v = plummer_sphere(a.stars, seed=seed)
            x = x + np.array([c.get("shift", 0.0), 0.0, 0.0])
            v = v + np.array([c.get("bulk", 0.0), 0.0, 0.0])
            cat = bd.Catalog(x, v).within(2.5, center=(0.0, 0.0, 0.0))
            model = bd.PotentialModel(halo=bd.potentials.Plummer(mass=dist.LogUniform(1e9, 1e11),
                                                                 scale_radius=c.get("b", 1.0) * B))
            _, w = weak_form_weights(model, bd.weak_form_data(cat))
            print(f"| {name} | {seed} | {w['mode']['halo.mass'] / MASS:.3f} | {w['J']:.1f} ({w['dof']}) | "
                  f"{w['p_value']:.2g} |", flush=True)
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

"""How-to: a spherical system — tracers in an NFW halo → CBE accelerations → NUTS on ρ_s and r_s.

    python examples/spherical_nfw.py [--tiny] [--out posterior.nc]

Uses the mock's exact scores in place of flows (docs/howto/spherical.md), so any bias
left belongs to the dynamics and inference stages.
Default: 20 000 tracers, 64 nodes × 64 velocities, 2 chains × (300 + 500) draws, about
a minute on two cores. ``--tiny`` (or BAYESDYN_EXAMPLES_TINY=1): 3000 tracers, 24 nodes,
1 chain × (150 + 200) draws — seconds, for the test suite; the recovery is still
within a few per cent.
"""

import argparse
import os

import jax
import numpyro.distributions as dist

from bayesdyn import mocks, potentials
from bayesdyn.dynamics import ExactScores, estimate_accelerations
from bayesdyn.inference import PotentialModel, infer

TRUE_DENSITY, TRUE_RADIUS = 1e7, 10.0  # the mock's NFW halo [M☉/kpc³], [kpc]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("BAYESDYN_EXAMPLES_TINY") == "1",
                    help="seconds-scale settings for smoke tests (numbers less precise)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="save the posterior (NetCDF)")
    args = ap.parse_args(argv)
    n_stars, n_nodes, n_vel = (3_000, 24, 32) if args.tiny else (20_000, 64, 64)
    chains, warmup, samples = (1, 150, 200) if args.tiny else (2, 300, 500)

    with jax.enable_x64(True):  # exact scores deserve float64
        # 1. the mock: Zhao tracers, isotropic, in an NFW halo with ρ_s = 1e7 M☉/kpc³, r_s = 10 kpc
        cat, truth = mocks.spherical_tracer(n=n_stars, seed=1, halo="nfw")
        # 2. accelerations from the CBE at catalog positions, with a 1 % error floor
        data = estimate_accelerations(ExactScores(truth, cat), n_nodes=n_nodes, n_velocities=n_vel,
                                      seed=args.seed, floor=0.01)
        # 3. an NFW model with broad priors, and its posterior
        model = PotentialModel(
            halo=potentials.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.Uniform(1.0, 50.0)),
        )
        post = infer(model, data, seed=args.seed, num_chains=chains, num_warmup=warmup, num_samples=samples,
                     progress=False)
    table = post.summary()
    print(post.to_markdown())
    for name, true, unit in (("halo.scale_density", TRUE_DENSITY, "Msun/kpc3"), ("halo.scale_radius", TRUE_RADIUS, "kpc")):
        r = table.loc[name]
        print(f"{name} = {r['median']:.4g} [{r['q16']:.4g}, {r['q84']:.4g}] {unit} (68 %); truth {true:g} {unit}; "
              f"pull {(r['median'] - true) / r['sd']:+.1f} sd")
    if args.out:
        post.save(args.out)
        print(f"wrote {args.out}")
    return post


if __name__ == "__main__":
    main()

"""How-to: upper limits on a thin dark disk's surface density Σ_DD as a function of its scale height h_DD.

    python examples/dark_disk_limits.py [--tiny] [--out FOLDER]

The disk mock's exact scores (no flows; needs galpy) → accelerations at nodes near the
Sun → baryons + NFW halo + dark disk → for each h_DD, NUTS with h_DD fixed → the 95 %
quantile of Σ_DD (docs/howto/dark-disk.md). The mock has **no** dark disk, so the
limits are the sensitivity of these data. Default: 64 nodes, h_DD = 25, 50, 100, 200 pc,
4 chains × (500 + 2000) draws per refit, about 3 minutes on two cores. ``--tiny`` (or
BAYESDYN_EXAMPLES_TINY=1): 12 nodes, one scale height (100 pc), two short chains —
under a minute, for the test suite (the limits are looser and the chains not converged).
"""

import argparse
import os
import warnings
from pathlib import Path

import jax
import numpyro.distributions as dist

from bayesdyn import mocks, potentials
from bayesdyn.dynamics import ExactScores, default_nodes, estimate_accelerations
from bayesdyn.inference import PotentialModel
from bayesdyn.results import ConvergenceWarning, dark_disk_limits, plot_dark_disk_limits

PRIOR_MAX = 30e6  # the Σ_DD prior's upper edge [M☉/kpc²] = 30 M☉/pc²


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("BAYESDYN_EXAMPLES_TINY") == "1",
                    help="seconds-scale settings for smoke tests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for dark_disk_limits.csv and dark_disk_limits.png")
    args = ap.parse_args(argv)
    n_nodes, n_vel = (12, 16) if args.tiny else (64, 64)
    heights = [0.1] if args.tiny else [0.025, 0.05, 0.1, 0.2]  # h_DD [kpc]
    # --tiny: chains too short to converge, so no restart from the mode either (seconds, not a result)
    runs = dict(num_chains=2, num_warmup=100, num_samples=150, restart=False) if args.tiny else dict(num_samples=2000)

    cat, truth = mocks.load_default()
    sun = cat.solar.position
    nodes = default_nodes(cat.x, n_nodes, seed=args.seed, center=sun, radius=1.5)
    mw = potentials.MWPotential2014()
    model = PotentialModel(
        bulge=mw["bulge"],
        disk=potentials.MiyamotoNagai(mass=dist.TruncatedNormal(6.8e10, 6.8e9, low=0.0), a=3.0, b=0.28),
        halo=potentials.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=16.0),
        dark_disk=potentials.DarkDisk(surface_density=dist.Uniform(0.0, PRIOR_MAX), scale_height=0.05),
    )
    with jax.enable_x64(True):
        data = estimate_accelerations(ExactScores(truth, cat), x=nodes, n_velocities=n_vel, seed=args.seed,
                                      floor=0.01, sun=sun)
        with warnings.catch_warnings():
            if args.tiny:  # short chains: their convergence warnings are expected
                warnings.simplefilter("ignore", ConvergenceWarning)
            limits = dark_disk_limits(model, data, scale_heights=heights, q=0.95, seed=args.seed, progress=False, **runs)
    print(limits.to_string(float_format=lambda v: f"{v:.3g}"))
    for h, row in limits.iterrows():
        print(f"h_DD = {h * 1e3:.0f} pc: Sigma_DD < {row['Sigma_DD_upper_Msun_pc2']:.2f} Msun/pc^2 (95 %), "
              f"max r_hat {row['max_r_hat']:.3f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        limits.to_csv(out / "dark_disk_limits.csv")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.close(plot_dark_disk_limits(limits, out / "dark_disk_limits.png"))
        print(f"wrote {out}/dark_disk_limits.csv and dark_disk_limits.png")
    return limits


if __name__ == "__main__":
    main()

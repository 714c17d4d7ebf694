"""Make the embedded default mock: a quasi-isothermal disk in MWPotential2014 around the Sun.

Run as ``python -m bayesdyn.data.make_disk_mock`` (needs galpy). With the
defaults it rewrites ``bayesdyn/data/disk_mock.npz``, the file
:func:`bayesdyn.mocks.load_default` reads: 10⁵ stars in a 2 kpc sphere, seed 42.
The same arguments give the same file (bar the timing fields of the header).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np

DEFAULT_N = 100_000
DEFAULT_SEED = 42
DEFAULT_RADIUS_KPC = 2.0


def main(argv: list[str] | None = None) -> Path:
    """Generate and save a disk mock; print the sampler's statistics. Returns the path written."""
    import bayesdyn
    from bayesdyn.mocks import solar_neighbourhood_disk
    from bayesdyn.mocks._default import DEFAULT_MOCK_PATH, save_disk_mock

    ap = argparse.ArgumentParser(prog="python -m bayesdyn.data.make_disk_mock", description=__doc__)
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="number of stars (default 100000)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 42)")
    ap.add_argument("--radius", type=float, default=DEFAULT_RADIUS_KPC, help="sphere radius around the Sun [kpc]")
    ap.add_argument("--out", type=Path, default=DEFAULT_MOCK_PATH, help="output .npz")
    args = ap.parse_args(argv)

    import galpy

    cat, truth = solar_neighbourhood_disk(args.n, args.seed, radius=args.radius)
    stats = cat.meta["sampler"]
    header = {
        "seed": args.seed,
        "generator": "python -m bayesdyn.data.make_disk_mock "
        f"--n {args.n} --seed {args.seed} --radius {args.radius}",
        "generator_version": bayesdyn.__version__,
        "galpy_version": galpy.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sampler": stats,
        "description": (
            "quasi-isothermal disk DF (galpy quasiisothermaldf, actionAngleStaeckel delta=3.6 kpc) in "
            "MWPotential2014 (ro=8 kpc, vo=220 km/s), stars within radius_kpc of the Sun; right-handed astropy "
            "Galactocentric frame, Sun at R=8 kpc, rotation with v_y>0 at the Sun"
        ),
    }
    path = save_disk_mock(args.out, cat, truth, header)
    size = path.stat().st_size / 1e6
    print(
        f"wrote {path} ({size:.2f} MB): {cat.n} stars, seed {args.seed}, radius {args.radius} kpc\n"
        f"sampler: wall {stats['wall_s']} s, cpu {stats['cpu_s']} s, {stats['n_proposed']} proposals, "
        f"acceptance {stats['acceptance']:.3f}, bound raises {stats['n_bound_raises']}, "
        f"fraction of proposals over the bound in force {stats['fraction_exceeded_bound']:.2e}, "
        f"max ratio / final bound {stats['max_ratio_over_final_bound']:.3f}"
    )
    return path


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

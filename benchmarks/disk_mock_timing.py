"""Time the solar-neighbourhood disk mock: bayesdyn's rejection sampler vs galpy's sampleV_interpolate.

Run: ``python benchmarks/disk_mock_timing.py [--n 100000] [--peer-n 2000] [--skip-peer]``

bayesdyn draws positions *and* velocities from the quasi-isothermal DF inside a
2 kpc sphere around the Sun. galpy has no position sampler for this DF; its
``quasiisothermaldf.sampleV_interpolate`` draws velocities at given (R, z). The
peer is timed on the positions of ``--peer-n`` of our stars (its interpolation
grid spans the same R, z range) at two sizes, so its fixed set-up time and its
per-star time are separated and extrapolated to ``--n`` stars. Wall and CPU
(process) times are printed; the machine may be shared, so CPU time is the
steadier figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
import warnings

import numpy as np


def _machine() -> str:
    import galpy
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    return (
        f"machine: {platform.platform()} | {cpu} | {os.cpu_count()} CPUs | load average {load}\n"
        f"python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__}, galpy {galpy.__version__}"
    )


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="stars to generate (default 100000)")
    ap.add_argument("--peer-n", type=int, default=2000, help="stars for galpy's sampleV_interpolate (default 2000)")
    ap.add_argument("--skip-peer", action="store_true", help="do not time galpy's sampler")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from bayesdyn.mocks import solar_neighbourhood_disk
    from bayesdyn.mocks._disk import _cylindrical, _galpy_qdf

    print(_machine())
    # warm-up: imports, galpy qdf set-up, JAX compilation (not part of the per-star cost)
    _, w_wall, w_cpu = _timed(lambda: solar_neighbourhood_disk(200, seed=args.seed + 1))
    print(f"warm-up (imports, qdf set-up, JIT; 200 stars): wall {w_wall:.1f} s, cpu {w_cpu:.1f} s")

    (cat, truth), wall, cpu = _timed(lambda: solar_neighbourhood_disk(args.n, seed=args.seed))
    s = cat.meta["sampler"]
    print(
        f"bayesdyn rejection sampler, {args.n} stars (positions + velocities, 2 kpc sphere): "
        f"wall {wall:.1f} s, cpu {cpu:.1f} s ({1e6 * cpu / args.n:.0f} µs cpu/star)\n"
        f"  proposals {s['n_proposed']}, acceptance {s['acceptance']:.3f}, bound raises {s['n_bound_raises']}, "
        f"fraction of proposals over the bound in force {s['fraction_exceeded_bound']:.1e}, "
        f"max ratio / final bound {s['max_ratio_over_final_bound']:.3f}"
    )

    if args.skip_peer:
        print("peer: skipped (--skip-peer)")
        return
    qdf = _galpy_qdf(*truth._qdf_args())
    R, _, _, z, _ = _cylindrical(cat.x, cat.v)
    ro = 8.0  # galpy's natural length unit [kpc]
    grid = dict(R_pixel=0.1 / ro, z_pixel=0.05 / ro, R_min=R.min() / ro, R_max=R.max() / ro, z_max=np.abs(z).max() / ro)

    def peer(m, seed):
        np.random.seed(seed)  # galpy samples with numpy's global generator
        qdf._maxVT_hash = None  # rebuild the interpolation grid each time: it is part of the cost
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's fmin_powell reports every grid cell
            return qdf.sampleV_interpolate(R[:m] / ro, z[:m] / ro, **grid)

    half = max(args.peer_n // 2, 1)
    _, w1, c1 = _timed(lambda: peer(half, 1))
    _, w2, c2 = _timed(lambda: peer(args.peer_n, 2))
    per_star = max((c2 - c1) / (args.peer_n - half), 0.0)
    setup = max(c1 - per_star * half, 0.0)
    extrap = setup + per_star * args.n
    print(
        f"galpy sampleV_interpolate (velocities only, grid {grid['R_pixel'] * ro:.2f} × {grid['z_pixel'] * ro:.2f} kpc): "
        f"{half} stars wall {w1:.1f} s cpu {c1:.1f} s; {args.peer_n} stars wall {w2:.1f} s cpu {c2:.1f} s\n"
        f"  → set-up {setup:.1f} s cpu + {1e6 * per_star:.0f} µs cpu/star; extrapolated to {args.n} stars: "
        f"{extrap:.0f} s cpu"
    )
    print(f"ratio (galpy extrapolated cpu / bayesdyn cpu, same run): {extrap / cpu:.1f}×")


if __name__ == "__main__":
    main()

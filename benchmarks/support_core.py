"""The support map's core (``fit_psd(support_core=r₀)``) on the disk mock: density slopes against galpy's exact ones.

The shipped disk mock fills a 2 kpc sphere around the Sun. Its flows see positions
through the support map y → y·φ(|y|)/|y| (DESIGN §9: a sharp edge smeared by a flow
biases ∂log n/∂x far inside). With φ = atanh on the whole ball (the default), the
density falls too slowly at |z| = 1 kpc; with the identity inside r₀ the interior
is untouched. For each setting (no map, atanh, r₀ = 0.6 by default) this fits K = 2
members (30 epochs, seed 0; ~2 min each on 2 cores) and prints, per member, the
finite-difference ∂log n/∂z at (−8, 0, z) and ∂log n/∂x, ∂log n/∂y near the sphere's
edge, beside the exact slopes of the mock's tracer density (galpy's
``quasiisothermaldf.density``, finite differences).

    python benchmarks/support_core.py [--core 0.6] [--epochs 30] [--ensemble 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

H = 0.02  # kpc, finite-difference step of the flows' log n


def exact_slopes(truth) -> dict:
    from bayesdyn.mocks._disk import _galpy_qdf

    qdf = _galpy_qdf(*truth._qdf_args())
    h, ro = 0.05, 8.0

    def dlog(R, z, dR, dz):
        a = qdf.density((R - dR) / ro, (z - dz) / ro, ngl=16)
        b = qdf.density((R + dR) / ro, (z + dz) / ro, ngl=16)
        return (np.log(b) - np.log(a)) / (2 * h)

    out = {}
    for z in (0.5, 1.0):
        s = dlog(8.0, z, 0.0, h)
        out[("z", -z)], out[("z", z)] = -s, s
    for x in (-9.8, -9.5, -6.5, -6.2):
        out[("x", x)] = -dlog(-x, 0.0, h, 0.0)  # R = −x on the line y = z = 0
    r = np.hypot(8.0, 1.8)
    s = dlog(r, 0.0, h, 0.0) * 1.8 / r
    out[("y", 1.8)], out[("y", -1.8)] = s, -s
    return out


def slopes(psd) -> dict:
    out = {}
    probes = [("z", z, [-8.0, 0.0, z], 2) for z in (-1.0, -0.5, 0.5, 1.0)]
    probes += [("x", x, [x, 0.0, 0.0], 0) for x in (-9.8, -9.5, -6.5, -6.2)]
    probes += [("y", y, [-8.0, y, 0.0], 1) for y in (-1.8, 1.8)]
    for name, where, p, axis in probes:
        a = np.array([p, p], np.float64)
        a[0, axis] -= H
        a[1, axis] += H
        ln = np.asarray(psd.log_number_density_members(a.astype(np.float32)), np.float64)
        out[(name, where)] = (ln[:, 1] - ln[:, 0]) / (2 * H)
    return out


def print_slopes(results: dict, exact: dict, width: int) -> None:
    """One line per probe: the exact slope and, per setting (the keys of ``results``), the members' slopes."""
    print(f"{'point':>18} {'exact':>7}  " + "  ".join(f"{k:>{width}}" for k in results))
    for key in next(iter(results.values())):
        name, where = key
        pt = {"z": f"z = {where:+.1f}", "x": f"x = {where:.1f}", "y": f"y = {where:+.1f}"}[name]
        cells = "  ".join(f"{str(np.round(r[key], 2).tolist()):>{width}}" for r in results.values())
        print(f"{'∂/∂' + name + ' at ' + pt:>18} {exact[key]:7.3f}  {cells}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--core", type=float, default=0.6)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--ensemble", type=int, default=2)
    args = p.parse_args()

    import bayesdyn as bd
    from bayesdyn.psd import fit_psd

    print(f"machine: {machine()}")
    cat, truth = bd.mocks.load_default()
    exact = exact_slopes(truth)
    settings = {"no map": dict(support=None), "atanh (default)": dict(), f"core {args.core:g}": dict(support_core=args.core)}
    results = {}
    for label, kw in settings.items():
        t = time.perf_counter()
        psd = fit_psd(cat, ensemble=args.ensemble, seed=0, max_epochs=args.epochs, progress=False, **kw)
        results[label] = slopes(psd)
        print(f"{label}: fitted in {time.perf_counter() - t:.0f} s ({psd.info['epochs']} epochs; {psd.info['support_rule']}, "
              f"core {psd.info['support_core']:g})", flush=True)
    print(f"\n∂log n/∂(axis) [1/kpc] per member; exact from galpy; {cat.n} stars, K = {args.ensemble}, {args.epochs} epochs")
    print_slopes(results, exact, 22)
    print("\nrelative error of the member mean at |z| = 1 kpc:")
    for k in settings:
        errs = [float(np.mean(results[k][("z", z)]) / exact[("z", z)] - 1) for z in (-1.0, 1.0)]
        print(f"  {k}: " + ", ".join(f"{100 * e:+.1f} %" for e in errs))
    print(f"machine (end): {machine()}")


if __name__ == "__main__":
    main()

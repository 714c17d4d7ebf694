"""The radial map on the disk mock: density slopes with and without it, against galpy's exact ones.

The shipped disk mock fills a 2 kpc sphere around the Sun; its flows see positions
through the support (ball) map, which already gives the sample light, exponential
tails. Before session 9 ``radial_map="auto"`` also switched the radial map
z → z·asinh(|z|)/|z| on there: the disk is thin in z, so its standardised radii
have r₉₉/r₅₀ ≈ 3.1, just above the heavy-tail threshold 3. ``"auto"`` is now off for
a sample cut to a sphere. This fits K members (30 epochs, seed 0; ~1–2 min on 2 cores
each setting) with the map (s = 1, the old automatic choice) and with ``"auto"``
(now no map) and prints, per member, the finite-difference ∂log n/∂z at (−8, 0, z)
and ∂log n/∂x, ∂log n/∂y near the sphere's edge beside the exact slopes of the
mock's tracer density (galpy's ``quasiisothermaldf.density``), then the relative
error of the member mean at every probe and the validation NLL of n(x).

    python benchmarks/radial_map_disk.py [--ensemble 2] [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from support_core import exact_slopes, slopes  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import bayesdyn as bd
    from bayesdyn.psd import fit_psd

    print(f"machine: {machine()}")
    cat, truth = bd.mocks.load_default()
    exact = exact_slopes(truth)
    settings = {"radial map s = 1 (old auto)": dict(radial_map=1.0), "auto (now: no map)": dict()}
    results, nll = {}, {}
    for label, kw in settings.items():
        t = time.perf_counter()
        psd = fit_psd(cat, ensemble=args.ensemble, seed=args.seed, max_epochs=args.epochs, progress=False, **kw)
        results[label] = slopes(psd)
        nll[label] = psd.info["val_nll_x"]
        print(f"{label}: fitted in {time.perf_counter() - t:.0f} s ({psd.info['epochs']} epochs; radial map "
              f"{psd.info['radial_map']:g}: {psd.info['radial_map_rule']})", flush=True)
    print(f"\n∂log n/∂(axis) [1/kpc] per member; exact from galpy; {cat.n} stars, K = {args.ensemble}, "
          f"{args.epochs} epochs, seed {args.seed}")
    print(f"{'point':>18} {'exact':>7}  " + "  ".join(f"{k:>28}" for k in settings))
    first = next(iter(results.values()))
    for key in first:
        name, where = key
        pt = {"z": f"z = {where:+.1f}", "x": f"x = {where:.1f}", "y": f"y = {where:+.1f}"}[name]
        cells = "  ".join(f"{str(np.round(results[k][key], 2).tolist()):>28}" for k in settings)
        print(f"{'∂/∂' + name + ' at ' + pt:>18} {exact[key]:7.3f}  {cells}")
    print("\nerror of the member mean, relative to |exact| [%] (y probes: |exact| = 0.08 /kpc, so absolute [1/kpc])")
    for k in settings:
        parts = []
        for key in first:
            m = float(np.mean(results[k][key]))
            if key[0] == "y":
                parts.append(f"{key[0]}{key[1]:+g}: {m - exact[key]:+.2f}/kpc")
            else:
                parts.append(f"{key[0]}{key[1]:+g}: {100 * (m / exact[key] - 1):+.1f} %")
        print(f"  {k}: " + ", ".join(parts))
    print("\nvalidation NLL of n(x) per member [−mean log n, log kpc⁻³]:")
    for k in settings:
        print(f"  {k}: {np.round(nll[k], 4).tolist()}")
    print(f"machine (end): {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The radial map on the disk mock: density slopes with and without it, against galpy's exact ones.

The shipped disk mock fills a 2 kpc sphere around the Sun; its flows see positions
through the support (ball) map, which already gives the sample light, exponential
tails. ``radial_map="auto"`` still switches the radial map z → z·asinh(|z|)/|z| on
there: the disk is thin in z, so its standardised radii have r₉₉/r₅₀ ≈ 3.1, just above
the heavy-tail threshold 3 (``fit_psd``'s docstring expected no map for a disk sample
in a sphere). This measures what the map does: it fits K members (30 epochs, seed 0;
~1–2 min on 2 cores each setting) with the map (s = 1, what ``"auto"`` picks) and
without it (``radial_map=None``) and prints, per member, the finite-difference
∂log n/∂z at (−8, 0, z) near the plane (|z| ≤ 0.4 kpc, where the curvature sets the
density at the Sun) and at |z| = 0.5, 1 kpc, and ∂log n/∂x, ∂log n/∂y near the
sphere's edge, beside the exact slopes of the mock's tracer density (galpy's
``quasiisothermaldf.density``), then the relative error of the member mean at every
probe and the validation NLL of n(x).

Session 9 measured a trade-off, so ``"auto"`` was left as it is: without the map the
slopes at |z| = 1 kpc and near the edge improve but the slopes within 0.2 kpc of the
plane become 7–20 % too shallow (+10 % too steep with it), and on the league's K = 4,
100-epoch flows the CBE density at the Sun went from −3.5 % to −29.8 %.

    python benchmarks/radial_map_disk.py [--ensemble 2] [--epochs 30] [--seed 0] [--radii 1 none 2 3] [--psd-option width=128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from _options import psd_options  # noqa: E402  (benchmarks/_options.py)
from support_core import H, exact_slopes, print_slopes, slopes  # noqa: E402

NEAR = (-0.4, -0.2, -0.1, 0.1, 0.2, 0.4)  # kpc, heights of the near-plane probes at (x, y) = (−8, 0)


def near_plane_exact(truth) -> dict:
    """Exact ∂log n/∂z [1/kpc] at (R, z) = (8 kpc, z) for z in NEAR (galpy, central differences of 0.02 kpc)."""
    from bayesdyn.mocks._disk import _galpy_qdf

    qdf = _galpy_qdf(*truth._qdf_args())
    ro = 8.0

    def dlog(z):
        a, b = (qdf.density(8.0 / ro, (z + d) / ro, ngl=16) for d in (-H, H))
        return (np.log(b) - np.log(a)) / (2 * H)

    return {("z", z): dlog(z) for z in NEAR}


def near_plane(psd) -> dict:
    """The members' ∂log n/∂z [1/kpc] at (−8, 0, z) for z in NEAR."""
    out = {}
    for z in NEAR:
        a = np.array([[-8.0, 0.0, z - H], [-8.0, 0.0, z + H]], np.float32)
        ln = np.asarray(psd.log_number_density_members(a), np.float64)
        out[("z", z)] = (ln[:, 1] - ln[:, 0]) / (2 * H)
    return out


def print_report(results: dict, nll: dict, exact: dict, width: int) -> None:
    """Per setting (the keys of ``results``): the members' slopes, the member mean's error, the validation NLL."""
    print_slopes(results, exact, width)
    first = next(iter(results.values()))
    print("\nerror of the member mean, relative to |exact| [%] (y probes: |exact| = 0.08 /kpc, so absolute [1/kpc])")
    for k in results:
        parts = []
        for key in first:
            m = float(np.mean(results[k][key]))
            if key[0] == "y":
                parts.append(f"{key[0]}{key[1]:+g}: {m - exact[key]:+.2f}/kpc")
            else:
                parts.append(f"{key[0]}{key[1]:+g}: {100 * (m / exact[key] - 1):+.1f} %")
        print(f"  {k}: " + ", ".join(parts))
    print("\nvalidation NLL of n(x) per member [−mean log n, log kpc⁻³]:")
    for k in results:
        print(f"  {k}: {np.round(nll[k], 4).tolist()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--radii", nargs="+", default=["1", "none"],
                   help="radial-map radii s to compare (robust standard deviations; 'none' for no map); default 1 none")
    p.add_argument("--psd-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another fit_psd setting for every fit, e.g. width=128 (value parsed as JSON; repeatable)")
    args = p.parse_args(argv)
    extra = psd_options(args.psd_option)

    import bayesdyn as bd
    from bayesdyn.psd import fit_psd

    print(f"machine: {machine()}")
    cat, truth = bd.mocks.load_default()
    exact = {**near_plane_exact(truth), **exact_slopes(truth)}
    settings = {}
    for r in args.radii:
        if r.lower() == "none":
            settings["no radial map"] = dict(radial_map=None)
        else:
            settings[f"radial map s = {float(r):g}" + (" ('auto')" if float(r) == 1.0 else "")] = dict(radial_map=float(r))
    results, nll = {}, {}
    for label, kw in settings.items():
        t = time.perf_counter()
        psd = fit_psd(cat, ensemble=args.ensemble, seed=args.seed, max_epochs=args.epochs, progress=False,
                      **{**extra, **kw})
        results[label] = {**near_plane(psd), **slopes(psd)}
        nll[label] = psd.info["val_nll_x"]
        print(f"{label}: fitted in {time.perf_counter() - t:.0f} s ({psd.info['epochs']} epochs; radial map "
              f"{psd.info['radial_map']:g}: {psd.info['radial_map_rule']})", flush=True)
    print(f"\n∂log n/∂(axis) [1/kpc] per member; exact from galpy; {cat.n} stars, K = {args.ensemble}, "
          f"{args.epochs} epochs, seed {args.seed}" + (f", {extra}" if extra else ""))
    print_report(results, nll, exact, 28)
    print(f"machine (end): {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

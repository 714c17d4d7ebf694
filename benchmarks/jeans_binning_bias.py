"""The binning bias of ``jeans.spherical``, which its bootstrap errors do not show.

An isotropic Plummer sphere (M = 1e10 M☉, b = 1 kpc, ``--n`` stars) in log-spaced
radial bins over 0.2–8 kpc, at ``--bins`` bins and at twice as many: for each bin,
M(<r) and ρ(r) against the exact profile, as a relative error and in units of the
bootstrap error (pull). Beside them, the part that is pure discretisation: the same
finite differences applied to the exact ν and σ_r² at the bin centres (no stars).
Then the league's NFW mock: finite differences of the exact M(<r) at the league's
16 log bins over 0.311–80.4 kpc, interpolated in ln r as ``benchmarks/league.py``
does, against the exact ρ.

    python benchmarks/jeans_binning_bias.py [--n 1000000] [--bins 8] [--n-boot 100]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from _machine import machine
from bayesdyn import jeans, mocks, units, validate

M, B = 1e10, 1.0


def plummer_exact(r):
    mass = M * r**3 / (r**2 + B**2) ** 1.5
    rho = 3 * M / (4 * np.pi * B**3) * (1 + r**2 / B**2) ** -2.5
    return mass, rho


def fmt(a, digits=1, pct=False):
    return " ".join("    —" if not np.isfinite(v) else f"{100 * v:+5.{digits}f}" if pct else f"{v:+5.{digits}f}"
                    for v in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=100)
    args = ap.parse_args()
    print(machine())
    cat, _ = mocks.plummer(args.n, seed=1, mass=M, scale_radius=B)
    for n_bins in (args.bins, 2 * args.bins):
        edges = np.geomspace(0.2, 8.0, n_bins + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = jeans.spherical(cat, edges, n_boot=args.n_boot, seed=0)
        m_true, rho_true = plummer_exact(res.r)
        print(f"\nPlummer, {args.n} stars, {n_bins} log bins over 0.2–8 kpc (ends='nan'), {args.n_boot} bootstrap "
              "replicates")
        print("  r [kpc]         ", fmt(res.r, 2).replace("+", " "))
        print("  M rel. error [%]", fmt(res.mass.value / m_true - 1, pct=True))
        print("  M pull [σ]      ", fmt((res.mass.value - m_true) / res.mass.error))
        print("  ρ rel. error [%]", fmt(res.density.value / rho_true - 1, pct=True))
        print("  ρ pull [σ]      ", fmt((res.density.value - rho_true) / res.density.error))
        # the discretisation alone: the estimator's differences on the exact ν(r_c) and σ_r²(r_c) (isotropic: β = 0)
        rc, lnr = res.r, np.log(res.r)
        nu = (1 + rc**2 / B**2) ** -2.5
        s2 = plummer_sigma_r2(rc)
        mass = -(rc * s2 / units.G) * (np.gradient(np.log(nu), lnr) + np.gradient(np.log(s2), lnr))
        mass[[0, -1]] = np.nan
        rho = np.gradient(mass, rc) / (4 * np.pi * rc**2)
        print("  exact-profile differences: M [%]", fmt(mass / m_true - 1, pct=True))
        print("                             ρ [%]", fmt(rho / rho_true - 1, pct=True))

    nfw = validate.NFWMock()
    rs, rho0 = nfw.halo_scale_radius, nfw.halo_density
    edges = np.geomspace(0.311, 80.4, 17)
    rc = np.sqrt(edges[1:] * edges[:-1])
    x = rc / rs
    mass = 4 * np.pi * rho0 * rs**3 * (np.log1p(x) - x / (1 + x))
    fd = np.gradient(mass, rc, edge_order=1) / (4 * np.pi * rc**2)
    print("\nNFW league mock: finite differences of the exact M(<r) in 16 log bins over 0.311–80.4 kpc, "
          "interpolated in ln r")
    for rr in (1, 2, 5, 10, 20):
        est = np.interp(np.log(rr), np.log(rc), fd)
        print(f"  r = {rr:>2} kpc: ρ {100 * (est / (rho0 / ((rr / rs) * (1 + rr / rs) ** 2)) - 1):+.1f} %")


def plummer_sigma_r2(r):
    """σ_r² of the isotropic Plummer sphere, GM/(6 √(r² + b²)) [(km/s)²]."""
    return units.G * M / (6 * np.sqrt(r**2 + B**2))


if __name__ == "__main__":
    main()

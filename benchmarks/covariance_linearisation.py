"""How far the linearised Gaia error propagation (``Catalog.covariance``) is from the errors' true spread, by
fractional parallax error, on real Gaia rows.

Run: ``python benchmarks/covariance_linearisation.py [--draws 4000] [FILE ...]``
(default files: ``../shared/data/gaia/gdr2_rv_100.fits`` and ``gdr3_1000.fits``).

The peer is an independent Monte Carlo, measured in the same run: the observables (ra, dec, parallax, pmra,
pmdec, radial_velocity) drawn from their Gaussian errors with the archive's correlations (built here from the
columns, not by bayesdyn), each draw transformed by astropy's own ``Galactocentric`` frame with the catalog's
solar parameters; draws with parallax ≤ 0 are left out. For each star the ratio σ_linear / σ_MC of the six
Galactocentric coordinates is printed per bin of σ_ϖ/ϖ: its median and the smallest over the bin's stars and
components (the Monte Carlo's own relative noise is about 1/√(2 · draws)).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gaia"
BINS = (0.0, 0.05, 0.1, 0.2, 1.0)


def monte_carlo_sigma(cat, draws: int, seed: int) -> np.ndarray:
    """(N, 6) standard deviations of (x, y, z, v_x, v_y, v_z) by astropy, from the observables' Gaussian errors."""
    import astropy.coordinates as coord
    import astropy.units as u

    c = cat.columns
    n = cat.n
    names = ["ra", "dec", "parallax", "pmra", "pmdec"]
    # ra_error is in mas of arc on the sky (α*): in degrees of ra it is divided by cos(dec)
    sig = np.stack([c["ra_error"] / 3.6e6 / np.cos(np.deg2rad(c["dec"])), c["dec_error"] / 3.6e6,
                    c["parallax_error"], c["pmra_error"], c["pmdec_error"], c["radial_velocity_error"]], -1)
    cov = np.zeros((n, 6, 6))
    for i in range(6):
        cov[:, i, i] = sig[:, i] ** 2
    for i in range(5):
        for j in range(i + 1, 5):
            key = f"{names[i]}_{names[j]}_corr"
            r = c[key] if key in c else 0.0
            cov[:, i, j] = cov[:, j, i] = r * sig[:, i] * sig[:, j]
    obs = np.stack([c[k] for k in ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity")], -1)
    z = np.random.default_rng(seed).standard_normal((draws, n, 6))
    d = obs + np.einsum("nij,dnj->dni", np.linalg.cholesky(cov), z)
    ok = d[..., 2] > 0
    d = np.where(ok[..., None], d, obs)
    sc = coord.SkyCoord(ra=d[..., 0].ravel() * u.deg, dec=d[..., 1].ravel() * u.deg,
                        distance=(1 / d[..., 2].ravel()) * u.kpc, pm_ra_cosdec=d[..., 3].ravel() * u.mas / u.yr,
                        pm_dec=d[..., 4].ravel() * u.mas / u.yr,
                        radial_velocity=d[..., 5].ravel() * u.km / u.s).transform_to(cat.solar.to_astropy())
    out = np.concatenate([sc.cartesian.xyz.to_value(u.kpc).T, sc.velocity.d_xyz.to_value(u.km / u.s).T],
                         -1).reshape(draws, n, 6)
    return np.array([out[ok[:, k], k].std(axis=0, ddof=1) for k in range(n)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="Gaia files with error and correlation columns")
    ap.add_argument("--draws", type=int, default=4000, help="Monte Carlo draws per star")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import bayesdyn as bd

    files = a.files or [DATA / "gdr2_rv_100.fits", DATA / "gdr3_1000.fits"]
    print(f"machine: {machine()}")
    print(f"Monte Carlo: {a.draws} draws per star (relative noise of σ ≈ {1 / np.sqrt(2 * a.draws):.3f})\n")
    print("| file | σ_ϖ/ϖ | stars | median σ_lin/σ_MC | smallest (component) |")
    print("|---|---|---|---|---|")
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bd.DroppedRowsWarning)
            cat = bd.Catalog.from_gaia(path)
        ratio = np.sqrt(np.diagonal(cat.covariance(), axis1=1, axis2=2)) / monte_carlo_sigma(cat, a.draws, a.seed)
        frac = cat.columns["parallax_error"] / cat.columns["parallax"]
        for lo, hi in zip(BINS[:-1], BINS[1:]):
            sel = (frac >= lo) & (frac < hi)
            if not sel.any():
                continue
            r = ratio[sel]
            worst = np.unravel_index(np.argmin(r), r.shape)
            comp = ("x", "y", "z", "v_x", "v_y", "v_z")[worst[1]]
            print(f"| {path.name} | [{lo:g}, {hi:g}) | {int(sel.sum())} | {np.median(r):.3f} | "
                  f"{r.min():.3f} ({comp}, σ_ϖ/ϖ = {frac[sel][worst[0]]:.3f}) |")


if __name__ == "__main__":
    main()

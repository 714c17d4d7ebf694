"""Measurement errors bias the CBE accelerations; re-smearing and extrapolating removes the bias.

An isothermal Gaussian sphere in a harmonic potential, Φ = ½ω²|x|², has the exact
phase-space density f ∝ exp(−|x|²/2s²) exp(−|v|²/2σ²) with ω = σ/s, so the truth is
a = −ω² x. The "density estimator" here is the Gaussian maximum-likelihood fit on K
bootstrap resamples, whose scores are exact — so the only error left is the one the
measurement errors make: stars observed with velocity errors ε look hotter
(σ² + ε²), and the CBE gives accelerations (1 + ε²/σ²) too strong.
``bd.correct_measurement_errors`` fits the same estimator to re-smeared copies and
extrapolates to zero error. With flows, pass ``fit=lambda c: bd.fit_psd(c, seed=0)``
instead (``benchmarks/measurement_errors.py`` does that on the disk mock).

    python examples/measurement_errors.py            # 10⁵ stars, ε = σ/√2
    python examples/measurement_errors.py --tiny     # the test suite's setting
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import bayesdyn as bd

S_KPC, SIGMA_KMS = 2.0, 20.0


class GaussianDF:
    """K Gaussian phase-space densities with exact scores (a ScoreSource for estimate_accelerations)."""

    def __init__(self, s2, sig2):
        self.s2, self.sig2, self.info = np.asarray(s2), np.asarray(sig2), {}

    def sample_velocities(self, x, n, seed):
        return np.random.default_rng(seed).normal(0.0, np.sqrt(self.sig2.mean()), size=(len(x), n, 3))

    def score_members(self, x, v):
        x, v = np.asarray(x), np.asarray(v)
        return -x[None] / self.s2[:, None, None], -v[None] / self.sig2[:, None, None]


def fit_gaussian(catalog, ensemble=4, seed=0):
    """Gaussian maximum-likelihood fit of positions and velocities on K bootstrap resamples."""
    x, v = np.asarray(catalog.x), np.asarray(catalog.v)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(ensemble, len(x)))
    return GaussianDF((x[idx] ** 2).mean(axis=(1, 2)), (v[idx] ** 2).mean(axis=(1, 2)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="stars")
    p.add_argument("--velocity-error", type=float, default=SIGMA_KMS / np.sqrt(2), help="σ per component [km/s]")
    p.add_argument("--copies", type=int, default=2, help="re-smeared copies")
    p.add_argument("--tiny", action="store_true", help="4×10⁴ stars (the test suite's setting)")
    args = p.parse_args(argv)
    n = 40_000 if args.tiny else args.n
    eps = args.velocity_error
    rng = np.random.default_rng(1)
    truth = bd.Catalog(rng.normal(0, S_KPC, (n, 3)), rng.normal(0, SIGMA_KMS, (n, 3)))
    observed = bd.dynamics.resmear(truth, 7, velocity_error=eps)  # what a survey with errors ε sees
    nodes = np.array([[1.0, 0.0, 0.0], [0.0, -1.5, 0.5], [2.0, 1.0, -1.0], [-0.5, 0.5, 3.0]])  # kpc
    a_true = -((SIGMA_KMS / S_KPC) ** 2) * nodes
    with jax.enable_x64(True):
        res = bd.correct_measurement_errors(observed, fit_gaussian, nodes, n_copies=args.copies, seed=0,
                                            velocity_error=eps, n_velocities=64, floor=0.002)
    print(res.summary())
    print(f"ε = {eps:.3g} km/s on σ = {SIGMA_KMS:g} km/s: expected bias factor 1 + ε²/σ² = "
          f"{1 + eps**2 / SIGMA_KMS**2:.3f}")
    print(f"{'node [kpc]':>22} {'a_true':>10} {'observed/true':>14} {'corrected/true':>15} {'± 1σ':>7}")
    sd = np.sqrt(np.einsum("pi,pij,pj->p", a_true, np.asarray(res.corrected.cov), a_true)) / np.sum(a_true**2, 1)
    ratios = {}
    for name, data in (("observed", res.observed), ("corrected", res.corrected)):
        ratios[name] = np.sum(np.asarray(data.a) * a_true, 1) / np.sum(a_true**2, 1)
    for i, xn in enumerate(nodes):
        print(f"{str(xn.tolist()):>22} {np.linalg.norm(a_true[i]):>10.1f} {ratios['observed'][i]:>14.3f} "
              f"{ratios['corrected'][i]:>15.3f} {sd[i]:>7.3f}")
    print("(a_true in (km/s)²/kpc; ratios are the projections of the estimates on the true direction)")
    return ratios


if __name__ == "__main__":
    main()

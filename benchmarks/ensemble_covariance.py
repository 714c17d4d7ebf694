"""The combined covariance of ``estimate_accelerations`` (B + W̄/K) when members share part of their score noise.

At one node of a Plummer sphere (exact scores, 512 velocity draws, K = 4 members), each
member's s_x gets Gaussian noise of sd 0.1·sd(s_x) per draw and component, a fraction ρ
of its variance shared by all members (they are fitted on the same velocity draws) and
the rest its own. Over ``--repeats`` noise realisations it prints the mean χ² of the
member mean's error (3 for an honest 3 × 3 covariance) and the fraction beyond the
95 % point (0.05), for the code's B + W̄/K, for B + W̄, and for Rubin's W̄ + (1 + 1/K) B.
(χ² with a covariance estimated from K = 4 members has heavier tails than χ²₃ also
when it is honest.)

    python benchmarks/ensemble_covariance.py [--repeats 1500]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from _machine import machine
from bayesdyn import mocks
from bayesdyn.dynamics import ExactScores, lstsq_acceleration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1500)
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    print(machine())
    cat, truth = mocks.plummer(n=20000, seed=1, mass=1e10, scale_radius=1.0)
    node = np.array([[0.7, -0.3, 0.4]])  # kpc
    a_true = np.asarray(truth.acceleration(node))[0]
    m, k, r = 512, 4, args.repeats
    v = np.asarray(ExactScores(truth, cat).sample_velocities(node, m, 0))[0]
    s_x, s_v = (np.asarray(s) for s in truth.score(np.broadcast_to(node, v.shape), v))
    rng = np.random.default_rng(1)
    eta = 0.1 * np.std(s_x)
    print(f"node {node[0].tolist()} kpc, {m} draws, K = {k}, {r} noise realisations; s_x noise sd {eta:.3g} /kpc")
    print("| shared fraction ρ | covariance | mean χ² (3) | beyond the 95 % point (0.05) |")
    print("|---|---|---|---|")
    for rho in (0.0, 0.5, 1.0):
        noise = eta * (np.sqrt(rho) * rng.standard_normal((r, 1, m, 3))
                       + np.sqrt(1 - rho) * rng.standard_normal((r, k, m, 3)))
        scores = s_x[None, None] + noise
        fit = lstsq_acceleration(np.broadcast_to(v, scores.shape), scores, np.broadcast_to(s_v, scores.shape))
        a, c = np.asarray(fit.a), np.asarray(fit.cov)  # (R, K, 3), (R, K, 3, 3)
        mean = a.mean(1)
        d = a - mean[:, None]
        b = np.einsum("rki,rkj->rij", d, d) / (k - 1)
        w = c.mean(1)
        e = mean - a_true
        for name, cov in (("B + W̄/K (estimate_accelerations)", b + w / k), ("B + W̄", b + w),
                          ("W̄ + (1 + 1/K) B (Rubin)", w + (1 + 1 / k) * b)):
            chi2 = np.einsum("ri,rij,rj->r", e, np.linalg.inv(cov), e)
            print(f"| {rho:.1f} | {name} | {chi2.mean():.2f} | {np.mean(chi2 > 7.815):.3f} |")


if __name__ == "__main__":
    main()

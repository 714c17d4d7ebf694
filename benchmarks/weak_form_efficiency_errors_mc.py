"""Position errors together with a known selection efficiency ε(x) in the weak form: a Monte Carlo check.

The weak form's moments with ``efficiency=`` are w(x) h(x, v), w = 1/ε, evaluated at the observed positions. With
``position_errors=`` the correction is that of the product, so ε's own derivatives enter. This script draws
correlated Gaussian (x, v) errors (σ_x ≈ 0.05 kpc × ``--scale``, σ_v ≈ 37 km/s × ``--scale``) about four points on
the flank of a smooth hole in ε (depth 0.7, width 0.4 kpc: ε = 0.3 at its centre, so w changes by 3× across it),
and prints, over 4 × 30 moments, the largest |z| = |mean over the draws − error-free w h| / (its Monte Carlo
standard error) for three ways of computing the moments:

- ``derivatives of w``: ``weak_form_data(..., efficiency=ε, position_errors=C)``, the product corrected;
- ``w constant``: the unweighted corrected moments times each star's w (ε's derivatives left out);
- ``uncorrected``: the weighted moments without position errors.

The largest |z| mixes moments whose Monte Carlo errors differ, so it then prints the exact expectation's bias (by
Gauss–Hermite quadrature) at error scales 1, ½ and ¼, where the corrected one falls as σ⁴.

    python benchmarks/weak_form_efficiency_errors_mc.py [--scale 0.6 1.0] [--seeds 3 4 5 6] [--draws 20000]

The unit check of the algebra is tests/test_weak_form.py::test_corrected_moments_match_autodiff_of_the_whole_moment.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

MASS, B = 1e10, 1.0  # the Plummer sphere whose field enters the acceleration terms [M☉, kpc]
BALL = (np.zeros(3), 2.5)  # the weak form's ball (centre, radius) [kpc]


def plummer():
    import bayesdyn as bd

    return bd.potentials.Plummer(mass=MASS, scale_radius=B)


def setup(scale: float, seed: int):
    """(ε, the four points' x (4, 3) [kpc] and v (4, 3) [km/s], their error covariances (4, 6, 6), the error-free
    weighted moments (4, M) with w = 1/ε not normalised)."""
    import jax.numpy as jnp

    import bayesdyn as bd

    rng = np.random.default_rng(seed)
    hole = jnp.asarray([0.3, -0.2, 0.1])

    def eps(p):  # ε(x) of positions (N, 3) [kpc]
        return 1.0 - 0.7 * jnp.exp(-jnp.sum((p - hole) ** 2, axis=-1) / (2 * 0.4**2))

    x = np.asarray(hole) + 0.35 * np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0], [-0.7, 0.7, 0]])
    v = rng.normal(scale=80.0, size=(len(x), 3))
    a = rng.normal(size=(len(x), 6, 6)) * np.r_[0.02, 0.02, 0.02, 15.0, 15.0, 15.0][None, :, None] * scale
    cov = np.einsum("nij,nkj->nik", a, a)
    clean_cat = bd.Catalog(np.repeat(x, 300, 0), np.repeat(v, 300, 0))
    clean = bd.weak_form_data(clean_cat, volume=BALL, window_power=3, efficiency=eps)
    g_clean = (np.asarray(clean.moments(plummer().acceleration(clean.x)))
               * float(np.mean(1.0 / eps(jnp.asarray(clean_cat.x)))))[::300]
    return eps, x, v, cov, g_clean, rng


def moments(eps, y: np.ndarray, covs: np.ndarray) -> dict[str, np.ndarray]:
    """Each star's moments at the phase-space points y (N, 6) with error covariances covs (N, 6, 6), the three ways
    (w = 1/ε not normalised), (N, M) each."""
    import jax.numpy as jnp

    import bayesdyn as bd

    cat = bd.Catalog(y[:, :3], y[:, 3:])
    field = plummer()
    kw = dict(volume=BALL, min_stars=10)
    norm = float(np.mean(1.0 / eps(jnp.asarray(cat.x))))  # undo weak_form_data's mean-1 normalisation of w
    full = bd.weak_form_data(cat, position_errors=covs, efficiency=eps, **kw)
    g = {"derivatives of w": np.asarray(full.moments(full.field(field.acceleration))) * norm}
    w_obs = 1.0 / np.asarray(eps(jnp.asarray(cat.x)))
    unweighted = bd.weak_form_data(cat, position_errors=covs, **kw)
    g["w constant"] = np.asarray(unweighted.moments(unweighted.field(field.acceleration))) * w_obs[:, None]
    plain = bd.weak_form_data(cat, window_power=3, **kw)
    g["uncorrected"] = np.asarray(plain.moments(field.acceleration(plain.x))) * w_obs[:, None]
    return g


def run(scale: float, seed: int, draws: int) -> dict[str, float]:
    """Largest |z| over the points and moments, from ``draws`` Monte Carlo error draws per point."""
    eps, x, v, cov, g_clean, rng = setup(scale, seed)
    noise = np.einsum("nij,nkj->nki", np.linalg.cholesky(cov), rng.normal(size=(len(x), draws, 6)))
    y = (np.concatenate([x, v], axis=1)[:, None] + noise).reshape(-1, 6)
    g = {k: val.reshape(len(x), draws, -1) for k, val in moments(eps, y, np.repeat(cov, draws, axis=0)).items()}
    se = g["derivatives of w"].std(axis=1) / math.sqrt(draws) + 1e-12
    return {k: float(np.max(np.abs(val.mean(1) - g_clean) / se)) for k, val in g.items()}


def exact(scale: float, seed: int, nodes: int = 5) -> dict[str, float]:
    """Largest absolute bias over the points and moments [km/s/kpc], the expectation over the Gaussian errors by
    Gauss–Hermite quadrature (``nodes``⁶ per point; exact for polynomials of degree < 2 ``nodes``)."""
    import itertools

    eps, x, v, cov, g_clean, _ = setup(scale, seed)
    t, wt = np.polynomial.hermite_e.hermegauss(nodes)
    xi = np.array(list(itertools.product(t, repeat=6)))
    wq = np.prod(np.array(list(itertools.product(wt / wt.sum(), repeat=6))), axis=1)
    y = (np.concatenate([x, v], axis=1)[:, None] + np.einsum("nij,qj->nqi", np.linalg.cholesky(cov), xi))
    g = moments(eps, y.reshape(-1, 6), np.repeat(cov, len(xi), axis=0))
    return {k: float(np.max(np.abs(np.einsum("q,nqm->nm", wq, val.reshape(len(x), len(xi), -1)) - g_clean)))
            for k, val in g.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, nargs="+", default=[0.6, 1.0], help="error scale factors")
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5, 6])
    ap.add_argument("--draws", type=int, default=20_000, help="error draws per point")
    a = ap.parse_args(argv)
    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    print("| error scale | seed | derivatives of w | w constant | uncorrected |\n|---|---|---|---|---|")
    for scale in a.scale:
        for seed in a.seeds:
            z = run(scale, seed, a.draws)
            print(f"| {scale:g} | {seed} | {z['derivatives of w']:.2f} | {z['w constant']:.2f} | "
                  f"{z['uncorrected']:.2f} |", flush=True)
    print(f"\n(largest |z| over 4 points × 30 moments, {a.draws} draws per point)")
    print("\nThe exact expectation (Gauss–Hermite, 5⁶ nodes per point), seed "
          f"{a.seeds[-1]}: largest |bias| over the moments [km/s/kpc]; a second-order correction leaves O(σ⁴), 16× "
          "less per halving of the errors\n\n| error scale | derivatives of w | w constant | uncorrected |\n|---|---|---|---|")
    for scale in (1.0, 0.5, 0.25):
        b = exact(scale, a.seeds[-1])
        print(f"| {scale:g} | {b['derivatives of w']:.3g} | {b['w constant']:.3g} | {b['uncorrected']:.3g} |", flush=True)
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

"""How-to: what dust does to CBE accelerations, and the two ways around it.

    python examples/dust_selection.py [--tiny]

A survey sees f_obs(x, v) = ε(x)·f(x, v): the velocity score is untouched and the
position score gains ∇log ε (docs/howto/dust.md). This script puts one opaque dust
cloud (90 % of the stars removed at its centre) into a Plummer sphere whose exact
scores are known, and solves the CBE at nodes

1. near the cloud, ignoring ε: biased accelerations;
2. far from the cloud, ignoring ε: unbiased (the "cut the dusty sight lines" route);
3. near the cloud, with s_x,obs − ∇log ε: unbiased again (the correction route;
   ``bayesdyn.neural.fit_neural_potential(..., selection="efficiency")`` learns ∇log ε
   jointly with Φ when it is unknown — experimental).

With a known ε (a dust map, a selection function) the weak-form fit needs no scores at all:
``bd.weak_form_data(catalog, volume=ball, efficiency=ε)`` weights each star by 1/ε
(docs/weak-form.md).

Errors are relative to the Plummer sphere's exact acceleration. ``--tiny`` (or
BAYESDYN_EXAMPLES_TINY=1) uses 20 000 stars and 16 nodes per group instead of 200 000
and 64 (seconds instead of tens of seconds). No galpy needed.
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

from bayesdyn import mocks
from bayesdyn.dynamics import ExactScores, estimate_accelerations


class ObservedScores(ExactScores):
    """Exact scores of the *observed* density ε·f: s_x + ∇log ε (minus ∇log ε again with ``correct``: the
    subtraction is carried out, so that row measures its rounding, not the true scores alone)."""

    def __init__(self, truth, catalog, dust, correct: bool):
        super().__init__(truth, catalog)
        self.dust, self.correct = dust, correct

    def score_members(self, x, v):
        s_x, s_v = super().score_members(x, v)
        grad = jnp.asarray(self.dust.grad_log_efficiency(jnp.asarray(x)))[None]
        s_obs = s_x + grad  # what a density fitted to the observed stars would give
        return (s_obs - grad if self.correct else s_obs), s_v


def relative_error(source, nodes, truth, n_vel, seed) -> np.ndarray:
    """|a_CBE − a_true| / |a_true| at each node (dimensionless)."""
    data = estimate_accelerations(source, x=nodes, n_velocities=n_vel, seed=seed)
    a_true = np.asarray(truth.acceleration(nodes))
    return np.linalg.norm(np.asarray(data.a) - a_true, axis=1) / np.linalg.norm(a_true, axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("BAYESDYN_EXAMPLES_TINY") == "1",
                    help="seconds-scale settings for smoke tests")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n_stars, n_nodes, n_vel = (20_000, 16, 32) if args.tiny else (200_000, 64, 64)

    with jax.enable_x64(True):
        # a Plummer sphere (M = 1e10 M☉, b = 1 kpc) and one cloud of radius 0.3 kpc at 1 kpc from its centre
        cat, truth = mocks.plummer(n=n_stars, seed=1)
        dust = mocks.DustModel(centers=[[1.0, 0.0, 0.0]], radii=[0.3], depths=[0.9])
        seen, _ = mocks.apply_dust(cat, dust, seed=2)
        print(f"dust removed {cat.n - seen.n} of {cat.n} stars ({seen.history[-1].reason})")

        # nodes at observed stars: around the cloud's edge (0.5–1.5 radii, where ∇log ε is large; it peaks near 0.4) and far from it
        d = np.linalg.norm(seen.x - dust.centers[0], axis=1) / dust.radii[0]
        r = np.linalg.norm(seen.x, axis=1)
        rng = np.random.default_rng(args.seed)
        near = seen.x[rng.choice(np.flatnonzero((d > 0.5) & (d < 1.5)), n_nodes, replace=False)]
        far = seen.x[rng.choice(np.flatnonzero((d > 5) & (r > 0.5) & (r < 1.5)), n_nodes, replace=False)]

        grad = np.linalg.norm(np.asarray(dust.grad_log_efficiency(near)), axis=1)
        print(f"|grad log eps| at the near nodes: median {np.median(grad):.2f} /kpc")
        results = {
            "near the cloud, epsilon ignored": relative_error(ObservedScores(truth, seen, dust, False), near, truth, n_vel, args.seed),
            "far from the cloud, epsilon ignored": relative_error(ObservedScores(truth, seen, dust, False), far, truth, n_vel, args.seed),
            "near the cloud, epsilon corrected": relative_error(ObservedScores(truth, seen, dust, True), near, truth, n_vel, args.seed),
        }
    for name, err in results.items():
        print(f"{name:38s}: median |a - a_true|/|a_true| = {np.median(err):.2e} (max {err.max():.2e})")
    return results


if __name__ == "__main__":
    main()

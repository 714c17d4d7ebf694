"""How nearly the shipped disk mock's DF is steady in MWPotential2014: the CBE residual of its exact scores.

Run: ``python benchmarks/disk_mock_equilibrium.py [--stars 200] [--seed 0]``

galpy's quasi-isothermal DF uses approximate (Staeckel) actions, so its f is only approximately a steady state:
at random stars of ``bayesdyn/data/disk_mock.npz`` the residual |v·∂ₓlog f + a·∂ᵥlog f| of the truth's scores
(galpy's log f by central finite differences) is printed relative to its terms' size |v·∂ₓlog f| + |a·∂ᵥlog f|
(the scale ``tests/test_mocks.py`` uses on the file's first 20 stars), as quantiles. The peer is the same
residual with scores from finite-difference steps half as large, in the same run: it bounds the part of the
residual that is the differencing's. Quoted in ``bayesdyn/data/README.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", type=int, default=200, help="random stars of the shipped mock")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    from bayesdyn.mocks import load_default

    cat, truth = load_default()
    idx = np.random.default_rng(a.seed).choice(cat.n, a.stars, replace=False)
    x, v = np.asarray(cat.x)[idx], np.asarray(cat.v)[idx]
    acc = np.asarray(truth.acceleration(x))
    print(f"machine: {machine()}")
    print(f"{a.stars} random stars of the shipped disk mock (seed {a.seed}); relative CBE residual "
          "|v·s_x + a·s_v| / (|v·s_x| + |a·s_v|):")
    for label, steps in (("default steps", {}), ("steps halved", {"step_x": 5e-4, "step_v": 5e-3})):
        sx, sv = (np.asarray(s) for s in truth.score(x, v, **steps))
        t1, t2 = np.sum(v * sx, 1), np.sum(acc * sv, 1)
        rel = np.abs(t1 + t2) / (np.abs(t1) + np.abs(t2))
        q = np.quantile(rel, [0.5, 0.9, 0.99])
        print(f"  {label}: median {q[0]:.2g}, 90 % {q[1]:.2g}, 99 % {q[2]:.2g}, largest {rel.max():.2g}")


if __name__ == "__main__":
    main()

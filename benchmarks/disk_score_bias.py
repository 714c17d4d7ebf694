"""Where the disk flows' acceleration error comes from: position or velocity scores, by height.

At (x, y) = (−8, 0) kpc and heights z = −1 … 1 kpc, velocities are taken from the
shipped disk mock's stars nearest each point (``ExactScores``: any velocity obeys
the CBE with exact scores), and the CBE least squares is solved with learnt or
exact position scores crossed with learnt or exact velocity scores (exact: finite
differences of galpy's quasi-isothermal DF). Printed: a_x and a_z over the truth
for each pair (member mean), and per member the ratio of the learnt to the exact
mean vertical position score and of the vertical velocity-score slope.

    python benchmarks/disk_score_bias.py DIR      # DIR: a disk PSD saved with psd.save (e.g. the league's cache)
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

HEIGHTS = [-1.0, -0.5, 0.0208, 0.5, 1.0]  # kpc


def main(argv=None) -> int:
    import bayesdyn as bd
    from bayesdyn.dynamics import ExactScores, lstsq_acceleration
    from bayesdyn.psd import load_psd

    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):  # (help is a success: exit status 0)
        print(__doc__)
        return 0
    if len(args) != 1:  # (--help had been read as a folder)
        raise SystemExit(__doc__)
    print(f"machine: {machine()}")
    cat, truth = bd.mocks.load_default()
    psd = load_psd(args[0])
    print(psd.summary())
    x = np.array([[-8.0, 0.0, z] for z in HEIGHTS])
    exact = ExactScores(truth, cat)
    m = 256
    v = np.asarray(exact.sample_velocities(x, m, 1))
    p_ = len(x)
    xs = np.repeat(x[:, None, :], m, 1).reshape(-1, 3)
    sx_f, sv_f = (np.asarray(t, np.float64).reshape(-1, p_, m, 3)
                  for t in psd.score_members(xs.astype(np.float32), v.reshape(-1, 3).astype(np.float32)))
    sx_e, sv_e = (np.asarray(t).reshape(-1, p_, m, 3)[0] for t in exact.score_members(xs, v.reshape(-1, 3)))
    a_true = np.asarray(truth.acceleration(x))

    def acc(sx, sv):
        with jax.enable_x64(True):
            fit = lstsq_acceleration(jnp.broadcast_to(jnp.asarray(v), sx.shape), jnp.asarray(sx), jnp.asarray(sv))
        a = np.asarray(fit.a)
        return a.mean(0) if a.ndim == 3 else a

    cols = {"learnt both": acc(sx_f, sv_f), "learnt s_x": acc(sx_f, np.broadcast_to(sv_e, sx_f.shape)),
            "learnt s_v": acc(np.broadcast_to(sx_e, sv_f.shape), sv_f), "exact both": acc(sx_e, sv_e)}
    print("\na_x/a_x,true and a_z/a_z,true at (−8, 0, z) kpc, member mean")
    print(f"{'z [kpc]':>8} " + " ".join(f"{c:>17}" for c in cols))
    for i, z in enumerate(HEIGHTS):
        print(f"{z:8.2f} " + " ".join(f"{c[i, 0] / a_true[i, 0]:8.3f} {c[i, 2] / a_true[i, 2]:8.3f}"
                                       for c in cols.values()))
    print("\nper member: mean ∂log f/∂z learnt/exact; vertical velocity-score slope learnt/exact")
    for i, z in enumerate(HEIGHTS):
        rz = np.mean(sx_f[:, i, :, 2], -1) / np.mean(sx_e[i, :, 2])
        slope = np.mean(sv_f[:, i, :, 2] * v[i, :, 2], -1) / np.mean(sv_e[i, :, 2] * v[i, :, 2])
        print(f"z = {z:5.2f}: {np.round(rz, 3)}; {np.round(slope, 3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much the old component-wise shuffle of p(v|x) draws changed the disk's node accelerations.

Until commit f5367f7, ``PhaseSpaceDensity.sample_velocities`` shuffled each velocity
component on its own (``jax.random.permutation(..., independent=True)``), so the
CBE node velocities came from the product of the marginals of p(v|x). This script
draws velocities at the 64 default nodes within 1 kpc of the Sun from a fitted disk
density (e.g. the league's cached flows), solves the CBE least squares with whole
draws and with each component shuffled on its own, and prints the errors against
the mock's true accelerations.

    python benchmarks/sampler_shuffle_effect.py ~/.cache/bayesdyn/league/psd-disk-n100000-<tag>
"""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import bayesdyn as bd
from bayesdyn.psd import load_psd
from bayesdyn.dynamics import default_nodes, lstsq_acceleration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

if sys.argv[1:2] in (["-h"], ["--help"]):  # (help is a success: exit status 0)
    print(__doc__)
    raise SystemExit(0)
if len(sys.argv) != 2:  # (--help had been read as a folder)
    raise SystemExit(__doc__)
print(f"machine: {machine()}")
cat, truth = bd.mocks.load_default()
psd = load_psd(sys.argv[1])
x = default_nodes(np.asarray(cat.x), 64, 0, center=np.asarray(cat.solar.position), radius=1.0)
m = 512
v = np.asarray(psd.sample_velocities(x, m, seed=3))
rng = np.random.default_rng(0)
v_old = np.stack([v[:, rng.permutation(m), c] for c in range(3)], -1)  # each component shuffled on its own
a_true = np.asarray(truth.acceleration(x))
for name, vv in (("whole draws (fixed)", v), ("components shuffled (old)", v_old)):
    xs = np.repeat(x[:, None], m, 1).reshape(-1, 3)
    sx, sv = (np.asarray(t, np.float64).reshape(-1, len(x), m, 3) for t in psd.score_members(xs.astype(np.float32), vv.reshape(-1, 3).astype(np.float32)))
    with jax.enable_x64(True):
        a = np.asarray(lstsq_acceleration(jnp.broadcast_to(jnp.asarray(vv), sx.shape), jnp.asarray(sx), jnp.asarray(sv)).a).mean(0)
    err = np.linalg.norm(a - a_true, axis=1) / np.linalg.norm(a_true, axis=1)
    ez = np.abs(a[:, 2] - a_true[:, 2]) / (np.abs(a_true[:, 2]) + 50)
    lp = np.asarray(psd.log_prob(xs.astype(np.float32), vv.reshape(-1, 3).astype(np.float32))).mean()
    print(f"{name:28s} median |Δa|/|a| {np.median(err):.4f}  90% {np.percentile(err, 90):.4f}  median |Δa_z|/(|a_z|+50) {np.median(ez):.3f}  mean log f of draws {lp:.3f}")

"""Do the parametric disk fit's intervals depend on how many velocities per node are drawn? (diagnostic)

The fit's likelihood (``bd.infer(..., combine="members")``) gives each flow member its own node accelerations
with that member's least-squares (sandwich) covariance, which comes from the scatter of the CBE residuals over
the M velocities drawn at each node and so shrinks as 1/M; Rubin's rules add the members' disagreement. The
calibration (docs/calibration) and the league (docs/league.md) were measured at M = 256. This refits the
league's disk realisations (the same cached flows, nodes and NUTS seeds as ``benchmarks/league.py``) with

- ``256``, ``1024``, ``4096``: M velocities per node (the velocity seed is the league's);
- ``1024/4``, ``4096/16``: the same accelerations as ``1024`` / ``4096`` with every member's least-squares
  covariance multiplied by M/256, i.e. the residual scatter counted as if from 256 independent velocities,

and prints, per acceleration row and variant, the RMS relative error over the realisations, the mean quoted 1σ
(half the central 68 % interval of the posterior predictive) and how often the truth lies within 1σ and 2σ.

    python benchmarks/node_velocities.py [--realisations 10] [--variants 256 1024 4096 1024/4 4096/16]

Needs the league's disk-realisation flows in the calibration's cache (fitted here when missing, ~80 s each on
2 idle cores); ~35 s per realisation and variant for the posteriors.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import league  # noqa: E402
import league_nodes  # noqa: E402
from _machine import machine  # noqa: E402

#: variant -> (velocities per node, factor on every member's least-squares covariance)
VARIANTS = {"256": (256, 1.0), "1024": (1024, 1.0), "4096": (4096, 1.0), "1024/4": (1024, 4.0),
            "4096/16": (4096, 16.0)}


def fit(spec, psd, n_velocities, factor, seed):
    """League-style members posterior at ``n_velocities`` per node, member covariances scaled by ``factor``."""
    import jax

    import bayesdyn as bd

    s = league.FULL
    d, bad = league.robust_accelerations(psd, spec.nodes, n_velocities, seed, spec.sun)
    if bad.any():
        print(f"  WARNING: dropped {int(bad.sum())} nodes with NaN/inf flow accelerations", flush=True)
    member_cov = getattr(d, "member_cov", None)  # league.robust_accelerations' point-by-point fallback has none
    if member_cov is None:
        raise RuntimeError("some nodes gave NaN/inf flow accelerations and the fallback keeps no member "
                           "covariances; this diagnostic needs them (use other node or velocity seeds)")
    data = bd.AccelerationData.create(
        spec.nodes[~bad], np.asarray(d.a)[~bad], factor * np.asarray(d.cov)[~bad], sun=spec.sun,
        members=np.asarray(d.members)[:, ~bad], member_cov=factor * np.asarray(member_cov)[:, ~bad],
        member_groups=league._groups(psd))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bd.infer(spec.model, data, seed=seed, progress=False, combine="members", **s["nuts"])
    names = list(spec.model.free_parameters())
    with jax.enable_x64(True):
        return league.posterior_predictive(spec, {n: np.asarray(post.samples[n]) for n in names})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realisations", type=int, default=10)
    ap.add_argument("--first", type=int, default=0, help="first realisation")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from bayesdyn import validate

    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    mock = validate.DiskMock()
    err = {v: [] for v in a.variants}
    keys = None
    cache: dict = {}
    for r in range(a.first, a.first + a.realisations):
        real, spec, truth = league_nodes.realisation(mock, r, a.seed)
        psd, seeds = real["psd"], real["seeds"]
        qs = [q for q in spec.quantities if q.kind == "acc"]
        keys = [(q.key, q.label) for q in qs]
        line = []
        for v in a.variants:
            nv, factor = VARIANTS[v]
            cells = fit(spec, psd, nv, factor, seeds["nuts"])  # the league seeds velocities and NUTS alike
            cache[(r, v)] = cells
            row = league_nodes.error_row(qs, truth, cells)
            err[v].append(row)
            line.append(f"{v}: {100 * row['aR_sun'][0]:+.2f} ± {100 * row['aR_sun'][1]:.2f} %")
        print(f"r{r} a_R(⊙) " + ", ".join(line) + f"  [{time.time() - t0:.0f} s]", flush=True)

    n = a.realisations
    print(f"\n# parametric disk fit over league realisations {a.first}–{a.first + n - 1} (10⁵ stars each), "
          "by velocities per node: relative errors in %")
    print("| quantity | variant | RMS | mean | mean σ | RMS / mean σ | within 1σ | within 2σ |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label in keys:
        for v in a.variants:
            e = np.array([row[key][0] for row in err[v]])
            sg = np.array([row[key][1] for row in err[v]])
            p = np.array([row[key][2] for row in err[v]])
            rms = math.sqrt(np.mean(e ** 2))
            print(f"| {label} | {v} | {100 * rms:.2f} | {100 * e.mean():+.2f} | {100 * sg.mean():.2f} | "
                  f"{rms / sg.mean():.2f} | {int(np.sum(p <= 1))}/{n} | {int(np.sum(p <= 2))}/{n} |")
    print("\n# all rows pooled: within 1σ, within 2σ (of realisations × rows)")
    for v in a.variants:
        p = np.array([[row[k][2] for k, _ in keys] for row in err[v]])
        print(f"{v}: {int(np.sum(p <= 1))}/{p.size}, {int(np.sum(p <= 2))}/{p.size}")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

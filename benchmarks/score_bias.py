"""Where a flow's acceleration error comes from: position or velocity scores, by radius (spherical mocks).

For one calibration realisation of the NFW-tracer mock (the same stars and nodes as
``benchmarks/calibration.py --suite full --only nfw``; flows fitted and cached here, with one seed
per bootstrap resample, as the ``nfw-one-seed`` run's) — or, with
``--mock om-dwarf``, a Gaia-Challenge-like dwarf with exact scores (10⁴ Zhao
tracers, a = 0.1 kpc, γ = 0.1, β = 5, Osipkov–Merritt r_a = 0.1 kpc, in an NFW
halo ρ_s = 6.4e7 M☉/kpc³, r_s = 1 kpc; nodes at 12 stars per radial bin) — velocities
are drawn at each node from the true p(v|x) (the catalog's nearest stars), and the
CBE least squares is solved four ways: learnt ∂log f/∂x and ∂log f/∂v, learnt
position scores with exact velocity scores, exact position scores with learnt
velocity scores, and exact both. The radial acceleration over the truth, averaged
over the nodes in each radial bin (and over the members), shows which score drives
the error. Also printed: the ratio of the learnt to the exact radial position score,
and of the velocity-score "slope" −⟨s_v·v⟩/⟨|v|²⟩ (1/σ² for a Gaussian).

    python benchmarks/score_bias.py                      # realisation 0, fit (or reuse) its flows
    python benchmarks/score_bias.py --realisation 3 --psd-option radial_condition=false
    python benchmarks/score_bias.py --mock om-dwarf --psd-option velocity_frame='"cartesian"'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402  (benchmarks/_machine.py)
from _options import psd_options  # noqa: E402  (benchmarks/_options.py)

BINS = {  # kpc
    "nfw": [(0.0, 1.5), (1.5, 3.0), (3.0, 6.0), (6.0, 12.0), (12.0, 40.0)],
    "om-dwarf": [(0.03, 0.06), (0.06, 0.12), (0.12, 0.25), (0.25, 0.5), (0.5, 1.0)],
}


def om_dwarf(n: int, seed: int):
    """(catalog, truth, nodes) of the Gaia-Challenge-like Osipkov–Merritt dwarf; 12 node stars per radial bin."""
    from bayesdyn.mocks import spherical_tracer

    cat, truth = spherical_tracer(n, seed, halo="nfw", halo_density=6.4e7, halo_scale_radius=1.0, tracer="zhao",
                                  tracer_scale_radius=0.1, tracer_inner_slope=0.1, tracer_outer_slope=5.0,
                                  anisotropy="osipkov-merritt", anisotropy_radius=0.1)
    r = np.linalg.norm(np.asarray(cat.x), axis=1)
    rng = np.random.default_rng(seed + 2)
    idx = [i for lo, hi in BINS["om-dwarf"]
           for i in rng.choice(np.flatnonzero((r >= lo) & (r < hi)), 12, replace=False)]
    return cat, truth, np.asarray(cat.x)[idx]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mock", choices=sorted(BINS), default="nfw")
    p.add_argument("--realisation", type=int, default=0)
    p.add_argument("--n-stars", type=int, default=None, help="default 50000 (nfw), 10000 (om-dwarf)")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--n-velocities", type=int, default=None,
                   help="true velocities per node (neighbours' velocities): default 256 (nfw), 200 (om-dwarf)")
    p.add_argument("--psd-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another fit_psd setting (value parsed as JSON)")
    p.add_argument("--psd-cache", type=Path,
                   default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bayesdyn-score-bias")
    a = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from bayesdyn.dynamics import lstsq_acceleration
    from bayesdyn.psd import PSDFileError, fit_psd, load_psd
    from bayesdyn.validate._coverage import _seeds
    from bayesdyn.validate._mocks import get_mock

    print(f"machine: {machine()}")
    options = {"ensemble": 4, "bootstrap": True, "max_epochs": a.max_epochs}
    options.update(psd_options(a.psd_option))
    n_stars = a.n_stars or (50_000 if a.mock == "nfw" else 10_000)
    m = a.n_velocities or (256 if a.mock == "nfw" else 200)
    seeds = _seeds(0, a.realisation)
    if a.mock == "nfw":
        mock = get_mock("nfw")
        cat, truth = mock.draw(n_stars, seeds["mock"])
        x = mock.nodes(cat, 64, seeds["nodes"])
        exact = mock.exact_source(cat, truth)
    else:
        from bayesdyn.dynamics import ExactScores

        cat, truth, x = om_dwarf(n_stars, 1 + a.realisation)
        exact = ExactScores(truth, cat)
    tag = hashlib.sha256(json.dumps([n_stars, a.realisation, options], sort_keys=True).encode()).hexdigest()[:10]
    folder = a.psd_cache / f"{a.mock}-r{a.realisation}-{tag}"
    psd = None
    if (folder / "psd.json").is_file():
        try:
            psd = load_psd(folder)
        except PSDFileError:
            psd = None
    if psd is None:
        psd = fit_psd(cat, seed=seeds["psd"], progress=True, **{"seeds_per_resample": 1, **options})  # as its cache key says
        psd.save(folder)
    print(psd.summary())
    v = np.asarray(exact.sample_velocities(x, m, 1))  # (P, M, 3) from the true p(v|x)
    p_, r = len(x), np.linalg.norm(x, axis=1)
    rhat = x / r[:, None]
    xs = np.repeat(x[:, None, :], m, 1).reshape(-1, 3)
    sx_f, sv_f = (np.asarray(t).reshape(-1, p_, m, 3) for t in psd.score_members(xs.astype(np.float32),
                                                                                 v.reshape(-1, 3).astype(np.float32)))
    sx_e, sv_e = (np.asarray(t).reshape(-1, p_, m, 3)[0] for t in exact.score_members(xs, v.reshape(-1, 3)))
    a_true = np.einsum("pi,pi->p", np.asarray(truth.acceleration(x)), rhat)

    def a_r(sx, sv):
        with jax.enable_x64(True):
            fit = lstsq_acceleration(jnp.broadcast_to(jnp.asarray(v), sx.shape), jnp.asarray(sx), jnp.asarray(sv))
        out = np.einsum("...pi,pi->...p", np.asarray(fit.a), rhat)
        return out.mean(0) if out.ndim == 2 else out

    cols = {
        "learnt both": a_r(sx_f, sv_f),
        "learnt s_x": a_r(sx_f, np.broadcast_to(sv_e, sx_f.shape)),
        "learnt s_v": a_r(np.broadcast_to(sx_e, sv_f.shape), sv_f),
        "exact both": a_r(sx_e, sv_e),
    }
    pos = np.einsum("kpmi,pi->kpm", sx_f, rhat).mean(-1) / np.einsum("pmi,pi->pm", sx_e, rhat).mean(-1)
    slope = lambda s: -(np.einsum("...pmi,pmi->...pm", s, v)).mean(-1) / (v**2).sum(-1).mean(-1)  # noqa: E731
    vel = slope(sx_f * 0 + sv_f) / slope(sv_e)
    print(f"\n{a.mock} mock, realisation {a.realisation}: {n_stars} stars, {p_} nodes × {m} true velocities; "
          f"fit_psd {options}")
    print("radial acceleration a_r / a_r,true (mean over nodes and members); score ratios learnt/exact")
    head = f"{'r [kpc]':>10} {'nodes':>5} " + " ".join(f"{c:>12}" for c in cols) + f" {'pos score':>10} {'vel slope':>10}"
    print(head)
    for lo, hi in BINS[a.mock]:
        k = (r >= lo) & (r < hi)
        if not k.any():
            continue
        vals = " ".join(f"{np.mean(c[k] / a_true[k]):12.3f}" for c in cols.values())
        print(f"{f'{lo:g}–{hi:g}':>10} {int(k.sum()):5d} {vals} {np.mean(pos[:, k]):10.3f} {np.mean(vel[:, k]):10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Zhao halo fits of the Gaia Challenge mocks: ρ_s free (``Zhao``) against ρ(r_ref) free (``ZhaoAtRadius``).

The league (``benchmarks/league.py``) fits ``validate.GaiaChallengeMock.model()`` — until 2026-12-04 a Zhao halo
with ρ_s, r_s, α, β, γ free — to CBE accelerations at 64 nodes over 0.1–1 kpc. On the cusp its NUTS did not
converge (r̂ 2.8, 407 divergences, 1700 s, in the league run of 2026-12-04 on a 2-core AMD EPYC). With the stars inside ~r_s only the density where they are is measured, so ρ_s has to follow
r_s, α, β and γ along a narrow curved ridge. ``bp.ZhaoAtRadius`` makes ρ(r_ref) the free amplitude instead.

This script runs both on the same flows (the league's: fitted or loaded from the league's cache, K = 4, 100
epochs), the same nodes and the same NUTS settings (the league's: 2 chains × 1500 warm-up + 500 draws per member,
target_accept 0.9, members combined by Rubin's rules) and prints, per mock and parametrisation, the NUTS
diagnostics (worst per-member r̂, smallest bulk ESS, divergences, wall time) and the league's rows (a_r and ρ at the
reference radii: posterior-predictive median ± half the central 68 % interval, the truth, the pull). The priors:
the ``Zhao`` one is the model calibrated until 2026-12-04; the ``ZhaoAtRadius`` one (``GaiaChallengeMock.model()``
since) keeps r_s, α, β, γ's priors and puts the
same LogUniform(1e5, 1e11) M☉/kpc³ on ρ(r_ref) instead of ρ_s (a different prior: see the class's docstring),
r_ref = 0.316 kpc, the geometric middle of the nodes' band.

    python benchmarks/zhao_reparam.py [--mocks core cusp] [--parametrisations zhao at_radius]
    python benchmarks/zhao_reparam.py --calibration cusp --out DIR   # the calibration suite's run, ρ_s model

``--calibration KIND`` instead reruns the calibration suite's ``gaia-challenge`` run for one mock (its 30-epoch
flows, shared through the calibration's flow cache; its NUTS: dense mass matrix, 1500 warm-up steps,
target_accept 0.9) with the earlier ρ_s model, into ``--out`` (not docs/), so that both models' diagnostics come
from the same flows and machine (``python benchmarks/calibration.py --suite full --only gaia-challenge`` gives the
``ZhaoAtRadius`` one).

``--chains KIND [--model zhao|at_radius]`` reruns that run's NUTS member by member (the calibration's flows, nodes,
seeds and sampler, ``validate.NutsRunner``) and prints, per member and chain, the divergences, the step size and
the chain's median of every parameter, to see whether a member that does not mix has chains in different places.

Posteriors are cached with the league's (``~/.cache/bayesdyn/league``) under keys that include the model, so the
``Zhao`` rows are the league's when its cache is present.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import league  # noqa: E402
from _machine import machine  # noqa: E402

PARAMETRISATIONS = ("zhao", "at_radius")


def zhao_model():
    """The earlier calibrated model (before 2026-12-04): a Zhao halo with ρ_s free."""
    import numpyro.distributions as dist

    from bayesdyn import PotentialModel
    from bayesdyn import potentials as bp

    return PotentialModel(
        halo=bp.Zhao(
            scale_density=dist.LogUniform(1e5, 1e11),
            scale_radius=dist.LogUniform(0.05, 20.0),
            alpha=dist.Uniform(0.5, 3.0),
            beta=dist.Uniform(2.5, 6.0),
            gamma=dist.Uniform(0.0, 2.0),
        )
    )


def chains(kind, which):
    """Each member's NUTS on the calibration suite's ``gaia-challenge`` run, chain by chain."""
    import jax
    import numpy as np

    import calibration
    from bayesdyn import validate
    from bayesdyn.validate._coverage import _seeds

    spec = calibration.FULL["gaia-challenge"]
    mock = validate.GaiaChallengeMock(kind)
    model = zhao_model() if which == "zhao" else mock.model()
    print(f"machine: {machine()}\n{kind}, {which}: {model!r}", flush=True)
    real = validate.realisation(mock, 0, spec["n_stars"], 0, psd_options=spec["psd"], psd_cache=calibration.DEFAULT_CACHE)
    print(f"flows: {real['record']}", flush=True)
    seeds = _seeds(0, 0)
    with jax.enable_x64(True):
        datasets, _ = validate.build_data(real["psd"], real["nodes"], validate.Likelihood.parse("members"),
                                          n_velocities=256, seed=seeds["accel"], sun=mock.sun(real["catalog"]))
        runner = validate.NutsRunner(model, num_chains=2, num_warmup=spec["nuts"]["num_warmup"], num_samples=1000,
                                     target_accept=spec["nuts"]["target_accept"])
        names = list(model.free_parameters())
        print("| member | chain | divergences | step size | " + " | ".join(f"median {n}" for n in names) + " |")
        print("|---|---|---|---|" + "---|" * len(names))
        for j, data in enumerate(datasets):
            samples, info = runner.run(data, seeds["nuts"] + j)
            for c in range(runner.num_chains):
                med = " | ".join(f"{float(np.median(samples[n][c])):.4g}" for n in names)
                print(f"| {j} | {c} | {int(info['diverging'][c].sum())} | {info['step_size'][c]:.3g} | {med} |",
                      flush=True)
    print(f"machine (end): {machine()}")


def same_posterior(posteriors, mock) -> str:
    """Are the two posteriors one distribution? The change of variables log ρ_s → log ρ(r_ref) has unit Jacobian, so
    the two models' posteriors differ only where a prior bound binds: the share of the ``ZhaoAtRadius`` draws whose
    implied ρ_s lies outside the ρ_s model's [1e5, 1e11] bounds how much they can differ. Also ρ(0.5 kpc)'s 68 %
    interval under each."""
    import numpy as np

    def shape(r, d, amplitude):
        rs, a, b, g = (np.ravel(d[f"halo.{k}"]) for k in ("scale_radius", "alpha", "beta", "gamma"))
        x = r / rs
        return np.ravel(d[f"halo.{amplitude}"]), x ** (-g) * (1.0 + x**a) ** (-(b - g) / a)

    r_ref = mock.model().components["halo"].reference_radius
    rho_ref, g_ref = shape(r_ref, posteriors["at_radius"], "reference_density")
    rho_s = rho_ref / g_ref
    outside = float(np.mean((rho_s < 1e5) | (rho_s > 1e11)))
    new = rho_ref * shape(0.5, posteriors["at_radius"], "reference_density")[1] / g_ref
    old = np.prod(shape(0.5, posteriors["zhao"], "scale_density"), axis=0)
    q = lambda v: "[" + ", ".join(f"{x:.3g}" for x in np.percentile(v, [15.865, 84.135])) + "]"  # noqa: E731
    return (f"  ZhaoAtRadius draws whose implied ρ_s is outside the ρ_s model's [1e5, 1e11]: {100 * outside:.1f} % "
            f"(the two posteriors can differ only there); ρ(0.5 kpc) 68 % interval: ρ_s model {q(old)}, "
            f"ZhaoAtRadius {q(new)} M☉/kpc³")


def settings():
    """The league's full settings, seed pairing resolved as ``league.main`` does."""
    from bayesdyn.psd._fit import resolve_seeds_per_resample

    s = json.loads(json.dumps(league.FULL))
    opts = s["psd"]
    spr = resolve_seeds_per_resample(opts.get("ensemble", 4), opts.pop("seeds_per_resample", "auto"),
                                     opts.get("bootstrap", True))
    if spr > 1:
        opts["seeds_per_resample"] = spr
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mocks", nargs="+", choices=("core", "cusp"), default=["core", "cusp"])
    ap.add_argument("--parametrisations", nargs="+", choices=PARAMETRISATIONS, default=list(PARAMETRISATIONS))
    ap.add_argument("--cache", default=str(league.DEFAULT_CACHE), help="the league's cache ('' for none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibration", choices=("core", "cusp"), help="rerun the calibration suite's run with ρ_s free")
    ap.add_argument("--out", type=Path, help="with --calibration: the run folder (required)")
    ap.add_argument("--chains", choices=("core", "cusp"), help="per-member, per-chain NUTS of the calibration's run")
    ap.add_argument("--model", choices=PARAMETRISATIONS, default="at_radius", help="with --chains: which model")
    args = ap.parse_args(argv)
    from bayesdyn import validate

    if args.chains:
        return chains(args.chains, args.model)

    if args.calibration:
        if args.out is None:
            ap.error("--calibration needs --out DIR (a folder outside docs/)")
        import calibration

        validate.GaiaChallengeMock.model = lambda self: zhao_model()  # this process only
        spec = {k: v for k, v in calibration.FULL["gaia-challenge"].items() if k != "mock"}
        print(f"machine: {machine()}", flush=True)
        res = calibration.run_one(f"gaia-challenge-{args.calibration}", args.out, fresh=True, **spec)
        d = next(iter(res.values())).records[0].get("diagnostics", {})
        print(f"ρ_s model, calibration flows: r̂ max {d.get('max_r_hat', math.nan):.3f}, ESS bulk min "
              f"{d.get('min_ess_bulk', math.nan):.0f}, {d.get('divergences')} divergences; machine (end): {machine()}")
        return

    cache = Path(args.cache).expanduser() if args.cache else None
    s = settings()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    log(f"machine: {machine()}")
    t0 = time.perf_counter()
    for name in args.mocks:
        clock = league.Clock()
        spec = league.make_spherical(name, s, args.seed)
        mock = validate.GaiaChallengeMock(name)
        psd, psd_tag, psd_id = league.get_psd(spec, s, args.seed, cache, clock, None, False, log)
        import jax

        with jax.enable_x64(True):
            truth = league.exact_cells(spec.quantities, spec.X, spec.truth_acceleration, spec.truth_density)
        log(f"== {name}: {spec.title}; flows {psd_tag}")
        rows, posteriors = [], {}
        for p in args.parametrisations:
            model = zhao_model() if p == "zhao" else mock.model()  # ZhaoAtRadius since 2026-12-04
            pspec = dataclasses.replace(spec, model=model)
            c = league.Clock()
            draws = {}
            cells, diag = league.parametric_cells(pspec, psd, s, args.seed, cache, c, False, log,
                                                  psd_id + league._data_sha(spec.catalog), samples_out=draws)
            posteriors[p] = draws
            nuts_s = c.stages.get("NUTS", (math.nan, math.nan))[0]
            log(f"  {p}: {diag}; NUTS {nuts_s:.0f} s" + (" (cached)" if "parametric (cached)" in c.stages else ""))
            rows.append((p, cells))
        log("\n| quantity | truth | " + " | ".join(p for p, _ in rows) + " |")
        log("|---|---|" + "---|" * len(rows))
        for q in spec.quantities:
            t = truth[q.key].value
            parts = []
            for _, cells in rows:
                cl = cells[q.key]
                pull = (cl.value - t) / cl.error if cl.error > 0 else math.nan
                parts.append(f"{cl.value:.4g} ± {cl.error:.3g} ({100 * (cl.value - t) / abs(t):+.1f} %, {pull:+.1f}σ)")
            log(f"| {q.label} | {t:.4g} | " + " | ".join(parts) + " |")
        if len(posteriors) == 2:
            log(same_posterior(posteriors, mock))
        log("")
    log(f"total {time.perf_counter() - t0:.0f} s; machine (end): {machine()}")


if __name__ == "__main__":
    main()

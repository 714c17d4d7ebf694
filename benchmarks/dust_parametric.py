"""Dust with a parametric potential: the disk model's Φ and a neural ε(x), MAP through NumPyro (issue 6's dust lines).

In the neural fits of ``benchmarks/neural_disk.py`` and ``benchmarks/dust_tilt.py`` a free
MLP potential can absorb part of the dust holes, so the learnt ε(x) stays shallow. Here Φ
is the calibrated disk model (``validate.DiskMock.model()``: MWPotential2014's shapes, the
disk mass and the halo density free), which cannot bend around a 0.25 kpc cloud, and ε(x)
is a :class:`bayesdyn.neural.NeuralEfficiency` (MLP, sigmoid output, a N(0, 1) prior on
its weights), fitted jointly by ``bayesdyn.neural.fit_map`` (SVI, AutoDelta) to the star-level
CBE residuals v·(s_x − ∇log ε) + a·s_v of the dusty flows. The same fit without ε is the
"no correction" peer. Optionally (``--tilt``) the dusty flows' n(x) is first sharpened by
``benchmarks/dust_tilt.py``'s learnt tilt e^t(x) (∇t added to every s_x).

Metrics as in ``benchmarks/neural_disk.py`` (same clouds, volume and cloud points):
Pearson(ε learnt, ε true) over the volume within 1.5 kpc of the Sun and |z| < 0.5 kpc, and
the rms |a − a_true| over points inside the clouds, without and with ε, and a(⊙).

Mind what the parametric model knows: the shapes of the true potential (docs/league.md), so
its accelerations inside the clouds are close to the truth whatever ε does; the in-cloud
ratio measures how much of the dust bias on its two free parameters ε removes.

    python benchmarks/dust_parametric.py [--dust-psd DIR] [--stars 20000] [--steps 4000] [--tilt] [--neural]

``--neural`` then asks whether ε learnt next to the rigid Φ helps a model-free Φ: the neural fit of
``dust_tilt.py`` (no ε of its own) on the dusty scores, uncorrected and with this fit's ∇log ε subtracted.
Model-free ε stages (ε learnt without the parametric model, then frozen the same way):
``--neural-eps-widths W…`` next to a small MLP Φ; ``--separable-eps D…`` next to the separable Φ of
``benchmarks/_separable.py`` (a polynomial of degree D across the plane, an MLP along z), each with every
efficiency penalty of ``--eps-penalties`` and every seed of ``--eps-seeds`` (several: log ε averaged);
``--separable-peer`` also fits the separable Φ without ε.

    python benchmarks/dust_parametric.py --tilt --neural --separable-eps 3 --eps-penalties 0.01 0.03 \
        --eps-seeds 0 1 2 --skip-parametric-correction
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from neural_disk import uniform_ball  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    from bayesdyn.psd._density import FORMAT_VERSION  # neural_disk.py's cache names carry it

    ap.add_argument("--dust-psd", default=f"~/.cache/bayesdyn/neural_disk/full/psd_dust_v{FORMAT_VERSION}_n92508_k4_e100_s0",
                    help="dusty flows (benchmarks/neural_disk.py's cache; fitted and saved there when missing)")
    ap.add_argument("--dust-seed", type=int, default=1,
                    help="seed of the clouds (DustModel.near_sun) and of the star removal; 1 is neural_disk.py's. "
                         "Another seed needs its own --dust-psd folder")
    ap.add_argument("--stars", type=int, default=20_000, help="dusty stars within 1.8 kpc of the Sun used in the fit")
    ap.add_argument("--steps", type=int, default=4000, help="SVI steps of each fit")
    ap.add_argument("--width", type=int, default=32, help="hidden width of the efficiency MLP (depth 2, gelu)")
    ap.add_argument("--tilt", action="store_true", help="sharpen the dusty n(x) with dust_tilt.py's learnt tilt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--free-shapes", action="store_true",
                    help="also free the shapes the calibrated model fixes at their true values: the disk's a, b "
                         "and the halo's scale radius (broad priors)")
    ap.add_argument("--neural", action="store_true",
                    help="then fit a neural Φ (dust_tilt.py's settings) to the dusty scores, uncorrected and "
                         "corrected by this fit's ∇log ε")
    ap.add_argument("--neural-steps", type=int, default=6000, help="Adam steps of each neural fit")
    ap.add_argument("--neural-eps-widths", type=int, nargs="*", default=[],
                    help="with --neural, also learn ε model-free: jointly with a small neural Φ (MLP W×2 gelu, "
                         "for each W given), then freeze it under the 64×2 neural Φ like the parametric fit's ε")
    ap.add_argument("--separable-eps", type=int, nargs="*", default=[],
                    help="with --neural, also learn ε jointly with a separable Φ (benchmarks/_separable.py: "
                         "polynomial of degree D across the plane, an MLP 32×2 gelu along z; for each D given), "
                         "then freeze it under the 64×2 neural Φ")
    ap.add_argument("--eps-penalties", type=float, nargs="+", default=[1e-3],
                    help="efficiency penalties λ_ε of the model-free ε stages (NeuralFitConfig.efficiency_penalty; "
                         "each stage is run with each)")
    ap.add_argument("--eps-seeds", type=int, nargs="*", default=[],
                    help="seeds of the model-free ε stages (default --seed); with several, their log ε are averaged")
    ap.add_argument("--separable-peer", action="store_true",
                    help="also fit each separable Φ without ε (its own uncorrected in-cloud error)")
    ap.add_argument("--skip-parametric-correction", action="store_true",
                    help="with --neural, skip the neural fit corrected by the parametric fit's ε")
    args = ap.parse_args(argv)
    model_free = args.neural_eps_widths or args.separable_eps
    if not args.neural and (model_free or args.separable_peer or args.skip_parametric_correction):
        ap.error("--neural-eps-widths, --separable-eps, --separable-peer and --skip-parametric-correction "
                 "belong to the neural stage: add --neural")
    if args.separable_peer and not args.separable_eps:
        ap.error("--separable-peer fits the separable Φs of --separable-eps: give their degrees "
                 "(e.g. --separable-eps 3)")
    if min(args.eps_penalties) < 0:
        ap.error(f"--eps-penalties {args.eps_penalties} must be ≥ 0")
    if len(set(args.eps_penalties)) < len(args.eps_penalties) or len(set(args.separable_eps)) < len(args.separable_eps):
        ap.error("--eps-penalties and --separable-eps must not repeat a value (the runs are labelled by them)")

    import jax.numpy as jnp

    import bayesdyn as bd
    from bayesdyn import neural, validate
    from bayesdyn.inference import StarScoreData
    from bayesdyn.mocks import DustModel, apply_dust

    print(f"machine: {machine()}")
    cat, truth = bd.mocks.load_default()
    sun = np.asarray(cat.solar.position)
    dust = DustModel.near_sun(sun, seed=args.dust_seed, depth=0.9)  # seed 1: the clouds of benchmarks/neural_disk.py
    dcat, dust = apply_dust(cat, dust, seed=args.dust_seed)
    print(f"clouds (dust seed {args.dust_seed}): centres {np.round(dust.centers - sun, 2).tolist()} kpc from the Sun, "
          f"radii {np.round(dust.radii, 2).tolist()} kpc; {cat.n - dcat.n} of {cat.n} stars removed")
    folder = pathlib.Path(args.dust_psd).expanduser()
    # before loading or fitting: a fit for another seed saved into the default folder would be loaded by every later
    # default run against dust seed 1's clouds (the check ran only when the folder existed)
    if args.dust_seed != 1 and folder == pathlib.Path(ap.get_default("dust_psd")).expanduser():
        ap.error(f"--dust-seed {args.dust_seed}: the default --dust-psd holds the flows of dust seed 1; "
                 "give a folder of its own")
    if (folder / "psd.json").is_file():
        dpsd = bd.load_psd(folder)
        print(f"dusty flows loaded from {folder} ({dcat.n} stars)")
        if dpsd.n_stars != dcat.n:
            ap.error(f"--dust-psd {folder} holds flows fitted to {dpsd.n_stars} stars, not this dust seed's {dcat.n}")
        if dpsd.n_members == 4 and dpsd.info.get("resample_groups") != [0, 0, 1, 1]:  # neural_disk.py's pairs
            ap.error(f"--dust-psd {folder} holds flows of another seed pairing (resample groups "
                     f"{dpsd.info.get('resample_groups')}, not [0, 0, 1, 1]); rerun benchmarks/neural_disk.py, which "
                     "refits them, or give another folder")
    else:
        t0 = time.perf_counter()
        # 2 resamples × 2 seeds, as neural_disk.py fits them (fit_psd's "auto" until 2026-12-07)
        dpsd = bd.fit_psd(dcat, ensemble=4, seed=0, max_epochs=100, seeds_per_resample=2, progress=False)
        dpsd.save(folder)
        print(f"dusty flows fitted in {time.perf_counter() - t0:.0f} s, saved to {folder}")

    rng = np.random.default_rng(args.seed)
    near = np.flatnonzero(np.linalg.norm(dcat.x - sun, axis=1) < 1.8)
    pick = np.sort(rng.choice(near, min(args.stars, near.size), replace=False))
    x, v = np.asarray(dcat.x[pick], np.float32), np.asarray(dcat.v[pick], np.float32)
    s_x, s_v = (np.asarray(a, np.float64) for a in dpsd.score(x, v))
    grad_tilt = None
    if args.tilt:
        from dust_tilt import fit_tilt

        xs = np.asarray(dcat.x) - sun
        perm = np.random.default_rng(5).permutation(len(xs))
        n_val = len(xs) // 10
        y = np.asarray(dpsd.sample(400_000, seed=3)[0]) - sun
        yv = np.asarray(dpsd.sample(200_000, seed=4)[0]) - sun
        t0 = time.perf_counter()
        _, grad_tilt, gain = fit_tilt(xs[perm[n_val:]], y, xs[perm[:n_val]], yv, 3000, 64, 0)
        s_x = s_x + np.asarray(grad_tilt(jnp.asarray(x - sun)), np.float64)
        print(f"tilt fitted in {time.perf_counter() - t0:.0f} s; held-out gain {gain:.4f} nats per star")

    model = validate.DiskMock().model()
    if args.free_shapes:
        import numpyro.distributions as dist

        from bayesdyn import potentials as bp

        model = bd.PotentialModel(
            bulge=model.components["bulge"],
            disk=bp.MiyamotoNagai(mass=dist.LogUniform(1e10, 3e11), a=dist.LogUniform(1.0, 10.0),
                                  b=dist.LogUniform(0.05, 1.0)),
            halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.LogUniform(3.0, 60.0)),
        )
    print(f"model: {model!r}")
    # residual scale: the spread of the no-ε fit's residuals, in units of √(|s_v|² + s₀²) (the neural loss's)
    s0 = float(np.median(np.linalg.norm(s_v, axis=1)))
    w = np.sqrt(np.sum(s_v**2, 1) + s0**2)
    arrays = [jnp.asarray(a) for a in (x, v, s_x, s_v)]
    pilot = neural.fit_map(model, StarScoreData(*arrays, jnp.asarray(w * 100.0), jnp.asarray(sun)),
                           steps=args.steps, seed=args.seed)
    a_pilot = np.asarray(model.total_acceleration(pilot.components, jnp.asarray(x)), np.float64)
    res = np.sum(v * s_x, 1) + np.sum(a_pilot * s_v, 1)
    scale = float(np.sqrt(np.mean((res / w) ** 2)))
    data = StarScoreData(*arrays, jnp.asarray(w * scale), jnp.asarray(sun))
    print(f"{len(x)} stars; residual scale {scale:.3g} (km/s)²/kpc per unit of √(|s_v|² + s₀²), s₀ = {s0:.3g} s/km")

    arch = neural.Architecture(args.width, 2, "gelu")
    eff0 = neural.NeuralEfficiency(arch.init(args.seed), arch, sun, 1.0).with_prior(1.0)
    fits = {}
    for name, sel in (("none", None), ("efficiency", eff0)):
        t0 = time.perf_counter()
        fits[name] = neural.fit_map(model, data, sel, steps=args.steps, seed=args.seed)
        loss = fits[name].losses
        print(f"fit {name}: {time.perf_counter() - t0:.0f} s; loss {loss[0]:.4g} → {loss[-1]:.4g} "
              f"(last 10 % mean {loss[-len(loss) // 10:].mean():.4g}); "
              + ", ".join(f"{k} {float(np.asarray(val)):.4g}" for k, val in fits[name].values.items()
                          if not k.startswith("selection.")), flush=True)

    prng = np.random.default_rng(12345)  # the volume and cloud points of benchmarks/neural_disk.py
    vol = uniform_ball(prng, sun, 1.5, 60_000)
    vol = vol[np.abs(vol[:, 2]) < 0.5]
    e_true = np.asarray(dust.efficiency(vol), dtype=float)
    clouds = np.concatenate([uniform_ball(prng, c, r, 2000) for c, r in zip(dust.centers, dust.radii)])
    at = np.asarray(truth.acceleration(clouds), dtype=float)
    sel = fits["efficiency"].selection
    e_learnt = np.asarray(sel.efficiency(jnp.asarray(vol, jnp.float32)), dtype=float)
    r_vol = float(np.corrcoef(e_learnt, e_true)[0, 1])
    e_c = np.asarray(sel.efficiency(jnp.asarray(dust.centers, jnp.float32)), dtype=float) / np.median(e_learnt)
    err, a_sun = {}, {}
    a_true_sun = np.asarray(truth.acceleration(sun), dtype=float)
    for name, f in fits.items():
        a = np.asarray(model.total_acceleration(f.components, jnp.asarray(clouds)), dtype=float)
        err[name] = float(np.sqrt(np.mean(np.sum((a - at) ** 2, axis=1))))
        a_sun[name] = np.asarray(model.total_acceleration(f.components, jnp.asarray(sun[None])), dtype=float)[0]
    print(f"\nPearson(ε learnt, ε true) over the volume: {r_vol:.3f} (target ≥ 0.9)")
    print(f"learnt ε at the cloud centres ÷ its volume median: {np.round(e_c, 2).tolist()} (truth 0.1)")
    print(f"rms |a − a_true| inside the clouds: without ε {err['none']:.1f}, with ε {err['efficiency']:.1f} "
          f"(km/s)²/kpc; ratio {err['none'] / err['efficiency']:.2f} (target ≥ 3); ‖a‖ ≈ "
          f"{np.sqrt(np.mean(np.sum(at**2, 1))):.0f}")
    for name in fits:
        d = np.linalg.norm(a_sun[name] - a_true_sun) / np.linalg.norm(a_true_sun)
        print(f"a(⊙) {name}: {np.round(a_sun[name], 1).tolist()} vs {np.round(a_true_sun, 1).tolist()} "
              f"({100 * d:.2f} %)")
    if args.neural:
        neural_stage(args, dcat, dpsd, sun, grad_tilt, sel, clouds, at, a_true_sun, vol, e_true, dust)
    print(f"machine (end): {machine()}")
    return 0


def neural_stage(args, dcat, dpsd, sun, grad_tilt, sel, clouds, at, a_true_sun, vol, e_true, dust):
    """``--neural``: a neural Φ on the dusty flows' scores (× the tilt), without and with the parametric fit's ε.

    The ε learnt next to the rigid parametric Φ is frozen and its gradient subtracted from every member's s_x;
    the neural fit (K = 4 networks, one per flow member, MLP 64×2 gelu, 3 extra velocities per star from
    p(v|x), stars within 1.8 kpc of the Sun: ``dust_tilt.py``'s settings) then has no ε of its own.
    """
    import jax.numpy as jnp

    from bayesdyn import neural
    from dust_tilt import star_velocities

    x, v, sx, sv = star_velocities(dcat, dpsd, 3)
    if grad_tilt is not None:
        sx = sx + np.asarray(grad_tilt(jnp.asarray(x - sun)))[None]
    g_eps = np.asarray(sel.grad_log_efficiency(jnp.asarray(x, jnp.float32)), dtype=float)
    n_star = len(x) // 4  # star_velocities: the stars first, then 3 draws of each, split and resampled together
    kw = dict(steps=args.neural_steps, batch_size=2048, architecture=neural.Architecture(64, 2, "gelu"),
              eval_every=250, groups=np.concatenate([np.arange(n_star), np.repeat(np.arange(n_star), 3)]))
    def errors(potential):
        """rms |a − a_true| over the cloud points [(km/s)²/kpc] and |Δa(⊙)|/|a(⊙)| [%] of a fitted potential."""
        a = np.asarray(potential.acceleration(clouds), dtype=float)
        a_s = np.asarray(potential.acceleration(sun), dtype=float)
        return (float(np.sqrt(np.mean(np.sum((a - at) ** 2, 1)))),
                float(100 * np.linalg.norm(a_s - a_true_sun) / np.linalg.norm(a_true_sun)))

    corrections = [("uncorrected", sx)]
    if not args.skip_parametric_correction:
        corrections.append(("corrected by the parametric fit's ε", sx - g_eps[None]))
    from _separable import SeparableArchitecture

    separable = {d: SeparableArchitecture(32, 2, "gelu", degree=d) for d in args.separable_eps}
    stages = [(f"{w}×2 neural Φ", neural.Architecture(w, 2, "gelu")) for w in args.neural_eps_widths]
    stages += [(f"separable Φ (degree {d})", arch) for d, arch in separable.items()]
    if args.separable_peer:
        for d, arch in separable.items():
            t0 = time.perf_counter()
            fit = neural.fit_neural_potential_scores(x, v, sx, sv, seed=args.seed, selection="none",
                                                     **{**kw, "architecture": arch})
            rms, pct = errors(fit.potential)
            print(f"separable Φ (degree {d}) without ε: {time.perf_counter() - t0:.0f} s; rms in-cloud |Δa| "
                  f"{rms:.0f} (km/s)²/kpc, |Δa(⊙)|/|a| {pct:.2f} %", flush=True)
    stages = [(f"{name}, λ_ε {lam:g}", arch, lam) for name, arch in stages for lam in args.eps_penalties]
    seeds = args.eps_seeds or [args.seed]
    for name, arch, lam in stages:  # a model-free ε stage: ε learnt next to a Φ that cannot bend around a cloud
        logs, grads = [], []
        for sd in seeds:
            t0 = time.perf_counter()
            joint = neural.fit_neural_potential_scores(
                x, v, sx, sv, seed=sd, selection="efficiency", **{**kw, "architecture": arch},
                selection_architecture=neural.Architecture(32, 2, "gelu"), efficiency_penalty=lam)
            eff = joint.efficiency
            e = np.asarray(eff.efficiency(jnp.asarray(vol, jnp.float32)), dtype=float)
            e_c = np.asarray(eff.efficiency(jnp.asarray(dust.centers, jnp.float32)), dtype=float) / np.median(e)
            rms, pct = errors(joint.potential)
            print(f"ε stage, {name}, seed {sd} with ε (32×2): {time.perf_counter() - t0:.0f} s; Pearson(ε learnt, "
                  f"ε true) over the volume {np.corrcoef(e, e_true)[0, 1]:.3f}; ε at the centres ÷ median "
                  f"{np.round(e_c, 2).tolist()}; its own Φ: rms in-cloud |Δa| {rms:.0f} (km/s)²/kpc, "
                  f"|Δa(⊙)|/|a| {pct:.2f} %", flush=True)
            logs.append(np.log(e))
            grads.append(np.asarray(eff.grad_log_efficiency(jnp.asarray(x, jnp.float32)), dtype=float))
        if len(seeds) > 1:  # the seeds' geometric-mean ε: log ε and its gradient averaged
            name = f"{name}, seeds {seeds} averaged"
            print(f"ε stage, {name}: Pearson(ε learnt, ε true) over the volume "
                  f"{np.corrcoef(np.exp(np.mean(logs, 0)), e_true)[0, 1]:.3f}", flush=True)
        corrections.append((f"corrected by the ε of the {name}", sx - np.mean(grads, 0)[None]))
    err = {}
    for label, s in corrections:
        t0 = time.perf_counter()
        fit = neural.fit_neural_potential_scores(x, v, s, sv, seed=0, selection="none", **kw)
        err[label], pct = errors(fit.potential)
        print(f"neural Φ, {label}: {time.perf_counter() - t0:.0f} s; {len(x)} star-velocities; rms in-cloud "
              f"|Δa| {err[label]:.0f} (km/s)²/kpc; |Δa(⊙)|/|a| {pct:.2f} %; held-out loss (member mean) "
              f"{np.mean(fit.info['best_val_loss']) * fit.info['acceleration_scale'] ** 2:.1f} (km/s)⁴/kpc² "
              "(× a₀², comparable across corrections; same held-out stars, seed 0)", flush=True)
    base = err.pop("uncorrected")
    for label, e in err.items():
        print(f"neural Φ: in-cloud error ratio uncorrected / {label} {base / e:.2f} (target ≥ 3)")


if __name__ == "__main__":
    sys.exit(main())

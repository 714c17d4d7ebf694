"""The figure gallery of docs/gallery/: maps, lines of sight against MWPotential2014, ε(x), ∂f/∂t.

One command writes every figure and ``docs/gallery/index.md``:

    python benchmarks/gallery.py            # full settings (reuses benchmarks/neural_disk.py's cache)
    python benchmarks/gallery.py --tiny     # a quick smoke version (numbers meaningless)

It needs the flows and neural fits of ``benchmarks/neural_disk.py`` with the same
settings; when they are not in the cache it fits them (long at full settings: run
the benchmark first, or pass ``--tiny``). Figures (disk mock, 10⁵ stars, MWPotential2014
truth):

- ``lines_of_sight.png``: a_R, a_z and ρ along (l, b) = (0°, 0°), (90°, 0°), (0°, 90°)
  from the Sun: the neural ensemble with its 68/95 % bands, MWPotential2014 (the mock's
  truth) and gala's MilkyWayPotential;
- ``density_xz.png``: ρ in the x–z plane through the Sun: neural, MWPotential2014, and
  the ensemble's relative spread;
- ``acceleration_xz.png``: a_z in the x–z plane: neural, truth, difference;
- ``efficiency.png``: ε(x) in the midplane: the synthetic dust's truth, the jointly learnt
  ε, their difference;
- ``disequilibrium.png``: rms ∂log f/∂t / rms v·s_x over p(v|x) in the x–z plane, with the
  neural acceleration and with gala's MilkyWayPotential (not the mock's potential).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import neural_disk  # noqa: E402  (the benchmark's settings, cache and fits)

OUT = HERE.parent / "docs" / "gallery"


def _figure(rows: int, cols: int, size=(4.6, 3.6)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def accuracy_section(fig: dict, command: str | None) -> list[str]:
    """Markdown lines: the acceptance figures of ``benchmarks/neural_disk.py --json`` as a table."""
    c, d, t = fig["clean"], fig["dust"], fig["targets"]

    def ok(key: str) -> str:
        return "pass" if t[key] else "**FAIL**"

    a, lo, hi = np.asarray(c["a_sun"]), np.asarray(c["a_band95"][0]), np.asarray(c["a_band95"][1])
    at = np.asarray(c["a_true"])
    band = ", ".join(f"{n}: {a[i]:.1f} [{lo[i]:.1f}, {hi[i]:.1f}] vs {at[i]:.1f}" for i, n in enumerate("xyz"))
    rows = [
        ("‖a(Sun) − a_true‖ / ‖a_true‖", f"{100 * c['a_rel_error']:.2f} %", "≤ 3 %", ok("a(Sun) within 3 %")),
        ("a(Sun) per component, 95 % band, truth [(km/s)²/kpc]", band, "truth inside",
         ok("a(Sun) inside its 95 % band (every component)")),
        ("ρ(Sun) = ∇²Φ/4πG [M☉/kpc³]", f"{c['rho_sun']:.4g} vs {c['rho_true']:.4g} ({100 * c['rho_rel_error']:.1f} %)",
         "≤ 10 %", ok("ρ(Sun) within 10 %")),
        ("ρ(Sun) 95 % band", f"[{c['rho_band95'][0]:.4g}, {c['rho_band95'][1]:.4g}]", "truth inside",
         ok("ρ(Sun) inside its 95 % band")),
        ("Pearson r(ε learnt, ε true) over the volume", f"{d['pearson_eps_volume']:.3f} (at the stars "
         f"{d['pearson_eps_stars']:.3f})", "≥ 0.9", ok("Pearson(ε) over the volume ≥ 0.9")),
        ("rms a error inside the clouds, no correction / with ε [(km/s)²/kpc]",
         f"{d['rms_a_error_in_clouds_none']:.0f} / {d['rms_a_error_in_clouds_efficiency']:.0f} = "
         f"{d['error_ratio']:.2f}× (‖a‖ ≈ {d['rms_a_true_in_clouds']:.0f})", "≥ 3×",
         ok("acceleration error in clouds ≥ 3× smaller with ε")),
    ]
    out = ["## Neural accuracy (issue 6 acceptance)", "",
           f"Measured by `{command or 'python benchmarks/neural_disk.py --json figures.json'}` "
           f"(settings {fig['settings']}; machine: {fig['machine']}). Bands: member "
           f"{c.get('band', 'mean ± t(0.975, K−1) × sd (before the √(1 + 1/K) prediction factor of 2026-12-07)')} "
           "over the K neural fits, one per flow member." + (
               "" if "band" in c else " These figures predate 2026-12-07 (a3a71bb): the current code's bands are "
               "√(1 + 1/K) = 1.12× wider at K = 4, and its neural fits split and resample stars, not (x, v) rows, "
               "which widens the members' spread; rerun neural_disk.py to refresh them."), "",
           "| quantity | measured | target | |", "|---|---|---|---|"]
    out += [f"| {q} | {m} | {tg} | {r} |" for q, m, tg, r in rows]
    extra = [f"For reference: the ball-averaged density (divergence theorem, h = 0.2 kpc) "
             f"{c['rho_ball_h0.2']:.4g} vs the truth's {c['rho_ball_true_h0.2']:.4g} "
             f"({100 * c['rho_ball_rel_error']:.1f} %); the least-squares acceleration of the same flows at the Sun "
             f"is off by {100 * c['lstsq_a_rel_error']:.2f} %. The dust removes "
             f"{100 * d['removed_inside_fraction']:.0f} % of the stars within one radius of the cloud centres "
             f"({d['kept']} stars kept)."]
    return out + [""] + extra + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="smoke settings (numbers meaningless)")
    p.add_argument("--out", default=str(OUT), help="output folder (default docs/gallery)")
    p.add_argument("--cache", default=neural_disk.os.environ.get("BAYESDYN_BENCH_CACHE", "~/.cache/bayesdyn/neural_disk"))
    for name, default in (("n", 100_000), ("ensemble", 4), ("psd-epochs", 100), ("steps", 6000), ("batch", 2048),
                          ("velocities-per-star", 3), ("width", 64), ("seed", 0), ("dust-seed", 1)):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--fit-radius", type=float, default=1.8, help="as benchmarks/neural_disk.py --fit-radius [kpc]")
    p.add_argument("--psd", default=None, help="a saved no-dust PhaseSpaceDensity folder (as benchmarks/neural_disk.py --psd)")
    p.add_argument("--notes", default=None, help="a Markdown file appended after the accuracy table (docs/gallery/notes.md, "
                   "hand-written, is linked when present)")
    p.add_argument("--figures", default=None,
                   help="JSON written by `benchmarks/neural_disk.py --json`: its acceptance figures go on the page")
    p.add_argument("--command", default=None, help="the neural_disk.py command line that wrote --figures (shown on the page)")
    args = p.parse_args()

    import bayesdyn as bd
    from bayesdyn import maps
    from bayesdyn.mocks import DustModel, apply_dust

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = neural_disk.settings_from(args)
    cache = pathlib.Path(args.cache).expanduser() / ("tiny" if args.tiny else "full")
    cache.mkdir(parents=True, exist_ok=True)
    log: dict = {}
    cat, truth = bd.mocks.load_default()
    if s["n"] < cat.n:
        keep = np.zeros(cat.n, bool)
        keep[np.random.default_rng(args.seed).choice(cat.n, s["n"], replace=False)] = True
        cat = cat.select(keep, f"benchmark subsample of {s['n']}")
    sun = np.asarray(cat.solar.position)
    if args.psd:
        psd, tag = neural_disk.load_external_psd(args.psd)
        clean_name = f"clean_{tag}"
    else:
        psd = neural_disk.get_psd(cat, "clean", cache, s, args.seed, log)
        clean_name = "clean"
    fit = neural_disk.get_neural(psd, cat, clean_name, cache, s, args.seed, log)
    pot = fit.potential
    mw = bd.potentials.MWPotential2014()
    gala = bd.potentials.MilkyWayPotential()
    refs = {"MWPotential2014 (truth)": mw, "gala MilkyWayPotential": gala}
    written = []

    # ---- lines of sight
    d = np.linspace(0.0, 1.5, 31)
    sights = [(0.0, 0.0), (90.0, 0.0), (0.0, 90.0)]
    fig, axes = _figure(3, 3)
    for j, (l, b) in enumerate(sights):
        los = maps.line_of_sight(l, b, d, cat.solar)
        for i, q in enumerate(("a_R", "a_z", "density")):
            est = maps.evaluate(pot, q, los)
            ref = {k: maps.evaluate(m, q, los) for k, m in refs.items()}
            ax = maps.plot_profile({"neural Φ (ensemble)": est}, ax=axes[i, j], axis="distance", references=ref)
            ax.set_title(f"l = {l:g}°, b = {b:g}°")
            if ax.get_legend() is not None and (i, j) != (0, 0):
                ax.get_legend().remove()
    fig.suptitle("Lines of sight from the Sun: neural potential (68/95 % bands) against reference models")
    fig.savefig(out / "lines_of_sight.png", dpi=110)
    written.append(("lines_of_sight.png", "a_R, a_z and ρ along three lines of sight from the Sun: the neural "
                    "ensemble with its 68/95 % bands, MWPotential2014 (the mock's truth) and gala's MilkyWayPotential."))

    # ---- density and acceleration maps in the x–z plane through the Sun
    sl = maps.slice("xz", center=sun, extent=(1.5, 1.0), n=(61, 41))
    rho_n = maps.evaluate(pot, "density", sl)
    rho_t = maps.evaluate(mw, "density", sl)
    fig, axes = _figure(1, 3)
    lo = np.log10(max(np.nanmin(rho_t.mean), 1e5))
    hi = np.log10(np.nanmax(rho_t.mean))
    maps.plot_map(rho_n, ax=axes[0, 0], log=True, vmin=lo, vmax=hi, title="neural ρ = ∇²Φ/4πG")
    maps.plot_map(rho_t, ax=axes[0, 0 + 1], log=True, vmin=lo, vmax=hi, title="MWPotential2014 ρ (truth)")
    maps.plot_map(rho_n, ax=axes[0, 2], statistic="relative_sd", vmin=0.0, vmax=1.0,
                 title="ensemble spread of ρ / |ρ|")
    fig.savefig(out / "density_xz.png", dpi=110)
    written.append(("density_xz.png", "Mass density in the x–z plane through the Sun: the neural potential's "
                    "autodiff Laplacian, the truth, and the relative spread of the ensemble. White: ρ ≤ 0, where "
                    "the network is unconstrained (few stars at |z| > 0.6 kpc; the fit uses no positivity penalty)."))

    az_n = maps.evaluate(pot, "a_z", sl)
    az_t = maps.evaluate(mw, "a_z", sl)
    diff = az_n._replace(mean=az_n.mean - az_t.mean, members=None)
    fig, axes = _figure(1, 3)
    v = float(np.nanmax(np.abs(az_t.mean)))
    maps.plot_map(az_n, ax=axes[0, 0], cmap="RdBu_r", vmin=-v, vmax=v, title="neural a_z")
    maps.plot_map(az_t, ax=axes[0, 1], cmap="RdBu_r", vmin=-v, vmax=v, title="MWPotential2014 a_z (truth)")
    maps.plot_map(diff, ax=axes[0, 2], cmap="RdBu_r", title="neural − truth")
    fig.savefig(out / "acceleration_xz.png", dpi=110)
    written.append(("acceleration_xz.png", "Vertical acceleration in the x–z plane through the Sun: neural, truth, "
                    "difference."))

    # ---- learnt efficiency against the synthetic dust
    dust = DustModel.near_sun(sun, seed=args.dust_seed, depth=0.9)
    dcat, dust = apply_dust(cat, dust, seed=args.dust_seed)
    dpsd = neural_disk.get_psd(dcat, "dust", cache, s, args.seed, log)
    fit_eps = neural_disk.get_neural(dpsd, dcat, "dust_eps", cache, s, args.seed, log, selection="efficiency")
    mid = maps.slice("xy", center=[sun[0], sun[1], 0.0], extent=1.5, n=61)
    e_t = maps.evaluate(dust, "efficiency", mid)
    e_n = maps.evaluate(fit_eps.efficiency, "efficiency", mid)
    fig, axes = _figure(1, 3)
    maps.plot_map(e_t, ax=axes[0, 0], vmin=0, vmax=1, title="true ε (synthetic dust)")
    maps.plot_map(e_n, ax=axes[0, 1], vmin=0, vmax=1, title="learnt ε (joint with Φ)")
    maps.plot_map(e_n._replace(mean=e_n.mean - e_t.mean, members=None), ax=axes[0, 2], cmap="RdBu_r", vmin=-0.5,
                  vmax=0.5, title="learnt − true")
    for ax in axes[0]:
        ax.plot([sun[0]], [sun[1]], marker="*", color="w", ms=10, mec="k")
    fig.savefig(out / "efficiency.png", dpi=110)
    r = float(np.corrcoef(e_n.mean.ravel(), e_t.mean.ravel())[0, 1])
    written.append(("efficiency.png", f"Selection efficiency in the midplane: truth, the jointly learnt ε(x) "
                    f"(normalised to max 1 over the stars) and their difference; Pearson r = {r:.3f} on this slice. "
                    "★ the Sun."))

    # ---- disequilibrium diagnostic
    dsl = maps.slice("xz", center=sun, extent=(1.2, 0.8), n=(25, 17))
    deq_n = maps.disequilibrium_map(psd, pot, dsl, n_velocities=128, seed=0)
    deq_g = maps.disequilibrium_map(psd, gala, dsl, n_velocities=128, seed=0)
    fig, axes = _figure(1, 2)
    top = float(np.nanquantile(np.concatenate([deq_n.relative.ravel(), deq_g.relative.ravel()]), 0.98))  # NaN: no v·s_x
    maps.plot_disequilibrium(deq_n, ax=axes[0, 0], vmin=0.0, vmax=top)
    axes[0, 0].set_title("∂log f/∂t with the neural acceleration")
    maps.plot_disequilibrium(deq_g, ax=axes[0, 1], vmin=0.0, vmax=top)
    axes[0, 1].set_title("∂log f/∂t with gala's MilkyWayPotential")
    fig.savefig(out / "disequilibrium.png", dpi=110)
    written.append(("disequilibrium.png", "The disequilibrium diagnostic rms ∂log f/∂t / rms v·s_x over p(v|x) "
                    "(0: the acceleration balances the streaming term exactly), with the fitted neural "
                    f"acceleration (median {np.nanmedian(deq_n.relative):.2f}) and with gala's MilkyWayPotential, "
                    f"which is not the mock's potential (median {np.nanmedian(deq_g.relative):.2f})."))

    lines = ["# Gallery", "",
             f"Made by `python {shlex.join(sys.argv)}`" + (" (smoke settings: the fits are far from converged)"
                                                          if args.tiny else "") + " on the shipped disk mock "
             f"({cat.n} stars; settings {s}). Machine: {neural_disk.machine()}.", ""]
    if args.figures:
        lines += accuracy_section(json.loads(pathlib.Path(args.figures).read_text()), args.command)
    if args.notes:
        lines += [pathlib.Path(args.notes).read_text(), ""]
    if (out / "notes.md").is_file():
        lines += ["What limits these numbers, with the control measurements: [accuracy notes](notes.md).", ""]
    for name, caption in written:
        lines += [f"## {name.rsplit('.', 1)[0].replace('_', ' ')}", "", f"![{name}]({name})", "", caption, ""]
    (out / "index.md").write_text("\n".join(lines))
    print(f"wrote {len(written)} figures and index.md to {out}")


if __name__ == "__main__":
    main()

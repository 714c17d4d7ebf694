"""Calibration of bayesdyn's posteriors on mocks with known truth (issue 5): coverage, bias, PIT.

One mock:

    python benchmarks/calibration.py --mock nfw  --realisations 30 --n-stars 50000 --max-epochs 30 --out my-nfw
    python benchmarks/calibration.py --mock disk --realisations 30 --n-stars 50000 --max-epochs 30 --out my-disk
    python benchmarks/calibration.py --mock gaia-challenge --out docs/calibration/gaia-challenge

(the stored runs in docs/calibration/ used 30 epochs, as the suite does: ``--suite full --only nfw`` reruns one; a
folder that holds a run with other settings refuses to resume with these)

Compare likelihoods on the same flows (fitted once, cached outside the repository):

    python benchmarks/calibration.py --mock nfw --realisations 30 --n-stars 50000 --max-epochs 30 \\
        --likelihood ensemble --likelihood inflate:auto --likelihood mixture --out my-nfw

(with several ``--likelihood`` each goes to ``<out>/<likelihood>/``). Controls of
the harness: ``--method exact`` (the mock's exact scores) or ``--method truth``
(its true accelerations at the nodes) with a floor; with ``--noise`` the
likelihood is exactly right, so the coverage must be nominal; with ``--scale 1.2``
it must fail:

    python benchmarks/calibration.py --mock nfw --method exact --likelihood floor:0.05 --noise \\
        --realisations 30 --n-stars 20000 --n-velocities 64 --out docs/calibration/nfw-exact-noise

``--mock gaia-challenge`` runs one realisation of each Gaia Challenge file, except for a control with
``--noise``, which draws ``--realisations`` of the noise and the nodes (the suite's ``gaia-challenge-truth-noise``:
10, with 1500 warm-up steps and target_accept 0.9, settings the command line cannot give).

Suites, and the index page (docs/calibration/index.md) rebuilt from every run folder:

    python benchmarks/calibration.py --suite quick   # CI: R = 3, small N, < 3 min
    python benchmarks/calibration.py --suite full    # the acceptance runs of issue 5 (hours on 2 cores)
    python benchmarks/calibration.py --suite full --only disk   # one run of a suite
    python benchmarks/calibration.py --index         # only rebuild the index's results section
    python benchmarks/calibration.py --index --regenerate   # ... after rewriting every run folder's tables and
                                                            # PIT plot from its records (after a change to them)

Every realisation is saved as soon as it is done (``<out>/realisations/rNNNN.json``);
rerunning the same command resumes. ``--fresh`` starts over. The machine, load
and timings are printed; CPU seconds are the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402  (benchmarks/_machine.py)
from _options import psd_options  # noqa: E402  (benchmarks/_options.py)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "calibration"
INDEX = DOCS / "index.md"
BEGIN, END = "<!-- calibration-results:begin -->", "<!-- calibration-results:end -->"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bayesdyn-calibration"

#: failed realisations of this process (the exit status is 1 if any)
FAILED: list[str] = []

#: the quick suite (CI) and the full suite (issue 5's acceptance runs): name → settings
QUICK = {
    "quick/nfw-exact-noise": dict(mock="nfw", method="exact", likelihood=["floor:0.05"], noise=True, realisations=3,
                                  n_stars=5000, n_nodes=16, n_velocities=32, nuts=(2, 200, 300)),
    "quick/disk-exact": dict(mock="disk", method="exact", likelihood=["floor:0.05"], realisations=3, n_stars=5000,
                             n_nodes=16, n_velocities=32, nuts=(2, 200, 300)),
    "quick/nfw-flow": dict(mock="nfw", method="flow", likelihood=["members", "ensemble"], realisations=3, n_stars=5000,
                           n_nodes=16, n_velocities=64, nuts=(2, 200, 300),
                           psd=dict(ensemble=2, max_epochs=30, n_layers=4, width=32)),
}
FULL = {
    "nfw-exact-noise": dict(mock="nfw", method="exact", likelihood=["floor:0.05"], noise=True, realisations=30,
                            n_stars=20000, n_nodes=64, n_velocities=64),
    "disk-truth-noise": dict(mock="disk", method="truth", likelihood=["floor:0.05"], noise=True, realisations=30,
                             n_stars=20000, n_nodes=64),
    # one star sample, so the realisations are fresh noise draws (and node placements); the flow run's NUTS settings
    "gaia-challenge-truth-noise": dict(mock="gaia-challenge", method="truth", likelihood=["floor:0.05"], noise=True,
                                       realisations=10, n_stars=10000, n_nodes=64,
                                       nuts=dict(num_warmup=1500, target_accept=0.9)),
    # flows of K = 4 bootstrap members as 2 resamples × 2 seeds (fit_psd's default from session 7 until 2026-12-07,
    # pinned so that these entries rerun their published folders, which refuse other settings; ≤ 30 epochs)
    "nfw": dict(mock="nfw", method="flow", likelihood=["members", "ensemble"], realisations=30, n_stars=50000,
                psd=dict(max_epochs=30, seeds_per_resample=2)),
    "disk": dict(mock="disk", method="flow", likelihood=["members", "ensemble"], realisations=30, n_stars=50000,
                 psd=dict(max_epochs=30, seeds_per_resample=2)),
    # one member per bootstrap resample (Rubin's rules over K = 4): fit_psd's default before session 7 and again
    # since 2026-12-07, so what a user gets today
    "nfw-one-seed": dict(mock="nfw", method="flow", likelihood=["members", "ensemble"], realisations=30,
                         n_stars=50000, psd=dict(max_epochs=30, seeds_per_resample=1)),
    "disk-one-seed": dict(mock="disk", method="flow", likelihood=["members", "ensemble"], realisations=30,
                          n_stars=50000, psd=dict(max_epochs=30, seeds_per_resample=1)),
    # the 5-parameter Zhao posteriors need a longer adaptation: with the harness's default 500 warm-up steps and
    # target_accept 0.8, max r̂ was 1.35 (core) and 1.19 (cusp); with these, 1.03 on the core
    "gaia-challenge": dict(mock="gaia-challenge", method="flow", likelihood=["members"], realisations=1,
                           n_stars=10000, psd=dict(max_epochs=30, seeds_per_resample=2),
                           nuts=dict(num_warmup=1500, target_accept=0.9)),
    "gaia-challenge-one-seed": dict(mock="gaia-challenge", method="flow", likelihood=["members"], realisations=1,
                                    n_stars=10000, psd=dict(max_epochs=30, seeds_per_resample=1)),
    # issue 5's accuracy lines at 10⁵ stars (the posterior medians of ρ_tot(⊙), ρ_DM(⊙) and ρ(r_s) against the truth)
    "nfw-1e5": dict(mock="nfw", method="flow", likelihood=["members"], realisations=3, n_stars=100000,
                    psd=dict(max_epochs=30, seeds_per_resample=2)),
    "disk-1e5": dict(mock="disk", method="flow", likelihood=["members"], realisations=3, n_stars=100000,
                     psd=dict(max_epochs=30, seeds_per_resample=2)),
}


def run_one(mock, out: Path, *, method, likelihood, realisations, n_stars, seed=0, n_nodes=64, n_velocities=256,
            noise=False, scale=None, psd=None, nuts=None, fresh=False, psd_cache=DEFAULT_CACHE, quiet=False):
    """Run the harness for one mock and one or more likelihoods; returns {likelihood: CoverageResult}."""
    from bayesdyn import validate

    perturb = None
    if noise and scale:
        raise SystemExit("--noise and --scale are exclusive")
    if noise:
        perturb = validate.gaussian_noise()
    elif scale:
        perturb = validate.scale_accelerations(scale)
    nuts_options = None if nuts is None else (dict(nuts) if isinstance(nuts, dict) else
                                              dict(zip(("num_chains", "num_warmup", "num_samples"), nuts)))
    results = {}
    for lik in likelihood:
        dest = out if len(likelihood) == 1 else out / validate.Likelihood.parse(lik).label.replace(":", "-")
        shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
        print(f"== {mock} · {method} · {lik} → {shown}", flush=True)
        results[lik] = validate.coverage(
            mock, realisations, n_stars, seed, method=method, likelihood=lik, n_nodes=n_nodes,
            n_velocities=n_velocities, psd_options=psd, nuts_options=nuts_options, perturb=perturb, out=dest,
            resume=not fresh, psd_cache=psd_cache, progress=not quiet,
        )
        print(results[lik].summary[["rel_bias", "spread_over_sd", "bias_over_sd", "coverage_68", "coverage_95"]]
              .to_string(float_format=lambda x: f"{x:.3f}"), flush=True)
        for f in results[lik].failures:
            FAILED.append(f"{shown}: realisation {f['realisation']}: {f['error']}")
    return results


def run_gaia_challenge(out: Path, **kw):
    """Both Gaia Challenge mocks and, for one realisation each, their pull table (``pulls.csv``, ``pulls.md``).

    The flows see one realisation (the challenge's one star sample); the controls (``method`` "truth" or "exact"
    with ``noise``) may draw several, each with fresh noise, and are then summarised as coverage runs."""
    kw = dict(kw)
    if kw.get("method", "flow") == "flow" or not kw.get("noise"):
        kw["realisations"] = 1
    res = {}
    for kind in ("core", "cusp"):
        r = run_one(f"gaia-challenge-{kind}", out / kind, **kw)
        res[kind] = next(iter(r.values()))
    if kw["realisations"] > 1:
        return res
    print(write_pulls(res, out))
    return res


def write_pulls(res: dict, out: Path) -> str:
    """pulls.csv and pulls.md of single-realisation Gaia Challenge runs ({"core": result, "cusp": result}) in out;
    returns the Markdown."""
    from bayesdyn import validate

    table = validate.pull_table(res)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "pulls.csv", index=False)
    lines = [
        "# Gaia Challenge pulls",
        "",
        "pull = (median − truth)/sd; pull/w68 = (median − truth) over the 68 % interval's half-width, which heavy "
        "tails do not inflate.",
        "",
        "| mock | quantity | truth [M☉/kpc³] | median | 95 % interval | pull | pull/w68 | rel. error | in 95 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['mock']} | `{r['quantity']}` | {r['truth']:.4g} | {r['median']:.4g} | "
            f"[{r['q2.5']:.4g}, {r['q97.5']:.4g}] | "
            f"{r['pull']:+.2f} | {r['pull_w68']:+.2f} | {r['rel_err']:+.3f} | {'yes' if r['in95'] else '**no**'} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "pulls.md").write_text(text)
    return text


def _run_block(sj: Path, base: Path) -> str:
    """The Markdown of one run folder for the index: settings line, summary table, PIT plot."""
    import pandas as pd

    from bayesdyn.validate._coverage import pass_text

    run = sj.parent
    rel = run.relative_to(base).as_posix()
    payload = json.loads(sj.read_text())
    c = payload["config"]
    summ = pd.DataFrame.from_dict(payload["summary"], orient="index")
    t = payload.get("timing_median") or payload.get("timing_mean", {})
    cpu = sum(v for k, v in t.items() if k.endswith("_cpu_s"))
    head = (
        f"### `{rel}`\n\n{c['mock']['name']}, {c['method']}, likelihood `{c['likelihood']}`"
        + (f", perturbation `{c['perturb']}`" if c.get("perturb") else "")
        + f": {payload['n_realisations']} realisations × {c['n_stars']} stars"
        + (f" ({payload['n_failed']} failed)" if payload["n_failed"] else "")
        + f"; median {cpu:.0f} CPU s per realisation"
        + (f"; {payload['n_unconverged']} with r̂ > 1.01 or divergences and {payload['n_low_ess']} with a bulk or tail "
           "ESS below 400, all kept" if "n_low_ess" in payload else "")
        + f". [Details]({rel}/summary.md) · [table]({rel}/realisations.csv)\n"
    )
    rows = ["| quantity | rel. bias | spread/sd | bias/sd | bias/w68 | 68 % | 95 % | pass |",
            "|---|---|---|---|---|---|---|---|"]
    for q, r in summ.iterrows():
        def f(key, spec):  # a single realisation has no spread, a summary from before a column: "—"
            v = r.get(key)
            return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)

        rows.append(
            f"| `{q}` | {f('rel_bias', '+.3f')} | {f('spread_over_sd', '.2f')} | {f('bias_over_sd', '.2f')} | "
            f"{f('bias_over_w68', '.2f')} | {f('coverage_68', '.2f')} | {f('coverage_95', '.2f')} | "
            f"{pass_text(r)} |"
        )
    img = f"\n![PIT: {rel}]({rel}/pit.png)\n" if (run / "pit.png").is_file() else ""
    return head + "\n" + "\n".join(rows) + "\n" + img


def rebuild_index(index: Path = INDEX, regenerate: bool = False) -> None:
    """Rewrite the results section of the index page from every run folder's summary.json below it; ``regenerate``:
    first rewrite each folder's tables and PIT plot from its realisation records (minutes; only needed after a change
    to what they hold, else it rewrites every folder's files with nothing new in them)."""
    base = index.parent
    if not index.is_file():
        raise SystemExit(f"{index} not found")
    if BEGIN not in index.read_text() or END not in index.read_text():
        raise SystemExit(f"{index} lacks the markers {BEGIN} … {END}")
    from bayesdyn.validate import CoverageResult

    if regenerate:
        for cfg in sorted(base.rglob("config.json")):  # each run's tables and plot from its records
            CoverageResult.load(cfg.parent).save(cfg.parent)
        for pulls in sorted(base.rglob("pulls.md")):  # and the Gaia Challenge pulls from the two runs beside them
            write_pulls({k: CoverageResult.load(pulls.parent / k) for k in ("core", "cusp")}, pulls.parent)
    # read the page only now, after the minutes the plots take with regenerate: edits made meanwhile are kept
    text = index.read_text()
    def is_quick(path: Path) -> bool:
        return path.parent.relative_to(base).parts[0] == "quick"

    full, quick = [], []
    for sj in sorted(base.rglob("summary.json")):
        (quick if is_quick(sj) else full).append(_run_block(sj, base))
    for pulls in sorted(base.rglob("pulls.md")):
        rel = pulls.parent.relative_to(base).as_posix()
        body = pulls.read_text().split("\n", 2)[2]
        (quick if is_quick(pulls) else full).append(f"### `{rel}` — pulls\n\n{body}")
    if quick:
        quick.insert(0, (
            "The `quick/` runs are the CI smoke test (`--suite quick`): R = 3, 5000 stars, and in `quick/nfw-flow` "
            "tiny, under-trained flows (2 members, 4 layers of width 32, 30 epochs). They check that the pipeline "
            "runs and that its numbers are written; they are not acceptance figures (at R = 3 a coverage is 0, 1/3, "
            "2/3 or 1).\n"
        ))
    blocks = full + quick
    section = "\n".join(blocks) if blocks else "_No runs yet: run `python benchmarks/calibration.py --suite quick`._\n"
    new = text.split(BEGIN)[0] + BEGIN + "\n\n" + section + "\n" + END + text.split(END, 1)[1]
    index.write_text(new)
    n_runs = len(blocks) - (1 if quick else 0)
    print(f"rebuilt {index.relative_to(ROOT) if index.is_relative_to(ROOT) else index} from {n_runs} runs")


def run_suite(suite: dict, base: Path, fresh: bool, quiet: bool, psd_cache, only=None) -> None:
    unknown = set(only or ()) - set(suite)
    if unknown:
        raise SystemExit(f"--only {sorted(unknown)}: the suite's runs are {sorted(suite)}")
    for name, spec in suite.items():
        if only and name not in only:
            continue
        spec = dict(spec)
        mock = spec.pop("mock")
        if mock == "gaia-challenge":
            run_gaia_challenge(base / name, fresh=fresh, quiet=quiet, psd_cache=psd_cache, **spec)
        else:
            run_one(mock, base / name, fresh=fresh, quiet=quiet, psd_cache=psd_cache, **spec)


def rebuilds_index(index: bool, suite: str | None, out: Path | None) -> bool:
    """Whether a command rebuilds docs/calibration/index.md: ``--index``, or a suite whose runs land below
    docs/calibration/ (the default, or ``--out docs/calibration/<sub>``); a suite run elsewhere (CI's ``--out``)
    leaves the docs' page alone."""
    return bool(index or (suite and (out is None or out.resolve().is_relative_to(DOCS.resolve()))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mock", choices=["nfw", "disk", "gaia-challenge", "gaia-challenge-core", "gaia-challenge-cusp"])
    p.add_argument("--suite", choices=["quick", "full"], help="run a predefined set of runs into docs/calibration/")
    p.add_argument("--only", action="append", help="with --suite: run only this run of the suite (repeatable)")
    p.add_argument("--index", action="store_true", help="rebuild the results section of docs/calibration/index.md")
    p.add_argument("--regenerate", action="store_true",
                   help="with --index: first rewrite every run folder's tables and PIT plot from its records")
    p.add_argument("--out", type=Path, help="output folder (default docs/calibration/<mock>)")
    p.add_argument("--method", choices=["flow", "exact", "truth"], default="flow",
                   help="flow: fit flows; exact: the mock's exact scores; truth: its true accelerations at the nodes")
    p.add_argument("--likelihood", action="append", help="members | ensemble | floor:F | inflate:C | inflate:auto | mixture, "
                   "joined by '+'; repeat to compare several (default ensemble)")
    p.add_argument("--realisations", type=int, default=30)
    p.add_argument("--n-stars", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-nodes", type=int, default=64)
    p.add_argument("--n-velocities", type=int, default=256)
    p.add_argument("--ensemble", type=int, default=4, help="flows per realisation")
    p.add_argument("--max-epochs", type=int, default=100)
    p.add_argument("--no-bootstrap", action="store_true", help="train members on the same stars")
    p.add_argument("--psd-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another fit_psd setting, e.g. n_layers=4 (value parsed as JSON; repeatable)")
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--noise", action="store_true",
                   help="add Gaussian noise drawn from the covariance (positive control)")
    p.add_argument("--scale", type=float, help="multiply the accelerations by this factor (negative control)")
    p.add_argument("--psd-cache", type=Path, default=DEFAULT_CACHE, help=f"fitted-flow cache (default {DEFAULT_CACHE})")
    p.add_argument("--fresh", action="store_true", help="discard finished realisations in the output folder")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if not (a.mock or a.suite or a.index):
        p.error("give --mock, --suite or --index")
    if a.regenerate and not a.index:
        p.error("--regenerate goes with --index")
    print(f"machine: {machine()}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if a.suite:
        base = DOCS if a.out is None else a.out
        run_suite(QUICK if a.suite == "quick" else FULL, base, a.fresh, a.quiet, a.psd_cache, a.only)
    if a.mock:
        out = a.out or DOCS / a.mock
        kw = dict(
            method=a.method, likelihood=a.likelihood or ["ensemble"], realisations=a.realisations, n_stars=a.n_stars,
            seed=a.seed, n_nodes=a.n_nodes, n_velocities=a.n_velocities, noise=a.noise, scale=a.scale,
            psd=dict(ensemble=a.ensemble, max_epochs=a.max_epochs, bootstrap=not a.no_bootstrap,
                     **psd_options(a.psd_option)),
            nuts=(a.num_chains, a.num_warmup, a.num_samples), fresh=a.fresh, psd_cache=a.psd_cache, quiet=a.quiet,
        )
        if a.mock == "gaia-challenge":
            if a.n_stars == 50_000:
                kw["n_stars"] = 10_000
            run_gaia_challenge(out, **kw)
        else:
            run_one(a.mock, out, **kw)
    if rebuilds_index(a.index, a.suite, a.out):
        rebuild_index(regenerate=a.regenerate)
    print(f"total: {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU", flush=True)
    if FAILED:
        print(f"{len(FAILED)} realisation(s) failed:\n  " + "\n  ".join(FAILED), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Coverage of the pipeline's default model fitted by the weak form on disk-mock realisations.

``bayesdyn demo --likelihood weak_form`` fits the pipeline's default model (NFW halo density, Miyamoto–Nagai disk
mass and a thin dark disk's surface density free, the bulge fixed; ``pipeline.DEFAULT_CONFIG["model"]``) to the
shipped mock, whose truth has no dark disk: Σ_DD = 0 sits on its prior's edge. The weak form's calibration
(docs/league-weak-form.md) used ``validate.DiskMock.model()``, without the dark disk. This script measures the
default model: for league disk realisations r = F … F + N − 1 (10⁵ stars each, ``validate.realisation``'s seeds as
``benchmarks/weak_form_disk.py`` draws them) it runs ``bd.weak_form_data`` + ``bd.infer`` (2 chains × (500 + 1000))
and prints, for the report's truth-check quantities and the headline local dark-matter density ρ_DM(⊙) (the
model counts the halo and the dark disk as dark matter; the truth's is the halo's), how often the truth lies inside the 95 % and 68 % intervals
and the mean pull (median − truth)/sd, with the machine.

    python benchmarks/weak_form_default_model.py [--first 0] [--realisations 20]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import league  # noqa: E402
from _machine import machine  # noqa: E402

VERSION = 1  # bump when a row's content changes
KEYS = ("rho_total_sun", "v_circ_R0", "Kz_1p1kpc", "Sigma_1p1kpc", "rho_dm_sun")


def main(argv=None):
    import jax

    import bayesdyn as bd
    from bayesdyn import validate
    from bayesdyn.inference import derived_quantities
    from bayesdyn.pipeline import DEFAULT_CONFIG, build_model
    from bayesdyn.validate._coverage import _seeds

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--rows", default=str(league.DEFAULT_CACHE / "weak-default-model-rows.jsonl"),
                    help="JSON-lines file of finished realisations, reused by later runs ('' for none)")
    a = ap.parse_args(argv)
    import json

    rows_file = Path(a.rows) if a.rows else None
    done = {}
    if rows_file is not None and rows_file.is_file():
        for line in rows_file.read_text().splitlines():
            row = json.loads(line)
            if row.get("version") == VERSION:
                done[row["r"]] = row
    m0, t0 = machine(), time.time()
    model = build_model(DEFAULT_CONFIG["model"])
    mock = validate.DiskMock()
    truth_comps = mock._truth_components()
    rows = []
    for r in range(a.first, a.first + a.realisations):
        if r in done:
            rows.append(done[r])
            continue
        t = time.time()
        jax.clear_caches()  # every realisation compiles anew (its star count): without this, ~15 exhaust the mappings
        with jax.enable_x64(True):
            cat, _ = mock.draw(league.FULL["realisations"]["n"], _seeds(0, r)["mock"])
            sun = np.asarray(cat.solar.position, float)
            true = {k: float(v) for k, v in derived_quantities(truth_comps, ("halo",), sun).items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = bd.infer(model, bd.weak_form_data(cat), seed=r, num_chains=2, num_warmup=500, num_samples=1000,
                            progress=False)
        row = {"r": r, "version": VERSION, "J p": post.info["weak_form"]["p_value"],
               "sigma_dd": float(np.median(post.samples["dark_disk.surface_density"]))}
        for k in KEYS:
            s = np.asarray(post.samples[f"derived.{k}"]).ravel()
            lo95, lo68, med, hi68, hi95 = np.percentile(s, [2.5, 16, 50, 84, 97.5])
            row[k] = (bool(lo95 <= true[k] <= hi95), bool(lo68 <= true[k] <= hi68),
                      float((med - true[k]) / s.std(ddof=1)), float((med - true[k]) / abs(true[k])))
        rows.append(row)
        if rows_file is not None:
            rows_file.parent.mkdir(parents=True, exist_ok=True)
            with rows_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        print(f"r{r}: " + ", ".join(f"{k} pull {row[k][2]:+.1f}" for k in KEYS)
              + f"; Σ_DD median {row['sigma_dd'] / 1e6:.2f} M☉/pc²; J p {row['J p']:.2f} ({time.time() - t:.0f} s)",
              flush=True)
    n = len(rows)
    print(f"\n{n} realisations r{a.first}–r{a.first + n - 1}, the pipeline's default model by the weak form (truth: "
          "MWPotential2014, no dark disk):")
    print("| quantity | truth inside 95 % | inside 68 % | mean pull ± se | mean relative error |")
    print("|---|---|---|---|---|")
    for k in KEYS:
        p = np.array([row[k][2] for row in rows])
        print(f"| {k} | {sum(row[k][0] for row in rows)}/{n} | {sum(row[k][1] for row in rows)}/{n} | "
              f"{p.mean():+.2f} ± {p.std(ddof=1) / np.sqrt(n):.2f} | {100 * np.mean([row[k][3] for row in rows]):+.2f} % |")
    sdd = np.array([row["sigma_dd"] for row in rows]) / 1e6
    print(f"Σ_DD posterior median: mean {sdd.mean():.2f} M☉/pc² (truth 0; prior U(0, 30))")
    print(f"\nMachine: {m0} (start), {machine()} (end); {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

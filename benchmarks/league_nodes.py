"""Where the league's parametric disk error comes from: node sampling or the flows (diagnostic, changes nothing).

The league (``benchmarks/league.py``) fits the calibrated disk model (``validate.DiskMock.model()``:
free disk mass and halo density) to CBE accelerations at 64 nodes within 1.5 kpc of the Sun. Over its 20 disk
realisations the fit's RMS error on a_R at the Sun is 0.92 %, 0.56 × Jeans' 1.64 % (issue 8 asks ≤ 0.5). This
splits that error: on the same realisations and the same cached flows it refits with

- ``league``: the league's 64 nodes (its cached posteriors are reused: the same numbers as docs/league.md);
- ``other64``: 64 other nodes (node seed + 7919), to measure the node-sampling part: with paired errors
  e₁, e₂ of the two node draws, Var_nodes ≈ mean((e₁ − e₂)²)/2, and the rest of the mean square error is
  what every node draw shares (the flows' and the stars' part);
- ``n128``: 128 nodes (node seed + 7919), to see what more nodes would buy,

and prints, per acceleration row, the RMS relative error of each variant over the realisations, its mean, the
mean posterior σ, how often the truth is within 1σ and 2σ, and the RMS ratio to Jeans (Jeans recomputed
here with the league's seeds, so its numbers are docs/league.md's). It is a diagnostic: whatever it prints,
the league's settings are not changed by it (the calibration that vouches for the intervals was measured at
64 nodes).

    python benchmarks/league_nodes.py [--realisations 20] [--variants league other64 n128]
    python benchmarks/league_nodes.py --members [--realisations 20]

``--members`` splits the shared part instead, on the league's nodes: it refits with ``bd.infer(...,
combine="members")`` (the league's ``"auto"`` is this, for the flows' 2 resamples × 2 seeds) and reads the four
members' posterior medians m_jl (resample j, seed l). With a_jl the member's a_R(⊙) (at its median parameters),
the training variance is V_t ≈ mean((a_j1 − a_j2)²)/2, the resamples' V_s ≈ mean((ā_1 − ā_2)²)/2 − V_t/2 (ā_j
the resample means), and the member mean's error variance is modelled as (1 + 1/J) V_s + V_t/(JL) + b² (the
dataset's own sampling error, as large as one resample's, is shared by all members; b a bias shared by all
fits). It prints the measured RMS, the modelled one, and what J resamples × L seeds would give.

Needs the league's disk-realisation flows in the calibration's cache (``python benchmarks/league.py`` fits
them when missing); ~1–2 min per realisation and variant on 2 idle cores.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import league  # noqa: E402
from _machine import machine  # noqa: E402

#: variant -> (number of nodes, offset added to the realisation's node seed)
VARIANTS = {"league": (64, 0), "other64": (64, 7919), "n128": (128, 7919)}


def realisation(mock, r, seed):
    """League disk realisation r: ``validate.realisation``'s dict (cached flows), its league spec, the exact cells."""
    import jax

    from bayesdyn import validate

    s, cfg = league.FULL, league.FULL["realisations"]
    jax.clear_caches()  # each realisation's flows compile anew; keep the process's compiled code bounded (league.py)
    real = validate.realisation(mock, r, n_stars=cfg["n"], seed=seed, psd_options=cfg["psd"],
                                psd_cache=league.CALIBRATION_CACHE, n_nodes=s["n_nodes"])
    if not real["record"].get("psd_loaded_from"):
        print(f"  r{r}: flows were not in the cache; fitted here", flush=True)
    spec = league._disk_spec(f"disk-r{r:04d}", f"disk realisation {r}", real["catalog"], real["truth"], s,
                             real["seeds"]["nodes"])
    if not np.array_equal(spec.nodes, real["nodes"]):
        raise RuntimeError("the league spec's nodes differ from the calibration's")
    with jax.enable_x64(True):
        truth = league.exact_cells(spec.quantities, spec.X, spec.truth_acceleration, spec.truth_density)
    return real, spec, truth


def error_row(qs, truth, cells):
    """Per quantity: (relative error, relative σ, |error|/σ) of a method's cells against the truth."""
    row = {}
    for q in qs:
        t, e = truth[q.key], cells[q.key]
        row[q.key] = (league.rel_error(e, t), e.error / abs(t.value),
                      abs(e.value - t.value) / e.error if e.error > 0 else math.nan)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", action="store_true", help="split the shared error into training and resampling")
    a = ap.parse_args(argv)
    if a.members:
        return members(a)

    from bayesdyn import validate

    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    s = league.FULL
    cfg = s["realisations"]
    mock = validate.DiskMock()
    clock = league.Clock()
    quiet = lambda *_: None  # noqa: E731
    err = {v: [] for v in ["jeans", *a.variants]}  # per variant: list over realisations of {key: (rel err, rel σ, |pull|)}
    keys = None
    for r in range(a.realisations):
        real, base, truth = realisation(mock, r, a.seed)
        psd, seeds, cat = real["psd"], real["seeds"], real["catalog"]
        psd_id = league.realisation_psd_id(real, cfg, r)
        qs = [q for q in base.quantities if q.kind == "acc"]
        keys = [(q.key, q.label) for q in qs]

        def record(variant, cells):
            err[variant].append(error_row(qs, truth, cells))

        record("jeans", base.jeans(s["n_boot"], seeds["accel"]))
        line = []
        for v in a.variants:
            n_nodes, offset = VARIANTS[v]
            spec = base if v == "league" else league._disk_spec(
                f"disk-r{r:04d}", f"disk realisation {r}", cat, real["truth"], {**s, "n_nodes": n_nodes},
                seeds["nodes"] + offset)
            cells, diag = league.parametric_cells(spec, psd, s, seeds["nuts"], league.DEFAULT_CACHE, clock, False,
                                                  quiet, psd_id)
            if "problems" in diag:
                print(f"  r{r} {v}: {diag}", flush=True)
            record(v, cells)
            line.append(f"{v} {100 * err[v][-1]['aR_sun'][0]:+.2f} %")
        print(f"r{r}: a_R(⊙) jeans {100 * err['jeans'][-1]['aR_sun'][0]:+.2f} %, " + ", ".join(line)
              + f"  [{time.time() - t0:.0f} s]", flush=True)

    n = a.realisations
    print(f"\n# parametric disk fit over {n} league realisations (10⁵ stars each): relative errors in %")
    print("| quantity | variant | RMS | mean | mean σ | within 1σ | within 2σ | RMS / Jeans RMS |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label in keys:
        rms_j = math.sqrt(np.mean([row[key][0] ** 2 for row in err["jeans"]]))
        for v in ["jeans", *a.variants]:
            e = np.array([row[key][0] for row in err[v]])
            sg = np.array([row[key][1] for row in err[v]])
            p = np.array([row[key][2] for row in err[v]])
            rms = math.sqrt(np.mean(e ** 2))
            ratio = "—" if v == "jeans" else f"{rms / rms_j:.2f}"
            print(f"| {label} | {v} | {100 * rms:.2f} | {100 * e.mean():+.2f} | {100 * sg.mean():.2f} | "
                  f"{int(np.sum(p <= 1))}/{n} | {int(np.sum(p <= 2))}/{n} | {ratio} |")
    if {"league", "other64"} <= set(a.variants):
        print("\n# split of the 64-node mean square error: node sampling vs what every node draw shares")
        print("| quantity | RMS (league) | node-sampling RMS | shared RMS | correlation of the two draws' errors |")
        print("|---|---|---|---|---|")
        for key, label in keys:
            e1 = np.array([row[key][0] for row in err["league"]])
            e2 = np.array([row[key][0] for row in err["other64"]])
            mse = 0.5 * (np.mean(e1 ** 2) + np.mean(e2 ** 2))
            node = 0.5 * np.mean((e1 - e2) ** 2)
            print(f"| {label} | {100 * math.sqrt(np.mean(e1 ** 2)):.2f} | {100 * math.sqrt(node):.2f} | "
                  f"{100 * math.sqrt(max(mse - node, 0.0)):.2f} | {np.corrcoef(e1, e2)[0, 1]:.2f} |")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


def members(a):
    """``--members``: training vs resampling variance of the members' a_R(⊙) etc., on the league's nodes."""
    import warnings

    import jax

    import bayesdyn as bd
    from bayesdyn import validate

    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    s = league.FULL
    mock = validate.DiskMock()
    quiet = lambda *_: None  # noqa: E731
    nuts = dict(s["nuts"])
    rows = []  # per realisation: {key: (combined relative error, members' relative errors as a (J, L) array)}
    keys = None
    for r in range(a.realisations):
        real, spec, truth = realisation(mock, r, a.seed)
        psd, seeds = real["psd"], real["seeds"]
        data = league.node_data(spec, psd, s, seeds["nuts"], quiet)  # as league.parametric_cells seeds it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = bd.infer(spec.model, data, seed=seeds["nuts"], progress=False, combine="members", **nuts)
        info = post.info["combine"]
        groups = np.asarray(psd.info["resample_groups"])
        J, L = int(groups.max()) + 1, int(np.bincount(groups).max())
        names = list(spec.model.free_parameters())
        med = info["member_medians"]
        with jax.enable_x64(True):
            comb = league.posterior_predictive(spec, {n: np.asarray(post.samples[n]) for n in names})
            per = [league.posterior_predictive(spec, {n: np.array([med[n][k]]) for n in names})
                   for k in range(len(groups))]
        qs = [q for q in spec.quantities if q.kind == "acc"]
        keys = [(q.key, q.label) for q in qs]
        row = {}
        for q in qs:
            t = truth[q.key]
            m = np.full((J, L), np.nan)
            fill = np.zeros(J, int)
            for k, g in enumerate(groups):
                m[g, fill[g]] = league.rel_error(per[k][q.key], t)
                fill[g] += 1
            row[q.key] = (league.rel_error(comb[q.key], t), m)
        rows.append(row)
        m = row["aR_sun"][1]
        print(f"r{r}: a_R(⊙) combined {100 * row['aR_sun'][0]:+.2f} %, members "
              + "; ".join(", ".join(f"{100 * x:+.2f}" for x in m[j]) for j in range(J))
              + f" %  [{time.time() - t0:.0f} s]", flush=True)
    n = len(rows)
    print(f"\n# members of the league's disk fits over {n} realisations ({J} resamples × {L} seeds): relative "
          "errors in %; V_t training, V_s resampling variance, b the mean error of the member mean")
    print("| quantity | RMS combined | RMS member mean | √V_t | √V_s | b | modelled RMS (J=2, L=2) | J=3, L=2 | "
          "J=4, L=2 | J=8, L=1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, label in keys:
        comb = np.array([row[key][0] for row in rows])
        ms = np.array([row[key][1] for row in rows])  # (n, J, L)
        mean = ms.mean(axis=(1, 2))
        vt = float(np.mean(np.var(ms, axis=2, ddof=1)))
        gm = ms.mean(axis=2)
        vs = max(float(np.mean(np.var(gm, axis=1, ddof=1))) - vt / L, 0.0)
        b = float(mean.mean())

        def model(j, l_):
            return 100 * math.sqrt((1 + 1 / j) * vs + vt / (j * l_) + b ** 2)

        print(f"| {label} | {100 * math.sqrt(np.mean(comb ** 2)):.2f} | {100 * math.sqrt(np.mean(mean ** 2)):.2f} | "
              f"{100 * math.sqrt(vt):.2f} | {100 * math.sqrt(vs):.2f} | {100 * b:+.2f} | {model(J, L):.2f} | "
              f"{model(3, 2):.2f} | {model(4, 2):.2f} | {model(8, 1):.2f} |")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

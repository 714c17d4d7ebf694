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
    python benchmarks/league_nodes.py --node-bias [--realisations 20] [--tilt] [--score-split]
        [--velocity-weights exp(-q/2) exp(-q)] [--psd-option KEY=VALUE ... [--mix]] [--no-nuts]
    python benchmarks/league_nodes.py --star-level [--realisations 20] [--fit-radius 1.5]
    ... [--first R]   (any mode: realisations R … R + N − 1; default 0, the league's)

``--members`` splits the shared part instead, on the league's nodes: it refits with ``bd.infer(...,
combine="members")`` (the league's ``"auto"`` is this, for the flows' 2 resamples × 2 seeds) and reads the four
members' posterior medians m_jl (resample j, seed l). With a_jl the member's a_R(⊙) (at its median parameters),
the training variance is V_t ≈ mean((a_j1 − a_j2)²)/2, the resamples' V_s ≈ mean((ā_1 − ā_2)²)/2 − V_t/2 (ā_j
the resample means), and the member mean's error variance is modelled as (1 + 1/J) V_s + V_t/(JL) + b² (the
dataset's own sampling error, as large as one resample's, is shared by all members; b a bias shared by all
fits). It prints the measured RMS, the modelled one, and what J resamples × L seeds would give.

``--node-bias`` locates the shared error instead: on the league's nodes and flows (no NUTS) it prints the
flows' node accelerations' error in a_R by distance from the Sun and, beyond 1 kpc, by direction, with the pulls
under the nodes' combined covariance; and it refits the model by generalised least squares — both free
parameters (disk mass, halo ρ_s) are amplitudes, so a = a_bulge + M u_disk + ρ_s u_halo is linear in them — per
member with its own node covariance, averaged over the members, next to the league's NUTS result (read from the
league's cache; run, silently, and cached there when missing). The
same least-squares fit on the inner (< 1 kpc) and outer nodes, and with the combined covariance, shows how the
error depends on where the nodes are and how they are weighted. These are diagnostics, chosen after seeing the
truth: none of them is a setting to adopt. ``--tilt`` repeats it with the flows' n(x) multiplied by a learnt
tilt e^t(x) (``dust_tilt.fit_tilt``: MLP 64×2, 3000 steps, maximum likelihood on the realisation's stars, 10 %
held out), ∇t added to every member's s_x, to see whether a finer n(x) removes the error (the tilt ~95 s, a
realisation ~4 min on 2 cores beside another run).
``--score-split`` repeats it with the flows' position scores and the mock's exact velocity scores, the
reverse, and both exact scores (the floor set by the mock's own departure from equilibrium and the nodes)
(``DiskTruth.score``: finite differences of galpy's quasi-isothermal DF at the flows' velocity draws, ~30 s per
realisation), to see which score carries the error.
``--velocity-weights`` repeats each of these with the velocity draws weighted in the CBE least squares by
w = exp(−q/2) or exp(−q), q = |u|² with u a draw's offset from its node's median draw in robust standard
deviations per axis: with exact scores any weights give the same acceleration, so how the error moves with the
weights shows whether it sits in the core or the tails of p(v|x). An error of ∇log n(x) alone (the same at
every velocity) moves little: for a Gaussian p(v|x) it gives δa = Σ_v δ(∇log n), Σ_v the node's velocity
covariance, under any weights symmetric about the mean velocity.
Its refit table also gives Jeans (``bd.jeans`` on the league's stencils, seeded as the league seeds it, so r0–r19
give docs/league.md's Jeans numbers) and every refit's RMS over Jeans' RMS on the same realisations. ``--first 20``
runs on realisations the league has not seen (their flows are fitted and cached on first use, ~1–2 min each);
``--no-nuts`` leaves out the league's NUTS column, which is otherwise run (and cached) where the league's cache
lacks it.
``--psd-option KEY=VALUE`` (repeatable) does the same on other flows for the same stars, e.g. ``bootstrap=false
seeds_per_resample=1``: four members trained on all the stars with the league's seeds (fitted once, 100–270 s per
realisation on 2 cores, and cached in the calibration's cache under their own key). With ``--mix`` it also
refits with the league's flows alone and with both ensembles as one (the league's members, then the others', on
the league's velocity draws): whether flows whose node errors differ in pattern average each other's out.

``--star-level`` asks whether the nodes are the bottleneck: it fits the same linear model to every star's own CBE
residual v·s_x + a(x)·s_v within ``--fit-radius`` of the Sun (~54 000 stars at 1.5 kpc; each member's scores at
the star's (x, v); no nodes, no velocity draws), by least squares weighted 1/(|s_v|² + s₀²) with s₀ = 0.1 × the
median |s_v| (the neural fit's default normalisation, which makes each residual an acceleration error along ŝ_v)
or unweighted, member by member, next to the league-like node refit and Jeans on the same realisations (~50 s
per realisation on cached flows).

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
from _options import psd_options  # noqa: E402  (benchmarks/_options.py)

#: variant -> (number of nodes, offset added to the realisation's node seed)
VARIANTS = {"league": (64, 0), "other64": (64, 7919), "n128": (128, 7919)}


def realisation(mock, r, seed, psd_extra=None):
    """League disk realisation r: ``validate.realisation``'s dict (cached flows), its league spec, the exact cells.

    ``psd_extra`` (``--node-bias --psd-option``) adds ``fit_psd`` settings: the same stars and nodes with other
    flows (fitted once, cached under their own key in the calibration's cache)."""
    import jax

    from bayesdyn import validate

    s, cfg = league.FULL, league.FULL["realisations"]
    jax.clear_caches()  # each realisation's flows compile anew; keep the process's compiled code bounded (league.py)
    real = validate.realisation(mock, r, n_stars=cfg["n"], seed=seed, psd_options={**cfg["psd"], **(psd_extra or {})},
                                psd_cache=league.CALIBRATION_CACHE, n_nodes=s["n_nodes"])
    if not real["record"].get("psd_loaded_from"):
        print(f"  r{r}: flows{' with ' + str(psd_extra) if psd_extra else ''} were not in the cache; fitted here",
              flush=True)
    spec = league._disk_spec(f"disk-r{r:04d}", f"disk realisation {r}", real["catalog"], real["truth"], s,
                             real["seeds"]["nodes"])
    if not np.array_equal(spec.nodes, real["nodes"]):
        raise RuntimeError("the league spec's nodes differ from the calibration's")
    with jax.enable_x64(True):
        truth = league.exact_cells(spec.quantities, spec.X, spec.truth_acceleration, spec.truth_density)
    return real, spec, truth


def _quiet(*_):
    """A log that drops its messages (league.py's helpers take one)."""


def _start():
    """Each mode's start: its clock, the machine line, the league's settings and the disk mock."""
    from bayesdyn import validate

    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    return t0, league.FULL, validate.DiskMock()


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
    ap.add_argument("--first", type=int, default=0,
                    help="first realisation (default 0: the league's); e.g. --first 20 for 20 held-out ones")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                    help="node draws to compare (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", action="store_true", help="split the shared error into training and resampling")
    ap.add_argument("--node-bias", action="store_true", help="where the shared error lies among the nodes (no NUTS)")
    ap.add_argument("--star-level", action="store_true",
                    help="the disk model fitted to every star's CBE residual, no nodes (no NUTS)")
    ap.add_argument("--fit-radius", type=float, default=1.5,
                    help="with --star-level: the stars within this distance of the Sun [kpc] (default: the nodes')")
    ap.add_argument("--tilt", action="store_true", help="with --node-bias: also with a learnt tilt of the flows' n(x)")
    ap.add_argument("--mean-shift", action="store_true",
                    help="with --node-bias: also with each member's mean velocity matched to the stars' (linear δ(x))")
    ap.add_argument("--score-split", action="store_true",
                    help="with --node-bias: also with the flows' position scores and the exact velocity scores, and "
                         "the reverse (finite differences of the mock's DF at the same velocities)")
    ap.add_argument("--velocity-weights", nargs="+", choices=list(VELOCITY_WEIGHTS), default=[],
                    help="with --node-bias: also with the velocity draws weighted by w(q) in the CBE least squares")
    ap.add_argument("--mix", action="store_true",
                    help="with --node-bias --psd-option: also the league's flows and the other flows as one ensemble "
                         "(the league's members, then the others'), next to each alone")
    ap.add_argument("--no-nuts", action="store_true",
                    help="with --node-bias: leave out the league's NUTS column (it runs NUTS, and caches it, for "
                         "realisations not in the league's cache)")
    ap.add_argument("--psd-option", action="append", default=[], metavar="KEY=VALUE",
                    help="with --node-bias: other flows for the same stars (fit_psd setting, repeatable; e.g. "
                         "bootstrap=false); the league's NUTS column is then left out")
    a = ap.parse_args(argv)
    if a.realisations < 1:
        ap.error("--realisations must be at least 1")
    if a.first < 0:
        ap.error("--first must be at least 0")
    if a.members + a.node_bias + a.star_level > 1:
        ap.error("--members, --node-bias and --star-level are separate runs: give one")
    if a.fit_radius <= 0:
        ap.error("--fit-radius must be positive [kpc]")
    if (a.tilt or a.psd_option or a.score_split or a.velocity_weights or a.no_nuts or a.mix) and not a.node_bias:
        ap.error("--tilt, --score-split, --velocity-weights, --no-nuts, --mix and --psd-option apply to --node-bias "
                 "only")
    if a.mix and not a.psd_option:
        ap.error("--mix needs --psd-option: the other flows to mix with the league's")
    if (a.members or a.node_bias or a.star_level) and a.variants is not None:
        ap.error("--variants applies to the node-draw comparison only (without --members, --node-bias or "
                 "--star-level)")
    a.variants = a.variants or list(VARIANTS)
    if a.members:
        return members(a)
    if a.node_bias:
        return node_bias(a)
    if a.star_level:
        return star_level(a)

    t0, s, mock = _start()
    cfg = s["realisations"]
    clock = league.Clock()
    quiet = _quiet
    err = {v: [] for v in ["jeans", *a.variants]}  # per variant: list over realisations of {key: (rel err, rel σ, |pull|)}
    keys = None
    for r in range(a.first, a.first + a.realisations):
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

    t0, s, mock = _start()
    quiet = _quiet
    nuts = dict(s["nuts"])
    rows = []  # per realisation: {key: (combined relative error, members' relative errors as a (J, L) array)}
    keys = None
    for r in range(a.first, a.first + a.realisations):
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


class _FlowScores:
    """A flow ensemble as a score source whose ``score_members`` a subclass alters: velocities, members and
    record are the flows'."""

    def __init__(self, psd):
        self.psd = psd
        self.info, self.n_members, self.sun = psd.info, psd.n_members, getattr(psd, "sun", None)

    def sample_velocities(self, x, n, seed):
        return self.psd.sample_velocities(x, n, seed)


class _MixedScores(_FlowScores):
    """Two flow ensembles of the same stars as one (``--node-bias --mix``): the first's members, then the second's.

    The velocity draws are the first ensemble's (any draws serve the CBE); the resample groups of the second are
    numbered after the first's, as if they were other resamples (they are the same stars' resamples, refitted
    with other settings; only NUTS would read them, and ``--node-bias`` runs none on this source)."""

    def __init__(self, first, second):
        super().__init__(first)
        self.second = second
        self.n_members = first.n_members + second.n_members
        g1 = np.asarray((first.info or {}).get("resample_groups", np.zeros(first.n_members, int)))
        g2 = np.asarray((second.info or {}).get("resample_groups", np.zeros(second.n_members, int)))
        self.info = {**(first.info or {}), "resample_groups": np.r_[g1, g2 + g1.max() + 1].tolist()}

    def score_members(self, x, v):
        a_x, a_v = (np.asarray(t) for t in self.psd.score_members(x, v))
        b_x, b_v = (np.asarray(t) for t in self.second.score_members(x, v))
        return np.concatenate([a_x, b_x.astype(a_x.dtype)]), np.concatenate([a_v, b_v.astype(a_v.dtype)])


class _TiltedScores(_FlowScores):
    """A flow ensemble's scores with ∇t(x − x_⊙) added to every member's s_x (``--node-bias --tilt``)."""

    def __init__(self, psd, grad_tilt, sun):
        super().__init__(psd)
        self.grad_tilt, self.origin = grad_tilt, np.asarray(sun, float)

    def score_members(self, x, v):
        import jax.numpy as jnp

        s_x, s_v = self.psd.score_members(x, v)
        return np.asarray(s_x) + np.asarray(self.grad_tilt(jnp.asarray(np.asarray(x) - self.origin)))[None], s_v


class _MeanShiftedScores(_FlowScores):
    """A flow ensemble whose conditional mean velocity is matched to the stars' (``--node-bias --mean-shift``).

    Each member's p_k(v|x) becomes p_k(v − δ_k(x)|x), with δ_k(x) = c_k + C_k (x − x_⊙) fitted by least squares to
    the stars' v_i − μ_k(x_i) within ``radius`` of the Sun (μ_k(x_i): the mean of ``draws`` draws from member k at
    x_i). A misfit of the flows' mean velocity (the disk's v_φ is skewed, an affine flow's family is not) moves
    a_R as in the radial Jeans equation (about 1 % per km/s in v_φ); this removes the part of it that is linear
    over the fitted volume. The member's scores at v are its own at v − δ_k(x), with s_x − C_kᵀ s_v
    (∂/∂x of log p_k(v − δ_k(x)|x)); the node draws are the flows' shifted by the members' mean δ (any draws
    serve the CBE, whose residual vanishes at every velocity)."""

    def __init__(self, psd, star_x, star_v, sun, radius=1.5, draws=16, seed=0):
        super().__init__(psd)
        self.origin = np.asarray(sun, float)
        x, v = np.asarray(star_x, float), np.asarray(star_v, float)
        near = np.linalg.norm(x - self.origin, axis=1) < radius
        x, v = x[near], v[near]
        design = np.c_[np.ones(len(x)), x - self.origin]
        coef = []
        for k in range(psd.n_members):
            mu = np.asarray(psd.sample_velocities(x, draws, seed + k, member=k), float).mean(axis=1)
            coef.append(np.linalg.lstsq(design, v - mu, rcond=None)[0])
        self.coef = np.array(coef)  # (K, 4, 3): δ_k(x) = [1, x − x_⊙] @ coef[k]
        self.n_stars = int(near.sum())

    def shift(self, x, k=None):
        """δ_k(x) (member k; None: the members' mean), (N, 3) [km/s]."""
        c = self.coef.mean(axis=0) if k is None else self.coef[k]
        return np.c_[np.ones(len(x)), np.asarray(x, float) - self.origin] @ c

    def sample_velocities(self, x, n, seed):
        xs = np.asarray(x, float).reshape(-1, 3)
        v = np.asarray(self.psd.sample_velocities(x, n, seed))
        return (v.reshape(len(xs), n, 3) + self.shift(xs)[:, None, :].astype(v.dtype)).reshape(v.shape)

    def score_members(self, x, v):
        x, v = np.asarray(x), np.asarray(v)
        xs = x.reshape(-1, 3)
        out_x, out_v = [], []
        for k in range(self.coef.shape[0]):
            u = (v.reshape(-1, 3) - self.shift(xs, k)).astype(v.dtype).reshape(v.shape)
            s_x, s_v = (np.asarray(t)[k] for t in self.psd.score_members(x, u))
            out_x.append(s_x - s_v @ self.coef[k][1:].T.astype(s_v.dtype))
            out_v.append(s_v)
        return np.stack(out_x), np.stack(out_v)


#: ``--velocity-weights``: weights w(q) of the velocity draws in the CBE least squares, q = |u|² with u the draw's
#: offset from its node's median draw in robust standard deviations per axis (exp(−q/2): the draws' own Gaussian core)
VELOCITY_WEIGHTS = {"exp(-q/2)": lambda q: np.exp(-q / 2), "exp(-q)": lambda q: np.exp(-q)}


class _WeightedScores:
    """Another score source's scores times √w of each velocity draw (``--node-bias --velocity-weights``), so that
    ``bd.estimate_accelerations``' least squares over the draws is weighted by w; with exact scores any weights
    give the same acceleration. Draws, members and record are the source's."""

    def __init__(self, source, weight):
        self.source, self.weight = source, VELOCITY_WEIGHTS[weight]
        self.info, self.n_members, self.sun = source.info, source.n_members, getattr(source, "sun", None)
        self.exact = getattr(source, "exact", False)  # exact scores stay exact (no one-member warning)

    def sample_velocities(self, x, n, seed):
        return self.source.sample_velocities(x, n, seed)

    def score_members(self, x, v):
        x, v = np.asarray(x), np.asarray(v)
        s_x, s_v = (np.asarray(t) for t in self.source.score_members(x, v))
        # the rows come node by node (estimate_accelerations broadcasts each node over its M draws)
        changes = np.flatnonzero(np.any(x[1:] != x[:-1], axis=1))
        m = len(x) if changes.size == 0 else int(changes[0]) + 1
        if len(x) % m or not np.array_equal(x.reshape(-1, m, 3), np.broadcast_to(x[::m, None], (len(x) // m, m, 3))):
            raise ValueError("_WeightedScores needs the rows node by node, M draws each (as estimate_accelerations "
                             "passes them)")
        vv = v.reshape(-1, m, 3)
        med = np.median(vv, axis=1, keepdims=True)
        mad = 1.4826 * np.median(np.abs(vv - med), axis=1, keepdims=True)
        q = np.sum(((vv - med) / np.where(mad > 0, mad, np.inf)) ** 2, axis=-1).reshape(-1)
        root_w = np.sqrt(self.weight(q))[:, None].astype(s_x.dtype)
        return s_x * root_w, s_v * root_w


class _CrossedScores(_FlowScores):
    """A flow ensemble with one of its scores replaced by the mock's exact one (``--node-bias --score-split``):
    ``which="x"`` keeps the flows' s_x and takes the exact s_v; ``"v"`` the reverse; ``"xv"`` takes both exact
    scores (every member alike), which measures the mock's own departure from equilibrium (its DF uses Staeckel
    actions) and the nodes' Monte Carlo, the floor of any CBE estimate from its stars. The velocities are the
    flows' draws (the same seed gives the same draws as the flows' own estimate); the exact scores are finite
    differences of the DF (``DiskTruth.score``), computed once per draw set and shared through ``memo``."""

    LABELS = {"x": "flows' s_x, exact s_v", "v": "exact s_x, flows' s_v", "xv": "exact s_x and s_v"}

    def __init__(self, psd, truth, which, memo):
        super().__init__(psd)
        self.truth, self.which, self.memo = truth, which, memo

    def score_members(self, x, v):
        import hashlib

        x, v = np.asarray(x), np.asarray(v)
        key = hashlib.sha256(x.tobytes() + v.tobytes()).hexdigest()
        if key not in self.memo:
            self.memo.clear()
            self.memo[key] = tuple(np.asarray(t, np.float64) for t in self.truth.score(x.astype(np.float64),
                                                                                    v.astype(np.float64)))
        ex_x, ex_v = self.memo[key]
        s_x, s_v = (np.asarray(t) for t in self.psd.score_members(x, v))
        exact = {"x": "v", "v": "x", "xv": "xv"}[self.which]  # which scores are replaced by the exact ones
        if "x" in exact:
            s_x = np.broadcast_to(ex_x.astype(s_x.dtype), s_x.shape)
        if "v" in exact:
            s_v = np.broadcast_to(ex_v.astype(s_v.dtype), s_v.shape)
        return s_x, s_v


def _linear_design(model):
    """``model``'s acceleration as base(p) + design(p) @ θ, θ its free parameters, which must be amplitudes (the
    acceleration linear in them, as the disk model's disk mass and halo ρ_s): a function p (P, 3) → (base (P, 3),
    design (P, 3, n_free)), checked for linearity at p on first use."""
    import jax
    import jax.numpy as jnp

    names = list(model.free_parameters())
    scale = 1e8  # any amplitude: the columns are differences of bound models, divided by it

    def at(values, p):
        with jax.enable_x64(True):
            arrays = {k: jnp.asarray(v, jnp.float64) for k, v in values.items()}  # zero amplitudes: arrays bind unchecked
            return np.asarray(model.total_acceleration(model.bind(arrays), jnp.asarray(p, jnp.float64)), float)

    zero = dict.fromkeys(names, 0.0)
    checked = []

    def parts(p):
        base = at(zero, p)
        design = np.stack([(at({**zero, n: scale}, p) - base) / scale for n in names], -1)
        if not checked:
            probe = {n: scale * (k + 2) for k, n in enumerate(names)}  # linear? (else a linear fit is not the model)
            if not np.allclose(at(probe, p), base + design @ np.array([probe[n] for n in names]), rtol=1e-9,
                               atol=1e-9):
                raise RuntimeError(f"the linear refits need a model linear in its free parameters {names}")
            checked.append(True)
        return base, design

    return parts


def _fitted(parts, theta):
    """The acceleration function of the linear model ``parts`` (:func:`_linear_design`) at parameters θ."""

    def accel(p):
        b, d = parts(p)
        return b + d @ theta

    return accel


def _linear_disk_fit(model, x, a, cov):
    """Generalised least squares of ``model``'s free parameters (amplitudes, :func:`_linear_design`) to
    accelerations a (P, 3) with covariances cov (P, 3, 3). Returns the fitted acceleration function."""
    parts = _linear_design(model)
    base, design = parts(x)
    w = np.linalg.inv(cov)
    fisher = np.einsum("pia,pij,pjb->ab", design, w, design)
    theta = np.linalg.solve(fisher, np.einsum("pia,pij,pj->a", design, w, a - base))
    return _fitted(parts, theta)


#: ``--star-level``: each star's CBE residual weight, |s_v| the norm of its velocity score and s₀ = 0.1 × the median
#: |s_v| (``"score"``: the neural fit's default normalisation; ``"none"``: plain least squares)
STAR_WEIGHTS = ("score", "none")


def _star_level_fit(model, x, v, s_x, s_v, weights):
    """Least squares of ``model``'s amplitudes to the star-level CBE residuals v·s_x + a(x)·s_v of one member's
    scores (N, 3) at the stars' own (x, v), weighted as ``weights`` (:data:`STAR_WEIGHTS`). Returns the fitted
    acceleration function."""
    parts = _linear_design(model)
    base, design = parts(x)
    y = -(np.einsum("ni,ni->n", v, s_x) + np.einsum("ni,ni->n", base, s_v))
    cols = np.einsum("nia,ni->na", design, s_v)
    norm = np.linalg.norm(s_v, axis=1)
    w = 1.0 / (norm ** 2 + (0.1 * np.median(norm)) ** 2) if weights == "score" else np.ones_like(norm)
    theta = np.linalg.solve(cols.T @ (w[:, None] * cols), cols.T @ (w * y))
    return _fitted(parts, theta)


def star_level(a):
    """``--star-level``: the disk model fitted to every star's CBE residual within ``--fit-radius`` of the Sun (no
    nodes), member by member, next to the league-like node refit and Jeans on the same realisations."""
    import jax

    t0, s, mock = _start()
    quiet = _quiet
    methods = ["nodes (league-like refit)"] + [f"stars, weights {w}" for w in STAR_WEIGHTS]
    errs = {m: [] for m in ["Jeans", *methods]}  # per method: list over realisations of {key: relative error}
    keys = None
    for r in range(a.first, a.first + a.realisations):
        real, spec, truth = realisation(mock, r, a.seed)
        psd, seeds, cat = real["psd"], real["seeds"], real["catalog"]
        qs = [q for q in spec.quantities if q.kind == "acc"]
        keys = [(q.key, q.label) for q in qs]

        def rel(fits):  # member mean of the fits' relative errors
            cells = []
            for fit in fits:
                with jax.enable_x64(True):
                    cells.append(league.exact_cells(qs, spec.X, fit, None))
            return {q.key: float(np.mean([league.rel_error(c[q.key], truth[q.key]) for c in cells])) for q in qs}

        jc = spec.jeans(s["n_boot"], seeds["accel"])
        errs["Jeans"].append({q.key: league.rel_error(jc[q.key], truth[q.key]) for q in qs})
        d = league.node_data(spec, psd, s, seeds["nuts"], quiet)
        x, mem, mcov = np.asarray(d.x), np.asarray(d.members), np.asarray(d.member_cov)
        errs[methods[0]].append(rel([_linear_disk_fit(spec.model, x, mem[m], mcov[m]) for m in range(len(mem))]))
        xs, vs = np.asarray(cat.x, float), np.asarray(cat.v, float)
        k = np.linalg.norm(xs - spec.sun, axis=1) < a.fit_radius
        xs, vs = xs[k], vs[k]
        sx, sv = (np.asarray(t, float) for t in psd.score_members(xs, vs))  # (K, N, 3)
        for w, m in zip(STAR_WEIGHTS, methods[1:]):
            errs[m].append(rel([_star_level_fit(spec.model, xs, vs, sx[j], sv[j], w) for j in range(len(sx))]))
        print(f"r{r}: {int(k.sum())} stars; a_R(⊙) " + ", ".join(f"{m} {100 * errs[m][-1]['aR_sun']:+.2f} %"
                                                                for m in errs) + f"  [{time.time() - t0:.0f} s]",
              flush=True)
    n = a.realisations
    print(f"\n# the disk model fitted by least squares, member mean, over {n} realisations (r{a.first}–"
          f"r{a.first + n - 1}); stars within {a.fit_radius:g} kpc of the Sun: RMS (mean) relative error in %, and "
          "the RMS over Jeans' RMS on the same realisations (× J)")
    print("| quantity | " + " | ".join(errs) + " |")
    print("|---|" + "---|" * len(errs))
    for key, label in keys:
        rms_j = math.sqrt(np.mean([row[key] ** 2 for row in errs["Jeans"]]))
        cells = []
        for m, rows in errs.items():
            e = np.array([row[key] for row in rows])
            rms = math.sqrt(np.mean(e ** 2))
            cells.append(f"{100 * rms:.2f} ({100 * e.mean():+.2f}" + (")" if m == "Jeans" else
                                                                    f"; {rms / rms_j:.2f} × J)"))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


def node_bias(a):
    """``--node-bias``: the flows' node errors by position, and linear refits that locate the fit's shared error."""
    import jax

    t0, s, mock = _start()
    quiet = _quiet
    shells = [(0.0, 0.5), (0.5, 0.75), (0.75, 1.0), (1.0, 1.25), (1.25, 1.5)]
    directions = [("towards the Galactic centre (+x)", 0, 1), ("away from it (−x)", 0, -1), ("+y", 1, 1),
                  ("−y", 1, -1), ("+z", 2, 1), ("−z", 2, -1)]
    variants = ["all nodes, member covariances", "all nodes, combined covariance", "nodes < 1 kpc from the Sun",
                "nodes ≥ 1 kpc from the Sun"]
    bases = (["flows"] + (["league's flows", "both as one ensemble"] if a.mix else [])
             + (["flows × e^t"] if a.tilt else []) + (["flows, mean-shifted"] if a.mean_shift else [])
             + (list(_CrossedScores.LABELS.values()) if a.score_split else []))
    flows = bases + [f"{b}, w = {w}" for b in bases for w in a.velocity_weights]
    nodes = {f: [] for f in flows}  # per flow variant: rows (distance, unit vector (3), rel. error a_R, pull a_R, rel σ a_R)
    fits = {(f, v): [] for f in flows for v in variants}  # per (flows, variant): list of {key: rel error}
    nuts, jeans, keys = [], [], None  # jeans: per realisation {key: relative error} (the league's Jeans stencils)
    extra = psd_options(a.psd_option)
    if extra:
        print(f"# flows with the extra fit_psd settings {extra} (the league's flows' settings: "
              f"{s['realisations']['psd']})", flush=True)
    for r in range(a.first, a.first + a.realisations):
        real, spec, truth = realisation(mock, r, a.seed, extra)
        psd, seeds = real["psd"], real["seeds"]
        qs = [q for q in spec.quantities if q.kind == "acc"]
        keys = [(q.key, q.label) for q in qs]
        jc = spec.jeans(s["n_boot"], seeds["accel"])  # as league.run_disk_realisations seeds it
        jeans.append({q.key: league.rel_error(jc[q.key], truth[q.key]) for q in qs})
        line = f"r{r}: a_R(⊙) Jeans {100 * jeans[-1]['aR_sun']:+.2f} %;"
        if not extra and not a.no_nuts:  # the league's own flows: its cached NUTS posterior
            psd_id = league.realisation_psd_id(real, league.FULL["realisations"], r)
            cells, _ = league.parametric_cells(spec, psd, s, seeds["nuts"], league.DEFAULT_CACHE, league.Clock(),
                                               False, quiet, psd_id)
            nuts.append(league.rel_error(cells["aR_sun"], truth["aR_sun"]))
            line += f" a_R(⊙) NUTS {100 * nuts[-1]:+.2f} %;"
        sources = {"flows": psd}
        if a.mix:  # the league's own flows of the same stars (cached), alone and with the other flows' members
            league_psd = realisation(mock, r, a.seed)[0]["psd"]
            sources["league's flows"] = league_psd
            sources["both as one ensemble"] = _MixedScores(league_psd, psd)
        if a.tilt:
            from dust_tilt import tilt_of

            _, grad_tilt, gain = tilt_of(real["catalog"].x, psd, spec.sun)
            sources["flows × e^t"] = _TiltedScores(psd, grad_tilt, spec.sun)
            line += f" tilt held-out gain {gain:+.4f} nats per star;"
        if a.mean_shift:
            shifted = _MeanShiftedScores(psd, real["catalog"].x, real["catalog"].v, spec.sun)
            sources["flows, mean-shifted"] = shifted
            line += (f" mean shift at the Sun {np.round(shifted.shift(np.asarray(spec.sun, float)[None])[0], 2).tolist()} "
                     f"km/s ({shifted.n_stars} stars);")
        if a.score_split:
            exact_scores = {}  # the exact scores at the velocities drawn, shared by the two crossings
            for which, label in _CrossedScores.LABELS.items():
                sources[label] = _CrossedScores(psd, real["truth"], which, exact_scores)
        for b in list(sources):
            for w in a.velocity_weights:
                sources[f"{b}, w = {w}"] = _WeightedScores(sources[b], w)
        for f, src in sources.items():
            d = league.node_data(spec, src, s, seeds["nuts"], quiet)
            x, acc, cov = np.asarray(d.x), np.asarray(d.a), np.asarray(d.cov)
            if getattr(d, "member_cov", None) is None:
                raise SystemExit(f"r{r}: the {f} give no per-member covariances (one member, or nodes that failed); "
                                 "--node-bias refits member by member and needs them")
            mem, mcov = np.asarray(d.members), np.asarray(d.member_cov)
            exact = np.asarray(spec.truth_acceleration(x), dtype=float)
            e_R = np.concatenate([x[:, :2] / np.linalg.norm(x[:, :2], axis=1)[:, None], np.zeros((len(x), 1))], 1)
            err = np.einsum("pi,pi->p", acc - exact, e_R)
            t_R = np.abs(np.einsum("pi,pi->p", exact, e_R))
            sig = np.sqrt(np.einsum("pi,pij,pj->p", e_R, cov, e_R))
            dist = np.linalg.norm(x - spec.sun, axis=1)
            nodes[f].append(np.c_[dist, (x - spec.sun) / dist[:, None], err / t_R, err / sig, sig / t_R])
            sel = {variants[0]: (np.ones(len(x), bool), False), variants[1]: (np.ones(len(x), bool), True),
                   variants[2]: (dist < 1.0, False), variants[3]: (dist >= 1.0, False)}
            for v, (k, combined) in sel.items():
                members_err = []
                for m in range(mem.shape[0]):
                    fit = _linear_disk_fit(spec.model, x[k], mem[m][k], cov[k] if combined else mcov[m][k])
                    with jax.enable_x64(True):
                        members_err.append(league.exact_cells(qs, spec.X, fit, None))
                fits[(f, v)].append({q.key: float(np.mean([league.rel_error(c[q.key], truth[q.key])
                                                           for c in members_err])) for q in qs})
            line += f" {f}: least squares {100 * fits[(f, variants[0])][-1]['aR_sun']:+.2f} %;"
        print(line.rstrip(";") + f"  [{time.time() - t0:.0f} s]", flush=True)

    n = a.realisations
    print(f"\n# the flows' node accelerations over {n} realisations × {s['n_nodes']} nodes: relative error of a_R "
          "(a_R < 0; a positive error is too weak), its pull under the nodes' combined covariance, and the relative σ")
    print("| flows | distance from the Sun [kpc] | nodes | mean error | median error | mean pull | RMS pull | mean σ |")
    print("|---|---|---|---|---|---|---|---|")
    for f in flows:
        rows = np.concatenate(nodes[f])
        for lo, hi in shells:
            k = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
            print(f"| {f} | {lo}–{hi} | {int(k.sum())} | {100 * rows[k, 4].mean():+.2f} % | "
                  f"{100 * np.median(rows[k, 4]):+.2f} % | {rows[k, 5].mean():+.2f} | "
                  f"{math.sqrt(np.mean(rows[k, 5] ** 2)):.2f} | {100 * rows[k, 6].mean():.2f} % |")
    print("\n# nodes ≥ 1 kpc from the Sun by direction (unit vector's component > 0.6): mean relative error of a_R")
    print("| flows | direction | nodes | mean error |")
    print("|---|---|---|---|")
    for f in flows:
        rows = np.concatenate(nodes[f])
        for label, axis, sign in directions:
            k = (rows[:, 0] >= 1.0) & (sign * rows[:, 1 + axis] > 0.6)
            print(f"| {f} | {label} | {int(k.sum())} | {100 * rows[k, 4].mean():+.2f} % |")
    nuts = np.array(nuts)
    rms_j = {key: math.sqrt(np.mean([row[key] ** 2 for row in jeans])) for key, _ in keys}
    print(f"\n# the disk model refitted by least squares (member mean): RMS and mean relative error over {n} "
          f"realisations (r{a.first}–r{a.first + n - 1}), in %, and the RMS over Jeans' RMS on the same realisations "
          "(× J)" + ("" if extra or a.no_nuts else f"; the league's NUTS fit on a_R(⊙): RMS "
                     f"{100 * math.sqrt(np.mean(nuts ** 2)):.2f}, mean {100 * nuts.mean():+.2f}, "
                     f"{math.sqrt(np.mean(nuts ** 2)) / rms_j['aR_sun']:.2f} × J"))
    print("| quantity | Jeans | flows | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for key, label in keys:
        ej = np.array([row[key] for row in jeans])
        for f in flows:
            cells = []
            for v in variants:
                e = np.array([row[key] for row in fits[(f, v)]])
                rms = math.sqrt(np.mean(e ** 2))
                cells.append(f"{100 * rms:.2f} ({100 * e.mean():+.2f}; {rms / rms_j[key]:.2f} × J)")
            print(f"| {label} | {100 * rms_j[key]:.2f} ({100 * ej.mean():+.2f}) | {f} | " + " | ".join(cells) + " |")
    print(f"\n# {time.time() - t0:.0f} s; {machine()}")


if __name__ == "__main__":
    main()

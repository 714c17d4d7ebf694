"""Issue 6: ε(x) from the continuity equation in weak form on local test functions (no flows, no Φ).

The dusty stars sample ε(x) f(x, v). Integrated over velocities, the steady CBE is the continuity
equation ∇·(n μ) = 0, whose weak form against any ψ(x) vanishing with its gradient on the sample's
sphere is E_f[v·∇ψ(x)] = 0 — no Φ in it. Seen through the dust, E_obs[v·∇ψ / ε] = 0. With many small
bumps ψ_b(x) = (1 − |x − c_b|²/h²)³ (support radius h, centres on a cubic grid of step s inside the
sphere), the moments g_b(ε) = Σ_i v_i·∇ψ_b(x_i) / ε(x_i) over the stars are zero for the true ε up to
noise, while a hole in n that ε does not explain shows up wherever the mean flow (here the disk's
rotation) carries stars through it.

1/ε(x) = 1 + Σ_k α_k exp(−|x − c_k|²/2σ²), α_k ≥ 0, on Gaussian nodes c_k on a grid over the sphere
(step 0.2 kpc, σ = 0.15 kpc; bumps of h = 0.3 and 0.5 kpc on steps of 0.15 and 0.25 kpc together): the
moments are linear in α, so minimising Σ_b g_b²/V_b + λΣα, with
V_b = Σ_i (v_i·∇ψ_b)² fixed at ε = 1, is a convex problem (projected accelerated gradient) with ε ≤ 1
everywhere and ε = 1 where no α is needed. The L1 weight λ is chosen by 2-fold cross-validation of that
loss over the stars (fit on one half, score the other's moments), never by the truth. The continuity
equation cannot see an ε constant along the mean flow (a function of R and z for a rotating disk); the
penalty leaves that part at ε = 1. (First tried, on development draws only: an MLP for log ε fitted by
Adam; with ε ≤ 1 it saturated at ε = 1 everywhere, and with a free scale it fell into degenerate
weightings, loss below the truth's.)

Options tried after the pre-registered test (benchmarks/prereg/dust-weak-continuity.md: Pearson 0.895 and 0.938 on
dust seeds 1 and 2, line 0.9: failed), not adopted: ``--relax`` (the fit redone on its active nodes with r·λ, r
cross-validated), ``--debias`` (the held-out loss less its expected noise, which grows as 1/ε²), a second ``--basis``
family (docs/gallery/notes.md). One change to the default came with ``--relax``: its r = 1 continues each fit for
another ``iters`` steps on its active nodes at the same λ (the test ran without it; with it, seeds 1 and 3 gave the
same Pearson, 0.895 and 0.949, and λ). The iterations have no convergence test.

Printed: Pearson(ε learnt, ε true) over the volume points of benchmarks/neural_disk.py (the issue's ≥ 0.9
line) and ε at the cloud centres (÷ the volume median).

Run:  python benchmarks/dust_weak.py --dust-seeds 1 2 [--scales H STEP ...] [--basis STEP SIGMA ...]
      [--lams λ/λ_max ...] [--clean]

Cost: 3–4 min per catalog on the 2-core Xeon (the normal equations of both halves and the whole; 1000
projected-gradient steps per λ).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402  (benchmarks/_machine.py)
from dust_tilt import r2  # noqa: E402
from neural_disk import uniform_ball  # noqa: E402  (the same volume points as neural_disk.py)


def _cube(m):
    """The integer points of [−m, m]³, (2m + 1)³ × 3, in C order."""
    return np.stack(np.meshgrid(*[np.arange(-m, m + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)


def volume_points(sun):
    """The volume points of benchmarks/neural_disk.py (60 000 uniform within 1.5 kpc of the Sun, |z| < 0.5 kpc, rng
    12345), where every dust row measures Pearson(ε learnt, ε true)."""
    vol = uniform_ball(np.random.default_rng(12345), sun, 1.5, 60_000)
    return vol[np.abs(vol[:, 2]) < 0.5]


def bump_pairs(x, v, centre, radius, h, step, chunk=20_000):
    """The star–bump pairs of the continuity moments.

    Bumps ψ_b(x) = (1 − |x − c_b|²/h²)³ on the grid c_b = centre + step·k (k integer) with |c_b − centre| ≤
    radius − h, so that every bump vanishes, with its gradient, inside the sphere. Requires h ≤ 2·step (each
    star then lies within h of at most the 5³ grid points around its nearest one).

    Returns (star index (P,), bump index (P,), v·∇ψ_b(x_i) (P,), bump centres (B, 3)).
    """
    if h > 2 * step:
        raise ValueError(f"h = {h} kpc > 2 × step = {2 * step} kpc: the 5³ neighbourhood misses bumps")
    m = int(np.floor((radius - h) / step))
    k = _cube(m)
    keep = np.linalg.norm(k * step, axis=1) <= radius - h
    ids = np.full(len(k), -1)
    ids[keep] = np.arange(keep.sum())
    lookup = ids.reshape((2 * m + 1,) * 3)
    centres = centre + step * k[keep]
    offs = _cube(2)
    out_i, out_b, out_d = [], [], []
    for lo in range(0, len(x), chunk):
        xs, vs = x[lo:lo + chunk], v[lo:lo + chunk]
        kk = np.rint((xs - centre) / step).astype(int)[:, None, :] + offs[None]  # (n, 125, 3)
        inside = (np.abs(kk) <= m).all(-1)
        b = np.where(inside, lookup[tuple(np.clip(kk + m, 0, 2 * m).transpose(2, 0, 1))], -1)
        d = xs[:, None, :] - (centre + step * kk)
        q = 1 - np.sum(d * d, -1) / h**2
        ok = (b >= 0) & (q > 0)
        grad = -6 * d / h**2 * (q**2)[..., None]  # ∇ψ
        vdg = np.einsum("nj,nkj->nk", vs, grad)
        i = np.broadcast_to(np.arange(lo, lo + len(xs))[:, None], ok.shape)
        out_i.append(i[ok])
        out_b.append(b[ok])
        out_d.append(vdg[ok])
    return np.concatenate(out_i), np.concatenate(out_b), np.concatenate(out_d), centres


def rbf_matrix(points, nodes, sigma, cut=3.0):
    """Sparse (len(points), len(nodes)) matrix of exp(−|x − c_k|²/2σ²), cut at ``cut``·σ."""
    from scipy import sparse
    from scipy.spatial import cKDTree

    pairs = cKDTree(points).sparse_distance_matrix(cKDTree(nodes), cut * sigma, output_type="coo_matrix")
    vals = np.exp(-pairs.data**2 / (2 * sigma**2))  # (a point on a node is kept, with distance 0)
    return sparse.coo_matrix((vals, (pairs.row, pairs.col)), shape=(len(points), len(nodes))).tocsr()


def continuity_weak_efficiency(x, v, centre, radius, *, scales=((0.3, 0.15), (0.5, 0.25)),
                               basis=((0.2, 0.15),), min_stars=20, iters=1000,
                               lam_fractions=(0.5, 0.3, 0.2, 0.1, 0.05, 0.02), relax=(1.0,), debias=False, cv_seed=0,
                               log=print):
    """Learn ε(x) from the weak continuity moments (module docstring) by non-negative least squares.

    1/ε(x) = 1 + Σ_k α_k exp(−|x − c_k|²/2σ_k²) with α_k ≥ 0 on grids of nodes c_k (``basis``: (step, σ) pairs) over
    the sphere: the moments are linear in α, so minimising Σ_b g_b²/V_b is a convex problem with one minimum
    (projected accelerated gradient). ε ≤ 1 everywhere, = 1 where no α is needed.

    x, v: (N, 3) [kpc, km/s], the dusty stars inside the sphere (centre, radius); ``scales``: (h, step) pairs of
    the bump sets used together. Returns (ε as a function of positions (M, 3) [kpc], info dict).
    """
    t0 = time.perf_counter()
    from scipy import sparse

    families = []  # (nodes, σ) per family
    for basis_step, basis_sigma in basis:
        m = int(np.floor(radius / basis_step))
        k = _cube(m)
        families.append((centre + basis_step * k[np.linalg.norm(k * basis_step, axis=1) <= radius], basis_sigma))
    nodes = np.concatenate([f[0] for f in families])

    def design(pts):
        return sparse.hstack([rbf_matrix(pts, n_, s_) for n_, s_ in families]).tocsr()

    phi = design(x)  # (N, K)
    half = np.random.default_rng(cv_seed).permutation(len(x)) % 2  # two halves for the choice of λ
    systems = [_normal_equations(x[half == j], v[half == j], phi[half == j], centre, radius, scales, min_stars)
               for j in (0, 1)]
    whole = _normal_equations(x, v, phi, centre, radius, scales, min_stars, log=log)
    lam_max = float(np.max(whole[1]))  # above it every α is 0
    lam_fractions = sorted(lam_fractions, reverse=True)
    cv, warm = {}, [None, None]
    for f in lam_fractions:  # 2-fold cross-validation of the L1 weight λ Σα (per half: λ/2, as Q and c halve; each
        held = dict.fromkeys(relax, 0.0)  # fit starts from the last λ's), and of the relaxation: the same fit redone
        for j in (0, 1):  # on the nodes it made active with the weight r·λ (r = 1: continued at λ; "relaxed lasso")
            warm[j] = _nnls_l1(*systems[j][:2], f * lam_max / 2, iters, start=warm[j])
            for r in relax:
                al = _relaxed(systems[j], warm[j], r * f * lam_max / 2, iters)
                held[r] += _loss(systems[1 - j], al, debias=debias)
        for r in relax:
            cv[f, r] = held[r] / 2
        log(f"    λ = {f:g} λ_max: held-out loss per moment " + ", ".join(f"{cv[f, r]:.4f}" for r in relax)
            + f" (relaxed to r·λ, r = {', '.join(f'{r:g}' for r in relax)})")
    best, best_r = min(cv, key=cv.get)
    alpha = _relaxed(whole, _nnls_l1(*whole[:2], best * lam_max, iters), best_r * best * lam_max, iters)
    info = dict(nodes=len(nodes), moments=whole[3], loss_eps1=_loss(whole, np.zeros(len(nodes))),
                loss_end=_loss(whole, alpha), active=int((alpha > 0).sum()), lam=best, relax=best_r,
                cv=cv, alpha=alpha, nodes_x=nodes, seconds=time.perf_counter() - t0)

    def efficiency(pts):
        return 1 / (1 + design(np.asarray(pts, float).reshape(-1, 3)) @ alpha)

    return efficiency, info


def _normal_equations(x, v, phi, centre, radius, scales, min_stars, log=None):
    """(Q, c, y·y, number of moments, R, r, s) of the loss Σ_b g_b²/V_b = αᵀQα − 2cᵀα + y·y for the stars x, v
    (phi: their basis rows), and of its noise Σ_b Σ_i w_i² t_ib²/V_b = αᵀRα + 2rᵀα + s (w = 1 + phi·α), the part of
    the loss that each star's own term adds: its expectation on stars that did not choose α."""
    from scipy import sparse

    rows_g, rows_y, own = [], [], np.zeros(len(x))
    for h, step in scales:
        si, sb, vdg, centres = bump_pairs(x, v, centre, radius, h, step)
        nb = len(centres)
        count = np.bincount(sb, minlength=nb)
        var = np.bincount(sb, weights=vdg**2, minlength=nb)
        use = (count >= min_stars) & (var > 0)
        t = sparse.csr_matrix((vdg, (sb, si)), shape=(nb, len(x)))[use]  # (B, N)
        scale = 1 / np.sqrt(var[use])
        rows_g.append(sparse.diags(scale) @ (t @ phi))  # the moments' change per unit α_k
        rows_y.append(-scale * np.asarray(t.sum(axis=1)).ravel())  # minus the moments at ε = 1
        own += np.asarray((sparse.diags(scale) @ t).power(2).sum(axis=0)).ravel()
        if log:
            log(f"  bumps h = {h} kpc, step {step} kpc: {int(use.sum())} of {nb} with ≥ {min_stars} stars; "
                f"{len(si)} pairs")
    a = sparse.vstack(rows_g).tocsr()
    y = np.concatenate(rows_y)
    r_mat = np.asarray((phi.T @ sparse.diags(own) @ phi).todense())
    return np.asarray((a.T @ a).todense()), a.T @ y, float(y @ y), len(y), r_mat, phi.T @ own, float(own.sum())


def _loss(system, alpha, debias=False):
    """Σ_b g_b²/V_b per moment at α, from the normal equations; ``debias``: less its noise (see
    ``_normal_equations``), an unbiased estimate of the squared moments' mean on stars that did not choose α."""
    q, c, yy, n, r_mat, r_vec, s0 = system
    out = alpha @ q @ alpha - 2 * c @ alpha + yy
    if debias:
        out -= alpha @ r_mat @ alpha + 2 * r_vec @ alpha + s0
    return float(out / n)


def _relaxed(system, alpha, lam, iters):
    """The L1 fit ``alpha`` redone on its active nodes only, with the weight ``lam`` (the "relaxed lasso")."""
    act = np.nonzero(alpha > 0)[0]
    out = np.zeros_like(alpha)
    if len(act):
        q, c = system[:2]
        out[act] = _nnls_l1(q[np.ix_(act, act)], c[act], lam, iters, start=alpha[act])
    return out


def _nnls_l1(q, c, lam, iters, start=None):
    """argmin_{α ≥ 0} ½αᵀQα − cᵀα + λΣα by FISTA with projection (from ``start``, default 0)."""
    lip = _top_eigenvalue(q)
    c = c - lam
    alpha = np.zeros(len(c)) if start is None else start.copy()
    z, tk = alpha.copy(), 1.0
    for _ in range(iters):
        new = np.maximum(0.0, z - (q @ z - c) / lip)
        tn = (1 + np.sqrt(1 + 4 * tk * tk)) / 2
        z = new + (tk - 1) / tn * (new - alpha)
        alpha, tk = new, tn
    return alpha


def _top_eigenvalue(q, iters=100):
    b = np.random.default_rng(0).normal(size=len(q))
    for _ in range(iters):
        b = q @ b
        b /= np.linalg.norm(b)
    return float(b @ q @ b) * 1.01


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dust-seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--scales", type=float, nargs="+", default=[0.3, 0.15, 0.5, 0.25], metavar="H STEP",
                    help="bump support radius and grid step [kpc], one pair per bump set")
    ap.add_argument("--basis", type=float, nargs="+", default=[0.2, 0.15], metavar="STEP SIGMA",
                    help="grid step and width σ of 1/ε's Gaussian nodes [kpc], one pair per family")
    ap.add_argument("--iters", type=int, default=1000, help="projected-gradient iterations")
    ap.add_argument("--min-stars", type=int, default=20)
    ap.add_argument("--lams", type=float, nargs="+", default=[0.5, 0.3, 0.2, 0.1, 0.05, 0.02],
                    help="L1 weights λ/λ_max to choose from by 2-fold cross-validation of the moments' loss")
    ap.add_argument("--relax", type=float, nargs="+", default=[1.0],
                    help="relaxed-lasso factors r to choose from with λ (the fit redone on its active nodes with r·λ)")
    ap.add_argument("--debias", action="store_true",
                    help="cross-validate the held-out loss less its noise (it grows as 1/ε² and favours shallow holes)")
    ap.add_argument("--clean", action="store_true", help="also fit ε on the dust-free stars (the truth is ε = 1)")
    args = ap.parse_args()
    for name in ("scales", "basis"):  # pairs: an odd count silently dropped the last value
        if getattr(args, name) is not None and len(getattr(args, name)) % 2:
            ap.error(f"--{name} takes pairs of values; got {len(getattr(args, name))}")

    import bayesdyn as bd
    from bayesdyn.mocks import DustModel, apply_dust

    print(machine())
    cat, truth = bd.mocks.load_default()
    sun = np.asarray(cat.solar.position)
    centre, radius = np.asarray(truth.sphere_center, dtype=float), float(truth.sphere_radius)
    for ds in args.dust_seeds:
        dust = DustModel.near_sun(sun, seed=ds, depth=0.9)
        dcat, dust = apply_dust(cat, dust, seed=ds)
        print(f"dust seed {ds}: {dcat.n} of {cat.n} stars; clouds {np.round(dust.centers, 3).tolist()} kpc, "
              f"radii {np.round(dust.radii, 3).tolist()} kpc", flush=True)
        vol = volume_points(sun)
        e_true = np.asarray(dust.efficiency(vol), dtype=float)
        sets = [("dusty", dcat)] + ([("clean", cat)] if args.clean else [])
        for label, c in sets:
            x, v = np.asarray(c.x, float), np.asarray(c.v, float)
            inside = np.linalg.norm(x - centre, axis=1) < radius
            scales = tuple(zip(args.scales[::2], args.scales[1::2]))
            eff, info = continuity_weak_efficiency(x[inside], v[inside], centre, radius, scales=scales,
                                                   basis=tuple(zip(args.basis[::2], args.basis[1::2])),
                                                   min_stars=args.min_stars, iters=args.iters,
                                                   lam_fractions=tuple(args.lams), relax=tuple(args.relax),
                                                   debias=args.debias)
            e = np.asarray(eff(vol))
            ec = np.asarray(eff(dust.centers))
            print(f"  [{label}] {info['seconds']:.0f} s; {info['nodes']} nodes ({info['active']} active), "
                  f"{info['moments']} moments; λ = {info['lam']:g} λ_max, r = {info['relax']:g} (cross-validated); "
                  "loss per moment: "
                  f"ε = 1 {info['loss_eps1']:.3f}, "
                  f"end {info['loss_end']:.3f}; Pearson(ε, ε_true) over the volume "
                  f"{np.corrcoef(e, e_true)[0, 1] if e.std() > 0 else float('nan'):.3f}; volume median ε "
                  f"{np.median(e):.3f}, 5th percentile {np.percentile(e, 5):.3f}; at the centres ÷ median "
                  f"{r2(ec / np.median(e))} (truth {r2(dust.efficiency(dust.centers))})", flush=True)
    print(machine())


if __name__ == "__main__":
    main()

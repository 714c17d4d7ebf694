"""A fixed marginal Gaussianisation of the position latents on the disk mock (experiment, not in the package).

The default affine MAF can give the disk's height z — nearly independent of the
other coordinates — only a Gaussian-mixture-like marginal, which is why the radial
map trades the density slopes near the plane against those at |z| = 1 kpc
(docs/flows.md, ``radial_map``). This tries the classic fix: before the flow, map a
coordinate of the standardised position latents through its own fixed, smooth
marginal, u → Φ⁻¹(F(u)), where F is the CDF of a 1-D Gaussian mixture fitted by EM
to the catalog's latents (``k`` components; ``k < 0``: a kernel estimate on 256
quantiles with bandwidth −k/100), so the flow only has to learn what is left. The
log-Jacobian log F'(u) − log φ(Φ⁻¹(F(u))) enters log n, so the scores stay exact
derivatives of the model. Tails are computed from log Φ (no cancellation); the
inverse is a bisection.

It is an experiment: it wraps ``Preprocessing.position_to_latent`` and
``latent_to_position`` in this process (a saved density would not carry the map),
and clears JAX's compilation cache after the latents are grabbed (jitted code
traced before the map was set would otherwise be reused).

For each setting it fits K members (30 epochs, seed 0; ~80 s each on 2 idle cores)
and prints the error of the member mean of ∂log n/∂(axis) against galpy's exact
slopes at the probes of ``benchmarks/radial_map_disk.py`` (near the plane,
|z| = 0.5, 1 kpc, the sphere's edge) and the validation NLL of n(x).

    python benchmarks/marginal_gauss_disk.py [--settings default none z6 xyz6] [--ensemble 2] [--epochs 30]
    python benchmarks/marginal_gauss_disk.py --league 0 1 2 [--k 6]

``--league R…`` instead compares the league's CBE-flows column (``benchmarks/league.py``: a_R, a_z at the Sun
and at z = ±1 kpc, ρ(⊙) from the node accelerations) on the league's disk realisations R (10⁵ stars each):
the default flows, loaded from the calibration's cache (fitted when missing), against flows fitted with the
same seed and settings (K = 4, 30 epochs, 2 resamples × 2 seeds) with z Gaussianised by a ``--k``-component
mixture and no radial map. ~3 min per realisation on 2 idle cores when the default flows are cached.

Settings: ``default`` (radial map s = 1, what "auto" picks), ``none`` (no radial
map), ``zK`` / ``xyzK`` (mixture of K components on z / on every axis, no radial
map), ``zK+map`` (with the radial map), ``kdeH`` (kernel estimate on z, bandwidth
H/100, no map).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from radial_map_disk import near_plane, near_plane_exact  # noqa: E402
from support_core import exact_slopes, slopes  # noqa: E402

MIX: dict = {}  # axis -> (weights, means, sds), float32 arrays; read by the wrapped transforms


def em1d(z: np.ndarray, k: int, iters: int = 300):
    """A k-component 1-D Gaussian mixture by EM from quantile starts; returns (w, mu, sd, mean log-likelihood)."""
    mu = np.quantile(z, (np.arange(k) + 0.5) / k)
    sig = np.full(k, z.std() / k * 2)
    w = np.full(k, 1 / k)
    for _ in range(iters):
        lp = np.log(w) - np.log(sig) - 0.5 * ((z[:, None] - mu) / sig) ** 2
        r = np.exp(lp - lp.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0)
        w = nk / len(z)
        mu = (r * z[:, None]).sum(0) / nk
        sig = np.sqrt((r * (z[:, None] - mu) ** 2).sum(0) / nk + 1e-6)
    dens = np.sum(w / (np.sqrt(2 * np.pi) * sig) * np.exp(-0.5 * ((z[:, None] - mu) / sig) ** 2), 1)
    return w, mu, sig, float(np.mean(np.log(dens)))


def gauss_map(z, w, mu, sig):
    """u → Φ⁻¹(F(u)) for the mixture (w, mu, sig), and its log-derivative."""
    import jax.numpy as jnp
    from jax.scipy.special import log_ndtr, logsumexp, ndtri

    t = (z[..., None] - mu) / sig
    lw = jnp.log(w)
    lower = z < jnp.sum(w * mu)  # evaluate the smaller tail: no cancellation
    log_tail = jnp.where(lower, logsumexp(lw + log_ndtr(t), -1), logsumexp(lw + log_ndtr(-t), -1))
    g = ndtri(jnp.exp(jnp.maximum(log_tail, -80.0)))
    g = jnp.where(lower, g, -g)
    log_pdf = logsumexp(lw - jnp.log(sig) - 0.5 * t**2, -1) - 0.5 * jnp.log(2 * jnp.pi)
    return g, log_pdf - (-0.5 * g**2 - 0.5 * jnp.log(2 * jnp.pi))


def gauss_unmap(g, w, mu, sig, iters: int = 60):
    import jax
    import jax.numpy as jnp

    def body(_, c):
        lo, hi = c
        mid = 0.5 * (lo + hi)
        below = gauss_map(mid, w, mu, sig)[0] < g
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.full_like(g, -50.0), jnp.full_like(g, 50.0)))
    return 0.5 * (lo + hi)


def install() -> None:
    """Wrap the package's position transforms so that the axes in MIX are Gaussianised after them."""
    from bayesdyn.psd._transforms import Preprocessing

    p2l, l2p = Preprocessing.position_to_latent, Preprocessing.latent_to_position

    def position_to_latent(self, x):
        u, ld = p2l(self, x)
        for ax, m in MIX.items():
            g, extra = gauss_map(u[..., ax], *m)
            u, ld = u.at[..., ax].set(g), ld + extra
        return u, ld

    def latent_to_position(self, u):
        for ax, m in MIX.items():
            u = u.at[..., ax].set(gauss_unmap(u[..., ax], *m))
        return l2p(self, u)

    Preprocessing.position_to_latent = position_to_latent
    Preprocessing.latent_to_position = latent_to_position


def latents(cat, **kw) -> np.ndarray:
    """The catalog's position latents as fit_psd computes them (training is interrupted before it starts)."""
    import jax
    from bayesdyn.psd import _fit, fit_psd

    class _Got(Exception):
        pass

    got, train = {}, _fit.train_ensemble

    def grab(u, w, **_):
        got["u"] = np.asarray(u, np.float64)
        raise _Got

    _fit.train_ensemble = grab
    try:
        fit_psd(cat, ensemble=1, seed=0, max_epochs=1, progress=False, **kw)
    except _Got:
        pass
    finally:
        _fit.train_ensemble = train
    jax.clear_caches()
    return got["u"]


def parse(name: str) -> tuple[list[int], int, float | None]:
    """A setting's name → (Gaussianised axes, mixture size k (< 0: kernel bandwidth), radial-map radius)."""
    if name == "default":
        return [], 0, 1.0
    if name == "none":
        return [], 0, None
    with_map = name.endswith("+map")
    core = name.removesuffix("+map")
    if core.startswith("kde"):
        return [2], -int(core[3:]), 1.0 if with_map else None
    axes = [0, 1, 2] if core.startswith("xyz") else [2]
    return axes, int(core.lstrip("xyz")), 1.0 if with_map else None


def league_compare(realisations: list[int], k: int) -> None:
    """The league's CBE-flows cells on disk realisations: default flows against z-Gaussianised ones."""
    import jax
    import jax.numpy as jnp

    import league
    from bayesdyn import validate
    from bayesdyn.psd import fit_psd

    s = json.loads(json.dumps(league.FULL))
    mock, clock, rows = validate.DiskMock(), league.Clock(), {}
    for r in realisations:
        MIX.clear()
        jax.clear_caches()
        real = validate.realisation(mock, r, n_stars=s["realisations"]["n"], seed=0, psd_options=s["realisations"]["psd"],
                                    psd_cache=league.CALIBRATION_CACHE, n_nodes=s["n_nodes"])
        psd0, seeds, cat = real["psd"], real["seeds"], real["catalog"]
        print(f"r{r}: default flows " + (f"loaded from {real['record']['psd_loaded_from']}"
                                          if real["record"].get("psd_loaded_from") else "fitted"), flush=True)
        spec = league._disk_spec(f"disk-r{r}", "", cat, real["truth"], s, seeds["nodes"])
        with jax.enable_x64(True):
            truth = league.exact_cells(spec.quantities, spec.X, spec.truth_acceleration, spec.truth_density)
        c0 = league.flows_cells(spec, psd0, s, seeds["accel"], clock, print)
        u = latents(cat, radial_map=None)
        MIX[2] = tuple(jnp.asarray(a, jnp.float32) for a in em1d(u[:, 2], k)[:3])
        jax.clear_caches()
        t = time.perf_counter()
        tr = psd0.info["training"]
        psd1 = fit_psd(cat, seed=seeds["psd"], progress=False, ensemble=psd0.n_members, max_epochs=tr["max_epochs"],
                       seeds_per_resample=tr.get("seeds_per_resample", 1), radial_map=None)
        print(f"  z-Gaussianised flows fitted in {time.perf_counter() - t:.0f} s ({psd1.info['epochs']} epochs)",
              flush=True)
        c1 = league.flows_cells(spec, psd1, s, seeds["accel"], clock, print)
        for q in spec.quantities:
            t_ = truth[q.key].value
            e = [league.rel_error(c[q.key], truth[q.key]) for c in (c0, c1)]
            rows.setdefault(q.key, []).append(e)
            print(f"  {q.key:8s} default {100 * e[0]:+6.1f} % (σ {100 * c0[q.key].error / abs(t_):.1f} %)   "
                  f"z{k} {100 * e[1]:+6.1f} % (σ {100 * c1[q.key].error / abs(t_):.1f} %)", flush=True)
    print(f"\nCBE flows, relative error against the truth over realisations {realisations}: RMS and mean [%]")
    for key, v in rows.items():
        a = np.array(v)
        print(f"  {key:8s} default RMS {100 * np.sqrt(np.mean(a[:, 0] ** 2)):5.1f}, mean {100 * a[:, 0].mean():+5.1f}"
              f" | z{k}, no map: RMS {100 * np.sqrt(np.mean(a[:, 1] ** 2)):5.1f}, mean {100 * a[:, 1].mean():+5.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", nargs="+", default=["default", "none", "z6", "xyz6"])
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--league", type=int, nargs="+", default=None, metavar="R",
                   help="compare the league's CBE-flows column on these disk realisations instead")
    p.add_argument("--k", type=int, default=6, help="mixture size for --league (default 6)")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import bayesdyn as bd
    from bayesdyn.psd import fit_psd

    print(f"machine: {machine()}")
    install()
    if args.league is not None:
        league_compare(args.league, args.k)
        print(f"machine (end): {machine()}")
        return 0
    cat, truth = bd.mocks.load_default()
    exact = {**near_plane_exact(truth), **exact_slopes(truth)}
    results, nll = {}, {}
    for name in args.settings:
        axes, k, radius = parse(name)
        MIX.clear()
        jax.clear_caches()
        if axes:
            u = latents(cat, radial_map=radius)
            for ax in axes:
                if k > 0:
                    w, mu, sig, ll = em1d(u[:, ax], k)
                else:
                    mu = np.quantile(u[:, ax], (np.arange(256) + 0.5) / 256)
                    w, sig, ll = np.full(256, 1 / 256), np.full(256, -k / 100), float("nan")
                MIX[ax] = tuple(jnp.asarray(a, jnp.float32) for a in (w, mu, sig))
                g = np.asarray(gauss_map(jnp.asarray(u[:, ax], jnp.float32), *MIX[ax])[0])
                print(f"{name}: axis {ax}: {'mixture of ' + str(k) if k > 0 else 'kernel estimate'} "
                      f"(mean log-likelihood {ll:.4f}); Gaussianised latents: mean {g.mean():+.3f}, sd {g.std():.3f}, "
                      f"range [{g.min():.2f}, {g.max():.2f}]", flush=True)
            jax.clear_caches()
        t = time.perf_counter()
        psd = fit_psd(cat, ensemble=args.ensemble, seed=args.seed, max_epochs=args.epochs, progress=False,
                      radial_map=radius)
        results[name] = {**near_plane(psd), **slopes(psd)}
        nll[name] = psd.info["val_nll_x"]
        print(f"{name}: fitted in {time.perf_counter() - t:.0f} s ({psd.info['epochs']} epochs)", flush=True)
    print(f"\nerror of the member mean of ∂log n/∂(axis) against galpy, relative to |exact| [%] "
          f"(y probes: |exact| = 0.08 /kpc, so absolute [1/kpc]); {cat.n} stars, K = {args.ensemble}, "
          f"{args.epochs} epochs, seed {args.seed}")
    first = next(iter(results.values()))
    print(f"{'probe':>9} {'exact':>7} " + " ".join(f"{n:>9}" for n in results))
    for key in first:
        cells = []
        for n in results:
            m = float(np.mean(results[n][key]))
            cells.append(f"{m - exact[key]:+9.2f}" if key[0] == "y" else f"{100 * (m / exact[key] - 1):+9.1f}")
        print(f"{key[0]} {key[1]:+6.2f} {exact[key]:+7.3f} " + " ".join(cells))
    print("\nvalidation NLL of n(x) per member [−mean log n, log kpc⁻³]:")
    for n in results:
        print(f"  {n}: {np.round(nll[n], 4).tolist()}")
    print(f"machine (end): {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

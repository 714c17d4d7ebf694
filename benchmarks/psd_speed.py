"""Speed of bayesdyn.psd against an nflows (PyTorch) MAF of the same shape, same run.

Both sides learn the same model on the same data: n(u) and p(w | u) with u, w the
bayesdyn-transformed positions and velocities of a Plummer mock, each an 8-layer
affine MAF with one hidden layer of width 64 and gelu activations (nflows:
``MaskedAffineAutoregressiveTransform(num_blocks=0, use_residual_blocks=False)``
interleaved with random permutations, which is the same network as flowjax's
``nn_depth=1``), batch 512, Adam, gradient clipping 1.0 per flow, a validation
pass every epoch. Printed:

- time per epoch (median over epochs after the first, which includes bayesdyn's
  compilation), bayesdyn (K = 1 and K = 4 in one vmapped program) / nflows;
- score throughput (points/s) of ∂log f/∂x and ∂log f/∂v of the full density
  f(x, v) including the input transforms: bayesdyn ``psd.score`` against torch
  autograd (``torch.set_num_threads(2)``, best of several chunk sizes).

Wall-clock and CPU-time figures are both printed: on a machine shared with other
jobs, torch with 2 threads slows down by large factors (threads wait for each
other), so a second pass with 1 torch thread and the CPU-time ratios are given as
well; the reference figures are the wall-clock ones on a quiet machine.

Needs torch and nflows (``pip install torch nflows``: in no extra of bayesdyn, which
never imports them).

Run:  python benchmarks/psd_speed.py [--n 50000] [--epochs 6] [--torch-threads 2 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine  # noqa: E402  (benchmarks/_machine.py: CPU model, load, JAX backend)

G = 4.300917270e-6  # kpc (km/s)² / M☉


def plummer(n: int, seed: int, mass: float = 1e10, b: float = 1.0):
    """(x [kpc], v [km/s]) of a Plummer sphere; bayesdyn.mocks.plummer when available."""
    try:
        from bayesdyn.mocks import plummer as bd_plummer

        cat, _ = bd_plummer(n, seed, mass=mass, scale_radius=b)
        return np.asarray(cat.x), np.asarray(cat.v), "bayesdyn.mocks.plummer"
    except ImportError:
        pass
    rng = np.random.default_rng(seed)

    def iso(m):
        c = rng.uniform(-1, 1, m)
        p = rng.uniform(0, 2 * np.pi, m)
        s = np.sqrt(1 - c**2)
        return np.stack([s * np.cos(p), s * np.sin(p), c], axis=1)

    r = b / np.sqrt(rng.uniform(size=n) ** (-2 / 3) - 1)
    q = np.empty(0)
    while q.size < n:
        qq, yy = rng.uniform(size=2 * n), rng.uniform(0, 0.1, 2 * n)
        q = np.concatenate([q, qq[yy < qq**2 * (1 - qq**2) ** 3.5]])
    vesc = np.sqrt(2 * G * mass / np.sqrt(r**2 + b**2))
    return r[:, None] * iso(n), (q[:n] * vesc)[:, None] * iso(n), "private sampler"


# ----------------------------------------------------------------------------- nflows side
def nflows_pair(depth: int, width: int, layers: int):
    import torch.nn.functional as F
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms import CompositeTransform, MaskedAffineAutoregressiveTransform, RandomPermutation

    def maf(ctx):
        ts = []
        for _ in range(layers):
            ts.append(
                MaskedAffineAutoregressiveTransform(
                    features=3,
                    hidden_features=width,
                    context_features=ctx,
                    num_blocks=depth - 1,
                    use_residual_blocks=False,
                    activation=F.gelu,
                )
            )
            ts.append(RandomPermutation(features=3))
        return Flow(CompositeTransform(ts), StandardNormal([3]))

    return maf(None), maf(3)


def nflows_epochs(u, w, val, epochs, batch, depth, width, layers, seed=0):
    """Train the nflows pair; returns (flows, wall seconds per epoch, CPU seconds per epoch)."""
    import torch

    torch.manual_seed(seed)
    fx, fv = nflows_pair(depth, width, layers)
    params = list(fx.parameters()) + list(fv.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    U, W = torch.as_tensor(np.array(u)), torch.as_tensor(np.array(w))
    Uv, Wv = torch.as_tensor(np.array(u[val])), torch.as_tensor(np.array(w[val]))
    train = np.setdiff1d(np.arange(len(u)), val)
    n_batches = len(train) // batch
    times, cpu = [], []
    for _ in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.as_tensor(np.random.default_rng(_).permutation(train))
        for i in range(n_batches):
            idx = perm[i * batch : (i + 1) * batch]
            ub, wb = U[idx], W[idx]
            loss = -(fx.log_prob(ub).mean() + fv.log_prob(wb, context=ub).mean())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(fx.parameters(), 1.0)
            torch.nn.utils.clip_grad_norm_(fv.parameters(), 1.0)
            opt.step()
        with torch.no_grad():
            (-(fx.log_prob(Uv).mean() + fv.log_prob(Wv, context=Uv).mean())).item()  # the validation loss, as ours
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return fx, fv, times, cpu


def torch_position_map(xc, x_loc, x_scale, s_map: float):
    """The package's ``Preprocessing.position_to_latent`` with only the radial map (radius ``s_map``, 0 for none),
    written in torch: standardised positions z → u = z·s·asinh(|z|/s)/|z|, and log|det ∂u/∂x|."""
    import torch

    z = (xc - x_loc) / x_scale
    if s_map == 0:
        return z, -torch.log(x_scale).sum().expand(len(z))
    r = torch.sqrt((z * z).sum(-1))
    ratio = s_map * torch.asinh(r / s_map) / r
    return z * ratio[:, None], -0.5 * torch.log1p((r / s_map) ** 2) + 2 * torch.log(ratio) - torch.log(x_scale).sum()


def check_torch_position_map(prep, x) -> None:
    """Stop unless :func:`torch_position_map` is the flows' ``Preprocessing.position_to_latent`` at x (their other
    maps — support, cusp, per-axis — are not in the torch copy)."""
    import torch

    xl, xs = (torch.as_tensor(np.asarray(a, np.float32)) for a in (prep.x_loc, prep.x_scale))
    probe = np.asarray(x[:256], np.float32)
    u_ref, ld_ref = (np.asarray(t) for t in prep.position_to_latent(probe))
    u_t, ld_t = (t.detach().numpy() for t in torch_position_map(torch.as_tensor(probe), xl, xs,
                                                                 float(prep.radial_scale)))
    if not (np.allclose(u_t, u_ref, rtol=1e-4, atol=1e-5) and np.allclose(ld_t, ld_ref, rtol=1e-4, atol=1e-4)):
        raise SystemExit("psd_speed.py's torch position map differs from the flows' Preprocessing (a support, cusp "
                         "or per-axis map is on?): the score comparison would not compute the same thing")


def nflows_score_throughput(fx, fv, prep, x, v, chunks=(2048, 8192, 32768)):
    import torch

    xl, xs, vl, vs = (
        torch.as_tensor(np.asarray(a, np.float32)) for a in (prep.x_loc, prep.x_scale, prep.v_loc, prep.v_scale)
    )

    s_map = float(prep.radial_scale)

    def position_map(xc):
        return torch_position_map(xc, xl, xs, s_map)

    def scores(xc, vc):
        xc = xc.clone().requires_grad_(True)
        vc = vc.clone().requires_grad_(True)
        uu, ldx = position_map(xc)
        ww = (vc - vl) / vs
        lp = fx.log_prob(uu) + fv.log_prob(ww, context=uu) + ldx - torch.log(vs).sum()
        return torch.autograd.grad(lp.sum(), [xc, vc])

    X, V = torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(v, np.float32))
    best, best_cpu, per_chunk = 0.0, 0.0, {}
    for c in chunks:
        scores(X[:c], V[:c])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(X), c):
            scores(X[i : i + c], V[i : i + c])
        rate = len(X) / (time.perf_counter() - t0)
        per_chunk[c] = rate
        best = max(best, rate)
        best_cpu = max(best_cpu, len(X) / (time.process_time() - c0))
    return best, best_cpu, per_chunk


# ----------------------------------------------------------------------------- bayesdyn side
def bayesdyn_score_throughput(psd, x, v, repeats=3):
    """(best points/s by wall clock, median, best points per CPU-second)."""
    import jax

    jax.block_until_ready(psd.score(x, v))  # compile
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(psd.score(x, v))
        rates.append(len(x) / (time.perf_counter() - t0))
        cpu_rates.append(len(x) / (time.process_time() - c0))
    return max(rates), float(np.median(rates)), max(cpu_rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="training stars")
    ap.add_argument("--n-score", type=int, default=100_000, help="points for the score throughput")
    ap.add_argument("--epochs", type=int, default=6, help="epochs timed on each side")
    ap.add_argument("--depth", type=int, default=1, help="hidden layers per MADE")
    ap.add_argument("--skip-k4", action="store_true", help="skip the K = 4 ensemble timing")
    ap.add_argument("--nflows-epochs", type=int, default=3, help="epochs timed for nflows (first one dropped)")
    ap.add_argument(
        "--torch-threads", type=int, nargs="+", default=[2, 1],
        help="torch thread counts to time (2 is the reference; 1 shows the effect of a busy machine)",
    )
    args = ap.parse_args()

    import jax

    import importlib.util

    missing = [m for m in ("torch", "nflows") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"psd_speed.py compares with torch + nflows; {missing} not installed: pip install torch nflows")
    import torch

    import bayesdyn as bd
    from bayesdyn.psd import fit_psd

    x, v, source = plummer(args.n, seed=1)
    xs_, vs_, _ = plummer(args.n_score, seed=2)
    cat = bd.Catalog(x=x, v=v)
    print(f"machine: {machine()}")
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__}, "
          f"data: Plummer N = {args.n} ({source})")
    shape = dict(n_layers=8, width=64, depth=args.depth, activation="gelu", batch_size=512)
    print(f"flow shape: 2 flows × 8 affine MAF layers, width 64, depth {args.depth}, gelu, batch 512")

    # bayesdyn, K = 1
    psd = fit_psd(cat, ensemble=1, seed=0, max_epochs=args.epochs + 1, patience=1000, progress=False, **shape)
    sec, cpu = psd.info["history"]["seconds"], psd.info["history"]["cpu_seconds"]
    bd1, bd1_cpu = float(np.median(sec[1:])), float(np.median(cpu[1:]))
    print(f"bayesdyn K=1: {bd1:.3f} s/epoch, {bd1_cpu:.3f} CPU-s/epoch (first epoch incl. compile {sec[0]:.1f} s)")
    bd4 = None
    if not args.skip_k4:
        psd4 = fit_psd(cat, ensemble=4, seed=0, max_epochs=args.epochs + 1, patience=1000, progress=False, **shape)
        sec4, cpu4 = psd4.info["history"]["seconds"], psd4.info["history"]["cpu_seconds"]
        bd4, bd4_cpu = float(np.median(sec4[1:])), float(np.median(cpu4[1:]))
        print(f"bayesdyn K=4 (one vmapped program): {bd4:.3f} s/epoch, {bd4_cpu:.3f} CPU-s/epoch")

    # nflows on the same transformed data and the same validation split size
    import jax.numpy as jnp

    prep = psd.preprocessing
    check_torch_position_map(prep, x)  # once, before any nflows training
    u = np.asarray(prep.position_to_latent(jnp.asarray(x, jnp.float32))[0])
    w = np.asarray(prep.velocity_to_latent(jnp.asarray(v, jnp.float32))[0])
    val = np.random.default_rng(0).permutation(len(u))[: psd.info["n_val"]]
    best, med, best_cpu = bayesdyn_score_throughput(psd, xs_, vs_)
    print(f"score throughput bayesdyn K=1: {best:.3g} points/s (median {med:.3g}; {best_cpu:.3g} points per CPU-s)")
    if not args.skip_k4:
        b4, _, b4_cpu = bayesdyn_score_throughput(psd4, xs_, vs_)
        print(f"score throughput bayesdyn K=4: {b4:.3g} points/s ({4 * b4:.3g} member-points/s; "
              f"{b4_cpu:.3g} points per CPU-s)")
    for threads in args.torch_threads:
        torch.set_num_threads(threads)
        fx, fv, times, cpu_nf = nflows_epochs(u, w, val, args.nflows_epochs, 512, args.depth, 64, 8)
        nf, nf_cpu = float(np.median(times[1:])), float(np.median(cpu_nf[1:]))
        tag = f"nflows, torch {threads} thread{'s' if threads > 1 else ''}"
        print(f"{tag}: {nf:.3f} s/epoch, {nf_cpu:.3f} CPU-s/epoch")
        print(f"  time per epoch ratio bayesdyn/nflows, K=1: {bd1 / nf:.3f} (CPU time: {bd1_cpu / nf_cpu:.3f})"
              "   (target ≤ 0.4)")
        if bd4 is not None:
            print(f"  K=4 in one program vs 4 sequential nflows runs: {bd4 / (4 * nf):.3f} "
                  f"(CPU time: {bd4_cpu / (4 * nf_cpu):.3f})")
        nf_best, nf_best_cpu, per_chunk = nflows_score_throughput(fx, fv, prep, xs_, vs_)
        print(f"  score throughput nflows (torch autograd): {nf_best:.3g} points/s, {nf_best_cpu:.3g} per CPU-s "
              f"(by chunk: {', '.join(f'{c}: {r:.3g}' for c, r in per_chunk.items())})")
        print(f"  score throughput ratio bayesdyn/nflows: {best / nf_best:.2f} "
              f"(per CPU-s: {best_cpu / nf_best_cpu:.2f})"
              "   (target ≥ 1)")
    print(f"machine (end): {machine()}")


if __name__ == "__main__":
    main()

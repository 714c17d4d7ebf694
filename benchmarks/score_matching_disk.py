"""A score-matching term in the position flow's training loss, on the disk mock (experiment, not in the package).

The flows are judged by their score error (docs/flows.md), but trained by maximum likelihood; on the disk
the affine MAF's ∂log n/∂z is ~10 % too steep near the plane and ~10 % too shallow at |z| = 1 kpc with
the radial map ("auto"), and every cure tried so far traded one against the other. This tries training
the position flow n(u) on its score directly: the loss per batch becomes

    −mean log q(u) + λ · mean[½ |∇_u log q(u)|² + Δ_u log q(u)]

(Hyvärinen's score-matching objective, equal up to a constant to the Fisher divergence ½ E|∇log q − ∇log p|²,
in the flows' latent variables u, where the support map has sent the sample's sphere edge to infinity so
that the integration by parts behind it holds). The velocity flow is trained as before. The experiment
replaces ``bayesdyn.psd._train._run_epoch`` in this process with a copy that adds the term; everything
else (early stopping on the validation NLL, maps, ensembles) is the package's.

For each λ it fits K members (30 epochs, seed 0) and prints, like ``benchmarks/radial_map_disk.py``, the
error of the member mean of ∂log n/∂z near the plane and at |z| = 0.5, 1 kpc, and of ∂log n/∂x near the
sphere's edge, against galpy's exact slopes, and the validation NLL of n(x).

    python benchmarks/score_matching_disk.py [--lambdas 0 0.1 1] [--ensemble 2] [--epochs 30] [--psd-option radial_map=null]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from _options import psd_options  # noqa: E402
from radial_map_disk import near_plane, near_plane_exact, print_report  # noqa: E402
from support_core import exact_slopes, slopes  # noqa: E402


#: stars of each batch (of 512, shuffled) on which the score-matching term is evaluated
SUBSET = 128


def make_run_epoch(lam: float):
    """``_train._run_epoch`` with λ × Hyvärinen's score-matching term added to the position flow's loss."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    from bayesdyn.psd import _train
    from bayesdyn.psd._flows import Member, flow_log_prob, prng_key

    def hyvarinen(flow, config, ub):
        def one(ui):
            lq = lambda y: flow_log_prob(flow, config, y[None])[0]  # noqa: E731
            g = jax.grad(lq)(ui)
            h = jax.jacfwd(jax.grad(lq))(ui)
            return 0.5 * jnp.sum(g * g) + jnp.trace(h)

        return jnp.mean(jax.vmap(one)(ub[:SUBSET]))  # an unbiased estimate of the batch mean, at a quarter of the cost

    @eqx.filter_jit
    def _run_epoch(state, seed, epoch, train_idx, u, w, sched, first_step, *, config, opt, batch_size):
        k, n_train = train_idx.shape
        n_batches = n_train // batch_size
        key = jr.fold_in(prng_key(seed), epoch)

        def order(key, idx):
            return jr.permutation(key, idx)[: n_batches * batch_size].reshape(n_batches, batch_size)

        batches = jnp.swapaxes(jax.vmap(order)(jr.split(key, k), train_idx), 0, 1)

        def loss_x(f, ub):
            nll = -jnp.mean(flow_log_prob(f, config, ub))
            return nll + lam * hyvarinen(f, config, ub) if lam > 0 else nll

        def member_step(member, opt_x, opt_v, b, lr):
            ub, wb = u[b], w[b]
            fx, opt_x, lx = _train._flow_step(member.flow_x, opt_x, opt, lr, lambda f: loss_x(f, ub))
            fv, opt_v, lv = _train._flow_step(
                member.flow_v, opt_v, opt, lr, lambda f: -jnp.mean(flow_log_prob(f, config, wb, ub))
            )
            return Member(fx, fv), opt_x, opt_v, jnp.stack([lx, lv])

        dynamic, static = eqx.partition((state.members, state.opt_x, state.opt_v), eqx.is_array)

        def step(carry, xs):
            b, i = xs
            members, opt_x, opt_v = eqx.combine(carry, static)
            lr = _train._learning_rate(sched, (first_step + i).astype(sched.dtype))
            out = eqx.filter_vmap(member_step, in_axes=(_train._A, _train._A, _train._A, _train._A, None))(
                members, opt_x, opt_v, b, lr)
            return eqx.filter(out[:3], eqx.is_array), out[3]

        carry, losses = jax.lax.scan(step, dynamic, (batches, jnp.arange(n_batches)))
        members, opt_x, opt_v = eqx.combine(carry, static)
        return dataclasses.replace(state, members=members, opt_x=opt_x, opt_v=opt_v), jnp.mean(losses, axis=0)

    return _run_epoch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lambdas", nargs="+", type=float, default=[0.0, 0.1, 1.0])
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--psd-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another fit_psd setting for every fit (value parsed as JSON; repeatable)")
    args = p.parse_args(argv)
    extra = psd_options(args.psd_option)

    import jax

    import bayesdyn as bd
    from bayesdyn.psd import _train, fit_psd

    print(f"machine: {machine()}", flush=True)
    cat, truth = bd.mocks.load_default()
    exact = {**near_plane_exact(truth), **exact_slopes(truth)}
    original = _train._run_epoch
    results, nll = {}, {}
    for lam in args.lambdas:
        label = f"λ = {lam:g}" + (" (the package)" if lam == 0 else "")
        _train._run_epoch = original if lam == 0 else make_run_epoch(lam)
        jax.clear_caches()
        t = time.perf_counter()
        try:
            psd = fit_psd(cat, ensemble=args.ensemble, seed=args.seed, max_epochs=args.epochs, progress=False, **extra)
        finally:
            _train._run_epoch = original
        results[label] = {**near_plane(psd), **slopes(psd)}
        nll[label] = psd.info["val_nll_x"]
        print(f"{label}: fitted in {time.perf_counter() - t:.0f} s ({psd.info['epochs']} epochs)", flush=True)
    print(f"\n∂log n/∂(axis) [1/kpc] per member; exact from galpy; {cat.n} stars, K = {args.ensemble}, "
          f"{args.epochs} epochs, seed {args.seed}" + (f", {extra}" if extra else ""))
    print_report(results, nll, exact, 24)
    print(f"machine (end): {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

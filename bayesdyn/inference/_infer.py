"""NUTS on a :class:`PotentialModel`: NumPyro or BlackJAX, chains vectorised."""

from __future__ import annotations

import copy
import functools
import time
import warnings
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model

from ._data import AccelerationData, StarScoreData, WeakFormData

__all__ = ["infer", "run_nuts", "weak_form_weights"]


def run_nuts(
    model: Any,
    data: Any,
    *,
    seed: int = 0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    backend: Literal["numpyro", "blackjax"] = "numpyro",
    target_accept: float = 0.8,
    dense_mass: bool = True,
    progress: bool = True,
    model_kwargs: dict | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run NUTS in float64; return ``(samples, info)``.

    ``samples`` maps each site (including deterministic ones) to an array of shape
    (num_chains, num_samples, ...); ``info`` holds ``diverging`` (chains, draws),
    ``backend``, ``num_warmup`` and ``wall_time_s``.
    """
    with jax.enable_x64(True):
        # float64 throughout: posteriors of masses ~1e10 M☉ that are narrow compared with
        # their priors make float32 leapfrog steps round to nothing (chains that never move)
        data = _to_float64(data)
        return _run_nuts(
            model, data, seed, num_chains, num_warmup, num_samples, backend, target_accept, dense_mass, progress,
            model_kwargs,
        )


def _to_float64(data):
    def conv(a):
        if isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating):
            return jnp.asarray(a, dtype=jnp.float64)
        return a

    out = jax.tree.map(conv, data)
    if isinstance(out, AccelerationData) and out.scale_tril is not None:  # the factor anew, not a float32 one widened
        out = out._replace(scale_tril=jnp.asarray(np.linalg.cholesky(np.asarray(out.cov, np.float64))))
    return out


def _real_support(fn) -> bool:
    """Whether a sample site's distribution lives on the whole real line (Normal, StudentT): its unconstrained
    coordinate is the parameter itself, in the parameter's units."""
    from numpyro.distributions import constraints

    support = getattr(fn, "support", None)
    return support is constraints.real or getattr(support, "base_constraint", None) is constraints.real


def _real_site_scale(fn) -> tuple[np.ndarray, np.ndarray]:
    """(centre, spread) of a real-line prior [its units], computed eagerly (never inside a trace): loc and scale of
    a location-scale family (Normal, StudentT, Cauchy, Laplace, Logistic), else the median and the interquartile
    range / 1.349 of 1000 draws (fixed seed); (0, 1), the coordinates as they are, where neither is available
    (ImproperUniform) or the spread is not positive and finite."""
    import numpyro.distributions as ndist

    shape = tuple(fn.shape())
    try:
        if isinstance(fn, (ndist.Normal, ndist.StudentT, ndist.Cauchy, ndist.Laplace, ndist.Logistic)):
            center = np.broadcast_to(np.asarray(fn.loc, np.float64), shape)
            spread = np.broadcast_to(np.asarray(fn.scale, np.float64), shape)
        else:
            draws = np.asarray(fn.sample(jax.random.PRNGKey(0), (1000,)), np.float64)
            q25, center, q75 = np.percentile(draws, [25, 50, 75], axis=0)
            spread = (q75 - q25) / 1.349
    except (NotImplementedError, AttributeError, TypeError):
        return np.zeros(shape), np.ones(shape)
    ok = np.isfinite(spread) & (spread > 0) & np.isfinite(center)
    return np.where(ok, center, 0.0), np.where(ok, spread, 1.0)


def _real_line_sites(info) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{site: (centre, spread)} of the sites of an ``initialize_model`` result whose prior is on the whole real line."""
    out = {}
    for name in info.param_info.z:
        fn = info.model_trace.get(name, {}).get("fn")
        if _real_support(fn):
            out[name] = _real_site_scale(fn)
    return out


def _spread_start(z: dict, sites: dict) -> dict:
    """NumPyro's init_to_uniform start z (each unconstrained coordinate in (−2, 2)) with the real-line sites moved to
    centre + spread · z: for those, the unconstrained coordinate is the parameter in its own units, and a
    Normal(1.2 × 10¹⁰, 3 × 10⁹) M☉ mass had started at ~1 M☉, where the mode search stopped at once (its gradient per
    M☉ below BFGS's tolerance) and NUTS started 10¹⁰ units from the posterior. Every other site is left as drawn, so
    a model without real-line priors starts exactly as with NumPyro's default."""
    if not sites:
        return z
    return {k: (jnp.asarray(sites[k][0] + sites[k][1] * np.asarray(v), jnp.result_type(v)) if k in sites else v)
            for k, v in z.items()}


def _real_line_init(model, data, model_kwargs, key, num_chains, warn=True):
    """(NUTS starts (chains, ...), {site: (centre, spread)}) for a model with real-line priors
    (:func:`_spread_start`), None for any other model (NumPyro then starts as it always did). A PotentialModel is
    judged by its priors, without running it."""
    priors = getattr(model, "free_parameters", None)
    if callable(priors):
        if not any(_real_support(p) for p in priors().values()):
            return None
    else:  # any other NumPyro model: one eager run of it names its sites (initialize_model would compile)
        from numpyro import handlers

        trace = handlers.trace(handlers.seed(model, 0)).get_trace(data, **(model_kwargs or {}))
        if not any(site["type"] == "sample" and not site["is_observed"] and _real_support(site["fn"])
                   for site in trace.values()):
            return None
    starts, sites = [], None
    for k in jax.random.split(jax.random.fold_in(key, 7), num_chains):
        info = initialize_model(k, model, model_args=(data,), model_kwargs=model_kwargs or {}, dynamic_args=True)
        sites = _real_line_sites(info) if sites is None else sites
        if not sites:
            return None
        starts.append(_spread_start(info.param_info.z, sites))
    wide = {k: float(np.max(sp)) for k, (_, sp) in sites.items() if not 1e-3 <= np.max(sp) <= 1e3}
    if wide and warn:
        warnings.warn(
            f"the priors of {sorted(wide)} are on the whole real line, so NUTS samples them in their own units "
            f"(spreads {[f'{v:.3g}' for v in wide.values()]}); its mass matrix starts at those spreads, but a "
            "bounded prior (TruncatedNormal with low and high) or a LogNormal / LogUniform one mixes better "
            "(a Normal(1.2e10, 3e9) M☉ mass with a free scale radius, 5000 stars, 2 × 200 warm-up steps: r̂ 1.04; "
            "2.07 with a unit mass matrix)", stacklevel=4)
    return jax.tree.map(lambda *zs: jnp.stack(zs), *starts), sites


def _real_line_mass(real) -> np.ndarray | None:
    """NUTS's initial inverse mass matrix (diagonal, sites in sorted order, as NumPyro ravels them) from
    :func:`_real_line_init`'s result for a model with real-line priors: each such coordinate's prior spread², 1
    elsewhere; None for any other model (``real`` None: NumPyro's own identity start). With the identity, a Normal(1.2e10, 3e9) M☉ mass with a free scale radius (weak form, 5000
    Plummer stars, 2 × 200 warm-up steps) ended at r̂ 2.07, and a rerun had not finished after 21 minutes on a
    loaded 2-core machine (the first adaptation window steps ~1 M☉ at a time); started at the spreads: r̂ 1.04 in
    38 s."""
    if real is None:
        return None
    starts, sites = real
    parts = []
    for name in sorted(starts):
        shape = np.shape(starts[name])[1:]  # (chains, ...)
        spread = sites[name][1] if name in sites else 1.0
        parts.append(np.broadcast_to(np.asarray(spread, np.float64) ** 2, shape).ravel())
    return np.concatenate(parts)


def _search_scale(info, unravel) -> jax.Array:
    """Per-coordinate scale of the mode search (flat, as ``unravel`` expects): a real-line prior's spread
    (:func:`_real_site_scale`), 1 for every other coordinate (unconstrained already, so unchanged)."""
    from jax.flatten_util import ravel_pytree

    z = info.param_info.z
    sites = _real_line_sites(info)
    scales = {}
    for name, value in z.items():
        scale = sites[name][1] if name in sites else 1.0
        scales[name] = jnp.broadcast_to(jnp.asarray(scale, jnp.result_type(value)), jnp.shape(value))
    flat, _ = ravel_pytree(scales)
    return flat


def _run_nuts(
    model, data, seed, num_chains, num_warmup, num_samples, backend, target_accept, dense_mass, progress, model_kwargs,
    mcmc=None, init_params=None,
):
    if num_chains < 1 or num_samples < 1 or num_warmup < 1:
        raise ValueError("num_chains, num_samples and num_warmup must be positive")
    model_kwargs = dict(model_kwargs or {})
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    if backend == "numpyro":
        real = None  # real-line priors start in their own scale, and the mass matrix at their spreads
        if mcmc is None or init_params is None:
            real = _real_line_init(model, data, model_kwargs, key, num_chains, warn=init_params is None)
        if mcmc is None:
            mcmc = _numpyro_mcmc(model, num_chains, num_warmup, num_samples, target_accept, dense_mass, progress,
                                 _real_line_mass(real))
        if init_params is None:  # (None: NumPyro's own starts)
            init_params = None if real is None else real[0]
        if init_params is not None and num_chains == 1:  # our starts carry a chain axis; one chain takes them
            init_params = jax.tree.map(lambda z: z[0], init_params)  # without it (or its draws come back (1, n, 1))
        if not progress and not model_kwargs and (mcmc.chain_method != "parallel" or num_chains == 1):  # (pmap: own)
            draws, diverging = _compiled_run(mcmc)(key, data, init_params)
            samples = {k: np.asarray(v) for k, v in draws.items()}
            diverging = np.asarray(diverging)
            if diverging.all() and all(np.all(np.ptp(v, axis=1) == 0) for v in samples.values()):
                # inside jit NumPyro cannot raise "Cannot find valid initial parameters": every transition
                # diverged and nothing moved, so ask its initialisation eagerly, which raises for a model whose
                # density is not finite anywhere (a chain merely stuck is left to the checks and the restart)
                initialize_model(key, model, model_args=(data,))
        else:
            mcmc.run(key, data, extra_fields=("diverging",), init_params=init_params, **model_kwargs)
            samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
            diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    elif backend == "blackjax":
        samples, diverging = _blackjax_nuts(
            model, data, key, num_chains, num_warmup, num_samples, target_accept, dense_mass, progress, model_kwargs,
            program=mcmc,
        )
    else:
        raise ValueError(f"backend must be 'numpyro' or 'blackjax', got {backend!r}")
    info = {
        "diverging": diverging,
        "backend": backend,
        "num_warmup": num_warmup,
        "wall_time_s": time.perf_counter() - t0,
    }
    return samples, info


def _nuts_restarting(args: tuple, priors, restart: bool, key_seed: int, mcmc=None):
    """``_run_nuts(*args)`` (float64 data), and once more from starts near the posterior mode when its chains
    disagree (NumPyro, ``restart``, max r̂ > ``RESTART_RHAT``: one stuck in a secondary mode or at a prior's edge).
    The run with the lower r̂ is kept (the rerun was kept whatever its r̂, also when its starts ended worse); after a
    rerun the info has ``restarted``, ``first_run`` and ``rerun`` (each run's r̂, divergences and wall time), and
    ``kept_run`` ("rerun" or "first run"); its wall time is both runs'."""
    model, data, _, num_chains, _, _, backend = args[:7]
    samples, info = _run_nuts(*args, mcmc=mcmc)
    r_hat = _max_rhat(samples, priors) if restart and backend == "numpyro" and priors else 1.0
    if r_hat > RESTART_RHAT:
        first = {"max_r_hat": r_hat, "num_divergences": int(np.sum(info["diverging"])),
                 "wall_time_s": info["wall_time_s"]}
        init = _mode_starts(model, data, None, jax.random.PRNGKey(key_seed), num_chains)
        samples2, info2 = _run_nuts(*args, mcmc=mcmc, init_params=init)
        r_hat2 = _max_rhat(samples2, priors)
        second = {"max_r_hat": r_hat2, "num_divergences": int(np.sum(info2["diverging"])),
                  "wall_time_s": info2["wall_time_s"]}
        keep_rerun = not r_hat2 > r_hat  # ties (both inf) and NaN go to the rerun, from starts near the mode
        if keep_rerun:
            samples, info = samples2, info2
        info["restarted"] = True
        info["kept_run"] = "rerun" if keep_rerun else "first run"
        info["first_run"], info["rerun"] = first, second
        info["wall_time_s"] = first["wall_time_s"] + second["wall_time_s"]
    return samples, info


#: BFGS iterations of the start-point search, and the spread of the chains' starts
#: around the mode found [unconstrained units]
START_ITERATIONS = 200
START_JITTER = 0.3


#: a member posterior whose chains disagree this much is rerun from starts near the mode
RESTART_RHAT = 1.05


def _max_rhat(samples, names) -> float:
    """The largest r̂ over the free parameters of one run (chains, draws); inf when a parameter's draws are not finite
    or never move (every chain stuck at one point — seen at a prior's edge — has no r̂ but is not converged)."""
    import arviz as az

    from ..results._posterior import stuck_draws

    vals = []
    for n in names:
        x = np.asarray(samples[n])
        if stuck_draws(x):
            return float("inf")
        vals.append(float(az.rhat(x)))
    return float(np.max(vals)) if vals else 1.0  # (a NaN anywhere gives NaN; max() depended on its place)


def _min_ess(samples, names) -> float:
    """The smallest bulk and tail effective sample size over the parameters of one run (chains, draws)."""
    import arviz as az

    vals = [float(az.ess(np.asarray(samples[n]), method=m)) for n in names if np.ptp(np.asarray(samples[n])) > 0
            for m in ("bulk", "tail")]
    return min(vals) if vals else float("inf")


def _mode_starts(model, data, model_kwargs, key, num_chains):
    """Chain starts near the posterior mode, in unconstrained coordinates (chains, ...).

    Chains started from random prior points can settle in a distant secondary mode
    of these degenerate potential models (one member's chain stuck at a halo density
    50× too high was seen), or, when the likelihood is very sharp (10⁵ stars, node
    errors of 0.6 % of |a|), run to a corner of the priors where every gradient vanishes
    (seen: all chains of two of four members at a prior's edge). The search: from the
    3 best of 8 prior points, Adam steps (bounded per step whatever the objective's
    scale: plain BFGS from a prior point took one step of ~10³ unconstrained units into
    such a corner), then BFGS; the lowest end point, then per-chain jitters. Used to
    restart a member whose chains disagree or never move.
    """
    from jax.flatten_util import ravel_pytree

    keys = jax.random.split(key, 9)
    starts, sites = [], None
    for k in keys[:8]:
        info = initialize_model(k, model, model_args=(data,), model_kwargs=model_kwargs or {}, dynamic_args=True)
        sites = _real_line_sites(info) if sites is None else sites  # the same priors at every start
        starts.append(_spread_start(info.param_info.z, sites))
    _, unravel = ravel_pytree(starts[0])
    search = _compiled_search(info, unravel, model_kwargs)

    def f(q):
        return search["objective"](q, data)

    flat = [ravel_pytree(z)[0] for z in starts]
    best_q, _ = _lowest_end(f, flat, lambda q: _bfgs(f, search["adam"](q, data),
                                                     minimizer=lambda q0: search["bfgs"](q0, data)))
    jitter = START_JITTER * search["scale"] * jax.random.normal(keys[8], (num_chains,) + best_q.shape,
                                                                dtype=best_q.dtype)
    return jax.vmap(unravel)(best_q + jitter)


#: Adam steps of the start-point search and their size [unconstrained units]
START_ADAM_STEPS = 2000
START_ADAM_RATE = 0.05


def _adam(f, q):
    """``START_ADAM_STEPS`` Adam steps on f from q (each coordinate moves ≤ ~``START_ADAM_RATE`` per step, whatever
    the scale of f); returns the lowest point visited."""
    import optax

    opt = optax.adam(START_ADAM_RATE)
    grad = jax.value_and_grad(f)

    def step(carry, _):
        q, state, best_q, best_f = carry
        val, g = grad(q)
        val = jnp.asarray(val, best_f.dtype)  # the carry keeps q's dtype
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        better = jnp.isfinite(val) & (val < best_f)
        best_q, best_f = jnp.where(better, q, best_q), jnp.where(better, val, best_f)
        upd, state = opt.update(g, state, q)
        return (optax.apply_updates(q, upd), state, best_q, best_f), None

    carry = (q, opt.init(q), q, jnp.asarray(jnp.inf, q.dtype))
    (_, _, best_q, _), _ = jax.lax.scan(step, carry, None, length=START_ADAM_STEPS)
    return best_q


#: iterated GMM for :class:`WeakFormData`: the moments' covariance is re-estimated at the mode this many times
WEAK_FORM_STEPS = 3
#: an over-identification p-value below this warns (the moments disagree with the model in equilibrium)
WEAK_FORM_P_WARN = 1e-3


def _mode_values(model, data, key, start=None, search=None):
    """The posterior mode of ``model`` given ``data``, as (constrained ``{site: value}``, the unconstrained mode,
    whether BFGS converged). From ``start`` (an unconstrained point), or else from 8 random starts (NumPyro's
    ``init_to_uniform``, uniform in (−2, 2) unconstrained; not prior draws) and, for weak-form
    data with linear moments, the moments' least-squares solution: BFGS runs from the 3 best of them by objective
    and the lowest end point wins (one start could end at a corner of the priors: a bounded parameter's
    unconstrained coordinate runs off to infinity, where the objective's gradient vanishes). Without linear
    moments (a scale radius or a shape free) BFGS first takes Adam's bounded steps (as :func:`_mode_starts`): plain
    BFGS from those starts ended at a different prior corner from each of 4 seeds, its objective 31.6–403 against 20.9
    at the mode, on a disk mock with the halo's scale radius and the disk's a and b free (2026-12-06).

    ``search``: a dict the caller keeps between calls on the same model with data of the same shapes (the GMM's
    steps): the objective, BFGS and Adam are compiled with the data as an argument once, on the first call, and
    reused (each BFGS run traced anew took ~2 s on 2 cores, against ~0.03 s for the compiled 17 iterations)."""
    from jax.flatten_util import ravel_pytree

    search = {} if search is None else search
    if search.get("model", model) is not model:
        raise ValueError("_mode_values: the compiled search passed belongs to another model")
    starts, sites = [], None
    if start is None or "unravel" not in search:
        for k in jax.random.split(key, 8 if start is None else 1):
            # the data stay arguments (dynamic_args): folding N stars into the compiled code is slow
            info = initialize_model(k, model, model_args=(data,), dynamic_args=True)
            sites = _real_line_sites(info) if sites is None else sites  # the same priors at every start
            starts.append(_spread_start(info.param_info.z, sites))
        if "unravel" not in search:
            search.update(_compiled_search(info, ravel_pytree(starts[0])[1]), model=model)
    unravel, objective = search["unravel"], search["objective"]

    def f(q):
        return objective(q, data)

    def bfgs(q):
        return _bfgs(f, q, minimizer=lambda q0: search["bfgs"](q0, data))

    flat = [ravel_pytree(z)[0] for z in starts] if start is None else [start]
    linear = isinstance(data, WeakFormData) and data.linear_moments is not None
    if start is None and linear:
        flat.append(ravel_pytree(_least_squares_start(model, data, starts[0]))[0])
    run = bfgs if start is not None or linear else (lambda q: bfgs(search["adam"](q, data)))
    best_q, best_converged = _lowest_end(f, flat, run)
    names = set(model.free_parameters())
    return ({k: v for k, v in search["postprocess"](data)(unravel(best_q)).items() if k in names}, best_q,
            best_converged)


def _compiled_search(info, unravel, model_kwargs=None) -> dict:
    """The mode search's jitted parts for one model (``info``: numpyro's ``initialize_model`` with
    ``dynamic_args=True``), each taking the data as an argument (q, data): the objective (the model's potential
    energy at the unravelled point q), BFGS and Adam from q (:func:`_adam`, looked up when first traced)."""
    from jax.scipy.optimize import minimize

    kwargs = dict(model_kwargs or {})
    objective = jax.jit(lambda q, d: info.potential_fn(d, **kwargs)(unravel(q)))
    # BFGS and Adam step in u = q / scale (:func:`_search_scale`: 1 for every coordinate but a real-line prior's)
    scale = _search_scale(info, unravel)

    def bfgs(q, d):
        res = minimize(lambda u: objective(u * scale, d), q / scale, method="BFGS",
                       options={"maxiter": START_ITERATIONS})
        return res._replace(x=res.x * scale)

    return {
        "unravel": unravel,
        "postprocess": info.postprocess_fn,
        "objective": objective,
        "scale": scale,
        "bfgs": jax.jit(bfgs),
        "adam": jax.jit(lambda q, d: _adam(lambda u: objective(u * scale, d), q / scale) * scale),
    }


def _lowest_end(f, flat, search):
    """``search`` (a start → (end point, converged)) from the 3 starts of ``flat`` with the lowest f; the end point
    with the lowest finite f wins (else the best start, not converged). Returns (point, converged): converged when
    a search that converged ended within 10⁻⁶ of the winner's f (the same minimum: on a disk mock the least-squares
    start's converged end and another start's unconverged one agreed to 6 × 10⁻¹³, the latter 10⁻¹³ lower)."""
    values = np.array([float(f(q)) for q in flat])
    if np.isnan(values).all():  # (numpy's "All-NaN slice encountered" said nothing of the cause)
        raise ValueError(f"the posterior mode search found no start with a defined objective (NaN at all {len(values)} "
                         "starts): the model's accelerations or the likelihood are NaN across the priors' range; check "
                         "the priors' bounds and the data for NaN")
    best_q, best_f = flat[int(np.nanargmin(values))], np.inf
    ends = []
    for i in np.argsort(np.where(np.isfinite(values), values, np.inf))[:3]:
        q, converged = search(flat[i])
        fq = float(f(q))
        ends.append((fq, converged))
        if np.isfinite(fq) and fq < best_f:
            best_q, best_f = q, fq
    return best_q, any(c and np.isfinite(fq) and fq - best_f <= 1e-6 for fq, c in ends)


def _bfgs(f, q, minimizer=None):
    """BFGS from q, restarted up to 3 times (the GMM objective's curvature is N times the moments' precision);
    returns (end point, converged): a restart that gained < 10⁻⁶, or the last run's own gradient test passed.
    ``minimizer``: q → ``jax.scipy.optimize.minimize``'s BFGS result on f from q (a compiled one,
    :func:`_compiled_search`); by default minimize is called (and traced) anew."""
    from jax.scipy.optimize import minimize

    if minimizer is None:
        def minimizer(q0):
            return minimize(f, q0, method="BFGS", options={"maxiter": START_ITERATIONS})

    converged = False
    for _ in range(3):
        res = minimizer(q)
        if not (bool(jnp.all(jnp.isfinite(res.x))) and float(res.fun) <= float(f(q))):
            break
        gain = float(f(q)) - float(res.fun)
        q = res.x
        converged = gain < 1e-6 or bool(res.success)
        if gain < 1e-6:  # (restarts as before the gradient test counted: the same end points)
            break
    return q, converged


def _least_squares_start(model, data: WeakFormData, template: dict) -> dict:
    """The unconstrained point (the sites of ``template``) of the amplitudes that minimise |whiten · ḡ|² for linear
    moments, ḡ = c + θ·B, each moved just inside its prior's support when the solution lies outside it."""
    from numpyro.distributions.transforms import biject_to

    w = data.whiten
    wb, wc = w @ data.linear_moments.T, w @ data.constant_moments
    theta = np.asarray(jnp.linalg.lstsq(wb, -wc)[0], np.float64)
    out = dict(template)
    for t, (name, prior) in zip(theta, model.free_parameters().items()):
        lo = float(getattr(prior.support, "lower_bound", -np.inf))
        hi = float(getattr(prior.support, "upper_bound", np.inf))
        finite = [abs(b) for b in (lo, hi) if np.isfinite(b)]
        room = 1e-3 * ((hi - lo) if len(finite) == 2 else max(finite + [1.0]))
        if not np.isfinite(t):
            t = float(prior.mean)
        t = min(max(t, lo + room), hi - room)  # inside the support (an infinite bound clips nothing)
        out[name] = jnp.asarray(biject_to(prior.support).inv(jnp.asarray(t, jnp.float64)), template[name].dtype)
    return out


def weak_form_weights(model: Any, data: WeakFormData, seed: int = 0,
                      steps: int | None = None) -> tuple[WeakFormData, dict[str, Any]]:
    """Two-step (iterated) GMM weights for the weak-form moments of ``model``; returns (weighted data, info).

    Starting from ``data.whiten``, it finds the model's posterior mode, estimates the moments' covariance S
    over the stars there, sets ``whiten`` = L⁻¹ (S = LLᵀ), and repeats ``steps`` times
    (:data:`WEAK_FORM_STEPS`). ``info`` holds the over-identification statistic J = N |whiten·ḡ|² at the
    final mode with its degrees of freedom (moments − free parameters) and χ² p-value, the mode, and the
    numbers of stars and moments. The mode is the posterior's: a prior that disagrees with the moments raises J
    (a Plummer mass with a Normal prior 5 % above the truth, 0.5 % wide: J 55.5 against 37.5 with a flat prior,
    for 29 degrees of freedom). When the moments are linear in every free parameter, ``J_prior_free`` and
    ``p_value_prior_free`` are J of the iterated GMM of the moments alone, with no prior, and ``fit_prior_free`` its
    amplitudes (:func:`_prior_free_j`; else None), which tells a prior in tension from a failing model
    (:func:`weak_form_cause`). :func:`infer` calls it for :class:`WeakFormData`.
    """
    from scipy import stats

    if not (hasattr(model, "components") and hasattr(model, "bind") and hasattr(model, "free_parameters")):
        raise TypeError(f"the weak-form fit needs a bayesdyn.PotentialModel, got {type(model).__name__}")
    steps = WEAK_FORM_STEPS if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1 (the J test needs weights from the moments' covariance), got {steps}")
    n_free = sum(int(np.prod(d.shape())) for d in model.free_parameters().values())  # unravelled size
    if data.n_moments <= n_free:
        raise ValueError(f"{data.n_moments} weak-form moments cannot fit {n_free} free parameters; raise the degrees")
    key = jax.random.PRNGKey(seed)
    with jax.enable_x64(True):
        data = _to_float64(data)
        data = _with_linear_moments(model, _with_fixed_acceleration(model, data))
        q, search = None, {}  # the search is compiled once for every step (only whiten changes)
        for _ in range(steps + 1):
            values, q, converged = _mode_values(model, data, key, q, search)
            gbar, whiten = _moments_and_whitening(model, data, values)
            j_stat = float(data.n_stars * jnp.sum((data.whiten @ gbar) ** 2))
            if _ == steps:
                break
            if whiten is None:
                raise ValueError("the weak-form moments' covariance is singular: too few stars in the ball for "
                                 "the moments, or moments that duplicate each other; lower the degrees")
            data = data._replace(whiten=whiten)
        j_free, theta_free = _prior_free_j(model, data, steps)  # (in float64)
    if not converged:
        warnings.warn("the weak-form GMM's mode search (BFGS) did not converge; the weights and J "
                      "rest on an approximate mode: check the priors' range and info['weak_form']['mode']",
                      stacklevel=2)
    dof = data.n_moments - n_free
    info = {"J": j_stat, "dof": dof, "p_value": float(stats.chi2.sf(j_stat, dof)), "n_stars": data.n_stars,
            "n_moments": data.n_moments, "weight_steps": steps, "mode_converged": bool(converged),
            "mode": {k: np.asarray(v).tolist() for k, v in values.items()},
            "ball_kpc": [float(t) for t in np.asarray(data.ball)],
            "J_prior_free": j_free,
            "p_value_prior_free": None if j_free is None else float(stats.chi2.sf(j_free, dof)),
            "fit_prior_free": theta_free}
    # the fixed components' part is valid only with this model: infer attaches it again for its own NUTS run
    return data._replace(fixed_acceleration=None, constant_moments=None, linear_moments=None), info


def _prior_free_j(model, data: WeakFormData, steps: int) -> tuple[float | None, dict[str, float] | None]:
    """J without the prior: the iterated GMM of the moments alone, for linear moments ḡ = c + θ·B (else (None, None)).

    From the weights at the posterior mode, θ = argmin |W ḡ(θ)|² over the whole real line of each amplitude (least
    squares), then W = L⁻¹ of the stars' moment covariance at that θ, ``steps`` times, and J = N |W ḡ(θ)|² at the
    last. Re-estimating W matters: kept at a mode that a prior 30 % off had pulled away, J came out 3–6 low (prior
    0.7× the truth: 6–11 high), so it was not χ² with M − K degrees of freedom (a review, 4 Plummer samples).
    Returns (J, {parameter: θ}); θ may lie outside the priors' support (a negative amplitude)."""
    if data.linear_moments is None:
        return None, None
    names = list(model.free_parameters())
    whiten = data.whiten
    for step in range(steps + 1):
        wb, wc = whiten @ data.linear_moments.T, whiten @ data.constant_moments
        theta = jnp.linalg.lstsq(wb, -wc)[0]
        if step == steps:
            break
        # arrays: bound unchecked (an amplitude may be negative here)
        _, whiten = _moments_and_whitening(model, data, {n: jnp.asarray(t, data.x.dtype) for n, t in zip(names, theta)})
        if whiten is None:
            return None, None
    j = float(data.n_stars * jnp.sum((wc + wb @ theta) ** 2))
    return j, {n: float(t) for n, t in zip(names, theta)}


def _moments_and_whitening(model, data: WeakFormData, values: dict) -> tuple[jax.Array, jax.Array | None]:
    """The stars' mean moments ḡ (M,) with ``model`` bound to ``values``, and the GMM weights L⁻¹ of their covariance
    S = LLᵀ over the stars (None where S is singular)."""
    bound = model.bind(values)
    g = data.moments(data.field(lambda x: model.total_acceleration(bound, x)))
    chol = jnp.linalg.cholesky(jnp.cov(g.T))
    if not bool(jnp.all(jnp.isfinite(chol))):
        return jnp.mean(g, axis=0), None
    return jnp.mean(g, axis=0), jax.scipy.linalg.solve_triangular(chol, jnp.eye(data.n_moments), lower=True)


def weak_form_cause(weak: dict) -> str:
    """What a rejecting J test (``post.info["weak_form"]``, p < :data:`WEAK_FORM_P_WARN`) points to: the prior when
    the moments' own best fit passes (``J_prior_free``) and the priors add more to J than χ²(K) gives at that level
    (K free parameters); unclear when they add less; else the model, equilibrium or completeness."""
    from scipy import stats

    failures = "the model family, equilibrium, or the catalog's completeness inside the ball does not hold"
    j_free, p_free = weak.get("J_prior_free"), weak.get("p_value_prior_free")
    if j_free is None:
        why = ("with a shape parameter free there is no prior-free J to tell them apart" if "J_prior_free" in weak
               else "this fit predates the prior-free J: run it again to tell them apart")
        return (f"{failures}, or a prior disagrees with the moments (J is taken at the posterior mode, which an "
                f"informative prior pulls away from the moments' best fit; {why})")
    fit = weak.get("fit_prior_free") or {}
    at = f" ({', '.join(f'{k} = {v:.4g}' for k, v in fit.items())}, which may lie outside the priors' support)" \
        if fit else ""
    # the priors' share of J: J − J_free, against what K parameters moved by chance give (χ²(K), as for K
    # restrictions); near the threshold (J 62 at the mode, 58 without the priors, 29 dof) the prior had been blamed
    # for a small pull while the moments' own fit barely passed
    k = max(len(fit), 1)
    shift = float(weak.get("J", np.nan)) - j_free
    chance = float(stats.chi2.isf(WEAK_FORM_P_WARN, k))
    if p_free >= WEAK_FORM_P_WARN and not shift <= chance:
        return (f"a prior disagrees with the moments: at the moments' own best fit{at}, with no prior, "
                f"J = {j_free:.1f} (p = {p_free:.2g}); widen or move the prior, or check it against the data")
    if p_free >= WEAK_FORM_P_WARN:
        return (f"the cause is unclear: without the priors the moments' own best fit{at} passes (J = "
                f"{j_free:.1f}, p = {p_free:.2g}), and the priors add {shift:.1f} to J, no more than chance gives "
                f"for {k} parameter(s) ({chance:.1f} at p = {WEAK_FORM_P_WARN:g}): {failures}, or a prior disagrees "
                "with the moments")
    return (f"{failures} (not the priors alone: at the moments' own best fit{at}, with no prior, J = {j_free:.1f}, "
            f"p = {p_free:.1e})")


def _with_fixed_acceleration(model, data: WeakFormData) -> WeakFormData:
    """``data`` with the accelerations of ``model``'s fixed components at the stars, computed once."""
    fixed = [c for c in model.components.values() if not c.free_parameters()]
    shape = data.x.shape if data.position_covariance is None else data.x.shape + (5,)
    return data._replace(fixed_acceleration=sum((data.field(c.acceleration) for c in fixed),
                                                jnp.zeros(shape, data.x.dtype)))


def _amplitude_scale(prior) -> float:
    """A non-zero value of a prior's parameter at which to probe and scale a component (its mean, else 1)."""
    try:
        m = float(np.asarray(prior.mean))
    except (NotImplementedError, TypeError, ValueError):
        m = float("nan")
    return m if np.isfinite(m) and m != 0 else 1.0


def _with_linear_moments(model, data: WeakFormData) -> WeakFormData:
    """``data`` with ``constant_moments`` and ``linear_moments`` when each free parameter of ``model`` is the only
    free one of its component, a scalar, and scales its acceleration (a(λp) = λ a(p) for λ = ½, 2, 3 at 64 of
    the stars, to 10⁻¹⁰); without them otherwise (a free shape parameter, or several in one component)."""
    priors = model.free_parameters()
    owners = [n.split(".", 1)[0] for n in priors]
    plain = data._replace(constant_moments=None, linear_moments=None)
    if not priors or len(set(owners)) != len(owners) or any(p.batch_shape or p.event_shape for p in priors.values()):
        return plain
    probe = data.x[:64]
    unit = []
    for name, prior in priors.items():
        cname, key = name.split(".", 1)
        comp = model.components[cname]
        p0 = _amplitude_scale(prior)

        def at(value, comp=comp, key=key):  # an array: a probe past a number's range (a prior mean < 0) is bound
            return comp.bind({key: jnp.asarray(value, data.x.dtype)})

        a0 = np.asarray(at(p0).acceleration(probe), np.float64)
        scale = float(np.max(np.abs(a0))) if a0.size else 0.0
        if not (np.all(np.isfinite(a0)) and scale > 0):
            return plain
        for lam in (0.5, 2.0, 3.0):
            a = np.asarray(at(lam * p0).acceleration(probe), np.float64)
            if not np.allclose(a, lam * a0, rtol=1e-10, atol=1e-10 * lam * scale):
                return plain
        unit.append((data.field(at(p0).acceleration), p0))

    fixed = (data.fixed_acceleration if data.fixed_acceleration is not None
             else _with_fixed_acceleration(model, data).fixed_acceleration)
    constant = data.mean_moments(fixed)
    # the acceleration term alone: a difference of mean_moments would cancel against the transport term
    linear = jnp.stack([data.acceleration_moments(a) / p0 for a, p0 in unit])
    return data._replace(constant_moments=constant, linear_moments=linear)


def _numpyro_mcmc(model, num_chains, num_warmup, num_samples, target_accept, dense_mass, progress,
                  inverse_mass_matrix=None):
    # vectorised chains run everywhere; "parallel" needs one device per chain. The data are a traced argument
    # (jit_model_args); without a progress bar a run goes through _compiled_run, compiled once for all members.
    # inverse_mass_matrix: the adaptation's start (None: the identity; see _real_line_mass)
    chain_method = "parallel" if jax.local_device_count() >= num_chains else "vectorized"
    return MCMC(
        NUTS(model, target_accept_prob=target_accept, dense_mass=dense_mass, inverse_mass_matrix=inverse_mass_matrix),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress,
        jit_model_args=True,
    )


def _run_once(mcmc, key, data, init_params):
    """One run of ``mcmc``, without model keyword arguments, on a fresh copy of it: the draws grouped by chain, and
    their divergences. (A NumPyro kernel keeps its step function on itself and wraps it in one more ``vmap`` at every
    ``init`` with vectorised chains; plain ``MCMC.run`` calls get by only through JAX's cache of the first trace.)"""
    mcmc = copy.copy(mcmc)  # (their __getstate__: no cached functions, no step function)
    mcmc.sampler = copy.copy(mcmc.sampler)
    mcmc.run(key, data, extra_fields=("diverging",), init_params=init_params)
    return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)["diverging"]


def _compiled_run(mcmc):
    """:func:`_run_once` on ``mcmc`` as one jitted function of (key, data, starts), kept on ``mcmc``: the members of
    an ensemble (the same shapes) then share one compilation. NumPyro 0.22 compiles its sampling loop anew at every
    ``MCMC.run`` (``fori_collect`` wraps its cached body in a new ``jit`` each call, a static argument of the loop's
    ``jit``): 3–5 s per member on 2 CPU cores, against ~0.1 s to run it. Inside this ``jit`` the loop is traced once.
    The draws equal those of unjitted runs bit for bit (``tests/test_inference.py``) and, with vectorised chains,
    those of plain ``MCMC.run`` calls; a single chain's differ from those at ~1e-15 relative (XLA's rounding)."""
    run = getattr(mcmc, "_bayesdyn_run", None)
    if run is None:
        run = jax.jit(functools.partial(_run_once, mcmc))
        mcmc._bayesdyn_run = run
    return run


def _blackjax_program(model, data, key, num_warmup, num_samples, target_accept, dense_mass, model_kwargs):
    """BlackJAX's window adaptation and NUTS for ``model``, vectorised over chains and jitted as a function of
    (starts, warm-up keys, sampling keys, data): the members of an ensemble (data of the same shapes) share one
    compilation (a program with the data bound compiled again for each, ~4 s on 2 CPU cores). ``data`` and ``key``
    only trace the model once to find its sites. The draws can differ from a program with the data bound by
    rounding (~1e-9 relative, seen by a review; none in tests/test_inference.py's case)."""
    import blackjax

    _, potential_gen, _, _ = initialize_model(key, model, model_args=(data,), model_kwargs=model_kwargs,
                                              dynamic_args=True)

    def run(init_z, warm_keys, run_keys, data):
        potential_fn = potential_gen(data, **model_kwargs)

        def logdensity(z):
            return -potential_fn(z)

        def one_chain(z0, wkey, rkey):
            adapt = blackjax.window_adaptation(
                blackjax.nuts, logdensity, is_mass_matrix_diagonal=not dense_mass,
                target_acceptance_rate=target_accept
            )
            (state, params), _ = adapt.run(wkey, z0, num_steps=num_warmup)
            kernel = blackjax.nuts(logdensity, **params).step

            def step(st, k):
                st, inf = kernel(k, st)
                return st, (st.position, inf.is_divergent)

            _, (pos, div) = jax.lax.scan(step, state, jax.random.split(rkey, num_samples))
            return pos, div

        return jax.vmap(one_chain)(init_z, warm_keys, run_keys)

    return jax.jit(run)


def _blackjax_nuts(
    model, data, key, num_chains, num_warmup, num_samples, target_accept, dense_mass, progress, model_kwargs,
    program=None,
):
    """BlackJAX NUTS (``program``: a :func:`_blackjax_program` of the same settings to reuse, or None)."""
    model_kwargs = dict(model_kwargs or {})
    init_key, warm_key, run_key = jax.random.split(key, 3)
    init_keys = jax.random.split(init_key, num_chains)
    inits = []
    for k in init_keys:
        info = initialize_model(k, model, model_args=(data,), model_kwargs=model_kwargs, dynamic_args=False)
        inits.append(_spread_start(info.param_info.z, _real_line_sites(info)))
    _, _, postprocess_fn, _ = initialize_model(init_keys[0], model, model_args=(data,), model_kwargs=model_kwargs)
    init_z = jax.tree.map(lambda *zs: jnp.stack(zs), *inits)
    if program is None:
        program = _blackjax_program(model, data, init_keys[0], num_warmup, num_samples, target_accept, dense_mass,
                                    model_kwargs)
    if progress:
        print(f"blackjax NUTS: {num_chains} chains × ({num_warmup} warm-up + {num_samples}) draws, vectorised ...")
    pos, div = program(init_z, jax.random.split(warm_key, num_chains), jax.random.split(run_key, num_chains), data)
    constrained = jax.vmap(jax.vmap(postprocess_fn))(pos)
    return {k: np.asarray(v) for k, v in constrained.items()}, np.asarray(div)


def infer(
    model: Any,
    data: Any,
    *,
    seed: int = 0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    backend: Literal["numpyro", "blackjax"] = "numpyro",
    target_accept: float = 0.8,
    dense_mass: bool = True,
    progress: bool = True,
    combine: Literal["auto", "members", "mean"] = "auto",
    restart: bool = True,
    **kwargs: Any,
):
    """Posterior of a :class:`PotentialModel` given data, by NUTS.

    With an ensemble (``data.members`` and ``data.member_cov``, as
    :func:`bayesdyn.estimate_accelerations` gives for K ≥ 2 members), the default
    runs one posterior per member — that member's own acceleration field with its
    own least-squares covariance — and combines them by Rubin's rules
    (:func:`bayesdyn.inference.combine_members`): the combined width is the mean
    within-member width plus (1 + 1/K) × the members' disagreement, that part with Student-t
    tails for small K. When the members come in seed groups that share a bootstrap
    resample (``data.member_groups``, from ``fit_psd(seeds_per_resample=L ≥ 2)``),
    the disagreement is split into its training and sampling parts and the training
    part is counted once, as the member mean averages it (nested ANOVA; see
    :func:`~bayesdyn.inference.combine_members`). This carries a flow's spatially correlated errors into the
    parameters, which a likelihood of the mean acceleration with independent
    nodes does not (on the calibration's disk and NFW mocks the spread of its medians was 7–11× its posterior
    standard deviation; docs/calibration).

    Args:
        model: a :class:`bayesdyn.PotentialModel` (or any NumPyro model taking the data).
        data: :class:`AccelerationData` (accelerations at nodes), :class:`StarScoreData`,
            :class:`WeakFormData` (the stars' weak-form CBE moments, :func:`bayesdyn.weak_form_data`:
            no flows; fitted by two-step GMM, :func:`weak_form_weights`, whose over-identification test is
            in ``info["weak_form"]`` and warns when p < 10⁻³), or a PhaseSpaceDensity, from which
            accelerations are estimated at nodes with :func:`bayesdyn.dynamics.estimate_accelerations`
            (``kwargs`` go there).
        seed: random seed; the same seed gives the same posterior.
        num_chains: chains, vectorised on one device (or one per device when enough),
            per member.
        num_warmup: warm-up (adaptation) draws per chain, discarded.
        num_samples: kept draws per chain.
        backend: ``"numpyro"`` or ``"blackjax"``.
        target_accept: NUTS target acceptance probability.
        dense_mass: adapt a dense mass matrix (cheap for the few parameters of a
            potential model, and much faster on their correlated posteriors).
        progress: show a progress bar.
        combine: ``"members"`` (one posterior per member, Rubin's rules),
            ``"mean"`` (one posterior of the member-mean accelerations with the
            ensemble covariance; overconfident for flows), or ``"auto"``:
            ``"members"`` when the data carry K ≥ 2 members with their
            covariances, else ``"mean"``.
        restart: with the NumPyro backend, rerun a run (a member's, or the single
            one) whose chains disagree (r̂ > 1.05, or a chain stuck) once from starts
            near the posterior mode (a search of a few seconds); False for runs known
            to be too short to converge (smoke tests).

    Returns:
        :class:`bayesdyn.results.Posterior`, which warns loudly when r̂ > 1.01,
        divergences occurred or the effective sample size is low; with
        ``combine="members"`` its ``info["combine"]`` holds the members' medians,
        the t degrees of freedom and each parameter's between-member share (and
        ``restarted_members``); a rerun single posterior has ``info["restarted"]``,
        ``info["first_run"]`` and ``info["rerun"]`` (each run's r̂, divergences and wall
        time) and ``info["kept_run"]``: the run with the lower r̂ is kept.
    """
    from ..results import Posterior

    if not isinstance(data, (AccelerationData, StarScoreData, WeakFormData)):
        from ..dynamics import estimate_accelerations

        data = estimate_accelerations(data, seed=seed, **kwargs)
    elif kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    if combine not in ("auto", "members", "mean"):
        raise ValueError(f"combine must be 'auto', 'members' or 'mean', got {combine!r}")
    if isinstance(data, StarScoreData):
        data.check()
        warnings.warn(
            "StarScoreData: the star-level Gaussian likelihood treats every star's residual as independent, but the "
            "flows' score errors are correlated between stars, so its intervals are far too narrow (DESIGN §6: truth "
            "9–117 σ away on a prototype); use AccelerationData from an ensemble (bd.estimate_accelerations) or the "
            "weak form (bd.weak_form_data) for intervals", UserWarning, stacklevel=2,
        )
    has_members = (
        isinstance(data, AccelerationData) and data.n_members >= 2 and data.member_cov is not None
    )
    if combine == "members" and not has_members:
        raise ValueError(
            "combine='members' needs AccelerationData with members (K ≥ 2) and member_cov, as "
            "bayesdyn.estimate_accelerations gives for an ensemble PhaseSpaceDensity"
        )
    if combine == "auto":
        combine = "members" if has_members else "mean"
        if isinstance(data, AccelerationData) and data.n_members >= 2 and data.member_cov is None:
            warnings.warn(  # (they fell back to "mean", which the docs call overconfident for flows, without a word)
                f"these AccelerationData carry {data.n_members} members but no member_cov, so combine='auto' fits "
                "the member mean (combine='mean'), whose intervals are too narrow for flows (their errors are "
                "correlated between nodes); give each member's covariance (bd.estimate_accelerations does) for "
                "combine='members'", UserWarning, stacklevel=2,
            )
    if combine == "mean" and isinstance(data, AccelerationData) and data.member_groups is not None:
        warnings.warn(
            "these accelerations come from flows fitted with seeds_per_resample ≥ 2, but combine='mean' uses "
            "the members' plain covariance, which treats them as independent resamples and undercounts the "
            "finite-sample variance; use combine='members' (the default), which weighs the resample groups",
            stacklevel=2,
        )
    options = dict(
        num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples, backend=backend,
        target_accept=target_accept, dense_mass=dense_mass, progress=progress,
    )
    weak = None
    if isinstance(data, WeakFormData):
        data, weak = weak_form_weights(model, data, seed=seed)
        with jax.enable_x64(True):
            data = _with_linear_moments(model, _with_fixed_acceleration(model, _to_float64(data)))
        if weak["p_value"] < WEAK_FORM_P_WARN:
            warnings.warn(
                f"the weak-form moments disagree with the model: J = {weak['J']:.1f} for {weak['dof']} degrees of "
                f"freedom (p = {weak['p_value']:.1e}): {weak_form_cause(weak)}; the posterior's intervals do not "
                "account for it",
                stacklevel=2,
            )
    if combine == "mean":
        priors = model.free_parameters() if hasattr(model, "free_parameters") else {}
        with jax.enable_x64(True):  # float64 throughout (run_nuts)
            args = (model, _to_float64(data), seed, num_chains, num_warmup, num_samples, backend, target_accept,
                    dense_mass, progress, None)
            samples, info = _nuts_restarting(args, priors, restart, seed + 1)
        if weak is not None:
            info["weak_form"] = weak
    else:
        samples, info, members = _run_members(model, data, seed, options, restart)
    if hasattr(model, "derived"):
        with jax.enable_x64(True):
            sun = jnp.asarray(data.sun, dtype=jnp.float64)
            if combine == "members":  # with each member's own derived draws, for its diagnostics: one call (compile)
                k = len(members)
                joint = {n: np.stack([np.asarray(samples[n]).reshape((k,) + np.shape(members[0][n])),
                                      np.stack([m[n] for m in members])]) for n in members[0]}
                both = model.derived(joint, sun)  # (2, K, chains, draws): combined, then members
                samples.update({n: np.asarray(v[0]).reshape(np.shape(samples[next(iter(members[0]))]))
                                for n, v in both.items()})
                for j, m in enumerate(members):
                    m.update({n: np.asarray(v[1, j]) for n, v in both.items()})
            else:
                samples.update({k: np.asarray(v) for k, v in model.derived(samples, sun).items()})
    if combine == "members":
        info["combine"]["member_diagnostics"] = member_diagnostics(members)
    return Posterior.from_samples(samples, info, model=model)


def member_diagnostics(member_samples) -> dict[str, dict[str, list[float]]]:
    """Per site and member: r̂, bulk and tail ESS of each member's own run (chains, draws); NaN where a site's
    draws never move, r̂ = inf where they are not finite. A combined posterior's diagnostics come from these (``Posterior.diagnostics``): its draws mix
    re-centred members of different widths, which inflates r̂, and add an independent between-member draw to each,
    which inflates the ESS."""
    import arviz as az

    out: dict[str, dict[str, list[float]]] = {}
    for n in member_samples[0]:
        if np.ndim(member_samples[0][n]) != 2:
            continue
        rows = []
        for m in member_samples:
            x = np.asarray(m[n], np.float64)
            if not np.isfinite(x).all():
                rows.append((np.inf, np.nan, np.nan))
            elif np.ptp(x) == 0:
                rows.append((np.nan, np.nan, np.nan))
            else:
                rows.append((float(az.rhat(x)), float(az.ess(x, method="bulk")), float(az.ess(x, method="tail"))))
        out[n] = {k: [r[i] for r in rows] for i, k in enumerate(("r_hat", "ess_bulk", "ess_tail"))}
    return out


def _run_members(model, data: AccelerationData, seed: int, options: dict, restart: bool = True):
    """One NUTS posterior per member, combined by Rubin's rules: (combined samples, info, the members' samples)."""
    from ._combine import combine_members

    if not hasattr(model, "free_parameters"):
        raise TypeError("combine='members' needs a PotentialModel (its priors fix the unconstrained coordinates)")
    priors = model.free_parameters()
    k = data.n_members
    t0 = time.perf_counter()
    member_samples, diverging, walls, restarted = [], [], [], []
    with jax.enable_x64(True):
        mcmc = None  # one sampler for every member: compiled once (their data have the same shapes)
        if options["backend"] == "blackjax":
            mcmc = _blackjax_program(model, _to_float64(data.member(0)), jax.random.PRNGKey(0), options["num_warmup"],
                                     options["num_samples"], options["target_accept"], options["dense_mass"], {})
        if options["backend"] == "numpyro":
            # no NumPyro progress bar: its loop would compile again for every member (_compiled_run); a line per
            # member says how the runs go instead
            mcmc = _numpyro_mcmc(
                model, options["num_chains"], options["num_warmup"], options["num_samples"],
                options["target_accept"], options["dense_mass"], False,
                _real_line_mass(_real_line_init(model, _to_float64(data.member(0)), None, jax.random.PRNGKey(0), 1,
                                                warn=False)),
            )
        for j in range(k):
            if options["progress"]:
                print(f"member {j + 1}/{k}: NUTS, {options['num_chains']} chains × ({options['num_warmup']} warm-up + "
                      f"{options['num_samples']}) draws{' (compiling first)' if j == 0 else ''} ...", end=" ",
                      flush=True)
            dj = _to_float64(data.member(j))
            args = (model, dj, seed + 1000 * j, options["num_chains"], options["num_warmup"], options["num_samples"],
                    options["backend"], options["target_accept"], options["dense_mass"], False, None)
            sj, ij = _nuts_restarting(args, priors, restart, seed + 1000 * j + 1, mcmc=mcmc)
            if options["progress"]:
                print(f"{ij['wall_time_s']:.1f} s, max r̂ {_max_rhat(sj, priors):.3f}, "
                      f"{int(np.sum(ij['diverging']))} divergent{', rerun from the mode' if ij.get('restarted') else ''}",
                      flush=True)
            if ij.get("restarted"):
                restarted.append(j)
            member_samples.append({n: sj[n] for n in priors})
            diverging.append(ij["diverging"])
            walls.append(ij["wall_time_s"])
    samples, cinfo = combine_members(member_samples, priors, seed=seed, groups=data.member_groups)

    # convergence is judged per member run (the combined draws mix re-centred members)
    cinfo["member_max_r_hat"] = [_max_rhat(sj, priors) for sj in member_samples]
    cinfo["member_min_ess"] = [_min_ess(sj, priors) for sj in member_samples]  # the combined draws' ESS is inflated
    cinfo["member_divergences"] = [int(np.sum(d)) for d in diverging]
    cinfo["restarted_members"] = restarted
    info = {
        "diverging": np.concatenate(diverging, axis=0),
        "backend": options["backend"],
        "num_warmup": options["num_warmup"],
        "wall_time_s": time.perf_counter() - t0,
        "member_wall_time_s": walls,
        "combine": cinfo,
    }
    return samples, info, member_samples

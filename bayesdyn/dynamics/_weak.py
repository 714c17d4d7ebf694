"""The weak (integrated) form of the collisionless Boltzmann equation: moments of the stars, no density estimate.

Multiply the CBE v·∇ₓf + a·∇ᵥf = 0 by a test function ψ(x, v) that vanishes on the
boundary of a ball inside which the catalog holds every star of the population, and
integrate by parts over x and v: the derivatives move from f onto ψ, and

    E_stars[ v·∇ₓψ(x, v) + a(x)·∇ᵥψ(x, v) ] = 0,

an average over the stars themselves. With M test functions and a potential model with
K < M free parameters this is a generalised method of moments (GMM) problem: no flow, no
density, no binning, and the moments' covariance is estimated from the same stars, so the
errors follow from the central limit theorem instead of from a flow ensemble. The
over-identification statistic J = N ḡᵀS⁻¹ḡ (χ² with M − K degrees of freedom when the
model, equilibrium and completeness hold) tests the fit.

The test functions are ψ = (1 − ρ²)² ξ^p (v_j / v₀), with ξ = (x − centre)/radius, ρ = |ξ|,
ξ^p the monomials of total degree ≤ ``degree_x`` and v_j the Galactocentric velocity
components (and their products up to ``degree_v``); the window and its gradient vanish on
the ball's surface, so the stars outside (ψ = 0) and the selection edge drop out exactly. With position errors
the window is (1 − ρ²)³ (see :func:`_position_error_terms`).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from .. import units as _u

__all__ = ["weak_form_data", "weak_form_moments", "VELOCITY_UNIT"]

#: v₀ of the velocity monomials [km/s]: only the conditioning depends on it (each moment is rescaled
#: by its own spread before the fit)
VELOCITY_UNIT = 100.0


def _powers(degree: int, start: int) -> list[tuple[int, int, int]]:
    return [p for d in range(start, degree + 1) for p in itertools.product(range(d + 1), repeat=3) if sum(p) == d]


def _monomials(y: np.ndarray, powers: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """y^p (N, P) and its gradient ∂(y^p)/∂y (N, P, 3) for the given exponent triples."""
    value = np.stack([np.prod(y ** np.asarray(p), axis=1) for p in powers], axis=1)
    grad = np.zeros(value.shape + (3,))
    for m, p in enumerate(powers):
        for k in range(3):
            if p[k]:
                q = list(p)
                q[k] -= 1
                grad[:, m, k] = p[k] * np.prod(y ** np.asarray(q), axis=1)
    return value, grad


def _error_bias(v: np.ndarray, cov: np.ndarray, powers: list[tuple[int, int, int]], chunk: int = 16384) -> np.ndarray:
    """E[v'_i Q_c(v')] − v_i Q_c(v) for v' = v + e, e ~ N(0, C): ½ Σ_jk C_jk ∂²(v_i Q_c)/∂v_j∂v_k, (N, 3, n_c).

    Exact for the polynomials v_i Q_c of degree ≤ 3 (velocity degree ≤ 2): their fourth derivatives vanish.
    One jitted program per ``powers``, run over fixed-size chunks of ``chunk`` stars (the last one padded): the
    Hessians (N, 3, n_c, 3, 3) of the whole catalog at once took ~0.65 GB per 10⁶ stars, and run eagerly they
    compiled anew for every catalog size.
    """
    import jax

    run = _error_bias_program(tuple(tuple(int(k) for k in p) for p in powers))
    v = np.asarray(v, np.float64)
    cov = np.asarray(cov, np.float64)
    # below ``chunk`` stars, padded to the next power of two: a few compiled sizes, not one per catalog size
    chunk = max(1, min(chunk, 1 << max(0, len(v) - 1).bit_length()))
    if not len(v):
        return np.zeros((0, 3, len(powers)))
    with jax.enable_x64(True):
        return _over_chunks(run, (v, cov), chunk)[0]


def _over_chunks(run, arrays, chunk: int, *fixed) -> list[np.ndarray]:
    """``run(*rows, *fixed)`` over fixed-size chunks of ``chunk`` rows of ``arrays`` (the last chunk padded by
    repeating its last row, so one compiled program serves every chunk); its output, an array or a tuple of them,
    as a list of arrays with the padding dropped. Call it with float64 enabled, as the programs expect."""
    import jax.numpy as jnp

    n = len(arrays[0])
    parts = []
    for i in range(0, n, chunk):
        rows = [a[i:i + chunk] for a in arrays]
        pad = chunk - len(rows[0])
        out = run(*(jnp.asarray(np.pad(r, ((0, pad),) + ((0, 0),) * (r.ndim - 1), mode="edge")) for r in rows),
                  *fixed)
        parts.append([np.asarray(o)[:len(rows[0])] for o in (out if isinstance(out, tuple) else (out,))])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


@functools.lru_cache(maxsize=8)
def _error_bias_program(powers: tuple[tuple[int, int, int], ...]):
    """The jitted, vmapped per-star body of :func:`_error_bias` (call it with float64 enabled)."""
    import jax
    import jax.numpy as jnp

    def products(u):  # v_i Q_c(v) (3, n_c), v in km/s; Python-int powers (integer_pow: no 0·∞ at u_k = 0)
        w = u / VELOCITY_UNIT
        q = jnp.stack([w[0] ** p[0] * w[1] ** p[1] * w[2] ** p[2] for p in powers])
        return u[:, None] * q[None, :]

    def one(u, c):
        return 0.5 * jnp.einsum("icjk,jk->ic", jax.hessian(products)(u), c)

    return jax.jit(jax.vmap(one))


def _position_error_terms(x: np.ndarray, v: np.ndarray, cov: np.ndarray, center: np.ndarray, radius: float,
                          degree_x: int, degree_v: int, window_power: int, mean: np.ndarray | None = None,
                          weight: Any = None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second-order corrections for errors of positions and velocities with mean μ (N, 6) and covariance C
    (N, 6, 6).

    For a smooth function h of the star's phase-space point y = (x, v), E[h(y + e)] = h(y) + μ·∇h + ½ tr(C ∇²h)
    + O(e³) over errors e with mean μ = O(C) and covariance C, so h − μ·∇h − ½ tr(C ∇²h), evaluated at the
    observed point, averages to the error-free h to that order (a "corrected score"). μ is 0 for Gaussian errors
    of x and v themselves, but not for Gaussian errors of a parallax propagated to a distance 1/ϖ
    (:meth:`bayesdyn.Catalog.error_mean`). Returns, per star:

    - μ·∇T_m + ½ tr(C ∇²T_m) for the transport terms T_m = (v·∇W_a) Q_c (N, M) [km/s/kpc] (all of C: the x–x,
      x–v and v–v blocks; the last is the exact velocity-error bias of :func:`_error_bias`);
    - μ_x·∇W_a + ½ tr(C_xx ∇²W_a) (N, n_a) and C_xx ∇W_a + W_a μ_x (N, n_a, 3) [kpc], from which
      :meth:`bayesdyn.inference.WeakFormData.field` corrects the acceleration term W_a a·∂Q_c/∂v (degree_v 1):
      its μ-term μ_x·∇(W_a a) = a μ_x·∇W_a + W_a μ_x·∇a folds into the same two arrays.

    The transport terms hold ∇W_a, so their correction holds third derivatives of the window (1 − ρ²)^k: for
    k = 2 the second derivative jumps on the ball's surface and the third has a surface delta that a sum over
    the stars misses, weighted by ⟨v_n v_c⟩ there, which the disk's rotation makes large (on the disk mock a_R(⊙)
    came out 4–8 % low, J = 160–800); k ≥ 3 has none, so :func:`weak_form_data` uses k = 3 with position
    errors.
    """
    import jax
    import jax.numpy as jnp

    run = (_position_error_program(int(degree_x), int(degree_v), int(window_power)) if weight is None else
           _build_position_error_program(int(degree_x), int(degree_v), int(window_power), weight))
    y = np.concatenate([np.asarray(x, np.float64), np.asarray(v, np.float64)], axis=1)
    cov = np.asarray(cov, np.float64)
    mean = np.zeros_like(y) if mean is None else np.asarray(mean, np.float64)
    chunk = min(chunk, len(y))
    with jax.enable_x64(True):
        c0, r0 = jnp.asarray(center, jnp.float64), jnp.asarray(radius, jnp.float64)
        return tuple(_over_chunks(run, (y, cov, mean), chunk, c0, r0))


@functools.lru_cache(maxsize=8)
def _position_error_program(degree_x: int, degree_v: int, window_power: int):
    """The jitted, vmapped per-star body of :func:`_position_error_terms` for these degrees (unweighted)."""
    return _build_position_error_program(degree_x, degree_v, window_power, None)


def _build_position_error_program(degree_x: int, degree_v: int, window_power: int, weight: Any):
    """As :func:`_position_error_program`; with ``weight`` (a JAX function of one position (3,) [kpc] → the star's
    weight 1/ε, a scalar) the moments are w(x) h(x, v), and the correction is that of the product, so ε's own
    derivatives enter."""
    import jax
    import jax.numpy as jnp

    px, pv = _powers(degree_x, 0), _powers(degree_v, 1)

    def one(y, c, mu, center, radius):
        def bare(xx):  # W_a (n_a,)
            xi = (xx - center) / radius
            rho2 = jnp.sum(xi * xi)
            ball = jnp.where(rho2 < 1.0, (1.0 - rho2) ** window_power, 0.0)
            return ball * jnp.stack([xi[0] ** p[0] * xi[1] ** p[1] * xi[2] ** p[2] for p in px])

        def w_of(xx):
            return 1.0 if weight is None else jnp.reshape(weight(xx), ())

        def window(xx):  # the acceleration term's spatial factor w W_a (n_a,)
            return w_of(xx) * bare(xx)

        def transport(u):  # w (v·∇W_a) Q_c (M,)
            xx, vv = u[:3], u[3:]
            w = vv / VELOCITY_UNIT
            q = jnp.stack([w[0] ** p[0] * w[1] ** p[1] * w[2] ** p[2] for p in pv])
            return (w_of(xx) * (jax.jacfwd(bare)(xx) @ vv)[:, None] * q[None, :]).reshape(-1)

        # ½ tr(C ∇²h) = ½ Σ_k h''(y; u_k) along u_k = √λ_k e_k (C's eigenvectors; C may be singular)
        lam, vecs = jnp.linalg.eigh(c)
        dirs = (vecs * jnp.sqrt(jnp.clip(lam, 0.0))[None, :]).T  # (6, 6): the u_k as rows

        def second(f, point, u):
            return jax.jvp(lambda p: jax.jvp(f, (p,), (u,))[1], (point,), (u,))[1]

        w, w_shift = jax.jvp(window, (y[:3],), (mu[:3],))  # W_a and μ_x·∇W_a
        t_bias = 0.5 * jnp.sum(jax.vmap(lambda u: second(transport, y, u))(dirs), axis=0)
        t_bias = t_bias + jax.jvp(transport, (y,), (mu,))[1]
        curv = 0.5 * jnp.sum(jax.vmap(lambda u: second(window, y[:3], u[:3]))(dirs), axis=0) + w_shift
        grad = jax.jacfwd(window)(y[:3]) @ c[:3, :3] + w[:, None] * mu[None, :3]
        return t_bias, curv, grad

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None)))


def weak_form_moments(x: np.ndarray, v: np.ndarray, center: np.ndarray, radius: float, degree_x: int = 2,
                      degree_v: int = 1, velocity_covariance: np.ndarray | None = None, window_power: int = 2
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per star, the parts of every test function ψ_m = W_a(x) Q_c(v) (m = a·n_c + c).

    Args:
        x: positions (N, 3) [kpc]; v: velocities (N, 3) [km/s] (Galactocentric, an inertial frame).
        center: the ball's centre (3,) [kpc]; radius: its radius [kpc].
        degree_x: highest total degree of the spatial monomials ξ^p (≥ 0).
        degree_v: highest total degree of the velocity monomials (≥ 1; degree 0 carries no information on a).
        velocity_covariance: None, or each star's Gaussian velocity-error covariance (N, 3, 3) [(km/s)²]: the
            transport term's expected excess over the error-free one, (∇W_a)_i ½ tr(C ∇ᵥ²(v_i Q_c)), is
            subtracted, so that its average over the errors is the error-free term (exact for degree_v ≤ 2;
            the acceleration term, linear in v there, needs none). Position errors are corrected by
            :func:`weak_form_data` (``position_errors``), not here.
        window_power: k of the window (1 − ρ²)^k (≥ 2; k = 1 would also vanish on the surface, which is all the
            integration by parts needs, but it is not offered).

    Returns:
        (transport, window, dq_v): v·∇ₓψ_m [km/s/kpc] (N, M); the spatial factors W_a (N, n_a); the velocity
        factors' gradients ∂Q_c/∂v [s/km] (N, n_c, 3), so that ∇ᵥψ_m = W_a ∂Q_c/∂v. ``transport`` and ``window``
        vanish outside the ball (so ψ and its gradients do).
    """
    x = np.asarray(x, float)
    v = np.asarray(v, float)
    if x.ndim != 2 or x.shape[1] != 3 or v.shape != x.shape:
        raise ValueError(f"x and v must both have shape (N, 3) [kpc, km/s], got {x.shape} and {v.shape}")
    if not (np.isfinite(x).all() and np.isfinite(v).all()):
        raise ValueError("x and v must be finite: remove the stars with NaN or inf positions or velocities first")
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive length [kpc], got {radius}")
    if int(degree_x) != degree_x or degree_x < 0 or int(degree_v) != degree_v or degree_v < 1:
        raise ValueError(f"degree_x must be an integer ≥ 0 and degree_v an integer ≥ 1 (degree 0 carries no "
                         f"information on a), got {degree_x} and {degree_v}")
    if velocity_covariance is not None and np.shape(velocity_covariance) != (len(x), 3, 3):
        raise ValueError(f"velocity_covariance must have shape (N, 3, 3) = ({len(x)}, 3, 3) [(km/s)²], got "
                         f"{np.shape(velocity_covariance)}")
    xi = (x - np.asarray(center, float)) / radius
    rho2 = np.sum(xi * xi, axis=1)
    inside = rho2 < 1.0
    k = int(window_power)
    if k != window_power or k < 2:
        raise ValueError(f"window_power must be an integer ≥ 2 (the window's gradient must vanish on the ball's "
                         f"surface), got {window_power}")
    ball = np.where(inside, (1.0 - rho2) ** k, 0.0)
    d_ball = np.where(inside, -2.0 * k * (1.0 - rho2) ** (k - 1), 0.0)[:, None] * xi  # ∂(1 − ρ²)^k/∂ξ
    P, dP = _monomials(xi, _powers(degree_x, 0))
    Q, dQ = _monomials(v / VELOCITY_UNIT, _powers(degree_v, 1))
    window = ball[:, None] * P  # W_a (N, n_a)
    d_window = (d_ball[:, None, :] * P[:, :, None] + ball[:, None, None] * dP) / radius  # ∂W_a/∂x [1/kpc]
    transport = np.einsum("ni,nai->na", v, d_window)[:, :, None] * Q[:, None, :]  # (v·∇W_a) Q_c
    if velocity_covariance is not None:
        if degree_v > 2:
            raise ValueError(f"velocity errors are corrected for degree_v ≤ 2 only, got degree_v={degree_v}: lower "
                             "degree_v, or drop the velocity errors")
        transport = transport - np.einsum("nai,nic->nac", d_window,
                                          _error_bias(v, velocity_covariance, _powers(degree_v, 1)))
    return transport.reshape(len(x), -1), window, dQ / VELOCITY_UNIT


def _recorded_spheres(catalog: Any) -> tuple[list[tuple[np.ndarray, float, str]], list[str],
                                             list[tuple[np.ndarray, float, str]]]:
    """The spheres recorded with a catalog inside which it holds every star (a ``within`` cut with no later cut,
    a mock's sphere), as (centre [kpc], radius [kpc], description), why the other recorded ones do not count, and
    every recorded sphere whatever came after it: the catalog holds no star outside any of them (bounds)."""
    meta = getattr(catalog, "meta", None) or {}
    history = list(getattr(catalog, "history", []) or [])
    candidates, reasons, bounds = [], [], []
    for s in meta.get("support_spheres", []) or []:
        later = history[int(s.get("cuts", len(history))):]
        where = f"the recorded sphere (centre {s['center_kpc']} kpc, radius {s['radius_kpc']:g} kpc)"
        sphere = (np.asarray(s["center_kpc"], float), float(s["radius_kpc"]), where)
        bounds.append(sphere)
        if not s.get("alone", False):
            reasons.append(f"{where} was cut together with other shapes (or recorded by an older bayesdyn)")
        elif later:
            reasons.append(f"later cuts removed stars inside {where}: " + "; ".join(c.reason for c in later))
        else:
            candidates.append(sphere)
    params = ((meta.get("truth") or {}).get("params") or {}) if isinstance(meta, dict) else {}
    if "sphere_center_kpc" in params and "sphere_radius_kpc" in params:
        sphere = (np.asarray(params["sphere_center_kpc"], float), float(params["sphere_radius_kpc"]),
                  "the mock's sphere")
        bounds.append(sphere)
        if not history:
            candidates.append(sphere)
        else:  # (the refusal had said that no sphere was recorded)
            reasons.append(f"later cuts removed stars inside the mock's sphere (centre {params['sphere_center_kpc']} "
                           f"kpc, radius {float(params['sphere_radius_kpc']):g} kpc): "
                           + "; ".join(c.reason for c in history))
    return candidates, reasons, bounds


def _ball(catalog: Any, x: np.ndarray, volume: Any) -> tuple[np.ndarray, float, str]:
    """The ball (centre [kpc], radius [kpc], where it came from) of :func:`weak_form_data`."""
    candidates, reasons, bounds = _recorded_spheres(catalog)
    if isinstance(volume, str):
        if volume != "auto":
            raise ValueError(f"volume={volume!r}: pass 'auto' or (center [kpc] (3,), radius [kpc])")
        best = None
        for c, r, where in candidates:
            d = float(np.linalg.norm(x - c, axis=1).max())
            if d <= r * (1 + 1e-6) and (best is None or r < best[1]):
                best = (c, r, f"auto: {where}")
        if best is None and reasons:
            raise ValueError(
                "weak_form_data needs a ball inside which the catalog holds every star of the population, and no "
                "recorded one qualifies: " + " | ".join(reasons) + ". If those cuts do not depend on position or "
                "velocity (a random subsample), pass volume=(center [kpc], radius [kpc]) explicitly; if they are a "
                "selection by position whose efficiency ε(x) you know (e.g. mocks.apply_dust), pass it too, as "
                "efficiency=")
        if best is None:
            raise ValueError(
                "weak_form_data needs a ball inside which the catalog holds every star of the population, and "
                "none is recorded with this catalog: cut it with catalog.within(radius, center) (which records "
                "the sphere), or pass volume=(center [kpc], radius [kpc]) of a ball where it is complete"
            )
        return best
    from ..psd._fit import sphere_argument

    c, r = sphere_argument(volume, "volume", "'auto'")
    # every recorded sphere bounds the catalog, also one that later cuts (a subsample, apply_dust) left incomplete:
    # only the spheres still complete were checked, so after any later cut a ball beyond the sphere passed (a
    # Plummer sphere cut at 1.5 kpc, then a random 70 %: a 2-kpc ball gave a mass +8.5 % (6.6σ), J passing)
    beyond = [w for cc, rr, w in bounds if np.linalg.norm(np.asarray(c, float) - cc) + r > rr * (1 + 1e-6)]
    if beyond:  # the ball reaches where the catalog was cut: it is not complete there
        raise ValueError(
            f"volume=(centre {np.asarray(c, float).tolist()} kpc, radius {r:g} kpc) reaches beyond "
            + " and ".join(beyond) + ", outside which the catalog holds no star: the moments "
            "would count the missing stars as absent (a Plummer sphere cut at 1.5 kpc and fitted in a 2-kpc ball "
            "gave a mass 11 % high with a passing J test). Pass a ball inside it, or volume='auto' (in a run configuration: weak_form.volume = [])")
    return c, r, "given"


def _efficiency_weights(efficiency: Any, x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """1/ε at the stars inside the ball, checked: ε given per star of the catalog, or as a function of x [kpc]."""
    if callable(getattr(efficiency, "efficiency", None)):  # mocks.DustModel, neural efficiencies
        efficiency = efficiency.efficiency
    if callable(efficiency):
        eps = np.asarray(efficiency(x[inside]), dtype=float)
        what = "efficiency(x) at the stars inside the ball"
        if eps.shape != (int(inside.sum()),):
            raise ValueError(f"efficiency(x) must return one value per row of x, shape ({int(inside.sum())},) for x "
                             f"of shape {x[inside].shape} [kpc]; got shape {eps.shape}")
    else:
        eps = np.asarray(efficiency, dtype=float)
        if eps.shape != (len(x),):
            raise ValueError(f"efficiency must be a function ε(x) of positions (N, 3) [kpc], an object with an "
                             f".efficiency(x) method, or one value per star of the catalog, shape ({len(x)},); got "
                             f"an array of shape {eps.shape}")
        eps = eps[inside]
        what = "the efficiencies of the stars inside the ball"
    bad = ~(np.isfinite(eps) & (eps > 0))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {eps.size} of {what} are not finite and > 0 (e.g. {eps[bad][:3]}): a "
                         "star seen where the efficiency is 0 contradicts it; fix the efficiency model, or shrink the "
                         "ball to where it is positive")
    return 1.0 / eps


def _inverse_efficiency(point: Any, eps: Any, norm: float) -> Any:
    """The normalised weight 1/(norm ε) at one position (3,) [kpc], for ε a JAX function of positions (N, 3)."""
    import jax.numpy as jnp

    return 1.0 / (norm * jnp.reshape(eps(point[None]), ()))


def _check_pointwise(weight: Any, x: np.ndarray, w: np.ndarray) -> None:
    """That the correction's ε, evaluated one position at a time, gives the weights w (n_in,) computed from the whole
    batch x (n_in, 3) [kpc], and that JAX can trace it (its derivatives enter the correction)."""
    import jax
    import jax.numpy as jnp

    tracer_errors = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                     jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)
    try:
        one = np.asarray(jax.jit(jax.vmap(weight))(jnp.asarray(x)))
    except tracer_errors as err:  # a NumPy ε
        raise ValueError("position_errors with efficiency=: ε must be a JAX function of positions (jnp, "
                         "differentiable), since its derivatives enter the correction; tracing it failed") from err
    if not np.allclose(one, w, rtol=1e-5, atol=0.0):
        raise ValueError("position_errors with efficiency=: ε(x) of the stars one at a time differs from ε of all of "
                         "them together (e.g. normalised by the batch's maximum); ε must be a function of each "
                         "position alone, up to a fixed constant factor")


def _velocity_covariance(catalog: Any, velocity_errors: Any, n: int, inside: np.ndarray) -> np.ndarray:
    """The velocity-error covariances (n_in, 3, 3) [(km/s)²] of the stars inside the ball, from
    ``weak_form_data``'s argument (one entry per star of the catalog), checked there."""
    if isinstance(velocity_errors, str):
        if velocity_errors != "catalog":
            raise ValueError(f"velocity_errors={velocity_errors!r}: pass None, 'catalog', per-star σ (N, 3) [km/s] "
                             "or covariances (N, 3, 3) [(km/s)²]")
        try:  # the stars in the ball only, as for position_errors='catalog' (it propagated the whole catalog's)
            sub = catalog.select(inside, "inside the weak form's ball") if hasattr(catalog, "select") else catalog
            cov = np.asarray(sub.covariance(), float)[:, 3:, 3:]
        except Exception as err:  # CatalogError: no Gaia observables or error columns
            raise ValueError(f"velocity_errors='catalog' needs the catalog's Gaia errors: {err}") from None
        return _checked_covariance(cov if len(cov) == int(inside.sum()) else cov[inside], "velocity-error")
    cov = _per_axis_covariance(velocity_errors, n, inside, "velocity_errors", "km/s")
    if cov.shape != (n, 3, 3):
        raise ValueError(f"velocity_errors must be per-star σ (N, 3) [km/s] or covariances (N, 3, 3) [(km/s)²] for "
                         f"the catalog's {n} stars; got shape {cov.shape}")
    return _checked_covariance(cov[inside], "velocity-error")


def _per_axis_covariance(value: Any, n: int, inside: np.ndarray, name: str, unit: str) -> np.ndarray:
    """``value`` as an array; per-star σ (n, 3) [unit] (checked ≥ 0 in the ball) become diagonal covariances. A
    Quantity is converted: σ to ``unit``, covariances (n, 3, 3) to ``unit``² (np.asarray had dropped the unit: 10 000
    m/s read as 10 000 km/s, and 10 kpc as 10 km/s)."""
    kind = {"kpc": "length", "km/s": "velocity"}[unit]
    value = _u.strip(value, kind, name) if np.shape(value) == (n, 3) else _u.strip_squared(value, kind, name)
    cov = np.asarray(value, float)
    if cov.shape == (n, 3):
        if not (cov[inside] >= 0).all():
            raise ValueError(f"{name}: per-star σ must be ≥ 0 [{unit}]; some are negative or NaN")
        cov = cov[:, :, None] ** 2 * np.eye(3)
    return cov


def _checked_covariance(cov: np.ndarray, what: str) -> np.ndarray:
    """``cov`` (n, k, k), the stars in the ball's error covariances, after checking them."""
    ok = np.isfinite(cov).all(axis=(1, 2))
    c = np.where(ok[:, None, None], cov, 0.0)
    ok &= np.isclose(c, np.swapaxes(c, 1, 2), rtol=1e-6, atol=1e-9).all(axis=(1, 2))
    ok &= np.linalg.eigvalsh(c).min(axis=1) >= -1e-9 * np.abs(c).max(axis=(1, 2))
    if not ok.all():
        raise ValueError(f"{int((~ok).sum())} of the {len(cov)} stars in the ball have {what} covariances "
                         "that are not finite, symmetric and positive semi-definite; fix or remove those stars")
    return cov


def _phase_space_covariance(catalog: Any, position_errors: Any, velocity_errors: Any, n: int,
                            inside: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The 6 × 6 error covariances of (x [kpc], v [km/s]) of the stars inside the ball (n_in, 6, 6), from
    ``weak_form_data``'s ``position_errors`` and ``velocity_errors`` (one entry per star of the catalog), and the
    errors' mean (n_in, 6) where it comes with them (``"catalog"``: :meth:`~bayesdyn.Catalog.error_mean`), else
    None."""
    if isinstance(position_errors, str):
        if position_errors != "catalog":
            raise ValueError(f"position_errors={position_errors!r}: pass None, 'catalog', per-star σ (N, 3) [kpc], "
                             "covariances (N, 3, 3) [kpc²] or phase-space covariances (N, 6, 6) [kpc, km/s]")
        if not (velocity_errors is None or (isinstance(velocity_errors, str) and velocity_errors == "catalog")):
            raise ValueError("position_errors='catalog' takes the catalog's whole 6 × 6 covariance, velocities "
                             "included (with the correlation that a parallax error puts between distance and "
                             "tangential velocity): leave velocity_errors None or 'catalog', or give both errors "
                             "as arrays")
        try:  # the stars in the ball only (a Catalog's select; memory and time scale with the stars)
            sub = catalog.select(inside, "inside the weak form's ball") if hasattr(catalog, "select") else catalog
            cov = np.asarray(sub.covariance(), float)
            mean = np.asarray(sub.error_mean(), float)
        except Exception as err:  # CatalogError: no Gaia observables or error columns
            raise ValueError(f"position_errors='catalog' needs the catalog's Gaia errors: {err}") from None
        if len(cov) != int(inside.sum()):
            cov, mean = cov[inside], mean[inside]
        return _checked_covariance(cov, "phase-space error"), mean
    cxx = _per_axis_covariance(position_errors, n, inside, "position_errors", "kpc")
    if cxx.shape == (n, 6, 6):  # the whole (x, v) covariance, as Catalog.covariance() gives it
        if velocity_errors is not None:
            raise ValueError("position_errors (N, 6, 6) is the whole phase-space covariance, velocities included: "
                             "leave velocity_errors None")
        return _checked_covariance(cxx[inside], "phase-space error"), None
    if cxx.shape != (n, 3, 3):
        raise ValueError(f"position_errors must be per-star σ (N, 3) [kpc], covariances (N, 3, 3) [kpc²] or "
                         f"phase-space covariances (N, 6, 6) [kpc, km/s] for the catalog's {n} stars; got shape "
                         f"{cxx.shape}")
    cov = np.zeros((int(inside.sum()), 6, 6))
    cov[:, :3, :3] = _checked_covariance(cxx[inside], "position-error")
    if velocity_errors is not None:
        cov[:, 3:, 3:] = _velocity_covariance(catalog, velocity_errors, n, inside)
    return cov, None


def _error_mean(error_mean: Any, n: int, inside: np.ndarray) -> np.ndarray:
    """``weak_form_data``'s ``error_mean`` (N, 6) [kpc, km/s], checked, for the stars inside the ball."""
    if getattr(error_mean, "unit", None) is not None:  # its columns mix kpc and km/s: one unit cannot hold them
        raise _u.UnitError(f"error_mean was given as a Quantity in {error_mean.unit}; pass bare numbers, the first "
                           "three columns in kpc and the last three in km/s (Catalog.error_mean() gives them so)")
    mean = np.asarray(error_mean, float)
    if mean.shape != (n, 6):
        raise ValueError(f"error_mean must be each star's mean error of (x [kpc], v [km/s]), shape ({n}, 6) for the "
                         f"catalog's {n} stars; got shape {mean.shape}")
    bad = ~np.isfinite(mean[inside]).all(axis=1)
    if bad.any():
        raise ValueError(f"error_mean is not finite for {int(bad.sum())} of the {int(inside.sum())} stars in the "
                         "ball; fix or remove those stars")
    return mean[inside]


def weak_form_data(catalog: Any, *, volume: Any = "auto", efficiency: Any = None, velocity_errors: Any = None,
                   position_errors: Any = None, error_mean: Any = None, degree_x: int = 2, degree_v: int = 1,
                   min_stars: int = 1000, window_power: int | None = None):
    """The stars' weak-form CBE moments, for :func:`bayesdyn.infer` with a :class:`~bayesdyn.PotentialModel`.

    No flow is fitted: the moments E[v·∇ₓψ_m + a(x)·∇ᵥψ_m] = 0 (module docstring) are averages over the
    stars, and :func:`bayesdyn.infer` fits the model's parameters to them by two-step GMM (weights from the
    moments' covariance at the model's mode, then NUTS on the quadratic form), reporting the
    over-identification test in ``posterior.info["weak_form"]``.

    It assumes what the CBE assumes (a steady state in an inertial frame: use Galactocentric velocities), and
    that inside the ball the catalog is **complete**: every star of the tracer population there is in it, or a
    random subsample of them, with no selection by position inside the ball (dust, magnitude limits) or by
    velocity. A selection inside the ball biases the moments (the J test may or may not flag it), unless it is
    a selection by position only with a known efficiency ε(x) (dust with a known extinction map, a selection
    function), passed as ``efficiency``: each star's moments are then weighted by 1/ε(x), which makes them
    averages over the complete population again (the observed stars sample ε(x) f(x, v)). Stars outside
    the ball are not used (their test functions are 0); ``volume="auto"`` takes a sphere only when it was the
    catalog's last cut and its only shape. Velocity errors bias the moments (by E[C_v ∇W]/v₀ for velocity
    degree 1), of relative size (σ_err/σ_v)²; ``velocity_errors`` removes that bias (exactly, for Gaussian
    errors). Position errors bias them by about (σ_x/L)² for structure on scales L (the disk's scale height);
    ``position_errors`` removes that to second order in the errors, with the correlation that Gaia's parallax
    errors put between distance and tangential velocity when the catalog's covariance is given
    (docs/weak-form.md).

    Args:
        catalog: a :class:`bayesdyn.Catalog` (or anything with ``x`` (N, 3) [kpc] and ``v`` (N, 3) [km/s]).
        volume: ``"auto"`` (the sphere recorded with the catalog by ``Catalog.within`` / ``in_volume`` or by
            a mock, which must hold all its stars and be followed by no other cut) or (centre (3,) [kpc],
            radius [kpc]) of a ball inside which the catalog is complete (up to ``efficiency``).
        efficiency: None (complete), or the detection probability ε(x) of a star at x, up to a constant
            factor: a function of positions (N, 3) [kpc] returning (N,) values, an object with an
            ``efficiency(x)`` method (e.g. :class:`bayesdyn.mocks.DustModel`), or an array with one value per
            star of the catalog. It must be > 0 at every star in the ball; where ε is small the few stars seen
            there carry large weights, and the moments' covariance (estimated from the weighted moments)
            widens the errors accordingly (and too small an effective number of stars is an error). Those
            weights also enlarge two-step GMM's small-sample bias (the weights come from the same stars): a
            review measured the fitted Plummer mass pulled by −0.33 ± 0.02 of its σ against fixed weights with
            clouds of depth 0.9 and ≈ 9000 stars in the ball (−0.12 without dust, −0.18 with 4× the stars,
            −0.40 at depth 0.98); docs/weak-form.md, Limits. Velocity-dependent selections cannot be corrected
            this way. A catalog dusted twice
            (``mocks.apply_dust`` on a dusted catalog) has the product of both efficiencies. With
            ``position_errors`` ε must be a JAX function of positions (or an object with a JAX ``efficiency``
            method, as :class:`~bayesdyn.mocks.DustModel`), of each position alone and smooth (two continuous
            derivatives on the scale of the position errors; a map interpolated on a grid is not): the weights
            are evaluated at the observed positions, so the correction is that of the product w(x) h(x, v), whose
            derivatives include ε's, and its remainder grows as (σ_x/ℓ)⁴ for ℓ the scale on which 1/ε changes.
            The selection must act on the true positions (dust, a selection function of where a star is), not
            on the observed ones.
        velocity_errors: None (error-free velocities), ``"catalog"`` (the velocity block of
            ``catalog.covariance()``, from its Gaia error columns), per-star σ (N, 3) [km/s] (independent
            components) or covariances (N, 3, 3) [(km/s)²], one per star of the catalog: each star's expected
            error bias is subtracted from its moments (``degree_v`` ≤ 2).
        position_errors: None (error-free positions), ``"catalog"`` (the whole 6 × 6 ``catalog.covariance()``
            from its Gaia error columns: positions, velocities and their correlations; ``velocity_errors`` must
            then be None or ``"catalog"``), per-star σ (N, 3) [kpc], covariances (N, 3, 3) [kpc²] (combined
            with ``velocity_errors``, uncorrelated), or phase-space covariances (N, 6, 6) of (x [kpc],
            v [km/s]) (``velocity_errors`` None). Each star's moments h are replaced by h − μ·∇h − ½ tr(C ∇²h)
            at its observed point (μ: ``error_mean``), whose average over the errors is the error-free h up to
            terms of third order in them (and, for the moments' acceleration term, the model's first and second
            derivatives enter: :meth:`~bayesdyn.inference.WeakFormData.field`). Needs ``degree_v`` = 1.
            Exact-Plummer tests and the disk mock's figures are in docs/weak-form.md.
        error_mean: with ``position_errors``, the mean μ of each star's error of (x, v), (N, 6) [kpc, km/s]: the
            observed point minus the true one, on average. None: ``catalog.error_mean()`` with
            ``position_errors="catalog"`` (Gaussian parallax errors make 1/ϖ distances long on average, by
            d (σ_ϖ/ϖ)², an effect of the same order as C's), else 0 (errors with zero mean in x and v).
        degree_x: highest degree of the spatial monomials (default 2: 10 of them).
        degree_v: highest degree of the velocity monomials (default 1: v_x, v_y, v_z), so M = 30 moments
            by default.
        min_stars: fewer stars in the ball than this is an error (the moments' covariance, M × M, is
            estimated from them).
        window_power: k of the test functions' window (1 − ρ²)^k; None: 2, or 3 with ``position_errors`` (whose
            correction needs a window with continuous second derivatives on the ball's surface). Fits with
            different windows weigh the stars differently, so compare like with like.

    Returns:
        :class:`bayesdyn.inference.WeakFormData` (unweighted: :func:`bayesdyn.infer` sets the weights).

    Raises:
        ValueError: no ball (or a recorded one that later cuts made incomplete), a ball with too few stars, bad
            degrees, non-finite positions or velocities, an efficiency that is not positive and finite at
            every star in the ball, or bad velocity or position errors.
    """
    import jax.numpy as jnp

    from ..inference._data import WeakFormData

    if int(degree_x) != degree_x or degree_x < 0 or int(degree_v) != degree_v or degree_v < 1:
        raise ValueError(f"degree_x must be an integer ≥ 0 and degree_v an integer ≥ 1, got {degree_x}, {degree_v}")
    from .. import units as _u

    x = np.asarray(_u.strip(catalog.x, "length", "catalog.x"), float)  # a Quantity in pc is converted
    v = np.asarray(_u.strip(catalog.v, "velocity", "catalog.v"), float)
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(v).all(axis=1))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {len(x)} stars have non-finite positions or velocities; remove them (e.g. "
            "catalog.select(...)) or fill them before the weak-form fit"
        )
    center, radius, where = _ball(catalog, x, volume)
    inside = np.linalg.norm(x - center, axis=1) < radius
    n = int(inside.sum())
    m = len(_powers(int(degree_x), 0)) * len(_powers(int(degree_v), 1))
    if n < max(int(min_stars), 10 * m):
        raise ValueError(
            f"only {n} stars lie inside the ball (centre {center.tolist()} kpc, radius {radius:g} kpc) for "
            f"{m} moments; the weak form needs at least max(min_stars={min_stars}, 10 × moments) = "
            f"{max(int(min_stars), 10 * m)}: use a larger ball, more stars, or lower degrees"
        )
    extra = {}
    power = (2 if position_errors is None else 3) if window_power is None else window_power
    if position_errors is None and error_mean is not None:
        raise ValueError("error_mean is the mean of the position and velocity errors that position_errors "
                         "corrects: give position_errors too (zeros if the positions are exact)")
    w = None
    if efficiency is not None:  # g_i → g_i / ε(x_i): both parts of every moment are linear in W_a(x_i)
        w = _efficiency_weights(efficiency, x, inside)
        norm = float(w.mean())
        w = w / norm
        n_eff = float(w.sum() ** 2 / np.sum(w**2))
        if n_eff < max(int(min_stars), 10 * m):
            raise ValueError(
                f"the 1/ε weights leave an effective {n_eff:.0f} of the {n} stars in the ball ((Σw)²/Σw²), fewer "
                f"than max(min_stars={min_stars}, 10 × moments) = {max(int(min_stars), 10 * m)}: the moments' "
                "covariance would be unreliable; shrink the ball to where ε is not small, or lower the degrees")
    if position_errors is None:
        cov = None if velocity_errors is None else _velocity_covariance(catalog, velocity_errors, len(x), inside)
        transport, window, dq_v = weak_form_moments(x[inside], v[inside], center, radius, int(degree_x),
                                                    int(degree_v), velocity_covariance=cov, window_power=power)
        if w is not None:
            transport, window = transport * w[:, None], window * w[:, None]
    else:
        if int(degree_v) != 1:
            raise ValueError(f"position errors are corrected for degree_v = 1 only, got degree_v={degree_v}: use "
                             "degree_v=1, or drop the position errors")
        if power < 3:
            raise ValueError(f"position errors need window_power ≥ 3 (a window with continuous second derivatives: "
                             f"with {power} the correction misses a term on the ball's surface), got {power}; "
                             "leave window_power None")
        weight = None
        if efficiency is not None:  # the moments are w(x) h(x, v): the correction differentiates w = 1/ε too
            eps = efficiency.efficiency if callable(getattr(efficiency, "efficiency", None)) else efficiency
            if not callable(eps):
                raise ValueError("position_errors with efficiency= needs ε as a JAX function of positions (or an "
                                 "object with an .efficiency(x) method, e.g. mocks.DustModel): its derivatives at "
                                 "each star enter the correction, which per-star values do not give")
            weight = functools.partial(_inverse_efficiency, eps=eps, norm=norm)
        cov, mean = _phase_space_covariance(catalog, position_errors, velocity_errors, len(x), inside)
        if error_mean is not None:
            mean = _error_mean(error_mean, len(x), inside)
        transport, window, dq_v = weak_form_moments(x[inside], v[inside], center, radius, int(degree_x), 1,
                                                    window_power=power)
        if w is not None:
            transport, window = transport * w[:, None], window * w[:, None]
        if weight is not None:
            _check_pointwise(weight, x[inside], w)
        bias, curvature, gradient = _position_error_terms(x[inside], v[inside], cov, center, radius,
                                                          int(degree_x), 1, power, mean=mean, weight=weight)
        bad = ~(np.isfinite(bias).all(axis=1) & np.isfinite(curvature).all(axis=1)
                & np.isfinite(gradient).all(axis=(1, 2)))
        if bad.any():
            raise ValueError(f"the position-error correction is not finite for {int(bad.sum())} of the {n} stars in "
                             "the ball" + (" (ε's derivatives there: ε must be smooth, e.g. no |x − c| at a star)"
                                           if weight is not None else "") + "; fix or remove those stars")
        transport = transport - bias
        extra = dict(position_covariance=cov[:, :3, :3], window_curvature=curvature, window_gradient=gradient)
    from ..inference._data import DEFAULT_SUN

    sun = getattr(getattr(catalog, "solar", None), "position", None)
    sun = np.asarray(sun if sun is not None else DEFAULT_SUN, float)
    scale = transport.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return WeakFormData(
        x=jnp.asarray(x[inside]), transport=jnp.asarray(transport), window=jnp.asarray(window),
        dq_v=jnp.asarray(dq_v), whiten=jnp.asarray(np.diag(1.0 / scale)), sun=jnp.asarray(sun),
        ball=jnp.asarray(np.concatenate([center, [radius]])), **{k: jnp.asarray(a) for k, a in extra.items()},
    )

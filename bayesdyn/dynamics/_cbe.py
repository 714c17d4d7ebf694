"""The equilibrium collisionless Boltzmann equation in terms of scores.

With s_x = ∂log f/∂x and s_v = ∂log f/∂v the CBE reads v·s_x + a(x)·s_v = 0
(DESIGN §3). All functions here are pure JAX on plain arrays in internal units:
positions kpc, velocities km/s, scores 1/kpc and s/km, accelerations (km/s)²/kpc.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

#: bump when lstsq_acceleration's output changes (benchmarks key their cached posteriors on it); 2: HC3 covariance
ESTIMATOR_VERSION = 2

__all__ = [
    "cbe_residuals",
    "lstsq_acceleration",
    "LstsqAcceleration",
    "disequilibrium",
]


class LstsqAcceleration(NamedTuple):
    """Per-position least-squares acceleration.

    Attributes:
        a: acceleration, (..., 3) [(km/s)²/kpc].
        cov: its heteroscedasticity-consistent (HC3 sandwich) covariance from the
            scatter of the CBE residuals over the velocities, each divided by 1 − its
            draw's leverage, (..., 3, 3)
            [((km/s)²/kpc)²]. It measures only the noise that is independent
            between velocities, not a flow's correlated error (see the ensemble).
        rms_residual: root-mean-square CBE residual after the fit, (...,) [km/s/kpc].
    """

    a: jax.Array
    cov: jax.Array
    rms_residual: jax.Array


def _plain(what: str, **arrays) -> None:
    """Refuse astropy Quantities: these primitives take internal units, and ``jnp.asarray`` drops a unit silently
    (an acceleration in km/s/Myr was read as (km/s)²/kpc, 978× too small)."""
    given = [k for k, a in arrays.items() if getattr(a, "unit", None) is not None]
    if given:
        from ..units import UnitError

        raise UnitError(
            f"{what}: {given} carry units, which would be dropped; it takes plain arrays in internal units (v km/s, "
            "s_x 1/kpc, s_v s/km, a (km/s)²/kpc). Fix: convert first, e.g. bd.units.strip(a, 'acceleration') "
            "or q.to_value(1 / u.kpc)"
        )


def cbe_residuals(v: jax.Array, s_x: jax.Array, s_v: jax.Array, a: jax.Array) -> jax.Array:
    """CBE residuals r = v·s_x + a·s_v, zero for an equilibrium f in the potential with a = −∇Φ.

    Args:
        v: velocities, (..., 3) [km/s].
        s_x: ∂log f/∂x at (x, v), (..., 3) [1/kpc].
        s_v: ∂log f/∂v at (x, v), (..., 3) [s/km].
        a: acceleration at x, broadcastable to (..., 3) [(km/s)²/kpc].

    Returns:
        residuals, (...,) [km/s/kpc] (i.e. 1/time in internal units).

    Raises:
        UnitError: an argument is an astropy Quantity (convert to internal units first).
    """
    _plain("cbe_residuals", v=v, s_x=s_x, s_v=s_v, a=a)
    return jnp.sum(v * s_x, axis=-1) + jnp.sum(a * s_v, axis=-1)


def _lstsq_one(v, s_x, s_v, ridge):
    # S_v a = −(v·s_x): M equations, 3 unknowns.
    b = -jnp.sum(v * s_x, axis=-1)
    ata = s_v.T @ s_v
    scale = jnp.trace(ata) / 3.0
    ata_r = ata + ridge * scale * jnp.eye(3, dtype=ata.dtype)
    a = jnp.linalg.solve(ata_r, s_v.T @ b)
    r = b - s_v @ a
    m = jnp.sum(jnp.any(s_v != 0, axis=-1))  # rows zeroed by the caller (non-finite draws) do not count
    # heteroscedasticity-consistent (HC3 sandwich) covariance: score errors enter through v·s_x, whose variance
    # grows with |v|, so the plain σ²(AᵀA)⁻¹ underestimates; each residual is divided by 1 − h, its draw's leverage
    # h = s_vᵀ(AᵀA)⁻¹s_v, because the fit pulls toward the few fast draws whose large ∂f/∂v carry much of it (up to
    # 22–48 % of the weight near a Plummer sphere's escape speed). HC1's m/(m − 3) did not: χ² of the errors 3.41
    # for 3 (7.6 % beyond the 95 % cut) at 512 draws with iid score noise, against HC3's 3.19 (6.5 %), at one node;
    # the figures depend on the node (another review, another node: 3.44, 8.6 %; there the stated variance was
    # 0.88–0.91 of the empirical one on average).
    inv = jnp.linalg.inv(ata_r)
    h = jnp.einsum("mi,ij,mj->m", s_v, inv, s_v)
    r3 = r / jnp.maximum(1.0 - h, 1e-2)  # h < 1 in exact arithmetic; the floor keeps a lone direction finite
    meat = (s_v * (r3**2)[:, None]).T @ s_v
    cov = inv @ meat @ inv
    return LstsqAcceleration(a, cov, jnp.sqrt(jnp.sum(r**2) / jnp.maximum(m, 1)))


def lstsq_acceleration(v: jax.Array, s_x: jax.Array, s_v: jax.Array, ridge: float = 0.0) -> LstsqAcceleration:
    """Acceleration at each position by least squares over velocities (DESIGN §3).

    a(x) = −(S_vᵀ S_v)⁻¹ S_vᵀ (v·s_x), a 3×3 solve per position, vectorised over
    any leading axes.

    Args:
        v: velocities at each position, (..., M, 3) [km/s]; M ≥ 4 (in practice
            hundreds drawn from p(v|x)).
        s_x: ∂log f/∂x at those points, (..., M, 3) [1/kpc].
        s_v: ∂log f/∂v at those points, (..., M, 3) [s/km].
        ridge: optional Tikhonov regularisation, relative to the mean eigenvalue
            of S_vᵀS_v (0 = plain least squares).

    Returns:
        :class:`LstsqAcceleration` with leading shape (...).

    Raises:
        UnitError: an argument is an astropy Quantity (convert to internal units first).
    """
    _plain("lstsq_acceleration", v=v, s_x=s_x, s_v=s_v)
    if np.shape(v)[-2:-1] and np.shape(v)[-2] < 4:  # (3 draws fit exactly: a covariance of ~1e-22, no warning)
        raise ValueError(f"lstsq_acceleration needs M ≥ 4 velocities per position (three unknowns and a residual); "
                         f"got v of shape {tuple(np.shape(v))}. Draw hundreds from p(v|x)")
    return _lstsq_acceleration(v, s_x, s_v, ridge)


@jax.jit
def _lstsq_acceleration(v, s_x, s_v, ridge):
    v, s_x, s_v = jnp.broadcast_arrays(jnp.asarray(v), jnp.asarray(s_x), jnp.asarray(s_v))
    if v.ndim < 2 or v.shape[-1] != 3:
        raise ValueError(f"v, s_x, s_v must have shape (..., M, 3); got {v.shape}")
    lead = v.shape[:-2]
    m = v.shape[-2]
    flat = lambda t: t.reshape((-1, m, 3))  # noqa: E731
    out = jax.vmap(_lstsq_one, in_axes=(0, 0, 0, None))(flat(v), flat(s_x), flat(s_v), ridge)
    return LstsqAcceleration(
        out.a.reshape(lead + (3,)), out.cov.reshape(lead + (3, 3)), out.rms_residual.reshape(lead)
    )


def disequilibrium(v: jax.Array, s_x: jax.Array, s_v: jax.Array, a: jax.Array) -> jax.Array:
    """∂log f/∂t = −(v·s_x + a·s_v) given an independent acceleration field.

    Zero in equilibrium; its spread over stars diagnoses departures from it.

    Args:
        v: velocities, (..., 3) [km/s].
        s_x: ∂log f/∂x, (..., 3) [1/kpc].
        s_v: ∂log f/∂v, (..., 3) [s/km].
        a: acceleration at x, (..., 3) [(km/s)²/kpc].

    Returns:
        ∂log f/∂t, (...,) [km/s/kpc] (1 km/s/kpc ≈ 1.0227 /Gyr).

    Raises:
        UnitError: an argument is an astropy Quantity (convert to internal units first).
    """
    _plain("disequilibrium", v=v, s_x=s_x, s_v=s_v, a=a)
    return -cbe_residuals(v, s_x, s_v, a)

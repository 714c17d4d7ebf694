"""Fixed input transforms of the phase-space density (part of the model).

Positions are centred and scaled per axis, then mapped radially with
``z → z · s·asinh(|z|/s)/|z|`` so that heavy spatial tails (Plummer: ρ ∝ r⁻⁵) become
light; velocities are centred and scaled per axis. The transforms are bijections
whose log-Jacobians enter log f, so log f and its scores are exact derivatives of
the full density in physical units.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = ["Preprocessing", "robust_loc_scale", "radial_map", "radial_unmap"]

_SMALL = 1e-4  # |z|² below which the series expansions are used


def robust_loc_scale(a: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Median and a robust per-axis scale (1.4826 × median absolute deviation).

    Falls back to the standard deviation where the MAD is zero, and refuses a
    column that is constant.

    Args:
        a: samples, shape (N, 3), in the unit of the quantity.
        name: the quantity's name, for error messages.

    Returns:
        (loc, scale), each of shape (3,), in the unit of ``a``.
    """
    loc = np.median(a, axis=0)
    scale = 1.4826 * np.median(np.abs(a - loc), axis=0)
    std = a.std(axis=0)
    scale = np.where(scale > 0, scale, std)
    if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
        bad = np.flatnonzero(~(scale > 0)).tolist()
        raise ValueError(
            f"{name} axis/axes {bad} are constant over all {a.shape[0]} stars; a density "
            "cannot be learnt along a constant axis — check the catalog (e.g. a 2D slice)"
        )
    return loc, scale


def _asinh_over(r2: Array) -> Array:
    """asinh(r)/r as a smooth function of r² (exact derivatives at r = 0)."""
    small = r2 < _SMALL
    r2s = jnp.where(small, 1.0, r2)
    r = jnp.sqrt(r2s)
    series = 1.0 - r2 / 6.0 + 3.0 * r2**2 / 40.0
    return jnp.where(small, series, jnp.arcsinh(r) / r)


def _sinh_over(r2: Array) -> Array:
    """sinh(r)/r as a smooth function of r²."""
    small = r2 < _SMALL
    r2s = jnp.where(small, 1.0, r2)
    r = jnp.sqrt(r2s)
    series = 1.0 + r2 / 6.0 + r2**2 / 120.0
    return jnp.where(small, series, jnp.sinh(r) / r)


def radial_map(z: Array, scale: float = 1.0) -> tuple[Array, Array]:
    """The radial map u = z · s·asinh(|z|/s)/|z| and its log-Jacobian determinant.

    Linear (u ≈ z) for |z| ≪ s, logarithmic for |z| ≫ s.

    Args:
        z: points, shape (..., 3), dimensionless.
        scale: s, the radius where the map turns from linear to logarithmic.

    Returns:
        (u, log|det ∂u/∂z|) with shapes (..., 3) and (...).
    """
    rho2 = jnp.sum(z * z, axis=-1) / scale**2
    ratio = _asinh_over(rho2)
    # d = 3: det J = g'(r) (g(r)/r)², g(r) = s·asinh(r/s), g'(r) = 1/sqrt(1 + (r/s)²)
    log_det = -0.5 * jnp.log1p(rho2) + 2.0 * jnp.log(ratio)
    return z * ratio[..., None], log_det


def radial_unmap(u: Array, scale: float = 1.0) -> Array:
    """Inverse of :func:`radial_map`: z = u · sinh(|u|/s)/(|u|/s).

    Args:
        u: mapped points, shape (..., 3).
        scale: s, as given to :func:`radial_map`.

    Returns:
        z, shape (..., 3).
    """
    return u * _sinh_over(jnp.sum(u * u, axis=-1) / scale**2)[..., None]


class Preprocessing(eqx.Module):
    """The fixed bijections from (x [kpc], v [km/s]) to the flows' variables.

    Attributes:
        x_loc: position centre, shape (3,) [kpc].
        x_scale: position scale per axis, shape (3,) [kpc].
        v_loc: velocity centre, shape (3,) [km/s].
        v_scale: velocity scale per axis, shape (3,) [km/s].
        radial_scale: the radius s of the radial map in units of ``x_scale``
            (linear inside, logarithmic outside), shape (); 0 for none.
    """

    x_loc: Array
    x_scale: Array
    v_loc: Array
    v_scale: Array
    radial_scale: Array

    def position_to_latent(self, x: Array) -> tuple[Array, Array]:
        """Positions [kpc], shape (..., 3) → (u, log|det ∂u/∂x| [log kpc⁻³])."""
        z = (x - self.x_loc) / self.x_scale
        log_det = -jnp.sum(jnp.log(self.x_scale))
        on = self.radial_scale > 0
        u, ld = radial_map(z, jnp.where(on, self.radial_scale, 1.0))
        return jnp.where(on, u, z), jnp.where(on, ld, 0.0) + log_det

    def latent_to_position(self, u: Array) -> Array:
        """Inverse of :meth:`position_to_latent`; returns positions [kpc]."""
        on = self.radial_scale > 0
        z = jnp.where(on, radial_unmap(u, jnp.where(on, self.radial_scale, 1.0)), u)
        return z * self.x_scale + self.x_loc

    def velocity_to_latent(self, v: Array) -> tuple[Array, Array]:
        """Velocities [km/s] → (w, log|det ∂w/∂v| [log (km/s)⁻³])."""
        w = (v - self.v_loc) / self.v_scale
        return w, jnp.broadcast_to(-jnp.sum(jnp.log(self.v_scale)), w.shape[:-1])

    def latent_to_velocity(self, w: Array) -> Array:
        """Inverse of :meth:`velocity_to_latent`; returns velocities [km/s]."""
        return w * self.v_scale + self.v_loc

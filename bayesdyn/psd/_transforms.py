"""Fixed input transforms of the phase-space density (part of the model).

Positions inside a known spherical support (a catalog selected within a distance
of a centre) are first mapped from the ball onto all of space with
``y = (x − c)/R → y · atanh(|y|)/|y|``, so that the sharp edge of the sample, which a
smooth flow cannot represent, moves to infinity. Positions are then centred and
scaled per axis; a sample whose stars crowd into a central cusp (n ∝ r^(k−3) with
k < 3 near the centre) is mapped with ``z → z·(r²/(r² + c²))^((p−1)/2)``, p = k/3,
which stretches the centre so that the cusp — which a smooth flow cannot
represent and smears over its surroundings — becomes a flat core whose exact
r^(k−3) behaviour is carried by the Jacobian; then positions are optionally mapped radially with ``z → z · s·asinh(|z|/s)/|z|``
so that heavy spatial tails (Plummer: ρ ∝ r⁻⁵) become light, or per axis with
``z_i → s_i·asinh(z_i/s_i)`` (e.g. a disk's vertical axis only); velocities are centred
and scaled per axis — optionally after rotating them into the local cylindrical
frame (v_R, v_φ, v_z) about the z axis at each position, so that a disk's rotation,
whose direction turns with azimuth, is exact rather than learnt, or into the local
spherical frame (v_r, v_θ, v_φ) about the origin, so that the radially elongated
velocity ellipsoid of an anisotropic sphere is aligned with the axes (a rotation: unit
Jacobian; its dependence on x enters ∂log f/∂x through autodiff). The transforms are bijections
whose log-Jacobians enter log f, so log f and its scores are exact derivatives of
the full density in physical units.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = [
    "Preprocessing",
    "robust_loc_scale",
    "radial_map",
    "radial_unmap",
    "axis_map",
    "axis_unmap",
    "ball_map",
    "ball_unmap",
    "cusp_map",
    "cusp_unmap",
]

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


def _over_r(fn, series, r2: Array, fill: float = 1.0) -> Array:
    """fn(r)/r as a smooth function of r², with its Taylor ``series`` near r = 0 (exact derivatives there)."""
    small = r2 < _SMALL
    r = jnp.sqrt(jnp.where(small, fill, r2))
    return jnp.where(small, series(r2), fn(r) / r)


def _asinh_over(r2: Array) -> Array:
    """asinh(r)/r as a smooth function of r²."""
    return _over_r(jnp.arcsinh, lambda q: 1.0 - q / 6.0 + 3.0 * q**2 / 40.0, r2)


def _sinh_over(r2: Array) -> Array:
    """sinh(r)/r as a smooth function of r²."""
    return _over_r(jnp.sinh, lambda q: 1.0 + q / 6.0 + q**2 / 120.0, r2)


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


def axis_map(z: Array, scales: Array) -> tuple[Array, Array]:
    """The per-axis map u_i = s_i·asinh(z_i/s_i) (identity where s_i = 0) and its log-Jacobian determinant.

    Unlike :func:`radial_map`, each axis is compressed on its own: a disk's
    vertical tails can be made light without touching the in-plane directions.

    Args:
        z: points, shape (..., 3), dimensionless.
        scales: s_i ≥ 0 per axis, shape (3,); 0 leaves that axis unmapped.

    Returns:
        (u, log|det ∂u/∂z|) with shapes (..., 3) and (...).
    """
    on = scales > 0
    s = jnp.where(on, scales, 1.0)
    q = z / s
    u = jnp.where(on, s * jnp.arcsinh(q), z)
    log_det = jnp.sum(jnp.where(on, -0.5 * jnp.log1p(q * q), 0.0), axis=-1)
    return u, log_det


def axis_unmap(u: Array, scales: Array) -> Array:
    """Inverse of :func:`axis_map`: z_i = s_i·sinh(u_i/s_i) (identity where s_i = 0)."""
    on = scales > 0
    s = jnp.where(on, scales, 1.0)
    return jnp.where(on, s * jnp.sinh(u / s), u)


def cusp_map(z: Array, power: Array, core: Array) -> tuple[Array, Array]:
    """The cusp map y = z·(r²/(r² + c²))^((p−1)/2), r = |z|, and its log-Jacobian determinant.

    y ≈ z for r ≫ c; |y| ∝ r^p for r ≪ c: a density n ∝ r^(3p−3) at the centre
    becomes flat in y. Monotone for 0 < p ≤ 1 (d log|y|/d log r = (r² + p c²)/(r² + c²)).

    Args:
        z: points, shape (..., 3), dimensionless.
        power: p in (0, 1].
        core: c > 0, the radius inside which the map is a power law.

    Returns:
        (y, log|det ∂y/∂z|) with shapes (..., 3) and (...).
    """
    r2 = jnp.maximum(jnp.sum(z * z, axis=-1), 1e-30)
    c2 = core**2
    log_ratio = 0.5 * (power - 1.0) * (jnp.log(r2) - jnp.log(r2 + c2))  # log |y|/r
    slope = (r2 + power * c2) / (r2 + c2)  # d log|y| / d log r
    # d = 3: det J = g'(r) (g/r)² = (g/r)³ · slope
    return z * jnp.exp(log_ratio)[..., None], 3.0 * log_ratio + jnp.log(slope)


def cusp_unmap(y: Array, power: Array, core: Array, iterations: int = 40) -> Array:
    """Inverse of :func:`cusp_map` (Newton steps on log r; log|y| is convex and increasing in log r)."""
    g2 = jnp.maximum(jnp.sum(y * y, axis=-1), 1e-30)
    log_g = 0.5 * jnp.log(g2)
    c2 = core**2

    def step(t, _):
        r2 = jnp.exp(2.0 * t)
        f = t + 0.5 * (power - 1.0) * (2.0 * t - jnp.log(r2 + c2)) - log_g
        return t - f * (r2 + c2) / (r2 + power * c2), None

    t, _ = jax.lax.scan(step, log_g, None, length=iterations)  # from the right: |y| ≥ r
    return y * jnp.exp(t - log_g)[..., None]


def _atanh_over(r2: Array) -> Array:
    """atanh(r)/r as a smooth function of r² < 1."""
    return _over_r(jnp.arctanh, lambda q: 1.0 + q / 3.0 + q**2 / 5.0, r2, fill=0.25)


def _tanh_over(r2: Array) -> Array:
    """tanh(r)/r as a smooth function of r²."""
    return _over_r(jnp.tanh, lambda q: 1.0 - q / 3.0 + 2.0 * q**2 / 15.0, r2)


def ball_map(y: Array, core: Array | float = 0.0) -> tuple[Array, Array]:
    """The map of the open unit ball onto space, u = y · φ(|y|)/|y|, and its log-Jacobian.

    ``core`` = 0 (default): φ = atanh, near-identity at the centre (u ≈ y for
    |y| ≪ 1). ``core`` = r₀ ∈ (0, 1): the identity inside |y| ≤ r₀ and
    φ(r) = r₀ + (1 − r₀)·atanh((r − r₀)/(1 − r₀)) outside (C² at r₀), so the
    stretching is confined to the outer shell and a flow sees the interior
    unchanged. Either way the boundary |y| → 1 goes to |u| → ∞: a density that
    stays finite up to the ball's edge becomes one with exponential tails, with no
    discontinuity for a flow to smear.

    Args:
        y: points inside the unit ball, shape (..., 3), dimensionless.
        core: r₀, the radius left untouched, in [0, 1).

    Returns:
        (u, log|det ∂u/∂y|) with shapes (..., 3) and (...); non-finite for |y| ≥ 1.
    """
    r2 = jnp.sum(y * y, axis=-1)
    ratio = _atanh_over(r2)
    # d = 3: det J = φ'(r) (φ(r)/r)², φ = atanh, φ'(r) = 1/(1 − r²)
    log_det = -jnp.log1p(-r2) + 2.0 * jnp.log(ratio)
    # with a core: t = max(r − r₀, 0)/(1 − r₀), φ(r) = r + (1 − r₀)(atanh t − t), φ'(r) = 1/(1 − t²)
    cored = jnp.asarray(core) > 0
    r0 = jnp.where(cored, core, 0.5)  # the unused branch stays finite
    r = jnp.sqrt(jnp.maximum(r2, 1e-30))
    t = jnp.maximum(r - r0, 0.0) / (1.0 - r0)
    t2 = jnp.where(cored, t * t, 0.0)
    # atanh(t) − t = t³·(atanh(t) − t)/t³, series near 0 keeps the gradient finite
    excess = t * (_atanh_over(t2) - 1.0)
    ratio_c = 1.0 + (1.0 - r0) * excess / r
    log_det_c = -jnp.log1p(-t2) + 2.0 * jnp.log(ratio_c)
    ratio = jnp.where(cored, ratio_c, ratio)
    log_det = jnp.where(cored, log_det_c, log_det)
    return y * ratio[..., None], log_det


#: Largest |y| that :func:`ball_unmap` returns (|u| ≈ 4.95): far tails of a flow's
#: draws would otherwise round onto the ball's edge in float32, where log f is −∞.
BALL_MAX = 0.9999


def ball_unmap(u: Array, core: Array | float = 0.0) -> Array:
    """Inverse of :func:`ball_map`: y = u · φ⁻¹(|u|)/|u| (|y| clipped at :data:`BALL_MAX`).

    φ⁻¹ = tanh without a core; with core r₀, the identity up to r₀ and
    r₀ + (1 − r₀)·tanh((s − r₀)/(1 − r₀)) beyond.
    """
    r2 = jnp.sum(u * u, axis=-1)
    ratio = _tanh_over(r2)
    cored = jnp.asarray(core) > 0
    r0 = jnp.where(cored, core, 0.5)
    s = jnp.sqrt(jnp.maximum(r2, 1e-30))
    r = r0 + (1.0 - r0) * jnp.tanh(jnp.maximum(s - r0, 0.0) / (1.0 - r0))
    ratio_c = jnp.where(s <= r0, 1.0, r / s)
    ratio = jnp.where(cored, ratio_c, ratio)
    limit = BALL_MAX / jnp.sqrt(jnp.maximum(r2, 1e-30))
    return u * jnp.minimum(ratio, limit)[..., None]


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
        support_center: centre c of the spherical support, shape (3,) [kpc].
        support_radius: its radius R, shape () [kpc]; 0 for none (unbounded
            positions). With a support, ``x_loc`` and ``x_scale`` are in the
            dimensionless mapped coordinates, not kpc.
        cylindrical: the velocity frame, shape (): 0 Cartesian; 1 the local
            cylindrical frame (v_R, v_φ, v_z) about the z axis; 2 the local
            spherical frame (v_r, v_θ, v_φ) about the origin (format 5).
        cusp_power: p of :func:`cusp_map` on the standardised positions, shape ();
            0 for none.
        cusp_core: its c (standardised units), shape ().
        support_core: the fraction r₀ of the support's radius that the support map
            leaves untouched (:func:`ball_map`), shape (); 0 for the atanh map of
            the whole ball (format 6; older files: 0).
        axis_scale: the radii s_i of :func:`axis_map`, applied after the radial
            map, per axis in units of ``x_scale``, shape (3,); 0 leaves an axis
            unmapped (format 7; older files: zeros).
    """

    x_loc: Array
    x_scale: Array
    v_loc: Array
    v_scale: Array
    radial_scale: Array
    support_center: Array
    support_radius: Array
    cylindrical: Array
    cusp_power: Array
    cusp_core: Array
    support_core: Array
    axis_scale: Array

    def support_to_space(self, x: Array) -> tuple[Array, Array]:
        """Positions [kpc] → the support's mapped coordinates and their log-Jacobian (identity without support)."""
        bounded = self.support_radius > 0
        radius = jnp.where(bounded, self.support_radius, 1.0)
        # the double where keeps the unused branch (and its gradient) finite
        u, ld = ball_map(jnp.where(bounded, (x - self.support_center) / radius, 0.0), self.support_core)
        ld = ld - 3.0 * jnp.log(radius)
        return jnp.where(bounded, u, x), jnp.where(bounded, ld, 0.0)

    def space_to_support(self, u: Array) -> Array:
        """Inverse of :meth:`support_to_space`; returns positions [kpc]."""
        bounded = self.support_radius > 0
        radius = jnp.where(bounded, self.support_radius, 1.0)
        y = ball_unmap(jnp.where(bounded, u, 0.0), self.support_core)
        return jnp.where(bounded, y * radius + self.support_center, u)

    def position_to_latent(self, x: Array) -> tuple[Array, Array]:
        """Positions [kpc], shape (..., 3) → (u, log|det ∂u/∂x| [log kpc⁻³])."""
        x, log_det_support = self.support_to_space(x)
        z = (x - self.x_loc) / self.x_scale
        log_det = -jnp.sum(jnp.log(self.x_scale)) + log_det_support
        cusp = self.cusp_power > 0
        zc, ldc = cusp_map(z, jnp.where(cusp, self.cusp_power, 1.0), jnp.where(cusp, self.cusp_core, 1.0))
        z = jnp.where(cusp, zc, z)
        log_det = log_det + jnp.where(cusp, ldc, 0.0)
        on = self.radial_scale > 0
        u, ld = radial_map(z, jnp.where(on, self.radial_scale, 1.0))
        u, log_det = jnp.where(on, u, z), jnp.where(on, ld, 0.0) + log_det
        u, ld = axis_map(u, self.axis_scale)
        return u, ld + log_det

    def latent_to_position(self, u: Array) -> Array:
        """Inverse of :meth:`position_to_latent`; returns positions [kpc]."""
        u = axis_unmap(u, self.axis_scale)
        on = self.radial_scale > 0
        z = jnp.where(on, radial_unmap(u, jnp.where(on, self.radial_scale, 1.0)), u)
        cusp = self.cusp_power > 0
        z = jnp.where(cusp, cusp_unmap(z, jnp.where(cusp, self.cusp_power, 1.0),
                                       jnp.where(cusp, self.cusp_core, 1.0)), z)
        return self.space_to_support(z * self.x_scale + self.x_loc)

    def _basis(self, x: Array) -> tuple[Array, Array, Array]:
        """The orthonormal frame (e₁, e₂, e₃), each (..., 3), in which velocities are standardised at x [kpc].

        ``frame`` 0: the Cartesian axes; 1: cylindrical about the z axis,
        (R̂, φ̂, ẑ); 2: spherical about the origin, (r̂, θ̂, φ̂). On the z axis the
        azimuthal directions fall back to x̂ and ŷ (and at the origin to the
        Cartesian axes); a double ``where`` keeps gradients finite there.
        """
        frame = self.cylindrical
        x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
        big_r2 = x0**2 + x1**2
        off_axis = (frame > 0) & (big_r2 > 0)
        big_r = jnp.sqrt(jnp.where(off_axis, big_r2, 1.0))
        c = jnp.where(off_axis, x0 / big_r, 1.0)  # cos φ
        s = jnp.where(off_axis, x1 / big_r, 0.0)  # sin φ
        zero, one = jnp.zeros_like(c), jnp.ones_like(c)
        e_big_r = jnp.stack([c, s, zero], -1)
        e_phi = jnp.stack([-s, c, zero], -1)
        e_z = jnp.stack([zero, zero, one], -1)
        r2 = big_r2 + x2**2
        sph = (frame > 1.5) & (r2 > 0)
        r = jnp.sqrt(jnp.where(sph, r2, 1.0))
        cos_t = jnp.where(sph, x2 / r, 1.0)  # cos θ
        sin_t = jnp.where(sph, jnp.where(off_axis, big_r, 0.0) / r, 0.0)
        e_r = sin_t[..., None] * e_big_r + cos_t[..., None] * e_z
        e_theta = cos_t[..., None] * e_big_r - sin_t[..., None] * e_z
        sph = sph[..., None]
        # frames 0 and 1: off_axis is False for 0, so (R̂, φ̂, ẑ) is then (x̂, ŷ, ẑ)
        return jnp.where(sph, e_r, e_big_r), jnp.where(sph, e_theta, e_phi), jnp.where(sph, e_phi, e_z)

    def velocity_to_latent(self, v: Array, x: Array | None = None) -> tuple[Array, Array]:
        """Velocities [km/s] at positions x [kpc] → (w, log|det ∂w/∂v| [log (km/s)⁻³])."""
        if x is not None:
            e1, e2, e3 = self._basis(x)
            v = jnp.stack([jnp.sum(e1 * v, -1), jnp.sum(e2 * v, -1), jnp.sum(e3 * v, -1)], axis=-1)
        w = (v - self.v_loc) / self.v_scale
        return w, jnp.broadcast_to(-jnp.sum(jnp.log(self.v_scale)), w.shape[:-1])

    def latent_to_velocity(self, w: Array, x: Array | None = None) -> Array:
        """Inverse of :meth:`velocity_to_latent`; returns velocities [km/s]."""
        v = w * self.v_scale + self.v_loc
        if x is not None:
            e1, e2, e3 = self._basis(x)
            v = v[..., :1] * e1 + v[..., 1:2] * e2 + v[..., 2:] * e3
        return v

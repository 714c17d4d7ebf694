"""Wrappers that reshape or reorient another component: flattening and tilt."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ._base import Component, CompositePotential, PotentialComponent, _own_parameter
from ._spherical import SphericalComponent

__all__ = ["Flattened", "Tilted"]


def _check_wrapped(component: Any, owner: str, own: tuple[str, ...]) -> Component:
    if not isinstance(component, Component):
        raise TypeError(f"{owner} wraps a potential Component; got {type(component).__name__}")
    clash = sorted(set(own) & set(component.parameters()))
    if clash:
        raise ValueError(
            f"{owner}: the wrapped {type(component).__name__} already has parameter(s) {clash}; "
            f"wrap a component whose parameters do not clash with {list(own)}"
        )
    return component


class Flattened(PotentialComponent):
    r"""Flatten (or make triaxial) any component's *potential*: Φ'(x, y, z) = Φ(x, y/p, z/q).

    The flattening acts on the potential, as in gala's ``NFWPotential(c=q)``
    (``b = p``), not on the density; acceleration and density follow by
    automatic differentiation (ρ = ∇²Φ'/4πG). A flattened potential is always
    smooth and cheap, but its density is more flattened than the potential
    (roughly q_ρ ≈ 1 − 3(1 − q) near the core) and turns negative on the z-axis
    for strong flattening — keep q ≳ 0.7 and check ``density`` where it matters.
    At the exact origin a spherical part contributes its limit ρ(0)(1 + 1/p² + 1/q²)/3
    (autodiff alone gives 0 there; ∞ for a cusp).
    Parameters are named ``q``, ``p`` next to those of the wrapped component.

    Args:
        component: the component to flatten (any with a potential).
        q: z-axis ratio of the potential (q < 1 oblate, q > 1 prolate).
        p: y-axis ratio of the potential (default 1, axisymmetric).
    """

    component: Component
    q: Any
    p: Any
    parameter_names = ("q", "p")
    parameter_types = ("dimensionless", "dimensionless")
    _subcomponent_fields: ClassVar[tuple[str, ...]] = ("component",)

    def __init__(self, component: Component, q: Any, p: Any = 1.0):
        self.component = _check_wrapped(component, "Flattened", self.parameter_names)
        self.q = _own_parameter(type(self), "q", q)
        self.p = _own_parameter(type(self), "p", p)

    def _scaled(self, x):
        return jnp.stack([x[0], x[1] / self.p, x[2] / self.q])

    def _potential(self, x):
        return self.component._potential(self._scaled(x))

    def _density(self, x):
        # A spherical part's Φ is Φ_r(where(r > 0, r, 0)): a constant to autodiff at its centre, so its
        # Hessian there comes out 0 (Flattened(Plummer(5e9, 1), q=1).density(0) was 0, not 1.19e9 M☉/kpc³).
        # Its true Hessian is isotropic, 4πGρ(0)/3 · 1, and Φ(x, y/p, z/q) scales the yy and zz entries by
        # 1/p² and 1/q²: add ρ(0)(1 + 1/p² + 1/q²)/3 per spherical part at the origin (∞ for a cusp).
        rho = super()._density(x)
        parts = _spherical_parts(self.component)
        if not parts:
            return rho
        scaled = self._scaled(x)
        factor = (1.0 + self.p**-2 + self.q**-2) / 3.0
        central = jnp.zeros_like(rho)
        for part in parts:
            # ρ(X) at the point itself (ρ(0) at the origin, the only place it is used); a cusp's ρ(0) = ∞ is
            # put in as a constant and ρ taken at X = (1, 1, 1) kpc instead: the derivatives of ∞ are NaN,
            # and they would reach the gradients of every point of a batch that holds the origin
            cusp = ~jnp.isfinite(part._density(scaled))
            rho_part = part._density(jnp.where(cusp, jnp.ones_like(scaled), scaled))
            central = central + jnp.where(cusp, jnp.inf, rho_part * factor)
        return jnp.where(jnp.all(x == 0), rho + central, rho)


def _spherical_parts(component: Component) -> list[SphericalComponent]:
    """The spherical components (centred at the origin) whose potentials ``component`` sums or rotates."""
    if isinstance(component, SphericalComponent):
        return [component]
    if isinstance(component, CompositePotential):
        return [part for c in component.components for part in _spherical_parts(c)]
    if isinstance(component, Tilted):
        return _spherical_parts(component.component)
    return []


def rotation_matrix(tilt: Any, azimuth: Any, roll: Any = 0.0) -> jax.Array:
    """Rotation taking body axes to Galactocentric axes, R = R_z(azimuth) R_y(tilt) R_z(roll).

    The body z-axis ends up pointing at polar angle ``tilt`` from the Galactic
    z-axis, at longitude ``azimuth`` from the x-axis.

    Args:
        tilt: polar angle of the body z-axis [deg].
        azimuth: its azimuth [deg].
        roll: spin about the body z-axis, applied first [deg].

    Returns:
        (3, 3) rotation matrix; Galactocentric = R @ body.
    """
    t, a, r = (jnp.deg2rad(jnp.asarray(v)) for v in (tilt, azimuth, roll))

    def rz(angle):
        c, s = jnp.cos(angle), jnp.sin(angle)
        zero, one = jnp.zeros_like(c), jnp.ones_like(c)
        return jnp.stack([jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]), jnp.stack([zero, zero, one])])

    c, s = jnp.cos(t), jnp.sin(t)
    zero, one = jnp.zeros_like(c), jnp.ones_like(c)
    ry = jnp.stack([jnp.stack([c, zero, s]), jnp.stack([zero, one, zero]), jnp.stack([-s, zero, c])])
    return rz(a) @ ry @ rz(r)


class Tilted(Component):
    r"""Rotate any component: Φ'(x) = Φ(Rᵀ x), a'(x) = R a(Rᵀ x), ρ'(x) = ρ(Rᵀ x).

    R = R_z(azimuth) R_y(tilt) R_z(roll) takes the component's own axes to the
    Galactocentric ones (see :func:`rotation_matrix`): a flattened halo's short
    axis ends up at polar angle ``tilt`` and longitude ``azimuth``. gala's
    ``R=`` argument is Rᵀ in this notation. Parameters ``tilt``, ``azimuth``,
    ``roll`` are named next to those of the wrapped component.

    Args:
        component: the component to rotate.
        tilt: polar angle of the body z-axis [deg] (Quantity in any angle unit).
        azimuth: azimuth of the body z-axis [deg].
        roll: rotation about the body z-axis, applied first [deg] (matters only
            for triaxial components).
    """

    component: Component
    tilt: Any
    azimuth: Any
    roll: Any
    parameter_names = ("tilt", "azimuth", "roll")
    parameter_types = ("angle", "angle", "angle")
    parameter_requirements: ClassVar[dict[str, str]] = {"tilt": "any", "azimuth": "any", "roll": "any"}
    _subcomponent_fields: ClassVar[tuple[str, ...]] = ("component",)

    def __init__(self, component: Component, tilt: Any, azimuth: Any = 0.0, roll: Any = 0.0):
        self.component = _check_wrapped(component, "Tilted", self.parameter_names)
        self.tilt = _own_parameter(type(self), "tilt", tilt)
        self.azimuth = _own_parameter(type(self), "azimuth", azimuth)
        self.roll = _own_parameter(type(self), "roll", roll)

    def rotation(self) -> jax.Array:
        """The (3, 3) matrix R taking body to Galactocentric axes."""
        return rotation_matrix(self.tilt, self.azimuth, self.roll)

    def _potential(self, x):
        rot = self.rotation().astype(x.dtype)
        return self.component._potential(rot.T @ x)

    def _acceleration(self, x):
        rot = self.rotation().astype(x.dtype)
        return rot @ self.component._acceleration(rot.T @ x)

    def _density(self, x):
        rot = self.rotation().astype(x.dtype)
        return self.component._density(rot.T @ x)

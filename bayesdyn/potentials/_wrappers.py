"""Wrappers that reshape or reorient another component: flattening and tilt."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ._base import Component, PotentialComponent, parameter

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
        self.q = parameter(q, "dimensionless", "q", "Flattened")
        self.p = parameter(p, "dimensionless", "p", "Flattened")

    def _potential(self, x):
        return self.component._potential(jnp.stack([x[0], x[1] / self.p, x[2] / self.q]))


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
    _subcomponent_fields: ClassVar[tuple[str, ...]] = ("component",)

    def __init__(self, component: Component, tilt: Any, azimuth: Any = 0.0, roll: Any = 0.0):
        self.component = _check_wrapped(component, "Tilted", self.parameter_names)
        self.tilt = parameter(tilt, "angle", "tilt", "Tilted", require="any")
        self.azimuth = parameter(azimuth, "angle", "azimuth", "Tilted", require="any")
        self.roll = parameter(roll, "angle", "roll", "Tilted", require="any")

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

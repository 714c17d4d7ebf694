"""A self-consistent Plummer sphere with its exact distribution function."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import units as _u
from ..catalog import Catalog
from ._truth import MockError, Truth, _bayesdyn_version, _points

__all__ = ["plummer", "PlummerTruth"]

_G = _u.G


class PlummerTruth(Truth):
    """A self-consistent isotropic Plummer sphere (Plummer 1911; Dejonghe 1987).

    Potential Φ(r) = −G M / sqrt(r² + b²), density ρ = 3M/(4π b³) (1 + r²/b²)^(−5/2),
    distribution function f(E) = 24√2/(7π³) b²/(G⁵ M⁵) (−E)^(7/2) for E < 0,
    normalised to integrate to 1 over phase space (per star, not per M☉).

    Attributes:
        mass: total mass M [M☉].
        scale_radius: Plummer radius b [kpc].
        center: position of the centre (3,) [kpc].
    """

    mass: float
    scale_radius: float
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _r2(self, x):
        d = _points(x) - jnp.asarray(self.center, dtype=jnp.result_type(float))
        return d, jnp.sum(d**2, axis=-1)

    def _potential(self, x):
        """Φ(x) = −GM/sqrt(r² + b²) [(km/s)²]."""
        _, r2 = self._r2(x)
        return -_G * self.mass / jnp.sqrt(r2 + self.scale_radius**2)

    def _acceleration(self, x):
        """a(x) = −GM (x − c)/(r² + b²)^(3/2) [(km/s)²/kpc]."""
        d, r2 = self._r2(x)
        return -_G * self.mass * d / ((r2 + self.scale_radius**2) ** 1.5)[..., None]

    def _density(self, x):
        """ρ(x) = 3M/(4π b³) (1 + r²/b²)^(−5/2) [M☉/kpc³]."""
        _, r2 = self._r2(x)
        b = self.scale_radius
        return 3 * self.mass / (4 * math.pi * b**3) * (1 + r2 / b**2) ** -2.5

    def _tracer_density(self, x):
        """ρ(x)/M, normalised to 1 over all space [kpc⁻³]."""
        return self._density(x) / self.mass

    def log_df(self, x, v):
        """log f(x, v), f normalised to 1 over phase space [log((kpc km/s)⁻³)]; −inf where unbound. JAX."""
        return _log_df(self, _points(x), _points(v, "v"))

    def _log_df(self, x, v):
        energy = 0.5 * jnp.sum(v**2, axis=-1) + self._potential(x)
        b, gm = self.scale_radius, _G * self.mass
        log_c = math.log(24 * math.sqrt(2) / (7 * math.pi**3)) + 2 * jnp.log(b) - 5 * jnp.log(gm)
        bound = energy < 0
        safe = jnp.where(bound, -energy, 1.0)
        return jnp.where(bound, log_c + 3.5 * jnp.log(safe), -jnp.inf)

    def score(self, x, v):
        """Exact (∂log f/∂x [kpc⁻¹], ∂log f/∂v [(km/s)⁻¹]) by autodiff of :meth:`log_df`. JAX.

        Unbound points (E ≥ 0, f = 0) get NaN.
        """
        x = _points(x)
        v = _points(v, "v")
        return _score(self, x, v)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "mass_msun": float(self.mass),
            "scale_radius_kpc": float(self.scale_radius),
            "center_kpc": [float(c) for c in self.center],
        }

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "plummer", "params": self.params, "bayesdyn_version": _bayesdyn_version()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlummerTruth":
        """Inverse of :meth:`to_dict`."""
        p = d["params"]
        return cls(mass=float(p["mass_msun"]), scale_radius=float(p["scale_radius_kpc"]), center=tuple(p["center_kpc"]))


@jax.jit
def _log_df(truth: PlummerTruth, x, v):
    return truth._log_df(x, v)


@jax.jit
def _score(truth: PlummerTruth, x, v):
    def total(x, v):
        return jnp.sum(truth._log_df(x, v))

    sx, sv = jax.grad(total, argnums=(0, 1))(x, v)
    energy = 0.5 * jnp.sum(v**2, axis=-1) + truth._potential(x)
    bad = (energy >= 0)[..., None]
    return jnp.where(bad, jnp.nan, sx), jnp.where(bad, jnp.nan, sv)


def _check_n_seed(n: int, seed: int) -> tuple[int, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise MockError(f"n must be a positive integer number of stars, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MockError(f"seed must be a non-negative integer, got {seed!r}")
    return int(n), int(seed)


def _isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unit vectors uniform on the sphere, (n, 3)."""
    cos_t = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def plummer(
    n: int,
    seed: int,
    *,
    mass: Any = 1e10,
    scale_radius: Any = 1.0,
    center: Any = (0.0, 0.0, 0.0),
) -> tuple[Catalog, PlummerTruth]:
    """Sample a self-consistent isotropic Plummer sphere.

    Positions and velocities follow the exact DF f(E) ∝ (−E)^(7/2), drawn with
    the method of Aarseth, Hénon & Wielen (1974): r from the inverse cumulative
    mass, the speed q = v/v_esc from q²(1 − q²)^(7/2) by rejection, isotropic
    directions. No radius cut: the sample has the full r⁻⁵ tail.

    Args:
        n: number of stars.
        seed: seed of the numpy random generator (same seed, same catalog).
        mass: total mass M [M☉] (or a mass Quantity).
        scale_radius: Plummer radius b [kpc] (or a length Quantity).
        center: position of the centre (3,) [kpc]; velocities have zero mean.

    Returns:
        (catalog, truth): a :class:`bayesdyn.Catalog` (x [kpc], v [km/s]; its
        ``meta`` holds the truth and the seed; its solar parameters are the
        default and have no meaning for this mock) and a :class:`PlummerTruth`.

    Raises:
        MockError: n or seed not positive integers, non-positive mass or radius.
    """
    n, seed = _check_n_seed(n, seed)
    mass = float(_u.strip(mass, "mass", "mass"))
    b = float(_u.strip(scale_radius, "length", "scale_radius"))
    center = np.asarray(_u.strip(center, "length", "center"), dtype=float).reshape(-1)
    if not (np.isfinite(mass) and mass > 0):
        raise MockError(f"mass must be a positive number of M☉, got {mass}")
    if not (np.isfinite(b) and b > 0):
        raise MockError(f"scale_radius must be a positive length in kpc, got {b}")
    if center.shape != (3,) or not np.isfinite(center).all():
        raise MockError(f"center must be 3 finite numbers in kpc, got {center.tolist()}")

    rng = np.random.default_rng(seed)
    # radius from the cumulative mass M(<r)/M = r³/(r² + b²)^{3/2}
    u1 = rng.random(n)
    r = b / np.sqrt(np.maximum(u1, 1e-300) ** (-2.0 / 3.0) - 1.0)
    x = r[:, None] * _isotropic(rng, n)
    # speed in units of the local escape speed: p(q) ∝ q² (1 − q²)^{7/2}, max < 0.1
    q = np.empty(0)
    while q.size < n:
        m = int(2.6 * (n - q.size)) + 64  # acceptance B(3/2, 9/2)/0.2 ≈ 0.43
        qq = rng.random(m)
        yy = 0.1 * rng.random(m)
        q = np.concatenate([q, qq[yy < qq**2 * (1 - qq**2) ** 3.5]])
    q = q[:n]
    v_esc = np.sqrt(2 * _G * mass) * (r**2 + b**2) ** -0.25
    v = (q * v_esc)[:, None] * _isotropic(rng, n)
    x = x + center

    truth = PlummerTruth(mass=mass, scale_radius=b, center=tuple(float(c) for c in center))
    meta = {
        "mock": "plummer",
        "seed": seed,
        "truth": truth.to_dict(),
        "generator": "bayesdyn.mocks.plummer (Aarseth, Hénon & Wielen 1974)",
        "frame": "positions about the given centre; the solar parameters have no meaning for this mock",
    }
    return Catalog(x, v, meta=meta), truth

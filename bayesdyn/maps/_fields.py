"""Fields on points: Φ, a, ρ (autodiff or kernel-smoothed by the divergence theorem), ε, and ∂f/∂t, with bands."""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from scipy import stats

from .. import units as _u
from ._geometry import Grid, sphere_rule

__all__ = [
    "FieldMap",
    "evaluate",
    "QUANTITIES",
    "smoothed_density",
    "disequilibrium_map",
    "DisequilibriumMap",
    "GYR_PER_KPC_S_KM",
]

_FOUR_PI_G = 4.0 * math.pi * _u.G
GYR_PER_KPC_S_KM = 1.0227121650537077
"""1 km/s/kpc in 1/Gyr (rates such as ∂log f/∂t)."""

#: members below which FieldMap.band(method="quantile") warns that the band covers less than its level (by more
#: than a point at 95 %: about level × (K − 1)/(K + 1), simulated 0.93 at K = 100)
QUANTILE_MIN_MEMBERS = 200

QUANTITIES: dict[str, tuple[str, str]] = {
    "potential": ("(km/s)²", "gravitational potential Φ"),
    "acceleration": ("(km/s)²/kpc", "acceleration a = −∇Φ (vector)"),
    "a_x": ("(km/s)²/kpc", "a_x"),
    "a_y": ("(km/s)²/kpc", "a_y"),
    "a_z": ("(km/s)²/kpc", "a_z"),
    "a_R": ("(km/s)²/kpc", "cylindrical radial acceleration a_R (outward)"),
    "a_phi": ("(km/s)²/kpc", "azimuthal acceleration a_φ"),
    "a_r": ("(km/s)²/kpc", "spherical radial acceleration a_r (outward)"),
    "density": ("M☉/kpc³", "mass density ρ = ∇²Φ/4πG"),
    "smoothed_density": ("M☉/kpc³", "ball-averaged density −(3/4πGh)⟨a·n⟩ over a sphere of radius h"),
    "efficiency": ("", "selection efficiency ε"),
}
"""quantity → (unit, what it is). Components of a: x, y, z; R (cylindrical, outward), phi (cylindrical, along +φ
= atan2(y, x)), r (spherical, outward), all about the Galactic centre."""


class FieldMap(NamedTuple):
    """A quantity evaluated on points, with ensemble members where the source has them.

    Attributes:
        quantity: one of :data:`QUANTITIES`.
        points: positions (..., 3) [kpc].
        mean: the value (member mean for an ensemble), shape (...) or (..., 3) for ``acceleration``.
        members: per-member values (K, ...) or None (a single model).
        unit: the unit of ``mean`` (internal units).
        axes: the grid's coordinate axes (see :class:`Grid`), if made from one.
    """

    quantity: str
    points: np.ndarray
    mean: np.ndarray
    members: np.ndarray | None
    unit: str
    axes: dict[str, np.ndarray] | None = None

    @property
    def n_members(self) -> int:
        """K (1 without members)."""
        return 1 if self.members is None else int(self.members.shape[0])

    @property
    def sd(self) -> np.ndarray:
        """Standard deviation of the members (ddof = 1), zeros without members."""
        if self.members is None or self.members.shape[0] < 2:
            return np.zeros_like(self.mean)
        return np.std(self.members, axis=0, ddof=1)

    def band(self, level: float = 0.68, method: str = "t") -> tuple[np.ndarray, np.ndarray]:
        """A central uncertainty band (lo, hi) from the members' spread.

        Args:
            level: probability content, e.g. 0.68 or 0.95.
            method: ``"t"``: mean ± t_{K−1} × sd × √(1 + 1/K), the prediction
                interval of a quantity drawn from the distribution the K members
                sample (Student's t for K − 1 degrees of freedom, and the mean's own
                error: an honest width for a handful of ensemble members, 3.56 sd at
                95 % for K = 4; without √(1 + 1/K) simulated coverage was 0.935);
                ``"quantile"``: the members' empirical quantiles (for many members,
                e.g. posterior draws). Both treat the members as independent: a
                neural ensemble fitted member by member to flows of J resamples × L
                seeds (``fit_psd(seeds_per_resample=2)``; the default is 1) shares resamples, and
                its band leaves out part of the sampling variance (a review simulated
                95 % coverage 0.75 when the seeds add no variance, 0.95 at the NFW
                mock's share 0.46); fit the flows with ``seeds_per_resample=1`` for
                neural bands.

        Returns:
            (lo, hi), each shaped like ``mean``; both equal ``mean`` without members
            (with a warning: one member has no spread to show).
        """
        if not 0 < level < 1:
            raise ValueError(f"level={level} must be in (0, 1)")
        if self.members is None or self.members.shape[0] < 2:
            warnings.warn(
                f"{self.quantity}: one estimate, no ensemble members, so its band has zero width, not zero "
                "uncertainty; fit an ensemble (e.g. ensemble=4 flows, one network per member) for a band",
                UserWarning, stacklevel=2,
            )
            return self.mean, self.mean
        if method == "t":
            k = self.members.shape[0]
            half = stats.t.ppf(0.5 + level / 2, k - 1) * np.sqrt(1.0 + 1.0 / k) * self.sd
            return self.mean - half, self.mean + half
        if method == "quantile":
            k = self.members.shape[0]
            if k < QUANTILE_MIN_MEMBERS:
                warnings.warn(
                    f"{self.quantity}: a quantile band of {k} members covers less than its level: for a value drawn "
                    "like the members, a 95 % band covered 0.58 of them at K = 4, 0.79 at 10, 0.91 at 50, 0.93 at 100 "
                    "(about level × (K − 1)/(K + 1)); method='t' covers at its level", UserWarning, stacklevel=2)
            q = np.quantile(self.members, [0.5 - level / 2, 0.5 + level / 2], axis=0)
            return q[0], q[1]
        raise ValueError(f"method={method!r}; choose 't' or 'quantile'")

    def covers(self, truth: Any, level: float = 0.95, method: str = "t") -> np.ndarray:
        """Whether ``truth`` (the shape of ``mean``, or one that broadcasts to it: a number, one (3,) vector for an
        (N, 3) map) lies inside the band, elementwise."""
        t = np.asarray(truth)
        try:
            grows = np.broadcast_shapes(t.shape, np.shape(self.mean)) != np.shape(self.mean)
        except ValueError:
            grows = True
        if grows:  # a (3, 1) truth against a (3,) map had given (3, 3)
            raise ValueError(f"truth has shape {t.shape}, which does not broadcast to the map's shape "
                             f"{np.shape(self.mean)}")
        lo, hi = self.band(level, method)
        return (t >= lo) & (t <= hi)


def _positions(where: Any, name: str) -> tuple[np.ndarray, dict | None]:
    """(points (..., 3) [kpc], the grid's axes or None) of a Grid or an array, checked: finite, last axis 3."""
    if isinstance(where, Grid):
        pts, axes = where.points, where.axes
    else:
        pts, axes = np.asarray(_u.strip(where, "length", name), dtype=float), None
    if pts.ndim == 0 or pts.shape[-1] != 3:
        raise ValueError(f"{name}: points must have shape (..., 3) [kpc]; got {pts.shape}")
    bad = ~np.isfinite(pts).all(axis=-1)
    if bad.any():  # a NaN position had given the density at the centre (r = NaN taken as 0)
        first = np.argwhere(bad)[0].tolist()
        raise ValueError(f"{name}: {int(bad.sum())} of {bad.size} points are not finite (the first at index "
                         f"{first}: {pts[tuple(first)].tolist()}); remove them, or evaluate on finite positions")
    return pts, axes


def _components(a: np.ndarray, x: np.ndarray, quantity: str) -> np.ndarray:
    if quantity == "acceleration":
        return a
    if quantity in ("a_x", "a_y", "a_z"):
        return a[..., "xyz".index(quantity[-1])]
    x = np.broadcast_to(x, a.shape)
    if quantity == "a_R":
        r = np.hypot(x[..., 0], x[..., 1])
        return (x[..., 0] * a[..., 0] + x[..., 1] * a[..., 1]) / np.where(r > 0, r, np.inf)
    if quantity == "a_phi":
        r = np.hypot(x[..., 0], x[..., 1])
        return (x[..., 0] * a[..., 1] - x[..., 1] * a[..., 0]) / np.where(r > 0, r, np.inf)
    if quantity == "a_r":
        r = np.linalg.norm(x, axis=-1)
        return np.sum(x * a, axis=-1) / np.where(r > 0, r, np.inf)
    raise AssertionError(quantity)


def _call(source: Any, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(mean, members or None) of ``source.<name>(x)``; a sequence of sources is an ensemble."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("an empty list of sources")
        parts = [_call(s, name, x) for s in source]  # an ensemble's members join as members, not as their mean
        members = np.concatenate([mean[None] if mem is None else mem for mean, mem in parts])
        return members.mean(0), members
    comps = getattr(source, "components", None)
    if name != "efficiency" and hasattr(source, "names") and isinstance(comps, tuple) and comps:
        # a sum of components (e.g. a neural ensemble + a disk): Φ, a and ρ add member by member; the composite's
        # own method gives the members' mean only, and its band had been empty
        parts = [_call(c, name, x) for c in comps]
        ks = sorted({m.shape[0] for _, m in parts if m is not None})
        if ks:
            if len(ks) > 1:
                raise ValueError(f"the components' ensembles have {ks} members; a sum's members add member by "
                                 "member: give its ensembles the same number of members")
            members = sum(mean[None] if m is None else m for mean, m in parts)
            return members.mean(0), members
    fn = getattr(source, name, None)
    if fn is None:
        raise TypeError(f"{type(source).__name__} has no {name}(x); it cannot give this quantity")
    if name == "efficiency" and type(source).__name__ == "NeuralTracerDensity":
        raise TypeError(
            "a NeuralTracerDensity gives ε only with the observed density: map the array "
            "source.efficiency(x, psd.number_density(x)) yourself, or fit selection='efficiency' for an ε(x) field"
        )
    members_fn = getattr(source, f"{name}_members", None)
    if members_fn is not None and getattr(source, "n_members", 1) > 1:
        members = np.asarray(members_fn(x), dtype=float)
        return members.mean(0), members
    return np.asarray(fn(x), dtype=float), None


def smoothed_density(source: Any, x: Any, radius: Any, *, order: int = 12) -> FieldMap:
    """Density averaged over a ball of radius h from accelerations alone (divergence theorem).

    Gauss: M(<h around x₀) = −(1/4πG) ∮ a·n dS, so the mean density in the ball is
    ρ̄_h(x₀) = 3M/(4πh³) = −3⟨a·n⟩/(4πG h), ⟨·⟩ the average over the sphere's
    surface (a product Gauss rule, :func:`sphere_rule`). No second derivative of a
    network is needed, and it applies to any acceleration field, e.g. least-squares
    accelerations interpolated from nodes. The result is ρ convolved with a
    top-hat ball kernel: compare it with a model's ball average, not its point
    density.

    Args:
        source: anything with ``acceleration(x)`` ((N, 3) → (N, 3)) (a component,
            a :class:`bayesdyn.neural.NeuralPotential` ensemble — members give
            members —, a mock's truth, a list of these), or a callable.
        x: ball centres (3,) or (..., 3) [kpc].
        radius: h [kpc] (or a length Quantity).
        order: quadrature order; 2·order² points per sphere.

    Returns:
        :class:`FieldMap` of ``smoothed_density`` [M☉/kpc³].
    """
    h = float(_u.strip(radius, "length", "radius"))
    if not 0 < h < math.inf:
        raise ValueError(f"radius must be a positive, finite length [kpc]; got {h}")
    x, _ = _positions(x, "x")
    n, w = sphere_rule(order)
    pts = x[..., None, :] + h * n  # (..., J, 3)
    flat = pts.reshape(-1, 3)
    if callable(source) and not hasattr(source, "acceleration"):
        a, members = np.asarray(source(flat), dtype=float), None
    else:
        a, members = _call(source, "acceleration", flat)

    def reduce(acc):
        acc = acc.reshape(pts.shape)
        flux = np.sum(np.sum(acc * n, axis=-1) * w, axis=-1) / (4 * np.pi)  # ⟨a·n⟩
        return -3.0 * flux / (_FOUR_PI_G * h)

    mean = reduce(a)
    mem = None if members is None else np.stack([reduce(m) for m in members])
    if mem is not None:
        mean = mem.mean(0)
    return FieldMap("smoothed_density", x, mean, mem, QUANTITIES["smoothed_density"][0])


def evaluate(source: Any, quantity: str, where: Any, *, radius: float | None = None) -> FieldMap:
    """Evaluate a quantity of a potential (or selection) on points, with members for ensembles.

    Args:
        source: a potential component (``bayesdyn.potentials``), a
            :class:`bayesdyn.neural.NeuralPotential` (members when K > 1), a mock's
            truth, a :class:`bayesdyn.neural.NeuralEfficiency` or
            :class:`bayesdyn.mocks.DustModel` (for ``"efficiency"``), or a list of
            these (treated as members, e.g. posterior draws of a parametric model).
        quantity: one of :data:`QUANTITIES`.
        where: a :class:`Grid` (from :func:`grid`, ``slice``, :func:`line_of_sight`)
            or positions (..., 3) [kpc].
        radius: ball radius h [kpc] for ``"smoothed_density"``.

    Returns:
        :class:`FieldMap`.
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity={quantity!r}; choose one of {sorted(QUANTITIES)}")
    pts, axes = _positions(where, "where")
    if radius is not None and quantity != "smoothed_density":  # it had been ignored
        raise ValueError(f"radius= is the ball radius of \"smoothed_density\"; {quantity!r} is evaluated at the "
                         "points: leave radius out, or ask for quantity=\"smoothed_density\"")
    unit = QUANTITIES[quantity][0]
    if quantity == "smoothed_density":
        if radius is None:
            raise ValueError("smoothed_density needs radius= (the ball radius h, kpc)")
        out = smoothed_density(source, pts, radius)
        return out._replace(axes=axes)
    flat = pts.reshape(-1, 3)
    if quantity in ("potential", "density", "efficiency"):
        mean, members = _call(source, quantity, flat)
        shape = pts.shape[:-1]
    else:
        mean, members = _call(source, "acceleration", flat)
        mean = _components(mean, flat, quantity)
        if members is not None:
            members = np.stack([_components(m, flat, quantity) for m in members])
        shape = pts.shape[:-1] + ((3,) if quantity == "acceleration" else ())
    mean = mean.reshape(shape)
    if members is not None:
        members = members.reshape((members.shape[0],) + shape)
    return FieldMap(quantity, pts, mean, members, unit, axes)


class DisequilibriumMap(NamedTuple):
    """∂log f/∂t = −(v·s_x + a·s_v) at positions, summarised over v ~ p(v|x).

    Attributes:
        points: positions (..., 3) [kpc].
        rms: root mean square of ∂log f/∂t over the velocities, member mean, (...) [km/s/kpc].
        mean: mean of ∂log f/∂t over the velocities, member mean, (...) [km/s/kpc]
            (≈ 0 when f is normalised and in equilibrium).
        relative: rms / rms(v·s_x), (...): the fraction of the streaming term that
            the acceleration leaves unbalanced (0 in equilibrium, ~1 or more when the
            acceleration explains nothing; NaN where v·s_x vanishes for every velocity).
        members_rms: rms per score member (K, ...) [km/s/kpc].
        axes: the grid's coordinate axes, if made from one.
    """

    points: np.ndarray
    rms: np.ndarray
    mean: np.ndarray
    relative: np.ndarray
    members_rms: np.ndarray
    axes: dict[str, np.ndarray] | None = None

    def rms_per_gyr(self) -> np.ndarray:
        """``rms`` in 1/Gyr."""
        return self.rms * GYR_PER_KPC_S_KM


def disequilibrium_map(
    density: Any,
    acceleration: Any,
    where: Any,
    *,
    n_velocities: int = 256,
    seed: int = 0,
    efficiency: Any = None,
) -> DisequilibriumMap:
    """The disequilibrium diagnostic ∂log f/∂t = −(v·∂log f/∂x + a·∂log f/∂v) (DESIGN §3) on points.

    At each position, ``n_velocities`` velocities are drawn from p(v|x) of the
    density; each member's scores there and the given acceleration give ∂log f/∂t
    per velocity (:func:`bayesdyn.dynamics.disequilibrium`), summarised by its rms
    and mean. ∂f/∂t itself is f·∂log f/∂t.

    A density learnt from a selected catalog (dust) is f_obs = ε(x) f: its position
    score carries ∇log ε, which this map shows as disequilibrium (a 90 %-deep
    cloud read ``relative`` ≈ 0.95 with the exact acceleration) unless
    ``efficiency`` is given; it is then subtracted from s_x, as the CBE fits do.

    Args:
        density: a :class:`bayesdyn.psd.PhaseSpaceDensity` or any score source
            (``sample_velocities(x, n, seed)`` → (P, n, 3), ``score_members(x, v)``
            → (K, N, 3) pairs), e.g. :class:`bayesdyn.dynamics.ExactScores`.
        acceleration: the independent acceleration field: anything with
            ``acceleration(x)`` (a model, a neural potential, a truth) or an array of
            accelerations (P, 3) at the points [(km/s)²/kpc].
        where: a :class:`Grid` or positions (..., 3) [kpc].
        n_velocities: velocities per position.
        seed: random seed of the velocity draws.
        efficiency: the selection the density's catalog went through: anything with
            ``grad_log_efficiency(x)`` (a :class:`bayesdyn.mocks.DustModel`, a
            :class:`bayesdyn.neural.NeuralEfficiency`) or an array (P, 3) of ∇log ε at
            the points [1/kpc]; None: the catalog is complete (ε = 1).

    Returns:
        :class:`DisequilibriumMap`.
    """
    from ..dynamics import disequilibrium

    pts, axes = _positions(where, "where")
    if isinstance(n_velocities, bool) or not float(n_velocities).is_integer() or n_velocities < 2:
        raise ValueError(f"n_velocities={n_velocities!r} must be a whole number ≥ 2 (velocities per position)")
    flat = pts.reshape(-1, 3)
    p = flat.shape[0]
    given = acceleration.acceleration(flat) if hasattr(acceleration, "acceleration") else acceleration
    a = np.asarray(_u.strip(given, "acceleration", "acceleration"), dtype=float)  # an object's Quantities too
    if a.shape not in ((p, 3), pts.shape):  # checked before reshaping: a (3, P) array was read scrambled
        raise ValueError(f"acceleration array must be (P, 3) = ({p}, 3) at the points (or shaped like them, "
                         f"{pts.shape}) [(km/s)²/kpc]; got {a.shape}")
    a = a.reshape(p, 3)
    if not np.isfinite(a).all():  # it had given rms = NaN there
        raise ValueError(f"the acceleration is not finite at {int((~np.isfinite(a).all(axis=-1)).sum())} of {p} "
                         "points; give a finite field there, or leave those points out")
    if efficiency is None:
        g = np.zeros((p, 3))
    else:
        given = efficiency.grad_log_efficiency(flat) if hasattr(efficiency, "grad_log_efficiency") else efficiency
        g = np.asarray(_u.strip(given, "inverse length", "∇log ε"), dtype=float)
        if g.shape not in ((p, 3), pts.shape):  # (3, P) has P·3 numbers too: it was read scrambled
            raise ValueError(f"efficiency: ∇log ε must be (P, 3) = ({p}, 3) at the points (or shaped like them, "
                             f"{pts.shape}) [1/kpc], or an object with grad_log_efficiency(x); got shape {g.shape}")
        g = g.reshape(p, 3)
    if not np.isfinite(g).all():
        raise ValueError(f"∇log ε is not finite at {int((~np.isfinite(g).all(axis=-1)).sum())} of {p} points (ε = 0 "
                         "there?); leave those points out")
    v = np.asarray(_u.strip(density.sample_velocities(flat, int(n_velocities), seed), "velocity",
                            "the density's sample_velocities draws"))  # (P, M, 3)
    m = v.shape[1]
    xs = np.broadcast_to(flat[:, None, :], v.shape).reshape(-1, 3)
    s_x, s_v = density.score_members(xs, v.reshape(-1, 3))
    s_x = np.asarray(_u.strip(s_x, "inverse length", "the density's scores s_x"), dtype=float).reshape(-1, p, m, 3)
    s_x = s_x - g[None, :, None, :]
    s_v = np.asarray(_u.strip(s_v, "inverse velocity", "the density's scores s_v"), dtype=float).reshape(-1, p, m, 3)
    dlogf = np.asarray(disequilibrium(jnp.asarray(v[None]), jnp.asarray(s_x), jnp.asarray(s_v), jnp.asarray(a[None, :, None, :])))
    rms_k = np.sqrt(np.mean(dlogf**2, axis=-1))  # (K, P)
    mean_k = np.mean(dlogf, axis=-1)
    stream = np.sqrt(np.mean(np.sum(v[None] * s_x, -1) ** 2, axis=-1))
    shape = pts.shape[:-1]
    return DisequilibriumMap(
        pts,
        rms_k.mean(0).reshape(shape),
        mean_k.mean(0).reshape(shape),
        # no streaming term (e.g. the centre of a symmetric model): no scale, NaN (it read 0, "in equilibrium")
        np.where(stream > 0, rms_k / np.where(stream > 0, stream, 1.0), np.nan).mean(0).reshape(shape),
        rms_k.reshape((-1,) + shape),
        axes,
    )

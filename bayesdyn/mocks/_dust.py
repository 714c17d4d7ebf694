"""A synthetic dust model for mocks: opaque Gaussian clouds that remove stars with known probability."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import units as _u
from ._truth import MockError, _np_points, _points

__all__ = ["DustModel", "apply_dust"]


#: the deepest cloud a DustModel takes: 1 − 1e-6 (float32, the positions' default, keeps 1 − d to about 1e-7 of
#: its size there; 1 − 1e-8 rounds to 1, where ε = 0 and log ε = −inf)
MAX_DEPTH = 1.0 - 1e-6


class DustModel(eqx.Module):
    """A few opaque Gaussian clouds: the detection efficiency ε(x) = Π_c [1 − d_c exp(−|x − x_c|²/2r_c²)].

    ε ∈ (0, 1]: 1 far from every cloud, 1 − d_c at the centre of an isolated cloud
    (d_c ≤ 0.9 removes up to 90 % of the stars there). Stars are removed with
    probability 1 − ε(x), which multiplies the true phase-space density by ε(x), a
    function of position only — exactly the selection of DESIGN §3, so that
    s_v is unchanged and s_x,obs = s_x + ∇log ε (:meth:`grad_log_efficiency`).

    Attributes:
        centers: cloud centres (C, 3) [kpc] (Galactocentric).
        radii: Gaussian radii r_c (C,) [kpc].
        depths: fraction removed at each centre d_c (C,), in [0, 1 − 1e-6] (:data:`MAX_DEPTH`).
    """

    # Quantities are converted (np.asarray had dropped the unit: radii in pc read as kpc)
    centers: np.ndarray = eqx.field(converter=lambda a: np.asarray(_u.strip(a, "length", "centers"), dtype=np.float64))
    radii: np.ndarray = eqx.field(converter=lambda a: np.asarray(_u.strip(a, "length", "radii"), dtype=np.float64))
    depths: np.ndarray = eqx.field(converter=lambda a: np.asarray(_u.strip(a, "dimensionless", "depths"),
                                                                  dtype=np.float64))

    def __check_init__(self):
        c, r, d = self.centers, self.radii, self.depths
        if c.ndim != 2 or c.shape[1] != 3 or c.shape[0] < 1:
            raise MockError(f"DustModel.centers must have shape (C, 3) [kpc] with C ≥ 1; got {c.shape}")
        if r.shape != (c.shape[0],) or d.shape != (c.shape[0],):
            raise MockError(
                f"DustModel: {c.shape[0]} centres need {c.shape[0]} radii and depths; got {r.shape} and {d.shape}"
            )
        if not (np.isfinite(c).all() and np.isfinite(r).all() and np.isfinite(d).all()):
            raise MockError("DustModel: centres, radii and depths must be finite")
        if not (r > 0).all():
            raise MockError(f"DustModel.radii must be positive [kpc]; got {r.tolist()}")
        if not ((d >= 0) & (d <= MAX_DEPTH)).all():  # 1 − 1e-9 passed and gave ε = 0, log ε = −inf in float32
            raise MockError(f"DustModel.depths must lie in [0, {MAX_DEPTH!r}] (1 would make ε = 0, and float32 "
                            f"loses 1 − d beyond 1 − 1e-6: 1 − 1e-8 rounds to 1); got {d.tolist()}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def near_sun(
        cls,
        sun: Any,
        *,
        n_clouds: int = 4,
        seed: int = 0,
        distance: tuple[float, float] = (0.4, 1.2),
        height: float = 0.05,
        radius: tuple[float, float] = (0.2, 0.3),
        depth: float = 0.9,
    ) -> "DustModel":
        """Clouds near the plane around the Sun, at random azimuths and distances.

        Args:
            sun: the Sun's position (3,) [kpc] (e.g. ``catalog.solar.position``).
            n_clouds: number of clouds C.
            seed: random seed.
            distance: range of in-plane distances from the Sun [kpc].
            height: the clouds' |z| is at most this [kpc] (midplane z = 0).
            radius: range of Gaussian radii [kpc].
            depth: fraction of stars removed at each centre (≤ 0.9 is typical).

        Returns:
            A :class:`DustModel`; clouds are placed at least 2.2 radii apart.
        """
        if isinstance(n_clouds, bool) or not isinstance(n_clouds, (int, np.integer)) or n_clouds < 1:
            raise MockError(f"n_clouds must be an integer ≥ 1, got {n_clouds!r}")
        sun = np.asarray(_u.strip(sun, "length", "sun"), dtype=float).reshape(3)
        rng = np.random.default_rng(seed)
        # evenly spread azimuths (jittered) so the clouds sit on different sides of the Sun
        base = rng.uniform(0, 2 * np.pi)
        centers, radii = [], []
        for i in range(n_clouds):
            for _ in range(1000):
                phi = base + 2 * np.pi * (i + rng.uniform(-0.3, 0.3)) / n_clouds
                d = rng.uniform(*distance)
                r = rng.uniform(*radius)
                c = np.array([sun[0] + d * np.cos(phi), sun[1] + d * np.sin(phi), rng.uniform(-height, height)])
                if all(np.linalg.norm(c - c2) > 2.2 * max(r, r2) for c2, r2 in zip(centers, radii)):
                    centers.append(c)
                    radii.append(r)
                    break
        if len(centers) < n_clouds:
            raise MockError(f"could place only {len(centers)} of {n_clouds} clouds apart; widen distance= or shrink radius=")
        return cls(np.array(centers), np.array(radii), np.full(n_clouds, float(depth)))

    # ------------------------------------------------------------------ truth
    def _log_eps(self, x):
        c = jnp.asarray(self.centers, dtype=x.dtype)
        r = jnp.asarray(self.radii, dtype=x.dtype)
        d = jnp.asarray(self.depths, dtype=x.dtype)
        q = jnp.sum((x[..., None, :] - c) ** 2, axis=-1) / (2 * r**2)
        return jnp.sum(jnp.log1p(-d * jnp.exp(-q)), axis=-1)

    def efficiency(self, x: Any) -> jax.Array:
        """ε(x) ∈ (0, 1], shape () or (N,) (dimensionless). JAX, jittable.

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return jnp.exp(self._log_eps(_points(x)))

    def log_efficiency(self, x: Any) -> jax.Array:
        """log ε(x), shape () or (N,).

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._log_eps(_points(x))

    def grad_log_efficiency(self, x: Any) -> jax.Array:
        """∇log ε(x) [1/kpc], shape (3,) or (N, 3): the term the CBE's s_x,obs carries.

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        x = _points(x)
        g = jax.grad(lambda p: self._log_eps(p))
        return g(x) if x.ndim == 1 else jax.vmap(g)(x.reshape(-1, 3)).reshape(x.shape)

    def inside(self, x: Any, n_radii: float = 1.0) -> np.ndarray:
        """Which positions lie within ``n_radii`` radii of some cloud centre, (N,) bool.

        Args:
            x: positions (N, 3) [kpc].
            n_radii: the distance in units of each cloud's radius.
        """
        x = _np_points(x)
        d = np.linalg.norm(x[..., None, :] - self.centers, axis=-1) / self.radii
        return np.any(d <= n_radii, axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON description, units in the keys."""
        return {
            "kind": "gaussian_clouds",
            "centers_kpc": self.centers.tolist(),
            "radii_kpc": self.radii.tolist(),
            "depths": self.depths.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DustModel":
        """Inverse of :meth:`to_dict`.

        Raises:
            MockError: ``d`` is not a mapping or lacks one of the keys.
        """
        try:
            args = d["centers_kpc"], d["radii_kpc"], d["depths"]
        except (KeyError, TypeError) as err:
            what = f"lacks the key {err}" if isinstance(err, KeyError) else f"is not a mapping ({err})"
            raise MockError(
                f"the dust-model dict {what}; pass a dict with keys centers_kpc, radii_kpc and depths, "
                "as written by DustModel.to_dict"
            ) from None
        return cls(*args)


def apply_dust(catalog: Any, dust: DustModel | None = None, *, seed: int = 0) -> tuple[Any, DustModel]:
    """Remove stars as dust would: each star survives with probability ε(x).

    The cut goes through ``catalog.select`` (recorded in ``history`` with the
    number removed) and the model is stored in ``meta["dust"]``; ``meta["dust_history"]``
    lists every model applied to the catalog's ancestry, in order, with its seed (a
    catalog dusted twice has as its true efficiency the product of both).

    Args:
        catalog: a :class:`bayesdyn.Catalog`.
        dust: the :class:`DustModel`; default :meth:`DustModel.near_sun` around
            ``catalog.solar.position`` (4 clouds, 90 % removed at their centres)
            with the same ``seed``.
        seed: random seed of the removal (numpy generator; refused when it is the seed of the
            :func:`plummer` mock it is applied to, whose radii come from the same stream).

    Returns:
        (the new catalog, the dust model: its ``efficiency`` is the truth).

    Raises:
        MockError: ``dust`` is not a DustModel, the seed is not a non-negative integer, or it is the Plummer
            mock's own seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MockError(f"seed must be a non-negative integer, got {seed!r}")
    if dust is None:
        dust = DustModel.near_sun(catalog.solar.position, seed=int(seed))
    if not isinstance(dust, DustModel):
        raise MockError(f"dust must be a bayesdyn.mocks.DustModel, got {type(dust).__name__}")
    meta = getattr(catalog, "meta", None) or {}
    if meta.get("mock") == "plummer" and meta.get("seed") == int(seed):
        # plummer draws its radii from default_rng(seed)'s first uniforms, which the removal below draws too
        raise MockError(
            f"seed={seed} is this Plummer mock's own seed: its radii come from the first uniforms of the same numpy "
            "stream as the removal's, so the stars kept would follow their radius, not ε (with equal seeds, 0 of 80 "
            "stars survived in a cloud's core where ε keeps 17 %); pass another seed"
        )
    x = np.asarray(catalog.x, dtype=np.float64)
    eps = np.asarray(dust.efficiency(x), dtype=np.float64)
    keep = np.random.default_rng(int(seed)).random(x.shape[0]) < eps
    if not keep.any():  # catalog.select's "loosen the cut" named no setting of the dust
        raise MockError(
            f"the dust removed all {x.shape[0]} stars (ε at most {eps.max():.3g} at them): use shallower or smaller "
            "clouds (the DustModel's depths and radii), clouds away from the stars, or a larger catalog")
    n_c = dust.centers.shape[0]
    out = catalog.select(keep, f"synthetic dust: {n_c} cloud{'' if n_c == 1 else 's'}, survival probability ε(x) "
                               f"(seed {seed})")
    earlier = out.meta.get("dust_history")
    if earlier is None and "dust" in out.meta:  # dusted by a bayesdyn that kept only the last model
        earlier = [{"dust": out.meta["dust"], "seed": out.meta.get("dust_seed")}]
    applied = [*(earlier or []), {"dust": dust.to_dict(), "seed": int(seed)}]
    out.meta = {**out.meta, "dust": dust.to_dict(), "dust_seed": int(seed), "dust_history": applied}
    return out, dust

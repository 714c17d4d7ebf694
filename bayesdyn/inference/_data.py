"""Data that a potential likelihood consumes: accelerations at nodes, or star-level scores."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["AccelerationData", "StarScoreData", "DEFAULT_SUN"]

#: The Sun's position in astropy's 'v4.0' Galactocentric frame [kpc].
DEFAULT_SUN = (-8.121973372128914, 0.0, 0.0208)


def _check_covariances(cov, name: str, what: str) -> None:
    """Raise a ValueError unless every 3×3 matrix of ``cov`` (..., 3, 3) is finite, symmetric up to rounding
    (|C − Cᵀ| ≤ 10⁻⁵ max |C|: a transposed or mixed-up array had been symmetrised without a word) and positive
    definite."""
    c = np.asarray(cov, dtype=np.float64).reshape((-1, 3, 3))
    if not np.isfinite(c).all():
        bad = int((~np.isfinite(c).all(axis=(1, 2))).sum())
        raise ValueError(f"{bad} of {c.shape[0]} {what} have NaN/inf in {name}; drop them")
    scale = np.abs(c).max(axis=(1, 2))
    asym = np.abs(c - np.swapaxes(c, 1, 2)).max(axis=(1, 2)) > 1e-5 * scale
    if asym.any():
        raise ValueError(f"{int(asym.sum())} of {c.shape[0]} {what}' {name} matrices are not symmetric (first "
                         f"{np.flatnonzero(asym)[:5].tolist()}): a covariance is; check the array's axes")
    bad = int((np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, 1, 2))).min(axis=-1) <= 0).sum())
    if bad:
        raise ValueError(f"{bad} of {c.shape[0]} {what}' {name} matrices are not positive definite; add a noise "
                         "floor (e.g. cov + s² I) or drop those nodes")


class AccelerationData(NamedTuple):
    """Accelerations estimated at nodes, with their covariance.

    Attributes:
        x: node positions, (P, 3) [kpc].
        a: estimated accelerations, (P, 3) [(km/s)²/kpc].
        cov: covariance of each estimate, (P, 3, 3) [((km/s)²/kpc)²]; with an
            ensemble, the spread between members plus the within-member noise.
        sun: the Sun's position (3,) [kpc], where derived local quantities are reported.
        members: per-member accelerations (K, P, 3), or None.
        scale_tril: Cholesky factors of ``cov`` (P, 3, 3), computed once by :meth:`create`.
        member_cov: each member's own (within-member, least-squares) covariance
            (K, P, 3, 3) [((km/s)²/kpc)²], or None; with ``members`` it lets
            :func:`bayesdyn.infer` run one posterior per member and combine them
            (``combine="members"``, the default for ensembles).
        member_groups: the bootstrap resample of each member (K,) int, when the
            flows were fitted with ``fit_psd(seeds_per_resample=L ≥ 2)``
            (``PhaseSpaceDensity.info["resample_groups"]``), else None; the
            members' combination then separates training from sampling variance
            (:func:`bayesdyn.inference.combine_members`).
    """

    x: jax.Array
    a: jax.Array
    cov: jax.Array
    sun: jax.Array
    members: jax.Array | None = None
    scale_tril: jax.Array | None = None
    member_cov: jax.Array | None = None
    member_groups: np.ndarray | None = None

    @property
    def n_members(self) -> int:
        """Number of ensemble members carried (0 without ``members``)."""
        return 0 if self.members is None else int(np.shape(self.members)[0])

    def member(self, k: int) -> "AccelerationData":
        """Member ``k``'s own accelerations with its own covariance (needs ``members`` and ``member_cov``)."""
        if self.members is None or self.member_cov is None:
            raise ValueError("this AccelerationData carries no per-member accelerations and covariances")
        return AccelerationData.create(self.x, self.members[k], self.member_cov[k], sun=self.sun)

    def check_factor(self) -> "AccelerationData":
        """Raise a ValueError when ``scale_tril`` does not factor ``cov`` (concrete arrays; traced ones are left
        alone): after ``data._replace(cov=...)`` the likelihood kept the old factor (a covariance ×100 left it
        unchanged). Returns self."""
        if self.scale_tril is None or any(isinstance(t, jax.core.Tracer) for t in (self.cov, self.scale_tril)):
            return self
        tril, cov = np.asarray(self.scale_tril, np.float64), np.asarray(self.cov, np.float64)
        if tril.shape != cov.shape or not np.allclose(tril @ np.swapaxes(tril, -1, -2), cov, rtol=1e-4,
                                                      atol=1e-4 * np.abs(cov).max(axis=(-1, -2), keepdims=True)):
            raise ValueError("AccelerationData.scale_tril does not factor cov (cov replaced with _replace?); make "
                             "the data with AccelerationData.create(x, a, cov, ...), which computes the factor")
        return self

    @classmethod
    def create(cls, x, a, cov, sun=DEFAULT_SUN, members=None, member_cov=None, member_groups=None) -> "AccelerationData":
        """Validate shapes and make the arrays; ``cov`` must be symmetric positive definite.

        Bare numbers are in kpc, (km/s)²/kpc and ((km/s)²/kpc)²; astropy Quantities are converted (and refused when
        of the wrong kind)."""
        from .. import units as _u

        def floating(v):  # integer input became integer arrays, and the Sun was then cast to them: (−8, 0, 0)
            v = jnp.asarray(v)
            return v if jnp.issubdtype(v.dtype, jnp.floating) else v.astype(jnp.result_type(float))

        x = floating(_u.strip(x, "length", "x"))
        a = floating(_u.strip(a, "acceleration", "a"))
        cov = floating(_u.strip_squared(cov, "acceleration", "cov"))
        sun = _u.strip(sun, "length", "sun")
        members = None if members is None else _u.strip(members, "acceleration", "members")
        member_cov = None if member_cov is None else _u.strip_squared(member_cov, "acceleration", "member_cov")
        if x.ndim != 2 or x.shape[1] != 3 or a.shape != x.shape:
            raise ValueError(f"x and a must both be (P, 3); got {x.shape} and {a.shape}")
        if cov.shape != x.shape + (3,):
            raise ValueError(f"cov must be (P, 3, 3) = {x.shape + (3,)}; got {cov.shape}")
        if not (np.isfinite(np.asarray(a)).all() and np.isfinite(np.asarray(cov)).all() and np.isfinite(np.asarray(x)).all()):
            bad = int((~np.isfinite(np.asarray(a)).all(-1) | ~np.isfinite(np.asarray(cov)).all((-1, -2))
                       | ~np.isfinite(np.asarray(x)).all(-1)).sum())
            raise ValueError(f"{bad} of {x.shape[0]} nodes have NaN/inf positions, accelerations or covariances; "
                             "drop those nodes")
        if np.shape(sun) != (3,) or not np.isfinite(np.asarray(sun, dtype=float)).all():
            raise ValueError(f"sun must be 3 finite numbers, the Sun's Galactocentric (x, y, z) [kpc]; got "
                             f"{np.asarray(sun).tolist()}")  # (it failed only after sampling, in the derived values)
        _check_covariances(cov, "cov", "nodes")
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        if members is not None:
            members = floating(members)
            if members.ndim != 3 or members.shape[1:] != x.shape:
                raise ValueError(f"members must be (K, P, 3) with P = {x.shape[0]}; got {members.shape}")
            if not np.isfinite(np.asarray(members)).all():
                bad = np.flatnonzero(~np.isfinite(np.asarray(members)).all(axis=(1, 2)))
                raise ValueError(f"members {bad.tolist()} have NaN/inf accelerations; drop those members (or the "
                                 "nodes where they are undefined)")
        if member_cov is not None:
            member_cov = floating(member_cov)
            if members is None or member_cov.shape != members.shape + (3,):
                raise ValueError(
                    f"member_cov must be (K, P, 3, 3) matching members; got {member_cov.shape} "
                    f"(members {None if members is None else members.shape})"
                )
            _check_covariances(member_cov.reshape((-1, 3, 3)), "member_cov", "member nodes")
            member_cov = 0.5 * (member_cov + jnp.swapaxes(member_cov, -1, -2))
        if member_groups is not None:
            member_groups = np.asarray(member_groups)
            if members is None or member_groups.shape != members.shape[:1] \
                    or not np.issubdtype(member_groups.dtype, np.integer):
                raise ValueError(
                    f"member_groups must give one integer resample label per member; got {member_groups!r} "
                    f"(members {None if members is None else members.shape})"
                )
        return cls(
            x,
            a,
            cov,
            jnp.asarray(sun, dtype=x.dtype),
            members,
            # in float64, as the check above: a float32 factor of a covariance that passed it (eigenvalues 1, 1,
            # 4e-8) came out NaN, and the likelihood with it
            jnp.asarray(np.linalg.cholesky(np.asarray(cov, dtype=np.float64)), dtype=cov.dtype),
            member_cov,
            member_groups,
        )


class StarScoreData(NamedTuple):
    """Star-level inputs of the CBE residual likelihood.

    **Its independent Gaussian per star is overconfident**: the flows' score errors
    are smooth fields, correlated between stars, so the posterior narrows as 1/√N
    while the error does not (a prototype put the truth 9–117 σ away; DESIGN §6).
    Use it for point estimates (MAP, :func:`bayesdyn.neural.fit_map`), not for
    intervals; :func:`bayesdyn.infer` warns.

    Attributes:
        x: positions (N, 3) [kpc]; v: velocities (N, 3) [km/s].
        s_x: ensemble-mean ∂log f/∂x (N, 3) [1/kpc]; s_v: ensemble-mean ∂log f/∂v (N, 3) [s/km].
        sigma: per-star residual scale (N,) [km/s/kpc], e.g. the ensemble spread of
            the residual; the likelihood treats residuals as N(0, sigma²·tempering).
        sun: the Sun's position (3,) [kpc].
    """

    x: jax.Array
    v: jax.Array
    s_x: jax.Array
    s_v: jax.Array
    sigma: jax.Array
    sun: jax.Array

    def check(self) -> "StarScoreData":
        """Raise a ValueError naming the problem for wrong shapes, non-finite rows or sigma ≤ 0 (concrete arrays;
        traced ones are left alone). Returns self."""
        if any(isinstance(a, jax.core.Tracer) for a in self):
            return self
        quantities = [n for n, a in zip(self._fields, self) if hasattr(a, "unit")]
        if quantities:  # (np.asarray kept a Quantity's numbers: velocities in m/s were read as km/s)
            raise ValueError(f"StarScoreData.{', '.join(quantities)}: astropy Quantities are not converted here; "
                             "pass numbers in kpc (x, sun), km/s (v), 1/kpc (s_x), s/km (s_v) and km/s/kpc (sigma), "
                             "e.g. bayesdyn.units.strip(v, 'velocity')")
        x, v, sx, sv, sigma, sun = (np.asarray(a, dtype=float) for a in self)
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"StarScoreData.x must be (N, 3) [kpc]; got {x.shape}")
        for name, arr in (("v", v), ("s_x", sx), ("s_v", sv)):
            if arr.shape != x.shape:
                raise ValueError(f"StarScoreData.{name} must be (N, 3) = {x.shape} like x; got {arr.shape}")
        if sigma.shape not in ((), x.shape[:1]):
            raise ValueError(f"StarScoreData.sigma must be one residual scale or one per star (N,) = {x.shape[:1]}; "
                             f"got {sigma.shape}")
        sigma = np.broadcast_to(sigma, x.shape[:1])
        if sun.shape != (3,) or not np.isfinite(sun).all():
            raise ValueError(f"StarScoreData.sun must be 3 finite numbers [kpc]; got {sun.tolist()}")
        bad = ~(np.isfinite(x).all(1) & np.isfinite(v).all(1) & np.isfinite(sx).all(1) & np.isfinite(sv).all(1)
                & np.isfinite(sigma))
        if bad.any():
            raise ValueError(f"{int(bad.sum())} of {x.shape[0]} stars (first {np.flatnonzero(bad)[:5].tolist()}) have "
                             "NaN/inf positions, velocities, scores or sigma; drop them")
        if (sigma <= 0).any():
            raise ValueError(f"{int((sigma <= 0).sum())} stars have sigma ≤ 0; sigma is a residual scale "
                             "[km/s/kpc] and must be > 0")
        return self


class WeakFormData(NamedTuple):
    """Inputs of the weak-form CBE likelihood (:func:`bayesdyn.dynamics.weak_form_data`).

    Test function m = (a, c) is ψ_m = W_a(x) Q_c(v). For a model acceleration a(x), each star i gives
    g_im = transport_im + W_a(x_i) ∂Q_c/∂v(v_i)·a(x_i), whose mean over the stars vanishes in equilibrium;
    the log-likelihood is the GMM quadratic form −½ N |whiten · ḡ|², with whiten such that
    whiten · S · whitenᵀ = 1 for the moments' covariance S (:func:`bayesdyn.inference.weak_form_weights`,
    which :func:`bayesdyn.infer` calls, sets it at the model's mode; :func:`weak_form_data` gives only a
    per-moment scaling).

    With a known selection efficiency ε(x) (``weak_form_data(..., efficiency=)``), ``transport`` and ``window``
    carry each star's weight 1/ε(x_i) (normalised to mean 1).

    Attributes:
        x: positions of the N stars inside the ball (N, 3) [kpc].
        transport: v·∇ₓψ_m at each star (N, M) [km/s/kpc].
        window: the spatial factors W_a (N, n_a).
        dq_v: the velocity factors' gradients ∂Q_c/∂v (N, n_c, 3) [s/km]; M = n_a · n_c.
        whiten: (M, M) [kpc s/km].
        sun: the Sun's position (3,) [kpc].
        ball: the ball's centre and radius (4,) [kpc].
        fixed_acceleration: the accelerations of the model's fixed components at the stars (N, 3)
            [(km/s)²/kpc] (with position errors their :meth:`field`, (N, 3, 5)), which
            :func:`~bayesdyn.inference.weak_form_weights` stores so that NUTS does not recompute them (valid only
            with the model it was given); None: computed in every step.
        constant_moments, linear_moments: when every free parameter of the model is the amplitude of its own
            component (the acceleration proportional to it: masses and densities with the shapes fixed),
            ḡ(θ) = constant_moments + θ · linear_moments exactly, with ``constant_moments`` (M,) the fixed
            components' ḡ and ``linear_moments`` (K, M) each free parameter's per unit, in the order of
            ``model.free_parameters()``; :func:`bayesdyn.infer` stores them so that a NUTS step costs O(K M)
            instead of O(N M) (valid only with the model it was given); None: computed from the stars.
        position_covariance, window_curvature, window_gradient: with position errors
            (``weak_form_data(..., position_errors=)``), each star's position-error covariance C (N, 3, 3)
            [kpc²], μ·∇W_a + ½ tr(C ∇²W_a) (N, n_a) and C ∇W_a + W_a μ (N, n_a, 3) [kpc] (μ: the errors' mean
            position, ``error_mean``; 0 unless given or from a Gaia catalog): the acceleration term
            W_a a·∂Q_c/∂v is then corrected to second order in the errors, which needs a's first and second
            derivatives at the stars, so model accelerations enter as :meth:`field` (N, 3, 5) instead of a
            (N, 3). None: no position errors.
    """

    x: jax.Array
    transport: jax.Array
    window: jax.Array
    dq_v: jax.Array
    whiten: jax.Array
    sun: jax.Array
    ball: jax.Array
    fixed_acceleration: jax.Array | None = None
    constant_moments: jax.Array | None = None
    linear_moments: jax.Array | None = None
    position_covariance: jax.Array | None = None
    window_curvature: jax.Array | None = None
    window_gradient: jax.Array | None = None

    @property
    def n_stars(self) -> int:
        return int(self.x.shape[0])

    def field(self, acceleration: Callable[[jax.Array], jax.Array]) -> jax.Array:
        """What :meth:`moments` takes for the acceleration field ``acceleration`` (positions (N, 3) [kpc] →
        (N, 3) [(km/s)²/kpc]): its values at the stars (N, 3); with position errors, also its Jacobian ∂a_j/∂x_l
        and tr(C ∇²a_j) there, stacked as (N, 3, 5) = [a | ∂a/∂x | tr(C∇²a)]. Linear in the field, so the
        fields of a sum of components add."""
        a = acceleration(self.x)
        if self.position_covariance is None:
            return a

        def one(y):
            return acceleration(y[None])[0]

        def jacobian(y):  # ∂a/∂x twice: differentiated once more below, and kept as the auxiliary output
            j = jax.jacfwd(one)(y)
            return j, j

        hess, jac = jax.vmap(jax.jacfwd(jacobian, has_aux=True))(self.x)  # one pass for both
        curv = jnp.einsum("njkl,nkl->nj", hess, self.position_covariance)
        return jnp.concatenate([a[..., None], jac, curv[..., None]], axis=-1)

    def _acceleration_terms(self, a: jax.Array) -> jax.Array:
        """W_a ∂Q_c/∂v·a per star (N, n_a, n_c); with position errors corrected to second order in them."""
        if self.position_covariance is None:
            if a.shape != self.x.shape:
                raise ValueError(f"model accelerations must be (N, 3) = {self.x.shape}; got {a.shape}")
            return self.window[:, :, None] * jnp.einsum("nci,ni->nc", self.dq_v, a)[:, None, :]
        if a.shape != self.x.shape + (5,):
            raise ValueError(f"these weak-form data correct position errors, which needs the field's derivatives: "
                             f"pass data.field(acceleration_function), shape {self.x.shape + (5,)}, not {a.shape}")
        value, jac, curv = a[..., 0], a[..., 1:4], a[..., 4]
        # ½ tr(C ∇²(a_j W_a)) = ½ W_a tr(C∇²a_j) + ∇a_j·C∇W_a + ½ a_j tr(C∇²W_a), and the mean's
        # μ·∇(a_j W_a) = a_j μ·∇W_a + ∇a_j·W_a μ (in window_curvature and window_gradient), subtracted
        eff = (value[:, None, :] * (self.window - self.window_curvature)[:, :, None]
               - jnp.einsum("njl,nal->naj", jac, self.window_gradient)
               - 0.5 * curv[:, None, :] * self.window[:, :, None])
        return jnp.einsum("nci,nai->nac", self.dq_v, eff)

    @property
    def n_moments(self) -> int:
        return int(self.transport.shape[1])

    def mean_moments(self, a: jax.Array) -> jax.Array:
        """ḡ (M,) for model accelerations a (N, 3) at the stars [km/s/kpc] (with position errors: :meth:`field`)."""
        return jnp.mean(self.transport, axis=0) + self.acceleration_moments(a)

    def acceleration_moments(self, a: jax.Array) -> jax.Array:
        """ḡ's acceleration term alone, the mean of W_a ∂Q_c/∂v·a (M,) [km/s/kpc]: linear in a (N, 3) (with position
        errors: in :meth:`field`)."""
        if self.position_covariance is None:  # (the same sum as below, without the (N, M) intermediate)
            t = jnp.einsum("nci,ni->nc", self.dq_v, a)
            return (self.window.T @ t).reshape(-1) / self.x.shape[0]
        return jnp.mean(self._acceleration_terms(a), axis=0).reshape(-1)

    def moments(self, a: jax.Array) -> jax.Array:
        """Per-star moments g (N, M) for model accelerations a (N, 3) at the stars [km/s/kpc] (or, with position
        errors, :meth:`field`)."""
        return self.transport + self._acceleration_terms(a).reshape(self.transport.shape)

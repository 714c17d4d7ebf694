"""Neural scalar fields of position for the selection: the efficiency ε(x) and the true tracer density.

Why two fields, and what the data can tell (DESIGN §3). A survey sees
f_obs(x, v) = ε(x) f(x, v) with 0 < ε ≤ 1, so s_v is unchanged and
s_x,obs = s_x + ∇log ε; the equilibrium CBE becomes

    v·(s_x,obs − ∇log ε) + a·s_v = 0.                                     (joint)

Writing f = n(x) p(v|x) gives the equivalent velocity-only form (Kalda & Green
2512.02115): p(v|x) is the same for the observed and the true stars, and with
n_true = n_obs/ε,

    v·∇_x log p(v|x) + a·∇_v log p(v|x) + v·∇log n_true = 0.              (tracer)

Both are the same equation: only ∇log ε (equivalently ∇log n_true) enters, so the
CBE fixes log ε up to an additive constant. :class:`NeuralEfficiency`
parameterises ε = σ(MLP) ≤ 1 and fixes the constant by the normalisation that
a survey's completeness reaches 1 somewhere: ``log_norm`` is the largest log ε over
a reference sample (the training stars), so ε/max ε ≤ 1 there, = 1 in the clearest
place. :class:`NeuralTracerDensity` parameterises log n_true directly (a constant
is again free).

A further, physical degeneracy: at one position the residual is linear in
(∇log ε, a), with regressors v and s_v. If p(v|x) is a Gaussian with mean u and
covariance Σ then s_v = −Σ⁻¹(v − u) is affine in v, and only ∇log ε + Σ⁻¹a and
a·Σ⁻¹u are constrained — a change of the tracer density trades against a change of
the acceleration (the hydrostatic degeneracy of the Jeans equation). What separates
them is the non-Gaussianity of p(v|x) (skewed azimuthal velocities, non-Maxwellian
wings) and a mean streaming u. Measured on the disk mock (quasi-isothermal DF, exact
scores at 1500 velocities at one position 0.3 kpc from the Sun): solving for the six
unknowns (∇log ε, a) recovers a to 0.03 % and ∇log ε ≈ 0; the weakest direction is
the pair (∂_z log ε, a_z), 13× less constrained than the best, and 5 % score noise
moves a_z by 10 %. So the data identify ε and a, weakest in the vertical
direction. A joint fit of both networks works where the CBE is this informative:
on 5565 stars of the disk mock behind four 90 % clouds, with exact scores, the rms
acceleration error inside the clouds is 161 (km/s)²/kpc against 665 without the
correction (|a| ≈ 6160), and the learnt ε correlates with the truth at r = 0.989
(4000 Adam steps, batch 1024). With flow scores it does not: on 10⁵ stars of the same
mock the learnt ε correlates with the truth at r = 0.50 and the in-cloud error falls only
1.65× — the flows do not resolve 0.25 kpc holes in n(x) (docs/gallery/notes.md). Several velocities per position
(``velocities_per_star`` of :func:`fit_neural_potential`) add exactly the
information that separates the two; the structure of the models helps further:
a = −∇Φ is one smooth potential, and dust absorbed into a would be a repulsive,
negative-density spot at each cloud (``density_penalty``).
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution

from .. import units as _units
from ._network import Architecture
from ._potential import _positions3, check_weights, weight_prior

__all__ = ["NeuralEfficiency", "NeuralTracerDensity", "EFFICIENCY_OFFSET"]

EFFICIENCY_OFFSET = 0.0
"""Constant added to the efficiency network's output before the sigmoid. Zero: a fresh network starts at ε ≈ σ(0)
= 1/2, where ∂log σ/∂u = 1/2. An offset that starts near ε ≈ 1 (e.g. σ(4) = 0.98) puts every star on the
sigmoid's flat tail, where ∂log σ/∂u = 1 − ε ≈ 0.02: the efficiency then learns so slowly that the potential
absorbs the dust first (measured on the disk mock with exact scores, 8000 (x, v) pairs: ε–truth correlation 0.55
with offset 4 and 0.96 with 0 after 1500 steps; offset 4 reached only 0.58 after 3000). Only ∇log ε enters the
CBE, and :meth:`NeuralEfficiency.normalised` sets the level afterwards."""


@functools.partial(jax.jit, static_argnames="method")
def _batched(field: "_ScalarField", x: jax.Array, method: str) -> jax.Array:
    return jax.vmap(getattr(field, method))(x)


def _points(x: Any, what: str) -> jax.Array:
    x = _units.strip(x, "length", name="x")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(f"{what}: positions must have shape (3,) or (N, 3) [kpc]; got {tuple(x.shape)}")
    return x


class _ScalarField(eqx.Module):
    """A scalar field of position from one MLP (or K: an ensemble); see the subclasses.

    Subclasses implement ``_log_one(w, x)``: the field's log value for one network
    and one position (3,) [kpc], before the normalisation ``log_norm``.
    """

    weights: Any
    center: jax.Array
    scale: jax.Array
    log_norm: jax.Array
    architecture: Architecture = eqx.field(static=True)
    initial_weights: Any = None

    kind: ClassVar[str] = "field"

    def __init__(self, weights, architecture: Architecture, center, scale, log_norm=0.0, initial_weights=None):
        if not isinstance(architecture, Architecture):
            raise TypeError(f"architecture must be a bayesdyn.neural.Architecture, got {type(architecture).__name__}")
        name = type(self).__name__
        self.architecture = architecture
        self.weights = check_weights(weights, architecture, name)
        self.center = _positions3(center, f"{name}.center")
        self.scale = _positions3(scale, f"{name}.scale")
        if not bool(jnp.all(self.scale > 0)):
            raise ValueError(f"{name}.scale must be positive lengths [kpc]; got {np.asarray(self.scale).tolist()}")
        if not bool(jnp.all(jnp.isfinite(self.center)) & jnp.all(jnp.isfinite(self.scale))):  # (NaN: every output NaN)
            raise ValueError(f"{name}.center and scale must be finite [kpc]; got {np.asarray(self.center).tolist()} "
                             f"and {np.asarray(self.scale).tolist()}")
        self.log_norm = jnp.asarray(log_norm, dtype=jnp.result_type(float))
        if not isinstance(self.log_norm, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(self.log_norm))):
            raise ValueError(f"{name}.log_norm must be finite; got {np.asarray(self.log_norm).tolist()}")
        self.initial_weights = None if initial_weights is None else jnp.asarray(initial_weights)

    @abc.abstractmethod
    def _log_one(self, w: jax.Array, x: jax.Array) -> jax.Array:
        """Un-normalised log field of one network at one position."""

    # ------------------------------------------------------------------ parameters (as potentials' Component)
    def free_parameters(self) -> dict[str, Distribution]:
        """``{"weights": prior}`` when the weights are a prior, else ``{}``."""
        return {"weights": self.weights} if isinstance(self.weights, Distribution) else {}

    def bind(self, values: Mapping[str, Any]) -> "_ScalarField":
        """A copy with ``values["weights"]`` (P,) in place of the prior."""
        unknown = sorted(set(values) - {"weights"})
        if unknown:
            raise KeyError(f"{type(self).__name__}.bind: unknown parameter(s) {unknown}; the only one is 'weights'")
        if "weights" not in values:
            return self
        return eqx.tree_at(lambda m: m.weights, self, values["weights"])

    def sample(self, prefix: str | None = None) -> "_ScalarField":
        """Inside a NumPyro model: draw the weights (site ``f"{prefix}.weights"``) and bind them."""
        import numpyro

        free = self.free_parameters()
        if not free:
            return self
        name = f"{prefix}.weights" if prefix else "weights"
        return self.bind({"weights": numpyro.sample(name, free["weights"])})

    def with_prior(self, scale: float = 1.0, around: str = "zero") -> "_ScalarField":
        """A copy whose weights are free with a Gaussian prior (see :meth:`NeuralPotential.with_prior`)."""
        w = self._single_weights("with_prior")
        if around not in ("zero", "current"):
            raise ValueError(f"around={around!r} must be 'zero' or 'current'")
        prior = weight_prior(self.architecture, scale, None if around == "zero" else w)
        return type(self)(prior, self.architecture, self.center, self.scale, jnp.ravel(self.log_norm)[0], w)

    def _single_weights(self, what: str) -> jax.Array:
        if isinstance(self.weights, Distribution):
            if self.initial_weights is None:
                raise ValueError(f"{type(self).__name__}.{what}: the weights are a prior and no initial weights are known")
            return self.initial_weights
        w = jnp.atleast_2d(self.weights)
        if w.shape[0] != 1:
            raise ValueError(f"{type(self).__name__}.{what} needs one network; this ensemble has {w.shape[0]}")
        return w[0]

    def _require_bound(self, what: str) -> None:
        if isinstance(self.weights, Distribution):
            raise ValueError(
                f"{what}: the weights are still a prior; bind values first (field.bind({{'weights': w}})) "
                "or, inside a NumPyro model, field.sample('name')"
            )

    @property
    def n_members(self) -> int:
        """Number of networks K."""
        if isinstance(self.weights, Distribution):
            return 1
        return 1 if self.weights.ndim == 1 else int(self.weights.shape[0])

    def member(self, k: int) -> "_ScalarField":
        """The k-th network as a one-network field (with its own normalisation)."""
        self._require_bound(f"{type(self).__name__}.member")
        w = jnp.atleast_2d(self.weights)
        if not -w.shape[0] <= k < w.shape[0]:
            raise IndexError(f"member {k} out of range for {w.shape[0]} networks")
        norm = jnp.broadcast_to(self.log_norm, (w.shape[0],))[k]
        return type(self)(w[k], self.architecture, self.center, self.scale, norm)

    # ------------------------------------------------------------------ single point
    def _norms(self) -> jax.Array:
        return jnp.broadcast_to(self.log_norm, (jnp.atleast_2d(self.weights).shape[0],))

    def _log_members(self, x):
        return jax.vmap(lambda w: self._log_one(w, x))(jnp.atleast_2d(self.weights)) - self._norms()

    def _grad_log_members(self, x):
        return jax.vmap(lambda w: jax.grad(self._log_one, argnums=1)(w, x))(jnp.atleast_2d(self.weights))

    def _grad_log(self, x):
        return jnp.mean(self._grad_log_members(x), axis=0)

    def _evaluate(self, method: str, x: Any, what: str) -> jax.Array:
        self._require_bound(what)
        x = _points(x, what)
        out = _batched(self, x.reshape(-1, 3), method)
        out = out.reshape(x.shape[:-1] + out.shape[1:])
        return out

    def _members(self, method: str, x: Any, vector: bool) -> jax.Array:
        out = self._evaluate(method, x, f"{type(self).__name__}.{method[1:]}")
        return jnp.moveaxis(out, out.ndim - (2 if vector else 1), 0)

    def normalised(self, x: Any) -> "_ScalarField":
        """A copy whose ``log_norm`` makes each member's largest value over positions ``x`` equal to 1.

        Args:
            x: reference positions (N, 3) [kpc], e.g. the training stars.
        """
        self._require_bound(f"{type(self).__name__}.normalised")
        raw = eqx.tree_at(lambda m: m.log_norm, self, jnp.zeros_like(self._norms()))
        logs = raw._members("_log_members", x, vector=False)  # (K, N)
        return eqx.tree_at(lambda m: m.log_norm, self, jnp.max(jnp.atleast_2d(logs), axis=-1))

    # ------------------------------------------------------------------ persistence
    def header(self) -> dict[str, Any]:
        """Plain-JSON description (everything but the weights)."""
        return {
            "kind": self.kind,
            "architecture": self.architecture.to_dict(),
            "center_kpc": np.asarray(self.center, dtype=float).tolist(),
            "scale_kpc": np.asarray(self.scale, dtype=float).tolist(),
            "log_norm": np.atleast_1d(np.asarray(self.log_norm, dtype=float)).tolist(),
            "members": self.n_members,
            "efficiency_offset": EFFICIENCY_OFFSET,
        }

    @classmethod
    def from_header(cls, header: dict[str, Any], weights: Any) -> "_ScalarField":
        """Inverse of :meth:`header` with the weights array."""
        if header.get("kind") != cls.kind:
            raise ValueError(f"header describes a {header.get('kind')!r}, not a {cls.kind!r}")
        if header.get("efficiency_offset", EFFICIENCY_OFFSET) != EFFICIENCY_OFFSET:
            raise ValueError(
                f"these weights were fitted with the sigmoid offset {header['efficiency_offset']}, this bayesdyn uses "
                f"{EFFICIENCY_OFFSET}: the same weights would give another ε(x). Refit with this version"
            )
        norm = np.asarray(header["log_norm"], dtype=float)
        return cls(
            weights,
            Architecture.from_dict(header["architecture"]),
            header["center_kpc"],
            header["scale_kpc"],
            norm if norm.size > 1 else float(norm[0]),
        )


class NeuralEfficiency(_ScalarField):
    """A selection / dust efficiency ε(x) > 0 from an MLP with a sigmoid output, 1 at most over its training stars.

    ε_k(x) = σ(MLP_{w_k}((x − c)/s)) / exp(log_norm_k), for one network (weights
    (P,)) or K (weights (K, P), one per phase-space-density member; then
    :meth:`efficiency` is the member mean and ``*_members`` each member). Only
    ∇log ε enters the CBE, so the scale is fixed by :meth:`normalised` (largest ε
    over the training stars = 1): ε ≤ 1 holds on those stars only, and elsewhere
    (a grid, held-out stars) the extrapolation can exceed 1 (a random 2-member
    network normalised on 200 points reached 1.05 and 1.16 over a 4× wider
    volume); see the module notes on identifiability.

    Args:
        weights: flat MLP weights (P,) or (K, P), or a prior with event shape (P,).
        architecture: the MLP's :class:`Architecture`.
        center: input centre (3,) [kpc].
        scale: input scale, scalar or (3,) [kpc].
        log_norm: subtracted from log ε, scalar or (K,) (dimensionless).
        initial_weights: values to start a MAP fit from when ``weights`` is a prior.
    """

    kind: ClassVar[str] = "efficiency"

    def _log_one(self, w, x):
        z = (x - self.center) / self.scale
        return jax.nn.log_sigmoid(self.architecture.apply(w, z) + EFFICIENCY_OFFSET)

    def efficiency_members(self, x: Any) -> jax.Array:
        """Each network's ε, shape (K,) or (K, N) (dimensionless).

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return jnp.exp(self._members("_log_members", x, vector=False))

    def efficiency(self, x: Any) -> jax.Array:
        """ε(x), the members' arithmetic mean of ε_k, shape () or (N,) (dimensionless).

        Not the ε whose log-gradient :meth:`grad_log_efficiency` gives: that is the mean of the members' ∇log ε_k,
        the gradient of the log of their geometric mean (as the CBE averages members' scores). Where the members
        disagree the two differ; ``exp(mean(log_efficiency_members(x)))`` is that geometric mean, up to the
        members' normalisations.

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return jnp.mean(self.efficiency_members(x), axis=0)

    def log_efficiency_members(self, x: Any) -> jax.Array:
        """Each network's log ε, shape (K,) or (K, N).

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._members("_log_members", x, vector=False)

    def grad_log_efficiency_members(self, x: Any) -> jax.Array:
        """Each network's ∇log ε, shape (K, 3) or (K, N, 3) [1/kpc].

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._members("_grad_log_members", x, vector=True)

    def grad_log_efficiency(self, x: Any) -> jax.Array:
        """∇log ε(x), the mean of the members' ∇log ε_k, shape (3,) or (N, 3) [1/kpc]: what the CBE subtracts from
        s_x,obs. It is the gradient of the log of the members' geometric mean, not of :meth:`efficiency` (their
        arithmetic mean).

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._evaluate("_grad_log", x, "NeuralEfficiency.grad_log_efficiency")


class NeuralTracerDensity(_ScalarField):
    """The true tracer density, log n_true(x) = MLP_w((x − c)/s) − log_norm, up to a constant.

    The unknown of the velocity-only form of the CBE (module notes; Kalda & Green
    2512.02115): fitted with ∇_x log p(v|x), which a spatial selection leaves
    untouched. With an observed density n_obs (e.g. ``psd.number_density``), the
    efficiency follows as ε ∝ n_obs/n_true (:meth:`efficiency`).

    Args:
        weights: flat MLP weights (P,) or (K, P), or a prior with event shape (P,).
        architecture: the MLP's :class:`Architecture`.
        center: input centre (3,) [kpc].
        scale: input scale, scalar or (3,) [kpc].
        log_norm: subtracted from log n, scalar or (K,).
        initial_weights: values to start a MAP fit from when ``weights`` is a prior.
    """

    kind: ClassVar[str] = "tracer_density"

    def _log_one(self, w, x):
        z = (x - self.center) / self.scale
        return self.architecture.apply(w, z)

    def log_density_members(self, x: Any) -> jax.Array:
        """Each network's log n_true (relative), shape (K,) or (K, N).

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._members("_log_members", x, vector=False)

    def grad_log_density(self, x: Any) -> jax.Array:
        """∇log n_true, member mean, shape (3,) or (N, 3) [1/kpc].

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._evaluate("_grad_log", x, "NeuralTracerDensity.grad_log_density")

    def efficiency(self, x: Any, observed_density: Any, quantile: float = 0.99) -> jax.Array:
        """ε(x) ∝ n_obs/n_true, normalised so that the ratio's ``quantile`` over ``x`` is 1, and at most 1; shape (N,).

        Keep ``x`` inside the stars' bulk: n_true is learnt from the stars, and beyond them the network extrapolates.
        The normalisation is a high quantile rather than the largest ratio, which one such point set (an
        independent review: the farthest of a Plummer sphere's training stars made ε ≈ 0 at all the others).
        Points whose ratio is above the quantile's are at 1; a warning counts those more than twice above it. Not
        traceable: call it outside ``jax.jit`` and ``jax.grad`` (the checks and the warning read the values).

        Args:
            x: positions (N, 3) [kpc].
            observed_density: n_obs at ``x`` [stars/kpc³] (or any multiple), shape (N,), finite and > 0.
            quantile: the quantile of n_obs/n_true over ``x`` that is taken as ε = 1 (the selection-free level).

        Raises:
            ValueError: ``observed_density`` not of shape (N,), not finite, or not > 0 (it had been broadcast, or
                given ε = 0 or NaN); ``quantile`` not in (0, 1].
        """
        x = _points(x, "NeuralTracerDensity.efficiency")
        n_obs = np.asarray(observed_density, dtype=float)
        if x.ndim != 2 or n_obs.shape != x.shape[:1]:
            raise ValueError(f"NeuralTracerDensity.efficiency: observed_density has shape {n_obs.shape}; give one "
                             f"value per position, shape ({x.shape[0] if x.ndim == 2 else 'N'},), with x (N, 3)")
        if not (np.isfinite(n_obs).all() and (n_obs > 0).all()):
            bad = int(np.sum(~(np.isfinite(n_obs) & (n_obs > 0))))
            raise ValueError(f"NeuralTracerDensity.efficiency: {bad} observed densities are not finite and > 0; "
                             "evaluate it inside the catalog's bulk (psd.number_density(x))")
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile={quantile!r} must lie in (0, 1]")
        log_ratio = jnp.log(jnp.asarray(n_obs)) - jnp.mean(self.log_density_members(x), axis=0)
        level = jnp.quantile(log_ratio, quantile, method="lower")  # (a point's own ratio: 2nd largest of < 100)
        far = int(jnp.sum(log_ratio > level + np.log(2.0)))
        if far:
            import warnings

            worst = int(jnp.argmax(log_ratio))
            warnings.warn(
                f"NeuralTracerDensity.efficiency: {far} of {x.shape[0]} points have n_obs/n_true more than twice its "
                f"{quantile:g} quantile (the largest {float(jnp.exp(log_ratio[worst] - level)):.3g}× at "
                f"{np.asarray(x[worst]).round(3).tolist()} kpc); their ε is set to 1. The learnt n_true "
                "extrapolates where there are few stars: keep x inside the catalog's bulk",
                RuntimeWarning, stacklevel=2)
        return jnp.exp(jnp.minimum(log_ratio - level, 0.0))

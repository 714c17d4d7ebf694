"""The neural potential: Φ(x) from one MLP or the mean of an ensemble, a potentials Component."""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution

from .. import units as _units
from ..potentials import PotentialComponent
from ._network import Architecture

__all__ = ["NeuralPotential", "weight_prior", "check_weights"]

_FOUR_PI_G = 4.0 * np.pi * _units.G


def check_weights(weights: Any, arch: Architecture, owner: str) -> Any:
    """Validate flat network weights: (P,) or (K, P) finite floats, or a prior with event shape (P,).

    Returns:
        A JAX array, or the distribution unchanged.
    """
    p = arch.n_weights()
    if isinstance(weights, Distribution):
        if weights.batch_shape != () or weights.event_shape != (p,):
            raise ValueError(
                f"{owner}.weights: a prior on the weights must have event shape ({p},) and no batch shape; got "
                f"batch {weights.batch_shape}, event {weights.event_shape}. Fix: use "
                f"{owner}.with_prior(...) or dist.Normal(jnp.zeros({p}), s).to_event(1)"
            )
        return weights
    w = jnp.asarray(weights)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.result_type(float))
    if w.ndim not in (1, 2) or w.shape[-1] != p:
        raise ValueError(
            f"{owner}.weights must have shape ({p},) or (K, {p}) for {arch}; got {tuple(w.shape)}"
        )
    if not isinstance(w, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(w))):
        bad = int((~np.isfinite(np.atleast_2d(np.asarray(w)))).any(axis=1).sum())
        raise ValueError(f"{owner}.weights: {bad} member(s) have NaN/inf weights (a diverged fit); refit or drop them")
    return w


def weight_prior(arch: Architecture, scale: float = 1.0, loc: Any = None):
    """A Gaussian prior on flat MLP weights: N(loc, (scale/√fan_in)²) per entry, event shape (P,).

    Args:
        arch: the network's architecture.
        scale: prior width in units of 1/√fan_in (equinox's initialisation width).
        loc: prior mean (P,) (default zeros).
    """
    import numpyro.distributions as dist

    s = jnp.asarray(scale * arch.fan_in_scales(), dtype=jnp.result_type(float))
    m = jnp.zeros_like(s) if loc is None else jnp.asarray(loc, dtype=s.dtype)
    return dist.Normal(m, s).to_event(1)


def _positions3(value: Any, name: str) -> jax.Array:
    value = _units.strip(value, "length", name=name)
    arr = jnp.asarray(np.broadcast_to(np.asarray(value, dtype=np.float64), (3,)).copy())
    return arr


class NeuralPotential(PotentialComponent):
    """A model-free potential: Φ(x) = A · MLP_w((x − c) / s), or the mean of K such networks.

    The MLP (equinox, smooth activation) maps standardised positions to a number;
    A [(km/s)²] sets its scale, c [kpc] and s (per axis) [kpc] its input
    standardisation. The acceleration a = −∇Φ is curl-free by construction and the
    density ρ = ∇²Φ/4πG is the autodiff Laplacian (:class:`PotentialComponent`).
    Φ has an arbitrary zero point, set to Φ(c) = 0 for every network (not zero at
    infinity: compare differences, e.g. with a reference model's Φ(x) − Φ(c)), and is
    meaningful only where the training stars were.

    ``weights`` has shape (P,) (one network) or (K, P) (an ensemble: one network per
    phase-space-density member, fitted by :func:`fit_neural_potential`). With K > 1,
    Φ, a and ρ are member means (Φ is linear in the members, so the mean density is
    the Laplacian of the mean potential) and ``*_members`` give each member, whose
    spread is the uncertainty.

    ``weights`` may also be a numpyro distribution with event shape (P,) (see
    :meth:`with_prior`): the component then has one free parameter, ``weights``,
    and works inside :class:`bayesdyn.inference.PotentialModel` (sites
    ``"<name>.weights"``) for MAP/SVI fits (:func:`fit_map`).

    Args:
        weights: flat MLP weights (P,) or (K, P), or a prior with event shape (P,).
        architecture: the MLP's :class:`Architecture`.
        center: input centre c (3,) [kpc].
        scale: input scale s, scalar or (3,) [kpc].
        amplitude: A [(km/s)²]; a ≈ A/s for unit-size network gradients.
        initial_weights: values to start a MAP fit from when ``weights`` is a prior.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ("weights",)
    parameter_types: ClassVar[tuple[str, ...]] = ("dimensionless",)
    #: fixed settings that ``PotentialModel``'s repr (and so every cache keyed by it) shows
    fixed_arrays: ClassVar[tuple[str, ...]] = ("center", "scale", "amplitude")

    weights: Any
    center: jax.Array
    scale: jax.Array
    amplitude: float
    architecture: Architecture = eqx.field(static=True)
    initial_weights: Any = None

    def __init__(self, weights, architecture: Architecture, center, scale, amplitude, initial_weights=None):
        if not isinstance(architecture, Architecture):
            raise TypeError(f"architecture must be a bayesdyn.neural.Architecture, got {type(architecture).__name__}")
        self.architecture = architecture
        self.weights = check_weights(weights, architecture, "NeuralPotential")
        self.center = _positions3(center, "NeuralPotential.center")
        self.scale = _positions3(scale, "NeuralPotential.scale")
        if not bool(jnp.all(self.scale > 0)):
            raise ValueError(f"NeuralPotential.scale must be positive lengths [kpc]; got {np.asarray(self.scale).tolist()}")
        if not bool(jnp.all(jnp.isfinite(self.center)) & jnp.all(jnp.isfinite(self.scale))):  # (NaN: every output NaN)
            raise ValueError(f"NeuralPotential.center and scale must be finite [kpc]; got "
                             f"{np.asarray(self.center).tolist()} and {np.asarray(self.scale).tolist()}")
        amp = _units.strip(amplitude, "potential", name="NeuralPotential.amplitude")
        if not isinstance(amp, jax.Array):
            amp = float(amp)
        if not isinstance(amp, jax.core.Tracer):  # (a concrete JAX array had skipped the check: −5 and NaN passed)
            value = np.asarray(amp, dtype=float)
            if not (value.size == 1 and np.isfinite(value).all() and (value > 0).all()):
                raise ValueError(f"NeuralPotential.amplitude must be a positive number of (km/s)²; got {value.tolist()}")
        self.amplitude = amp
        self.initial_weights = None if initial_weights is None else jnp.asarray(initial_weights)

    # ------------------------------------------------------------------ construction
    @classmethod
    def initialise(
        cls,
        seed: int,
        *,
        center: Any,
        scale: Any,
        amplitude: float,
        architecture: Architecture | None = None,
        members: int | None = None,
    ) -> "NeuralPotential":
        """A randomly initialised network (or K of them).

        Args:
            seed: random seed.
            center: input centre (3,) [kpc].
            scale: input scale, scalar or (3,) [kpc].
            amplitude: potential scale A [(km/s)²].
            architecture: the MLP (default :class:`Architecture`()).
            members: K networks (weights (K, P)); None for one (weights (P,)).
        """
        arch = architecture or Architecture()
        w = arch.init(int(seed), members=members)
        return cls(w, arch, center, scale, amplitude)

    def with_prior(self, scale: float = 1.0, around: str = "zero") -> "NeuralPotential":
        """A copy whose weights are free, with a Gaussian prior (for NumPyro: MAP, SVI).

        Args:
            scale: prior width in units of the initialisation width 1/√fan_in.
            around: ``"zero"`` (the usual Bayesian-network prior) or ``"current"``
                (centred on the present weights: a fit that stays near them).

        Returns:
            A NeuralPotential with ``weights`` a distribution of event shape (P,)
            and ``initial_weights`` the present weights (a MAP fit starts there).
        """
        w = self._single_weights("with_prior")
        if around not in ("zero", "current"):
            raise ValueError(f"around={around!r} must be 'zero' or 'current'")
        prior = weight_prior(self.architecture, scale, None if around == "zero" else w)
        return NeuralPotential(prior, self.architecture, self.center, self.scale, self.amplitude, initial_weights=w)

    def __repr__(self) -> str:
        from ..inference._model import _exact_list, _start_text, _value_text

        start = _start_text(self)
        return (f"NeuralPotential(weights{_value_text(self.weights)}{', ' + start if start else ''}, center={_exact_list(self.center)} kpc, "
                f"scale={_exact_list(self.scale)} kpc, amplitude={_exact_list(self.amplitude)} (km/s)², "
                f"architecture={self.architecture!r})")

    def _single_weights(self, what: str) -> jax.Array:
        if isinstance(self.weights, Distribution):
            if self.initial_weights is None:
                raise ValueError(f"NeuralPotential.{what}: the weights are a prior and no initial weights are known")
            return self.initial_weights
        if self.weights.ndim == 2:
            if self.weights.shape[0] != 1:
                raise ValueError(
                    f"NeuralPotential.{what} needs one network; this is an ensemble of {self.weights.shape[0]}. "
                    "Fix: pick one with .member(k)"
                )
            return self.weights[0]
        return self.weights

    @property
    def potential_zero(self) -> np.ndarray:
        """Where Φ = 0 for every network: the input centre c (3,) [kpc]."""
        return np.asarray(self.center, dtype=float)

    # ------------------------------------------------------------------ members
    @property
    def n_members(self) -> int:
        """Number of networks K (1 for a single network)."""
        if isinstance(self.weights, Distribution):
            return 1
        return 1 if self.weights.ndim == 1 else int(self.weights.shape[0])

    def member(self, k: int) -> "NeuralPotential":
        """The k-th network of an ensemble as a one-network NeuralPotential."""
        self._require_bound("NeuralPotential.member")
        w = jnp.atleast_2d(self.weights)
        if not -w.shape[0] <= k < w.shape[0]:
            raise IndexError(f"member {k} out of range for {w.shape[0]} networks")
        return NeuralPotential(w[k], self.architecture, self.center, self.scale, self.amplitude)

    def _w2(self) -> jax.Array:
        return jnp.atleast_2d(self.weights)

    def _phi_one(self, w, x):
        z = (x - self.center) / self.scale
        return self.amplitude * self.architecture.apply(w, z)

    def _potential_members(self, x):
        # each network's zero point is arbitrary (the fit sees only ∇Φ and ∇²Φ; the last bias keeps its random
        # start): Φ(center) = 0 for every member, so that their spread is the fields' (it was ~12× wider)
        return jax.vmap(lambda w: self._phi_one(w, x) - self._phi_one(w, self.center))(self._w2())

    def _acceleration_members(self, x):
        return jax.vmap(lambda w: -jax.grad(self._phi_one, argnums=1)(w, x))(self._w2())

    def _density_members(self, x):
        def lap(w):
            return jnp.trace(jax.jacfwd(jax.grad(self._phi_one, argnums=1), argnums=1)(w, x))

        return jax.vmap(lap)(self._w2()) / _FOUR_PI_G

    def _potential(self, x):
        return jnp.mean(self._potential_members(x))

    def _acceleration(self, x):
        return jnp.mean(self._acceleration_members(x), axis=0)

    def _density(self, x):
        return jnp.mean(self._density_members(x))

    def _members(self, method: str, x: Any) -> jax.Array:
        out = self._evaluate(method, x, f"NeuralPotential.{method[1:]}")  # (..., K, ...)
        lead = out.ndim - (2 if method == "_acceleration_members" else 1)
        return jnp.moveaxis(out, lead, 0)

    def potential_members(self, x: Any) -> jax.Array:
        """Each network's potential, shape (K,) or (K, N) [(km/s)²].

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._members("_potential_members", x)

    def acceleration_members(self, x: Any) -> jax.Array:
        """Each network's acceleration −∇Φ_k, shape (K, 3) or (K, N, 3) [(km/s)²/kpc].

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._members("_acceleration_members", x)

    def density_members(self, x: Any) -> jax.Array:
        """Each network's density ∇²Φ_k/4πG, shape (K,) or (K, N) [M☉/kpc³].

        Args:
            x: positions (3,) or (N, 3) [kpc].
        """
        return self._members("_density_members", x)

    # ------------------------------------------------------------------ persistence
    def header(self) -> dict[str, Any]:
        """Plain-JSON description (everything but the weights)."""
        return {
            "architecture": self.architecture.to_dict(),
            "center_kpc": np.asarray(self.center, dtype=float).tolist(),
            "scale_kpc": np.asarray(self.scale, dtype=float).tolist(),
            "amplitude_kms2": float(self.amplitude),
            "members": self.n_members,
        }

    @classmethod
    def from_header(cls, header: dict[str, Any], weights: Any) -> "NeuralPotential":
        """Inverse of :meth:`header` with the weights array."""
        return cls(
            weights,
            Architecture.from_dict(header["architecture"]),
            header["center_kpc"],
            header["scale_kpc"],
            header["amplitude_kms2"],
        )

"""The flows of one ensemble member, and a fast batched log-density for the MAF.

A member is two flowjax flows on the transformed variables (see ``_transforms``):
n(u) on the mapped positions and p(w | u) on the standardised velocities,
conditioned on the mapped positions. The default masked autoregressive flow with
affine transformers, and the one with sinh-arcsinh + affine transformers
(``"sas_maf"``), have a hand-written batched log-density (:func:`flow_log_prob`)
and sampler that read the flowjax weights directly: masked dense layers become
plain matmuls on a batch of points, so that one forward and one reverse pass give
the scores of a whole batch. They agree with flowjax's own ``log_prob`` and inverse
(tested); the other architectures use flowjax's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import paramax
from flowjax.bijections import AbstractBijection, Affine, Chain, RationalQuadraticSpline
from flowjax.distributions import AbstractDistribution, StandardNormal
from flowjax.flows import coupling_flow, masked_autoregressive_flow
from jax.nn import softplus
from jaxtyping import Array, PRNGKeyArray
from paramax import Parameterize
from paramax.utils import inv_softplus

__all__ = [
    "FLOWS",
    "ACTIVATIONS",
    "FlowConfig",
    "Member",
    "build_member",
    "build_ensemble",
    "flow_log_prob",
    "flow_sample",
    "prng_key",
]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
}
"""Smooth activations by name (relu is allowed but gives piecewise-constant score derivatives; DESIGN §9)."""

FLOWS: dict[str, str] = {
    "maf": "masked autoregressive flow, affine transformers (default; fast batched scores)",
    "coupling": "affine coupling flow (RealNVP)",
    "spline_maf": "masked autoregressive flow, rational-quadratic splines "
    "(DESIGN §9: score errors of 40–70 % measured)",
    "spline_coupling": "coupling flow, rational-quadratic splines (same caveat)",
    "sas_maf": "masked autoregressive flow, sinh-arcsinh then affine transformers (smooth skew and tail "
    "weight per conditional; fast batched scores)",
}
"""Selectable flowjax architectures."""
# flowjax's block neural autoregressive flow was offered too: its width had to be divisible by 3 (the default 64
# was refused), it ignored the activation, and its numerical inverse failed ("maximum steps reached") when sampling
# velocities with more than 2 layers, which estimate_accelerations needs
_REMOVED_FLOWS = {"bnaf": "its numerical inverse fails when sampling velocities (estimate_accelerations needs them) "
                          "beyond 2 layers"}

_DIM = 3


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Architecture of each of the two flows of a member (JSON-serialisable).

    Attributes:
        flow: architecture name, one of :data:`FLOWS`.
        n_layers: number of flow layers.
        width: hidden width of the conditioner networks.
        depth: number of hidden layers of the conditioner networks.
        activation: conditioner activation, one of :data:`ACTIVATIONS`.
        min_scale: lower bound of the affine scales (dimensionless).
        knots: spline knots (spline flows only).
        interval: spline half-interval in the flows' variables (spline flows only).
        radial_condition: p(v|x) is also conditioned on ½ log(|u|² + ε²) of the
            latent position u (ε = 0.05), so that it can change quickly with
            radius near the centre of a cusp; set by ``fit_psd`` with the cusp map.
    """

    flow: str = "maf"
    n_layers: int = 8
    width: int = 64
    depth: int = 1
    activation: str = "gelu"
    min_scale: float = 1e-2
    knots: int = 8
    interval: float = 5.0
    radial_condition: bool = False

    def __post_init__(self) -> None:
        if self.flow in _REMOVED_FLOWS:
            raise ValueError(f"flow={self.flow!r} is not offered: {_REMOVED_FLOWS[self.flow]}; choose one of "
                             f"{sorted(FLOWS)} ('maf' is the default, 'sas_maf' the smooth alternative)")
        if self.flow not in FLOWS:
            raise ValueError(f"flow={self.flow!r} is not known; choose one of {sorted(FLOWS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is not known; choose one of {sorted(ACTIVATIONS)}")
        for name in ("n_layers", "width", "depth", "knots"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
            object.__setattr__(self, name, int(value))  # numpy integers (e.g. from an array of settings) as int
        if not isinstance(self.radial_condition, (bool, np.bool_)):  # a saved "yes" failed while building the flows
            raise ValueError(f"radial_condition={self.radial_condition!r} must be True or False")
        object.__setattr__(self, "radial_condition", bool(self.radial_condition))
        for name in ("min_scale", "interval"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name}={value!r} must be a number")
        if not 0 < self.min_scale < 1:
            raise ValueError(f"min_scale={self.min_scale!r} must be in (0, 1)")
        if not self.interval > 0:
            raise ValueError(f"interval={self.interval!r} must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown flow settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


class Member(eqx.Module):
    """One ensemble member: n(u) and p(w | u) on the transformed variables."""

    flow_x: AbstractDistribution
    flow_v: AbstractDistribution


def _affine(min_scale: float) -> Affine:
    scale = Parameterize(lambda p: softplus(p) + min_scale, inv_softplus(1 - min_scale))
    return eqx.tree_at(lambda aff: aff.scale, Affine(), replace=scale)


#: bounds of the sinh-arcsinh transformer's tail weight δ ∈ (1/TAIL_MAX, TAIL_MAX) and skew |ε| < SKEW_MAX
TAIL_MAX, SKEW_MAX = 1.5, 2.0


def _skew(raw: Array) -> Array:
    """Skew ε of :class:`SinhArcsinh` from its unconstrained parameter."""
    return SKEW_MAX * jnp.tanh(raw / SKEW_MAX)


def _tail(raw: Array) -> Array:
    """Tail weight δ of :class:`SinhArcsinh` from its unconstrained parameter."""
    return jnp.exp(math.log(TAIL_MAX) * jnp.tanh(raw))


class SinhArcsinh(AbstractBijection):
    """Scalar sinh-arcsinh map y = sinh(δ·asinh(x) − ε) (Jones & Pewsey 2009): skew ε, tail weight δ.

    Smooth everywhere (so are its scores), the identity at ε = 0, δ = 1; in a flow's
    density direction δ < 1 turns exponential tails into Gaussian ones and ε removes
    skew. Both are bounded, because stacked layers compound the tail exponents
    (δ₁δ₂… over the flow) and a few steps of δ > 2 overflowed sinh in float32:
    δ = 1.5^tanh(p) ∈ (⅔, 1.5), ε = 2·tanh(q/2) ∈ (−2, 2).
    """

    shape: tuple[int, ...] = ()
    cond_shape: None = None
    skew: Any = None
    tail: Any = None

    def __init__(self):
        self.skew = Parameterize(_skew, jnp.zeros(()))
        self.tail = Parameterize(_tail, jnp.zeros(()))

    def transform_and_log_det(self, x, condition=None):
        a = self.tail * jnp.arcsinh(x) - self.skew
        log_cosh = jnp.logaddexp(a, -a) - math.log(2.0)
        return jnp.sinh(a), jnp.log(self.tail) + log_cosh - 0.5 * jnp.log1p(x * x)

    def inverse_and_log_det(self, y, condition=None):
        a = jnp.arcsinh(y)
        x = jnp.sinh((a + self.skew) / self.tail)
        return x, -(jnp.log(self.tail) + 0.5 * jnp.log1p(y * y) - 0.5 * jnp.log1p(x * x))


def _build_flow(key: PRNGKeyArray, config: FlowConfig, cond_dim: int | None) -> AbstractDistribution:
    base = StandardNormal((_DIM,))
    act = ACTIVATIONS[config.activation]
    common = dict(base_dist=base, cond_dim=cond_dim, flow_layers=config.n_layers, invert=True)
    if config.flow.startswith("spline"):  # (FlowConfig admits only the FLOWS)
        transformer = RationalQuadraticSpline(knots=config.knots, interval=config.interval)
    elif config.flow == "sas_maf":
        transformer = Chain([SinhArcsinh(), _affine(config.min_scale)])
    else:
        transformer = _affine(config.min_scale)
    builder = masked_autoregressive_flow if config.flow.endswith("maf") else coupling_flow
    return builder(
        key,
        transformer=transformer,
        nn_width=config.width,
        nn_depth=config.depth,
        nn_activation=act,
        **common,
    )


def build_member(key: PRNGKeyArray, config: FlowConfig) -> Member:
    """A freshly initialised member (both flows) for ``config``."""
    kx, kv = jax.random.split(key)
    return Member(flow_x=_build_flow(kx, config, None), flow_v=_build_flow(kv, config, _DIM + config.radial_condition))


#: ε of the radial conditioning feature ½ log(|u|² + ε²)
RADIAL_EPS = 0.05


def condition(config: FlowConfig, u: Array) -> Array:
    """The conditioning variables of p(w|u): u, and ½ log(|u|² + ε²) with ``config.radial_condition``."""
    if not config.radial_condition:
        return u
    return jnp.concatenate([u, 0.5 * jnp.log(jnp.sum(u * u, axis=-1, keepdims=True) + RADIAL_EPS**2)], axis=-1)


def build_ensemble(key: PRNGKeyArray, config: FlowConfig, k: int) -> Member:
    """K members with their array leaves stacked along a leading axis.

    Not jitted: flowjax's layers close over concrete arrays (the transformer's
    initial parameters), which must not become tracers.
    """
    members = eqx.filter_vmap(lambda kk: build_member(kk, config))(jax.random.split(key, k))
    # float32 and int32 whatever the x64 setting, so that densities fitted and loaded
    # under either setting are the same objects
    members = jax.tree.map(_narrow, members)
    arrays, static = eqx.partition(members, eqx.is_array)
    # flowjax closes over fresh function objects at every build; reusing one static
    # part per architecture lets jitted programs compiled for it be reused (no
    # recompilation for a second fit, a loaded density, or a resumed run)
    return eqx.combine(arrays, _STATIC.setdefault(config, static))


_STATIC: dict[FlowConfig, Any] = {}

#: architectures with the hand-written batched log-density and sampler
_FAST = ("maf", "sas_maf")


def _narrow(a: Any) -> Any:
    if not eqx.is_array(a):
        return a
    if jnp.issubdtype(a.dtype, jnp.floating) and a.dtype != jnp.float32:
        return a.astype(jnp.float32)
    if jnp.issubdtype(a.dtype, jnp.integer) and a.dtype != jnp.int32:
        return a.astype(jnp.int32)
    return a


def prng_key(seed: int | Array) -> PRNGKeyArray:
    """The package's random key for ``seed``.

    The ``rbg`` implementation compiles several times faster than threefry on CPU
    (flow initialisation and in-program shuffling draw many random numbers); results
    are deterministic for a given seed, JAX version and backend.
    """
    return jax.random.key(seed, impl="rbg")


def _maf_log_prob(flow: AbstractDistribution, config: FlowConfig, y: Array, cond: Array | None) -> Array:
    """Batched log-density of an unwrapped flowjax affine MAF (``invert=True``).

    Args:
        flow: the flow after ``paramax.unwrap`` (masks applied to the weights).
        config: its architecture.
        y: points, shape (B, 3).
        cond: conditioning variables, shape (B, C), or None.

    Returns:
        log q(y | cond), shape (B,).
    """
    act = ACTIVATIONS[config.activation]
    raw0 = math.log(math.expm1(1.0 - config.min_scale))  # inv_softplus, as in _affine
    # Transformed(base, Invert(Scan(Chain([MaskedAutoregressive, Permute])))): the
    # density direction is the scanned layers' forward transform.
    made, perm = flow.bijection.bijection.bijection.bijections
    layers = made.masked_autoregressive_mlp.layers
    w_in, b_in = layers[0].weight, layers[0].bias  # (L, H, D [+ C]), (L, H)
    d = y.shape[-1]
    if cond is None:
        pre = [b_in[l][None, :] for l in range(config.n_layers)]
    else:
        # the condition's contribution to every layer's first hidden layer, in one matmul
        c_all = jnp.einsum("bc,lhc->lbh", cond, w_in[:, :, d:]) + b_in[:, None, :]
        pre = [c_all[l] for l in range(config.n_layers)]
    z = y
    log_det = jnp.zeros(y.shape[:1], y.dtype)
    for l in range(config.n_layers):
        h = act(z @ w_in[l, :, :d].T + pre[l])
        for layer in layers[1:-1]:
            h = act(h @ layer.weight[l].T + layer.bias[l])
        out = (h @ layers[-1].weight[l].T + layers[-1].bias[l]).reshape(z.shape[0], d, -1)
        if config.flow == "sas_maf":  # Chain([SinhArcsinh, Affine]): ravelled as (skew, tail, loc, scale)
            skew, tail = _skew(out[..., 0]), _tail(out[..., 1])
            a = tail * jnp.arcsinh(z) - skew
            log_det = log_det + jnp.sum(jnp.log(tail) + jnp.logaddexp(a, -a) - math.log(2.0)
                                        - 0.5 * jnp.log1p(z * z), axis=-1)
            z = jnp.sinh(a)
            out = out[..., 2:]
        scale = softplus(out[..., 1] + raw0) + config.min_scale
        z = z * scale + out[..., 0]
        log_det = log_det + jnp.sum(jnp.log(scale), axis=-1)
        z = z[:, perm.permutation[0][l]]
    return log_det - 0.5 * jnp.sum(z * z, axis=-1) - 0.5 * d * math.log(2 * math.pi)


def _maf_inverse(flow: AbstractDistribution, config: FlowConfig, z: Array, cond: Array | None) -> Array:
    """Batched map from base samples z (B, 3) to the flow's variable (the sampling direction).

    Inverts the layers of :func:`_maf_log_prob` in reverse order; each affine
    autoregressive layer is inverted dimension by dimension (3 network passes).
    """
    act = ACTIVATIONS[config.activation]
    raw0 = math.log(math.expm1(1.0 - config.min_scale))
    made, perm = flow.bijection.bijection.bijection.bijections
    layers = made.masked_autoregressive_mlp.layers
    w_in, b_in = layers[0].weight, layers[0].bias
    d = z.shape[-1]
    if cond is None:
        pre = [b_in[l][None, :] for l in range(config.n_layers)]
    else:
        c_all = jnp.einsum("bc,lhc->lbh", cond, w_in[:, :, d:]) + b_in[:, None, :]
        pre = [c_all[l] for l in range(config.n_layers)]

    def params(x, l):
        h = act(x @ w_in[l, :, :d].T + pre[l])
        for layer in layers[1:-1]:
            h = act(h @ layer.weight[l].T + layer.bias[l])
        out = (h @ layers[-1].weight[l].T + layers[-1].bias[l]).reshape(x.shape[0], d, -1)
        return out

    y = z
    for l in reversed(range(config.n_layers)):
        y = y[:, perm.inverse_permutation[0][l]]
        x = jnp.zeros_like(y)
        for i in range(d):  # dimension i depends on dimensions < i only
            out = params(x, l)[:, i]
            if config.flow == "sas_maf":
                skew, tail = _skew(out[:, 0]), _tail(out[:, 1])
                loc, scale = out[:, 2], softplus(out[:, 3] + raw0) + config.min_scale
                xi = jnp.sinh((jnp.arcsinh((y[:, i] - loc) / scale) + skew) / tail)
            else:
                loc, scale = out[:, 0], softplus(out[:, 1] + raw0) + config.min_scale
                xi = (y[:, i] - loc) / scale
            x = x.at[:, i].set(xi)
        y = x
    return y


def flow_sample(
    flow: AbstractDistribution, config: FlowConfig, key: PRNGKeyArray, n: int, cond: Array | None = None
) -> Array:
    """n draws (n, 3) from one flow (not stacked); cond, if given, is the latent position u, (n, 3)."""
    if cond is not None:
        cond = condition(config, cond)
    if config.flow in _FAST:
        z = jax.random.normal(key, (n, _DIM), jnp.float32)
        return _maf_inverse(paramax.unwrap(flow), config, z, cond)
    if cond is None:
        return flow.sample(key, (n,))
    return flow.sample(key, (), condition=cond)


def flow_log_prob(flow: AbstractDistribution, config: FlowConfig, y: Array, cond: Array | None = None) -> Array:
    """Batched log-density of one flow (not stacked) at y given cond.

    Args:
        flow: a flow built by :func:`build_member` (wrapped or unwrapped).
        config: its architecture.
        y: points, shape (B, 3).
        cond: the latent positions u that p(w|u) is conditioned on, shape (B, 3),
            or None for n(u) (:func:`condition` adds the radial feature).

    Returns:
        Log-densities, shape (B,), in the flows' variables.
    """
    flow = paramax.unwrap(flow)
    if cond is not None:
        cond = condition(config, cond)
    if config.flow in _FAST:
        return _maf_log_prob(flow, config, y, cond)
    return flow.log_prob(y, condition=cond)


def reference_log_prob(flow: AbstractDistribution, y: Array, cond: Array | None = None) -> Array:
    """flowjax's own log_prob (the reference that the fast path is tested against)."""
    return flow.log_prob(y, condition=cond)

"""Smooth scalar MLPs on standardised positions, held as one flat weight vector (private).

A network here is an :class:`equinox.nn.MLP` from R³ to R whose weights and
biases live in a single flat vector ``w`` of length :meth:`Architecture.n_weights`.
The flat form is what the optimiser updates, what ``jax.vmap`` batches over
ensemble members, what a NumPyro prior samples, and what is saved to disk (no
pickle); :meth:`Architecture.network` turns it back into the equinox MLP.

Inputs are standardised positions z = (x − centre) / scale, with x in kpc and
per-axis ``scale`` in kpc, so a network of unit-size weights varies on the scale
of the data.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ACTIVATIONS", "Architecture", "standardisation"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "silu": jax.nn.silu,
}
"""Smooth activations (a = −∇Φ and ρ ∝ ∇²Φ need two continuous derivatives; relu is refused)."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Shape of a scalar MLP on R³: ``depth`` hidden layers of ``width`` units.

    Attributes:
        width: hidden units per layer.
        depth: number of hidden layers (≥ 1).
        activation: one of :data:`ACTIVATIONS` (smooth: the density needs ∇²).
    """

    width: int = 64
    depth: int = 2
    activation: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("width", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Architecture.{name}={value!r} must be a positive integer")
            object.__setattr__(self, name, int(value))
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation={self.activation!r} is not a smooth activation bayesdyn knows; choose one of "
                f"{sorted(ACTIVATIONS)} (the density ∇²Φ/4πG needs a twice-differentiable network)"
            )

    # ------------------------------------------------------------------ layout
    def layer_sizes(self) -> tuple[int, ...]:
        """(3, width, …, width, 1): the inputs and outputs of each linear layer."""
        return (3,) + (self.width,) * self.depth + (1,)

    def n_weights(self) -> int:
        """Number of weights and biases in the flat vector."""
        s = self.layer_sizes()
        return int(sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1)))

    def fan_in_scales(self) -> np.ndarray:
        """Per-entry 1/√fan_in of the flat vector, shape (P,): the width of equinox's initialisation
        (uniform on ±1/√fan_in) and the natural scale of a prior on the weights."""
        s = self.layer_sizes()
        out = []
        for i in range(len(s) - 1):
            k = 1.0 / np.sqrt(s[i])
            out.append(np.full(s[i] * s[i + 1] + s[i + 1], k))
        return np.concatenate(out)

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Architecture":
        """Inverse of :meth:`to_dict`."""
        return cls(width=int(d["width"]), depth=int(d["depth"]), activation=str(d["activation"]))

    def init(self, seed: Any = 0, dtype: Any = None, members: int | None = None) -> jax.Array:
        """Flat weights of a freshly initialised network, equinox's default distribution.

        Every weight and bias of a layer is uniform on ±1/√fan_in (as
        ``equinox.nn.Linear``), drawn with numpy (no compilation).

        Args:
            seed: an integer seed or a ``numpy.random.Generator``.
            dtype: float dtype of the weights (default: JAX's default float).
            members: K networks (shape (K, P)); None for one (shape (P,)).

        Returns:
            Array of shape (P,) or (K, P).
        """
        dtype = jnp.result_type(float) if dtype is None else dtype
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        shape = (self.n_weights(),) if members is None else (int(members), self.n_weights())
        return jnp.asarray(rng.uniform(-1.0, 1.0, shape) * self.fan_in_scales(), dtype=dtype)

    def network(self, weights: jax.Array) -> eqx.nn.MLP:
        """The equinox MLP whose weights are ``weights`` (P,) (a pure reshape, traceable)."""
        treedef, is_param, shapes = _skeleton(self)
        leaves, start = [], 0
        params = iter(shapes)
        for flag, leaf in is_param:
            if flag:
                shape = next(params)
                size = int(np.prod(shape))
                leaves.append(jnp.reshape(weights[start:start + size], shape))
                start += size
            else:
                leaves.append(leaf)
        return jax.tree.unflatten(treedef, leaves)

    def apply(self, weights: jax.Array, z: jax.Array) -> jax.Array:
        """The network's scalar output at one standardised position z (3,)."""
        return self.network(weights)(z)


@functools.lru_cache(maxsize=64)
def _skeleton(arch: Architecture):
    """(treedef, [(is_parameter, non-parameter leaf)], parameter shapes) of the equinox MLP."""
    skel = eqx.filter_eval_shape(
        eqx.nn.MLP, 3, "scalar", arch.width, arch.depth, activation=ACTIVATIONS[arch.activation],
        key=jax.random.key(0),
    )
    leaves, treedef = jax.tree.flatten(skel)
    is_param = [(isinstance(leaf, jax.ShapeDtypeStruct), None if isinstance(leaf, jax.ShapeDtypeStruct) else leaf)
                for leaf in leaves]
    shapes = [tuple(leaf.shape) for leaf in leaves if isinstance(leaf, jax.ShapeDtypeStruct)]
    if sum(int(np.prod(s)) for s in shapes) != arch.n_weights():  # pragma: no cover - equinox layout changed
        raise RuntimeError("equinox.nn.MLP's parameter layout differs from Architecture.layer_sizes()")
    return treedef, tuple(is_param), tuple(shapes)


def standardisation(x: Any, scale: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Centre and per-axis scale of positions for a network's inputs.

    Args:
        x: positions (N, 3) [kpc].
        scale: a length [kpc] (scalar or (3,)) to use instead of the data's
            per-axis robust spread (1.4826 × median absolute deviation).

    Returns:
        (centre (3,), scale (3,)) in kpc; scales are floored at 1e-3 of the largest.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] < 2:
        raise ValueError(f"positions must have shape (N, 3) with N ≥ 2 [kpc]; got {x.shape}")
    center = np.median(x, axis=0)
    if scale is None:
        s = 1.4826 * np.median(np.abs(x - center), axis=0)
    else:
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(s)) or s.max() <= 0:
        raise ValueError(f"cannot standardise positions: scale {s.tolist()} kpc; pass scale= (kpc)")
    s = np.maximum(s, 1e-3 * s.max())
    return center, s

"""A potential that is smooth across the plane and free along z: Φ(x) = Σ_m P_m(x̃, ỹ) g_m(z̃).

P_m are the monomials x̃^i ỹ^j of total degree ≤ D in the standardised horizontal
coordinates and g = (g_m) one MLP R → R^M (M = (D + 1)(D + 2)/2) of the standardised height.
Φ has no symmetry (no axisymmetry, no mirror plane), its vertical profile can take any
shape the MLP can, but across the plane it can only vary as a polynomial of degree D over
the fitted volume — it cannot make a bump a few hundred pc wide in x or y. That is the
rigidity the dust ε stage needs (docs/gallery/notes.md): a compact cloud's ∇log ε cannot be
absorbed by such a Φ and must go into ε. A stated assumption, not a neutral one: potential
structure narrower than ~(fitted width)/D across the plane is out of its reach.

Used as an ``Architecture`` (its ``apply`` and flat-weight layout), so it runs in
``bayesdyn.neural.fit_neural_potential_scores`` and ``NeuralPotential`` unchanged — but not
saved: the package's loaders rebuild a plain ``Architecture`` from the JSON header (``degree``
would be lost and the weights refused), and ``network()`` (the equinox R³ → R MLP) does not
exist for it. Benchmark code until it moves into the package with a loader that knows it.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from bayesdyn.neural import Architecture
from bayesdyn.neural._network import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class SeparableArchitecture(Architecture):
    """Φ(z̃) = Σ_{i+j≤D} x̃^i ỹ^j g_ij(z̃); g an MLP 1 → width^depth → M, ``activation`` smooth."""

    degree: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.degree, bool) or int(self.degree) != self.degree or self.degree < 0:
            raise ValueError(f"SeparableArchitecture.degree={self.degree!r} must be an integer ≥ 0")
        object.__setattr__(self, "degree", int(self.degree))

    @property
    def powers(self) -> tuple[tuple[int, int], ...]:
        return tuple((i, d - i) for d in range(self.degree + 1) for i in range(d, -1, -1))

    def layer_sizes(self) -> tuple[int, ...]:
        return (1,) + (self.width,) * self.depth + (len(self.powers),)

    def to_dict(self):
        return {**super().to_dict(), "degree": self.degree, "kind": "separable"}

    def network(self, weights):
        raise NotImplementedError("SeparableArchitecture is not one equinox MLP on R³; use apply(weights, z)")

    def apply(self, weights, z):
        sizes = self.layer_sizes()
        act = ACTIVATIONS[self.activation]
        h, start = z[2:3], 0
        for k in range(len(sizes) - 1):
            n_in, n_out = sizes[k], sizes[k + 1]
            w = jnp.reshape(weights[start:start + n_in * n_out], (n_out, n_in))
            b = weights[start + n_in * n_out:start + n_in * n_out + n_out]
            start += n_in * n_out + n_out
            h = w @ h + b
            if k < len(sizes) - 2:
                h = act(h)
        mono = jnp.stack([z[0] ** i * z[1] ** j for i, j in self.powers])
        return jnp.sum(mono * h)

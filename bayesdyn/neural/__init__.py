"""Model-free potentials and selection fields: neural Φ(x), efficiency ε(x) (pipeline stage 4, no symmetry).

* :class:`NeuralPotential` — Φ(x) from a smooth equinox MLP (or the mean of an
  ensemble of them): a = −∇Φ is curl-free by construction, ρ = ∇²Φ/4πG is the
  autodiff Laplacian. A :class:`bayesdyn.potentials.Component`, so it adds to
  parametric components and works in :class:`bayesdyn.inference.PotentialModel`,
  fixed or with a prior on its weights (:meth:`NeuralPotential.with_prior`).
* :func:`fit_neural_potential` — fits one network per phase-space-density member
  to the CBE residuals v·s_x + a·s_v of the stars with optax (vmapped over members);
  the ensemble's spread is the uncertainty. Optionally a penalty on negative
  density and a jointly learnt selection (experimental: on the 10⁵-star disk mock with flow
  scores it misses its targets; docs/howto/dust.md): the efficiency ε(x)
  (:class:`NeuralEfficiency`, residual v·(s_x,obs − ∇log ε) + a·s_v) or the true
  tracer density (:class:`NeuralTracerDensity`, velocity-only form).
* :func:`cbe_model`, :func:`fit_map` — the same residuals as a plain NumPyro model
  with priors on network weights (and any parametric component); MAP by SVI.

Identifiability of ε is discussed in :mod:`bayesdyn.neural._efficiency` and the
dust how-to: only ∇log ε enters the CBE (its scale is fixed by max ε = 1 over the
stars), and for Gaussian p(v|x) a change of ∇log ε trades against a; the
non-Gaussianity and streaming of real velocity distributions, the smoothness of one
potential and the non-negative density separate them.

Example:
    >>> import bayesdyn as bd
    >>> cat, truth = bd.mocks.plummer(2000, seed=1)  # doctest: +SKIP
    >>> s_x, s_v = truth.score(cat.x, cat.v)  # doctest: +SKIP
    >>> fit = bd.neural.fit_neural_potential_scores(cat.x, cat.v, s_x, s_v, steps=300)  # doctest: +SKIP
    >>> fit.potential.acceleration([1.0, 0.0, 0.0])  # doctest: +SKIP
"""

from ._efficiency import EFFICIENCY_OFFSET as EFFICIENCY_OFFSET
from ._efficiency import NeuralEfficiency as NeuralEfficiency
from ._efficiency import NeuralTracerDensity as NeuralTracerDensity
from ._fit import DENSITY_PENALTY_POINTS as DENSITY_PENALTY_POINTS
from ._fit import NORMALIZATIONS as NORMALIZATIONS
from ._fit import SELECTIONS as SELECTIONS
from ._fit import NeuralFit as NeuralFit
from ._fit import NeuralFitConfig as NeuralFitConfig
from ._fit import acceleration_scale as acceleration_scale
from ._fit import fit_neural_potential as fit_neural_potential
from ._fit import fit_neural_potential_scores as fit_neural_potential_scores
from ._fit import load_neural_fit as load_neural_fit
from ._network import ACTIVATIONS as ACTIVATIONS
from ._network import Architecture as Architecture
from ._numpyro import MapFit as MapFit
from ._numpyro import cbe_model as cbe_model
from ._numpyro import fit_map as fit_map
from ._potential import NeuralPotential as NeuralPotential
from ._potential import weight_prior as weight_prior

__all__ = [
    "ACTIVATIONS",
    "Architecture",
    "DENSITY_PENALTY_POINTS",
    "EFFICIENCY_OFFSET",
    "MapFit",
    "NORMALIZATIONS",
    "NeuralEfficiency",
    "NeuralFit",
    "NeuralFitConfig",
    "NeuralPotential",
    "NeuralTracerDensity",
    "SELECTIONS",
    "acceleration_scale",
    "cbe_model",
    "fit_map",
    "fit_neural_potential",
    "fit_neural_potential_scores",
    "load_neural_fit",
    "weight_prior",
]

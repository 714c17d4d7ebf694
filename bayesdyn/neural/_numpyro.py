"""Neural fields inside NumPyro: a star-level CBE model with a selection field, and MAP by SVI."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ._efficiency import NeuralEfficiency, NeuralTracerDensity, _ScalarField
from ._potential import NeuralPotential

__all__ = ["cbe_model", "fit_map", "MapFit"]


def cbe_model(model: Any, data: Any, selection: _ScalarField | None = None, *, tempering: float = 1.0) -> None:
    """A plain NumPyro model: priors of a PotentialModel (and a selection field) and the star-level CBE likelihood.

    Residuals r_i = v_i·(s_x,i − ∇log ε(x_i)) + a(x_i)·s_v,i [km/s/kpc] (with an
    efficiency; + ∇log n_true with a :class:`NeuralTracerDensity` and conditional
    scores; plain v·s_x + a·s_v without) are independent N(0, σ_i²·tempering).
    Parametric and neural components (:class:`NeuralPotential` with a prior on its
    weights) mix freely; the selection's weights are the site
    ``"selection.weights"``.

    Args:
        model: a :class:`bayesdyn.inference.PotentialModel`.
        data: a :class:`bayesdyn.inference.StarScoreData`.
        selection: a :class:`NeuralEfficiency` or :class:`NeuralTracerDensity`
            (its weights a prior or fixed), or None.
        tempering: the log-likelihood is divided by this (≥ 1 widens the posterior).
    """
    comps = model.sample_components()
    a = model.total_acceleration(comps, data.x)
    s_x = data.s_x
    if isinstance(selection, NeuralEfficiency):
        s_x = s_x - selection.sample("selection").grad_log_efficiency(data.x)
    elif isinstance(selection, NeuralTracerDensity):
        s_x = s_x + selection.sample("selection").grad_log_density(data.x)
    elif selection is not None:
        raise TypeError(f"selection must be a NeuralEfficiency or NeuralTracerDensity, got {type(selection).__name__}")
    r = jnp.sum(data.v * s_x, -1) + jnp.sum(a * data.s_v, -1)
    numpyro.factor("likelihood", jnp.sum(dist.Normal(0.0, data.sigma).log_prob(r)) / tempering)


class MapFit(NamedTuple):
    """A MAP fit by SVI with an AutoDelta guide.

    Attributes:
        values: site name → MAP value (``"<component>.<parameter>"``, ``"selection.weights"``).
        components: the model's components with the MAP values bound (name → component).
        selection: the selection field with its MAP weights, or None.
        losses: the SVI loss (negative log joint) per step, (steps,).
    """

    values: dict[str, Any]
    components: dict[str, Any]
    selection: _ScalarField | None
    losses: np.ndarray


def _initial_values(model: Any, selection: _ScalarField | None) -> dict[str, Any]:
    """The start of every network's weights with a prior, by site name: also a network inside a composite
    (``"total.neural.weights"``), which had been left out."""
    values = {}

    def visit(prefix: str, comp: Any) -> None:
        if isinstance(comp, NeuralPotential) and comp.free_parameters() and comp.initial_weights is not None:
            values[f"{prefix}weights"] = comp.initial_weights
        for sub_prefix, sub, _ in comp._subcomponents():
            visit(prefix + sub_prefix, sub)

    for name, comp in model.components.items():
        visit(f"{name}.", comp)
    if selection is not None and selection.free_parameters() and selection.initial_weights is not None:
        values["selection.weights"] = selection.initial_weights
    return values


def _init_loc(site: dict | None = None, values: dict[str, Any] | None = None):
    """The MAP fit's init strategy: the named sites from ``values``, the others from the prior median."""
    from numpyro.infer.initialization import init_to_median, init_to_value

    if site is None:
        return functools.partial(_init_loc, values=values)
    if site["name"] in (values or {}):
        return init_to_value(site, values=values)
    return init_to_median(site)


def fit_map(
    model: Any,
    data: Any,
    selection: _ScalarField | None = None,
    *,
    steps: int = 1000,
    learning_rate: float = 1e-2,
    seed: int = 0,
    tempering: float = 1.0,
) -> MapFit:
    """Maximum a posteriori parameters of :func:`cbe_model` by SVI with an AutoDelta guide (Adam).

    Network weights with a prior start from their ``initial_weights`` (a fresh or
    fitted network; an all-zero start would sit on the symmetric saddle of the
    MLP); other parameters from the prior median.

    Args:
        model: a :class:`bayesdyn.inference.PotentialModel` (neural and/or parametric).
        data: :class:`bayesdyn.inference.StarScoreData`.
        selection: a selection field (weights a prior), or None.
        steps: SVI steps.
        learning_rate: Adam step size (in the unconstrained space).
        seed: random seed.
        tempering: passed to :func:`cbe_model`.

    Returns:
        :class:`MapFit`.
    """
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta

    def fn(d):
        cbe_model(model, d, selection, tempering=tempering)

    # a functools.partial: NumPyro calls any other init strategy once with no site and uses what it returns, which
    # had been init_to_median for every site (the weights started from a small random network, not initial_weights)
    guide = AutoDelta(fn, init_loc_fn=functools.partial(_init_loc, values=_initial_values(model, selection)))
    svi = SVI(fn, guide, numpyro.optim.Adam(learning_rate), Trace_ELBO())
    result = svi.run(jax.random.key(int(seed)), int(steps), data, progress_bar=False)
    values = guide.median(result.params)
    comps = model.bind({k: v for k, v in values.items() if not k.startswith("selection.")})
    sel = None
    if selection is not None:
        sel = selection.bind({"weights": values["selection.weights"]}) if selection.free_parameters() else selection
    return MapFit(dict(values), comps, sel, np.asarray(result.losses))

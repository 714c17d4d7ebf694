"""Reported quantities: functions of the bound model components, evaluated per posterior draw."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DrawEvaluator", "Quantity", "evaluate_draws", "interval_summary", "density_at", "parameter"]


@dataclasses.dataclass(frozen=True)
class Quantity:
    """A number the posterior reports and whose truth a mock knows.

    Attributes:
        name: short identifier used in tables and file names (``"rho_total_sun"``).
        unit: its unit, for tables (``"Msun/kpc3"``).
        fn: ``fn(components)`` → scalar, a pure JAX function of the bound model
            components (``{"halo": NFW(...), ...}``); evaluated per posterior draw.
        truth: the true value [``unit``].
        description: one line for the docs.
    """

    name: str
    unit: str
    fn: Callable[[Mapping[str, Any]], Any]
    truth: float
    description: str = ""


def parameter(site: str) -> Callable[[Mapping[str, Any]], Any]:
    """``fn`` that reads a model parameter, e.g. ``parameter("halo.scale_radius")``."""
    comp, name = site.split(".", 1)

    def fn(components):
        return getattr(components[comp], name)

    fn.__name__ = f"parameter[{site}]"
    return fn


def density_at(point: Any, components: tuple[str, ...] | None = None) -> Callable[[Mapping[str, Any]], Any]:
    """``fn`` giving the mass density [M☉/kpc³] at ``point`` (3,) [kpc] (or a length Quantity), summed over
    ``components`` (default all)."""
    from .. import units as _units

    point = np.asarray(_units.strip(point, "length", "point"), dtype=float).reshape(3)

    def fn(comps):
        names = comps.keys() if components is None else components
        x = jnp.asarray(point)[None, :]
        return sum(comps[n].density(x)[0] for n in names)

    fn.__name__ = f"density_at[{point.tolist()}]"
    return fn


def evaluate_draws(model: Any, samples: Mapping[str, Any], fns: Mapping[str, Callable]) -> dict[str, np.ndarray]:
    """Evaluate functions of the bound model components for every posterior draw.

    Each draw's free parameters are bound into the model's components
    (``model.bind``), as :meth:`bayesdyn.inference.PotentialModel.derived` does,
    and every ``fn(components)`` is evaluated; the draws are vectorised with
    ``jax.vmap`` in one jitted call.

    Args:
        model: a :class:`bayesdyn.inference.PotentialModel`.
        samples: draws of its free parameters, ``"component.parameter"`` → array of any
            common shape (e.g. (chains, draws)).
        fns: name → ``fn(components)`` returning a scalar (see :class:`Quantity`).

    Returns:
        name → array of the draws' shape (float64 numpy).

    Example:
        >>> evaluate_draws(model, post.samples, {"rho_1kpc": density_at([1.0, 0, 0])})  # doctest: +SKIP
    """
    return DrawEvaluator(model, fns)(samples)


class DrawEvaluator:
    """:func:`evaluate_draws` compiled once for a model and a set of functions, reused for many posteriors."""

    def __init__(self, model: Any, fns: Mapping[str, Callable]):
        self.model = model
        self.names = list(model.free_parameters())
        if not self.names:
            raise ValueError("the model has no free parameters: there is nothing to evaluate per draw")
        fns = dict(fns)

        def one(values):
            comps = model.bind(values)
            return {k: jnp.asarray(f(comps), dtype=jnp.result_type(float)) for k, f in fns.items()}

        self._fn = jax.jit(jax.vmap(one))

    def __call__(self, samples: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [n for n in self.names if n not in samples]
        if missing:
            raise KeyError(f"samples lack the model's free parameters {missing}; pass the posterior's samples dict")
        if hasattr(self.model, "strip_samples"):  # a PotentialModel: Quantities in each parameter's internal unit
            samples = self.model.strip_samples({n: samples[n] for n in self.names})
        shape = np.shape(samples[self.names[0]])
        flat = {n: jnp.reshape(jnp.asarray(samples[n]), (-1,)) for n in self.names}
        out = self._fn(flat)
        return {k: np.asarray(v, dtype=np.float64).reshape(shape) for k, v in out.items()}


def interval_summary(draws: Any, truth: float) -> dict[str, Any]:
    """Posterior summaries of one quantity against its truth.

    Args:
        draws: posterior draws of the quantity (any shape) [its unit].
        truth: its true value [same unit].

    Returns:
        dict with ``truth``, ``median``, ``mean``, ``sd``, the central 68 % and
        95 % intervals ``q16``, ``q84``, ``q2.5``, ``q97.5``, whether the truth is
        inside each (``in68``, ``in95``), ``pit`` — the fraction of draws below the
        truth (uniform on [0, 1] over realisations for a calibrated posterior) —
        and ``pull`` = (median − truth)/sd.
    """
    x = np.asarray(draws, dtype=np.float64).reshape(-1)
    if x.size < 2 or not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(f"need ≥ 2 finite draws; got {x.size} draws of which {bad} are NaN/inf")
    q = np.percentile(x, [2.5, 16, 50, 84, 97.5])
    sd = float(x.std(ddof=1))
    truth = float(truth)
    return {
        "truth": truth,
        "median": float(q[2]),
        "mean": float(x.mean()),
        "sd": sd,
        "q2.5": float(q[0]),
        "q16": float(q[1]),
        "q84": float(q[3]),
        "q97.5": float(q[4]),
        "in68": bool(q[1] <= truth <= q[3]),
        "in95": bool(q[0] <= truth <= q[4]),
        # ties (a point mass at the truth) count half, so the PIT stays uniform
        "pit": float((np.sum(x < truth) + 0.5 * np.sum(x == truth)) / x.size),
        # a point mass: ±inf off the truth, 0 on it (inf · sign(0) was NaN)
        "pull": float((q[2] - truth) / sd) if sd > 0 else (float("inf") * np.sign(q[2] - truth) if q[2] != truth else 0.0),
    }

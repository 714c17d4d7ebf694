"""The Truth abstraction: what a mock knows exactly about the system it sampled."""

from __future__ import annotations

import abc
import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import units as _u

__all__ = ["Truth", "MockError", "GalpyRequiredError"]


class MockError(ValueError):
    """A mock was asked for with settings that cannot give a valid sample; the message says why."""


class GalpyRequiredError(ImportError):
    """A mock or truth method needs galpy, which is an optional dependency."""


def _bayesdyn_version() -> str:
    """bayesdyn's version, looked up at call time (the mocks may be imported before ``__version__`` is set)."""
    import bayesdyn

    return getattr(bayesdyn, "__version__", "unknown")


def _require_galpy(what: str):
    """Import galpy or raise :class:`GalpyRequiredError` naming ``what`` needs it. galpy.util replaces
    ``warnings.showwarning`` at import with a print to stdout, which sent every later warning of the process (bayesdyn's
    ConvergenceWarnings among them) into the results printed on stdout: the handler in force before is kept."""
    import warnings

    shown = warnings.showwarning
    try:
        import galpy.util  # noqa: F401
    except ImportError:  # pragma: no cover - galpy is installed in the test extra
        raise GalpyRequiredError(
            f"{what} needs galpy (an optional dependency): pip install 'bayesdyn[mocks]' (in a clone: pip install -e '.[mocks]') or pip install galpy"
        ) from None
    finally:
        warnings.showwarning = shown


def _points(x: Any, name: str = "x") -> jnp.ndarray:
    """``x`` as a JAX array of shape (3,) or (..., 3); a Quantity is converted (kpc, or km/s for ``name="v"``) and one of
    the wrong kind refused (jnp.asarray had dropped the unit: 1000 pc read as 1000 kpc)."""
    arr = jnp.asarray(_u.strip(x, "velocity" if name == "v" else "length", name))
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"{name} has shape {arr.shape}; pass (3,) or (N, 3) Galactocentric values")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def _np_points(x: Any, name: str = "x") -> np.ndarray:
    arr = np.asarray(_u.strip(x, "velocity" if name == "v" else "length", name), dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"{name} has shape {arr.shape}; pass (3,) or (N, 3) Galactocentric values")
    return arr


@functools.partial(jax.jit, static_argnames=("name",))
def _jit_call(truth: "Truth", x, *, name: str):
    return getattr(truth, name)(x)


class Truth(eqx.Module):
    """Exact knowledge about the system a mock catalog was drawn from.

    Every mock returns ``(Catalog, Truth)``. The methods take positions ``x``
    [kpc] and velocities ``v`` [km/s] in the catalog's Galactocentric frame,
    with shape (3,) or (N, 3), and broadcast over the leading axes.
    ``acceleration``, ``potential``, ``density`` and ``tracer_density`` are pure
    JAX, jitted here (they can be vmapped, differentiated, and called inside
    other jitted code; they run in float64 when ``jax_enable_x64`` is on);
    subclasses implement the private single-call versions. ``log_df`` and
    ``score`` are JAX where the DF is known in closed form or as a spline, and
    numpy (galpy) otherwise; a subclass that cannot give a quantity exactly
    raises ``NotImplementedError`` saying why.

    Subclasses are final; only the abstract methods below are overridden.
    """

    def acceleration(self, x: Any) -> jnp.ndarray:
        """Gravitational acceleration a = −∇Φ at ``x`` [kpc], shape (..., 3) [(km/s)²/kpc]. JAX."""
        return _jit_call(self, _points(x), name="_acceleration")

    def potential(self, x: Any) -> jnp.ndarray:
        """Gravitational potential Φ at ``x`` [kpc], shape (...) [(km/s)²]. JAX.

        Zero at infinity, except where the potential diverges there (the
        pseudo-isothermal halo, zero at its centre).
        """
        return _jit_call(self, _points(x), name="_potential")

    def density(self, x: Any) -> jnp.ndarray:
        """Total mass density generating the potential at ``x`` [kpc], shape (...) [M☉/kpc³]. JAX."""
        return _jit_call(self, _points(x), name="_density")

    def tracer_density(self, x: Any) -> jnp.ndarray:
        """Number density of the tracers at ``x`` [kpc], normalised to 1 over all space [kpc⁻³]. JAX."""
        return _jit_call(self, _points(x), name="_tracer_density")

    @abc.abstractmethod
    def _acceleration(self, x: jnp.ndarray) -> jnp.ndarray: ...

    @abc.abstractmethod
    def _potential(self, x: jnp.ndarray) -> jnp.ndarray: ...

    @abc.abstractmethod
    def _density(self, x: jnp.ndarray) -> jnp.ndarray: ...

    @abc.abstractmethod
    def _tracer_density(self, x: jnp.ndarray) -> jnp.ndarray: ...

    @abc.abstractmethod
    def log_df(self, x: Any, v: Any) -> Any:
        """Natural log of the tracers' phase-space density f(x, v) [log((kpc km/s)⁻³)]."""

    @abc.abstractmethod
    def score(self, x: Any, v: Any) -> tuple[Any, Any]:
        """The scores (∂log f/∂x [kpc⁻¹], ∂log f/∂v [(km/s)⁻¹]), each of shape (..., 3)."""

    @property
    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """The truth parameters, units in the key names (``mass_msun``, ``scale_radius_kpc``)."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON description: ``{"kind": ..., "params": ...}``."""

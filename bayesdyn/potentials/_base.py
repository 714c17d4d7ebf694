"""The component abstraction: single-point physics, batching and parameters in the base.

A component subclass writes the physics for ONE position ``x`` (a (3,) array in
kpc): ``_potential(x)`` [(km/s)²], ``_acceleration(x)`` [(km/s)²/kpc] and
``_density(x)`` [M☉/kpc³]. The public methods here accept (3,) or (..., 3)
positions (or a length Quantity), check the shape, vectorise with ``jax.vmap``
and refuse to run while a parameter is still a prior.
"""

from __future__ import annotations

import abc
import functools
import os
import re
import sys
import warnings
from typing import Any, Callable, ClassVar, Iterator, Mapping

import astropy.units as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution

from .. import units as _units

__all__ = [
    "Component",
    "PotentialComponent",
    "CompositePotential",
    "UnboundParameterError",
]

_FOUR_PI_G = 4.0 * np.pi * _units.G


class UnboundParameterError(ValueError):
    """A component was evaluated while some parameters are still priors (distributions)."""


_REQUIREMENTS: dict[str, tuple[Callable[[float], bool], str]] = {
    ">0": (lambda v: v > 0, "positive"),
    ">=0": (lambda v: v >= 0, "non-negative"),
    "any": (lambda v: True, "finite"),
}


def parameter(value: Any, physical_type: str, name: str, owner: str, require: str = ">0") -> Any:
    """Validate one constructor parameter and strip its unit.

    Args:
        value: a number in the internal unit of ``physical_type``, an astropy
            Quantity (converted), a scalar JAX array (kept; may be a tracer), or a
            scalar numpyro distribution (kept: a free parameter).
        physical_type: the parameter's physical type (see ``bayesdyn.units.strip``).
        name: the parameter's name, for messages.
        owner: the component's class name, for messages.
        require: ``">0"``, ``">=0"`` or ``"any"``; checked for plain numbers only.

    Returns:
        A Python float, the JAX array, or the distribution.
    """
    label = f"{owner}.{name}"
    if isinstance(value, Distribution):
        if value.batch_shape != () or value.event_shape != ():
            raise ValueError(
                f"{label}: the prior must be a scalar distribution; got batch shape "
                f"{value.batch_shape} and event shape {value.event_shape} (use e.g. "
                "dist.Uniform(2.0, 40.0), not a vector of priors)"
            )
        if require == ">0":
            _warn_negative_prior(value, label)
        return value
    if isinstance(value, (str, bytes, bool, np.bool_)):  # ('16' became 16.0 and True 1.0 without a word)
        raise TypeError(f"{label} must be a number in {_units.quantity(1.0, physical_type).unit}, a Quantity or a "
                        f"numpyro distribution; got {type(value).__name__} {value!r}")
    if isinstance(value, u.Quantity):
        value = _units.strip(value, physical_type, name=label)
    if isinstance(value, jax.Array):
        if value.shape != ():
            raise ValueError(f"{label} must be a scalar; got an array of shape {value.shape}")
        return value
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"{label} must be a number in {_units.quantity(1.0, physical_type).unit}, a Quantity "
            f"or a numpyro distribution; got {type(value).__name__}"
        ) from None
    if arr.shape != ():
        raise ValueError(f"{label} must be a scalar; got an array of shape {arr.shape}")
    v = float(arr)
    check, word = _REQUIREMENTS[require]
    if not np.isfinite(v) or not check(v):
        raise ValueError(f"{label} must be {word}; got {v}")
    return v


#: a prior of a positive parameter with more than this mass below 0 is warned about
NEGATIVE_PRIOR_MASS = 1e-3


def _warn_negative_prior(prior: Distribution, label: str) -> None:
    """Warn where a prior of a parameter that must be positive puts real mass below 0 (a Uniform(−1e9, 1e9) on a
    density: NUTS then explores negative densities, which pull the wrong way). Narrow real-line priors well above 0
    (a Normal(1.2e10, 3e9) M☉ mass) are fine; priors without a CDF are not judged."""
    try:
        below = float(prior.cdf(jnp.asarray(0.0)))
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return
    if np.isfinite(below) and below > NEGATIVE_PRIOR_MASS:
        warnings.warn(
            f"{label} must be positive, but its prior {type(prior).__name__} puts {100 * below:.3g} % of its mass "
            "below 0, where the component is unphysical (a negative mass or density pulls the wrong way); use a "
            "prior on positive values (LogUniform, Uniform(low ≥ 0), TruncatedNormal(low=0, ...))",
            UserWarning, stacklevel=_user_stacklevel())


def _own_parameter(cls: type, name: str, value: Any) -> Any:
    """:func:`parameter` for ``cls``'s parameter ``name``: its physical type and its
    requirement (``cls.parameter_requirements``, ``">0"`` where unlisted)."""
    ptype = cls.parameter_types[cls.parameter_names.index(name)]
    return parameter(value, ptype, name, cls.__name__, cls.parameter_requirements.get(name, ">0"))


_BIND_FIX = (". Fix: bind a value in range; to evaluate one outside it on purpose (a draw of a prior that reaches "
             "past it), bind a JAX array, e.g. jnp.asarray(value)")


def _is_plain_number(value: Any) -> bool:
    """A Python or NumPy number (or 0-d NumPy array): checked like a constructor argument.
    JAX arrays (traced or not), priors and arrays of weights are bound unchecked."""
    return isinstance(value, (int, float, np.number)) or (isinstance(value, np.ndarray) and value.ndim == 0)


def _user_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel of the first frame outside bayesdyn and equinox (whose
    ``__init__`` wrappers add frames), so that a warning points at the user's line."""
    skip = (os.path.dirname(os.path.dirname(__file__)) + os.sep, os.path.dirname(eqx.__file__) + os.sep)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def _positions(x: Any, what: str) -> jax.Array:
    """Positions as a float array of shape (..., 3) in kpc."""
    x = jnp.asarray(_units.strip(x, "length", name="x"))  # a Table column with a unit in pc was read as kpc
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim == 0 or x.shape[-1] != 3:
        raise ValueError(
            f"{what}: positions must have shape (3,) or (N, 3) (Galactocentric x, y, z in "
            f"kpc); got shape {tuple(x.shape)}. Fix: pass one row (x, y, z) per position"
        )
    return x


@functools.partial(jax.jit, static_argnames="method")
def _batched(component: "Component", x: jax.Array, method: str) -> jax.Array:
    """vmap a single-point method over (N, 3) positions. Parameters are traced, so one
    compiled program serves every component of the same structure and every N-row call."""
    return jax.vmap(getattr(component, method))(x)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


class Component(eqx.Module):
    """A mass component of a galaxy model: potential, acceleration and density.

    Subclasses declare ``parameter_names`` and ``parameter_types`` (physical types
    as understood by :func:`bayesdyn.units.strip`) and implement three
    single-point methods for one position ``x`` of shape (3,) in kpc:
    ``_potential(x)`` [(km/s)²], ``_acceleration(x)`` [(km/s)²/kpc] and
    ``_density(x)`` [M☉/kpc³]. :class:`PotentialComponent` derives the last two
    from the first by automatic differentiation; :class:`SphericalComponent`
    derives all three from radial profiles.

    Every parameter is either a number (internal units) or a scalar numpyro
    distribution, a *free* parameter. ``free_parameters()`` lists the priors and
    ``bind(values)`` returns a copy with numbers in their place (pure, works on
    traced values inside ``jit`` and NumPyro models); evaluating a component with
    unbound priors raises :class:`UnboundParameterError`.

    Components add: ``halo + disk`` is a :class:`CompositePotential`.
    """

    parameter_names: ClassVar[tuple[str, ...]] = ()
    parameter_types: ClassVar[tuple[str, ...]] = ()
    #: name → ``">0"`` (the default), ``">=0"`` or ``"any"``: the range a number must have
    parameter_requirements: ClassVar[Mapping[str, str]] = {}
    _subcomponent_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if len(cls.parameter_names) != len(cls.parameter_types):
            raise TypeError(f"{cls.__name__}: parameter_names and parameter_types differ in length")
        odd = sorted(set(cls.parameter_requirements) - set(cls.parameter_names))
        if odd or not set(cls.parameter_requirements.values()) <= set(_REQUIREMENTS):
            raise TypeError(f"{cls.__name__}: parameter_requirements names unknown parameters {odd} or rules "
                            f"other than {sorted(_REQUIREMENTS)}")
        shadowed = [n for n in cls.parameter_names if hasattr(Component, n)]
        if shadowed:
            raise TypeError(f"{cls.__name__}: parameter name(s) {shadowed} would shadow Component methods")

    # ---------------------------------------------------------- single point
    @abc.abstractmethod
    def _potential(self, x: jax.Array) -> jax.Array:
        """Potential at one position x (3,) [kpc] in (km/s)²."""

    @abc.abstractmethod
    def _acceleration(self, x: jax.Array) -> jax.Array:
        """Acceleration −∇Φ at one position x (3,) [kpc] in (km/s)²/kpc."""

    @abc.abstractmethod
    def _density(self, x: jax.Array) -> jax.Array:
        """Mass density ∇²Φ/4πG at one position x (3,) [kpc] in M☉/kpc³."""

    # ---------------------------------------------------------- batched, public
    def _evaluate(self, method: str, x: Any, what: str) -> jax.Array:
        self._require_bound(what)
        x = _positions(x, what)
        out = _batched(self, x.reshape(-1, 3), method)
        return out.reshape(x.shape[:-1] + out.shape[1:])

    def acceleration(self, x: Any) -> jax.Array:
        """Gravitational acceleration a = −∇Φ.

        Args:
            x: positions, shape (3,) or (N, 3) [kpc] (Galactocentric cartesian),
                or a length Quantity.

        Returns:
            Array of the same shape as ``x`` in (km/s)²/kpc.
        """
        return self._evaluate("_acceleration", x, f"{type(self).__name__}.acceleration")

    def density(self, x: Any) -> jax.Array:
        """Mass density ρ = ∇²Φ / 4πG.

        Args:
            x: positions, shape (3,) or (N, 3) [kpc], or a length Quantity.

        Returns:
            Array of shape () or (N,) in M☉/kpc³.
        """
        return self._evaluate("_density", x, f"{type(self).__name__}.density")

    def potential(self, x: Any) -> jax.Array:
        """Gravitational potential Φ (zero at infinity unless the class says otherwise).

        Args:
            x: positions, shape (3,) or (N, 3) [kpc], or a length Quantity.

        Returns:
            Array of shape () or (N,) in (km/s)².
        """
        return self._evaluate("_potential", x, f"{type(self).__name__}.potential")

    def circular_velocity(self, x: Any) -> jax.Array:
        """Circular speed v_c = √(R · ∂Φ/∂R) at the given positions.

        Args:
            x: positions, shape (3,) or (N, 3) [kpc]; v_c is evaluated at each
                position's cylindrical radius R = √(x² + y²) and height z.

        Returns:
            Array of shape () or (N,) in km/s (NaN where the radial force is
            outward).
        """
        return self._evaluate("_circular_velocity", x, f"{type(self).__name__}.circular_velocity")

    def _circular_velocity(self, x: jax.Array) -> jax.Array:
        a = self._acceleration(x)
        v2 = -(x[0] * a[0] + x[1] * a[1])
        # √ only of positive values: √0's infinite derivative made the parameter gradients of a whole batch NaN when
        # one point lay on the z axis; 0 on the axis, NaN where the radial force is outward (or not finite)
        root = jnp.sqrt(jnp.where(v2 > 0, v2, 1.0))
        return jnp.where(v2 > 0, root, jnp.where(v2 == 0, 0.0, jnp.nan))

    # ---------------------------------------------------------- parameters
    def _subcomponents(self) -> list[tuple[str, "Component", Callable]]:
        """(name prefix, component, getter) for each wrapped or summed component."""
        out = []
        for field in self._subcomponent_fields:
            value = getattr(self, field)
            if isinstance(value, Component):
                out.append(("", value, lambda m, f=field: getattr(m, f)))
            else:  # a named tuple of components (CompositePotential)
                names = getattr(self, "names")
                for i, (name, comp) in enumerate(zip(names, value)):
                    out.append((name + ".", comp, lambda m, f=field, i=i: getattr(m, f)[i]))
        return out

    def parameters(self) -> dict[str, Any]:
        """Every parameter by name (``"halo.scale_radius"`` inside a composite): number or prior."""
        out = {name: getattr(self, name) for name in self.parameter_names}
        for prefix, comp, _ in self._subcomponents():
            for name, value in comp.parameters().items():
                out[prefix + name] = value
        return out

    def parameter_physical_types(self) -> dict[str, str]:
        """Every parameter's physical type (as :func:`bayesdyn.units.strip` names them), by the names of
        :meth:`parameters`: the unit a number or a draw of it is in."""
        out = dict(zip(self.parameter_names, self.parameter_types))
        for prefix, comp, _ in self._subcomponents():
            out.update({prefix + name: ptype for name, ptype in comp.parameter_physical_types().items()})
        return out

    def free_parameters(self) -> dict[str, Distribution]:
        """The parameters that are numpyro distributions, by name."""
        return {k: v for k, v in self.parameters().items() if isinstance(v, Distribution)}

    def bind(self, values: Mapping[str, Any]) -> "Component":
        """Return a copy with the named parameters replaced.

        Args:
            values: parameter name → value: a number in internal units, a
                (possibly traced) JAX scalar, a Quantity, or a new prior. Names as
                in :meth:`parameters` (``"disk.mass"`` inside a composite).

        Returns:
            A new component of the same class; ``self`` is unchanged.

        Raises:
            KeyError: if a name is not a parameter of this component.
            ValueError: if a plain number (or Quantity) is outside the parameter's
                range, as the constructor checks it (``NFW.bind({"scale_radius":
                -16})``). JAX arrays, traced or not, are bound unchecked, so a
                sampler's draws and an autodiff probe at a boundary pass.
        """
        values = dict(values)
        known = self.parameters()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise KeyError(
                f"{type(self).__name__}.bind: unknown parameter(s) {unknown}; "
                f"this component's parameters are {sorted(known)}"
            )
        new = self
        for name, ptype in zip(self.parameter_names, self.parameter_types):
            if name in values:
                value = values.pop(name)
                if isinstance(value, (str, bytes, bool, np.bool_, list, tuple, dict)):
                    # (stored as given, they failed only when evaluated: "unsupported operand type(s) for /")
                    raise TypeError(f"{type(self).__name__}.bind: {name} must be a number, a JAX or NumPy array, a "
                                    f"Quantity or a numpyro distribution; got {type(value).__name__} {value!r}")
                if _is_plain_number(value) or (isinstance(value, u.Quantity) and value.isscalar):
                    try:
                        value = _own_parameter(type(self), name, value)
                    except ValueError as err:
                        raise ValueError(f"{err}{_BIND_FIX}") from None
                elif isinstance(value, u.Quantity):
                    value = _units.strip(value, ptype, name=f"{type(self).__name__}.{name}")
                new = eqx.tree_at(lambda m, n=name: getattr(m, n), new, value)
        for prefix, comp, getter in new._subcomponents():
            mine = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
            if mine:
                new = eqx.tree_at(getter, new, comp.bind(mine))
        try:
            new._check_values()
        except ValueError as err:
            raise ValueError(f"{err}{_BIND_FIX}") from None
        return new

    def _check_values(self) -> None:
        """Checks across parameters that are plain numbers (a Zhao γ < 3, say), run by the
        constructor and by :meth:`bind`; a subclass overrides it. Raises ValueError."""

    def sample(self, prefix: str | None = None) -> "Component":
        """Draw every free parameter with ``numpyro.sample`` and bind the draws.

        For use inside a NumPyro model: site names are ``f"{prefix}.{name}"``
        (or just ``name`` without a prefix).

        Args:
            prefix: site-name prefix, e.g. ``"halo"``.

        Returns:
            The bound component (no priors left).
        """
        import numpyro

        values = {  # arrays: a prior's draws are bound unchecked, also when substituted as numbers
            name: jnp.asarray(numpyro.sample(f"{prefix}.{name}" if prefix else name, prior))
            for name, prior in self.free_parameters().items()
        }
        return self.bind(values)

    def _require_bound(self, what: str) -> None:
        free = self.free_parameters()
        if free:
            raise UnboundParameterError(
                f"{what}: parameter(s) {sorted(free)} are still priors (numpyro distributions). "
                "Fix: bind numbers first, e.g. component.bind({"
                + ", ".join(f"'{k}': ..." for k in sorted(free))
                + "}), or inside a NumPyro model use component.sample('name')"
            )

    def __add__(self, other: Any) -> "CompositePotential":
        if not isinstance(other, Component):
            return NotImplemented
        return CompositePotential._concatenate(self, other)


class PotentialComponent(Component):
    """A component defined by its potential alone.

    Subclasses implement ``_potential(x)``; the acceleration −∇Φ and the density
    ∇²Φ/4πG follow by automatic differentiation (e.g. a flattened potential or a
    neural-network potential).
    """

    def _acceleration(self, x: jax.Array) -> jax.Array:
        return -jax.grad(self._potential)(x)

    def _density(self, x: jax.Array) -> jax.Array:
        return jnp.trace(jax.hessian(self._potential)(x)) / _FOUR_PI_G


class CompositePotential(Component):
    """A sum of named components; Φ, a and ρ add.

    Example:
        >>> from bayesdyn.potentials import NFW, MiyamotoNagai
        >>> mw = CompositePotential(halo=NFW(1e7, 16.0), disk=MiyamotoNagai(6.8e10, 3.0, 0.28))
        >>> mw["halo"].scale_radius
        16.0

    Parameters of the parts are named ``"<part>.<parameter>"``
    (``mw.bind({"halo.scale_radius": 12.0})``).

    Args:
        components: an optional mapping name → component (keeps its order).
        **named: more components by name.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    components: tuple[Component, ...]
    _subcomponent_fields: ClassVar[tuple[str, ...]] = ("components",)

    def __init__(self, components: Mapping[str, Component] | None = None, /, **named: Component):
        items = dict(components or {})
        for k, v in named.items():
            if k in items:
                raise ValueError(f"CompositePotential: component name {k!r} given twice")
            items[k] = v
        if not items:
            raise ValueError("CompositePotential needs at least one component, e.g. halo=NFW(...)")
        for k, v in items.items():
            if not isinstance(k, str) or not k.isidentifier():
                raise ValueError(
                    f"CompositePotential: component name {k!r} must be a Python identifier "
                    "(letters, digits, underscores; no dots) so that parameters read 'name.parameter'"
                )
            if not isinstance(v, Component):
                raise TypeError(
                    f"CompositePotential: {k!r} is a {type(v).__name__}, not a potential Component"
                )
        self.names = tuple(items)
        self.components = tuple(items.values())

    @classmethod
    def _concatenate(cls, *parts: Component) -> "CompositePotential":
        items: dict[str, Component] = {}

        def add(name: str, comp: Component) -> None:
            candidate, k = name, 2
            while candidate in items:
                candidate, k = f"{name}_{k}", k + 1
            items[candidate] = comp

        for part in parts:
            if isinstance(part, CompositePotential):
                for name, comp in zip(part.names, part.components):
                    add(name, comp)
            else:
                add(_snake(type(part).__name__), part)
        return cls(items)

    def __getitem__(self, name: str) -> Component:
        try:
            return self.components[self.names.index(name)]
        except ValueError:
            raise KeyError(f"no component named {name!r}; components are {list(self.names)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def items(self) -> list[tuple[str, Component]]:
        """(name, component) pairs in order."""
        return list(zip(self.names, self.components))

    def _potential(self, x: jax.Array) -> jax.Array:
        return sum(c._potential(x) for c in self.components)

    def _acceleration(self, x: jax.Array) -> jax.Array:
        return sum(c._acceleration(x) for c in self.components)

    def _density(self, x: jax.Array) -> jax.Array:
        return sum(c._density(x) for c in self.components)

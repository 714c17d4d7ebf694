"""`PotentialModel`: a Galactic potential stated with priors, compiled to a NumPyro model."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .. import units as _units
from ._data import AccelerationData, StarScoreData, WeakFormData

__all__ = ["PotentialModel", "acceleration_log_likelihood", "derived_quantities", "weak_form_log_likelihood"]

#: height of the K_z / surface-density integral (Kuijken & Gilmore 1989) [kpc]
KZ_HEIGHT = 1.1


def _is_dark(name: str) -> bool:
    n = name.lower()
    return "halo" in n or "dark" in n or n.startswith("dm")


#: component classes that are dark matter whatever their name (a Flattened or Tilted one is looked through)
_DARK_TYPES = ("NFW", "Zhao", "ZhaoAtRadius", "Burkert", "PseudoIsothermal", "CoreNFW", "Einasto", "DarkDisk")


def _dark_type(comp: Any) -> str | None:
    """The dark-matter profile class of a component, looking through Flattened/Tilted wrappers, or None."""
    for _ in range(8):
        if type(comp).__name__ in _DARK_TYPES:
            return type(comp).__name__
        inner = getattr(comp, "component", None)
        if inner is None:
            return None
        comp = inner
    return None


class PotentialModel:
    """A potential made of named components, each with fixed parameters or NumPyro priors.

    Example:
        >>> import numpyro.distributions as dist, bayesdyn as bd
        >>> model = bd.PotentialModel(
        ...     halo=bd.potentials.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.Uniform(2, 40)),
        ...     disk=bd.potentials.MiyamotoNagai(mass=6.8e10, a=3.0, b=0.28),
        ... )  # doctest: +SKIP

    Calling the model (``model(data)``) runs a plain NumPyro model with sample sites
    named ``component.parameter``; the posterior also carries these derived
    quantities (``derived.*``, computed per draw by :meth:`derived`):

    - ``derived.rho_dm_sun``: dark-matter density at the Sun [M☉/kpc³] (components
      whose name contains "halo" or "dark" or starts with "dm", or those listed in
      ``dark=``; a halo profile or dark disk that the names leave out is warned about),
      at the Sun's height z☉ (not in the midplane: a dark disk a few pc thick counts
      there sech²(z☉/2h) of its midplane density);
    - ``derived.rho_total_sun``: total density at the Sun [M☉/kpc³];
    - ``derived.v_circ_R0``: circular velocity in the midplane at R0 [km/s] (0, not NaN,
      at a draw whose radial force there points outwards);
    - ``derived.Kz_1p1kpc``: vertical force −a_z at (R0, z = 1.1 kpc) [(km/s)²/kpc], signed:
      positive when it pulls towards the plane;
    - ``derived.Sigma_1p1kpc``: total surface density within |z| < 1.1 kpc at R0,
      ∫ρ(R0, z) dz over |z| < 1.1 kpc [M☉/pc²] (composite Gauss–Legendre on panels
      from 1 pc wide at the plane, so layers a few pc thick are resolved; unlike
      K_z/2πG it has no radial-force term).

    Args:
        dark: names of the dark-matter components (default: by name, see above).
        **components: name → component (``bayesdyn.potentials``).
    """

    def __init__(self, *, dark: tuple[str, ...] | None = None, **components: Any):
        if not components:
            raise ValueError("PotentialModel needs at least one component, e.g. halo=bd.potentials.NFW(...)")
        for name, comp in components.items():
            if "." in name:
                raise ValueError(f"component name {name!r} must not contain '.'")
            if not (hasattr(comp, "acceleration") and hasattr(comp, "free_parameters") and hasattr(comp, "bind")):
                raise TypeError(
                    f"component {name!r} is a {type(comp).__name__}, not a bayesdyn.potentials component"
                )
        self.components: dict[str, Any] = dict(components)
        self.dark = tuple(dark) if dark is not None else tuple(n for n in components if _is_dark(n))
        unknown = set(self.dark) - set(components)
        if unknown:
            raise ValueError(f"dark= names unknown components {sorted(unknown)}; components are {list(components)}")
        if dark is None and not self.dark:
            warnings.warn(
                f"no component of {list(components)} counts as dark matter (by name: containing 'halo' or 'dark', or "
                "starting with 'dm'), so derived.rho_dm_sun is 0; name them with dark=('nfw',), or pass dark=() if "
                "the model has none (in a pipeline config: dark = true or false in each [model.<name>] table)",
                UserWarning, stacklevel=2)
        missed = {n: t for n, c in components.items() if dark is None and n not in self.dark
                  and (t := _dark_type(c)) is not None}
        if missed and self.dark:  # (with none dark at all, the warning above says it)
            warnings.warn(
                f"{', '.join(f'{n!r} ({t})' for n, t in missed.items())} "
                f"{'do' if len(missed) > 1 else 'does'} not count as dark matter, although "
                f"{'they are dark-matter profiles' if len(missed) > 1 else 'it is a dark-matter profile'}: by name "
                f"only {list(self.dark)} do ('halo' or 'dark' in the name, or 'dm' first), so derived.rho_dm_sun "
                f"leaves {'them' if len(missed) > 1 else 'it'} out; pass dark={tuple(self.dark) + tuple(missed)!r}, "
                "or dark= with the ones you mean (in a pipeline config: dark = true or false in each "
                "[model.<name>] table)", UserWarning, stacklevel=2)
        stellar = [n for n in self.dark if dark is None and ("stellar" in n.lower() or "star" in n.lower())]
        if stellar:
            warnings.warn(
                f"{stellar} count as dark matter by name (they contain 'halo' or 'dark'); if they are stellar, pass "
                f"dark= with the dark components only, e.g. dark={tuple(n for n in self.dark if n not in stellar)!r}",
                UserWarning, stacklevel=2)

    # ---------------------------------------------------------------- parameters
    def free_parameters(self) -> dict[str, dist.Distribution]:
        """All free parameters as ``{"component.parameter": prior}``."""
        out = {}
        for cname, comp in self.components.items():
            for pname, prior in comp.free_parameters().items():
                out[f"{cname}.{pname}"] = prior
        return out

    def strip_samples(self, samples: Mapping[str, Any]) -> dict[str, Any]:
        """``samples`` with Quantities converted to each parameter's internal unit (others unchanged).

        Raises:
            UnitError: a Quantity of the wrong kind for its parameter.
        """
        types = {f"{c}.{n}": t for c, comp in self.components.items()  # (a duck-typed component may have none)
                 for n, t in getattr(comp, "parameter_physical_types", dict)().items()}
        return {k: _units.strip(v, types[k], k) if k in types else v for k, v in samples.items()}

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Components with the free parameters set from ``{"component.parameter": value}``.

        A number is checked as each component's constructor checks it (ValueError outside
        its range); a JAX array is bound unchecked (see :meth:`Component.bind
        <bayesdyn.potentials.Component.bind>`).
        """
        unknown = sorted({k for k in values if k.split(".", 1)[0] not in self.components})
        if unknown:  # (a misspelt component was left unbound without a word)
            raise KeyError(f"PotentialModel.bind: {unknown} name no component of this model; names are "
                           f"'component.parameter' with components {list(self.components)}")
        bound = {}
        for cname, comp in self.components.items():
            own = {k.split(".", 1)[1]: v for k, v in values.items() if k.split(".", 1)[0] == cname}
            bound[cname] = comp.bind(own) if own else comp
        return bound

    def sample_components(self) -> dict[str, Any]:
        """Inside a NumPyro model: sample every free parameter and return bound components."""
        return self.bind(self._sample_values())

    def _sample_values(self) -> dict[str, jax.Array]:
        # arrays: a prior's draws are bound unchecked (Component.bind checks numbers), also when substituted
        return {name: jnp.asarray(numpyro.sample(name, prior)) for name, prior in self.free_parameters().items()}

    # ---------------------------------------------------------------- evaluation
    def total_acceleration(self, components: Mapping[str, Any], x: jax.Array) -> jax.Array:
        """Sum of the components' accelerations at x (P, 3) [(km/s)²/kpc].

        Components without free parameters are evaluated once at trace time
        (``jax.ensure_compile_time_eval``) when ``x`` is concrete, so a fixed
        bulge costs nothing per NUTS step.
        """
        fixed = [n for n, c in self.components.items() if not c.free_parameters()]
        free = [n for n in components if n not in fixed]
        total = sum((components[n].acceleration(x) for n in free), jnp.zeros(jnp.shape(x)))
        if fixed:
            with jax.ensure_compile_time_eval():
                total = total + sum(components[n].acceleration(x) for n in fixed)
        return total

    def __call__(
        self, data: AccelerationData | StarScoreData | WeakFormData, *, tempering: float = 1.0,
        record_derived: bool = False,
    ) -> None:
        """The NumPyro model: priors and the likelihood of ``data``.

        Args:
            data: :class:`AccelerationData`, :class:`StarScoreData` or :class:`WeakFormData`.
            tempering: the log-likelihood is divided by this (≥ 1 widens the posterior).
            record_derived: also record the ``derived.*`` deterministic sites. :func:`infer`
                leaves this off and computes them once per draw after sampling (see
                :meth:`derived`), which keeps every NUTS step cheap.
        """
        values = self._sample_values()
        comps = self.bind(values)
        if record_derived:
            derived_quantities(comps, self.dark, data.sun, record=True)
        if isinstance(data, AccelerationData):
            data.check_factor()
            ll = acceleration_log_likelihood(self.total_acceleration(comps, data.x), data)
        elif isinstance(data, StarScoreData):
            data.check()
            a = self.total_acceleration(comps, data.x)
            r = jnp.sum(data.v * data.s_x, -1) + jnp.sum(a * data.s_v, -1)
            ll = jnp.sum(dist.Normal(0.0, data.sigma).log_prob(r))
        elif isinstance(data, WeakFormData) and data.linear_moments is not None:
            # every free parameter an amplitude (stored by infer for this model): ḡ is linear in them
            theta = jnp.stack([jnp.asarray(values[n], data.linear_moments.dtype) for n in values])
            r = data.whiten @ (data.constant_moments + theta @ data.linear_moments)
            ll = -0.5 * data.x.shape[0] * jnp.sum(r * r)
        elif isinstance(data, WeakFormData):
            if data.fixed_acceleration is None:
                a = data.field(lambda x: self.total_acceleration(comps, x))
            else:  # the fixed components' part, stored by weak_form_weights for this model
                fixed = [n for n, c in self.components.items() if not c.free_parameters()]
                a = sum((data.field(c.acceleration) for n, c in comps.items() if n not in fixed),
                        data.fixed_acceleration)
            ll = weak_form_log_likelihood(a, data)
        else:
            raise TypeError(
                f"data must be AccelerationData, StarScoreData or WeakFormData, got {type(data).__name__}")
        numpyro.factor("likelihood", ll / tempering)

    def derived(self, samples: Mapping[str, Any], sun: Any) -> dict[str, jax.Array]:
        """``derived.*`` quantities for every draw of ``samples`` (arrays of any common shape).

        Args:
            samples: ``{"component.parameter": draws}`` in each parameter's internal unit, or Quantities
                (converted; a draw in M☉/pc³ was read as M☉/kpc³).
            sun: the Sun's position (3,) [kpc], or a length Quantity.

        Returns:
            ``{"derived.<name>": array of the samples' shape}`` in the units of :func:`derived_quantities`.
        """
        names = list(self.free_parameters())
        missing = [n for n in names if n not in samples]
        if missing:
            raise KeyError(f"samples lack the free parameters {missing}")
        samples = self.strip_samples({n: samples[n] for n in names})
        shape = np.shape(samples[names[0]]) if names else ()
        flat = {n: jnp.reshape(jnp.asarray(samples[n]), (-1,)) for n in names}
        sun = jnp.asarray(_units.strip(sun, "length", "sun"))

        def one(values):
            return derived_quantities(self.bind(values), self.dark, sun)

        if names:
            out = jax.jit(jax.vmap(one))(flat)
        else:
            out = jax.tree.map(lambda t: t[None], one({}))
        return {f"derived.{k}": jnp.reshape(v, shape) for k, v in out.items()}

    def __repr__(self) -> str:
        def fmt(comp):
            parts = []
            for p in getattr(comp, "parameter_names", ()):
                parts.append(f"{p}{_value_text(getattr(comp, p, None))}")
            start = _start_text(comp)
            if start:
                parts.append(start)
            fixed = tuple(getattr(comp, "fixed_keywords", ()))
            for k in fixed:  # fixed settings that are not parameters (r_ref)
                parts.append(f"{k}={float(getattr(comp, k))!r}")  # exact: caches are keyed by the repr
            for k in getattr(comp, "fixed_arrays", ()):  # fixed array settings (a network's input centre, scale)
                parts.append(f"{k}={_exact_list(getattr(comp, k))}")
            if dataclasses.is_dataclass(comp):  # other static settings (MN3ExponentialDisk's sech2, a network's shape)
                for f in dataclasses.fields(comp):
                    if f.metadata.get("static") and f.name not in fixed and f.name != "names":
                        parts.append(f"{f.name}={getattr(comp, f.name)!r}")
            for field in getattr(comp, "_subcomponent_fields", ()):  # what a wrapper or composite holds
                value = getattr(comp, field)
                if isinstance(value, tuple):  # a composite's named parts
                    names = getattr(comp, "names", range(len(value)))
                    parts.append(f"{field}=[{', '.join(f'{n}={fmt(c)}' for n, c in zip(names, value))}]")
                elif hasattr(value, "parameter_names"):  # a wrapped component
                    parts.append(f"{field}={fmt(value)}")
                else:
                    parts.append(f"{field}={value!r}")
            return f"{type(comp).__name__}({', '.join(parts)})"

        inner = ", ".join(f"{k}={fmt(v)}" for k, v in self.components.items())
        return f"PotentialModel({inner})"


def _start_text(comp: Any) -> str:
    """``initial_weights=<array …>`` for a network whose weights are a prior and which knows where a MAP fit of
    them starts (a different start is a different fit, so it enters the repr); ``""`` otherwise."""
    start = getattr(comp, "initial_weights", None)
    if start is None or not isinstance(getattr(comp, "weights", None), dist.Distribution):
        return ""
    return f"initial_weights{_value_text(start)}"


def _value_text(val: Any) -> str:
    """A parameter's text in a repr (the key of cached posteriors): ``~Prior(args)`` with its scalar arguments and a
    digest of its array ones, ``=value`` for a scalar, ``=<array (shape) sha256=…>`` for an array."""
    if isinstance(val, dist.Distribution):
        own = [k for k in type(val).arg_constraints if k not in _FIRST_ARGS]  # Gamma's concentration, StudentT's df…
        args = ", ".join(
            f"{k}={_scalar_text(getattr(val, k))}" for k in (*_FIRST_ARGS, *own)
            if hasattr(val, k) and jnp.ndim(getattr(val, k)) == 0
        )
        arrays = _distribution_arrays(val)  # a network's prior: its loc and scale vectors
        if arrays:
            args += (", " if args else "") + f"sha256={_digest(*arrays)}"
        base = getattr(val, "base_dist", None)
        # a wrapper's base: a truncated or folded Normal's loc and scale, a transformed distribution's base and
        # transforms; not below Independent or expand() (digested above) nor below a transformed distribution that
        # names its own arguments (LogUniform's low and high say it all)
        self_described = isinstance(val, dist.TransformedDistribution) and type(val).arg_constraints
        if base is not None and not isinstance(val, (dist.Independent, dist.ExpandedDistribution)) \
                and not self_described:
            args += (", " if args else "") + f"base{_value_text(base)}"
            transforms = getattr(val, "transforms", None)
            if transforms and isinstance(val, dist.TransformedDistribution):
                numbers = [v for t in transforms for v in vars(t).values()
                           if isinstance(v, (int, float, jax.Array)) or hasattr(v, "__array__")]
                names = "·".join(type(t).__name__ for t in transforms)
                args += f", transforms={names}" + (f" sha256={_digest(*numbers)}" if numbers else "")
        return f"~{type(val).__name__}({args})"
    if jnp.ndim(val) == 0:
        return f"={_scalar_text(val)}"
    return f"=<array {tuple(jnp.shape(val))} sha256={_digest(val)}>"


#: the prior arguments written first, in this order (the text of the package's usual priors)
_FIRST_ARGS = ("low", "high", "loc", "scale")


def _scalar_text(value: Any) -> str:
    """A scalar as the shortest ``g``-format text of at least 4 significant digits that reads back to it exactly in
    its own precision (``1e+05``, ``8.122``, ``0.3`` for float32 0.3, ``1.23456`` — not ``1.235``): caches are keyed
    by the repr, so two numbers that differ anywhere must not share a text."""
    import numpy as np

    if isinstance(value, jax.core.Tracer):  # inside jit: no value to write
        return "<traced>"
    arr = np.asarray(value)
    kind = arr.dtype.type if arr.dtype.kind == "f" else np.float64
    x = kind(arr)
    if not np.isfinite(x):
        return f"{float(x)}"
    for digits in range(4, 18):
        text = f"{float(x):.{digits}g}"
        if kind(text) == x:
            return text
    return repr(float(x))


def _distribution_arrays(d: Any) -> list:
    """The array-valued (non-scalar) low/high/loc/scale of a distribution, and every one of them under
    ``Independent`` or ``expand()`` (``base_dist``), in a fixed order: what a repr must digest to tell two such
    priors apart."""
    out, inside_wrapper = [], False
    while d is not None:  # below Independent or expand(), scalar parameters too (Normal(0, s).expand([P]))
        keys = (*_FIRST_ARGS, *(k for k in type(d).arg_constraints if k not in _FIRST_ARGS))  # Gamma's concentration…
        out += [getattr(d, k) for k in keys if hasattr(d, k) and (inside_wrapper or jnp.ndim(getattr(d, k)) > 0)]
        inside_wrapper = isinstance(d, (dist.Independent, dist.ExpandedDistribution))
        d = getattr(d, "base_dist", None)
    return out


def _digest(*arrays: Any) -> str:
    """The first 12 hex digits of a SHA-256 over the arrays' dtypes, shapes and bytes (a repr's stand-in for an
    array too long to write out: caches are keyed by the repr)."""
    import hashlib

    import numpy as np

    if any(isinstance(a, jax.core.Tracer) for a in arrays):  # inside jit: no values to digest
        return "<traced>"
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()[:12]


def _exact_list(value: Any) -> str:
    """A fixed setting's numbers, each written as the shortest text that reads back to it in its own
    precision (float32 0.3 as ``0.3``, not ``0.30000001192092896``): exact, since caches are keyed by the repr."""
    import numpy as np

    if isinstance(value, jax.core.Tracer):  # inside jit: no values to write
        return f"<traced {value.dtype}{list(value.shape)}>"
    arr = np.asarray(value)
    text = ", ".join(np.format_float_positional(x, unique=True, trim="-") for x in arr.ravel())
    return text if arr.ndim == 0 else f"[{text}]"


def acceleration_log_likelihood(a_model: jax.Array, data: AccelerationData) -> jax.Array:
    """Σ_nodes log N(a_model | a_hat, C) [nats] (Cholesky factors precomputed in the data).

    Raises:
        ValueError: ``a_model`` not of the data's shape (nodes, 3): one of shape (3,) or (1, 3) had been broadcast
            against every node, and one of another node count failed inside the solve, naming neither.
    """
    if jnp.shape(a_model) != jnp.shape(data.a):
        raise ValueError(f"a_model has shape {jnp.shape(a_model)}, the data's accelerations {jnp.shape(data.a)}: give "
                         "the model's acceleration at each of the data's nodes (data.x), in (km/s)²/kpc")
    tril = data.scale_tril if data.scale_tril is not None else jnp.linalg.cholesky(data.cov)
    z = jax.scipy.linalg.solve_triangular(tril, (a_model - data.a)[..., None], lower=True)[..., 0]
    logdet = jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)))
    return -0.5 * jnp.sum(z**2) - logdet - 0.5 * z.size * jnp.log(2 * jnp.pi)


def weak_form_log_likelihood(a_model: jax.Array, data: WeakFormData) -> jax.Array:
    """GMM quadratic form −½ N |whiten · ḡ|² of the weak-form moments ḡ (:class:`WeakFormData`) for model
    accelerations a_model (N, 3) at the stars (with position errors: ``data.field(acceleration_function)``)."""
    r = data.whiten @ data.mean_moments(a_model)
    return -0.5 * data.x.shape[0] * jnp.sum(r * r)


def derived_quantities(
    components: Mapping[str, Any], dark: tuple[str, ...], sun: jax.Array, record: bool = False
) -> dict[str, jax.Array]:
    """Local quantities at the Sun from bound components (see :class:`PotentialModel`).

    Returns a dict with ``rho_dm_sun`` and ``rho_total_sun`` [M☉/kpc³], ``v_circ_R0``
    [km/s], ``Kz_1p1kpc`` [(km/s)²/kpc] and ``Sigma_1p1kpc`` [M☉/pc²]; with
    ``record=True`` each is also a NumPyro deterministic site ``derived.<name>``.
    """
    sun = jnp.asarray(sun)
    x_sun = sun[None, :]
    rho_tot = sum(c.density(x_sun)[0] for c in components.values())
    rho_dm = sum((components[n].density(x_sun)[0] for n in dark), jnp.zeros(()))
    r0 = jnp.sqrt(sun[0] ** 2 + sun[1] ** 2)
    mid = jnp.array([[sun[0], sun[1], 0.0]])
    a_mid = sum(c.acceleration(mid)[0] for c in components.values())
    rhat = jnp.array([sun[0], sun[1], 0.0]) / r0
    vc = jnp.sqrt(jnp.clip(-r0 * jnp.dot(a_mid, rhat), 0.0))
    up = jnp.array([[sun[0], sun[1], KZ_HEIGHT]])
    kz = -sum(c.acceleration(up)[0, 2] for c in components.values())
    # Σ(|z|<Z) = ∫_{-Z}^{Z} ρ(R0, z) dz, composite Gauss–Legendre on panels that narrow towards the plane
    zs, weights = _surface_density_rule()
    pts = jnp.stack([jnp.full_like(zs, sun[0]), jnp.full_like(zs, sun[1]), zs], axis=-1)
    rho_line = sum(c.density(pts) for c in components.values())
    sigma = jnp.sum(weights * rho_line) * 1e-6  # M☉/kpc² → M☉/pc²
    out = {
        "rho_dm_sun": rho_dm,
        "rho_total_sun": rho_tot,
        "v_circ_R0": vc,
        "Kz_1p1kpc": kz,
        "Sigma_1p1kpc": sigma,
    }
    if record:
        for k, val in out.items():
            numpyro.deterministic(f"derived.{k}", val)
    return out


#: panel edges of the surface-density rule on [0, KZ_HEIGHT] [kpc]: 1, 2, 4, 8 pc wide at the plane, then 16 pc
#: everywhere, so that a layer a few pc thick (a thin dark disk, a Miyamoto–Nagai disk with small b) is resolved at
#: the plane and also where a tilted one crosses R0 away from it
_SIGMA_EDGES = (0.0, 0.001, 0.002, 0.004, 0.008, *(0.016 * k for k in range(1, 69)), KZ_HEIGHT)


def _surface_density_rule(order: int = 8):
    """Nodes z [kpc] and weights [kpc] of ∫_{-Z}^{Z} g(z) dz (Z = ``KZ_HEIGHT``): ``order``-point Gauss–Legendre on
    each panel of ``_SIGMA_EDGES``, mirrored to z < 0 (both halves are evaluated: a tilted component is not
    symmetric about the plane). Within 1e-5 of the exact Σ for untilted sech² layers of scale height 2 pc to 1 kpc,
    tilted ones of 5 pc to 1 kpc, and Miyamoto–Nagai disks with b ≥ 20 pc, tilted or not (tests/test_inference.py;
    a review measured a 2-pc layer tilted by 0.5°, 1° and 3°: 6.7e-5, 2.9e-5, 1.6e-4, where it crosses R0 high
    above the plane in the coarse panels)."""
    import numpy as np

    t, w = np.polynomial.legendre.leggauss(order)
    edges = np.asarray(_SIGMA_EDGES)
    lo, hi = edges[:-1, None], edges[1:, None]
    z = (0.5 * (hi - lo) * t + 0.5 * (hi + lo)).ravel()
    wz = (0.5 * (hi - lo) * w).ravel()
    return jnp.asarray(np.concatenate([-z[::-1], z])), jnp.asarray(np.concatenate([wz[::-1], wz]))

"""Shared test base for potential components (STYLE habit 6, after gala's potential_helpers).

A component's test class sets ``make()`` (or ``cls`` + ``params``), lists its
independent references (galpy, gala or closed forms) in ``references()``, and
inherits the tests of :class:`ComponentTests` (or, for a further parameter set
of the same class, only :class:`ReferenceTests` / :class:`ConsistencyTests`): acceleration, density and potential against every
reference at random points, Poisson's equation by autodiff, a = −∇Φ by autodiff
and by finite differences, batching shapes, float32, priors/bind/jit, and
Quantity input. What a component cannot be checked against is declared (an
empty reference list) and the test is skipped with the reason.

Units: positions kpc, acceleration (km/s)²/kpc, density M☉/kpc³, potential
(km/s)². Tolerances are relative: |a − a_ref| ≤ rtol |a_ref| per point.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpy.testing import assert_allclose

from bayesdyn import units
from bayesdyn.potentials import Component, UnboundParameterError

G = units.G
ACC = u.km**2 / u.s**2 / u.kpc
DENS = u.Msun / u.kpc**3


# ---------------------------------------------------------------- points
def sphere_points(n: int, seed: int, r_min: float = 0.05, r_max: float = 80.0) -> np.ndarray:
    """n positions with log-uniform radii in [r_min, r_max] kpc and isotropic directions."""
    rng = np.random.default_rng(seed)
    r = np.exp(rng.uniform(np.log(r_min), np.log(r_max), n))
    v = rng.normal(size=(n, 3))
    return r[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


def disk_points(n: int, seed: int, R_max: float = 40.0, z_max: float = 8.0) -> np.ndarray:
    """n positions with log-uniform R in [0.05, R_max] and |z| in [1e-3, z_max] kpc, both signs of z."""
    rng = np.random.default_rng(seed)
    R = np.exp(rng.uniform(np.log(0.05), np.log(R_max), n))
    z = np.exp(rng.uniform(np.log(1e-3), np.log(z_max), n)) * rng.choice([-1.0, 1.0], n)
    phi = rng.uniform(0, 2 * np.pi, n)
    return np.stack([R * np.cos(phi), R * np.sin(phi), z], axis=1)


# ---------------------------------------------------------------- references
@dataclasses.dataclass
class Reference:
    """An independent implementation: each callable maps (N, 3) kpc to numpy arrays, or is None."""

    name: str
    acceleration: Callable | None = None
    density: Callable | None = None
    potential: Callable | None = None  # compared up to an additive constant


def galpy_reference(pot: Any, ro: float = 1.0, vo: float = 1.0, gm_scale: float = G) -> Reference:
    """Wrap an axisymmetric galpy potential evaluated in its natural units.

    With ro = 1 kpc and vo = 1 km/s, galpy's natural force and potential units
    are (km/s)²/kpc and (km/s)², and its natural density is G ρ. Construct the
    galpy potential with amp = G × (physical amplitude) and without ro/vo.
    For galpy objects defined with other ro, vo (MWPotential2014: 8 kpc,
    220 km/s) pass them: positions are divided by ro and outputs rescaled.
    galpy's own physical-unit conversions are not used (their G depends on
    whether astropy is installed).
    """
    from galpy import potential as gp

    def cyl(x):
        x = np.asarray(x, dtype=float) / ro
        return np.hypot(x[:, 0], x[:, 1]), x[:, 2], np.arctan2(x[:, 1], x[:, 0])

    def acc(x):
        R, z, phi = cyl(x)
        fR = np.asarray(gp.evaluateRforces(pot, R, z, phi=phi))
        fz = np.asarray(gp.evaluatezforces(pot, R, z, phi=phi))
        scale = vo**2 / ro
        return scale * np.stack([fR * np.cos(phi), fR * np.sin(phi), fz], axis=1)

    def dens(x):
        R, z, phi = cyl(x)
        return np.asarray(gp.evaluateDensities(pot, R, z, phi=phi)) * vo**2 / ro**2 / gm_scale

    def potl(x):
        R, z, phi = cyl(x)
        return np.asarray(gp.evaluatePotentials(pot, R, z, phi=phi)) * vo**2

    return Reference("galpy", acc, dens, potl)


def gala_reference(pot: Any, density_from_hessian: bool = False) -> Reference:
    """Wrap a gala potential (any symmetry); gala uses astropy's G, as we do.

    gala has no density for its flattened/triaxial NFW (it returns NaN); with
    ``density_from_hessian`` the reference density is the trace of gala's
    analytic Hessian over 4πG.
    """

    def q(x):
        return np.asarray(x, dtype=float).T * u.kpc

    def dens(x):
        if density_from_hessian:
            hess = pot.hessian(q(x)).to_value(u.km**2 / u.s**2 / u.kpc**2)
            return np.trace(hess, axis1=0, axis2=1) / (4 * np.pi * G)
        return pot.density(q(x)).to_value(DENS)

    return Reference(
        "gala",
        lambda x: pot.acceleration(q(x)).to_value(ACC).T,
        dens,
        lambda x: pot.energy(q(x)).to_value(u.km**2 / u.s**2),
    )


def spherical_reference(name: str, mass: Callable, density: Callable | None = None,
                        potential: Callable | None = None) -> Reference:
    """A reference from radial functions M(<r) [M☉], ρ(r), Φ(r) written in numpy/scipy."""

    def acc(x):
        x = np.asarray(x, dtype=float)
        r = np.linalg.norm(x, axis=1)
        return -G * np.array([mass(ri) for ri in r])[:, None] * x / r[:, None] ** 3

    def radial(fn):
        if fn is None:
            return None
        return lambda x: np.array([fn(ri) for ri in np.linalg.norm(np.asarray(x, dtype=float), axis=1)])

    return Reference(name, acc, radial(density), radial(potential))


# ---------------------------------------------------------------- comparisons
def assert_vectors_close(actual, desired, rtol: float, what: str) -> None:
    """Per point, |actual − desired| ≤ rtol |desired| (vectors on the last axis)."""
    actual, desired = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    err = np.linalg.norm(actual - desired, axis=-1) / np.linalg.norm(desired, axis=-1)
    worst = int(np.argmax(err))
    assert err.max() <= rtol, f"{what}: max relative error {err.max():.3g} > {rtol:g} at point {worst}"


def assert_scalars_close(actual, desired, rtol: float, what: str, atol: float = 0.0) -> None:
    actual, desired = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def _prior_for(value: float) -> dist.Distribution:
    if value > 0:
        return dist.Uniform(0.5 * value, 2.0 * value)
    return dist.Normal(value, 1.0)


# ---------------------------------------------------------------- the shared bases
#: test-only programs: XLA's cheapest optimisation level halves their compile time
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
def _autodiff_density(component: Component, x):
    """−∇·a / 4πG at each point by forward-mode autodiff of the single-point acceleration."""
    div = jax.vmap(lambda p: jnp.trace(jax.jacfwd(component._acceleration)(p)))(x)
    return -div / (4 * np.pi * G)


class ReferenceTests:
    """Comparisons with independent implementations: set ``make()``, ``points()``, ``references()``."""

    n_points = 128
    seed = 0
    rtol = 1e-6  # float64 comparisons with independent implementations

    def make(self) -> Component:
        raise NotImplementedError  # pragma: no cover - each test class defines it

    def points(self) -> np.ndarray:
        return sphere_points(self.n_points, self.seed)

    def references(self) -> list[Reference]:
        return []

    def _refs(self, attr: str) -> list[Reference]:
        refs = [r for r in self.references() if getattr(r, attr) is not None]
        if not refs:
            pytest.skip(f"{type(self).__name__}: no independent {attr} declared for this case")
        return refs

    def test_acceleration_matches_reference(self):
        refs = self._refs("acceleration")
        comp, x = self.make(), self.points()
        assert len(x) >= 100
        ours = np.asarray(comp.acceleration(x))
        assert ours.dtype == np.float64
        for ref in refs:
            assert_vectors_close(ours, ref.acceleration(x), self.rtol, f"acceleration vs {ref.name}")

    def test_density_matches_reference(self):
        refs = self._refs("density")
        comp, x = self.make(), self.points()
        ours = np.asarray(comp.density(x))
        for ref in refs:
            assert_scalars_close(ours, ref.density(x), self.rtol, f"density vs {ref.name}")

    def test_potential_matches_reference_up_to_constant(self):
        refs = self._refs("potential")
        comp, x = self.make(), self.points()
        ours = np.asarray(comp.potential(x))
        for ref in refs:
            theirs = np.asarray(ref.potential(x))
            scale = np.max(np.abs(theirs - theirs[0]))
            assert_scalars_close(ours - ours[0], theirs - theirs[0], 0.0, f"potential vs {ref.name}",
                                 atol=self.rtol * scale)


class PoissonTests(ReferenceTests):
    """ρ = −∇·a / 4πG by autodiff, for components whose density no library provides."""

    def test_poisson_density_is_minus_divergence_of_acceleration(self):
        comp, x = self.make(), self.points()
        rho = np.asarray(comp.density(x))
        rho_autodiff = np.asarray(_autodiff_density(comp, jnp.asarray(x)))
        scale = np.abs(rho) + 1e-9 * np.max(np.abs(rho))
        err = np.abs(rho_autodiff - rho) / scale
        assert err.max() <= self.rtol, f"Poisson: max relative error {err.max():.3g}"


class Float32Tests(ReferenceTests):
    """float32 positions give float32 results close to float64: for components with
    series, special functions or quadratures (algebraic ones are covered by the
    composite float32 test)."""

    rtol_float32 = 1e-4

    def test_float32_acceleration(self):
        comp, x = self.make(), self.points()
        a32 = comp.acceleration(jnp.asarray(x, dtype=jnp.float32))
        assert a32.dtype == jnp.float32
        assert_vectors_close(a32, comp.acceleration(x), self.rtol_float32, "float32 acceleration")


class GradientTests(ReferenceTests):
    """a = −∇Φ: central finite differences of the public potential."""

    fd_step = 1e-5  # finite-difference step, relative to |x|

    def test_acceleration_is_minus_gradient_of_potential(self):
        comp, x = self.make(), self.points()
        acc = comp.acceleration(x)
        h = self.fd_step * np.linalg.norm(x, axis=1)
        fd = np.zeros_like(x)
        for i in range(3):
            e = np.zeros(3)
            e[i] = 1.0
            up = np.asarray(comp.potential(x + h[:, None] * e))
            down = np.asarray(comp.potential(x - h[:, None] * e))
            fd[:, i] = -(up - down) / (2 * h)
        assert_vectors_close(fd, acc, self.rtol, "a vs −∇Φ (finite differences)")



class ComponentTests(GradientTests):
    """The contract of one component class: references, a = −∇Φ, float32 and the API.

    Set ``cls`` + ``params`` (internal units) or override ``make``; ``quantities``
    gives the same parameters as Quantities in other units (None: not applicable).
    Add :class:`PoissonTests` where no library gives the density and
    :class:`Float32Tests` where float32 needs care (series, special functions); further
    parameter sets of an already-tested class need only :class:`ReferenceTests`
    (plus the others they exercise anew).
    """

    cls: type | None = None
    params: dict[str, Any] = {}
    quantities: dict[str, Any] | None = None

    def make(self) -> Component:
        return self.cls(**self.params)

    def test_batching_shapes(self):
        comp, x = self.make(), self.points()
        n = len(x)
        a = comp.acceleration(x)
        assert a.shape == (n, 3)
        assert comp.density(x).shape == (n,)
        assert comp.potential(x).shape == (n,)
        assert_allclose(comp.acceleration(x.reshape(2, n // 2, 3)), a.reshape(2, n // 2, 3), rtol=1e-14)
        assert_allclose(comp.density(x * u.kpc), comp.density(x), rtol=1e-12)
        with pytest.raises(ValueError, match=r"shape \(3,\) or \(N, 3\)"):
            comp.acceleration(x[:, :2])

    def test_priors_bind_and_jit(self):
        comp, x = self.make(), self.points()
        values = comp.parameters()
        assert values and not comp.free_parameters()
        priors = {k: _prior_for(float(v)) for k, v in values.items()}
        free = comp.bind(priors)
        assert set(free.free_parameters()) == set(values)
        name = sorted(values)[0]
        with pytest.raises(UnboundParameterError, match=name):
            free.acceleration(x)
        bound = free.bind(values)
        assert_allclose(bound.acceleration(x), comp.acceleration(x), rtol=1e-14)
        with pytest.raises(KeyError, match="unknown parameter"):
            comp.bind({"no_such_parameter": 1.0})

        def loss(v):  # inside jit the parameters are tracers
            return jnp.sum(free.bind(v).acceleration(x) ** 2)

        traced = {k: jnp.asarray(float(v)) for k, v in values.items()}
        value, grads = jax.jit(jax.value_and_grad(loss), compiler_options=_FAST_COMPILE)(traced)
        assert_allclose(value, np.sum(np.asarray(comp.acceleration(x)) ** 2), rtol=1e-10)
        assert all(np.isfinite(float(g)) for g in grads.values()), grads

    def test_quantity_parameters(self):
        if self.quantities is None:
            pytest.skip(f"{type(self).__name__}: no constructor parameters to give as Quantities")
        x = self.points()
        from_q = self.cls(**self.quantities)
        assert_allclose(from_q.acceleration(x), self.make().acceleration(x), rtol=1e-12)

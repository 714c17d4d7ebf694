"""Mocks with known truth: each mock against its exact solution or galpy (the independent oracle).

Tolerances are stated in the units of the quantity or in binned standard errors.
"""

from __future__ import annotations

import json
import math

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import bayesdyn as bd
from bayesdyn.mocks import MockError, load_default, plummer, solar_neighbourhood_disk, spherical_tracer

G = bd.units.G
RO, VO = 8.0, 220.0


# ------------------------------------------------------------------ helpers
def _radial_tangential(x, v):
    r = np.linalg.norm(x, axis=1)
    vr = np.sum(x * v, axis=1) / r
    vt2 = np.sum(v**2, axis=1) - vr**2  # two tangential components together
    return r, vr, vt2


def _binned_chi2(values, predicted, bins_of):
    """χ² of bin means of ``values`` against bin means of ``predicted``, in units of the binned standard error."""
    chi2, worst = 0.0, 0.0
    for idx in bins_of:
        diff = values[idx].mean() - predicted[idx].mean()
        se = values[idx].std(ddof=1) / math.sqrt(idx.size)
        chi2 += (diff / se) ** 2
        worst = max(worst, abs(diff / se))
    return chi2, worst


def _quantile_bins(r, nbins):
    order = np.argsort(r)
    return np.array_split(order, nbins)


@jax.jit
def _fields(truth, x):
    """(a, Φ, ρ) at x in one compiled program."""
    return truth.acceleration(x), truth.potential(x), truth.density(x)


def _poisson_and_gradient_residuals(truth, x, h=1e-4):
    """max |ρ + ∇·a/4πG| / ρ and max |a + ∇Φ| / |a| at points x, by central differences (step h kpc, float64)."""
    x = np.asarray(x, dtype=np.float64)
    eye = np.eye(3)
    pts = np.concatenate([x] + [x + h * eye[i] for i in range(3)] + [x - h * eye[i] for i in range(3)])
    with jax.enable_x64(True):
        acc, phi, rho = (np.asarray(f) for f in _fields(truth, jnp.asarray(pts)))
    acc, phi, rho = acc.reshape(7, -1, 3), phi.reshape(7, -1), rho.reshape(7, -1)[0]
    div = sum((acc[1 + i, :, i] - acc[4 + i, :, i]) / (2 * h) for i in range(3))
    grad_phi = np.stack([(phi[1 + i] - phi[4 + i]) / (2 * h) for i in range(3)], axis=1)
    poisson = np.max(np.abs(rho + div / (4 * math.pi * G)) / rho)
    gradient = np.max(np.linalg.norm(acc[0] + grad_phi, axis=1) / np.linalg.norm(acc[0], axis=1))
    return poisson, gradient


# ================================================================== Plummer
@pytest.fixture(scope="module")
def plummer_mock():
    return plummer(20_000, seed=3, mass=1e10, scale_radius=1.0)


def test_plummer_sigma_r_matches_analytic(plummer_mock):
    """⟨v_r²⟩ in 10 radial bins equals GM/(6 sqrt(r² + b²)) within binned standard errors."""
    cat, truth = plummer_mock
    r, vr, vt2 = _radial_tangential(cat.x, cat.v)
    sig2 = G * truth.mass / (6 * np.sqrt(r**2 + truth.scale_radius**2))
    bins = _quantile_bins(r, 10)
    chi2, worst = _binned_chi2(vr**2, sig2, bins)
    assert chi2 < stats.chi2.ppf(0.999, 10), (chi2, worst)
    chi2_t, worst_t = _binned_chi2(vt2 / 2, sig2, bins)  # isotropic: each tangential component too
    assert chi2_t < stats.chi2.ppf(0.999, 10), (chi2_t, worst_t)


def test_plummer_radii_follow_the_mass_profile(plummer_mock):
    cat, truth = plummer_mock
    r = np.linalg.norm(cat.x, axis=1)
    b = truth.scale_radius
    ks = stats.kstest(r, lambda s: s**3 / (s**2 + b**2) ** 1.5)
    assert ks.pvalue > 1e-3, ks
    # binned density against the analytic ρ/M, 8 shells, in Poisson standard errors
    edges = np.array([0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5]) * b
    counts, _ = np.histogram(r, edges)
    expected = r.size * np.diff(edges**3 / (edges**2 + b**2) ** 1.5)
    assert np.max(np.abs(counts - expected) / np.sqrt(expected)) < 4


def test_plummer_score_is_exact(plummer_mock):
    """The autodiff score equals central differences of log f to 1e-6, and the CBE holds to rounding."""
    cat, truth = plummer_mock
    with jax.enable_x64(True):
        x = jnp.asarray(cat.x[:200])
        v = jnp.asarray(cat.v[:200])
        sx, sv = truth.score(x, v)
        hx, hv = 1e-5, 1e-3
        eye = jnp.eye(3)
        fdx = jnp.stack([(truth.log_df(x + hx * eye[i], v) - truth.log_df(x - hx * eye[i], v)) / (2 * hx) for i in range(3)], 1)
        fdv = jnp.stack([(truth.log_df(x, v + hv * eye[i]) - truth.log_df(x, v - hv * eye[i])) / (2 * hv) for i in range(3)], 1)
        assert_allclose(np.asarray(sx), np.asarray(fdx), rtol=1e-6, atol=1e-6 * float(jnp.abs(sx).max()))
        assert_allclose(np.asarray(sv), np.asarray(fdv), rtol=1e-6, atol=1e-6 * float(jnp.abs(sv).max()))
        # equilibrium: v·s_x + a·s_v = 0
        a = truth.acceleration(x)
        cbe = jnp.sum(v * sx, 1) + jnp.sum(a * sv, 1)
        scale = jnp.abs(jnp.sum(v * sx, 1)) + jnp.abs(jnp.sum(a * sv, 1))
        assert float(jnp.max(jnp.abs(cbe) / scale)) < 1e-10


def test_plummer_df_is_normalised():
    """∫ f d³v = ρ/M at several radii (the DF integrates to 1 over phase space): against the closed form
    ρ/M = 3/(4πb³) (1 + r²/b²)^(−5/2), and the truth's own tracer_density."""
    truth = plummer(10, seed=0)[1]
    b = float(truth.params["scale_radius_kpc"])
    with jax.enable_x64(True):
        for r in (0.1, 1.0, 4.0):
            x = jnp.array([r, 0.0, 0.0])
            vesc = math.sqrt(-2 * float(truth.potential(x)))
            speed = np.linspace(0, vesc, 4001)[1:-1]
            vv = jnp.asarray(np.stack([speed, 0 * speed, 0 * speed], 1))
            f = np.exp(np.asarray(truth.log_df(jnp.broadcast_to(x, vv.shape), vv)))
            nu = np.trapezoid(4 * math.pi * speed**2 * f, speed)
            assert_allclose(nu, 3 / (4 * math.pi * b**3) * (1 + r**2 / b**2) ** -2.5, rtol=1e-4)
            assert_allclose(nu, float(truth.tracer_density(x)), rtol=1e-4)


def test_plummer_poisson_and_potential_gradient():
    truth = plummer(10, seed=0, mass=3e9, scale_radius=0.7, center=(1.0, -2.0, 0.5))[1]
    x = np.random.default_rng(0).normal(size=(50, 3)) * 2
    poisson, gradient = _poisson_and_gradient_residuals(truth, x)
    assert poisson < 1e-6 and gradient < 1e-7, (poisson, gradient)
    # the truth composes with jit, vmap and grad
    with jax.enable_x64(True):
        xs = jnp.asarray(x)
        minus_grad = -jax.jit(jax.vmap(jax.grad(truth.potential)))(xs)
        assert_allclose(np.asarray(minus_grad), np.asarray(truth.acceleration(xs)), rtol=1e-12, atol=1e-9)
        inside = jax.jit(lambda t, y: t.acceleration(y))(truth, xs)
        assert_allclose(np.asarray(inside), np.asarray(truth.acceleration(xs)), rtol=1e-14)


def test_plummer_units_seed_and_errors():
    a = plummer(500, seed=11, mass=1e10 * u.Msun, scale_radius=1000 * u.pc)
    b = plummer(500, seed=11)
    c = plummer(500, seed=12)
    assert_allclose(a[0].x, b[0].x)
    assert not np.allclose(b[0].x, c[0].x)
    assert b[0].meta["truth"]["params"]["mass_msun"] == 1e10
    json.dumps(b[0].meta)
    json.dumps(b[1].to_dict())
    assert bd.mocks.PlummerTruth.from_dict(b[1].to_dict()) == b[1]
    for bad in (dict(n=0, seed=1), dict(n=10, seed=-1), dict(n=10, seed=1, mass=-1.0), dict(n=10, seed=1, scale_radius=0)):
        with pytest.raises(MockError):
            plummer(**bad)
    with pytest.raises(bd.units.UnitError):
        plummer(10, seed=1, scale_radius=3 * u.km / u.s)


# ========================================================= spherical tracers
def _jeans_sigma_r2(truth, r_eval, inv_ra2):
    """σ_r²(r) from the spherical Jeans equation with β = r²/(r² + r_a²) (isotropic for inv_ra2 = 0).

    ν σ_r² (1 + r²/r_a²) = ∫_r^∞ (1 + r'²/r_a²) ν(r') G M(<r')/r'² dr'.
    """
    with jax.enable_x64(True):
        grid = np.geomspace(1e-4, 1e5, 40001)
        pts = jnp.asarray(np.stack([grid, 0 * grid, 0 * grid], 1))
        nu = np.asarray(truth.tracer_density(pts))
        gm_r2 = -np.asarray(truth.acceleration(pts))[:, 0]
    w = (1 + inv_ra2 * grid**2) * nu * gm_r2 * grid  # d ln r
    dlog = np.diff(np.log(grid))
    tail = np.concatenate([np.cumsum((0.5 * (w[1:] + w[:-1]) * dlog)[::-1])[::-1], [0.0]])
    integral = np.interp(np.log(r_eval), np.log(grid), tail)
    nu_e = np.exp(np.interp(np.log(r_eval), np.log(grid), np.log(nu)))
    return integral / (nu_e * (1 + inv_ra2 * r_eval**2))


#: Both halos, both tracers, both anisotropies (the DF code path is shared; r_a = ∞ is isotropic).
SPHERICAL_CASES = {
    "nfw-zhao-om": dict(anisotropy="osipkov-merritt", anisotropy_radius=8.0),
    "cored-plummer-isotropic": dict(halo="cored", tracer="plummer"),
}


@pytest.fixture(scope="module", params=list(SPHERICAL_CASES))
def spherical_mock(request):
    return spherical_tracer(20_000, seed=5, **SPHERICAL_CASES[request.param])


def test_spherical_tracer_jeans(spherical_mock):
    """σ_r² and σ_t² in 10 radial bins against the Jeans solution (with the OM β(r)), χ² in standard errors."""
    cat, truth = spherical_mock
    r, vr, vt2 = _radial_tangential(cat.x, cat.v)
    keep = r < 200 * truth.tracer_scale_radius  # a handful of far stars only
    r, vr, vt2 = r[keep], vr[keep], vt2[keep]
    sig_r2 = _jeans_sigma_r2(truth, r, truth.inv_ra2)
    beta = truth.inv_ra2 * r**2 / (1 + truth.inv_ra2 * r**2)
    bins = _quantile_bins(r, 10)
    chi2, worst = _binned_chi2(vr**2, sig_r2, bins)
    assert chi2 < stats.chi2.ppf(0.999, 10), (chi2, worst)
    chi2_t, worst_t = _binned_chi2(vt2 / 2, (1 - beta) * sig_r2, bins)
    assert chi2_t < stats.chi2.ppf(0.999, 10), (chi2_t, worst_t)


def test_spherical_tracer_radii_follow_tracer_density(spherical_mock):
    cat, truth = spherical_mock
    r = np.linalg.norm(cat.x, axis=1)
    with jax.enable_x64(True):
        grid = np.geomspace(1e-5, 1e5, 40001)
        nu = np.asarray(truth.tracer_density(jnp.asarray(np.stack([grid, 0 * grid, 0 * grid], 1))))
    w = 4 * math.pi * grid**3 * nu
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(np.log(grid)))])
    assert_allclose(cum[-1], 1.0, atol=1e-4)  # ν is normalised
    ks = stats.kstest(r, lambda s: np.interp(s, grid, cum))
    assert ks.pvalue > 1e-3, ks


def test_spherical_score_and_cbe(spherical_mock):
    """Spline scores: dlog f/dε against finite differences of the direct Eddington integral (1e-4), CBE residual ≈ 0."""
    from bayesdyn.mocks._spherical import _eddington_log_f

    cat, truth = spherical_mock
    args = (truth.halo, truth.halo_density, truth.halo_scale_radius, truth.tracer, truth.tracer_scale_radius,
            truth.tracer_inner_slope, truth.tracer_outer_slope, truth.inv_ra2)
    with jax.enable_x64(True):
        x = jnp.asarray(cat.x[:100])
        v = jnp.asarray(cat.v[:100])
        e = np.asarray(truth.depth(x, v))
        dlog = np.asarray(jax.vmap(jax.grad(truth.log_f_of_depth))(jnp.asarray(e)))
        h = 1e-5 * e
        lp, _, _ = _eddington_log_f(*args, e + h)
        lm, _, _ = _eddington_log_f(*args, e - h)
        assert_allclose(dlog, (lp - lm) / (2 * h), rtol=1e-4)
        l0, _, _ = _eddington_log_f(*args, e)
        assert_allclose(np.asarray(truth.log_f_of_depth(jnp.asarray(e))), l0, atol=1e-5)
        sx, sv = truth.score(x, v)
        a = truth.acceleration(x)
        cbe = jnp.sum(v * sx, 1) + jnp.sum(a * sv, 1)
        scale = jnp.abs(jnp.sum(v * sx, 1)) + jnp.abs(jnp.sum(a * sv, 1))
        assert float(jnp.max(jnp.abs(cbe) / scale)) < 1e-8


def test_spherical_truth_matches_galpy(spherical_mock):
    """Acceleration, density, potential (up to a constant) and log f against galpy at 100 points."""
    from galpy.potential import evaluateDensities, evaluatePotentials, evaluateRforces, evaluatezforces

    from bayesdyn.mocks._spherical import _galpy_df

    cat, truth = spherical_mock
    p = truth.params
    pot, df = _galpy_df(p["halo"], p["halo_density_msun_kpc3"], p["halo_scale_radius_kpc"], p["tracer"],
                        p["tracer_scale_radius_kpc"], p["tracer_inner_slope"], p["tracer_outer_slope"],
                        p["anisotropy_radius_kpc"])
    x = np.random.default_rng(2).normal(size=(100, 3)) * np.array([20, 20, 5]) * np.geomspace(1e-3, 3, 100)[:, None]
    R, z = np.hypot(x[:, 0], x[:, 1]), x[:, 2]
    with jax.enable_x64(True):
        acc, phi, dens = (np.asarray(f) for f in _fields(truth, jnp.asarray(x)))
        rs = np.array([0.05, 0.5, 5.0, 50.0])
        xs = np.stack([rs, 0 * rs, 0 * rs], 1)
        logf = np.asarray(truth.log_df(jnp.asarray(xs), jnp.zeros_like(jnp.asarray(xs))))
    a_R = (acc[:, 0] * x[:, 0] + acc[:, 1] * x[:, 1]) / R
    assert_allclose(a_R, evaluateRforces(pot, R / RO, z / RO) * VO**2 / RO, rtol=1e-9)
    assert_allclose(acc[:, 2], evaluatezforces(pot, R / RO, z / RO) * VO**2 / RO, rtol=1e-9)
    assert_allclose(dens, evaluateDensities(pot, R / RO, z / RO) * VO**2 / (RO**2 * G), rtol=1e-9)
    gphi = evaluatePotentials(pot, R / RO, z / RO) * VO**2
    assert_allclose(phi - phi[0], gphi - gphi[0], atol=1e-8 * np.abs(gphi).max())
    energy = np.array([evaluatePotentials(pot, r / RO, 0.0) for r in rs])
    f_galpy = df.fE(energy) if truth.inv_ra2 == 0 else df.fQ(-energy)
    assert_allclose(logf, np.log(f_galpy) - 3 * math.log(RO * VO), atol=1e-5)


def test_spherical_poisson_and_potential_gradient(spherical_mock):
    _, truth = spherical_mock
    x = np.random.default_rng(0).normal(size=(50, 3)) * np.geomspace(0.03, 30, 50)[:, None]
    poisson, gradient = _poisson_and_gradient_residuals(truth, x, h=1e-5)
    assert poisson < 1e-5 and gradient < 1e-7, (poisson, gradient)


def test_spherical_invalid_combinations_raise():
    with pytest.raises(MockError, match="no non-negative DF"):
        spherical_tracer(10, seed=0, halo="nfw", tracer="plummer")
    with pytest.raises(MockError, match="no non-negative DF"):
        spherical_tracer(10, seed=0, halo="cored", tracer="plummer", anisotropy="osipkov-merritt", anisotropy_radius=1.0)
    with pytest.raises(MockError, match="apply to tracer='zhao' only"):
        spherical_tracer(10, seed=0, halo="cored", tracer="plummer", tracer_inner_slope=1.0)
    with pytest.raises(MockError, match="anisotropy_radius"):
        spherical_tracer(10, seed=0, anisotropy_radius=5.0)
    with pytest.raises(MockError, match="halo must be"):
        spherical_tracer(10, seed=0, halo="burkert")
    with pytest.raises(MockError, match="β must be > 3"):
        spherical_tracer(10, seed=0, tracer_outer_slope=3.0)


def test_spherical_seed_reproducible_and_global_rng_untouched():
    from bayesdyn.mocks import _spherical

    # the first draw builds the DF spline, the second reuses it (cached per system)
    _spherical._log_f_spline.cache_clear()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = spherical_tracer(300, seed=9, halo="cored", tracer="plummer")[0]
    assert_allclose(np.random.get_state()[1], before)
    b = spherical_tracer(300, seed=9, halo="cored", tracer="plummer")[0]
    assert _spherical._log_f_spline.cache_info().hits == 1
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.v, b.v)
    assert spherical_tracer(5, seed=2**40, halo="cored", tracer="plummer")[0].n == 5  # galpy's np.random.seed refused
    # the radii of a heavy outer tail (β = 3.2) and of a steep cusp (γ = 2.9) are finite and positive: the inverse
    # enclosed fraction through t = r/(r + a) had rounded to 1 (infinite radii) and through 1 − t to 0
    import warnings

    for kw in (dict(tracer_outer_slope=3.2), dict(tracer_inner_slope=2.9)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cat = spherical_tracer(4000, seed=1, **kw)[0]
        r = np.linalg.norm(cat.x, axis=1)
        assert np.isfinite(cat.v).all() and np.all((r > 0) & np.isfinite(r)), kw
        # β = 3.2 puts 26 % of the tracers beyond the DF spline's outer end (10³ scale radii, 10⁴ kpc), where its
        # log f is extrapolated: said (the stars there had silently been drawn from another DF)
        said = [str(w.message) for w in caught if "where the truth's DF is extrapolated" in str(w.message)]
        assert (said[0].startswith("spherical_tracer: 0.26 of the tracers lie beyond 1e+04 kpc") if "tracer_outer_slope"
                in kw else not said), (kw, said)
        if "tracer_outer_slope" in kw:
            assert abs(np.mean(r > 1e4) - 0.26) < 0.03


def test_spherical_tracer_inner_velocities_follow_the_jeans_equation():
    """Where the dispersion is small against the escape speed — within 1 kpc of a cored halo, a γ = 1, a = 2 kpc
    tracer — ⟨v²⟩ follows the Jeans solution. galpy's samplers, which drew the velocities before, interpolated the
    speed's CDF on 100 points up to v_esc ≈ 680 km/s: ⟨v²⟩ 2.48 ± 0.10 × the truth within 0.05–0.2 kpc, 1.33 within
    0.2–0.5 kpc (a review's measurement, 6 × 10⁴ stars)."""
    cat, truth = spherical_tracer(20_000, seed=4, halo="cored", tracer_scale_radius=2.0)
    r, vr, vt2 = _radial_tangential(cat.x, cat.v)
    inner = r < 1.0
    x, v = cat.x[inner], cat.v[inner]
    r, v2 = r[inner], vr[inner] ** 2 + vt2[inner]
    assert r.size > 1500
    sig_r2 = _jeans_sigma_r2(truth, r, 0.0)
    chi2, worst = _binned_chi2(v2, 3 * sig_r2, _quantile_bins(r, 6))
    assert chi2 < stats.chi2.ppf(0.999, 6), (chi2, worst)
    # the speeds' distribution, not only its mean (the old draws' overfilled tail also widened the mean's error):
    # each star's speed CDF at its radius, P(< |v|) = ∫₀^|v| f(e_r + w²/2) w² dw / ∫₀^∞ …, by Gauss–Legendre in ln w
    # (not the sampler's trapezoid grid), is uniform
    nodes, weights = np.polynomial.legendre.leggauss(256)
    with jax.enable_x64(True):
        e_r = np.asarray(truth.depth(jnp.asarray(x), jnp.zeros_like(jnp.asarray(x))))

        def integral(w_hi):  # ∫ from 1e-4 km/s to w_hi of f w² dw = ∫ f w³ d ln w
            lo, hi = math.log(1e-4), np.log(w_hi)
            ln_w = 0.5 * (hi - lo)[:, None] * nodes[None, :] + 0.5 * (hi + lo)[:, None]
            w = np.exp(ln_w)
            f = np.exp(np.asarray(truth.log_f_of_depth(jnp.asarray(e_r[:, None] + 0.5 * w**2))))
            return 0.5 * (hi - lo) * np.sum(weights * f * w**3, axis=1)

        speed = np.linalg.norm(v, axis=1)
        cdf = integral(speed) / integral(np.full_like(speed, 3000.0))  # f(e_r + 3000²/2) ~ e^-500 of its peak
    ks = stats.kstest(cdf, "uniform")
    assert ks.pvalue > 1e-3, ks


# ===================================================================== disk
def test_mw2014_matches_galpy():
    """The JAX MWPotential2014 equals galpy's at 200 points: forces and density to 1e-6 relative."""
    from galpy.potential import (
        MWPotential2014, evaluateDensities, evaluatePotentials, evaluateRforces, evaluatezforces,
    )

    from bayesdyn.mocks._mw2014 import MW2014

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)) * np.array([6, 6, 1.5])
    x[:50] *= 0.05  # inside the bulge cut-off
    x[0] = (-8.0, 0.0, 0.0)  # the Sun's radius, for v_c below
    R, z = np.hypot(x[:, 0], x[:, 1]), x[:, 2]
    with jax.enable_x64(True):
        mw = MW2014.galpy()
        acc, dens, phi = (
            np.asarray(a) for a in jax.jit(lambda m, y: (m.acceleration(y), m.density(y), m.potential(y)))(mw, jnp.asarray(x))
        )
    a_R = (acc[:, 0] * x[:, 0] + acc[:, 1] * x[:, 1]) / R
    assert_allclose(a_R, evaluateRforces(MWPotential2014, R / RO, z / RO) * VO**2 / RO, rtol=1e-6)
    assert_allclose(acc[:, 2], evaluatezforces(MWPotential2014, R / RO, z / RO) * VO**2 / RO, rtol=1e-6)
    assert_allclose(dens, evaluateDensities(MWPotential2014, R / RO, z / RO) * VO**2 / (RO**2 * G), rtol=1e-6)
    gphi = evaluatePotentials(MWPotential2014, R / RO, z / RO) * VO**2
    assert_allclose(phi - phi[0], gphi - gphi[0], atol=1e-6 * np.abs(gphi).max())
    # v_c(R0) = 220 km/s by galpy's normalisation
    assert_allclose(math.sqrt(8.0 * acc[0, 0]), 220.0, rtol=1e-12)
    # the centre itself: the bulge's and halo's limits (it was evaluated at r = 1 kpc, −218 718 for −271 938 (km/s)²),
    # against bayesdyn.potentials' implementation, at and near it (the α = 1.8 bulge's G M(<r)/r ∝ r^0.2 is still
    # 795 (km/s)² at 10⁻⁹ kpc)
    from bayesdyn.potentials import MWPotential2014 as Reference

    with jax.enable_x64(True):
        near = jnp.array([[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [0.0, 1e-3, 1e-3]])
        at, ref = np.asarray(mw.potential(near)), np.asarray(Reference().potential(near))
    assert_allclose(at, ref, rtol=1e-8)
    assert ref[0] < -271_900 and ref[0] < ref[1] - 700


@pytest.fixture(scope="module")
def default_mock():
    return load_default()


def test_default_mock_moments_match_galpy(default_mock):
    """σ_z and ⟨v_φ⟩ of the shipped 10⁵-star mock in 4 cells against galpy's qdf moments.

    Each cell is |R − R_c| < 0.2 kpc, |z − z_c| < 0.1 kpc. The error budget is the
    sample's standard error plus galpy's own moment-integration error (measured
    ≲ 0.5 km/s on ⟨v_T⟩ and ≲ 0.1 km/s on σ_z against a 3D grid integral of the qdf).
    """
    from bayesdyn.mocks._disk import _cylindrical, _galpy_qdf

    cat, truth = default_mock
    qdf = _galpy_qdf(*truth._qdf_args())
    R, vR, vT, z, vz = _cylindrical(cat.x, cat.v)
    chi2, pulls = 0.0, []
    for Rc, zc in [(7.0, 0.0), (8.0, 0.0), (9.0, 0.0), (8.0, 0.5)]:
        m = (np.abs(R - Rc) < 0.2) & (np.abs(z - zc) < 0.1)
        n = int(m.sum())
        assert n > 500
        sz, mt = vz[m].std(ddof=1), vT[m].mean()
        err_sz = math.hypot(sz / math.sqrt(2 * n), 0.1)
        err_mt = math.hypot(vT[m].std(ddof=1) / math.sqrt(n), 0.5)
        g_sz = math.sqrt(qdf.sigmaz2(Rc / RO, zc / RO, ngl=10)) * VO
        g_mt = qdf.meanvT(Rc / RO, zc / RO, ngl=10) * VO
        pulls += [(sz - g_sz) / err_sz, (mt - g_mt) / err_mt]
    chi2 = float(np.sum(np.square(pulls)))
    assert chi2 < stats.chi2.ppf(0.999, len(pulls)), pulls
    assert np.max(np.abs(pulls)) < 4, pulls


def test_default_mock_frame_and_header(default_mock):
    cat, truth = default_mock
    assert cat.n == 100_000
    assert_allclose(cat.solar.position, [-8.0, 0.0, 0.0208], atol=1e-12)
    assert np.all(cat.distance_from_sun() <= truth.sphere_radius + 1e-5)
    near = cat.distance_from_sun() < 0.3
    assert 190 < cat.v[near, 1].mean() < 215  # rotation with v_y > 0 at the Sun
    assert abs(cat.v[near, 0].mean()) < 3 and abs(cat.v[near, 2].mean()) < 2
    head = cat.meta
    assert head["format"] == "bayesdyn.disk_mock" and head["n"] == 100_000
    assert head["sampler"]["fraction_exceeded_bound"] == 0.0
    assert head["sampler"]["max_ratio_over_final_bound"] <= 1.0
    json.dumps(head)
    with pytest.raises(NotImplementedError, match="no closed form"):
        truth.tracer_density(cat.x[:2])


def test_disk_score_finite_differences_and_cbe(default_mock):
    """FD scores converge (steps halved: < 1e-4 of the score scale); the CBE residual is the Staeckel-fudge level."""
    from bayesdyn.mocks._disk import _cylindrical

    cat, truth = default_mock
    x, v = cat.x[:20], cat.v[:20]
    sx, sv = truth.score(x, v)
    sx2, sv2 = truth.score(x, v, step_x=5e-4, step_v=5e-3)
    assert np.max(np.abs(sx - sx2)) < 1e-4 * np.max(np.abs(sx))
    assert np.max(np.abs(sv - sv2)) < 1e-4 * np.max(np.abs(sv))
    with jax.enable_x64(True):
        a = np.asarray(truth.acceleration(x))
    cbe = np.sum(v * sx, 1) + np.sum(a * sv, 1)
    scale = np.abs(np.sum(v * sx, 1)) + np.abs(np.sum(a * sv, 1))
    assert np.median(np.abs(cbe) / scale) < 3e-3  # measured 6e-4: f(J_Staeckel) is nearly, not exactly, steady
    # sign convention: a star at the Sun moving with +v_y has galpy v_T > 0
    _, _, vT, _, _ = _cylindrical(np.array([[-8.0, 0.0, 0.0]]), np.array([[0.0, 220.0, 0.0]]))
    assert_allclose(vT[0], 220.0)
    assert np.all(np.isfinite(truth.log_df(x, v)))


def test_disk_sampler_small_run_is_exact_and_reproducible():
    a, truth = solar_neighbourhood_disk(400, seed=21, radius=1.0)
    b, _ = solar_neighbourhood_disk(400, seed=21, radius=1.0)
    assert_allclose(a.x, b.x)
    assert np.all(a.distance_from_sun() <= 1.0 + 1e-9)
    s = a.meta["sampler"]
    assert s["max_ratio_over_final_bound"] <= 1.0
    assert 0.2 < s["acceptance"] < 0.6
    with pytest.raises(MockError, match="radius"):
        solar_neighbourhood_disk(10, seed=0, radius=10.0)


def test_disk_poisson_and_potential_gradient(default_mock):
    _, truth = default_mock
    x = truth.sphere_center + np.random.default_rng(4).normal(size=(50, 3))
    poisson, gradient = _poisson_and_gradient_residuals(truth, x)
    assert poisson < 1e-6 and gradient < 1e-7, (poisson, gradient)



def test_disk_dark_matter_density_is_galpys_nfw_halo(default_mock):
    """DiskTruth.dark_matter_density (the truth check's ρ_DM(⊙)) is MWPotential2014's NFW halo, against galpy."""
    from galpy.potential import MWPotential2014, evaluateDensities

    _, truth = default_mock
    x = truth.sphere_center + np.random.default_rng(5).normal(size=(20, 3)) * [3.0, 3.0, 1.0]
    R, z = np.hypot(x[:, 0], x[:, 1]), x[:, 2]
    with jax.enable_x64(True):
        dm = np.asarray(truth.dark_matter_density(jnp.asarray(x)))
    assert_allclose(dm, evaluateDensities(MWPotential2014[2], R / RO, z / RO) * VO**2 / (RO**2 * G), rtol=1e-9)
    # about 0.29 GeV/cm³ at the Sun (1 GeV/cm³ = 2.633e7 M☉/kpc³), a tenth of the total there
    sun = float(truth.dark_matter_density(np.asarray(truth.sphere_center)))
    assert 0.2 < sun / 2.633e7 < 0.4 and 0.05 < sun / float(truth.density(np.asarray(truth.sphere_center))) < 0.2


# ----------------------------------------------------------- file handling
def test_load_default_refuses_bad_files(tmp_path, default_mock):
    from bayesdyn.mocks._default import save_disk_mock

    cat, truth = default_mock
    small = cat.select(np.arange(cat.n) < 50, "first 50")
    good = save_disk_mock(tmp_path / "good.npz", small, truth, {"seed": 1, "generator": "test", "generator_version": "0"})
    c2, t2 = load_default(good)
    assert_allclose(c2.x, small.x, atol=1e-5)
    assert t2 == truth

    with pytest.raises(MockError, match="no disk mock"):
        load_default(tmp_path / "absent.npz")
    # a folder, and a Catalog file (it said "no disk mock at" the folder, and that the header lacked the mock's keys)
    with pytest.raises(MockError, match="is a folder; give the disk mock's .npz file"):
        load_default(tmp_path)
    small.save(tmp_path / "catalog.npz")
    with pytest.raises(MockError, match=r"is a bayesdyn Catalog file \(Catalog.save\), not a disk mock: read it with "
                                        "bd.Catalog.load"):
        load_default(tmp_path / "catalog.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(MockError, match="pickle-free npz"):
        load_default(tmp_path / "text.npz")
    np.savez(tmp_path / "nohead.npz", x=small.x, v=small.v)
    with pytest.raises(MockError, match="missing"):
        load_default(tmp_path / "nohead.npz")
    np.savez(tmp_path / "pickled.npz", x=small.x, v=small.v, header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(MockError, match="pickle-free"):
        load_default(tmp_path / "pickled.npz")
    with np.load(good) as z:
        head = json.loads(z["header"].tobytes())
    for change, match in [({"format": "other"}, "format"), ({"n": 49}, "shape")]:
        h = {**head, **change}
        blob = np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)
        np.savez(tmp_path / "bad.npz", x=small.x, v=small.v, header=blob)
        with pytest.raises(MockError, match=match):
            load_default(tmp_path / "bad.npz")
    x_nan = small.x.copy()
    x_nan[3] = np.nan
    np.savez(tmp_path / "nan.npz", x=x_nan, v=small.v, header=np.frombuffer(json.dumps(head).encode(), dtype=np.uint8))
    with pytest.raises(MockError, match="1 row"):
        load_default(tmp_path / "nan.npz")


def _mock_header():
    """The shipped mock's header (read alone: no need to load its 10⁵ stars)."""
    from bayesdyn.mocks._default import DEFAULT_MOCK_PATH

    with np.load(DEFAULT_MOCK_PATH, allow_pickle=False) as z:
        return json.loads(z["header"].tobytes())


def test_load_default_refuses_a_member_without_npy_header(tmp_path):
    import io
    import zipfile

    def npy(arr):
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    path = tmp_path / "raw.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy(np.zeros((3, 3), np.float32)))
        z.writestr("v.npy", npy(np.zeros((3, 3), np.float32)))
        z.writestr("header", json.dumps(_mock_header()).encode())  # JSON bytes without the .npy header
    with pytest.raises(MockError, match=r"member 'header' is not a \.npy array.*make_disk_mock"):
        load_default(path)


@pytest.mark.parametrize("version, fix", [(2, "upgrade bayesdyn"), (0, "Regenerate it")])
def test_load_default_version_message_names_the_fix(tmp_path, version, fix):
    head = {**_mock_header(), "format_version": version}
    blob = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez(tmp_path / "mock.npz", x=np.zeros((3, 3)), v=np.zeros((3, 3)), header=blob)
    with pytest.raises(MockError, match=rf"v{version}\b.*{fix}"):
        load_default(tmp_path / "mock.npz")


def test_dust_model_from_dict_names_a_missing_key():
    from bayesdyn.mocks import DustModel

    d = DustModel([[0.0, 0.0, 0.0]], [0.3], [0.5]).to_dict()
    del d["radii_kpc"]
    with pytest.raises(MockError, match=r"'radii_kpc'.*DustModel\.to_dict"):
        DustModel.from_dict(d)


def test_galpy_leaves_warnings_on_stderr():
    """galpy.util replaces warnings.showwarning at import with a print to stdout: after a disk mock, the examples'
    ConvergenceWarnings were printed among their results. bayesdyn's galpy import keeps the handler in force (a fresh
    process: galpy may already be imported in this one)."""
    pytest.importorskip("galpy")
    import subprocess
    import sys

    code = ("import warnings\nfrom bayesdyn.mocks._truth import _require_galpy\n_require_galpy('a test')\n"
            "import galpy.df\nwarnings.warn('to stderr', UserWarning)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "to stderr" in proc.stderr and "to stderr" not in proc.stdout, (proc.stdout, proc.stderr)

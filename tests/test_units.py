"""bayesdyn.units: G, the conversions of DESIGN §2, and strip() at the public boundary."""

import astropy.constants as const
import astropy.units as u
import numpy as np
import pytest
from numpy.testing import assert_allclose

from bayesdyn import units


def test_G_in_internal_units():
    # DESIGN §2: G = 4.300917270e-6 kpc (km/s)² / M☉ (astropy CODATA 2018 value).
    assert_allclose(units.G, 4.300917270e-6, rtol=1e-9)
    assert_allclose(units.G, const.G.to_value(u.kpc * u.km**2 / u.s**2 / u.Msun), rtol=1e-14)


def test_circular_speed_with_G():
    # v_c² = G M / r: 1e11 M☉ at 8 kpc gives 231.87 km/s (independent arithmetic in SI).
    m, r = 1e11 * const.M_sun, 8 * u.kpc
    v_si = np.sqrt(const.G * m / r).to_value(u.km / u.s)
    assert_allclose(np.sqrt(units.G * 1e11 / 8.0), v_si, rtol=1e-12)
    assert_allclose(v_si, 231.87, atol=0.01)


def test_acceleration_conversions():
    # 1 (km/s)²/kpc = 1.04594 kpc/Gyr² = 1/977.79 km/s/Myr (DESIGN §2).
    assert_allclose(units.acceleration_to(1.0, "kpc/Gyr2"), 1.04594, atol=5e-6)
    assert_allclose(units.KMS2_PER_KPC_IN_KPC_PER_GYR2, 1.04594, atol=5e-6)
    assert_allclose(units.acceleration_to(1.0, "km/s/Myr"), 1 / 977.79, rtol=1e-5)
    assert_allclose(1 / units.KMS2_PER_KPC_IN_KMS_PER_MYR, 977.79, atol=0.01)
    # by hand: (1 km/s)² / 1 kpc in m/s² = 1e6 / 3.0857e19
    assert_allclose(units.acceleration_to(1.0, "m/s2"), 1e6 / 3.0856775814913673e19, rtol=1e-12)
    # round trip
    a = np.array([0.5, 2.0, -3.0])
    assert_allclose(units.acceleration_from(units.acceleration_to(a, "pc/Myr2"), "pc/Myr2"), a, rtol=1e-14)


def test_density_conversions():
    # 1 M☉/pc³ = 37.97 GeV/cm³ (astropy constants: 37.965).
    assert_allclose(units.density_to(1e9, "GeV/cm3"), 37.965, atol=1e-3)
    assert_allclose(units.MSUN_PER_PC3_IN_GEV_PER_CM3, 37.97, atol=0.01)
    assert_allclose(units.density_to(1e9, "Msun/pc3"), 1.0, rtol=1e-14)
    # independent: M☉ c² / pc³ in GeV/cm³
    by_hand = (const.M_sun * const.c**2 / u.pc**3).to_value(u.GeV / u.cm**3)
    assert_allclose(units.density_to(1e9, "GeV/cm3"), by_hand, rtol=1e-12)
    # a typical local DM density: 0.01 M☉/pc³ ≈ 0.38 GeV/cm³
    assert_allclose(units.density_to(1e7, "GeV/cm3"), 0.37965, atol=1e-4)
    assert_allclose(units.density_from(0.379652, "GeV/cm3"), 1e7, rtol=1e-5)


def test_unknown_conversion_unit_is_refused():
    with pytest.raises(ValueError, match="unknown acceleration unit"):
        units.acceleration_to(1.0, "furlong/fortnight2")
    with pytest.raises(ValueError, match="unknown density unit"):
        units.density_to(1.0, "kg/m3x")


def test_strip_converts_quantities():
    assert units.strip(250 * u.pc, "length", name="r") == 0.25
    assert_allclose(units.strip([1.0, 2.0] * u.Mpc, "length"), [1000.0, 2000.0])
    assert_allclose(units.strip(1.0 * u.m / u.s, "velocity"), 1e-3)
    assert_allclose(units.strip(1.0 * u.Msun / u.pc**3, "density"), 1e9)
    assert_allclose(units.strip(1.0 * u.kpc / u.Gyr**2, "acceleration"), 1 / 1.0459401725, rtol=1e-9)
    # bare numbers are already in internal units and pass through untouched
    arr = np.array([1.0, 2.0])
    assert units.strip(arr, "length") is arr
    assert units.strip(3.0, "velocity") == 3.0


def test_strip_refuses_wrong_dimension():
    with pytest.raises(units.UnitError, match=r"v_sun was given in km / s .*must be a length"):
        units.strip(10 * u.km / u.s, "length", name="v_sun")
    with pytest.raises(units.UnitError, match="must be a velocity"):
        units.strip(3 * u.kpc, "velocity", name="v")
    with pytest.raises(ValueError, match="unknown physical type"):
        units.strip(3.0, "lenght")


def test_quantity_attaches_internal_units():
    q = units.quantity([1.0, 2.0], "acceleration")
    assert q.unit == units.ACCELERATION
    assert_allclose(q.to_value(u.kpc / u.Gyr**2), [1.04594, 2.09188], atol=1e-5)


def test_quantities_are_converted_at_the_remaining_boundaries():
    """AccelerationData.create, weak_form_data's error arguments, the mocks' truths, DustModel and
    Posterior.upper_limit(lower=) convert astropy Quantities (each had dropped the unit: pc read as kpc, m/s as km/s)
    and refuse a Quantity of the wrong kind."""
    import bayesdyn as bd
    from bayesdyn.inference import AccelerationData
    from bayesdyn.results import Posterior

    x = np.array([[-8.0, 0.0, 0.02], [-8.1, 0.2, -0.1]])
    a = np.array([[6000.0, 0.0, -100.0], [5900.0, -30.0, 400.0]])
    cov = np.broadcast_to(np.eye(3) * 25.0, (2, 3, 3))
    plain = AccelerationData.create(x, a, cov, sun=[-8.0, 0.0, 0.02])
    acc2 = (u.km / u.s) ** 4 / u.kpc**2
    fancy = AccelerationData.create(x * 1e3 * u.pc, a * (u.km / u.s) ** 2 / u.kpc, cov * acc2,
                                    sun=[-8000.0, 0.0, 20.0] * u.pc)
    for field in ("x", "a", "cov", "sun"):
        assert_allclose(np.asarray(getattr(fancy, field)), np.asarray(getattr(plain, field)), rtol=1e-6)
    with pytest.raises(units.UnitError, match="cov was given in"):
        AccelerationData.create(x, a, cov * u.kpc)

    cat, truth = bd.mocks.plummer(3000, seed=1)
    assert_allclose(np.asarray(truth.acceleration([500.0, 0.0, 0.0] * u.pc)),
                    np.asarray(truth.acceleration([0.5, 0.0, 0.0])), rtol=1e-6)
    with pytest.raises(units.UnitError):
        truth.acceleration([1.0, 0.0, 0.0] * u.km / u.s)
    dust = bd.mocks.DustModel(centers=[[500.0, 0.0, 0.0]] * u.pc, radii=[300.0] * u.pc, depths=[0.5])
    assert_allclose(dust.radii, [0.3])
    assert_allclose(dust.centers, [[0.5, 0.0, 0.0]])

    ball = ((0.0, 0.0, 0.0), 1.0)
    sigma = np.full((cat.n, 3), 5.0)
    kms = bd.weak_form_data(cat, volume=ball, velocity_errors=sigma)
    ms = bd.weak_form_data(cat, volume=ball, velocity_errors=sigma * 1e3 * u.m / u.s)
    none = bd.weak_form_data(cat, volume=ball)
    changed = [f for f in kms._fields if isinstance(getattr(kms, f), (np.ndarray, type(kms.x)))
               and not np.allclose(np.asarray(getattr(kms, f)), np.asarray(getattr(none, f)))]
    assert changed  # the errors enter the data
    for f in changed:
        assert_allclose(np.asarray(getattr(ms, f)), np.asarray(getattr(kms, f)), rtol=1e-6)
    with pytest.raises(units.UnitError, match="velocity_errors was given in kpc"):
        bd.weak_form_data(cat, volume=ball, velocity_errors=sigma * u.kpc)

    post = Posterior({"dd.surface_density": np.random.default_rng(0).normal(2e6, 5e6, (2, 500))}, {})
    assert post.upper_limit("dd.surface_density", lower=1 * u.Msun / u.pc**2) == post.upper_limit(
        "dd.surface_density", lower=1e6)  # M☉/kpc²
    kz = Posterior({"derived.Kz_1p1kpc": np.random.default_rng(1).normal(2000.0, 100.0, (2, 500))}, {})
    assert kz.upper_limit("derived.Kz_1p1kpc", lower=1500 * (u.km / u.s) ** 2 / u.kpc) == kz.upper_limit(
        "derived.Kz_1p1kpc", lower=1500.0)
    with pytest.raises(units.UnitError, match="cannot be converted"):
        post.upper_limit("dd.surface_density", lower=0 * u.kpc)


def test_quantities_at_the_draw_evaluators_maps_scores_and_positions():
    """np.asarray/jnp.asarray of a Quantity keeps the number and drops the unit: PotentialModel.derived and
    validate.evaluate_draws read draws in M☉/pc³ as M☉/kpc³ (10⁹ off) and the Sun in pc as kpc; disequilibrium_map
    read an acceleration in km/s/Myr as (km/s)²/kpc (978× off); a Table column in pc gave positions in kpc; the CBE
    primitives dropped units. Each converts now, or refuses where it takes internal units only."""
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from astropy.table import Table

    import bayesdyn as bd
    from bayesdyn import potentials as bp
    from bayesdyn.dynamics import ExactScores
    from bayesdyn.validate import density_at, evaluate_draws

    model = bd.PotentialModel(halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=16.0))
    sun = np.array([-8.122, 0.0, 0.0208])
    rho = 1e7 / (np.linalg.norm(sun) / 16.0 * (1 + np.linalg.norm(sun) / 16.0) ** 2)  # NFW at the Sun, ρ_s = 1e7
    for draws, where in (([1e7], sun), ([0.01] * u.Msun / u.pc**3, sun), ([1e7], sun * 1e3 * u.pc)):
        assert_allclose(np.asarray(model.derived({"halo.scale_density": draws}, where)["derived.rho_dm_sun"]),
                        [rho], rtol=1e-5)
        out = evaluate_draws(model, {"halo.scale_density": draws}, {"rho": density_at(where)})
        assert_allclose(out["rho"], [rho], rtol=1e-5)
    with pytest.raises(units.UnitError, match="halo.scale_density was given in kpc"):
        model.derived({"halo.scale_density": [0.01] * u.kpc}, sun)
    assert model.strip_samples({"halo.scale_density": 2e7}) == {"halo.scale_density": 2e7}

    # positions: an astropy Table column with a unit, and a point written as a tuple of Quantities
    halo = bp.NFW(1e7, 16.0)
    column = Table({"x": sun * 1e3}, units={"x": "pc"})["x"]
    for x in (column, tuple(sun * 1e3 * u.pc)):
        assert_allclose(float(halo.density(x)), rho, rtol=1e-5)
    assert_allclose(units.strip((-8122 * u.pc, 0 * u.pc, 20.8 * u.pc), "length"), sun, rtol=1e-12)
    with pytest.raises(units.UnitError, match="units do not agree"):
        units.strip((1 * u.kpc, 2 * u.km / u.s), "length")
    with pytest.raises(units.UnitError, match=r"write it as value \* bd.units.GEV_PER_CM3"):
        bp.NFW(0.38 * u.GeV / u.cm**3, 16.0)
    assert_allclose(bp.NFW(0.38 * units.GEV_PER_CM3, 16.0).scale_density, 0.38 * 2.6335e7, rtol=1e-3)

    # the disequilibrium map: an acceleration in km/s/Myr; the exact scores of a Plummer sphere at positions in pc
    cat, truth = bd.mocks.plummer(3000, seed=1)
    exact = ExactScores(truth, cat)
    pts = np.array([[0.5, 0.2, -0.1], [1.0, -0.3, 0.4]])
    a = np.asarray(truth.acceleration(pts))
    ref = bd.maps.disequilibrium_map(exact, a, pts, n_velocities=32)
    in_myr = bd.maps.disequilibrium_map(exact, (a * units.ACCELERATION).to(u.km / u.s / u.Myr), pts, n_velocities=32)
    # in equilibrium, ∂log f/∂t is float32 round-off (~3e-5 km/s/kpc) with either unit; read as (km/s)²/kpc, the
    # km/s/Myr numbers gave 200-250 km/s/kpc
    assert np.all(ref.rms < 1e-3) and np.all(in_myr.rms < 1e-3), (ref.rms, in_myr.rms)
    assert_allclose(exact.sample_velocities(pts * 1e3 * u.pc, 8, 0), exact.sample_velocities(pts, 8, 0))
    v = exact.sample_velocities(pts, 1, 0)[:, 0]
    for got, want in zip(exact.score_members(pts * 1e3 * u.pc, v * 1e3 * u.m / u.s), exact.score_members(pts, v)):
        assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    ones = jnp.ones(3)
    for fn in (bd.dynamics.cbe_residuals, bd.dynamics.disequilibrium):
        with pytest.raises(units.UnitError, match=r"\['a'\] carry units"):
            fn(ones, ones, ones, np.ones(3) * u.km / u.s / u.Myr)
    with pytest.raises(units.UnitError, match=r"\['v'\] carry units"):
        bd.dynamics.lstsq_acceleration(np.ones((8, 3)) * u.km / u.s, np.ones((8, 3)), np.ones((8, 3)))

"""Tests of bayesdyn.jeans against exact solutions.

* Gaia Challenge spherical mocks (shared data): Jeans M(<r) against the enclosed
  mass of the Zhao dark-matter profile (scipy quadrature).
* A scale-free spherical system (ν ∝ r⁻³, constant β, flat rotation curve): exact
  M(<r) = v_c² r / G, and — seen in cylindrical bins — an exact tilted velocity
  ellipsoid that exercises every term of the axisymmetric equations.
* An isothermal sheet in the known potential Φ = v_c² ln R + A z₀ ln cosh(z/z₀),
  sampled in a sphere around the Sun: exact a_R = −v_c²/R, a_z = −A tanh(z/z₀).

Each test also checks its own power: the terms of the Jeans equation that a bug
could drop or flip are larger than the tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate

import bayesdyn as bd
from bayesdyn import jeans

G = bd.units.G
R_SUN = 8.122  # kpc, astropy 'v4.0'
X_SUN = np.array([-R_SUN, 0.0, 0.0])


# --------------------------------------------------------------------------- mocks


def _powerlaw_sphere(n, rng, *, vc=150.0, beta=0.5, r_range=(1.0, 20.0), cos_range=(-1.0, 1.0),
                     phi_range=(-np.pi, np.pi)):
    """ν ∝ r⁻³ (ln r uniform), constant β, Φ = v_c² ln r: σ_r² = v_c²/(3 − 2β), σ_θ² = σ_φ² = (1 − β)σ_r².

    Positions fill the region r ∈ r_range, cos θ ∈ cos_range, φ ∈ phi_range [rad].
    """
    r = np.exp(rng.uniform(*np.log(r_range), n))
    ct = rng.uniform(*cos_range, n)
    st = np.sqrt(1 - ct**2)
    ph = rng.uniform(*phi_range, n)
    cp, sp = np.cos(ph), np.sin(ph)
    e_r = np.stack([st * cp, st * sp, ct], 1)
    e_th = np.stack([ct * cp, ct * sp, -st], 1)
    e_ph = np.stack([-sp, cp, np.zeros(n)], 1)
    s2 = vc**2 / (3.0 - 2.0 * beta)
    vr, vth, vph = rng.normal(size=(3, n)) * np.sqrt([s2, (1 - beta) * s2, (1 - beta) * s2])[:, None]
    return r[:, None] * e_r, vr[:, None] * e_r + vth[:, None] * e_th + vph[:, None] * e_ph


def _powerlaw_terms(R, z, *, vc=150.0, beta=0.5):
    """Exact moments of the power-law sphere in cylindrical coordinates and the terms of the Jeans equations."""
    s2 = vc**2 / (3.0 - 2.0 * beta)
    r2 = R**2 + z**2
    vRvz = beta * s2 * R * z / r2
    vz2 = s2 * (1 - beta * R**2 / r2)
    vR2 = s2 * (1 - beta * z**2 / r2)
    vphi2 = (1 - beta) * s2
    dlnR, dlnz = -3 * R / r2, -3 * z / r2
    terms_R = [vR2 * dlnR, 2 * beta * s2 * z**2 * R / r2**2, vRvz * dlnz,
               beta * s2 * R * (r2 - 2 * z**2) / r2**2, (vR2 - vphi2) / R]
    terms_z = [vRvz * dlnR, beta * s2 * z * (r2 - 2 * R**2) / r2**2, vz2 * dlnz,
               2 * beta * s2 * R**2 * z / r2**2, vRvz / R]
    return terms_R, terms_z, -(vc**2) * R / r2, -(vc**2) * z / r2


# The isothermal sheet: ν ∝ exp(−R/h_R) sech²(z/z₀), σ_z constant (so A = 2σ_z²/z₀),
# σ_R² = σ_R0² exp(−(R − R☉)/h_σ), and ⟨v_φ²⟩ from the radial equation with a_R = −v_c²/R.
SHEET = dict(vc=230.0, h_R=2.6, h_sigma=5.0, s_R0=35.0, s_phi=25.0, s_z=20.0, z0=0.6, radius=1.5)


def _sheet(n, rng):
    p = SHEET
    lo, hi = R_SUN - p["radius"], R_SUN + p["radius"]
    half = 1.05 * np.arcsin(p["radius"] / lo)
    k = 4 * n
    R = rng.uniform(lo, hi, k)
    R = R[rng.uniform(size=k) < R * np.exp(-(R - lo) / p["h_R"]) / hi]  # p(R) ∝ R exp(−R/h_R)
    z = p["z0"] * np.arctanh(rng.uniform(-1, 1, R.size))  # ν_z ∝ sech²(z/z₀)
    ph = np.pi + rng.uniform(-half, half, R.size)
    x = np.stack([R * np.cos(ph), R * np.sin(ph), z], 1)
    inside = np.linalg.norm(x - X_SUN, axis=1) < p["radius"]
    x, R, ph = x[inside][:n], R[inside][:n], ph[inside][:n]
    assert len(x) == n
    sR2 = p["s_R0"] ** 2 * np.exp(-(R - R_SUN) / p["h_sigma"])
    vphi2 = p["vc"] ** 2 + sR2 + R * sR2 * (-1 / p["h_R"] - 1 / p["h_sigma"])
    vR = rng.normal(size=n) * np.sqrt(sR2)
    vz = rng.normal(size=n) * p["s_z"]
    vphi = -np.sqrt(vphi2 - p["s_phi"] ** 2) + p["s_phi"] * rng.normal(size=n)  # v_φ < 0: astropy frame
    v = np.stack([vR * np.cos(ph) - vphi * np.sin(ph), vR * np.sin(ph) + vphi * np.cos(ph), vz], 1)
    return bd.Catalog(x, v)


def _sheet_truth(R, z):
    p = SHEET
    s_R2 = p["s_R0"] ** 2 * np.exp(-(R - R_SUN) / p["h_sigma"])
    terms_R = [-s_R2 / p["h_R"], -s_R2 / p["h_sigma"]]  # ⟨v_R²⟩ ∂ln ν/∂R and ∂⟨v_R²⟩/∂R
    return -p["vc"] ** 2 / R, -2 * p["s_z"] ** 2 / p["z0"] * np.tanh(z / p["z0"]), terms_R


def _in_sphere(x):
    return np.linalg.norm(x - X_SUN, axis=1) < SHEET["radius"]


@pytest.fixture(scope="module")
def sheet_catalog():
    return _sheet(400_000, np.random.default_rng(7))


# --------------------------------------------------------------------------- spherical


def _zhao_mass(r, rho0, rs, alpha, beta, gamma):
    def rho(x):
        return rho0 * (x / rs) ** -gamma * (1 + (x / rs) ** alpha) ** ((gamma - beta) / alpha)

    return np.array([integrate.quad(lambda x: 4 * np.pi * x**2 * rho(x), 0, ri, limit=200)[0] for ri in r]), rho(r)


GAIA_CHALLENGE = [
    ("gs010_bs050_rcrs025_rarc100_core_0400mpc3_df_10000_0.dat", (4e8, 1.0, 1.0, 3.0, 0.0), 0.25),
    ("gs010_bs050_rcrs010_rarc100_cusp_0064mpc3_df_10000_0.dat", (6.4e7, 1.0, 1.0, 3.0, 1.0), 0.10),
]


@pytest.mark.filterwarnings("ignore:jeans.spherical. no bootstrap error:UserWarning")  # v_c where M < 0 in some replicates
def test_spherical_gaia_challenge_enclosed_mass(shared_data):
    """Jeans M(<r) matches the Zhao halo's within 3 bootstrap σ per bin, χ²/dof < 2 over both mocks.

    Bins: 12 logarithmic from 0.2 r* to 6 r*; compared where ≥ 500 tracers and not
    at the ends of the grid (one-sided differences): 7 bins per mock, 0.5–3 r*.
    The same comparison with any term of the Jeans equation dropped, or d ln σ²/d ln r
    flipped, gives χ²/dof > 4 (asserted), so the test sees such a bug.
    """
    pulls, alt_pulls, rho_pulls = [], {}, []
    for name, zhao, r_star in GAIA_CHALLENGE:
        path = shared_data / "gaia_challenge" / name
        if not path.is_file():
            pytest.skip(f"{path} not found")
        d = np.loadtxt(path)
        edges = r_star * np.geomspace(0.2, 6.0, 13)
        res = jeans.spherical(bd.Catalog(d[:, :3], d[:, 3:]), edges, n_boot=200, seed=1)
        use = res.count >= 500
        use[[0, -1]] = False
        assert use.sum() == 7
        m_true, rho_true = _zhao_mass(res.r[use], *zhao)
        err = res.mass.error[use]
        pulls.append((res.mass.value[use] - m_true) / err)
        rho_pulls.append((res.density.value[use] - rho_true) / res.density.error[use])
        pre = -res.r[use] * res.sigma_r.value[use] ** 2 / G
        nu, s2, b2 = res.dlnnu_dlnr.value[use], res.dlnsigma2_dlnr.value[use], 2 * res.beta.value[use]
        wrong = {"no beta": nu + s2, "no dlns2": nu + b2, "flip dlns2": nu - s2 + b2, "no dlnnu": s2 + b2}
        for what, alt in wrong.items():
            alt_pulls.setdefault(what, []).append((pre * alt - m_true) / err)
        # a_r and v_c are M(<r) in other units
        assert_allclose(res.a_r.value, -G * res.mass.value / res.r**2, rtol=1e-12)
    pulls = np.concatenate(pulls)
    assert np.all(np.abs(pulls) < 3.0), pulls
    assert np.mean(pulls**2) < 2.0, pulls
    for what, p in alt_pulls.items():
        assert np.mean(np.concatenate(p) ** 2) > 4.0, f"the test would not notice '{what}'"
    rho_pulls = np.concatenate(rho_pulls)
    assert np.all(np.abs(rho_pulls) < 3.5) and np.mean(rho_pulls**2) < 2.5, rho_pulls


def test_spherical_powerlaw_exact():
    """ν ∝ r⁻³, β = 0.5, v_c = 150 km/s: M = v_c² r/G, ρ = v_c²/(4πG r²), β and a_r exact, within 3.5σ."""
    x, v = _powerlaw_sphere(200_000, np.random.default_rng(3), r_range=(0.5, 30.0))
    res = jeans.spherical(bd.Catalog(x, v), np.geomspace(1.0, 15.0, 9), n_boot=100, seed=0)
    r = res.r
    inner = slice(1, -1)
    truth = {"mass": 150.0**2 * r / G, "a_r": -(150.0**2) / r, "vc": np.full_like(r, 150.0),
             "beta": np.full_like(r, 0.5), "sigma_r": np.full_like(r, 150.0 / np.sqrt(2.0)),
             "dlnnu_dlnr": np.full_like(r, -3.0), "density": 150.0**2 / (4 * np.pi * G * r**2)}
    for name, t in truth.items():
        est = getattr(res, name)
        use = slice(2, -2) if name == "density" else inner  # ρ differentiates M once more
        pull = ((est.value - t) / est.error)[use]
        assert np.all(np.abs(pull) < 3.5), (name, pull)
    # by default no derivative at the end bins (one-sided, biased beyond the errors), nor ρ next to them
    for name in ("dlnnu_dlnr", "dlnsigma2_dlnr", "mass", "a_r", "vc"):
        assert np.isnan(getattr(res, name).value[[0, -1]]).all() and np.isfinite(getattr(res, name).value[inner]).all()
        assert np.isnan(getattr(res, name).error[[0, -1]]).all()
    assert np.isnan(res.density.value[[0, 1, -2, -1]]).all() and np.isfinite(res.density.value[2:-2]).all()
    assert np.isfinite(res.nu.value).all() and np.isfinite(res.beta.value).all()
    one_sided = jeans.spherical(bd.Catalog(x, v), np.geomspace(1.0, 15.0, 9), n_boot=100, seed=0, ends="one_sided")
    assert np.isfinite(one_sided.mass.value).all()
    assert_allclose(one_sided.mass.value[inner], res.mass.value[inner], rtol=1e-12)
    with pytest.raises(jeans.JeansError, match="ends="):
        jeans.spherical(bd.Catalog(x, v), np.geomspace(1.0, 15.0, 9), ends="clip")
    # edges from r = 0: the first centre is its bin's midpoint, the others stay geometric (all became midpoints)
    from_zero = jeans.spherical(bd.Catalog(x[:20_000], v[:20_000]), [0.0, 1.0, 2.0, 4.0, 8.0, 16.0], n_boot=4,
                               seed=0)
    assert_allclose(from_zero.r, [0.5, np.sqrt(2.0), np.sqrt(8.0), np.sqrt(32.0), np.sqrt(128.0)], rtol=1e-12)
    # the bootstrap error of a count is √n (multinomial: √(n(1 − n/N)))
    n = res.count
    assert_allclose(res.nu.error / res.nu.value, np.sqrt(1 / n - 1 / 200_000), rtol=0.25)
    # power: 2β = 1 against a total bracket of −2, so dropping 2β halves M (≫ 3σ ≈ 0.1 M)
    assert np.all(3 * res.mass.error[inner] < 0.25 * truth["mass"][inner])
    t = res.to_table()
    assert len(t) == 8 and str(t["mass"].unit) == "solMass" and "mass_err" in t.colnames


# --------------------------------------------------------------------------- axisymmetric


def test_acceleration_at_sun_and_1kpc_sheet(sheet_catalog):
    """a_R, a_z at the Sun and at z = ±1 kpc of an isothermal sheet in a known potential, within 3σ.

    The stars fill a sphere of 1.5 kpc around the Sun; the selection volumes make
    the partially covered bins unbiased (without them a_z at 1 kpc is off by > 3σ,
    asserted). Power: 3σ of a_R at the Sun is below the smallest radial term
    (∂⟨v_R²⟩/∂R = −245 (km/s)²/kpc), and a_z at 1 kpc has one term (−1241).
    """
    cat = sheet_catalog
    sun = jeans.acceleration_at(cat, R_SUN, 0.0208, dR=0.4, dz=0.1, selection=_in_sphere, seed=1)
    aR, az, terms_R = _sheet_truth(R_SUN, 0.0208)
    assert abs(sun.a_R.value - aR) < 3 * sun.a_R.error
    assert abs(sun.a_z.value - az) < 3 * sun.a_z.error
    assert 3 * sun.a_R.error < min(abs(t) for t in terms_R)
    assert sun.a_R.error < 100 and sun.a_z.error < 100  # (km/s)²/kpc with 4e5 stars
    # the rotation is clockwise in the astropy frame: v_φ < 0, v_T = −v_φ > 0
    assert -240 < sun.vphi_mean.value < -200
    vec = sun.cartesian(180.0)
    assert_allclose(vec.value, [-sun.a_R.value, 0.0, sun.a_z.value], atol=1e-9 * abs(sun.a_R.value))
    assert_allclose(vec.error, [sun.a_R.error, 0.0, sun.a_z.error], atol=1e-9 * sun.a_R.error)

    single_error = None  # a_z's error at the previous z without mirroring (set before the mirrored case)
    for z, sym in ((1.0, False), (-1.0, False), (1.0, True)):
        p = jeans.acceleration_at(cat, R_SUN, z, dR=0.4, dz=0.2, selection=_in_sphere, symmetrize_z=sym, seed=2)
        aR, az, _ = _sheet_truth(R_SUN, z)
        assert abs(p.a_R.value - aR) < 3 * p.a_R.error, (z, sym, p.a_R)
        assert abs(p.a_z.value - az) < 3 * p.a_z.error, (z, sym, p.a_z)
        assert 3 * p.a_z.error < abs(az)
        if sym:  # the mirror images double the stars: smaller errors
            assert p.a_z.error < 0.85 * single_error
        single_error = p.a_z.error
    # without the selection volumes the partially covered bins bias a_z at 1 kpc
    biased = jeans.acceleration_at(cat, R_SUN, 1.0, dR=0.4, dz=0.2, seed=2)
    assert abs(biased.a_z.value - _sheet_truth(R_SUN, 1.0)[1]) > 3 * biased.a_z.error


def test_axisymmetric_grid_tilted_ellipsoid():
    """All terms of both equations on an (R, z) grid: a scale-free anisotropic sphere in cylindrical bins.

    ν ∝ r⁻³, β = 0.5, flat rotation curve (v_c = 150 km/s) gives ⟨v_R v_z⟩ ≠ 0 and
    position-dependent ⟨v_R²⟩, ⟨v_z²⟩. Over the 56 interior bins the pulls
    (estimate − truth)/σ have |mean| < 0.4 and mean square < 2 (neighbouring bins
    share differences, so the mean square scatters more than χ²/56: 0.77–1.77 over
    15 realisations); dropping any term shifts the mean pull by > 1 (asserted from
    the exact terms), flipping it by twice that. Measured over 10 realisations the
    bootstrap σ matches the scatter of the estimates (ratio 0.97 for a_R, 0.99 for a_z).
    """
    rng = np.random.default_rng(11)
    x, v = _powerlaw_sphere(1_200_000, rng, r_range=(1.0, 6.3), cos_range=(0.04, 0.97), phi_range=(-0.3, 0.3))
    R = np.hypot(x[:, 0], x[:, 1])
    box = (R > 1.0) & (R < 5.0) & (x[:, 2] > 0.2) & (x[:, 2] < 3.8)
    res = jeans.axisymmetric(bd.Catalog(x[box], v[box]), np.arange(1.0, 5.01, 0.4), np.arange(0.2, 3.81, 0.4),
                             n_boot=60, seed=0)
    RR, ZZ = np.meshgrid(res.R, res.z, indexing="ij")
    terms_R, terms_z, aR, az = _powerlaw_terms(RR, ZZ)
    inner = (slice(1, -1), slice(1, -1))  # edge bins use one-sided differences
    for est, truth, terms in ((res.a_R, aR, terms_R), (res.a_z, az, terms_z)):
        assert_allclose(sum(terms), truth, rtol=1e-12)  # the exact terms add up to −∇Φ
        pull = ((est.value - truth) / est.error)[inner]
        assert np.isfinite(pull).all()
        assert abs(pull.mean()) < 0.4 and np.mean(pull**2) < 2.0, pull
        for k, t in enumerate(terms):
            if k == 1 and est is res.a_z:
                continue  # ∂⟨v_R v_z⟩/∂R is small here (mean shift 0.5); the other nine terms are tested
            assert abs((t / est.error)[inner].mean()) > 1.0, f"term {k} too small to be tested"
    # moments against their exact values
    s2 = 150.0**2 / 2.0
    for est, truth in ((res.vRvz, 0.5 * s2 * RR * ZZ / (RR**2 + ZZ**2)), (res.vphi2, np.full_like(RR, 0.5 * s2))):
        pull = (est.value - truth) / est.error
        assert np.all(np.abs(pull) < 4.0) and np.mean(pull**2) < 1.6
    t = res.to_table()
    assert len(t) == RR.size and str(t["a_R"].unit) == "km2 / (kpc s2)"


def test_bootstrap_is_reproducible_and_seeded(sheet_catalog):
    a = jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, n_boot=20, seed=5)
    b = jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, n_boot=20, seed=5)
    c = jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, n_boot=20, seed=6)
    assert_allclose(a.a_R.samples, b.a_R.samples, rtol=0)
    assert a.a_R.value == c.a_R.value and not np.array_equal(a.a_R.samples, c.a_R.samples)
    row = a.to_table()
    assert len(row) == 1 and row.meta["stencil"] == [3, 3]


def test_bad_input_is_named(sheet_catalog):
    with pytest.raises(jeans.JeansError, match="bayesdyn.Catalog"):
        jeans.spherical(np.zeros((10, 6)), [0.1, 1, 2])
    with pytest.raises(jeans.JeansError, match="strictly increasing"):
        jeans.axisymmetric(sheet_catalog, [8, 7, 9], [0, 1, 2])
    with pytest.raises(jeans.JeansError, match="at least 3 edges"):
        jeans.spherical(sheet_catalog, [1.0, 2.0])
    with pytest.raises(jeans.JeansError, match="fewer than 10 stars"):
        jeans.acceleration_at(sheet_catalog, 9.6, 0.0, dR=0.2, dz=0.2)
    with pytest.raises(jeans.JeansError, match=r"fewer than 10 entries \(stars \+ mirror images\)"):
        jeans.acceleration_at(sheet_catalog, 9.6, 0.0, dR=0.2, dz=0.2, symmetrize_z=True)
    # a 3 × 3 stencil has terms up to X²Z² (degree 4): degree 5 was fitted as 4 and reported as 5
    with pytest.raises(jeans.JeansError, match="a 3 × 3 stencil fits at most degree 4"):
        jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, degree=5)
    assert jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, degree=4, n_boot=4).degree == 4
    # bool("no") mirrored the stars, a stencil of 3.7 ran as 3, a NaN R failed as "no star in the bins"
    with pytest.raises(jeans.JeansError, match="symmetrize_z must be True or False, got 'no'"):
        jeans.axisymmetric(sheet_catalog, [7, 8, 9], [0, 1, 2], symmetrize_z="no")
    with pytest.raises(jeans.JeansError, match="symmetrize_z must be True or False"):
        jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, symmetrize_z=1)
    for stencil in ((3.7, 3), (3,), 3):
        with pytest.raises(jeans.JeansError, match="stencil must be a pair of whole bin counts"):
            jeans.acceleration_at(sheet_catalog, R_SUN, 0.0, dR=0.4, dz=0.1, stencil=stencil)
    with pytest.raises(jeans.JeansError, match="R and z must be finite lengths"):
        jeans.acceleration_at(sheet_catalog, np.nan, 0.0, dR=0.4, dz=0.1)
    with pytest.raises(jeans.JeansError, match="n_boot"):
        jeans.spherical(sheet_catalog, [0.1, 1, 2], n_boot=1)
    with pytest.raises(jeans.JeansError, match="boolean array"):
        jeans.axisymmetric(sheet_catalog, [7, 8, 9], [0, 1, 2], selection=lambda x: x[:, 0])
    with pytest.raises(bd.units.UnitError):
        import astropy.units as u

        jeans.spherical(sheet_catalog, [1, 2, 3] * u.km / u.s)
    # a star exactly at the centre has no radial direction: it is left out, and said so (it was left out silently)
    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros((1, 3)), rng.normal(size=(400, 3))])
    with warnings.catch_warnings(record=True) as caught:  # (random velocities: the undefined-error warnings too)
        warnings.simplefilter("always")
        res = jeans.spherical(bd.Catalog(x, rng.normal(size=(401, 3)) * 50), [0.0, 0.5, 1.0, 1.5, 2.0, 4.0], n_boot=4)
    assert [str(w.message) for w in caught if "exactly at the centre" in str(w.message)] == [
        "jeans.spherical: 1 star(s) exactly at the centre [0.0, 0.0, 0.0] kpc left out: their radial direction is "
        "undefined"]
    assert res.count.sum() == np.sum(np.linalg.norm(x, axis=1) < 4.0) - 1


def test_small_bins_keep_their_full_bootstrap_spread():
    """Bins are chosen on the catalog (≥ min_count stars); every replicate then counts. A bin of 11 stars has a
    relative density error of 1/√11 = 0.30; leaving out the 35 % of replicates with fewer than 10 stars there (the
    first version) gave 0.222 for these stars. A quantity undefined in > 1 % of the replicates gets a NaN error and a warning."""
    rng = np.random.default_rng(5)
    r = np.concatenate([rng.uniform(1.0, 2.0, 11), rng.uniform(2.0, 3.0, 2000), rng.uniform(3.0, 4.0, 2000)])
    u = rng.normal(size=(r.size, 3))
    x = r[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True)
    v = rng.normal(scale=100.0, size=(r.size, 3))
    res = jeans.spherical(bd.Catalog(x, v), [1.0, 2.0, 3.0, 4.0], n_boot=2000, seed=0, ends="one_sided")
    assert res.count.tolist() == [11, 2000, 2000]
    rel = res.nu.error[0] / res.nu.value[0]
    assert 0.27 < rel < 0.33, rel  # multinomial: √(1/11 − 1/4011) = 0.301
    assert np.isfinite(res.nu.samples[:, 0]).all()
    # a 2-star bin is empty in 13.5 % of the replicates: no error rather than the spread of the others
    r2 = np.concatenate([[1.5, 1.7], r[11:]])
    x2 = r2[:, None] * u[: r2.size] / np.linalg.norm(u[: r2.size], axis=1, keepdims=True)
    with pytest.warns(UserWarning, match=r"no bootstrap error \(NaN\) for nu: 1 of 3 .*sigma_r"):
        res2 = jeans.spherical(bd.Catalog(x2, v[: r2.size]), [1.0, 2.0, 3.0, 4.0], n_boot=400, seed=0, min_count=2)
    assert np.isnan(res2.nu.error[0]) and np.isfinite(res2.nu.value[0]) and np.isfinite(res2.nu.error[1:]).all()

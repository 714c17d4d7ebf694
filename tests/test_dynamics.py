"""CBE least squares against an exact equilibrium (self-consistent Plummer sphere)."""

import jax
import jax.numpy as jnp
import numpy as np
from numpy.testing import assert_allclose

from bayesdyn import units
from bayesdyn.dynamics import cbe_residuals, disequilibrium, lstsq_acceleration

M, A = 1e10, 1.0  # M☉, kpc


def _phi(x):
    return -units.G * M / jnp.sqrt(jnp.sum(x**2) + A**2)


def _log_f(x, v):  # f(E) ∝ (−E)^{7/2}
    return 3.5 * jnp.log(-(0.5 * jnp.sum(v**2) + _phi(x)))


def _exact_scores(x, v):
    return jax.vmap(jax.grad(_log_f, argnums=(0, 1)))(x, v)


def _bound_velocities(rng, x, m):
    """m velocities per position, isotropic, inside 0.9 of the escape speed."""
    vesc = np.sqrt(-2 * np.asarray(jax.vmap(_phi)(jnp.asarray(x))))
    d = rng.normal(size=(x.shape[0], m, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    speed = 0.9 * vesc[:, None] * rng.uniform(0.05, 1.0, size=(x.shape[0], m)) ** (1 / 3)
    return d * speed[..., None]


def test_lstsq_recovers_exact_plummer_acceleration(rng, x64):
    x = rng.normal(scale=2.0, size=(7, 3))
    v = _bound_velocities(rng, x, 64)
    xs = np.broadcast_to(x[:, None, :], v.shape)
    sx, sv = _exact_scores(jnp.asarray(xs.reshape(-1, 3)), jnp.asarray(v.reshape(-1, 3)))
    fit = lstsq_acceleration(jnp.asarray(v), sx.reshape(v.shape), sv.reshape(v.shape))
    a_true = -jax.vmap(jax.grad(_phi))(jnp.asarray(x))
    # exact scores satisfy the CBE for every velocity: the fit is exact to rounding
    assert_allclose(np.asarray(fit.a), np.asarray(a_true), rtol=1e-9)
    assert float(jnp.max(fit.rms_residual)) < 1e-9 * float(jnp.max(jnp.abs(sx.reshape(v.shape) * v)))
    assert fit.cov.shape == (7, 3, 3)
    res = cbe_residuals(jnp.asarray(v), sx.reshape(v.shape), sv.reshape(v.shape), a_true[:, None, :])
    assert float(jnp.max(jnp.abs(res))) < 1e-8
    # the wrong acceleration gives non-zero ∂log f/∂t
    dfdt = disequilibrium(jnp.asarray(v), sx.reshape(v.shape), sv.reshape(v.shape), 1.1 * a_true[:, None, :])
    assert float(jnp.min(jnp.std(dfdt, axis=-1))) > 1e-3


def test_lstsq_noise_covariance_is_calibrated(rng, x64):
    """With Gaussian noise on the scores, the least-squares covariance matches the scatter."""
    x = np.tile(np.array([[1.0, 0.5, -0.3]]), (400, 1))
    v = _bound_velocities(rng, x[:1], 200)[0]
    sx, sv = _exact_scores(jnp.asarray(np.broadcast_to(x[:1], v.shape)), jnp.asarray(v))
    noise = rng.normal(scale=0.05 * float(jnp.std(sx)), size=(400,) + sx.shape)
    fit = lstsq_acceleration(jnp.broadcast_to(v, (400,) + v.shape), sx[None] + noise, jnp.broadcast_to(sv, (400,) + v.shape))
    emp = np.cov(np.asarray(fit.a).T)
    pred = np.asarray(jnp.mean(fit.cov, axis=0))
    assert_allclose(np.sqrt(np.diag(emp)), np.sqrt(np.diag(pred)), rtol=0.15)


def test_lstsq_covariance_allows_for_the_leverage_of_a_few_draws(x64):
    """Residuals whose spread grows with |∂f/∂v| (as score errors through v·s_x do), on draws whose ∂f/∂v norms
    spread over a factor ~3 (the fast draws near a Plummer sphere's escape speed carry up to 22–48 % of a fit):
    the HC1 sandwich, m/(m − 3) Σ r² s sᵀ, gives errors whose χ² averages 3.86 for 3 (10.9 % beyond the 95 % cut);
    HC3, each residual divided by 1 − its leverage, 3.38 (8.0 %): 500 repeats at 8 nodes of 256 draws."""
    rng = np.random.default_rng(0)
    p, m, r = 8, 256, 500
    a_true = np.array([-6000.0, 100.0, -120.0])  # (km/s)²/kpc
    s_v = rng.standard_normal((p, m, 3)) * np.exp(rng.normal(0, 0.5, (p, m, 1)))  # s/km
    v = rng.standard_normal((p, m, 3)) * 40  # km/s
    b = np.einsum("pmi,i->pm", s_v, a_true)[None] + rng.standard_normal((r, p, m)) * 1800 * np.linalg.norm(s_v, axis=-1)
    s_x = -b[..., None] * v[None] / np.sum(v * v, -1)[None, ..., None]  # v·s_x = −b: the CBE with residual noise
    fit = lstsq_acceleration(np.broadcast_to(v, (r, p, m, 3)), s_x, np.broadcast_to(s_v, (r, p, m, 3)))
    d = np.asarray(fit.a) - a_true
    chi2 = np.einsum("rpi,rpij,rpj->rp", d, np.linalg.inv(np.asarray(fit.cov)), d)
    inv = np.linalg.inv(np.einsum("pmi,pmj->pij", s_v, s_v))
    res = b - np.einsum("pmi,rpi->rpm", s_v, np.asarray(fit.a))
    hc1 = m / (m - 3) * np.einsum("pij,rpjk,pkl->rpil", inv, np.einsum("pmi,rpm,pmj->rpij", s_v, res**2, s_v), inv)
    chi2_hc1 = np.einsum("rpi,rpij,rpj->rp", d, np.linalg.inv(hc1), d)
    assert 3.0 < chi2.mean() < 3.5 < 3.7 < chi2_hc1.mean(), (chi2.mean(), chi2_hc1.mean())
    assert np.mean(chi2 > 7.815) < 0.09 < np.mean(chi2_hc1 > 7.815)


def test_lstsq_shapes_and_errors():
    v = jnp.ones((2, 5, 4, 3))
    fit = lstsq_acceleration(v + jnp.arange(3.0), v * jnp.arange(1.0, 4.0), v * 2 + jnp.eye(4, 3), ridge=1e-6)
    assert fit.a.shape == (2, 5, 3) and fit.cov.shape == (2, 5, 3, 3) and fit.rms_residual.shape == (2, 5)
    import pytest  # three draws fit exactly: a covariance of ~1e-22 came back without a word

    with pytest.raises(ValueError, match=r"needs M ≥ 4 velocities per position .* got v of shape \(5, 3, 3\)"):
        lstsq_acceleration(jnp.ones((5, 3, 3)), jnp.ones((5, 3, 3)), jnp.ones((5, 3, 3)))
    try:
        lstsq_acceleration(jnp.ones((5, 2)), jnp.ones((5, 2)), jnp.ones((5, 2)))
    except ValueError as err:
        assert "(..., M, 3)" in str(err)
    else:  # pragma: no cover
        raise AssertionError("wrong shape accepted")


class _HarmonicSource:
    """Exact scores of f ∝ exp(−E/σ²) in Φ = ω²|x|²/2 (a = −ω² x), two members, with NaN scores planted."""

    omega2, sigma2 = 900.0, 400.0  # (km/s/kpc)², (km/s)²

    def __init__(self, bad):
        self.bad = bad  # (P, M) bool: draws whose scores are NaN

    def sample_velocities(self, x, n, seed):
        return np.random.default_rng(seed).normal(0.0, 20.0, (len(x), n, 3))

    def score_members(self, x, v):
        x, v = np.asarray(x), np.asarray(v)
        s_x, s_v = -self.omega2 * x / self.sigma2, -v / self.sigma2
        bad = self.bad.reshape(-1)
        s_x = np.where(bad[:, None], np.nan, s_x)
        return np.stack([s_x, s_x]), np.stack([s_v, s_v])


def test_nonfinite_velocity_draws_are_left_out_and_counted():
    """A few non-finite draws: exact accelerations from the others, a warning with the count; too many: an error."""
    import pytest

    from bayesdyn.dynamics import estimate_accelerations

    x = np.array([[1.0, 0.5, -0.2], [-2.0, 0.3, 1.0]])
    bad = np.zeros((2, 64), bool)
    bad[0, :3] = True
    with pytest.warns(RuntimeWarning, match="3 of 128 velocity draws"):
        est = estimate_accelerations(_HarmonicSource(bad), x, n_velocities=64, seed=1)
    assert np.isfinite(np.asarray(est.a)).all() and np.isfinite(np.asarray(est.cov)).all()
    assert_allclose(np.asarray(est.a), -_HarmonicSource.omega2 * x, rtol=1e-6)  # (km/s)²/kpc: exact scores
    bad[1, :10] = True  # 16 % of a node's draws
    with pytest.raises(FloatingPointError, match="more than 10 %"):
        estimate_accelerations(_HarmonicSource(bad), x, n_velocities=64, seed=1)
    # draws that do not span three dimensions (v_z = 0 at node 0): a singular solve, named with its node and cause
    # (AccelerationData.create said only "1 of 2 nodes have NaN/inf ... drop those nodes")
    flat = _HarmonicSource(np.zeros((2, 64), bool))
    flat.sample_velocities = lambda x, n, seed: _HarmonicSource.sample_velocities(flat, x, n, seed) * [1.0, 1.0, 0.0]
    with pytest.raises(FloatingPointError, match=r"2 node\(s\) \(first \[1.0, 0.5, -0.2\] kpc\) have no finite "
                                                 r"least-squares acceleration: .* singular"):
        estimate_accelerations(flat, x, n_velocities=64, seed=1)


class _OutlierSource(_HarmonicSource):
    """The harmonic source with one absurd draw per given node (8e5 km/s, wrong scores ~1e17, as seen from a flow)."""

    def __init__(self, nodes):
        super().__init__(np.zeros((0,), bool))
        self.nodes = nodes

    def sample_velocities(self, x, n, seed):
        v = super().sample_velocities(x, n, seed)
        v[self.nodes, 0] = [8e5, -3e5, 1e5]
        return v

    def score_members(self, x, v):
        x, v = np.asarray(x), np.asarray(v)
        s_x, s_v = -self.omega2 * x / self.sigma2, -v / self.sigma2
        far = np.abs(v).max(-1) > 1e5
        s_x = np.where(far[:, None], 1e17, s_x)
        return np.stack([s_x, s_x]), np.stack([s_v, s_v])


def test_outlying_velocity_draws_are_left_out_and_counted():
    """A draw 10⁴ robust sd from its node's others (scores 1e17) is left out: exact accelerations, counted."""
    import pytest

    from bayesdyn.dynamics import estimate_accelerations

    x = np.array([[1.0, 0.5, -0.2], [-2.0, 0.3, 1.0], [0.4, -1.0, 0.0]])
    with pytest.warns(RuntimeWarning, match="2 of 192 velocity draws .* beyond 10 robust sd"):
        est = estimate_accelerations(_OutlierSource([0, 2]), x, n_velocities=64, seed=1)
    assert_allclose(np.asarray(est.a), -_HarmonicSource.omega2 * x, rtol=1e-5, atol=1e-3)  # (km/s)²/kpc
    # a NaN draw (a flow's inf − inf far out) is one left-out draw too: it made its node's median NaN, which flagged
    # all 64 draws and refused the node ("more than 10 %")
    nan_source = _OutlierSource([1])
    nan_source.sample_velocities = lambda x, n, seed: np.where(
        (np.arange(len(x))[:, None, None] == 1) & (np.arange(n)[None, :, None] == 0), np.nan,
        _HarmonicSource.sample_velocities(nan_source, x, n, seed))
    with pytest.warns(RuntimeWarning, match="1 of 192 velocity draws"):
        est = estimate_accelerations(nan_source, x, n_velocities=64, seed=1)
    assert_allclose(np.asarray(est.a), -_HarmonicSource.omega2 * x, rtol=1e-5, atol=1e-3)
    # a source that refuses non-finite rows, as a PhaseSpaceDensity does: an inf draw aborted the whole estimate

    def strict_scores(x, v):
        if not np.isfinite(v).all():
            raise ValueError("v has row(s) with NaN or inf")
        return _OutlierSource.score_members(nan_source, x, v)

    nan_source.score_members = strict_scores
    with pytest.warns(RuntimeWarning, match="1 of 192 velocity draws"):
        est = estimate_accelerations(nan_source, x, n_velocities=64, seed=1)
    assert_allclose(np.asarray(est.a), -_HarmonicSource.omega2 * x, rtol=1e-5, atol=1e-3)


class _OneHarmonic(_HarmonicSource):
    """The harmonic source as a one-member density (not flagged exact)."""

    def __init__(self):
        super().__init__(np.zeros((0,), bool))

    def score_members(self, x, v):
        x, v = np.asarray(x), np.asarray(v)
        return (-self.omega2 * x / self.sigma2)[None], (-v / self.sigma2)[None]


def test_units_at_the_boundary_one_member_warning_and_bad_settings():
    """sun and default_nodes take Quantities (a sun in pc and positions in pc were read as kpc; a radius Quantity
    crashed); a one-member density warns that its covariances lack the density's own error, unless flagged exact
    or an ensemble member; n_velocities < 4 and inconsistent resample groups are refused by name."""
    import astropy.units as u
    import pytest

    from bayesdyn.dynamics import default_nodes, estimate_accelerations

    x = np.array([[1.0, 0.5, -0.2], [-2.0, 0.3, 1.0]])
    with pytest.warns(UserWarning, match="one density member"):
        est = estimate_accelerations(_OneHarmonic(), x, n_velocities=64, seed=1, sun=[-8122.0, 0.0, 20.8] * u.pc)
    assert_allclose(np.asarray(est.sun), [-8.122, 0.0, 0.0208], rtol=1e-6)
    assert_allclose(np.asarray(est.a), -_OneHarmonic.omega2 * x, rtol=1e-6)
    flagged = _OneHarmonic()
    flagged.exact = True
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        estimate_accelerations(flagged, x, n_velocities=64, seed=1)
    with pytest.raises(ValueError, match="n_velocities=3"):
        estimate_accelerations(flagged, x, n_velocities=3, seed=1)
    # a NaN node is named (an ExactScores source had said "only 0 neighbour velocities are bound"); no nodes at all
    # had failed with a ZeroDivisionError
    with pytest.raises(ValueError, match=r"1 node position\(s\) are NaN or infinite \(first: node 1"):
        estimate_accelerations(flagged, np.array([x[0], [np.nan, 0.0, 0.0]]), n_velocities=64, seed=1)
    with pytest.raises(ValueError, match=r"P ≥ 1 nodes, got \(0, 3\)"):
        estimate_accelerations(flagged, np.zeros((0, 3)), n_velocities=64, seed=1)
    two = _HarmonicSource(np.zeros((2, 64), bool))
    two.info = {"resample_groups": [0, 0, 1]}
    with pytest.raises(ValueError, match="3 labels for its 2 members"):
        estimate_accelerations(two, x, n_velocities=64, seed=1)

    # a custom source answering in Quantities: converted (np.asarray had read draws in m/s as km/s, 1000× too fast)
    class _InUnits(_OneHarmonic):
        exact = True

        def sample_velocities(self, x, n, seed):
            return super().sample_velocities(x, n, seed) * 1000 * u.m / u.s

        def score_members(self, x, v):
            s_x, s_v = super().score_members(x, v)
            return s_x / u.kpc, s_v * 1e-3 * u.s / u.m

    plain = estimate_accelerations(flagged, x, n_velocities=64, seed=1)
    quant = estimate_accelerations(_InUnits(), x, n_velocities=64, seed=1)
    assert_allclose(np.asarray(quant.a), np.asarray(plain.a), rtol=1e-6)
    assert_allclose(np.asarray(quant.a), -_OneHarmonic.omega2 * x, rtol=1e-6)
    wrong = _InUnits()
    wrong.score_members = lambda x, v: (_OneHarmonic.score_members(wrong, x, v)[0] * u.kg, _OneHarmonic.score_members(
        wrong, x, v)[1])
    with pytest.raises(ValueError, match=r"scores s_x was given in kg .*must be an inverse length: pass a Quantity "
                                         r"convertible to 1 / kpc"):
        estimate_accelerations(wrong, x, n_velocities=64, seed=1)

    pts = np.random.default_rng(0).normal(size=(200, 3))
    in_kpc = default_nodes(pts, 5, 0, center=[0.0, 0.0, 0.0], radius=1.0)
    in_pc = default_nodes(pts * 1000 * u.pc, 5, 0, center=[0.0, 0.0, 0.0] * u.kpc, radius=1000 * u.pc)
    assert_allclose(in_pc, in_kpc, rtol=1e-12)
    # ... also when estimate_accelerations draws the nodes from a source's positions in pc (read as kpc before)
    class _PositionsInPc(_InUnits):
        positions = pts * 1000 * u.pc

    nodes = np.asarray(estimate_accelerations(_PositionsInPc(), n_nodes=5, n_velocities=64, seed=0).x)
    assert_allclose(nodes, default_nodes(pts, 5, 0), rtol=1e-6)  # (float32 nodes)


def test_star_score_data_is_checked_and_its_overconfidence_is_said():
    """StarScoreData with a NaN row, a wrong shape or sigma ≤ 0 gives an error naming it (NumPyro said only 'Cannot
    find valid initial parameters'); infer warns that its intervals are too narrow. AccelerationData refuses NaN x."""
    import numpyro.distributions as dist
    import pytest

    import bayesdyn as bd
    from bayesdyn.inference import AccelerationData, PotentialModel, StarScoreData

    rng = np.random.default_rng(2)
    x, v = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) * 20
    sx, sv, sigma, sun = -x, -v / 400.0, np.ones(50), np.zeros(3)
    good = StarScoreData(x, v, sx, sv, sigma, sun)
    assert good.check() is good
    bad_x = x.copy()
    bad_x[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 of 50 stars \(first \[7\]\)"):
        StarScoreData(bad_x, v, sx, sv, sigma, sun).check()
    with pytest.raises(ValueError, match="v must be"):
        StarScoreData(x, v[:, :2], sx, sv, sigma, sun).check()
    with pytest.raises(ValueError, match="sigma ≤ 0"):
        StarScoreData(x, v, sx, sv, np.zeros(50), sun).check()
    import astropy.units as u  # a Quantity's numbers had been kept: velocities in m/s read as km/s

    with pytest.raises(ValueError, match="StarScoreData.v, s_v: astropy Quantities are not converted"):
        StarScoreData(x, v * 1e3 * u.m / u.s, sx, sv / 1e3 * u.s / u.m, sigma, sun).check()
    model = PotentialModel(dark=(), halo=bd.potentials.Plummer(mass=dist.LogUniform(1e9, 1e11), scale_radius=1.0))
    with pytest.raises(ValueError, match="stars"):
        bd.infer(model, StarScoreData(bad_x, v, sx, sv, sigma, sun), num_warmup=5, num_samples=5, progress=False)
    with pytest.raises(ValueError, match="NaN/inf positions"):
        AccelerationData.create(bad_x[5:8], np.ones((3, 3)), np.broadcast_to(np.eye(3), (3, 3, 3)))
    with pytest.warns(UserWarning, match="far too narrow"), pytest.raises(ValueError, match="positive"):
        bd.infer(model, good, num_chains=1, num_warmup=5, num_samples=0, progress=False)  # warned before sampling


def test_catalog_like_objects_have_their_units_converted():
    """fit_neural_potential, weak_form_data, resmear and ExactScores read .x and .v of any catalog-like object through
    the unit check (np.asarray dropped a Quantity's unit: positions in pc were used as kpc)."""
    import types

    import astropy.units as u
    import pytest

    from bayesdyn import neural
    from bayesdyn.dynamics import ExactScores, resmear, weak_form_data
    from bayesdyn.units import UnitError

    x = np.random.default_rng(0).normal(size=(40, 3))
    wrong = types.SimpleNamespace(x=x * u.km / u.s, v=x * u.km / u.s)
    for call in (lambda: neural.fit_neural_potential(None, wrong), lambda: weak_form_data(wrong),
                 lambda: resmear(wrong, 0, velocity_error=1.0), lambda: ExactScores(None, wrong)):
        with pytest.raises(UnitError, match="catalog.x"):
            call()
    pc = types.SimpleNamespace(x=x * 1000 * u.pc, v=x * u.km / u.s, solar=types.SimpleNamespace(position=np.zeros(3)))
    assert_allclose(ExactScores(None, pc).positions, x, rtol=1e-12)

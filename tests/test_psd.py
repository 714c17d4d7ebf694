"""Tests of bayesdyn.psd: the flow-ensemble phase-space density.

Tiny flows and few epochs: everything shares one architecture and one data size,
so the training program compiles once. The data have heavy-tailed positions (a
multivariate Student t) and velocities with a linear trend in position, whose
exact scores are known.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import paramax
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import gammaln

import bayesdyn as bd
from bayesdyn.psd import PSDFileError, fit_psd, load_psd, score_errors
from bayesdyn.psd import _train
from bayesdyn.psd._flows import FlowConfig, reference_log_prob
from bayesdyn.psd._io import _canonical
from bayesdyn.psd._transforms import (
    axis_map,
    axis_unmap,
    ball_map,
    ball_unmap,
    cusp_map,
    cusp_unmap,
    radial_map,
    radial_unmap,
)

N = 3000
NU = 4.0  # Student-t degrees of freedom of the positions
X0 = np.array([-8.0, 0.0, 0.0])  # kpc
B = np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 8.0], [-3.0, 0.0, 0.0]])  # km/s per kpc
SIG_V = 20.0  # km/s
TINY = dict(n_layers=2, width=8, batch_size=250, radial_map=1.0, progress=False)


def mock(n: int, seed: int):
    """x − X0 ~ t_ν(0, I) [kpc], v | x ~ N(B (x − X0), SIG_V²) [km/s], with exact scores."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3)) / np.sqrt(rng.chisquare(NU, size=(n, 1)) / NU)
    r = rng.normal(size=(n, 3)) * SIG_V
    v = d @ B.T + r
    s_v = -r / SIG_V**2  # [(km/s)⁻¹]
    s_x = -(NU + 3) / (NU + np.sum(d**2, axis=1, keepdims=True)) * d - s_v @ B  # [kpc⁻¹]
    return X0 + d, v, s_x, s_v


@pytest.fixture(scope="module")
def data():
    x, v, sx, sv = mock(N, seed=1)
    return bd.Catalog(x=x, v=v), sx, sv


@pytest.fixture(scope="module")
def psd(data):
    cat, _, _ = data
    return fit_psd(cat, ensemble=2, seed=0, max_epochs=3, **TINY)


def test_sample_velocities_in_blocks_of_positions(psd, data, monkeypatch):
    """All positions × draws in one program took ~1.1 GB per 1000 positions at n = 256 (a 100 × 100 map grid ~11 GB):
    positions now go in blocks of VELOCITY_BLOCK // n. A call within one block draws what it drew before; the
    blocks have their own draws (the same position in two blocks differs), and the same seed gives the same."""
    from bayesdyn.psd import _density
    from bayesdyn.psd import _evaluate

    cat, _, _ = data
    x = np.asarray(cat.x[:10])
    whole = np.asarray(psd.sample_velocities(x, 8, seed=5))
    direct = np.asarray(_evaluate.sample_velocities(psd._members, psd._prep, psd._config, _density._seed(5),
                                                    psd._member_index(None), jnp.asarray(x, psd._dtype), 8))
    np.testing.assert_array_equal(whole, direct)  # one block: as before
    monkeypatch.setattr(_density, "VELOCITY_BLOCK", 32)  # 4 positions per block at n = 8: 3 blocks, the last padded
    twice = np.concatenate([x, x])
    blocks = np.asarray(psd.sample_velocities(twice, 8, seed=5))
    assert blocks.shape == (20, 8, 3) and np.all(np.isfinite(blocks))
    np.testing.assert_array_equal(blocks[:4], np.asarray(psd.sample_velocities(x[:4], 8, seed=5)))  # block 0's seed
    assert not np.any(np.all(blocks[:10] == blocks[10:], axis=(1, 2)))  # no block repeats another's draws
    np.testing.assert_array_equal(blocks, np.asarray(psd.sample_velocities(twice, 8, seed=5)))
    members = np.asarray(psd.sample_velocities(twice, 8, seed=5, member=1))
    assert members.shape == (20, 8, 3) and not np.array_equal(members, blocks)
    assert psd.sample_velocities(np.zeros((0, 3)), 8, seed=5).shape == (0, 8, 3)  # (a ZeroDivisionError before)


def _members(psd, k):
    return jax.tree.map(lambda a: a[k] if eqx.is_array(a) else a, psd._members)


def _reference(psd):
    """Jitted per-member log f from flowjax's own log_prob and jax.jacobian of the transforms."""
    prep = psd.preprocessing
    members = [_members(psd, k) for k in range(psd.n_members)]

    def to_u(xi):
        return prep.position_to_latent(xi)[0]

    def one(member, xi, vi):
        u = to_u(xi)
        log_jac_x = jnp.linalg.slogdet(jax.jacobian(to_u)(xi))[1]  # not the transform's own log-det
        w = (vi - prep.v_loc) / prep.v_scale
        log_n = reference_log_prob(member.flow_x, u) + log_jac_x
        return log_n + reference_log_prob(member.flow_v, w, u) - jnp.sum(jnp.log(prep.v_scale)), log_n

    @jax.jit
    def log_f(x, v):  # (K, N) log f and log n (normalised to 1)
        out = [jax.vmap(lambda a, b, m=m: one(m, a, b))(x, v) for m in members]
        return jnp.stack([o[0] for o in out]), jnp.stack([o[1] for o in out])

    return log_f


def test_shapes_and_single_points(psd, data):
    cat, _, _ = data
    x, v = cat.x[:5], cat.v[:5]
    assert psd.n_members == 2
    assert psd.log_prob(x, v).shape == (5,)
    assert psd.log_prob_members(x, v).shape == (2, 5)
    sx, sv = psd.score(x, v)
    assert sx.shape == sv.shape == (5, 3)
    sxm, svm = psd.score_members(x, v)
    assert sxm.shape == svm.shape == (2, 5, 3)
    assert_allclose(np.asarray(sxm).mean(0), sx, rtol=1e-6)
    assert psd.log_prob(x[0], v[0]).shape == ()
    assert psd.score(x[0], v[0])[0].shape == (3,)
    assert psd.number_density(x).shape == (5,)
    assert psd.number_density_gradient(x).shape == (5, 3)
    xs, vs = psd.sample(11, seed=3)
    assert xs.shape == vs.shape == (11, 3)
    assert psd.sample_velocities(x[:4], 7, seed=4).shape == (4, 7, 3)
    assert psd.sample_velocities(x[:4], 7, seed=4, member=1).shape == (4, 7, 3)  # same program
    assert psd.validation_nll.shape == (2,)
    assert "validation NLL" in psd.summary()
    with pytest.raises(ValueError, match="NaN"):
        psd.score(np.full((2, 3), np.nan), v[:2])
    with pytest.raises(ValueError, match="one velocity per position"):
        psd.score(x[:3], v[:2])
    with pytest.raises(IndexError, match="out of range"):
        psd.sample(3, member=5)


def test_fast_path_matches_flowjax_and_includes_jacobians(psd, data):
    """log f = flowjax n(u) + flowjax p(w|u) + log|det ∂(u, w)/∂(x, v)| (jax.jacobian)."""
    cat, _, _ = data
    x = jnp.asarray(cat.x[:200], jnp.float32)
    v = jnp.asarray(cat.v[:200], jnp.float32)
    log_f = _reference(psd)
    ref_f, ref_n = log_f(x, v)
    assert_allclose(psd.log_prob_members(x, v), ref_f, atol=2e-4)  # log units, float32
    assert_allclose(psd.log_number_density_members(x), ref_n + np.log(psd.n_stars), atol=2e-4)


def test_radial_map_jacobian_and_inverse():
    with jax.enable_x64(True):  # x64 only inside this test
        rng = np.random.default_rng(2)
        z = jnp.asarray(rng.normal(size=(40, 3)) * np.repeat([[0.003], [1.0], [30.0], [1e-9]], 10, axis=0))

        @jax.jit
        def check(z):
            u, log_det = radial_map(z)
            jac = jax.vmap(jax.jacobian(lambda a: radial_map(a)[0]))(z)
            grad0 = jax.grad(lambda a: radial_map(a)[1])(jnp.zeros(3))
            return u, log_det, jnp.linalg.slogdet(jac)[1], radial_unmap(u), grad0

        u, log_det, ref, back, grad0 = check(z)
        assert_allclose(log_det, ref, rtol=0, atol=1e-12)
        assert_allclose(back, z, rtol=1e-12, atol=1e-15)
        assert np.all(np.isfinite(grad0))  # smooth through the origin


def test_axis_map_jacobian_inverse_and_radial_map_on_the_axis():
    """log-det = log|det J| (autodiff), exact inverse, unmapped axes untouched; on the mapped axis it equals the radial map."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        z = jnp.asarray(rng.normal(size=(40, 3)) * np.repeat([[0.003], [1.0], [30.0], [1e-9]], 10, axis=0))
        scales = jnp.asarray([0.0, 2.0, 0.7])

        @jax.jit
        def check(z):
            u, log_det = axis_map(z, scales)
            jac = jax.vmap(jax.jacobian(lambda a: axis_map(a, scales)[0]))(z)
            return u, log_det, jnp.linalg.slogdet(jac)[1], axis_unmap(u, scales)

        u, log_det, ref, back = check(z)
        assert_allclose(log_det, ref, rtol=0, atol=1e-12)
        assert_allclose(back, z, rtol=1e-12, atol=1e-12)
        assert_array_equal(np.asarray(u[:, 0]), np.asarray(z[:, 0]))
        assert_allclose(np.asarray(u[:, 2]), 0.7 * np.arcsinh(np.asarray(z[:, 2]) / 0.7), rtol=1e-12)
        on_axis = jnp.zeros((5, 3)).at[:, 2].set(jnp.asarray([-9.0, -1.0, 0.1, 1.0, 4.0]))
        u_a, ld_a = axis_map(on_axis, jnp.asarray([0.0, 0.0, 1.0]))
        u_r, _ = radial_map(on_axis, 1.0)
        assert_allclose(np.asarray(u_a), np.asarray(u_r), rtol=1e-12)
        # one axis compressed: only its factor 1/sqrt(1 + z²) (the radial map has two more, tangential)
        assert_allclose(np.asarray(ld_a), -0.5 * np.log1p(np.asarray(on_axis[:, 2]) ** 2), rtol=1e-12)
        # Preprocessing with both maps on: radial then per axis, undone in the reverse order, log-det of both
        from bayesdyn.psd._transforms import Preprocessing

        z3, s0 = jnp.zeros(3), jnp.zeros(())
        prep = Preprocessing(z3, jnp.asarray([1.0, 2.0, 0.5]), z3, jnp.ones(3), jnp.asarray(1.5), z3, s0, s0, s0, s0,
                             s0, scales)
        x = z[:30]
        u, ld = prep.position_to_latent(x)
        jac = jax.vmap(jax.jacobian(lambda a: prep.position_to_latent(a)[0]))(x)
        assert_allclose(np.asarray(ld), np.asarray(jnp.linalg.slogdet(jac)[1]), rtol=0, atol=1e-10)
        assert_allclose(np.asarray(prep.latent_to_position(u)), np.asarray(x), rtol=1e-10, atol=1e-10)


def test_fit_psd_axis_map(tmp_path):
    """axis_map=(0, 0, s): the vertical axis alone is mapped, the radial map is off, n(x) still integrates to N,
    the file keeps the map (format 7), and bad values or a second map are refused with the fix."""
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=(n, 3)) * [1.0, 1.0, 0.3]
    x[:, 2] = rng.laplace(size=n) * 0.3  # exponential vertical tails
    cat = bd.Catalog(x, rng.normal(size=(n, 3)) * 20.0)
    psd = fit_psd(cat, ensemble=1, seed=0, max_epochs=3, **{**TINY, "radial_map": "auto"}, axis_map=(0, 0, 1))
    assert psd.info["axis_map"] == [0.0, 0.0, 1.0]
    assert psd.info["radial_map"] == 0.0 and psd.info["radial_map_rule"] == "off: axis_map given"
    assert psd.info["radial_map_auto"] == 0.0
    assert "asinh(·/s_i) per axis (s = [0.0, 0.0, 1.0])" in psd.summary()
    # ∫ n dx = N by importance sampling from a broad Gaussian
    m = 40_000
    sig = np.array([3.0, 3.0, 2.0])
    xx = rng.normal(size=(m, 3)) * sig
    logq = -0.5 * np.sum((xx / sig) ** 2, axis=1) - np.log((2 * np.pi) ** 1.5 * np.prod(sig))
    w = np.exp(np.asarray(psd.log_number_density_members(xx), np.float64)[0] - logq)
    assert abs(w.mean() / n - 1) < 5 * w.std() / np.sqrt(m) / n + 0.01, w.mean() / n
    psd.save(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "psd.json").read_text())["format_version"] == 7
    back = load_psd(tmp_path / "a")
    assert_array_equal(np.asarray(back.preprocessing.axis_scale), [0.0, 0.0, 1.0])
    assert_array_equal(np.asarray(back.log_prob(cat.x[:50], cat.v[:50])), np.asarray(psd.log_prob(cat.x[:50], cat.v[:50])))
    prep = psd.preprocessing
    u, _ = prep.position_to_latent(jnp.asarray(cat.x[:50], jnp.float32))
    assert_allclose(np.asarray(prep.latent_to_position(u)), cat.x[:50], atol=1e-5)
    for bad in ((0, 1), (0, 0, -1), (0, 0, float("nan")), "z"):
        with pytest.raises(ValueError, match="three radii ≥ 0"):
            fit_psd(cat, ensemble=1, seed=0, max_epochs=1, **TINY, axis_map=bad)
    with pytest.raises(ValueError, match="not both"):
        fit_psd(cat, ensemble=1, seed=0, max_epochs=1, **TINY, axis_map=(0, 0, 1))  # TINY has radial_map=1


@pytest.mark.parametrize("core", [0.0, 0.6])
def test_ball_map_jacobian_and_inverse(core):
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        d = rng.normal(size=(60, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        radii = [[1e-9], [0.003], [0.5], [0.599], [0.601], [0.999]]
        y = jnp.asarray(d * np.repeat(radii, 10, axis=0))

        @jax.jit
        def check(y):
            u, log_det = ball_map(y, core)
            jac = jax.vmap(jax.jacobian(lambda a: ball_map(a, core)[0]))(y)
            grad0 = jax.grad(lambda a: ball_map(a, core)[1])(jnp.zeros(3))
            # the log-Jacobian's gradient (it enters the scores) is finite on both sides of the core's edge
            grads = jax.vmap(jax.grad(lambda a: ball_map(a, core)[1]))(y)
            return u, log_det, jnp.linalg.slogdet(jac)[1], ball_unmap(u, core), grad0, grads

        u, log_det, ref, back, grad0, grads = check(y)
        assert_allclose(log_det, ref, rtol=0, atol=1e-10)
        assert_allclose(back, y, rtol=1e-12, atol=1e-15)
        assert np.all(np.isfinite(grad0)) and np.all(np.isfinite(grads))
        r = np.linalg.norm(np.asarray(y), axis=1)
        if core > 0:  # the identity inside the core, stretched outside
            inside = r < core
            assert_allclose(np.asarray(u)[inside], np.asarray(y)[inside], rtol=1e-14, atol=0)
            assert_allclose(np.asarray(log_det)[inside], 0.0, atol=1e-14)
            assert np.all(np.asarray(log_det)[r > core] > 0)
            # φ(0.999) = 0.6 + 0.4·atanh(0.399/0.4) = 1.94: the edge still goes out
            assert float(jnp.linalg.norm(u[-1])) > 1.9
        else:
            assert float(jnp.linalg.norm(u[-1])) > 3.7  # atanh(0.999) = 3.80: the edge goes far out


def test_support_sphere_auto_normalised_and_checked(tmp_path):
    """A sample cut to a sphere: 'auto' finds the sphere recorded by Catalog.within, n(x)
    integrates to N over the ball, draws stay inside it, and stars outside a given support are refused."""
    rng = np.random.default_rng(11)
    n = 3000
    x = rng.normal(size=(n, 3)) * [1.0, 1.0, 0.3]
    cat = bd.Catalog(x, rng.normal(size=(n, 3)) * 20.0).within(1.5, center=[0.0, 0.0, 0.0])
    assert cat.meta["support_spheres"] == [{"center_kpc": [0.0, 0.0, 0.0], "radius_kpc": 1.5, "cuts": 1, "alone": True}]
    psd = fit_psd(cat, ensemble=1, seed=0, max_epochs=3, **TINY)
    assert psd.info["support_rule"].startswith("auto: meta['support_spheres'][0]")
    assert_allclose(psd.info["support_radius_kpc"], 1.5 * 1.002, rtol=1e-6)
    assert_allclose(psd.info["support_sphere_radius_kpc"], 1.5, rtol=1e-6)  # the sphere the stars fill
    assert "R = 1.503 kpc, the support sphere's × 1.002" in psd.summary()
    # float32 settings print rounded (x₀ had printed as 0.020800000056624413)
    assert not re.search(r"\d\.\d{7,}", psd.summary()), psd.summary()
    from bayesdyn.psd._density import _rounded

    assert _rounded(np.float32([-8.0, 0.0, 0.0208]), 4) == [-8.0, 0.0, 0.0208]
    # ∫ n dx over the ball = N (uniform proposals in the support ball, float32 densities)
    m = 20_000
    d = rng.normal(size=(m, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    radius = psd.info["support_radius_kpc"]
    pts = d * radius * rng.uniform(size=(m, 1)) ** (1 / 3)
    wts = np.asarray(psd.number_density(pts.astype(np.float32)), np.float64) * (4 / 3 * np.pi * radius**3)
    est, err = wts.mean(), wts.std() / np.sqrt(m)
    assert abs(est / cat.n - 1) < 5 * err / cat.n + 0.01, (est, err)
    xs, _ = psd.sample(2000, seed=1)
    assert np.linalg.norm(np.asarray(xs), axis=1).max() < radius
    s_x, s_v = psd.score(cat.x[:50].astype(np.float32), cat.v[:50].astype(np.float32))
    assert np.isfinite(np.asarray(s_x)).all() and np.isfinite(np.asarray(s_v)).all()
    with pytest.raises(ValueError, match="outside the support sphere"):
        fit_psd(cat, ensemble=1, seed=0, max_epochs=1, support=([0.0, 0.0, 0.0], 1.0), **TINY)
    psd.save(tmp_path / "p")
    again = load_psd(tmp_path / "p")
    assert_array_equal(np.asarray(again.score(cat.x[:20], cat.v[:20])[0]), np.asarray(psd.score(cat.x[:20], cat.v[:20])[0]))

    # support_core: the interior of the ball is left unmapped; still normalised, saved (format 6), checked
    cored = fit_psd(cat, ensemble=1, seed=0, max_epochs=3, support_core=0.6, **TINY)
    assert cored.info["support_core"] == pytest.approx(0.6)
    assert "identity inside |y| < 0.6" in cored.summary()
    to_space = jax.jit(lambda prep, a: prep.support_to_space(a))
    inner = cat.x[np.linalg.norm(cat.x, axis=1) < 0.5][:20].astype(np.float32)
    mapped, log_det = to_space(cored.preprocessing, jnp.asarray(inner))
    assert_allclose(np.asarray(mapped), inner / radius, rtol=1e-6)
    assert_allclose(np.asarray(log_det), -3 * np.log(radius), rtol=1e-6)
    wts = np.asarray(cored.number_density(pts.astype(np.float32)), np.float64) * (4 / 3 * np.pi * radius**3)
    est, err = wts.mean(), wts.std() / np.sqrt(m)
    assert abs(est / cat.n - 1) < 5 * err / cat.n + 0.01, (est, err)
    cored.save(tmp_path / "c")
    assert json.loads((tmp_path / "c" / "psd.json").read_text())["format_version"] == 7
    back = load_psd(tmp_path / "c")
    assert float(back.preprocessing.support_core) == pytest.approx(0.6)
    x20 = jnp.asarray(cat.x[:20], jnp.float32)
    assert_array_equal(np.asarray(to_space(back.preprocessing, x20)[0]), np.asarray(to_space(cored.preprocessing, x20)[0]))
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match="support_core"):
            fit_psd(cat, ensemble=1, seed=0, max_epochs=1, support_core=bad, **TINY)


def test_score_is_the_gradient_of_log_prob(psd, data):
    """The batched scores equal jax.grad of log_prob, and central differences of
    log_prob (which itself equals flowjax's log-density, above)."""
    cat, _, _ = data
    x, v = cat.x[:64].astype(np.float32), cat.v[:64].astype(np.float32)
    sx, sv = (np.asarray(s, np.float64) for s in psd.score(x, v))
    gx, gv = jax.grad(lambda a, b: jnp.sum(psd.log_prob(a, b)), argnums=(0, 1))(jnp.asarray(x), jnp.asarray(v))
    assert_allclose(sx, gx, rtol=1e-5, atol=1e-6 * np.abs(sx).max())
    assert_allclose(sv, gv, rtol=1e-5, atol=1e-6 * np.abs(sv).max())
    gn = np.asarray(psd.number_density_gradient(x), np.float64)
    fx, fv, fn = (np.empty((64, 3)) for _ in range(3))
    hx, hv = np.float32(2e-3), np.float32(0.05)  # kpc, km/s
    for i in range(3):
        dx, dv = np.zeros(3, np.float32), np.zeros(3, np.float32)
        dx[i], dv[i] = hx, hv
        fx[:, i] = np.asarray(psd.log_prob(x + dx, v), np.float64) - np.asarray(psd.log_prob(x - dx, v))
        fv[:, i] = np.asarray(psd.log_prob(x, v + dv), np.float64) - np.asarray(psd.log_prob(x, v - dv))
        fn[:, i] = np.asarray(psd.number_density(x + dx), np.float64) - np.asarray(psd.number_density(x - dx))
    # float32 round-off of log f (|log f| ≈ 20) over 2h gives ~1e-3 of the typical score
    assert_allclose(sx, fx / (2 * hx), rtol=0, atol=2e-3 * np.abs(sx).max())
    assert_allclose(sv, fv / (2 * hv), rtol=0, atol=2e-3 * np.abs(sv).max())
    assert_allclose(gn, fn / (2 * hx), rtol=0, atol=2e-3 * np.abs(gn).max())
    assert np.median(np.abs(sx)) > 0.1 and np.median(np.abs(sv)) > 5e-3  # not trivially zero


def test_densities_are_normalised(psd):
    """∫ p(v|x) dv = 1 and ∫ n(x) dx = N by importance sampling (Student-t proposals)."""
    _assert_normalised(psd)


def _assert_normalised(psd):
    rng = np.random.default_rng(5)
    prep = psd.preprocessing
    m = 20_000

    def student(loc, scale, nu):
        z = rng.standard_t(nu, size=(m, 3))
        return loc + z * scale, np.sum(-np.log(scale) + _t_logpdf(z, nu), axis=1)

    x0 = np.repeat((np.asarray(prep.x_loc) + np.array([0.3, -0.5, 0.2]))[None], m, axis=0)
    v, logq_v = student(np.asarray(prep.v_loc), 2.0 * np.asarray(prep.v_scale), 4.0)
    log_p = (
        np.asarray(psd.log_prob_members(x0, v), np.float64)
        - np.asarray(psd.log_number_density_members(x0), np.float64)
        + np.log(psd.n_stars)
    )
    x, logq_x = student(np.asarray(prep.x_loc), 2.0 * np.asarray(prep.x_scale), 2.0)  # heavier than the data
    log_n = np.asarray(psd.log_number_density_members(x), np.float64) - np.log(psd.n_stars)
    for k in range(psd.n_members):
        for lp, lq in ((log_p[k], logq_v), (log_n[k], logq_x)):
            wts = np.exp(lp - lq)
            est, err = wts.mean(), wts.std() / np.sqrt(m)
            assert abs(est - 1) < 5 * err + 0.01, (k, est, err)


def _t_logpdf(z, nu):
    return gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi) - (nu + 1) / 2 * np.log1p(z**2 / nu)


def test_save_load_bit_identical_and_tamper_detection(psd, data, tmp_path):
    cat, _, _ = data
    folder = tmp_path / "psd"
    psd.save(folder)
    back = load_psd(folder)
    for a, b in zip(psd.score(cat.x[:100], cat.v[:100]), back.score(cat.x[:100], cat.v[:100])):
        assert_array_equal(np.asarray(a), np.asarray(b))
    assert_array_equal(np.asarray(psd.log_prob(cat.x[:9], cat.v[:9])), np.asarray(back.log_prob(cat.x[:9], cat.v[:9])))
    assert back.info == json.loads(json.dumps(psd.info))
    assert back.summary() == psd.summary()

    # a changed header value
    header = json.loads((folder / "psd.json").read_text())
    header["n_stars"] = 12345
    (folder / "psd.json").write_text(json.dumps(header))
    with pytest.raises(PSDFileError, match="modified"):
        load_psd(folder)
    # a changed architecture with a forged header checksum: arrays no longer fit
    psd.save(folder)
    header = json.loads((folder / "psd.json").read_text())
    header["flow"]["width"] = 16
    header["header_sha256"] = hashlib.sha256(_canonical(header)).hexdigest()
    (folder / "psd.json").write_text(json.dumps(header))
    with pytest.raises(PSDFileError, match="expects"):
        load_psd(folder)
    # a changed byte in the arrays
    psd.save(folder)
    raw = bytearray((folder / "psd.eqx").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (folder / "psd.eqx").write_bytes(bytes(raw))
    with pytest.raises(PSDFileError, match="arrays file .* was modified"):
        load_psd(folder)
    with pytest.raises(PSDFileError, match="no psd.json"):
        load_psd(tmp_path / "nowhere")
    # header values that are not what save writes, with a forged checksum (they used to load, or raise TypeError)
    for key, value, message in (("n_stars", -5, "n_stars = -5"), ("n_stars", "12", "n_stars = '12'"),
                                ("ensemble", 2.0, "ensemble = 2.0"), ("info", [1, 2], "info is a list"),
                                # (a bare TypeError while building the flows)
                                ("flow", {**psd.config.to_dict(), "radial_condition": "yes"},
                                 "radial_condition='yes' must be True or False"),
                                ("flow", {**psd.config.to_dict(), "min_scale": "0.01"}, "min_scale='0.01' must be a number")):
        psd.save(folder)
        header = json.loads((folder / "psd.json").read_text())
        header[key] = value
        header["header_sha256"] = hashlib.sha256(_canonical(header)).hexdigest()
        (folder / "psd.json").write_text(json.dumps(header))
        with pytest.raises(PSDFileError, match=message):
            load_psd(folder)



def test_header_and_arrays_that_do_not_belong_together_name_the_fix(psd, tmp_path):
    """An ensemble size in psd.json that the arrays do not have (checksum forged) is refused naming the shapes and the
    fix (it named only the shapes), and a psd.json nested 100,000 levels deep is a damaged file (a bare
    RecursionError)."""
    folder = tmp_path / "psd"
    psd.save(folder)
    header = json.loads((folder / "psd.json").read_text())
    header["ensemble"] = 3
    header["header_sha256"] = hashlib.sha256(_canonical(header)).hexdigest()
    (folder / "psd.json").write_text(json.dumps(header))
    with pytest.raises(PSDFileError, match=r"expects \(3, .*do not belong together.*save the object again"):
        load_psd(folder)
    (folder / "psd.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PSDFileError, match=r"psd\.json is not valid JSON.*save it again"):
        load_psd(folder)


@pytest.mark.parametrize("version, fix", [(99, "upgrade bayesdyn"), (2, "refit the density")])
def test_format_version_message_names_the_fix(tmp_path, version, fix):
    """A newer file asks for a newer bayesdyn; an older, unreadable one for a refit."""
    header = {"format": "bayesdyn.psd", "format_version": version}
    header["header_sha256"] = hashlib.sha256(_canonical(header)).hexdigest()
    (tmp_path / "psd.json").write_text(json.dumps(header))
    with pytest.raises(PSDFileError, match=rf"format_version {version}\b.*{fix}"):
        load_psd(tmp_path)

def test_deterministic_by_seed(psd, data):
    cat, _, _ = data
    again = fit_psd(cat, ensemble=2, seed=0, max_epochs=3, **TINY)
    other = fit_psd(cat, ensemble=2, seed=1, max_epochs=3, **TINY)
    a = np.asarray(psd.score(cat.x[:50], cat.v[:50])[0])
    assert_array_equal(a, np.asarray(again.score(cat.x[:50], cat.v[:50])[0]))
    assert not np.allclose(a, np.asarray(other.score(cat.x[:50], cat.v[:50])[0]))
    for key in ("train", "val"):
        assert again.info["history"][key] == psd.info["history"][key]


def test_checkpoint_resume_equals_uninterrupted(data, tmp_path, monkeypatch):
    cat, _, _ = data
    settings = dict(ensemble=2, seed=3, max_epochs=4, patience=10, **TINY)
    full = fit_psd(cat, **settings)

    calls = {"n": 0}
    real = _train.write_bundle

    def interrupt_after_two(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(_train, "write_bundle", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        fit_psd(cat, checkpoint_dir=tmp_path, **settings)
    header = json.loads((tmp_path / "checkpoint.json").read_text())
    assert header["epoch"] == 2
    # options added later enter the fingerprint only when set: checkpoints of earlier versions still match
    assert set(header["fingerprint"]) == {"data_sha256", "n_stars", "radial_map", "support", "velocity_frame",
                                          "cusp_map"}
    monkeypatch.setattr(_train, "write_bundle", real)
    resumed = fit_psd(cat, checkpoint_dir=tmp_path, **settings)
    for a, b in zip(full.score(cat.x[:50], cat.v[:50]), resumed.score(cat.x[:50], cat.v[:50])):
        assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.info["epochs"] == full.info["epochs"] == 4
    assert resumed.info["history"]["val"] == full.info["history"]["val"]
    # other settings with the same checkpoint folder are refused
    with pytest.raises(PSDFileError, match="different 'seed'"):
        fit_psd(cat, checkpoint_dir=tmp_path, **{**settings, "seed": 4})
    # a header edited with its checksum recomputed: an epoch "three" raised a bare ValueError, "4" resumed as 4, a
    # history cut short failed at the end of training
    good = json.loads((tmp_path / "checkpoint.json").read_text())
    for edit, message in (({"epoch": "4"}, "its epoch '4' is not a whole number"),
                          ({"epoch": 9}, r"its epoch 9 is not a whole number in \[0, max_epochs = 4\]"),
                          ({"history": {**good["history"], "val": good["history"]["val"][:3]}},
                           r"its history's 'val' is not 4 epoch\(s\) of numbers of shape \(2, 2\)"),
                          ({"history": {"train": []}}, "its history is not the record")):
        header = {**good, **edit}
        header["header_sha256"] = hashlib.sha256(_canonical(header)).hexdigest()
        (tmp_path / "checkpoint.json").write_text(json.dumps(header))
        with pytest.raises(PSDFileError, match=rf"checkpoint\.json: {message}.*training checkpoint: delete"):
            fit_psd(cat, checkpoint_dir=tmp_path, **settings)
    (tmp_path / "checkpoint.json").write_text(json.dumps(good))
    assert fit_psd(cat, checkpoint_dir=tmp_path, **settings).info["history"]["val"] == full.info["history"]["val"]
    # a damaged checkpoint says to delete it (it advised "save again", which a checkpoint cannot)
    leaves = tmp_path / json.loads((tmp_path / "checkpoint.json").read_text())["leaves_file"]
    data_bytes = bytearray(leaves.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0xFF
    leaves.write_bytes(bytes(data_bytes))
    with pytest.raises(PSDFileError, match="training checkpoint: delete"):
        fit_psd(cat, checkpoint_dir=tmp_path, **settings)



def test_a_checkpoint_write_killed_between_its_two_files_keeps_the_previous_epoch(tmp_path, monkeypatch):
    """The checkpoint's arrays are named by their content and the old ones removed only after the new header: a
    kill between the two writes leaves the previous epoch readable (with one arrays name the old header met the new
    arrays, a checksum error, and the training was lost — as the unversioned write below still shows)."""
    from bayesdyn.psd import _io

    a, b = {"w": jnp.arange(3.0)}, {"w": jnp.arange(3.0) + 10.0}
    real = _io._atomic_write

    def killed_before_the_header(path, data):
        if path.suffix == ".json":
            raise KeyboardInterrupt("simulated kill")
        real(path, data)

    for versioned in (True, False):
        folder = tmp_path / str(versioned)
        _io.write_bundle(folder, "checkpoint", {"format": "F", "epoch": 1}, a, versioned=versioned)
        monkeypatch.setattr(_io, "_atomic_write", killed_before_the_header)
        with pytest.raises(KeyboardInterrupt):
            _io.write_bundle(folder, "checkpoint", {"format": "F", "epoch": 2}, b, versioned=versioned)
        monkeypatch.setattr(_io, "_atomic_write", real)
        header = _io.read_header(folder, "checkpoint", "F")
        assert header["epoch"] == 1
        if versioned:
            assert_array_equal(np.asarray(_io.read_leaves(folder, header, a)["w"]), np.arange(3.0))
        else:
            with pytest.raises(PSDFileError):
                _io.read_leaves(folder, header, a)
    # the next complete write replaces the pair and leaves one arrays file
    folder = tmp_path / "True"
    _io.write_bundle(folder, "checkpoint", {"format": "F", "epoch": 2}, b, versioned=True)
    header = _io.read_header(folder, "checkpoint", "F")
    assert header["epoch"] == 2 and [p.name for p in folder.glob("checkpoint*.eqx")] == [header["leaves_file"]]
    assert_array_equal(np.asarray(_io.read_leaves(folder, header, a)["w"]), np.arange(3.0) + 10.0)

def test_bootstrap_members_see_different_data(data, psd):
    cat, _, _ = data
    boot = psd  # bootstrap members are fit_psd's default
    assert boot.info["training"]["bootstrap"] is True
    plain = fit_psd(cat, ensemble=2, seed=0, max_epochs=3, bootstrap=False, **TINY)
    assert plain.info["training"]["bootstrap"] is False
    a = np.asarray(boot.score_members(cat.x[:50], cat.v[:50])[0])
    b = np.asarray(plain.score_members(cat.x[:50], cat.v[:50])[0])
    assert np.all(np.isfinite(a))
    # same seed, same initialisation: only the resampled data differ
    assert not np.allclose(a, b, rtol=1e-3)
    assert np.all(np.isfinite(boot.validation_nll))


def test_seeds_per_resample_groups_members_on_shared_resamples(data, psd):
    """fit_psd(seeds_per_resample=L): J = K/L bootstrap resamples, the L members of a group on the same stars
    (differing by seed only); L = 1 draws exactly the resamples of earlier versions; the groups reach the
    accelerations that bd.infer combines."""
    tr_idx = np.arange(100, 400)

    def indices(ensemble, **kw):
        return _train._member_indices(np.random.default_rng(7), tr_idx, ensemble,
                                      _train.TrainConfig(bootstrap=True, **kw))

    paired = indices(6, seeds_per_resample=2)
    assert paired.shape == (6, 300) and paired.dtype == np.int32
    for j in range(3):
        assert_array_equal(paired[2 * j], paired[2 * j + 1])
    assert not np.array_equal(paired[0], paired[2]) and not np.array_equal(paired[2], paired[4])
    assert set(np.unique(paired)) <= set(tr_idx.tolist())
    # L = 1 (the default): one resample per member, as drawn before the option existed
    assert_array_equal(indices(4), tr_idx[np.random.default_rng(7).integers(0, 300, size=(4, 300))])
    assert "seeds_per_resample" not in _train.TrainConfig().to_dict()  # checkpoints of earlier versions still match
    assert _train.TrainConfig(seeds_per_resample=2).to_dict()["seeds_per_resample"] == 2
    # numpy integers are integers (they were refused as "must be a positive integer"), stored as int
    t = _train.TrainConfig(batch_size=np.int64(256), max_epochs=np.int32(3))
    assert t.batch_size == 256 and type(t.batch_size) is int and json.dumps(t.to_dict())
    f = FlowConfig(n_layers=np.int64(2), width=np.int64(8))
    assert type(f.width) is int and f.to_dict()["width"] == 8
    with pytest.raises(ValueError, match="must be a positive integer"):
        _train.TrainConfig(batch_size=np.float64(256.0))
    # the block neural autoregressive flow is not offered (default width refused, sampling failed beyond 2 layers)
    with pytest.raises(ValueError, match="flow='bnaf' is not offered: its numerical inverse fails"):
        FlowConfig(flow="bnaf")
    cat, _, _ = data
    for kw, msg in [(dict(ensemble=4, seeds_per_resample=3), "divides ensemble"),
                    (dict(ensemble=4, seeds_per_resample=2, bootstrap=False), "needs bootstrap=True"),
                    (dict(ensemble=2, seeds_per_resample=2), "gives one resample")]:
        with pytest.raises(ValueError, match=msg):
            fit_psd(cat, seed=0, max_epochs=1, **{**TINY, **kw})
    assert "resample_groups" not in psd.info  # one member per resample ("auto" gives L = 1)
    # "auto" (the default): one member per resample (pairs for an even K ≥ 4 until 2026-12-07)
    from bayesdyn.psd._fit import resolve_seeds_per_resample

    assert [resolve_seeds_per_resample(k, "auto", True) for k in (1, 2, 3, 4, 5, 6, 8)] == [1] * 7
    assert resolve_seeds_per_resample(4, "auto", False) == 1 and resolve_seeds_per_resample(8, 4, True) == 4
    with pytest.raises(ValueError, match='"auto" or a positive integer'):
        fit_psd(cat, seed=0, max_epochs=1, **{**TINY, "seeds_per_resample": "pairs"})
    four = fit_psd(cat, seed=0, max_epochs=1, **{**TINY, "ensemble": 4, "seeds_per_resample": 2})
    assert four.info["resample_groups"] == [0, 0, 1, 1]
    assert four.info["training"]["seeds_per_resample"] == 2
    # the groups travel from the flows' info into the accelerations (here a relabelled copy of the fixture)
    labelled = bd.PhaseSpaceDensity(psd._members, psd.preprocessing, psd._config, n_stars=psd.n_stars,
                                    info={**psd.info, "resample_groups": [0, 1]})
    data_ = bd.estimate_accelerations(labelled, np.asarray(cat.x[:3]), n_velocities=16, seed=0)
    assert_array_equal(data_.member_groups, [0, 1])
    assert bd.estimate_accelerations(psd, np.asarray(cat.x[:3]), n_velocities=16, seed=0).member_groups is None


def test_scores_recovered_and_jacobian_needed(data, psd):
    """A short training reaches loose score errors on held-out stars; the same
    flows without the radial map's Jacobian in log f, or trained without the
    radial map, miss the bound by far."""
    cat, _, _ = data
    fitted = fit_psd(cat, ensemble=2, seed=0, max_epochs=25, learning_rate=3e-3, **TINY)
    x, v, sx, sv = mock(2000, seed=9)
    err = score_errors(fitted, x, v, sx, sv)
    assert err["x"] < 0.25 and err["v"] < 0.2, err  # measured 0.16 and 0.09
    assert len(err["x_members"]) == 2 and err["n"] == 2000
    import astropy.units as u  # exact scores as Quantities are converted (their numbers had been kept: "x" 999)

    in_units = score_errors(fitted, x, v, sx * 1e-3 / u.pc, sv * 1e-3 * u.s / u.m)
    assert_allclose([in_units["x"], in_units["v"]], [err["x"], err["v"]], rtol=1e-5)
    with pytest.raises(bd.units.UnitError, match="exact_sx"):
        score_errors(fitted, x, v, sx * u.km / u.s, sv)

    prep = fitted.preprocessing
    jac_grad = jax.vmap(jax.grad(lambda xi: prep.position_to_latent(xi)[1]))(jnp.asarray(x, jnp.float32))
    no_jac = np.asarray(fitted.score(x, v)[0]) - np.asarray(jac_grad)
    rel = np.median(np.linalg.norm(no_jac - sx, axis=1) / np.linalg.norm(sx, axis=1))
    assert rel > 0.3, rel  # measured 0.44

    plain = fit_psd(cat, ensemble=2, seed=0, max_epochs=25, learning_rate=3e-3, **{**TINY, "radial_map": 0})
    assert score_errors(plain, x, v, sx, sv)["x"] > 0.3  # measured 0.37: heavy tails need the map
    # the radius "auto" would have chosen is recorded beside the one given (the pipeline's training CAVEAT reads it)
    assert (plain.info["radial_map"], plain.info["radial_map_auto"]) == (0.0, 1.0)


def test_bad_input():
    x, v, _, _ = mock(600, seed=0)
    cat = bd.Catalog(x=x, v=v)
    with pytest.raises(ValueError, match="batch_size"):
        fit_psd(cat, ensemble=1, batch_size=1000, progress=False)
    with pytest.raises(ValueError, match="flow="):
        fit_psd(cat, flow="glow", progress=False)
    with pytest.raises(TypeError, match="Catalog"):
        fit_psd(x)
    # a catalog-like object's units are converted (np.asarray dropped them: positions in pc were fitted as kpc)
    import types

    import astropy.units as u

    from bayesdyn.units import UnitError

    with pytest.raises(UnitError, match="catalog.x"):
        fit_psd(types.SimpleNamespace(x=x * u.km / u.s, v=v * u.km / u.s), progress=False)
    with pytest.raises(ValueError, match="outside the support sphere") as err:
        fit_psd(types.SimpleNamespace(x=x * 1000 * u.pc, v=v * u.km / u.s), support=([-8.0, 0.0, 0.0], 1.0),
                progress=False)
    farthest = float(str(err.value).split("farthest at ")[1].split(" kpc")[0])
    assert farthest == pytest.approx(np.linalg.norm(x - [-8.0, 0.0, 0.0], axis=1).max(), rel=1e-5)
    # support as Quantities (a radius Quantity was refused, a centre in pc read as kpc)
    with pytest.raises(ValueError, match=r"centre \[-8.0, 0.0, 0.0\] kpc, radius 0.5 kpc"):
        fit_psd(cat, support=([-8000.0, 0.0, 0.0] * u.pc, 500 * u.pc), progress=False)
    # support_core without a support map: refused with support=None, warned when 'auto' finds no sphere (it was
    # silently 0); the batch_size error comes after, before any training
    with pytest.raises(ValueError, match="support=None"):
        fit_psd(cat, support=None, support_core=0.5, progress=False)
    with pytest.warns(UserWarning, match="support_core=0.5 is not used"), pytest.raises(ValueError, match="batch_size"):
        fit_psd(cat, support_core=0.5, batch_size=1000, progress=False)
    # seeds beyond the flows' 31-bit keys (2**31 shared seed 0's keys with another data split)
    for bad in (2**31, -1, 1.5):
        with pytest.raises(ValueError, match="seed="):
            fit_psd(cat, seed=bad, progress=False)


def test_fast_sampler_inverts_the_flows(psd, data):
    """The batched MAF sampler maps base draws as flowjax's own inverse transform does."""
    cat, _, _ = data
    from bayesdyn.psd._flows import _maf_inverse

    member = _members(psd, 0)
    z = jax.random.normal(jax.random.key(0), (64, 3))
    u = jnp.asarray(cat.x[:64] - X0, jnp.float32) * 0.5

    @jax.jit
    def both(z, u):
        out = []
        for flow, cond in ((member.flow_x, None), (member.flow_v, u)):
            fast = _maf_inverse(paramax.unwrap(flow), psd.config, z, cond)
            ref = jax.vmap(lambda zi, ci, f=flow: f.bijection.transform(zi, ci))(z, cond)
            out.append((fast, ref))
        return out

    for fast, ref in both(z, u):
        assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)


def test_cylindrical_velocity_frame_rotates_with_azimuth():
    """A rotating disk patch: 'auto' picks the local (v_R, v_φ, v_z) frame, p(v|x) stays normalised,
    and draws at two azimuths rotate with φ̂ — exact in this frame, even for a barely trained flow."""
    rng = np.random.default_rng(7)
    n = 3000
    phi = rng.uniform(-0.2, 0.2, n)
    r = rng.uniform(7.0, 9.0, n)
    x = np.stack([-r * np.cos(phi), -r * np.sin(phi), rng.normal(0, 0.3, n)], axis=1)  # around (−8, 0, 0)
    az = np.arctan2(x[:, 1], x[:, 0])
    e_phi = np.stack([-np.sin(az), np.cos(az), np.zeros(n)], axis=1)
    v = 200.0 * e_phi + rng.normal(size=(n, 3)) * [30.0, 20.0, 15.0]
    psd = fit_psd(bd.Catalog(x, v), ensemble=1, seed=0, max_epochs=2, **TINY)
    assert psd.info["velocity_frame"] == "cylindrical", psd.info["velocity_frame_rule"]
    assert fit_psd(bd.Catalog(x, v), ensemble=1, seed=0, max_epochs=1, velocity_frame="cartesian",
                   **TINY).info["velocity_frame"] == "cartesian"
    for a in (-0.15, 0.15):
        x0 = np.array([-8 * np.cos(a), -8 * np.sin(a), 0.0])
        draws = np.asarray(psd.sample_velocities(x0[None], 4000, seed=1))[0]
        mean = draws.mean(0)
        e = np.array([np.sin(a), -np.cos(a), 0.0])  # φ̂ at azimuth π + a (x < 0)
        cosang = mean @ e / np.linalg.norm(mean)
        assert abs(cosang) > np.cos(np.radians(3.0)), (a, mean)
        # ∫ p(v|x0) dv = 1 by importance sampling around the draws
        m = 20_000
        loc, sc = draws.mean(0), 2.0 * draws.std(0)
        z = rng.standard_t(4.0, size=(m, 3))
        vv = loc + z * sc
        logq = np.sum(-np.log(sc) + _t_logpdf(z, 4.0), axis=1)
        xx = np.repeat(x0[None], m, axis=0)
        logp = (np.asarray(psd.log_prob_members(xx, vv), np.float64)[0]
                - np.asarray(psd.log_number_density_members(xx), np.float64)[0] + np.log(psd.n_stars))
        w = np.exp(logp - logq)
        assert abs(w.mean() - 1) < 5 * w.std() / np.sqrt(m) + 0.01


def test_spherical_velocity_frame_basis_is_a_rotation_with_r_hat_first():
    """Frame 2 rotates v into (v_r, v_θ, v_φ): e₁ = x/|x|, a right-handed orthonormal basis, unit Jacobian,
    exact inverse, finite gradients on the z axis and at the origin; frames 0 and 1 are unchanged."""
    from bayesdyn.psd._transforms import Preprocessing

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=(50, 3)), [[0.0, 0.0, 2.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
    v = rng.normal(size=(53, 3)) * 50.0
    with jax.enable_x64(True):
        z3, o3, s0 = jnp.zeros(3), jnp.ones(3), jnp.zeros(())
        x, v = jnp.asarray(x), jnp.asarray(v)
        for frame in (0.0, 1.0, 2.0):
            p = Preprocessing(z3, o3, z3, o3, s0, z3, s0, jnp.asarray(frame), s0, s0, s0, z3)
            e = np.stack([np.asarray(b) for b in p._basis(x)], axis=-2)  # (N, 3 rows, 3)
            assert_allclose(e @ np.swapaxes(e, -1, -2), np.broadcast_to(np.eye(3), e.shape), atol=1e-12)
            assert_allclose(np.linalg.det(e), 1.0, atol=1e-12)  # right-handed
            w, ld = p.velocity_to_latent(v, x)
            assert_allclose(np.asarray(p.latent_to_velocity(w, x)), np.asarray(v), atol=1e-10)
            assert_allclose(np.asarray(ld), 0.0)
            grads = jax.vmap(jax.jacfwd(lambda xx, vv: p.velocity_to_latent(vv, xx)[0]))(x, v)
            assert np.isfinite(np.asarray(grads)).all()
        r = np.linalg.norm(np.asarray(x[:52]), axis=1)
        assert_allclose(e[:52, 0], np.asarray(x[:52]) / r[:, None], atol=1e-12)
        # v_r, and the squared tangential speed, do not depend on the basis' choice on the axis
        assert_allclose(np.asarray(w[:52, 0]), np.sum(np.asarray(v[:52]) * np.asarray(x[:52]), 1) / r, atol=1e-10)


def test_spherical_velocity_frame_auto_for_an_anisotropic_sphere():
    """Stars around the origin with radially elongated velocities: 'auto' picks (v_r, v_θ, v_φ) (not for the
    same stars off-centre, nor with isotropic velocities), and draws
    from a barely trained flow have their largest spread along r̂ wherever they are drawn (off the axes this
    needs whole draws: sample_velocities once shuffled each component on its own, which put the axis
    elsewhere); a saved density keeps the frame (format 5)."""
    rng = np.random.default_rng(11)
    n = 3000
    x = rng.normal(size=(n, 3)) * [1.0, 1.0, 0.8]
    rhat = x / np.linalg.norm(x, axis=1, keepdims=True)
    t = rng.normal(size=(n, 3)) * 10.0
    v = rhat * rng.normal(size=(n, 1)) * 40.0 + (t - np.sum(t * rhat, 1, keepdims=True) * rhat)
    psd = fit_psd(bd.Catalog(x, v), ensemble=1, seed=0, max_epochs=2, **TINY)
    assert psd.info["velocity_frame"] == "spherical", psd.info["velocity_frame_rule"]
    off = fit_psd(bd.Catalog(x + [4.0, 0.0, 0.0], v), ensemble=1, seed=0, max_epochs=1, **TINY)
    assert off.info["velocity_frame"] == "cartesian", off.info["velocity_frame_rule"]  # the origin is outside
    iso = fit_psd(bd.Catalog(x, rng.normal(size=(n, 3)) * 20.0), ensemble=1, seed=0, max_epochs=1, **TINY)
    assert iso.info["velocity_frame"] == "cartesian", iso.info["velocity_frame_rule"]  # isotropic: |β| < 0.2
    for x0 in ([1.0, 0.0, 0.0], [0.0, -0.8, 0.6], [0.0, 0.0, 1.0], [-0.5, 0.5, -0.7]):
        x0 = np.asarray(x0)
        draws = np.asarray(psd.sample_velocities(x0[None], 4000, seed=2))[0]
        evals, evecs = np.linalg.eigh(np.cov(draws.T))
        cosang = abs(evecs[:, -1] @ x0) / np.linalg.norm(x0)
        assert cosang > np.cos(np.radians(10.0)), (x0, evecs[:, -1])
        assert evals[-1] > 4 * evals[-2]
    s_x, s_v = psd.score(x[:200], v[:200])
    assert np.isfinite(np.asarray(s_x)).all() and np.isfinite(np.asarray(s_v)).all()
    psd.save(_tmp := Path(tempfile.mkdtemp()) / "sph")
    assert json.loads((_tmp / "psd.json").read_text())["format_version"] == 7
    again = load_psd(_tmp)
    assert_array_equal(np.asarray(again.log_prob(x[:50], v[:50])), np.asarray(psd.log_prob(x[:50], v[:50])))


def test_radial_condition_auto_on_for_a_cusp_and_fast_path_exact():
    """Star counts with an r⁻¹ cusp switch on the log|u| condition of p(v|x) (a cored Plummer sphere does not);
    with it, the fast MAF path still equals flowjax's log_prob plus the Jacobians, and p(v|x) integrates to 1."""
    from bayesdyn.psd._flows import condition

    rng = np.random.default_rng(5)
    n = 6000
    q = rng.uniform(size=n)
    r = np.sqrt(q) / (1 - np.sqrt(q))  # Hernquist counts, scale 1 kpc: N(<r) ∝ r² at the centre
    d = rng.normal(size=(n, 3))
    x = d / np.linalg.norm(d, axis=1, keepdims=True) * r[:, None]
    v = rng.normal(size=(n, 3)) * (30.0 * np.sqrt(r / (1 + r)))[:, None]  # colder towards the centre
    psd = fit_psd(bd.Catalog(x, v), ensemble=1, seed=0, max_epochs=2, **TINY)
    assert psd.info["radial_condition"] and psd.config.radial_condition, psd.info["radial_condition_rule"]
    cored = fit_psd(bd.mocks.plummer(3000, 1)[0], ensemble=1, seed=0, max_epochs=1, **TINY)
    assert not cored.info["radial_condition"], cored.info["radial_condition_rule"]
    prep, member = psd.preprocessing, _members(psd, 0)
    xs, vs = jnp.asarray(x[:100], jnp.float32), jnp.asarray(v[:100], jnp.float32)

    def one(xi, vi):
        u = prep.position_to_latent(xi)[0]
        w, ldv = prep.velocity_to_latent(vi, xi)  # with the velocity frame chosen by "auto" (a rotation)
        log_jac_x = jnp.linalg.slogdet(jax.jacobian(lambda a: prep.position_to_latent(a)[0])(xi))[1]
        return (reference_log_prob(member.flow_x, u) + log_jac_x
                + reference_log_prob(member.flow_v, w, condition(psd.config, u)) + ldv)

    assert_allclose(psd.log_prob_members(xs, vs)[0], jax.jit(jax.vmap(one))(xs, vs), atol=2e-4)
    x0 = np.array([0.3, -0.2, 0.1])  # inside the cusp
    draws = np.asarray(psd.sample_velocities(x0[None], 4000, seed=1))[0]
    m = 20_000
    loc, sc = draws.mean(0), 2.0 * draws.std(0)
    z = rng.standard_t(4.0, size=(m, 3))
    logq = np.sum(-np.log(sc) + _t_logpdf(z, 4.0), axis=1)
    xx = np.repeat(x0[None], m, axis=0)
    logp = (np.asarray(psd.log_prob_members(xx, loc + z * sc), np.float64)[0]
            - np.asarray(psd.log_number_density_members(xx), np.float64)[0] + np.log(psd.n_stars))
    w = np.exp(logp - logq)
    assert abs(w.mean() - 1) < 5 * w.std() / np.sqrt(m) + 0.01


def test_cusp_map_jacobian_inverse_and_auto_rule(tmp_path):
    """The cusp map: exact log-Jacobian and inverse over 10 decades of radius; 'auto' turns it on for
    n ∝ r⁻¹ star counts (p ≈ 2/3) and off for a cored Plummer sphere; a cuspy density stays
    normalised; a format-3 file (no cusp fields) still loads, with the map off."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        z = jnp.asarray(rng.normal(size=(50, 3)) * np.repeat([[1e-6], [0.01], [0.5], [3.0], [1e4]], 10, axis=0))
        y, log_det = cusp_map(z, 0.6, 0.8)
        jac = jax.vmap(jax.jacobian(lambda a: cusp_map(a, 0.6, 0.8)[0]))(z)
        assert_allclose(log_det, jnp.linalg.slogdet(jac)[1], rtol=0, atol=1e-9)
        assert_allclose(cusp_unmap(y, 0.6, 0.8), z, rtol=1e-10)
    # n ∝ r⁻¹ (1 + r)⁻³ (Hernquist-like counts; r = 1 kpc scale): N(<r) ∝ r² near the centre
    n = 8000
    q = rng.uniform(size=n)
    r = np.sqrt(q) / (1 - np.sqrt(q))  # Hernquist inverse cumulative
    d = rng.normal(size=(n, 3))
    x = d / np.linalg.norm(d, axis=1, keepdims=True) * r[:, None]
    v = rng.normal(0.0, 30.0, (n, 3))
    psd = fit_psd(bd.Catalog(x, v), ensemble=1, seed=0, max_epochs=3, **TINY)
    p, c = psd.info["cusp_map"]
    assert 0.5 < p < 0.8, psd.info["cusp_map_rule"]
    # ∫ n dx = N by importance sampling from a heavy-tailed proposal centred on the cusp
    m = 40_000
    rr = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), m))  # log-uniform radii: q(x) = 1/(4π r³ ln 10⁶)
    dd = rng.normal(size=(m, 3))
    xx = dd / np.linalg.norm(dd, axis=1, keepdims=True) * rr[:, None]
    w = np.exp(np.asarray(psd.log_number_density_members(xx), np.float64)[0]) * 4 * np.pi * rr**3 * np.log(1e6)
    assert abs(w.mean() / n - 1) < 0.05, w.mean() / n
    cored = fit_psd(bd.mocks.plummer(3000, 1)[0], ensemble=1, seed=0, max_epochs=1, **TINY)
    assert cored.info["cusp_map"] == [0.0, 0.0], cored.info["cusp_map_rule"]


#: per older file format: the Preprocessing leaves it lacks (read back as "off")
_MISSING_LEAVES = {
    6: ("axis_scale",),
    5: ("support_core", "axis_scale"),
    3: ("cusp_power", "cusp_core", "support_core", "axis_scale"),
}


@pytest.mark.parametrize("version", sorted(_MISSING_LEAVES, reverse=True))
def test_older_format_files_load_with_the_newer_maps_off(psd, data, tmp_path, monkeypatch, version):
    """A density saved by an older format (without the leaves of later maps: 4 the cusp map, 6 the support core,
    7 the per-axis map) loads with those maps off and the same log f."""
    from bayesdyn.psd import _density

    missing = _MISSING_LEAVES[version]
    old = eqx.tree_at(lambda p: tuple(getattr(p, n) for n in missing), psd.preprocessing, (None,) * len(missing))
    older = _density.PhaseSpaceDensity(psd._members, old, psd.config, n_stars=psd.n_stars, info=psd.info)
    monkeypatch.setattr(_density, "FORMAT_VERSION", version)
    older.save(tmp_path / f"v{version}")
    monkeypatch.undo()
    assert json.loads((tmp_path / f"v{version}" / "psd.json").read_text())["format_version"] == version
    back = load_psd(tmp_path / f"v{version}")
    for name in missing:
        assert not np.any(np.asarray(getattr(back.preprocessing, name))), name
    cat, _, _ = data
    assert_array_equal(back.log_prob(cat.x[:50], cat.v[:50]), psd.log_prob(cat.x[:50], cat.v[:50]))


def test_sinh_arcsinh_transformer():
    """y = sinh(δ·asinh(x) − ε): log-det = log dy/dx (autodiff), exact inverse, identity at start, δ and ε bounded."""
    from bayesdyn.psd._flows import SinhArcsinh

    x = jnp.linspace(-30.0, 30.0, 61)
    start = paramax.unwrap(SinhArcsinh())
    assert_allclose(jax.vmap(start.transform)(x), x, rtol=1e-6)
    for q, p in ((0.9, -0.4), (-1.5, 2.0), (50.0, -50.0)):
        b = eqx.tree_at(lambda t: (t.skew.args[0], t.tail.args[0]), SinhArcsinh(), (jnp.asarray(q), jnp.asarray(p)))
        b = paramax.unwrap(b)
        assert 2 / 3 - 1e-6 <= b.tail <= 1.5 + 1e-6 and abs(b.skew) <= 2.0
        y, log_det = jax.vmap(b.transform_and_log_det)(x)
        assert np.all(np.isfinite(y))
        assert_allclose(log_det, jnp.log(jax.vmap(jax.grad(b.transform))(x)), atol=2e-5)
        back, log_det_inv = jax.vmap(b.inverse_and_log_det)(y)
        assert_allclose(back, x, rtol=2e-5, atol=2e-5)
        assert_allclose(log_det_inv, -log_det, atol=2e-5)


def test_sas_maf_fast_path_matches_flowjax():
    """The batched log-density and sampler of flow="sas_maf" equal flowjax's, with every parameter away from its start."""
    from bayesdyn.psd._flows import FlowConfig, _maf_inverse, build_member, flow_log_prob, prng_key

    cfg = FlowConfig(flow="sas_maf", n_layers=3, width=16)
    member = build_member(prng_key(0), cfg)
    leaves, tree = jax.tree.flatten(eqx.filter(member, eqx.is_inexact_array))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    member = eqx.combine(jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape) for a, k in
                                                   zip(leaves, keys)]), member)
    y = 1.5 * jax.random.normal(jax.random.key(2), (64, 3))
    u = jax.random.normal(jax.random.key(3), (64, 3))
    # one jitted program per comparison: op-by-op flowjax compiled hundreds of tiny programs (14 s cold)
    @eqx.filter_jit
    def both(flow, y, cond):
        ref = jax.vmap(lambda a, c: reference_log_prob(flow, a, c))(y, cond)
        slow = jax.vmap(lambda zi, ci: flow.bijection.transform(zi, ci))(y, cond)  # the sampling direction
        return flow_log_prob(flow, cfg, y, cond), ref, _maf_inverse(paramax.unwrap(flow), cfg, y, cond), slow

    for flow, cond in ((member.flow_x, None), (member.flow_v, u)):
        fast_lp, ref, fast, slow = both(flow, y, cond)
        assert_allclose(fast_lp, ref, rtol=1e-4, atol=1e-4)
        assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


def test_sas_maf_flows_are_normalised_smooth_and_saved(data, tmp_path):
    """flow="sas_maf" (sinh-arcsinh + affine transformers): normalised densities, scores = finite differences of
    log f, draws that invert the density transform, bit-identical after save and load."""
    cat, _, _ = data
    psd = fit_psd(cat, ensemble=2, seed=0, max_epochs=3, flow="sas_maf", **TINY)
    assert psd.config.flow == "sas_maf"
    _assert_normalised(psd)
    x, v = cat.x[:32].astype(np.float32), cat.v[:32].astype(np.float32)
    sx, sv = (np.asarray(s, np.float64) for s in psd.score(x, v))
    hx, hv = np.float32(2e-3), np.float32(0.05)  # kpc, km/s
    for i in range(3):
        dx, dv = np.zeros(3, np.float32), np.zeros(3, np.float32)
        dx[i], dv[i] = hx, hv
        fx = (np.asarray(psd.log_prob(x + dx, v), np.float64) - np.asarray(psd.log_prob(x - dx, v))) / (2 * hx)
        fv = (np.asarray(psd.log_prob(x, v + dv), np.float64) - np.asarray(psd.log_prob(x, v - dv))) / (2 * hv)
        assert_allclose(sx[:, i], fx, rtol=0, atol=2e-3 * np.abs(sx).max())
        assert_allclose(sv[:, i], fv, rtol=0, atol=2e-3 * np.abs(sv).max())
    member = _members(psd, 0)
    z = jax.random.normal(jax.random.key(0), (64, 3))
    u = jnp.asarray(cat.x[:64] - X0, jnp.float32) * 0.5
    for flow, cond in ((member.flow_x, None), (member.flow_v, u)):
        drawn = jax.vmap(lambda zi, ci, f=flow: f.bijection.transform(zi, ci))(z, cond)  # the sampling direction
        back = jax.vmap(lambda xi, ci, f=flow: f.bijection.inverse(xi, ci))(drawn, cond)
        assert_allclose(back, z, rtol=1e-4, atol=1e-4)
    psd.save(tmp_path / "sas")
    again = load_psd(tmp_path / "sas")
    assert again.config.flow == "sas_maf"
    assert_array_equal(np.asarray(again.log_prob(x, v)), np.asarray(psd.log_prob(x, v)))


def test_a_batch_with_a_non_finite_loss_is_skipped():
    """One overflowing star makes a batch's loss and gradient NaN: the step keeps the flow and Adam's state (before,
    they turned NaN for the rest of the training — a sas_maf calibration realisation diverged so); a finite batch
    still updates."""
    from bayesdyn.psd._flows import FlowConfig, build_member, flow_log_prob, prng_key

    cfg = FlowConfig(n_layers=2, width=8)
    flow = build_member(prng_key(0), cfg).flow_x
    opt = _train._optimizer(1.0)
    state = opt.init(_train._params(flow))
    y = jax.random.normal(jax.random.key(1), (16, 3))
    bad = y.at[3, 0].set(jnp.nan)

    def step(data):
        return eqx.filter_jit(lambda f, s: _train._flow_step(f, s, opt, 1e-2, lambda g: -jnp.mean(
            flow_log_prob(g, cfg, data))))(flow, state)

    same, same_state, loss = step(bad)
    assert not np.isfinite(float(loss))
    for a, b in zip(jax.tree.leaves(eqx.filter((same, same_state), eqx.is_array)),
                    jax.tree.leaves(eqx.filter((flow, state), eqx.is_array))):
        assert_array_equal(np.asarray(a), np.asarray(b))
    moved, moved_state, loss = step(y)
    assert np.isfinite(float(loss))
    changed = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(jax.tree.leaves(eqx.filter(moved, eqx.is_inexact_array)),
                   jax.tree.leaves(eqx.filter(flow, eqx.is_inexact_array)))]
    assert any(changed)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(eqx.filter(moved, eqx.is_inexact_array)))


def test_flows_that_end_worse_than_a_standard_normal_are_warned_about(data, psd, tmp_path, capsys):
    """Learning rates of 3 and 30 end with finite validation losses (2e3–4e27 nats per star: the fit diverged without
    overflowing) and fit_psd returned the flows without a word; the pipeline went on to report numbers with exit 0. It
    now warns, naming the pairs, and the pipeline stops there with exit 1, keeping no flows. A trained fit ends below
    the standard normal's loss on the same variables, recorded as info["val_loss_gaussian"]."""
    from bayesdyn import cli
    from bayesdyn.psd import _fit

    cat, _, _ = data
    gauss = np.asarray(psd.info["val_loss_gaussian"])
    assert gauss.shape == (2,) and np.all(np.asarray(psd.info["val_loss_latent"]) < gauss + 0.1)
    assert _fit.worse_than_gaussian(psd.info) is None
    with pytest.warns(UserWarning, match=r"flows worse than a standard normal: \(member, flow\) pairs \[\[0, 0\], "
                                         r"\[0, 1\]\].*learning_rate = 3.0: lower it"):
        fit_psd(cat, ensemble=1, seed=0, max_epochs=2, learning_rate=3.0, **TINY)
    config = tmp_path / "run.toml"
    config.write_text(f'output = "{tmp_path / "run"}"\n[catalog]\nmax_stars = 2000\n[psd]\nensemble = 1\n'
                      "n_layers = 2\nwidth = 8\nmax_epochs = 2\nbatch_size = 250\nlearning_rate = 3.0\n")
    assert cli.main(["fit-psd", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: flows worse than a standard normal") and "psd.learning_rate" in err
    assert not (tmp_path / "run" / "psd" / "psd.json").exists() and not (tmp_path / "run" / ".psd.stamp").exists()


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(data, tmp_path):
    """checkpoint_dir naming an existing file failed with a bare FileExistsError after the first epoch."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir='.*afile' is a file, not a folder"):
        fit_psd(data[0], ensemble=1, seed=0, max_epochs=1, checkpoint_dir=tmp_path / "afile", **TINY)

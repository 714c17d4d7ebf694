"""Measurement errors: re-smearing and the leading-order (SIMEX) correction of the accelerations.

The exact solution used here: an isothermal Gaussian sphere in a harmonic potential,
f ∝ exp(−|x|²/2s²) exp(−|v|²/2σ²) with Φ = ½ω²|x|², ω = σ/s, so a = −ω² x. A
Gaussian "density estimator" fitted to stars observed with velocity errors ε sees a
dispersion σ² + ε², and the CBE then gives a = −(σ² + ε²) x/s²: biased by the factor
1 + ε²/σ², exactly linear in ε², so re-smearing and extrapolating removes it exactly
up to sampling noise.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

import bayesdyn as bd
from bayesdyn.dynamics import correct_measurement_errors, measurement_error_correction, resmear

# the example's exact Gaussian sphere: its density, and the Gaussian "estimator" with exact scores
_EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "measurement_errors.py"),
                          run_name="example")
GaussianDF, fit_gaussian = _EXAMPLE["GaussianDF"], _EXAMPLE["fit_gaussian"]
S, SIGMA = _EXAMPLE["S_KPC"], _EXAMPLE["SIGMA_KMS"]  # kpc, km/s
OMEGA2 = (SIGMA / S) ** 2  # (km/s)²/kpc²


def sphere(n=40_000, seed=1):
    rng = np.random.default_rng(seed)
    return bd.Catalog(rng.normal(0, S, (n, 3)), rng.normal(0, SIGMA, (n, 3)))


def test_simex_removes_the_velocity_error_bias_of_an_exact_gaussian_sphere(x64):
    eps = SIGMA / np.sqrt(2)  # ε²/σ² = 0.5: the observed accelerations are 1.5× too strong
    observed = resmear(sphere(), 7, velocity_error=eps)
    nodes = np.array([[1.0, 0.0, 0.0], [0.0, -1.5, 0.5], [2.0, 1.0, -1.0], [-0.5, 0.5, 3.0]])
    a_true = -OMEGA2 * nodes
    res = correct_measurement_errors(observed, fit_gaussian, nodes, n_copies=3, seed=0, velocity_error=eps,
                                     n_velocities=64, floor=0.002)
    ratio_obs = np.sum(np.asarray(res.observed.a) * a_true, 1) / np.sum(a_true**2, 1)
    ratio_cor = np.sum(np.asarray(res.corrected.a) * a_true, 1) / np.sum(a_true**2, 1)
    assert np.allclose(ratio_obs, 1.5, atol=0.03)  # the bias the correction has to remove
    assert np.allclose(ratio_cor, 1.0, atol=0.04)  # removed, to the sampling noise of 4×10⁴ stars
    # the corrected errors are honest: pulls against the exact field (12 components) are O(1)
    sd = np.sqrt(np.diagonal(np.asarray(res.corrected.cov), axis1=1, axis2=2))
    pulls = (np.asarray(res.corrected.a) - a_true) / sd
    assert np.max(np.abs(pulls)) < 4.0
    # without resample groups the copies go round robin (members 0-3 ← copies 0, 1, 2, 0): each member carries its
    # own copy's Monte Carlo noise as a whole field, so the members' spread holds it
    raw_obs = [np.asarray(s.members) for s in res.smeared]
    assert not np.allclose(raw_obs[0], raw_obs[1])
    np.testing.assert_allclose(res.bias, np.asarray(res.observed.a) - np.asarray(res.corrected.a))
    assert res.corrected.n_members == 4 and res.corrected.member_cov is not None
    assert "3 re-smeared copies" in res.summary()


def test_correction_algebra_members_covariances_and_monte_carlo_error(x64):
    rng = np.random.default_rng(0)
    k, p = 4, 5
    x = rng.normal(size=(p, 3))

    def data(members, c, groups=(0, 0, 1, 1), with_cov=True):
        members = np.asarray(members)
        cov = np.broadcast_to(np.eye(3) * c, (k, p, 3, 3)) if with_cov else None
        return bd.AccelerationData.create(x, members.mean(0), np.broadcast_to(np.eye(3) * c, (p, 3, 3)),
                                          members=members, member_cov=cov, member_groups=groups)

    obs = rng.normal(size=(k, p, 3))
    sm1, sm2 = rng.normal(size=(2, k, p, 3))
    out = measurement_error_correction(data(obs, 0.1), [data(sm1, 0.2), data(sm2, 0.3)])
    # pieces estimated with a floor: it is taken out of each and added once to the result
    fl = lambda a: (0.05 * np.linalg.norm(a, axis=-1)) ** 2  # noqa: E731

    def floored(members, c):
        members = np.asarray(members)
        mc = c * np.eye(3) + fl(members)[..., None, None] * np.eye(3)
        return bd.AccelerationData.create(x, members.mean(0), np.broadcast_to(np.eye(3) * c, (p, 3, 3)),
                                          members=members, member_cov=mc, member_groups=(0, 0, 1, 1))

    with_floor = measurement_error_correction(floored(obs, 0.1), [floored(sm1, 0.2), floored(sm2, 0.3)], floor=0.05)
    # seed pairs (0, 1) and (2, 3): each resample is corrected with its own copy, so the copies' Monte Carlo
    # noise is in the spread between resamples, coherently over the nodes
    expect = 2 * obs - np.stack([sm1[0], sm1[1], sm2[2], sm2[3]])
    np.testing.assert_allclose(np.asarray(out.members), expect, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.a), expect.mean(0), rtol=1e-12)
    ls = np.array([4 * 0.1 + 0.2, 4 * 0.1 + 0.2, 4 * 0.1 + 0.3, 4 * 0.1 + 0.3])[:, None, None, None] * np.eye(3)
    np.testing.assert_allclose(np.asarray(out.member_cov), np.broadcast_to(ls, (k, p, 3, 3)), rtol=1e-12)
    dm = expect - expect.mean(0)
    between = np.einsum("kpi,kpj->pij", dm, dm) / (k - 1)
    np.testing.assert_allclose(np.asarray(out.cov), between + ls.mean(0) / k, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(with_floor.member_cov), ls + fl(expect)[..., None, None] * np.eye(3),
                               rtol=1e-10)  # the floor once, not scaled by the correction's 4×
    np.testing.assert_allclose(np.asarray(with_floor.cov) - np.asarray(out.cov),
                               fl(expect.mean(0))[:, None, None] * np.eye(3), rtol=1e-8, atol=1e-12)
    assert out.member_groups.tolist() == [0, 0, 1, 1]
    # one field (no members): the copies' mean, and their spread / n as the Monte Carlo error
    one = lambda a, c: bd.AccelerationData.create(x, a, np.broadcast_to(np.eye(3) * c, (p, 3, 3)))  # noqa: E731
    single = measurement_error_correction(one(obs[0], 0.1), [one(sm1[0], 0.2), one(sm2[0], 0.3)])
    np.testing.assert_allclose(np.asarray(single.a), 2 * obs[0] - 0.5 * (sm1[0] + sm2[0]), rtol=1e-12)
    d = sm1[0] - sm2[0]
    np.testing.assert_allclose(np.asarray(single.cov), (0.4 + 0.5 / 4) * np.eye(3) + np.einsum("pi,pj->pij", d, d) / 4,
                               rtol=1e-12)
    with pytest.warns(UserWarning, match="one re-smeared copy"):
        measurement_error_correction(data(obs, 0.1), [data(sm1, 0.2)])
    with pytest.raises(ValueError, match="other nodes"):
        measurement_error_correction(data(obs, 0.1), [data(sm1, 0.2)._replace(x=x + 1)])
    with pytest.raises(ValueError, match="resample groups"):
        measurement_error_correction(data(obs, 0.1), [data(sm1, 0.2, groups=None), data(sm2, 0.2, groups=None)])
    with pytest.raises(ValueError, match="member_cov"):
        measurement_error_correction(data(obs, 0.1, with_cov=False), [data(sm1, 0.2, with_cov=False)] * 2)
    with pytest.raises(ValueError, match="at least one"):
        measurement_error_correction(data(obs, 0.1), [])
    # two resample groups: a third copy would correct no member, and is not dropped silently
    with pytest.warns(UserWarning, match="3 re-smeared copies but 2 resample groups: copies \\[2\\] are not used"):
        three = measurement_error_correction(data(obs, 0.1), [data(sm1, 0.2), data(sm2, 0.3), data(obs, 0.4)])
    np.testing.assert_allclose(np.asarray(three.members), expect, rtol=1e-12)


def test_more_copies_than_resample_groups_are_refused_before_they_are_fitted(x64):
    fits = []

    def counting_fit(catalog):
        fits.append(catalog.n)
        return fit_gaussian(catalog)

    observed = resmear(sphere(4000), 7, velocity_error=10.0)
    nodes = np.array([[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"n_copies=5 but the flows have 4 resample groups.*n_copies <= 4"):
        correct_measurement_errors(observed, counting_fit, nodes, n_copies=5, velocity_error=10.0, n_velocities=8)
    assert len(fits) == 1  # the observed catalog's only
    # a copy that loses stars to the recorded sphere has other bootstrap resamples (drawn by row): said, not silent
    ball = observed.within(3.0, center=[0.0, 0.0, 0.0])
    with pytest.warns(UserWarning, match=rf"copy 0 lost \d+ of {ball.n} stars to the recorded selection sphere.*"
                                         r"paired with the data's by seed only"):
        correct_measurement_errors(ball, counting_fit, nodes, n_copies=1, position_error=0.5, n_velocities=8)


def test_resmear_draws_the_given_errors_recuts_the_selection_and_refuses_lost_stars(x64):
    cat = sphere(20_000)
    sv = np.full((cat.n, 3), [1.0, 5.0, 10.0])
    out = resmear(cat, 3, velocity_error=sv * u.km / u.s, position_error=0.01)
    dv, dx = np.asarray(out.v) - np.asarray(cat.v), np.asarray(out.x) - np.asarray(cat.x)
    np.testing.assert_allclose(dv.std(axis=0), [1.0, 5.0, 10.0], rtol=0.03)
    np.testing.assert_allclose(dx.std(axis=0), 0.01, rtol=0.03)
    assert out.meta["resmeared"][-1]["seed"] == 3
    np.testing.assert_array_equal(np.asarray(resmear(cat, 3, velocity_error=2.0).v),
                                  np.asarray(resmear(cat, 3, velocity_error=2.0).v))  # seeded
    # a recorded spherical selection is applied again to the moved stars, and the cut is recorded
    ball = cat.within(3.0, center=[0.0, 0.0, 0.0])
    moved = resmear(ball, 0, position_error=0.3)
    assert moved.n < ball.n and "re-smeared copy" in moved.history[-1].reason
    assert moved.history[-1].removed == ball.n - moved.n
    with pytest.raises(ValueError, match="velocity_error must be"):
        resmear(cat, 0, velocity_error=np.ones(7))
    with pytest.raises(ValueError, match="≥ 0"):
        resmear(cat, 0, velocity_error=-1.0)
    with pytest.raises(bd.CatalogError):
        resmear(cat, 0)  # no Gaia error columns and no errors given


def test_resmear_of_gaia_rows_draws_the_catalog_errors(x64, shared_data):
    """Gaia rows: a copy is one error_draws draw of the observables, and it moves each star by its own errors: the
    pulls (copy − catalog)/σ over 8 copies of 100 stars have unit spread on every axis (σ from the linearised
    covariance, independent of the draws; 800 pulls per axis, so ±0.1 is 4 standard errors)."""
    gaia = bd.Catalog.from_gaia(shared_data / "gaia" / "gdr2_rv_100.fits")
    good = gaia.parallax_over_error(5)
    copy = resmear(good, 2)
    xs, vs = good.error_draws(1, 2)
    np.testing.assert_allclose(np.asarray(copy.v), vs[0])
    assert copy.columns == {} and copy.n == good.n
    sd = np.sqrt(np.diagonal(np.asarray(good.covariance()), axis1=1, axis2=2))  # (N, 6): kpc, then km/s
    copies = [resmear(good, seed) for seed in range(8)]
    pv = np.concatenate([(np.asarray(c.v) - np.asarray(good.v)) / sd[:, 3:] for c in copies])
    px = np.concatenate([(np.asarray(c.x) - np.asarray(good.x)) / sd[:, :3] for c in copies])
    np.testing.assert_allclose(pv.std(axis=0), 1.0, atol=0.1)
    np.testing.assert_allclose(px.std(axis=0), 1.0, atol=0.1)
    # 20 stars whose parallax is 1e-9 mas ± 1 mas: some draw a parallax ≤ 0 (all positive: p = 2⁻²⁰); refused
    cols = {k: np.array(c, copy=True) for k, c in good.columns.items()}
    cols["parallax"][:20], cols["parallax_error"][:20] = 1e-9, 1.0
    faint = bd.Catalog(good.x, good.v, solar=good.solar, columns=cols)
    with pytest.raises(ValueError, match="parallax ≤ 0.*parallax_over_error"):
        resmear(faint, 2)


def test_pipeline_errors_table_fits_copies_and_corrects_the_accelerations(tmp_path, monkeypatch, x64):
    """[errors] correct = true: the accelerations stage fits one density per re-smeared copy (the stars moved by
    the given errors) and hands bd.infer the SIMEX-corrected accelerations; the exact Gaussian sphere (centred on
    the Sun here) says how well: observed 1.5× too strong, corrected within 5 %."""
    from bayesdyn.pipeline import ConfigError, Run, validate_config

    class Centred(GaussianDF):
        def __init__(self, c, *a):
            super().__init__(*a)
            self.c = np.asarray(c)

        def score_members(self, x, v):
            return super().score_members(np.asarray(x) - self.c, v)

        def summary(self):
            return "Gaussian fit"

    sun = np.asarray(bd.Catalog(np.zeros((1, 3)), np.zeros((1, 3))).solar.position)
    rng = np.random.default_rng(4)
    truth = bd.Catalog(sun + rng.normal(0, S, (40_000, 3)), rng.normal(0, SIGMA, (40_000, 3)))
    eps = SIGMA / np.sqrt(2)
    observed = resmear(truth, 5, velocity_error=eps)
    fitted = []

    def density(self, cat, name, data_key, timing):
        fitted.append((name, np.asarray(cat.v).copy()))
        g = fit_gaussian(bd.Catalog(np.asarray(cat.x) - sun, cat.v))
        return Centred(sun, g.s2, g.sig2)

    monkeypatch.setattr(Run, "_density", density)
    cfg = {"errors": {"correct": True, "copies": 2, "velocity_error_kms": float(eps)},
           "nodes": {"n": 8, "radius_kpc": 1.5, "n_velocities": 64, "floor": 0.002}}
    run = Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None)
    data = run.accelerations(density(run, observed, "psd", "", ""), observed)
    assert [n for n, _ in fitted] == ["psd", "psd-copy0", "psd-copy1"]
    for _, v in fitted[1:]:  # the copies' stars carry one more draw of the errors
        np.testing.assert_allclose(np.std(v - np.asarray(observed.v), axis=0), eps, rtol=0.03)
    d = np.asarray(data.x) - sun
    a_true = -OMEGA2 * d
    ratio = np.sum(np.asarray(data.a) * a_true, 1) / np.sum(a_true**2, 1)
    assert np.allclose(ratio, 1.0, atol=0.05)
    assert "2 re-smeared copies" in (tmp_path / "measurement_errors.txt").read_text()
    # the same settings again: the accelerations are reused; other errors: the copies are fitted again
    again = Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None)
    np.testing.assert_array_equal(np.asarray(again.accelerations(None, observed).a), np.asarray(data.a))
    assert len(fitted) == 3
    cfg2 = {**cfg, "errors": {**cfg["errors"], "velocity_error_kms": 5.0}}
    Run(validate_config(cfg2), folder=tmp_path, log=lambda *_: None).accelerations(fitted and None or
                                                                                     density(run, observed, "psd", "", ""),
                                                                                     observed)
    assert [n for n, _ in fitted[3:]] == ["psd", "psd-copy0", "psd-copy1"]
    np.testing.assert_allclose(np.std(fitted[-1][1] - np.asarray(observed.v), axis=0), 5.0, rtol=0.03)
    # the same stage without the correction: observed accelerations, 1.5× too strong, under another cache key
    plain = Run(validate_config({"nodes": cfg["nodes"]}), folder=tmp_path / "plain", log=lambda *_: None)
    raw = plain.accelerations(density(plain, observed, "psd", "", ""), observed)
    a_true = -OMEGA2 * (np.asarray(raw.x) - sun)
    ratio_raw = np.sum(np.asarray(raw.a) * a_true, 1) / np.sum(a_true**2, 1)
    assert np.allclose(ratio_raw, 1.5, atol=0.04)
    for bad in ({"copies": 0}, {"velocity_error_kms": -1.0}):
        with pytest.raises(ConfigError, match="errors"):
            validate_config({"errors": bad})
    # more copies than bootstrap resamples is refused by the config, before any training (it failed in the
    # accelerations stage, after the flows): 4 resamples at the default ensemble = 4, 2 with seed pairs
    with pytest.raises(ConfigError, match=r"'errors.copies' = 3 but the flows have 2 bootstrap resamples"):
        validate_config({"errors": {"correct": True, "copies": 3}, "psd": {"seeds_per_resample": 2}})
    with pytest.raises(ConfigError, match=r"'errors.copies' = 5 but the flows have 4 bootstrap resamples"):
        validate_config({"errors": {"correct": True, "copies": 5}})
    validate_config({"errors": {"correct": True, "copies": 3}})
    with pytest.warns(UserWarning, match="errors.copies .the weak form corrects"):  # allowed, and said to be unused
        validate_config({"errors": {"correct": True, "copies": 3}, "inference": {"likelihood": "weak_form"}})

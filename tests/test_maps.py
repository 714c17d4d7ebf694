"""Maps: grid/slice/line-of-sight geometry, evaluation shapes and bands, the divergence-theorem density
(exact on a Plummer sphere), the ∂f/∂t diagnostic with exact scores, and the plots.

Units: kpc, (km/s)²/kpc, M☉/kpc³; ∂log f/∂t in km/s/kpc.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import bayesdyn as bd
from bayesdyn import maps, neural
from bayesdyn.dynamics import ExactScores

M, B = 1e10, 1.0  # Plummer mass [M☉] and scale radius [kpc]


def _plummer_ball_mass(center: np.ndarray, h: float, n: int = 64) -> float:
    """∫ρ dV over the ball |x − center| < h, independently: Gauss–Legendre in (r, cos ψ) about the centre
    direction (the integrand is axisymmetric about the line from the Plummer centre)."""
    d = np.linalg.norm(center)
    r, wr = np.polynomial.legendre.leggauss(n)
    mu, wm = np.polynomial.legendre.leggauss(n)
    r = 0.5 * h * (r + 1)
    wr = 0.5 * h * wr
    rr, mm = np.meshgrid(r, mu, indexing="ij")
    s2 = d**2 + rr**2 + 2 * d * rr * mm
    rho = 3 * M / (4 * np.pi * B**3) * (1 + s2 / B**2) ** -2.5
    return float(2 * np.pi * np.sum(wr[:, None] * wm[None, :] * rr**2 * rho))


def test_divergence_theorem_density_is_exact_on_a_plummer_sphere(x64):
    _, truth = bd.mocks.plummer(10, seed=0, mass=M, scale_radius=B)
    for h in (0.3, 1.0, 3.0):
        # centred: ⟨ρ⟩_ball = M(<h)/(4/3 π h³) with M(<h) = M h³/(h² + b²)^{3/2}, to rounding
        exact = M * h**3 / (h**2 + B**2) ** 1.5 / (4 / 3 * np.pi * h**3)
        got = maps.smoothed_density(truth, np.zeros(3), h)
        assert_allclose(got.mean, exact, rtol=1e-12)
    # off-centre: against an independent quadrature of ρ over the ball (rtol 1e-8)
    centers = np.array([[0.7, 0.2, -0.3], [1.5, -1.0, 0.4]])
    got = maps.smoothed_density(truth, centers, 0.5, order=16).mean
    want = [_plummer_ball_mass(c, 0.5) / (4 / 3 * np.pi * 0.5**3) for c in centers]
    assert_allclose(got, want, rtol=1e-8)
    # the same through evaluate(), on a grid, and for a list of models (members)
    g = maps.grid((-1.0, 1.0, 3), 0.0, 0.0)
    fm = maps.evaluate([truth, truth], "smoothed_density", g, radius=0.5)
    assert fm.mean.shape == (3, 1, 1) and fm.members.shape == (2, 3, 1, 1)


def test_grid_slice_and_evaluation_shapes(x64):
    mw = bd.potentials.MWPotential2014()
    g = maps.grid((-9.0, -7.0, 5), (-1.0, 1.0, 4), (-0.5, 0.5, 3))
    assert g.points.shape == (5, 4, 3, 3) and list(g.axes) == ["x", "y", "z"]
    assert_allclose(g.points[2, 0, 1], [-8.0, -1.0, 0.0])
    acc = maps.evaluate(mw, "acceleration", g)
    assert acc.mean.shape == (5, 4, 3, 3) and acc.members is None and acc.unit == "(km/s)²/kpc"
    a_r = maps.evaluate(mw, "a_R", g)
    assert np.all(a_r.mean < 0)  # inward
    # a_R = (x a_x + y a_y)/R
    p = g.flat()
    a = acc.mean.reshape(-1, 3)
    assert_allclose(a_r.mean.reshape(-1), (p[:, 0] * a[:, 0] + p[:, 1] * a[:, 1]) / np.hypot(p[:, 0], p[:, 1]))
    sl = maps.slice("xz", center=[-8.0, 0.5, 0.0], extent=(1.0, 0.5), n=(7, 5))
    assert sl.points.shape == (7, 5, 3) and list(sl.axes) == ["x", "z"]
    assert_allclose(sl.points[..., 1], 0.5)
    assert_allclose(sl.points[0, 0], [-9.0, 0.5, -0.5])
    rho = maps.evaluate(mw, "density", sl)
    assert_allclose(rho.mean, np.asarray(mw.density(sl.points)))
    with pytest.raises(ValueError, match="quantity="):
        maps.evaluate(mw, "mass", sl)
    with pytest.raises(ValueError, match="plane="):
        maps.slice("xw")


def test_neural_ensemble_members_and_bands(x64):
    pot = neural.NeuralPotential.initialise(0, center=[-8.0, 0, 0], scale=1.0, amplitude=6000.0, members=4,
                                            architecture=neural.Architecture(8, 1, "tanh"))
    los = maps.line_of_sight(30.0, 10.0, np.linspace(0.0, 1.0, 5))
    fm = maps.evaluate(pot, "a_z", los)
    assert fm.members.shape == (4, 5) and fm.mean.shape == (5,)
    assert_allclose(fm.mean, fm.members.mean(0))
    lo, hi = fm.band(0.95)
    # prediction interval, Student t with K − 1 = 3 degrees of freedom: half-width 3.182 × √(1 + 1/4) = 3.558 sd
    # (3.182 sd alone covered a fifth draw 93.5 % of the time at 95 %)
    assert_allclose(hi - fm.mean, 3.5581 * np.std(fm.members, axis=0, ddof=1), rtol=1e-4)
    assert_allclose(hi - fm.mean, stats.t.ppf(0.975, 3) * np.sqrt(1.25) * np.std(fm.members, axis=0, ddof=1))
    assert np.all(lo <= fm.mean) and np.all(fm.covers(fm.mean))
    # a single member has no spread: its band is the mean, and it says so
    one = fm._replace(members=fm.members[:1])
    with pytest.warns(UserWarning, match="zero width, not zero uncertainty"):
        assert np.array_equal(one.band(0.95)[0], one.mean)
    with pytest.warns(UserWarning, match="a quantile band of 4 members covers less than its level"):
        lo_q, hi_q = fm.band(0.5, method="quantile")
    assert np.all((lo_q >= fm.members.min(0)) & (hi_q <= fm.members.max(0)))
    sd = maps.smoothed_density(pot, los.points[:2], 0.2)
    assert sd.members.shape == (4, 2)
    # the ball average of a smooth field tends to the point density as h → 0
    assert_allclose(maps.smoothed_density(pot, los.points[:2], 1e-3).mean, pot.density(los.points[:2]), rtol=1e-4)


def test_line_of_sight_geometry():
    solar = bd.SolarParameters()
    d = np.array([0.0, 0.5, 1.0, 2.0])
    to_gc = maps.line_of_sight(0.0, 0.0, d, solar)
    assert_allclose(to_gc.points[0], solar.position, atol=1e-9)  # d = 0 is the Sun
    assert np.all(np.diff(to_gc.points[:, 0]) > 0)  # l = 0, b = 0: towards the Galactic centre, x increases
    assert_allclose(np.linalg.norm(np.diff(to_gc.points, axis=0), axis=1), np.diff(d), rtol=1e-9)
    assert_allclose(to_gc.points[:, 1], 0.0, atol=1e-5)
    # the plane b = 0 is tilted by asin(z☉/R0): z drifts down by z☉/R0 per kpc
    assert_allclose(np.diff(to_gc.points[:, 2]) / np.diff(d), -solar.z_sun / solar.galcen_distance, rtol=1e-3)
    l90 = maps.line_of_sight(90.0, 0.0, d, solar).points
    assert np.all(np.diff(l90[:, 1]) > 0)  # l = 90°: along +y (the direction of rotation)
    assert_allclose(l90[:, 0], l90[0, 0], atol=1e-5)
    up = maps.line_of_sight(0.0, 90.0, d, solar).points
    assert np.all(np.diff(up[:, 2]) > 0)
    import astropy.units as u

    same = maps.line_of_sight(0.0 * u.deg, 0.0 * u.rad, d * 1000 * u.pc, solar)
    assert_allclose(same.points, to_gc.points)


def test_disequilibrium_vanishes_for_the_true_acceleration(x64):
    cat, truth = bd.mocks.plummer(3000, seed=2)
    source = ExactScores(truth, cat)
    pts = np.array([[0.5, 0.0, 0.0], [0.0, -1.0, 0.3], [0.2, 0.2, 0.2]])
    good = maps.disequilibrium_map(source, truth, pts, n_velocities=64)
    assert good.rms.shape == (3,) and good.members_rms.shape == (1, 3)
    assert np.all(good.relative < 1e-8)
    wrong = maps.disequilibrium_map(source, np.asarray(truth.acceleration(pts)) * 1.3, pts, n_velocities=64)
    assert np.all(wrong.relative > 0.1)
    assert_allclose(wrong.rms_per_gyr(), wrong.rms * maps.GYR_PER_KPC_S_KM)
    # at the centre s_x = 0 for every velocity: no streaming term to compare with, NaN (a wrong a read 0 there)
    centre = maps.disequilibrium_map(source, np.array([[100.0, 0.0, 0.0]]), np.zeros((1, 3)), n_velocities=64)
    assert np.isnan(centre.relative[0]) and centre.rms[0] > 0

    import astropy.units as u

    # a density of a dusty catalog, f_obs = ε f: its s_x carries ∇log ε, which the map showed as disequilibrium
    # (no way to remove it); given the efficiency (an object or ∇log ε at the points), equilibrium reads 0 again
    dust = bd.mocks.DustModel(np.array([[0.4, 0.0, 0.1]]), np.array([0.4]), np.array([0.9]))

    class Dusty:
        def sample_velocities(self, x, n, seed):
            return source.sample_velocities(x, n, seed)

        def score_members(self, x, v):
            s_x, s_v = source.score_members(x, v)
            return np.asarray(s_x) + np.asarray(dust.grad_log_efficiency(np.asarray(x)))[None], s_v

    seen = maps.disequilibrium_map(Dusty(), truth, pts, n_velocities=64)
    assert seen.relative[0] > 0.1  # the point 0.12 kpc from the cloud's centre
    for eff in (dust, np.asarray(dust.grad_log_efficiency(pts)) / u.kpc):
        fixed = maps.disequilibrium_map(Dusty(), truth, pts, n_velocities=64, efficiency=eff)
        assert np.all(fixed.relative < 1e-6), fixed.relative
    with pytest.raises(ValueError, match=r"must be \(P, 3\) = \(3, 3\)"):
        maps.disequilibrium_map(Dusty(), truth, pts, n_velocities=64, efficiency=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"must be \(P, 3\) = \(4, 3\) .*got shape \(3, 4\)"):  # not scrambled
        maps.disequilibrium_map(source, truth, np.zeros((4, 3)) + 0.3, n_velocities=8, efficiency=np.zeros((3, 4)))

    # a source answering in Quantities: its scores are converted (s_x in 1/pc had read relative = 999)
    class InUnits:
        def sample_velocities(self, x, n, seed):
            return np.asarray(source.sample_velocities(x, n, seed)) * u.km / u.s

        def score_members(self, x, v):
            s_x, s_v = source.score_members(x, v)
            return np.asarray(s_x) * 1e-3 / u.pc, np.asarray(s_v) * 1e-3 * u.s / u.m

    quant = maps.disequilibrium_map(InUnits(), np.asarray(truth.acceleration(pts)) * 1.3, pts, n_velocities=64)
    assert_allclose(quant.rms, wrong.rms, rtol=1e-9)
    assert_allclose(quant.relative, wrong.relative, rtol=1e-9)
    # the acceleration too: an object answering in other units is converted, a (3, P) array refused (it was scrambled)
    class InKmsMyr:
        def acceleration(self, x):
            return (np.asarray(truth.acceleration(x)) * 1.3 * u.km**2 / u.s**2 / u.kpc).to(u.km / u.s / u.Myr)

    assert_allclose(maps.disequilibrium_map(source, InKmsMyr(), pts, n_velocities=64).rms, wrong.rms, rtol=1e-9)
    four = np.array([[0.5, 0.0, 0.0], [0.0, -1.0, 0.3], [0.2, 0.2, 0.2], [0.3, -0.2, 0.1]])
    with pytest.raises(ValueError, match=r"acceleration array must be \(P, 3\) = \(4, 3\) .*got \(3, 4\)"):
        maps.disequilibrium_map(source, np.asarray(truth.acceleration(four)).T, four, n_velocities=8)


def test_plots_have_bands_and_references(tmp_path, x64):
    mw = bd.potentials.MWPotential2014()
    gala = bd.potentials.MilkyWayPotential()
    pot = neural.NeuralPotential.initialise(1, center=[-8.0, 0, 0], scale=1.0, amplitude=6000.0, members=3,
                                            architecture=neural.Architecture(8, 1, "tanh"))
    fig, axes = maps.new_axes(3)
    ax = maps.plot_line_of_sight(pot, 0.0, 0.0, np.linspace(0, 1, 6), "a_R", ax=axes[0],
                                 references={"MWPotential2014": mw, "MilkyWayPotential": gala})
    assert len(ax.collections) == 2  # the 68 and 95 % bands
    assert len(ax.lines) == 3  # estimate + 2 references
    sl = maps.slice("xz", center=[-8.0, 0.0, 0.0], extent=1.0, n=9)
    maps.plot_map(maps.evaluate(mw, "density", sl), ax=axes[1], log=True, contours=4)
    maps.plot_map(maps.evaluate(pot, "a_z", sl), ax=axes[2], statistic="sd")
    out = tmp_path / "maps.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="2-d slice"):
        maps.plot_map(maps.evaluate(mw, "density", maps.line_of_sight(0, 0, [0.0, 1.0])))
    # a 1-d cut of grid() is drawn along its one long axis (the first axis, x, has one value: it crashed)
    cut = maps.grid(-8.122, 0.0, (-1.0, 1.0, 5))
    ax = maps.plot_profile(maps.evaluate(mw, "a_z", cut), levels=())
    assert ax.get_xlabel() == "z [kpc]"
    assert_allclose(ax.lines[0].get_xdata(), np.linspace(-1.0, 1.0, 5))
    assert_allclose(ax.lines[0].get_ydata(), np.asarray(mw.acceleration(cut.flat()))[:, 2], rtol=1e-6)
    # |a| of an ensemble: the line is the members' mean |a|, the centre of the band of their spread (|mean a| lies
    # below them all for members that disagree, as these random networks do)
    fa = maps.evaluate(pot, "acceleration", cut)
    ax = maps.plot_profile(fa, levels=(0.68,))
    norms = np.linalg.norm(fa.members, axis=-1)
    assert_allclose(ax.lines[0].get_ydata(), norms.mean(0).reshape(-1), rtol=1e-6)
    assert np.all(np.linalg.norm(fa.mean, axis=-1) < norms.mean(0))
    with pytest.raises(ValueError, match="has 1 values but the map has 5 points"):
        maps.plot_profile(maps.evaluate(mw, "a_z", cut), axis="x", levels=())
    with pytest.raises(ValueError, match=r"axes \['x', 'z'\] with more than one value"):
        maps.plot_profile(maps.evaluate(mw, "a_z", maps.grid((-9.0, -7.0, 3), 0.0, (-1.0, 1.0, 5))), levels=())
    # angles as Quantities, as line_of_sight takes them (the title's float() raised after the work was done)
    import astropy.units as u

    ax = maps.plot_line_of_sight(mw, 30 * u.deg, 0.5 * u.rad, np.linspace(0, 1, 3), "a_z", levels=())
    assert ax.get_title() == f"l = 30°, b = {np.degrees(0.5):g}°"


def test_potential_along_a_line_of_sight_is_relative_to_the_neural_zero_point(x64):
    """A neural Φ is 0 at its input centre, a parametric one at infinity. With a neural part in a composite or in a
    list, the estimate and the references are drawn relative to the neural zero point (they were shifted only for a
    bare NeuralPotential: a composite with a Miyamoto–Nagai disk drew MWPotential2014 ~1.3e5 (km/s)² below it)."""
    import matplotlib

    matplotlib.use("Agg")
    arch = neural.Architecture(8, 1, "tanh")
    net = neural.NeuralPotential.initialise(2, center=[-8.0, 0, 0], scale=1.0, amplitude=6000.0, members=1,
                                            architecture=arch)
    disk = bd.potentials.MiyamotoNagai(6.8e10, 3.0, 0.28)
    mw = bd.potentials.MWPotential2014()
    d = np.linspace(0.0, 1.0, 4)
    los = maps.line_of_sight(0.0, 0.0, d)
    x0 = np.array([[-8.0, 0.0, 0.0]])
    for source, phi in [
        (net + disk, lambda p: net.potential(p) + disk.potential(p)),
        ([net, net + disk], lambda p: (2 * net.potential(p) + disk.potential(p)) / 2),
    ]:
        ax = maps.plot_line_of_sight(source, 0.0, 0.0, d, "potential", references={"MW": mw}, levels=())
        lines = {ln.get_label(): ln.get_ydata() for ln in ax.lines}
        assert_allclose(lines["estimate"], np.asarray(phi(los.points)) - float(phi(x0)[0]), rtol=1e-9, atol=1e-6)
        assert_allclose(lines["MW"], np.asarray(mw.potential(los.points)) - float(mw.potential(x0)[0]), rtol=1e-9)
        assert lines["MW"][0] == pytest.approx(float(mw.potential(los.points[:1])[0] - mw.potential(x0)[0]))
        assert "Φ − Φ(x₀)" in ax.get_ylabel()
    # a list of ensembles pools their members (it kept only each one's mean)
    ens = neural.NeuralPotential.initialise(3, center=[-8.0, 0, 0], scale=1.0, amplitude=6000.0, members=3,
                                            architecture=arch)
    fm = maps.evaluate([ens, net], "a_z", los)
    assert fm.members.shape == (4, 4)
    assert_allclose(fm.members[:3], np.asarray(ens.acceleration_members(los.points))[..., 2])
    # plot_map refuses the sd of a single estimate (it drew zeros), and labels the sd with its unit
    sl = maps.slice("xz", center=[-8.0, 0.0, 0.0], extent=1.0, n=5)
    with pytest.raises(ValueError, match="needs an ensemble"):
        maps.plot_map(maps.evaluate(net, "a_z", sl), statistic="sd")
    ax = maps.plot_map(maps.evaluate(ens, "a_z", sl), statistic="sd")
    assert ax.figure.axes[-1].get_ylabel() == "sd of a_z [(km/s)²/kpc]"
    with pytest.warns(UserWarning, match="no band is drawn"):
        maps.plot_profile(maps.evaluate(net, "a_z", los))
    # a tracer-density fit's ε needs the observed density: the error says how (it was a missing-argument TypeError)
    tracer = neural.NeuralTracerDensity(arch.init(2), arch, [-8.0, 0.0, 0.0], 1.0)
    with pytest.raises(TypeError, match="observed density"):
        maps.evaluate(tracer, "efficiency", los)


def test_a_sums_neural_members_add_and_bad_positions_are_refused(x64):
    """A neural ensemble inside a sum (nn + disk, as `+` builds it) lost its members: the map had no band and said "one
    estimate". Its members now add to the fixed parts member by member. A NaN position gave the density at the centre
    (r = NaN read as 0), `radius=` was ignored outside smoothed_density, a non-integer n and a NaN l or centre made
    silent points, a wrong-shaped truth broadcast: each is now an error naming the fix. Quantile bands of few members
    cover less than their label (0.58 at 95 % for K = 4, simulated here): they warn."""
    pot = neural.NeuralPotential.initialise(0, center=[-8.0, 0, 0], scale=1.0, amplitude=6000.0, members=3,
                                            architecture=neural.Architecture(8, 1, "tanh"))
    disk = bd.potentials.MiyamotoNagai(6.8e10, 3.0, 0.28)
    x = np.array([[-8.0, 0.0, 0.1], [-8.0, 0.5, 0.5]])
    for q in ("potential", "a_z", "density", "acceleration"):
        both, alone, fixed = (maps.evaluate(s, q, x) for s in (pot + disk, pot, disk))
        assert both.members.shape == (3,) + fixed.mean.shape
        assert_allclose(both.members, alone.members + fixed.mean[None], rtol=1e-10)
    with pytest.raises(ValueError, match=r"ensembles have \[3, 4\] members"):
        other = neural.NeuralPotential.initialise(1, center=[-8.0, 0, 0], scale=1.0, amplitude=6000.0, members=4,
                                                  architecture=neural.Architecture(8, 1, "tanh"))
        maps.evaluate(pot + other, "a_z", x)
    plummer = bd.potentials.Plummer(mass=M, scale_radius=B)
    bad = {
        "1 of 2 points are not finite": lambda: maps.evaluate(plummer, "density", np.array([[np.nan, 0, 0], [1, 2, 3]])),
        "2 of 2 points are not finite": lambda: maps.smoothed_density(plummer, np.full((2, 3), np.inf), 0.1),
        "not finite": lambda: maps.disequilibrium_map(None, plummer, np.array([[0.0, np.nan, 0.0]])),
        "radius= is the ball radius": lambda: maps.evaluate(plummer, "density", np.zeros(3), radius=1.0),
        "l=nan deg must be a finite angle": lambda: maps.line_of_sight(np.nan, 0.0, [1.0]),
        "center must be 3 finite numbers": lambda: maps.slice("xy", center=(np.nan, 0, 0)),
        "n whole numbers": lambda: maps.slice("xy", n=2.7),
        "ambiguous": lambda: maps.grid((0.0, 1.0, 3.0), 0.0, 0.0),
        r"truth has shape \(2, 1\), which does not broadcast": lambda: maps.evaluate(plummer, "density", x).covers(
            np.zeros((2, 1))),
        "n_velocities=0 must be a whole number": lambda: maps.disequilibrium_map(None, plummer, x, n_velocities=0),
    }
    for match, call in bad.items():
        with pytest.raises(ValueError, match=match):
            call()
    assert maps.grid((0.0, 1.0, 3), 0.0, 0.0).shape == (3, 1, 1) and maps.slice("xy", n=3.0).shape == (3, 3)
    acc = maps.evaluate(plummer, "acceleration", x)  # one (3,) truth for an (N, 3) map still broadcasts
    assert acc.covers(np.zeros(3)).shape == (2, 3)
    rng = np.random.default_rng(0)
    members, truth = rng.normal(size=(4, 20000)), rng.normal(size=20000)
    fm = maps.FieldMap("density", np.zeros((20000, 3)), members.mean(0), members, "")
    with pytest.warns(UserWarning, match="quantile band of 4 members covers less"):
        cover = np.mean(fm.covers(truth, 0.95, method="quantile"))
    assert 0.56 < cover < 0.60 and 0.93 < np.mean(fm.covers(truth, 0.95)) < 0.96

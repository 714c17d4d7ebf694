"""Model spec → NUTS → Posterior, with exact scores (no flow) on mocks with known truth."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpy.testing import assert_allclose

from bayesdyn import mocks
from bayesdyn import potentials as bp
from bayesdyn.dynamics import ExactScores, estimate_accelerations
from bayesdyn.inference import AccelerationData, PotentialModel, infer
from bayesdyn.results import ConvergenceWarning, Posterior, dark_disk_limits


@pytest.fixture(scope="module")
def plummer_data():
    with jax.enable_x64(True):
        cat, truth = mocks.plummer(n=20_000, seed=1, mass=1e10, scale_radius=1.0)
        data = estimate_accelerations(ExactScores(truth, cat), n_nodes=48, n_velocities=48, seed=0, floor=0.01)
    return data, truth


def test_exact_scores_give_exact_accelerations(plummer_data):
    data, truth = plummer_data
    with jax.enable_x64(True):
        a_true = np.asarray(truth.acceleration(np.asarray(data.x)))
    # exact scores satisfy the CBE for every velocity: the least squares is exact
    assert_allclose(np.asarray(data.a), a_true, rtol=1e-8, atol=1e-8 * np.abs(a_true).max())


def test_plummer_posterior_recovers_truth_within_1_percent(plummer_data, tmp_path):
    data, truth = plummer_data
    model = PotentialModel(halo=bp.Plummer(mass=dist.LogUniform(1e8, 1e12), scale_radius=dist.Uniform(0.1, 10.0)))
    assert sorted(model.free_parameters()) == ["halo.mass", "halo.scale_radius"]
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # few draws here; r̂ is asserted below
        post = infer(model, data, seed=3, num_chains=2, num_warmup=200, num_samples=300, progress=False)
    table = post.summary()
    for name, true in (("halo.mass", 1e10), ("halo.scale_radius", 1.0)):
        assert abs(table.loc[name, "median"] / true - 1) < 0.01, (name, table.loc[name, "median"])
        assert table.loc[name, "q2.5"] < true < table.loc[name, "q97.5"]
        assert table.loc[name, "r_hat"] < 1.02
    # derived: total density at the Sun equals the Plummer density there
    with jax.enable_x64(True):
        rho_sun = float(bp.Plummer(mass=1e10, scale_radius=1.0).density(np.asarray(data.sun)))
    assert abs(table.loc["derived.rho_total_sun", "median"] / rho_sun - 1) < 0.03
    # NetCDF round trip keeps every draw
    post.save(tmp_path / "post.nc")
    back = Posterior.load(tmp_path / "post.nc")
    assert_allclose(back.samples["halo.mass"], post.samples["halo.mass"])
    assert back.info["num_divergences"] == post.info["num_divergences"]


def test_real_line_priors_start_in_their_own_scale_and_default_priors_as_numpyro_does(plummer_data, monkeypatch):
    """A Normal prior's unconstrained coordinate is the parameter in M☉: NUTS's starts are now its centre ± 2 spreads
    (they were in (−2, 2) M☉), drawn outside any trace (the first version drew them inside NumPyro's traced start
    search and crashed with 2 chains), with a warning that such scales adapt slowly; a model with bounded priors
    gets no starts of ours (None: NumPyro's own, as before)."""
    from bayesdyn.inference import _infer

    data, _ = plummer_data
    bounded = PotentialModel(halo=bp.Plummer(mass=dist.LogUniform(1e8, 1e12), scale_radius=1.0))
    assert _infer._real_line_init(bounded, data, None, jax.random.PRNGKey(0), 2) is None
    normal = PotentialModel(halo=bp.Plummer(mass=dist.Normal(1.2e10, 3e9), scale_radius=1.0))
    with jax.enable_x64(True):
        with pytest.warns(UserWarning, match=r"halo.mass.*own units.*TruncatedNormal"):
            starts, sites = _infer._real_line_init(normal, _infer._to_float64(data), None, jax.random.PRNGKey(0), 2)
        m = np.asarray(starts["halo.mass"])
        assert m.shape == (2,) and m[0] != m[1] and np.all(np.abs(m - 1.2e10) < 2 * 3e9), m
        # NUTS's mass matrix starts at the spreads² (the identity left r̂ at 2.07 after 2 × 200 warm-up steps)
        def mass(model):
            return _infer._real_line_mass(_infer._real_line_init(model, _infer._to_float64(data), None,
                                                                 jax.random.PRNGKey(0), 1, warn=False))

        assert_allclose(mass(normal), [3e9**2])
        free_b = PotentialModel(halo=bp.Plummer(mass=dist.Normal(1.2e10, 3e9), scale_radius=dist.Uniform(0.5, 2.0)))
        assert_allclose(mass(free_b), [3e9**2, 1.0])  # sorted
        assert mass(bounded) is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = infer(normal, data, seed=0, num_chains=2, num_warmup=30, num_samples=30, progress=False)
            # one chain: the starts without their chain axis (they had come back as (1, 30, 1) draws)
            one = infer(normal, data, seed=0, num_chains=1, num_warmup=30, num_samples=30, progress=False)
    assert np.all(np.isfinite(post.samples["halo.mass"])) and np.median(post.samples["halo.mass"]) > 1e9
    assert one.samples["halo.mass"].shape == (1, 30) and "halo.mass" in one.summary().index
    # and a one-chain rerun from the mode (forced here) takes its start without the chain axis too
    monkeypatch.setattr(_infer, "_max_rhat", lambda *args, **kwargs: 2.0)  # (one chain has no r̂ of its own)
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rerun = infer(normal, data, seed=0, num_chains=1, num_warmup=30, num_samples=30, progress=False)
    assert rerun.info.get("restarted") and rerun.samples["halo.mass"].shape == (1, 30)


def test_one_chain_is_named_as_unchecked_convergence(tmp_path):
    """One chain has no r̂ (ArviZ gives NaN, which no threshold flagged): a chain that drifted from 0 to 5 halfway
    was reported for its ESS only, and one with enough ESS would have passed; members run with one chain each were
    not flagged at all."""
    rng = np.random.default_rng(1)
    drift = np.concatenate([rng.normal(0, 1, 500), rng.normal(5, 1, 500)])[None]
    one = Posterior({"h.m": drift}, {"diverging": np.zeros((1, 1000), bool)})
    assert np.isnan(one.diagnostics().loc["h.m", "r_hat"])
    assert any("r̂ cannot be computed from one chain" in p for p in one.check(warn=False))
    four = Posterior({"h.m": rng.normal(size=(4, 1000))}, {"diverging": np.zeros((4, 1000), bool)})
    assert four.check(warn=False) == []
    combine = {"n_members": 2, "member_max_r_hat": [float("nan"), 1.001], "member_min_ess": [900.0, 900.0]}
    members = Posterior({"h.m": rng.normal(size=(2, 1000))},
                        {"diverging": np.zeros((2, 1000), bool), "combine": combine})
    message = "r̂ of member(s) [0] cannot be computed from one chain"
    assert [p for p in members.check(warn=False) if message in p]
    # a NaN (or a None from a hand-made record) beside a member over the line: that member's r̂ is named, as a number
    odd = Posterior(members.samples, {**members.info, "combine": {**combine, "member_max_r_hat": [None, 1.5]}})
    assert [p for p in odd.check(warn=False) if "member(s) [1] (max 1.500): run longer" in p]
    odd = Posterior(members.samples, {**members.info, "combine": {**combine, "member_max_r_hat": [float("nan"), 1.5]}})
    assert [p for p in odd.check(warn=False) if "member(s) [1] (max 1.500): run longer" in p]
    assert [p for p in members.local_dm_density("h.m").attrs["problems"] if message in p]  # the table carries them
    members.save(tmp_path / "p.nc")
    with pytest.warns(ConvergenceWarning, match=re.escape(message)):  # a posterior read back says so too
        Posterior.load(tmp_path / "p.nc")


def test_posterior_tables_and_warnings():
    rng = np.random.default_rng(0)
    good = {"h.m": rng.normal(1.0, 0.1, size=(4, 1000)), "derived.rho_dm_sun": rng.normal(1e7, 1e6, size=(4, 1000))}
    post = Posterior(good, {"diverging": np.zeros((4, 1000), bool)})
    assert post.check(warn=False) == []
    t = post.local_dm_density()
    assert_allclose(t.loc["GeV/cm3", "median"], 1e7 * 1e-9 * 37.965, rtol=0.01)
    assert "GeV/cm^3" in post.local_dm_line()
    assert_allclose(post.upper_limit("h.m", 0.95), 1.0 + 1.645 * 0.1, atol=0.01)
    md, tex = post.to_markdown(), post.to_latex()
    assert "| `h.m` |" in md and r"\begin{tabular}" in tex
    # the table shows the tail ESS beside the bulk one (the warning checks both; the table had shown bulk alone)
    row = next(ln for ln in md.splitlines() if "`h.m`" in ln).split("|")
    assert "| r̂ | ESS bulk | ESS tail |" in md and float(row[8]) == round(post.diagnostics().loc["h.m", "ess_tail"])
    walk = np.random.default_rng(5).normal(0, 0.05, size=(4, 1000))  # (own generator: rng's draws feed exact checks)
    sticky = Posterior({"h.m": np.cumsum(walk, axis=1) % 1.0},  # a slow, wrapped walk: bulk and tail ESS differ
                       {"diverging": np.zeros((4, 1000), bool)})
    d = sticky.diagnostics().loc["h.m"]
    cells = next(ln for ln in sticky.to_markdown().splitlines() if "`h.m`" in ln).split("|")
    assert (float(cells[7]), float(cells[8])) == (round(d["ess_bulk"]), round(d["ess_tail"])), cells
    # LaTeX: errors to two significant digits, the median to their decimal place, a power of ten, units in math
    row = next(ln for ln in tex.splitlines() if "rho" in ln)
    assert r"$\mathrm{M_\odot/kpc^{3}}$" in row and re.search(r"\$\d\.\d\d\^\{\+\d\.\d\d?\}_\{-\d\.\d\d?\} \\times 10\^\{6\}\$", row), row
    # a constant row (a fixed halo's ρ_DM(⊙)) keeps its digits: no error to round to (7.54e6 printed as 8 × 10⁶)
    fixed = Posterior({"h.m": good["h.m"], "derived.rho_dm_sun": np.full((4, 1000), 7.54e6)},
                      {"diverging": np.zeros((4, 1000), bool)})
    assert r"7.540^{+0}_{-0} \times 10^{6}" in fixed.to_latex()
    # the power of ten from the largest of the median and its errors, each error to two significant digits, the
    # mantissa below 10 (a review's cases: 8^{+1234}_{-987} × 10^{-4}, 10.000 × 10^4, 500^{+3012345}_{-480}, −0)
    from bayesdyn.results._posterior import _latex_value

    assert _latex_value(0.0008, 0.1234, 0.0987) == "0.001^{+0.12}_{-0.099}"
    assert _latex_value(99996.0, 300.0, 300.0) == r"1.0000^{+0.0030}_{-0.0030} \times 10^{5}"
    assert _latex_value(500.0, 3012345.0, 480.0) == r"0.00050^{+3.0}_{-0.00048} \times 10^{6}"
    assert _latex_value(-0.0004, 3.02, 2.51) == "0.0^{+3.0}_{-2.5}"
    assert _latex_value(9999.7, 0.0, 0.0) == r"1.000^{+0}_{-0} \times 10^{4}"
    # errors ≥ 100: the median to the smaller error's place (it was printed to the unit: 1234^{+150}_{-130})
    assert _latex_value(1234.0, 150.0, 130.0) == "1230^{+150}_{-130}"
    assert _latex_value(1793.0, 612.0, 398.0) == "1790^{+610}_{-400}"
    assert _latex_value(1234.0, 15.0, 13.0) == "1234^{+15}_{-13}"
    assert _latex_value(float("inf"), 1.0, 1.0) == r"\infty"
    # a narrow interval keeps its ends apart in the Markdown table (229.31 ± 0.02 read [229.3, 229.3])
    narrow = Posterior({"derived.v_circ_R0": rng.normal(229.31, 0.02, size=(4, 1000))},
                       {"diverging": np.zeros((4, 1000), bool)})
    cells = next(ln for ln in narrow.to_markdown().splitlines() if "v_circ" in ln).split("|")
    lo, hi = (float(t) for t in cells[4].strip(" []").split(","))
    assert 229.28 < lo < 229.30 < 229.32 < hi < 229.34, cells
    # the digits are kept where they end in zeros (%g wrote [14, 18.07] for [14.00, 18.07]), without a bare point
    from bayesdyn.results._posterior import _fmt

    assert [_fmt(14.0), _fmt(18.07), _fmt(1234.0), _fmt(100.0), _fmt(1.5e7), _fmt(np.nan)] == [
        "14.00", "18.07", "1234", "100.0", "1.500e+07", "nan"]
    whole = Posterior({"derived.v_circ_R0": np.full((4, 1000), 14.0) + rng.normal(0, 0.5, (4, 1000))},
                      {"diverging": np.zeros((4, 1000), bool)})
    cells = next(ln for ln in whole.to_markdown().splitlines() if "v_circ" in ln).split("|")
    numbers = [t.strip(" []") for cell in cells[3:6] for t in cell.split(",")]  # median, 68 % and 95 % ends
    assert len(numbers) == 5 and all(len(t.replace(".", "")) == 4 for t in numbers), cells
    # a derived quantity NaN at some draws: its row is NaN and a warning says why
    holes = {**good, "derived.Kz_1p1kpc": rng.normal(2e3, 50.0, size=(4, 1000))}
    holes["derived.Kz_1p1kpc"][1, :3] = np.nan
    warned = Posterior(holes, {"diverging": np.zeros((4, 1000), bool)})
    assert any("derived.Kz_1p1kpc (3 of 4000)" in p for p in warned.check(warn=False))
    # ρ_DM(⊙) in GeV/cm³ to two significant digits of its error, not a fixed 0.001 (0.011 +0.000 −0.000)
    small = Posterior({"derived.rho_dm_sun": rng.normal(3e5, 1e3, size=(4, 1000))}, {"diverging": np.zeros((4, 1000), bool)})
    assert "+0.000 " not in small.local_dm_line() and "0.011389 +0.000038" in small.local_dm_line(), small.local_dm_line()
    # stuck chains and divergences are reported loudly
    bad = {"h.m": np.stack([rng.normal(m, 0.1, 200) for m in (0, 0, 1, 1)])}
    with pytest.warns(ConvergenceWarning, match="r̂"):
        Posterior.from_samples(bad, {"diverging": np.ones((4, 200), bool)})
    with pytest.raises(KeyError, match="not in the posterior"):
        post.upper_limit("nope")


def test_paper_facing_outputs_say_the_runs_problems(tmp_path):
    """A posterior read back from its file warns about its convergence as from_samples did; to_latex carries the
    problems as LaTeX comments and warns; local_dm_line warns (all three had dropped them silently)."""
    rng = np.random.default_rng(1)
    chains = np.stack([rng.normal(m, 1.0, 300) for m in (0.0, 0.0, 0.0, 3.0)])  # one chain 3 σ off: r̂ ≈ 1.5
    samples = {"h.m": chains, "derived.rho_dm_sun": 1e7 + 1e6 * chains}
    info = {"diverging": np.zeros((4, 300), bool)}
    with pytest.warns(ConvergenceWarning):
        Posterior.from_samples(samples, info).save(tmp_path / "p.nc")
    with pytest.warns(ConvergenceWarning, match="r̂"):
        post = Posterior.load(tmp_path / "p.nc")
    with pytest.warns(ConvergenceWarning, match="to_latex: .*r̂"):
        tex = post.to_latex()
    assert any(ln.startswith("% WARNING: ") and "r̂" in ln for ln in tex.splitlines())
    with pytest.warns(ConvergenceWarning, match="local_dm_line: .*r̂"):
        post.local_dm_line()


def test_posterior_file_keeps_info_types_and_refuses_foreign_or_damaged_records(tmp_path):
    """Posterior.save wrote info with default=float (an int64 count read back as 50.0, a bool as 1.0, an array
    raised a bare TypeError); load took an ArviZ file without bayesdyn's record as an empty info, and a damaged
    record gave a bare JSONDecodeError or TypeError."""
    import json

    import arviz as az

    rng = np.random.default_rng(3)
    samples = {"h.m": rng.normal(size=(4, 500))}
    info = {"num_divergences": np.int64(50), "flag": np.bool_(True), "widths": np.array([1.5, 2.5]),
            "scale": jnp.asarray(0.5), "note": "kept"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Posterior(samples, info).save(tmp_path / "p.nc")
        back = Posterior.load(tmp_path / "p.nc")
    assert type(back.info["num_divergences"]) is int and back.info["num_divergences"] == 50
    assert back.info["flag"] is True and back.info["widths"] == [1.5, 2.5] and back.info["scale"] == 0.5
    assert back.info["note"] == "kept"
    with pytest.raises(TypeError, match="info cannot be written as a JSON record .*object.* Fix: store numbers"):
        Posterior(samples, {"bad": object()}).save(tmp_path / "q.nc")

    def refused(idata, match):
        path = tmp_path / "x.nc"
        idata.to_netcdf(str(path), engine="h5netcdf")
        with pytest.raises(ValueError, match=r"x\.nc is not a NetCDF posterior written by Posterior\.save \(" + match):
            Posterior.load(path)

    refused(az.from_dict(posterior=samples), r"its posterior has no bayesdyn_info record\)\. Fix: .*from_samples")
    refused(az.from_dict(observed_data={"y": np.zeros(3)}), r"it has no posterior group")
    for record, match in (("{not json", r"its bayesdyn_info record is damaged"), ("[1, 2]", r".*a JSON list")):
        idata = az.from_dict(posterior=samples)
        idata.posterior.attrs["bayesdyn_info"] = record
        refused(idata, match)
    # (the file-format review) a record of wrong types reached check() and raised AttributeError; a site of strings
    # a UFuncTypeError; divergences stored as 0.5 counted as 500; a CF scale_factor attribute (save writes none) was
    # applied: each is refused or ignored now
    for changes, match in (({"info": {"combine": "x"}}, r"its draws or bayesdyn_info record are damaged: AttributeError"),
                           ({"site": np.full((4, 500), "a")}, r"sites \['s'\] hold no numbers"),
                           ({"diverging": np.full((4, 500), 0.5)}, r"its sample_stats.diverging holds values other than")):
        idata = az.from_dict(posterior={**samples, **({"s": changes["site"]} if "site" in changes else {})},
                             sample_stats={"diverging": changes.get("diverging", np.zeros((4, 500), bool))})
        idata.posterior.attrs["bayesdyn_info"] = json.dumps(changes.get("info", {}))
        refused(idata, match)
    idata = az.from_dict(posterior=samples)  # xarray's own ValueError (an undecodable time unit) names the file too
    idata.posterior.attrs["bayesdyn_info"] = "{}"
    idata.posterior["h.m"].attrs.update(units="days since 2000-01-01", calendar="nonsense")
    refused(idata, r"ValueError: ")
    idata = az.from_dict(posterior=samples)
    idata.posterior.attrs["bayesdyn_info"] = "{}"
    idata.posterior["h.m"].attrs["scale_factor"] = 2.0
    idata.to_netcdf(str(tmp_path / "cf.nc"), engine="h5netcdf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert np.array_equal(Posterior.load(tmp_path / "cf.nc").samples["h.m"], samples["h.m"])


def test_paper_outputs_warn_and_format_what_a_review_found(tmp_path):
    """upper_limit refuses non-finite draws also with lower=None (an inf had passed), warns where a surface density's
    draws below 0 count, and carries the run's problems; to_csv warns of them (a CSV cannot carry them);
    dark_disk_limits refuses q = 95 before any run; the corner plot leaves out a constant site (corner's error asked
    for an argument this method lacks) and titles a 4 pc scale height (in kpc) with its digits (corner's .2f gave
    0.00); local_dm_line's M☉/pc³ errors to the decimal place of the GeV part's rule ("+0.001 -0.00099")."""
    import matplotlib

    matplotlib.use("Agg")
    from bayesdyn.results import dark_disk_limits

    rng = np.random.default_rng(5)
    clean = {"diverging": np.zeros((2, 500), bool)}
    sigma = rng.normal(1e6, 3e6, (2, 500))
    post = Posterior({"dark_disk.surface_density": sigma, "derived.rho_dm_sun": rng.normal(-2.0e6, 1.0e6, (2, 500)),
                      "dark_disk.scale_height": rng.normal(0.004, 0.0015, (2, 500)), "halo.x": np.ones((2, 500))}, clean)
    with pytest.warns(UserWarning, match="below 0, and they count"):
        loose = post.upper_limit("dark_disk.surface_density")
    assert loose < post.upper_limit("dark_disk.surface_density", lower=0.0)
    broken = Posterior({"h.m": np.where(np.arange(1000).reshape(2, 500) == 7, np.inf, 1.0 + sigma / 1e7)}, clean)
    with pytest.raises(ValueError, match="not finite"):
        broken.upper_limit("h.m")
    stuck = Posterior({"h.m": np.stack([rng.normal(m, 0.1, 500) for m in (0.0, 1.0)])}, clean)
    with pytest.warns(ConvergenceWarning, match="to_csv: .*r̂"):
        stuck.to_csv(tmp_path / "t.csv")
    with pytest.warns(ConvergenceWarning, match="upper_limit: .*r̂"):
        stuck.upper_limit("h.m")
    model = PotentialModel(dark_disk=bp.DarkDisk(surface_density=dist.Uniform(0.0, 3e7), scale_height=0.1))
    with pytest.raises(ValueError, match="q must be a credibility"):
        dark_disk_limits(model, None, [0.1], q=95)
    with pytest.warns(UserWarning, match=r"\['halo.x'\] left out"):
        fig = post.corner(names=["dark_disk.scale_height", "halo.x"])
    assert any("0.00" in ax.get_title() and "0.0015" in ax.get_title() for ax in fig.axes), [a.get_title() for a in fig.axes]
    with pytest.raises(KeyError, match=r"truths name \['dark_disk.scale_heigth'\], which are not sites"):
        post.corner(names=["dark_disk.scale_height"], truths={"dark_disk.scale_heigth": 0.1})  # lost its line before
    line = post.local_dm_line()
    m = re.search(r"= -0\.(\d+) \+0\.(\d+) -0\.(\d+) Msun/pc\^3", line)  # one decimal place, the smaller error's
    assert m and len({len(g) for g in m.groups()}) == 1 and line.endswith("-0.00096 Msun/pc^3 (68 %)"), line


def test_upper_limit_leaves_out_draws_below_the_physical_bound():
    """upper_limit(lower=0) takes the quantile of the draws at or above 0, as dark_disk_limits does (the posterior
    under the prior truncated at the physical bound); without it, mass below 0 tightened the limit."""
    rng = np.random.default_rng(2)
    draws = rng.normal(2e6, 5e6, size=(4, 5000))  # M☉/kpc², a third below 0
    post = Posterior({"dd.surface_density": draws}, {"diverging": np.zeros((4, 5000), bool)})
    plain, physical = post.upper_limit("dd.surface_density"), post.upper_limit("dd.surface_density", lower=0.0)
    flat = draws.reshape(-1)
    assert physical == np.quantile(flat[flat >= 0], 0.95) and plain == np.quantile(flat, 0.95)
    assert physical > 1.05 * plain  # ≈ 11.2 against 10.2 M☉/pc²
    with pytest.raises(ValueError, match="no draw"):
        post.upper_limit("dd.surface_density", lower=1e12)
    broken = draws.copy()
    broken[0, :10] = np.nan  # a broken run gives no limit, as in dark_disk_limits (the cut at 0 had hidden the NaN)
    with pytest.raises(ValueError, match="10 of 20000 draws .* not finite"):
        Posterior({"dd.surface_density": broken}, {}).upper_limit("dd.surface_density", lower=0.0)


def test_posterior_refuses_draws_without_a_chain_axis_or_from_another_run():
    """Sites given flat, (draws,) as NumPyro's plain mcmc.get_samples() returns them, were left out of every table
    and of check(), which then looked at nothing while local_dm_line still printed a result; a flat site beside
    (chains, draws) ones was dropped from the tables silently; a site of one chain beside four-chain ones had a NaN
    r̂ that no check reported. Each is refused, naming the site, its shape and the fix."""
    rng = np.random.default_rng(5)
    good = {"h.m": rng.normal(1.0, 0.1, (4, 500)), "derived.rho_dm_sun": rng.normal(1e7, 1e6, (4, 500))}
    with pytest.raises(ValueError, match=r"'h.m' have shape \(2000,\); of 'derived.rho_dm_sun' have shape "
                                         r"\(2000,\): not \(chains, draws.*"
                                         r"group_by_chain=True.*x\[None\]"):
        Posterior({k: v.reshape(-1) for k, v in good.items()}, {})
    with pytest.raises(ValueError, match=r"'h.m' have shape \(2000,\)"):
        Posterior.from_samples({**good, "h.m": good["h.m"].reshape(-1)}, {})
    with pytest.raises(ValueError, match=r"'d.s' have shape \(\)"):
        Posterior({**good, "d.s": np.float64(3.0)}, {})
    one = rng.normal(1e7, 1e6, (1, 500))
    with pytest.raises(ValueError, match=r"\['derived.rho_dm_sun'\] have \(chains, draws\) = \(1, 500\), but "
                                         r"\['h.m', 'd.s'\] have \(chains, draws\) = \(4, 500\).*group_by_chain"):
        Posterior({"h.m": good["h.m"], "d.s": good["h.m"] + 1.0, "derived.rho_dm_sun": one}, {})
    with pytest.raises(ValueError, match=r"\(chains, draws\) = \(4, 300\)"):
        Posterior({**good, "d.s": rng.normal(size=(4, 300))}, {})
    # what the package makes stays: non-scalar sites of the same run beside scalar ones, one chain, no site at all
    ok = Posterior({**good, "d.v": rng.normal(size=(4, 500, 3))}, {"diverging": np.zeros((4, 500), bool)})
    assert ok.scalar_names == ["h.m", "derived.rho_dm_sun"] and ok.check(warn=False) == []
    assert Posterior({"h.m": good["h.m"][:1]}, {}).samples["h.m"].shape == (1, 500)
    assert Posterior({}, {}).scalar_names == []


def test_upper_limit_and_local_dm_density_refuse_sites_that_are_not_one_density_per_draw():
    """A (4, 1000, 3) site of components at 0, 10 and 100 gave one upper limit (101.01) and one ρ_DM(⊙) from the
    three pooled; local_dm_density converted any site as if in M☉/kpc³ (derived.Sigma_1p1kpc, M☉/pc², came out in
    GeV/cm³). Both refuse, naming the shape or the unit; sites of unknown unit are still taken as M☉/kpc³."""
    rng = np.random.default_rng(6)
    vec = rng.normal(0.0, 0.1, (4, 1000, 3)) + np.array([0.0, 10.0, 100.0])
    post = Posterior({"h.v": vec, "derived.Sigma_1p1kpc": rng.normal(50.0, 2.0, (4, 1000)),
                      "h.scale_density": rng.normal(1e7, 1e5, (4, 1000)), "h.m": rng.normal(1e7, 1e5, (4, 1000)),
                      "h.alpha": rng.normal(1.0, 0.1, (4, 1000))}, {"diverging": np.zeros((4, 1000), bool)})
    for what in (lambda: post.upper_limit("h.v"), lambda: post.local_dm_density("h.v")):
        with pytest.raises(ValueError, match=r"'h.v' have shape \(4, 1000, 3\), 3 numbers per draw.*Fix: make each "
                                             r"element its own site"):
            what()
    with pytest.raises(ValueError, match=r"'derived.Sigma_1p1kpc' is in Msun/pc2, not a mass density in Msun/kpc3"
                                         r".*\['h.scale_density'\]"):
        post.local_dm_density("derived.Sigma_1p1kpc")
    with pytest.raises(ValueError, match=r"'h.alpha' is in no unit \(dimensionless\)"):
        post.local_dm_density("h.alpha")
    # a density parameter and a site of unknown unit give the same table, as before
    assert_allclose(post.local_dm_density("h.scale_density")["median"], post.local_dm_density("h.m")["median"],
                    rtol=0.01)
    assert_allclose(post.upper_limit("derived.Sigma_1p1kpc"), 50.0 + 1.645 * 2.0, atol=0.2)


def test_dark_disk_limit_brackets_truth():
    """Accelerations made by a dark disk of known Σ: the limit lies above it and the median near it."""
    with jax.enable_x64(True):
        sigma_true = 10e6  # M☉/kpc² (10 M☉/pc²)
        truth = bp.DarkDisk(surface_density=sigma_true, scale_height=0.1) + bp.NFW(scale_density=1e7, scale_radius=15.0)
        x = np.column_stack([np.full(40, -8.1), np.zeros(40), np.linspace(-1.0, 1.0, 40)])
        a = np.asarray(truth.acceleration(x))
        cov = np.broadcast_to((0.02 * np.linalg.norm(a, axis=1) + 5.0)[:, None, None] ** 2 * np.eye(3), (40, 3, 3))
        data = AccelerationData.create(x, a, cov, sun=(-8.1, 0.0, 0.02))
        model = PotentialModel(
            halo=bp.NFW(scale_density=1e7, scale_radius=15.0),
            dark_disk=bp.DarkDisk(surface_density=dist.Uniform(0.0, 50e6), scale_height=dist.Uniform(0.01, 1.0)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            table = dark_disk_limits(model, data, [0.1], num_chains=2, num_warmup=200, num_samples=300, progress=False)
    assert table.loc[0.1, "Sigma_DD_upper_Msun_pc2"] > 10.0
    assert abs(table.loc[0.1, "Sigma_DD_median_Msun_pc2"] - 10.0) < 2.0


def test_model_spec_errors():
    with pytest.raises(ValueError, match="at least one component"):
        PotentialModel()
    with pytest.raises(TypeError, match="not a bayesdyn.potentials component"):
        PotentialModel(halo=3.0)
    with pytest.raises(ValueError, match="unknown components"):
        PotentialModel(halo=bp.NFW(scale_density=1e7, scale_radius=10.0), dark=("bulge",))


def test_acceleration_likelihood_matches_numpyro_mvn(rng):
    from numpyro.distributions import MultivariateNormal

    from bayesdyn.inference import acceleration_log_likelihood

    with jax.enable_x64(True):
        x = rng.normal(size=(5, 3))
        m = rng.normal(size=(5, 3, 3))
        cov = m @ np.swapaxes(m, -1, -2) + 0.5 * np.eye(3)
        data = AccelerationData.create(x, rng.normal(size=(5, 3)), cov)
        a_model = rng.normal(size=(5, 3))
        ref = float(np.sum(MultivariateNormal(np.asarray(data.a), covariance_matrix=cov).log_prob(a_model)))
        assert_allclose(float(acceleration_log_likelihood(a_model, data)), ref, rtol=1e-12)
        for wrong in (a_model[0], a_model[:1], a_model[:4]):  # (3,) and (1, 3) had been broadcast to every node
            with pytest.raises(ValueError, match=r"a_model has shape .* the data's accelerations \(5, 3\)"):
                acceleration_log_likelihood(wrong, data)
        with pytest.raises(ValueError, match="not positive definite"):
            AccelerationData.create(x, data.a, -cov)
    # integer positions: floats, and the Sun is not cast to integers (it was: (−8, 0, 0), every local quantity off)
    ints = AccelerationData.create([[8, 0, 0], [7, 1, 0]], [[-1, 0, 0], [-1, 0, 0]], np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert jnp.issubdtype(ints.x.dtype, jnp.floating) and jnp.issubdtype(ints.cov.dtype, jnp.floating)
    assert_allclose(np.asarray(ints.sun), [-8.121973372128914, 0.0, 0.0208], rtol=1e-6)  # DEFAULT_SUN [kpc]
    # a covariance that passes the float64 check but whose float32 Cholesky factor is NaN (eigenvalues 1, 1, 2e-8,
    # rotated): the factor is taken in float64, so the likelihood is finite
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    thin = (q * [1.0, 1.0, 2e-8]) @ q.T
    thin32 = np.asarray(jnp.asarray(thin, jnp.float32))
    assert not np.isfinite(np.asarray(jnp.linalg.cholesky(0.5 * (thin32 + thin32.T)))).all()  # the pitfall
    one = AccelerationData.create(np.zeros((1, 3)), np.zeros((1, 3)), thin[None])
    assert np.isfinite(np.asarray(one.scale_tril)).all()


def test_acceleration_data_refuses_what_it_had_taken_silently(rng):
    """Each case had been accepted: an asymmetric covariance symmetrised, a two-number Sun failing only after NUTS,
    NaN members and an indefinite member covariance kept, a factor left stale by ``_replace(cov=...)`` (the
    likelihood unchanged by a covariance ×100), a misspelt component in ``bind`` ignored."""
    import numpyro
    from numpyro.infer.util import log_density

    x, a = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    cov = np.broadcast_to(np.eye(3), (4, 3, 3)).copy()
    skew = cov.copy()
    skew[2, 0, 1], skew[2, 1, 0] = 0.5, -0.5  # positive definite once symmetrised (it was stored as the identity)
    with pytest.raises(ValueError, match=r"1 of 4 nodes' cov matrices are not symmetric \(first \[2\]\)"):
        AccelerationData.create(x, a, skew)
    AccelerationData.create(x, a, cov + 1e-9 * rng.normal(size=cov.shape))  # rounding-level asymmetry passes
    for sun in ((-8.122, 0.0), -8.122, (-8.122, 0.0, 0.02, 1.0), (np.nan, 0.0, 0.0)):
        with pytest.raises(ValueError, match="sun must be 3 finite numbers"):
            AccelerationData.create(x, a, cov, sun=sun)
    members = np.stack([a, a + 0.1, a - 0.1])
    nan_members = members.copy()
    nan_members[1, 2, 0] = np.nan
    member_cov = np.broadcast_to(np.eye(3), (3, 4, 3, 3)).copy()
    with pytest.raises(ValueError, match=r"members \[1\] have NaN/inf"):
        AccelerationData.create(x, a, cov, members=nan_members, member_cov=member_cov)
    with pytest.raises(ValueError, match="member nodes' member_cov matrices are not positive definite"):
        AccelerationData.create(x, a, cov, members=members, member_cov=-member_cov)
    ints = AccelerationData.create(x, a, cov, members=members.astype(int), member_cov=member_cov.astype(int))
    assert jnp.issubdtype(ints.members.dtype, jnp.floating) and jnp.issubdtype(ints.member_cov.dtype, jnp.floating)

    model = PotentialModel(halo=bp.Plummer(mass=dist.LogUniform(1e9, 1e11), scale_radius=1.0))
    data = AccelerationData.create(x + [8.0, 0.0, 0.0], a, cov)
    params = {"halo.mass": 1e10}
    before = float(log_density(model, (data,), {}, params)[0])
    assert before == float(log_density(model, (data.check_factor(),), {}, params)[0])
    with pytest.raises(ValueError, match="scale_tril does not factor cov.*AccelerationData.create"):
        log_density(model, (data._replace(cov=100 * data.cov),), {}, params)
    remade = AccelerationData.create(data.x, data.a, 100 * data.cov, sun=data.sun)
    assert float(log_density(model, (remade,), {}, params)[0]) != before
    with numpyro.handlers.seed(rng_seed=0):
        model(data._replace(scale_tril=None))  # no factor: the likelihood takes it from cov
    with pytest.raises(KeyError, match=r"\['hallo.mass'\] name no component.*\['halo'\]"):
        model.bind({"hallo.mass": 1e10})
    with pytest.raises(KeyError, match=r"\['mass'\] name no component"):
        model.bind({"mass": 1e10})
    assert float(model.bind(params)["halo"].mass) == 1e10


def test_nfw_tracer_posterior_recovers_truth_within_1_percent():
    """Exact scores of tracers in a fixed NFW halo (Eddington DF): ρ_s and r_s within 1 % (BlackJAX NUTS)."""
    with jax.enable_x64(True):
        cat, truth = mocks.spherical_tracer(n=20_000, seed=2, halo="nfw", halo_density=1e7, halo_scale_radius=10.0)
        data = estimate_accelerations(ExactScores(truth, cat), n_nodes=48, n_velocities=48, seed=0, floor=0.01)
        model = PotentialModel(halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.Uniform(1.0, 50.0)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            post = infer(
                model, data, seed=3, num_chains=2, num_warmup=400, num_samples=400, backend="blackjax", progress=False
            )
    table = post.summary()
    for name, true in (("halo.scale_density", 1e7), ("halo.scale_radius", 10.0)):
        assert abs(table.loc[name, "median"] / true - 1) < 0.01, (name, table.loc[name, "median"])
        assert table.loc[name, "q2.5"] < true < table.loc[name, "q97.5"]
        assert table.loc[name, "r_hat"] < 1.02
    assert table.loc["halo.scale_density", "unit"] == "Msun/kpc3"


def test_combine_members_follows_rubins_rules():
    """Per-member Gaussian posteriors → the combined draws are N(m̄, W) plus the between-member part
    √((1 + 1/K) B) · t_{K−1}: its variance drawn from its posterior given B (K − 1 degrees of freedom). Rubin's
    ν = (K − 1)(1 + 1/r)², once applied to this part alone, made its tails too light (95 % coverage 0.937 at K = 4 in
    the toy of benchmarks/rubin_design.py; 0.968 now)."""
    from scipy import stats

    from bayesdyn.inference import combine_members

    rng = np.random.default_rng(4)
    means, w = np.array([0.8, 1.0, 1.1, 1.5]), 0.05
    members = [{"p.a": rng.normal(m, w, size=(2, 20_000)), "p.b": np.exp(rng.normal(np.log(3.0), 0.01, (2, 20_000)))}
               for m in means]
    priors = {"p.a": dist.Normal(0.0, 10.0), "p.b": dist.LogUniform(0.1, 100.0)}
    out, info = combine_members(members, priors, seed=1)
    with pytest.raises(ValueError, match="at least one free parameter"):  # (it said "got shapes set()")
        combine_members(members, {}, seed=1)
    k = len(means)
    b = np.var(means, ddof=1)
    assert info["dof"] == k - 1
    assert out["p.a"].shape == (2 * k, 20_000)
    assert_allclose(np.median(out["p.a"]), means.mean(), atol=0.01)
    # quantiles of N(0, w²) + √((1 + 1/K) B) t₃ (the CDF as a mean over t₃'s quantiles at 20 000 midpoints), against
    # the draws' (here the between part dominates: the old rule's ν = 3.28 gave a 95 % half-width of 1.000, now 1.048)
    scale = np.sqrt((1 + 1 / k) * b)
    t = stats.t.ppf((np.arange(20_000) + 0.5) / 20_000, k - 1)
    q = np.linspace(-3.0, 3.0, 601)
    cdf = stats.norm.cdf((q[:, None] - scale * t) / w).mean(axis=1)
    for p in (0.025, 0.16, 0.84, 0.975):
        assert_allclose(np.quantile(out["p.a"], p) - means.mean(), np.interp(p, cdf, q), rtol=0.03)
    # a parameter on which the members agree keeps its within-member width (log coordinates)
    assert_allclose(np.log(out["p.b"]).std(), 0.01, rtol=0.05)
    assert np.all(out["p.b"] > 0)
    with pytest.raises(ValueError, match="at least 2"):
        combine_members(members[:1], priors)
    # a member piled against a prior bound, with draws rounded onto it (float32 sigmoid): still combined, inside
    edge = [dict(m, **{"p.b": np.where(np.arange(20_000) % 7 == 0, 100.0, 99.0) * np.ones((2, 1))}) for m in members]
    out, _ = combine_members(edge, priors, seed=2)
    assert np.isfinite(out["p.b"]).all() and out["p.b"].max() < 100.0 and out["p.b"].min() > 0.1
    nan = [dict(m) for m in members]
    nan[0] = dict(nan[0], **{"p.a": np.full((2, 20_000), np.nan)})
    with pytest.raises(FloatingPointError, match=r"\['p.a'\] are NaN"):
        combine_members(nan, priors)


def test_combined_posterior_judges_convergence_by_its_members_and_names_overflow():
    """Members of sd 0.8, 1, 1, 1.25 that each converged: the combined draws' own r̂ flags their different widths
    (a false 'run longer'); the table's r̂ is the members' largest and its ESS their sum, so no warning. A member
    stuck at one value gives r̂ = inf. Combined draws that overflow to ±∞ (Student-t tails at ν ≈ 1) are named as
    such, not as stuck chains."""
    import arviz as az

    from bayesdyn.inference import combine_members
    from bayesdyn.inference._infer import member_diagnostics

    rng = np.random.default_rng(5)
    members = [{"p.a": w * rng.standard_normal((4, 1000)) + m}
               for w, m in zip((0.8, 1.0, 1.0, 1.25), 0.05 * rng.standard_normal(4))]
    out, info = combine_members(members, {"p.a": dist.Normal(0.0, 100.0)}, seed=0)
    member_rhat = [float(az.rhat(m["p.a"])) for m in members]
    assert float(az.rhat(out["p.a"])) > 1.01 > max(member_rhat)  # the combined draws' false alarm
    assert any("r̂ >" in p for p in Posterior(out, {"combine": info}).check(warn=False))  # without the members'
    info = {**info, "member_diagnostics": member_diagnostics(members)}
    post = Posterior(out, {"combine": info})
    d = post.diagnostics().loc["p.a"]
    assert d["r_hat"] == max(member_rhat)
    assert d["ess_bulk"] == pytest.approx(sum(float(az.ess(m["p.a"], method="bulk")) for m in members))
    assert d["ess_bulk"] < float(az.ess(out["p.a"], method="bulk"))
    assert post.check(warn=False) == []
    stuck = {**info, "member_diagnostics": member_diagnostics(members[:3] + [{"p.a": np.full((4, 1000), 0.3)}]),
             "member_max_r_hat": [1.0, 1.0, 1.0, np.inf]}
    stuck_post = Posterior(out, {"combine": stuck})
    assert stuck_post.diagnostics().loc["p.a", "r_hat"] == np.inf
    (problem,) = [p for p in stuck_post.check(warn=False) if "r̂" in p]  # said once, naming the member
    assert "member(s) [3]" in problem
    over = out["p.a"].copy()
    over[0, :2] = np.inf
    problems = Posterior({"p.a": over}, {"combine": info}).check(warn=False)
    assert any("2 of the combined draws of ['p.a'] are not finite (overflow)" in p for p in problems), problems
    assert not any("stuck" in p for p in problems)
    # one chain per member (examples/local_dm.py --tiny): r̂ is NaN, which read as "never moves" and blanked the ESS,
    # so 2 × 40 autocorrelated draws passed every check; their ESS is judged now
    walk = [{"p.a": np.cumsum(rng.standard_normal((1, 40)), axis=1) * 0.1} for _ in range(2)]
    out1, info1 = combine_members(walk, {"p.a": dist.Normal(0.0, 100.0)}, seed=0)
    info1 = {**info1, "member_diagnostics": member_diagnostics(walk), "member_max_r_hat": [np.nan, np.nan]}
    one_chain = Posterior(out1, {"combine": info1})
    d = one_chain.diagnostics().loc["p.a"]
    assert np.isnan(d["r_hat"]) and 0 < d["ess_bulk"] < 400
    assert any("effective sample size < 400 for ['p.a']" in p for p in one_chain.check(warn=False))


def test_combine_members_with_resample_groups_splits_training_from_sampling_variance():
    """J = 2 resamples × L = 2 seeds: between-member variance M/(JL) + (1 + 1/J)[S − M/L]₊ (the module docstring),
    not Rubin's (1 + 1/K) B; where the resample means agree better than the seeds do, the training part M/(JL)
    alone, with J(L − 1) degrees of freedom; unbalanced groups are refused."""
    from bayesdyn.inference import combine_members

    rng = np.random.default_rng(5)
    w = 0.05
    priors = {"p.a": dist.Normal(0.0, 10.0)}

    def run(means, groups):
        draws = [rng.normal(0.0, w, size=(2, 20_000)) for _ in means]
        members = [{"p.a": d - d.mean() + m} for d, m in zip(draws, means)]  # member means exactly `means`
        within = np.mean([np.var(m["p.a"], ddof=1) for m in members])
        out, info = combine_members(members, priors, seed=1, groups=groups)
        bf = info["between_fraction"]["p.a"]
        return out, info, bf / (1 - bf) * within, within

    means = np.array([0.8, 1.0, 1.3, 1.7])  # resample 0: members 0, 1; resample 1: members 2, 3
    _, info, between, within = run(means, [0, 0, 1, 1])
    s, m = np.var([0.9, 1.5], ddof=1), (2 * 0.1**2 + 2 * 0.2**2) / 2  # 0.18, 0.05
    assert_allclose(between, m / 4 + 1.5 * (s - m / 2), rtol=1e-3)  # 0.245
    assert info["dof"] == 1.0  # the sampling part's J − 1: the heaviest tail among the parts drawn
    assert info["n_resamples"] == 2 and info["seeds_per_resample"] == 2 and "2 resamples × 2 seeds" in info["combine"]
    # the same members as independent resamples: Rubin's rules
    _, plain, between_rubin, _ = run(means, None)
    assert_allclose(between_rubin, 1.25 * np.var(means, ddof=1), rtol=1e-3)
    assert plain["combine"] == "members (Rubin's rules)" and "n_resamples" not in plain
    _, same, _, _ = run(means, [3, 1, 2, 0])  # distinct labels: also Rubin's rules
    assert same["combine"] == plain["combine"]
    # resample means equal, seeds apart: the clip binds and the training part M/(JL) remains, with J(L − 1) dof
    out, info, between, within = run(np.array([0.8, 1.2, 0.9, 1.1]), [0, 0, 1, 1])
    assert_allclose(between, (2 * 0.2**2 + 2 * 0.1**2) / 2 / 4, rtol=1e-3)  # 0.0125
    assert_allclose(info["dof"], 2.0, rtol=1e-3)
    assert_allclose(out["p.a"].mean(), 1.0, atol=0.01)
    # S > 0 but below M/L (2 resamples × 4 seeds, means 1.00 and 1.06): the point estimate clips the sampling part,
    # but its draws S* enter, with Cauchy tails (1 dof); J(L − 1) = 6 had been reported (a review's case)
    seeds = np.array([-0.15, -0.05, 0.05, 0.15])
    out, info, _, _ = run(np.concatenate([1.0 + seeds, 1.06 + seeds]), [0] * 4 + [1] * 4)
    assert info["dof"] == 1.0
    x = np.abs(out["p.a"] - 1.03)
    assert np.quantile(x, 0.999) / np.quantile(x, 0.68) > 50  # a t of 6 dof: 5.5; of 1 dof: 350
    for bad in ([0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 2]):
        with pytest.raises(ValueError, match="groups"):
            combine_members([{"p.a": rng.normal(0, w, size=(2, 100))} for _ in range(4)], priors, groups=bad)


def test_combined_resample_groups_cover_at_every_training_share():
    """The toy of benchmarks/rubin_design.py through combine_members: members m_jl = θ̂ + e_s(j) + e_t(jl) about the
    truth 0, V_s + V_t = 1, within-member sd √0.03, 2 resamples × 2 seeds. One t of Satterthwaite's ν on the
    between part gave 95 % coverage 0.89 at a training share of 0.25 and 0.93 at 0.46 (the sampling part, estimated
    from 2 resample means, clipped away when small by chance); each part drawn from its own posterior gives ≥ 0.95
    (benchmark: 0.976 and 0.987)."""
    from bayesdyn.inference import combine_members

    prior = {"p": dist.Normal(0.0, 1e3)}
    groups = np.array([0, 0, 1, 1])
    for share in (0.25, 0.46):
        rng = np.random.default_rng(7)
        hits, n = 0, 400
        for i in range(n):
            m = rng.normal(0, np.sqrt(1 - share)) + rng.normal(0, np.sqrt(1 - share), (2, 1)) \
                + rng.normal(0, np.sqrt(share), (2, 2))
            members = [{"p": rng.normal(mk, np.sqrt(0.03), (1, 200))} for mk in m.ravel()]
            out, _ = combine_members(members, prior, seed=i, groups=groups)
            lo, hi = np.quantile(out["p"], [0.025, 0.975])
            hits += lo <= 0.0 <= hi
        assert hits / n >= 0.94, (share, hits / n)  # binomial sd 0.011 at 0.95


def test_ensemble_mean_covariance_is_combine_members_rule():
    """The public covariance of an ensemble mean: the same numbers as combine_members' between part, per column of
    (K, P) values and for (K,) values; one member or unbalanced groups are refused."""
    from bayesdyn.inference import ensemble_mean_covariance

    means = np.array([0.8, 1.0, 1.3, 1.7])
    s, m = np.var([0.9, 1.5], ddof=1), (2 * 0.1**2 + 2 * 0.2**2) / 2
    assert_allclose(ensemble_mean_covariance(means, [0, 0, 1, 1]), m / 4 + 1.5 * (s - m / 2), rtol=1e-12)
    assert_allclose(ensemble_mean_covariance(means), 1.25 * np.var(means, ddof=1), rtol=1e-12)
    assert_allclose(ensemble_mean_covariance(np.array([0.8, 1.2, 0.9, 1.1]), [0, 0, 1, 1]), 0.0125, rtol=1e-12)
    two = np.stack([means, 3.0 * means[::-1]], axis=1)  # (K, P = 2)
    cov = ensemble_mean_covariance(two)
    assert cov.shape == (2, 2)
    assert_allclose(np.diag(cov), [1.25 * np.var(means, ddof=1), 9 * 1.25 * np.var(means, ddof=1)], rtol=1e-12)
    assert_allclose(cov[0, 1], 1.25 * np.cov(two[:, 0], two[:, 1])[0, 1], rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_mean_covariance([1.0])
    with pytest.raises(ValueError, match="groups"):
        ensemble_mean_covariance(means, [0, 0, 0, 1])


def test_infer_members_widens_to_the_members_disagreement(plummer_data):
    """Three members whose fields are the truth scaled by 0.97, 1.00, 1.03 (a correlated error over
    all nodes): the default combination spans them; the mean likelihood does not."""
    data, truth = plummer_data
    scale = np.array([0.97, 1.0, 1.03])
    members = np.asarray(data.a)[None] * scale[:, None, None]
    cov = np.asarray(data.cov)
    member_cov = np.broadcast_to(1e-2 * cov, (3,) + cov.shape)  # each member: 10× narrower than the floor
    with jax.enable_x64(True):
        ens = AccelerationData.create(
            data.x, members.mean(0), 1e-2 * cov, sun=data.sun, members=members, member_cov=member_cov
        )
    model = PotentialModel(halo=bp.Plummer(mass=dist.LogUniform(1e8, 1e12), scale_radius=1.0))
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = infer(model, ens, seed=0, num_chains=2, num_warmup=200, num_samples=300, progress=False)
        mean = infer(model, ens, seed=0, num_chains=2, num_warmup=200, num_samples=300, progress=False,
                     combine="mean")
    c = post.info["combine"]
    assert c["n_members"] == 3 and max(c["member_max_r_hat"]) < 1.02
    # a ∝ M at fixed scale radius: member medians 0.97, 1.00, 1.03 × 1e10 M☉
    assert_allclose(np.array(c["member_medians"]["halo.mass"]) / 1e10, scale, rtol=2e-3)
    t = post.summary().loc["halo.mass"]
    assert t["q2.5"] < 0.97e10 and t["q97.5"] > 1.03e10  # spans the members
    assert abs(t["median"] / 1e10 - 1) < 0.01
    tm = mean.summary().loc["halo.mass"]
    assert (tm["q97.5"] - tm["q2.5"]) < 0.3 * (t["q97.5"] - t["q2.5"])
    # the table's r̂ and ESS are the members' own (largest r̂, summed ESS), derived sites included
    md, diag = c["member_diagnostics"], post.diagnostics()
    assert set(md) == {n for n in post.scalar_names if np.ptp(post.samples[n]) > 0}
    assert diag.loc["halo.mass", "r_hat"] == max(md["halo.mass"]["r_hat"])
    assert diag.loc["derived.v_circ_R0", "ess_bulk"] == pytest.approx(sum(md["derived.v_circ_R0"]["ess_bulk"]))
    # ... and the Markdown table says so under its header (it read as the combined draws' own); a plain run's does not
    note = "r̂ is the largest of the flow members' own posteriors, and ESS bulk and tail the sums of theirs"
    assert note in post.to_markdown() and note not in mean.to_markdown()
    # members in resample pairs (fit_psd(seeds_per_resample=2)): bd.infer hands the groups to combine_members,
    # and the member-mean likelihood, which cannot use them, says so
    scale4 = np.array([0.97, 0.99, 1.01, 1.03])
    with jax.enable_x64(True):
        paired = AccelerationData.create(
            data.x, np.asarray(data.a), 1e-2 * cov, sun=data.sun, members=np.asarray(data.a)[None] * scale4[:, None, None],
            member_cov=np.broadcast_to(1e-2 * cov, (4,) + cov.shape), member_groups=np.array([0, 0, 1, 1]),
        )
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grouped = infer(model, paired, seed=0, num_chains=2, num_warmup=200, num_samples=300, progress=False)
        # the warning comes before any sampling: raised as an error here, so no chain runs (~7 s of a cold suite)
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(UserWarning, match="seeds_per_resample"):
            infer(model, paired, seed=0, num_chains=2, num_warmup=200, num_samples=300, progress=False,
                  combine="mean")
        # members without their covariances: 'auto' falls back to the mean, and says so (it had said nothing)
        with pytest.raises(UserWarning, match="3 members but no member_cov.*too narrow"):
            infer(model, ens._replace(member_cov=None), seed=0, num_chains=2, num_warmup=200, num_samples=300,
                  progress=False)
    g = grouped.info["combine"]
    assert g["n_resamples"] == 2 and g["seeds_per_resample"] == 2 and "2 resamples × 2 seeds" in g["combine"]


def test_members_share_one_compiled_sampler_with_plain_runs_draws(plummer_data, monkeypatch):
    """Without a progress bar each member's NUTS run goes through one jitted function (NumPyro 0.22 compiled its
    sampling loop again at every MCMC.run, 3–5 s per member): two members and a rerun from starts at the mode compile
    it twice (NumPyro's own starts; the mode's), and its draws are those of unjitted runs, bit for bit."""
    import functools

    from bayesdyn.inference import _infer

    data, _ = plummer_data
    scale = np.array([0.98, 1.02])
    cov = np.asarray(data.cov)
    with jax.enable_x64(True):
        ens = AccelerationData.create(data.x, np.asarray(data.a), 1e-2 * cov, sun=data.sun,
                                      members=np.asarray(data.a)[None] * scale[:, None, None],
                                      member_cov=np.broadcast_to(1e-2 * cov, (2,) + cov.shape))
    model = PotentialModel(halo=bp.Plummer(mass=dist.LogUniform(1e8, 1e12), scale_radius=dist.Uniform(0.3, 3.0)))
    built = []
    compiled = _infer._compiled_run

    def spy(mcmc):
        built.append(mcmc)
        return compiled(mcmc)

    rhats = iter([1.2, 1.0, 1.0])  # member 0's first run "disagrees": it is rerun from starts near the mode
    max_rhat = _infer._max_rhat
    monkeypatch.setattr(_infer, "_max_rhat", lambda s, n: next(rhats, None) or max_rhat(s, n))
    monkeypatch.setattr(_infer, "_compiled_run", spy)
    kw = dict(seed=3, num_chains=2, num_warmup=60, num_samples=60, progress=False)
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = infer(model, ens, **kw)
        assert post.info["combine"]["restarted_members"] == [0]
        assert len(built) == 3 and len({id(m) for m in built}) == 1  # one MCMC, three runs
        assert built[0]._bayesdyn_run._cache_size() == 2  # ... compiled for NumPyro's starts and for the mode's
        # one member's run, jitted (the function compiled above) and not: the same draws, bit for bit (one plain
        # run: each compiles NumPyro's loop, ~3 s)
        d1, key = _infer._to_float64(ens.member(1)), jax.random.PRNGKey(3 + 1000)
        jitted = compiled(built[0])(key, d1, None)
        plain = functools.partial(_infer._run_once, built[0])(key, d1, None)
    assert set(jitted[0]) == set(plain[0]) and jitted[0]
    for name in jitted[0]:
        np.testing.assert_array_equal(np.asarray(jitted[0][name]), np.asarray(plain[0][name]), err_msg=name)
    np.testing.assert_array_equal(np.asarray(jitted[1]), np.asarray(plain[1]))


def test_a_model_without_a_finite_density_still_says_so_through_the_compiled_sampler():
    """Inside the jitted run NumPyro cannot raise "Cannot find valid initial parameters": a model whose density is NaN
    everywhere ran silently (every transition divergent, no draw moving; a review's case); it raises again."""
    import numpyro

    from bayesdyn.inference import _infer

    def model(data):
        m = numpyro.sample("m", dist.Uniform(0.0, 1.0))
        numpyro.factor("lik", jnp.where(data[0] > 0, jnp.nan, 0.0) * m)

    with jax.enable_x64(True):
        with pytest.raises(RuntimeError, match="Cannot find valid initial parameters"):  # each chain stuck apart
            _infer._run_nuts(model, jnp.ones(3), 0, 2, 20, 20, "numpyro", 0.8, False, False, None)


def test_blackjax_members_share_one_compiled_program_with_per_member_programs_draws(plummer_data, monkeypatch):
    """backend="blackjax" with members: one program, jitted over the data, compiled once for both members (a program
    with the data bound compiled again for each, ~4 s); the draws equal those of a program built for each member."""
    from bayesdyn.inference import _infer

    data, _ = plummer_data
    cov = np.asarray(data.cov)
    with jax.enable_x64(True):
        ens = AccelerationData.create(data.x, np.asarray(data.a), 1e-2 * cov, sun=data.sun,
                                      members=np.asarray(data.a)[None] * np.array([0.98, 1.02])[:, None, None],
                                      member_cov=np.broadcast_to(1e-2 * cov, (2,) + cov.shape))
    model = PotentialModel(halo=bp.Plummer(mass=dist.LogUniform(1e8, 1e12), scale_radius=dist.Uniform(0.3, 3.0)))
    built = []
    program = _infer._blackjax_program

    def spy(*args, **kwargs):
        built.append(program(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(_infer, "_blackjax_program", spy)
    kw = dict(seed=3, num_chains=2, num_warmup=60, num_samples=60, progress=False, backend="blackjax")
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        shared = infer(model, ens, **kw)
        assert len(built) == 1 and built[0]._cache_size() == 1
        calls = iter([None])  # the ensemble's program refused: each member builds its own
        monkeypatch.setattr(_infer, "_blackjax_program", lambda *a, **k: next(calls, "build") and program(*a, **k))
        own = infer(model, ens, **kw)
    for name in shared.samples:
        np.testing.assert_array_equal(shared.samples[name], own.samples[name], err_msg=name)


def test_surface_density_resolves_thin_layers():
    """derived.Sigma_1p1kpc [M☉/pc²] against closed forms: a sech² dark disk gives Σ tanh(Z/2h) for scale heights
    from 2 pc to 1 kpc, and a thin Miyamoto–Nagai disk scipy's adaptive quadrature (a single 32-node rule gave
    1.0 instead of 10 M☉/pc² at h = 10 pc and 1.8 instead of 7.4 at b = 20 pc); tilted thin layers a fine
    trapezoid."""
    from scipy.integrate import quad

    from bayesdyn.inference import derived_quantities
    from bayesdyn.inference._model import KZ_HEIGHT

    sun = np.array([-8.122, 0.0, 0.0208])
    for h in (0.002, 0.01, 0.025, 0.1, 1.0):
        out = derived_quantities({"dark_disk": bp.DarkDisk(surface_density=10e6, scale_height=h)}, ("dark_disk",), sun)
        assert_allclose(float(out["Sigma_1p1kpc"]), 10.0 * np.tanh(KZ_HEIGHT / (2 * h)), rtol=1e-5)
    with jax.enable_x64(True):
        for b in (0.02, 0.28):
            disk = bp.MiyamotoNagai(mass=1e10, a=3.0, b=b)
            out = derived_quantities({"disk": disk}, (), sun)
            rho = lambda z: float(disk.density(np.array([[sun[0], sun[1], z]]))[0])  # noqa: E731
            exact = 2 * quad(rho, 0.0, KZ_HEIGHT, points=[b, 5 * b], limit=200, epsabs=0, epsrel=1e-10)[0] * 1e-6
            assert_allclose(float(out["Sigma_1p1kpc"]), exact, rtol=1e-5)
        # a tilted thin layer crosses R0 away from the plane (5° and 3°: at z ≈ 0.71 and 0.43 kpc), where a rule
        # fine only at z = 0 was 17 % off
        for comp in (bp.Tilted(bp.MiyamotoNagai(mass=1e10, a=3.0, b=0.05), tilt=5.0),
                     bp.Tilted(bp.DarkDisk(surface_density=10e6, scale_height=0.02), tilt=3.0)):
            out = derived_quantities({"c": comp}, (), sun)
            z = np.linspace(-KZ_HEIGHT, KZ_HEIGHT, 400_001)
            rho = np.asarray(comp.density(np.stack([np.full_like(z, sun[0]), np.zeros_like(z), z], -1)), float)
            exact = np.trapezoid(rho, z) * 1e-6
            assert_allclose(float(out["Sigma_1p1kpc"]), exact, rtol=1e-5)


def test_dark_components_by_name_warn_when_none_or_stellar():
    """derived.rho_dm_sun sums the components counted as dark: when the name rule finds none (a halo named 'nfw'),
    leaves out a dark-matter profile beside one it counts, or counts a stellar halo, the model says so and how to
    name them with dark=; dark= given is taken as is."""
    from bayesdyn.inference import derived_quantities

    halo = bp.NFW(scale_density=1e7, scale_radius=16.0)
    sun = np.array([-8.122, 0.0, 0.0208])
    with pytest.warns(UserWarning, match=r"dark=\('nfw',\)"):
        PotentialModel(nfw=halo)
    with pytest.warns(UserWarning, match="stellar_halo"):
        PotentialModel(stellar_halo=bp.Plummer(mass=1e9, scale_radius=5.0), halo=halo)
    # a halo named by its profile beside a dark disk: the name rule counts the disk alone, and left the halo out of
    # ρ_DM(⊙) silently (a review found 4.79e6 counted instead of 1.35e7 M☉/kpc³ with an NFW and a dark disk)
    thin = bp.Tilted(bp.DarkDisk(surface_density=1e7, scale_height=0.1), tilt=1.0)
    with pytest.warns(UserWarning, match=r"'nfw' \(NFW\) does not count as dark matter.*dark=\('dark_disk', 'nfw'\)"):
        PotentialModel(nfw=halo, dark_disk=thin)
    with pytest.warns(UserWarning, match=r"'thin' \(DarkDisk\) does not count"):  # through a Tilted wrapper
        PotentialModel(halo=halo, thin=thin)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = PotentialModel(nfw=halo, dark=("nfw",))
        PotentialModel(disk=bp.MiyamotoNagai(mass=5e10, a=3.0, b=0.28), dark=())
        PotentialModel(halo=halo, dark_disk=thin, bulge=bp.Plummer(mass=1e9, scale_radius=0.5))
    rho = float(derived_quantities(named.components, named.dark, sun)["rho_dm_sun"])
    assert_allclose(rho, float(halo.density(sun[None])[0]), rtol=1e-6)


def test_dark_disk_limits_table_reports_a_bad_members_r_hat(monkeypatch):
    """The limits table's max_r_hat includes each flow member's own r̂: in the combined draws a member whose chains
    disagree is diluted by the between-member spread (1.20 in a member, 1.02 combined)."""
    import bayesdyn.inference as inference

    rng = np.random.default_rng(1)
    good = {"dark_disk.surface_density": rng.normal(5e6, 1e6, size=(2, 500))}

    def fake_infer(model, data, **kw):
        post = Posterior(good, {"diverging": np.zeros((2, 500), bool), "num_divergences": 0})
        post.info["combine"] = {"member_max_r_hat": [1.003, 1.2]}
        return post

    monkeypatch.setattr(inference, "infer", fake_infer)
    model = PotentialModel(dark_disk=bp.DarkDisk(surface_density=dist.Uniform(0.0, 50e6), scale_height=0.1))
    table = dark_disk_limits(model, None, [0.1])
    assert table.loc[0.1, "max_r_hat"] == 1.2
    assert "r̂ > 1.01 in the posterior of member(s) [1] (max 1.200): run longer" in table.loc[0.1, "problems"].split(" | ")


def test_dark_disk_limits_table_gives_the_priors_own_limit(monkeypatch):
    """Beside each limit the table gives the prior's own q quantile [M☉/pc²] and the ratio: a limit near the prior's
    says nothing about the data. By the inverse CDF for Uniform and LogUniform (a (b/a)^q), by draws for Gamma.
    And the prior's mass below the limit, by the CDF (Uniform, LogUniform, Gamma) or by draws."""
    import bayesdyn.inference as inference

    rng = np.random.default_rng(3)
    wide = {"dark_disk.surface_density": rng.uniform(0.0, 50e6, size=(2, 2000))}  # a posterior = the prior

    def fake_infer(model, data, **kw):
        return Posterior(wide, {"diverging": np.zeros((2, 2000), bool), "num_divergences": 0})

    monkeypatch.setattr(inference, "infer", fake_infer)
    model = PotentialModel(dark_disk=bp.DarkDisk(surface_density=dist.Uniform(0.0, 50e6), scale_height=0.1))
    table = dark_disk_limits(model, None, [0.05, 0.1])
    assert_allclose(table["prior_upper_Msun_pc2"], 47.5, rtol=1e-6)  # 0.95 × 50 M☉/pc²
    assert_allclose(table["limit_over_prior"], table["Sigma_DD_upper_Msun_pc2"] / 47.5, rtol=1e-12)
    assert (table["limit_over_prior"] > 0.97).all()  # this "limit" is the prior's
    assert_allclose(table["prior_mass_below_limit"], table["Sigma_DD_upper_Msun_pc2"] / 50.0, rtol=1e-6)  # ≈ q
    assert (table["prior_mass_below_limit"] > 0.92).all()
    import matplotlib.pyplot as plt

    from bayesdyn.results import plot_dark_disk_limits

    fig = plot_dark_disk_limits(table)  # the prior's own limit is drawn (dashed) when it is inside the plot
    dashed = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1
    assert_allclose(dashed[0].get_ydata(), 47.5, rtol=1e-6)
    plt.close(fig)
    log_model = PotentialModel(dark_disk=bp.DarkDisk(surface_density=dist.LogUniform(1e4, 1e8), scale_height=0.1))
    table = dark_disk_limits(log_model, None, [0.1], q=0.9)
    assert_allclose(table.loc[0.1, "prior_upper_Msun_pc2"], 1e4 * 1e4**0.9 * 1e-6, rtol=1e-5)  # a (b/a)^q
    # a LogUniform prior's mass sits at small Σ: with a posterior below 2 M☉/pc² (limit ≈ 1.8 at q = 0.9, 5 % of the
    # prior's own 39.8) the prior alone holds log(L/a)/log(b/a) ≈ 0.56 of its mass below the limit, above q/2
    wide["dark_disk.surface_density"] = rng.uniform(0.0, 2e6, size=(2, 2000))
    table = dark_disk_limits(log_model, None, [0.1], q=0.9)
    ul = table.loc[0.1, "Sigma_DD_upper_Msun_pc2"] * 1e6
    assert_allclose(table.loc[0.1, "prior_mass_below_limit"], np.log(ul / 1e4) / np.log(1e4), rtol=1e-5)
    assert table.loc[0.1, "prior_mass_below_limit"] > 0.45 > 0.1 > table.loc[0.1, "limit_over_prior"]
    assert_allclose(table.loc[0.1, "prior_lower_Msun_pc2"], 0.01, rtol=1e-6)  # LogUniform's lower end, M☉/pc²
    # a prior that reaches below 0 is judged on its Σ ≥ 0 part: Normal(0, 10 M☉/pc²), (Φ(L/10) − ½)/½ ≈ 0.15 at L ≈ 1.9
    import scipy.stats

    normal_model = PotentialModel(dark_disk=bp.DarkDisk(surface_density=dist.Normal(0.0, 1e7), scale_height=0.1))
    table = dark_disk_limits(normal_model, None, [0.1])
    ul = table.loc[0.1, "Sigma_DD_upper_Msun_pc2"]
    assert_allclose(table.loc[0.1, "prior_mass_below_limit"], 2 * scipy.stats.norm.cdf(ul / 10.0) - 1, rtol=1e-4)
    assert table.loc[0.1, "prior_mass_below_limit"] < 0.2 and table.loc[0.1, "prior_lower_Msun_pc2"] == -np.inf
    # ... and so are the limit and the prior's own: a posterior equal to that Normal prior gave 16.4 M☉/pc² (its
    # quantile over Σ < 0 too), only 90 % of the physical mass; on Σ ≥ 0 the 95 % limit is 10 Φ⁻¹(0.975) = 19.6
    wide["dark_disk.surface_density"] = rng.normal(0.0, 1e7, size=(2, 20000))
    table = dark_disk_limits(normal_model, None, [0.1])
    assert_allclose(table.loc[0.1, "prior_upper_Msun_pc2"], 10 * scipy.stats.norm.ppf(0.975), rtol=1e-4)
    assert_allclose(table.loc[0.1, "Sigma_DD_upper_Msun_pc2"], 19.60, rtol=0.02)
    assert_allclose(table.loc[0.1, "prior_mass_below_limit"], 0.95, atol=0.01)
    wide["dark_disk.surface_density"] = rng.normal(-3e7, 1e7, size=(2, 20000))  # data that prefer Σ < 0
    table = dark_disk_limits(normal_model, None, [0.1])
    assert "draws of dark_disk.surface_density have Σ ≥ 0" in table.loc[0.1, "problems"]
    # a draw that is not finite: no limit, and the problem is named (one NaN among 4000 had made every column NaN
    # with no word, and the exclusion plot raised on a NaN axis limit)
    wide["dark_disk.surface_density"] = rng.uniform(0.0, 5e6, size=(2, 2000))
    wide["dark_disk.surface_density"][0, 7] = np.nan
    table = dark_disk_limits(model, None, [0.05, 0.1])
    assert np.isnan(table["Sigma_DD_upper_Msun_pc2"]).all()
    assert "2 of 4000 draws" not in table.loc[0.1, "problems"] and "1 of 4000 draws" in table.loc[0.1, "problems"]
    from bayesdyn.pipeline._stages import limit_run_caveats

    assert any("h = 100 pc" in ln and "not finite: no limit" in ln for ln in limit_run_caveats(table, []))
    table.loc[0.05, "Sigma_DD_upper_Msun_pc2"] = 3.0  # one finite limit beside a NaN one: the plot draws it
    plt.close(plot_dark_disk_limits(table))
    wide["dark_disk.surface_density"] = rng.uniform(0.0, 50e6, size=(2, 2000))
    # a prior whose icdf NumPyro leaves to TFP: from draws; Gamma(2, 1/(5e6)) has its 95 % quantile at 23.72 M☉/pc²
    gamma_model = PotentialModel(dark_disk=bp.DarkDisk(surface_density=dist.Gamma(2.0, 1 / 5e6), scale_height=0.1))
    table = dark_disk_limits(gamma_model, None, [0.1])
    assert_allclose(table.loc[0.1, "prior_upper_Msun_pc2"], 23.7193, rtol=0.01)
    ul = table.loc[0.1, "Sigma_DD_upper_Msun_pc2"]  # Gamma(2, scale 5): CDF 1 − (1 + x/5) e^{−x/5}, x in M☉/pc²
    assert_allclose(table.loc[0.1, "prior_mass_below_limit"], 1 - (1 + ul / 5) * np.exp(-ul / 5), rtol=1e-4)

    class NoCdfUniform(dist.Uniform):  # a prior without a CDF: the mass comes from draws
        def cdf(self, value):
            raise NotImplementedError

    table = dark_disk_limits(PotentialModel(dark_disk=bp.DarkDisk(surface_density=NoCdfUniform(0.0, 50e6),
                                                                  scale_height=0.1)), None, [0.1])
    assert_allclose(table.loc[0.1, "prior_mass_below_limit"], table.loc[0.1, "Sigma_DD_upper_Msun_pc2"] / 50.0,
                    atol=0.003)  # 400 000 draws: σ ≈ 0.0003


def test_check_judges_each_members_effective_sample_size():
    """Posterior.check judges the members' own runs' effective draws, summed (their re-centred draws together make
    the combined posterior's within-member part), not the combined draws' ESS, which each independent
    between-member draw inflates."""
    rng = np.random.default_rng(2)
    post = Posterior({"h.m": rng.normal(1.0, 0.1, size=(4, 1000))}, {"diverging": np.zeros((4, 1000), bool),
                                                                      "num_divergences": 0})
    assert post.check(warn=False) == []
    post.info["combine"] = {"member_max_r_hat": [1.001, 1.002], "member_min_ess": [1500.0, 150.0]}
    assert post.check(warn=False) == []  # together the members' draws are enough
    post.info["combine"]["member_min_ess"] = [150.0, 120.0]
    problems = post.check(warn=False)
    assert len(problems) == 1 and "together 270 < 400" in problems[0]
    # a combination with few degrees of freedom is named in the Markdown table (its sd is unstable)
    assert "degrees of freedom" not in post.to_markdown()
    post.info["combine"]["dof"] = 1.7
    assert "ν = 1.7 degrees of freedom" in post.to_markdown()


def test_check_flags_a_derived_sites_member_r_hat_beyond_the_free_parameters():
    """The members' largest r̂ per site is the table's; member_max_r_hat is over the free parameters only, so a derived
    site's r̂ of 1.08 in one member (a nonlinear quantity can mix worse) showed in to_markdown with no warning."""
    rng = np.random.default_rng(3)
    samples = {"halo.scale_density": rng.normal(1e7, 1e6, (8, 1000)), "derived.rho_dm_sun": rng.normal(1e7, 1e6, (8, 1000))}
    good = {"r_hat": [1.002, 1.003], "ess_bulk": [900.0, 800.0], "ess_tail": [700.0, 650.0]}

    def check(derived_rhat):
        info = {"free_parameters": ["halo.scale_density"], "num_divergences": 0,
                "combine": {"n_members": 2, "dof": 8.0, "member_max_r_hat": [1.003, 1.002], "member_min_ess": [650.0, 700.0],
                            "member_diagnostics": {"halo.scale_density": good,
                                                   "derived.rho_dm_sun": {**good, "r_hat": derived_rhat}}}}
        return Posterior(samples, info).check(warn=False)

    assert check([1.001, 1.004]) == []
    problems = check([1.001, 1.08])
    assert len(problems) == 1 and "['derived.rho_dm_sun'] in a member's posterior (max 1.080)" in problems[0]


def test_stuck_chains_are_not_converged():
    """Chains that never move (seen: every chain of one flow member's run sitting at a prior's edge) or run off to
    infinity have no r̂: infer's restart test counts them as unconverged (r̂ = inf, so the member is rerun from starts
    near the mode) and Posterior.check names them, where both used to skip a parameter without spread."""
    from bayesdyn.inference._infer import RESTART_RHAT, _max_rhat

    rng = np.random.default_rng(3)
    moving = rng.normal(1.0, 0.1, size=(4, 500))
    assert _max_rhat({"a": moving, "b": moving[::-1]}, ["a", "b"]) < RESTART_RHAT
    stuck = np.full((4, 500), 3e7)
    run_away = np.full((4, 500), np.inf)
    assert _max_rhat({"a": moving, "b": stuck}, ["a", "b"]) == np.inf
    assert _max_rhat({"a": moving, "b": run_away}, ["a", "b"]) == np.inf
    info = {"diverging": np.zeros((4, 500), bool), "free_parameters": ["h.m", "dd.s"]}
    problems = Posterior({"h.m": moving, "dd.s": stuck, "derived.c": np.ones((4, 500))}, info).check(warn=False)
    assert len(problems) == 1 and "['dd.s'] never move or are not finite" in problems[0], problems
    # a constant derived quantity, or a constant site that is not a free parameter (a custom model's deterministic
    # site), is not a stuck chain; non-finite draws are a problem wherever they are
    assert Posterior({"h.m": moving, "derived.c": np.ones((4, 500))}, info).check(warn=False) == []
    assert Posterior({"h.m": moving, "det": stuck}, info).check(warn=False) == []
    with pytest.warns(ConvergenceWarning, match="stuck"):
        Posterior.from_samples({"h.m": moving, "d.m": run_away}, info)
    # a member still stuck after its restart is not told to run longer
    info_m = {**info, "combine": {"member_max_r_hat": [1.001, float("inf")], "member_min_ess": [900.0, 900.0]}}
    (problem,) = Posterior({"h.m": moving}, info_m).check(warn=False)
    assert "member(s) [1] (max inf)" in problem and "never moved" in problem and "run longer" not in problem
    # the dark-disk limit runs' summary keeps such a member's r̂ (inf), so the run counts as unconverged
    from bayesdyn.results._limits import _max_finite

    assert _max_finite([1.001, float("inf")]) == float("inf") and np.isnan(_max_finite([np.nan]))


def test_single_posterior_with_disagreeing_chains_is_rerun_from_the_mode(monkeypatch):
    """combine="mean" (one posterior, e.g. exact scores or the weak form) reruns every chain from starts near the
    mode when r̂ > RESTART_RHAT, as a flow member's run does: in examples/dark_disk_limits.py at h_DD = 200 pc one
    chain sat at the prior's edge (r̂ 1.6, 629 divergences, a 'limit' of 30 M☉/pc²); after the restart r̂ = 1.003 and
    the limit 2.17. Here the first run is made to look stuck, on accelerations with 0.6 % errors: from prior draws
    whose log density is ~10⁴–10⁸ below the mode, _mode_starts ends near the truth, not in a corner of the prior
    (plain BFGS from prior points once took one step of ~10³ unconstrained units into one)."""
    import jax.numpy as jnp
    from numpyro.infer.util import constrain_fn

    from bayesdyn.inference import _infer

    with jax.enable_x64(True):
        truth = bp.NFW(scale_density=8.5e6, scale_radius=16.0)
        x = np.random.default_rng(4).normal([-8.0, 0.0, 0.0], 0.6, size=(48, 3))
        a = np.asarray(truth.acceleration(jnp.asarray(x)))
        cov = (0.006 * np.linalg.norm(a, axis=1))[:, None, None] ** 2 * np.eye(3)
        data = AccelerationData.create(x, a, cov, sun=[-8.122, 0.0, 0.0208])
    model = PotentialModel(halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=16.0))
    real, calls, starts = _infer._max_rhat, [], []
    monkeypatch.setattr(_infer, "_max_rhat", lambda s, n: calls.append(1) or (np.inf if len(calls) == 1 else real(s, n)))
    real_starts = _infer._mode_starts
    monkeypatch.setattr(_infer, "_mode_starts", lambda *a: starts.append(real_starts(*a)) or starts[-1])
    with pytest.warns(ConvergenceWarning):  # 2 × 100 draws: too few for the ESS line
        post = infer(model, data, seed=0, num_chains=2, num_warmup=100, num_samples=100, progress=False,
                     combine="mean")
    assert post.info.get("restarted") is True and len(starts) == 1
    with jax.enable_x64(True):
        found = [float(constrain_fn(model, (data,), {}, {k: v[c] for k, v in starts[0].items()})["halo.scale_density"])
                 for c in range(2)]
    # the chains start within the jitter (0.3 in log ρ_s) of the mode, which is the truth here
    assert all(abs(np.log(f / 8.5e6)) < 1.0 for f in found), found
    assert abs(np.median(post.samples["halo.scale_density"]) / 8.5e6 - 1) < 0.02  # the truth, a 0.6 % fit
    assert len(calls) == 2 and post.info["kept_run"] == "rerun"  # the rerun is judged too, and kept: the lower r̂
    assert post.info["rerun"]["max_r_hat"] < 1.05 and post.info["first_run"]["max_r_hat"] == np.inf
    assert post.info["wall_time_s"] > post.info["first_run"]["wall_time_s"]
    calls.clear()  # restart=False (runs known to be too short): the stuck-looking run is kept, no search
    with pytest.warns(ConvergenceWarning):
        kept = infer(model, data, seed=0, num_chains=2, num_warmup=100, num_samples=100, progress=False,
                     combine="mean", restart=False)
    assert "restarted" not in kept.info and len(starts) == 1 and calls == []


def test_a_rerun_that_ends_worse_than_the_first_run_is_not_kept(monkeypatch):
    """The restart's starts can end worse (a corner of the priors): the run with the lower r̂ is kept, and both runs'
    r̂ are recorded (the rerun replaced the first run whatever its r̂)."""
    from bayesdyn.inference import _infer

    runs = iter([({"p.a": np.zeros((2, 5))}, {"diverging": np.zeros((2, 5), bool), "wall_time_s": 1.0}),
                 ({"p.a": np.ones((2, 5))}, {"diverging": np.ones((2, 5), bool), "wall_time_s": 2.0})])
    monkeypatch.setattr(_infer, "_run_nuts", lambda *a, **k: next(runs))
    monkeypatch.setattr(_infer, "_mode_starts", lambda *a: None)
    r_hats = iter([1.3, 2.0])
    monkeypatch.setattr(_infer, "_max_rhat", lambda s, n: next(r_hats))
    args = (None, None, 0, 2, 5, 5, "numpyro")
    samples, info = _infer._nuts_restarting(args, {"p.a": dist.Normal()}, True, 1)
    assert np.all(samples["p.a"] == 0) and info["kept_run"] == "first run" and not info["diverging"].any()
    assert (info["first_run"]["max_r_hat"], info["rerun"]["max_r_hat"]) == (1.3, 2.0)
    assert info["rerun"]["num_divergences"] == 10 and info["wall_time_s"] == 3.0


def test_every_potential_parameter_has_a_unit_in_the_tables():
    """Posterior tables label each parameter with its unit: every parameter of every bayesdyn.potentials component
    has an entry (dimensionless ones ""), so a new one cannot silently print without its unit."""
    import inspect

    from bayesdyn.results._posterior import _PARAM_UNITS

    names = {p for _, c in inspect.getmembers(bp, inspect.isclass) for p in (getattr(c, "parameter_names", ()) or ())}
    assert names and not names - set(_PARAM_UNITS), sorted(names - set(_PARAM_UNITS))
    assert _PARAM_UNITS["tilt"] == "deg" and _PARAM_UNITS["surface_density"] == "Msun/kpc2"

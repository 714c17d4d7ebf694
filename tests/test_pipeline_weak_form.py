"""The main job with ``inference.likelihood = "weak_form"``: catalog → the stars' weak-form moments → NUTS → report,
with no flows and no nodes."""

import copy
import warnings

import numpy as np
import pytest

#: validate.DiskMock.model(): MWPotential2014's shapes, the disk mass and the halo density free
MODEL = {
    "bulge": {"type": "PowerLawCutoff", "mass": 4.501365375100717e9, "alpha": 1.8, "cutoff_radius": 1.9},
    "disk": {"type": "MiyamotoNagai", "mass": {"prior": "LogUniform", "low": 1e10, "high": 3e11}, "a": 3.0, "b": 0.28},
    "halo": {"type": "NFW", "scale_density": {"prior": "LogUniform", "low": 1e5, "high": 1e9}, "scale_radius": 16.0,
             "dark": True},
}
CONFIG = {
    "catalog": {"max_stars": 10_000},
    "inference": {"likelihood": "weak_form", "num_chains": 1, "num_warmup": 150, "num_samples": 200},
    "model": MODEL,
    "report": {"dark_disk_scale_heights_kpc": [], "corner": False},
}


@pytest.mark.filterwarnings("ignore:effective sample size")  # one short chain
def test_weak_form_run_needs_no_flows_and_covers_the_mocks_truth(tmp_path):
    from bayesdyn.pipeline import Run, validate_config

    logs = []
    run = Run(validate_config(copy.deepcopy(CONFIG)), folder=tmp_path, progress=False, log=logs.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run.all()
    # one short chain: infer warns once; the report's tables carry it and do not warn it twice more (it came 3×)
    said = [str(w.message) for w in caught if "effective sample size" in str(w.message)]
    assert len(said) == 1 and not said[0].startswith(("to_latex", "local_dm_line")), said
    assert "effective sample size" in (out / "constraints.md").read_text()
    assert not (tmp_path / "accelerations.npz").exists() and not (tmp_path / ".psd.stamp").exists()
    assert any("ball: the mock's sphere" in line for line in logs)  # seen through the stage's random subset
    check = (out / "truth_check.md").read_text()
    rows = [ln for ln in check.splitlines() if ln.startswith("| `derived.")]
    assert len(rows) == 5 and all(ln.split("|")[7].strip() == "yes" for ln in rows), check
    assert "| `derived.rho_total_sun` | Msun/kpc3 |" in check  # units beside the numbers
    # ρ_DM(⊙), the headline number, against the mock's halo (it was left out of the truth check): galpy's
    from galpy.potential import MWPotential2014, evaluateDensities

    import bayesdyn as bd

    sun = np.asarray(bd.mocks.mock_solar_parameters().position, float)
    dm = evaluateDensities(MWPotential2014[2], np.hypot(*sun[:2]) / 8.0, sun[2] / 8.0) * 220.0**2 / (8.0**2 * bd.units.G)
    assert f"| `derived.rho_dm_sun` | Msun/kpc3 | {dm:.4g} |" in check, (dm, check)
    summary = (out / "local_dm.txt").read_text().splitlines()
    assert summary[0].startswith("Weak-form fit: 10000 stars, 30 moments; over-identification test J = ")
    assert any(ln.startswith("CAVEAT: intervals from the weak-form fit") for ln in summary)
    assert not any("was cut before the weak form's ball" in ln for ln in summary)  # the random subset is harmless
    assert not any("counts the dark disk" in ln for ln in summary)  # this model has none
    post_file = tmp_path / "posterior.nc"
    stamp = post_file.stat().st_mtime_ns
    again = Run(validate_config(copy.deepcopy(CONFIG)), folder=tmp_path, progress=False, log=logs.append)
    cat = again.catalog()
    data = again.weak_form(cat)
    post = again.posterior(data)
    assert post_file.stat().st_mtime_ns == stamp and "reusing" in logs[-2]
    # dark-disk limits asked of a model without a dark disk: skipped, and the log says so (it was silent)
    again.cfg["report"]["dark_disk_scale_heights_kpc"] = [0.1]
    logs.clear()
    again.report(post, data, cat)
    assert any(line.startswith("[report] no dark-disk limits: ") for line in logs), logs
    assert not (out / "dark_disk_limits.csv").exists()


def test_posterior_key_counts_the_weak_form_settings_and_keeps_the_node_key(tmp_path):
    from bayesdyn.pipeline import Run, validate_config
    from bayesdyn.pipeline._stages import _CACHE_VERSION, _fingerprint

    def key(**tables):
        cfg = copy.deepcopy(CONFIG)
        for name, table in tables.items():
            cfg.setdefault(name, {}).update(table)
        return Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).posterior_key()

    base = key()
    assert key(weak_form={"degree_x": 3}) != base
    assert key(weak_form={"volume": [8.0, 0.0, 0.02, 1.5]}) != base
    assert key(errors={"correct": True}) != base
    assert key(weak_form={"efficiency_column": "eps"}) != base
    from bayesdyn.pipeline._stages import _WEAK_VERSION

    cfg = validate_config(copy.deepcopy(CONFIG))
    (tmp_path / ".catalog.stamp").write_text("cat\n")
    wf = {k: v for k, v in cfg["weak_form"].items() if k != "efficiency_column"}
    before = _fingerprint(cfg["inference"], cfg["model"], cfg["seed"], wf, "cat", _WEAK_VERSION, _CACHE_VERSION)
    assert Run(cfg, folder=tmp_path, log=lambda *_: None).posterior_key() == before  # the key before the column
    nodes = dict(CONFIG, inference={"num_chains": 2})
    cfg = validate_config(copy.deepcopy(nodes))
    (tmp_path / ".accelerations.stamp").write_text("abc\n")
    from bayesdyn.pipeline._stages import _COMBINE_VERSION

    inference = {k: v for k, v in cfg["inference"].items() if k != "likelihood"}
    legacy = _fingerprint(inference, cfg["model"], cfg["seed"], "abc", _CACHE_VERSION)  # before inference.likelihood
    # the node key is the legacy one plus the members' combination version: posteriors combined by the old rule
    # (before 2026-12-07) are recomputed, not reused
    now = _fingerprint(inference, cfg["model"], cfg["seed"], "abc", _COMBINE_VERSION, _CACHE_VERSION)
    assert Run(cfg, folder=tmp_path, log=lambda *_: None).posterior_key() == now != legacy


@pytest.mark.parametrize("table, match", [
    ({"inference": {"likelihood": "weak"}}, r"'inference.likelihood' must be \"nodes\" or \"weak_form\""),
    ({"inference": {"likelihood": "weak_form", "combine": "members"}}, "uses no flows"),
    ({"inference": {"likelihood": "weak_form"}, "weak_form": {"volume": [8.0, 0.0, 0.0]}}, r"\[x, y, z, radius\]"),
    ({"inference": {"likelihood": "weak_form"}, "weak_form": {"volume": [8.0, 0.0, 0.0, -1.0]}}, "radius > 0"),
    ({"inference": {"likelihood": "weak_form"}, "weak_form": {"degree_v": 0}}, "degree_v' ≥ 1"),
])
def test_weak_form_settings_are_checked(table, match):
    from bayesdyn.pipeline import ConfigError, validate_config

    with pytest.raises(ConfigError, match=match):
        validate_config(table)


def test_a_catalog_without_a_complete_ball_names_the_setting(tmp_path):
    import bayesdyn as bd
    from bayesdyn.pipeline import ConfigError, Run, validate_config

    rng = np.random.default_rng(0)
    cat = bd.Catalog(x=rng.normal(0, 1, (5000, 3)) + [8, 0, 0], v=rng.normal(0, 30, (5000, 3)))
    run = Run(validate_config(copy.deepcopy(CONFIG)), folder=tmp_path, log=lambda *_: None)
    with pytest.raises(ConfigError, match=r"none is recorded with this catalog.*weak_form.volume = \[x, y, z, radius\]"):
        run.weak_form(cat)
    cfg = copy.deepcopy(CONFIG)
    cfg["weak_form"] = {"volume": [8.0, 0.0, 0.0, 1.5]}
    data = Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(cat)
    inside = np.linalg.norm(np.asarray(cat.x) - [8, 0, 0], axis=1) < 1.5
    assert data.n_stars == inside.sum()


def test_error_correction_settings_choose_the_weak_forms_errors(tmp_path):
    """errors.correct: position_error_kpc gives the moments position-error terms (σ per axis, window (1 − ρ²)³);
    with weak_form.degree_v ≠ 1 that is refused with the fix named, not dropped."""
    import bayesdyn as bd
    from bayesdyn.pipeline import ConfigError, Run, validate_config

    rng = np.random.default_rng(0)
    cat = bd.Catalog(x=rng.normal(0, 1, (5000, 3)) + [8, 0, 0], v=rng.normal(0, 30, (5000, 3)))
    cfg = copy.deepcopy(CONFIG)
    cfg["weak_form"] = {"volume": [8.0, 0.0, 0.0, 1.5]}
    cfg["errors"] = {"correct": True, "position_error_kpc": 0.05, "velocity_error_kms": 5.0}
    data = Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(cat)
    np.testing.assert_allclose(np.asarray(data.position_covariance), np.broadcast_to(0.05**2 * np.eye(3),
                                                                                     (data.n_stars, 3, 3)), rtol=1e-6)
    cfg["weak_form"]["degree_v"] = 2
    with pytest.raises(ConfigError, match="needs weak_form.degree_v = 1"):
        Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(cat)
    cfg["errors"]["position_error_kpc"] = 0.0  # velocities only: fine with degree_v = 2
    assert Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(cat).position_covariance is None
    # degree_v = 3 with velocity errors: the config key to change is named (weak_form_data's message named none)
    cfg["weak_form"]["degree_v"] = 3
    with pytest.raises(ConfigError, match=r"for weak_form.degree_v ≤ 2 only \(got 3\): set weak_form.degree_v to 1 or 2"):
        Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(cat)
    # a ball with too few stars names config keys, not weak_form_data's min_stars argument
    cfg = copy.deepcopy(CONFIG)
    cfg["weak_form"] = {"volume": [8.0, 0.0, 0.0, 0.2]}
    with pytest.raises(ConfigError, match=r"only \d+ stars lie inside the ball.*a larger radius in weak_form.volume"):
        Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(cat)


def test_error_correction_with_both_errors_zero_takes_the_catalogs_gaia_covariance(tmp_path):
    """errors.correct with both numbers 0: the catalog's whole 6 × 6 covariance from its Gaia columns, x–v
    correlations included, and the errors' mean (Catalog.error_mean), the same moments as
    weak_form_data(..., position_errors="catalog"); a catalog without Gaia columns gets an error naming both
    settings."""
    import bayesdyn as bd
    from bayesdyn.pipeline import ConfigError, Run, validate_config
    from test_catalog import fake_gaia

    cat = bd.Catalog.from_gaia(fake_gaia(n=1500, seed=1))  # within 5 kpc: all in the 6-kpc ball
    cfg = copy.deepcopy(CONFIG)
    cfg["weak_form"] = {"volume": [*map(float, cat.solar.position), 6.0], "degree_x": 1}
    cfg["errors"] = {"correct": True}
    run = Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None)
    data = run.weak_form(cat)
    assert run.weak_position_errors and run.weak_velocity_errors and run.weak_error_mean
    direct = bd.weak_form_data(cat, volume=(cat.solar.position, 6.0), position_errors="catalog",
                               velocity_errors="catalog", degree_x=1)
    np.testing.assert_allclose(np.asarray(data.transport), np.asarray(direct.transport), rtol=1e-12)
    inside = np.linalg.norm(np.asarray(cat.x) - cat.solar.position, axis=1) < 6.0
    np.testing.assert_allclose(np.asarray(data.position_covariance), cat.covariance()[inside, :3, :3], rtol=1e-6)
    assert "nor the mean the parallax errors add" not in run.weak_errors_line()
    # degree_v = 2: the velocity block only; the report says that the mean the parallax errors add to the tangential
    # velocities stays (it had read "the velocity errors' bias on the moments is removed", a review)
    cfg2 = copy.deepcopy(cfg)
    cfg2["weak_form"]["degree_v"] = 2
    logs = []
    run2 = Run(validate_config(cfg2), folder=tmp_path, log=logs.append)
    run2.weak_form(cat)
    assert any("velocity errors' bias removed (not the mean the parallax errors add" in line for line in logs)
    assert run2.weak_velocity_errors and not run2.weak_position_errors
    line = run2.weak_errors_line()
    assert line.startswith("Measurement errors: the velocity errors' bias on the moments is removed")
    assert "nor the mean the parallax errors add to the tangential velocities" in line
    plain = bd.Catalog(x=np.asarray(cat.x), v=np.asarray(cat.v))  # no Gaia error columns
    with pytest.raises(ConfigError, match="errors.velocity_error_kms and errors.position_error_kpc"):
        Run(validate_config(cfg), folder=tmp_path, log=lambda *_: None).weak_form(plain)


def test_cuts_before_the_ball_are_named(tmp_path):
    """A cut made before the recorded sphere (here on velocity) is named for the report; the sphere's own is not."""
    import bayesdyn as bd
    from bayesdyn.pipeline import Run, validate_config

    rng = np.random.default_rng(1)
    cat = bd.Catalog(x=rng.normal(0, 1, (6000, 3)) + [8, 0, 0], v=rng.normal(0, 30, (6000, 3)))
    fast = cat.select(np.linalg.norm(np.asarray(cat.v), axis=1) < 80, "|v| < 80 km/s")
    for c, named in ((cat, []), (fast, ["|v| < 80 km/s"])):
        run = Run(validate_config(copy.deepcopy(CONFIG)), folder=tmp_path, log=lambda *_: None)
        run.weak_form(c.within(1.5, center=[8.0, 0.0, 0.0]))
        assert run.weak_cuts == named


def test_command_line_likelihood_overrides_the_config_and_is_validated(tmp_path):
    from bayesdyn.cli import _config, build_parser
    from bayesdyn.pipeline import ConfigError

    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('[inference]\nnum_chains = 2\n')
    args = build_parser().parse_args(["run", str(cfg_file), "--likelihood", "weak_form"])
    assert _config(args)["inference"] == dict(_config(build_parser().parse_args(["run", str(cfg_file)]))["inference"],
                                              likelihood="weak_form")
    cfg_file.write_text('[inference]\ncombine = "members"\n')
    with pytest.raises(ConfigError, match="uses no flows"):
        _config(build_parser().parse_args(["run", str(cfg_file), "--likelihood", "weak_form"]))
    assert _config(build_parser().parse_args(["demo", "--likelihood", "weak_form"]), {})["inference"]["likelihood"] == \
        "weak_form"
    # the file is validated with the option in place (it had been checked with its own likelihood first): a weak-form
    # ε column is accepted under --likelihood weak_form, and the unused-settings warning names the run's unused ones
    import warnings

    cfg_file.write_text('[weak_form]\nefficiency_column = "eps"\n')
    assert _config(build_parser().parse_args(["run", str(cfg_file), "--likelihood", "weak_form"]))["weak_form"][
        "efficiency_column"] == "eps"
    cfg_file.write_text('[weak_form]\ndegree_x = 3\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the settings are used: no warning
        _config(build_parser().parse_args(["run", str(cfg_file), "--likelihood", "weak_form"]))
    cfg_file.write_text('[psd]\nmax_epochs = 5\n')
    with pytest.warns(UserWarning, match=r"settings not used by this run: \[psd\]"):
        _config(build_parser().parse_args(["run", str(cfg_file), "--likelihood", "weak_form"]))
    # the demo's own settings are not the user's: no warning about its [psd] and [nodes] under weak_form
    from bayesdyn.cli import DEMO_OVERRIDES

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _config(build_parser().parse_args(["demo", "--likelihood", "weak_form"]),
                       copy.deepcopy(DEMO_OVERRIDES))["psd"]["n_layers"] == DEMO_OVERRIDES["psd"]["n_layers"]
    # a malformed table in the file is still named when an option goes into it (it was replaced)
    cfg_file.write_text('inference = 3\n')
    with pytest.raises(ConfigError, match="'inference' must be a table"):
        _config(build_parser().parse_args(["run", str(cfg_file), "--likelihood", "weak_form"]))


@pytest.mark.filterwarnings("ignore:effective sample size")  # short chains
@pytest.mark.filterwarnings("ignore:r̂")
def test_weak_form_report_without_truth_with_dark_disk_limits(tmp_path, monkeypatch):
    """A catalog file (no truth: the real-data branch) with the default model's dark disk: the reference check
    against MWPotential2014, a finite dark-disk limit from the weak form (its runs at the configured target_accept),
    and errors.correct with position errors only: the position errors' bias is removed, the velocities' is not
    claimed."""
    import bayesdyn as bd
    import bayesdyn.results
    from bayesdyn.pipeline import Run, validate_config

    limit_runs = []
    real_limits = bayesdyn.results.dark_disk_limits

    def recorded(*args, **kwargs):
        limit_runs.append(kwargs)
        return real_limits(*args, **kwargs)

    monkeypatch.setattr(bayesdyn.results, "dark_disk_limits", recorded)

    cat, _ = bd.mocks.load_default()
    keep = np.zeros(cat.n, bool)
    keep[np.random.default_rng(0).choice(cat.n, 8000, replace=False)] = True
    path = tmp_path / "stars.npz"
    stars = cat.select(keep, "random subset")
    del stars.meta["truth"]  # as real data: the mock file's recorded truth would be checked against
    stars.save(path)
    cfg = validate_config({
        "catalog": {"source": str(path)},
        "inference": {"likelihood": "weak_form", "num_chains": 1, "num_warmup": 150, "num_samples": 200,
                      "target_accept": 0.85},
        "weak_form": {"volume": [-8.0, 0.0, 0.0208, 2.0]},
        "errors": {"correct": True, "position_error_kpc": 0.01},
        "report": {"dark_disk_scale_heights_kpc": [0.1], "corner": False},
    })
    logs = []
    out = Run(cfg, folder=tmp_path / "run", progress=False, log=logs.append).all()
    assert "| `derived.v_circ_R0` | km/s | 220 |" in (out / "reference_check.md").read_text()
    limit = float(np.asarray(__import__("pandas").read_csv(out / "dark_disk_limits.csv")["Sigma_DD_upper_Msun_pc2"])[0])
    assert 0 < limit < 30  # M☉/pc²: inside the prior U(0, 30)
    assert [k.get("target_accept") for k in limit_runs] == [0.85]  # they had run at infer's default 0.8
    summary = (out / "local_dm.txt").read_text()
    assert summary.startswith("Weak-form fit: 8000 stars")
    errors_line = summary.split("Measurement errors:")[1].split("\n")[0]
    assert errors_line.startswith(" the position errors' bias on the moments is removed (positions to second order")
    assert "velocity errors are not corrected" in errors_line and "(1 − ρ²)³" in errors_line
    assert any("position errors' bias removed to second order" in line for line in logs)
    assert "random subset" in summary  # a cut this stage did not make is named for the reader
    assert "ρ_DM(⊙) counts the dark disk (dark_disk)" in summary  # the default model's prior-edge bias
    # the limit runs' CAVEATs are in the report folder, not only on the terminal (one chain: no r̂, but the limit
    # holds more than half its credibility under the prior, or the short run's ESS is low)
    caveats = [line for line in logs if line.startswith("[report] CAVEAT")]
    assert caveats and all(line in summary for line in caveats), (caveats, summary)
    # a rerun without the limits (every stage cached, the report made again) leaves no limits from the first run
    cfg["report"]["dark_disk_scale_heights_kpc"] = []
    Run(cfg, folder=tmp_path / "run", progress=False, log=logs.append).all()
    assert not (out / "dark_disk_limits.csv").exists() and not (out / "dark_disk_exclusion.png").exists()
    assert (out / "reference_check.md").is_file() and (out / "constraints.md").is_file()


def test_efficiency_column_weights_the_moments_by_one_over_epsilon(tmp_path):
    """weak_form.efficiency_column: two 90 %-deep dust clouds (mocks.apply_dust) in 3 × 10⁴ stars of the shipped disk
    mock, ε saved as a catalog column. The stage's moments are weak_form_data's with efficiency=ε; at the true
    potential their χ² over the 30 moments is χ²-like (21.8 measured, 17.3 for the same stars without dust) where
    the unweighted moments' is 295. Settings that cannot work are refused naming the key and the fix."""
    import jax

    import bayesdyn as bd
    from bayesdyn.pipeline import ConfigError, Run, validate_config

    cat, truth = bd.mocks.load_default()
    cat = cat.select(np.random.default_rng(0).permutation(cat.n) < 30_000, "random subset")
    sun = np.array([-8.0, 0.0, 0.0208])  # the mock's 2-kpc sphere's centre
    dust = bd.mocks.DustModel(sun + np.array([[0.5, 0.0, 0.0], [-0.4, 0.6, 0.1]]), [0.3, 0.3], [0.9, 0.9])
    dusty, _ = bd.mocks.apply_dust(cat, dust, seed=1)
    dusty.columns["eps"] = 0.5 * np.asarray(dust.efficiency(dusty.x))  # up to a constant
    dusty.columns["name"] = np.array(["star"] * dusty.n)
    path = tmp_path / "dusty.npz"
    dusty.save(path)
    cfg = copy.deepcopy(CONFIG)
    cfg["catalog"] = {"source": str(path)}
    cfg["weak_form"] = {"volume": [*sun, 2.0], "efficiency_column": "eps"}
    logs = []
    run = Run(validate_config(cfg), folder=tmp_path / "run", log=logs.append)
    data = run.weak_form(run.catalog())
    direct = bd.weak_form_data(dusty, volume=(sun, 2.0), efficiency=dust)
    assert data.n_stars == direct.n_stars == 28346
    np.testing.assert_allclose(np.asarray(data.transport), np.asarray(direct.transport), rtol=1e-5,
                               atol=1e-6 * float(np.abs(direct.transport).max()))
    e = run.weak_efficiency
    assert e["column"] == "eps" and e["n"] == 28346 and 0.05 < e["min"] < 0.1 and e["max"] == pytest.approx(0.5)
    assert any("weighted by 1/ε, ε from the catalog column 'eps'" in line for line in logs)
    assert run.selection_line().startswith(  # the report summary's line
        f"Selection: each star's moments are weighted by 1/ε, ε from the catalog column 'eps' "
        f"(weak_form.efficiency_column; {e['min']:.3g} to 0.5 over the 28346 stars in the ball).")

    def chi2(d):  # N ḡᵀ S⁻¹ ḡ at the true potential (MWPotential2014)
        with jax.enable_x64(True):
            g = np.asarray(d.moments(d.field(truth.acceleration)), np.float64)
        gbar = g.mean(0)
        return float(gbar @ np.linalg.solve(np.cov(g.T) / len(g), gbar))

    assert chi2(data) < 70  # χ²₃₀'s 99.999 % point
    assert chi2(bd.weak_form_data(dusty, volume=(sun, 2.0))) > 150
    # settings that cannot work
    bad = [({"weak_form": {"efficiency_column": "missing"}}, "no such column.*cat.save"),
           ({"weak_form": {"efficiency_column": "name"}}, "must hold numbers"),
           ({"errors": {"correct": True, "position_error_kpc": 0.01}}, "differentiates ε"),
           ({"errors": {"correct": True}}, "differentiates ε")]  # both 0: the catalog's errors, positions too
    for change, match in bad:
        c = copy.deepcopy(cfg)
        for table, values in change.items():
            c.setdefault(table, {}).update(values)
        with pytest.raises(ConfigError, match=match):
            Run(validate_config(c), folder=tmp_path / "run", log=lambda *_: None).weak_form(dusty)
    c = copy.deepcopy(cfg)
    c["errors"] = {"correct": True, "velocity_error_kms": 5.0}  # velocities alone: fine
    assert Run(validate_config(c), folder=tmp_path / "run", log=lambda *_: None).weak_form(dusty).n_stars == 28346
    dusty.columns["eps"][np.argmin(np.linalg.norm(np.asarray(dusty.x) - sun, axis=1))] = 0.0
    with pytest.raises(ConfigError, match="efficiency_column = 'eps'"):
        Run(validate_config(cfg), folder=tmp_path / "run", log=lambda *_: None).weak_form(dusty)
    c = copy.deepcopy(cfg)
    c["inference"]["likelihood"] = "nodes"
    with pytest.raises(ConfigError, match="flows route.*cannot use ε per star"):
        validate_config(c)


def test_catalog_stage_reads_an_edited_source_file_again(tmp_path):
    """The catalog stage's stamp ends in the source file's sha256, computed every run: the same file is reused, also
    when only touched; an edited one is read again, also at the same size (here: a new ε column, as when a user
    redoes their selection function) and with its old modification time; a run folder of an earlier version (a
    stamp without the hash, no record) keeps its cache."""
    import os

    import bayesdyn as bd
    from bayesdyn.pipeline import Run, validate_config

    rng = np.random.default_rng(0)
    cat = bd.Catalog(x=rng.normal(0, 1, (500, 3)) + [8, 0, 0], v=rng.normal(0, 30, (500, 3)),
                     columns={"eps": np.full(500, 0.5)})
    path = tmp_path / "stars.npz"
    cat.save(path)
    cfg = validate_config({"catalog": {"source": str(path)}})
    logs = []

    def stage():
        logs.clear()
        out = Run(cfg, folder=tmp_path / "run", log=logs.append).catalog()
        return out, any("reusing" in line for line in logs)

    stamp = tmp_path / "run" / ".catalog.stamp"  # what the later stages (flows, accelerations, posterior) key on
    assert stage()[0].columns["eps"][0] == 0.5
    first = stamp.read_text()
    assert stage()[1]  # the same file
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: the same content
    assert stage()[1] and stamp.read_text() == first
    cat.columns["eps"] = np.full(500, 0.25)  # the same size, other values
    cat.save(path)
    assert path.stat().st_size == st.st_size
    again, reused = stage()
    assert not reused and again.columns["eps"][0] == 0.25
    assert any("differs from the file the cached catalog was read from" in line for line in logs)
    # the later stages' key changes with the content (it stayed the same, and their old results were reused)
    edited = stamp.read_text()
    assert edited != first and edited.split(":")[0] == first.split(":")[0]
    # another file of the same size put in its place with the recorded times kept (cp -p, rsync -a, tar x): the
    # recorded size and modification time had vouched for it
    st = path.stat()
    cat.columns["eps"] = np.full(500, 0.75)
    cat.save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again, reused = stage()
    assert not reused and again.columns["eps"][0] == 0.75
    # the record gone (a run stopped between the stamp and the record, or deleted) and the file edited: the stamp's
    # sha256 decides (the file had been trusted and recorded as it was then)
    (tmp_path / "run" / ".catalog.source.json").unlink()
    cat.columns["eps"] = np.full(500, 0.25)
    cat.save(path)
    again, reused = stage()
    assert not reused and again.columns["eps"][0] == 0.25 and stamp.read_text() == edited
    (tmp_path / "run" / ".catalog.source.json").unlink()  # a folder of an earlier version: its cache is trusted,
    stamp.write_text(first.split(":")[0] + "\n")  # its stamp the key alone, which the later stages keep too
    cat.select(np.arange(500) < 400, "fewer").save(path)
    old, reused = stage()
    assert reused and old.n == 500 and stamp.read_text() == first.split(":")[0] + "\n"
    path.unlink()  # the file gone: the cached catalog is used, and says so
    old, reused = stage()
    assert reused and old.n == 500 and any("not found: using the catalog cached" in line for line in logs)


def test_efficiency_column_from_a_gaia_file(tmp_path):
    """A Gaia file with ε joined to its rows: the catalog stage keeps the column efficiency_column names (and reads
    the file again when the setting is added to a folder whose cached catalog lacks it), and the moments are
    weighted by it; a Gaia file without it is refused naming the setting."""
    from astropy.table import Table

    import bayesdyn as bd
    from bayesdyn.pipeline import ConfigError, Run, validate_config
    from test_catalog import fake_gaia

    t = Table(fake_gaia(n=1500, seed=1))
    t["eps"] = np.linspace(0.2, 1.0, len(t))
    path = tmp_path / "gaia.ecsv"
    t.write(path)
    cfg = copy.deepcopy(CONFIG)
    cfg["catalog"] = {"source": str(path)}
    sun = [*map(float, bd.SolarParameters().position)]
    cfg["weak_form"] = {"volume": [*sun, 6.0], "degree_x": 1}
    Run(validate_config(cfg), folder=tmp_path / "run", log=lambda *_: None).catalog()  # cached without ε
    cfg["weak_form"]["efficiency_column"] = "eps"
    run = Run(validate_config(cfg), folder=tmp_path / "run", log=lambda *_: None)
    cat = run.catalog()
    data = run.weak_form(cat)
    eps = cat.columns["eps"]
    rows = np.asarray(cat.columns["source_id"] - 10**18)
    np.testing.assert_array_equal(eps, t["eps"][rows])
    direct = bd.weak_form_data(cat, volume=(np.array(sun), 6.0), efficiency=eps, degree_x=1)
    plain = bd.weak_form_data(cat, volume=(np.array(sun), 6.0), degree_x=1)
    np.testing.assert_allclose(np.asarray(data.transport), np.asarray(direct.transport), rtol=1e-6)
    assert not np.allclose(np.asarray(data.transport), np.asarray(plain.transport), rtol=1e-3)
    del t["eps"]
    t.write(tmp_path / "no_eps.ecsv")
    cfg["catalog"] = {"source": str(tmp_path / "no_eps.ecsv")}
    with pytest.raises(ConfigError, match="efficiency_column = 'eps'.*lacks the column"):
        Run(validate_config(cfg), folder=tmp_path / "run2", log=lambda *_: None).catalog()


def test_check_tables_say_where_an_excluded_value_sits_among_skewed_draws(tmp_path):
    """The report's check against a reference (or the truth): for a right-skewed posterior that excludes the value
    from its 95 % interval at |median − value|/sd ≈ 1.6 (≈ 1.9 in σ₆₈, half the 68 % width, which the table now
    uses), the verdict says where the value sits among the draws (as the table's column does) instead of 'pulls up
    to 1σ'."""
    from types import SimpleNamespace

    from bayesdyn.pipeline import Run, validate_config
    from bayesdyn.potentials import MWPotential2014

    run = Run(validate_config(copy.deepcopy(CONFIG)), folder=tmp_path, log=lambda *_: None)
    rng = np.random.default_rng(0)
    mw = dict(MWPotential2014().items())
    data = SimpleNamespace(sun=np.array([-8.122, 0.0, 0.0208]))
    draws = 7.544e6 * (1.25 + rng.lognormal(0.0, 0.6, 4000))  # all above MWPotential2014's ρ_DM(⊙), long upper tail
    post = SimpleNamespace(samples={"derived.rho_dm_sun": draws})
    table, n_out, n_rows, outside, tail, share = run._check_table(post, data, mw, ("halo",), "MWPotential2014")
    q16, q84 = np.percentile(draws, [16, 84])
    pull = (np.median(draws) - 7.544e6) / (0.5 * (q84 - q16))  # σ₆₈: half the 68 % width, not the sd
    assert 1.0 < (np.median(draws) - 7.544e6) / np.std(draws, ddof=1) < pull < 3.0  # (the long tail widens the sd)
    cells = table.splitlines()[2].split("|")  # the table's own value (MWPotential2014's ρ_DM(⊙), 7.356e6)
    ref = float(cells[3])
    own = (np.median(draws) - ref) / (0.5 * (q84 - q16))
    assert (n_out, n_rows, tail) == (1, 1, 0.0) and cells[6].strip() == f"{own:+.1f}" == "+2.0", cells
    assert abs(share - 0.05) < 0.002  # a draw is outside its own 95 % interval 5 % of the time
    # two exclusions: their chance is measured from the draws, so nearly one number (K_z ≈ 2πGΣ) counts about once
    kz = 3000.0 + rng.normal(0, 10, 4000)
    for sigma, expected in ((120.0 + (kz - 3000.0) / 10 + rng.normal(0, 0.05, 4000), 0.05),  # correlated: ~5 %
                            (120.0 + rng.normal(0, 1, 4000), 0.05 ** 2)):  # independent: 0.25 %
        pair = {"derived.Kz_1p1kpc": kz, "derived.Sigma_1p1kpc": sigma}
        counts = run._check_table(SimpleNamespace(samples=pair), data, mw, ("halo",), "MWPotential2014")[1:]
        assert (counts[0], counts[1]) == (2, 2) and abs(counts[4] - expected) < 0.25 * expected + 0.002, counts
    assert outside == f"|median − value|/σ₆₈ up to {own:.1f}; the farthest, `derived.rho_dm_sun`, has all above it"
    assert table.splitlines()[2].endswith("| **no** | 0.0 % |") and "σ₆₈ is half the 68 % interval's width" in table
    post.samples["derived.rho_dm_sun"] = np.concatenate([draws, [7.0e6] * 10])  # 10 of 4010 draws below it
    outside = run._check_table(post, data, mw, ("halo",), "MWPotential2014")[3]
    assert outside.endswith("has 99.8 % of its draws above it")
    post.samples["derived.rho_dm_sun"] = np.concatenate([draws, [7.0e6] * 2])  # 2 of 4002: not "100.0 % above"
    outside = run._check_table(post, data, mw, ("halo",), "MWPotential2014")[3]
    assert outside.endswith("has all but 0.05 % of its draws above it"), outside


def test_check_tables_leave_out_draws_where_a_quantity_is_undefined(tmp_path):
    """A derived quantity NaN at some draws (the constraint table warns of them) made its percentiles NaN, so the
    check counted the value as excluded from a posterior centred on it; such draws are now left out of every row,
    and a check with no finite draw says so."""
    from types import SimpleNamespace

    from bayesdyn.pipeline import Run, validate_config
    from bayesdyn.potentials import MWPotential2014

    run = Run(validate_config(copy.deepcopy(CONFIG)), folder=tmp_path, log=lambda *_: None)
    rng = np.random.default_rng(2)
    mw = dict(MWPotential2014().items())
    data = SimpleNamespace(sun=np.array([-8.122, 0.0, 0.0208]))
    kz = rng.normal(1872.0, 30.0, 4000)  # about MWPotential2014's K_z(1.1 kpc), 1872 (km/s)²/kpc
    kz[:40] = np.nan
    samples = {"derived.Kz_1p1kpc": kz, "derived.Sigma_1p1kpc": rng.normal(65.1, 1.0, 4000)}
    table, n_out, n_rows, _, tail, share = run._check_table(SimpleNamespace(samples=samples), data, mw, ("halo",),
                                                             "MWPotential2014")
    assert (n_out, n_rows, share) == (0, 2, 1.0) and tail > 0.2 and "nan" not in table
    empty = run._check_table(SimpleNamespace(samples={"derived.Kz_1p1kpc": np.full(10, np.nan)}), data, mw,
                             ("halo",), "MWPotential2014")
    assert empty[0].startswith("No draw has every one of ['derived.Kz_1p1kpc'] finite") and empty[1] == 0


def test_a_lone_exclusion_of_the_reference_or_truth_is_graded():
    """The summary called intervals "far too narrow" on a single exclusion of MWPotential2014's value, even at a
    pull of ~1σ; exclusions are now strong evidence only when fewer than 2.5 % of the posterior's own draws lie
    outside as many of its intervals, or one value has fewer than 0.135 % of its draws beyond it (3σ); otherwise
    they are said to be weak evidence, with that share. The mock's truth check is graded alike."""
    from bayesdyn.pipeline._stages import _reference_verdict, _truth_verdict

    weak = _reference_verdict(1, 5, "…", 0.01, 0.124)
    assert weak.startswith("REFERENCE CHECK: the 95 % intervals exclude MWPotential2014's value for 1 of 5")
    assert "far too narrow" not in weak and "12.4 % of the posterior's own draws lie outside at least one of" in weak
    pair = _reference_verdict(2, 5, "…", 0.01, 0.05)  # K_z and Σ: nearly one number, ~5 % of the draws miss both
    assert pair.startswith("REFERENCE CHECK") and "5 % of the posterior's own draws lie outside at least 2" in pair
    for n_out, tail, share in ((1, 0.0013, 0.05), (1, 0.0, 0.05), (2, 0.01, 0.0025), (4, 0.002, 0.024)):
        strong = _reference_verdict(n_out, 5, "…", tail, share)
        assert strong.startswith("NOT A MEASUREMENT") and strong.endswith("far too narrow for these data."), strong
        assert _truth_verdict(n_out, 5, "…", tail, share).startswith("TRUTH CHECK FAILED: the 95 % intervals")
    assert "; 2.4 % of the posterior's own draws lie outside at least 4 of these 5 intervals" in strong  # the last
    assert "fewer than 0.135 % of its draws beyond it (3σ" in _reference_verdict(1, 5, "…", 0.0, 0.05)
    lone = _truth_verdict(1, 5, "…", 0.01, 0.124)  # the mock's truth: graded alike (a lone 2σ exclusion had read FAILED)
    assert lone.startswith("TRUTH CHECK: the 95 % intervals exclude the mock's truth for 1 of 5") and "12.4 %" in lone


def test_strong_verdicts_are_rare_when_the_posterior_is_right_whatever_the_rows_correlation():
    """If the intervals carry all the error, the truth is like one more draw of the posterior. With the correlation
    of the Gaia example's five rows (K_z–Σ 0.98, K_z–ρ_DM 0.93, …), counting exclusions as independent (K_z and Σ
    as one) gave the strong verdict for 6 % of such truths; the share of the posterior's own draws outside as many
    intervals keeps it near 2.5 % plus the 3σ rule's part."""
    from bayesdyn.pipeline._stages import _STRONG_TAIL, _exclusions, _strong

    corr = np.array([[1, .38, .79, .67, .81], [.38, 1, .84, .91, .74], [.79, .84, 1, .98, .93],
                     [.67, .91, .98, 1, .91], [.81, .74, .93, .91, 1]])
    w, v = np.linalg.eigh(corr)
    chol = np.linalg.cholesky(v @ np.diag(np.clip(w, 1e-3, None)) @ v.T)
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((2000, 5)) @ chol.T
    old = new = 0
    truths = rng.standard_normal((1500, 5)) @ chol.T
    for t in truths:
        out, tail, share = _exclusions(draws, t)
        if out.any():
            old += out.sum() - bool(out[[2, 3]].all()) >= 2 or tail < _STRONG_TAIL  # the rule until 2026-12-08
            new += _strong(tail, share)
    assert old / len(truths) > 0.045 and new / len(truths) < 0.03, (old / len(truths), new / len(truths))
    # a row whose draws all equal its value sits inside, not beyond 3σ (its tail had been 0, which made any other
    # lone exclusion read strong); the share is printed to three figures (2.49 % had read "2.5 %" beside the 2.5 % cut)
    out, tail, share = _exclusions(np.column_stack([np.full(4000, 5.0), rng.standard_normal(4000)]), [5.0, 2.2])
    assert list(out) == [False, True] and 0.005 < tail < 0.03 and not _strong(tail, share), (tail, share)
    from bayesdyn.pipeline._stages import _share_text

    assert _share_text(4, 5, 0.0249).startswith("2.49 % of the posterior's own draws lie outside at least 4 of these 5")
    assert _share_text(3, 5, 0.0).startswith("none of the posterior's own draws lies outside at least 3 of these 5")
    # independent rows: the share is the binomial chance (two or more of five outside: 2.26 %)
    out, _, share = _exclusions(rng.standard_normal((200_000, 5)), np.array([2.2, -2.2, 0.0, 0.0, 0.0]))
    assert out.sum() == 2 and abs(share - (1 - 0.95 ** 5 - 5 * 0.05 * 0.95 ** 4)) < 0.002, share


def test_parallax_cut_on_a_source_without_gaia_columns_names_the_config_key(tmp_path):
    """catalog.parallax_over_error on the default mock (no Gaia columns) named Catalog.from_gaia and columns=, not the
    config key."""
    from bayesdyn.pipeline import ConfigError, Run, validate_config

    cfg = copy.deepcopy(CONFIG)
    cfg["catalog"]["parallax_over_error"] = 5.0
    with pytest.raises(ConfigError, match=r"catalog.parallax_over_error = 5.0 needs the Gaia columns"):
        Run(validate_config(cfg), folder=tmp_path, progress=False, log=lambda *_: None).catalog()


def test_report_line_names_the_prior_when_the_prior_free_j_passes():
    """The report's J line: MODEL REJECTED either way, blaming the prior only when J without it passes."""
    from bayesdyn.pipeline._stages import weak_form_line

    base = {"J": 78.9, "dof": 29, "p_value": 1.7e-6, "n_stars": 16016, "n_moments": 30}
    prior = weak_form_line(dict(base, J_prior_free=40.8, p_value_prior_free=0.072))
    model = weak_form_line(dict(base, J_prior_free=75.0, p_value_prior_free=6e-6))
    shape = weak_form_line(dict(base, J_prior_free=None, p_value_prior_free=None))
    assert all(line.startswith("MODEL REJECTED") for line in (prior, model, shape))
    assert "a prior disagrees with the moments: at the moments' own best fit, with no prior, J = 40.8" in prior
    assert "model family" not in prior
    assert "not the priors alone" in model and "J = 75.0" in model
    assert "model family" in shape and "no prior-free J" in shape
    # near the threshold the priors' small share of J (62 − 58 = 4, below χ²(1)'s 10.8 at p = 10⁻³) is not blamed
    near = weak_form_line(dict(base, J=62.0, p_value=3.2e-4, J_prior_free=58.0, p_value_prior_free=1.06e-3,
                               fit_prior_free={"halo.mass": 1.0e10}))
    assert near.startswith("MODEL REJECTED") and "the cause is unclear" in near and "add 4.0 to J" in near, near
    assert "model family" in near and "a prior disagrees with the moments" in near
    older = weak_form_line(base)  # a cached fit from before the prior-free J: not said to have a shape parameter
    assert "predates the prior-free J: run it again" in older and "shape parameter" not in older
    passing = weak_form_line(dict(base, J=30.0, p_value=0.4, J_prior_free=29.9, p_value_prior_free=0.41))
    assert passing.startswith("Weak-form fit:") and "no disagreement detected" in passing

"""The calibration harness (bayesdyn.validate): its statistics, its likelihood options, and an end-to-end
run on exact scores that must pass a clean input and flag a biased one."""

import functools
import json

import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from bayesdyn import potentials as bp
from bayesdyn import validate
from bayesdyn.inference import AccelerationData, PotentialModel
from bayesdyn.validate._coverage import _seeds

SUMMARY_COLUMNS = {
    "unit", "truth", "n", "mean_bias", "rel_bias", "spread", "mean_sd", "bias_over_sd", "spread_over_sd",
    "coverage_68", "coverage_95", "mean_pull", "sd_pull", "pit_ks_p", "median_abs_rel_err",
    "pass_68", "pass_95", "pass_bias",
}


def _synthetic_table(width: float, r: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Gaussian measurements μ ~ N(θ, 1) with posterior draws N(μ, width²): calibrated iff width = 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, mu in enumerate(rng.normal(3.0, 1.0, size=r)):
        draws = mu + width * rng.standard_normal(400)
        rows.append({"realisation": i, "quantity": "theta", "unit": "kpc", **validate.interval_summary(draws, 3.0)})
    return pd.DataFrame(rows)


def test_summary_statistics_are_nominal_for_a_calibrated_posterior_and_not_for_an_overconfident_one():
    good = validate.summarise(_synthetic_table(1.0)).loc["theta"]
    # binomial sd at R = 2000: 0.010 (68 %), 0.005 (95 %); tolerances ≈ 4 sd
    assert_allclose(good["coverage_68"], 0.6827, atol=0.04)
    assert_allclose(good["coverage_95"], 0.9545, atol=0.02)
    assert_allclose(good["spread_over_sd"], 1.0, atol=0.06)
    assert good["bias_over_sd"] < 0.1 and good["pit_ks_p"] > 1e-3
    assert good["pass_68"] and good["pass_95"] and good["pass_bias"]
    # posterior 3× too narrow: 68 % interval covers P(|z| < 1/3) = 0.26, 95 % covers P(|z| < 0.65) = 0.49
    bad = validate.summarise(_synthetic_table(1.0 / 3.0)).loc["theta"]
    assert_allclose(bad["coverage_68"], 0.261, atol=0.04)
    assert_allclose(bad["coverage_95"], 0.497, atol=0.04)
    assert bad["pit_ks_p"] < 1e-6 and not bad["pass_68"] and not bad["pass_95"]
    assert_allclose(bad["sd_pull"], 3.0, rtol=0.1)
    assert_allclose(good["bias_over_w68"], good["bias_over_sd"], rtol=0.05)  # a Gaussian's w68 is its sd


def test_heavy_tails_few_realisations_and_failures_do_not_pass_unseen():
    """Heavy-tailed posteriors (Rubin's rules' Student-t, ν = 1.5) biased by one scale unit: their sd is set by the
    tails, so bias/sd reads ≈ 0.1 and passes (the audit's 0.093); bias/w68 (the 68 % half-width) and the t-test see
    the bias. Fewer than 30 realisations, or a failed one, leave the pass flags n/a; the exact binomial p-values
    judge coverage at any R."""
    from bayesdyn.validate._coverage import pass_text

    rng = np.random.default_rng(4)
    rows = []
    for i, mu in enumerate(rng.normal(3.0, 1.0, size=300)):
        draws = mu + 1.0 + rng.standard_t(1.5, 2000)  # posterior centred one scale unit off
        rows.append({"realisation": i, "quantity": "theta", "unit": "kpc", **validate.interval_summary(draws, 3.0)})
    t = validate.summarise(pd.DataFrame(rows)).loc["theta"]
    assert t["bias_over_sd"] < 0.5 and t["pass_bias"]  # the rule, as defined, is blind here
    assert t["bias_over_w68"] > 0.6 and t["bias_t_p"] < 1e-6  # (median − truth) ≈ 1 against w68 ≈ 1.2
    few = validate.summarise(_synthetic_table(1.0, r=10)).loc["theta"]
    assert few["pass_68"] is None and few["pass_95"] is None and few["pass_bias"] is None and pass_text(few) == "n/a"
    assert 0.05 < few["coverage_95_p"] <= 1.0
    missed = pd.DataFrame([{**r, "in95": False, "in68": False} for r in rows[:3]])  # 0 of 3: p = 0.05³
    assert_allclose(validate.summarise(missed).loc["theta", "coverage_95_p"], 0.05**3, rtol=1e-9)
    failed = validate.summarise(_synthetic_table(1.0, r=40), n_failed=1).loc["theta"]
    assert failed["pass_68"] is None and pass_text(failed) == "n/a"
    point = validate.interval_summary(np.full(10, 2.0), 2.0)  # a point mass at the truth: pull 0, not NaN
    assert point["pull"] == 0.0


def test_interval_summary_pit_and_pull():
    draws = np.arange(1000.0)  # 0 … 999
    s = validate.interval_summary(draws, 100.0)
    assert_allclose(s["pit"], 0.1005, atol=1e-12)  # 100 below, one tie counted half
    assert s["in95"] and not s["in68"]
    assert_allclose(s["pull"], (s["median"] - 100.0) / np.std(draws, ddof=1))
    with pytest.raises(ValueError, match="NaN"):
        validate.interval_summary([1.0, np.nan], 0.0)


def test_likelihood_strings_round_trip_and_reject_unknown_options():
    for spec, expect in [
        ("ensemble", validate.Likelihood()),
        ("floor", validate.Likelihood(floor=0.05)),
        ("floor:0.02+inflate:auto", validate.Likelihood(floor=0.02, inflate="auto")),
        ("mixture+inflate:3", validate.Likelihood(inflate=3.0, mixture=True)),
        ("floor:0.123456789", validate.Likelihood(floor=0.123456789)),  # labels name runs: not rounded to 6 digits
    ]:
        lik = validate.Likelihood.parse(spec)
        assert lik == expect and validate.Likelihood.parse(lik.label) == lik
    with pytest.raises(ValueError, match="unknown likelihood option"):
        validate.Likelihood.parse("tempered:2")
    # inflate:auto's factor changed (max of two design effects, 2026-12-07): its runs record it, so an older run folder
    # does not resume into a mix of the two rules
    from bayesdyn.validate._coverage import _Run

    mock = validate.get_mock("nfw")
    configs = {spec: _Run(mock, 100, 0, "exact", validate.Likelihood.parse(spec), mock.quantities(), 8, 16, {}, {},
                          None).config(1) for spec in ("floor:0.05+inflate:auto", "floor:0.05")}
    assert configs["floor:0.05+inflate:auto"]["design_effect"] == "max-comp-amp"
    assert "design_effect" not in configs["floor:0.05"]
    with pytest.raises(ValueError, match="≥ 1"):
        validate.Likelihood(inflate=0.5)


def _members_data(shared: bool, k: int = 8, p: int = 20, seed: int = 1) -> AccelerationData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(p, 3)) + 5.0
    a = rng.normal(size=(p, 3)) * 100.0
    dev = rng.normal(size=(k, 1, 3)) * np.ones((1, p, 1)) if shared else rng.normal(size=(k, p, 3))
    members = a + 5.0 * dev
    d = members - members.mean(0)
    between = np.einsum("kpi,kpj->pij", d, d) / (k - 1)
    return AccelerationData.create(x, members.mean(0), between, members=members)


def test_design_effect_is_p_for_fully_correlated_members_and_near_one_for_independent_ones():
    p = 20
    full = validate.design_effect(_members_data(True, p=p))
    assert_allclose(full["factor"], p, rtol=1e-6)  # one shared error: P nodes count as one
    assert_allclose(full["mean_correlation"], 1.0, rtol=1e-6)
    indep = validate.design_effect(_members_data(False, p=p))
    assert 1.0 <= indep["factor"] < 2.0 and abs(indep["mean_correlation"]) < 0.1
    one = AccelerationData.create(np.ones((2, 3)), np.ones((2, 3)), np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert validate.design_effect(one)["factor"] == 1.0


def test_design_effect_sees_a_common_scaling_of_the_field_and_equal_members():
    """Members a_k = (1 + ε_k) a around a centre: the error is wholly shared (a mass error), which the per-component
    correlation misses (its ρ_ij is (1/3) Σ_c sign(a_ic a_jc), about 0); the factor along the field sees it."""
    rng = np.random.default_rng(3)
    k, p = 8, 20
    x = rng.normal(size=(p, 3)) * 5.0
    a = -100.0 * x / np.linalg.norm(x, axis=1, keepdims=True)  # km²/s²/kpc, pointing at the centre
    members = a * (1.0 + 0.05 * rng.normal(size=(k, 1, 1)))
    d = members - members.mean(0)
    cov = np.einsum("kpi,kpj->pij", d, d) / (k - 1) + 0.01 * np.eye(3)
    de = validate.design_effect(AccelerationData.create(x, members.mean(0), cov, members=members))
    assert de["component_factor"] < 2.0 and abs(de["mean_correlation"]) < 0.2  # blind to it
    assert_allclose(de["amplitude_factor"], p, rtol=0.01)  # P nodes count as one
    assert de["factor"] == de["amplitude_factor"]
    # one node where every member agrees: no NaN (it gave NaN, which build_data passed on as a bad covariance)
    members = a + rng.normal(size=(k, p, 3))
    members[:, 4] = a[4]
    d = members - members.mean(0)
    cov = np.einsum("kpi,kpj->pij", d, d) / (k - 1) + np.eye(3)
    de = validate.design_effect(AccelerationData.create(x, members.mean(0), cov, members=members))
    assert all(np.isfinite(v) for v in de.values()) and 1.0 <= de["factor"] < 3.0


def test_evaluate_draws_binds_each_draw(x64):
    model = PotentialModel(halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.Uniform(2.0, 40.0)))
    rng = np.random.default_rng(3)
    samples = {"halo.scale_density": 10 ** rng.uniform(6, 8, (2, 5)), "halo.scale_radius": rng.uniform(5, 20, (2, 5))}
    point = np.array([3.0, 4.0, 0.0])  # r = 5 kpc
    out = validate.evaluate_draws(
        model, samples, {"rho5": validate.density_at(point), "rs": validate.parameter("halo.scale_radius")}
    )
    s = 5.0 / samples["halo.scale_radius"]
    assert_allclose(out["rho5"], samples["halo.scale_density"] / (s * (1 + s) ** 2), rtol=1e-10)  # NFW by hand
    assert_allclose(out["rs"], samples["halo.scale_radius"], rtol=0)
    with pytest.raises(KeyError, match="free parameters"):
        validate.evaluate_draws(
            model, {"halo.scale_radius": samples["halo.scale_radius"]}, {"rs": validate.parameter("halo.scale_radius")}
        )


def test_gaia_challenge_truth_and_nodes(shared_data):
    mock = validate.GaiaChallengeMock("cusp", data_dir=shared_data / "gaia_challenge")
    q = mock.quantities()
    r = np.array([0.1, 0.25, 0.5, 1.0])
    rho0, rs, a, b, g = 6.4e7, 1.0, 1.0, 3.0, 1.0  # the README's table (cusp)
    truth = rho0 * (r / rs) ** -g * (1 + (r / rs) ** a) ** ((g - b) / a)
    assert_allclose([q[f"rho_dm_r{x:g}"].truth for x in r], truth, rtol=1e-12)
    cat, _ = mock.draw(10_000, seed=0)
    assert cat.x.shape == (10_000, 3)
    nodes = mock.nodes(cat, 24, seed=0)
    rn = np.linalg.norm(nodes, axis=1)
    assert nodes.shape == (24, 3) and rn.min() >= 0.1 and rn.max() <= 1.0
    assert rn.min() < 0.13 and rn.max() > 0.75  # spread over the whole band in log r
    assert not mock.has_exact_scores
    # one fixed catalog: more stars than it holds is refused up front (every realisation failed at its draw), and
    # realisations drawn from it are said not to be independent
    assert mock.fixed_stars == 10_000
    with pytest.raises(ValueError, match="one fixed catalog of 10000 stars; asked for n_stars = 50000"):
        validate.coverage(mock, realisations=1, n_stars=50_000)
    with pytest.warns(UserWarning, match="overlapping subsamples of them .* not independent draws"):
        with pytest.raises(ValueError, match="no quantities"):  # (stops the run right after the warning)
            validate.coverage(mock, realisations=2, n_stars=5_000, quantities=["nope"])
    # ... and summary.md keeps that caveat with the results (the warning reached only the run's console)
    from bayesdyn.validate._coverage import CoverageResult, _rows_table

    row = dict(quantity="rho", unit="Msun/kpc3", truth=1.0, median=1.0, mean=1.0, sd=0.1, in68=True, in95=True, pit=0.5,
               **{"q2.5": 0.8, "q16": 0.9, "q84": 1.1, "q97.5": 1.2})
    records = [{"realisation": r, "rows": [row], "timing": {}} for r in range(2)]
    cfg = {"mock": mock.to_dict(), "method": "flow", "likelihood": "floor:0.05", "n_stars": 5000, "realisations": 2,
           "seed": 0, "n_nodes": 16, "n_velocities": 32, "nuts_options": {}, "psd_options": {}}
    text = CoverageResult(_rows_table(records), records, cfg).to_markdown()
    assert "**Not independent:** The gaia-challenge-cusp mock is one fixed catalog of 10000 stars: its 2 " \
           "realisations are overlapping subsamples" in text
    truth_run = CoverageResult(_rows_table(records), records, {**cfg, "method": "truth"}).to_markdown()
    assert "Not independent" not in truth_run  # only the noise is drawn: independent
    elsewhere = {**cfg, "mock": {**cfg["mock"], "data_dir": "/nonexistent"}}  # its file not here: the caveat stays
    assert "**Not independent:** The gaia-challenge-cusp mock is one fixed catalog: its 2 realisations are the " \
           "same stars or overlapping" in CoverageResult(_rows_table(records), records, elsewhere).to_markdown()
    # realisations from two machines (a resumed run), one record from before machines were recorded
    made = [dict(records[0], machine="CPU A, 2 cores, load 1.9, 2.0, 2.1; JAX 0.1 on cpu; Python 3.11"),
            dict(records[1], machine="CPU A, 2 cores, load 3.0, 2.0, 2.1; JAX 0.1 on cpu; Python 3.11"),
            dict(records[0], realisation=2, machine="CPU B, 16 cores, load 0.5, 0.4, 0.3; JAX 0.1 on gpu; Python 3.11"),
            dict(records[1], realisation=3)]
    text = CoverageResult(_rows_table(made), made, cfg).to_markdown()
    assert ("Machine: CPU A, 2 cores; JAX 0.1 on cpu; Python 3.11 (2 realisations, 1-minute load 1.9–3.0 at their "
            "starts); CPU B, 16 cores; JAX 0.1 on gpu; Python 3.11 (1 realisation, 1-minute load 0.5 at their starts); "
            "not recorded (1 realisation).") in text


def test_disk_truths_match_the_mock_truth(x64):
    from bayesdyn.mocks import load_default

    cat, truth = load_default()
    mock = validate.DiskMock()
    sun = mock.sun(cat)
    assert_allclose(sun, cat.solar.position, atol=1e-12)
    q = mock.quantities()
    p = truth.params
    assert_allclose(q["rho_total_sun"].truth, float(truth.density(sun)), rtol=1e-8)
    assert_allclose(q["Kz_1p1kpc"].truth, -float(truth.acceleration([sun[0], sun[1], 1.1])[2]), rtol=1e-8)
    assert_allclose(q["disk.mass"].truth, p["potential_disk_mass_msun"], rtol=1e-8)
    assert_allclose(q["halo.scale_density"].truth, p["potential_halo_rho_s_msun_kpc3"], rtol=1e-8)
    s = np.linalg.norm(sun) / p["potential_halo_rs_kpc"]
    assert_allclose(q["rho_dm_sun"].truth, p["potential_halo_rho_s_msun_kpc3"] / (s * (1 + s) ** 2), rtol=1e-8)


QUICK = dict(
    realisations=3, n_stars=5000, seed=0, method="exact", likelihood="floor:0.05", n_nodes=16, n_velocities=32,
    nuts_options=dict(num_chains=2, num_warmup=150, num_samples=250), progress=False,
)


def test_harness_passes_exact_scores_and_flags_biased_accelerations(tmp_path, monkeypatch):
    out = tmp_path / "nfw"
    res = validate.coverage("nfw", out=out, **QUICK)
    s = res.summary
    assert SUMMARY_COLUMNS <= set(s.columns)
    assert list(s.index) == ["rho_at_rs", "halo.scale_density", "halo.scale_radius"]
    assert (s["n"] == 3).all() and not res.failures
    # exact accelerations, 5 % floor: the truth sits inside every interval (over-covered), no bias
    assert (s["coverage_95"] == 1.0).all() and (s["bias_over_sd"] < 0.5).all()
    assert (s["rel_bias"].abs() < 0.02).all()
    per_realisation = {"truth", "median", "mean", "sd", "q2.5", "q16", "q84", "q97.5", "in68", "in95", "pit"}
    assert per_realisation <= set(res.table.columns)
    for name in ("config.json", "realisations.csv", "summary.csv", "summary.json", "summary.md", "pit.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "summary.json").read_text())["summary"]  # all digits (10 decimals wrote 8.8e-12 as 0)
    for q, row in s.iterrows():
        assert_allclose([saved[q]["pit_ks_p"], saved[q]["mean_w68"]], [row["pit_ks_p"], row["mean_w68"]], rtol=1e-13)
    rec = json.loads((out / "realisations" / "r0002.json").read_text())
    assert {"mock", "accel", "nuts"} <= set(rec["timing"]) and type(rec["diagnostics"]["divergences"]) is int
    n_div = sum(r["diagnostics"]["divergences"] for r in res.records)
    assert f", {n_div} divergent transitions; " in (out / "summary.md").read_text()
    # summary.md counts low-ESS realisations too (it counted r̂ and divergences only), by the records
    low = sum(min(r["diagnostics"]["min_ess_bulk"], r["diagnostics"]["min_ess_tail"]) < 400 for r in res.records)
    assert f", {low} with a bulk or tail ESS below 400 (all kept in the table)" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["n_low_ess"] == low  # (the calibration index reads it)
    # each realisation records the machine it ran on, and summary.md names it (timings without a machine before)
    from bayesdyn.validate._machine import machine

    here = machine(load=False)
    assert all(r["machine"].startswith(here.split(";")[0] + ", load ") for r in res.records)
    assert f"Machine: {here} (3 realisations, 1-minute load " in (out / "summary.md").read_text()

    # resuming reruns nothing; other settings in the same folder are refused
    again = validate.coverage("nfw", out=out, **QUICK)
    assert again.records == validate.CoverageResult.load(out).records
    pd.testing.assert_frame_equal(again.table, res.table)
    # each record names the code that made it: a resume across a code change warns and summary.md says so (the config's
    # __version__ never changed, so such tables mixed versions silently); a failed realisation is named, not rerun
    assert {r["code"] for r in res.records} == {validate._coverage.code_fingerprint()}
    first, last = out / "realisations" / "r0000.json", out / "realisations" / "r0002.json"
    kept = first.read_text(), last.read_text()
    first.write_text(json.dumps({**json.loads(kept[0]), "code": "0123456789ab"}))
    last.write_text(json.dumps({"realisation": 2, "seeds": res.records[2]["seeds"], "error": "MemoryError: x",
                                "code": res.records[2]["code"]}))
    with pytest.warns(RuntimeWarning) as caught:
        validate.coverage("nfw", out=out, **QUICK)
    text = " | ".join(str(w.message) for w in caught)
    assert ("1 of the 3 realisations read back from it were not made by this code" in text
            and "do not record which code made them ({'0123456789ab': 1})" in text)
    assert "realisation(s) [2] failed in an earlier run and are not rerun" in text
    assert "**Made by 2 versions of the code**" in (out / "summary.md").read_text()
    # load keeps the config's realisations only (a folder resumed with fewer summarised them all on --regenerate)
    cfg_text = (out / "config.json").read_text()
    (out / "config.json").write_text(json.dumps({**json.loads(cfg_text), "realisations": 2}))
    with pytest.warns(RuntimeWarning, match=r"records of realisations \[2\] beyond its config's 2: left out"):
        assert [r["realisation"] for r in validate.CoverageResult.load(out).records] == [0, 1]
    (out / "config.json").write_text(cfg_text)
    first.write_text(kept[0])
    last.write_text(kept[1])
    # a record cut short (a run killed while writing, before records were written atomically) is named by load and
    # run again on resume, to the same rows (its seeds are the realisation's)
    damaged = out / "realisations" / "r0001.json"
    damaged.write_text(damaged.read_text()[:100])
    with pytest.raises(ValueError, match=r"r0001\.json is damaged \(JSONDecodeError.*Fix: delete it and resume"):
        validate.CoverageResult.load(out)
    with pytest.warns(RuntimeWarning, match=r"r0001\.json is damaged .*; running realisation 1 again"):
        redone = validate.coverage("nfw", out=out, **QUICK)
    pd.testing.assert_frame_equal(redone.table, res.table)
    assert not list((out / "realisations").glob("*.tmp"))
    with pytest.raises(ValueError, match="other settings"):
        validate.coverage("nfw", out=out, **{**QUICK, "n_nodes": 12})
    # the fitted model is recorded: a run made with another model is refused; one whose config predates the record
    # resumes with a warning that says it could not check
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == repr(validate.NFWMock().model())
    (out / "config.json").write_text("[]")  # edited or cut short: load names it and the fix
    with pytest.raises(ValueError, match=r"config\.json is damaged \(a JSON list, not an object\)\. Fix: restore it"):
        validate.CoverageResult.load(out)
    (out / "config.json").write_text(json.dumps({**cfg, "model": "PotentialModel(halo=Zhao(...))"}))
    with pytest.raises(ValueError, match=r"differ in \['model'\]"):
        validate.coverage("nfw", out=out, **QUICK)
    (out / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "model"}))
    with pytest.raises(ValueError, match=r"differ in \['n_nodes'\]"):  # other differences still refuse
        validate.coverage("nfw", out=out, **{**QUICK, "n_nodes": 12})
    for _ in range(2):  # the model stays unrecorded (writing it would vouch for the old results): warns every time
        with pytest.warns(RuntimeWarning, match="does not record the fitted model"):
            validate.coverage("nfw", out=out, **QUICK)
        assert "model" not in json.loads((out / "config.json").read_text())
    # records without their config.json are not resumed unchecked (copied under another mock's name, they had been)
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(out / "realisations", bare / "realisations")
    with pytest.raises(ValueError, match="holds realisation records but no config.json"):
        validate.coverage("disk", out=bare, **QUICK)
    # a fresh run stopped early leaves none of the discarded run's tables or figure (the calibration index had
    # published them); an unfinished run's summary.md does not show an earlier figure
    class Stopped(BaseException):  # (as Ctrl-C: not caught as a failed realisation)
        pass

    def stopped(*args, **kwargs):
        raise Stopped

    with monkeypatch.context() as m, pytest.raises(Stopped):
        m.setattr(validate._coverage, "_one_realisation", stopped)
        validate.coverage("nfw", out=out, resume=False, **QUICK)
    left = sorted(p.name for p in out.iterdir())
    assert left == ["config.json", "realisations"] and not list((out / "realisations").iterdir()), left
    part = tmp_path / "part"
    shutil.copytree(bare, part)
    (part / "pit.png").write_bytes(b"an earlier run's figure")
    validate.CoverageResult(res.table, res.records, res.config).save(part, plot=False)
    assert not (part / "pit.png").exists() and "pit.png" not in (part / "summary.md").read_text()

    # accelerations 20 % too large: the density normalisation is 20 % high, far outside its intervals
    with pytest.raises(ValueError, match="'<lambda>' does not tell it from another"):  # (two lambdas, one folder)
        validate.coverage("nfw", out=tmp_path / "lambda", perturb=lambda data, seed: data, **QUICK)
    with pytest.raises(ValueError, match="functools.partial.* does not tell it from another"):
        validate.coverage("nfw", out=tmp_path / "lambda", perturb=functools.partial(lambda data, seed: data), **QUICK)
    biased = validate.coverage("nfw", perturb=validate.scale_accelerations(1.2), **QUICK).summary
    for q in ("rho_at_rs", "halo.scale_density"):
        assert biased.loc[q, "coverage_95"] == 0.0 and biased.loc[q, "bias_over_sd"] > 3.0
        assert_allclose(biased.loc[q, "rel_bias"], 0.2, atol=0.03)
        # three realisations cannot judge the acceptance bands (n/a), but 0 of 3 inside the 95 % intervals is
        # improbable at the nominal rate: p = 0.05³
        assert biased.loc[q, "pass_95"] is None and biased.loc[q, "coverage_95_p"] < 1e-3
    # the scale radius is set by the shape of a(r), which a constant factor leaves alone
    assert biased.loc["halo.scale_radius", "coverage_95"] == 1.0

    # method="truth" (true accelerations, no scores) with noise drawn from the covariance: same model, same compiled
    # sampler; the realisations differ from the exact-score ones only by the noise
    noisy = validate.coverage("nfw", **{**QUICK, "method": "truth"}, perturb=validate.gaussian_noise())
    assert len(noisy.table) == 9 and not noisy.failures
    assert (noisy.table["pull"].abs() < 5).all()


def test_exact_method_needs_a_floor_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="noise floor"):
        validate.coverage("nfw", method="exact", likelihood="ensemble")
    with pytest.raises(ValueError, match="members"):
        validate.coverage("nfw", method="truth", likelihood="floor:0.05+mixture")
    # exact accelerations without noise cover by construction: said at once (the run stops later, at a bad option)
    with pytest.warns(UserWarning, match="hold the truth by construction"), pytest.raises(ValueError, match="bogus"):
        validate.coverage("nfw", method="truth", likelihood="floor:0.05", nuts_options={"bogus": 1})
    with pytest.raises(ValueError, match="unknown mock"):
        validate.coverage("plummer")
    with pytest.raises(ValueError, match="no quantities"):
        validate.coverage("nfw", method="exact", likelihood="floor:0.05", quantities=["rho_dm_sun"])
    with pytest.raises(ValueError, match="no exact scores"):
        validate.GaiaChallengeMock("core").exact_source(None, None)


def test_realisation_fits_then_loads_its_flows(tmp_path):
    """validate.realisation(r) draws realisation r's stars (the seeds coverage() uses), fits its flows into the
    run's cache folder (the folder coverage() uses: test_flow_cache_key_is_stable) and loads them the next time."""
    psd = dict(ensemble=2, max_epochs=1, n_layers=1, width=8, batch_size=500)
    first = validate.realisation("nfw", 1, n_stars=1500, psd_options=psd, psd_cache=tmp_path, n_nodes=8)
    assert first["record"] == {} and (first["psd_path"] / "psd.json").is_file()
    assert first["psd_path"].name == "r0001" and first["psd"].n_members == 2 and first["psd"].n_stars == 1500
    again = validate.realisation("nfw", 1, n_stars=1500, psd_options=psd, psd_cache=tmp_path, n_nodes=8)
    assert again["record"]["psd_loaded_from"] == str(first["psd_path"])
    catalog, _ = validate.NFWMock().draw(1500, _seeds(0, 1)["mock"])
    np.testing.assert_array_equal(np.asarray(again["catalog"].x), np.asarray(catalog.x))
    np.testing.assert_array_equal(again["nodes"], first["nodes"])
    assert again["nodes"].shape == (8, 3)
    with pytest.raises(ValueError, match="r must be"):
        validate.realisation("nfw", -1, n_stars=1500, psd_options=psd)


def test_flow_cache_key_is_stable():
    """The flow cache's folder names must not change silently: calibration runs and the league load flows by them
    (this one holds the disk-1e5 suite's flows: seed pairs, fit_psd's default until 2026-12-07, and 30 epochs)."""
    from bayesdyn.validate._coverage import _flow_cache, _flow_options

    # coverage() names its flow folder with these two functions (and its realisations' seeds with _seeds)

    opts = _flow_options({"max_epochs": 30, "seeds_per_resample": 2})
    assert opts == {"ensemble": 4, "bootstrap": True, "max_epochs": 30, "seeds_per_resample": 2}
    assert _flow_options({"max_epochs": 30}) == {"ensemble": 4, "bootstrap": True, "max_epochs": 30}  # the default
    assert _flow_cache("/c", validate.DiskMock(), 100_000, 0, opts).name == "disk-n100000-s0-875e242843"
    assert "seeds_per_resample" not in _flow_options({"ensemble": 2})  # L = 1 stays out of the key
    assert _flow_cache(None, validate.DiskMock(), 100_000, 0, opts) is None


def test_stuck_or_nonfinite_chains_count_as_unconverged():
    """r̂ is NaN for draws that never move (nanmax would skip it): the realisation must count as unconverged."""
    from bayesdyn.validate._coverage import _diagnostics, _max_rhat, _unconverged

    rng = np.random.default_rng(0)
    info = {"diverging": np.zeros((2, 200), bool)}
    moving = rng.normal(size=(2, 200))
    clean = _diagnostics({"a": moving, "b": rng.normal(size=(2, 200))}, info, ["a", "b"])
    assert clean["max_r_hat"] < 1.01 and not _unconverged({"diagnostics": clean})
    for bad in (np.full((2, 200), 3.0), np.where(np.arange(200) < 5, np.nan, moving)):
        d = _diagnostics({"a": moving, "b": bad}, info, ["a", "b"])
        assert d["max_r_hat"] == np.inf and _unconverged({"diagnostics": d})
        assert any("'b'" in p and "never move" in p for p in d["problems"])
    one_chain = _diagnostics({"a": moving[:1], "b": moving[1:]}, {"diverging": np.zeros((1, 200), bool)}, ["a", "b"])
    assert np.isnan(one_chain["max_r_hat"]) and not _unconverged({"diagnostics": one_chain})
    # one-chain members combined: a stuck one after a moving one is still seen (max(nan, inf) would be nan)
    stuck_one = _diagnostics({"a": moving[:1], "b": np.full((1, 200), 3.0)}, {"diverging": np.zeros((1, 200), bool)},
                             ["a", "b"])
    assert _max_rhat([one_chain["max_r_hat"], stuck_one["max_r_hat"]]) == np.inf
    assert np.isnan(_max_rhat([np.nan, np.nan])) and _max_rhat([np.nan, 1.02, 1.001]) == 1.02
    # one element of an array-valued parameter that never moves
    nodes = rng.normal(size=(2, 200, 3))
    nodes[:, :, 1] = 0.5
    assert _diagnostics({"a": moving, "n": nodes}, info, ["a", "n"])["max_r_hat"] == np.inf


def test_calibration_suite_rebuilds_the_index_when_its_runs_land_in_the_docs(tmp_path):
    """benchmarks/calibration.py: --index, and a suite run into docs/calibration/ or a folder below it, rebuild the
    index page (a suite run into docs/calibration/<sub> left it stale); a suite run elsewhere (CI's --out) and a
    single mock run do not."""
    from benchmark_modules import load_benchmark

    cal = load_benchmark("calibration")
    assert cal.rebuilds_index(True, None, None)
    assert cal.rebuilds_index(False, "quick", None) and cal.rebuilds_index(False, "full", cal.DOCS)
    assert cal.rebuilds_index(False, "full", cal.DOCS / "sub")
    assert not cal.rebuilds_index(False, "quick", tmp_path / "ci")
    assert not cal.rebuilds_index(False, None, cal.DOCS / "disk")  # --mock: --index afterwards


def test_full_suite_flow_entries_rerun_their_published_folders():
    """Each flow entry of `--suite full` asks for the flow options its published folder in docs/calibration records
    (the folders refuse other settings): after fit_psd's default pairing changed (2026-12-07), the `nfw`, `disk`,
    `gaia-challenge` and `*-1e5` entries asked for one member per resample while their folders hold seed pairs."""
    from benchmark_modules import load_benchmark

    from bayesdyn.validate._coverage import _flow_options

    cal = load_benchmark("calibration")
    checked = 0
    for name, settings in cal.FULL.items():
        if settings.get("method") != "flow":
            continue
        for cfg in sorted((cal.DOCS / name).glob("**/config.json")):
            assert json.loads(cfg.read_text())["psd_options"] == _flow_options(settings.get("psd")), (name, cfg)
            checked += 1
    assert checked >= 14  # (nfw, disk and their one-seed runs: 2 likelihoods each; Gaia Challenge 2 × 2; 1e5 × 2)


def test_smallest_ess_of_realisations_ignores_nan_in_any_order():
    """The harness's smallest ESS over posteriors skips a NaN (one chain) wherever it sits; Python's min kept a NaN
    that came first and skipped one that came later."""
    from bayesdyn.validate._coverage import _min_ess

    assert _min_ess([float("nan"), 5.0, 7.0]) == 5.0 == _min_ess([7.0, 5.0, float("nan")])
    assert np.isnan(_min_ess([float("nan"), float("nan")]))

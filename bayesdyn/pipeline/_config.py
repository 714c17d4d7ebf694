"""Run configuration: a TOML file, validated with errors that name the key and what it expects."""

from __future__ import annotations

import copy
import json
import math
import tomllib
import warnings
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "DEFAULT_CONFIG", "KEY_HELP", "load_config", "validate_config", "resolve_source", "PRIORS",
           "COMPONENTS"]


from ..inference._model import _is_dark

class ConfigError(ValueError):
    """A configuration key is missing, unknown or has a value of the wrong kind."""


PRIORS = {
    "Uniform": ("low", "high"),
    "LogUniform": ("low", "high"),
    "Normal": ("loc", "scale"),
    "TruncatedNormal": ("loc", "scale", "low", "high"),
    "LogNormal": ("loc", "scale"),
    "HalfNormal": ("scale",),
}
"""Prior families a config may name, with their argument names."""

COMPONENTS = (
    "NFW",
    "Zhao",
    "ZhaoAtRadius",
    "Burkert",
    "PseudoIsothermal",
    "CoreNFW",
    "Einasto",
    "Hernquist",
    "Plummer",
    "PowerLawCutoff",
    "MiyamotoNagai",
    "MN3ExponentialDisk",
    "DarkDisk",
)
"""Potential components a config may name (bayesdyn.potentials classes)."""

DEFAULT_CONFIG: dict[str, Any] = {
    "output": "bayesdyn-report",
    "seed": 0,
    "catalog": {
        # "default" = the shipped disk mock; else a Gaia file (FITS, VOTable, CSV, ECSV, Parquet, HDF5)
        # or a Catalog .npz file (one written by `bayesdyn mock plummer|disk` carries its truth: the report
        # checks against it; a plummer or spherical mock is centred on the origin, 8 kpc from the Sun, where
        # the default nodes find no stars: set nodes.radius_kpc = 0, as the preflight's refusal says)
        "source": "default",
        "strict": False,
        "max_stars": 0,  # 0 = all
        "within_kpc": 0.0,  # 0 = no cut on the distance from the Sun
        "parallax_over_error": 0.0,
    },
    "psd": {
        # fit_psd's defaults, with which docs/calibration measured the intervals' coverage (the report says when a
        # run trains otherwise)
        "ensemble": 4,
        "n_layers": 8,
        "width": 64,
        "max_epochs": 30,
        "patience": 10,
        "batch_size": 512,
        "learning_rate": 1e-2,
        "bootstrap": True,
        # members per bootstrap resample, each with its own seed (fit_psd's seeds_per_resample; 1 = one each;
        # "auto" = 1 since 2026-12-07)
        "seeds_per_resample": "auto",
        # fraction of the support ball's radius left untouched by the support map (fit_psd's support_core)
        "support_core": 0.0,
        # flow architecture (fit_psd's flow): "maf" (the calibrated default) or "sas_maf" (opt-in, docs/flows.md)
        "flow": "maf",
        # fit_psd's radial_map: "auto", or the radius s in robust standard deviations (0 = no map)
        "radial_map": "auto",
        # fit_psd's axis_map: per-axis radii [s_x, s_y, s_z] of z_i → s_i·asinh(z_i/s_i) in robust standard
        # deviations (0 = that axis unmapped), instead of the radial map; [] = none
        "axis_map": [],
    },
    "nodes": {
        "n": 64,  # nodes where accelerations are estimated
        # around the Sun, and never beyond the distance holding 80 % of the stars (the catalog's
        # edge, where a flow's scores are poor); 0 = that distance
        "radius_kpc": 1.0,
        "n_velocities": 256,
        "floor": 0.0,  # relative noise floor on each acceleration covariance
    },
    "errors": {
        # correct the accelerations for measurement errors (SIMEX: flows fitted to re-smeared copies of the
        # catalog, a = 2 a_data − a_copies; bd.correct_measurement_errors); each copy costs one more flow fit.
        # With likelihood = "weak_form": the moments instead, analytically (velocities exactly, positions to
        # second order; weak_form_data's velocity_errors / position_errors)
        "correct": False,
        "copies": 2,  # ≥ 2 estimates the copies' Monte Carlo error; at most one per bootstrap resample (4 at ensemble 4)
        # Gaussian errors per Galactocentric axis; both 0 = draw from the catalog's Gaia error columns
        "velocity_error_kms": 0.0,
        "position_error_kpc": 0.0,
    },
    "model": {
        "halo": {"type": "NFW", "scale_density": {"prior": "LogUniform", "low": 1e5, "high": 1e9}, "scale_radius": 16.0},
        "disk": {"type": "MiyamotoNagai", "mass": {"prior": "TruncatedNormal", "loc": 6.82e10, "scale": 1e10, "low": 1e10, "high": 2e11}, "a": 3.0, "b": 0.28},
        "bulge": {"type": "PowerLawCutoff", "mass": 4.501e9, "alpha": 1.8, "cutoff_radius": 1.9},
        "dark_disk": {"type": "DarkDisk", "surface_density": {"prior": "Uniform", "low": 0.0, "high": 3e7}, "scale_height": 0.1},
    },
    "inference": {
        "backend": "numpyro",
        "num_chains": 4,
        "num_warmup": 500,
        "num_samples": 1000,
        "target_accept": 0.8,
        # "auto": one posterior per flow member, combined (Rubin's rules), for ensembles;
        # "members" insists on that; "mean": one posterior of the member-mean accelerations
        "combine": "auto",
        # "nodes": flows learn f(x, v), the CBE gives accelerations at nodes, the model is fitted to them (the
        # default); "weak_form": the model is fitted to the stars' weak-form CBE moments (no flows, no nodes;
        # bd.weak_form_data, docs/weak-form.md), the [weak_form] table's settings
        "likelihood": "nodes",
    },
    "weak_form": {
        # the ball inside which the catalog is complete: [] = the sphere recorded with the catalog (a mock's, or
        # catalog.within_kpc's), else [x, y, z, radius] in Galactocentric kpc
        "volume": [],
        "degree_x": 2,  # highest degree of the spatial test functions (2: 10 of them)
        "degree_v": 1,  # highest degree of the velocity monomials (1: v_x, v_y, v_z; so 30 moments by default)
        # a known selection by position: the name of a catalog column with each star's detection probability ε (a
        # dust map's completeness at the star, a survey's selection function), up to a constant factor; each star's
        # moments are weighted by 1/ε (weak_form_data's efficiency). "" = complete inside the ball. A column gives ε
        # at the stars only, so it cannot be combined with errors.correct's position errors (which differentiate ε)
        "efficiency_column": "",
    },
    "report": {
        "dark_disk_scale_heights_kpc": [0.05, 0.1, 0.2, 0.4],
        "corner": True,
    },
}
"""The default configuration (``bayesdyn config`` prints it as TOML; docs/cli.md explains every key)."""

KEY_HELP: dict[str, str] = {
    "output": "run folder (stages are cached there; a rerun resumes); relative to the working directory",
    "seed": "master seed of every stage (flows, nodes, velocity draws, NUTS); an integer in [0, 2**31)",
    "catalog.source": '"default" = the shipped disk mock; a Gaia file (FITS, VOTable, CSV, ECSV, Parquet, HDF5) or '
                      "a Catalog .npz (a bayesdyn mock's carries its truth); relative to the config file's folder",
    "catalog.strict": "refuse rows without a 6D point instead of dropping them (with a warning)",
    "catalog.max_stars": "0 = all; else a random subset of this many stars",
    "catalog.within_kpc": "0 = no cut; else keep stars within this distance of the Sun [kpc]",
    "catalog.parallax_over_error": "0 = no cut; else keep parallax / parallax_error at or above this",
    "psd.ensemble": "flow members (fit_psd's ensemble; the calibrated setting is 4)",
    "psd.n_layers": "MAF layers per flow",
    "psd.width": "hidden units per layer",
    "psd.max_epochs": "training epochs at most (early stopping on the validation loss)",
    "psd.patience": "epochs without improvement before stopping",
    "psd.batch_size": "stars per mini-batch",
    "psd.learning_rate": "Adam's learning rate",
    "psd.bootstrap": "each member trained on a bootstrap resample of the stars",
    "psd.seeds_per_resample": '"auto" = 1 (one member per bootstrap resample); members per resample',
    "psd.support_core": "fraction of the support ball's radius left untouched by the support map",
    "psd.flow": '"maf" (the calibrated default) or "sas_maf" (opt-in); also "coupling", "spline_maf", '
                '"spline_coupling" (uncalibrated, docs/flows.md)',
    "psd.radial_map": '"auto", or the radius s in robust standard deviations (0 = no map)',
    "psd.axis_map": "[] = none; else per-axis radii [s_x, s_y, s_z] of asinh maps, instead of the radial map",
    "nodes.n": "nodes where accelerations are estimated",
    "nodes.radius_kpc": "nodes within this distance of the Sun [kpc], never beyond the one holding 80 % of the "
                        "stars; 0 = that distance (origin-centred mocks need 0)",
    "nodes.n_velocities": "velocities drawn from p(v|x) per node",
    "nodes.floor": "relative noise floor on each acceleration covariance",
    "errors.correct": "correct for measurement errors (SIMEX copies; with the weak form, analytically)",
    "errors.copies": "re-smeared copies, one flow fit each (>= 2 estimates their noise); at most one per resample",
    "errors.velocity_error_kms": "Gaussian error per axis [km/s]; both 0 = the catalog's Gaia error columns",
    "errors.position_error_kpc": "Gaussian error per axis [kpc]; both 0 = the catalog's Gaia error columns",
    "inference.backend": '"numpyro" or "blackjax" (NUTS)',
    "inference.num_chains": "chains per posterior",
    "inference.num_warmup": "warm-up steps per chain",
    "inference.num_samples": "draws kept per chain",
    "inference.target_accept": "NUTS's target acceptance probability",
    "inference.combine": '"auto"/"members": one posterior per flow member, combined (Rubin\'s rules); "mean": one '
                         "posterior of the member-mean accelerations",
    "inference.likelihood": '"nodes" (flows, accelerations at nodes) or "weak_form" (the stars\' weak-form CBE '
                            "moments, no flows)",
    "weak_form.volume": "[] = the sphere recorded with the catalog; else [x, y, z, radius] [kpc], Galactocentric",
    "weak_form.degree_x": "highest degree of the spatial test functions (2: 10 of them)",
    "weak_form.degree_v": "highest degree of the velocity monomials (1: 30 moments with degree_x = 2)",
    "weak_form.efficiency_column": '"" = complete inside the ball; else a column of detection probabilities, '
                                   "each star weighted by 1/ε",
    "report.dark_disk_scale_heights_kpc": "scale heights of the dark-disk limits [kpc]; [] = none",
    "report.corner": "draw the corner plot",
}
"""One line per key of :data:`DEFAULT_CONFIG` (outside ``model``), printed after it by ``bayesdyn config`` and
listed in docs/cli.md; a test asks for one per key."""

#: keys whose value is "auto" or an integer
_INT_OR_AUTO = {"psd.seeds_per_resample"}
#: keys whose value is "auto" or a number
_NUM_OR_AUTO = {"psd.radial_map"}

_TYPES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}


def _merge(base: dict, user: dict, path: str, free_tables: tuple[str, ...]) -> dict:
    out = copy.deepcopy(base)
    for key, val in user.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            if path in free_tables:
                out[key] = val
                continue
            raise ConfigError(f"unknown key '{where}'; expected one of {sorted(base)}")
        ref = base[key]
        if isinstance(ref, dict) and path + ("." if path else "") + key in free_tables:
            if not isinstance(val, dict):
                raise ConfigError(f"'{where}' must be a table ([{where}]), got {type(val).__name__}")
            out[key] = copy.deepcopy(val)
        elif isinstance(ref, dict):
            if not isinstance(val, dict):
                raise ConfigError(f"'{where}' must be a table ([{where}]), got {type(val).__name__}")
            out[key] = _merge(ref, val, where, free_tables)
        elif where in _NUM_OR_AUTO:
            if val != "auto" and (isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 <= val < math.inf):
                raise ConfigError(f"'{where}' must be \"auto\" or a finite number ≥ 0, got {val!r}")
            out[key] = val if val == "auto" else float(val)
        elif where in _INT_OR_AUTO:
            if val != "auto" and (isinstance(val, bool) or not isinstance(val, int)):
                raise ConfigError(f"'{where}' must be \"auto\" or an integer, got {val!r}")
            out[key] = val
        else:
            if isinstance(ref, bool) != isinstance(val, bool) or (
                not isinstance(val, type(ref)) and not (isinstance(ref, float) and isinstance(val, int))
            ):
                raise ConfigError(f"'{where}' must be {_TYPES.get(type(ref), type(ref).__name__)}, got {val!r}")
            if isinstance(ref, float) and not math.isfinite(val):  # TOML's nan and inf failed later, deep in a stage
                raise ConfigError(f"'{where}' must be a finite number, got {val!r}")
            out[key] = float(val) if isinstance(ref, float) else val
    return out


def _check_prior(where: str, spec: dict) -> None:
    fam = spec.get("prior")
    if fam not in PRIORS:
        raise ConfigError(f"'{where}.prior' must be one of {sorted(PRIORS)}, got {fam!r}")
    need = PRIORS[fam]
    extra = set(spec) - set(need) - {"prior"}
    missing = [k for k in need if k not in spec]
    if missing:
        raise ConfigError(f"'{where}' ({fam}) needs {list(need)}; missing {missing}")
    if extra:
        raise ConfigError(f"'{where}' ({fam}) takes {list(need)}; unknown {sorted(extra)}")
    for k in need:
        if isinstance(spec[k], bool) or not isinstance(spec[k], (int, float)) or not math.isfinite(spec[k]):
            raise ConfigError(f"'{where}.{k}' must be a finite number, got {spec[k]!r}")
    if "scale" in need and not spec["scale"] > 0:
        raise ConfigError(f"'{where}.scale' ({fam}) must be > 0, got {spec['scale']!r}")
    if "low" in need and not spec["low"] < spec["high"]:
        raise ConfigError(f"'{where}' ({fam}) needs low < high, got low = {spec['low']!r}, high = {spec['high']!r}")
    if fam == "LogUniform" and not spec["low"] > 0:
        raise ConfigError(f"'{where}.low' (LogUniform) must be > 0 (a log-uniform prior cannot reach 0; use Uniform "
                          f"for a range from 0), got {spec['low']!r}")


def validate_config(user: dict[str, Any], *, warn_unused: bool = True) -> dict[str, Any]:
    """Merge a user configuration into :data:`DEFAULT_CONFIG` and validate it.

    The ``[model]`` table replaces the default model as a whole when given. Settings given that the run's route does
    not use (a ``[psd]`` table under the weak form, ``errors`` settings with ``errors.correct = false``) are named in
    a warning, unless ``warn_unused`` is False (a configuration validated again after a merge holds every key).

    Raises:
        ConfigError: naming the key and the expected value.
    """
    cfg = _merge(DEFAULT_CONFIG, user, "", free_tables=("model",))
    if "model" in user:
        cfg["model"] = copy.deepcopy(user["model"])
    from .. import potentials as bp

    if not cfg["model"]:
        raise ConfigError("'model' needs at least one component table, e.g. [model.halo] with type = \"NFW\"")
    for name, comp in cfg["model"].items():
        where = f"model.{name}"
        if not isinstance(name, str) or not name or "." in name:  # parameters read "<name>.<parameter>"
            raise ConfigError(f"'{where}': a component name must be a non-empty string without '.', e.g. "
                              f"[model.halo]; got {name!r}")
        if not isinstance(comp, dict):
            raise ConfigError(f"'{where}' must be a table with a 'type' key")
        typ = comp.get("type")
        if typ not in COMPONENTS:
            raise ConfigError(f"'{where}.type' must be one of {list(COMPONENTS)}, got {typ!r}")
        cls = getattr(bp, typ)
        fixed = set(getattr(cls, "fixed_keywords", ()))
        allowed = set(cls.parameter_names) | fixed
        if not isinstance(comp.get("dark", False), bool):
            raise ConfigError(f"'{where}.dark' must be true or false (whether {name} is dark matter), "
                              f"got {comp['dark']!r}")
        for key, val in comp.items():
            if key in ("type", "dark"):
                continue
            if key not in allowed:
                raise ConfigError(f"'{where}.{key}' is not a parameter of {typ}; expected one of {sorted(allowed)}")
            if key in fixed and (isinstance(val, (dict, bool)) or not isinstance(val, (int, float))):
                raise ConfigError(f"'{where}.{key}' must be a number (a fixed setting of {typ}, not a prior), got {val!r}")
            if isinstance(val, dict):
                _check_prior(f"{where}.{key}", val)
            elif isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ConfigError(f"'{where}.{key}' must be a number or a prior table, got {val!r}")
        missing = allowed - set(comp)
        if missing - fixed:
            raise ConfigError(f"'{where}' ({typ}) is missing parameters {sorted(missing - fixed)}")
        if missing:
            raise ConfigError(f"'{where}' ({typ}) is missing the fixed setting(s) {sorted(missing)} (numbers, e.g. "
                              "reference_radius in kpc near the middle of the tracers' radii)")
        try:  # the component's own checks (a negative scale radius, a bad fixed setting), before any stage runs
            _build_component(comp)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"'{where}' ({typ}): {err}") from None
    if not any(isinstance(v, dict) for comp in cfg["model"].values() for v in comp.values()):
        # (NUTS then stopped in JAX's while_loop with a traceback, after the catalog and the flows)
        raise ConfigError("the model has no free parameter: give at least one parameter of a [model.<name>] table a "
                          'prior, e.g. scale_density = { prior = "LogUniform", low = 1e5, high = 1e9 }')
    inf = cfg["inference"]
    if inf["backend"] not in ("numpyro", "blackjax"):
        raise ConfigError(f"'inference.backend' must be \"numpyro\" or \"blackjax\", got {inf['backend']!r}")
    if inf["combine"] not in ("auto", "members", "mean"):
        raise ConfigError(f"'inference.combine' must be \"auto\", \"members\" or \"mean\", got {inf['combine']!r}")
    if inf["likelihood"] not in ("nodes", "weak_form"):
        raise ConfigError(f"'inference.likelihood' must be \"nodes\" or \"weak_form\", got {inf['likelihood']!r}")
    if inf["likelihood"] == "weak_form" and inf["combine"] == "members":
        raise ConfigError("'inference.combine' = \"members\" combines flow members' posteriors; the weak-form "
                          "likelihood uses no flows: set combine = \"auto\"")
    if inf["likelihood"] == "nodes" and inf["combine"] == "members" and cfg["psd"]["ensemble"] < 2:
        raise ConfigError(f"'inference.combine' = \"members\" combines the posteriors of flow members, and "
                          f"'psd.ensemble' = {cfg['psd']['ensemble']} trains one: set psd.ensemble >= 2 (4 is the "
                          "calibrated setting) or combine = \"auto\"")
    wf = cfg["weak_form"]
    vol = wf["volume"]
    if vol and (len(vol) != 4 or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
                                     for t in vol) or not vol[3] > 0):
        raise ConfigError(f"'weak_form.volume' must be [] (the catalog's recorded sphere) or [x, y, z, radius] in "
                          f"kpc (finite numbers, radius > 0), got {vol!r}")
    wf["volume"] = [float(t) for t in vol]
    if wf["efficiency_column"] and inf["likelihood"] != "weak_form":
        raise ConfigError(f"'weak_form.efficiency_column' = {wf['efficiency_column']!r} weights the weak-form "
                          "moments by 1/ε; the flows route (inference.likelihood = \"nodes\") cannot use ε per star: "
                          "set inference.likelihood = \"weak_form\", or remove the key (docs/howto/dust.md)")
    if wf["degree_x"] < 0 or wf["degree_v"] < 1:
        raise ConfigError(f"'weak_form.degree_x' must be ≥ 0 and 'weak_form.degree_v' ≥ 1, got {wf['degree_x']} "
                          f"and {wf['degree_v']}")
    for key in ("num_chains", "num_warmup", "num_samples"):
        if inf[key] < 1:
            raise ConfigError(f"'inference.{key}' must be a positive integer, got {inf[key]}")
    if not 0 < inf["target_accept"] < 1:
        raise ConfigError(f"'inference.target_accept' must be in (0, 1), got {inf['target_accept']}")
    ps = cfg["psd"]
    if ps["ensemble"] < 1:
        raise ConfigError(f"'psd.ensemble' must be ≥ 1, got {ps['ensemble']}")
    from ..psd._flows import FLOWS

    if cfg["psd"]["flow"] not in FLOWS:
        raise ConfigError(f"'psd.flow' must be one of {sorted(FLOWS)}, got {cfg['psd']['flow']!r}")
    from ..psd._fit import check_seeds_per_resample  # the rule fit_psd applies, checked before any stage runs

    try:
        check_seeds_per_resample(ps["ensemble"], ps["seeds_per_resample"], ps["bootstrap"])
    except ValueError as err:
        raise ConfigError(f"'psd.seeds_per_resample': {err}") from None
    er = cfg["errors"]
    if er["copies"] < 1:
        raise ConfigError(f"'errors.copies' must be ≥ 1 (2 or more estimate the Monte Carlo error), got {er['copies']}")
    if er["correct"] and inf["likelihood"] == "nodes" and ps["ensemble"] >= 2:
        # correct_measurement_errors' rule, before any training: member k is corrected with its resample's copy
        from ..psd._fit import resolve_seeds_per_resample

        groups = ps["ensemble"] // resolve_seeds_per_resample(ps["ensemble"], ps["seeds_per_resample"], ps["bootstrap"])
        if er["copies"] > groups:
            raise ConfigError(
                f"'errors.copies' = {er['copies']} but the flows have {groups} "
                f"{'bootstrap resamples' if ps['bootstrap'] else 'members'} (psd.ensemble = {ps['ensemble']}, "
                f"seeds_per_resample = {ps['seeds_per_resample']!r}): each member is corrected with its resample's "
                f"copy, so copies beyond {groups} would cost a flow fit each and not be used; set errors.copies <= "
                f"{groups}"
            )
    for key in ("velocity_error_kms", "position_error_kpc"):
        if not er[key] >= 0:
            raise ConfigError(f"'errors.{key}' must be ≥ 0 (0 with the other 0: use the Gaia error columns), got {er[key]}")
    from ..psd._fit import _axes  # the rule fit_psd applies

    try:
        axes = _axes(ps["axis_map"] or None)
    except ValueError as err:
        raise ConfigError(f"'psd.axis_map': {err} ([] for none)") from None
    if axes.any() and ps["radial_map"] not in ("auto", 0.0):
        raise ConfigError("'psd.axis_map' and 'psd.radial_map' > 0 are two maps of the positions; set radial_map = 0")
    ps["axis_map"] = axes.tolist() if axes.any() else []  # all zeros is no map: the default's cache key
    if not 0 <= ps["support_core"] < 1:
        raise ConfigError(f"'psd.support_core' must be in [0, 1) (a fraction of the support radius), got {ps['support_core']}")
    if cfg["nodes"]["n"] < 1:
        raise ConfigError(f"'nodes.n' must be ≥ 1, got {cfg['nodes']['n']}")
    if cfg["nodes"]["n_velocities"] < 8:
        raise ConfigError(f"'nodes.n_velocities' must be ≥ 8 (use hundreds), got {cfg['nodes']['n_velocities']}")
    if cfg["nodes"]["radius_kpc"] < 0:
        raise ConfigError(
            f"'nodes.radius_kpc' must be positive (or 0: fitted to the catalog), got {cfg['nodes']['radius_kpc']}"
        )
    cat = cfg["catalog"]
    for key in ("max_stars", "within_kpc", "parallax_over_error"):
        if not cat[key] >= 0:
            raise ConfigError(f"'catalog.{key}' must be ≥ 0 (0 = no cut), got {cat[key]!r}")
    if not 0 <= cfg["seed"] < 2**31:  # fit_psd's range (a larger one failed after the catalog stage)
        raise ConfigError(f"'seed' must be an integer in [0, 2**31), got {cfg['seed']}")
    if not cfg["output"].strip():
        raise ConfigError("'output' must name a folder (default \"bayesdyn-report\"), got an empty string")
    for key in ("max_epochs", "patience", "batch_size", "n_layers", "width"):
        if ps[key] < 1:
            raise ConfigError(f"'psd.{key}' must be a positive integer, got {ps[key]}")
    if not ps["learning_rate"] > 0 or not math.isfinite(ps["learning_rate"]):
        raise ConfigError(f"'psd.learning_rate' must be a positive number, got {ps['learning_rate']}")
    if not 0 <= cfg["nodes"]["floor"] < math.inf:
        raise ConfigError(f"'nodes.floor' must be ≥ 0 (a relative noise floor; 0 = none), got {cfg['nodes']['floor']}")
    hs = cfg["report"]["dark_disk_scale_heights_kpc"]
    if any(isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < math.inf for h in hs):
        raise ConfigError(f"'report.dark_disk_scale_heights_kpc' must be a list of positive numbers in kpc (e.g. "
                          f"[0.05, 0.1] for 50 and 100 pc; [] for no limits), got {hs!r}")
    cfg["report"]["dark_disk_scale_heights_kpc"] = [float(h) for h in hs]
    if warn_unused:
        _warn_unused(user, cfg)
    return cfg


def _warn_unused(user: dict[str, Any], cfg: dict[str, Any]) -> None:
    """A warning naming the settings the user gave that this configuration's route does not use (they were ignored
    without a word: a [psd] table under the weak form, errors settings with errors.correct = false, ...)."""
    weak = cfg["inference"]["likelihood"] == "weak_form"
    parts = []

    def given(table: str) -> list[str]:  # keys set to other than the default (`bayesdyn config` prints them all)
        t = user.get(table)
        return [k for k, v in t.items() if v != DEFAULT_CONFIG[table].get(k)] if isinstance(t, dict) else []

    if weak:
        flows = [f"[{t}]" for t in ("psd", "nodes") if given(t)]
        if "combine" in given("inference"):
            flows.append("inference.combine")
        if flows:
            parts.append(f"{', '.join(flows)} (inference.likelihood = \"weak_form\" fits no flows and no nodes; "
                         "`bayesdyn fit-psd` alone still trains flows with [psd])")
    else:
        wf = [f"weak_form.{k}" for k in given("weak_form") if k != "efficiency_column"]
        if wf:
            parts.append(f"{', '.join(wf)} (used by inference.likelihood = \"weak_form\" only)")
    source = str(cfg["catalog"]["source"])
    if "strict" in given("catalog") and (source == "default" or source.lower().endswith(".npz")):
        parts.append("catalog.strict (it applies to reading a Gaia table; the default mock and a saved catalog "
                     ".npz are read as they are)")
    er = [k for k in given("errors") if k != "correct"]
    if er and not cfg["errors"]["correct"]:
        parts.append(f"{', '.join('errors.' + k for k in er)} (errors.correct = false)")
    elif "copies" in er and weak:
        parts.append("errors.copies (the weak form corrects its moments analytically, without copies)")
    if parts:
        warnings.warn("settings not used by this run: " + "; ".join(parts) + ". Remove them, or change the setting "
                      "that leaves them out", UserWarning, stacklevel=3)


def resolve_source(source: str, config_dir: str | Path | None) -> str:
    """The catalog file a ``catalog.source`` names, as an absolute path.

    A relative path is read relative to the configuration file's folder first, then
    relative to the current directory; ``"default"`` (the shipped mock) is kept.

    Raises:
        ConfigError: no file at any of those places (all of them named).
    """
    if source == "default":
        return source
    src = Path(source).expanduser()
    tried = [src] if src.is_absolute() else ([Path(config_dir) / src] if config_dir is not None else []) + [Path.cwd() / src]
    for cand in tried:
        if cand.is_file():
            return str(cand.resolve())
    where = " nor ".join(dict.fromkeys(str(c) for c in tried))
    raise ConfigError(
        f"'catalog.source' = {source!r}: no file at {where}; give a path relative to the configuration "
        "file (or absolute), or \"default\" for the shipped disk mock"
    )


def overlay(user: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of the user settings ``user`` with ``overrides`` put over them, table by table (a table in both is
    merged key by key): what a configuration file says, with the command line's options in their place."""
    out = copy.deepcopy(user)
    for key, val in (overrides or {}).items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], val)
        elif isinstance(val, dict) and key in out:  # the file's `inference = 3`: kept, for validation to name
            continue
        else:
            out[key] = copy.deepcopy(val)
    return out


#: Suffixes of catalog files (a run's catalog.source), which are not configuration files.
_CATALOG_SUFFIXES = frozenset({".fits", ".fit", ".fz", ".vot", ".xml", ".csv", ".ecsv", ".parquet", ".h5", ".hdf5",
                               ".npz"})


#: The catalog stage's record of the file its cached catalog was read from (path, size, times, sha256).
SOURCE_RECORD = ".catalog.source.json"


def recorded_source_path(folder: Path) -> Path | None:
    """The path of the file the run folder's cached catalog was read from (its source record), or None."""
    try:
        recorded = json.loads((Path(folder) / SOURCE_RECORD).read_text(encoding="utf-8")).get("path")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return Path(recorded) if isinstance(recorded, str) else None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read and validate a TOML run configuration.

    ``catalog.source``, when a relative path, is resolved relative to the
    configuration file's folder (then the current directory) and stored absolute.
    ``overrides`` (settings in the file's layout, e.g. the command line's
    ``{"inference": {"likelihood": "weak_form"}}``) replace the file's before it is
    validated, so the checks and the warnings about unused settings see the run's
    own settings.
    """
    if not str(path).strip():  # (Path("") is ".", the current folder)
        raise ConfigError("no configuration file at '': the path is empty (an unset variable?); give a TOML file, "
                          "or write one with `bayesdyn config > run.toml`")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the configuration file (TOML) in it, or write one with "
                          "`bayesdyn config > run.toml`")
    if not path.is_file():
        raise ConfigError(f"no configuration file at {str(path)!r}")
    if path.suffix.lower() in _CATALOG_SUFFIXES:  # (it was called "not UTF-8 text: save it again in UTF-8")
        raise ConfigError(f"{path} is a catalog, not a configuration file: put it in a configuration's "
                          f"catalog.source (`bayesdyn config > run.toml`, then source = \"{path}\" in its [catalog])")
    try:
        # TOML is UTF-8 whatever the locale; utf-8-sig also reads a file saved with a byte-order mark (Notepad)
        user = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except PermissionError as err:
        raise ConfigError(f"{path} cannot be read ({err.strerror}): check its permissions") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text ({err}); TOML files are UTF-8: save it again in "
                          "UTF-8") from None
    except (tomllib.TOMLDecodeError, RecursionError) as err:  # RecursionError: arrays or tables nested too deep
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    cfg = validate_config(overlay(user, overrides))
    try:
        cfg["catalog"]["source"] = resolve_source(cfg["catalog"]["source"], path.resolve().parent)
    except ConfigError:
        # the file is gone, but the run folder holds the catalog read from it: the catalog stage uses that one
        # (and says so) while its settings are unchanged; the command line had refused every rerun of such a folder
        run = Path(cfg["output"]).expanduser()
        if not ((run / "catalog.npz").is_file() and (run / ".catalog.stamp").is_file()):
            raise
        src = Path(cfg["catalog"]["source"]).expanduser()
        # the candidates resolve_source tried (the config's folder, then the current one): the one the cached catalog
        # was read from (the catalog stage refuses any other), else the first
        tried = [src.resolve()] if src.is_absolute() else [(path.resolve().parent / src).resolve(), (Path.cwd() / src).resolve()]
        recorded = recorded_source_path(run)
        cfg["catalog"]["source"] = str(next((c for c in tried if recorded == c), tried[0]))
    return cfg


def _build_component(comp: dict[str, Any]):
    """One potential component from its ``[model.<name>]`` table (priors as NumPyro distributions)."""
    import numpyro.distributions as dist

    from .. import potentials as bp

    kwargs = {}
    for key, val in comp.items():
        if key in ("type", "dark"):
            continue
        if isinstance(val, dict):
            fam = val["prior"]
            args = [float(val[k]) for k in PRIORS[fam]]
            if fam == "TruncatedNormal":
                kwargs[key] = dist.TruncatedNormal(args[0], args[1], low=args[2], high=args[3])
            else:
                kwargs[key] = getattr(dist, fam)(*args)
        else:
            kwargs[key] = float(val)
    return getattr(bp, comp["type"])(**kwargs)


def dark_components(cfg_model: dict[str, Any]) -> tuple[str, ...] | None:
    """The ``[model]`` table's dark-matter components when any table has a ``dark`` key, else None (PotentialModel's
    rule by name). A ``dark`` key decides for its own component only; the others keep the rule by name (a single
    ``dark = false`` on the dark disk had dropped the halo too, and with it ρ_DM(⊙) from the report)."""
    if not any("dark" in comp for comp in cfg_model.values()):
        return None
    return tuple(name for name, comp in cfg_model.items() if bool(comp.get("dark", _is_dark(name))))


def build_model(cfg_model: dict[str, Any]):
    """A :class:`bayesdyn.PotentialModel` from the ``[model]`` table."""
    from ..inference import PotentialModel

    comps = {name: _build_component(comp) for name, comp in cfg_model.items()}
    dark = dark_components(cfg_model)
    stellar = [n for n in dark or () if "dark" not in cfg_model[n] and ("stellar" in n.lower() or "star" in n.lower())]
    if stellar:  # PotentialModel warns only without dark=: say it here for the unflagged ones counted by name
        warnings.warn(f"model components {stellar} have no `dark` key and count as dark matter by name (they contain "
                      "'halo' or 'dark'); if they are stellar, add dark = false to their [model.<name>] tables",
                      UserWarning, stacklevel=2)
    return PotentialModel(dark=dark, **comps)  # no `dark` key anywhere: PotentialModel's rule by name

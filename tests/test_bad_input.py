"""Bad input is refused with an error that names the column, the count of bad rows and the fix.

Covers the list of issue 2 ("Bad input"): missing columns, NaN/inf in arrays given
directly, wrong shapes, non-numeric columns, Quantities of the wrong dimension
(lengths in pc are converted, a velocity given as a length is refused), selections
that leave no star, Gaia rows that give no 6D point (dropped with a report, or an
error with strict=True), and catalog files that are garbage or tampered with.
"""

import json
import pickle

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable, Table
from numpy.testing import assert_allclose

import bayesdyn as bd
from bayesdyn.catalog import CatalogError, CatalogUnitError, DroppedRowsWarning
from bayesdyn.units import UnitError


def gaia_table(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return QTable(
        {
            "ra": rng.uniform(0, 360, n) * u.deg,
            "dec": rng.uniform(-60, 60, n) * u.deg,
            "parallax": rng.uniform(1, 5, n) * u.mas,
            "pmra": rng.normal(0, 10, n) * u.mas / u.yr,
            "pmdec": rng.normal(0, 10, n) * u.mas / u.yr,
            "radial_velocity": rng.normal(0, 30, n) * u.km / u.s,
        }
    )


@pytest.fixture
def xv(rng):
    return rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) * 100


@pytest.fixture
def cat(xv):
    return bd.Catalog(*xv)


# ------------------------------------------------------------------ arrays given directly
def test_nan_in_positions(xv):
    x, v = xv
    x[[2, 5], 1] = np.nan
    with pytest.raises(CatalogError, match=r"x \(positions\) has 2 row\(s\) with NaN or inf \(first rows: \[2, 5\]\).*np.isfinite"):
        bd.Catalog(x, v)


def test_inf_in_velocities(xv):
    x, v = xv
    v[7, 0] = np.inf
    with pytest.raises(CatalogError, match=r"v \(velocities\) has 1 row\(s\) with NaN or inf \(first rows: \[7\]\)"):
        bd.Catalog(x, v)


def test_wrong_shape(xv):
    x, v = xv
    with pytest.raises(CatalogError, match=r"shape \(8, 2\); it must be \(N, 3\) in kpc"):
        bd.Catalog(x[:, :2], v)
    with pytest.raises(CatalogError, match=r"shape \(3, 8\).*looks transposed"):
        bd.Catalog(x, v.T)
    with pytest.raises(CatalogError, match="x has 8 rows but v has 7"):
        bd.Catalog(x, v[:7])


def test_non_numeric_array(xv):
    _, v = xv
    with pytest.raises(CatalogError, match=r"x \(positions\) is not numeric \(dtype <U"):
        bd.Catalog(np.full((8, 3), "1.0"), v)


def test_empty_catalog():
    with pytest.raises(CatalogError, match=r"empty \(0 stars\)"):
        bd.Catalog(np.zeros((0, 3)), np.zeros((0, 3)))


def test_velocity_given_as_length_is_refused(xv):
    x, v = xv
    with pytest.raises(CatalogUnitError, match=r"v \(velocities\) was given in kpc .*must be a velocity"):
        bd.Catalog(x, v * u.kpc)
    with pytest.raises(UnitError):  # also a bayesdyn.units.UnitError
        bd.Catalog(x * u.km / u.s, v)


def test_lengths_in_pc_are_converted(xv):
    x, v = xv
    cat = bd.Catalog(x * 1000 * u.pc, (v * 1000) * u.m / u.s)
    assert_allclose(cat.x, x, rtol=1e-14)
    assert_allclose(cat.v, v, rtol=1e-14)


def test_column_of_wrong_length_or_object(xv):
    with pytest.raises(CatalogError, match="column 'feh' has 5 rows but the catalog has 8 stars"):
        bd.Catalog(*xv, columns={"feh": np.zeros(5)})
    with pytest.raises(CatalogError, match="column 'tag' has dtype object"):
        bd.Catalog(*xv, columns={"tag": np.array([None] * 8, dtype=object)})
    with pytest.raises(CatalogUnitError, match="column 'parallax' is in km / s"):
        bd.Catalog(*xv, columns={"parallax": np.ones(8) * u.km / u.s})


# ------------------------------------------------------------------ Gaia tables
def test_missing_gaia_columns():
    t = gaia_table()
    del t["pmdec"]
    with pytest.raises(CatalogError, match=r"lacks the column\(s\) 'pmdec'.*6 rows.*select them from the Gaia archive"):
        bd.Catalog.from_gaia(t)


def test_missing_radial_velocity_column():
    t = gaia_table()
    del t["radial_velocity"]
    with pytest.raises(CatalogError, match=r"'radial_velocity'.*add gaia_source.radial_velocity"):
        bd.Catalog.from_gaia(t)


def test_non_numeric_gaia_column():
    t = Table(gaia_table())
    t["parallax"] = [f"{p:.3f}" for p in np.asarray(t["parallax"])]
    with pytest.raises(CatalogError, match=r"column 'parallax' of the table is not numeric \(dtype <U5\): all 6 rows hold numbers as text.*in mas"):
        bd.Catalog.from_gaia(t)
    t["parallax"][[1, 3]] = "NULL"
    with pytest.raises(CatalogError, match=r"2 of 6 rows are not numbers \(e.g. 'NULL'\); remove or fix those rows"):
        bd.Catalog.from_gaia(t)


def test_gaia_column_with_wrong_unit():
    t = gaia_table()
    t["parallax"] = t["parallax"].value * u.km / u.s
    with pytest.raises(CatalogUnitError, match=r"column 'parallax' of the table is in km / s .*convertible to mas.*all 6 rows"):
        bd.Catalog.from_gaia(t)


def test_unrecognised_unit():
    t = Table(gaia_table())
    t["ra"].unit = u.Unit("degreez", parse_strict="silent")
    with pytest.raises(CatalogError, match=r"column 'ra' .*'degreez', which astropy does not recognise.*unit = 'deg'"):
        bd.Catalog.from_gaia(t)


def test_rows_without_6d_point_are_dropped_and_reported():
    t = gaia_table(10)
    t["radial_velocity"][[0, 1]] = np.nan
    t["parallax"][2] = 0 * u.mas
    t["parallax"][3] = -1 * u.mas
    t["dec"][4] = np.nan
    with pytest.warns(DroppedRowsWarning) as rec:
        cat = bd.Catalog.from_gaia(t)
    msg = str(rec[0].message)
    assert "kept 5 of 10" in msg and "2 with no radial_velocity" in msg and "1 with NaN/inf astrometry" in msg
    assert "2 with parallax <= 0" in msg and "strict=True" in msg
    assert cat.n == 5 and sum(r.removed for r in cat.history) == 5
    with pytest.raises(CatalogError, match=r"5 of 10 rows give no 6D point .*strict=True refuses them"):
        bd.Catalog.from_gaia(t, strict=True)


@pytest.mark.parametrize("kind", [Table, QTable])
def test_masked_radial_velocity_counts_as_missing(kind):
    t = kind(gaia_table(5), masked=True)  # MaskedColumn / MaskedQuantity
    t["radial_velocity"].mask = [True, False, True, False, False]
    with pytest.warns(DroppedRowsWarning, match="2 with no radial_velocity"):
        assert bd.Catalog.from_gaia(t).n == 3


def test_no_usable_row():
    t = gaia_table(4)
    t["parallax"] = -np.ones(4) * u.mas
    with pytest.raises(CatalogError, match=r"none of its 4 rows gives a 6D point \(4 with parallax <= 0"):
        bd.Catalog.from_gaia(t)
    with pytest.raises(CatalogError, match="has 0 rows"):
        bd.Catalog.from_gaia(gaia_table()[:0])


def test_table_with_neither_column_set():
    t = Table({"x": [1.0], "pos_y": [2.0], "ra": [3.0]})
    with pytest.raises(CatalogError, match=r"neither Galactocentric columns \(missing \['y', 'z', 'v_x'.*nor Gaia columns \(missing \['dec'"):
        bd.Catalog.from_table(t)


def test_nan_in_galactocentric_table(xv):
    x, v = xv
    t = Table({"x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "v_x": v[:, 0], "v_y": v[:, 1], "v_z": v[:, 2]})
    t["v_y"][[1, 4, 6]] = np.nan
    with pytest.raises(CatalogError, match=r"column 'v_y' of the table has 3 of 8 rows that are NaN.*\[1, 4, 6\]"):
        bd.Catalog.from_table(t)
    t["v_y"] = v[:, 1] * u.kpc
    with pytest.raises(CatalogUnitError, match="column 'v_y' of the table is in kpc"):
        bd.Catalog.from_table(t)


def test_unknown_file_extension(tmp_path):
    path = tmp_path / "stars.dat"
    path.write_text("ra dec\n1 2\n")
    with pytest.raises(CatalogError, match=r"cannot tell the table format of .*stars.dat.*\.fits.*format="):
        bd.Catalog.from_gaia(path)
    with pytest.raises(FileNotFoundError):
        bd.Catalog.from_gaia(tmp_path / "absent.fits")
    with pytest.raises(CatalogError, match="could not read .*broken.fits' as fits \\(OSError"):
        (tmp_path / "broken.fits").write_bytes(b"not a fits file at all" * 200)
        bd.Catalog.from_gaia(tmp_path / "broken.fits")
    with pytest.raises(CatalogError, match="expected a file path or an astropy Table, got ndarray"):
        bd.Catalog.from_gaia(np.zeros((3, 6)))


# ------------------------------------------------------------------ selections
def test_selections_that_leave_no_star(cat):
    with pytest.raises(CatalogError, match=r"'within 1e-06 kpc of the Sun' leaves no star \(it would remove all 8\); loosen"):
        cat.within(1e-6)
    with pytest.raises(CatalogError, match="leaves no star"):
        cat.in_volume(z=(50, 60))
    with pytest.raises(CatalogError, match="leaves no star"):
        cat.select(np.zeros(8, dtype=bool), "nothing")


def test_selections_needing_absent_columns(cat):
    with pytest.raises(CatalogError, match=r"with_rv\(\) needs the column 'radial_velocity'"):
        cat.with_rv()
    with pytest.raises(CatalogError, match=r"parallax_over_error\(\) needs the column 'parallax'"):
        cat.parallax_over_error(5)
    with pytest.raises(CatalogError, match=r"g_mag\(\) needs the column 'phot_g_mean_mag'"):
        cat.g_mag(max=15)


def test_malformed_selection_arguments(cat):
    with pytest.raises(CatalogError, match=r"shape \(7,\), expected \(8,\)"):
        cat.select(np.ones(7, dtype=bool))
    with pytest.raises(CatalogError, match="dtype int64; pass a boolean"):
        cat.select(np.ones(8, dtype=np.int64))
    with pytest.raises(CatalogError, match=r"R = \(9.0, 5.0\) is no interval"):
        cat.in_volume(R=(9, 5))
    with pytest.raises(CatalogError, match="needs both center= and radius="):
        cat.in_volume(center="sun")
    with pytest.raises(CatalogError, match="in_volume\\(\\) needs a shape"):
        cat.in_volume()
    with pytest.raises(CatalogUnitError, match="distance was given in km / s"):
        cat.within(3 * u.km / u.s)
    with pytest.raises(CatalogError, match="positive, finite length"):
        cat.within(-1)
    with pytest.raises(CatalogError, match="center='moon' is unknown"):
        cat.within(1, center="moon")
    with pytest.raises(CatalogError, match="needs max="):
        cat.g_mag()
    # a masked selection array: its masked entries are refused (they selected by the values under the mask); a mask
    # with nothing masked selects as its values
    hidden = np.ma.array(np.ones(8, dtype=bool), mask=[True] + [False] * 7)
    with pytest.raises(CatalogError, match="1 masked entries.*filled"):
        cat.select(hidden)
    assert cat.select(np.ma.array(np.arange(8) > 2, mask=False)).n == 5


def test_parallax_errors_of_zero_or_below_are_refused():
    """A parallax_error of 0 made an infinite signal to noise that passed any parallax_over_error cut (and a negative
    one failed every cut): both are refused, naming the stars' count and the fix."""
    t = gaia_table()
    t["parallax_error"] = np.array([0.05, 0.0, 0.05, 0.05, -0.1, 0.05]) * u.mas
    gaia = bd.Catalog.from_gaia(t)
    with pytest.raises(CatalogError, match=r"2 stars have parallax_error ≤ 0"):
        gaia.parallax_over_error(5)
    fixed = gaia.select(gaia.columns["parallax_error"] > 0, "positive parallax_error")
    assert fixed.parallax_over_error(0.0).n == fixed.n


# ------------------------------------------------------------------ error propagation
def test_errors_need_error_columns(cat):
    with pytest.raises(CatalogError, match="no Gaia observables"):
        cat.covariance()
    gaia = bd.Catalog.from_gaia(gaia_table())
    with pytest.raises(CatalogError, match=r"lacks the error column\(s\) \['parallax_error', 'pmra_error'"):
        gaia.error_draws(10, seed=0)
    t = gaia_table()
    for name, unit in (("parallax", u.mas), ("pmra", u.mas / u.yr), ("pmdec", u.mas / u.yr), ("radial_velocity", u.km / u.s)):
        t[f"{name}_error"] = np.full(6, 0.1) * unit
    t["parallax_error"][[1, 2]] = np.nan
    with pytest.raises(CatalogError, match=r"column 'parallax_error' has 2 of 6 rows that are NaN, inf or negative"):
        bd.Catalog.from_gaia(t).covariance()
    with pytest.raises(CatalogError, match="n_draws must be a positive integer"):
        bd.Catalog.from_gaia(t).error_draws(0, seed=1)


# ------------------------------------------------------------------ files
def test_garbage_and_pickled_files_are_refused(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CatalogError, match="is not a bayesdyn catalog file"):
        bd.Catalog.load(junk)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.touch, ())

    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CatalogError, match="is not a bayesdyn catalog file"):
        bd.Catalog.load(evil)
    # a pickled object array inside an otherwise valid archive
    inner = tmp_path / "inner.npz"
    np.savez(inner, header=np.frombuffer(b"{}", dtype=np.uint8), x=np.array([Evil()], dtype=object))
    with pytest.raises(CatalogError, match="is not a bayesdyn catalog file"):
        bd.Catalog.load(inner)
    assert not marker.exists()  # no code ran

    npy = tmp_path / "plain.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(CatalogError, match="single array"):
        bd.Catalog.load(npy)


def _tampered(cat, path, **changes):
    cat.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    for key, value in changes.items():
        if key in ("x", "v", "col_0"):
            arrays[key] = value
        else:
            header[key] = value
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    return path


def test_tampered_catalog_files(cat, tmp_path):
    cat = cat.within(100)
    cat.columns["feh"] = np.zeros(8)
    p = tmp_path / "t.npz"
    with pytest.raises(CatalogError, match="header format is 'pandas', expected 'bayesdyn.Catalog'"):
        bd.Catalog.load(_tampered(cat, p, format="pandas"))
    with pytest.raises(CatalogError, match="version 99, newer than this bayesdyn reads"):
        bd.Catalog.load(_tampered(cat, p, version=99))
    with pytest.raises(CatalogError, match=r"array 'x' is .*\(7, 3\).*expected \(8, 3\)"):
        bd.Catalog.load(_tampered(cat, p, x=np.zeros((7, 3))))
    with pytest.raises(CatalogError, match="column 'feh' has shape"):
        bd.Catalog.load(_tampered(cat, p, col_0=np.zeros(3)))
    with pytest.raises(CatalogError, match="do not match the header's 2 columns"):
        bd.Catalog.load(_tampered(cat, p, columns=["feh", "extra"]))
    with pytest.raises(CatalogError, match="solar parameters or history are malformed"):
        bd.Catalog.load(_tampered(cat, p, solar={"galcen_distance_kpc": "far"}))
    with pytest.raises(CatalogError, match=r"x \(positions\) has 1 row\(s\) with NaN"):
        x = cat.x.copy()
        x[0, 0] = np.nan
        bd.Catalog.load(_tampered(cat, p, x=x))
    with pytest.raises(CatalogError, match="meta/history cannot be written as JSON"):
        cat.meta["bad"] = object()
        cat.save(tmp_path / "meta.npz")


def test_command_line_output_paths_and_model_errors_name_the_fix(tmp_path, monkeypatch, capsys):
    """Found by trying bad input at the command line: an output folder that is a file (or under one), a mock's
    --output that is a folder or in a folder that is not there, an unreadable config and a model with no free
    parameter each gave a bare traceback (the last after the flows); "~" in 'output' made a folder named "~"."""
    from pathlib import Path

    from bayesdyn import cli
    from bayesdyn.pipeline import ConfigError, Run, load_config, validate_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    for output in ("afile", "afile/sub"):
        (tmp_path / "c.toml").write_text(f'output = "{output}"\n')
        assert cli.main(["run", str(tmp_path / "c.toml")]) == 2
        assert "is a file, or lies under one: choose another folder" in capsys.readouterr().err
    assert cli.main(["mock", "plummer", "--n", "50", "--output", str(tmp_path)]) == 1
    assert "is a folder; give a file name in it" in capsys.readouterr().err
    assert cli.main(["mock", "plummer", "--n", "50", "--output", str(tmp_path / "no" / "m.npz")]) == 1
    assert "does not exist; create it first" in capsys.readouterr().err
    # a saved catalog is a .npz whatever its name: saved.fits was written as one and could not be read back; the
    # catalog command reads a saved .npz (in any case) back, and the pipeline takes a .NPZ source as a saved catalog
    assert cli.main(["mock", "plummer", "--n", "50", "--output", str(tmp_path / "saved.fits")]) == 1
    assert "writes a catalog as a .npz file" in capsys.readouterr().err and not (tmp_path / "saved.fits").exists()
    assert cli.main(["mock", "plummer", "--n", "50", "--output", str(tmp_path / "saved.NPZ")]) == 0
    capsys.readouterr()
    assert cli.main(["catalog", str(tmp_path / "saved.NPZ")]) == 0
    assert "50 stars" in capsys.readouterr().out
    with pytest.raises(CatalogError, match=r"is a catalog saved by bayesdyn \(\.npz\), not a table: read it with "
                                           r"Catalog\.read"):
        bd.Catalog.from_gaia(tmp_path / "saved.NPZ")
    assert cli.main(["catalog", str(tmp_path / "saved.NPZ"), "--strict"]) == 1
    assert "--strict applies to Gaia tables only" in capsys.readouterr().err
    from bayesdyn.pipeline import DEFAULT_CONFIG

    (tmp_path / "npz.toml").write_text(f'[catalog]\nsource = "{tmp_path / "saved.NPZ"}"\n')
    cfg = load_config(tmp_path / "npz.toml")
    assert cfg != DEFAULT_CONFIG and Run(cfg, folder=tmp_path / "run", log=lambda *a: None).catalog().n == 50
    fixed = {"model": {"halo": {"type": "NFW", "scale_density": 1e7, "scale_radius": 16.0}}}
    with pytest.raises(ConfigError, match="the model has no free parameter"):
        validate_config(fixed)
    (tmp_path / "ok.toml").write_text("")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "read_text", denied)
        with pytest.raises(ConfigError, match="cannot be read .Permission denied.: check its permissions"):
            load_config(tmp_path / "ok.toml")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = Run(validate_config({"output": "~/runs/a"}), log=lambda *_: None)
    assert run.folder == tmp_path / "home" / "runs" / "a" and run.folder.is_dir() and not (tmp_path / "~").exists()


def test_settings_the_route_does_not_use_are_named():
    """A [psd] or [nodes] table under the weak form, weak_form settings under the nodes route, errors settings with
    errors.correct = false, and copies under the weak form were ignored without a word (a review's finding)."""
    import warnings

    from bayesdyn.pipeline import validate_config

    with pytest.warns(UserWarning, match=r"not used by this run: \[psd\], \[nodes\], inference.combine"):
        validate_config({"inference": {"likelihood": "weak_form", "combine": "mean"}, "psd": {"ensemble": 2},
                         "nodes": {"n": 10}})
    with pytest.warns(UserWarning, match=r"weak_form.degree_x .*; errors.copies \(errors.correct = false\)"):
        validate_config({"weak_form": {"degree_x": 3}, "errors": {"copies": 3}})
    with pytest.warns(UserWarning, match="errors.copies .the weak form corrects its moments analytically"):
        validate_config({"errors": {"correct": True, "copies": 3}, "inference": {"likelihood": "weak_form"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = validate_config({"psd": {"ensemble": 2}, "errors": {"correct": True, "copies": 2}})
        validate_config(cfg, warn_unused=False)  # a merged configuration holds every key
        from bayesdyn.pipeline import DEFAULT_CONFIG

        validate_config(DEFAULT_CONFIG)  # `bayesdyn config` prints every key: values at their defaults are not named


def test_a_prior_with_mass_below_zero_on_a_positive_parameter_is_warned_about():
    """A Uniform(−1e9, 1e9) prior on a density was accepted without a word (in a config too) and NUTS explored
    negative densities; narrow real-line priors well above 0 and a dark disk's deliberate Normal(0, σ) are not
    warned about."""
    import warnings

    import numpyro.distributions as dist

    from bayesdyn.pipeline import validate_config

    with pytest.warns(UserWarning, match=r"NFW.scale_density must be positive, but its prior Uniform puts 50 %"):
        bd.potentials.NFW(scale_density=dist.Uniform(-1e9, 1e9), scale_radius=16.0)
    with pytest.warns(UserWarning, match="Plummer.mass must be positive"):
        validate_config({"model": {"b": {"type": "Plummer", "mass": {"prior": "Normal", "loc": 1e9, "scale": 1e9},
                                         "scale_radius": 1.0}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bd.potentials.NFW(scale_density=dist.Normal(1e7, 1e6), scale_radius=16.0)  # 3e-23 below 0
        bd.potentials.DarkDisk(surface_density=dist.Normal(0.0, 1e7), scale_height=0.1)  # '>= 0': deliberate


def test_pickle_files_are_refused_without_numpys_advice_to_load_them_unsafely(tmp_path):
    """A pickle (or JSON) given to Catalog.load or load_default was refused with numpy's text "If you trust the file
    you can load it unsafely using allow_pickle= or pickle.load()": advice against the package's own rule."""
    import pickle

    import bayesdyn as bd
    from bayesdyn.catalog import CatalogError
    from bayesdyn.mocks import MockError

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"x": 1}))
    for load, error in ((bd.Catalog.load, CatalogError), (bd.mocks.load_default, MockError)):
        with pytest.raises(error, match="bayesdyn never loads pickles") as err:
            load(path)
        assert "unsafely" not in str(err.value) and "allow_pickle" not in str(err.value)


def test_site_names_with_latex_or_markdown_characters_keep_their_tables_whole():
    """to_latex escaped only `_`: a site `a&b%c#d.mass` added a column (&), commented out the rest of its row (%) and
    failed (#); `|` split a Markdown row. A config component name with a '.' is refused (its parameters read
    "<name>.<parameter>"); other characters a TOML key allows (`thin-disk`) are kept."""
    import warnings

    from bayesdyn.pipeline import ConfigError, DEFAULT_CONFIG, validate_config
    from bayesdyn.results import Posterior

    draws = np.random.default_rng(0).normal(size=(4, 200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = Posterior({"a&b%c#d_e.mass": draws, "x|y.m": draws + 1.0}, {})
        latex, markdown = post.to_latex(), post.to_markdown()
    assert r"\texttt{a\&b\%c\#d\_e.mass} & " in latex
    row = next(line for line in latex.splitlines() if line.startswith(r"\texttt{a"))
    assert row.replace(r"\&", "").count("&") == 2 and "%" not in row.replace(r"\%", "")
    assert all(line.count("|") == 9 for line in markdown.splitlines() if line.startswith("| `"))  # 8 columns
    assert list(validate_config({"model": {"thin-disk": DEFAULT_CONFIG["model"]["halo"]}})["model"]) == ["thin-disk"]
    for name in ("a.b", 1):
        with pytest.raises(ConfigError, match=r"a component name must be a non-empty string without '\.'"):
            validate_config({"model": {name: DEFAULT_CONFIG["model"]["halo"]}})


def test_a_table_whose_reader_package_is_missing_names_the_io_extra(tmp_path, monkeypatch):
    """Parquet without pyarrow (HDF5 without h5py): astropy's ModuleNotFoundError ended the command line in a bare
    traceback; it is a CatalogError that names bayesdyn's io extra."""
    pytest.importorskip("pyarrow")
    import sys

    from bayesdyn.catalog._io import read_table

    path = tmp_path / "stars.parquet"
    Table({"a": [1.0, 2.0]}).write(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(CatalogError, match=r"needs a package that is not installed .*io extra"):
        read_table(path)


def test_command_line_config_paths_and_small_catalogs_name_the_fix(tmp_path, monkeypatch, capsys):
    """Found by a review of the command line: an empty config path (an unset "$CFG") ran the whole default pipeline;
    a folder, a catalog or a file with a byte-order mark as the config got a wrong or no fix; "~" in --output=~/x.npz
    was checked expanded and written to a folder named "~"; a catalog with fewer training stars than
    psd.batch_size gave a traceback; a run folder whose catalog file has gone could not be rerun from the command
    line, though the catalog stage reuses its cached catalog; 'nodes.n_velocities' was named with 'nodes.n'."""
    from bayesdyn import cli
    from bayesdyn.pipeline import ConfigError, Run, load_config, validate_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    from bayesdyn.pipeline import _stages

    with monkeypatch.context() as m:  # (without the fix: the default pipeline would run; fail at once instead)
        m.setattr(_stages.Run, "catalog", lambda self: pytest.fail("an empty config path ran the default pipeline"))
        assert cli.main(["fit-psd", ""]) == 2
    assert "no configuration file at ''" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path)]) == 2
    assert "is a folder; give the configuration file" in capsys.readouterr().err
    assert cli.main(["mock", "plummer", "--n", "50", "--output=~/x.npz"]) == 0
    assert (tmp_path / "home" / "x.npz").is_file() and not (tmp_path / "~").exists()
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "home" / "x.npz")]) == 2
    assert "is a catalog, not a configuration file: put it in a configuration's catalog.source" in \
        capsys.readouterr().err
    (tmp_path / "bom.toml").write_bytes("\ufeffseed = 3\n".encode("utf-8"))
    assert load_config(tmp_path / "bom.toml")["seed"] == 3
    with pytest.raises(ConfigError, match=r"'nodes.n_velocities' must be ≥ 8 \(use hundreds\), got 7"):
        validate_config({"nodes": {"n_velocities": 7}})
    # too few stars for a batch: the config key (and a value) named
    run = Run(validate_config({"catalog": {"max_stars": 300}}), folder=tmp_path / "small", progress=False,
              log=lambda *a: None)
    with pytest.raises(ConfigError, match=r"psd.batch_size = 512: only 270 training stars .*set psd.batch_size ≤ 67"):
        run.psd(run.catalog())
    # the catalog file gone: the run folder's cached catalog is used (the stage says so); without one, refused
    (tmp_path / "gone.toml").write_text(f'output = "{tmp_path / "gone-run"}"\n[catalog]\nsource = "x2.npz"\n')
    (tmp_path / "home" / "x.npz").rename(tmp_path / "x2.npz")
    logs = []
    Run(load_config(tmp_path / "gone.toml"), log=logs.append).catalog()
    (tmp_path / "x2.npz").unlink()
    cached = Run(load_config(tmp_path / "gone.toml"), log=logs.append).catalog()
    assert cached.n == 50 and any("not found: using the catalog cached" in line for line in logs), logs
    # ... also one found through the current folder (resolve_source's second place), not the config's
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "cwd.toml").write_text(f'output = "{tmp_path / "cwd-run"}"\n[catalog]\nsource = "x4.npz"\n')
    bd.mocks.plummer(60, seed=1)[0].save(tmp_path / "x4.npz")
    Run(load_config(tmp_path / "cfgs" / "cwd.toml"), log=logs.append).catalog()
    (tmp_path / "x4.npz").unlink()
    assert Run(load_config(tmp_path / "cfgs" / "cwd.toml"), log=logs.append).catalog().n == 60
    # ... but not another file's: a mistyped or missing source beside a run folder of another catalog is refused
    (tmp_path / "typo.toml").write_text(f'output = "{tmp_path / "gone-run"}"\n[catalog]\nsource = "x3.npz"\n')
    with pytest.raises(ConfigError, match=r"x3.npz': no such file, and the catalog cached in .*gone-run was read "
                                          r"from .*x2.npz; restore the file, fix the path"):
        Run(load_config(tmp_path / "typo.toml"), log=logs.append).catalog()
    # ... nor under other [catalog] settings, which need the file: said why
    (tmp_path / "gone.toml").write_text(f'output = "{tmp_path / "gone-run"}"\n[catalog]\nsource = "x2.npz"\n'
                                        'max_stars = 40\n')
    with pytest.raises(ConfigError, match="made with other \\[catalog\\] settings, so it cannot stand in"):
        Run(load_config(tmp_path / "gone.toml"), log=logs.append).catalog()
    (tmp_path / "gone.toml").write_text(f'output = "{tmp_path / "other-run"}"\n[catalog]\nsource = "x2.npz"\n')
    with pytest.raises(ConfigError, match="'catalog.source' = 'x2.npz': no file at"):
        load_config(tmp_path / "gone.toml")


def test_weak_form_demo_draws_enough_for_its_one_posterior(monkeypatch):
    """`bayesdyn demo --likelihood weak_form` fits one posterior, not one per flow member: it draws WEAK_DEMO_SAMPLES
    per chain (600 had left the bulk ESS at 215–355 and the report's summary said that the posterior did not
    converge cleanly); the flows' demo and --fast keep theirs."""
    from bayesdyn import cli

    seen = {}
    monkeypatch.setattr(cli, "_run", lambda args, upto, overrides: seen.setdefault(
        (args.likelihood, args.fast), overrides["inference"]["num_samples"]) and 0)
    for argv in (["demo", "--likelihood", "weak_form"], ["demo"], ["demo", "--fast", "--likelihood", "weak_form"]):
        cli.main(argv)
    assert seen == {("weak_form", False): cli.WEAK_DEMO_SAMPLES, (None, False): 600, ("weak_form", True): 100}
    assert cli.WEAK_DEMO_SAMPLES == 2000 and cli.DEMO_OVERRIDES["inference"]["num_samples"] == 600

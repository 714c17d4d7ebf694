"""Catalog: constructors, selections, summary, tables, files, error propagation (synthetic data)."""

import io
import warnings
import zipfile

import astropy.coordinates as coord
import astropy.units as u
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import QTable, Table
from numpy.testing import assert_allclose

import bayesdyn as bd
from bayesdyn.catalog import CutRecord, DroppedRowsWarning, galactocentric_affine, observables_to_galactocentric
from bayesdyn.catalog._gaia import K_MASYR_KPC

MAS_IN_RAD = np.pi / (180 * 3.6e6)


def fake_gaia(n=50, seed=0, errors=True):
    """A Gaia-like table: stars 0.1–5 kpc away all over the sky, with errors and correlations."""
    rng = np.random.default_rng(seed)
    t = QTable()
    t["source_id"] = np.arange(n, dtype=np.int64) + 10**18
    t["ra"] = rng.uniform(0, 360, n) * u.deg
    t["dec"] = np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))) * u.deg
    t["parallax"] = rng.uniform(0.2, 10, n) * u.mas
    t["pmra"] = rng.normal(0, 20, n) * u.mas / u.yr
    t["pmdec"] = rng.normal(0, 20, n) * u.mas / u.yr
    t["radial_velocity"] = rng.normal(0, 40, n) * u.km / u.s
    t["phot_g_mean_mag"] = rng.uniform(6, 16, n) * u.mag
    if errors:
        for name in ("ra", "dec", "parallax"):
            t[f"{name}_error"] = rng.uniform(0.01, 0.05, n) * u.mas
        for name in ("pmra", "pmdec"):
            t[f"{name}_error"] = rng.uniform(0.01, 0.08, n) * u.mas / u.yr
        t["radial_velocity_error"] = rng.uniform(0.5, 3, n) * u.km / u.s
        t["ra_dec_corr"] = rng.uniform(-0.3, 0.3, n)
        t["parallax_pmra_corr"] = rng.uniform(-0.3, 0.3, n)
        t["pmra_pmdec_corr"] = rng.uniform(-0.3, 0.3, n)
    return t


@pytest.fixture
def gaia_cat():
    return bd.Catalog.from_gaia(fake_gaia())


def only_error(cat, keep):
    """A copy of ``cat`` whose errors are zero except the named column; no correlations."""
    cols = {}
    for k, c in cat.columns.items():
        if k.endswith("_corr"):
            continue
        cols[k] = c if not k.endswith("_error") or k == keep else np.zeros_like(c)
    return bd.Catalog(cat.x, cat.v, columns=cols, solar=cat.solar)


# ------------------------------------------------------------------ constructors
def test_constructor_converts_quantities_and_columns(rng):
    x = rng.normal(size=(10, 3))
    v = rng.normal(size=(10, 3)) * 100
    cat = bd.Catalog(x * 1000 * u.pc, v * u.km / u.s, columns={"parallax": np.ones(10) * 1e-3 * u.arcsec})
    assert_allclose(cat.x, x, rtol=1e-14)
    assert_allclose(cat.v, v, rtol=1e-14)
    assert_allclose(cat.columns["parallax"], 1.0)  # arcsec → mas
    assert cat.n == len(cat) == 10
    # an astropy Column with a unit is honoured, not taken as a bare number
    t = Table({"x": x[:, 0] * 1000}, units={"x": u.pc})
    col_x = np.column_stack([t["x"].quantity.value] * 3) * u.pc
    assert_allclose(bd.Catalog(col_x, v).x[:, 0], x[:, 0], rtol=1e-14)
    # columns are copies, as x and v are: a reused buffer does not change the catalog's observables
    g, mas = np.full(10, 12.0), np.ones(10) * u.mas
    kept = bd.Catalog(x, v, columns={"phot_g_mean_mag": g, "parallax": mas})
    g[:], mas[:] = 99.0, 5 * u.mas
    assert_allclose(kept.columns["phot_g_mean_mag"], 12.0)
    assert_allclose(kept.columns["parallax"], 1.0)


def test_constructor_reads_masked_entries_as_missing_not_as_the_values_under_the_mask(gaia_cat):
    """A blank CSV cell is a masked entry with 0.0 under it: the constructor kept that 0 (a radial-velocity error
    of 0 gave sd(v_x) 0.56 instead of 1.14 km/s in a review; a masked position, a star at the Galactic centre).
    Masked entries are NaN now, in every masked type (np.ma, MaskedColumn with a unit, astropy Masked), so that the
    error checks see them; integer columns, which have no NaN, refuse them."""
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    cols = dict(gaia_cat.columns)
    mask = np.zeros(gaia_cat.n, bool)
    mask[3] = True
    err = cols["radial_velocity_error"]
    for masked in (np.ma.masked_array(err, mask=mask), MaskedColumn(err * 1e3, mask=mask, unit="m/s"),
                   Masked(err * u.km / u.s, mask=mask)):
        cat = bd.Catalog(gaia_cat.x, gaia_cat.v, columns={**cols, "radial_velocity_error": masked},
                         solar=gaia_cat.solar)
        got = cat.columns["radial_velocity_error"]
        assert np.isnan(got[3]), type(masked).__name__
        assert_allclose(np.delete(got, 3), np.delete(err, 3), rtol=1e-14)  # km/s
        with pytest.raises(bd.CatalogError, match="radial_velocity_error"):
            cat.covariance()
    x = np.ma.masked_array(gaia_cat.x, mask=np.zeros_like(gaia_cat.x, bool))
    x.mask[5, 1] = True
    with pytest.raises(bd.CatalogError, match=r"x \(positions\) has 1 row\(s\) with NaN.*\[5\]"):
        bd.Catalog(x, gaia_cat.v)
    with pytest.raises(bd.CatalogError, match="'source_id' has 1 masked .* int64"):
        bd.Catalog(gaia_cat.x, gaia_cat.v, columns={"source_id": MaskedColumn(cols["source_id"], mask=mask)})
    unmasked = bd.Catalog(gaia_cat.x, gaia_cat.v, columns={"source_id": MaskedColumn(cols["source_id"])})
    assert np.array_equal(unmasked.columns["source_id"], cols["source_id"])


def test_from_gaia_table_units_and_frame(gaia_cat):
    t = fake_gaia()
    assert gaia_cat.n == len(t)
    sky = coord.SkyCoord(
        ra=t["ra"], dec=t["dec"], distance=(1 / t["parallax"].to_value(u.mas)) * u.kpc,
        pm_ra_cosdec=t["pmra"], pm_dec=t["pmdec"], radial_velocity=t["radial_velocity"],
    )
    with coord.galactocentric_frame_defaults.set("v4.0"):
        gal = sky.transform_to(coord.Galactocentric())
    assert_allclose(gaia_cat.x, gal.cartesian.xyz.to_value(u.kpc).T, atol=1e-12)  # kpc
    assert_allclose(gaia_cat.v, gal.velocity.d_xyz.to_value(u.km / u.s).T, atol=1e-9)  # km/s
    # the Sun sits at x ≈ −8.122 kpc: nearby stars' heliocentric distance is 1/parallax
    assert_allclose(gaia_cat.distance_from_sun(), 1 / t["parallax"].to_value(u.mas), rtol=1e-12)


def test_from_gaia_converts_column_units():
    t = fake_gaia(errors=False)
    ref = bd.Catalog.from_gaia(t)
    t2 = t.copy()
    t2["parallax"] = t2["parallax"].to(u.arcsec)
    t2["ra"] = t2["ra"].to(u.rad)
    t2["pmra"] = t2["pmra"].to(u.arcsec / u.yr)
    t2["radial_velocity"] = t2["radial_velocity"].to(u.m / u.s)
    cat = bd.Catalog.from_gaia(QTable(t2))
    assert_allclose(cat.x, ref.x, rtol=1e-12)
    assert_allclose(cat.v, ref.v, rtol=1e-12)
    assert_allclose(cat.columns["parallax"], ref.columns["parallax"], rtol=1e-14)  # stored in mas


def test_from_gaia_keeps_named_extra_columns_with_the_rows(tmp_path):
    """extra_columns: a column joined to the Gaia rows is kept (only when named), cut with the rows that give no 6D
    point, masked entries as NaN; through a file as through a table, and through read and from_table; a missing or
    2-D column is an error naming it."""
    from astropy.table import MaskedColumn

    t = Table(fake_gaia(n=40, seed=2, errors=False))
    t["radial_velocity"][[3, 7]] = np.nan  # two rows without a 6D point
    eps = np.linspace(0.1, 1.0, 40)
    t["Eps"] = MaskedColumn(eps, mask=np.arange(40) == 11)
    t["label"] = [f"s{i}" for i in range(40)]
    with pytest.warns(DroppedRowsWarning):
        assert "Eps" not in bd.Catalog.from_gaia(t).columns  # not unless named
    path = tmp_path / "stars.ecsv"
    t.write(path)
    readers = [lambda: bd.Catalog.from_gaia(t, extra_columns=("eps", "label")),  # case-insensitive match
               lambda: bd.Catalog.from_gaia(path, extra_columns=("eps", "label")),
               lambda: bd.Catalog.read(path, extra_columns=("eps", "label")),
               lambda: bd.Catalog.from_table(t, extra_columns=("eps", "label"))]
    for reader in readers:
        with pytest.warns(DroppedRowsWarning):
            cat = reader()
        rows = cat.columns["source_id"] - 10**18
        assert cat.n == 38 and not np.isin([3, 7], rows).any()
        want = np.where(rows == 11, np.nan, eps[rows])
        assert_allclose(cat.columns["eps"], want, equal_nan=True)
        assert cat.columns["label"].tolist() == [f"s{i}" for i in rows]
    with pytest.raises(bd.catalog.CatalogError, match="'selection'.*extra_columns"):
        bd.Catalog.from_gaia(t, extra_columns=["selection"])
    # a column with a unit keeps bare numbers, its unit recorded and written back (it was dropped silently)
    t["dist_bj"] = np.linspace(100.0, 900.0, 40) * u.pc
    with pytest.warns(DroppedRowsWarning):
        cat = bd.Catalog.from_gaia(t, extra_columns="dist_bj")
    assert cat.meta["column_units"] == {"dist_bj": "pc"} and cat.to_table()["dist_bj"].unit == u.pc
    assert_allclose(cat.to_table()["dist_bj"].to_value(u.kpc)[:2], [0.1, 0.1 + 800 / 39 / 1000])
    t["two"] = np.zeros((40, 2))
    with pytest.raises(bd.catalog.CatalogError, match="'two' has shape"):
        bd.Catalog.from_gaia(t, extra_columns="two")


def test_solar_parameters_are_used():
    t = fake_gaia(errors=False)
    solar = bd.SolarParameters(galcen_distance=8.3, z_sun=0.025, v_sun=(11.1, 244.24, 7.25))
    cat = bd.Catalog.from_gaia(t, solar=solar)
    frame = coord.Galactocentric(
        galcen_distance=8.3 * u.kpc, z_sun=25 * u.pc,
        galcen_v_sun=coord.CartesianDifferential([11.1, 244.24, 7.25] * u.km / u.s),
        galcen_coord=coord.ICRS(ra=266.4051 * u.deg, dec=-28.936175 * u.deg),
    )
    sky = coord.SkyCoord(
        ra=t["ra"], dec=t["dec"], distance=(1 / t["parallax"].to_value(u.mas)) * u.kpc,
        pm_ra_cosdec=t["pmra"], pm_dec=t["pmdec"], radial_velocity=t["radial_velocity"],
    )
    gal = sky.transform_to(frame)
    assert cat.solar is solar
    assert_allclose(cat.x, gal.cartesian.xyz.to_value(u.kpc).T, atol=1e-12)
    assert_allclose(cat.v, gal.velocity.d_xyz.to_value(u.km / u.s).T, atol=1e-9)
    assert_allclose(solar.position[0], -np.sqrt(8.3**2 - 0.025**2))


def test_solar_parameters_from_astropy_refuse_another_galactic_centre_direction():
    """SolarParameters hold no direction: every conversion uses 'v4.0''s galcen_coord. A frame with another one was
    read silently (stars 34 pc off in a review); it is refused now, and astropy's presets, which share it, are read."""
    for preset, d in (("pre-v4.0", 8.3), ("v4.0", 8.122)):
        with coord.galactocentric_frame_defaults.set(preset):
            assert bd.SolarParameters.from_astropy(coord.Galactocentric()).galcen_distance == pytest.approx(d)
    frame = coord.Galactocentric(galcen_coord=coord.ICRS(ra=266.0 * u.deg, dec=-29.5 * u.deg), galcen_distance=8.2 * u.kpc)
    with pytest.raises(ValueError, match=r"galcen_coord.*2\.4e\+03″ from astropy's 'v4.0'.*by 95 pc"):
        bd.SolarParameters.from_astropy(frame)
    same = coord.Galactocentric(galcen_coord=coord.ICRS(ra=266.4051 * u.deg, dec=-28.936175 * u.deg), z_sun=25 * u.pc)
    assert bd.SolarParameters.from_astropy(same).z_sun == pytest.approx(0.025)


def test_from_table_galactocentric_columns(rng):
    x = rng.normal(size=(20, 3))
    v = rng.normal(size=(20, 3)) * 50
    t = Table()
    for i, a in enumerate("xyz"):
        t[a] = x[:, i] * 1000 * u.pc
    for i, a in enumerate("xyz"):
        t[f"v{a}"] = v[:, i]  # no unit: km/s; 'vx' spelling accepted
    t["feh"] = rng.normal(size=20)
    t["name"] = [f"star{i}" for i in range(20)]
    cat = bd.Catalog.from_table(t)
    assert_allclose(cat.x, x, rtol=1e-14)
    assert_allclose(cat.v, v, rtol=1e-14)
    assert set(cat.columns) == {"feh", "name"}


def test_to_table_round_trip(gaia_cat, tmp_path):
    cut = gaia_cat.parallax_over_error(5).within(3)
    t = cut.to_table()
    assert t["x"].unit == u.kpc and t["v_y"].unit == u.km / u.s and t["parallax"].unit == u.mas
    back = bd.Catalog.from_table(t)
    assert_allclose(back.x, cut.x)
    assert_allclose(back.v, cut.v)
    assert back.history == cut.history and back.solar == cut.solar
    assert_allclose(back.columns["pmra"], cut.columns["pmra"])
    # through a file: ECSV keeps the units and the metadata
    t.write(tmp_path / "cat.ecsv")
    again = bd.Catalog.read(tmp_path / "cat.ecsv")
    assert_allclose(again.x, cut.x, rtol=1e-15)
    assert again.history == cut.history
    assert_allclose(again.covariance(), cut.covariance(), rtol=1e-10)



def test_from_table_restores_history_and_refuses_another_frame(gaia_cat):
    cut = gaia_cat.parallax_over_error(5)
    cut.meta["note"] = "kept"
    t = cut.to_table()
    same = bd.Catalog.from_table(t, solar=bd.SolarParameters())  # the saved frame, given explicitly
    assert same.history == cut.history and same.meta["note"] == "kept" and same.solar == cut.solar
    v40 = bd.SolarParameters.from_astropy()  # the same frame, z_sun one ulp off
    assert bd.Catalog.from_table(t, solar=v40).history == cut.history
    other = bd.SolarParameters(galcen_distance=8.3)
    with pytest.raises(bd.CatalogError, match=r"galcen_distance=8\.122.*drop table\.meta\['bayesdyn'\]"):
        bd.Catalog.from_table(t, solar=other)
    relabelled = t.copy()
    del relabelled.meta["bayesdyn"]  # the fix the message names: the columns alone, in the frame given
    assert bd.Catalog.from_table(relabelled, solar=other).solar == other
    t.meta["bayesdyn"]["meta"]["note"] = "edited in the table"  # the table's meta is a copy, not the catalog's
    assert cut.meta["note"] == "kept"
    t.meta["bayesdyn"]["version"] = 99
    with pytest.raises(bd.CatalogError, match="version 99.*upgrade bayesdyn"):
        bd.Catalog.from_table(t)


def test_from_table_records_rows_removed_after_to_table(gaia_cat):
    cut = gaia_cat.parallax_over_error(5)
    t = cut.to_table()[:10]
    with pytest.warns(DroppedRowsWarning, match=rf"{cut.n - 10} of the {cut.n} rows"):
        back = bd.Catalog.from_table(t)
    assert back.n == 10 and back.history[:-1] == cut.history
    assert back.history[-1] == CutRecord("rows removed outside bayesdyn", cut.n - 10, 10)
    grown = cut.to_table()
    grown.add_row(grown[0])  # rows added: the saved history no longer describes the table
    with pytest.raises(bd.CatalogError, match=rf"{cut.n + 1} rows.*{cut.n}.*drop table\.meta\['bayesdyn'\]"):
        bd.Catalog.from_table(grown)


def test_from_table_reports_skipped_columns(gaia_cat):
    t = gaia_cat.to_table()
    t["multi"] = np.zeros((len(t), 2))
    t["when"] = np.array(["2020-01-01"] * len(t), dtype="datetime64[D]")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = bd.Catalog.from_table(t)
    skipped = [str(w.message) for w in caught if "not kept" in str(w.message)]
    assert len(skipped) == 1, [str(w.message) for w in caught]
    assert "'multi' (2-D" in skipped[0] and "'when' (dtype datetime64[D]" in skipped[0]
    assert "multi" not in back.columns and "when" not in back.columns and "pmra" in back.columns


def test_load_refuses_a_member_without_npy_header(gaia_cat, tmp_path):
    good = tmp_path / "cat.npz"
    gaia_cat.save(good)
    raw = tmp_path / "raw.npz"
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(raw, "w") as out:
        for member in z.namelist():
            if member == "header.npy":  # the same bytes, without the .npy header
                out.writestr("header", np.load(io.BytesIO(z.read(member))).tobytes())
            else:
                out.writestr(member, z.read(member))
    with pytest.raises(bd.CatalogError, match=r"member 'header' is not a \.npy array.*Catalog\.save"):
        bd.Catalog.load(raw)

def test_load_checks_the_history_against_the_rows(gaia_cat, tmp_path):
    """A saved history with a negative count is malformed; one whose last cut kept another number of stars than
    the file holds is loaded with a DroppedRowsWarning (older files may hold such histories)."""
    from bayesdyn.catalog import _io

    cut = gaia_cat.parallax_over_error(5)
    cut.save(tmp_path / "ok.npz")
    header, arrays = _io.read_npz(tmp_path / "ok.npz")
    for name, last, check in (("neg", {"reason": "x", "removed": -5, "kept": cut.n}, "malformed"),
                              ("off", {"reason": "x", "removed": 1, "kept": cut.n + 7}, "warn")):
        _io.write_npz(tmp_path / f"{name}.npz", {**header, "history": [*header["history"], last]}, arrays)
        if check == "malformed":
            with pytest.raises(bd.CatalogError, match="negative count.*Catalog.save"):
                bd.Catalog.load(tmp_path / f"{name}.npz")
        else:
            with pytest.warns(DroppedRowsWarning, match=f"kept {cut.n + 7} stars but the file holds {cut.n}"):
                assert bd.Catalog.load(tmp_path / f"{name}.npz").n == cut.n


# ------------------------------------------------------------------ selections
def test_selections_count_and_record(gaia_cat):
    cat = gaia_cat
    c = cat.columns
    poe = cat.parallax_over_error(200)
    assert poe.n == int(np.sum(c["parallax"] / c["parallax_error"] >= 200))
    assert poe.history[-1] == CutRecord("parallax_over_error >= 200", cat.n - poe.n, poe.n)

    g = cat.g_mag(max=12, min=8)
    assert g.n == int(np.sum((c["phot_g_mean_mag"] >= 8) & (c["phot_g_mean_mag"] <= 12)))
    assert g.history[-1].removed == cat.n - g.n

    near = cat.within(500 * u.pc)
    assert near.n == int(np.sum(1 / c["parallax"] <= 0.5))
    assert near.history[-1].reason == "within 0.5 kpc of the Sun"

    rv = cat.with_rv()
    assert rv.n == cat.n and rv.history[-1].removed == 0  # recorded even when nothing goes

    chained = cat.within(2).g_mag(max=14)
    assert [r.kept for r in chained.history] == [cat.within(2).n, chained.n]
    assert chained.history[0].removed + chained.history[1].removed == cat.n - chained.n
    # the original is untouched
    assert cat.n == 50 and cat.history == []


def test_in_volume_shapes(rng):
    x = rng.uniform(-10, 10, size=(400, 3))
    cat = bd.Catalog(x, np.zeros((400, 3)))
    R = np.hypot(x[:, 0], x[:, 1])
    cyl = cat.in_volume(R=(5, 9), z=(-1 * u.kpc, 1000 * u.pc))
    assert cyl.n == int(np.sum((R >= 5) & (R <= 9) & (np.abs(x[:, 2]) <= 1)))
    sph = cat.in_volume(center=(1.0, 2.0, 0.0), radius=4)
    assert sph.n == int(np.sum(np.linalg.norm(x - [1, 2, 0], axis=1) <= 4))
    sun = cat.in_volume(center="sun", radius=3)
    assert sun.n == int(np.sum(np.linalg.norm(x - cat.solar.position, axis=1) <= 3))
    box = cat.in_volume(box=((-2, 2), (None, 0), (0, None)))
    assert box.n == int(np.sum((np.abs(x[:, 0]) <= 2) & (x[:, 1] <= 0) & (x[:, 2] >= 0)))
    both = cat.in_volume(R=(None, 6), center="galactic_center", radius=5)
    assert both.n == int(np.sum((R <= 6) & (np.linalg.norm(x, axis=1) <= 5)))
    assert "R <= 6 kpc" in both.history[-1].reason and "within 5 kpc" in both.history[-1].reason


def test_summary_is_informative(gaia_cat):
    text = gaia_cat.within(2).summary()
    assert "bayesdyn Catalog:" in text and f"{gaia_cat.within(2).n} stars" in text
    for needle in ("x [kpc]", "v_y [km/s]", "R [kpc]", "d_sun [kpc]", "R0 = 8.122 kpc", "z_sun = 20.8 pc",
                   "parallax_error", "within 2 kpc of the Sun", "removed"):
        assert needle in text, needle
    plain = bd.Catalog(np.ones((3, 3)), np.zeros((3, 3))).summary()
    assert "errors: none" in plain and "cuts: none" in plain


# ------------------------------------------------------------------ files
def test_save_load_round_trip(gaia_cat, tmp_path):
    cat = gaia_cat.within(3)
    cat.columns["label"] = np.array([f"s{i}" for i in range(cat.n)])
    cat.meta["note"] = {"seed": 0, "list": [1, 2.5], "mass": np.float64(1e10), "xyz": np.arange(3)}
    path = tmp_path / "cat.npz"
    cat.save(path)
    back = bd.Catalog.load(path)
    assert_allclose(back.x, cat.x, rtol=0, atol=0)
    assert_allclose(back.v, cat.v, rtol=0, atol=0)
    assert back.solar == cat.solar and back.history == cat.history
    assert back.meta["note"] == {"seed": 0, "list": [1, 2.5], "mass": 1e10, "xyz": [0, 1, 2]}
    assert list(back.columns) == list(cat.columns)
    assert back.columns["source_id"].dtype == np.int64
    assert_allclose(back.columns["source_id"], cat.columns["source_id"], rtol=0)
    assert list(back.columns["label"]) == list(cat.columns["label"])
    assert bd.Catalog.read(path).n == cat.n
    # the file opens without pickle and holds only plain arrays
    with np.load(path, allow_pickle=False) as npz:
        assert npz["header"].dtype == np.uint8


# ------------------------------------------------------------------ error propagation
def test_jax_transform_matches_astropy_all_sky(x64):
    rng = np.random.default_rng(4)
    n = 300
    obs = np.column_stack([
        rng.uniform(0, 360, n), np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))), 10 ** rng.uniform(-1.5, 2, n),
        rng.normal(0, 30, n), rng.normal(0, 30, n), rng.normal(0, 80, n),
    ])
    solar = bd.SolarParameters(galcen_distance=8.0, z_sun=0.03, v_sun=(10.0, 250.0, 7.0), roll=2.0)
    m, x0, v0 = galactocentric_affine(solar)
    out = np.asarray(observables_to_galactocentric(jnp.asarray(obs), m, x0, v0))
    icrs = coord.ICRS(
        ra=obs[:, 0] * u.deg, dec=obs[:, 1] * u.deg, distance=(1 / obs[:, 2]) * u.kpc,
        pm_ra_cosdec=obs[:, 3] * u.mas / u.yr, pm_dec=obs[:, 4] * u.mas / u.yr,
        radial_velocity=obs[:, 5] * u.km / u.s,
    )
    gal = icrs.transform_to(solar.to_astropy())
    x_ref = gal.cartesian.xyz.to_value(u.kpc).T
    v_ref = gal.velocity.d_xyz.to_value(u.km / u.s).T
    assert np.all(np.abs(out[:, :3] - x_ref) <= 1e-9 * np.linalg.norm(x_ref, axis=1, keepdims=True))
    assert np.all(np.abs(out[:, 3:] - v_ref) <= 1e-9 * np.linalg.norm(v_ref, axis=1, keepdims=True))
    assert_allclose(K_MASYR_KPC, 4.740470463533348, rtol=1e-12)


def test_covariance_exact_cases(gaia_cat):
    """Single error sources whose Galactocentric covariance is known in closed form."""
    c = gaia_cat.columns
    d = 1 / c["parallax"]  # kpc
    los = gaia_cat.x - gaia_cat.solar.position
    los /= np.linalg.norm(los, axis=1, keepdims=True)

    # parallax only: σ_d = σ_ϖ/ϖ² along the line of sight
    cov = only_error(gaia_cat, "parallax_error").covariance()
    sig_d = c["parallax_error"] / c["parallax"] ** 2
    assert_allclose(cov[:, :3, :3], sig_d[:, None, None] ** 2 * los[:, :, None] * los[:, None, :], rtol=1e-9,
                    atol=1e-15)

    # ra only: ra_error is σ(α*) in mas, so the position moves by d·σ (not d·σ·cos δ)
    cov = only_error(gaia_cat, "ra_error").covariance()
    assert_allclose(np.trace(cov[:, :3, :3], axis1=1, axis2=2), (d * c["ra_error"] * MAS_IN_RAD) ** 2, rtol=1e-9)
    assert_allclose(np.einsum("ni,nij,nj->n", los, cov[:, :3, :3], los), 0, atol=1e-20)

    # RV only: σ_v along the line of sight, positions untouched
    cov = only_error(gaia_cat, "radial_velocity_error").covariance()
    assert_allclose(cov[:, 3:, 3:], c["radial_velocity_error"][:, None, None] ** 2 * los[:, :, None] * los[:, None, :],
                    rtol=1e-9, atol=1e-12)
    assert_allclose(cov[:, :3, :], 0, atol=0)

    # pmra only: tangential speed error K d σ_μ
    cov = only_error(gaia_cat, "pmra_error").covariance()
    assert_allclose(np.trace(cov[:, 3:, 3:], axis1=1, axis2=2), (K_MASYR_KPC * d * c["pmra_error"]) ** 2, rtol=1e-9)


def test_error_mean_exact_for_parallax_and_against_monte_carlo(gaia_cat):
    """The errors' second-order mean: with parallax errors alone, a 1/ϖ distance is d (1 + f²) on average (f = σ_ϖ/ϖ),
    moving the position by f² (x − x_⊙) and scaling the heliocentric tangential velocity by 1 + f²; with every error
    and correlation, it matches the mean of the Monte Carlo draws (whose noise and O(f⁴) remainder are ≪ the mean)."""
    c = gaia_cat.columns
    f2 = (c["parallax_error"] / c["parallax"]) ** 2
    mean = only_error(gaia_cat, "parallax_error").error_mean()
    assert mean.shape == (gaia_cat.n, 6)
    sun, v_sun = np.asarray(gaia_cat.solar.position), np.asarray(gaia_cat.solar.v_sun)
    los = gaia_cat.x - sun
    vh = gaia_cat.v - v_sun
    vt = vh - np.sum(vh * los, axis=1, keepdims=True) * los / np.sum(los * los, axis=1, keepdims=True)
    assert_allclose(mean[:, :3], f2[:, None] * los, rtol=1e-9, atol=1e-15)  # kpc
    assert_allclose(mean[:, 3:], f2[:, None] * vt, rtol=1e-8, atol=1e-12)  # km/s
    # the RV alone enters linearly: no mean
    assert_allclose(only_error(gaia_cat, "radial_velocity_error").error_mean(), 0, atol=1e-12)

    t = fake_gaia(n=6, seed=3)
    t["parallax"] = [1.0, 0.8, 2.0, 1.2, 0.7, 1.5] * u.mas
    t["parallax_error"] = 0.08 * t["parallax"]  # 8 %: the mean distance is 0.64 % long
    t["pmra_error"] = [0.3, 0.5, 0.2, 0.4, 0.6, 0.3] * u.mas / u.yr
    t["pmdec_error"] = [0.4, 0.3, 0.5, 0.2, 0.3, 0.6] * u.mas / u.yr
    t["parallax_pmra_corr"] = [0.5, -0.4, 0.3, -0.6, 0.2, 0.0]
    cat = bd.Catalog.from_gaia(t)
    mean = cat.error_mean()
    n_draws = 200_000
    x, v = cat.error_draws(n_draws, seed=11)
    draws = np.concatenate([x, v], axis=-1)
    se = draws.std(axis=0) / np.sqrt(n_draws)
    mc = draws.mean(axis=0) - np.concatenate([cat.x, cat.v], axis=1)
    z = (mc - mean) / se
    assert np.abs(z).max() < 4.5, z  # the O(f⁴) remainder (3 f⁴ d ≈ 0.012 % in distance) is below the noise
    assert np.abs(mean[:, :3] / se[:, :3]).max() > 20  # the mean itself is far outside the noise


def test_error_draws_reproducible_and_shaped(gaia_cat):
    x1, v1 = gaia_cat.error_draws(16, seed=7)
    x2, v2 = gaia_cat.error_draws(16, seed=7)
    x3, _ = gaia_cat.error_draws(16, seed=8)
    assert x1.shape == v1.shape == (16, gaia_cat.n, 3)
    assert x1.dtype == np.float64
    assert_allclose(x1, x2, rtol=0, atol=0)
    assert_allclose(v1, v2, rtol=0, atol=0)
    assert not np.allclose(x1, x3)


def test_error_draws_flag_negative_parallax():
    t = fake_gaia(n=5, seed=1)
    t["parallax"] = [1.0, 1.0, 1.0, 1.0, 0.01] * u.mas
    t["parallax_error"] = [0.01, 0.01, 0.01, 0.01, 0.05] * u.mas  # last star: ϖ/σ = 0.2
    cat = bd.Catalog.from_gaia(t)
    with pytest.warns(UserWarning, match=r"had parallax <= 0 and are NaN"):
        x, v = cat.error_draws(200, seed=0)
    assert np.isfinite(x[:, :4]).all()
    assert np.isnan(x[:, 4]).any() and np.isnan(v[:, 4]).any()


def test_no_rows_dropped_without_warning():
    t = fake_gaia(n=10, errors=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedRowsWarning)
        assert bd.Catalog.from_gaia(t).n == 10
    t["radial_velocity"][3] = np.nan
    t["parallax"][5] = -0.5 * u.mas
    t["pmra"][7] = np.nan
    with pytest.warns(DroppedRowsWarning, match=r"kept 7 of 10 rows"):
        cat = bd.Catalog.from_gaia(t)
    assert [(r.removed, r.kept) for r in cat.history] == [(1, 9), (1, 8), (1, 7)]
    assert "NaN/inf astrometry" in cat.history[1].reason


def test_from_table_warns_when_the_frame_of_galactocentric_columns_is_unknown(gaia_cat):
    """x … v_z columns without the saved solar parameters (as after a FITS or CSV round trip, which drops the dict
    meta) are read in astropy's 'v4.0' frame with a warning that names solar= as the fix; with solar= given, none."""
    import warnings

    t = gaia_cat.to_table()
    del t.meta["bayesdyn"]
    with pytest.warns(UserWarning, match="no record of the solar parameters.*Pass solar="):
        bd.Catalog.from_table(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bd.Catalog.from_table(t, solar=gaia_cat.solar).solar == gaia_cat.solar


def test_save_names_nan_in_meta_as_the_problem(gaia_cat, tmp_path):
    """meta is written as strict JSON: a NaN there is refused with a message that says NaN is the problem."""
    cat = gaia_cat.parallax_over_error(5)
    cat.meta["bad"] = float("nan")
    with pytest.raises(bd.CatalogError, match="no NaN or inf: use None"):
        cat.save(tmp_path / "c.npz")
    import threading

    cat.meta["bad"] = threading.Lock()  # cannot even be copied: to_table keeps working, save names the problem
    assert cat.to_table().meta["bayesdyn"]["meta"]["bad"] is cat.meta["bad"]
    with pytest.raises(bd.CatalogError, match="cannot be written as JSON"):
        cat.save(tmp_path / "c.npz")


def test_reserved_names_masks_units_duplicates_and_nested_meta(tmp_path):
    """A column named x/y/z/v_* replaced the positions in to_table; units.strip used the values under a mask; a custom
    column's unit was dropped; masked integers read -1, flags came back as floats; duplicated source_ids counted
    twice without a word; a selection's edit of nested meta reached its parent; Catalog.read ignored solar= for a .npz."""
    import astropy.units as u
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    from bayesdyn import units
    from bayesdyn.catalog import CatalogError, CatalogUnitError

    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(5, 3)) + [-8.0, 0, 0], rng.normal(size=(5, 3)) * 30
    with pytest.raises(CatalogError, match=r"\['v_z', 'x'\] are reserved"):
        bd.Catalog(x, v, columns={"x": np.arange(5.0), "v_z": np.zeros(5)})
    with pytest.raises(units.UnitError, match="1 masked"):
        units.strip(Masked([1000.0, 2000.0] * u.pc, mask=[False, True]), "length")
    with pytest.raises(units.UnitError, match="1 masked"):
        units.strip(MaskedColumn([1000.0, 0.0], unit="pc", mask=[False, True]), "length")
    assert_allclose(units.strip(MaskedColumn([1000.0, 5.0], unit="pc", mask=[False, False]), "length"), [1.0, 0.005])
    with pytest.raises(CatalogUnitError, match="'dist' is a Quantity in pc"):
        bd.Catalog(x, v, columns={"dist": np.full(5, 500.0) * u.pc})
    with pytest.warns(UserWarning, match="1 source_id value.*count twice"):  # (Monte Carlo copies are legitimate)
        bd.Catalog(x, v, columns={"source_id": np.array([1, 2, 2, 3, 4])})
    m = {"truth": {"params": {"a": 1}}}
    cat = bd.Catalog(x, v, columns={"flag": np.array([True, False, True, True, False])}, meta=m)
    child = cat.select(np.array([True, True, False, True, True]))
    child.meta["truth"]["params"]["a"] = 99
    assert cat.meta["truth"]["params"]["a"] == 1 and m["truth"]["params"]["a"] == 1
    back = bd.Catalog.from_table(cat.to_table())
    assert back.columns["flag"].dtype == bool
    t = cat.to_table()
    t["n_obs"] = MaskedColumn([3, 4, 5, 6, 7], mask=[False, True, False, False, False])
    t["label"] = MaskedColumn(["a", "b", "c", "d", "e"], mask=[False, False, True, False, False])
    with pytest.raises(CatalogError, match="string column 'label' has 1 masked"):
        bd.Catalog.from_table(t)
    del t["label"]
    n_obs = bd.Catalog.from_table(t).columns["n_obs"]
    assert np.isnan(n_obs[1]) and n_obs[0] == 3  # missing, not −1
    t["dist"] = np.arange(1.0, 6.0) * u.pc  # a unit that is not Gaia's: recorded, and written back
    read = bd.Catalog.from_table(t)
    assert read.meta["column_units"] == {"dist": "pc"} and read.to_table()["dist"].unit == u.pc
    assert bd.Catalog.from_table(read.to_table()).meta["column_units"] == {"dist": "pc"}
    del t["dist"]
    # a masked Gaia source_id (19 digits, after an outer join): as floats with NaN, two thirds of the other ids changed
    t["source_id"] = MaskedColumn(np.array([4295806720, 5, 6, 7, 8]) * 10**9 + 38016, mask=[False, False, True, False,
                                                                                             False])
    with pytest.raises(CatalogError, match=r"'source_id' .* 1 masked .* a float \(for the NaN\) cannot hold exactly"):
        bd.Catalog.from_table(t)
    del t["source_id"]
    cat.save(tmp_path / "c.npz")
    with pytest.raises(CatalogError, match="other solar parameters"):
        bd.Catalog.read(tmp_path / "c.npz", solar=bd.SolarParameters(galcen_distance=8.3))
    assert bd.Catalog.read(tmp_path / "c.npz").n == 5
    # the catalog's own frame as astropy gives it (z_sun one ulp off) is the same frame, not "other solar parameters"
    assert bd.Catalog.read(tmp_path / "c.npz", solar=bd.SolarParameters.from_astropy()).n == 5
    mags = bd.Catalog(x, v, columns={"phot_g_mean_mag": np.arange(5.0) + 10})
    with pytest.raises(CatalogUnitError, match=r"g_mag\(max=...\) was given in km"):
        mags.g_mag(max=5 * u.km)
    assert mags.g_mag(max=12.5 * u.mag).n == 3


def test_off_sky_declinations_object_fields_and_huge_members_are_named(tmp_path):
    """|dec| > 90 deg gave astropy's bare latitude error, naming no column or row; a structured column with an object
    field passed the object check, so save pickled it and load refused its own file; a member of a few bytes whose
    .npy header claims 10¹² values raised MemoryError, not a CatalogError."""
    import io
    import zipfile

    t = Table(fake_gaia(n=20, seed=1, errors=False))
    t["dec"][3] = 95.0
    with pytest.raises(bd.CatalogError, match=r"1 of 20 rows have \|dec\| > 90 deg \(first rows \[3\]\)"):
        bd.Catalog.from_gaia(t)
    t["radial_velocity"][3] = np.nan  # a sentinel dec on a row dropped anyway (no 6D point) is no matter
    with pytest.warns(bd.catalog.DroppedRowsWarning, match="kept 19 of 20"):
        assert bd.Catalog.from_gaia(t).n == 19
    # a masked source_id (an outer join's unmatched row): refused on a row that is kept, not on one that is dropped;
    # the other ids stay exact int64 (as floats with NaN, two thirds of them had changed)
    from astropy.table import MaskedColumn

    sid = np.asarray(t["source_id"])
    t["source_id"] = MaskedColumn(sid, mask=np.arange(20) == 3)
    with pytest.warns(bd.catalog.DroppedRowsWarning):
        kept = bd.Catalog.from_gaia(t)
    assert kept.columns["source_id"].dtype == np.int64 and np.array_equal(kept.columns["source_id"], np.delete(sid, 3))
    t["source_id"] = MaskedColumn(sid, mask=np.arange(20) == 5)
    with pytest.raises(bd.CatalogError, match=r"1 of the rows kept have no source_id \(masked; first rows \[5\]\)"):
        bd.Catalog.from_gaia(t)
    x = np.random.default_rng(0).normal(size=(3, 3))
    with pytest.raises(bd.CatalogError, match="'s' has dtype object \\(or a field of it\\)"):
        bd.Catalog(x, 10 * x, columns={"s": np.zeros(3, dtype=[("a", "f8"), ("b", "O")])})
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        for member in ("header.npy", "x.npy"):
            z.writestr(member, buf.getvalue() + b"\0" * 16)
    with pytest.raises(bd.CatalogError, match="claims more memory than there is"):
        bd.Catalog.load(tmp_path / "huge.npz")


def test_save_and_to_table_check_columns_edited_after_the_constructor(tmp_path):
    """Catalog.columns is a plain dict (the pipeline's own messages say cat.columns[name] = eps; cat.save(path)), and
    only the constructor checked it: a column "z" replaced the positions in to_table (read back up to 0.2 kpc off) and
    save wrote a file that load refused; a masked column was saved as the values under its mask, a Gaia column in
    µas as 1000 times the parallax in mas, and a column of the wrong length as a file that load called damaged."""
    from bayesdyn.catalog import CatalogError

    rng = np.random.default_rng(0)
    n = 50
    x, v = rng.normal(size=(n, 3)) * 0.1 + [-8.0, 0, 0], rng.normal(size=(n, 3)) * 30
    path = tmp_path / "c.npz"
    cat = bd.Catalog(x, v)
    cat.columns["z"] = np.zeros(n)
    for write in (cat.to_table, lambda: cat.save(path)):
        with pytest.raises(CatalogError, match=r"\['z'\] are reserved for the positions"):
            write()
    assert not path.exists()  # refused before anything is written
    for bad, match in ((np.zeros(n - 1), "'s' has 49 rows but the catalog has 50 stars"),
                       (np.float64(3.0), "'s' has no rows but the catalog has 50 stars"),
                       (np.ma.masked_array(np.arange(n), mask=np.arange(n) % 2 == 0), "'s' has 25 masked")):
        cat = bd.Catalog(x, v)
        cat.columns["s"] = bad
        for write in (cat.to_table, lambda: cat.save(path)):
            with pytest.raises(CatalogError, match=match):
                write()
        assert not path.exists()
    # converted as the constructor converts them: masked floats NaN, a Gaia column to the archive's unit
    cat = bd.Catalog(x, v)
    cat.columns["m"] = np.ma.masked_array(np.arange(n, dtype=float), mask=np.arange(n) % 2 == 0)
    cat.columns["parallax"] = np.full(n, 500.0) * u.uas
    cat.save(path)
    back = bd.Catalog.load(path)
    assert np.isnan(back.columns["m"][::2]).all() and np.array_equal(back.columns["m"][1::2], np.arange(1.0, n, 2))
    assert_allclose(back.columns["parallax"], 0.5, rtol=1e-15)
    t = cat.to_table()
    assert np.isnan(np.asarray(t["m"])[::2]).all() and t["parallax"].unit == u.mas
    assert_allclose(t["parallax"].value, 0.5, rtol=1e-15)


def test_save_and_to_table_record_the_unit_of_a_quantity_column(tmp_path):
    """A column set as a Quantity in a unit that is not Gaia's (cat.columns['dist'] = d * u.pc) was saved as bare
    numbers with no record of the unit; to_table multiplied it by the unit already recorded for it (pc·kpc). Now its
    numbers are kept and the unit goes to meta['column_units'], as from_table records a table's."""
    rng = np.random.default_rng(1)
    n = 20
    x, v = rng.normal(size=(n, 3)) * 0.1 + [-8.0, 0, 0], rng.normal(size=(n, 3)) * 30
    cat = bd.Catalog(x, v, meta={"column_units": {"dist": "kpc", "age": "Gyr"}})
    cat.columns["dist"] = np.arange(n) * u.pc
    from astropy.utils.masked import Masked

    cat.columns["flux"] = Masked(np.arange(n, dtype=float) * u.Jy, mask=np.arange(n) == 3)
    cat.save(tmp_path / "c.npz")
    back = bd.Catalog.load(tmp_path / "c.npz")
    assert back.meta["column_units"] == {"dist": "pc", "age": "Gyr", "flux": "Jy"}
    assert type(back.columns["dist"]) is np.ndarray and np.array_equal(back.columns["dist"], np.arange(n))
    assert np.isnan(back.columns["flux"][3]) and back.columns["flux"][4] == 4
    assert cat.meta == {"column_units": {"dist": "kpc", "age": "Gyr"}}  # saving does not edit the catalog
    t = cat.to_table()
    assert t["dist"].unit == u.pc and t["flux"].unit == u.Jy
    assert t.meta["bayesdyn"]["meta"]["column_units"] == back.meta["column_units"]
    again = bd.Catalog.from_table(t)
    assert again.meta["column_units"] == back.meta["column_units"]
    assert np.array_equal(again.columns["dist"], np.arange(n))


def test_load_refuses_a_header_that_names_a_column_twice(tmp_path):
    """A hand-edited header with columns = ["a", "a"] (col_0 and col_1) loaded with one of the two columns lost."""
    from bayesdyn.catalog import _io

    rng = np.random.default_rng(2)
    x, v = rng.normal(size=(4, 3)) + [-8.0, 0, 0], rng.normal(size=(4, 3)) * 30
    path = tmp_path / "c.npz"
    bd.Catalog(x, v, columns={"a": np.arange(4), "b": np.arange(4) * 2.0}).save(path)
    header, arrays = _io.read_npz(path)
    header["columns"] = ["a", "a"]
    _io.write_npz(path, header, arrays)
    with pytest.raises(bd.CatalogError, match=r"damaged catalog file: its header names the column\(s\) \['a'\] more "
                                              "than once"):
        bd.Catalog.load(path)
    # names equal as strings (1 and "1") are refused too, in the constructor and when saving an edited catalog
    with pytest.raises(bd.CatalogError, match=r"\['1'\] are given more than once"):
        bd.Catalog(x, v, columns={1: np.zeros(4), "1": np.ones(4)})
    cat = bd.Catalog(x, v)
    cat.columns[1], cat.columns["1"] = np.zeros(4), np.ones(4)
    with pytest.raises(bd.CatalogError, match=r"\['1'\] are given more than once"):
        cat.save(path)


def test_solar_parameters_refuse_non_numbers_in_a_header_and_non_finite_values(tmp_path):
    """A saved header's galcen_distance_kpc: true loaded as 1 kpc and "8.1" as 8.1 kpc (float() of anything); a NaN
    v_sun or roll was accepted and made every converted star's velocity or position NaN."""
    from bayesdyn.catalog import _io

    rng = np.random.default_rng(3)
    path = tmp_path / "c.npz"
    bd.Catalog(rng.normal(size=(4, 3)) + [-8.0, 0, 0], rng.normal(size=(4, 3)) * 30).save(path)
    header, arrays = _io.read_npz(path)
    good = header["solar"]
    for key, value in (("galcen_distance_kpc", True), ("z_sun_kpc", "0.02"), ("v_sun_kms", [12.9, "245.6", 7.78]),
                       ("v_sun_kms", "12.9 245.6 7.78"), ("roll_deg", None)):
        _io.write_npz(path, {**header, "solar": {**good, key: value}}, arrays)
        with pytest.raises(bd.CatalogError, match=r"damaged catalog file: its solar parameters or history are "
                                                  rf"malformed \(.*{key}"):
            bd.Catalog.load(path)
    _io.write_npz(path, header, arrays)
    assert bd.Catalog.load(path).solar == bd.SolarParameters.from_dict(good)
    assert bd.SolarParameters.from_dict({**good, "galcen_distance_kpc": np.float32(8.0)}).galcen_distance == 8.0
    for kw, message in ((dict(v_sun=(np.nan, 245.6, 7.78)), "v_sun must be 3 finite"),
                        (dict(roll=np.inf), "roll must be a finite angle"),
                        (dict(roll=np.nan * u.deg), "roll must be a finite angle")):
        with pytest.raises(ValueError, match=message):
            bd.SolarParameters(**kw)

"""Catalog.from_gaia on the real Gaia rows in ../shared/data/gaia (acceptance of issue 2).

Skipped with a reason when the shared data folder is absent.
"""

import warnings

import astropy.coordinates as coord
import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import Table
from numpy.testing import assert_allclose

import bayesdyn as bd
from bayesdyn.catalog import CatalogError, DroppedRowsWarning, galactocentric_affine, observables_to_galactocentric
from bayesdyn.catalog._gaia import OBSERVABLES


@pytest.fixture
def gaia_dir(shared_data):
    path = shared_data / "gaia"
    if not path.is_dir():
        pytest.skip(f"Gaia reference files not found in {path}")
    return path


@pytest.fixture
def dr2_100(gaia_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedRowsWarning)  # nothing may be dropped here
        return bd.Catalog.from_gaia(gaia_dir / "gdr2_rv_100.fits")


def test_dr2_rv_100_median_vy(dr2_100):
    cat = dr2_100
    assert cat.n == 100
    assert cat.history == []
    v40 = bd.SolarParameters.from_astropy()  # astropy 'v4.0'
    assert_allclose(
        [cat.solar.galcen_distance, cat.solar.z_sun, *cat.solar.v_sun],
        [v40.galcen_distance, v40.z_sun, *v40.v_sun],
        rtol=1e-12,
    )
    # checked fact (shared/data/README.md): median v_y = 218.9 km/s
    assert abs(np.median(cat.v[:, 1]) - 218.9) <= 0.1
    # R = 3.3–11.1 kpc
    R = np.hypot(cat.x[:, 0], cat.x[:, 1])
    assert 3.2 < R.min() < 3.4 and 11.0 < R.max() < 11.2
    # observables, errors, correlations, source_id and G are kept
    for col in OBSERVABLES + ("parallax_error", "ra_error", "parallax_pmra_corr", "source_id", "phot_g_mean_mag"):
        assert col in cat.columns
    assert cat.columns["source_id"].dtype == np.int64



def test_negative_error_message_suggests_a_fix_that_removes_it(dr2_100):
    cat = dr2_100
    cat.columns["radial_velocity_error"] = cat.columns["radial_velocity_error"].copy()
    cat.columns["radial_velocity_error"][3] = -1.0
    with pytest.raises(CatalogError, match=r"1 of 100 rows .* negative") as err:
        cat.covariance()
    assert "np.isfinite(e) & (e >= 0)" in str(err.value)
    e = cat.columns["radial_velocity_error"]  # the fix, as the message spells it
    fixed = cat.select(np.isfinite(e) & (e >= 0), "valid radial_velocity_error")
    assert fixed.n == 99 and np.isfinite(fixed.covariance()).all()

def test_observables_without_a_distance_are_refused_not_propagated(dr2_100):
    """A NaN observable gave NaN covariances and a parallax <= 0 a finite one for a negative distance, silently
    (Catalog(x, v, columns=...) and from_table keep such rows; from_gaia removes them)."""
    cat = dr2_100
    for col, value, pattern in (("parallax", -1.0, r"1 of 100 rows have parallax <= 0"),
                                ("parallax", 0.0, r"1 of 100 rows have parallax <= 0"),
                                ("ra", np.nan, r"1 of 100 rows have NaN or inf in \['ra'\]")):
        original = cat.columns[col]
        cat.columns[col] = good = original.copy()
        good[7] = value
        for method in (cat.covariance, cat.error_mean):
            with pytest.raises(CatalogError, match=pattern):
                method()
        with np.errstate(invalid="ignore"):
            fixed = cat.select(np.isfinite(good) & ((good > 0) if col == "parallax" else True), "the message's fix")
        assert fixed.n == 99 and np.isfinite(fixed.covariance()).all() and np.isfinite(fixed.error_mean()).all()
        cat.columns[col] = original  # valid again for the next case


def test_dr3_1000_reports_dropped_rows(gaia_dir):
    with pytest.warns(DroppedRowsWarning, match=r"kept 23 of 1000 rows; dropped 976 with no radial_velocity.*; 1 with parallax <= 0"):
        cat = bd.Catalog.from_gaia(gaia_dir / "gdr3_1000.fits")
    assert cat.n == 23
    assert [(r.removed, r.kept) for r in cat.history] == [(976, 24), (1, 23)]
    assert "radial_velocity" in cat.history[0].reason and "parallax <= 0" in cat.history[1].reason
    assert np.all(cat.columns["parallax"] > 0) and np.all(np.isfinite(cat.columns["radial_velocity"]))
    text = cat.summary()
    assert "23 stars" in text and "removed 976, kept 24" in text and "removed 1, kept 23" in text
    with pytest.raises(CatalogError, match=r"977 of 1000 rows give no 6D point \(976 with no radial_velocity.*1 with parallax"):
        bd.Catalog.from_gaia(gaia_dir / "gdr3_1000.fits", strict=True)


def test_dr2_4096_within_100pc(gaia_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedRowsWarning)
        cat = bd.Catalog.from_gaia(gaia_dir / "gdr2_rv_4096_within100pc.fits")
    assert cat.n == 4096
    d = cat.distance_from_sun()
    assert d.max() < 0.11
    # parallax > 10 mas ⇔ d < 0.1 kpc, exactly, with d = 1/parallax
    assert_allclose(d, 1.0 / cat.columns["parallax"], rtol=1e-12)
    assert cat.within(0.11).history[-1].removed == 0
    # this file has no error columns: propagation is refused with the reason
    assert cat.error_columns == []
    with pytest.raises(CatalogError, match="lacks the error column"):
        cat.covariance()


def test_solar_parameters_match_astropy_v40_frame(dr2_100):
    """The stored SolarParameters reproduce astropy's own 'v4.0' Galactocentric frame."""
    c = dr2_100.columns
    sky = coord.SkyCoord(
        ra=c["ra"] * u.deg, dec=c["dec"] * u.deg, distance=(1 / c["parallax"]) * u.kpc,
        pm_ra_cosdec=c["pmra"] * u.mas / u.yr, pm_dec=c["pmdec"] * u.mas / u.yr,
        radial_velocity=c["radial_velocity"] * u.km / u.s,
    )
    with coord.galactocentric_frame_defaults.set("v4.0"):
        gal = sky.transform_to(coord.Galactocentric())
    assert_allclose(dr2_100.x, gal.cartesian.xyz.to_value(u.kpc).T, rtol=0, atol=1e-12)  # kpc
    assert_allclose(dr2_100.v, gal.velocity.d_xyz.to_value(u.km / u.s).T, rtol=0, atol=1e-9)  # km/s


def test_jax_transform_matches_astropy_on_dr2(dr2_100, x64):
    obs = np.stack([dr2_100.columns[k] for k in OBSERVABLES], axis=-1)
    m, x0, v0 = galactocentric_affine(dr2_100.solar)
    out = np.asarray(jax.jit(observables_to_galactocentric)(jnp.asarray(obs), m, x0, v0))
    assert out.dtype == np.float64
    scale_x = np.linalg.norm(dr2_100.x, axis=1, keepdims=True)
    scale_v = np.linalg.norm(dr2_100.v, axis=1, keepdims=True)
    assert np.all(np.abs(out[:, :3] - dr2_100.x) <= 1e-9 * scale_x)  # relative 1e-9 in kpc
    assert np.all(np.abs(out[:, 3:] - dr2_100.v) <= 1e-9 * scale_v)  # relative 1e-9 in km/s


def test_mc_covariance_matches_linearised_for_small_errors(dr2_100):
    """With the real errors scaled by 1/100 the map is linear over the error ellipsoid."""
    cols = {k: (c * 0.01 if k.endswith("_error") else c) for k, c in dr2_100.columns.items()}
    cat = bd.Catalog(dr2_100.x, dr2_100.v, columns=cols)
    lin = cat.covariance()
    assert lin.shape == (100, 6, 6)
    assert_allclose(lin, np.swapaxes(lin, 1, 2), rtol=1e-12, atol=0)
    n_draws = 4000
    x, v = cat.error_draws(n_draws, seed=3)
    s = np.concatenate([x, v], axis=-1)
    # the draws scatter around the catalog point (mean offset ≪ its error)
    sd = np.sqrt(np.diagonal(lin, axis1=1, axis2=2))
    mean_offset = (s.mean(0) - np.concatenate([cat.x, cat.v], axis=1)) / sd
    assert np.abs(mean_offset).max() < 5 / np.sqrt(n_draws)
    dev = s - s.mean(0)
    mc = np.einsum("dni,dnj->nij", dev, dev) / (n_draws - 1)
    # entries compared in units of σ_i σ_j: sampling error ≈ 1/√n_draws = 0.016
    normed = (mc - lin) / (sd[:, :, None] * sd[:, None, :])
    assert np.abs(normed).max() < 0.1
    assert np.abs(np.median(normed)) < 0.005


@pytest.mark.parametrize(
    "ext, kwargs",
    [
        ("csv", {}),
        ("ecsv", {}),
        ("parquet", {}),
        ("hdf5", {"path": "gaia", "serialize_meta": True}),
        ("vot", {"format": "votable"}),
        ("fits", {}),
    ],
)
def test_file_formats_round_trip(gaia_dir, dr2_100, tmp_path, ext, kwargs):
    table = Table.read(gaia_dir / "gdr2_rv_100.fits")
    path = tmp_path / f"rows.{ext}"
    table.write(path, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedRowsWarning)
        cat = bd.Catalog.from_gaia(path)
    assert cat.n == 100
    assert_allclose(cat.x, dr2_100.x, rtol=1e-13, atol=0)  # kpc
    assert_allclose(cat.v, dr2_100.v, rtol=1e-13, atol=0)  # km/s
    assert cat.meta["source"]["name"] == path.name


def test_hdf5_dataset_path_reaches_astropy(gaia_dir, dr2_100, tmp_path):
    """``path=`` names the HDF5 dataset (the file is positional only): with two datasets in one file, each is read."""
    table = Table.read(gaia_dir / "gdr2_rv_100.fits")
    f = tmp_path / "two.h5"
    table[:40].write(f, path="first", serialize_meta=True)
    table.write(f, path="second", serialize_meta=True, append=True)
    for read in (bd.Catalog.read, bd.Catalog.from_gaia):
        assert read(f, path="first").n == 40
        cat = read(f, path="second")
        assert cat.n == 100
        assert_allclose(cat.x, dr2_100.x, rtol=1e-13, atol=0)  # kpc


def test_masked_rv_survives_csv(gaia_dir, tmp_path):
    """The archive's CSV leaves missing RVs empty; they are counted as missing, not misread."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        table = Table.read(gaia_dir / "gdr3_1000.fits")
    table = table["source_id", "ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity"]
    table.write(tmp_path / "dr3.csv")
    with pytest.warns(DroppedRowsWarning, match="976 with no radial_velocity"):
        cat = bd.Catalog.from_gaia(tmp_path / "dr3.csv")
    assert cat.n == 23


def test_pole_rows_absent_correlations_unit_and_case_messages():
    """Review findings on the Gaia path: a star at the celestial pole had σ(v) ≈ 10⁷ km/s from its RA error (the
    basis of the proper motions turns by Δα*/cos δ), now refused while 89.99° propagates as before; absent *_corr
    columns were taken as 0 without a word (up to 11 % in σ on DR3 rows), now named in a warning; a wrong unit for
    parallax_over_error was a bare UnitError whose text had an empty unit; two columns differing only in case read
    as a missing column; boolean positions read as 0 and 1 kpc."""
    from bayesdyn.catalog import CatalogUnitError

    n = 3
    cols = dict(ra=np.zeros(n), dec=np.array([90.0, 89.99, 0.0]), parallax=np.ones(n), pmra=np.full(n, 10.0),
                pmdec=np.zeros(n), radial_velocity=np.zeros(n), ra_error=np.full(n, 0.02), dec_error=np.full(n, 0.02),
                parallax_error=np.full(n, 0.02), pmra_error=np.full(n, 0.02), pmdec_error=np.full(n, 0.02),
                radial_velocity_error=np.ones(n))
    cat = bd.Catalog(np.zeros((n, 3)), np.zeros((n, 3)), columns=cols)
    for method in (cat.covariance, cat.error_mean, lambda: cat.error_draws(10, seed=0)):
        with pytest.raises(CatalogError, match=r"1 of 3 rows lie so close to a celestial pole \(\|dec\| up to 90 deg"):
            method()
    off = cat.select(np.array([False, True, True]), "away from the pole")
    with pytest.warns(UserWarning, match=r"no Gaia correlation column\(s\) \['ra_dec_corr', .*'pmra_pmdec_corr'\]"):
        sd = np.sqrt(np.diagonal(off.covariance(), axis1=1, axis2=2))[:, 3:]
    # 10 mas/yr at 1 kpc: v_t = 47.4 km/s; σ_v per axis of order 1 km/s (RV error 1 km/s, proper motions 0.02 mas/yr ×
    # 4.74 = 0.095 km/s, parallax 2 % of 47 km/s ≈ 0.95 km/s): all finite and below 1.5 km/s
    assert np.all(np.isfinite(sd)) and sd.max() < 1.5
    full = dict(cols, **{c: np.zeros(n) for c in bd.catalog._gaia.CORRELATION_COLUMNS.values()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bd.Catalog(np.zeros((n, 3)), np.zeros((n, 3)), columns=full).select(np.array([False, True, True]), "x").covariance()
    with pytest.raises(CatalogUnitError, match="must be a dimensionless number: pass a bare number"):
        cat.parallax_over_error(5 * u.mas)
    table = Table({"Parallax": [1.0], "PARALLAX": [1.0], **{k: [1.0] for k in ("ra", "dec", "pmra", "pmdec",
                                                                               "radial_velocity")}})
    with pytest.raises(CatalogError, match=r"columns \['Parallax', 'PARALLAX'\], which differ only in case"):
        bd.Catalog.from_gaia(table)
    with pytest.raises(CatalogError, match="not numeric \\(dtype bool\\)"):
        bd.Catalog(np.ones((2, 3), bool), np.zeros((2, 3)))

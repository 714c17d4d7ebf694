"""Gaia archive columns → Galactocentric phase space, and error propagation.

Two implementations of the same map live here, on purpose:

* :func:`gaia_to_galactocentric` reads a table with Gaia archive column names,
  drops (and counts) the rows that give no 6D point, and transforms the rest with
  astropy (the reference implementation).
* :func:`observables_to_galactocentric` is the same ICRS → Galactocentric map as a
  pure JAX function of ``(ra, dec, parallax, pmra, pmdec, radial_velocity)``. The
  frame change is affine (a rotation plus a position and a velocity offset); its
  matrix and offsets are read once from astropy for each :class:`SolarParameters`
  (:func:`galactocentric_affine`). JAX differentiates it for the linearised
  covariance (:func:`galactocentric_covariance`) and maps it over Monte Carlo draws
  of the observables (:func:`galactocentric_draws`).

Distances are 1/parallax. That is a biased estimator of the distance when the
fractional parallax error is not small (Bailer-Jones 2015, PASP 127, 994): keep
``parallax_over_error`` ≳ 5–10 (``Catalog.parallax_over_error``) or bring your own
distances. The Gaia parallax zero point (about −0.02 mas in DR3, Lindegren et al.
2021) is not corrected; subtract it from ``parallax`` beforehand if it matters.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import astropy.coordinates as coord
import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import CatalogError, CatalogUnitError, DroppedRowsWarning, warn_caller
from ._solar import SolarParameters

__all__ = [
    "ASTROMETRY",
    "OBSERVABLES",
    "ERROR_COLUMNS",
    "CORRELATION_COLUMNS",
    "COLUMN_UNITS",
    "K_MASYR_KPC",
    "read_column",
    "gaia_to_galactocentric",
    "galactocentric_affine",
    "observables_to_galactocentric",
    "galactocentric_covariance",
    "galactocentric_draws",
]

#: The five astrometric parameters, in Gaia's order.
ASTROMETRY = ("ra", "dec", "parallax", "pmra", "pmdec")
#: The six observables that give one 6D point.
OBSERVABLES = ASTROMETRY + ("radial_velocity",)
#: The error column of each observable (``ra_error`` is σ(α*) = σ(α) cos δ, in mas).
ERROR_COLUMNS = {name: f"{name}_error" for name in OBSERVABLES}
#: Gaia's ten correlation columns between the astrometric parameters, keyed by index pair.
CORRELATION_COLUMNS = {
    (i, j): f"{ASTROMETRY[i]}_{ASTROMETRY[j]}_corr" for i in range(5) for j in range(i + 1, 5)
}

_MAS_YR = u.mas / u.yr
_KMS = u.km / u.s
#: Units of the Gaia columns a Catalog keeps (the Gaia archive's units).
COLUMN_UNITS: dict[str, u.UnitBase] = {
    "ra": u.deg,
    "dec": u.deg,
    "parallax": u.mas,
    "pmra": _MAS_YR,
    "pmdec": _MAS_YR,
    "radial_velocity": _KMS,
    "ra_error": u.mas,
    "dec_error": u.mas,
    "parallax_error": u.mas,
    "pmra_error": _MAS_YR,
    "pmdec_error": _MAS_YR,
    "radial_velocity_error": _KMS,
    "phot_g_mean_mag": u.mag,
    **{name: u.dimensionless_unscaled for name in CORRELATION_COLUMNS.values()},
}

#: km/s per (mas/yr · kpc): the tangential velocity of 1 mas/yr at 1 kpc (≈ 4.74047).
K_MASYR_KPC: float = float((1 * _MAS_YR * u.kpc).to_value(_KMS, u.dimensionless_angles()))
_MAS_PER_DEG = 3.6e6


# ----------------------------------------------------------------- reading columns
def _find(table: Any, name: str) -> str | None:
    """The table's name for Gaia column ``name``: exact, else a unique case-insensitive match.

    Raises:
        CatalogError: two or more columns match without case and none exactly (it read as a missing column).
    """
    if name in table.colnames:
        return name
    hits = [c for c in table.colnames if c.lower() == name]
    if len(hits) > 1:
        raise CatalogError(f"the table has the columns {hits}, which differ only in case, and none named {name!r}: "
                           f"rename the one that is Gaia's {name} to {name!r} (table.rename_column)")
    return hits[0] if hits else None


def _non_numeric_message(arr: np.ndarray, name: str, unit: Any, table_name: str) -> str:
    def is_number(value: Any) -> bool:
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return True

    flat = arr.ravel()
    bad = np.array([not is_number(a) for a in flat], dtype=bool)
    in_unit = f" in {unit}" if unit is not None and unit != u.dimensionless_unscaled else ""
    if bad.any():
        examples = ", ".join(repr(str(a)) for a in list(dict.fromkeys(flat[bad].tolist()))[:3])
        what = f"{int(bad.sum())} of {len(flat)} rows are not numbers (e.g. {examples})"
        fix = "remove or fix those rows, then convert the column"
    else:
        what = f"all {len(flat)} rows hold numbers as text"
        fix = "convert the column"
    return (
        f"column {name!r} of {table_name} is not numeric (dtype {arr.dtype}): {what}; {fix} to numbers{in_unit}, "
        f"e.g. table[{name!r}] = table[{name!r}].astype(float)"
    )


def split_mask(col: Any) -> tuple[Any, np.ndarray | None]:
    """(the values under the mask, the mask) of an astropy ``Masked`` (a MaskedQuantity in a QTable; its values keep
    their unit), a MaskedColumn or an ``np.ma`` array (its values a plain array); ``(col, None)`` for anything else."""
    if hasattr(col, "unmasked"):
        return col.unmasked, np.asarray(col.mask, dtype=bool)
    if hasattr(col, "mask") and hasattr(col, "filled"):
        return np.ma.getdata(col), np.ma.getmaskarray(col)
    return col, None


def read_column(table: Any, name: str, unit: u.UnitBase | None, *, table_name: str = "the table") -> np.ndarray:
    """One numeric column as float64 in ``unit``; masked entries become NaN. With ``unit=None`` an unmasked
    integer column stays int64 (identifiers such as source_id) and an unmasked boolean one stays bool; masked ones
    become float64 with NaN where missing, except integers beyond 2**53 (a float cannot hold them), which are refused.

    A column without a unit is taken to be in ``unit`` already (the Gaia archive's
    CSV export has no units). ``unit=None`` means "keep the values as they are".

    Raises:
        CatalogError: non-numeric column, a unit astropy does not recognise, or masked integers beyond 2**53.
        CatalogUnitError: a unit of the wrong physical type.
    """
    col = table[name]
    values, mask = split_mask(col)
    col_unit = getattr(col, "unit", None)
    if isinstance(values, u.Quantity):
        col_unit = values.unit
        values = values.value
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise CatalogError(_non_numeric_message(arr, name, unit, table_name))
    masked = mask is not None and bool(np.any(mask))
    if unit is None and arr.dtype.kind in "iu" and not masked:  # identifiers (source_id) stay integers
        return arr.astype(np.int64)
    if unit is None and arr.dtype.kind == "b" and not masked:  # flags stay booleans (they came back as floats)
        return arr.astype(bool)
    if unit is None and arr.dtype.kind in "iu" and masked and np.abs(arr[~mask].astype(float)).max(initial=0) >= 2**53:
        # a float holds integers exactly up to 2**53 only: a masked Gaia source_id column (19 digits) as floats with
        # NaN changed two thirds of the other stars' ids
        raise CatalogError(
            f"column {name!r} of {table_name} has {int(np.sum(mask))} masked (missing) entries among integers as "
            f"large as {int(np.abs(arr[~mask]).max())}, which a float (for the NaN) cannot hold exactly: remove those "
            f"rows first (table = table[~table[{name!r}].mask]) or fill them (table[{name!r}] = "
            f"table[{name!r}].filled(-1))"
        )
    # masked integers and flags become floats with NaN where missing (masked integers had read -1, a valid value)
    arr = arr.astype(np.float64)
    if mask is not None and mask.any():
        arr[mask] = np.nan
    if unit is None or col_unit is None:
        return arr
    if isinstance(col_unit, u.UnrecognizedUnit):
        raise CatalogError(
            f"column {name!r} of {table_name} has the unit {str(col_unit)!r}, which astropy does not "
            f"recognise; set table[{name!r}].unit = {str(unit)!r} (the Gaia archive unit) if that is what it is"
        )
    if unit == u.dimensionless_unscaled and col_unit == u.dimensionless_unscaled:
        return arr
    try:
        return np.asarray(col_unit.to(unit, arr), dtype=np.float64)
    except u.UnitConversionError:
        raise CatalogUnitError(
            f"column {name!r} of {table_name} is in {str(col_unit) or 'no unit'} (a {col_unit.physical_type}) but must be "
            f"convertible to {unit} (a {unit.physical_type}), all {len(arr)} rows affected: "
            f"fix the column's unit or pass the right column"
        ) from None


def column_unit(table: Any, name: str) -> str | None:
    """The unit of a column that is not one of Gaia's own (whose units are known), as a string, when it has one other
    than dimensionless: :attr:`bayesdyn.Catalog.columns` keeps bare numbers, and ``meta["column_units"]`` records
    it (it was dropped silently: a distance in pc read back as a bare number)."""
    if name in COLUMN_UNITS:
        return None
    col = table[name]
    unit = getattr(col, "unit", None)
    if unit is None or unit == u.dimensionless_unscaled:
        return None
    return unit.to_string()


def _missing_error(missing: list[str], table: Any, table_name: str, what: str, fix: str) -> CatalogError:
    have = ", ".join(table.colnames[:30]) + (" ..." if len(table.colnames) > 30 else "")
    return CatalogError(
        f"{table_name} lacks the column(s) {', '.join(repr(m) for m in missing)} needed for {what} "
        f"({len(table)} rows, columns: {have}); {fix}"
    )


def _extra_columns(table: Any, names: Any, kept: set, table_name: str,
                   units: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The columns ``names`` of ``table`` beyond the Gaia ones already ``kept`` (see gaia_to_galactocentric); the
    units of those that have one go into ``units``."""
    if isinstance(names, str):
        names = (names,)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if not isinstance(name, str):
            raise CatalogError(f"extra_columns must be column names (strings), got {name!r}")
        if name in kept:
            continue
        hits = [c for c in table.colnames if c.lower() == name.lower()]
        found = name if name in table.colnames else (hits[0] if len(hits) == 1 else None)
        if found is None:
            raise _missing_error([name], table, table_name, "extra_columns",
                                 "check the name, or join the column to the table first")
        col = table[found]
        if getattr(col, "ndim", 1) != 1:
            raise CatalogError(f"{table_name}: column {found!r} has shape {col.shape}; extra_columns keeps 1-D "
                               "columns only: split it into 1-D columns first")
        kind = np.asarray(getattr(col, "value", col)).dtype.kind
        if kind in "fiub":
            out[name] = read_column(table, found, None, table_name=table_name)
            if units is not None and (unit := column_unit(table, found)) is not None:
                units[name] = unit
        elif kind in "US":
            if np.any(getattr(col, "mask", False)):
                raise CatalogError(f"{table_name}: string column {found!r} has {int(np.sum(col.mask))} masked (missing) "
                                   f"entries; fill them (table[{found!r}].filled('')) or leave the column out")
            out[name] = np.asarray(col)
        else:
            raise CatalogError(f"{table_name}: column {found!r} is neither numbers nor strings; extra_columns "
                               "keeps those only")
    return out


# ----------------------------------------------------------------- table → Catalog parts
def gaia_to_galactocentric(
    table: Any,
    *,
    solar: SolarParameters,
    strict: bool = False,
    table_name: str = "the table",
    extra_columns: Any = (),
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[tuple[str, int, int]], dict[str, Any]]:
    """Galactocentric x [kpc], v [km/s] of the Gaia rows that give a 6D point.

    Rows are checked in this order, and each reason's count is reported once
    (a row is counted under the first reason that applies):

    1. ``radial_velocity`` missing, masked or NaN/inf;
    2. NaN/inf in any of ``ra, dec, parallax, pmra, pmdec`` (e.g. Gaia's 2-parameter
       solutions);
    3. ``parallax`` ≤ 0 (1/parallax is no distance).

    Args:
        table: an astropy Table/QTable with Gaia archive column names; units are
            taken from the columns where present, else the archive's (deg, mas,
            mas/yr, km/s).
        solar: the frame's solar parameters.
        strict: if True, any such row is an error instead of being dropped.
        table_name: how to name the table in messages.
        extra_columns: names of further 1-D numeric or string columns to keep (exact, else a unique
            case-insensitive match), e.g. a selection probability joined to the Gaia rows; numbers are kept
            as they are, masked entries as NaN (an integer column with masked entries becomes float; one
            with integers beyond 2**53, such as source_id, is refused instead).

    Returns:
        ``(x, v, columns, cuts, meta)``: positions (N, 3) [kpc], velocities (N, 3)
        [km/s], the kept Gaia columns (observables, errors, correlations,
        ``source_id``, ``phot_g_mean_mag``) in archive units, the cuts as
        ``(reason, removed, kept)`` and provenance metadata.

    Raises:
        CatalogError: missing or non-numeric columns, a unit of the wrong dimension,
            no usable row, or (``strict=True``) any row that gives no 6D point.
    """
    names = {n: _find(table, n) for n in OBSERVABLES}
    missing = [n for n, found in names.items() if found is None]
    if missing:
        fix = "select them from the Gaia archive (gaia_source has them all)"
        if missing == ["radial_velocity"]:
            fix = (
                "6D points need line-of-sight velocities: add gaia_source.radial_velocity to the "
                "query (or join an RV survey into a column named radial_velocity in km/s)"
            )
        raise _missing_error(missing, table, table_name, "Galactocentric positions and velocities", fix)
    n_rows = len(table)
    if n_rows == 0:
        raise CatalogError(f"{table_name} has 0 rows; check the query or the file")

    cols: dict[str, np.ndarray] = {}
    sid_missing = None  # masked source_ids (an outer join's unmatched rows): refused only if such a row is kept
    for gaia in list(COLUMN_UNITS) + ["source_id"]:
        found = _find(table, gaia)
        if found is None:
            continue
        values, mask = split_mask(table[found])
        if gaia == "source_id" and mask is not None and mask.any() and np.asarray(values).dtype.kind in "iu":
            sid_missing = np.asarray(mask, bool)
            cols[gaia] = np.where(sid_missing, -1, np.asarray(values)).astype(np.int64)
            continue
        cols[gaia] = read_column(table, found, COLUMN_UNITS.get(gaia), table_name=table_name)
    extra_units: dict[str, str] = {}
    cols.update(_extra_columns(table, extra_columns, set(cols), table_name, extra_units))

    keep = np.ones(n_rows, dtype=bool)
    cuts: list[tuple[str, int, int]] = []
    checks = [
        ("no radial_velocity (missing or NaN)", ~np.isfinite(cols["radial_velocity"])),
        (
            "NaN/inf astrometry (ra, dec, parallax, pmra or pmdec)",
            ~np.all([np.isfinite(cols[n]) for n in ASTROMETRY], axis=0),
        ),
        ("parallax <= 0 (no distance from 1/parallax)", ~(cols["parallax"] > 0)),
    ]
    for reason, bad in checks:
        drop = keep & bad
        if drop.any():
            keep &= ~bad
            cuts.append((reason, int(drop.sum()), int(keep.sum())))
    dropped = n_rows - int(keep.sum())
    counts = "; ".join(f"{removed} with {reason}" for reason, removed, _ in cuts)
    if strict and dropped:
        raise CatalogError(
            f"{table_name}: {dropped} of {n_rows} rows give no 6D point ({counts}); "
            "strict=True refuses them: remove these rows, or use strict=False to drop them with a report (command "
            "line: leave out --strict; config: catalog.strict = false)"
        )
    if not keep.any():
        raise CatalogError(
            f"{table_name}: none of its {n_rows} rows gives a 6D point ({counts}); "
            "query stars with radial_velocity IS NOT NULL AND parallax > 0"
        )
    if sid_missing is not None and (sid_missing & keep).any():
        rows = np.flatnonzero(sid_missing & keep)
        raise CatalogError(
            f"{table_name}: {rows.size} of the rows kept have no source_id (masked; first rows {rows[:5].tolist()}): "
            "fill them (table['source_id'] = table['source_id'].filled(-1)) or remove those rows first"
        )
    with np.errstate(invalid="ignore"):
        off_sky = keep & (np.abs(cols["dec"]) > 90.0)  # among the rows kept (a dropped row's sentinel is no matter)
    if off_sky.any():  # astropy's "Latitude angle(s) must be within -90 deg <= angle <= 90 deg" named no column or row
        raise CatalogError(
            f"{table_name}: {int(off_sky.sum())} of {n_rows} rows have |dec| > 90 deg (first rows "
            f"{np.flatnonzero(off_sky)[:5].tolist()}), which is no position on the sky: check the column's unit "
            "(degrees) and the file, or remove those rows"
        )
    if dropped:
        warn_caller(
            f"{table_name}: kept {int(keep.sum())} of {n_rows} rows; dropped {counts}. "
            "The cuts are in Catalog.history; pass strict=True to make them an error (command line: --strict; "
            "config: catalog.strict = true).",
            DroppedRowsWarning,
        )
    cols = {k: c[keep] for k, c in cols.items()}
    x, v = _astropy_transform(cols, solar)
    meta = {
        "source": {"name": table_name, "rows_read": n_rows, "distance": "1/parallax"},
    }
    if extra_units:
        meta["column_units"] = extra_units
    return x, v, cols, cuts, meta


def _astropy_transform(cols: Mapping[str, np.ndarray], solar: SolarParameters) -> tuple[np.ndarray, np.ndarray]:
    icrs = coord.ICRS(
        ra=cols["ra"] * u.deg,
        dec=cols["dec"] * u.deg,
        distance=(1.0 / cols["parallax"]) * u.kpc,
        pm_ra_cosdec=cols["pmra"] * _MAS_YR,
        pm_dec=cols["pmdec"] * _MAS_YR,
        radial_velocity=cols["radial_velocity"] * _KMS,
    )
    gal = icrs.transform_to(solar.to_astropy())
    x = np.ascontiguousarray(gal.cartesian.xyz.to_value(u.kpc).T, dtype=np.float64)
    v = np.ascontiguousarray(gal.velocity.d_xyz.to_value(_KMS).T, dtype=np.float64)
    return x, v


# ----------------------------------------------------------------- the affine map in JAX
@functools.lru_cache(maxsize=32)
def galactocentric_affine(solar: SolarParameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ICRS → Galactocentric map as ``x = M x_icrs + x0``, ``v = M v_icrs + v0``.

    Read from astropy by transforming the origin and the unit vectors (the map is
    affine), once per set of solar parameters.

    Returns:
        ``(M, x0, v0)``: rotation (3, 3), position offset (3,) [kpc], velocity
        offset (3,) [km/s] (the Sun's Galactocentric velocity).
    """
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).T
    icrs = coord.ICRS(
        coord.CartesianRepresentation(
            pts * u.kpc, differentials=coord.CartesianDifferential(pts * _KMS)
        )
    )
    gal = icrs.transform_to(solar.to_astropy())
    xyz = gal.cartesian.xyz.to_value(u.kpc)
    vxyz = gal.velocity.d_xyz.to_value(_KMS)
    x0 = xyz[:, 0].copy()
    v0 = vxyz[:, 0].copy()
    m = xyz[:, 1:] - x0[:, None]
    for arr in (m, x0, v0):
        arr.setflags(write=False)
    return m, x0, v0


def observables_to_galactocentric(obs: jax.Array, matrix: jax.Array, x0: jax.Array, v0: jax.Array) -> jax.Array:
    """Pure JAX: Gaia observables → Galactocentric phase-space coordinates.

    Args:
        obs: (..., 6) ``ra`` [deg], ``dec`` [deg], ``parallax`` [mas], ``pmra``
            (= μ_α cos δ) [mas/yr], ``pmdec`` [mas/yr], ``radial_velocity`` [km/s].
        matrix: (3, 3) rotation from :func:`galactocentric_affine`.
        x0: (3,) position offset [kpc].
        v0: (3,) velocity offset [km/s].

    Returns:
        (..., 6): x, y, z [kpc], v_x, v_y, v_z [km/s]. Distance is 1/parallax.

    The precision is JAX's: run it under ``jax.enable_x64(True)`` for float64 (it
    then agrees with astropy to ~1e-15 relative); :meth:`Catalog.covariance` and
    :meth:`Catalog.error_draws` do so.
    """
    ra = jnp.deg2rad(obs[..., 0])
    dec = jnp.deg2rad(obs[..., 1])
    dist = 1.0 / obs[..., 2]
    ca, sa, cd, sd = jnp.cos(ra), jnp.sin(ra), jnp.cos(dec), jnp.sin(dec)
    rhat = jnp.stack([cd * ca, cd * sa, sd], axis=-1)
    e_ra = jnp.stack([-sa, ca, jnp.zeros_like(ca)], axis=-1)
    e_dec = jnp.stack([-sd * ca, -sd * sa, cd], axis=-1)
    pos = dist[..., None] * rhat
    vt = (K_MASYR_KPC * dist)[..., None] * (obs[..., 3, None] * e_ra + obs[..., 4, None] * e_dec)
    vel = obs[..., 5, None] * rhat + vt
    x = pos @ matrix.T + x0
    v = vel @ matrix.T + v0
    return jnp.concatenate([x, v], axis=-1)


@jax.jit
def _jacobians(obs, matrix, x0, v0):
    one = lambda o: observables_to_galactocentric(o, matrix, x0, v0)  # noqa: E731
    return jax.vmap(jax.jacfwd(one))(obs)


@jax.jit
def _mean_shift(obs, cov, matrix, x0, v0):
    """½ Σ_jk cov_jk ∂²g/∂o_j∂o_k per star (N, 6), g = :func:`observables_to_galactocentric`."""
    one = lambda o: observables_to_galactocentric(o, matrix, x0, v0)  # noqa: E731
    return 0.5 * jnp.einsum("nijk,njk->ni", jax.vmap(jax.hessian(one))(obs), cov)


@jax.jit
def _transform(obs, matrix, x0, v0):
    return observables_to_galactocentric(obs, matrix, x0, v0)


# ----------------------------------------------------------------- observational errors
def observable_errors(columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The observables and their Gaussian error model from Gaia columns.

    Errors are in "error units" e = (Δα* [mas], Δδ [mas], Δϖ [mas], Δμ_α* [mas/yr],
    Δμ_δ [mas/yr], Δv_r [km/s]); ``ra_error`` and ``dec_error`` are in mas as in
    the archive. Correlations among the five astrometric parameters are used where
    their columns exist (absent ones are 0); the RV is independent.

    Returns:
        ``(obs, sigma, corr, scale)``: observables (N, 6) in their archive units,
        standard deviations (N, 6) in error units, correlation matrices (N, 6, 6),
        and the factor (N, 6) that turns error units into observable units
        (1/(3.6e6 cos δ) deg per mas for ra, 1/3.6e6 deg per mas for dec, 1 for the rest).

    Raises:
        CatalogError: observables or required error columns absent, non-finite observables
            or a parallax ≤ 0, non-finite or negative errors, or correlations outside [−1, 1]
            or not positive semi-definite, or a row so close to a celestial pole that its RA error
            turns the proper motions' basis by more than :data:`MAX_RA_ERROR_TURN`.
    """
    missing_obs = [n for n in OBSERVABLES if n not in columns]
    if missing_obs:
        raise CatalogError(
            f"this catalog has no Gaia observables {missing_obs}, so its errors cannot be propagated; "
            "build it with Catalog.from_gaia (or from_table on Gaia columns)"
        )
    required = [ERROR_COLUMNS[n] for n in ("parallax", "pmra", "pmdec", "radial_velocity")]
    missing_err = [c for c in required if c not in columns]
    if missing_err:
        raise CatalogError(
            f"this catalog lacks the error column(s) {missing_err} needed to propagate observational "
            "errors; select them from the Gaia archive (ra_error and dec_error are optional and "
            "taken as 0 when absent)"
        )
    n = len(columns["ra"])
    obs = np.stack([np.asarray(columns[k], dtype=np.float64) for k in OBSERVABLES], axis=-1)
    # a NaN observable gave NaN covariances and a parallax <= 0 a finite one for a negative distance, both
    # silently (Catalog.from_gaia removes such rows; Catalog(x, v, columns=...) and from_table keep them)
    bad = ~np.isfinite(obs)
    if bad.any():
        names = [OBSERVABLES[i] for i in np.flatnonzero(bad.any(axis=0))]
        raise CatalogError(
            f"{int(bad.any(axis=-1).sum())} of {n} rows have NaN or inf in {names}, so their errors cannot be "
            "propagated; remove them first, e.g. ok = np.all([np.isfinite(cat.columns[c]) for c in "
            f"{names}], axis=0); cat = cat.select(ok, 'finite observables'), as Catalog.from_gaia does"
        )
    bad = ~(obs[:, 2] > 0)
    if bad.any():
        raise CatalogError(
            f"{int(bad.sum())} of {n} rows have parallax <= 0, which is no distance (errors are propagated with "
            "d = 1/parallax); remove them first, e.g. cat = cat.select(cat.columns['parallax'] > 0, "
            "'parallax > 0'), as Catalog.from_gaia does"
        )
    sigma = np.zeros((n, 6))
    for i, name in enumerate(OBSERVABLES):
        col = ERROR_COLUMNS[name]
        if col not in columns:
            continue
        s = np.asarray(columns[col], dtype=np.float64)
        bad = ~(np.isfinite(s) & (s >= 0))
        if bad.any():
            raise CatalogError(
                f"column {col!r} has {int(bad.sum())} of {n} rows that are NaN, inf or negative; "
                f"remove them first, e.g. e = cat.columns[{col!r}]; "
                f"cat = cat.select(np.isfinite(e) & (e >= 0), 'valid {col}')"
            )
        sigma[:, i] = s
    absent = [col for (i, j), col in CORRELATION_COLUMNS.items()
              if col not in columns and ERROR_COLUMNS[OBSERVABLES[i]] in columns and ERROR_COLUMNS[OBSERVABLES[j]] in columns]
    if absent:  # (on 23 DR3 rows, leaving all ten out changed the velocity and position σ by −11 % to +4 %)
        warn_caller(
            f"the catalog has no Gaia correlation column(s) {absent}: those correlations are taken as 0 (uncorrelated "
            "astrometric errors), which misstates the propagated errors by up to ~10 % on Gaia rows; select them "
            "from the archive with the *_error columns for the exact error model", UserWarning)
    corr = np.broadcast_to(np.eye(6), (n, 6, 6)).copy()
    for (i, j), col in CORRELATION_COLUMNS.items():
        if col not in columns:
            continue
        r = np.asarray(columns[col], dtype=np.float64)
        bad = ~(np.isfinite(r) & (np.abs(r) <= 1))
        if bad.any():
            raise CatalogError(
                f"column {col!r} has {int(bad.sum())} of {n} rows that are NaN or outside [-1, 1]; "
                "remove those rows (cat.select(...)) or drop the column to treat it as 0"
            )
        corr[:, i, j] = corr[:, j, i] = r
    lowest = np.linalg.eigvalsh(corr)[:, 0]
    bad = lowest < -1e-6
    if bad.any():
        raise CatalogError(
            f"the Gaia correlations of {int(bad.sum())} of {n} rows form no valid correlation matrix "
            f"(smallest eigenvalue {lowest.min():.3g}); remove those rows with cat.select(...)"
        )
    scale = np.ones((n, 6))
    scale[:, 0] = 1.0 / (_MAS_PER_DEG * np.cos(np.deg2rad(obs[:, 1])))
    scale[:, 1] = 1.0 / _MAS_PER_DEG
    # next to a celestial pole an RA error Δα* of a few µas is a large rotation Δα = Δα*/cos δ about the pole, which
    # turns the proper motions' basis: the linearisation in α fails there (at δ = 90° the velocity σ came out 1e7
    # km/s; at 89.9999999° 2.3 km/s for 1 km/s). Such rows are refused (real Gaia rows are not that close)
    turn = np.deg2rad(np.abs(sigma[:, 0] * scale[:, 0]))
    bad = ~(turn <= MAX_RA_ERROR_TURN)
    if bad.any():
        raise CatalogError(
            f"{int(bad.sum())} of {n} rows lie so close to a celestial pole (|dec| up to {np.abs(obs[bad, 1]).max():.9g} "
            f"deg) that their RA error turns the proper motions' basis by more than {MAX_RA_ERROR_TURN:g} rad, where "
            "the linear error propagation fails; remove them first, e.g. cat = cat.select(np.abs(cat.columns['dec']) "
            "< 89.99, 'away from the pole')"
        )
    return obs, sigma, corr, scale


#: the largest rotation [rad] about a celestial pole that a row's RA error may make (σ_α*/cos δ), for
#: observable_errors to propagate its errors linearly (1e-3 rad turns a 300 km/s velocity by 0.3 km/s)
MAX_RA_ERROR_TURN = 1e-3


def galactocentric_covariance(columns: Mapping[str, np.ndarray], solar: SolarParameters) -> np.ndarray:
    """Linearised Galactocentric covariance of each star, (N, 6, 6) in kpc and km/s.

    C = J S Σ S Jᵀ, with J the Jacobian of :func:`observables_to_galactocentric`
    (``jax.jacfwd``, vmapped over stars), Σ the observables' covariance in error
    units and S their scale to observable units (see :func:`observable_errors`).
    Order: x, y, z [kpc], v_x, v_y, v_z [km/s].
    """
    obs, sigma, corr, scale = observable_errors(columns)
    matrix, x0, v0 = galactocentric_affine(solar)
    with jax.enable_x64(True):
        jac = np.asarray(_jacobians(jnp.asarray(obs), jnp.asarray(matrix), jnp.asarray(x0), jnp.asarray(v0)))
    b = jac * (scale * sigma)[:, None, :]  # J S D
    return np.einsum("nij,njk,nlk->nil", b, corr, b)


def galactocentric_error_mean(columns: Mapping[str, np.ndarray], solar: SolarParameters,
                              chunk: int = 16384) -> np.ndarray:
    """Second-order mean of each star's Galactocentric error, (N, 6) in kpc and km/s.

    E[g(o + e)] − g(o) = ½ Σ_jk Σ_jk ∂²g/∂o_j∂o_k + O(e⁴) for Gaussian errors e ~ N(0, Σ) of the observables o,
    with g = :func:`observables_to_galactocentric` (``jax.hessian``, vmapped over stars) and Σ = S D R D S as in
    :func:`galactocentric_covariance`. For distances 1/ϖ the distance's term is d (σ_ϖ/ϖ)², which also scales the
    tangential velocity; the parallax–proper-motion correlations add −K d² (cov(ϖ, μ_α*) ê_α + cov(ϖ, μ_δ) ê_δ)
    [km/s] to it (K = 4.74047 km/s per kpc mas/yr; ê_α, ê_δ the sky's unit vectors). Evaluated in fixed-size chunks
    of ``chunk`` stars (the last one padded): one compiled program, and memory bounded whatever the catalog's size.
    """
    obs, sigma, corr, scale = observable_errors(columns)
    matrix, x0, v0 = galactocentric_affine(solar)
    s = scale * sigma
    cov = s[:, :, None] * corr * s[:, None, :]
    chunk = max(1, min(chunk, len(obs)))
    out = np.empty((len(obs), 6))
    with jax.enable_x64(True):
        args = jnp.asarray(matrix), jnp.asarray(x0), jnp.asarray(v0)
        for i in range(0, len(obs), chunk):
            o, c = obs[i:i + chunk], cov[i:i + chunk]
            pad = chunk - len(o)
            m = _mean_shift(jnp.asarray(np.pad(o, ((0, pad), (0, 0)), mode="edge")),
                            jnp.asarray(np.pad(c, ((0, pad), (0, 0), (0, 0)), mode="edge")), *args)
            out[i:i + len(o)] = np.asarray(m)[:len(o)]
    return out


def galactocentric_draws(
    columns: Mapping[str, np.ndarray], solar: SolarParameters, n_draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Monte Carlo draws of Galactocentric x, v from the observables' Gaussian errors.

    Returns:
        ``(x, v, n_bad)``: (n_draws, N, 3) [kpc] and [km/s]; draws whose parallax
        came out ≤ 0 (no distance) are NaN and counted in ``n_bad``.
    """
    obs, sigma, corr, scale = observable_errors(columns)
    w, q = np.linalg.eigh(corr)
    root = q * np.sqrt(np.clip(w, 0.0, None))[:, None, :]  # corr = root rootᵀ
    matrix, x0, v0 = galactocentric_affine(solar)
    # numpy's generator (PCG64) draws the normals: same seed, same draws, and no
    # per-shape compilation of a JAX random sampler (which costs seconds here).
    z = np.random.default_rng(seed).standard_normal((n_draws,) + obs.shape)
    with jax.enable_x64(True):
        out, plx = _draw(jnp.asarray(z), jnp.asarray(obs), jnp.asarray(root), jnp.asarray(sigma * scale),
                         jnp.asarray(matrix), jnp.asarray(x0), jnp.asarray(v0))
        out = np.array(out)
        plx = np.asarray(plx)
    bad = ~(plx > 0)
    out[bad] = np.nan
    return out[..., :3], out[..., 3:], int(bad.sum())


@jax.jit
def _draw(z, obs, root, step, matrix, x0, v0):
    eps = jnp.einsum("nij,dnj->dni", root, z) * step
    drawn = obs + eps
    return observables_to_galactocentric(drawn, matrix, x0, v0), drawn[..., 2]

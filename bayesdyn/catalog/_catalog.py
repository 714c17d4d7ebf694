"""The Catalog: stellar positions and velocities in the Galactocentric frame."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from .. import units as _u
from . import _gaia, _io
from ._errors import CatalogError, CatalogUnitError, DroppedRowsWarning, warn_caller
from ._solar import SolarParameters

#: column names that to_table uses for the positions and velocities
RESERVED_COLUMNS = ("x", "y", "z", "v_x", "v_y", "v_z")

__all__ = ["Catalog", "CatalogError", "CutRecord"]

_GALACTOCENTRIC = ("x", "y", "z", "v_x", "v_y", "v_z")
_GALACTOCENTRIC_ALT = {"v_x": "vx", "v_y": "vy", "v_z": "vz"}


@dataclasses.dataclass(frozen=True)
class CutRecord:
    """One step that removed rows.

    Attributes:
        reason: what the cut was, e.g. ``"parallax_over_error >= 5"``.
        removed: number of stars it removed.
        kept: number of stars left after it.
    """

    reason: str
    removed: int
    kept: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _same_solar(a: SolarParameters, b: SolarParameters) -> bool:
    """Equal up to float round-off (astropy's frame gives z_sun one ulp off the default)."""
    flat = [[p.galcen_distance, p.z_sun, *p.v_sun, p.roll] for p in (a, b)]
    return bool(np.allclose(*flat, rtol=1e-9, atol=1e-12))


def _saved_history(records: Any) -> list[CutRecord]:
    """The cuts of a saved header (``Catalog.save`` or ``to_table``); ValueError/KeyError/TypeError if malformed."""
    history = [CutRecord(str(h["reason"]), int(h["removed"]), int(h["kept"])) for h in records]
    if any(h.removed < 0 or h.kept < 0 for h in history):
        raise ValueError("a cut with a negative count")
    return history


def _detached(meta: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``meta`` where one can be made, else a shallow one (a value that cannot be copied, a lock, is
    then left for the writer to refuse, as before)."""
    try:
        return copy.deepcopy(meta)
    except (TypeError, copy.Error):
        return dict(meta)


def _to_quantity_if_unit(value: Any) -> Any:
    """An astropy Column (or anything with a ``unit``) becomes a Quantity so that units are honoured."""
    if not isinstance(value, u.Quantity) and getattr(value, "unit", None) is not None:
        try:
            return u.Quantity(value)
        except (TypeError, ValueError):
            return value
    return value


def _unmasked(value: Any, name: str, *, nan_ok: bool = True) -> Any:
    """``value`` with its masked entries as NaN (a float copy; units kept), or ``value`` itself when it has no mask.

    ``np.asarray`` and ``u.Quantity`` drop a MaskedColumn's, ``np.ma`` array's or astropy ``Masked``'s mask and keep
    whatever sits under it (0.0 for a blank CSV cell: a radial-velocity error of 0, a star at the Galactic centre).
    Integer, boolean and string columns have no NaN: masked entries there are an error naming the column.
    """
    data, mask = _gaia.split_mask(value)
    if mask is None:
        return value
    if not hasattr(value, "unmasked"):  # a MaskedColumn or np.ma array: a plain array, with the column's unit
        data = np.asarray(data)
        if getattr(value, "unit", None) is not None:
            data = u.Quantity(data, value.unit)
    if not mask.any():
        return data
    kind = np.asarray(getattr(data, "value", data)).dtype.kind
    if kind not in "fc" and not (nan_ok and kind in "iub"):
        raise CatalogError(
            f"{name} has {int(mask.sum())} masked (missing) entries and holds {np.asarray(data).dtype} values, which "
            "have no NaN; drop those stars first, or fill the entries"
        )
    data = data.astype(np.float64) if kind != "c" else data
    data[mask] = np.nan
    return data


def _as_xyz(value: Any, physical_type: str, name: str, unit_name: str) -> np.ndarray:
    value = _to_quantity_if_unit(_unmasked(value, name))
    try:
        value = _u.strip(value, physical_type, name)
    except _u.UnitError as err:
        raise CatalogUnitError(str(err)) from None
    try:
        arr = np.asarray(value)
    except Exception as err:  # noqa: BLE001 - any conversion failure is user input
        raise CatalogError(f"{name} could not be read as an array ({err}); pass an (N, 3) array in {unit_name}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):  # booleans too (they had read as 0 and 1)
        raise CatalogError(
            f"{name} is not numeric (dtype {arr.dtype}); pass an (N, 3) array of numbers in {unit_name}"
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise CatalogError(f"{name} is complex; pass real numbers in {unit_name}")
    if arr.ndim != 2 or arr.shape[1] != 3:
        hint = " (it looks transposed: pass a.T)" if arr.ndim == 2 and arr.shape[0] == 3 else ""
        raise CatalogError(
            f"{name} has shape {arr.shape}; it must be (N, 3) in {unit_name}{hint} "
            "(one row per star; stack columns with np.column_stack([x, y, z]))"
        )
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise CatalogError(
            f"{name} has {bad.sum()} row(s) with NaN or inf (first rows: {rows[:5].tolist()}); "
            "remove them before building the Catalog, e.g. keep = np.isfinite(a).all(axis=1)"
        )
    return arr


def _as_column(key: str, col: Any, n: int) -> np.ndarray:
    """A per-star column as a numpy array; Gaia columns with units go to the archive's units; masked entries NaN."""
    col = _to_quantity_if_unit(_unmasked(col, f"column {key!r}", nan_ok=False))
    if isinstance(col, u.Quantity):
        target = _gaia.COLUMN_UNITS.get(key)
        if target is None:
            if col.unit != u.dimensionless_unscaled:
                raise CatalogUnitError(
                    f"column {key!r} is a Quantity in {col.unit}, but only Gaia's own columns have known units; "
                    f"pass plain numbers in the unit you mean and name it, e.g. columns={{'{key}_kpc': "
                    f"q.to_value('kpc')}}"
                )
            arr = np.array(col.value)
        else:
            try:
                arr = np.array(col.to_value(target))
            except u.UnitConversionError:
                raise CatalogUnitError(
                    f"column {key!r} is in {col.unit} (a {col.unit.physical_type}) but must be "
                    f"convertible to {target}; fix its unit"
                ) from None
    else:
        arr = np.array(col)  # a copy, as x and v are (the caller's array had stayed shared: g[:] = 99 changed it)
    if arr.dtype.hasobject:  # (a structured dtype with an object field too: save pickled it, and load refused it)
        raise CatalogError(
            f"column {key!r} has dtype object (or a field of it); pass numbers or strings (object arrays cannot be "
            "saved without pickle)"
        )
    if arr.shape[:1] != (n,):
        raise CatalogError(
            f"column {key!r} has {arr.shape[0] if arr.ndim else 'no'} rows but the catalog has {n} stars; "
            "pass one value per star"
        )
    return arr


def _checked_columns(columns: Mapping[Any, Any], n: int, units: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The per-star columns as the constructor keeps them: string names, none of them reserved, each through
    :func:`_as_column` (one value per star of ``n``; masked entries NaN or refused; Gaia units converted).

    The constructor checks its ``columns=`` with it, and :meth:`Catalog.save` and :meth:`Catalog.to_table` check
    ``Catalog.columns`` again, a plain dict that may have been edited since (``cat.columns[name] = values``). These
    pass ``units``: a Quantity column that is not Gaia's (which the constructor refuses, having nowhere to keep its
    unit) then keeps its numbers, and its unit is put in ``units`` for ``meta["column_units"]``, as :meth:`from_table`
    records a table's.
    """
    keys = [str(k) for k in columns]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:  # e.g. 1 and "1": a dict of the names kept the last column of each, losing the others
        raise CatalogError(
            f"column name(s) {repeated} are given more than once (as keys that are equal as strings, e.g. 1 and '1'); "
            "give each column its own name"
        )
    reserved = sorted(set(keys) & set(RESERVED_COLUMNS))
    if reserved:  # to_table writes the positions and velocities under these names: a column would replace them
        raise CatalogError(
            f"column name(s) {reserved} are reserved for the positions and velocities (to_table writes x, y, z, "
            "v_x, v_y, v_z); rename them, e.g. columns={'" + reserved[0] + "_obs': ...}"
        )
    out = {}
    for key, col in zip(keys, columns.values()):
        if units is not None and key not in _gaia.COLUMN_UNITS:
            col = _to_quantity_if_unit(_unmasked(col, f"column {key!r}", nan_ok=False))
            if isinstance(col, u.Quantity) and col.unit != u.dimensionless_unscaled:
                units[key] = col.unit.to_string()  # (as _gaia.column_unit writes a table's)
                col = col.value
        out[key] = _as_column(key, col, n)
    return out


def _bounds(value: Any, physical_type: str, name: str) -> tuple[float, float]:
    """A (min, max) pair; None on either side is open. Quantities accepted."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise CatalogError(f"{name} must be a (min, max) pair (use None for an open side), got {value!r}") from None
    out = []
    for side, default in ((lo, -np.inf), (hi, np.inf)):
        if side is None:
            out.append(default)
            continue
        try:
            out.append(float(_u.strip(_to_quantity_if_unit(side), physical_type, name)))
        except _u.UnitError as err:
            raise CatalogUnitError(str(err)) from None
        except (TypeError, ValueError):
            raise CatalogError(f"{name} bounds must be numbers or None, got {side!r}") from None
    if np.isnan(out).any() or not out[0] < out[1]:
        raise CatalogError(f"{name} = ({out[0]}, {out[1]}) is no interval; pass (min, max) with min < max")
    return out[0], out[1]


def _length(value: Any, name: str) -> float:
    try:
        out = _u.strip(_to_quantity_if_unit(value), "length", name)
    except _u.UnitError as err:
        raise CatalogUnitError(str(err)) from None
    try:
        out = float(out)
    except (TypeError, ValueError):
        raise CatalogError(f"{name} must be one length in kpc (or a length Quantity), got {value!r}") from None
    if not (np.isfinite(out) and out > 0):
        raise CatalogError(f"{name} must be a positive, finite length in kpc, got {out}")
    return out


def _fmt_bound(lo: float, hi: float, name: str, unit: str) -> str:
    if np.isinf(lo):
        return f"{name} <= {hi:g} {unit}"
    if np.isinf(hi):
        return f"{name} >= {lo:g} {unit}"
    return f"{lo:g} <= {name} <= {hi:g} {unit}"


class Catalog:
    """Stars in a right-handed Galactocentric frame.

    Build one from arrays (this constructor), an astropy table
    (:meth:`from_table`), a Gaia archive file (:meth:`from_gaia`), any table file
    with x..v_z columns (:meth:`read`) or a saved catalog (:meth:`load`). Selections
    (:meth:`with_rv`, :meth:`parallax_over_error`, :meth:`g_mag`, :meth:`within`,
    :meth:`in_volume`, :meth:`select`) return new catalogs and record in
    :attr:`history` how many rows each removed.

    Args:
        x: positions, shape (N, 3) [kpc] (or a length Quantity; pc are converted).
        v: velocities, shape (N, 3) [km/s] (or a velocity Quantity).
        solar: the frame's solar parameters (default: astropy 'v4.0').
        columns: extra per-star columns (name → length-N array), e.g. ``source_id``,
            ``phot_g_mean_mag`` [mag], or the observables ``ra, dec`` [deg],
            ``parallax`` [mas], ``pmra, pmdec`` [mas/yr], ``radial_velocity``
            [km/s] with their ``*_error`` columns (``ra_error``, ``dec_error`` in
            mas) and correlations ``*_corr``. Quantities are converted to these
            units. Masked entries (``np.ma``, astropy ``MaskedColumn`` or ``Masked``)
            become NaN in x, v and float columns (rows of x or v with NaN are refused);
            an integer, boolean or string column with masked entries is refused
            (``from_gaia`` makes such integer and boolean columns float with NaN, and
            refuses a masked ``source_id`` on a row it keeps: 19 digits that a float
            cannot hold).
        meta: free-form JSON-serialisable metadata (provenance, truth parameters);
            ``meta["column_units"]`` names the unit of each non-Gaia column that
            ``from_table`` or ``from_gaia(extra_columns=...)`` read with one (the
            column holds bare numbers in it, and ``to_table`` writes it back).
        history: the cuts already applied, oldest first.

    Raises:
        CatalogError: wrong shapes, non-numeric or non-finite values, columns of
            the wrong length, or an empty catalog. Wrong physical dimensions raise
            :class:`CatalogUnitError`, which is also a ``bayesdyn.units.UnitError``.
    """

    def __init__(
        self,
        x: Any,
        v: Any,
        *,
        solar: SolarParameters | None = None,
        columns: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        history: list[CutRecord] | None = None,
    ):
        x = _as_xyz(x, "length", "x (positions)", "kpc")
        v = _as_xyz(v, "velocity", "v (velocities)", "km/s")
        if x.shape[0] != v.shape[0]:
            raise CatalogError(
                f"x has {x.shape[0]} rows but v has {v.shape[0]}; positions and velocities must describe the same stars"
            )
        if x.shape[0] == 0:
            raise CatalogError("the catalog is empty (0 stars); check the input file or the selection that produced it")
        if solar is not None and not isinstance(solar, SolarParameters):
            raise CatalogError(f"solar must be a bayesdyn.SolarParameters, got {type(solar).__name__}")
        self._x = x
        self._v = v
        self.solar = solar if solar is not None else SolarParameters()
        self.columns: dict[str, np.ndarray] = _checked_columns(columns or {}, x.shape[0])
        sid = self.columns.get("source_id")
        if sid is not None and sid.dtype.kind in "iu":
            uniq, counts = np.unique(sid, return_counts=True)
            if (counts > 1).any():  # the same star twice counts twice in every fit
                warn_caller(
                    f"{int((counts > 1).sum())} source_id value(s) appear more than once ({int(counts[counts > 1].sum())} "
                    f"rows, first {uniq[counts > 1][:3].tolist()}): unless these are deliberate copies (Monte Carlo "
                    "draws of the same stars), duplicated stars count twice in every fit; keep one row each, e.g. "
                    "astropy.table.unique(table, keys='source_id')", UserWarning,
                )
        self.meta: dict[str, Any] = copy.deepcopy(dict(meta or {}))  # nested records are the catalog's own
        self.history: list[CutRecord] = list(history or [])
        for rec in self.history:
            if not isinstance(rec, CutRecord):
                raise CatalogError(f"history must hold CutRecord objects, got {type(rec).__name__}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_gaia(
        cls,
        source: Any,
        *,
        solar: SolarParameters | None = None,
        strict: bool = False,
        format: str | None = None,
        extra_columns: Any = (),
        **read_kwargs: Any,
    ) -> "Catalog":
        """A Catalog from Gaia archive columns (a file or an astropy Table).

        Reads ``ra, dec`` [deg], ``parallax`` [mas], ``pmra, pmdec`` [mas/yr],
        ``radial_velocity`` [km/s] (units from the file where it has them), and
        transforms them to Galactocentric x, v with astropy and ``solar``. The
        distance is 1/parallax — biased when ``parallax_over_error`` is not large
        (≲ 5–10); cut with :meth:`parallax_over_error` or bring your own distances.
        The parallax zero point is not corrected.

        Rows that give no 6D point are dropped and counted per reason — no
        radial velocity, NaN/inf astrometry, parallax ≤ 0 (in that order; a row
        counts under the first that applies). Each reason becomes a
        :class:`CutRecord` in :attr:`history` and one
        :class:`~bayesdyn.catalog.DroppedRowsWarning` states the counts.

        The observables, their ``*_error`` columns and the ten astrometric
        correlations (where present), ``source_id`` and ``phot_g_mean_mag`` are
        kept in :attr:`columns` (archive units), which :meth:`error_draws` and
        :meth:`covariance` use; other columns only when named in ``extra_columns``.

        Args:
            source: path to a FITS, VOTable, CSV, ECSV, Parquet or HDF5 file (format
                from the extension), or an astropy Table/QTable.
            solar: solar parameters of the frame (default astropy 'v4.0').
            strict: if True, raise instead of dropping rows that give no 6D point.
            format: astropy ``Table.read`` format, overriding the extension.
            extra_columns: names of further 1-D numeric or string columns to keep in
                :attr:`columns`, cut with the rows (e.g. a detection probability
                joined to the Gaia rows; masked entries become NaN, an integer column with
                them float, and one with integers beyond 2**53, such as an id, is refused).
            **read_kwargs: passed to ``astropy.table.Table.read``.

        Raises:
            CatalogError: unreadable file or unknown extension, missing or
                non-numeric columns, wrong units, no usable row, or (strict) any
                dropped row.
        """
        table, name = cls._table_from(source, format, read_kwargs)
        return cls._from_gaia_table(table, solar, strict, name, extra_columns)

    @classmethod
    def from_table(
        cls,
        table: Table,
        *,
        solar: SolarParameters | None = None,
        strict: bool = False,
        name: str = "the table",
        extra_columns: Any = (),
    ) -> "Catalog":
        """A Catalog from an astropy Table with Galactocentric or Gaia columns.

        If the table has ``x, y, z`` [kpc] and ``v_x, v_y, v_z`` (or ``vx, vy,
        vz``) [km/s] columns, they are taken as Galactocentric coordinates in the
        frame of ``solar`` (units from the columns where present); the table's
        other 1-D numeric and string columns become :attr:`columns` (any other column
        is named in one warning). A table written by :meth:`to_table` also restores
        its solar parameters, history and meta; rows removed from it since then are
        recorded in the history as "rows removed outside bayesdyn", with a
        :class:`DroppedRowsWarning`. Otherwise the Gaia columns are read as in
        :meth:`from_gaia`.

        Args:
            table: an astropy Table or QTable.
            solar: solar parameters (default: the table's own from :meth:`to_table`,
                else astropy 'v4.0'). For a table from :meth:`to_table` they must be
                the saved ones: the columns are not transformed.
            strict: passed to the Gaia reader (see :meth:`from_gaia`).
            name: how to name the table in messages.
            extra_columns: passed to the Gaia reader (see :meth:`from_gaia`); a
                Galactocentric table keeps all its columns anyway.

        Raises:
            CatalogError: neither set of columns, NaN/inf, non-numeric columns or
                wrong units (each named with its count of bad rows); or, for a table
                from :meth:`to_table`, another ``solar``, more rows than were saved, or
                metadata that is malformed or of a newer version.
        """
        if not isinstance(table, Table):
            raise CatalogError(f"from_table needs an astropy Table or QTable, got {type(table).__name__}")
        names = {}
        for col in _GALACTOCENTRIC:
            names[col] = _gaia._find(table, col) or (
                _gaia._find(table, _GALACTOCENTRIC_ALT[col]) if col in _GALACTOCENTRIC_ALT else None
            )
        if all(names.values()):
            return cls._from_galactocentric_table(table, names, solar, name)
        if all(_gaia._find(table, c) for c in _gaia.ASTROMETRY):
            return cls._from_gaia_table(table, solar, strict, name, extra_columns)
        gal_missing = [c for c, found in names.items() if not found]
        gaia_missing = [c for c in _gaia.OBSERVABLES if not _gaia._find(table, c)]
        have = ", ".join(table.colnames[:30]) + (" ..." if len(table.colnames) > 30 else "")
        raise CatalogError(
            f"{name} ({len(table)} rows) has neither Galactocentric columns (missing {gal_missing}) "
            f"nor Gaia columns (missing {gaia_missing}); its columns are: {have}. Rename the columns to "
            "x, y, z [kpc], v_x, v_y, v_z [km/s] or to the Gaia archive names"
        )

    @classmethod
    def _from_gaia_table(cls, table, solar, strict, name, extra_columns=()):
        solar = cls._check_solar(solar)
        x, v, cols, cuts, meta = _gaia.gaia_to_galactocentric(table, solar=solar, strict=strict, table_name=name,
                                                              extra_columns=extra_columns)
        return cls(x, v, solar=solar, columns=cols, meta=meta, history=[CutRecord(*c) for c in cuts])

    @classmethod
    def _from_galactocentric_table(cls, table, names, solar, name) -> "Catalog":
        saved = table.meta.get("bayesdyn") if isinstance(table.meta, Mapping) else None
        meta: dict[str, Any] = {"source": {"name": name, "rows_read": len(table)}}
        history: list[CutRecord] = []
        if solar is not None:
            solar = cls._check_solar(solar)
        if isinstance(saved, Mapping) and saved.get("format") == _io.FILE_FORMAT:
            saved_solar, history, meta = cls._saved_metadata(saved, len(table), name)
            if solar is not None and not _same_solar(solar, saved_solar):
                raise CatalogError(
                    f"{name} holds positions and velocities computed with {saved_solar} (its "
                    f"table.meta['bayesdyn']), but solar={solar} was passed; the columns would be relabelled, "
                    "not transformed. Leave out solar= to read them in their own frame; to use other solar "
                    "parameters, recompute the columns in that frame first (e.g. Catalog.from_gaia(..., solar=...) "
                    "on the Gaia columns), or, if the columns already are in it, drop table.meta['bayesdyn'] "
                    "(this also drops the saved history and meta)"
                )
            solar = saved_solar
        elif solar is None:  # x … v_z with no record of their frame (a FITS/CSV round trip drops the dict meta)
            warn_caller(
                f"{name} has Galactocentric x … v_z columns but no record of the solar parameters they were computed "
                f"with; assuming {SolarParameters()} (astropy 'v4.0'). Pass solar= with the ones they were computed "
                "with (a catalog's own: cat.solar), or save with Catalog.save, which keeps them",
                UserWarning,
            )
        solar = cls._check_solar(solar)
        parts = []
        for col in _GALACTOCENTRIC:
            unit = u.kpc if col in ("x", "y", "z") else u.km / u.s
            arr = _gaia.read_column(table, names[col], unit, table_name=name)
            bad = ~np.isfinite(arr)
            if bad.any():
                raise CatalogError(
                    f"column {names[col]!r} of {name} has {int(bad.sum())} of {len(arr)} rows that are NaN, "
                    f"inf or masked (first rows: {np.flatnonzero(bad)[:5].tolist()}); remove them first, e.g. "
                    f"table = table[np.isfinite(table[{names[col]!r}])]"
                )
            parts.append(arr)
        columns: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        skipped: list[str] = []
        for col in table.colnames:
            if col in names.values():
                continue
            c = table[col]
            if getattr(c, "ndim", 1) != 1:
                skipped.append(f"{col!r} ({getattr(c, 'ndim', '?')}-D, shape {getattr(c, 'shape', '?')})")
                continue
            dtype = np.asarray(getattr(c, "value", c)).dtype
            if dtype.kind in "fiub":
                columns[col] = _gaia.read_column(table, col, _gaia.COLUMN_UNITS.get(col), table_name=name)
                if (unit := _gaia.column_unit(table, col)) is not None:  # kept as bare numbers: unit recorded
                    units[col] = unit
            elif dtype.kind in "US":
                if np.any(getattr(c, "mask", False)):
                    raise CatalogError(
                        f"{name}: string column {col!r} has {int(np.sum(c.mask))} masked (missing) entries, which "
                        f"would read as whatever lies under the mask; fill them (table[{col!r}].filled('')) or "
                        "drop the column"
                    )
                columns[col] = np.asarray(c)
            else:
                skipped.append(f"{col!r} (dtype {dtype})")
        if skipped:
            warn_caller(
                f"{name}: {len(skipped)} column(s) not kept in Catalog.columns, which holds only 1-D numeric or "
                f"string columns: {', '.join(skipped)}. To keep them, split them into 1-D columns (e.g. "
                "table['a_0'] = table['a'][:, 0]) or convert them to numbers or strings before from_table; "
                "remove them from the table to silence this",
                UserWarning,
            )
        if units:
            meta = {**meta, "column_units": {**dict(meta.get("column_units") or {}), **units}}
        x = np.column_stack(parts[:3])
        v = np.column_stack(parts[3:])
        return cls(x, v, solar=solar, columns=columns, meta=meta, history=history)

    @staticmethod
    def _saved_metadata(saved: Mapping, n_rows: int, name: str) -> tuple[SolarParameters, list[CutRecord], dict]:
        """Solar parameters, history and meta from a table's ``meta['bayesdyn']`` (written by :meth:`to_table`).

        Rows removed since then are appended to the history (with a :class:`DroppedRowsWarning`).
        """
        _io.check_version(saved.get("version"), f"{name}: its 'bayesdyn' metadata",
                          "; or drop table.meta['bayesdyn'] to read only the columns")
        try:
            solar = SolarParameters.from_dict(dict(saved["solar"]))
            history = _saved_history(saved["history"])
            meta = dict(saved.get("meta", {}))
            n_saved = saved["n_stars"]
            if not isinstance(n_saved, int) or isinstance(n_saved, bool) or n_saved < 1:
                raise ValueError(f"n_stars = {n_saved!r} is not a positive integer")
        except (KeyError, TypeError, ValueError) as err:
            raise CatalogError(f"{name}: its 'bayesdyn' metadata is malformed ({err}); drop table.meta['bayesdyn']") from None
        if n_rows > n_saved:
            raise CatalogError(
                f"{name} has {n_rows} rows but its table.meta['bayesdyn'] describes the {n_saved} stars written "
                "by Catalog.to_table, so the saved history and meta do not fit it; drop table.meta['bayesdyn'] "
                "(e.g. after stacking tables)"
            )
        if n_rows < n_saved:
            removed = n_saved - n_rows
            history.append(CutRecord("rows removed outside bayesdyn", removed, n_rows))
            warn_caller(
                f"{name}: {removed} of the {n_saved} rows written by Catalog.to_table were removed outside bayesdyn "
                f"(kept {n_rows}); recorded in Catalog.history as 'rows removed outside bayesdyn'. Cut with "
                "Catalog.select before to_table to record the reason",
                DroppedRowsWarning,
            )
        return solar, history, meta

    @classmethod
    def read(
        cls,
        path: str | os.PathLike,
        /,
        *,
        solar: SolarParameters | None = None,
        strict: bool = False,
        format: str | None = None,
        extra_columns: Any = (),
        **read_kwargs: Any,
    ) -> "Catalog":
        """A Catalog from any table file: Galactocentric x..v_z columns or Gaia columns.

        Args:
            path: FITS, VOTable, CSV, ECSV, Parquet or HDF5 file (format from the
                extension) — or a ``.npz`` written by :meth:`save`.
            solar: solar parameters (see :meth:`from_table`).
            strict: see :meth:`from_gaia`.
            format: astropy ``Table.read`` format, overriding the extension.
            extra_columns: see :meth:`from_gaia` (Gaia columns only; a table of
                Galactocentric columns or a saved catalog keeps all its columns).
            **read_kwargs: passed to ``astropy.table.Table.read``, e.g. ``path="stars"`` for an HDF5
                file's dataset (the file itself is the first argument, positional only).
        """
        if format is None and str(path).lower().endswith(".npz"):
            cat = cls.load(path)
            given = [k for k, v in (("strict", strict), ("extra_columns", extra_columns)) if v]
            if given or read_kwargs:
                raise CatalogError(f"{path}: a saved .npz catalog keeps its own columns and cuts; "
                                   f"{sorted(set(given) | set(read_kwargs))} do not apply to it (use Catalog.load)")
            if solar is not None and not _same_solar(cls._check_solar(solar), cat.solar):  # (from_astropy: 1 ulp off)
                raise CatalogError(f"{path} was saved with other solar parameters ({cat.solar}); a saved catalog's "
                                   "positions are in its own frame: load it without solar=, or rebuild it from the "
                                   "Gaia table with the new ones")
            return cat
        table, name = cls._table_from(path, format, read_kwargs)
        return cls.from_table(table, solar=solar, strict=strict, name=name, extra_columns=extra_columns)

    @staticmethod
    def _check_solar(solar: Any) -> SolarParameters:
        if solar is None:
            return SolarParameters()
        if not isinstance(solar, SolarParameters):
            raise CatalogError(f"solar must be a bayesdyn.SolarParameters, got {type(solar).__name__}")
        return solar

    @staticmethod
    def _table_from(source: Any, format: str | None, read_kwargs: dict) -> tuple[Table, str]:
        if isinstance(source, Table):
            return source, "the table"
        if isinstance(source, (str, os.PathLike)):
            return _io.read_table(source, format=format, **read_kwargs), Path(source).name
        raise CatalogError(
            f"expected a file path or an astropy Table, got {type(source).__name__}; "
            "for arrays use Catalog(x, v) (kpc, km/s)"
        )

    # ------------------------------------------------------------------ basics
    @property
    def x(self) -> np.ndarray:
        """Positions, (N, 3) [kpc]."""
        return self._x

    @property
    def v(self) -> np.ndarray:
        """Velocities, (N, 3) [km/s]."""
        return self._v

    def __len__(self) -> int:
        return self._x.shape[0]

    @property
    def n(self) -> int:
        """Number of stars."""
        return self._x.shape[0]

    def __repr__(self) -> str:
        return f"Catalog(n={self.n}, columns={sorted(self.columns)}, solar={self.solar})"

    def distance_from_sun(self) -> np.ndarray:
        """Heliocentric distance of each star [kpc]."""
        return np.linalg.norm(self._x - self.solar.position, axis=1)

    @property
    def error_columns(self) -> list[str]:
        """The Gaia ``*_error`` and ``*_corr`` columns this catalog holds."""
        names = list(_gaia.ERROR_COLUMNS.values()) + list(_gaia.CORRELATION_COLUMNS.values())
        return [c for c in names if c in self.columns]

    def _subset(self, keep: np.ndarray, reason: str) -> "Catalog":
        keep = np.asarray(keep)
        if keep.dtype != bool:
            raise CatalogError(f"selection mask has dtype {keep.dtype}; pass a boolean array of shape ({self.n},)")
        if keep.shape != (self.n,):
            raise CatalogError(f"selection mask has shape {keep.shape}, expected ({self.n},) (one entry per star)")
        removed = int(self.n - keep.sum())
        if not keep.any():
            raise CatalogError(
                f"the selection '{reason}' leaves no star (it would remove all {self.n}); loosen the cut"
            )
        out = Catalog.__new__(Catalog)
        out._x = self._x[keep]
        out._v = self._v[keep]
        out.solar = self.solar
        out.columns = {k: c[keep] for k, c in self.columns.items()}
        out.meta = copy.deepcopy(self.meta)  # a selection's provenance edits must not reach its parent
        out.history = self.history + [CutRecord(reason, removed, int(keep.sum()))]
        return out

    def _column(self, name: str, method: str) -> np.ndarray:
        if name not in self.columns:
            raise CatalogError(
                f"{method} needs the column {name!r}, which this catalog lacks (it has: "
                f"{sorted(self.columns) or 'no extra columns'}); build it with Catalog.from_gaia from a table "
                f"that has {name!r}, or pass it in columns="
            )
        col = self.columns[name]
        if col.dtype.kind not in "fiub":
            raise CatalogError(f"{method}: column {name!r} is not numeric (dtype {col.dtype})")
        return col.astype(np.float64)

    # ------------------------------------------------------------------ selections
    def select(self, mask: Any, reason: str = "user mask") -> "Catalog":
        """A new Catalog with the rows where ``mask`` is true; the cut is recorded in ``history``.

        Args:
            mask: boolean array of shape (N,).
            reason: the description stored in the :class:`CutRecord`.

        Raises:
            CatalogError: wrong shape or dtype, masked entries, or no star left.
        """
        values, hidden = _gaia.split_mask(mask)
        if hidden is not None and hidden.any():  # np.asarray would select by the values under the mask
            raise CatalogError(
                f"the selection mask has {int(hidden.sum())} masked entries, whose hidden values would decide; "
                "fill them first, e.g. mask.filled(False) to drop those stars"
            )
        return self._subset(np.asarray(values), reason)

    def with_rv(self) -> "Catalog":
        """Keep the stars with a finite ``radial_velocity`` column [km/s].

        Raises:
            CatalogError: no ``radial_velocity`` column, or no star left.
        """
        rv = self._column("radial_velocity", "with_rv()")
        return self._subset(np.isfinite(rv), "with_rv: radial_velocity present")

    def parallax_over_error(self, minimum: float) -> "Catalog":
        """Keep stars with parallax / parallax_error ≥ ``minimum`` (NaN ratios are removed; a parallax_error ≤ 0 is
        refused).

        Args:
            minimum: the smallest fractional-parallax signal to noise (dimensionless),
                e.g. 5 or 10 to keep the 1/parallax distance nearly unbiased.

        Raises:
            CatalogError: no ``parallax``/``parallax_error`` column, a parallax_error ≤ 0, or no star left.
        """
        try:  # a UnitError is a CatalogUnitError here, as in the other selections
            minimum = float(_u.strip(minimum, "dimensionless", "minimum"))
        except _u.UnitError as err:
            raise CatalogUnitError(str(err)) from None
        plx = self._column("parallax", "parallax_over_error()")
        err = self._column("parallax_error", "parallax_over_error()")
        bad = np.isfinite(err) & (err <= 0)
        if bad.any():  # a zero error made an infinite ratio that passed any cut; a negative one failed every cut
            raise CatalogError(
                f"parallax_over_error(): {int(bad.sum())} stars have parallax_error ≤ 0, which is not an error; "
                "remove or fix them first, e.g. cat = cat.select(cat.columns['parallax_error'] > 0, "
                "'positive parallax_error')"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = plx / err
        return self._subset(ratio >= minimum, f"parallax_over_error >= {minimum:g}")

    def g_mag(self, max: float | None = None, min: float | None = None) -> "Catalog":  # noqa: A002
        """Keep stars with ``min`` ≤ phot_g_mean_mag ≤ ``max`` [mag]; NaN magnitudes are removed.

        Args:
            max: faintest G magnitude kept [mag] (None: no faint limit).
            min: brightest G magnitude kept [mag] (None: no bright limit).

        Raises:
            CatalogError: no limit given, no ``phot_g_mean_mag`` column, or no star left.
        """
        if max is None and min is None:
            raise CatalogError("g_mag() needs max= (faint limit) and/or min= (bright limit), in mag")
        def mag(value, name):
            try:
                return float(value.to_value(u.mag) if isinstance(value, u.Quantity) else value)
            except u.UnitConversionError:
                raise CatalogUnitError(f"g_mag({name}=...) was given in {value.unit}; pass magnitudes (a number "
                                       "or a Quantity in mag)") from None

        lo = -np.inf if min is None else mag(min, "min")
        hi = np.inf if max is None else mag(max, "max")
        if not lo < hi:
            raise CatalogError(f"g_mag(min={lo}, max={hi}) is no interval; pass min < max")
        g = self._column("phot_g_mean_mag", "g_mag()")
        return self._subset((g >= lo) & (g <= hi), _fmt_bound(lo, hi, "phot_g_mean_mag", "mag"))

    def _center(self, center: Any) -> tuple[np.ndarray, str]:
        if isinstance(center, str):
            key = center.lower().replace(" ", "_")
            if key == "sun":
                return self.solar.position, "the Sun"
            if key in ("galactic_center", "galactic_centre", "gc"):
                return np.zeros(3), "the Galactic centre"
            raise CatalogError(f"center={center!r} is unknown; use 'sun', 'galactic_center' or a 3-vector in kpc")
        try:
            c = np.asarray(_u.strip(_to_quantity_if_unit(center), "length", "center"), dtype=float)
        except _u.UnitError as err:
            raise CatalogUnitError(str(err)) from None
        except (TypeError, ValueError):
            raise CatalogError(f"center must be 'sun', 'galactic_center' or 3 numbers in kpc, got {center!r}") from None
        if c.shape != (3,) or not np.isfinite(c).all():
            raise CatalogError(f"center must be a finite Galactocentric (x, y, z) in kpc, got shape {c.shape}")
        return c, f"({c[0]:g}, {c[1]:g}, {c[2]:g}) kpc"

    def within(self, distance: Any, center: Any = "sun") -> "Catalog":
        """Keep stars within ``distance`` of ``center``.

        Args:
            distance: radius [kpc] (or a length Quantity, e.g. ``100 * u.pc``).
            center: ``"sun"`` (default), ``"galactic_center"``, or a Galactocentric
                point (3,) [kpc].

        Raises:
            CatalogError: a non-positive distance, a bad center, or no star left.
        """
        d = _length(distance, "distance")
        c, where = self._center(center)
        r = np.linalg.norm(self._x - c, axis=1)
        return self._with_sphere(self._subset(r <= d, f"within {d:g} kpc of {where}"), c, d, alone=True)

    @staticmethod
    def _with_sphere(out: "Catalog", center: np.ndarray, radius: float, alone: bool) -> "Catalog":
        """Record a spherical selection in ``meta['support_spheres']`` (read by ``bd.fit_psd(support='auto')`` and
        ``bd.weak_form_data(volume='auto')``), with the number of cuts up to it and whether the sphere was the cut's
        only shape (``alone``): later cuts, or a sphere intersected with other shapes, leave it incomplete."""
        spheres = list(out.meta.get("support_spheres", []))
        spheres.append({"center_kpc": [float(a) for a in center], "radius_kpc": float(radius),
                        "cuts": len(out.history), "alone": bool(alone)})
        out.meta["support_spheres"] = spheres
        return out

    def in_volume(
        self,
        *,
        center: Any = None,
        radius: Any = None,
        R: Sequence[Any] | None = None,
        z: Sequence[Any] | None = None,
        box: Sequence[Sequence[Any]] | None = None,
    ) -> "Catalog":
        """Keep stars inside a Galactocentric volume; the given shapes are intersected.

        Args:
            center: sphere centre, ``"sun"``, ``"galactic_center"`` or (3,) [kpc]
                (needs ``radius``).
            radius: sphere radius [kpc] (needs ``center``).
            R: (min, max) cylindrical radius √(x² + y²) [kpc]; None for an open side.
            z: (min, max) height z [kpc]; None for an open side.
            box: ((x_min, x_max), (y_min, y_max), (z_min, z_max)) [kpc].

        All lengths accept Quantities. Example: the solar cylinder
        ``cat.in_volume(R=(7, 9), z=(-1, 1))``.

        Raises:
            CatalogError: no shape given, malformed bounds, or no star left.
        """
        keep = np.ones(self.n, dtype=bool)
        parts = []
        if (center is None) != (radius is None):
            raise CatalogError("a sphere needs both center= and radius= (kpc)")
        if center is not None:
            r = _length(radius, "radius")
            c, where = self._center(center)
            keep &= np.linalg.norm(self._x - c, axis=1) <= r
            parts.append(f"within {r:g} kpc of {where}")
        if R is not None:
            lo, hi = _bounds(R, "length", "R")
            cyl = np.hypot(self._x[:, 0], self._x[:, 1])
            keep &= (cyl >= lo) & (cyl <= hi)
            parts.append(_fmt_bound(lo, hi, "R", "kpc"))
        if z is not None:
            lo, hi = _bounds(z, "length", "z")
            keep &= (self._x[:, 2] >= lo) & (self._x[:, 2] <= hi)
            parts.append(_fmt_bound(lo, hi, "z", "kpc"))
        if box is not None:
            try:
                axes = list(box)
            except TypeError:
                axes = []
            if len(axes) != 3:
                raise CatalogError("box must be ((x_min, x_max), (y_min, y_max), (z_min, z_max)) in kpc")
            for i, (name, bound) in enumerate(zip("xyz", axes)):
                lo, hi = _bounds(bound, "length", f"box {name}")
                keep &= (self._x[:, i] >= lo) & (self._x[:, i] <= hi)
                parts.append(_fmt_bound(lo, hi, name, "kpc"))
        if not parts:
            raise CatalogError("in_volume() needs a shape: center= and radius=, R=, z= and/or box=")
        out = self._subset(keep, "in_volume: " + ", ".join(parts))
        return self._with_sphere(out, c, r, alone=len(parts) == 1) if center is not None else out

    # ------------------------------------------------------------------ errors
    def covariance(self) -> np.ndarray:
        """Linearised Galactocentric covariance of each star from its Gaia errors.

        The Jacobian of the ICRS → Galactocentric map (a pure JAX function of ra,
        dec, parallax, pmra, pmdec, radial_velocity; ``jax.jacfwd``, vmapped) times
        the observables' covariance (``*_error`` and the astrometric ``*_corr``
        columns; ``ra_error``/``dec_error`` in mas and 0 if absent; RV
        independent). Valid for small fractional errors; for larger ones use
        :meth:`error_draws`: against an astropy Monte Carlo of real rows its σ is
        within ~3 % below σ_ϖ/ϖ = 0.05, but 6–7 % short on average (up to 19 %)
        at 0.1–0.2 and 33 % short at 0.25 (``benchmarks/covariance_linearisation.py``).
        The Gaia formal errors are used as they are (no inflation, no systematic
        floor).

        Returns:
            (N, 6, 6) covariance of (x, y, z [kpc], v_x, v_y, v_z [km/s]), in kpc²,
            kpc·km/s and (km/s)².

        Raises:
            CatalogError: the Gaia observables or error columns are absent, or
                hold NaN/negative errors (named with their count).
        """
        return _gaia.galactocentric_covariance(self.columns, self.solar)

    def error_mean(self) -> np.ndarray:
        """The mean of each star's Galactocentric error from its Gaia errors, to second order in them.

        Gaussian errors of the observables do not give zero-mean errors of x and v, because the map to them is
        not linear: a distance 1/ϖ is on average d (1 + (σ_ϖ/ϖ)²), 1 % long at 10 % parallax errors, and the
        tangential velocity, proportional to it, likewise. This is E[(x̃, ṽ)] − (x, v) = ½ Σ_jk Σ_jk ∂²(x, v)/∂o_j∂o_k
        (``jax.hessian`` of the same map as :meth:`covariance`, with the same error model), evaluated at the
        observed values. It is of the same order as :meth:`covariance`, so a correction that uses the covariance
        to second order needs it too (:func:`bayesdyn.weak_form_data` with ``position_errors="catalog"`` uses
        both). For larger errors use :meth:`error_draws`.

        Returns:
            (N, 6) mean error of (x, y, z [kpc], v_x, v_y, v_z [km/s]).

        Raises:
            CatalogError: as :meth:`covariance`.
        """
        return _gaia.galactocentric_error_mean(self.columns, self.solar)

    def error_draws(self, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Monte Carlo draws of x and v from the Gaussian errors of the Gaia observables.

        Each draw perturbs (ra, dec, parallax, pmra, pmdec) with their correlations
        and the RV independently, then applies the same JAX transform as
        :meth:`covariance`. Draws whose parallax comes out ≤ 0 have no distance:
        they are NaN and a warning gives their count (cut
        :meth:`parallax_over_error` first to avoid them).

        Args:
            n_draws: number of draws (≥ 1).
            seed: integer seed; the same seed gives the same draws.

        Returns:
            ``(x, v)``: arrays (n_draws, N, 3) in kpc and km/s.

        Raises:
            CatalogError: as :meth:`covariance`, or a bad ``n_draws``/``seed``.
        """
        if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
            raise CatalogError(f"n_draws must be a positive integer, got {n_draws!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise CatalogError(f"seed must be an integer, got {seed!r}")
        x, v, n_bad = _gaia.galactocentric_draws(self.columns, self.solar, int(n_draws), int(seed))
        if n_bad:
            warn_caller(
                f"{n_bad} of {x.shape[0] * x.shape[1]} error draws had parallax <= 0 and are NaN; "
                "cut low parallax_over_error stars first (e.g. cat.parallax_over_error(5))",
                UserWarning,
            )
        return x, v

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """A readable multi-line description: size, ranges with units, frame, errors, cuts."""
        s = self.solar
        lines = [
            f"bayesdyn Catalog: {self.n} stars, right-handed Galactocentric frame",
            f"  solar parameters: R0 = {s.galcen_distance:g} kpc, z_sun = {s.z_sun * 1e3:g} pc, "
            f"v_sun = ({', '.join(f'{c:g}' for c in s.v_sun)}) km/s, roll = {s.roll:g} deg",
            f"  {'':<18}{'min':>11}{'median':>11}{'max':>11}",
        ]
        rows = [(f"{a} [kpc]", self._x[:, i]) for i, a in enumerate("xyz")]
        rows += [(f"v_{a} [km/s]", self._v[:, i]) for i, a in enumerate("xyz")]
        rows += [("R [kpc]", np.hypot(self._x[:, 0], self._x[:, 1])), ("d_sun [kpc]", self.distance_from_sun())]
        for label, arr in rows:
            lines.append(f"  {label:<18}{arr.min():>11.4g}{np.median(arr):>11.4g}{arr.max():>11.4g}")
        errs = self.error_columns
        if errs:
            n_corr = sum(c.endswith("_corr") for c in errs)
            err_names = ", ".join(c for c in errs if c.endswith("_error"))
            lines.append(f"  errors: {err_names}; {n_corr} correlation column(s) → error_draws(), covariance(), error_mean()")
        else:
            lines.append("  errors: none (no *_error columns; error_draws(), covariance() and error_mean() unavailable)")
        others = [c for c in self.columns if c not in errs]
        lines.append(f"  columns: {', '.join(others) if others else 'none'}")
        src = self.meta.get("source")
        if isinstance(src, Mapping):
            extra = f"; distance = {src['distance']}" if "distance" in src else ""
            lines.append(f"  source: {src.get('name')} ({src.get('rows_read')} rows read{extra})")
        if self.history:
            lines.append("  cuts (oldest first):")
            for i, rec in enumerate(self.history, 1):
                lines.append(f"    {i}. {rec.reason}: removed {rec.removed}, kept {rec.kept}")
        else:
            lines.append("  cuts: none")
        return "\n".join(lines)

    def to_table(self) -> QTable:
        """An astropy QTable: x, y, z [kpc], v_x, v_y, v_z [km/s] and the columns with their units.

        ``table.meta["bayesdyn"]`` holds the solar parameters, history and meta, so
        that :meth:`from_table` (or :meth:`read` after ``table.write``) restores them.
        ECSV, Parquet and HDF5 (``serialize_meta=True``) keep that metadata; FITS,
        CSV and VOTable keep only the columns. :meth:`save` is the lossless format.

        Raises:
            CatalogError: a column of :attr:`columns` (a dict that may have been edited since the constructor)
                that the constructor refuses: a reserved name (x … v_z), the wrong number of rows, masked entries in
                a column without NaN, or dtype object; a unit of the wrong kind raises :class:`CatalogUnitError`.
        """
        units: dict[str, str] = {}
        columns = _checked_columns(self.columns, self.n, units)  # before the table: a column "z" replaced the positions
        t = QTable()
        for i, a in enumerate("xyz"):
            t[a] = self._x[:, i] * u.kpc
        for i, a in enumerate("xyz"):
            t[f"v_{a}"] = self._v[:, i] * (u.km / u.s)
        recorded = self.meta.get("column_units") or {}
        if units:
            recorded = {**dict(recorded), **units}
        for key, col in columns.items():
            unit = _gaia.COLUMN_UNITS.get(key)
            if unit is None and key in recorded:  # a column read with a unit (from_table, extra_columns)
                try:
                    unit = u.Unit(recorded[key])
                except (ValueError, TypeError):  # a unit astropy cannot parse stays recorded in meta only
                    unit = None
            if unit is not None and unit != u.dimensionless_unscaled and col.dtype.kind in "fiu":
                t[key] = col * unit
            else:
                t[key] = col
        t.meta["bayesdyn"] = self._header(units)
        return t

    def _header(self, units: Mapping[str, str]) -> dict[str, Any]:
        """The saved solar parameters, history and meta; ``units`` (from :func:`_checked_columns`) are added to
        ``meta["column_units"]``."""
        meta = _detached(self.meta)  # a table's meta must not alias the catalog's
        if units:
            meta["column_units"] = {**dict(meta.get("column_units") or {}), **units}
        return {
            "format": _io.FILE_FORMAT,
            "version": _io.FILE_VERSION,
            "n_stars": self.n,
            "solar": self.solar.to_dict(),
            "history": [rec.to_dict() for rec in self.history],
            "meta": meta,
        }

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the catalog to ``path`` as an .npz (arrays + a JSON header), without pickle.

        Args:
            path: the file to write (the name is used as given).

        Raises:
            CatalogError: meta that is not JSON-serialisable, or a column that the constructor refuses (see
                :meth:`to_table`; :attr:`columns` is a plain dict), before anything is written.
        """
        units: dict[str, str] = {}
        columns = _checked_columns(self.columns, self.n, units)  # as load will check them: a file that loads, or none
        header = self._header(units) | {"columns": list(columns)}
        arrays = {"x": self._x, "v": self._v}
        arrays |= {f"col_{i}": col for i, col in enumerate(columns.values())}
        _io.write_npz(path, header, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Catalog":
        """Read a catalog written by :meth:`save`; never unpickles.

        Raises:
            FileNotFoundError: no such file.
            CatalogError: not a bayesdyn catalog, a newer file version, or a header
                that does not match the arrays (shapes, names, counts) or names a column twice.
        """
        header, arrays = _io.read_npz(path)
        what = f"{str(path)!r} is a damaged catalog file"
        n = header.get("n_stars")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise CatalogError(f"{what}: n_stars = {n!r} is not a positive integer")
        for key in ("x", "v"):
            arr = arrays.get(key)
            if arr is None or arr.shape != (n, 3) or arr.dtype.kind != "f":
                shape = None if arr is None else (arr.shape, str(arr.dtype))
                raise CatalogError(f"{what}: array {key!r} is {shape}, expected ({n}, 3) floats")
        names = header.get("columns")
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise CatalogError(f"{what}: header 'columns' must be a list of names")
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:  # (a hand-edited header) a dict of them kept the last column of each name, losing the others
            raise CatalogError(
                f"{what}: its header names the column(s) {repeated} more than once, so a column would be lost; give "
                "each of its 'columns' its own name, or write the catalog again with Catalog.save"
            )
        expected = {"x", "v"} | {f"col_{i}" for i in range(len(names))}
        if set(arrays) != expected:
            raise CatalogError(
                f"{what}: arrays {sorted(set(arrays) ^ expected)} do not match the header's {len(names)} columns"
            )
        columns = {}
        for i, key in enumerate(names):
            arr = arrays[f"col_{i}"]
            if arr.ndim == 0 or arr.shape[0] != n:
                raise CatalogError(f"{what}: column {key!r} has shape {arr.shape}, expected {n} rows")
            columns[key] = arr
        try:
            solar = SolarParameters.from_dict(header["solar"])
            history = _saved_history(header["history"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CatalogError(f"{what}: its solar parameters or history are malformed ({err}); write it again "
                               "with Catalog.save") from None
        if history and history[-1].kept != n:  # a warning, not an error: older files may hold such histories
            warn_caller(f"{what}: its history's last cut kept {history[-1].kept} stars but the file holds {n}; "
                        "the history does not describe these rows (they were changed outside bayesdyn)",
                        DroppedRowsWarning)
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise CatalogError(f"{what}: meta must be a JSON object")
        return cls(arrays["x"], arrays["v"], solar=solar, columns=columns, meta=meta, history=history)

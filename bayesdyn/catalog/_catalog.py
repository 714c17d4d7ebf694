"""The Catalog: stellar positions and velocities in the Galactocentric frame."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from .. import units as _u
from ._solar import SolarParameters

__all__ = ["Catalog", "CatalogError", "CutRecord"]


class CatalogError(ValueError):
    """Input that cannot become a Catalog; the message names the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class CutRecord:
    """One step that removed rows: what it was, how many rows it removed and kept."""

    reason: str
    removed: int
    kept: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _as_xyz(value: Any, physical_type: str, name: str, unit_name: str) -> np.ndarray:
    value = _u.strip(value, physical_type, name)
    try:
        arr = np.asarray(value)
    except Exception as err:  # noqa: BLE001 - any conversion failure is user input
        raise CatalogError(f"{name} could not be read as an array ({err}); pass an (N, 3) array in {unit_name}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise CatalogError(
            f"{name} is not numeric (dtype {arr.dtype}); pass an (N, 3) array of numbers in {unit_name}"
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise CatalogError(f"{name} is complex; pass real numbers in {unit_name}")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise CatalogError(
            f"{name} has shape {arr.shape}; it must be (N, 3) in {unit_name} "
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


class Catalog:
    """Stars in a right-handed Galactocentric frame.

    Args:
        x: positions, shape (N, 3) [kpc] (or a length Quantity).
        v: velocities, shape (N, 3) [km/s] (or a velocity Quantity).
        solar: the frame's solar parameters (default: astropy 'v4.0').
        columns: extra per-star columns (name → length-N array), e.g. ``source_id``,
            ``phot_g_mean_mag``, or the observables ``ra, dec, parallax, pmra,
            pmdec, radial_velocity`` with their errors and correlations.
        meta: free-form JSON-serialisable metadata (provenance, truth parameters).
        history: the cuts already applied, oldest first.

    Raises:
        CatalogError: wrong shapes, non-numeric or non-finite values, columns of
            the wrong length, or an empty catalog.
        bayesdyn.units.UnitError: Quantities of the wrong dimension.
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
        cols: dict[str, np.ndarray] = {}
        for key, col in (columns or {}).items():
            arr = np.asarray(col.value if hasattr(col, "unit") and hasattr(col, "value") else col)
            if arr.shape[:1] != (x.shape[0],):
                raise CatalogError(
                    f"column {key!r} has {arr.shape[0] if arr.ndim else 'no'} rows but the catalog has {x.shape[0]} stars"
                )
            cols[str(key)] = arr
        self.columns: dict[str, np.ndarray] = cols
        self.meta: dict[str, Any] = dict(meta or {})
        self.history: list[CutRecord] = list(history or [])

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

    def _subset(self, keep: np.ndarray, reason: str) -> "Catalog":
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.n,):
            raise CatalogError(f"selection mask has shape {keep.shape}, expected ({self.n},)")
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
        out.meta = dict(self.meta)
        out.history = self.history + [CutRecord(reason, removed, int(keep.sum()))]
        return out

    def select(self, mask: Any, reason: str = "user mask") -> "Catalog":
        """A new Catalog with the rows where ``mask`` is true; the cut is recorded in ``history``."""
        return self._subset(np.asarray(mask), reason)

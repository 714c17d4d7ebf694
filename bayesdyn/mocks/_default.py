"""The shipped default mock: reading and writing disk-mock files without pickle."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog, SolarParameters
from ._disk import DiskTruth
from ._truth import MockError

__all__ = ["load_default", "save_disk_mock", "DEFAULT_MOCK_PATH", "FORMAT", "FORMAT_VERSION"]

#: The embedded 10⁵-star disk mock (made by ``python -m bayesdyn.data.make_disk_mock``).
DEFAULT_MOCK_PATH = Path(__file__).resolve().parents[1] / "data" / "disk_mock.npz"
FORMAT = "bayesdyn.disk_mock"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "n", "seed", "truth", "solar", "generator", "generator_version")


def save_disk_mock(path: str | Path, catalog: Catalog, truth: DiskTruth, header: dict[str, Any]) -> Path:
    """Write a disk mock as ``.npz``: ``x``, ``v`` (float32, kpc and km/s) and a JSON header (uint8 bytes).

    Args:
        path: output file [.npz].
        catalog: the mock catalog (its solar parameters are stored).
        truth: its :class:`DiskTruth` (stored as ``truth.to_dict()``).
        header: extra JSON-serialisable provenance (seed, generator, versions, sampler statistics).

    Returns:
        The path written.
    """
    path = Path(path)
    head = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n": int(catalog.n),
        "dtype": "float32",
        "units": {"x": "kpc", "v": "km/s"},
        "truth": truth.to_dict(),
        "solar": catalog.solar.to_dict(),
        **header,
    }
    blob = np.frombuffer(json.dumps(head, indent=1, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    np.savez_compressed(path, x=catalog.x.astype(np.float32), v=catalog.v.astype(np.float32), header=blob)
    return path


def _fail(path: Path, what: str) -> MockError:
    return MockError(
        f"{path} is not a valid bayesdyn disk mock: {what}. Regenerate it with "
        "`python -m bayesdyn.data.make_disk_mock` (or reinstall bayesdyn for the shipped default)"
    )


def load_default(path: str | Path | None = None) -> tuple[Catalog, DiskTruth]:
    """The shipped 10⁵-star solar-neighbourhood disk mock, or another file written by ``make_disk_mock``.

    Needs no galpy (except for the truth's ``log_df``/``score``). The file is
    read with ``np.load(..., allow_pickle=False)`` and its header validated.

    Args:
        path: a disk-mock ``.npz`` (default: ``bayesdyn/data/disk_mock.npz``).

    Returns:
        (catalog, truth): positions [kpc] and velocities [km/s] in the mock's
        Galactocentric frame (solar parameters from the header), with
        ``catalog.meta`` holding the header; and the :class:`DiskTruth`.

    Raises:
        MockError: the file is missing, not an npz, or its arrays or header are
            malformed (names the problem).
    """
    path = Path(path) if path is not None else DEFAULT_MOCK_PATH
    if path.is_dir():
        raise MockError(f"{path} is a folder; give the disk mock's .npz file (written by "
                        "`python -m bayesdyn.data.make_disk_mock --out FILE`)")
    if not path.is_file():
        raise MockError(
            f"no disk mock at {path}; generate one with `python -m bayesdyn.data.make_disk_mock --out {path}`"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = {"x", "v", "header"} - files
            if missing:
                raise _fail(path, f"arrays {sorted(missing)} are missing (found {sorted(files)})")
            x, v, blob = z["x"], z["v"], z["header"]
    except MockError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        from ..catalog._io import load_error_text

        raise _fail(path, f"it cannot be read as a pickle-free npz ({load_error_text(err)})") from None
    for name, arr in (("x", x), ("v", v), ("header", blob)):
        if not isinstance(arr, np.ndarray):  # numpy returns a member without a .npy header as raw bytes
            raise _fail(path, f"member {name!r} is not a .npy array (it has no .npy header)")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise _fail(path, f"the header must be uint8 JSON bytes, got {blob.dtype} with shape {blob.shape}")
    try:
        head = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        raise _fail(path, f"the header is not JSON ({type(err).__name__}: {err})") from None
    if not isinstance(head, dict):
        raise _fail(path, "the header is not a JSON object")
    from ..catalog._io import FILE_FORMAT as CATALOG_FORMAT

    if head.get("format") == CATALOG_FORMAT:  # (it said the header lacked the mock's keys)
        raise MockError(f"{path} is a bayesdyn Catalog file (Catalog.save), not a disk mock: read it with "
                        "bd.Catalog.load (a mock file also holds its truth, which load_default returns)")
    absent = [k for k in _REQUIRED if k not in head]
    if absent:
        raise _fail(path, f"the header lacks {absent}")
    version = head["format_version"]
    newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
    if head["format"] == FORMAT and newer:
        raise MockError(
            f"{path} is a bayesdyn disk mock of format v{version}, newer than this bayesdyn reads "
            f"(v{FORMAT_VERSION}); upgrade bayesdyn"
        )
    if head["format"] != FORMAT or version != FORMAT_VERSION:
        raise _fail(
            path, f"format {head['format']!r} v{head['format_version']} is not {FORMAT!r} v{FORMAT_VERSION}"
        )
    n = head["n"]
    for name, arr in (("x", x), ("v", v)):
        if arr.shape != (n, 3) or not np.issubdtype(arr.dtype, np.floating):
            raise _fail(path, f"{name} has shape {arr.shape} and dtype {arr.dtype}; the header says ({n}, 3) floats")
        bad = int((~np.isfinite(arr).all(axis=1)).sum())
        if bad:
            raise _fail(path, f"{name} has {bad} row(s) with NaN or inf")
    try:
        truth = DiskTruth.from_dict(head["truth"])
        solar = SolarParameters.from_dict(head["solar"])
    except (KeyError, TypeError, ValueError) as err:
        raise _fail(path, f"the truth or solar parameters are malformed ({err})") from None
    r = np.linalg.norm(x.astype(np.float64) - np.asarray(truth.sphere_center), axis=1)
    outside = int((r > truth.sphere_radius * (1 + 1e-6) + 1e-6).sum())
    if outside:
        raise _fail(path, f"{outside} star(s) lie outside the {truth.sphere_radius} kpc sphere the header declares")
    if not math.isfinite(truth.log_norm):
        raise _fail(path, "the truth's log_norm is not finite")
    meta = {"mock": "solar_neighbourhood_disk", "source": str(path), **head}
    return Catalog(x.astype(np.float64), v.astype(np.float64), solar=solar, meta=meta), truth

"""Reading tables by file extension, and the Catalog's own .npz file format (no pickle)."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table

from ._errors import CatalogError

__all__ = ["TABLE_FORMATS", "table_format", "read_table", "FILE_FORMAT", "FILE_VERSION", "write_npz", "read_npz"]

#: File extension → astropy ``Table.read`` format.
TABLE_FORMATS: dict[str, str] = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
    ".vot.xml": "votable",
    ".csv": "ascii.csv",
    ".csv.gz": "ascii.csv",
    ".ecsv": "ascii.ecsv",
    ".ecsv.gz": "ascii.ecsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
}


def table_format(path: str | os.PathLike) -> str:
    """The astropy format for ``path``, chosen by its extension (case-insensitive)."""
    name = Path(path).name.lower()
    if name.endswith(".npz"):
        raise CatalogError(f"{str(path)!r} is a catalog saved by bayesdyn (.npz), not a table: read it with "
                           "Catalog.read or Catalog.load (bayesdyn catalog and a config's catalog.source take it too)")
    for ext in sorted(TABLE_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return TABLE_FORMATS[ext]
    raise CatalogError(
        f"cannot tell the table format of {str(path)!r} from its extension; known extensions: "
        f"{', '.join(TABLE_FORMATS)}. Rename the file (the only way from the command line and a config) or, in "
        "Python, pass format= (an astropy Table.read format, e.g. format='ascii.csv')"
    )


def read_table(path: str | os.PathLike, /, format: str | None = None, **kwargs: Any) -> Table:
    """Read a table file with astropy, the format chosen by extension unless given.

    Args:
        path: file path (FITS, VOTable, CSV, ECSV, Parquet or HDF5); positional only, so that
            ``path=`` reaches ``Table.read`` as an HDF5 dataset's path.
        format: an astropy ``Table.read`` format that overrides the extension.
        **kwargs: passed to ``Table.read`` (e.g. ``path="data"`` for an HDF5 dataset).

    Raises:
        FileNotFoundError: no such file.
        CatalogError: unknown extension, or a file astropy cannot read in that format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table file at {str(path)!r}")
    fmt = format or table_format(path)
    with warnings.catch_warnings():
        # Gaia files carry units FITS does not know ('electron'/s, dex); they do not
        # concern the columns a Catalog uses, whose units are checked one by one.
        warnings.simplefilter("ignore", u.UnitsWarning)
        try:
            return Table.read(path, format=fmt, **kwargs)
        except ImportError as err:  # pyarrow (Parquet) or h5py (HDF5) missing: a bare traceback had ended the CLI
            raise CatalogError(
                f"reading {str(path)!r} as {fmt} needs a package that is not installed ({err}); install bayesdyn's "
                "io extra (pip install 'bayesdyn[io]', or pip install -e '.[io]' in a clone), or convert the file "
                "to FITS or CSV"
            ) from err
        except (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as err:
            raise CatalogError(
                f"could not read {str(path)!r} as {fmt} ({type(err).__name__}: {err}); check the file, "
                "or, if the extension is misleading, rename the file (command line, config) or pass format= "
                "(Python)"
            ) from err


def load_error_text(err: BaseException) -> str:
    """An np.load error for a message: numpy's advice to load pickled data "unsafely" is not passed on (bayesdyn
    never unpickles: a pickle can run code)."""
    text = f"{type(err).__name__}: {err}"
    if "pickle" in str(err):
        text = "it holds pickled (object) data or is not a .npy/.npz file at all; bayesdyn never loads pickles"
    return text


# ----------------------------------------------------------------- .npz catalog files
FILE_FORMAT = "bayesdyn.Catalog"
FILE_VERSION = 1


def _json_default(obj: Any) -> Any:
    """numpy and JAX scalars and arrays become plain JSON numbers (of their own type: an int stays an int) and
    lists; the ``default=`` of every JSON record bayesdyn writes (catalogs, neural fits, posteriors, calibrations)."""
    if isinstance(obj, np.generic) or hasattr(obj, "__array__"):
        a = np.asarray(obj)
        if a.dtype.kind in "biufU":
            return a.item() if a.ndim == 0 else a.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_npz(path: str | os.PathLike, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write arrays and a JSON header (as a uint8 array named ``header``) with ``np.savez``.

    numpy scalars and arrays inside the header are written as JSON numbers and lists.
    """
    try:
        text = json.dumps(header, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as err:
        raise CatalogError(
            f"the catalog's meta/history cannot be written as JSON ({err}); keep meta to plain finite "
            "numbers (no NaN or inf: use None), strings, lists and dicts"
        ) from None
    for key, arr in arrays.items():
        if arr.dtype.hasobject:  # also a structured dtype with an object field (kind 'V'), which np.savez pickled
            raise CatalogError(f"array {key!r} has (a field of) dtype object, which is never saved (it would need "
                               "pickle); store numbers or strings")
    blob = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, header=blob, **arrays)


def read_npz(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_npz`; checks the header's format and version.

    Never unpickles (``allow_pickle=False``). Any file that is not such a catalog
    raises :class:`CatalogError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no catalog file at {str(path)!r}")
    what = f"{str(path)!r} is not a bayesdyn catalog file"
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise CatalogError(f"{what} (it holds a single array, not an .npz archive)")
        with npz:
            arrays = {key: npz[key] for key in npz.files}
    except CatalogError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as err:
        raise CatalogError(f"{what} ({load_error_text(err)}); write it with Catalog.save") from None
    except MemoryError:  # a member whose .npy header claims a huge shape (a crafted or damaged file of a few bytes)
        raise CatalogError(f"{what}: a member's header claims more memory than there is (a damaged or crafted "
                           "file); write it with Catalog.save") from None
    for key, arr in arrays.items():
        if not isinstance(arr, np.ndarray):  # numpy returns a member without a .npy header as raw bytes
            raise CatalogError(
                f"{what}: member {key!r} is not a .npy array (it has no .npy header); write it with Catalog.save"
            )
    blob = arrays.pop("header", None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise CatalogError(f"{what}: it has no uint8 'header' array; write it with Catalog.save")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CatalogError(f"{what}: its header is not valid JSON ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FILE_FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CatalogError(f"{what}: header format is {found!r}, expected {FILE_FORMAT!r}")
    check_version(header.get("version"), repr(str(path)))
    return header, arrays


def check_version(version: Any, what: str, other_fix: str = "") -> None:
    """Raise CatalogError unless ``version`` is a positive integer this bayesdyn reads (a newer one: upgrade)."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CatalogError(f"{what} has version {version!r}, not a positive integer{other_fix}")
    if version > FILE_VERSION:
        raise CatalogError(
            f"{what} was written in catalog file version {version}, newer than this bayesdyn reads "
            f"({FILE_VERSION}); upgrade bayesdyn{other_fix}"
        )

"""Files without pickle: a JSON header plus equinox-serialised leaves, both checksummed.

A saved object is two files in one folder: ``<name>.json`` (the header: format,
architecture, settings, the sha256 of the leaves file and the sha256 of the header's
own canonical content) and ``<name>.eqx`` (the arrays, written by
``equinox.tree_serialise_leaves``; read back with ``numpy.load(allow_pickle=False)``
into a skeleton rebuilt from the header). Loading checks both checksums before
reading any array and the shape and dtype of every leaf, so a changed header or a
changed arrays file fails with a clear error and nothing in a file is ever run.
The checksums catch damage and accidental edits, not deliberate ones: whoever edits
the header can recompute its sha256 (an edited ``n_stars`` then rescales the number
density; an edited activation changes log f). Trust a file as you trust its source.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PSDFileError", "write_bundle", "read_header", "read_leaves"]


class PSDFileError(ValueError):
    """A saved phase-space density or checkpoint is missing, modified or incompatible."""


class CheckpointMismatchError(PSDFileError):
    """A training checkpoint was written by another training (flow, settings, ensemble, seed or data): it cannot be
    resumed."""


def _canonical(header: dict[str, Any]) -> bytes:
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bundle(folder: str | os.PathLike, name: str, header: dict[str, Any], tree: Any,
                 versioned: bool = False) -> pathlib.Path:
    """Write ``tree``'s array leaves and a checksummed JSON header into ``folder``.

    Args:
        folder: destination folder (created if missing).
        name: file stem, e.g. ``"psd"`` gives ``psd.json`` and ``psd.eqx``.
        header: JSON-serialisable metadata; the checksums are added to a copy.
        tree: the pytree whose array leaves are saved.
        versioned: name the arrays file by its content (``<name>-<sha256[:16]>.eqx``) and remove the
            previous one only after the new header is in place, so that a write killed at any moment
            leaves a readable pair (the old one or the new one). For files rewritten in place, e.g. a
            training checkpoint: with one arrays name, a kill between the arrays and the header left
            the old header with the new arrays, a checksum mismatch, and the training lost.

    Returns:
        The path of the header file.
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    leaves = buf.getvalue()
    sha = hashlib.sha256(leaves).hexdigest()
    header = dict(header)
    header["leaves_file"] = f"{name}-{sha[:16]}.eqx" if versioned else f"{name}.eqx"
    header["leaves_sha256"] = sha
    header["header_sha256"] = hashlib.sha256(_canonical(header)).hexdigest()
    _atomic_write(folder / header["leaves_file"], leaves)
    text = json.dumps(header, indent=2, sort_keys=True, allow_nan=True) + "\n"
    _atomic_write(folder / f"{name}.json", text.encode())
    if versioned:  # the old arrays only now: until the header above was replaced, it named them
        for old in [folder / f"{name}.eqx", *folder.glob(f"{name}-*.eqx")]:
            if old.name != header["leaves_file"]:
                old.unlink(missing_ok=True)
    return folder / f"{name}.json"


def read_header(folder: str | os.PathLike, name: str, expected_format: str) -> dict[str, Any]:
    """Read and verify a header written by :func:`write_bundle`.

    Raises:
        PSDFileError: missing files, invalid JSON, another format, or a header whose
            content does not match its recorded checksum.
    """
    folder = pathlib.Path(folder)
    path = folder / f"{name}.json"
    if not path.is_file():
        raise PSDFileError(f"no {name}.json in {str(folder)!r}; pass the folder given to save()")
    try:
        header = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        raise PSDFileError(f"{path} is not valid JSON ({err}); the file is damaged — save it again") from None
    if not isinstance(header, dict) or header.get("format") != expected_format:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise PSDFileError(f"{path} has format {found!r}, expected {expected_format!r}")
    recorded = header.get("header_sha256")
    actual = hashlib.sha256(_canonical(header)).hexdigest()
    if recorded != actual:
        raise PSDFileError(
            f"{path} was modified after it was written: its content no longer matches the "
            f"recorded header_sha256 ({str(recorded)[:12]}… vs {actual[:12]}…); "
            "restore the original file or save the object again"
        )
    return header


def _strict_loader(f, x):
    if isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct)):
        arr = np.load(f, allow_pickle=False)
        if arr.shape != tuple(x.shape) or arr.dtype != np.dtype(x.dtype):
            raise PSDFileError(
                f"an array in the leaves file has shape {arr.shape} and dtype {arr.dtype}, but the "
                f"architecture in the header expects {tuple(x.shape)} and {np.dtype(x.dtype)}: the header and "
                "the arrays do not belong together; restore the original pair of files, or save the object "
                "again (or refit it)"
            )
        return jnp.asarray(arr) if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) else arr
    if isinstance(x, (bool, int, float, complex, np.generic)):
        arr = np.load(f, allow_pickle=False)
        return type(x)(arr.item())
    return x


def read_leaves(folder: str | os.PathLike, header: dict[str, Any], like: Any) -> Any:
    """Read the leaves file of a verified header into the skeleton ``like``.

    Raises:
        PSDFileError: a missing or modified leaves file, or leaves that do not fit
            the skeleton.
    """
    folder = pathlib.Path(folder)
    leaves_name = header.get("leaves_file", "")
    if pathlib.Path(leaves_name).name != leaves_name or not leaves_name:
        raise PSDFileError(f"the header names an invalid leaves file {leaves_name!r}")
    path = folder / leaves_name
    if not path.is_file():
        raise PSDFileError(f"the arrays file {path} is missing; copy it next to its header")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != header.get("leaves_sha256"):
        raise PSDFileError(
            f"the arrays file {path} was modified after it was written: its sha256 "
            f"({actual[:12]}…) does not match the header's leaves_sha256 "
            f"({str(header.get('leaves_sha256'))[:12]}…); restore the original files or save again"
        )
    buf = io.BytesIO(data)
    try:
        tree = eqx.tree_deserialise_leaves(buf, like, filter_spec=_strict_loader)
    except Exception as err:  # noqa: BLE001 - any decoding failure is a damaged file
        cause: BaseException | None = err
        while cause is not None:  # equinox wraps errors of the loader with the leaf's path
            if isinstance(cause, PSDFileError):
                raise PSDFileError(str(cause)) from None
            cause = cause.__cause__ or cause.__context__
        raise PSDFileError(f"the arrays file {path} could not be read ({type(err).__name__}: {err})") from None
    if buf.tell() != len(data):
        raise PSDFileError(
            f"the arrays file {path} holds more data than the architecture in the header "
            f"uses ({len(data) - buf.tell()} bytes left); the header and arrays do not belong together"
        )
    return tree

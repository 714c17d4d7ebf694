"""The main job, stage by stage: catalog → PSD → accelerations → posterior → report.

Each stage writes its artefact into the run folder and, when run again with the
same settings, reads it back instead of recomputing; flow training checkpoints
every epoch, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._config import SOURCE_RECORD, ConfigError, build_model, dark_components, recorded_source_path, resolve_source

__all__ = ["Run"]


class _VelocitiesInsideCatalog:
    """A density's velocities at nodes, kept inside the box the catalog's velocities span.

    The CBE holds at every velocity, so the least squares at a node may use any
    subset of velocities; those far outside the data (a flow's untrained tails, e.g.
    |v| ~ 10⁷ km/s from an affine flow fitted to a few thousand stars) only add
    float32 overflow and noise. Each axis's box is the catalog's range widened by
    10 % on both sides; draws outside it are replaced by further draws.

    Args:
        psd: a :class:`bayesdyn.psd.PhaseSpaceDensity`.
        v: the catalog's velocities (N, 3) [km/s].
    """

    def __init__(self, psd, v: np.ndarray):
        v = np.asarray(v, np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        pad = 0.1 * (hi - lo)
        self.psd, self.lo, self.hi = psd, lo - pad, hi + pad
        self.drawn = self.rejected = 0

    @property
    def info(self) -> dict:
        """The density's training record (its resample groups reach the accelerations through it)."""
        return self.psd.info

    def sample_velocities(self, x, n: int, seed: int) -> np.ndarray:
        """(P, n, 3) velocities [km/s] from p(v|x) inside the box."""
        x = np.asarray(x)
        pool = np.empty((x.shape[0], 0, 3))
        for attempt in range(6):
            draw = np.asarray(self.psd.sample_velocities(x, 2 * n, seed + 7919 * attempt), np.float64)
            self.drawn += draw.shape[0] * draw.shape[1]
            ok = np.all((draw >= self.lo) & (draw <= self.hi) & np.isfinite(draw), axis=-1)
            self.rejected += int((~ok).sum())
            # keep the accepted draws of each node, in order, padded to a common length
            order = np.argsort(~ok, axis=1, kind="stable")
            take = min(int(ok.sum(axis=1).min()), 2 * n)
            pool = np.concatenate([pool, np.take_along_axis(draw, order[..., None], axis=1)[:, :take]], axis=1)
            if pool.shape[1] >= n:
                return pool[:, :n]
        raise ConfigError(  # names the config keys: the command line prints it without a traceback
            f"fewer than {n} of the velocities drawn from p(v|x) at some node lie within the catalog's velocity "
            f"range {self.lo.round(0).tolist()}–{self.hi.round(0).tolist()} km/s; the flows are poor there: "
            "train longer (psd.max_epochs) or place nodes inside the catalog (nodes.radius_kpc)"
        )

    def score_members(self, x, v):
        """The density's per-member scores."""
        return self.psd.score_members(x, v)


#: part of every accelerations/posterior cache key: bump when what those stages compute changes
#: (2: member covariances saved, posteriors combined over members; 3: HC3 node covariances, and a single posterior
#: whose chains disagree rerun from the mode, which the weak-form posterior key takes from here too)
_CACHE_VERSION = 3
#: part of the node posteriors' cache key: bump when combine_members' draws change (2: the between-member part's
#: t tails with its own degrees of freedom, 2026-12-07)
_COMBINE_VERSION = "combine-2"
#: part of the weak-form posterior's cache key: bump when bd.weak_form_data or the weak-form fit changes
_WEAK_VERSION = 3  # 2: position errors corrected under errors.correct (window (1 − ρ²)³); 3: with the Gaia errors' mean


#: the accelerations stage's warnings and notes, beside accelerations.npz; the report quotes them
ACCELERATION_NOTES = "accelerations_notes.txt"

#: every file the report stage writes; it removes them first, as some are written only under some settings (a corner
#: plot, dark-disk limits, a truth or a reference check, ρ_DM(⊙) with dark components)
REPORT_FILES = (
    "constraints.md", "constraints.tex", "constraints.csv", "local_dm_density.csv", "prior_vs_posterior.csv",
    "prior_vs_posterior.md", "truth_check.md", "reference_check.md", "local_dm.txt", "corner.png",
    "dark_disk_limits.csv", "dark_disk_exclusion.png", "run_metadata.json", "timings.txt",
    "acceleration_vertical.png", "acceleration_radial.png", "density_vertical.png",
)


def _physical_memory() -> int | None:
    """This machine's physical memory [bytes], or None where the system does not say (Windows)."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None
    return total if total > 0 else None  # (sysconf answers -1 where a value is indeterminate)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _outside_text(max_pull: float, farthest: tuple | None) -> str:
    """The check tables' summary for a verdict: the largest |median − value|/σ₆₈ (σ₆₈: half the 68 % interval's
    width), and where the farthest value sits among its draws (a skewed posterior can exclude a value from its 95 %
    interval at a pull of ~1σ)."""
    if farthest is None:
        return f"|median − value|/σ₆₈ up to {max_pull:.1f}"
    name, tail, pull = farthest
    side = "above" if pull > 0 else "below"
    share = f"{100 * (1 - tail):.1f}"
    # (a share that rounds to 100.0 is said as the part below: "100.0 % above" had stood beside a table's "0.1 % below")
    where = (f"all {side} it" if tail == 0 else f"all but {100 * tail:.2g} % of its draws {side} it"
             if share == "100.0" else f"{share} % of its draws {side} it")
    return f"|median − value|/σ₆₈ up to {max_pull:.1f}; the farthest, `{name}`, has {where}"


#: The farthest value's tail (the smaller fraction of draws beyond it) below which one exclusion is strong
#: evidence: 3σ one-sided.
_STRONG_TAIL = 0.00135
#: The share of the posterior's own draws outside at least as many of its 95 % intervals as the checked values,
#: below which the exclusions together are strong evidence: 2.5 %, about as rare as two exclusions of five independent
#: values (1 − 0.95⁵ − 5·0.05·0.95⁴ = 2.3 %). The rows are correlated (K_z ≈ 2πGΣ at 1.1 kpc by Poisson's equation; ρ_total(⊙)
#: with both; ρ_DM(⊙) with or against them), so counting exclusions as independent overstates them; a draw of the
#: posterior carries the same correlation.
_JOINT_SHARE = 0.025


def _exclusions(draws: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Which of ``values`` (k,) the 95 % intervals of ``draws`` (n, k) exclude; the farthest value's tail (the smallest,
    over the rows, fraction of a row's draws on the far side of its value; 1 without rows); and the share of the draws
    themselves outside at least as many of the intervals as the values (1 when none is excluded). If the posterior is
    right, the values are like one more draw, so that share is the chance of so many exclusions, correlation included."""
    draws, values = np.asarray(draws, dtype=float), np.asarray(values, dtype=float).reshape(-1)
    draws = draws[:, None] if draws.ndim == 1 else draws
    if values.size == 0 or len(draws) == 0:
        return np.zeros(values.size, bool), 1.0, 1.0
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    out = ~((lo <= values) & (values <= hi))
    tail = float(np.min([_tail(draws[:, j], v) for j, v in enumerate(values)]))
    n_out = int(out.sum())
    share = 1.0 if n_out == 0 else float(np.mean(((draws < lo) | (draws > hi)).sum(axis=1) >= n_out))
    return out, tail, share


def _tail(draws: np.ndarray, value: float) -> float:
    """The smaller share of ``draws`` on one side of ``value``, draws equal to it counted half on each side (a row
    whose draws all equal its value had a tail of 0, beyond 3σ, though inside its interval)."""
    below = float(np.mean(draws < value) + 0.5 * np.mean(draws == value))
    return min(below, 1.0 - below)


def _strong(tail: float, share: float) -> bool:
    """Whether exclusions are strong evidence: the posterior's own draws are outside as many intervals in fewer than
    :data:`_JOINT_SHARE` of cases, or one value has fewer than :data:`_STRONG_TAIL` of its draws beyond it."""
    return share < _JOINT_SHARE or tail < _STRONG_TAIL


def _share_text(n_out: int, n_rows: int, share: float) -> str:
    """The measured chance of the exclusions: how many of the posterior's own draws are outside as many intervals."""
    many = "one" if n_out == 1 else f"{n_out}"
    if share == 0:
        return (f"none of the posterior's own draws lies outside at least {many} of these {n_rows} intervals (the "
                "chance of as many exclusions if the intervals carry all the error, the rows' correlation included)")
    # three figures: two had printed a share of 2.49 % (strong) and one of 2.5 % (weak) alike, as "2.5 %"
    return (f"{100 * share:.3g} % of the posterior's own draws lie outside at least {many} of these {n_rows} "
            "intervals (the chance of as many exclusions if the intervals carry all the error, the rows' "
            "correlation included)")


def _strong_reason(n_out: int, n_rows: int, tail: float, share: float) -> str:
    """Why exclusions are strong evidence: their measured chance, or the farthest value beyond 3σ of its draws."""
    if share < _JOINT_SHARE:
        return _share_text(n_out, n_rows, share)
    return f"the farthest value has fewer than {100 * _STRONG_TAIL:.3g} % of its draws beyond it (3σ one-sided)"


def _reference_verdict(n_out: int, n_rows: int, outside: str, tail: float, share: float) -> str:
    """The summary's sentence for 95 % intervals that exclude MWPotential2014's value (a reference, not the truth).
    Strong (:func:`_strong`: fewer than 2.5 % of the posterior's own draws outside as many of its intervals, or one
    value with fewer than 0.135 % of the draws beyond it, 3σ one-sided) says that the intervals are far too narrow;
    otherwise the exclusions are said to be weak evidence alone, with their measured chance. (A lone exclusion at a
    pull of ~1σ had read "far too narrow"; then exclusions had been counted as independent but for K_z and Σ.)"""
    what = f"the 95 % intervals exclude MWPotential2014's value for {n_out} of {n_rows} local quantities ({outside})"
    if _strong(tail, share):
        return (f"NOT A MEASUREMENT: {what}; {_strong_reason(n_out, n_rows, tail, share)}: the intervals are far too "
                "narrow for these data.")
    return (f"REFERENCE CHECK: {what}. Weak evidence alone: {_share_text(n_out, n_rows, share)}; and MWPotential2014 "
            "is a reference, not the truth (reference_check.md).")


def _truth_verdict(n_out: int, n_rows: int, outside: str, tail: float, share: float) -> str:
    """The summary's sentence for 95 % intervals that exclude a mock's truth, graded as :func:`_reference_verdict`."""
    what = (f"the 95 % intervals exclude the mock's truth for {n_out} of {n_rows} local quantities ({outside}; "
            "truth_check.md)")
    if _strong(tail, share):
        return f"TRUTH CHECK FAILED: {what}; {_strong_reason(n_out, n_rows, tail, share)}."
    return (f"TRUTH CHECK: {what}. Weak evidence alone: {_share_text(n_out, n_rows, share)}; coverage is measured "
            "over many realisations (docs/calibration).")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays' names, dtypes, shapes and bytes (an ``.npz`` file's own bytes hold write times)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _npz_digest(path: Path) -> str:
    """:func:`_arrays_digest` of an ``.npz`` file's arrays (never unpickles)."""
    with np.load(path, allow_pickle=False) as z:
        return _arrays_digest({k: z[k] for k in z.files})


def _flows_digest(folder: Path) -> str:
    """The saved flows' content: the sha256 of their arrays, which ``psd.json`` records (its own bytes hold the
    training's wall time)."""
    return str(json.loads((folder / "psd.json").read_text(encoding="utf-8"))["leaves_sha256"])


class Run:
    """One run of the pipeline in a folder; stages cache their artefacts there.

    Args:
        cfg: a validated configuration (:func:`bayesdyn.pipeline.load_config`).
        folder: the run folder (default ``cfg["output"]``).
        progress: show progress bars.
        log: a callable taking one line of text (default: print).
    """

    def __init__(self, cfg: dict[str, Any], folder: str | Path | None = None, progress: bool = True, log=print):
        self.cfg = cfg
        self.folder = Path(folder or cfg["output"]).expanduser()  # ("~/runs/x" had made a folder named "~")
        self._source_sha: str | None = None  # the catalog file's sha256 when _source_unchanged computed it
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"the run folder {str(self.folder)!r} ('output' or --output) is a file, or lies under "
                              "one: choose another folder") from None
        except PermissionError as err:
            raise ConfigError(f"the run folder {str(self.folder)!r} cannot be made ({err.strerror}): choose another "
                              "'output' or --output") from None
        self.progress = progress
        self.log = log
        self.timings: list[tuple[str, float]] = []
        self.truth = None
        self.weak_cuts: list[str] = []  # cuts before the weak form's ball (set by weak_form)
        self.weak_velocity_errors = False  # whether weak_form removed the velocity errors' bias
        self.weak_position_errors = False  # ... and the position errors' (to second order)
        self.weak_error_mean = False  # ... with the Gaia errors' mean (Catalog.error_mean)
        self.weak_velocity_catalog = False  # velocity errors from the catalog's Gaia columns
        self.weak_efficiency: dict | None = None  # the selection ε weak_form weighted by (column, stars, range)
        self.psd_info: dict | None = None  # the flows' info (set by the psd stage), read by the training CAVEAT

    # ---------------------------------------------------------------- helpers
    def _cached(self, name: str, key: str) -> bool:
        """Whether the stage's stamp is for ``key`` (the part before a ``:digest`` of its artefact)."""
        return self._read_stamp(name).partition(":")[0] == key

    def _stamp(self, name: str, key: str, digest: str | None = None) -> None:
        """Write the stage's stamp: its key, then ``:`` and the start of ``digest``, a hash of the artefact's
        content. Later stages key on the whole stamp, so that an artefact computed again with another result (a flow
        file of another version retrained, a run folder taken to another machine) is not followed by the old one's
        accelerations or posterior; the same result computed again keeps them."""
        (self.folder / f".{name}.stamp").write_text(key + (f":{digest[:16]}" if digest else "") + "\n")

    def _restamp(self, name: str, key: str, digest: str) -> None:
        """A reused artefact whose content is not the one its stamp records (replaced under the stamp): the stamp
        takes the content's digest, so that the later stages, which key on it, follow the artefact as it is. A stamp
        of an earlier version, without a digest, is left as it is (its later stages stay valid)."""
        tail = self._read_stamp(name).partition(":")[2]
        if tail and tail != digest[:16]:
            self.log(f"[{name}] the cached artefact is not the one its stamp records: the later stages follow it")
            self._stamp(name, key, digest)

    def _reuse(self, tag: str, path: Path, load, errors: tuple[type[BaseException], ...]):
        """``load(path)``, or None (logged) where the cached file cannot be read: a damaged file, or one of another
        bayesdyn version, is computed again rather than stopping every later run with a bare traceback."""
        try:
            return load(path)
        except (*errors, TypeError) as err:  # TypeError: arrays of another dtype (a string x) reaching JAX
            self.log(f"{tag} {path} cannot be read ({type(err).__name__}: {err}); computing it again")
            return None

    def _unstamp(self, name: str) -> None:
        """Remove a stage's stamp before its artefact is overwritten: a run killed between the write and the new
        stamp must not find the old stamp beside the new (or a truncated) artefact."""
        (self.folder / f".{name}.stamp").unlink(missing_ok=True)

    def _truth_from_meta(self, cat) -> None:
        """A mock written by ``bayesdyn mock`` records its truth in ``meta["truth"]``: the report checks against it
        (it had called such a run "real data" and compared it with MWPotential2014 only)."""
        from ..catalog import CatalogError
        from ..mocks import DiskTruth, PlummerTruth

        record = cat.meta.get("truth") if isinstance(cat.meta, dict) else None
        if not isinstance(record, dict):
            return
        kinds = {"plummer": PlummerTruth, "solar_neighbourhood_disk": DiskTruth}
        kind = record.get("kind")
        if kind in kinds:
            try:
                self.truth = kinds[kind].from_dict(record)
            except (KeyError, TypeError, ValueError) as err:  # a run of a mock must not become a "real data" run
                raise CatalogError(
                    f"the catalog's meta['truth'] record of its {kind} mock is damaged ({type(err).__name__}: "
                    f"{err}); write the catalog again with `bayesdyn mock`, or delete meta['truth'] to run it "
                    "without a truth check"
                ) from err
            self.log(f"[catalog] the catalog records its mock's truth ({kind}): the report checks against it")
        else:
            self.log(f"[catalog] NOTE: the catalog records a {kind!r} mock's truth, which the pipeline cannot "
                     "rebuild (plummer and solar_neighbourhood_disk only); the report has no truth check")

    def _timed(self, name: str, t0: float) -> None:
        self.timings.append((name, time.perf_counter() - t0))

    # ---------------------------------------------------------------- stages
    def catalog(self):
        """Stage 1: read or make the catalog; apply the configured cuts; save ``catalog.npz``."""
        from ..catalog import Catalog, CatalogError

        c = self.cfg["catalog"]
        # a column the stages need beyond Gaia's own (a Gaia file keeps it only when named): in the key when set
        extra = [self.cfg["weak_form"]["efficiency_column"]] if self.cfg["weak_form"]["efficiency_column"] else []
        extra_part = [{"extra_columns": extra}] if extra else []
        # the file's content, not its path, names a catalog: the stamp ends in the file's sha256, and a moved or
        # copied file (another mount, a run folder taken to another machine) had rebuilt the catalog and so retrained
        # the flows. Stamps of the earlier form (the path in the key) are still accepted.
        key = _fingerprint({**c, "source": "default" if c["source"] == "default" else "file"}, self.cfg["seed"],
                           *extra_part)
        old_key = _fingerprint(c, self.cfg["seed"], *extra_part)
        path = self.folder / "catalog.npz"
        t0 = time.perf_counter()
        self._source_sha = None  # (this call's: a file may have changed since an earlier call)
        if c["source"] == "default":
            from ..mocks import load_default
            from ..mocks._default import DEFAULT_MOCK_PATH

            cat, self.truth = load_default()
            self._source_sha = _sha256(DEFAULT_MOCK_PATH)  # a new release's (or a regenerated) mock is another source
        # the stamp is the key, then the start of the source file's sha256 (for the later stages' keys: an edited
        # file must not leave the flows, accelerations or posterior of the old stars in use); an earlier version's
        # stamp has no hash
        head, _, tail = self._read_stamp("catalog").partition(":")
        cached = head in (key, old_key)
        reused = None
        if cached and path.is_file() and self._source_unchanged(c["source"], tail) and self._catalog_file_unchanged(path):
            reused = self._reuse("[catalog]", path, Catalog.load, (CatalogError, OSError))
        if reused is not None:
            cat = reused
            self.log(f"[catalog] reusing {path} ({cat.n} stars)")
        else:
            if c["source"] != "default":
                try:
                    src = Path(resolve_source(c["source"], None))
                except ConfigError as err:
                    if not cached and path.is_file():  # (the message had not said why the cache could not serve)
                        raise ConfigError(f"{err}. The catalog cached in {self.folder} was made with other [catalog] "
                                          "settings, so it cannot stand in for the missing file") from None
                    raise
                try:
                    # the suffix in any case, as Catalog.read (a .NPZ went to from_gaia, which named table extensions)
                    cat = (Catalog.load(src) if src.suffix.lower() == ".npz"
                           else Catalog.from_gaia(src, strict=c["strict"], extra_columns=extra))
                except CatalogError as err:
                    if extra and "extra_columns" in str(err):  # the column weak_form.efficiency_column names
                        raise ConfigError(f"weak_form.efficiency_column = {extra[0]!r}: {err}") from None
                    raise
            if c["parallax_over_error"] > 0:
                if "parallax" not in cat.columns or "parallax_error" not in cat.columns:
                    raise ConfigError(
                        f"catalog.parallax_over_error = {c['parallax_over_error']} needs the Gaia columns parallax and "
                        f"parallax_error, which catalog.source = {c['source']!r} does not have (mocks and "
                        "Galactocentric tables have none): set it to 0, or read a Gaia file"
                    )
                cat = cat.parallax_over_error(c["parallax_over_error"])
            if c["within_kpc"] > 0:
                cat = cat.within(c["within_kpc"])
            if c["max_stars"] and cat.n > c["max_stars"]:
                rng = np.random.default_rng(self.cfg["seed"])
                keep = np.zeros(cat.n, bool)
                keep[rng.choice(cat.n, c["max_stars"], replace=False)] = True
                cat = cat.select(keep, f"random subset of {c['max_stars']} stars (catalog.max_stars, seed {self.cfg['seed']})")
            # the later stages' data key and the content of the catalog they were computed from, before it is
            # overwritten: a new catalog identical to it (a setting that changes nothing, e.g. catalog.strict on a
            # file without bad rows, or max_stars above the count) keeps them (it had retrained the flows)
            old_stamp = self._read_stamp("catalog")
            old_data_key = self.catalog_data_key() if old_stamp else None
            # the content the later stages were computed from: the cached file's, or the one recorded with the data
            # key (the file deleted or replaced)
            before = self._catalog_content(path) or self._data_key_entry().get("content")
            self._data_key_record().unlink(missing_ok=True)
            self._unstamp("catalog")
            cat.save(path)
            self._catalog_digest_path().write_text(_sha256(path) + "\n")
            sha = self._source_sha or _sha256(Path(resolve_source(c["source"], None)))
            stamp = f"{key}:{sha[:16]}"
            try:
                after = _npz_digest(path)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                after = None
            if before is not None and after == before:  # the same stars: the later stages keep theirs
                data_key = old_data_key
                self.log("[catalog] the catalog built again is the same as the cached one (identical stars, columns, "
                         "solar parameters and history): the later stages keep their cache")
            elif before is None and old_stamp == stamp and old_data_key:
                # a folder of an earlier version (nothing recorded of what its catalog held), catalog.npz gone or
                # replaced: the stars of the same settings and file are trusted to be the same, as before
                data_key = old_data_key
            else:  # other stars (or unknown): a key of their content's own, which no cached stage can hold for others
                data_key = f"{stamp}:{after[:16]}" if after else stamp
            if after:
                from ..psd._io import _atomic_write

                # the record before the stamp: a run stopped between them builds the catalog again, where the other
                # order would leave a stamp without a record, keyed as a folder of an earlier version
                _atomic_write(self._data_key_record(), (json.dumps({"stamp": stamp, "data_key": data_key,
                                                                    "content": after}) + "\n").encode())
            # the stamp before the source record: a run stopped between the two rebuilds again (record ≠ file), where
            # the other order would keep the old stamp, and the old stars' later stages, for the new catalog
            self._stamp("catalog", stamp)
            self._record_source(c["source"], sha)
        if c["source"] != "default":
            self._truth_from_meta(cat)
        self._timed("catalog", t0)
        self.log(cat.summary())
        if cat.n < 20_000:
            self.log(
                f"[catalog] NOTE: {cat.n} stars is few for a flow-based measurement; expect wide, "
                "prior-dominated posteriors (10⁵ stars is the tested regime)"
            )
        return cat

    def _catalog_digest_path(self) -> Path:
        return self.folder / ".catalog.npz.sha256"

    def _data_key_record(self) -> Path:
        return self.folder / ".catalog.data_key.json"

    def _catalog_content(self, path: Path) -> str | None:
        """The sha256 of the catalog's arrays (header with history, meta and solar parameters included; an ``.npz``
        file's own bytes hold write times), when ``path`` is the catalog this stage wrote under a stamp; else None."""
        try:
            if not self._read_stamp("catalog") or self._catalog_digest_path().read_text().strip() != _sha256(path):
                return None
            return _npz_digest(path)
        except (OSError, UnicodeDecodeError, ValueError, EOFError, zipfile.BadZipFile):
            return None

    def _data_key_entry(self) -> dict[str, Any]:
        """``.catalog.data_key.json`` when it belongs to the current stamp (else {}): the data key and the content
        digest of the catalog written under it."""
        stamp = self._read_stamp("catalog")
        try:
            record = json.loads(self._data_key_record().read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        if isinstance(record, dict) and stamp and record.get("stamp") == stamp and isinstance(record.get("data_key"),
                                                                                             str):
            return record
        return {}

    def catalog_data_key(self) -> str:
        """What the later stages key on for their data: recorded in ``.catalog.data_key.json`` beside the stamp it
        belongs to when the catalog stage built the catalog — the data key of the catalog it replaced when the new
        one came out identical (other [catalog] settings that change nothing), else the stamp with the start of the
        catalog's content digest. In a run folder of an earlier version it is the stamp itself, and a catalog built
        again there under the same stamp (catalog.npz deleted) is trusted to hold the same stars, as before."""
        return str(self._data_key_entry().get("data_key", self._read_stamp("catalog")))

    def _catalog_file_unchanged(self, path: Path) -> bool:
        """Whether the run folder's catalog.npz is the one this stage wrote (its sha256, recorded beside it): a
        replaced catalog.npz had been reused under the old stamp, and the later stages with it. A run folder of an
        earlier version has no record: trusted, and recorded now."""
        record = self._catalog_digest_path()
        actual = _sha256(path)
        try:
            recorded = record.read_text().strip()
        except (OSError, UnicodeDecodeError):
            recorded = None
        if recorded is None:
            record.write_text(actual + "\n")
            return True
        if recorded != actual:
            self.log(f"[catalog] {path} is not the catalog this stage wrote (its sha256 changed): reading the source "
                     "again")
            return False
        return True

    def _source_record(self) -> Path:
        return self.folder / SOURCE_RECORD

    def _record_source(self, source: str, sha: str | None = None) -> str | None:
        """Record the catalog file's size, modification time and sha256 beside the catalog stage's stamp; returns
        the sha256 (None for the default mock)."""
        rec = self._source_record()
        if source == "default":
            rec.unlink(missing_ok=True)
            return None
        src = Path(resolve_source(source, None))
        st = src.stat()
        sha = sha or _sha256(src)
        from ..psd._io import _atomic_write

        _atomic_write(rec, (json.dumps({"path": str(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                        "sha256": sha}) + "\n").encode())
        return sha

    def _source_unchanged(self, source: str, stamped: str = "") -> bool:
        """Whether the catalog source is the one the cached catalog was read from: its sha256 (computed now, every
        run) against ``stamped``, the start of the one in the stamp. The default mock has its file's. A stamp of an
        earlier version has none: then the recorded sha256 of the file, or, without a record, trust as before (the
        file is recorded now). Recorded size and modification time are not trusted: a different file of the same
        size copied with its times kept (``cp -p``, ``rsync -a``) had passed."""
        if source != "default":
            try:
                src = Path(resolve_source(source, None))
            except ConfigError:  # the file is gone: the cached catalog is all there is, if it was read from it
                recorded = recorded_source_path(self.folder)
                if recorded != Path(source).expanduser().resolve():
                    # (a mistyped or missing file had run on another file's catalog cached in a shared output folder)
                    read = f"was read from {recorded}" if recorded is not None else "does not record its file"
                    raise ConfigError(
                        f"'catalog.source' = {source!r}: no such file, and the catalog cached in {self.folder} {read}; "
                        "restore the file, fix the path, or use another output folder ('output' or --output)"
                    ) from None
                self.log(f"[catalog] {source} not found: using the catalog cached in {self.folder}, read from it")
                return True
            self._source_sha = _sha256(src)  # hashed once: a changed file's is the new stamp's too
        sha = self._source_sha
        where = "the default mock (bayesdyn/data/disk_mock.npz)" if source == "default" else str(src)
        if stamped:
            if sha[:16] == stamped:
                return True
            what = "one" if source == "default" else "file"
            self.log(f"[catalog] {where} differs from the {what} the cached catalog was read from: reading it again")
            return False
        if source == "default":  # an earlier version's stamp: its mock may not be this one
            self.log(f"[catalog] the cached catalog's stamp does not record which default mock it holds: reading "
                     f"{where} again")
            return False
        rec = self._source_record()
        if not rec.is_file():
            self._record_source(source, sha)
            return True
        try:
            old = json.loads(rec.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
            old = err
        if not isinstance(old, dict):  # cut short, or edited: the cached catalog cannot be vouched for
            self.log(f"[catalog] {rec} is damaged ({old if isinstance(old, Exception) else type(old).__name__}): "
                     f"reading {src} again")
            return False
        if sha != old.get("sha256"):
            self.log(f"[catalog] {src} differs from the file the cached catalog was read from: reading it again")
            return False
        self._record_source(source, sha)
        return True

    def psd(self, cat):
        """Stage 2: fit (or reload) the flow ensemble; checkpoints allow resuming."""
        return self._density(cat, "psd", self.catalog_data_key(), "flows (PSD)")

    def _density(self, cat, name: str, data_key: str, timing: str):
        """Fit (or reload) flows with the [psd] settings on ``cat``, in ``<run>/<name>`` (stamp ``.<name>.stamp``)."""
        from ..psd import PSDFileError, fit_psd, load_psd
        from ..psd._fit import worse_than_gaussian
        from ..psd._fit import resolve_seeds_per_resample
        from ..psd._io import CheckpointMismatchError

        # the seed pairing fit_psd will use ("auto" resolved), so that the key says what was trained
        p = {**self.cfg["psd"], "seeds_per_resample": resolve_seeds_per_resample(
            self.cfg["psd"]["ensemble"], self.cfg["psd"]["seeds_per_resample"], self.cfg["psd"]["bootstrap"])}
        # options added later enter the key only when set, so that run folders of earlier versions stay valid
        later = {"seeds_per_resample": 1, "support_core": 0.0, "flow": "maf", "radial_map": "auto", "axis_map": []}
        key = _fingerprint({k: v for k, v in p.items() if later.get(k, object()) != v}, self.cfg["seed"], data_key)
        folder = self.folder / name
        tag = f"[{name}]"
        t0 = time.perf_counter()
        psd = None
        if self._cached(name, key) and (folder / "psd.json").is_file():
            psd = self._reuse(tag, folder, load_psd, (PSDFileError,))  # e.g. written by another bayesdyn version
        if psd is not None:
            self.log(f"{tag} reusing {folder}")
            self._restamp(name, key, _flows_digest(folder))
        else:
            pairs = (f" ({p['ensemble'] // p['seeds_per_resample']} bootstrap resamples × {p['seeds_per_resample']} seeds)"
                     if p["seeds_per_resample"] > 1 else "")
            ckpt = self.folder / (name + "_checkpoint")

            def fit(*args, **kwargs):  # fit_psd's warning is this stage's error below
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="flows worse than a standard normal")
                    try:
                        return fit_psd(*args, **kwargs)
                    except ValueError as err:  # too few stars for a batch: named by its config key (a traceback)
                        if "fewer than batch_size" not in str(err):
                            raise
                        found = re.search(r"only (\d+) training stars", str(err))
                        hint = f" ≤ {max(1, int(found.group(1)) // 4)}" if found else " lower"
                        raise ConfigError(f"psd.batch_size = {p['batch_size']}: {str(err).split(';')[0]}; set "
                                          f"psd.batch_size{hint} in the configuration, or use more stars") from None

            self.log(f"{tag} training {p['ensemble']} member(s){pairs} on {cat.n} stars (checkpoints in {ckpt})")
            settings = dict(
                ensemble=p["ensemble"],
                seed=self.cfg["seed"],
                n_layers=p["n_layers"],
                width=p["width"],
                max_epochs=p["max_epochs"],
                patience=p["patience"],
                batch_size=p["batch_size"],
                learning_rate=p["learning_rate"],
                bootstrap=p["bootstrap"],
                seeds_per_resample=p["seeds_per_resample"],
                support_core=p["support_core"],
                flow=p["flow"],
                radial_map=p["radial_map"],
                axis_map=p["axis_map"] or None,
                checkpoint_dir=ckpt,
                progress=self.progress,
            )
            try:
                psd = fit(cat, **settings)
            except CheckpointMismatchError as err:
                # a checkpoint of another training (other [psd] settings — e.g. an earlier version's defaults —, seed
                # or catalog) cannot be resumed: set it aside and train afresh
                stale = ckpt.with_name(ckpt.name + ".stale")
                if stale.exists():
                    import shutil

                    shutil.rmtree(stale)
                ckpt.rename(stale)
                self.log(f"{tag} {err}: moved it to {stale}; training afresh")
                psd = fit(cat, **settings)
            if (problem := worse_than_gaussian(psd.info)) is not None:
                # not saved, so never reused; the checkpoint stays, and another learning rate or max_epochs trains
                # afresh (the checkpoint's settings differ)
                raise FloatingPointError(f"{problem}: psd.learning_rate / psd.max_epochs in the config")
            self._unstamp(name)
            psd.save(folder)
            self._stamp(name, key, _flows_digest(folder))
        self._timed(timing, t0)
        self.log(psd.summary())
        if name == "psd":
            self.psd_info = psd.info  # the report's training CAVEAT reads what "auto" settings resolved to
        return psd

    def _read_stamp(self, name: str) -> str:
        stamp = self.folder / f".{name}.stamp"
        # a damaged stamp (bytes that are not UTF-8) matches no key, so its stage is computed again
        return stamp.read_bytes().decode("utf-8", "replace").strip() if stamp.is_file() else ""

    def accelerations(self, psd, cat):
        """Stage 3: accelerations and covariances at nodes around the Sun (``accelerations.npz``)."""
        from ..dynamics import default_nodes, estimate_accelerations
        from ..inference import AccelerationData

        nd = self.cfg["nodes"]
        er = self.cfg["errors"]
        parts = [nd, self.cfg["seed"], self._read_stamp("psd"), _CACHE_VERSION]
        if er["correct"]:  # only then: run folders without the correction keep their key
            parts.append(er)
        key = _fingerprint(*parts)
        path = self.folder / "accelerations.npz"
        t0 = time.perf_counter()

        def load(path):
            with np.load(path, allow_pickle=False) as z:
                return AccelerationData.create(
                    z["x"], z["a"], z["cov"], sun=z["sun"], members=z["members"] if "members" in z else None,
                    member_cov=z["member_cov"] if "member_cov" in z else None,
                    member_groups=z["member_groups"] if "member_groups" in z else None,
                )

        data = None
        if self._cached("accelerations", key) and path.is_file():
            data = self._reuse("[accelerations]", path, load, (OSError, ValueError, KeyError, EOFError,
                                                              zipfile.BadZipFile))
        if data is not None:
            self.log(f"[accelerations] reusing {path}")
            self._restamp("accelerations", key, _npz_digest(path))
        else:
            sun = cat.solar.position
            radius = self.node_radius(cat)
            nodes = default_nodes(cat.x, nd["n"], self.cfg["seed"], center=sun, radius=radius)
            source = _VelocitiesInsideCatalog(psd, cat.v)
            with warnings.catch_warnings(record=True) as caught:  # the filters in force decide what is recorded
                if er["correct"]:
                    data = self._measurement_error_correction(cat, source, nodes, sun)
                else:
                    data = estimate_accelerations(
                        source, nodes, n_velocities=nd["n_velocities"], seed=self.cfg["seed"], floor=nd["floor"],
                        sun=sun
                    )
            for w in caught:  # on the console as before ...
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            # the stage's own warnings (a library's deprecation notices stay on the console), one line each
            notes = [f"{w.category.__name__}: " + " ".join(str(w.message).split()) for w in caught
                     if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))]
            arrays = {"x": data.x, "a": data.a, "cov": data.cov, "sun": data.sun, "members": data.members,
                      "member_cov": data.member_cov, "member_groups": data.member_groups}
            self._unstamp("accelerations")
            arrays = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
            np.savez(path, **arrays)
            self._stamp("accelerations", key, _arrays_digest(arrays))
            if source.rejected:
                notes.append(f"{source.rejected} of {source.drawn} velocities drawn from p(v|x) fell outside the box "
                             "the catalog's velocities span and were redrawn (a flow's far tails are untrained)")
                self.log(f"[accelerations] {notes[-1]}")
            # ... and kept beside the accelerations for the report, also when a later run reuses them (they reached
            # the console only, and a cached rerun's report came without them)
            notes_path = self.folder / ACCELERATION_NOTES
            if notes:
                notes_path.write_text("\n".join(notes) + "\n")
            else:
                notes_path.unlink(missing_ok=True)
        self._timed("accelerations at nodes", t0)
        d = np.linalg.norm(np.asarray(data.x) - np.asarray(data.sun), axis=1)
        self.log(f"[accelerations] {data.x.shape[0]} nodes, {d.min():.3g}–{d.max():.3g} kpc from the Sun")
        return data

    def _measurement_error_correction(self, cat, source, nodes, sun):
        """[errors] correct = true: bd.correct_measurement_errors with this run's cached flows for the copies."""
        from ..dynamics import correct_measurement_errors

        er, nd = self.cfg["errors"], self.cfg["nodes"]
        how = (f"Gaussian errors σ_v = {er['velocity_error_kms']:g} km/s, σ_x = {er['position_error_kpc']:g} kpc"
               if er["velocity_error_kms"] or er["position_error_kpc"] else "the catalog's Gaia error columns")
        self.log(f"[errors] correcting for measurement errors: {er['copies']} re-smeared cop"
                 f"{'y' if er['copies'] == 1 else 'ies'} of the catalog ({how}), one flow fit each")
        errors = {k: float(er[k]) for k in ("velocity_error_kms", "position_error_kpc")}
        copies = iter(range(er["copies"]))  # correct_measurement_errors fits the copies in order 0, 1, …

        def fit(copy):
            c = next(copies)
            if copy.n < cat.n:
                self.log(f"[errors] copy {c}: {cat.n - copy.n} star(s) left the selection sphere and were cut")
            dens = self._density(copy, f"psd-copy{c}", _fingerprint(self.catalog_data_key(), errors, c),
                                 f"flows (re-smeared copy {c})")
            return _VelocitiesInsideCatalog(dens, copy.v)

        res = correct_measurement_errors(
            cat, fit, nodes, n_copies=er["copies"], seed=self.cfg["seed"], velocity_error=er["velocity_error_kms"] or None,
            position_error=er["position_error_kpc"] or None, psd=source, n_velocities=nd["n_velocities"],
            floor=nd["floor"], sun=sun,
        )
        text = res.summary()
        (self.folder / "measurement_errors.txt").write_text(text + "\n")
        self.log(f"[errors] {text}")
        return res.corrected

    def _copy(self, cat, c: int):
        """Re-smeared copy ``c`` of the catalog ([errors]); the same stars and seed give the same copy."""
        from ..dynamics import copy_seed, resmear

        er = self.cfg["errors"]
        return resmear(cat, copy_seed(self.cfg["seed"], c), velocity_error=er["velocity_error_kms"] or None,
                       position_error=er["position_error_kpc"] or None)

    def preflight(self, cat) -> None:
        """Checks that fail before the flows are trained rather than after: the node setting, and (with
        ``[errors] correct = true``) that every re-smeared copy can be drawn (error columns present, no copy losing
        a star's parallax). The weak form trains no flows and makes no copies.

        Raises:
            ConfigError: naming the config keys to change.
        """
        if self.weak:
            return
        self.node_radius(cat, quiet=True)
        nd, k = self.cfg["nodes"], self.cfg["psd"]["ensemble"]
        need = nd["n"] * nd["n_velocities"] * (self.SCORE_BYTES[0] + self.SCORE_BYTES[1] * k)
        total = _physical_memory()
        if total is not None and need > 0.5 * total:  # (n_velocities = 1e14 had overflowed after the flows)
            raise ConfigError(
                f"nodes.n × nodes.n_velocities = {nd['n']} × {nd['n_velocities']} velocity draws, scored by {k} flow "
                f"member(s), need about {need / 2**30:.3g} GiB for the accelerations' scores; this machine has "
                f"{total / 2**30:.3g} GiB: lower nodes.n_velocities (256 is the default) or nodes.n")
        if self.cfg["errors"]["correct"] and (failed := self._no_error_copies(cat)) is not None:
            c, err = failed
            raise ConfigError(
                f"errors.correct = true: copy {c} of the catalog cannot be drawn: {err} (in the config: "
                "errors.velocity_error_kms and errors.position_error_kpc per axis, for a catalog without Gaia error "
                "columns, or errors.correct = false)")

    def _no_error_copies(self, cat) -> tuple[int, Exception] | None:
        """The first error copy of ``cat`` that ``[errors] correct = true`` could not draw with this run's settings,
        and why (None when every copy can): no Gaia observables or error columns, bad error values, or a copy in
        which a star's parallax came out ≤ 0. :meth:`preflight` refuses such a run; the report says why the errors
        were not corrected."""
        from ..catalog import CatalogError

        for c in range(self.cfg["errors"]["copies"]):
            try:
                self._copy(cat, c)
            except (CatalogError, ValueError) as err:
                return c, err
        return None

    #: fraction of the stars (by distance from the Sun) inside which nodes may lie
    EDGE_QUANTILE = 0.8

    #: peak memory of estimate_accelerations per velocity draw [bytes]: fixed + per flow member (measured with
    #: 64 nodes × 16384 draws: 278 bytes at K = 2 members, 445 at K = 4)
    SCORE_BYTES = (112, 84)

    def node_radius(self, cat, quiet: bool = False) -> float:
        """Radius around the Sun [kpc] inside which nodes are drawn from the catalog's positions.

        ``nodes.radius_kpc``, but never beyond the distance that holds
        :attr:`EDGE_QUANTILE` (80 %) of the stars: near a catalog's edge the learnt
        density falls steeply and its scores are poor, so nodes stay inside the volume
        the catalog covers (a uniformly filled 100 pc sphere gets nodes within
        0.8^(1/3) × 100 = 92.8 pc). ``radius_kpc = 0`` means exactly that distance.

        Args:
            cat: the run's catalog.
            quiet: do not log the choice (a check before the flows are trained).

        Raises:
            ConfigError: fewer than ``nodes.n`` stars inside the radius (the counts, the
                catalog's extent and the keys to change are named).
        """
        nd = self.cfg["nodes"]
        d = np.linalg.norm(np.asarray(cat.x) - np.asarray(cat.solar.position), axis=1)
        edge = float(np.quantile(d, self.EDGE_QUANTILE))
        asked = nd["radius_kpc"]
        radius = edge if asked == 0 else min(asked, edge)
        if quiet:
            pass
        elif asked == 0:
            self.log(f"[accelerations] nodes within {radius:.3g} kpc of the Sun "
                     f"({self.EDGE_QUANTILE:.0%} of the stars; nodes.radius_kpc = 0)")
        elif radius < asked:
            self.log(
                f"[accelerations] NOTE: nodes.radius_kpc = {asked:g} kpc reaches beyond the catalog "
                f"({self.EDGE_QUANTILE:.0%} of its stars lie within {edge:.3g} kpc of the Sun, the farthest at "
                f"{d.max():.3g} kpc); nodes are placed within {radius:.3g} kpc"
            )
        inside = int(np.sum(d < radius))
        if inside < nd["n"]:
            raise ConfigError(
                f"'nodes.n' = {nd['n']} nodes need as many catalog stars within the node radius, but only "
                f"{inside} of {d.size} stars lie within {radius:.3g} kpc of the Sun (the catalog spans "
                f"{d.min():.3g}–{d.max():.3g} kpc from it; nodes are placed around the Sun): lower 'nodes.n', "
                "raise 'nodes.radius_kpc' (0 = fitted to the catalog), or use a catalog around the Sun"
            )
        return radius

    @property
    def weak(self) -> bool:
        """Whether the model is fitted to the stars' weak-form moments (``inference.likelihood = "weak_form"``)."""
        return self.cfg["inference"]["likelihood"] == "weak_form"

    def weak_form(self, cat):
        """Stages 2–3 of ``likelihood = "weak_form"``: the stars' weak-form CBE moments
        (:func:`bayesdyn.weak_form_data`; no flows, no nodes). Cheap, so not cached: :meth:`posterior`'s key holds
        the settings."""
        from ..dynamics import weak_form_data

        wf, er = self.cfg["weak_form"], self.cfg["errors"]
        volume = self._weak_form_ball(cat) if not wf["volume"] else (np.asarray(wf["volume"][:3], float),
                                                                      float(wf["volume"][3]))
        velocity_errors = position_errors = None
        if er["correct"]:  # velocity errors exactly (Gaussian), position errors to second order (degree_v 1)
            if er["velocity_error_kms"] > 0:
                velocity_errors = np.full((cat.n, 3), er["velocity_error_kms"])
            if er["position_error_kpc"] > 0:
                position_errors = np.full((cat.n, 3), er["position_error_kpc"])
            if velocity_errors is None and position_errors is None:  # both 0: the catalog's Gaia error columns
                velocity_errors = "catalog"
                position_errors = "catalog"  # the whole 6 × 6 covariance, with the x–v correlations
            if wf["degree_v"] != 1:  # position errors are corrected for degree_v = 1 only
                if er["position_error_kpc"] > 0:
                    raise ConfigError(
                        "errors.correct with errors.position_error_kpc > 0 and inference.likelihood = \"weak_form\" "
                        f"needs weak_form.degree_v = 1 (got {wf['degree_v']}): position errors are corrected for "
                        "degree_v = 1 only; set it to 1, or position_error_kpc = 0 to correct velocities only")
                position_errors = None
            if velocity_errors is not None and wf["degree_v"] > 2:  # (weak_form_data's message named no config key)
                raise ConfigError(
                    f"errors.correct with inference.likelihood = \"weak_form\" corrects velocity errors for "
                    f"weak_form.degree_v ≤ 2 only (got {wf['degree_v']}): set weak_form.degree_v to 1 or 2, or "
                    "errors.correct = false")
        self.weak_velocity_errors = velocity_errors is not None
        self.weak_position_errors = position_errors is not None
        self.weak_error_mean = isinstance(position_errors, str)  # "catalog": Catalog.error_mean() too
        self.weak_velocity_catalog = isinstance(velocity_errors, str)
        efficiency = self._efficiency_column(cat, position_errors is not None)
        t0 = time.perf_counter()
        try:
            data = weak_form_data(cat, volume=volume, efficiency=efficiency, velocity_errors=velocity_errors,
                                  position_errors=position_errors, degree_x=wf["degree_x"], degree_v=wf["degree_v"])
        except ValueError as err:
            fix = (" (in the config: errors.velocity_error_kms and errors.position_error_kpc per axis, or "
                   "errors.correct = false)" if er["correct"] else "")
            if efficiency is not None and any(w in str(err) for w in ("efficiency", "ε")):
                fix = f" (in the config: weak_form.efficiency_column = {wf['efficiency_column']!r})"
            elif "stars lie inside the ball" in str(err):  # min_stars is no config key: name the ones that are
                fix = (" (in the config: a larger radius in weak_form.volume, more stars through catalog.max_stars or "
                       "catalog.within_kpc, or lower weak_form.degree_x / degree_v)")
            raise ConfigError(f"inference.likelihood = \"weak_form\": {err}{fix}") from None
        self._timed("weak-form moments", t0)
        ball = np.asarray(data.ball)
        if efficiency is not None:  # the stars weak_form_data took: its test, in float64
            center, radius = np.asarray(volume[0], float), float(volume[1])
            inside = np.linalg.norm(np.asarray(cat.x, float) - center, axis=1) < radius
            self.weak_efficiency = {"column": wf["efficiency_column"], "n": int(inside.sum()),
                                    "min": float(efficiency[inside].min()), "max": float(efficiency[inside].max())}
            self.log(f"[weak form] each star weighted by 1/ε, ε from the catalog column "
                     f"{wf['efficiency_column']!r}: {self.weak_efficiency['min']:.3g} to "
                     f"{self.weak_efficiency['max']:.3g} over the ball's stars")
        self.weak_cuts = self._cuts_before_ball(cat, ball[:3], ball[3])
        self.log(f"[weak form] {data.n_stars} of {cat.n} stars in the ball of radius {ball[3]:.3g} kpc around "
                 f"({ball[0]:.3g}, {ball[1]:.3g}, {ball[2]:.3g}) kpc; {data.n_moments} moments"
                 + ("; velocity errors' bias removed" if velocity_errors is not None else "")
                 + (" (not the mean the parallax errors add to the tangential velocities)"
                    if self.weak_velocity_catalog and position_errors is None else "")
                 + ("; position errors' bias removed to second order" if position_errors is not None else ""))
        return data

    def selection_line(self) -> str:
        """The report summary's line on the selection ε the weak form weighted by (after :meth:`weak_form`)."""
        e = self.weak_efficiency
        return (f"Selection: each star's moments are weighted by 1/ε, ε from the catalog column {e['column']!r} "
                f"(weak_form.efficiency_column; {e['min']:.3g} to {e['max']:.3g} over the {e['n']} stars in the "
                "ball). ε is taken as exact and as a function of position alone: its own errors are not in the "
                "intervals, and stars where ε is small weigh most.")

    def _efficiency_column(self, cat, position_errors: bool) -> np.ndarray | None:
        """``weak_form.efficiency_column``'s values per star (None when unset), or a ConfigError that says why not."""
        name = self.cfg["weak_form"]["efficiency_column"]
        if not name:
            return None
        where = f"weak_form.efficiency_column = {name!r}"
        if name not in cat.columns:
            raise ConfigError(
                f"{where}: the catalog has no such column (its columns: {sorted(cat.columns) or 'none'}). A Gaia "
                "file keeps it when it has it; to a saved catalog (.npz) add it with cat = bd.Catalog.load(path); "
                f"cat.columns[{name!r}] = eps (one value per star of cat: compute ε at cat.x, or match by "
                "cat.columns['source_id']); cat.save(path)")
        col = cat.columns[name]
        if col.dtype.kind not in "fiu":
            raise ConfigError(f"{where}: the column must hold numbers (detection probabilities), got dtype {col.dtype}")
        if position_errors:
            er = self.cfg["errors"]
            raise ConfigError(
                f"{where} with errors.correct: the position errors' correction differentiates ε(x), and a column "
                "gives ε at the stars only. Correct the velocities alone (errors.position_error_kpc = 0 with "
                "errors.velocity_error_kms > 0" + (", as now" if er["velocity_error_kms"] > 0 else "") + "), or set "
                "errors.correct = false, or use the Python API with ε as a JAX function of position "
                "(bd.weak_form_data(..., efficiency=eps, position_errors=...))")
        return col.astype(np.float64)

    def _weak_form_ball(self, cat):
        """``weak_form.volume = []``: the sphere recorded with the catalog (``weak_form_data``'s "auto"), looking
        through this stage's own random subset (``catalog.max_stars``), which draws stars regardless of position
        and velocity and so keeps a complete sample complete."""
        from ..catalog import Catalog
        from ..dynamics._weak import _ball

        hist = list(cat.history)
        if hist and _own_subset(hist[-1].reason):
            cat = Catalog(cat.x, cat.v, solar=cat.solar, meta=dict(cat.meta), history=hist[:-1])
        try:
            center, radius, where = _ball(cat, np.asarray(cat.x, float), "auto")
        except ValueError as err:
            raise ConfigError(f"inference.likelihood = \"weak_form\": {err}. In the config: catalog.within_kpc "
                              "(a sphere around the Sun, recorded) or weak_form.volume = [x, y, z, radius] (kpc) of "
                              "a ball where the catalog is complete") from None
        self.log(f"[weak form] ball: {where.removeprefix('auto: ')}")
        return center, radius

    def _cuts_before_ball(self, cat, center, radius) -> list[str]:
        """The catalog's cuts other than the ball's own sphere and this stage's random subset: the weak form
        assumes that none of them selects stars inside the ball (the report says so)."""
        hist = list(cat.history)
        # spheres that hold the whole ball (its own among them) remove no star inside it
        own = {int(s_["cuts"]) - 1 for s_ in (cat.meta or {}).get("support_spheres", []) or []
               if s_.get("alone", False)
               and np.linalg.norm(np.asarray(s_["center_kpc"]) - center) + radius <= s_["radius_kpc"] * (1 + 1e-9)}
        return [h.reason for i, h in enumerate(hist) if i not in own and not _own_subset(h.reason)]

    def posterior_key(self) -> str:
        """The posterior's cache key: the inference and model settings and the data it was fitted to."""
        inf = self.cfg["inference"]
        if self.weak:  # fitted to the catalog's moments: the weak-form settings (and error correction) count
            # options added later enter the key only when set, so that run folders of earlier versions stay valid
            wf = {k: v for k, v in self.cfg["weak_form"].items() if not (k == "efficiency_column" and v == "")}
            parts = [inf, wf, self.catalog_data_key(), _WEAK_VERSION]
            if self.cfg["errors"]["correct"]:
                parts.append(self.cfg["errors"])
        else:  # the node likelihood's key: as before inference.likelihood existed, plus the combination's version
            parts = [{k: v for k, v in inf.items() if k != "likelihood"}, self._read_stamp("accelerations")]
            parts.append(_COMBINE_VERSION)  # (also for combine="mean" or one member: those recompute once)
        model = self.cfg["model"]
        new = dark_components(model)
        # derived.rho_dm_sun is sampled from the dark components: where the `dark` flags' rule of 2026-12-07 (a flag
        # decides for its own component, the others by name) resolves them otherwise than the old one (only the
        # flagged components), the key holds them, so that the old rule's posterior is not reused
        if new is not None and list(new) != [n for n, comp in model.items() if comp.get("dark")]:
            parts.append({"dark": list(new)})
        return _fingerprint(parts[0], self.cfg["model"], self.cfg["seed"], *parts[1:], _CACHE_VERSION)

    def posterior(self, data):
        """Stage 4: NUTS posterior of the configured model (``posterior.nc``)."""
        from ..inference import infer
        from ..results import Posterior

        inf = self.cfg["inference"]
        key = self.posterior_key()
        path = self.folder / "posterior.nc"
        t0 = time.perf_counter()
        post = None
        if self._cached("posterior", key) and path.is_file():
            post = self._reuse("[infer]", path, Posterior.load, (ValueError, OSError))
        if post is not None:
            self.log(f"[infer] reusing {path}")
        else:
            model = build_model(self.cfg["model"])
            what = "the stars' weak-form moments" if self.weak else "the accelerations at nodes"
            self.log(f"[infer] NUTS ({inf['backend']}), {inf['num_chains']} chains × {inf['num_samples']} draws, "
                     f"fitted to {what}: {model}")
            post = infer(
                model,
                data,
                seed=self.cfg["seed"],
                num_chains=inf["num_chains"],
                num_warmup=inf["num_warmup"],
                num_samples=inf["num_samples"],
                backend=inf["backend"],
                target_accept=inf["target_accept"],
                combine=inf["combine"],
                progress=self.progress,
            )
            self._unstamp("posterior")
            post.save(path)
            self._stamp("posterior", key)
        self._timed("posterior (NUTS)", t0)
        if self.weak:
            self.log("[infer] " + weak_form_line(post.info["weak_form"]))
        return post

    def weak_errors_line(self) -> str:
        """The report's line on measurement errors for a weak-form run (after :meth:`weak_form`)."""
        vel, pos = self.weak_velocity_errors, self.weak_position_errors
        if vel or pos:
            done = " and ".join(w for w, on in (("velocity", vel), ("position", pos)) if on)
            how = (["velocities exactly for Gaussian errors"] if vel else []) + (
                ["positions to second order in the errors"
                 + (" (their covariance and mean from the catalog's Gaia columns: 1/ϖ distances are long on "
                    "average by (σ_ϖ/ϖ)²)" if self.weak_error_mean else "")
                 + ", which leaves a remainder of order (σ_x/L)⁴ for structure on scales L"] if pos else [])
            line = f"Measurement errors: the {done} errors' bias on the moments is removed ({'; '.join(how)})"
            if not pos:
                line += "; position errors are not corrected" + (
                    " (that needs weak_form.degree_v = 1)" if self.cfg["weak_form"]["degree_v"] != 1 else
                    " (errors.position_error_kpc = 0)")
                if self.weak_velocity_catalog:  # Gaia's parallax errors also make v_t long on average
                    line += (", nor the mean the parallax errors add to the tangential velocities (long on "
                             "average by (σ_ϖ/ϖ)², like the distances; removed only with the position correction)")
            if not vel:
                line += "; velocity errors are not corrected (errors.velocity_error_kms = 0)"
            if pos:
                line += ("; the test functions' window is (1 − ρ²)³, which the position correction needs (σ and J "
                         "differ from a fit with the default (1 − ρ²)²)")
            return line + " (docs/weak-form.md#position-errors)."
        return ("Measurement errors: not corrected by the weak form; velocity errors bias its moments by about "
                "(σ_err/σ_v)² and position errors by about (σ_x/L)² for structure on scales L "
                "(errors.correct = true with the catalog's error columns, or errors.velocity_error_kms and "
                "errors.position_error_kpc, removes that).")

    def report(self, post, data, cat) -> Path:
        """Stage 5: the report folder — tables, local ρ_DM, plots, dark-disk limits, metadata."""
        from ..results._limits import _prior_lower
        from . import _plots

        out = self.folder / "report"
        out.mkdir(exist_ok=True)
        for name in REPORT_FILES:  # what this config does not write must not stay from an earlier run's
            (out / name).unlink(missing_ok=True)
        t0 = time.perf_counter()
        from ..results import ConvergenceWarning

        model = build_model(self.cfg["model"])
        lines = []
        # the posterior's convergence problems were warned about once, by infer or Posterior.load; the tables and
        # the ρ_DM line carry them (a **Warning:** line, % WARNING comments), so their own warnings would only
        # repeat the same text twice more on the console
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            (out / "constraints.md").write_text(post.to_markdown())
            (out / "constraints.tex").write_text(post.to_latex())
            local_dm = "derived.rho_dm_sun" in post.samples and bool(model.dark)
            if local_dm:
                lines.append(post.local_dm_line())
            post.to_csv(out / "constraints.csv")
            problems = post.check(warn=False)
        if problems:  # (the ρ_DM line above carries no word of them: its own warning is silenced here)
            lines.append("WARNING: the posterior did not converge cleanly, so these numbers are not reliable: "
                         + "; ".join(problems) + " (constraints.md).")
        if local_dm:  # (not "if lines": a model without dark components wrote a table of zeros beside a WARNING)
            post.local_dm_density().to_csv(out / "local_dm_density.csv", index_label="unit")
        combine = post.info.get("combine")
        # free dark disks counted in ρ_DM(⊙) whose surface-density prior stops at 0 (their draws pile up above it)
        dark_disks = [n for n, c in model.components.items()
                      if type(c).__name__ == "DarkDisk" and n in model.dark and "derived.rho_dm_sun" in post.samples
                      and f"{n}.surface_density" in model.free_parameters()
                      and _prior_lower(model.free_parameters()[f"{n}.surface_density"]) >= 0]
        if dark_disks and not self.weak:
            lines.append(
                f"CAVEAT: ρ_DM(⊙) counts the dark disk ({', '.join(dark_disks)}), whose surface density cannot go "
                "below its prior's edge at 0: where the data limit it weakly, its draws pile up above 0 and set much "
                "of ρ_DM(⊙)'s upper error, and raise its median when there is no dark disk (an example, not this run: on "
                "the shipped mock, which has no dark disk, bayesdyn demo with the members' combination before the "
                "second change of 2026-12-07 gave ρ_DM(⊙) = 0.332 +0.707 GeV/cm³ and the halo's own 0.300 +0.028). "
                "Read the halo's own density and the dark-disk limits, not this number, for the halo.")
        if self.weak:
            lines.append(
                "CAVEAT: intervals from the weak-form fit (two-step GMM on the stars' CBE moments, no flows). Its "
                "calibration: with validate.DiskMock.model() (the disk mass and halo density free, no dark disk) on "
                "80 disk-mock realisations of 10⁵ stars, the truth within 2σ in 75–77 of 80 per acceleration row "
                "(docs/league-weak-form.md); other models are not calibrated — with the default model's dark disk "
                "(whose true Σ = 0 sits on its prior's edge) see docs/weak-form.md. They assume equilibrium, the "
                "model family, and a catalog complete inside the ball"
                + (" up to the selection ε below." if self.weak_efficiency else ".")
            )
            if self.weak_efficiency:
                lines.append(self.selection_line())
            if dark_disks:
                lines.append(
                    f"CAVEAT: ρ_DM(⊙) counts the dark disk ({', '.join(dark_disks)}), whose surface density cannot go "
                    "below its prior's edge at 0: on 20 disk mocks with no dark disk, this fit of the default model put "
                    "Σ_DD at 2.1 M☉/pc² on average and ρ_DM(⊙) 77 % high, the truth inside its 95 % interval in 5 of 20 "
                    "(python benchmarks/weak_form_default_model.py; docs/weak-form.md). Read the halo's own density "
                    "and the dark-disk limits, not this number, for the halo.")
            if self.weak_cuts:
                lines.append("CAVEAT: the catalog was cut before the weak form's ball (" + "; ".join(self.weak_cuts)
                             + "); the moments assume that no cut selects stars inside the ball other than at random"
                             + (" or as the selection ε describes" if self.weak_efficiency else "") + " "
                             "(a cut on parallax error or on a missing radial velocity selects by magnitude and "
                             "distance, and biases them; the J test need not see it).")
        elif isinstance(combine, dict):
            trained = ((self.psd_info or {}).get("training") or {}).get("bootstrap")  # what the flows used
            lines.append(member_caveat(combine, bootstrap=bool(self.cfg["psd"]["bootstrap"] if trained is None
                                                                else trained)))
            training = training_caveat(self.cfg["psd"], self.psd_info)
            if training:
                lines.append(training)
        else:
            lines.append(
                "CAVEAT: these intervals come from one posterior of the member-mean accelerations "
                "(combine='mean'), which treats the nodes as independent: on the calibration's disk and NFW mocks "
                "the spread of its medians was 7–11× its posterior standard deviation (docs/calibration)."
            )
        acc_notes = self.folder / ACCELERATION_NOTES
        if not self.weak and acc_notes.is_file():
            lines += [f"NOTE (accelerations stage): {ln}" for ln in acc_notes.read_text().splitlines() if ln.strip()]
        er_file = self.folder / "measurement_errors.txt"
        if self.weak:
            lines.append(self.weak_errors_line())
        elif self.cfg["errors"]["correct"] and er_file.is_file():
            lines.append(f"Measurement errors: corrected to leading order — {er_file.read_text().strip()} "
                         "(the corrected intervals' coverage is not calibrated on mocks).")
        elif (failed := self._no_error_copies(cat)) is None:
            lines.append(
                "Measurement errors: not corrected; they bias the accelerations by about σ_err² ∇log ν "
                "(set [errors] correct = true; docs: howto/measurement-errors)."
            )
        else:  # (it had advised [errors] correct = true, which is refused for such a catalog)
            lines.append(
                f"Measurement errors: not corrected, and [errors] correct = true could not draw the error copies: "
                f"{str(failed[1]).rstrip('.')}. If the stars have errors, they bias the accelerations by about σ_err² ∇log ν: fix what that "
                "names (a parallax cut is [catalog] parallax_over_error in the config), or give assumed errors per "
                "axis, errors.velocity_error_kms and errors.position_error_kpc, with [errors] correct = true (docs: "
                "howto/measurement-errors)."
            )
        # how much did the data say? posterior against prior widths, in the report for every run
        from ._prior import prior_vs_posterior, prior_vs_posterior_markdown

        comparison = prior_vs_posterior(post, model, np.asarray(data.sun), seed=self.cfg["seed"])
        comparison.to_csv(out / "prior_vs_posterior.csv", index_label="quantity")
        used = np.asarray(data.x) if self.weak else np.asarray(cat.x)  # the weak form uses the stars in its ball
        d_sun = np.linalg.norm(used - np.asarray(cat.solar.position), axis=1)
        text = prior_vs_posterior_markdown(comparison, n_stars=len(used), extent_kpc=float(d_sun.max()))
        (out / "prior_vs_posterior.md").write_text("# Posterior against prior\n\n" + text)
        verdicts = [text.split("\n", 1)[0].replace("**", "")]  # the summary opens with what the data say
        if self.weak:
            verdicts.insert(0, weak_form_line(post.info["weak_form"]))
            if data.n_stars < 20_000:
                lines.append(f"NOTE: {data.n_stars} stars in the weak form's ball; its intervals were calibrated "
                             "with 10⁵ (docs/league-weak-form.md).")
        elif cat.n < 20_000:
            lines.append(
                f"NOTE: {cat.n} stars is few for a flow-based measurement (10⁵ stars is the tested regime); "
                "see prior_vs_posterior.md for what the data constrain."
            )
        self.log(text)
        if self.truth is not None:
            check, n_out, n_rows, outside, tail, share = self._truth_check(post, data)
            (out / "truth_check.md").write_text(check)
            self.log(check)
            if n_out:
                verdicts.append(_truth_verdict(n_out, n_rows, outside, tail, share))
        elif self.weak:  # no node accelerations: the posterior against the reference only
            from ..potentials import MWPotential2014

            table, n_out, n_rows, outside, tail, share = self._check_table(
                post, data, dict(MWPotential2014().items()), ("halo",), "MWPotential2014")
            check = ("## The posterior against MWPotential2014\n\nMWPotential2014 is a common reference model of "
                     "the Milky Way, **not** the truth; a pull of several σ on these well-measured local quantities "
                     "means that the intervals do not carry all the error:\n\n" + table)
            (out / "reference_check.md").write_text("# Real data against a reference potential\n\n" + check)
            self.log(check)
            if n_out:
                verdicts.append(_reference_verdict(n_out, n_rows, outside, tail, share))
        else:
            check, verdict = self._reference_check(post, data)
            (out / "reference_check.md").write_text("# Real data against a reference potential\n\n" + check)
            self.log(check)
            verdicts += verdict
        lines = verdicts + lines
        (out / "local_dm.txt").write_text("\n".join(lines) + "\n")
        for ln in lines:
            self.log(ln)
        if self.cfg["report"]["corner"]:
            import matplotlib.pyplot as plt

            fig = post.corner(out / "corner.png")
            plt.close(fig)
        _plots.acceleration_and_density(post, model, data, cat, out, truth=self.truth)
        hs = self.cfg["report"]["dark_disk_scale_heights_kpc"]
        dd = [n for n, c in model.components.items() if type(c).__name__ == "DarkDisk"]
        if hs and not (dd and f"{dd[0]}.surface_density" in model.free_parameters()):  # skipped, and said so
            self.log("[report] no dark-disk limits: report.dark_disk_scale_heights_kpc needs a DarkDisk component "
                     "with a free surface_density (a prior) in the model" + (f"; {dd[0]}'s is fixed" if dd else ""))
        if hs and dd and f"{dd[0]}.surface_density" in model.free_parameters():
            from ..results import dark_disk_limits, plot_dark_disk_limits

            if len(dd) > 1:  # the limits vary one component's scale height
                self.log(f"[report] the model has {len(dd)} DarkDisk components {dd}: the limits are those of "
                         f"{dd[0]!r} (its scale height varied, the others as they are)")

            inf = self.cfg["inference"]
            with warnings.catch_warnings(record=True) as caught:  # the filters in force decide what is recorded
                table = dark_disk_limits(
                    model, data, hs, component=dd[0], seed=self.cfg["seed"], num_chains=min(2, inf["num_chains"]),
                    num_warmup=min(300, inf["num_warmup"]), num_samples=min(500, inf["num_samples"]),
                    backend=inf["backend"], combine=inf["combine"], target_accept=inf["target_accept"],
                    progress=False,
                )
            table.to_csv(out / "dark_disk_limits.csv")
            import matplotlib.pyplot as plt

            plt.close(plot_dark_disk_limits(table, out / "dark_disk_exclusion.png"))
            self.log("[report] dark-disk 95 % upper limits [Msun/pc^2]: " + ", ".join(
                f"h={h * 1e3:.0f} pc: {v:.2f}" for h, v in table["Sigma_DD_upper_Msun_pc2"].items()))
            caveats = limit_run_caveats(table, caught)
            for line in caveats:
                self.log(line)
            if caveats:  # in the report folder too, beside the limits they qualify
                with open(out / "local_dm.txt", "a") as fh:
                    fh.write("\n".join(caveats) + "\n")
        self._timed("report", t0)
        self.write_metadata(out)
        return out

    def _reference_check(self, post, data) -> tuple[str, list[str]]:
        """Real data against MWPotential2014 (a reference model, not the truth).

        Three measurements: (1) how well the node accelerations *could* detect each
        reference component if their covariances were right and the nodes independent
        (Fisher signal-to-noise √Σ_p a_cᵀ C_p⁻¹ a_c); (2) whether the covariances are
        right: χ²/dof of the estimates against the reference; (3) the posterior's
        derived quantities against the reference's, with pulls.

        Returns:
            (Markdown text, verdict sentences for the report's summary).
        """
        from ..potentials import MWPotential2014

        mw = MWPotential2014()
        x = np.asarray(data.x, np.float64)
        cov = np.asarray(data.cov, np.float64)
        icov = np.linalg.inv(cov)
        resid = np.asarray(data.a, np.float64) - np.asarray(mw.acceleration(x), np.float64)
        chi2_dof = float(np.einsum("pi,pij,pj->", resid, icov, resid) / resid.size)
        snr = {}
        for name, comp in mw.items():
            ac = np.asarray(comp.acceleration(x), np.float64)
            snr[name] = float(np.sqrt(np.einsum("pi,pij,pj->", ac, icov, ac)))
        inflate = max(1.0, chi2_dof) ** 0.5
        table, n_out, n_rows, outside, tail, share = self._check_table(post, data, dict(mw.items()), ("halo",),
                                                                          "MWPotential2014")
        p = x.shape[0]
        text = (
            f"## Can these accelerations detect the Galaxy's components?\n\n"
            f"Fisher signal-to-noise of each MWPotential2014 component's acceleration at the {p} nodes, "
            "√Σ aᵀC⁻¹a, with the stated covariances and independent nodes (an upper bound):\n\n"
            "| component | S/N, stated errors | S/N, errors × max(1, √(χ²/dof)) |\n|---|---|---|\n"
            + "".join(f"| {n} | {v:.2g} | {v / inflate:.2g} |\n" for n, v in snr.items())
            + f"\nχ²/dof of the node accelerations against MWPotential2014: **{chi2_dof:.2g}** "
            f"({resid.size} numbers). A value well above 1 means the stated covariances are too small "
            "(or the estimates biased) by about √(χ²/dof) = "
            f"{chi2_dof ** 0.5:.2g}× in standard deviation"
            + ("" if chi2_dof >= 1 else " (below 1: the S/N column above keeps the stated errors, not scaled down)")
            + ".\n\n"
            "## The posterior against MWPotential2014\n\n"
            "MWPotential2014 is a common reference model of the Milky Way, **not** the truth (its halo gives "
            "ρ_DM(⊙) ≈ 0.0074 M☉/pc³ ≈ 0.28 GeV/cm³, v_c(R0) ≈ 220 km/s). A pull of several σ on these "
            "well-measured local quantities means that the intervals do not carry all the error:\n\n" + table
        )
        verdict = []
        halo = snr.get("halo", 0.0) / inflate
        if halo < 3:
            verdict.append(
                f"These {p} node accelerations cannot constrain the halo: even taken at face value, the "
                f"MWPotential2014 halo's pull on them is a {halo:.1f}σ signal once their errors are scaled to "
                f"match the data (χ²/dof = {chi2_dof:.2g} against MWPotential2014)."
            )
        if n_out:
            verdict.append(_reference_verdict(n_out, n_rows, outside, tail, share))
        return text, verdict

    def _truth_check(self, post, data) -> tuple[str, int, int, str, float, float]:
        """Markdown table: posterior against the mock's exact local quantities, with pulls; also the number outside
        the 95 % intervals, the number of rows and a summary of the farthest (as :meth:`_check_table`)."""
        import jax

        dm = None
        # the disk mock's NFW halo is the truth of ρ_DM(⊙), where the model has dark components (else it is 0)
        if hasattr(self.truth, "dark_matter_density") and build_model(self.cfg["model"]).dark:
            with jax.enable_x64(True):
                dm = float(self.truth.dark_matter_density(np.asarray(data.sun, dtype=float)))
        table, *counts = self._check_table(post, data, {"truth": self.truth}, (), "truth", dark_matter=dm)
        return ("Mock truth against the posterior (exact values from the mock's potential):\n\n" + table, *counts)

    def _check_table(self, post, data, components, dark, label: str,
                     dark_matter: float | None = None) -> tuple[str, int, int, str, float, float]:
        """The check table of ``post``'s derived quantities against ``components`` (ρ_DM(⊙) from ``dark``, or the
        given ``dark_matter`` density at the Sun [M☉/kpc³]); also the number outside 95 %, the rows, a summary, the
        farthest value's tail (the smaller fraction of its draws on one side of it; 1 without rows), and the share of
        the posterior's own draws outside at least as many of the intervals (:func:`_exclusions`; 1 when none is)."""
        import jax

        from ..inference import derived_quantities
        from ..results._posterior import _unit_of

        with jax.enable_x64(True):
            true = derived_quantities(components, dark, np.asarray(data.sun, dtype=float))
        if dark_matter is not None:
            true = {**true, "rho_dm_sun": dark_matter}
        keys = (("rho_total_sun", "v_circ_R0", "Kz_1p1kpc", "Sigma_1p1kpc")
                + (("rho_dm_sun",) if dark or dark_matter is not None else ()))
        names = [f"derived.{k}" for k in keys if f"derived.{k}" in post.samples]
        draws = np.column_stack([np.asarray(post.samples[n], dtype=float).reshape(-1) for n in names]) if names \
            else np.zeros((0, 0))
        # draws where a quantity is undefined (NaN; the constraint table warns of them) are left out of every row, so
        # that the rows and the draws' own exclusions are counted on the same draws
        draws = draws[np.isfinite(draws).all(axis=1)]
        if names and not len(draws):
            return (f"No draw has every one of {names} finite: nothing to check against {label}.\n", 0, len(names),
                    "", 1.0, 1.0)
        values = np.array([float(true[n.removeprefix("derived.")]) for n in names])
        out, tail, share = _exclusions(draws, values)
        max_pull, farthest = 0.0, None
        rows = [
            f"| quantity | unit | {label} | median | 95 % interval | (median − {label})/σ₆₈ | inside 95 % | "
            f"draws below {label} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for j, (name, t) in enumerate(zip(names, values)):
            s = draws[:, j]
            lo, q16, med, q84, hi = np.percentile(s, [2.5, 16, 50, 84, 97.5])
            # σ₆₈, half the 68 % width: the sd of member posteriors combined with Student-t tails is many times it
            # (a K_z outside its 95 % interval had read +0.7 with the sd)
            pull = (med - t) / (0.5 * (q84 - q16)) if q84 > q16 else np.copysign(np.inf, med - t) if med != t else 0.0
            max_pull = max(max_pull, abs(pull))
            below = float(np.mean(s < t))  # where the value sits among the draws: pulls mislead for skewed ones
            row_tail = _tail(s, t)
            if farthest is None or row_tail < farthest[1]:
                farthest = (name, row_tail, pull)
            rows.append(  # the unit: the text above a table quotes ρ in M☉/pc³, the table's is M☉/kpc³
                f"| `{name}` | {_unit_of(name)} | {t:.4g} | {med:.4g} | [{lo:.4g}, {hi:.4g}] | {pull:+.1f} | "
                f"{'**no**' if out[j] else 'yes'} | {100 * below:.1f} % |"
            )
        note = (f"\nσ₆₈ is half the 68 % interval's width (for a Gaussian posterior its sd); *draws below {label}* is "
                "the share of the posterior's draws below the value.\n")
        return ("\n".join(rows) + "\n" + note, int(out.sum()), len(names), _outside_text(max_pull, farthest), tail,
                share)

    def write_metadata(self, out: Path) -> None:
        """``run_metadata.json``: config, seeds, versions, timings, machine."""
        import importlib.metadata as md
        import os

        versions = {}
        for pkg in ("bayesdyn", "jax", "numpyro", "flowjax", "blackjax", "equinox", "optax", "astropy", "arviz", "numpy"):
            try:
                versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                versions[pkg] = None
        meta = {
            "config": self.cfg,
            "seed": self.cfg["seed"],
            "versions": versions,
            "timings_s": dict(self.timings),
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (out / "run_metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    def timing_table(self) -> str:
        """The per-stage wall times as a text table."""
        width = max([len(n) for n, _ in self.timings] + [5])
        rows = [f"{'stage'.ljust(width)}  time [s]", f"{'-' * width}  --------"]
        rows += [f"{n.ljust(width)}  {t:8.1f}" for n, t in self.timings]
        rows.append(f"{'total'.ljust(width)}  {sum(t for _, t in self.timings):8.1f}")
        return "\n".join(rows)

    def all(self) -> Path:
        """Every stage in order; returns the report folder."""
        cat = self.catalog()
        self.preflight(cat)
        if self.weak:
            data = self.weak_form(cat)
        else:
            psd = self.psd(cat)
            data = self.accelerations(psd, cat)
        post = self.posterior(data)
        out = self.report(post, data, cat)
        (out / "timings.txt").write_text(self.timing_table() + "\n")
        self.log(self.timing_table())
        self.log(f"report folder: {out.resolve()}")
        return out


def _own_subset(reason: str) -> bool:
    """Whether a catalog cut is the catalog stage's random subset (``catalog.max_stars``): position-blind."""
    return reason.startswith("random subset of") and "(catalog.max_stars" in reason


def weak_form_line(weak: dict) -> str:
    """The report's line on the weak-form fit's over-identification test (``post.info["weak_form"]``)."""
    from ..inference._infer import WEAK_FORM_P_WARN, weak_form_cause

    test = f"J = {weak['J']:.1f} for {weak['dof']} degrees of freedom (p = {weak['p_value']:.2g})"
    if weak["p_value"] < WEAK_FORM_P_WARN:
        return (f"MODEL REJECTED: the stars' weak-form moments disagree with the model, {test}: "
                f"{weak_form_cause(weak)}; the intervals do not account for it.")
    return (f"Weak-form fit: {weak['n_stars']} stars, {weak['n_moments']} moments; over-identification test {test}: "
            "no disagreement detected.")


def member_caveat(combine: dict, bootstrap: bool = True) -> str:
    """The report's CAVEAT line for intervals combined over flow members (``post.info["combine"]``): the design and
    what its calibration on mocks measured (docs/calibration/index.md's summary table; a test keeps them equal).
    ``bootstrap``: whether the members were trained on bootstrap resamples (``psd.bootstrap``)."""
    n_res, n_seed = combine.get("n_resamples"), combine.get("seeds_per_resample")
    if not bootstrap:  # members that differ by seed only: their spread lacks the finite-sample error
        design = (f"{combine.get('n_members')} members that differ only by training seed (psd.bootstrap = false), "
                  "Rubin's rules")
        calib = ("Their spread carries the training variance but not the catalog's finite-sample error. Calibration "
                 "on mocks (docs/calibration, nfw-no-bootstrap, R = 10 only): 68 % coverage 0.60 and 95 % coverage "
                 "0.70–1.00 on an NFW-tracer mock; the calibrated design is psd.bootstrap = true")
    elif n_res:
        design = (f"{combine.get('n_members')} members = {n_res} bootstrap resamples × {n_seed} seeds; nested "
                  "Rubin's rules that count the seed (training) spread once and the resample spread in full")
        calib = ("Calibration on mocks (docs/calibration, R = 30, this design): 68 % coverage 0.57–0.70 and "
                 "95 % coverage 0.87–0.90 on the solar-neighbourhood disk mock and on a spherical NFW-tracer "
                 "mock, with occasional very wide intervals (few degrees of freedom); on the two Gaia Challenge mocks "
                 "(10⁴ stars, Zhao halo) only 5 of 8 densities fall inside their 95 % intervals: on the cored mock "
                 "the flows' bias (ρ at 0.5 and 1 kpc −24 and −44 %) lies outside them")
    else:
        design = f"{combine.get('n_members')} bootstrap members, Rubin's rules"
        calib = ("Calibration on mocks (docs/calibration, R = 30, K = 4 one per resample): conservative on the "
                 "disk mock (68 % coverage 0.73–0.80), over-covering on an NFW-tracer mock (0.87–0.90 for the "
                 "halo parameters); on the two Gaia Challenge mocks (the earlier ρ_s Zhao model) 8 of 8 densities "
                 "inside their 95 % intervals, but with NUTS unconverged (max r̂ 1.13)")
    return (f"CAVEAT: intervals combine one posterior per flow member ({design}; Student-t tails); they carry the "
            f"members' disagreement and the least-squares noise, not an error shared by all members (flow bias). "
            f"{calib}. Those coverages were measured before 2026-12-07, when the between-member part's tails were "
            "lighter (simulated at the NFW mock's training shares, 95 % coverage is now 0.025–0.054 higher; "
            "docs/calibration). "
            "An error shared by all members is not in these intervals.")


#: The flow settings of the calibration on mocks (docs/calibration ran fit_psd with its defaults).
CALIBRATED_TRAINING = ("ensemble", "n_layers", "width", "max_epochs", "patience", "batch_size", "learning_rate",
                       "bootstrap", "seeds_per_resample", "support_core", "flow", "radial_map")


def training_caveat(psd: dict, fitted: dict | None = None) -> str | None:
    """The report's CAVEAT when the run's flows were trained with settings other than those of the calibration on mocks
    (``fit_psd``'s defaults, which the pipeline's defaults equal), or None when they were not.

    ``fitted`` is the trained flows' ``info``: a ``radial_map`` given equal to what ``"auto"`` chose for this catalog
    (``info["radial_map_auto"]``: 1.0 on the disk mock, whose r₉₉/r₅₀ is 3.1; 0 for light tails or with an
    ``axis_map``) is not a difference; without that record (older flows), any radius given is one."""
    import inspect

    from ..psd import fit_psd
    from ..psd._fit import resolve_seeds_per_resample

    calibrated = {k: inspect.signature(fit_psd).parameters[k].default for k in CALIBRATED_TRAINING}

    def same(k):  # "auto" seed pairing is compared as the number of seeds it resolves to for this ensemble
        if k == "seeds_per_resample" and {"ensemble", "bootstrap"} <= set(psd):
            return (resolve_seeds_per_resample(psd["ensemble"], psd[k], psd["bootstrap"])
                    == resolve_seeds_per_resample(psd["ensemble"], calibrated[k], psd["bootstrap"]))
        if k == "radial_map" and calibrated[k] == "auto" and fitted and "radial_map_auto" in fitted:
            return psd[k] == "auto" or float(fitted["radial_map"]) == float(fitted["radial_map_auto"])
        return psd[k] == calibrated[k]

    differ = [f"{k} = {psd[k]!r} (calibrated: {calibrated[k]!r})" for k in CALIBRATED_TRAINING
              if k in psd and not same(k)]
    if psd.get("axis_map"):
        differ.append(f"axis_map = {psd['axis_map']!r} (calibrated: none)")
    if not differ:
        return None
    return ("CAVEAT: the flows were trained with settings other than those whose coverage was measured "
            f"(psd.{'; psd.'.join(differ)}): the coverage quoted above is not measured for this training.")


def limit_run_caveats(table, caught) -> list[str]:
    """Report lines for the dark-disk limit runs, whose warnings the report stage catches.

    The limit runs are shortened (≤ 2 chains, 300 warmup, 500 samples), so the report
    stage catches their warnings instead of letting each scale height print its own;
    nothing is dropped: the scale heights with r̂ > ``MAX_RHAT`` (members' included) or
    divergences are named from the table in one CAVEAT, each run's other convergence
    problems (low effective sample size) from its ``problems`` entry with its scale height,
    and every other distinct warning the filters in force let through (model warnings, …)
    once. Limits that hold more than half their credibility q under the prior alone
    (``prior_mass_below_limit`` > q/2, the prior's mass on 0 ≤ Σ ≤ limit over its mass on
    Σ ≥ 0; for a Uniform(0, b) prior the same as a limit above half the prior's own) get a
    CAVEAT of their own: the prior sets much of such a limit (a rule of thumb; at q the
    data do not limit Σ_DD at all). The prior's mass, not the ratio of the limits, is what
    makes the rule fit a LogUniform prior, whose mass sits at small Σ_DD: there a limit far
    below the prior's own can still be mostly the prior's. Limits in the prior's lowest
    1 − q above a lower end > 0 (``prior_lower_Msun_pc2``; e.g. LogUniform(a, b) with data
    that exclude everything above a) get another: the lower end sets them.

    Args:
        table: :func:`bayesdyn.results.dark_disk_limits`'s DataFrame (``max_r_hat``,
            ``num_divergences``, indexed by the scale height [kpc]).
        caught: the ``warnings.WarningMessage`` records of the runs.

    Returns:
        Lines for the run log (empty when the runs were clean).
    """
    from ..results._posterior import MAX_RHAT, ConvergenceWarning

    lines = []
    shaky = table[(table["max_r_hat"] > MAX_RHAT) | (table["num_divergences"] > 0)]
    if len(shaky):
        lines.append("[report] CAVEAT: the dark-disk limit runs (shortened chains) did not converge cleanly at h = "
                     + ", ".join(f"{h * 1e3:.0f} pc (max r̂ {r['max_r_hat']:.3f}, {int(r['num_divergences'])} "
                                 "divergences)" for h, r in shaky.iterrows())
                     + "; rerun dark_disk_limits with more warmup and samples before quoting those limits")
    q = table.attrs.get("credibility", 0.95)
    if "prior_mass_below_limit" in table:  # the credibility the prior alone gives each limit
        weak = table[table["prior_mass_below_limit"] > 0.5 * q]
        if len(weak):
            lines.append("[report] CAVEAT: the dark-disk limits at h = " + ", ".join(
                f"{h * 1e3:.0f} pc ({r['Sigma_DD_upper_Msun_pc2']:.2f} M☉/pc², {r['prior_mass_below_limit']:.0%} of "
                "the prior below it)" for h, r in weak.iterrows())
                + f" hold more than half their {q:.0%} credibility under the prior alone (whose own limit is "
                f"{weak['prior_upper_Msun_pc2'].iloc[0]:.2f} M☉/pc²): the prior sets much of them (at {q:.0%} "
                "the data do not limit Σ_DD at all); state the prior with them, and do not quote them as measured "
                "limits")
        if "prior_lower_Msun_pc2" in table:  # in the lowest 1 − q above a lower end > 0: the end sets the limit
            pinned = table[(table["prior_lower_Msun_pc2"] > 0) & (table["prior_mass_below_limit"] < 1 - q)]
            if len(pinned):
                lines.append("[report] CAVEAT: the dark-disk limits at h = " + ", ".join(
                    f"{h * 1e3:.0f} pc ({r['Sigma_DD_upper_Msun_pc2']:.3g} M☉/pc²)" for h, r in pinned.iterrows())
                    + f" lie in the lowest {1 - q:.0%} of a prior that starts at "
                    f"{pinned['prior_lower_Msun_pc2'].iloc[0]:.3g} M☉/pc²: that lower end, not the data, sets them; "
                    "quote them with it, or refit with a prior that reaches 0")
    # r̂ and divergences are in the CAVEAT above; each run's other convergence problems (ESS) come from the table, per
    # scale height, and every other distinct warning (not a ConvergenceWarning, which the table holds) once
    covered = re.compile(r"^(r̂ > |\d+ divergent transitions)")
    for h, r in table.iterrows():
        other = [p for p in str(r.get("problems") or "").split(" | ") if p and not covered.match(p)]
        if other:
            lines.append(f"[report] CAVEAT from the dark-disk limit run at h = {h * 1e3:.0f} pc: " + "; ".join(other))
    rest = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught
                         if not issubclass(w.category, ConvergenceWarning))
    for text in rest:
        lines.append(f"[report] CAVEAT from the dark-disk limit runs: {text}")
    return lines

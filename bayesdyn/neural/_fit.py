"""Fitting a neural potential (and a selection field) to the CBE residuals of scores, with optax."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import warnings
import pathlib
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import units as _units
from ..catalog._io import _json_default
from ..psd._io import _atomic_write
from ._efficiency import EFFICIENCY_OFFSET, NeuralEfficiency, NeuralTracerDensity
from ._network import Architecture, standardisation
from ._potential import NeuralPotential

__all__ = [
    "NeuralFitConfig",
    "NeuralFit",
    "fit_neural_potential",
    "fit_neural_potential_scores",
    "load_neural_fit",
    "acceleration_scale",
    "SELECTIONS",
    "NORMALIZATIONS",
]

_FOUR_PI_G = 4.0 * math.pi * _units.G

SELECTIONS = ("none", "efficiency", "tracer_density")
"""What the fit learns besides Φ: nothing, the efficiency ε(x) jointly (residual v·(s_x,obs − ∇log ε) + a·s_v),
or the true tracer density (residual v·(∇_x log p(v|x) + ∇log n_true) + a·s_v, fed with conditional scores)."""

#: With ``val_fraction=0``: how many training rows (at most) judge which weights each member keeps
VALIDATION_ROWS = 8192

NORMALIZATIONS = ("score", "none")
"""How each star's residual is scaled in the loss (see :class:`NeuralFitConfig`)."""
DENSITY_PENALTY_POINTS = ("stars", "ball")
"""Where :class:`NeuralFitConfig`'s density penalty is evaluated: at training stars, or uniformly in the ball
about the stars' centre that holds every training star."""

FORMAT = "bayesdyn.neural_fit"
#: v2 records the sha256 of ``neural.npz`` in ``neural.json`` (``arrays_sha256``), checked on load; v3 also that of
#: the header itself (``header_sha256``, as ``psd.json``: a damaged amplitude or width had loaded as another potential)
FORMAT_VERSION = 3
#: versions :func:`load_neural_fit` reads: v1 files (written before the checksums) load without them, v2 with the
#: arrays' only
READS_VERSIONS = (1, 2, 3)


def _header_sha256(header: dict[str, Any]) -> str:
    """sha256 of a neural.json header's canonical JSON, without its own ``header_sha256`` (psd.json's rule)."""
    from ..psd._io import _canonical

    return hashlib.sha256(_canonical(header)).hexdigest()


@dataclasses.dataclass(frozen=True)
class NeuralFitConfig:
    """Settings of :func:`fit_neural_potential` (JSON-serialisable).

    The loss of member k is, over a mini-batch of stars i,

        L = mean_i [ r_i / (a₀ √(|s_v,i|² + s₀²)) ]²
            + λ_ρ · mean_j relu(−∇²Φ(x_j) · L₀/a₀)
            + λ_ε · mean_j (−log ε(x_j)),

    with the CBE residual r_i = v_i·(s_x,i − ∇log ε(x_i)) + a(x_i)·s_v,i [km/s/kpc]
    (without the ε term when ``selection="none"``). Dividing by |s_v| turns each
    residual into an acceleration, r/|s_v| = (a − a_true)·ŝ_v for exact scores:
    the loss is then the mean squared error of the acceleration projected on
    random directions, in units of a₀² (a₀ = :func:`acceleration_scale`, the
    data's typical |a|); s₀ = 0.1 × median |s_v| keeps stars near the peak of
    p(v|x) (|s_v| → 0, where v·s_x is pure score noise) from dominating.
    ``normalization="none"`` uses r/(a₀ · median|s_v|) instead (plain least
    squares, as the NumPyro star-level likelihood). L₀ is the mean input scale
    [kpc]; the density penalty is on the Laplacian in units of a₀/L₀ and the
    efficiency penalty pulls log ε to 0 where the data do not constrain it.

    Attributes:
        architecture: the potential's MLP.
        selection: one of :data:`SELECTIONS`.
        selection_architecture: the selection field's MLP.
        steps: optimiser steps (Adam).
        batch_size: stars per step.
        learning_rate: initial learning rate (cosine decay to ``final_learning_rate``).
        final_learning_rate: learning rate at the last step.
        clip_norm: per-member global-norm gradient clipping.
        normalization: one of :data:`NORMALIZATIONS` (see above).
        density_penalty: λ_ρ ≥ 0 (0: none).
        efficiency_penalty: λ_ε ≥ 0 (efficiency selection only).
        penalty_points: positions per step where the penalties are evaluated.
        density_penalty_where: one of :data:`DENSITY_PENALTY_POINTS`. ``"stars"``
            draws the density penalty's points from the training stars, which
            undersample exactly the places a selection empties (dust clouds, where
            a potential that absorbed a hole would need negative density);
            ``"ball"`` draws them uniformly in the ball about the standardisation
            centre that holds every training star (ρ ≥ 0 is asked of the whole
            ball, so the stars should fill it: its radius is the farthest training
            star's distance, so a few far stars leave it mostly empty — on a Plummer
            sphere of 3000 stars the farthest at 51 kpc, a review measured the median
            |Δρ/ρ| inside 1.5 kpc 0.57 with λ_ρ = 10 in the ball, 0.17 at the stars and
            0.04 without the penalty; cut such a catalog first). The efficiency penalty is always
            at the stars. Not free, wherever it is evaluated: on the disk mock's
            clean flows, λ_ρ = 100 took ρ(⊙) from −6 % to −19 % in the ball and
            −20 % at the stars (λ_ρ = 10 in the ball: −13 %), the mass added
            where a network's density was negative being taken from the plane;
            with dust, in the ball, it halved the uncorrected in-cloud error
            (docs/gallery/notes.md, "Positivity where the stars are not").
        val_fraction: stars held out; each member keeps its best-validation weights. At 0, the weights
            kept are those with the lowest loss on up to ``VALIDATION_ROWS`` training rows drawn at random.
        eval_every: steps between validations (the last interval is shorter when it does not divide
            ``steps``: exactly ``steps`` steps run).
        bootstrap: each member fits its own bootstrap resample of the stars
            (adds the finite-sample error to the members' spread).
        scale: input length scale [kpc] (scalar or 3); default the data's per-axis
            robust spread.
        acceleration: a₀ [(km/s)²/kpc]; default :func:`acceleration_scale` of the data.
    """

    architecture: Architecture = Architecture(64, 2, "gelu")
    selection: str = "none"
    selection_architecture: Architecture = Architecture(32, 2, "gelu")
    steps: int = 3000
    batch_size: int = 2048
    learning_rate: float = 3e-3
    final_learning_rate: float = 3e-5
    clip_norm: float = 1.0
    normalization: str = "score"
    density_penalty: float = 0.0
    efficiency_penalty: float = 1e-3
    penalty_points: int = 64
    density_penalty_where: str = "stars"
    val_fraction: float = 0.1
    eval_every: int = 100
    bootstrap: bool = False
    scale: Any = None
    acceleration: float | None = None

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection={self.selection!r}; choose one of {SELECTIONS}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.normalization!r}; choose one of {NORMALIZATIONS}")
        if self.density_penalty_where not in DENSITY_PENALTY_POINTS:
            raise ValueError(f"density_penalty_where={self.density_penalty_where!r}; choose one of "
                             f"{DENSITY_PENALTY_POINTS}")
        for name in ("architecture", "selection_architecture"):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, Architecture.from_dict(value))
            elif not isinstance(value, Architecture):
                raise TypeError(f"{name} must be an Architecture, got {type(value).__name__}")
        for name in ("steps", "batch_size", "penalty_points", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name in ("learning_rate", "final_learning_rate", "clip_norm"):
            if not getattr(self, name) > 0 or (name != "clip_norm" and not np.isfinite(getattr(self, name))):
                raise ValueError(f"{name}={getattr(self, name)!r} must be positive" + ("" if name == "clip_norm"
                                                                                           else " and finite"))
        for name in ("density_penalty", "efficiency_penalty"):
            if not (getattr(self, name) >= 0 and np.isfinite(getattr(self, name))):
                raise ValueError(f"{name}={getattr(self, name)!r} must be finite and ≥ 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction!r} must be in [0, 1)")
        if self.scale is not None:
            s = np.atleast_1d(np.asarray(_units.strip(self.scale, "length", "scale"), dtype=float))
            if s.size not in (1, 3) or not np.all(s > 0):
                raise ValueError(f"scale={self.scale!r} must be a positive length or 3 of them [kpc]")
            object.__setattr__(self, "scale", tuple(float(c) for c in np.broadcast_to(s, (3,))))
        if self.acceleration is not None:
            a = float(_units.strip(self.acceleration, "acceleration", "acceleration"))
            if not a > 0:
                raise ValueError(f"acceleration={a!r} must be positive [(km/s)²/kpc]")
            object.__setattr__(self, "acceleration", a)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = dataclasses.asdict(self)
        d["scale"] = None if self.scale is None else list(self.scale)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NeuralFitConfig":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown neural-fit settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


@dataclasses.dataclass
class NeuralFit:
    """The result of :func:`fit_neural_potential`.

    Attributes:
        potential: the :class:`NeuralPotential` ensemble (one network per score member).
        selection: the fitted :class:`NeuralEfficiency` (each member normalised to
            max 1 over the training stars, so their mean may peak below 1: 0.95 in a
            3-member check) or :class:`NeuralTracerDensity`, or None.
        config: the settings.
        info: training record: ``acceleration_scale`` a₀ [(km/s)²/kpc],
            ``train_loss`` (the mini-batch objective, penalties included) and
            ``val_loss`` (the CBE residual loss alone, which picks each member's best
            weights) (evaluations × K), ``best_step`` (K), ``diverged_members`` (those
            whose last validation loss was not finite: they keep their best weights, and a
            warning says so), ``n_stars`` (rows: (x, v) pairs), ``n_positions`` (stars),
            ``n_members``, ``seed``.
    """

    potential: NeuralPotential
    selection: NeuralEfficiency | NeuralTracerDensity | None
    config: NeuralFitConfig
    info: dict[str, Any]

    @property
    def efficiency(self) -> NeuralEfficiency:
        """The fitted efficiency (``selection="efficiency"`` fits only)."""
        if not isinstance(self.selection, NeuralEfficiency):
            raise AttributeError(
                f"this fit learnt no efficiency (selection={self.config.selection!r}); refit with selection='efficiency'"
            )
        return self.selection

    def save(self, folder: str | os.PathLike) -> pathlib.Path:
        """Write ``neural.json`` (header) and ``neural.npz`` (weights) to ``folder``; no pickle.

        The header is serialised before anything is written (numpy scalars and arrays in ``info`` or the
        config become JSON numbers and lists), so a fit that cannot be saved leaves the folder as it was. The
        header records the sha256 of ``neural.npz``, which :func:`load_neural_fit` checks, and is written
        first; each file is replaced atomically (a temporary file, then a rename), so a save killed between
        the two files leaves the new header beside the old arrays, which it refuses on load (also those of a
        v1 fit), never a pair loaded with the other fit's weights.

        Raises:
            ValueError: ``info`` or the config holds a value JSON cannot write (nothing is written).
        """
        folder = pathlib.Path(folder)
        from .. import __version__

        arrays = {"potential": np.asarray(self.potential.weights)}
        if self.selection is not None:
            arrays["selection"] = np.asarray(self.selection.weights)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        blob = buf.getvalue()
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bayesdyn_version": __version__,
            "config": self.config.to_dict(),
            "potential": self.potential.header(),
            "selection": None if self.selection is None else self.selection.header(),
            "info": self.info,
            "arrays_sha256": hashlib.sha256(blob).hexdigest(),
        }
        try:
            header = json.loads(json.dumps(header, default=_json_default))  # as it will be read back
            header["header_sha256"] = _header_sha256(header)
            text = json.dumps(header, indent=1)
        except (TypeError, ValueError) as err:  # before any write: the folder keeps its previous fit whole
            raise ValueError(f"the fit's info or config cannot be written as JSON ({err}); nothing was written to "
                             f"{folder}: keep info to numbers, strings, lists and dicts (numpy scalars and "
                             "arrays are converted)") from None
        folder.mkdir(parents=True, exist_ok=True)
        # the header first: killed before the arrays, its checksum refuses the old ones, also those of a v1 fit
        # (no checksum of its own), which the other order left loadable beside the new weights
        _atomic_write(folder / "neural.json", text.encode())
        _atomic_write(folder / "neural.npz", blob)
        return folder


def load_neural_fit(folder: str | os.PathLike) -> NeuralFit:
    """Read a :class:`NeuralFit` written by :meth:`NeuralFit.save` (``np.load(allow_pickle=False)``).

    A header of format v2 records the sha256 of ``neural.npz``, one of v3 also its own; the files are read only
    when they match (a v1 header, written before the checksums, has none and loads without the checks). A
    checksum a header holds is checked whatever version it states.

    Raises:
        ValueError: missing or unreadable files (a damaged or crafted one included: a header nested too deep,
            an array whose header claims more memory than there is), another format or version, arrays whose
            sha256 is not the one the header records, or arrays that do not match the header (their names, or
            the number of members); each message names the file and the fix.
    """
    folder = pathlib.Path(folder)
    head_path, arr_path = folder / "neural.json", folder / "neural.npz"
    if not (head_path.is_file() and arr_path.is_file()):
        raise ValueError(f"{folder} holds no neural fit (neural.json and neural.npz); write one with NeuralFit.save")
    fix = "write the fit again with NeuralFit.save (or refit it)"
    try:
        header = json.loads(head_path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        raise ValueError(f"{head_path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{head_path} holds a JSON {type(header).__name__}, not a neural fit's header; {fix}")
    version = header.get("format_version")
    if header.get("format") != FORMAT:
        raise ValueError(f"{head_path} is format {header.get('format')!r}, not {FORMAT!r}: not a neural fit")
    if isinstance(version, bool) or version not in READS_VERSIONS:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise ValueError(f"{head_path} is {FORMAT!r} v{version}; this bayesdyn reads "
                         f"v{', v'.join(map(str, READS_VERSIONS))}: "
                         + ("upgrade bayesdyn to read it" if newer else "refit it with this version"))
    if version >= 3 or "header_sha256" in header:
        recorded, actual = header.get("header_sha256"), _header_sha256(header)
        if recorded != actual:
            raise ValueError(
                f"{head_path} was modified or damaged after it was written: its content no longer matches its "
                f"header_sha256 ({str(recorded)[:12]}… vs {actual[:12]}…); restore the original file, or {fix}")
    missing = [k for k in ("config", "potential", "selection", "info") if k not in header]
    if missing:
        raise ValueError(f"{head_path} lacks {missing}; {fix}")
    try:
        blob = arr_path.read_bytes()  # read once: the bytes checked are the bytes loaded
    except OSError as err:
        raise ValueError(f"{arr_path} cannot be read ({err}); {fix}") from None
    if version >= 2 or "arrays_sha256" in header:  # (a v1 label on a checksummed header had skipped the check)
        recorded, actual = header.get("arrays_sha256"), hashlib.sha256(blob).hexdigest()
        if recorded is None:
            raise ValueError(f"{head_path} is v{version} but lacks arrays_sha256, the checksum of {arr_path.name}, "
                             f"so the arrays cannot be checked; {fix}")
        if recorded != actual:
            raise ValueError(
                f"{arr_path} is not the arrays file its header {head_path.name} was saved with: its sha256 "
                f"({actual[:12]}…) is not the header's arrays_sha256 ({str(recorded)[:12]}…), so the arrays were "
                f"changed, damaged or copied from another fit after saving; {fix}")
    expected = {"potential"} | ({"selection"} if header["selection"] is not None else set())
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            files = set(z.files)
            arrays = {k: z[k] for k in expected & files}
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:  # not a zip, truncated, a broken member
        from ..catalog._io import load_error_text

        raise ValueError(f"{arr_path} cannot be read as a .npz of arrays ({load_error_text(err)}); {fix}") from None
    except MemoryError:  # a member whose .npy header claims a huge shape (a crafted or damaged file of a few bytes)
        raise ValueError(f"{arr_path} cannot be read as a .npz of arrays: a member's header claims more memory than "
                         f"there is (a damaged or crafted file); {fix}") from None
    if files != expected:
        raise ValueError(f"{arr_path} holds the arrays {sorted(files)} where its header {head_path.name} "
                         f"describes {sorted(expected)}: the two files do not belong together; {fix}")
    bad = [k for k, a in arrays.items() if not isinstance(a, np.ndarray) or a.dtype.kind != "f"]
    if bad:
        raise ValueError(f"{arr_path}: {bad} are not arrays of floats; {fix}")
    try:
        potential = NeuralPotential.from_header(header["potential"], arrays["potential"])
        selection = None
        if header["selection"] is not None:
            kinds = {c.kind: c for c in (NeuralEfficiency, NeuralTracerDensity)}
            kind = header["selection"].get("kind")
            if kind not in kinds:
                raise ValueError(f"selection kind {kind!r} is not one of {sorted(kinds)}")
            selection = kinds[kind].from_header(header["selection"], arrays["selection"])
        config = NeuralFitConfig.from_dict(header["config"])
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as err:
        raise ValueError(f"{head_path} does not describe the arrays beside it ({type(err).__name__}: {err}); "
                         f"{fix}") from None
    parts = [("potential", potential)] + ([("selection", selection)] if selection is not None else [])
    for name, part in parts:
        said = header[name].get("members")
        if said != part.n_members:
            raise ValueError(f"{arr_path} holds {part.n_members} {name} network(s), {head_path.name} says {said}; "
                             f"the two files do not belong together; {fix}")
    if selection is not None and np.size(selection.log_norm) not in (1, selection.n_members):
        raise ValueError(f"{head_path}: the selection's log_norm has {np.size(selection.log_norm)} values for "
                         f"{selection.n_members} members; {fix}")
    return NeuralFit(potential, selection, config, header["info"])


# ---------------------------------------------------------------------- inputs
def _as_members(a: Any, name: str, physical_type: str) -> np.ndarray:
    """Scores as (K, N, 3) in internal units: a Quantity converted (np.asarray had kept the numbers of one in 1/pc as
    1/kpc, accelerations 1000× too small), one of another dimension refused."""
    a = np.asarray(_units.strip(a, physical_type, name))
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (N, 3) or (K, N, 3); got {a.shape}")
    return a


def acceleration_scale(v: Any, s_x: Any, s_v: Any) -> float:
    """Typical |a| implied by the scores [(km/s)²/kpc], without fitting anything.

    In equilibrium v·s_x = −a·s_v, so t = (v·s_x)/|s_v| = −a·ŝ_v, whose spread over
    directions is |a|/√3: a₀ = √3 · (robust rms of t). Used to scale the network
    and the loss.

    Args:
        v: velocities (N, 3) [km/s].
        s_x: position scores (N, 3) or (K, N, 3) [1/kpc].
        s_v: velocity scores (N, 3) or (K, N, 3) [s/km].
    """
    v = np.asarray(_units.strip(v, "velocity", "v"), dtype=float)
    sx = _as_members(s_x, "s_x", "inverse length").mean(0)
    sv = _as_members(s_v, "s_v", "inverse velocity").mean(0)
    t = np.sum(v * sx, -1) / np.maximum(np.linalg.norm(sv, axis=-1), 1e-30)
    rms = np.sqrt(np.median(t**2)) / 0.6745
    if not (np.isfinite(rms) and rms > 0):
        raise ValueError("cannot find an acceleration scale from these scores (all v·s_x are 0 or not finite); "
                         "pass acceleration= [(km/s)²/kpc]")
    return float(np.sqrt(3.0) * rms)


def _split_rows(
    groups: Any, n: int, val_fraction: float, k: int, bootstrap: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Validation split and per-member training weights of n rows grouped by star.

    Stars, not rows, are split and resampled: all rows of a star (its own velocity
    and velocities drawn at its position) are in the validation set or in the
    training set, and share the star's bootstrap count.

    Returns:
        (train_idx, val_idx, counts (k, n), number of stars).
    """
    if groups is None:
        star = np.arange(n)
    else:
        star = np.asarray(groups)
        if star.shape != (n,) or not np.issubdtype(star.dtype, np.integer):
            raise ValueError(f"groups must be (N,) = ({n},) integers (the star of each row); got {star.dtype} {star.shape}")
        star = np.unique(star, return_inverse=True)[1].reshape(n)  # stars renumbered 0..n_groups−1
    n_groups = int(star.max()) + 1 if n else 0
    perm = rng.permutation(n_groups)
    is_val = np.zeros(n_groups, bool)
    is_val[perm[: int(round(val_fraction * n_groups))]] = True
    val_idx, train_idx = np.flatnonzero(is_val[star]), np.flatnonzero(~is_val[star])
    if bootstrap:  # resample the training stars with replacement; each row gets its star's count
        train_groups = np.flatnonzero(~is_val)
        counts = np.stack([
            np.bincount(rng.choice(train_groups, train_groups.size), minlength=n_groups)[star] for _ in range(k)
        ]).astype(float)
    else:
        counts = np.zeros((k, n))
        counts[:, train_idx] = 1.0
    return train_idx, val_idx, counts, n_groups


def fit_neural_potential_scores(
    x: Any,
    v: Any,
    s_x: Any,
    s_v: Any,
    *,
    seed: int = 0,
    config: NeuralFitConfig | None = None,
    progress: bool = False,
    groups: Any = None,
    **settings: Any,
) -> NeuralFit:
    """Fit a neural potential (and optionally a selection field) to CBE residuals of given scores.

    One network per score member k (s_x[k], s_v[k]); all members train in one
    vmapped program (Adam, cosine-decayed learning rate, per-member gradient
    clipping, shared mini-batches), each keeping its best-validation weights. The
    loss is described in :class:`NeuralFitConfig`.

    Args:
        x: star positions (N, 3) [kpc].
        v: star velocities (N, 3) [km/s].
        s_x: ∂log f/∂x at the stars, (N, 3) or (K, N, 3) [1/kpc] — the observed
            density's scores for ``selection`` "none"/"efficiency", the conditional
            ∇_x log p(v|x) for "tracer_density".
        s_v: ∂log f/∂v, (N, 3) or (K, N, 3) [s/km].
        seed: random seed (initialisation, validation split, batches, bootstrap).
        config: a :class:`NeuralFitConfig`; ``**settings`` override its fields.
        progress: print the losses at each validation.
        groups: the star each row belongs to, (N,) integers (None: every row is its
            own star). Rows of one star — its own velocity and velocities drawn from
            p(v|x) at its position — go together into the validation set or the
            training set, and the bootstrap resamples stars with all their rows, so
            that neither treats drawn velocities as independent stars.
        **settings: fields of :class:`NeuralFitConfig` (e.g. ``steps=500``).

    Returns:
        :class:`NeuralFit`.

    Raises:
        ValueError: shapes that disagree, non-finite inputs (the count of bad stars
            is named), or invalid settings.
    """
    cfg = dataclasses.replace(config or NeuralFitConfig(), **settings) if settings else (config or NeuralFitConfig())
    x = np.asarray(_units.strip(x, "length", "x"), dtype=float)
    v = np.asarray(_units.strip(v, "velocity", "v"), dtype=float)
    sx = _as_members(s_x, "s_x", "inverse length")
    sv = _as_members(s_v, "s_v", "inverse velocity")
    if x.ndim != 2 or x.shape[1] != 3 or v.shape != x.shape:
        raise ValueError(f"x and v must both be (N, 3); got {x.shape} and {v.shape}")
    n = x.shape[0]
    if sx.shape[1] != n or sv.shape != sx.shape:
        raise ValueError(f"s_x {sx.shape} and s_v {sv.shape} must be (K, {n}, 3) like x (N = {n})")
    bad = ~(np.isfinite(x).all(1) & np.isfinite(v).all(1) & np.isfinite(sx).all((0, 2)) & np.isfinite(sv).all((0, 2)))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {n} stars have NaN/inf positions, velocities or scores; drop them before fitting "
            "(e.g. unbound points of an exact Plummer score)"
        )
    k = sx.shape[0]
    if n < 16:
        raise ValueError(f"only {n} stars; a neural potential needs many more")

    dtype = jnp.result_type(float)
    rng = np.random.default_rng(seed)
    train_idx, val_idx, counts, n_groups = _split_rows(groups, n, cfg.val_fraction, k, cfg.bootstrap, rng)
    if n_groups < 16:  # rows of the same star (groups) are not more stars: 20 rows of 2 stars had passed
        raise ValueError(f"only {n_groups} stars (groups) in the {n} rows; a neural potential needs many more")
    n_val = val_idx.size
    # stars, not rows, as above (with groups, 25 rows of 8 stars passed)
    star = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].reshape(n)
    n_train = np.unique(star[train_idx]).size
    if n_train < 16:  # (standardisation's shape error did not say why)
        raise ValueError(f"only {n_train} of {n_groups} stars are left to train on after holding out val_fraction = "
                         f"{cfg.val_fraction} for validation; lower val_fraction or use more stars")
    sv_norm = np.linalg.norm(sv, axis=-1)  # (K, N)
    empty = np.flatnonzero(~(np.median(sv_norm, axis=1) > 0))  # (the weights became inf and the fit "never reached a
    if empty.size:  # finite validation loss"; a member of zeros among others returned its initial network)
        raise ValueError(f"member(s) {empty.tolist()}: more than half of the velocity scores s_v are zero "
                         f"({int(np.sum(sv_norm[empty] == 0))} of {sv_norm[empty].size}); they carry the acceleration, "
                         "so nothing can be fitted there; check the scores passed")
    center, scale = standardisation(x[train_idx], cfg.scale)
    length = float(np.mean(scale))
    a0 = cfg.acceleration or acceleration_scale(v[train_idx], sx[:, train_idx], sv[:, train_idx])
    amplitude = a0 * length

    if cfg.normalization == "score":
        s0 = 0.1 * np.median(sv_norm)
        weight = 1.0 / (a0 * np.sqrt(sv_norm**2 + s0**2))
    else:
        weight = np.full_like(sv_norm, 1.0 / (a0 * np.median(sv_norm)))
    arch, sarch = cfg.architecture, cfg.selection_architecture
    k_run = jax.random.key(int(seed))
    params = {"phi": arch.init(rng, dtype, members=k)}
    selection = cfg.selection
    if selection != "none":
        params["sel"] = sarch.init(rng, dtype, members=k)

    cj, sj = jnp.asarray(center, dtype), jnp.asarray(scale, dtype)
    amp = jnp.asarray(amplitude, dtype)

    def phi(w, xi):
        return amp * arch.apply(w, (xi - cj) / sj)

    def acc(w, xi):
        return -jax.grad(phi, argnums=1)(w, xi)

    def lap(w, xi):
        return jnp.trace(jax.jacfwd(jax.grad(phi, argnums=1), argnums=1)(w, xi))

    def sel_log(w, xi):
        u = sarch.apply(w, (xi - cj) / sj)
        return jax.nn.log_sigmoid(u + EFFICIENCY_OFFSET) if selection == "efficiency" else u

    sign = -1.0 if selection == "efficiency" else 1.0

    data = {
        "x": jnp.asarray(x, dtype),
        "v": jnp.asarray(v, dtype),
        "sx": jnp.asarray(sx, dtype),
        "sv": jnp.asarray(sv, dtype),
        "w": jnp.asarray(weight, dtype),
        "c": jnp.asarray(counts, dtype),
    }
    train_j = jnp.asarray(train_idx)
    val_j = jnp.asarray(val_idx)

    def residual_loss(p, sxk, svk, wk, ck, idx):
        xb, vb = data["x"][idx], data["v"][idx]
        a = jax.vmap(acc, in_axes=(None, 0))(p["phi"], xb)
        s_eff = sxk[idx]
        if selection != "none":
            g = jax.vmap(jax.grad(sel_log, argnums=1), in_axes=(None, 0))(p["sel"], xb)
            s_eff = s_eff + sign * g
        r = jnp.sum(vb * s_eff, -1) + jnp.sum(a * svk[idx], -1)
        c = ck[idx]
        return jnp.sum(c * (r * wk[idx]) ** 2) / jnp.maximum(jnp.sum(c), 1.0)

    def member_loss(p, sxk, svk, wk, ck, idx, pidx, xball):
        loss = residual_loss(p, sxk, svk, wk, ck, idx)
        if cfg.density_penalty > 0 or (selection == "efficiency" and cfg.efficiency_penalty > 0):
            xp = data["x"][pidx]
        if cfg.density_penalty > 0:
            xd = xball if cfg.density_penalty_where == "ball" else xp
            lp = jax.vmap(lap, in_axes=(None, 0))(p["phi"], xd)
            loss = loss + cfg.density_penalty * jnp.mean(jax.nn.relu(-lp * length / a0))
        if selection == "efficiency" and cfg.efficiency_penalty > 0:
            loss = loss - cfg.efficiency_penalty * jnp.mean(jax.vmap(sel_log, in_axes=(None, 0))(p["sel"], xp))
        return loss

    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=cfg.final_learning_rate / cfg.learning_rate)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), optax.adam(schedule))
    opt_state = jax.vmap(opt.init)(params)
    member_axes = (0, 0, 0, 0, 0, None, None, None)
    grad_fn = jax.vmap(jax.value_and_grad(member_loss), in_axes=member_axes)
    batch = min(cfg.batch_size, train_idx.size)
    n_pen = min(cfg.penalty_points, train_idx.size)
    # the ball of the "ball" density penalty: about the standardisation centre, through the farthest training star
    ball_radius = jnp.asarray(np.max(np.linalg.norm(x[train_idx] - center, axis=1)), dtype)

    def step(carry, key):
        p, s = carry
        k1, k2, k3, k4 = jax.random.split(key, 4)
        idx = train_j[jax.random.randint(k1, (batch,), 0, train_j.size)]
        pidx = train_j[jax.random.randint(k2, (n_pen,), 0, train_j.size)]
        if cfg.density_penalty > 0 and cfg.density_penalty_where == "ball":
            d = jax.random.normal(k3, (cfg.penalty_points, 3), dtype)
            rad = ball_radius * jax.random.uniform(k4, (cfg.penalty_points, 1), dtype) ** (1.0 / 3.0)
            xball = cj + rad * d / jnp.linalg.norm(d, axis=1, keepdims=True)
        else:
            xball = None
        loss, g = grad_fn(p, data["sx"], data["sv"], data["w"], data["c"], idx, pidx, xball)
        upd, s = jax.vmap(opt.update)(g, s, p)
        p = optax.apply_updates(p, upd)
        return (p, s), loss

    @functools.partial(jax.jit, static_argnums=3)
    def run_chunk(p, s, key, length):
        keys = jax.random.split(key, length)
        (p, s), losses = jax.lax.scan(step, (p, s), keys)
        return p, s, jnp.mean(losses, axis=0)

    ones = jnp.ones((k, n), dtype)
    if n_val > 0:
        eval_idx = val_j
    elif train_idx.size <= VALIDATION_ROWS:
        eval_idx = train_j
    else:  # a random subset (the first rows were one region of a catalog sorted by distance)
        eval_idx = jnp.asarray(np.sort(rng.choice(train_idx, VALIDATION_ROWS, replace=False)))

    @jax.jit
    def validate(p):
        f = jax.vmap(residual_loss, in_axes=(0, 0, 0, 0, 0, None))
        return f(p, data["sx"], data["sv"], data["w"], ones, eval_idx)

    # chunks of eval_every steps, the last one shorter: exactly cfg.steps steps (whole chunks ran up to
    # eval_every − 1 steps more, at the schedule's final rate, and best_step could exceed steps)
    chunks = [cfg.eval_every] * (cfg.steps // cfg.eval_every)
    chunks += [cfg.steps % cfg.eval_every] if cfg.steps % cfg.eval_every else []
    done = 0
    best = params
    best_val = np.full(k, np.inf)
    best_step = np.zeros(k, dtype=int)
    train_hist, val_hist = [], []
    for length in chunks:
        k_run, sub = jax.random.split(k_run)
        params, opt_state, tl = run_chunk(params, opt_state, sub, length)
        done += length
        vl = np.asarray(validate(params))
        train_hist.append(np.asarray(tl).tolist())
        val_hist.append(vl.tolist())
        improved = np.isfinite(vl) & (vl < best_val)
        if improved.any():
            m = jnp.asarray(improved)
            best = jax.tree.map(lambda b, q: jnp.where(m.reshape((-1,) + (1,) * (q.ndim - 1)), q, b), best, params)
            best_val = np.where(improved, vl, best_val)
            best_step = np.where(improved, done, best_step)
        if progress:
            print(f"step {done:6d}  train {np.round(np.asarray(tl), 5)}  val {np.round(vl, 5)}")
    if not np.all(np.isfinite(best_val)):
        raise FloatingPointError(
            f"{int((~np.isfinite(best_val)).sum())} of {k} members never reached a finite validation loss; "
            "lower learning_rate or check the scores"
        )
    diverged = np.flatnonzero(~np.isfinite(vl))  # after a finite best: its weights are kept, say so
    if diverged.size:
        warnings.warn(
            f"neural members {diverged.tolist()} diverged (non-finite validation loss) by step {done}; each keeps "
            f"its best weights, of step(s) {best_step[diverged].tolist()} of {cfg.steps}, trained less than the "
            "others: lower learning_rate (or clip_norm, the gradient clipping) and refit",
            UserWarning, stacklevel=3,
        )

    potential = NeuralPotential(best["phi"], arch, center, scale, amplitude)
    sel_obj = None
    if selection == "efficiency":
        sel_obj = NeuralEfficiency(best["sel"], sarch, center, scale).normalised(x[train_idx])
    elif selection == "tracer_density":
        sel_obj = NeuralTracerDensity(best["sel"], sarch, center, scale).normalised(x[train_idx])
    info = {
        "acceleration_scale": float(a0),
        "amplitude": float(amplitude),
        "train_loss": train_hist,
        "val_loss": val_hist,
        "best_val_loss": best_val.tolist(),
        "best_step": best_step.tolist(),
        "diverged_members": diverged.tolist(),
        "n_stars": int(n),
        "n_train": int(train_idx.size),
        "n_positions": int(n_groups),
        "n_members": int(k),
        "seed": int(seed),
    }
    return NeuralFit(potential, sel_obj, cfg, info)


def fit_neural_potential(
    psd: Any,
    catalog: Any,
    *,
    seed: int = 0,
    velocities_per_star: int = 0,
    config: NeuralFitConfig | None = None,
    progress: bool = False,
    **settings: Any,
) -> NeuralFit:
    """Fit a neural potential to a phase-space density's scores at a catalog's stars.

    Each member k of the density gives its scores (``psd.score_members``) at the
    stars (x_i, v_i); one network is fitted per member, so the spread of the
    resulting ensemble carries the density's training uncertainty (plus the fit's
    own, with ``bootstrap=True`` the finite sample too).

    ``velocities_per_star = m > 0`` adds m velocities drawn from the density's
    p(v|x_i) at each star's position: the CBE must hold for every velocity at a
    position, and several per position separate ∇log ε (which multiplies v) from
    a (which multiplies s_v) far better than one (DESIGN §3). p(v|x) is unaffected
    by a spatial selection, so these draws are valid with dust.

    With ``selection="tracer_density"``, the conditional scores ∇_x log p(v|x) =
    s_x − ∇log n_obs are used, with the ensemble-mean ∇log n_obs
    (``psd.number_density_gradient / psd.number_density``) for every member.

    Args:
        psd: a :class:`bayesdyn.psd.PhaseSpaceDensity` (or anything with
            ``score_members(x, v)`` → (K, N, 3) pairs; for
            ``velocities_per_star``, ``sample_velocities(x, n, seed)``; for
            ``selection="tracer_density"``, ``number_density(x)`` and
            ``number_density_gradient(x)``).
        catalog: the stars (``.x`` [kpc], ``.v`` [km/s]), usually the one the density was fitted to.
        seed: random seed (velocity draws and the fit).
        velocities_per_star: extra velocities m drawn from p(v|x) per star (0: only the stars' own).
        config: a :class:`NeuralFitConfig`; ``**settings`` override its fields.
        progress: print the losses at each validation.
        **settings: fields of :class:`NeuralFitConfig`.

    Returns:
        :class:`NeuralFit`; ``info["n_stars"]`` counts the (x, v) pairs used.
    """
    x = np.asarray(_units.strip(catalog.x, "length", "catalog.x"), dtype=float)  # a Quantity in pc is converted
    v = np.asarray(_units.strip(catalog.v, "velocity", "catalog.v"), dtype=float)
    n_stars = x.shape[0]
    cfg = dataclasses.replace(config or NeuralFitConfig(), **settings) if settings else (config or NeuralFitConfig())
    missing = [name for name in ("number_density", "number_density_gradient") if not hasattr(psd, name)]
    if cfg.selection == "tracer_density" and missing:  # before the draws and scores (it failed after them)
        raise TypeError(f"selection='tracer_density' needs the density's own n(x): {type(psd).__name__} has no "
                        f"{' or '.join(missing)}; pass a PhaseSpaceDensity, or use selection='efficiency'")
    m = int(velocities_per_star)
    if m < 0:
        raise ValueError(f"velocities_per_star={velocities_per_star!r} must be ≥ 0")
    if m:
        draws = np.asarray(psd.sample_velocities(x, m, seed), dtype=float)  # (N, m, 3)
        x = np.concatenate([x, np.repeat(x, m, axis=0)])
        v = np.concatenate([v, draws.reshape(-1, 3)])
    s_x, s_v = psd.score_members(x, v)
    s_x = np.asarray(s_x)
    if cfg.selection == "tracer_density":
        grad_n = np.asarray(psd.number_density_gradient(x)) / np.asarray(psd.number_density(x))[:, None]
        s_x = s_x - grad_n[None]
    groups = np.concatenate([np.arange(n_stars), np.repeat(np.arange(n_stars), m)])
    fit = fit_neural_potential_scores(x, v, s_x, np.asarray(s_v), seed=seed, config=cfg, progress=progress, groups=groups)
    fit.info["velocities_per_star"] = m
    return fit

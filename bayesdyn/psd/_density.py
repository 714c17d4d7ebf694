"""The fitted phase-space density: an ensemble of flow pairs n(x) · p(v|x)."""

from __future__ import annotations

import math
import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .. import units as _u
from . import _evaluate
from ._evaluate import evaluate, members_log_prob, members_log_prob_x, members_score, members_score_x
from ._flows import FLOWS, FlowConfig, Member, build_ensemble, prng_key
from ._io import PSDFileError, read_header, read_leaves, write_bundle
from ._transforms import Preprocessing

__all__ = ["PhaseSpaceDensity", "load_psd", "FORMAT", "FORMAT_VERSION"]

FORMAT = "bayesdyn.psd"
FORMAT_VERSION = 7  # 2: spherical support map; 3: cylindrical velocity frame; 4: cusp map; 5: spherical velocity frame;
#                     6: support map with an untouched core; 7: per-axis map
#: older versions that load_psd still reads (the transforms they lack are off)
READS_VERSIONS = (3, 4, 5, 6, 7)
#: how summary() writes the velocity frame (Preprocessing.cylindrical: 0, 1, 2)
_FRAME_LABEL = {1: "(v_R, v_φ, v_z) → ", 2: "(v_r, v_θ, v_φ) → "}


def _n_members(members: Member) -> int:
    return int(jax.tree.leaves(eqx.filter(members, eqx.is_array))[0].shape[0])


def _dtype(members: Member):
    return jax.tree.leaves(eqx.filter(members, eqx.is_inexact_array))[0].dtype


def _points(a: Any, physical_type: str, name: str, dtype) -> tuple[Any, bool]:
    """(N, 3) array in the internal unit (numpy if concrete), and whether the input was one (3,) point."""
    a = _u.strip(a, physical_type, name)
    unit = "kpc" if physical_type == "length" else "km/s"
    if isinstance(a, jax.core.Tracer):
        arr = jnp.asarray(a, dtype)
    else:
        arr = np.asarray(a)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{name} must be real numbers in {unit}; got dtype {arr.dtype}")
        arr = arr.astype(dtype)
    if arr.ndim not in (1, 2) or arr.shape[-1] != 3:
        raise ValueError(f"{name} has shape {arr.shape}; pass (N, 3) or (3,) in {unit}")
    if isinstance(arr, np.ndarray):
        bad = ~np.isfinite(arr.reshape(-1, 3)).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{name} has {int(bad.sum())} row(s) with NaN or inf (first: {np.flatnonzero(bad)[:5].tolist()}); "
                "remove them before evaluating the density"
            )
    single = arr.ndim == 1
    return (arr[None] if single else arr), single


def _out(a: Any) -> Array:
    """Results as JAX arrays (a transfer for numpy results, no compilation)."""
    return jnp.asarray(a)


def _mean0(a: Any) -> Any:
    return np.mean(a, axis=0) if isinstance(a, np.ndarray) else jnp.mean(a, axis=0)


def _rounded(values, decimals: int) -> list:
    """Values rounded for printing, in float64: float32 rounded in place printed as 0.020800000056624413."""
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


class PhaseSpaceDensity:
    """A learnt phase-space density f(x, v) = n(x) · p(v | x): an ensemble of K flow pairs.

    Made by :func:`bayesdyn.psd.fit_psd` or :func:`load_psd`. Each member k has a
    normalised density f_k(x, v) = n_k(x) p_k(v | x) [kpc⁻³ (km/s)⁻³], built from
    two flows on fixed transforms of (x, v) whose Jacobians are part of the model,
    so every log f_k and score is an exact derivative of that member's density in
    physical units.

    The ensemble density is the mean over members of log f_k,
    ``log_prob = (1/K) Σ_k log f_k`` (the log of the geometric mean of the
    members' densities; it integrates to at most 1, with equality when the members
    agree). Its scores are exactly the means of the members' scores, and
    ``score`` is the gradient of ``log_prob``. The members' spread (``*_members``)
    is the training uncertainty of the flows.

    Inputs are positions x [kpc] and velocities v [km/s], arrays of shape (N, 3)
    (or (3,) for one point; astropy Quantities are converted). Outputs are JAX
    arrays (float32). A density fitted on a sphere (``fit_psd``'s support, a
    distance-limited sample) is defined inside it only: at positions on or outside
    the ball map's surface (radius R = the sphere's × 1.002, ``info["support_radius_kpc"]``)
    every output is NaN, with no error; keep evaluation points inside the sphere.
    Rows with NaN or inf are refused with an error, except inside a user's
    ``jax.jit`` (traced inputs cannot be checked): there they give NaN outputs.
    """

    def __init__(
        self,
        members: Member,
        preprocessing: Preprocessing,
        config: FlowConfig,
        *,
        n_stars: int,
        info: dict[str, Any] | None = None,
    ):
        self._members = members
        self._prep = preprocessing
        self._config = config
        self._n_stars = int(n_stars)
        self._info = dict(info or {})
        self._k = _n_members(members)
        self._dtype = _dtype(members)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> FlowConfig:
        """The flows' architecture."""
        return self._config

    @property
    def n_members(self) -> int:
        """Ensemble size K."""
        return self._k

    @property
    def n_stars(self) -> int:
        """Number of stars the density was fitted to (normalisation of ``number_density``)."""
        return self._n_stars

    @property
    def info(self) -> dict[str, Any]:
        """Training record: settings, epochs, validation losses, history (JSON-serialisable)."""
        return self._info

    @property
    def preprocessing(self) -> Preprocessing:
        """The fixed input transforms (centres and scales in kpc and km/s)."""
        return self._prep

    @property
    def validation_nll(self) -> np.ndarray:
        """Per-member validation NLL, shape (K,): −mean log f_k over the held-out stars.

        f_k in kpc⁻³ (km/s)⁻³ (normalised to 1), so the NLL is in nats for those units.
        """
        if "val_nll" not in self._info:
            raise AttributeError("this density carries no validation record (it was not made by fit_psd)")
        return np.asarray(self._info["val_nll"])

    def _member_index(self, member: int | None) -> Array:
        if member is None:
            return jnp.asarray(-1, jnp.int32)  # the mixture
        if not isinstance(member, (int, np.integer)) or isinstance(member, bool) or not -self._k <= member < self._k:
            raise IndexError(f"member={member!r} is out of range for an ensemble of {self._k}; use 0..{self._k - 1}")
        return jnp.asarray(int(member) % self._k, jnp.int32)

    def _xv(self, x: Any, v: Any):
        x, single = _points(x, "length", "x", self._dtype)
        v, single_v = _points(v, "velocity", "v", self._dtype)
        if single != single_v or x.shape[0] != v.shape[0]:
            raise ValueError(
                f"x has shape {tuple(x.shape)} and v has {tuple(v.shape)}; pass one velocity per position"
            )
        return x, v, single

    def _log_prob_members(self, x: Any, v: Any):
        x, v, single = self._xv(x, v)
        out = evaluate(members_log_prob, self._members, self._prep, self._config, x, v)
        return (out[:, 0] if single else out)

    def _score_members(self, x: Any, v: Any):
        x, v, single = self._xv(x, v)
        sx, sv = evaluate(members_score, self._members, self._prep, self._config, x, v)
        return (sx[:, 0], sv[:, 0]) if single else (sx, sv)

    def _log_n_members(self, x: Any):
        x, single = _points(x, "length", "x", self._dtype)
        out = evaluate(members_log_prob_x, self._members, self._prep, self._config, x) + math.log(self._n_stars)
        return out[:, 0] if single else out

    # ------------------------------------------------------------------ densities
    def log_prob_members(self, x: Any, v: Any) -> Array:
        """Per-member log f_k(x, v), shape (K, N), in log [kpc⁻³ (km/s)⁻³].

        Args:
            x: positions, (N, 3) or (3,) [kpc].
            v: velocities, (N, 3) or (3,) [km/s].
        """
        return _out(self._log_prob_members(x, v))

    def log_prob(self, x: Any, v: Any) -> Array:
        """Ensemble log f(x, v) = mean over members of log f_k, shape (N,), in log [kpc⁻³ (km/s)⁻³].

        Args:
            x: positions, (N, 3) or (3,) [kpc].
            v: velocities, (N, 3) or (3,) [km/s].
        """
        return _out(_mean0(self._log_prob_members(x, v)))

    def score_members(self, x: Any, v: Any) -> tuple[Array, Array]:
        """Per-member scores (∂log f_k/∂x [kpc⁻¹], ∂log f_k/∂v [(km/s)⁻¹]), each (K, N, 3).

        Args:
            x: positions, (N, 3) or (3,) [kpc].
            v: velocities, (N, 3) or (3,) [km/s].
        """
        sx, sv = self._score_members(x, v)
        return _out(sx), _out(sv)

    def score(self, x: Any, v: Any) -> tuple[Array, Array]:
        """Ensemble scores (∂log f/∂x [kpc⁻¹], ∂log f/∂v [(km/s)⁻¹]), each (N, 3): member means.

        Args:
            x: positions, (N, 3) or (3,) [kpc].
            v: velocities, (N, 3) or (3,) [km/s].
        """
        sx, sv = self._score_members(x, v)
        return _out(_mean0(sx)), _out(_mean0(sv))

    def log_number_density_members(self, x: Any) -> Array:
        """Per-member log n_k(x) with n_k normalised to ``n_stars``, shape (K, N), log [kpc⁻³].

        Args:
            x: positions, (N, 3) or (3,) [kpc].
        """
        return _out(self._log_n_members(x))

    def number_density(self, x: Any) -> Array:
        """Number density of the tracers [stars/kpc³], shape (N,).

        exp of the member mean of log n_k(x), normalised to ``n_stars`` (the
        geometric-mean convention of :meth:`log_prob`).

        Args:
            x: positions, (N, 3) or (3,) [kpc].
        """
        log_n = _mean0(self._log_n_members(x))
        return _out(np.exp(log_n) if isinstance(log_n, np.ndarray) else jnp.exp(log_n))

    def number_density_gradient(self, x: Any) -> Array:
        """∇n(x) [stars/kpc⁴], shape (N, 3): ``number_density`` × the member mean of ∇log n_k.

        Args:
            x: positions, (N, 3) or (3,) [kpc].
        """
        xs, single = _points(x, "length", "x", self._dtype)
        grad = _mean0(evaluate(members_score_x, self._members, self._prep, self._config, xs))
        log_n = _mean0(self._log_n_members(xs))
        xp = np if isinstance(log_n, np.ndarray) else jnp
        out = xp.exp(log_n)[:, None] * grad
        return _out(out[0] if single else out)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, seed: int = 0, *, member: int | None = None) -> tuple[Array, Array]:
        """Draw n stars (x [kpc], v [km/s]), each (n, 3).

        Args:
            n: number of draws.
            seed: random seed.
            member: draw from one member; None draws from the equal-weight mixture
                of the members (stratified: ⌈n/K⌉ from each, shuffled, first n kept).
        """
        n = _count(n, "n")
        with jax.enable_x64(False):  # the same draws whatever the global x64 setting
            return _evaluate.sample(self._members, self._prep, self._config, _seed(seed), self._member_index(member), n)

    def sample_velocities(self, x: Any, n: int, seed: int = 0, *, member: int | None = None) -> Array:
        """Draw n velocities [km/s] from p(v | x) at each of M positions: shape (M, n, 3).

        Args:
            x: positions, (M, 3) or (3,) [kpc].
            n: draws per position.
            seed: random seed.
            member: draw from one member; None draws from the equal-weight mixture
                of the members (stratified per position: ⌈n/K⌉ from each, shuffled).

        Positions are drawn in blocks of ``VELOCITY_BLOCK // n`` (256 at n = 256; 128 at
        the 512 draws per node that the pipeline and ``estimate_accelerations`` ask for),
        which bounds the memory; a call within one block draws what the whole call drew
        before blocks (larger calls draw anew).
        """
        n = _count(n, "n")
        xs, single = _points(x, "length", "x", self._dtype)
        member = self._member_index(member)
        if xs.shape[0] == 0:  # no positions: no draws (it failed with a ZeroDivisionError)
            return jnp.zeros((0, n, 3), self._dtype)
        block = max(1, VELOCITY_BLOCK // n)  # positions per compiled call: bounded memory
        parts = []
        with jax.enable_x64(False):  # the same draws whatever the global x64 setting
            for i, start in enumerate(range(0, xs.shape[0], block)):
                xb = xs[start : start + block]
                m = xb.shape[0]
                if i and m < block:  # the last block padded to the others' shape: one compiled program
                    xb = jnp.concatenate([xb, jnp.broadcast_to(xb[-1:], (block - m, 3))])
                # block 0 keeps the seed (so up to VELOCITY_BLOCK draws are what they were), the others their own
                s = _seed(seed) if i == 0 else _seed(int(np.random.SeedSequence([int(seed) % 2**32, i])
                                                         .generate_state(1)[0]))
                parts.append(_evaluate.sample_velocities(self._members, self._prep, self._config, s, member, xb, n)[:m])
        v = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
        return v[0] if single else v

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> None:
        """Save to ``folder`` as ``psd.json`` (header) and ``psd.eqx`` (arrays); no pickle.

        Args:
            folder: destination folder (created if missing; existing files replaced).
        """
        from .. import __version__

        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bayesdyn_version": __version__,
            "flow": self._config.to_dict(),
            "ensemble": self._k,
            "n_stars": self._n_stars,
            "dtype": np.dtype(self._dtype).name,
            "info": self._info,
        }
        write_bundle(folder, "psd", header, (self._members, self._prep))

    def summary(self) -> str:
        """A readable description: architecture, transforms, training and validation record."""
        from ._fit import SUPPORT_MARGIN  # (_fit imports this module)

        c = self._config
        p = self._prep
        lines = [
            f"PhaseSpaceDensity: ensemble of {self._k} × [n(x), p(v|x)], fitted to {self._n_stars} stars",
            f"  flows: {c.flow} ({FLOWS[c.flow]}), {c.n_layers} layers, width {c.width}, "
            f"depth {c.depth}, activation {c.activation}"
            + ("; p(v|x) also conditioned on log|u|" if c.radial_condition else ""),
            "  transforms: x → "
            + (
                f"y = (x − x₀)/R → y·atanh|y|/|y| (x₀ = {_rounded(p.support_center, 4)} kpc, "
                f"R = {float(p.support_radius):.4g} kpc, the support sphere's × {SUPPORT_MARGIN:g}"
                + (f"; identity inside |y| < {float(p.support_core):g}" if float(p.support_core) > 0 else "")
                + ") → "
                if float(p.support_radius) > 0
                else ""
            )
            + "(· − c)/s"
            + (
                f" → ·(r²/(r² + c²))^((p−1)/2) (p = {float(p.cusp_power):.3f}, c = {float(p.cusp_core):.3g})"
                if float(p.cusp_power) > 0
                else ""
            )
            + (f" → ·s·asinh(r/s)/r (s = {float(p.radial_scale):g})" if float(p.radial_scale) > 0 else "")
            + (f" → s_i·asinh(·/s_i) per axis (s = {_rounded(p.axis_scale, 4)})"
               if np.any(np.asarray(p.axis_scale) > 0) else "")
            + f"; c = {_rounded(p.x_loc, 4)}, "
            f"s = {_rounded(p.x_scale, 4)}"
            + (" (mapped units)" if float(p.support_radius) > 0 else " kpc"),
            f"              v → {_FRAME_LABEL.get(round(float(p.cylindrical)), '')}(v − m)/σ; "
            f"m = {_rounded(p.v_loc, 3)} km/s, "
            f"σ = {_rounded(p.v_scale, 3)} km/s",
        ]
        i = self._info
        if "epochs" in i:
            t = i.get("training", {})
            lines.append(
                f"  training: {i['epochs']} epochs ({'early stop' if i.get('stopped_early') else 'max_epochs'}), "
                f"{i.get('seconds', float('nan')):.1f} s ({i.get('seconds_per_epoch', float('nan')):.2f} s/epoch), "
                f"batch {t.get('batch_size')}, lr {t.get('learning_rate')}, clip {t.get('clip_norm')}, "
                f"bootstrap {t.get('bootstrap')}, seed {i.get('seed')}; "
                f"{i.get('n_train')} train / {i.get('n_val')} validation stars"
            )
        if "val_nll" in i:
            lines.append("  validation NLL per member [−mean log f, log(kpc⁻³ (km/s)⁻³)]:")
            for k in range(self._k):
                lines.append(
                    f"    member {k}: {i['val_nll'][k]:.4f}  (n(x): {i['val_nll_x'][k]:.4f}, "
                    f"p(v|x): {i['val_nll_v'][k]:.4f}; best epochs {i['best_epoch'][k]})"
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        c = self._config
        return (
            f"PhaseSpaceDensity(ensemble={self._k}, flow={c.flow!r}, n_layers={c.n_layers}, "
            f"width={c.width}, n_stars={self._n_stars})"
        )



#: velocity draws (positions × n) per compiled call of sample_velocities: all of them in one program took ~1.1 GB per
#: 1000 positions at n = 256 (K = 4), 9 GB at 8192 (a review's measurement); in blocks, ~0.5 GB whatever the count
VELOCITY_BLOCK = 65_536


def _seed(seed: Any) -> Array:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed={seed!r} must be an integer")
    return jnp.asarray(np.uint32(int(seed) % 2**32))


def _count(n: Any, name: str) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name}={n!r} must be a positive integer")
    return int(n)


def _skeleton(config: FlowConfig, k: int, dtype, version: int = FORMAT_VERSION) -> tuple[Member, Preprocessing]:
    """A freshly built density of the saved architecture, to be filled from the file.

    For format 3 the cusp-map fields, before format 6 the support core and before
    format 7 the per-axis map are None (no leaves, as in the file) and are set to
    "off" after reading.
    """
    members = build_ensemble(prng_key(0), config, k)
    if _dtype(members) != dtype:
        members = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, members)
    z = jnp.zeros(3, dtype)
    s = jnp.zeros((), dtype)
    cusp = (s, s) if version >= 4 else (None, None)
    core = s if version >= 6 else None
    axes = z if version >= 7 else None
    return members, Preprocessing(z, z, z, z, s, z, s, s, *cusp, core, axes)


def load_psd(folder: str | os.PathLike) -> PhaseSpaceDensity:
    """Load a density saved with :meth:`PhaseSpaceDensity.save` (no pickle, no code run).

    Args:
        folder: the folder given to ``save``.

    Raises:
        PSDFileError: missing files, a header or arrays file modified after saving
            (checksums), or arrays that do not fit the architecture in the header.
    """
    header = read_header(folder, "psd", FORMAT)
    version = header.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise PSDFileError(
            f"psd.json has format_version {version}, newer than this bayesdyn reads ({FORMAT_VERSION}); "
            "upgrade bayesdyn"
        )
    if version not in READS_VERSIONS:
        raise PSDFileError(
            f"psd.json has format_version {version!r}; this bayesdyn reads versions {list(READS_VERSIONS)} — "
            "refit the density with this version (bayesdyn.fit_psd or `bayesdyn fit-psd`)"
        )
    try:
        config = FlowConfig.from_dict(header["flow"])
        k, n_stars = header["ensemble"], header["n_stars"]
        for name, value in (("ensemble", k), ("n_stars", n_stars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r} is not a positive integer")
        dtype = np.dtype(header["dtype"])
        if dtype.kind != "f":
            raise ValueError(f"dtype {dtype} is not a float type")
        info = header.get("info", {})
        if not isinstance(info, dict):
            raise ValueError(f"info is a {type(info).__name__}, not a mapping")
    except (KeyError, TypeError, ValueError) as err:
        raise PSDFileError(f"psd.json has an invalid architecture entry ({err}); the file is damaged") from None
    members, prep = read_leaves(folder, header, _skeleton(config, k, dtype, version))
    if version < 4:
        off = jnp.zeros((), dtype)
        prep = eqx.tree_at(lambda p: (p.cusp_power, p.cusp_core), prep, (off, off),
                           is_leaf=lambda a: a is None)
    if version < 6:
        prep = eqx.tree_at(lambda p: p.support_core, prep, jnp.zeros((), dtype), is_leaf=lambda a: a is None)
    if version < 7:
        prep = eqx.tree_at(lambda p: p.axis_scale, prep, jnp.zeros(3, dtype), is_leaf=lambda a: a is None)
    return PhaseSpaceDensity(members, prep, config, n_stars=n_stars, info=info)

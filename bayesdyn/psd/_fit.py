"""fit_psd: learn f(x, v) = n(x) · p(v|x) from a Catalog with an ensemble of flow pairs."""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import units as _u
from ._density import PhaseSpaceDensity
from ._flows import FlowConfig
from ._train import TrainConfig, data_sha256, train_ensemble
from ._transforms import Preprocessing, robust_loc_scale
from ._transforms import cusp_map as cusp_map_fn

__all__ = ["fit_psd"]


@jax.jit
def _to_latent(prep: Preprocessing, x, v):
    u, ldx = prep.position_to_latent(x)
    w, ldv = prep.velocity_to_latent(v, x)
    return u, w, ldx, ldv


#: "auto" applies the radial map when the standardised radii have a heavy tail:
#: r₉₉/r₅₀ above this (a 3D Gaussian gives 2.2, a uniform ball 1.3, a Plummer
#: sphere 9, a Student t with 4 degrees of freedom 3.8).
TAIL_RATIO = 3.0
#: The radius of the map chosen by "auto" for heavy tails [robust standard deviations].
AUTO_RADIUS = 1.0


def _radius(radial_map: Any, z: np.ndarray) -> tuple[float, str]:
    """The radial map's radius s and how it was chosen; z are standardised positions."""
    if isinstance(radial_map, str):
        if radial_map != "auto":
            raise ValueError(f"radial_map={radial_map!r}: pass 'auto', a radius ≥ 0, or False")
        r = np.linalg.norm(z, axis=1)
        r50, r99 = np.percentile(r, [50, 99])
        ratio = float(r99 / r50) if r50 > 0 else float("inf")
        s = AUTO_RADIUS if ratio > TAIL_RATIO else 0.0
        return s, f"auto: r99/r50 = {ratio:.2f} {'>' if s else '≤'} {TAIL_RATIO:g}"
    if radial_map is True:
        return AUTO_RADIUS, "given (True)"
    if radial_map is False or radial_map is None:
        return 0.0, "given (off)"
    if not isinstance(radial_map, (int, float, np.floating)) or not (np.isfinite(radial_map) and radial_map >= 0):
        raise ValueError(
            f"radial_map={radial_map!r} must be 'auto', a radius ≥ 0 in robust standard deviations, or False"
        )
    return float(radial_map), "given"


def _axes(axis_map: Any) -> np.ndarray:
    """The per-axis map's radii s_i (3,), zeros for None; ValueError names a bad entry (the pipeline's check too)."""
    if axis_map is None or axis_map is False:
        return np.zeros(3)
    items = list(axis_map) if isinstance(axis_map, (list, tuple, np.ndarray)) else []
    number = (int, float, np.integer, np.floating)
    if len(items) != 3 or not all(isinstance(a, number) and not isinstance(a, (bool, np.bool_))
                                  and np.isfinite(a) and a >= 0 for a in items):
        raise ValueError(
            f"axis_map={axis_map!r} must be three radii ≥ 0 in robust standard deviations, one per axis "
            "(0: that axis unmapped), e.g. (0, 0, 1) for a disk's vertical axis; or None"
        )
    return np.asarray(items, dtype=float)


#: "auto" uses a recorded support sphere only when the stars reach its edge:
#: max distance from its centre ≥ this fraction of its radius.
SUPPORT_REACH = 0.98
#: The ball map's radius is the support radius times this (stars on the very edge
#: stay at finite mapped positions in float32).
SUPPORT_MARGIN = 1.002


def sphere_argument(value: Any, name: str, other: str) -> tuple[np.ndarray, float]:
    """A (centre (3,) [kpc], radius [kpc]) argument, checked; ``other`` lists the argument's other accepted
    values for the error message."""
    try:
        center, radius = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be {other} or (center [kpc] (3,), radius [kpc])") from None
    try:  # lengths as Quantities are converted (a centre in pc was read as kpc)
        c = np.asarray(_u.strip(center, "length", f"{name} centre"), float).reshape(3)
        r = float(np.asarray(_u.strip(radius, "length", f"{name} radius"), float))
    except _u.UnitError:
        raise
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be {other} or (center [kpc] (3,), radius [kpc])") from None
    if not (np.isfinite(c).all() and np.isfinite(r) and r > 0):
        raise ValueError(f"{name} radius must be > 0 kpc and the centre finite; got {c.tolist()}, {r}")
    return c, r


def _support_spheres(catalog: Any) -> list[tuple[np.ndarray, float, str]]:
    """Spherical selections recorded with a catalog: (centre [kpc], radius [kpc], where)."""
    meta = getattr(catalog, "meta", None) or {}
    out = []
    for i, s in enumerate(meta.get("support_spheres", []) or []):
        out.append((np.asarray(s["center_kpc"], float), float(s["radius_kpc"]), f"meta['support_spheres'][{i}]"))
    params = ((meta.get("truth") or {}).get("params") or {}) if isinstance(meta, dict) else {}
    if "sphere_center_kpc" in params and "sphere_radius_kpc" in params:
        out.append(
            (np.asarray(params["sphere_center_kpc"], float), float(params["sphere_radius_kpc"]), "the mock's sphere")
        )
    return out


#: radial_condition="auto": the index k of N(<r) ∝ r^k fitted to the innermost
#: CUSP_QUANTILE % of the standardised radii; k < CUSP_MAX_K counts as a cusp
CUSP_QUANTILE = 10.0
CUSP_MAX_K = 2.2


def _inner_count_index(z: np.ndarray) -> tuple[float, float]:
    """(k, r_q): maximum-likelihood index of N(<r) ∝ r^k over the innermost CUSP_QUANTILE % of the radii |z|
    (k = 3, a uniform core, when there are too few), and r_q, their outer radius (units of z)."""
    r = np.linalg.norm(z, axis=1)
    rq = float(np.percentile(r, CUSP_QUANTILE))
    inner = r[(r < rq) & (r > 0)]
    k = inner.size / float(np.sum(np.log(rq / inner))) if inner.size > 10 else 3.0
    return k, rq


def _cusp(cusp_map: Any, z: np.ndarray, bounded: bool, cusp: bool) -> tuple[float, float, str]:
    """(p, c, rule) of the cusp map: "auto" uses p = k/3 over the innermost CUSP_QUANTILE %, c = 2 r_q."""
    if cusp_map is None or cusp_map is False:
        return 0.0, 0.0, "off"
    if not isinstance(cusp_map, str):
        try:
            power, core = (float(a) for a in cusp_map)
        except (TypeError, ValueError):
            raise ValueError(f"cusp_map={cusp_map!r} must be 'auto', None, or (power, core)") from None
        if not (0 < power <= 1 and core > 0):
            raise ValueError(f"cusp_map power must be in (0, 1] and core > 0 (standardised units); got {power}, {core}")
        return power, core, "given"
    if cusp_map != "auto":
        raise ValueError(f"cusp_map={cusp_map!r}: pass 'auto', None, or (power, core)")
    if bounded or not cusp:
        return 0.0, 0.0, "auto: off (no central cusp detected, or a sample cut to a sphere)"
    k, rq = _inner_count_index(z)
    power = float(np.clip(k / 3.0, 1.0 / 3.0, 1.0))
    return power, 2.0 * rq, f"auto: inner N(<r) ∝ r^{k:.2f} → p = {power:.3f}, c = {2 * rq:.3g} (standardised units)"


def _radial_condition(radial_condition: Any, z: np.ndarray, bounded: bool) -> tuple[bool, str]:
    """Whether p(v|x) is also conditioned on log|u|, and the rule that chose it."""
    if isinstance(radial_condition, bool):
        return radial_condition, "given"
    if radial_condition != "auto":
        raise ValueError(f"radial_condition={radial_condition!r}: pass 'auto', True or False")
    if bounded:
        return False, "auto: off for a sample cut to a sphere (a patch of a larger system)"
    k, _ = _inner_count_index(z)
    cusp = bool(k < CUSP_MAX_K)
    return cusp, (
        f"auto: inner star counts N(<r) ∝ r^{k:.2f} (innermost {CUSP_QUANTILE:g} %) → "
        + ("a cusp: on" if cusp else f"no cusp (k ≥ {CUSP_MAX_K:g}): off")
    )


def _support(support: Any, catalog: Any, x: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Centre [kpc], radius [kpc] (0: none) and the rule of the spherical support map."""
    if support is None or support is False:
        return np.zeros(3), 0.0, "off"
    if isinstance(support, str):
        if support != "auto":
            raise ValueError(f"support={support!r}: pass 'auto', None, or (center [kpc] (3,), radius [kpc])")
        best = None
        for c, r, where in _support_spheres(catalog):
            d = np.linalg.norm(x - c, axis=1).max()
            if d <= r * (1 + 1e-6) and d >= SUPPORT_REACH * r and (best is None or r < best[1]):
                best = (c, r, f"auto: {where}, stars reach {d / r:.4f} of its radius")
        if best is None:
            return np.zeros(3), 0.0, "auto: no recorded sphere bounds the stars"
        c, r, rule = best
        return c, r * SUPPORT_MARGIN, rule
    c, r = sphere_argument(support, "support", "'auto', None")
    d = np.linalg.norm(x - c, axis=1)
    outside = int((d > r).sum())
    if outside:
        raise ValueError(
            f"{outside} of {x.shape[0]} stars lie outside the support sphere (centre {c.tolist()} kpc, radius "
            f"{r:g} kpc; farthest at {d.max():.6g} kpc); select them with catalog.within({r:g}, center) or "
            "pass a larger radius"
        )
    return c, r * SUPPORT_MARGIN, "given"


#: "auto" picks the cylindrical velocity frame for samples whose stars all lie
#: farther than this from the z axis [kpc] ...
FRAME_MIN_R = 1.0
#: ... and span less than this in azimuth [degrees].
FRAME_MAX_SPAN_DEG = 60.0


#: "auto" picks the spherical frame (about the origin) for samples that surround
#: it: |median position| / median radius and the length of the mean direction
#: x/|x| both below this (a patch seen from afar has both near 1) ...
FRAME_MAX_OFFSET = 0.25
#: ... and whose velocities are anisotropic about it: |β| ≥ this, with
#: β = 1 − ⟨v_t²⟩ / (2⟨v_r²⟩) over the sample (isotropic: 0; the Gaia Challenge
#: Osipkov–Merritt mocks: 0.64–0.70). On the isotropic NFW-tracer mock the
#: spherical frame biased ρ_s by +10 to +20 % over 9 realisations (Cartesian:
#: −0.7 % over 30), so an isotropic sphere keeps the Cartesian frame.
FRAME_MIN_ANISOTROPY = 0.2

#: Preprocessing.cylindrical's code for each velocity frame
FRAMES = {"cartesian": 0.0, "cylindrical": 1.0, "spherical": 2.0}


def _anisotropy(x: np.ndarray, v: np.ndarray) -> float:
    """β = 1 − ⟨v_t²⟩ / (2⟨v_r²⟩) of the sample about the origin (x [kpc], v [km/s], (N, 3))."""
    r = np.linalg.norm(x, axis=1)
    rhat = x / np.maximum(r, 1e-30)[:, None]
    vr2 = np.sum(v * rhat, axis=1) ** 2
    vt2 = np.sum(v * v, axis=1) - vr2
    return float(1.0 - vt2.mean() / (2.0 * max(vr2.mean(), 1e-30)))


def _frame(velocity_frame: Any, x: np.ndarray, v: np.ndarray) -> tuple[float, str]:
    """The frame's code (``FRAMES``: 0 Cartesian, 1 cylindrical, 2 spherical) and the rule that chose it."""
    if velocity_frame in FRAMES:
        return FRAMES[velocity_frame], "given"
    if velocity_frame != "auto":
        raise ValueError(
            f"velocity_frame={velocity_frame!r}: pass 'auto', 'cartesian', 'cylindrical' or 'spherical'"
        )
    r = np.hypot(x[:, 0], x[:, 1])
    phi = np.arctan2(x[:, 1], x[:, 0])
    mean = np.arctan2(np.mean(np.sin(phi)), np.mean(np.cos(phi)))
    span = float(np.degrees(np.ptp(np.angle(np.exp(1j * (phi - mean))))))
    if r.min() > FRAME_MIN_R and span < FRAME_MAX_SPAN_DEG:
        return FRAMES["cylindrical"], f"auto: min R = {r.min():.3g} kpc, azimuth span {span:.1f}° → cylindrical"
    rr = np.linalg.norm(x, axis=1)
    offset = float(np.linalg.norm(np.median(x, axis=0)) / max(np.median(rr), 1e-30))
    rhat = x / np.maximum(rr, 1e-30)[:, None]
    pointing = float(np.linalg.norm(rhat.mean(axis=0)))
    centred = offset < FRAME_MAX_OFFSET and pointing < FRAME_MAX_OFFSET
    how = (f"auto: min R = {r.min():.3g} kpc, azimuth span {span:.1f}°; |median x|/median r = {offset:.3f}, "
           f"|mean r̂| = {pointing:.3f}")
    if not centred:
        return FRAMES["cartesian"], how + " → cartesian"
    beta = _anisotropy(x, v)
    how += f" (both < {FRAME_MAX_OFFSET:g}: a system around the origin); anisotropy β = {beta:.3f}"
    if abs(beta) >= FRAME_MIN_ANISOTROPY:
        return FRAMES["spherical"], how + f" (|β| ≥ {FRAME_MIN_ANISOTROPY:g}) → spherical"
    return FRAMES["cartesian"], how + f" (|β| < {FRAME_MIN_ANISOTROPY:g}: isotropic) → cartesian"


def fit_psd(
    catalog: Any,
    ensemble: int = 4,
    seed: int = 0,
    *,
    flow: str = "maf",
    n_layers: int = 8,
    width: int = 64,
    depth: int = 1,
    activation: str = "gelu",
    radial_map: float | str = "auto",
    axis_map: Any = None,
    support: Any = "auto",
    support_core: float = 0.0,
    velocity_frame: str = "auto",
    radial_condition: Any = "auto",
    cusp_map: Any = "auto",
    batch_size: int = 512,
    max_epochs: int = 30,
    patience: int = 10,
    val_fraction: float = 0.1,
    learning_rate: float = 1e-2,
    final_learning_rate: float = 1e-5,
    clip_norm: float = 1.0,
    bootstrap: bool = True,
    seeds_per_resample: int | str = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PhaseSpaceDensity:
    """Learn the phase-space density of a catalog with an ensemble of flow pairs.

    Each of the K members is a pair of flowjax flows: n(x) on the positions and
    p(v | x) on the velocities conditioned on the positions, so that
    f(x, v) = n(x) p(v | x). Positions are centred and scaled per axis (median,
    1.4826 × MAD) and, for heavy-tailed samples, radially mapped,
    z → z·s·asinh(|z|/s)/|z|; velocities are centred and scaled per axis. Both transforms are part of
    the model (their log-Jacobians enter log f), so scores are exact derivatives of
    the density in physical units.

    All K members train in one vmapped program (a whole epoch is one jitted call):
    Adam with a cosine-decaying learning rate, gradients clipped per flow by global
    norm, a held-out validation set shared by the members, and early stopping that
    keeps each flow's best-validation parameters. Results are deterministic given
    ``seed`` (and the same JAX version and machine).

    Args:
        catalog: a :class:`bayesdyn.Catalog` (``.x`` [kpc] and ``.v`` [km/s], (N, 3)).
        ensemble: number of members K.
        seed: random seed (split, initialisation, shuffling, bootstrap).
        flow: architecture, one of ``"maf"`` (masked autoregressive flow with affine
            transformers; default, fast batched scores), ``"sas_maf"`` (each affine
            transformer preceded by a smooth sinh-arcsinh one, so every conditional
            also learns skew and tail weight; fast batched scores, ~1.2× the training
            time; opt-in: on the disk mock, without the radial map, better vertical
            slopes at |z| = 1 kpc but a worse calibrated density at the Sun, and 2 of
            25 fits diverged: docs/flows.md), ``"coupling"``,
            ``"spline_maf"``, ``"spline_coupling"`` (DESIGN §9: spline flows gave
            poor scores).
        n_layers: flow layers per flow.
        width: conditioner hidden width.
        depth: conditioner hidden layers.
        activation: conditioner activation (``"gelu"``, ``"silu"``, ``"tanh"``,
            ``"softplus"``, ``"elu"``, ``"relu"``); use a smooth one for scores.
        radial_map: the radial map z → z·s·asinh(|z|/s)/|z| of the standardised
            positions z (linear inside s, logarithmic outside: heavy tails become
            light). ``"auto"`` uses s = 1 robust standard deviation when the radii
            have a heavy tail (r₉₉/r₅₀ > 3, e.g. a Plummer sphere) and no map
            otherwise (a Gaussian); or give s ≥ 0 (0 or False: no map). A thin
            disk cut to a sphere can pass the test in its standardised
            coordinates: the disk mock does (r₉₉/r₅₀ = 3.1), and there the map is
            a measured trade-off — slopes within 0.4 kpc of the plane (the
            density at the Sun) better with it, at |z| = 1 kpc and near the
            sphere's edge better without (docs/flows.md,
            ``benchmarks/radial_map_disk.py``).
        axis_map: per-axis radii (s_x, s_y, s_z) ≥ 0 in robust standard
            deviations of the map z_i → s_i·asinh(z_i/s_i) of the standardised
            positions (0 leaves an axis unmapped), applied instead of the radial
            map: e.g. ``(0, 0, 1)`` makes a disk's vertical tails light and leaves
            the in-plane directions, and so the slopes near a support sphere's
            edge, untouched. None or all zeros (default None): no per-axis map.
            With a radius > 0 it turns ``radial_map="auto"`` off; with an
            explicit radial radius > 0 it is an error.
        support: a sphere that bounds the sample by selection, ``(center [kpc] (3,),
            radius [kpc])``: positions are mapped from the ball onto all of space
            (y = (x − c)/R → y·atanh|y|/|y|, with its Jacobian in log f), so the
            flows need not represent the sample's sharp edge — a smooth flow smears
            such an edge and biases ∂log n/∂x far inside it. ``"auto"`` (default)
            uses the smallest sphere recorded with the catalog
            (``catalog.meta['support_spheres']``, written by ``Catalog.within`` and
            ``in_volume(center=, radius=)``, or a mock's sphere) whose edge the
            stars reach (farthest star ≥ 98 % of its radius); None for no map.
        support_core: the fraction r₀ ∈ [0, 1) of the support's radius that the
            support map leaves untouched: 0 (default) maps the whole ball with
            atanh; r₀ > 0 uses the identity inside r₀ R and stretches only the
            outer shell (``ball_map``). On the disk mock (2 kpc sphere, K = 2,
            30 epochs; ``benchmarks/support_core.py``) the atanh map made
            ∂log n/∂z at |z| = 1 kpc 9–14 % too shallow (r₀ = 0.6: 0.5–2.4 %;
            no map: −12 to +4 %), while r₀ = 0.6 made the slopes 1.8 kpc from
            the centre worse, and the disk calibration (R = 15) got worse:
            ρ_tot(⊙) −4.4 %, 95 % coverage 0.73–0.87 (see docs/flows.md).
        velocity_frame: ``"cartesian"``, ``"cylindrical"`` (velocities rotated
            into (v_R, v_φ, v_z) about the z axis at each star before they are
            standardised: a disk's rotation, whose direction turns with azimuth,
            is then exact instead of learnt by the conditional flow),
            ``"spherical"`` (rotated into (v_r, v_θ, v_φ) about the origin: the
            radially elongated velocity ellipsoid of an anisotropic sphere is
            then aligned with the axes at every position) or ``"auto"``:
            cylindrical when every star is farther than 1 kpc from the z axis
            and the sample spans < 60° in azimuth (a patch of a disk seen from
            off the axis); spherical when the stars surround the origin
            (|median x| < 0.25 × the median radius and |mean x/|x|| < 0.25: a
            spherical system in its own frame) and their velocities are
            anisotropic about it (|β| ≥ 0.2, β = 1 − ⟨v_t²⟩/(2⟨v_r²⟩); on the
            isotropic NFW-tracer mock the spherical frame biased ρ_s by +10 to
            +20 %); Cartesian otherwise. On a
            Gaia-Challenge-like Osipkov–Merritt dwarf (10⁴ stars, r_a = r* =
            0.1 kpc; ``benchmarks/score_bias.py --mock om-dwarf``) the
            spherical frame took the flows' a_r between 0.5 and 1 kpc from
            0.21 to 0.78 of the truth, and between 0.25 and 0.5 kpc from 0.60
            to 1.00.
        radial_condition: also condition p(v|x) on ½ log(|u|² + ε²) of the
            latent position u (the standardised position after the cusp and radial
            maps; ``FlowConfig.radial_condition``), so that the
            velocity distribution can change quickly with radius near a centre.
            Without it, the velocity scores inside the r⁻¹ tracer cusp of an NFW
            mock were 12 % too small and the accelerations there 14 % too strong;
            with it, within 3 %. ``"auto"`` (default): on when the star counts
            have a central cusp (N(<r) ∝ r^k with k < 2.2 over the innermost 10 %
            of the stars; a cored sphere has k ≈ 3) and the sample is not cut to
            a sphere (``support``); or True / False.
        cusp_map: stretch a central cusp of the star counts into a core,
            z → z·(r²/(r² + c²))^((p−1)/2) on the standardised positions, whose
            Jacobian (in log f) carries the r^(3p−3) cusp that a smooth flow would
            smear. ``"auto"`` (default): on when ``radial_condition="auto"``
            detected a cusp, with p = k/3 and c = 2 × the radius of the innermost
            10 % of the stars; or ``(p, c)``; None for no map. Together with the
            radial condition, on the NFW-tracer mock (R = 30) the bias of ρ(r_s)
            went from −14 % to the figures in docs/calibration.
        batch_size: stars per mini-batch.
        max_epochs: maximum passes over the training stars.
        patience: training ends once every flow has gone this many epochs without
            a better validation loss (until then all flows train, and a later
            improvement still replaces a flow's kept parameters).
        val_fraction: fraction of stars held out for validation (0 < f < 1).
        learning_rate: initial Adam learning rate.
        final_learning_rate: learning rate reached at ``max_epochs`` (cosine decay).
        clip_norm: global-norm gradient clipping threshold, per flow.
        bootstrap: train each member on its own bootstrap resample of the
            training stars (default), so that the members' spread carries the
            finite-sample uncertainty as well as the training variance; False
            gives members that differ only by seed.
        seeds_per_resample: L, members trained on each bootstrap resample with
            different seeds (K/L resamples; K must be a multiple of L). With
            L ≥ 2 the members' spread splits into a between-resample part and a
            training (seed) part, which :func:`bayesdyn.inference.combine_members`
            weighs apart (``info["resample_groups"]``). ``"auto"`` (default): L = 1,
            one member per resample (Rubin's rules, K − 1 degrees of freedom). Until
            2026-12-07 it was L = 2 for an even K ≥ 4 with ``bootstrap``: Rubin's rules
            count the training variance at full weight though the member mean
            averages it down, and over-covered on the NFW-tracer mock (68 % coverage
            of ρ_s 0.90 at R = 30; with L = 2: 0.70; docs/calibration); but with the
            resample part's own uncertainty drawn honestly (J − 1 = 1 degree of
            freedom at K = 4), pairs cover like one member per resample at 68 % and
            give 95 % intervals 2.5× as wide in simulation (``python
            benchmarks/rubin_design.py``), and the demo's dark-disk limits went to the
            prior's edge (docs/flows.md). The value used is
            ``info["training"]["seeds_per_resample"]`` (absent when 1).
        checkpoint_dir: if given, the full training state is written there after
            every epoch (``checkpoint.json`` + ``checkpoint-<sha256>.eqx``, no pickle;
            a kill during a write keeps the previous epoch's pair), and a call with
            the same data and settings resumes from it.
        progress: show a progress bar with the running training and validation
            losses (in the flows' standardised variables).

    Returns:
        The fitted :class:`PhaseSpaceDensity`; ``.info`` holds the training record
        and ``.validation_nll`` the per-member validation NLL in physical units.

    Raises:
        TypeError: ``catalog`` is not a Catalog-like object with ``.x`` and ``.v``.
        ValueError: invalid settings, or too few stars for the batch size.
        bayesdyn.psd.PSDFileError: a checkpoint written with other data or settings.
        FloatingPointError: training diverged (no finite validation loss).

    Warns:
        UserWarning: a member's flow ended training more than :data:`WORSE_THAN_GAUSSIAN_NATS` above a standard
            normal's validation loss on the same standardised variables (``info["val_loss_gaussian"]``): training
            diverged without overflowing, or stopped before it learnt anything; its scores are not usable.
    """
    # the flows are float32 and int32: fit them the same way whatever the global x64
    # setting, so that a seed gives the same density under either
    with jax.enable_x64(False):
        return _fit(catalog, ensemble, seed, flow, n_layers, width, depth, activation, radial_map, axis_map, support,
                    support_core, velocity_frame, radial_condition, cusp_map, batch_size, max_epochs, patience, val_fraction, learning_rate, final_learning_rate, clip_norm,
                    bootstrap, seeds_per_resample, checkpoint_dir, progress)


def resolve_seeds_per_resample(ensemble: int, seeds_per_resample: Any, bootstrap: bool) -> int:
    """The L that ``fit_psd`` uses: ``"auto"`` → 1, one member per bootstrap resample (until 2026-12-07: 2 for
    bootstrap ensembles with an even K ≥ 4; see :func:`fit_psd`).

    Any other value is checked (:func:`check_seeds_per_resample`) and returned as an int.
    """
    if isinstance(seeds_per_resample, str):
        if seeds_per_resample != "auto":
            raise ValueError(
                f"seeds_per_resample={seeds_per_resample!r} must be \"auto\" or a positive integer that divides "
                f"ensemble={ensemble}"
            )
        return 1
    check_seeds_per_resample(ensemble, seeds_per_resample, bootstrap)
    return int(seeds_per_resample)


def check_seeds_per_resample(ensemble: int, seeds_per_resample: Any, bootstrap: bool) -> None:
    """Raise ValueError unless ``seeds_per_resample`` is ``"auto"``, 1, or splits ``ensemble`` into ≥ 2 bootstrap resamples."""
    if seeds_per_resample == "auto":
        return
    if not isinstance(seeds_per_resample, (int, np.integer)) or isinstance(seeds_per_resample, bool) \
            or seeds_per_resample < 1 or ensemble % seeds_per_resample:
        raise ValueError(
            f"seeds_per_resample={seeds_per_resample!r} must be \"auto\" or a positive integer that divides "
            f"ensemble={ensemble} (e.g. ensemble=4, seeds_per_resample=2: two bootstrap resamples, two seeds each)"
        )
    if seeds_per_resample > 1 and not bootstrap:
        raise ValueError("seeds_per_resample > 1 groups bootstrap resamples; it needs bootstrap=True")
    if seeds_per_resample > 1 and ensemble // seeds_per_resample < 2:
        raise ValueError(
            f"ensemble={ensemble} with seeds_per_resample={seeds_per_resample} gives one resample; the members' "
            f"combination needs at least 2 (e.g. ensemble={2 * seeds_per_resample})"
        )


def _fit(catalog, ensemble, seed, flow, n_layers, width, depth, activation, radial_map, axis_map, support,
         support_core,
         velocity_frame,
         radial_condition, cusp_map, batch_size,
         max_epochs, patience, val_fraction, learning_rate, final_learning_rate, clip_norm, bootstrap,
         seeds_per_resample, checkpoint_dir, progress):
    if not (hasattr(catalog, "x") and hasattr(catalog, "v")):
        raise TypeError(
            f"catalog must be a bayesdyn.Catalog (with .x [kpc] and .v [km/s]); got {type(catalog).__name__}; "
            "build one with bayesdyn.Catalog(x=..., v=...)"
        )
    # a catalog-like object may hold Quantities: convert them (np.asarray dropped the unit: pc were read as kpc)
    x = np.asarray(_u.strip(catalog.x, "length", "catalog.x"), np.float64)
    v = np.asarray(_u.strip(catalog.v, "velocity", "catalog.v"), np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or v.shape != x.shape:
        raise ValueError(f"catalog.x and catalog.v must both be (N, 3); got {x.shape} and {v.shape}")
    bad = ~(np.isfinite(x).all(axis=1) & np.isfinite(v).all(axis=1))
    if bad.any():
        raise ValueError(
            f"catalog has {int(bad.sum())} row(s) with NaN or inf in x or v; remove them with catalog.select"
        )
    if not isinstance(ensemble, (int, np.integer)) or isinstance(ensemble, bool) or ensemble < 1:
        raise ValueError(f"ensemble={ensemble!r} must be a positive integer")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed={seed!r} must be an integer")
    if checkpoint_dir is not None and os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        # (it failed with a bare FileExistsError after the first epoch's training)
        raise ValueError(f"checkpoint_dir={str(checkpoint_dir)!r} is a file, not a folder; give a folder (created "
                         "when missing) or None")
    seeds_per_resample = resolve_seeds_per_resample(ensemble, seeds_per_resample, bootstrap)
    config = FlowConfig(
        flow=flow,
        n_layers=n_layers,
        width=width,
        depth=depth,
        activation=activation,
    )
    train = TrainConfig(
        batch_size=batch_size,
        max_epochs=max_epochs,
        patience=patience,
        val_fraction=val_fraction,
        learning_rate=float(learning_rate),
        final_learning_rate=float(final_learning_rate),
        clip_norm=float(clip_norm),
        bootstrap=bool(bootstrap),
        seeds_per_resample=int(seeds_per_resample),
    )
    f32 = jnp.float32
    s_center, s_radius, support_rule = _support(support, catalog, x)
    try:
        s_core = float(support_core)
    except (TypeError, ValueError):
        s_core = float("nan")
    if not 0.0 <= s_core < 1.0:
        raise ValueError(f"support_core={support_core!r} must be a number in [0, 1) (the untouched fraction of the radius)")
    if s_radius == 0 and s_core > 0:
        if support is None:
            raise ValueError(f"support_core={support_core!r} shapes the support map, but support=None: pass "
                             "support='auto' or (centre, radius), or support_core=0")
        warnings.warn(f"support_core={support_core!r} is not used: no support map ({support_rule})",
                      UserWarning, stacklevel=3)
    if s_radius == 0:
        s_core = 0.0
    cyl, frame_rule = _frame(velocity_frame, x, v)
    zero, one = jnp.zeros(3, f32), jnp.ones(3, f32)
    bare = Preprocessing(zero, one, zero, one, jnp.zeros((), f32), jnp.asarray(s_center, f32),
                         jnp.asarray(s_radius, f32), jnp.asarray(cyl, f32), jnp.zeros((), f32), jnp.zeros((), f32),
                         jnp.asarray(s_core, f32), zero)
    xs = np.asarray(jax.jit(lambda p, a: p.support_to_space(a)[0])(bare, jnp.asarray(x, f32)), np.float64)
    if not np.isfinite(xs).all():
        raise FloatingPointError("the support map produced non-finite positions; a star lies on the support's edge")
    x_loc, x_scale = robust_loc_scale(xs, "catalog.x")
    radial_cond, radial_cond_rule = _radial_condition(radial_condition, (xs - x_loc) / x_scale, s_radius > 0)
    config = dataclasses.replace(config, radial_condition=radial_cond)
    # the same detection switches on the cusp map (auto): measured together on the NFW-tracer mock
    cusp_detected = radial_cond and radial_cond_rule.startswith("auto")
    c_power, c_core, cusp_rule = _cusp(cusp_map, (xs - x_loc) / x_scale, s_radius > 0, cusp_detected)
    zc = (xs - x_loc) / x_scale
    if c_power > 0:
        zc = np.asarray(cusp_map_fn(jnp.asarray(zc, f32), c_power, c_core)[0], np.float64)
    axes = _axes(axis_map)
    if axes.any() and radial_map == "auto":
        radius, radius_rule = 0.0, "off: axis_map given"
    else:
        radius, radius_rule = _radius(radial_map, zc)
        if axes.any() and radius > 0:
            raise ValueError(
                f"radial_map={radial_map!r} and axis_map={axis_map!r}: use one map of the positions, not both "
                "(radial_map=None with axis_map)"
            )
    vr = np.asarray(jax.jit(lambda p, a, b: p.velocity_to_latent(b, a)[0])(
        bare, jnp.asarray(x, f32), jnp.asarray(v, f32)), np.float64)
    v_loc, v_scale = robust_loc_scale(vr, "catalog.v")
    prep = Preprocessing(
        jnp.asarray(x_loc, f32),
        jnp.asarray(x_scale, f32),
        jnp.asarray(v_loc, f32),
        jnp.asarray(v_scale, f32),
        jnp.asarray(radius, f32),
        jnp.asarray(s_center, f32),
        jnp.asarray(s_radius, f32),
        jnp.asarray(cyl, f32),
        jnp.asarray(c_power, f32),
        jnp.asarray(c_core, f32),
        jnp.asarray(s_core, f32),
        jnp.asarray(axes, f32),
    )
    u, w, ldx, ldv = (np.asarray(a) for a in _to_latent(prep, jnp.asarray(x, f32), jnp.asarray(v, f32)))
    if not (np.isfinite(u).all() and np.isfinite(w).all()):
        raise FloatingPointError(
            "the input transforms produced non-finite values; check the catalog for extreme values"
        )
    fingerprint = {
        "data_sha256": data_sha256(x, v),
        "n_stars": int(x.shape[0]),
        "radial_map": radius,
        "support": [*map(float, s_center), float(s_radius)] + ([s_core] if s_core > 0 else []),
        "velocity_frame": cyl,
        "cusp_map": [float(c_power), float(c_core)],
    }
    if axes.any():  # only when set, so that earlier checkpoints stay valid
        fingerprint["axis_map"] = axes.tolist()
    members, info, val_idx = train_ensemble(
        u,
        w,
        config=config,
        train=train,
        ensemble=int(ensemble),
        seed=int(seed),
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        fingerprint=fingerprint,
    )
    info = {
        "seed": int(seed),
        "radial_map": radius,
        "radial_map_rule": radius_rule,
        # what "auto" would choose here, so that a report can tell a radius given equal to it from one that differs
        "radial_map_auto": 0.0 if axes.any() else _radius("auto", zc)[0],
        "axis_map": axes.tolist(),
        "support_center_kpc": [float(c) for c in s_center],
        "support_radius_kpc": float(s_radius),  # the ball map's radius: the support sphere's × SUPPORT_MARGIN
        "support_sphere_radius_kpc": float(s_radius / SUPPORT_MARGIN),
        "support_rule": support_rule,
        "support_core": s_core,
        "velocity_frame": {v: k for k, v in FRAMES.items()}[cyl],
        "velocity_frame_rule": frame_rule,
        "radial_condition": radial_cond,
        "radial_condition_rule": radial_cond_rule,
        "cusp_map": [c_power, c_core],
        "cusp_map_rule": cusp_rule,
        "training": train.to_dict(),
        **info,
    }
    if seeds_per_resample > 1:
        info["resample_groups"] = [j // int(seeds_per_resample) for j in range(int(ensemble))]
    # validation NLL in physical units: the flows' best validation losses minus the
    # mean log-Jacobians of the fixed transforms over the validation stars
    latent = np.asarray(info["val_loss_latent"], np.float64)  # (K, 2)
    nll_x = latent[:, 0] - ldx[val_idx].astype(np.float64).mean()
    nll_v = latent[:, 1] - ldv[val_idx].astype(np.float64).mean()
    info["val_nll"] = (nll_x + nll_v).tolist()
    info["val_nll_x"] = nll_x.tolist()
    info["val_nll_v"] = nll_v.tolist()
    if (problem := worse_than_gaussian(info)) is not None:
        warnings.warn(problem, UserWarning, stacklevel=3)
    return PhaseSpaceDensity(members, prep, config, n_stars=x.shape[0], info=info)


#: nats per star by which a flow's best validation loss may exceed a standard normal's on the same variables. A
#: standard normal is what a flow starts near (the affine MAF's initial loss was 0.1–0.5 nats above it on the Plummer
#: and disk mocks; the sinh-arcsinh MAF's up to 3.9); a trained flow ends below it (0.05–0.2 nats on them). Learning
#: rates of 1 and 30 ended 1–17 and 1e12–1e27 nats above it, finite.
WORSE_THAN_GAUSSIAN_NATS = 1.0


def worse_than_gaussian(info: dict[str, Any]) -> str | None:
    """A message when a member's flow ended more than :data:`WORSE_THAN_GAUSSIAN_NATS` above a standard normal's
    validation loss (``info["val_loss_gaussian"]``, recorded since 2026-12-07), else None."""
    gauss = info.get("val_loss_gaussian")
    if gauss is None:
        return None
    best = np.asarray(info["val_loss_latent"], np.float64)  # (K, 2)
    bad = np.argwhere(best > np.asarray(gauss, np.float64) + WORSE_THAN_GAUSSIAN_NATS)
    if not len(bad):
        return None
    vals = ", ".join(f"{best[k, j]:.4g}" for k, j in bad)
    lr = info.get("training", {}).get("learning_rate")
    return (f"flows worse than a standard normal: (member, flow) pairs {bad.tolist()} ended training with validation "
            f"losses {vals} nats per star, against a standard normal's {gauss[0]:.3f} (flow 0, n(x)) and "
            f"{gauss[1]:.3f} (flow 1, p(v|x)) on the same standardised variables; their scores are not usable. "
            f"Training diverged without overflowing (learning_rate = {lr}: lower it; the default is 1e-2) or "
            "stopped before it learnt anything (raise max_epochs)")

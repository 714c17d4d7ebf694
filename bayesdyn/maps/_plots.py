"""Plots of maps and profiles with 68/95 % bands (matplotlib, no pyplot state: figures are made with Figure())."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from .. import units as _u
from ._fields import QUANTITIES, DisequilibriumMap, FieldMap, evaluate
from ._geometry import line_of_sight

__all__ = ["plot_map", "plot_profile", "plot_line_of_sight", "plot_disequilibrium", "new_axes"]

_LABELS = {
    "potential": "Φ",
    "acceleration": "|a|",
    "a_x": "a_x",
    "a_y": "a_y",
    "a_z": "a_z",
    "a_R": "a_R",
    "a_phi": "a_φ",
    "a_r": "a_r",
    "density": "ρ",
    "smoothed_density": "ρ̄_h",
    "efficiency": "ε",
}


def new_axes(ncols: int = 1, size: tuple[float, float] = (5.0, 4.0)):
    """A new figure with ``ncols`` axes side by side (no pyplot): (figure, list of axes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1]), layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _label(quantity: str) -> str:
    unit = QUANTITIES[quantity][0]
    return f"{_LABELS[quantity]} [{unit}]" if unit else _LABELS[quantity]


def _scalar(values: np.ndarray, quantity: str) -> np.ndarray:
    return np.linalg.norm(values, axis=-1) if quantity == "acceleration" else values


def _grid_2d(points: np.ndarray, axes: Mapping[str, np.ndarray] | None) -> tuple[str, str, np.ndarray, np.ndarray]:
    if axes is None or len(axes) != 2 or points.ndim != 3:
        raise ValueError("plot_map needs a map on a 2-d slice (evaluate it on bayesdyn.maps.slice(...))")
    (n1, u), (n2, w) = axes.items()
    return n1, n2, u, w


def plot_map(
    fmap: FieldMap,
    *,
    ax: Any = None,
    statistic: str = "mean",
    log: bool = False,
    cmap: str | None = None,
    contours: int | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """An image of a quantity on a 2-d slice.

    Args:
        fmap: a :class:`FieldMap` evaluated on ``bayesdyn.maps.slice(...)``.
        ax: matplotlib Axes (default: a new figure).
        statistic: ``"mean"``, ``"sd"`` (members' standard deviation) or
            ``"relative_sd"`` (sd / |mean|).
        log: colour scale in log10 (positive values only).
        cmap: colormap name.
        contours: draw this many contour lines of the same statistic.
        title: axes title (default: the quantity and statistic).
        vmin: lower colour limit (in the plotted units, log10 if ``log``).
        vmax: upper colour limit.

    Returns:
        The Axes.
    """
    n1, n2, u, w = _grid_2d(fmap.points, fmap.axes)
    mean = _scalar(fmap.mean, fmap.quantity)
    if statistic == "mean":
        z = mean
    elif statistic in ("sd", "relative_sd"):
        members = None if fmap.members is None else _scalar(fmap.members, fmap.quantity)
        if members is None or len(members) < 2:
            raise ValueError(
                f"statistic={statistic!r} needs an ensemble; this map of {fmap.quantity} has one member "
                "(its spread is unknown, not zero): fit an ensemble, or plot statistic='mean'"
            )
        sd = np.std(members, axis=0, ddof=1)
        z = sd if statistic == "sd" else sd / np.maximum(np.abs(mean), 1e-300)
    else:
        raise ValueError(f"statistic={statistic!r}; choose 'mean', 'sd' or 'relative_sd'")
    if log:
        z = np.log10(np.where(z > 0, z, np.nan))
    if ax is None:
        _, (ax,) = new_axes()
    mesh = ax.pcolormesh(u, w, z.T, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    if contours:
        ax.contour(u, w, z.T, levels=contours, colors="k", linewidths=0.5)
    if statistic == "mean":
        label = _label(fmap.quantity)
    elif statistic == "sd":
        label = _label(fmap.quantity).replace(_LABELS[fmap.quantity], f"sd of {_LABELS[fmap.quantity]}", 1)
    else:
        label = f"sd / |mean| of {_LABELS[fmap.quantity]}"
    ax.figure.colorbar(mesh, ax=ax, label=("log10 " if log else "") + label)
    ax.set_xlabel(f"{n1} [kpc]")
    ax.set_ylabel(f"{n2} [kpc]")
    ax.set_aspect("equal")
    ax.set_title(title if title is not None else f"{QUANTITIES[fmap.quantity][1]} ({statistic})")
    return ax


def plot_profile(
    maps: FieldMap | Mapping[str, FieldMap],
    *,
    ax: Any = None,
    axis: str | None = None,
    references: Mapping[str, FieldMap] | None = None,
    levels: tuple[float, ...] = (0.68, 0.95),
    method: str = "t",
    log: bool = False,
    truth: Any = None,
):
    """Profiles along a 1-d grid (a line of sight, or a 1-d cut of :func:`grid`) with bands.

    Args:
        maps: a :class:`FieldMap` on a 1-d grid, or label → FieldMap; ensembles get
            shaded bands at ``levels``.
        ax: matplotlib Axes (default: a new figure).
        axis: the grid axis for the abscissa (default: the one axis with more than one value, e.g.
            ``"z"`` for ``grid(-8.122, 0, (-1, 1, 5))``).
        references: label → FieldMap of reference models (e.g. MWPotential2014),
            drawn as dashed lines.
        levels: band probability contents (see :meth:`FieldMap.band`).
        method: band method (see :meth:`FieldMap.band`).
        log: logarithmic ordinate.
        truth: an array of true values to draw as a black line (mocks).

    Returns:
        The Axes.
    """
    if isinstance(maps, FieldMap):
        maps = {"estimate": maps}
    if ax is None:
        _, (ax,) = new_axes()
    first = next(iter(maps.values()))
    if first.axes is None:
        raise ValueError("plot_profile needs maps evaluated on a Grid (line_of_sight or grid)")
    n_points = int(np.prod(np.shape(first.mean)[: len(first.axes)])) if first.axes else 0
    long_axes = [k for k, v in first.axes.items() if len(v) > 1]
    if axis is None:
        if len(long_axes) > 1:
            raise ValueError(f"plot_profile draws a 1-d grid; this map's grid has axes {long_axes} with more than one "
                             "value: cut it to one (or draw a 2-d slice with plot_map)")
        axis = long_axes[0] if long_axes else next(iter(first.axes))
    if axis not in first.axes:
        raise ValueError(f"axis={axis!r} is not one of the map's grid axes {list(first.axes)}")
    xs = np.asarray(first.axes[axis])
    if len(xs) != n_points:
        raise ValueError(f"axis={axis!r} has {len(xs)} values but the map has {n_points} points: plot_profile draws "
                         f"a 1-d grid along its one axis with more than one value ({long_axes or 'none'})")
    for i, (label, fm) in enumerate(maps.items()):
        color = f"C{i}"
        mean = _scalar(fm.mean, fm.quantity).reshape(-1)
        if levels and fm.n_members < 2:
            warnings.warn(f"plot_profile: {label!r} has one member, so no band is drawn; its uncertainty is unknown, "
                          "not zero (fit an ensemble for bands)", UserWarning, stacklevel=2)
        if fm.members is not None and fm.n_members > 1:
            members = _scalar(fm.members, fm.quantity).reshape(fm.n_members, -1)
            if fm.quantity == "acceleration":  # the members' mean |a|, the centre of their band (|mean a| is smaller)
                mean = members.mean(axis=0)
            scal = fm._replace(mean=mean, members=members)
            for lev in sorted(levels, reverse=True):
                lo, hi = scal.band(lev, method)
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15 if lev > 0.9 else 0.3, lw=0,
                                label=f"{label} {round(100 * lev)} %")
        ax.plot(xs, mean, color=color, lw=1.5, label=label)
    for j, (label, fm) in enumerate((references or {}).items()):
        ax.plot(xs, _scalar(fm.mean, fm.quantity).reshape(-1), ls="--", color=f"C{len(maps) + j}", lw=1.2, label=label)
    if truth is not None:
        ax.plot(xs, np.asarray(truth).reshape(-1), color="k", lw=1.0, label="truth")
    ax.set_xlabel(f"{axis} [kpc]")
    ax.set_ylabel(_label(first.quantity))
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    return ax


def plot_line_of_sight(
    source: Any,
    l: float,  # noqa: E741 - Galactic longitude
    b: float,
    distances: Any,
    quantity: str = "a_R",
    *,
    references: Mapping[str, Any] | None = None,
    solar: Any = None,
    ax: Any = None,
    radius: float | None = None,
    levels: tuple[float, ...] = (0.68, 0.95),
    log: bool = False,
):
    """A quantity along the line of sight (l, b) from the Sun, with bands and reference models.

    Args:
        source: what to evaluate (see :func:`bayesdyn.maps.evaluate`), e.g. a neural
            potential ensemble.
        l: Galactic longitude [deg].
        b: Galactic latitude [deg].
        distances: heliocentric distances (M,) [kpc].
        quantity: one of :data:`bayesdyn.maps.QUANTITIES`.
        references: label → model (e.g. ``{"MWPotential2014": bd.potentials.MWPotential2014()}``). For
            ``"potential"`` with a neural Φ in ``source`` (alone, in a list, or a component of a
            composite), the estimate and the references are drawn relative to their value at the
            neural Φ's zero point (``potential_zero``): a neural Φ's constant is arbitrary, and a
            composite's parts would otherwise mix two zero points.
        solar: :class:`bayesdyn.SolarParameters` (default 'v4.0').
        ax: matplotlib Axes.
        radius: ball radius for ``"smoothed_density"`` [kpc].
        levels: band probability contents.
        log: logarithmic ordinate.

    Returns:
        The Axes.
    """
    los = line_of_sight(l, b, distances, solar)
    est = evaluate(source, quantity, los, radius=radius)
    refs = {k: evaluate(m, quantity, los, radius=radius) for k, m in (references or {}).items()}
    zero = _potential_zero(source)  # a neural Φ is 0 there, not at infinity: everything is drawn relative to it
    if quantity == "potential" and zero is not None:
        at_zero = np.asarray(zero, dtype=float)[None]
        est = _shifted(est, evaluate(source, "potential", at_zero))
        refs = {k: _shifted(refs[k], evaluate(m, "potential", at_zero)) for k, m in (references or {}).items()}
    ax = plot_profile({"estimate": est}, ax=ax, axis="distance", references=refs, levels=levels, log=log)
    if quantity == "potential" and zero is not None:
        ax.set_ylabel(f"Φ − Φ(x₀) [{QUANTITIES['potential'][0]}], x₀ = ({', '.join(f'{c:g}' for c in np.asarray(zero))}) kpc")
    ax.set_title(f"l = {float(_u.strip(l, 'angle', 'l')):g}°, b = {float(_u.strip(b, 'angle', 'b')):g}°")
    return ax


def _potential_zero(source: Any) -> np.ndarray | None:
    """The zero point of the first neural Φ in ``source`` (itself, a list's item, a composite's component), or None."""
    if isinstance(source, (list, tuple)):
        parts = source
    elif hasattr(source, "potential_zero"):
        return source.potential_zero
    else:
        parts = getattr(source, "components", ())
    for part in parts:
        zero = _potential_zero(part)
        if zero is not None:
            return zero
    return None


def _shifted(fm: FieldMap, at_zero: FieldMap) -> FieldMap:
    """``fm`` minus its value at the zero point, member by member."""
    members = None
    if fm.members is not None:
        zero_members = at_zero.members if at_zero.members is not None else at_zero.mean[None]
        members = fm.members - zero_members[:, :1]
    return fm._replace(mean=fm.mean - at_zero.mean[0], members=members)


def plot_disequilibrium(
    dmap: DisequilibriumMap,
    *,
    ax: Any = None,
    relative: bool = True,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
):
    """An image of the disequilibrium diagnostic on a 2-d slice.

    Args:
        dmap: a :class:`DisequilibriumMap` evaluated on ``bayesdyn.maps.slice(...)``.
        ax: matplotlib Axes.
        relative: plot rms(∂log f/∂t)/rms(v·s_x) (dimensionless) instead of the rms [1/Gyr].
        cmap: colormap name.
        vmin: lower colour limit.
        vmax: upper colour limit (share limits to compare two maps).

    Returns:
        The Axes.
    """
    n1, n2, u, w = _grid_2d(dmap.points, dmap.axes)
    z = dmap.relative if relative else dmap.rms_per_gyr()
    if ax is None:
        _, (ax,) = new_axes()
    mesh = ax.pcolormesh(u, w, z.T, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.figure.colorbar(mesh, ax=ax, label="rms ∂log f/∂t / rms v·s_x" if relative else "rms ∂log f/∂t [1/Gyr]")
    ax.set_xlabel(f"{n1} [kpc]")
    ax.set_ylabel(f"{n2} [kpc]")
    ax.set_aspect("equal")
    ax.set_title("disequilibrium ∂log f/∂t")
    return ax

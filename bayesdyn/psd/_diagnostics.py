"""Diagnostics of a fitted density against exact scores (mocks with a known DF)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["score_errors"]


def _relative(est: np.ndarray, exact: np.ndarray) -> np.ndarray:
    return np.linalg.norm(est - exact, axis=-1) / np.linalg.norm(exact, axis=-1)


def score_errors(psd: Any, x: Any, v: Any, exact_sx: Any, exact_sv: Any) -> dict[str, Any]:
    """Median relative score errors |ŝ − s| / |s| of a density against exact scores.

    Evaluate on stars that were not used for training (e.g. a fresh draw from
    the same mock) to measure generalisation rather than memorisation.

    Args:
        psd: a :class:`~bayesdyn.psd.PhaseSpaceDensity`.
        x: positions, (N, 3) [kpc].
        v: velocities, (N, 3) [km/s].
        exact_sx: exact ∂log f/∂x at (x, v), (N, 3) [kpc⁻¹] (a Quantity is converted).
        exact_sv: exact ∂log f/∂v at (x, v), (N, 3) [(km/s)⁻¹] (a Quantity is converted).

    Returns:
        A dict with ``"x"`` and ``"v"`` (median relative errors of the ensemble-mean
        scores, dimensionless), ``"x_members"`` and ``"v_members"`` (lists, one per
        member), and ``"x_p90"``, ``"v_p90"`` (90th percentiles of the ensemble's
        relative errors).
    """
    from .. import units as _u

    # (converted as x and v are: np.asarray had kept the numbers of scores in 1/pc, an error of 999 for a perfect flow)
    exact_sx = np.asarray(_u.strip(exact_sx, "inverse length", "exact_sx"), np.float64)
    exact_sv = np.asarray(_u.strip(exact_sv, "inverse velocity", "exact_sv"), np.float64)
    sx_m, sv_m = psd.score_members(x, v)
    sx_m, sv_m = np.asarray(sx_m, np.float64), np.asarray(sv_m, np.float64)
    if sx_m.shape[1:] != exact_sx.shape or sv_m.shape[1:] != exact_sv.shape:
        raise ValueError(
            f"exact scores have shapes {exact_sx.shape} and {exact_sv.shape}; "
            f"expected {sx_m.shape[1:]} (one row per star)"
        )
    ex = _relative(sx_m.mean(axis=0), exact_sx)
    ev = _relative(sv_m.mean(axis=0), exact_sv)
    return {
        "x": float(np.median(ex)),
        "v": float(np.median(ev)),
        "x_p90": float(np.percentile(ex, 90)),
        "v_p90": float(np.percentile(ev, 90)),
        "x_members": [float(np.median(_relative(s, exact_sx))) for s in sx_m],
        "v_members": [float(np.median(_relative(s, exact_sv))) for s in sv_m],
        "n": int(exact_sx.shape[0]),
    }

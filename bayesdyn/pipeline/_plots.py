"""Report plots: accelerations and densities from the posterior against a reference potential."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["acceleration_and_density", "posterior_fields"]


def posterior_fields(post, model, x: np.ndarray, n_draws: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Total acceleration (D, P, 3) [(km/s)²/kpc] and density (D, P) [M☉/kpc³] for D posterior draws at x."""
    names = list(model.free_parameters())
    total = post.samples[names[0]].size if names else 1
    idx = np.random.default_rng(seed).choice(total, size=min(n_draws, total), replace=False)
    flat = {n: jnp.asarray(post.samples[n].reshape(-1)[idx]) for n in names}
    xj = jnp.asarray(x)

    def one(values):
        comps = model.bind(values)
        a = sum(c.acceleration(xj) for c in comps.values())
        rho = sum(c.density(xj) for c in comps.values())
        return a, rho

    a, rho = jax.jit(jax.vmap(one))(flat) if names else jax.tree.map(lambda t: t[None], one({}))
    return {"acceleration": np.asarray(a), "density": np.asarray(rho)}


def _band(ax, t, y, color, label):
    lo, med, hi = np.percentile(y, [2.5, 50, 97.5], axis=0)
    q16, q84 = np.percentile(y, [16, 84], axis=0)
    ax.fill_between(t, lo, hi, color=color, alpha=0.15, lw=0)
    ax.fill_between(t, q16, q84, color=color, alpha=0.3, lw=0, label=f"{label} (68/95 %)")
    ax.plot(t, med, color=color, lw=1.2)


def acceleration_and_density(post, model, data, cat, out: Path, truth: Any = None) -> None:
    """Write ``acceleration_vertical.png``, ``acceleration_radial.png`` and ``density_vertical.png``."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend and open figures are left alone

    from ..potentials import MWPotential2014

    ref = MWPotential2014()
    sun = np.asarray(data.sun)
    r0 = float(np.hypot(sun[0], sun[1]))
    phi = float(np.arctan2(sun[1], sun[0]))
    zs = np.linspace(-1.5, 1.5, 61)
    line_z = np.column_stack([np.full_like(zs, sun[0]), np.full_like(zs, sun[1]), zs])
    rs = np.linspace(r0 - 1.5, r0 + 1.5, 61)
    line_r = np.column_stack([rs * np.cos(phi), rs * np.sin(phi), np.zeros_like(rs)])
    rhat = np.array([np.cos(phi), np.sin(phi), 0.0])

    fz = posterior_fields(post, model, line_z)
    fr = posterior_fields(post, model, line_r)
    has_nodes = hasattr(data, "a")  # accelerations at nodes (not the weak form's stars)
    nodes = np.asarray(data.x) if has_nodes else np.zeros((0, 3))
    a_nodes = np.asarray(data.a) if has_nodes else np.zeros((0, 3))
    err = np.sqrt(np.einsum("pii->pi", np.asarray(data.cov))) if has_nodes else np.zeros((0, 3))
    near_axis = np.hypot(nodes[:, 0] - sun[0], nodes[:, 1] - sun[1]) < 0.5
    near_plane = np.abs(nodes[:, 2]) < 0.3

    # vertical force along the line of sight to the Galactic poles
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    _band(ax, zs, fz["acceleration"][..., 2], "tab:blue", "posterior")
    ax.plot(zs, np.asarray(ref.acceleration(line_z))[:, 2], "k--", lw=1, label="MWPotential2014")
    if truth is not None:
        ax.plot(zs, np.asarray(truth.acceleration(line_z))[:, 2], color="tab:green", lw=1, ls=":", label="truth (mock)")
    if has_nodes:
        ax.errorbar(nodes[near_axis, 2], a_nodes[near_axis, 2], err[near_axis, 2], fmt="o", ms=3, color="tab:red",
                    label="CBE estimate at nodes (<0.5 kpc from axis)")
    ax.set_xlabel("z [kpc] at the Sun's (x, y)")
    ax.set_ylabel(r"$a_z$ [(km/s)$^2$/kpc]")
    ax.legend(fontsize=7, frameon=False)
    fig.savefig(out / "acceleration_vertical.png", dpi=110, bbox_inches="tight")

    # radial force in the midplane
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    _band(ax, rs, fr["acceleration"] @ rhat, "tab:blue", "posterior")
    ax.plot(rs, np.asarray(ref.acceleration(line_r)) @ rhat, "k--", lw=1, label="MWPotential2014")
    if truth is not None:
        ax.plot(rs, np.asarray(truth.acceleration(line_r)) @ rhat, color="tab:green", lw=1, ls=":", label="truth (mock)")
    rn = np.hypot(nodes[:, 0], nodes[:, 1])
    rhat_n = nodes[:, :2] / rn[:, None]
    ar_n = np.einsum("pi,pi->p", a_nodes[:, :2], rhat_n)
    # the sd of a_R = R̂·a is √(R̂ᵀ C R̂), with the x–y covariance (hypot(σ_x, σ_y)/√2 ignored both)
    err_r = np.sqrt(np.einsum("pi,pij,pj->p", rhat_n, np.asarray(data.cov)[:, :2, :2], rhat_n)) if has_nodes else rn
    if has_nodes:
        ax.errorbar(rn[near_plane], ar_n[near_plane], err_r[near_plane],
                    fmt="o", ms=3, color="tab:red", label="CBE estimate at nodes (|z| < 0.3 kpc)")
    ax.set_xlabel("R [kpc] (z = 0)")
    ax.set_ylabel(r"$a_R$ [(km/s)$^2$/kpc]")
    ax.legend(fontsize=7, frameon=False)
    fig.savefig(out / "acceleration_radial.png", dpi=110, bbox_inches="tight")

    # density along z
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    _band(ax, zs, fz["density"] * 1e-9, "tab:blue", "posterior, total")
    ax.plot(zs, np.asarray(ref.density(line_z)) * 1e-9, "k--", lw=1, label="MWPotential2014")
    if truth is not None:
        ax.plot(zs, np.asarray(truth.density(line_z)) * 1e-9, color="tab:green", lw=1, ls=":", label="truth (mock)")
    ax.set_xlabel("z [kpc] at the Sun's (x, y)")
    ax.set_ylabel(r"$\rho$ [M$_\odot$/pc$^3$]")
    ax.set_yscale("log")
    ax.legend(fontsize=7, frameon=False)
    fig.savefig(out / "density_vertical.png", dpi=110, bbox_inches="tight")

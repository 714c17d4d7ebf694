"""A quasi-isothermal disk in MWPotential2014, sampled in a sphere around the Sun."""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import units as _u
from ..catalog import Catalog, SolarParameters
from ._mw2014 import RO_KPC, VO_KMS, MW2014
from ._plummer import _check_n_seed
from ._truth import MockError, Truth, _bayesdyn_version, _jit_call, _np_points, _points, _require_galpy

__all__ = ["solar_neighbourhood_disk", "DiskTruth", "mock_solar_parameters"]

#: Staeckel focal distance for MWPotential2014 near the Sun [kpc] (galpy docs: delta = 0.45 ro).
STAECKEL_DELTA_KPC = 0.45 * RO_KPC
#: galpy's qdf rg(Lz) table: up to R = 4 ro with 101 nodes (spline error 6e-8; galpy default 5 h_R, 51 nodes).
_RG_RMAX_NAT, _RG_NLZ = 4.0, 101
_BATCH = 20_000


def mock_solar_parameters() -> SolarParameters:
    """The frame of the disk mock: the Sun at R = 8 kpc (galpy's ro), z☉ = 20.8 pc, v☉ = v_c + (11.1, 12.24, 7.25) km/s.

    galcen_distance = sqrt(8² + z☉²) so that the Sun's cylindrical radius is
    exactly galpy's ro = 8 kpc; v_sun = (U☉, v_c(R0) + V☉, W☉) with v_c(8 kpc) =
    220 km/s in MWPotential2014 and the Schönrich, Binney & Dehnen (2010) peculiar motion.
    """
    z_sun = 0.0208
    return SolarParameters(
        galcen_distance=math.sqrt(RO_KPC**2 + z_sun**2), z_sun=z_sun, v_sun=(11.1, VO_KMS + 12.24, 7.25)
    )


@functools.lru_cache(maxsize=8)
def _galpy_qdf(hr, sr, sz, hsr, hsz, delta):
    """galpy's quasiisothermaldf in MWPotential2014 with actionAngleStaeckel (natural units)."""
    _require_galpy("the disk mock's DF")
    from galpy.actionAngle import actionAngleStaeckel
    from galpy.df import quasiisothermaldf
    from galpy.potential import MWPotential2014

    aa = actionAngleStaeckel(pot=MWPotential2014, delta=delta / RO_KPC, c=True)
    return quasiisothermaldf(
        hr / RO_KPC,
        sr / VO_KMS,
        sz / VO_KMS,
        hsr / RO_KPC,
        hsz / RO_KPC,
        pot=MWPotential2014,
        aA=aa,
        cutcounter=False,
        _precomputergrmax=_RG_RMAX_NAT,
        _precomputergnLz=_RG_NLZ,
    )


def _cylindrical(x: np.ndarray, v: np.ndarray):
    """Galactocentric cartesian → galpy's (R, vR, vT, z, vz) with vT > 0 for disk rotation.

    In the right-handed astropy frame the disk rotates clockwise seen from the
    north Galactic pole (v_y > 0 at the Sun, x < 0), so galpy's vT is −v_φ =
    (y v_x − x v_y)/R.
    """
    R = np.hypot(x[:, 0], x[:, 1])
    vR = (x[:, 0] * v[:, 0] + x[:, 1] * v[:, 1]) / R
    vT = (x[:, 1] * v[:, 0] - x[:, 0] * v[:, 1]) / R
    return R, vR, vT, x[:, 2], v[:, 2]


@jax.jit
def _jit_potential(mw: MW2014, x):
    return mw.potential(x)


def _potential_np(mw: MW2014, x: np.ndarray) -> np.ndarray:
    """Φ(x) in float64 through one jitted function, rows padded to a multiple of 4096 (few compilations)."""
    n = x.shape[0]
    padded = np.zeros((max(-(-n // 4096), 1) * 4096, 3))
    padded[:n] = x
    padded[n:] = (8.0, 0.0, 0.0)
    with jax.enable_x64(True):
        return np.asarray(_jit_potential(mw, jnp.asarray(padded)))[:n]


def _log_qdf(hr, sr, sz, hsr, hsz, delta, x, v, mw: MW2014) -> np.ndarray:
    """log of galpy's qdf at (x [kpc], v [km/s]) in (kpc km/s)⁻³ units; −inf where unbound (numpy)."""
    qdf = _galpy_qdf(hr, sr, sz, hsr, hsz, delta)
    out = np.full(x.shape[0], -np.inf)
    energy = 0.5 * np.sum(v**2, axis=1) + _potential_np(mw, x)
    bound = energy < 0
    R, vR, vT, z, vz = _cylindrical(x[bound], v[bound])
    vals = np.empty(R.size)
    for i in range(0, R.size, _BATCH):
        sl = slice(i, i + _BATCH)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            vals[sl] = qdf(R[sl] / RO_KPC, vR[sl] / VO_KMS, vT[sl] / VO_KMS, z[sl] / RO_KPC, vz[sl] / VO_KMS, log=True)
    vals[vals <= -1e300] = -np.inf  # galpy's −max-float for f = 0
    out[bound] = vals - 3 * math.log(RO_KPC * VO_KMS)
    return out


class DiskTruth(Truth):
    """A quasi-isothermal disk (Binney 2010; Binney & McMillan 2011) in galpy's MWPotential2014.

    The DF is galpy's ``quasiisothermaldf`` with actions from
    ``actionAngleStaeckel`` (c=True, focal distance δ = 3.6 kpc): f(J_R, L_z, J_z)
    with surface density ∝ exp(−R_g/h_R) and dispersion parameters
    σ_R(R_g) = σ_R,0 exp(−(R_g − R0)/h_σR), σ_z likewise. The catalog holds the
    stars of this DF inside a sphere around the Sun. Acceleration, potential
    and density are MWPotential2014's, in JAX (see ``_mw2014.py``): forces and
    density equal galpy's to ~1e-13 relative; the potential is zero at infinity,
    while galpy's sits a constant 6.51e4 (km/s)² above it (its bulge potential is
    not zero at infinity; only gradients and the sign of E, bound or not, are used). ``log_df`` and ``score`` call galpy (numpy, slow:
    ~50–100 µs per star for log f, 12× that for the scores).

    The Staeckel actions are approximate, so this f is only approximately a
    steady state of MWPotential2014 (the CBE residual is not exactly zero);
    it is exactly the density the stars were drawn from.

    Attributes:
        potential_model: MWPotential2014 amplitudes (:class:`MW2014`).
        scale_length: h_R [kpc]; sigma_r, sigma_z: σ_R,0, σ_z,0 at R0 [km/s];
        sigma_r_scale_length, sigma_z_scale_length: h_σR, h_σz [kpc];
        staeckel_delta: focal distance of the Staeckel fudge [kpc];
        sphere_center: centre of the sampled sphere (the Sun) (3,) [kpc];
        sphere_radius: its radius [kpc];
        log_norm: log ∫_sphere f d³x d³v for galpy's qdf in (kpc km/s)⁻³ (the sampler's Monte
            Carlo estimate), subtracted in :meth:`log_df`;
        log_norm_err: its relative standard error.
    """

    potential_model: MW2014
    scale_length: float
    sigma_r: float
    sigma_z: float
    sigma_r_scale_length: float
    sigma_z_scale_length: float
    staeckel_delta: float
    sphere_center: tuple[float, float, float]
    sphere_radius: float
    log_norm: float
    log_norm_err: float

    def _acceleration(self, x):
        """MWPotential2014's a = −∇Φ [(km/s)²/kpc]."""
        return self.potential_model.acceleration(x)

    def _potential(self, x):
        """MWPotential2014's Φ [(km/s)²], zero at infinity."""
        return self.potential_model.potential(x)

    def _density(self, x):
        """MWPotential2014's total mass density [M☉/kpc³] (bulge + disk + halo)."""
        return self.potential_model.density(x)

    def dark_matter_density(self, x: Any) -> jnp.ndarray:
        """The dark matter's density at ``x`` [kpc]: MWPotential2014's NFW halo, shape (...) [M☉/kpc³]. JAX.

        The truth of a posterior's ``derived.rho_dm_sun`` where the model's dark components are its halo.
        """
        return _jit_call(self, _points(x), name="_dark_matter_density")

    def _dark_matter_density(self, x):
        return self.potential_model._halo_dens(jnp.linalg.norm(x, axis=-1))

    def _tracer_density(self, x):
        """Not available: the quasi-isothermal DF's density has no closed form.

        Raises:
            NotImplementedError: always; integrate exp(log_df) over velocities,
                or use galpy's ``quasiisothermaldf.density`` (natural units).
        """
        raise NotImplementedError(
            "the quasi-isothermal disk's tracer density has no closed form; integrate exp(truth.log_df) over "
            "velocities or call galpy's quasiisothermaldf.density(R/8, z/8) (natural units)"
        )

    def _qdf_args(self):
        return (
            float(self.scale_length),
            float(self.sigma_r),
            float(self.sigma_z),
            float(self.sigma_r_scale_length),
            float(self.sigma_z_scale_length),
            float(self.staeckel_delta),
        )

    def log_df(self, x, v):
        """log f(x, v) of the catalog, normalised to 1 over the sampled sphere [log((kpc km/s)⁻³)] (numpy, galpy).

        Outside the sphere this is the disk's DF with the same normalisation. The
        normalisation is a Monte Carlo estimate with relative error ``exp(log_norm_err) − 1``
        (~0.3 %); it shifts log f by a constant and does not enter the scores.
        """
        x, v = _pair(x, v)
        out = _log_qdf(*self._qdf_args(), x.reshape(-1, 3), v.reshape(-1, 3), self.potential_model) - self.log_norm
        return out.reshape(x.shape[:-1])

    def score(self, x, v, *, step_x: float = 1e-3, step_v: float = 1e-2):
        """(∂log f/∂x [kpc⁻¹], ∂log f/∂v [(km/s)⁻¹]) by central finite differences of galpy's qdf (numpy).

        Args:
            x: positions (N, 3) or (3,) [kpc].
            v: velocities (N, 3) or (3,) [km/s].
            step_x: position step [kpc] (default 1 pc).
            step_v: velocity step [km/s] (default 0.01).

        Accuracy with the default steps, measured against steps halved (a review,
        2026-12-06): 4e-6 of the score's scale for ∂/∂x, 3e-8 for ∂/∂v.
        Costs 12 DF evaluations per star (~0.6 ms).
        """
        x, v = _pair(x, v)
        shape = x.shape
        xs, vs = x.reshape(-1, 3), v.reshape(-1, 3)
        n = xs.shape[0]
        eye = np.eye(3)
        xx = np.concatenate([xs + step_x * eye[i] for i in range(3)] + [xs - step_x * eye[i] for i in range(3)])
        vv = np.concatenate([vs + step_v * eye[i] for i in range(3)] + [vs - step_v * eye[i] for i in range(3)])
        args = self._qdf_args()
        lx = _log_qdf(*args, xx, np.tile(vs, (6, 1)), self.potential_model).reshape(6, n)
        lv = _log_qdf(*args, np.tile(xs, (6, 1)), vv, self.potential_model).reshape(6, n)
        sx = ((lx[:3] - lx[3:]) / (2 * step_x)).T
        sv = ((lv[:3] - lv[3:]) / (2 * step_v)).T
        return sx.reshape(shape), sv.reshape(shape)

    @property
    def params(self) -> dict[str, Any]:
        p = {f"potential_{k}": v for k, v in _mw_params(self.potential_model).items()}
        p.update(
            {
                "df": "galpy quasiisothermaldf + actionAngleStaeckel(c=True)",
                "scale_length_kpc": float(self.scale_length),
                "sigma_r_kms": float(self.sigma_r),
                "sigma_z_kms": float(self.sigma_z),
                "sigma_r_scale_length_kpc": float(self.sigma_r_scale_length),
                "sigma_z_scale_length_kpc": float(self.sigma_z_scale_length),
                "staeckel_delta_kpc": float(self.staeckel_delta),
                "galpy_ro_kpc": RO_KPC,
                "galpy_qdf_rg_table": {"rmax_ro": _RG_RMAX_NAT, "n_lz": _RG_NLZ},
                "galpy_vo_kms": VO_KMS,
                "sphere_center_kpc": [float(c) for c in self.sphere_center],
                "sphere_radius_kpc": float(self.sphere_radius),
                "log_norm": float(self.log_norm),
                "log_norm_err": float(self.log_norm_err),
            }
        )
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "solar_neighbourhood_disk", "params": self.params, "bayesdyn_version": _bayesdyn_version()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiskTruth":
        """Inverse of :meth:`to_dict`."""
        p = d["params"]
        mw = MW2014(**{field: float(p[f"potential_{key}"]) for field, key in _MW_KEYS.items()})
        return cls(
            potential_model=mw,
            scale_length=float(p["scale_length_kpc"]),
            sigma_r=float(p["sigma_r_kms"]),
            sigma_z=float(p["sigma_z_kms"]),
            sigma_r_scale_length=float(p["sigma_r_scale_length_kpc"]),
            sigma_z_scale_length=float(p["sigma_z_scale_length_kpc"]),
            staeckel_delta=float(p["staeckel_delta_kpc"]),
            sphere_center=tuple(float(c) for c in p["sphere_center_kpc"]),
            sphere_radius=float(p["sphere_radius_kpc"]),
            log_norm=float(p["log_norm"]),
            log_norm_err=float(p["log_norm_err"]),
        )


def _pair(x, v):
    x = _np_points(x)
    v = _np_points(v, "v")
    if x.shape != v.shape:
        raise ValueError(f"x has shape {x.shape} but v has shape {v.shape}; pass one velocity per position")
    return x, v


#: MW2014 field → params key (units in the key).
_MW_KEYS = {
    "bulge_amplitude": "bulge_amplitude_msun_kpc3",
    "bulge_alpha": "bulge_alpha",
    "bulge_rc": "bulge_rc_kpc",
    "disk_mass": "disk_mass_msun",
    "disk_a": "disk_a_kpc",
    "disk_b": "disk_b_kpc",
    "halo_rho_s": "halo_rho_s_msun_kpc3",
    "halo_rs": "halo_rs_kpc",
}


def _mw_params(mw: MW2014) -> dict[str, float]:
    return {key: float(getattr(mw, field)) for field, key in _MW_KEYS.items()}


# ----------------------------------------------------------------- sampler
class _Envelope:
    """Proposal g(x, v) for the rejection sampler: a defensive mixture (1 − ε) g_main + ε g_wide.

    g_main(x, v) = q(x) t(v | x): q(x) ∝ sech²(z / 2h_z) exp(−R/h_R) inside the
    sphere (drawn by thinning uniform points); t: independent Student-t (5 dof)
    in v_R and v_z and a split Student-t in v_T (different scales below and above
    its centre, for the asymmetric-drift tail), with location and scales
    following the DF's profiles in R and z. g_wide has 1.6× the velocity scales
    and q_wide(x) ∝ exp(−|z|/2h_z). The forms were fitted once to importance-
    weighted pilot samples of the default disk; they set only the efficiency.
    Correctness rests on the bound M ≥ max f/g, which the sampler raises (and
    re-thins) whenever a larger ratio is seen.
    """

    dof = 5.0
    eps = 0.1
    wide = 1.6

    def __init__(self, center, radius, hr, sr, sz, hsr, hsz):
        self.center = np.asarray(center, dtype=float)
        self.radius = float(radius)
        self.h_z = float(np.clip(0.2 * (sz / 22.0) ** 2, 0.03, 2.0))  # kpc; sech² fit to the default disk
        self.h_R = 1.1 * hr
        self.sr, self.sz, self.hsr, self.hsz = sr, sz, hsr, hsz
        self.R_min = max(np.hypot(self.center[0], self.center[1]) - self.radius, 0.0)

    # ------------------------------------------------------------ positions
    def _log_q(self, x, wide=False):
        """log q(x) ≤ 0 inside the sphere (unnormalised)."""
        R = np.hypot(x[:, 0], x[:, 1])
        az = np.abs(x[:, 2])
        if wide:
            lz = -az / (2 * self.h_z)
        else:
            u = az / (2 * self.h_z)
            lz = -2 * (u + np.log1p(np.exp(-2 * u)) - math.log(2))  # log sech²(u) ≤ 0
        return lz - (R - self.R_min) / self.h_R

    def _uniform_sphere(self, rng, k):
        d = rng.normal(size=(k, 3))
        d *= (self.radius * rng.random(k) ** (1 / 3) / np.linalg.norm(d, axis=1))[:, None]
        return self.center + d

    def _sample_x(self, rng, m, wide):
        out, got = [], 0
        while got < m:
            k = 12 * (m - got) + 256
            x = self._uniform_sphere(rng, k)
            keep = np.log(rng.random(k)) < self._log_q(x, wide)
            out.append(x[keep])
            got += int(keep.sum())
        return np.concatenate(out)[:m]

    def log_q_volumes(self, rng, m: int = 400_000):
        """log ∫_sphere q d³x for (main, wide), with relative standard errors (Monte Carlo)."""
        x = self._uniform_sphere(rng, m)
        vol = 4 / 3 * math.pi * self.radius**3
        out = []
        for wide in (False, True):
            w = np.exp(self._log_q(x, wide))
            out.append((math.log(vol * w.mean()), float(w.std() / (w.mean() * math.sqrt(m)))))
        return out

    # ----------------------------------------------------------- velocities
    def _loc_scale(self, x):
        R = np.hypot(x[:, 0], x[:, 1])
        z = np.abs(x[:, 2])
        sig_r = 1.048 * self.sr * np.exp(-(R - RO_KPC) / (1.36 * self.hsr))
        sig_z = 0.895 * self.sz * np.exp(-(R - RO_KPC) / (1.09 * self.hsz)) * (1 - 0.1 * np.minimum(z, 2.0))
        mu_t = VO_KMS - 14.4 * (self.sr / 44.0) ** 2 - 1.7 * (R - RO_KPC) - 20.0 * z**2 + 0.1 * sig_r
        return mu_t, sig_r, 0.9 * sig_r, 0.7 * sig_r, sig_z

    def _t_logpdf(self, u):
        from scipy.special import gammaln

        nu = self.dof
        c = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * math.log(nu * math.pi)
        return c - (nu + 1) / 2 * np.log1p(u**2 / nu)

    def _log_t(self, x, vR, vT, vz, k):
        mu_t, s_r, s_lo, s_hi, s_z = (a if i == 0 else k * a for i, a in enumerate(self._loc_scale(x)))
        dt = vT - mu_t
        s_t = np.where(dt < 0, s_lo, s_hi)
        split = math.log(2) - np.log(s_lo + s_hi)  # split-t normalisation 2/(s_lo + s_hi)
        return (
            self._t_logpdf(vR / s_r) - np.log(s_r)
            + self._t_logpdf(dt / s_t) + split
            + self._t_logpdf(vz / s_z) - np.log(s_z)
        )

    def _sample_v(self, rng, x, k):
        mu_t, s_r, s_lo, s_hi, s_z = (a if i == 0 else k * a for i, a in enumerate(self._loc_scale(x)))
        t = rng.standard_t(self.dof, size=(x.shape[0], 3))
        below = rng.random(x.shape[0]) < s_lo / (s_lo + s_hi)
        vT = mu_t + np.where(below, -s_lo, s_hi) * np.abs(t[:, 1])
        vR, vz = t[:, 0] * s_r, t[:, 2] * s_z
        phi = np.arctan2(x[:, 1], x[:, 0])
        # v = v_R e_R + v_φ e_φ + v_z e_z with v_φ = −v_T (rotation with v_y > 0 at x < 0)
        c, s = np.cos(phi), np.sin(phi)
        return np.stack([vR * c + vT * s, vR * s - vT * c, vz], axis=1)

    # --------------------------------------------------------------- mixture
    def sample(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
        """m proposals (x [kpc], v [km/s]) from the mixture."""
        n_wide = int(rng.binomial(m, self.eps))
        x = np.concatenate([self._sample_x(rng, m - n_wide, False), self._sample_x(rng, n_wide, True)])
        v = np.concatenate([self._sample_v(rng, x[: m - n_wide], 1.0), self._sample_v(rng, x[m - n_wide :], self.wide)])
        perm = rng.permutation(m)
        return x[perm], v[perm]

    def set_volumes(self, rng: np.random.Generator) -> float:
        """Fix the normalisations of q_main, q_wide; returns the relative error of the mixture's normalisation."""
        (self.log_v_main, e1), (self.log_v_wide, e2) = self.log_q_volumes(rng)
        return math.hypot(e1, e2)

    def log_g(self, x, v):
        """log of the normalised mixture density g(x, v) inside the sphere [log((kpc km/s)⁻³)]."""
        _, vR, vT, _, vz = _cylindrical(x, v)
        a = math.log(1 - self.eps) + self._log_q(x, False) - self.log_v_main + self._log_t(x, vR, vT, vz, 1.0)
        b = math.log(self.eps) + self._log_q(x, True) - self.log_v_wide + self._log_t(x, vR, vT, vz, self.wide)
        return np.logaddexp(a, b)


def _sample_disk(n, rng, envelope: _Envelope, log_f, safety=1.15, batch=None):
    """Adaptive-bound rejection sampling of n points from exp(log_f) with proposal ``envelope``.

    Accept with probability (f/g)/M. M starts at ``safety`` × the largest f/g of
    the first batch. When a proposal has f/g > M the bound is raised to
    M' = safety · f/g and the points already kept are thinned with probability
    M/M', so every kept point has been accepted with probability (f/g)/M_final:
    the sample is exact for the final bound (up to the O(1/N) dependence of
    an adaptively chosen bound on the draws themselves). The statistics report
    how many proposals exceeded the bound in force (each triggered a raise).
    """
    if batch is None:
        batch = int(min(_BATCH, max(4096, 3 * n)))
    xs, vs = [], []
    n_kept = 0
    log_m = None
    stats = {"n_proposed": 0, "n_bound_raises": 0, "n_exceeded_bound": 0, "max_log_ratio": -np.inf}
    sum_ratio, sum_ratio2 = 0.0, 0.0
    while n_kept < n:
        x, v = envelope.sample(rng, batch)
        lr = log_f(x, v) - envelope.log_g(x, v)
        stats["n_proposed"] += batch
        ratio = np.exp(np.where(np.isfinite(lr), lr, -np.inf))
        sum_ratio += ratio.sum()
        sum_ratio2 += (ratio**2).sum()
        top = float(np.max(np.where(np.isnan(lr), -np.inf, lr)))  # a NaN would make the bound NaN: no star
        stats["max_log_ratio"] = max(stats["max_log_ratio"], top)
        if log_m is None:
            log_m = top + math.log(safety)
        elif top > log_m:
            stats["n_exceeded_bound"] += int(np.sum(lr > log_m))
            new = top + math.log(safety)
            keep_p = math.exp(log_m - new)
            for j in range(len(xs)):
                k = rng.random(xs[j].shape[0]) < keep_p
                xs[j], vs[j] = xs[j][k], vs[j][k]
            n_kept = sum(a.shape[0] for a in xs)
            log_m = new
            stats["n_bound_raises"] += 1
        acc = np.log(rng.random(batch)) < lr - log_m
        xs.append(x[acc])
        vs.append(v[acc])
        n_kept += int(acc.sum())
    x = np.concatenate(xs)[:n]
    v = np.concatenate(vs)[:n]
    m = stats["n_proposed"]
    mean = sum_ratio / m
    sem = math.sqrt(max(sum_ratio2 / m - mean**2, 0.0) / m)
    stats.update(
        {
            "log_bound": float(log_m),
            "acceptance": float(n_kept / m),
            "fraction_exceeded_bound": stats["n_exceeded_bound"] / m,
            "max_ratio_over_final_bound": float(math.exp(stats["max_log_ratio"] - log_m)),
            "mean_ratio": float(mean),
            "mean_ratio_rel_err": float(sem / mean),
        }
    )
    return x, v, stats


def solar_neighbourhood_disk(
    n: int,
    seed: int,
    *,
    radius: Any = 2.0,
    scale_length: Any = RO_KPC / 3,
    sigma_r: Any = 0.2 * VO_KMS,
    sigma_z: Any = 0.1 * VO_KMS,
    sigma_r_scale_length: Any = RO_KPC,
    sigma_z_scale_length: Any = RO_KPC,
) -> tuple[Catalog, DiskTruth]:
    """Sample a quasi-isothermal thin disk in MWPotential2014 inside a sphere around the Sun (needs galpy).

    The DF is galpy's ``quasiisothermaldf`` (Binney & McMillan 2011) with
    Staeckel actions (δ = 3.6 kpc) in galpy's ``MWPotential2014`` (ro = 8 kpc,
    vo = 220 km/s). Defaults are galpy's standard example, in natural units
    (h_R, σ_R, σ_z, h_σR, h_σz) = (1/3, 0.2, 0.1, 1, 1): h_R = 2.67 kpc,
    σ_R,0 = 44 km/s, σ_z,0 = 22 km/s, h_σ = 8 kpc — thin-disk-like, giving at the
    Sun σ_R ≈ 45.8, σ_φ ≈ 33.2, σ_z ≈ 19.8 km/s, ⟨v_φ⟩ ≈ 202.0 km/s (galpy's moments at
    (R, z) = (8, 0.05) kpc with 24-point integration; its default 10 points give ~1 % off)
    and a vertical
    density falling as ≈ exp(−|z|/0.18 kpc) near 1 kpc (galpy's qdf.density: 0.179 kpc between
    0.9 and 1.1 kpc).

    Frame: right-handed astropy Galactocentric with :func:`mock_solar_parameters`
    (the Sun at (−8, 0, 0.0208) kpc, i.e. R = 8 kpc; rotation with v_y > 0 at
    the Sun). Stars are drawn by a vectorised rejection sampler on galpy's
    ``qdf(R, vR, vT, z, vz)`` (see :class:`_Envelope` and :func:`_sample_disk`);
    the sampler's statistics (acceptance, bound, bound raises) are in
    ``catalog.meta["sampler"]``. 10⁵ stars take ≈ 27 s of CPU on the 2-core
    development machine (≈ 2.6 × 10⁵ DF evaluations; benchmarks/disk_mock_timing.py).

    Args:
        n: number of stars.
        seed: seed of the numpy generator (same seed, same catalog).
        radius: radius of the sphere around the Sun [kpc] (default 2).
        scale_length: h_R of the surface density [kpc].
        sigma_r: σ_R,0, the radial dispersion parameter at R0 = 8 kpc [km/s].
        sigma_z: σ_z,0, the vertical dispersion parameter at R0 [km/s].
        sigma_r_scale_length: h_σR [kpc].
        sigma_z_scale_length: h_σz [kpc].

    Returns:
        (catalog, truth): the :class:`bayesdyn.Catalog` and a :class:`DiskTruth`.

    Raises:
        MockError: bad n, seed or parameters (radius must be in (0, 4] kpc).
        GalpyRequiredError: galpy is not installed.
    """
    n, seed = _check_n_seed(n, seed)
    radius = float(_u.strip(radius, "length", "radius"))
    if not (np.isfinite(radius) and 0 < radius <= 4.0):
        raise MockError(f"radius must be in (0, 4] kpc (the sampler's envelope is tuned near the Sun), got {radius}")
    pars = {
        "scale_length": float(_u.strip(scale_length, "length", "scale_length")),
        "sigma_r": float(_u.strip(sigma_r, "velocity", "sigma_r")),
        "sigma_z": float(_u.strip(sigma_z, "velocity", "sigma_z")),
        "sigma_r_scale_length": float(_u.strip(sigma_r_scale_length, "length", "sigma_r_scale_length")),
        "sigma_z_scale_length": float(_u.strip(sigma_z_scale_length, "length", "sigma_z_scale_length")),
    }
    for k, val in pars.items():
        if not (np.isfinite(val) and val > 0):
            raise MockError(f"{k} must be positive and finite, got {val}")
    _require_galpy("solar_neighbourhood_disk")
    import galpy

    solar = mock_solar_parameters()
    center = solar.position
    mw = MW2014.galpy()
    qargs = (
        pars["scale_length"],
        pars["sigma_r"],
        pars["sigma_z"],
        pars["sigma_r_scale_length"],
        pars["sigma_z_scale_length"],
        STAECKEL_DELTA_KPC,
    )
    envelope = _Envelope(center, radius, *qargs[:5])
    rng = np.random.default_rng(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    vol_err = envelope.set_volumes(rng)
    x, v, stats = _sample_disk(n, rng, envelope, lambda x, v: _log_qdf(*qargs, x, v, mw))
    stats["wall_s"] = round(time.perf_counter() - t0, 2)
    stats["cpu_s"] = round(time.process_time() - c0, 2)
    # g is normalised over the sphere, so ∫_sphere f = E_g[f/g]
    log_norm = math.log(stats["mean_ratio"])
    log_norm_err = math.hypot(vol_err, stats["mean_ratio_rel_err"])
    truth = DiskTruth(
        potential_model=mw,
        **pars,
        staeckel_delta=STAECKEL_DELTA_KPC,
        sphere_center=tuple(float(c) for c in center),
        sphere_radius=radius,
        log_norm=log_norm,
        log_norm_err=log_norm_err,
    )
    meta = {
        "mock": "solar_neighbourhood_disk",
        "seed": seed,
        "truth": truth.to_dict(),
        "solar": solar.to_dict(),
        "sampler": stats,
        "generator": f"bayesdyn.mocks.solar_neighbourhood_disk (rejection on galpy {galpy.__version__} quasiisothermaldf)",
        "galpy_version": galpy.__version__,
    }
    return Catalog(x, v, solar=solar, meta=meta), truth

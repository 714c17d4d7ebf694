"""galpy's MWPotential2014 (Bovy 2015) in physical units, in pure JAX.

Private to the mocks (bayesdyn.potentials has its own components; the lead
unifies them later). The three components, with galpy's definitions:

* bulge: power law with an exponential cut-off,
  ρ(r) = A (r / 1 kpc)^(−α) exp(−(r/r_c)²), α = 1.8, r_c = 1.9 kpc;
* disk: Miyamoto–Nagai, Φ = −G M / sqrt(R² + (a + sqrt(z² + b²))²), a = 3 kpc, b = 0.28 kpc;
* halo: NFW, ρ = ρ_s / ((r/r_s)(1 + r/r_s)²), r_s = 16 kpc.

galpy fixes the amplitudes by ``normalize``: component i supplies the fraction
f_i = (0.05, 0.6, 0.35) of v_c² at R0, with v_c(R0) = v0. Here R0 = 8 kpc and
v0 = 220 km/s (galpy's ro, vo), and the amplitudes are derived in closed form
below, so no galpy is needed at run time (tests compare with galpy).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
from scipy import special as _sp

from .. import units as _u

__all__ = ["MW2014", "mw2014_params"]

_G = _u.G

RO_KPC = 8.0
VO_KMS = 220.0
FRACTIONS = {"bulge": 0.05, "disk": 0.6, "halo": 0.35}
BULGE_ALPHA = 1.8
BULGE_RC_KPC = 1.9
DISK_A_KPC = 3.0
DISK_B_KPC = 0.28
HALO_RS_KPC = 16.0


def mw2014_params(ro: float = RO_KPC, vo: float = VO_KMS) -> dict[str, float]:
    """Physical amplitudes of MWPotential2014 for galpy's (ro [kpc], vo [km/s])."""
    vc2 = vo**2
    # bulge: v_c² = G M(<R0)/R0, M(<r) = 2π A r_c^(3−α) γ(3/2 − α/2, r²/r_c²)
    s = 1.5 - BULGE_ALPHA / 2
    rc = BULGE_RC_KPC * ro / RO_KPC
    m_unit = 2 * math.pi * rc ** (3 - BULGE_ALPHA) * math.gamma(s) * _sp.gammainc(s, (ro / rc) ** 2)
    bulge_amp = FRACTIONS["bulge"] * vc2 * ro / (_G * m_unit)
    # disk: v_c² = G M R0² / (R0² + (a+b)²)^{3/2} in the plane
    a = DISK_A_KPC * ro / RO_KPC
    b = DISK_B_KPC * ro / RO_KPC
    disk_mass = FRACTIONS["disk"] * vc2 * (ro**2 + (a + b) ** 2) ** 1.5 / (_G * ro**2)
    # halo: v_c² = G M(<R0)/R0, M(<r) = 4π ρ_s r_s³ (ln(1+x) − x/(1+x))
    rs = HALO_RS_KPC * ro / RO_KPC
    xh = ro / rs
    halo_rho = FRACTIONS["halo"] * vc2 * ro / (_G * 4 * math.pi * rs**3 * (math.log1p(xh) - xh / (1 + xh)))
    return {
        "ro_kpc": float(ro),
        "vo_kms": float(vo),
        "bulge_alpha": BULGE_ALPHA,
        "bulge_rc_kpc": float(rc),
        "bulge_amplitude_msun_kpc3": float(bulge_amp),
        "disk_mass_msun": float(disk_mass),
        "disk_a_kpc": float(a),
        "disk_b_kpc": float(b),
        "halo_rho_s_msun_kpc3": float(halo_rho),
        "halo_rs_kpc": float(rs),
    }


_X_MAX = 60.0
_N_TERMS = 170


def _gammainc(s, x):
    """Regularised lower incomplete gamma P(s, x) for 0 < s < 2, x ≥ 0, by its power series.

    P = x^s e^(−x)/Γ(s+1) Σ_k x^k / ((s+1)…(s+k)), 170 terms, exact to rounding for
    x ≤ 60; P = 1 beyond (Q(s, 60) < 1e-25). A fixed-length loop keeps the
    compiled program small (jax.scipy.special.gammainc costs seconds to compile).
    """
    xs = jnp.clip(x, 0.0, _X_MAX)

    def body(k, carry):
        term, total = carry
        term = term * xs / (s + k)
        return term, total + term

    one = jnp.ones_like(xs)
    _, total = jax.lax.fori_loop(1, _N_TERMS, body, (one, one))
    log_pref = s * jnp.log(jnp.where(xs > 0, xs, 1.0)) - xs - jsp.gammaln(s + 1)
    p = jnp.where(xs > 0, jnp.exp(log_pref) * total, 0.0)
    return jnp.where(x >= _X_MAX, 1.0, jnp.minimum(p, 1.0))


def _safe(x):
    """x where positive, else 1 (keeps unused branches of jnp.where finite under autodiff)."""
    return jnp.where(x > 0, x, 1.0)


def _nfw_m_over_x3(x):
    """(ln(1+x) − x/(1+x)) / x³, with a series below x = 0.02 (no cancellation)."""
    xs = jnp.where(x < 0.02, 0.02, x)
    generic = (jnp.log1p(xs) - xs / (1 + xs)) / xs**3
    # Σ_{k≥2} (−1)^k (k−1)/k x^(k−3), truncated after k = 8 (error < 1e-11 relative)
    series = 0.5 / _safe(x) - 2.0 / 3.0 + 0.75 * x - 0.8 * x**2 + (5.0 / 6.0) * x**3 - (6.0 / 7.0) * x**4 + 0.875 * x**5
    return jnp.where(x < 0.02, series, generic)


class MW2014(eqx.Module):
    """MWPotential2014 as functions of (..., 3) positions [kpc] (JAX); amplitudes in physical units.

    Attributes:
        bulge_amplitude: A [M☉/kpc³] (density at r = 1 kpc before the cut-off).
        disk_mass: Miyamoto–Nagai mass [M☉].
        halo_rho_s: NFW scale density [M☉/kpc³].
        bulge_alpha, bulge_rc: power-law slope and cut-off radius [kpc].
        disk_a, disk_b: Miyamoto–Nagai scale length and height [kpc].
        halo_rs: NFW scale radius [kpc].
    """

    bulge_amplitude: float
    bulge_alpha: float
    bulge_rc: float
    disk_mass: float
    disk_a: float
    disk_b: float
    halo_rho_s: float
    halo_rs: float

    @classmethod
    def galpy(cls, ro: float = RO_KPC, vo: float = VO_KMS) -> "MW2014":
        """galpy's ``MWPotential2014`` for its unit scales ro [kpc] and vo [km/s]."""
        p = mw2014_params(ro, vo)
        return cls(
            bulge_amplitude=p["bulge_amplitude_msun_kpc3"],
            bulge_alpha=p["bulge_alpha"],
            bulge_rc=p["bulge_rc_kpc"],
            disk_mass=p["disk_mass_msun"],
            disk_a=p["disk_a_kpc"],
            disk_b=p["disk_b_kpc"],
            halo_rho_s=p["halo_rho_s_msun_kpc3"],
            halo_rs=p["halo_rs_kpc"],
        )

    # ---------------------------------------------------------------- bulge
    def _bulge_mass(self, r):
        s = 1.5 - self.bulge_alpha / 2
        return (
            2 * math.pi * self.bulge_amplitude * self.bulge_rc ** (3 - self.bulge_alpha) * jnp.exp(jsp.gammaln(s))
            * _gammainc(s, (r / self.bulge_rc) ** 2)
        )

    def _bulge_pot(self, r):
        al, rc = self.bulge_alpha, self.bulge_rc
        s_out = 1.0 - al / 2
        # Φ = −G M(<r)/r − 4πG ∫_r^∞ ρ r' dr',  ∫_r^∞ ρ r' dr' = A r_c^(2−α)/2 Γ(1−α/2, r²/r_c²)
        outer = self.bulge_amplitude * rc ** (2 - al) / 2 * jnp.exp(jsp.gammaln(s_out)) * (1.0 - _gammainc(s_out, (r / rc) ** 2))
        return -_G * self._bulge_mass(r) / r - 4 * math.pi * _G * outer

    def _bulge_dens(self, r):
        return self.bulge_amplitude * r ** (-self.bulge_alpha) * jnp.exp(-((r / self.bulge_rc) ** 2))

    # ----------------------------------------------------------------- disk
    def _disk(self, x):
        m, a, b = self.disk_mass, self.disk_a, self.disk_b
        R2 = x[..., 0] ** 2 + x[..., 1] ** 2
        z = x[..., 2]
        zb = jnp.sqrt(z**2 + b**2)
        D2 = R2 + (a + zb) ** 2
        D = jnp.sqrt(D2)
        pot = -_G * m / D
        fac = -_G * m / (D2 * D)
        acc = jnp.stack([fac * x[..., 0], fac * x[..., 1], fac * z * (a + zb) / zb], axis=-1)
        dens = (b**2 * m / (4 * math.pi)) * (a * R2 + (a + 3 * zb) * (a + zb) ** 2) / (D2**2 * D * zb**3)
        return acc, pot, dens

    # ----------------------------------------------------------------- halo
    def _halo_m_over_r3(self, r):
        return 4 * math.pi * self.halo_rho_s * _nfw_m_over_x3(r / self.halo_rs)

    def _halo_pot(self, r):
        xr = r / self.halo_rs
        return -4 * math.pi * _G * self.halo_rho_s * self.halo_rs**2 * jnp.log1p(xr) / xr

    def _halo_dens(self, r):
        xr = r / self.halo_rs
        return self.halo_rho_s / (xr * (1 + xr) ** 2)

    # --------------------------------------------------------------- totals
    def acceleration(self, x):
        """a = −∇Φ [(km/s)²/kpc] at x [kpc], shape (..., 3)."""
        r = jnp.linalg.norm(x, axis=-1)
        rs = _safe(r)
        acc_d, _, _ = self._disk(x)
        m_over_r3 = self._bulge_mass(rs) / rs**3 + self._halo_m_over_r3(r)
        return acc_d - _G * m_over_r3[..., None] * x

    def potential(self, x):
        """Φ [(km/s)²] at x [kpc], zero at infinity (finite at r = 0, where the bulge's and halo's limits are used)."""
        norm = jnp.linalg.norm(x, axis=-1)
        r = _safe(norm)
        _, pot_d, _ = self._disk(x)
        al, rc = self.bulge_alpha, self.bulge_rc
        # r = 0: G M(<r)/r → 0 and Γ(1 − α/2, 0) = Γ(1 − α/2); log(1 + x)/x → 1 (evaluated at r = 1 kpc before,
        # Φ(0) came out −218 718 against −271 938 (km/s)²)
        bulge0 = -4 * math.pi * _G * self.bulge_amplitude * rc ** (2 - al) / 2 * jnp.exp(jsp.gammaln(1.0 - al / 2))
        halo0 = -4 * math.pi * _G * self.halo_rho_s * self.halo_rs**2
        return (jnp.where(norm > 0, self._bulge_pot(r), bulge0) + pot_d
                + jnp.where(norm > 0, self._halo_pot(r), halo0))

    def density(self, x):
        """ρ [M☉/kpc³] at x [kpc] (the bulge and halo are cusped: infinite at r = 0)."""
        r = jnp.linalg.norm(x, axis=-1)
        _, _, dens_d = self._disk(x)
        return self._bulge_dens(r) + dens_d + self._halo_dens(r)

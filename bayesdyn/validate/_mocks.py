"""Calibration mocks: how to draw a realisation, where to put nodes, which model to fit, what to report."""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpyro.distributions as dist

from .. import potentials as bp
from ..catalog import Catalog
from ..inference import PotentialModel, derived_quantities
from ._quantities import Quantity, density_at, parameter

__all__ = ["CalibrationMock", "NFWMock", "DiskMock", "GaiaChallengeMock", "get_mock", "MOCKS", "GAIA_CHALLENGE"]


class CalibrationMock(abc.ABC):
    """A named mock with known truth, and the analysis the calibration harness runs on it.

    Subclasses say how to draw a realisation of ``n`` stars, where to place the
    acceleration nodes, which :class:`bayesdyn.inference.PotentialModel` to fit
    and which :class:`Quantity` values to report (with their truths).
    """

    #: short name used in tables, file names and the command line
    name: str = ""
    #: True when the mock has exact scores (``method="exact"`` is possible)
    has_exact_scores: bool = True
    #: stars of a fixed catalog that every realisation draws from (None: each realisation is a new draw)
    fixed_stars: int | None = None

    @abc.abstractmethod
    def draw(self, n: int, seed: int) -> tuple[Catalog, Any]:
        """A realisation: (catalog, truth) with ``n`` stars from ``seed``."""

    @abc.abstractmethod
    def nodes(self, catalog: Catalog, n_nodes: int, seed: int) -> np.ndarray:
        """Node positions (P, 3) [kpc] for this catalog."""

    @abc.abstractmethod
    def model(self) -> PotentialModel:
        """The potential model with priors that is fitted."""

    @abc.abstractmethod
    def quantities(self) -> dict[str, Quantity]:
        """The reported quantities, by name, with their truths."""

    def sun(self, catalog: Catalog) -> np.ndarray:
        """Where the model's derived local quantities are evaluated (3,) [kpc]."""
        return np.asarray(catalog.solar.position, dtype=float)

    def exact_source(self, catalog: Catalog, truth: Any):
        """A score source with the exact scores of this realisation."""
        from ..dynamics import ExactScores

        if not self.has_exact_scores:
            raise ValueError(f"the {self.name} mock has no exact scores; use method='flow'")
        return ExactScores(truth, catalog)

    def to_dict(self) -> dict[str, Any]:
        """The mock's settings (JSON), recorded with the results (and compared when a run resumes)."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


def _radial_band(catalog: Catalog, lo: float, hi: float, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    r = np.linalg.norm(np.asarray(catalog.x) - np.asarray(center), axis=1)
    keep = (r >= lo) & (r <= hi)
    if keep.sum() == 0:
        raise ValueError(f"no stars between r = {lo:.3g} and {hi:.3g} kpc to place nodes at")
    return np.asarray(catalog.x)[keep]


def _log_radius_nodes(positions: np.ndarray, n_nodes: int, seed: int, lo: float, hi: float) -> np.ndarray:
    """Stars at random log-uniform target radii in [lo, hi] (each star once): nodes even in log r.

    Each target takes the first star at or above it in log r when that star is free, else the nearer of the free
    stars found walking down and up from there: not always the nearest (the star just below a free one is not
    considered), a bias outwards of under one star spacing in log r. Kept as it is: calibration runs resume by
    realisation, and the same seed must give the same nodes."""
    rng = np.random.default_rng(seed)
    log_r = np.log(np.linalg.norm(positions, axis=1))
    order = np.argsort(log_r)
    sorted_r = log_r[order]
    free = np.ones(len(order), bool)
    targets = np.sort(rng.uniform(np.log(lo), np.log(hi), size=min(n_nodes, len(order))))
    chosen = []
    for t in targets:  # loop over nodes (tens), not stars
        i = int(np.clip(np.searchsorted(sorted_r, t), 0, len(order) - 1))
        lo_i, hi_i = i, i
        while not free[lo_i] and lo_i > 0:
            lo_i -= 1
        while not free[hi_i] and hi_i < len(order) - 1:
            hi_i += 1
        cands = [j for j in (lo_i, hi_i) if free[j]]
        j = min(cands, key=lambda j: abs(sorted_r[j] - t))
        free[j] = False
        chosen.append(order[j])
    return positions[np.sort(np.asarray(chosen))]


# ----------------------------------------------------------------------------- (i) NFW
class NFWMock(CalibrationMock):
    """(i) Massless tracers (Zhao γ = 1, β = 5) in a fixed NFW halo, isotropic (``bd.mocks.spherical_tracer``).

    Model: NFW with free ρ_s ~ LogUniform(1e5, 1e9) M☉/kpc³ and r_s ~ LogUniform(1, 100) kpc.
    Nodes: stars with radii between the 5th and 95th percentiles of the sample, spread evenly in log r.
    Reported: the density at the true scale radius and both halo parameters.

    Args:
        halo_density: true ρ_s [M☉/kpc³].
        halo_scale_radius: true r_s [kpc].
        tracer_scale_radius: the tracers' scale radius [kpc].
        node_quantiles: radial percentiles of the stars that bound the nodes.
    """

    name = "nfw"

    def __init__(
        self,
        halo_density: float = 1e7,
        halo_scale_radius: float = 10.0,
        tracer_scale_radius: float = 5.0,
        node_quantiles: tuple[float, float] = (5.0, 95.0),
    ):
        self.halo_density = float(halo_density)
        self.halo_scale_radius = float(halo_scale_radius)
        self.tracer_scale_radius = float(tracer_scale_radius)
        self.node_quantiles = tuple(float(q) for q in node_quantiles)

    def draw(self, n, seed):
        from ..mocks import spherical_tracer

        return spherical_tracer(
            n,
            seed,
            halo="nfw",
            halo_density=self.halo_density,
            halo_scale_radius=self.halo_scale_radius,
            tracer_scale_radius=self.tracer_scale_radius,
        )

    def to_dict(self):
        # the catalogs' sampler: until 2026-12-07 galpy drew the velocities (their ⟨v²⟩ 0.5 % high at 0.5 kpc); a
        # flow cache or a resumed run of those catalogs is keyed apart, not mixed with these
        return {**super().to_dict(), "sampler": "truth-df"}

    def nodes(self, catalog, n_nodes, seed):
        r = np.linalg.norm(np.asarray(catalog.x), axis=1)
        lo, hi = np.percentile(r, self.node_quantiles)
        return _log_radius_nodes(_radial_band(catalog, lo, hi), n_nodes, seed, lo, hi)

    def model(self):
        return PotentialModel(
            halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=dist.LogUniform(1.0, 100.0))
        )

    def quantities(self):
        rs = self.halo_scale_radius
        return {
            "rho_at_rs": Quantity(
                "rho_at_rs", "Msun/kpc3", density_at([rs, 0.0, 0.0]), self.halo_density / 4.0,
                f"halo density at the true scale radius r = {rs:g} kpc",
            ),
            "halo.scale_density": Quantity(
                "halo.scale_density", "Msun/kpc3", parameter("halo.scale_density"), self.halo_density, "NFW ρ_s"
            ),
            "halo.scale_radius": Quantity(
                "halo.scale_radius", "kpc", parameter("halo.scale_radius"), self.halo_scale_radius, "NFW r_s"
            ),
        }


# ---------------------------------------------------------------------------- (ii) disk
class DiskMock(CalibrationMock):
    """(ii) A quasi-isothermal disk in MWPotential2014 around the Sun (``bd.mocks.solar_neighbourhood_disk``).

    Model: MWPotential2014's shapes with the bulge fixed, the Miyamoto–Nagai disk
    mass free (LogUniform(1e10, 3e11) M☉; a = 3, b = 0.28 kpc fixed) and the NFW
    halo density free (LogUniform(1e5, 1e9) M☉/kpc³; r_s = 16 kpc fixed).
    Nodes: stars within ``node_radius`` of the Sun. Reported: total and DM
    density at the Sun, K_z = |a_z| at (R0, z = 1.1 kpc), and both free parameters.

    The mock's DF uses Staeckel actions, so it is only approximately in
    equilibrium (``DiskTruth``): even exact scores carry a small systematic error.

    Args:
        radius: radius of the sampled sphere around the Sun [kpc].
        node_radius: nodes lie within this distance of the Sun [kpc].
    """

    name = "disk"

    def __init__(self, radius: float = 2.0, node_radius: float = 1.5):
        self.radius = float(radius)
        self.node_radius = float(node_radius)

    def draw(self, n, seed):
        from ..mocks import solar_neighbourhood_disk

        return solar_neighbourhood_disk(n, seed, radius=self.radius)

    def nodes(self, catalog, n_nodes, seed):
        from ..dynamics import default_nodes

        return default_nodes(np.asarray(catalog.x), n_nodes, seed, center=self.sun(catalog), radius=self.node_radius)

    def sun(self, catalog):
        from ..mocks import mock_solar_parameters

        return np.asarray(mock_solar_parameters().position, dtype=float)

    def _truth_components(self):
        mw = bp.MWPotential2014()
        return {"bulge": mw["bulge"], "disk": mw["disk"], "halo": mw["halo"]}

    def model(self):
        mw = self._truth_components()
        disk, halo = mw["disk"], mw["halo"]
        return PotentialModel(
            bulge=mw["bulge"],
            disk=bp.MiyamotoNagai(mass=dist.LogUniform(1e10, 3e11), a=disk.a, b=disk.b),
            halo=bp.NFW(scale_density=dist.LogUniform(1e5, 1e9), scale_radius=halo.scale_radius),
        )

    def quantities(self):
        import jax
        import jax.numpy as jnp

        from ..mocks import mock_solar_parameters

        sun = np.asarray(mock_solar_parameters().position, dtype=float)

        def local(key):
            def fn(comps):
                return derived_quantities(comps, ("halo",), jnp.asarray(sun))[key]

            fn.__name__ = f"derived[{key}]"
            return fn

        truth = self._truth_components()
        with jax.enable_x64(True):
            true_local = {k: float(v) for k, v in derived_quantities(truth, ("halo",), jnp.asarray(sun)).items()}
        return {
            "rho_total_sun": Quantity(
                "rho_total_sun", "Msun/kpc3", local("rho_total_sun"), true_local["rho_total_sun"],
                "total density at the Sun",
            ),
            "rho_dm_sun": Quantity(
                "rho_dm_sun", "Msun/kpc3", local("rho_dm_sun"), true_local["rho_dm_sun"],
                "dark-matter density at the Sun",
            ),
            "Kz_1p1kpc": Quantity(
                "Kz_1p1kpc", "(km/s)2/kpc", local("Kz_1p1kpc"), true_local["Kz_1p1kpc"], "|a_z| at (R0, z = 1.1 kpc)"
            ),
            "disk.mass": Quantity(
                "disk.mass", "Msun", parameter("disk.mass"), float(truth["disk"].mass), "MN disk mass"
            ),
            "halo.scale_density": Quantity(
                "halo.scale_density", "Msun/kpc3", parameter("halo.scale_density"), float(truth["halo"].scale_density),
                "NFW ρ_s (r_s = 16 kpc fixed)",
            ),
        }


# ------------------------------------------------------------------- (iii) Gaia Challenge
GAIA_CHALLENGE = {
    "core": ("gs010_bs050_rcrs025_rarc100_core_0400mpc3_df_10000_0.dat", (4e8, 1.0, 1.0, 3.0, 0.0)),
    "cusp": ("gs010_bs050_rcrs010_rarc100_cusp_0064mpc3_df_10000_0.dat", (6.4e7, 1.0, 1.0, 3.0, 1.0)),
}
"""The two Gaia Challenge spherical mocks (Read et al. 2021): file name, DM Zhao (ρ0, r_s, α, β, γ)."""


def _default_data_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gaia_challenge"


class GaiaChallengeMock(CalibrationMock):
    """(iii) A Gaia Challenge spherical dwarf (10⁴ stars, Osipkov–Merritt tracers in a fixed Zhao halo).

    One fixed realisation: ``draw`` returns the file's stars (a random subset of
    ``n`` when ``n`` < 10⁴). Model: a Zhao halo with every parameter free, its amplitude
    the density at the middle of the nodes' band (:class:`~bayesdyn.potentials.ZhaoAtRadius`,
    r_ref = √(0.1 × 1) = 0.316 kpc) — ρ(r_ref) ~ LogUniform(1e5, 1e11) M☉/kpc³,
    r_s ~ LogUniform(0.05, 20) kpc, α ~ U(0.5, 3), β ~ U(2.5, 6), γ ~ U(0, 2). (Until
    2026-12-04 the amplitude was ρ_s with the same prior: NUTS stalled on the ρ_s–r_s–γ
    ridge, r̂ up to 3.6; ``benchmarks/zhao_reparam.py``.) Nodes: stars spread evenly in
    log r over [0.1, 1] kpc. Reported: the DM density at r = 0.1, 0.25, 0.5, 1 kpc.

    Args:
        kind: ``"core"`` or ``"cusp"``.
        data_dir: folder with the two files (default ``../shared/data/gaia_challenge``
            relative to the project root).
        radii: radii of the reported densities [kpc].
        node_band: radial band of the nodes [kpc].
    """

    has_exact_scores = False

    def __init__(
        self,
        kind: str = "core",
        data_dir: str | Path | None = None,
        radii: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0),
        node_band: tuple[float, float] = (0.1, 1.0),
    ):
        if kind not in GAIA_CHALLENGE:
            raise ValueError(f"kind must be one of {sorted(GAIA_CHALLENGE)}, got {kind!r}")
        self.kind = kind
        self.name = f"gaia-challenge-{kind}"
        self.data_dir = None if data_dir is None else str(data_dir)  # None: ../shared/data/gaia_challenge
        self.radii = tuple(float(r) for r in radii)
        self.node_band = tuple(float(r) for r in node_band)

    @property
    def path(self) -> Path:
        """The mock's file."""
        folder = _default_data_dir() if self.data_dir is None else Path(self.data_dir)
        return folder / GAIA_CHALLENGE[self.kind][0]

    @property
    def fixed_stars(self) -> int | None:
        """The file's stars (its data rows), which every realisation draws from; None when the file is missing."""
        try:
            with open(self.path) as fh:
                return sum(1 for line in fh if line.strip() and not line.lstrip().startswith("#"))
        except OSError:
            return None

    def draw(self, n, seed):
        if not self.path.is_file():
            raise FileNotFoundError(
                f"Gaia Challenge file not found at {self.path}; pass data_dir= (the folder of "
                "../shared/data/gaia_challenge)"
            )
        table = np.loadtxt(self.path)
        if table.ndim != 2 or table.shape[1] != 6:
            raise ValueError(f"{self.path} must have 6 columns x y z [kpc] vx vy vz [km/s]; got shape {table.shape}")
        if n > table.shape[0]:
            raise ValueError(f"the {self.name} file has {table.shape[0]} stars; asked for n = {n}")
        if n < table.shape[0]:
            rng = np.random.default_rng(seed)
            table = table[np.sort(rng.choice(table.shape[0], n, replace=False))]
        cat = Catalog(table[:, :3], table[:, 3:], meta={"mock": self.name, "file": self.path.name})
        return cat, self.truth_halo()

    def truth_halo(self) -> bp.Zhao:
        """The true dark-matter halo (a bound :class:`bayesdyn.potentials.Zhao`)."""
        rho, rs, a, b, g = GAIA_CHALLENGE[self.kind][1]
        return bp.Zhao(rho, rs, alpha=a, beta=b, gamma=g)

    def nodes(self, catalog, n_nodes, seed):
        lo, hi = self.node_band
        return _log_radius_nodes(_radial_band(catalog, lo, hi), n_nodes, seed, lo, hi)

    def model(self):
        lo, hi = self.node_band
        return PotentialModel(
            halo=bp.ZhaoAtRadius(
                reference_density=dist.LogUniform(1e5, 1e11),
                scale_radius=dist.LogUniform(0.05, 20.0),
                alpha=dist.Uniform(0.5, 3.0),
                beta=dist.Uniform(2.5, 6.0),
                gamma=dist.Uniform(0.0, 2.0),
                reference_radius=math.sqrt(lo * hi),
            )
        )

    def quantities(self):
        import jax

        halo = self.truth_halo()
        out = {}
        for r in self.radii:
            name = f"rho_dm_r{r:g}"
            with jax.enable_x64(True):
                true = float(halo.density(np.array([r, 0.0, 0.0])))
            out[name] = Quantity(name, "Msun/kpc3", density_at([r, 0.0, 0.0]), true, f"DM density at r = {r:g} kpc")
        return out


MOCKS = {
    "nfw": NFWMock,
    "disk": DiskMock,
    "gaia-challenge-core": lambda: GaiaChallengeMock("core"),
    "gaia-challenge-cusp": lambda: GaiaChallengeMock("cusp"),
}
"""Calibration mocks by name → a factory of its :class:`CalibrationMock` (:func:`get_mock`)."""


def get_mock(mock: "str | CalibrationMock") -> CalibrationMock:
    """A :class:`CalibrationMock` by name: ``nfw``, ``disk``, ``gaia-challenge-core`` or ``gaia-challenge-cusp``."""
    if isinstance(mock, CalibrationMock):
        return mock
    if mock not in MOCKS:
        raise ValueError(f"unknown mock {mock!r}; choose one of {sorted(MOCKS)} or pass a CalibrationMock")
    return MOCKS[mock]()

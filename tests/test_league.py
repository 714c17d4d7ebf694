"""benchmarks/league.py (issue 8) runs end to end at its --tiny settings and writes a complete table."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _league():
    spec = importlib.util.spec_from_file_location("league", ROOT / "benchmarks" / "league.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["league"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_tiny_league_disk(tmp_path):
    """Every row and method is present; truth, Jeans and the page agree with the mock's physics.

    The tiny flows (K = 2, 2 epochs) are not accurate, so only their finiteness is
    checked; the truth is checked against MWPotential2014's values at the Sun and the
    Jeans estimate of a_R at the Sun (5000 stars, bootstrap σ ≈ 400 (km/s)²/kpc)
    against the truth within 3σ and 15 %.
    """
    league = _league()
    out = tmp_path / "league.md"
    res = league.main(["--tiny", "--mocks", "disk", "--out", str(out), "--cache", str(tmp_path / "cache"), "--quiet"])
    disk = res["disk"]
    keys = [q.key for q in disk.quantities]
    assert keys == ["aR_sun", "az_sun", "aR_up", "az_up", "aR_down", "az_down", "rho_sun"]
    assert set(disk.cells) == set(league.METHODS)
    for m in league.METHODS:
        assert set(disk.cells[m]) == set(keys), m
    truth = disk.cells["truth"]
    # MWPotential2014 at (R, z) = (8, 0.0208) kpc: a_R = −6049.6, a_z = −116.6 (km/s)²/kpc, ρ = 0.1004 M☉/pc³;
    # at z = ±1 kpc a_z = ∓1883.5 (galpy-checked truth of the shipped mock)
    np.testing.assert_allclose([truth["aR_sun"].value, truth["az_sun"].value, truth["az_up"].value,
                                truth["az_down"].value, truth["rho_sun"].value],
                               [-6049.6, -116.56, -1883.5, 1883.5, 1.00353e8], rtol=1e-3)
    jeans = disk.cells["jeans"]["aR_sun"]
    assert math.isfinite(jeans.error) and 0 < jeans.error < 1500
    assert abs(jeans.value - truth["aR_sun"].value) < min(3 * jeans.error, 0.15 * abs(truth["aR_sun"].value))
    for m in ("flows", "parametric"):
        for k in ("aR_sun", "az_sun", "rho_sun"):
            c = disk.cells[m][k]
            assert math.isfinite(c.value) and math.isfinite(c.error) and c.error > 0, (m, k)
    text = out.read_text()
    assert "| a_R at the Sun (R = 8, z = 0.0208 kpc) | (km/s)²/kpc | -6050 |" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| a_") or line.startswith("| ρ")]
    assert len(table_rows) == len(keys) + 12  # the league table + the acceptance table (6 × 2 bayesdyn rows)
    assert "Machine (start)" in text and "## Timings" in text

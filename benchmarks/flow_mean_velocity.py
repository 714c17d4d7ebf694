"""The flows' conditional mean velocity at the Sun against the disk mock's DF (issue 8 diagnostic; changes nothing).

In the radial Jeans equation a_R ≈ −⟨v_φ²⟩/R + …, so an error δμ in the mean azimuthal velocity moves a_R by
about 2 μ δμ / (μ² + σ_φ²) ≈ 1 % per km/s on this mock (μ ≈ 202, σ_φ ≈ 33 km/s at the Sun). For each league
disk realisation (cached flows, as ``league_nodes.py``) this prints the member-mean of the flows' mean velocity
at the Sun (40 000 draws per member) minus the DF's (galpy's quasi-isothermal DF integrated on a 56³ velocity
grid, ±6 of the flows' standard deviations), and the stars' own mean within 0.3 and 0.5 kpc of the Sun minus the
DF's (what the data could see, ball-averaged). With ``--errors LOG`` (the output of ``league_nodes.py --node-bias
[--score-split]`` on the same realisations) it also prints the correlation and slope of each refit's a_R(⊙) error
against the flows' δμ_φ.

    python benchmarks/flow_mean_velocity.py [--realisations 20] [--first 0] [--errors LOG] [--psd-option KEY=VALUE ...]

``--psd-option`` reads the flows fitted with extra ``fit_psd`` settings instead (``league_nodes.py --node-bias
--psd-option``'s; fitted and cached on first use).

Cost: ~30 s per realisation on the 2-core Xeon (the stars are redrawn; the flows come from the cache).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from _options import psd_options  # noqa: E402
import league_nodes  # noqa: E402


def df_mean_velocity(truth, x, centre, sd, n=56):
    """The DF's mean velocity at x [km/s] by a grid integral of exp(log f) over centre ± 6 sd per axis."""
    grid = [np.linspace(c - 6 * s, c + 6 * s, n) for c, s in zip(centre, sd)]
    v = np.stack(np.meshgrid(*grid, indexing="ij"), -1).reshape(-1, 3)
    lf = np.asarray(truth.log_df(np.broadcast_to(x, v.shape), v), float)
    w = np.exp(lf - np.nanmax(lf))
    w[~np.isfinite(w)] = 0.0
    return (w[:, None] * v).sum(0) / w.sum()


def read_errors(path):
    """Per realisation {refit label: a_R(⊙) error [%]} from a ``league_nodes.py --node-bias`` log."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        m = re.match(r"r(\d+): (.*)", line)
        if m:
            out[int(m[1])] = {k.strip(): float(e) for k, e in re.findall(r"([^;:]+): least squares ([-+.\d]+) %", m[2])}
            j = re.search(r"Jeans ([-+.\d]+) %", m[2])
            if j:
                out[int(m[1])]["Jeans"] = float(j[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--errors", default=None, help="a league_nodes.py --node-bias log of the same realisations")
    ap.add_argument("--psd-option", action="append", default=[], metavar="KEY=VALUE",
                    help="flows fitted with this extra fit_psd setting (as league_nodes.py --psd-option)")
    a = ap.parse_args()

    from bayesdyn import validate

    t0 = time.time()
    print(f"# machine: {machine()}", flush=True)
    extra = psd_options(a.psd_option)
    if extra:
        print(f"# flows with the extra fit_psd settings {extra}", flush=True)
    mock, rows, mu_df = validate.DiskMock(), {}, None
    for r in range(a.first, a.first + a.realisations):
        real, spec, _ = league_nodes.realisation(mock, r, 0, extra)
        psd, sun = real["psd"], np.asarray(spec.sun, float)
        draws = [np.asarray(psd.sample_velocities(sun[None], 40_000, seed=11 + k, member=k), float).reshape(-1, 3)
                 for k in range(psd.n_members)]
        mu = np.mean([d.mean(0) for d in draws], 0)
        if mu_df is None:  # one DF for every realisation
            mu_df = df_mean_velocity(real["truth"], sun, mu, draws[0].std(0))
            print(f"DF mean velocity at the Sun {np.round(mu_df, 3).tolist()} km/s", flush=True)
        x, v = np.asarray(real["catalog"].x, float), np.asarray(real["catalog"].v, float)
        d = np.linalg.norm(x - sun, axis=1)
        stars = {h: v[d < h].mean(0) - mu_df for h in (0.3, 0.5)}
        rows[r] = mu - mu_df
        print(f"r{r}: flows' mean − DF {np.round(rows[r], 2).tolist()} km/s; stars within 0.3 kpc − DF "
              f"{np.round(stars[0.3], 2).tolist()}, within 0.5 kpc {np.round(stars[0.5], 2).tolist()}  "
              f"[{time.time() - t0:.0f} s]", flush=True)
    dmu = np.array([rows[r] for r in sorted(rows)])
    n = len(dmu)
    print(f"\nflows' mean − DF at the Sun over {n} realisations [km/s]: mean {np.round(dmu.mean(0), 2).tolist()} "
          f"± {np.round(dmu.std(0, ddof=1) / np.sqrt(n), 2).tolist()}, sd {np.round(dmu.std(0, ddof=1), 2).tolist()}")
    if a.errors:
        errs = read_errors(a.errors)
        common = [r for r in sorted(rows) if r in errs]
        labels = sorted({k for r in common for k in errs[r]})
        y = np.array([rows[r][1] for r in common])  # v_y: the Sun's azimuthal direction (x_⊙ on the −x axis)
        print(f"a_R(⊙) error against the flows' δμ_y over {len(common)} realisations (Jeans-equation expectation: "
              "about −1 % per km/s)")
        for lab in labels:
            e = np.array([errs[r].get(lab, np.nan) for r in common])
            k = np.isfinite(e)
            print(f"  {lab}: correlation {np.corrcoef(y[k], e[k])[0, 1]:+.2f}, slope {np.polyfit(y[k], e[k], 1)[0]:+.2f} "
                  "% per km/s")
    print(f"# {time.time() - t0:.0f} s; machine: {machine()}")


if __name__ == "__main__":
    main()

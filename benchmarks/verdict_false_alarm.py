"""How often the report's strong verdict (TRUTH CHECK FAILED / NOT A MEASUREMENT) fires, by chance and when it should.

The report checks its posterior's five local quantities (ρ_total(⊙), v_c(R0), K_z and Σ at 1.1 kpc, ρ_DM(⊙)) against
a mock's truth (or MWPotential2014). A lone exclusion from a 95 % interval is weak evidence; the strong verdict asks
for more. Two rules, with the same 3σ rule for a single value (fewer than 0.135 % of its draws beyond it):

- old (until this script): two or more exclusions, K_z and Σ together counting as one;
- new: fewer than 2.5 % of the posterior's own draws lie outside at least as many of its intervals as the truth
  (if the posterior is right the truth is like one more draw, so that share is the chance of the exclusions, with
  the rows' correlation; 2.5 % is the chance of two exclusions of five independent values, 2.3 %).

Setup (as the calibration's ``disk-truth-noise`` run): the disk calibration mock's true accelerations at 64 nodes
within 1.5 kpc of the Sun with a 5 % error floor, Gaussian noise drawn per realisation, its two-parameter model
(disk mass, halo density), NUTS 2 chains × 500 + 1000. Three inputs on the same nodes:

- ``calibrated``: noise drawn from the stated covariance: the intervals are right, every strong verdict is a false
  alarm (the rate it must keep low);
- ``understated``: noise drawn with 2× the stated standard deviation: intervals too narrow by 2;
- ``biased``: calibrated noise on accelerations scaled by 1.1 (a 10 % systematic error).

Pre-registered expectation (written before the first run): calibrated, the new rule's strong rate ≲ 4 % (2.5 % plus
the 3σ rule's ≤ 1.35 %) and at most the old rule's; understated and biased: the new rule keeps most of the old
rule's strong verdicts.

    python benchmarks/verdict_false_alarm.py [--realisations 40] [--seed 0]

About 5 s per realisation (three posteriors) on a 2-core machine once compiled: 100 took 8 min.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

KEYS = ("rho_total_sun", "v_circ_R0", "Kz_1p1kpc", "Sigma_1p1kpc", "rho_dm_sun")
PAIR = (KEYS.index("Kz_1p1kpc"), KEYS.index("Sigma_1p1kpc"))


def binomial_interval(k: int, n: int) -> tuple[float, float]:
    """Wilson 95 % interval of a rate k/n."""
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realisations", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from bayesdyn.inference import AccelerationData, derived_quantities
    from bayesdyn.pipeline._stages import _STRONG_TAIL, _exclusions, _strong
    from bayesdyn.validate import NutsRunner, get_mock

    print(f"machine: {machine()}")
    mock = get_mock("disk")
    model = mock.model()
    runner = NutsRunner(model, num_chains=2, num_warmup=500, num_samples=1000, dense_mass=True, init_steps=300)
    sun = mock.sun(None)
    true = derived_quantities(mock._truth_components(), ("halo",), sun)
    values = np.array([float(true[k]) for k in KEYS])
    setups = {"calibrated": (1.0, 1.0), "understated": (2.0, 1.0), "biased": (1.0, 1.1)}  # (noise sd ×, a ×)
    counts = {s: {"any": 0, "old": 0, "new": 0, "tail": 0} for s in setups}
    shares: dict[str, list[float]] = {s: [] for s in setups}
    t0 = time.time()
    for r in range(args.realisations):
        rng = np.random.default_rng([args.seed, r])
        catalog, truth = mock.draw(5000, int(rng.integers(2**31)))
        x = mock.nodes(catalog, 64, int(rng.integers(2**31)))
        a = np.asarray(truth.acceleration(x), dtype=np.float64)
        sd = 0.05 * np.linalg.norm(a, axis=1)
        z = rng.standard_normal(a.shape)
        cov = sd[:, None, None] ** 2 * np.eye(3)
        nuts_seed = int(rng.integers(2**31))
        line = []
        for name, (noise, scale) in setups.items():
            data = AccelerationData.create(x, scale * a + noise * sd[:, None] * z, cov, sun=sun)
            samples, _ = runner.run(data, nuts_seed)
            derived = model.derived(samples, sun)
            draws = np.column_stack([np.asarray(derived[f"derived.{k}"]).reshape(-1) for k in KEYS])
            out, tail, share = _exclusions(draws, values)
            n_out = int(out.sum())
            c = counts[name]
            c["any"] += n_out > 0
            c["tail"] += n_out > 0 and tail < _STRONG_TAIL
            c["old"] += n_out > 0 and (n_out - bool(out[list(PAIR)].all()) >= 2 or tail < _STRONG_TAIL)
            c["new"] += n_out > 0 and _strong(tail, share)
            shares[name].append(share)
            line.append(f"{name} {n_out} out, tail {tail:.4f}, share {share:.4f}")
        print(f"r={r:3d} ({time.time() - t0:5.0f} s): " + "; ".join(line), flush=True)
    n = args.realisations
    print(f"\n{n} realisations; strong verdict = TRUTH CHECK FAILED (rates with Wilson 95 % intervals)")
    print(f"{'input':12s} {'any excl.':>16s} {'old rule':>16s} {'new rule':>16s} {'3σ rule alone':>16s}")
    for name, c in counts.items():
        cells = [f"{c[k]:3d} ({100 * c[k] / n:4.1f} %)" for k in ("any", "old", "new", "tail")]
        print(f"{name:12s} " + " ".join(f"{s:>16s}" for s in cells))
    for name, c in counts.items():
        lo, hi = binomial_interval(c["new"], n)
        lo_o, hi_o = binomial_interval(c["old"], n)
        print(f"{name}: new rule {100 * lo:.1f}–{100 * hi:.1f} %, old rule {100 * lo_o:.1f}–{100 * hi_o:.1f} % (95 %)")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

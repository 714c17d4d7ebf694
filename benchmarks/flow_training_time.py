"""Training time per epoch of the sinh-arcsinh MAF (``flow="sas_maf"``) against the default affine MAF, same run.

Run: ``python benchmarks/flow_training_time.py [--n 20000] [--epochs 6] [--ensemble 4] [--repeats 2]``

Both train on the same ``--n`` stars of the shipped disk mock with the same ensemble, architecture, batch size
and learning rate; each as the docs use it (the default with the radial map "auto", sas_maf without a radial map,
as docs/flows.md recommends). Early stopping is off (patience above the epochs). The figure is the median wall
time of an epoch after the first (which holds the compilation), as ``psd.info["seconds_per_epoch"]`` records it;
the two flows alternate ``--repeats`` times so that a drifting machine affects both alike. The peer is the default
flow, in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="stars of the shipped disk mock")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--ensemble", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    import bayesdyn as bd

    cat, _ = bd.mocks.load_default()
    cat = cat.select(np.random.default_rng(0).permutation(cat.n) < a.n, f"{a.n} random stars")
    flows = {"maf (radial map auto)": {"flow": "maf"}, "sas_maf (no radial map)": {"flow": "sas_maf",
                                                                                     "radial_map": None}}
    print(f"machine before: {machine()}")
    per_epoch: dict[str, list[float]] = {name: [] for name in flows}
    for r in range(a.repeats):
        for name, kw in flows.items():
            psd = bd.fit_psd(cat, ensemble=a.ensemble, seed=r, max_epochs=a.epochs, patience=a.epochs + 1,
                             progress=False, **kw)
            s = float(psd.info["seconds_per_epoch"])
            per_epoch[name].append(s)
            print(f"  repeat {r}: {name}: {s:.2f} s/epoch ({psd.info['epochs']} epochs)", flush=True)
    print(f"machine after: {machine()}")
    base = np.median(per_epoch["maf (radial map auto)"])
    print(f"\n{a.n} stars, K = {a.ensemble}, {a.epochs} epochs, {a.repeats} repeats (medians):")
    for name, s in per_epoch.items():
        print(f"  {name}: {np.median(s):.2f} s/epoch, {np.median(s) / base:.2f}× the default")


if __name__ == "__main__":
    main()

"""The noise and bias of ``bayesdyn.validate.design_effect`` (``inflate:auto``), simulated.

Three kinds of member error on P = 20 nodes around a centre, a = −100 x/|x|
(km²/s²/kpc), K members, the covariance each node is given being the members' own
spread (+ 0.01 I):

- **independent**: every node and component its own N(0, 5²) error (true c = 1);
- **translation**: one N(0, 5²) vector per member, shared by every node (true c = P);
- **scaling**: a_k = (1 + ε_k) a, ε_k ~ N(0, 0.05²), shared by every node (true c = P).

It prints the mean of c = max(c_comp, c_amp) and of each part over ``--draws`` data
sets per K: c_comp (per-component correlations) sees the translation but not the
scaling, c_amp (along the field) the scaling but not the translation; for independent
nodes both are biased upwards by their noise, clipped at 1.

    python benchmarks/design_effect.py [--draws 400]
"""

from __future__ import annotations

import argparse

import numpy as np

from _machine import machine
from bayesdyn.inference import AccelerationData
from bayesdyn.validate import design_effect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--nodes", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(2)
    p = args.nodes
    x = rng.normal(size=(p, 3)) * 5.0
    a = -100.0 * x / np.linalg.norm(x, axis=1, keepdims=True)
    kinds = {
        "independent": lambda k: a + 5.0 * rng.normal(size=(k, p, 3)),
        "translation": lambda k: a + 5.0 * rng.normal(size=(k, 1, 3)),
        "scaling": lambda k: a * (1.0 + 0.05 * rng.normal(size=(k, 1, 1))),
    }
    print(f"machine: {machine()}")
    print(f"P = {p} nodes, {args.draws} data sets per row; mean of c, c_comp, c_amp (true c: 1, {p}, {p})")
    print("| members errors | K | c | c_comp | c_amp |")
    print("|---|---|---|---|---|")
    for name, draw in kinds.items():
        for k in (2, 4, 8, 16):
            out = []
            for _ in range(args.draws):
                members = draw(k)
                d = members - members.mean(0)
                cov = np.einsum("kpi,kpj->pij", d, d) / (k - 1) + 0.01 * np.eye(3)
                e = design_effect(AccelerationData.create(x, members.mean(0), cov, members=members))
                out.append((e["factor"], e["component_factor"], e["amplitude_factor"]))
            m = np.mean(out, axis=0)
            print(f"| {name} | {k} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} |")


if __name__ == "__main__":
    main()

"""Wall time of the weak-form fit with and without its linear-moment shortcut, and that both give one posterior.

When every free parameter is the amplitude of its own component (masses and densities with the shapes fixed), the
weak-form moments are linear in them, ḡ(θ) = c + θ·B, and ``bd.infer`` stores c and B (``WeakFormData``'s
``constant_moments``, ``linear_moments``) so that a NUTS step costs O(K M) instead of evaluating the model at
every star. This script fits the shipped disk mock (10⁵ stars in its 2-kpc sphere) with ``bd.infer`` — two-step
GMM weights, then 2 chains × (500 + 1000) NUTS draws — for two models: ``validate.DiskMock.model()`` (disk mass
and halo density free) and the pipeline's default model (plus a dark disk's surface density), once as released
and once with the shortcut switched off (the per-star path of earlier versions), and prints the wall times, each
parameter's median and standard deviation from both paths, and the machine.

    python benchmarks/weak_form_speed.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def main():
    import bayesdyn as bd
    from bayesdyn import validate
    from bayesdyn.inference import _infer
    from bayesdyn.pipeline import DEFAULT_CONFIG, build_model

    m0 = machine()
    cat, _ = bd.mocks.load_default()
    data = bd.weak_form_data(cat)
    print(f"{data.n_stars} stars, {data.n_moments} moments; NUTS 2 chains × (500 + 1000)")
    released = _infer._with_linear_moments
    for label, model in (("DiskMock.model()", validate.DiskMock().model()),
                         ("pipeline default", build_model(DEFAULT_CONFIG["model"]))):
        rows = {}
        for path, fn in (("linear moments", released), ("per star", lambda model, d: d)):
            _infer._with_linear_moments = fn
            try:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    post = bd.infer(model, data, seed=0, num_chains=2, num_warmup=500, num_samples=1000,
                                    progress=False)
                rows[path] = (time.perf_counter() - t0, post)
            finally:
                _infer._with_linear_moments = released
        print(f"\n{label}: {model}")
        print("| path | wall [s] | " + " | ".join(f"{n} median ± sd" for n in model.free_parameters()) + " |")
        print("|---|---|" + "---|" * len(model.free_parameters()))
        for path, (wall, post) in rows.items():
            cells = [f"{np.median(post.samples[n]):.5g} ± {np.std(post.samples[n]):.3g}" for n in model.free_parameters()]
            print(f"| {path} | {wall:.1f} | " + " | ".join(cells) + " |")
        print(f"speed-up: {rows['per star'][0] / rows['linear moments'][0]:.1f}×")
    print(f"\nMachine: {m0} (start), {machine()} (end)")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()  # (--help had run the benchmark)
    main()

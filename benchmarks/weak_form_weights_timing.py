"""Wall time of the weak form's GMM weights (``bd.inference.weak_form_weights``), with the mode search compiled once
against the search traced anew at every BFGS run (before 2026-12-06), and that both reach the same mode.

``weak_form_weights`` finds the model's posterior mode four times (the starting weights and three re-weightings).
Each search runs BFGS (``jax.scipy.optimize.minimize``), after bounded Adam steps when a shape parameter is free;
since 2026-12-06 BFGS and Adam are jitted once per model with the data as an argument and reused over the steps
(``_infer._compiled_search``). The peer, measured in the same run, is the earlier search: every ``_mode_values``
call initialises the model again and ``minimize`` is called, and so traced, afresh (and Adam's scan likewise).
Two models on the shipped disk mock (10⁵ stars in its 2-kpc sphere): ``validate.DiskMock.model()`` (amplitudes
only: linear moments, BFGS from 8 prior draws and the least-squares start) and benchmarks/weak_form_mode_search.py's
shape model (the halo's r_s and the disk's a, b free: Adam, then BFGS). Prints the wall times, J and the modes'
largest relative difference, and the machine.

    python benchmarks/weak_form_weights_timing.py [--n-stars N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402


def traced_anew(_infer):
    """The pre-2026-12-06 search: ``_mode_values`` keeps no compiled search between calls, and its BFGS and Adam
    are plain calls (traced each time) on the jitted objective."""
    from jax.scipy.optimize import minimize

    released_search, released_values = _infer._compiled_search, _infer._mode_values

    def plain_search(info, unravel, model_kwargs=None):
        out = released_search(info, unravel, model_kwargs)
        objective = out["objective"]
        out["bfgs"] = lambda q, d: minimize(lambda p: objective(p, d), q, method="BFGS",
                                            options={"maxiter": _infer.START_ITERATIONS})
        out["adam"] = lambda q, d: _infer._adam(lambda p: objective(p, d), q)
        return out

    def values_without_cache(model, data, key, start=None, search=None):
        return released_values(model, data, key, start)

    def restore():
        _infer._compiled_search, _infer._mode_values = released_search, released_values

    _infer._compiled_search, _infer._mode_values = plain_search, values_without_cache
    return restore


def main(argv=None):
    import jax

    import bayesdyn as bd
    from bayesdyn import validate
    from bayesdyn.inference import _infer, weak_form_weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-stars", type=int, default=0, help="a random subset of the shipped mock (0: all)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from weak_form_mode_search import shape_model

    m0 = machine()
    cat, _ = bd.mocks.load_default()
    if a.n_stars and a.n_stars < cat.n:
        keep = np.zeros(cat.n, bool)
        keep[np.random.default_rng(0).choice(cat.n, a.n_stars, replace=False)] = True
        cat = cat.select(keep, f"random subset of {a.n_stars}")
    data = bd.weak_form_data(cat)
    print(f"{data.n_stars} stars, {data.n_moments} moments; weak_form_weights (4 mode searches), seed 0", flush=True)
    for label, model in (("DiskMock.model() (linear moments)", validate.DiskMock().model()),
                         ("shapes free (Adam, then BFGS)", shape_model())):
        modes = {}
        for path in ("compiled once (released)", "traced anew (before)"):
            restore = traced_anew(_infer) if path.startswith("traced") else (lambda: None)
            try:
                jax.clear_caches()
                t = time.perf_counter()
                _, info = weak_form_weights(model, data, seed=0)
                wall = time.perf_counter() - t
            finally:
                restore()
            modes[path] = {k: float(np.asarray(v)) for k, v in info["mode"].items()}
            print(f"{label}, {path}: {wall:.1f} s; J = {info['J']:.3f} (dof {info['dof']}), "
                  f"BFGS converged: {info['mode_converged']}", flush=True)
        a_, b_ = modes.values()
        rel = max(abs(a_[k] - b_[k]) / max(abs(b_[k]), 1e-300) for k in a_)
        print(f"{label}: the two modes' largest relative difference {rel:.2g}", flush=True)
    print(f"machine: {m0}")


if __name__ == "__main__":
    main()

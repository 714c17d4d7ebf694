"""The weak form's mode search with shape parameters free: plain BFGS from prior draws against Adam steps first.

Without linear moments (a scale radius or a disk's a, b free) ``bd.infer``'s weak-form weights have no
least-squares start, and the mode search starts from prior draws. This script fits the pipeline's default model
with the halo's scale radius (LogUniform(2, 60) kpc) and the Miyamoto–Nagai disk's a (Uniform(1, 6) kpc) and b
(LogUniform(0.05, 1) kpc) also free to one disk-mock realisation (``validate.realisation``'s seeds, the league's
r0), and prints, for each seed of the mode search, the search's objective (the negative log posterior under the
moments' starting weights) at its end point and the shapes found, once with the released search (bounded Adam
steps, then BFGS, from the 3 best of 8 prior draws) and once with plain BFGS from the same draws (the search before
2026-12-06); the objective at the truth and at the mode reached from the truth; and the machine.

    python benchmarks/weak_form_mode_search.py [--n-stars 100000] [--seeds 4]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

#: the disk mock's true parameters (no dark disk: Σ_DD at 1e3 M☉/kpc², inside its prior)
TRUTH = {"dark_disk.surface_density": 1e3, "disk.a": 3.0, "disk.b": 0.28, "disk.mass": 6.82e10,
         "halo.scale_density": 8.487e6, "halo.scale_radius": 16.0}


def shape_model():
    """The pipeline's default model with the halo's r_s and the disk's a and b free (no linear moments)."""
    from bayesdyn.pipeline import DEFAULT_CONFIG, build_model

    cfg = copy.deepcopy(DEFAULT_CONFIG["model"])
    cfg["halo"]["scale_radius"] = {"prior": "LogUniform", "low": 2.0, "high": 60.0}
    cfg["disk"]["a"] = {"prior": "Uniform", "low": 1.0, "high": 6.0}
    cfg["disk"]["b"] = {"prior": "LogUniform", "low": 0.05, "high": 1.0}
    return build_model(cfg)


def main(argv=None):
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model, unconstrain_fn

    import bayesdyn as bd
    from bayesdyn import validate
    from bayesdyn.inference import _infer
    from bayesdyn.validate._coverage import _seeds

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-stars", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=4)
    a = ap.parse_args(argv)
    m0 = machine()
    model = shape_model()
    with jax.enable_x64(True):
        cat, _ = validate.DiskMock().draw(a.n_stars, _seeds(0, 0)["mock"])
        data = _infer._to_float64(bd.weak_form_data(cat))
        data = _infer._with_linear_moments(model, _infer._with_fixed_acceleration(model, data))
        info = initialize_model(jax.random.PRNGKey(0), model, model_args=(data,), dynamic_args=True)
        _, unravel = ravel_pytree(info.param_info.z)
        objective = jax.jit(lambda q: info.potential_fn(data)(unravel(q)))
        qt = ravel_pytree(unconstrain_fn(model, (data,), {}, {k: jnp.asarray(v) for k, v in TRUTH.items()}))[0]
        qm, _ = _infer._bfgs(objective, _infer._adam(objective, qt))
        print(f"{data.n_stars} stars, {data.n_moments} moments; objective at the truth {float(objective(qt)):.2f}, "
              f"at the mode reached from it {float(objective(qm)):.2f}")
        released = _infer._adam
        for label, adam in (("released (Adam, then BFGS)", released), ("plain BFGS (before 2026-12-06)", None)):
            _infer._adam = released if adam else (lambda f, q: q)
            try:
                for s in range(a.seeds):
                    t = time.perf_counter()
                    values, q, converged = _infer._mode_values(model, data, jax.random.PRNGKey(s))
                    shapes = ", ".join(f"{k} {float(values[k]):.3g}" for k in ("halo.scale_radius", "disk.a", "disk.b"))
                    print(f"{label}, seed {s}: objective {float(objective(q)):.2f} ({shapes} kpc; "
                          f"BFGS converged: {converged}; {time.perf_counter() - t:.0f} s)", flush=True)
            finally:
                _infer._adam = released
    print(f"machine: {m0}")


if __name__ == "__main__":
    main()

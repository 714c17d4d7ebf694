"""Strict, deterministic test setup (STYLE habit 8): CPU only, fixed seeds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# XLA compilation dominates the potentials' tests; a persistent cache makes reruns fast
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".jax_cache"))
# ... including the ~300 sub-second programs of eager jnp calls each integration test compiles
# (by default only programs that take > 1 s are cached, so each xdist worker recompiled them)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite runs tiny models, so compiling dominates its time: on a clean clone (cold cache)
# LLVM's optimisation was ~1/3 of the wall time. Tests (and the subprocesses they start, which
# inherit this environment) compile unoptimised machine code: the same operations, less compiling.
# Measured on the 2-core CI-size machine, cold cache: 331 s with XLA's defaults, 266 and 284 s with
# the first two flags (tests/conftest.py, 2026-12-03; the suite has grown since). XLA's older fusion
# emitters and one codegen unit per program compile faster again: 404 s → 314 s for the whole cold
# suite (745 → 557 CPU-s, 2-core AMD EPYC, 2026-12-06; the tests' numbers were unchanged where
# checked, e.g. the continuity-ε test's to the last digit). This VM's speed drifts by ~20 % within
# an hour; run side by side, the suites before and after that session used 842 and 580 CPU-s.
# Users' runs keep XLA's defaults.
_BASE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
_FAST_XLA_FLAGS = _BASE_XLA_FLAGS + " --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"


def _xla_accepts(flags: str) -> bool:
    """Whether this jaxlib knows every flag in ``flags`` and compiles a fused program with them (an unknown flag aborts
    the process, so ask a child)."""
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    probe = "import jax, jax.numpy as jnp; jax.jit(lambda x: (jnp.sin(x) * 2 + 1).sum())(jnp.arange(3.0)).block_until_ready()"
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# once per test session: xdist's workers inherit the controller's environment, with XLA_FLAGS set
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = _FAST_XLA_FLAGS if _xla_accepts(_FAST_XLA_FLAGS) else _BASE_XLA_FLAGS

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: ../shared/data relative to the project root (the reference data of DESIGN §1).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared reference data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (clone with shared/ beside the repo)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    """A numpy generator with a fixed seed."""
    return np.random.default_rng(20261122)


@pytest.fixture
def x64():
    """Run the test with float64 JAX arrays."""
    import jax

    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compiled programs after each test module.

    Each compiled program holds about three memory mappings, which stay until its cache is cleared; an xdist worker
    runs about 200 tests and compiles thousands of programs, and near Linux's limit (vm.max_map_count, 65 530 here)
    a worker crashed in a fresh clone (a segfault reading JAX's compilation cache during
    test_pipeline_weak_form.py, 2026-12-06; a benchmark loop hit "LLVM compilation error: Cannot allocate memory"
    the same way). The persistent compilation cache keeps the recompiles after a clear cheap.
    """
    yield
    import jax

    jax.clear_caches()


#: test modules with the most CPU time (2026-12-06, cold cache), run first. xdist's worksteal gives each worker a
#: contiguous part of the list and lets an idle worker steal from another's tail, so the slow modules (the 34-s mode
#: search of test_weak_form.py was among the last tests alphabetically) start early and the quick ones fill the end.
#: Order only: a stale list makes the suite no less correct, only its two workers less even.
_SLOW_MODULES_FIRST = ("test_weak_form.py", "test_league.py", "test_dust.py", "test_psd.py",
                       "test_pipeline_weak_form.py", "test_inference.py", "test_examples.py", "test_neural.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its own order

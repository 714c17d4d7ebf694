"""Strict, deterministic test setup (STYLE habit 8): CPU only, fixed seeds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# XLA compilation dominates the potentials' tests; a persistent cache makes reruns fast
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), ".jax_cache"))

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

"""The machine line that benchmark scripts print with their figures (shared by calibration, league, score_bias)."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    """One line: CPU model, cores, load average, JAX backend and versions."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{cpu}, {os.cpu_count()} cores, load {load}; JAX {jax.__version__} on {jax.default_backend()}; "
        f"Python {platform.python_version()}"
    )

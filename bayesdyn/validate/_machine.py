"""The machine line printed with benchmark figures and recorded with each calibration realisation's timings."""

from __future__ import annotations

import os
import platform


def machine(load: bool = True) -> str:
    """One line: CPU model, cores, (the load average,) JAX backend and versions."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    avg = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{cpu}, {os.cpu_count()} cores" + (f", load {avg}" if load else "")
        + f"; JAX {jax.__version__} on {jax.default_backend()}; Python {platform.python_version()}"
    )
